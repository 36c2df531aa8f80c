"""The recurrent state-space model (RSSM) of DreamerV3, https://arxiv.org/abs/2301.04104.

The state is a deterministic GRU vector ``deter`` plus ``S`` one-hot categorical latents of ``K`` classes
(``stoch``). One step: ``deter' = GRU(deter, in(stoch, action))``; the *prior* predicts ``stoch'`` from
``deter'`` alone, the *posterior* from ``deter'`` and the frame embedding. The GRU is DreamerV3's
LayerNorm GRU built from one Linear layer (update-gate bias -1).

Time alignment: ``action_in[:, t]`` drives ``o_t → o_{t+1}`` (the episode schema), so the step into
``o_t`` reads ``action_in[:, t-1]``, and zeros at ``t = 0`` and wherever ``is_first`` is set.

For speed on CPU everything that does not depend on the recurrence runs outside the time loop, batched
over all ``T``: projections of embeddings and actions, the random numbers for sampling, and the whole prior
of :meth:`RSSM.observe` (it only reads ``deter``). The loop itself does four small matmuls per step.

Shape legend: ``B`` batch, ``T`` time, ``H`` imagination horizon, ``D`` deter, ``S`` latents,
``K`` classes, ``E`` embedding, ``A`` action input width, ``Hd`` hidden width, ``F = D + S·K`` features.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn

from wmlab.models.config import RSSMConfig
from wmlab.nn.blocks import LN_EPS, LayerNorm, NormLinear, activation, init_hidden_, init_output_
from wmlab.nn.dists import mode_onehot, sample_onehot, unimix_logprobs
from wmlab.nn.tape import StepLinear


class State(NamedTuple):
    """RSSM state; every field shares the leading dims ``[...]`` (e.g. ``[B]`` or ``[B,T]``)."""

    deter: Tensor  # [..., D]
    stoch: Tensor  # [..., S, K] one-hot sample with straight-through gradient
    logits: Tensor  # [..., S, K] float32 log-probabilities (after unimix) the sample was drawn from

    def map(self, fn: Callable[[Tensor], Tensor]) -> "State":
        """Apply ``fn`` to every field (indexing, reshaping, detaching)."""
        return State(fn(self.deter), fn(self.stoch), fn(self.logits))

    def detach(self) -> "State":
        return self.map(Tensor.detach)

    def flatten(self) -> "State":
        """Merge all leading dims into one: ``[B,T,...]`` → ``[B·T,...]``."""
        lead = self.deter.dim() - 1
        return State(self.deter.flatten(0, lead - 1), self.stoch.flatten(0, lead - 1),
                     self.logits.flatten(0, lead - 1))

    @staticmethod
    def stack(states: list["State"], dim: int = 1) -> "State":
        return State(*(torch.stack(xs, dim) for xs in zip(*states)))


def shift_actions(action_in: Tensor, is_first: Tensor, prev_action: Tensor | None = None) -> Tensor:
    """Schema-aligned ``[B,T,A]`` → the input of the step into each ``o_t``: ``action_in[:, t-1]``.

    Row 0 takes ``prev_action`` ``[B,A]`` (zeros if not given); rows where ``is_first`` is set are zeroed,
    since no action led into the first frame of an episode.
    """
    if action_in.shape[-1] == 0:
        return action_in
    first = prev_action if prev_action is not None else action_in.new_zeros(action_in[:, 0].shape)
    prev = torch.cat([first[:, None].to(action_in.dtype), action_in[:, :-1]], 1)
    return prev * (~is_first.bool()).unsqueeze(-1).to(prev.dtype)


class RSSM(nn.Module):
    """The RSSM cell with ``observe`` (filtering a sequence) and ``imagine`` (open-loop prediction)."""

    def __init__(self, cfg: RSSMConfig, embed_dim: int, action_dim: int, norm: bool = True,
                 act: str = "silu") -> None:
        super().__init__()
        self.deter_dim, self.num_stoch, self.classes = cfg.deter, cfg.stoch, cfg.classes
        self.unimix = cfg.unimix
        self.update_bias = cfg.update_bias
        self.action_dim = action_dim
        self.feat_dim = cfg.deter + cfg.stoch * cfg.classes
        flat, hd, d = cfg.stoch * cfg.classes, cfg.hidden, cfg.deter

        def ln(width: int) -> nn.Module:
            return LayerNorm(width, eps=LN_EPS) if norm else nn.Identity()

        # Input layer Linear([stoch, action]) split in two so the action part runs once for all T.
        self.stoch_in = nn.Linear(flat, hd, bias=not norm)
        self.action_in = nn.Linear(action_dim, hd, bias=False) if action_dim > 0 else None
        self.in_norm, self.in_act = ln(hd), activation(act)
        gru_norm = norm if cfg.gru_norm is None else bool(cfg.gru_norm)
        self.gru = nn.Linear(hd + d, 3 * d, bias=not gru_norm)
        self.gru_norm = LayerNorm(3 * d, eps=LN_EPS) if gru_norm else nn.Identity()
        self.prior_hidden = NormLinear(d, hd, norm, act)
        self.prior_out = nn.Linear(hd, flat)
        # Posterior layer Linear([deter, embed]) split likewise: the embedding part runs once for all T.
        self.post_deter = nn.Linear(d, hd, bias=not norm)
        self.post_embed = nn.Linear(embed_dim, hd, bias=False)
        self.post_norm, self.post_act = ln(hd), activation(act)
        self.post_out = nn.Linear(hd, flat)
        init_hidden_(self)
        init_output_(self.prior_out, 1.0)
        init_output_(self.post_out, 1.0)
        self.init_deter = nn.Parameter(torch.zeros(d)) if cfg.initial == "learned" else None

    # ----------------------------------------------------------------------------------------- pieces
    def _latent(self, logits: Tensor) -> Tensor:  # [..., S·K] -> [..., S, K] unimixed log-probs (fp32)
        return unimix_logprobs(logits.unflatten(-1, (self.num_stoch, self.classes)), self.unimix)

    def _loop_linears(self, like: Tensor, posterior: bool) -> dict[str, StepLinear]:
        """The Linear layers a time loop calls every step, each with one weight gradient per sequence.

        ``observe`` steps the posterior (its prior runs batched after the loop); ``imagine`` the prior.
        """
        layers = {"stoch_in": self.stoch_in, "gru": self.gru}
        if posterior:
            layers.update(post_deter=self.post_deter, post_out=self.post_out)
        else:
            layers.update(prior_hidden=self.prior_hidden[0], prior_out=self.prior_out)
        return {name: StepLinear(layer, like) for name, layer in layers.items()}

    def _deter_step(self, deter: Tensor, stoch: Tensor, act_proj: Tensor | None,
                    lin: dict[str, StepLinear] | None = None) -> Tensor:
        """``deter [B,D]``, flat ``stoch [B,S·K]``, projected action ``[B,Hd]`` → next ``deter [B,D]``."""
        stoch_in, gru = (lin["stoch_in"], lin["gru"]) if lin else (self.stoch_in, self.gru)
        x = stoch_in(stoch)
        if act_proj is not None:
            x = x + act_proj
        x = self.in_act(self.in_norm(x))
        parts = self.gru_norm(gru(torch.cat([x, deter.to(x.dtype)], -1)))
        reset, cand, update = parts.chunk(3, -1)
        cand = torch.tanh(torch.sigmoid(reset) * cand)
        update = torch.sigmoid(update + self.update_bias)
        return torch.lerp(deter.to(cand.dtype), cand, update)  # update·cand + (1-update)·deter

    def prior_logprobs(self, deter: Tensor, lin: dict[str, StepLinear] | None = None) -> Tensor:
        """``deter [..., D]`` → prior log-probabilities ``[..., S, K]``."""
        if lin is None:
            return self._latent(self.prior_out(self.prior_hidden(deter)))
        x = lin["prior_hidden"](deter)
        for layer in list(self.prior_hidden)[1:]:  # LayerNorm (if any) and activation
            x = layer(x)
        return self._latent(lin["prior_out"](x))

    def _post_logprobs(self, deter: Tensor, embed_proj: Tensor,
                       lin: dict[str, StepLinear] | None = None) -> Tensor:
        post_deter, post_out = (lin["post_deter"], lin["post_out"]) if lin else (self.post_deter, self.post_out)
        x = self.post_act(self.post_norm(post_deter(deter) + embed_proj))
        return self._latent(post_out(x))

    def features(self, state: State) -> Tensor:
        """``[..., F]``: deter and the flattened one-hot latents, the input of every head."""
        return torch.cat([state.deter, state.stoch.flatten(-2).to(state.deter.dtype)], -1)

    def initial(self, batch_size: int) -> State:
        """The start state ``[B]``: tanh of a learned vector with the prior's mode, or all zeros."""
        device = self.gru.weight.device
        if self.init_deter is None:
            deter = torch.zeros(batch_size, self.deter_dim, device=device)
            shape = (batch_size, self.num_stoch, self.classes)
            logits = torch.full(shape, -float(torch.log(torch.tensor(float(self.classes)))), device=device)
            return State(deter, torch.zeros(shape, device=device), logits)
        deter = torch.tanh(self.init_deter)[None]  # [1, D]
        logits = self.prior_logprobs(deter)
        stoch = mode_onehot(logits)
        return State(deter, stoch, logits).map(lambda x: x.expand(batch_size, *x.shape[1:]))

    # ---------------------------------------------------------------------------------- single steps
    def img_step(self, state: State, action: Tensor, sample: bool = True) -> State:
        """One prior step: ``state [B]``, the action input chosen in it ``[B,A]`` → next state ``[B]``."""
        proj = self.action_in(action) if self.action_in is not None else None
        deter = self._deter_step(state.deter, state.stoch.flatten(-2), proj)
        logits = self.prior_logprobs(deter)
        return State(deter, sample_onehot(logits) if sample else mode_onehot(logits), logits)

    def obs_step(self, state: State, prev_action: Tensor, embed: Tensor, is_first: Tensor,
                 sample: bool = True) -> tuple[State, State]:
        """One filtering step into a new frame: ``(post, prior)``, each ``[B]``.

        ``prev_action [B,A]`` is the action input chosen in ``state``; where ``is_first [B]`` is set the
        state restarts from :meth:`initial` and the action is ignored.
        """
        first = is_first.bool()
        if bool(first.any()):
            init = self.initial(first.shape[0])
            state = State(*(torch.where(first.view(-1, *[1] * (s.dim() - 1)), i.to(s.dtype), s)
                            for s, i in zip(state, init)))
            prev_action = prev_action * (~first)[:, None].to(prev_action.dtype)
        prior = self.img_step(state, prev_action, sample)
        logits = self._post_logprobs(prior.deter, self.post_embed(embed))
        post = State(prior.deter, sample_onehot(logits) if sample else mode_onehot(logits), logits)
        return post, prior

    # --------------------------------------------------------------------------------------- sequences
    def observe(self, embed: Tensor, action_in: Tensor, is_first: Tensor, state: State | None = None,
                prev_action: Tensor | None = None, sample: bool = True) -> tuple[State, State]:
        """Filter a sequence: ``embed [B,T,E]``, ``action_in [B,T,A]`` (schema-aligned), ``is_first [B,T]``.

        Starts from ``state`` ``[B]`` (default :meth:`initial`) whose chosen action was ``prev_action``
        ``[B,A]`` (default zeros). Returns ``(post, prior)``, each a :class:`State` ``[B,T]``.
        """
        b, t = embed.shape[:2]
        is_first = is_first.bool()
        prev = shift_actions(action_in, is_first, prev_action)  # [B,T,A]
        # Per-step views via unbind: its backward is one stack, where indexing [:, i] would accumulate
        # T full-size [B,T,Hd] gradients.
        act_proj = self.action_in(prev).unbind(1) if self.action_in is not None else [None] * t  # T×[B,Hd]
        embed_proj = self.post_embed(embed).unbind(1)  # T×[B,Hd]
        noise = torch.rand(b, t, self.num_stoch, device=embed.device).unbind(1) if sample else None
        init = self.initial(b)
        if state is None:
            state = init
        resets = is_first.any(0).tolist()  # one sync: which steps need a per-row reset
        init_flat = init.stoch.flatten(-2)
        deter, stoch = state.deter, state.stoch.flatten(-2)
        lin = self._loop_linears(embed, posterior=True)
        deters, stochs, logits = [], [], []
        for i in range(t):
            if resets[i]:
                m = is_first[:, i, None]
                deter = torch.where(m, init.deter.to(deter.dtype), deter)
                stoch = torch.where(m, init_flat.to(stoch.dtype), stoch)
            deter = self._deter_step(deter, stoch, act_proj[i], lin)
            logp = self._post_logprobs(deter, embed_proj[i], lin)
            onehot = sample_onehot(logp, noise[i]) if noise is not None else mode_onehot(logp)
            stoch = onehot.flatten(-2)
            deters.append(deter)
            stochs.append(onehot)
            logits.append(logp)
        deter_bt = torch.stack(deters, 1)  # [B,T,D]
        post = State(deter_bt, torch.stack(stochs, 1), torch.stack(logits, 1))
        prior_logits = self.prior_logprobs(deter_bt)  # batched over all T: [B,T,S,K]
        prior_stoch = sample_onehot(prior_logits) if sample else mode_onehot(prior_logits)
        return post, State(deter_bt, prior_stoch, prior_logits)

    def imagine(self, start: State, actions: Tensor | None = None,
                policy: Callable[[State], Tensor] | None = None, horizon: int | None = None,
                sample: bool = True, last_only: bool = False) -> State:
        """Roll the prior forward from ``start [B]``; returns the states after each step ``[B,H]`` (only the
        last, ``[B]``, with ``last_only``: a policy that sees every state can keep what it needs of them).

        Either ``actions [B,H,A]`` (``actions[:, h]`` is chosen in the state before step ``h``; width 0
        for action-free models), or a ``policy(state [B]) -> [B,A]`` with ``horizon`` steps (an
        action-free model never consults it).
        """
        if (actions is None) == (policy is None):
            raise ValueError("imagine needs exactly one of actions [B,H,A] or policy with horizon")
        steps = actions.shape[1] if actions is not None else horizon
        if steps is None or steps < 1:
            raise ValueError(f"imagine needs a horizon of at least 1 step, got {steps}")
        act_proj: list[Tensor | None] = [None] * steps
        if actions is not None and self.action_in is not None:
            act_proj = list(self.action_in(actions).unbind(1))  # H×[B,Hd], all steps at once
        b = start.deter.shape[0]
        noise = None
        if sample:
            noise = torch.rand(b, steps, self.num_stoch, device=start.deter.device).unbind(1)
        state, out = start, []
        lin = self._loop_linears(start.deter, posterior=False)
        for h in range(steps):
            proj = act_proj[h]
            if policy is not None and self.action_in is not None:
                proj = self.action_in(policy(state))
            deter = self._deter_step(state.deter, state.stoch.flatten(-2), proj, lin)
            logits = self.prior_logprobs(deter, lin)
            stoch = sample_onehot(logits, noise[h]) if noise is not None else mode_onehot(logits)
            state = State(deter, stoch, logits)
            if not last_only:
                out.append(state)
        return state if last_only else State.stack(out, 1)
