"""Actor-critic trained in the world model's imagination (DreamerV3, with the DreamerV2 options as config).

From every start state the policy rolls the world model's prior forward ``horizon`` steps. A reward
function scores the imagined states; the critic bootstraps λ-returns; the actor maximises them, either by
the score-function (REINFORCE) gradient with the critic as baseline or by backpropagating the returns
through the frozen world model. Where gradients stop:

- the world model receives no gradient from either loss (its parameters are frozen while they are built);
- the critic trains on detached features toward detached returns;
- the actor's REINFORCE loss sees detached features, actions and advantages; its ``dynamics`` loss reaches
  the actor through the imagined states and actions of the returns only; the entropy bonus reads detached
  features in both.

Shape legend: ``N`` start states, ``H`` horizon, ``F`` features, ``A`` action size.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from wmlab.agents.config import BehaviorConfig
from wmlab.agents.returns import ActionDist, ReturnNorm, lambda_return
from wmlab.config import check_choices
from wmlab.models.rssm import State
from wmlab.nn.blocks import MLP
from wmlab.nn.dists import TwoHot

RewardFn = Callable[[Tensor, Tensor], Tensor]  # (features [N,H+1,F], actions [N,H,A]) -> rewards [N,H+1]


@contextlib.contextmanager
def frozen(*modules: nn.Module | None) -> Iterator[None]:
    """Build graph with these modules' parameters as constants: gradients pass through their outputs to the
    inputs, but nothing accumulates in the parameters themselves."""
    params = [p for m in modules if m is not None for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class Behavior(nn.Module):
    """One policy with its critic, slow critic and return normaliser."""

    def __init__(self, cfg: BehaviorConfig, feat_dim: int, action_dim: int, discrete: bool, norm: bool = True,
                 act: str = "silu") -> None:
        super().__init__()
        self.cfg = cfg
        self.discrete = discrete
        self.action_dim = action_dim
        a, c = cfg.actor, cfg.critic
        check_choices(cfg, "behavior.")  # actor.grad, actor.dist, critic.loss, ... for a config built in Python
        # auto (DreamerV2): discrete samples have no useful pathwise gradient, continuous ones do.
        self.grad = ("reinforce" if discrete else "dynamics") if a.grad == "auto" else a.grad
        if cfg.horizon < 1:
            raise ValueError(f"behavior.horizon={cfg.horizon} must be >= 1")
        self.actor = MLP(feat_dim, action_dim if discrete else 2 * action_dim, a.layers, a.units, norm, act,
                         out_scale=a.out_scale)
        self.twohot = TwoHot(c.bins) if c.loss == "twohot" else None
        self.critic = MLP(feat_dim, c.bins if self.twohot else 1, c.layers, c.units, norm, act, out_scale=0.0)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.return_norm = ReturnNorm(cfg.norm_low, cfg.norm_high, cfg.norm_decay, cfg.return_norm == "percentile")
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------------------------------- parts
    def policy(self, feat: Tensor) -> ActionDist:
        a = self.cfg.actor
        return ActionDist(self.actor(feat), self.discrete, a.min_std, a.max_std, a.unimix, a.dist, a.std_bias)

    def _decode(self, out: Tensor) -> Tensor:
        return self.twohot.decode(out) if self.twohot else out.float().squeeze(-1)

    def value(self, feat: Tensor, slow: bool = False) -> Tensor:
        """Predicted return ``[...]`` of features ``[..., F]``."""
        return self._decode((self.slow_critic if slow else self.critic)(feat))

    def _critic_nll(self, out: Tensor, target: Tensor) -> Tensor:
        if self.twohot:
            return self.twohot.loss(out, target)
        return 0.5 * (out.float().squeeze(-1) - target.float()) ** 2

    @torch.no_grad()
    def after_update(self) -> None:
        """Move the slow critic toward the critic every ``slow_every`` updates."""
        self.updates += 1
        c = self.cfg.critic
        if int(self.updates) % c.slow_every == 0:
            for slow, fast in zip(self.slow_critic.parameters(), self.critic.parameters()):
                slow.lerp_(fast, c.slow_rate)

    def optimizer_groups(self, name: str) -> list[dict]:
        a, c = self.cfg.actor, self.cfg.critic
        return [{"params": list(self.actor.parameters()), "lr": a.lr, "eps": a.eps, "clip": a.clip,
                 "name": f"{name}_actor"},
                {"params": list(self.critic.parameters()), "lr": c.lr, "eps": c.eps, "clip": c.clip,
                 "name": f"{name}_critic"}]

    # -------------------------------------------------------------------------------------- imagination
    def imagine(self, wm: nn.Module, start: State, encode: Callable[[Tensor], Tensor],
                sample: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        """Roll the policy in ``wm`` from ``start [N]``: features ``[N,H+1,F]``, actions ``[N,H,A]`` and the
        policy entropies ``[N,H]`` (``encode`` maps actions to the world model's action input)."""
        feat, actions, ents, _ = self._imagine(wm, start, encode, sample, score=False)
        assert ents is not None
        return feat, actions, ents

    def _imagine(self, wm: nn.Module, start: State, encode: Callable[[Tensor], Tensor], sample: bool,
                 score: bool, entropy: bool = True) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """:meth:`imagine`, plus with ``score`` the log-probabilities ``[N,H]`` of the actions taken; with
        ``entropy=False`` the entropies are not computed (``None``).

        With ``score`` (REINFORCE, called under ``no_grad``) the policy runs with gradient on detached
        features, so its log-probabilities and entropies carry the actor's gradient while the rollout
        itself records nothing, and the actor need not run a second time over the imagined states.
        Features are kept as the policy computes them, so no state is stacked and re-read.
        """
        feats, actions, ents, logps = [], [], [], []

        def act(state: State) -> Tensor:
            feat = wm.features(state)
            feats.append(feat)
            with torch.enable_grad() if score else contextlib.nullcontext():
                dist = self.policy(feat.detach() if score else feat)
            action = dist.sample() if sample else dist.mode()
            actions.append(action)
            with torch.enable_grad() if score else contextlib.nullcontext():
                if entropy:
                    ents.append(dist.entropy())
                if score:
                    logps.append(dist.log_prob(action))
            if not self.discrete:  # the env clips to [-1, 1]; so does the model (straight-through)
                action = action + (action.clamp(-1.0, 1.0) - action).detach()
            return encode(action)

        last = wm.imagine(start, policy=act, horizon=self.cfg.horizon, sample=True, last_only=True)
        feats.append(wm.features(last))
        dtype = feats[-1].dtype  # a start made outside autocast joins the imagined states' dtype
        feat = torch.stack([f.to(dtype) for f in feats], 1)
        with torch.enable_grad() if score else contextlib.nullcontext():  # keep the actor's graph
            ent = torch.stack(ents, 1) if entropy else None
            logp = torch.stack(logps, 1) if score else None
        return feat, torch.stack(actions, 1), ent, logp

    def loss(self, wm: nn.Module, start: State, cont0: Tensor, reward_fn: RewardFn,
             encode: Callable[[Tensor], Tensor], frozen_modules: tuple[nn.Module | None, ...] = ()
             ) -> tuple[Tensor, dict[str, Tensor]]:
        """Actor and critic loss from start states ``[N]`` (detached posteriors or imagined states).

        ``cont0 [N]`` is the probability that the episode goes on after each start state; ``reward_fn`` scores
        imagined features; ``frozen_modules`` (the world model and anything the reward reads) get no gradient.
        """
        cfg = self.cfg
        start = start.detach()
        dynamics = self.grad == "dynamics"
        with frozen(wm, *frozen_modules):
            grad_ctx = contextlib.nullcontext() if dynamics else torch.no_grad()
            with grad_ctx:
                # [N,H+1,F], [N,H,A], then [N,H] each for REINFORCE (None when backpropagating the dynamics,
                # whose entropy term is computed below on detached features)
                feat, actions, ents, logp = self._imagine(wm, start, encode, True, score=not dynamics,
                                                          entropy=not dynamics)
                reward = reward_fn(feat, actions).float()  # [N,H+1]
                cont = wm.cont(feat).float()  # [N,H+1]
                cont = torch.cat([cont0[:, None].float(), cont[:, 1:]], 1)
                disc = cfg.discount * cont
                v_ret = None
                if cfg.critic.returns_from == "slow":
                    v_ret = self.value(feat, slow=True)
                elif dynamics:
                    with frozen(self.critic):
                        v_ret = self.value(feat)
            critic_out = None
            if v_ret is None:  # one critic pass: its first H outputs also train the critic below
                critic_out = self.critic(feat.detach())
                v_ret = self._decode(critic_out.detach())
            ret = lambda_return(reward, v_ret.float(), disc, cfg.lam)  # [N,H]
        with torch.no_grad():
            # γ^t · Π_{i≤t} cont_i: a state counts as far as it is reached and is not terminal itself, so a
            # start at an episode's last (terminal) step weighs nothing.
            weight = torch.cumprod(torch.cat([cont[:, :1], disc[:, 1:-1]], 1), 1)  # [N,H]
        if self.training:
            self.return_norm.update(ret)
        scale = self.return_norm.scale()

        # Actor.
        if dynamics:
            objective = ret / scale
            # The entropy regularises the policy where it is, not the states it leads to: on detached features
            # (the rollout's own entropies would also send gradient back through the imagined dynamics).
            entropy = self.policy(feat[:, :-1].detach()).entropy()
        else:
            assert logp is not None and ents is not None
            adv = ((ret - v_ret[:, :-1].float()) / scale).detach()
            objective = logp * adv
            entropy = ents
        actor_loss = -(weight * (objective + cfg.actor.entropy * entropy)).mean()

        # Critic (with grad, on detached features; targets detached).
        if critic_out is None:
            critic_out = self.critic(feat[:, :-1].detach())
        else:
            critic_out = critic_out[:, :-1]
        target = ret.detach()
        critic_loss = self._critic_nll(critic_out, target)
        if cfg.critic.slow_reg > 0:
            with torch.no_grad():
                slow = self.value(feat[:, :-1].detach(), slow=True)
            critic_loss = critic_loss + cfg.critic.slow_reg * self._critic_nll(critic_out, slow)
        critic_loss = (weight * critic_loss).mean()

        metrics = {"actor_loss": actor_loss.detach(), "critic_loss": critic_loss.detach(),
                   "return": ret.detach().mean(), "value": v_ret.detach().float().mean(),
                   "entropy": entropy.detach().mean(), "return_scale": scale.detach(),
                   "imag_reward": reward[:, 1:].detach().mean()}
        return actor_loss + critic_loss, metrics
