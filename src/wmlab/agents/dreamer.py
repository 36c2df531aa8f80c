"""The Dreamer agent: one module holding the world model, the task behaviour and (with Plan2Explore) an
exploring behaviour and its ensemble, trained together by :class:`wmlab.train.Trainer` through one
``loss(batch)`` with a parameter group per part (own learning rate, epsilon and clip).

The reward a behaviour maximises is a plug: a function of imagined features and actions registered by
name in :data:`REWARDS` (``task`` reads the reward head; ``plan2explore`` the ensemble's disagreement).
A prompt-based reward (GenRL) or any other function of latent states registers the same way::

    @REWARDS.register("height")
    def height_reward(agent, feat, actions):      # feat [N,H+1,F], actions [N,H,A] -> [N,H+1]
        return my_probe(feat).squeeze(-1)

Shape legend: ``B`` batch, ``T`` time, ``N`` start states, ``H`` horizon, ``F`` features, ``A`` action size.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmlab.agents.behavior import Behavior, frozen
from wmlab.agents.config import AgentConfig
from wmlab.agents.explore import Ensemble
from wmlab.agents.intrinsic import VideoBonus
from wmlab.config import check_choices
from wmlab.models.registry import Registry
from wmlab.models.rssm import State
from wmlab.models.world_model import WorldModel
from wmlab.nn.blocks import MLP

AgentReward = Callable[["DreamerAgent", Tensor, Tensor], Tensor]


# name → fn(agent, feat [N,H+1,F], actions [N,H,A]) -> reward [N,H+1]
REWARDS: Registry[AgentReward] = Registry("reward", "agent.reward")


@REWARDS.register("task")
def task_reward(agent: "DreamerAgent", feat: Tensor, actions: Tensor) -> Tensor:
    return agent.wm.reward(feat)


@REWARDS.register("policy")
def policy_reward(agent: "DreamerAgent", feat: Tensor, actions: Tensor) -> Tensor:
    if agent.policy_reward is None:
        raise ValueError("reward policy needs agent.intrinsic=video (the second reward head)")
    return agent.policy_reward_value(feat)


@REWARDS.register("plan2explore")
def disagreement_reward(agent: "DreamerAgent", feat: Tensor, actions: Tensor) -> Tensor:
    if agent.ensemble is None:
        raise ValueError("reward plan2explore needs agent.explore=plan2explore (the ensemble)")
    if not agent.discrete:  # the ensemble learned from env actions, which the env clipped to [-1, 1]
        actions = actions.clamp(-1.0, 1.0)
    return agent.ensemble.disagreement(feat, agent.encode_action(actions))


class DreamerAgent(nn.Module):
    """World model + actor-critic(s); ``spec`` is the episode store's spec."""

    def __init__(self, cfg: AgentConfig, spec: dict[str, Any]) -> None:
        super().__init__()
        check_choices(cfg)  # explore, intrinsic, behavior.*, world_model.*, for a config built in Python
        self.cfg = cfg
        self.spec = dict(spec)
        self.discrete = bool(spec.get("action_discrete"))
        size = spec.get("num_actions") if self.discrete else spec.get("action_dim")
        if not size:
            raise ValueError("the Dreamer agent needs actions; the data spec has none (action-free video "
                             "pretrains with `wmlab train pretrain`)")
        if cfg.world_model.action_input in ("none", "embedding"):
            raise ValueError(f"the Dreamer agent acts through real actions; world_model.action_input="
                             f"{cfg.world_model.action_input!r} is for pretraining (use real, or prelar to "
                             f"encode real actions into a pretrained latent-action space)")
        self.action_size = int(size)
        self.wm = WorldModel(cfg.world_model, spec)
        feat, norm, act = self.wm.feat_dim, cfg.world_model.norm, cfg.world_model.act
        self.task = Behavior(cfg.behavior, feat, self.action_size, self.discrete, norm, act)
        REWARDS.get(cfg.reward)  # fail early on an unknown name
        self.explorer: Behavior | None = None
        self.ensemble: Ensemble | None = None
        if cfg.explore == "plan2explore":
            r = cfg.world_model.rssm
            width = {"stoch": r.stoch * r.classes, "deter": r.deter, "feat": feat}[cfg.plan2explore.target]
            self.ensemble = Ensemble(cfg.plan2explore, feat, self.wm.actions.dim, width, norm, act)
            self.explorer = Behavior(cfg.behavior, feat, self.action_size, self.discrete, norm, act)
        self.bonus: VideoBonus | None = None
        self.policy_reward: MLP | None = None
        if cfg.intrinsic == "video":
            wm_cfg = cfg.world_model
            self.bonus = VideoBonus(feat, cfg.knn_k, cfg.knn_window, cfg.knn_queue)
            out = wm_cfg.reward_bins if wm_cfg.reward_loss == "twohot" else 1
            h = wm_cfg.heads
            self.policy_reward = MLP(feat, out, h.layers, h.units, norm, act, out_scale=0.0)
        if not cfg.train_world_model:
            self.wm.requires_grad_(False)
            if self.policy_reward is not None:
                self.policy_reward.requires_grad_(False)

    # ------------------------------------------------------------------------------------------ actions
    def encode_action(self, action: Tensor) -> Tensor:
        """Policy output (one-hot for discrete, vector for continuous) → the world model's action input."""
        if self.discrete and self.cfg.world_model.action_input == "real":
            return action.float()  # the one-hot itself (keeps the straight-through gradient)
        return self.wm.actions.encode(action)

    def policy_reward_value(self, feat: Tensor) -> Tensor:
        """The reward the policy maximises with ``intrinsic=video``: the second head's prediction."""
        out = self.policy_reward(feat)
        if self.cfg.world_model.reward_loss == "mse":
            return out.float().squeeze(-1)
        return self.wm.twohot.decode(out)

    def _explore_reward(self, feat: Tensor, actions: Tensor) -> Tensor:
        p = self.cfg.plan2explore
        reward = p.intrinsic * disagreement_reward(self, feat, actions)
        if p.extrinsic:
            reward = reward + p.extrinsic * task_reward(self, feat, actions)
        return reward

    # ------------------------------------------------------------------------------------------ training
    def imagined_starts(self, count: int) -> State:
        """Start states drawn from the world model alone: the initial state rolled ``imagined_warmup`` prior
        steps under uniformly random actions (no dataset needed)."""
        with torch.no_grad():
            start = self.wm.rssm.initial(count)
            steps = max(1, self.cfg.imagined_warmup)
            if self.discrete:
                idx = torch.randint(self.action_size, (count, steps), device=start.deter.device)
                actions = F.one_hot(idx, self.action_size).float()
            else:
                actions = torch.rand(count, steps, self.action_size, device=start.deter.device) * 2 - 1
            traj = self.wm.imagine(start, actions=self.encode_action(actions))
            return traj.map(lambda x: x[:, -1])

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """World-model loss + behaviour losses on one replay batch ``[B,T]`` (or on imagined starts only when
        the batch is empty: ``start=imagined``)."""
        metrics: dict[str, Tensor] = {}
        total = torch.zeros((), device=self.wm.rssm.gru.weight.device)
        if batch.get("image") is None:
            start = self.imagined_starts(int(batch.get("starts", 1024)))
            cont0 = torch.ones(start.deter.shape[0], device=start.deter.device)
        else:
            if self.cfg.train_world_model:
                wm_loss, wm_metrics, post = self.wm.loss_and_states(batch)
                total = total + wm_loss
                metrics.update({f"wm/{k}": v for k, v in wm_metrics.items()})
            else:
                with torch.no_grad():
                    post, _ = self.wm.observe(batch)
            if self.bonus is not None and self.policy_reward is not None and "reward" in batch:
                source = self.wm.last_af_post if self.wm.last_af_post is not None else post
                bonus = self.bonus(self.wm.features(source))
                target = batch["reward"].float() + self.cfg.intrinsic_scale * bonus
                out = self.policy_reward(self.wm.features(post))
                if self.cfg.world_model.reward_loss == "mse":
                    pr_loss = 0.5 * (out.float().squeeze(-1) - target) ** 2
                else:
                    pr_loss = self.wm.twohot.loss(out, target)
                if self.cfg.train_world_model:
                    total = total + pr_loss.mean()
                metrics["wm/policy_reward"] = pr_loss.detach().mean()
                metrics["wm/intrinsic"] = bonus.mean()
            if self.ensemble is not None:
                ens_loss = self.ensemble.loss(self.wm, post.detach(), self.wm.actions(batch).detach())
                total = total + ens_loss
                metrics["explore/ensemble_loss"] = ens_loss.detach()
            start = post.detach().flatten()
            if "is_terminal" in batch:
                cont0 = 1.0 - batch["is_terminal"].flatten().float()
            else:
                cont0 = torch.ones(start.deter.shape[0], device=start.deter.device)
        name = "policy" if self.cfg.reward == "task" and self.policy_reward is not None else self.cfg.reward
        reward = REWARDS.get(name)
        task_loss, task_metrics = self.task.loss(self.wm, start, cont0, lambda f, a: reward(self, f, a),
                                                 self.encode_action, (self.ensemble, self.policy_reward))
        total = total + task_loss
        metrics.update({f"task/{k}": v for k, v in task_metrics.items()})
        if self.explorer is not None:
            expl_loss, expl_metrics = self.explorer.loss(self.wm, start, cont0, self._explore_reward,
                                                         self.encode_action, (self.ensemble,))
            total = total + expl_loss
            metrics.update({f"explore/{k}": v for k, v in expl_metrics.items()})
        return total, metrics

    def after_update(self) -> None:
        self.wm.after_update()
        self.task.after_update()
        if self.explorer is not None:
            self.explorer.after_update()

    def optimizer_groups(self) -> list[dict]:
        """AdamW groups: world model, each actor and critic, the ensemble — each with its lr, eps and clip."""
        c = self.cfg
        groups = []
        if c.train_world_model:
            params = list(self.wm.parameters())
            if self.policy_reward is not None:
                params += list(self.policy_reward.parameters())
            groups.append({"params": params, "lr": c.model_lr, "eps": c.model_eps, "clip": c.model_clip,
                           "name": "world_model"})
        groups += self.task.optimizer_groups("task")
        if self.explorer is not None and self.ensemble is not None:
            groups += self.explorer.optimizer_groups("explore")
            p = c.plan2explore
            groups.append({"params": list(self.ensemble.parameters()), "lr": p.lr, "eps": p.eps, "clip": p.clip,
                           "name": "ensemble"})
        return groups

    # ------------------------------------------------------------------------------------------- acting
    @torch.no_grad()
    def act(self, obs: dict[str, np.ndarray], carry: tuple[Any, Tensor] | None, behavior: str = "task",
            sample: bool = True) -> tuple[Any, tuple[Any, Tensor]]:
        """One env step: observation (``image`` uint8 ``[H,W,C]``, optional ``proprio``) and the carried
        ``(state, previous action input)`` (None at the start of an episode) → env action and new carry."""
        device = self.wm.rssm.gru.weight.device
        image = torch.as_tensor(np.ascontiguousarray(obs["image"]), device=device)[None, None]
        frame = {"image": image}
        if self.wm.proprio_enc is not None:
            frame["proprio"] = torch.as_tensor(obs["proprio"], device=device, dtype=torch.float32)[None, None]
        first = carry is None
        if first:
            wm_carry = self.wm.initial_carry(1)
            prev = torch.zeros(1, self.wm.actions.dim, device=device)
        else:
            wm_carry, prev = carry
        is_first = torch.tensor([first], device=device)
        post, wm_carry = self.wm.filter_step(wm_carry, prev, frame, is_first)
        module = self.explorer if behavior == "explore" and self.explorer is not None else self.task
        dist = module.policy(self.wm.features(post))
        action = dist.sample() if sample else dist.mode()
        if not self.discrete:  # the env clips to [-1, 1]; the model must see the action the env got
            action = action.float().clamp(-1.0, 1.0)
        action_in = self.encode_action(action)
        if self.discrete:
            env_action = np.int64(int(action[0].argmax()))
        else:
            env_action = action[0].cpu().numpy().astype(np.float32)
        return env_action, (wm_carry, action_in.float())


def agent_policy(agent: DreamerAgent, behavior: str = "task", sample: bool = True) -> Callable[[dict], Any]:
    """A per-episode policy closure for :func:`wmlab.envs.collect.rollout` (carries the RSSM state)."""
    carry: list[Any] = [None]

    def policy(obs: dict) -> Any:
        action, carry[0] = agent.act(obs, carry[0], behavior, sample)
        return action

    return policy


__all__ = ["DreamerAgent", "REWARDS", "agent_policy", "frozen", "task_reward", "disagreement_reward"]
