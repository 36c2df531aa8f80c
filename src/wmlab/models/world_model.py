"""The DreamerV3 world model: frame codec + RSSM + reward/continue heads, with its training loss.

Paper: Hafner et al., "Mastering Diverse Domains through World Models", https://arxiv.org/abs/2301.04104.
How actions enter (``action_input``) and how frames are encoded/decoded (``codec``) are plug points
chosen by name (:mod:`wmlab.models.actions`, :mod:`wmlab.models.codecs`), so action-free pretraining,
latent actions and contextualised decoders are configs of this one class.

Batch (dict of tensors, leading ``[B,T]``): ``image`` uint8 ``[B,T,H,W,C]``, ``is_first`` bool; optional
``action`` (per the action plug), ``reward`` float, ``is_terminal`` bool, ``proprio`` float ``[B,T,P]``.
The reward and continue losses apply only when their keys are present.

Shape legend: ``B`` batch, ``T`` time, ``H,W,C`` image, ``E`` embedding, ``A`` action input width,
``F`` features (deter + stoch·classes), ``P`` proprio, ``N`` reward bins.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
from torch import Tensor, nn

from wmlab.config import check_choices
from wmlab.models.actions import ACTION_INPUTS, ActionInput, BatchError
from wmlab.models.codecs import CODECS, FrameCodec, codec_spec
from wmlab.models.config import WorldModelConfig
from wmlab.models.rssm import RSSM, State
from wmlab.nn.blocks import MLP
from wmlab.nn.dists import (
    TwoHot,
    bernoulli_nll,
    categorical_entropy,
    kl_balance,
    mse_sum,
    symlog,
)


class WorldModel(nn.Module):
    """RSSM world model; ``spec`` is the data store's spec (image size, action and proprio sizes)."""

    def __init__(self, cfg: WorldModelConfig, spec: dict[str, Any]) -> None:
        super().__init__()
        check_choices(cfg)  # reward_loss, encoder kinds, ... of a config built in Python
        self.cfg = cfg
        self.spec = dict(spec)
        self.image_shape = codec_spec(spec, cfg)
        r = cfg.rssm
        feat_dim = r.deter + r.stoch * r.classes
        self.actions: ActionInput = ACTION_INPUTS.get(cfg.action_input)(cfg, spec)
        self.codec: FrameCodec = CODECS.get(cfg.codec)(cfg, self.image_shape, feat_dim)
        embed_dim = self.codec.embed_dim
        self.proprio_enc: MLP | None = None
        self.proprio_dec: MLP | None = None
        if cfg.proprio:
            p = spec.get("proprio_dim")
            if not p:
                raise ValueError("proprio=true but the data spec has no proprio vector; set proprio=false")
            m = cfg.proprio_mlp
            self.proprio_enc = MLP(int(p), None, m.layers, m.units, cfg.norm, cfg.act)
            self.proprio_dec = MLP(feat_dim, int(p), m.layers, m.units, cfg.norm, cfg.act)
            embed_dim += self.proprio_enc.out_dim
        # APV: an action-free RSSM reads the frame embeddings; the action-conditioned RSSM reads its features.
        self.af_rssm: RSSM | None = RSSM(r, embed_dim, 0, cfg.norm, cfg.act) if cfg.stack else None
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self.last_af_post: State | None = None
        self.rssm = RSSM(r, feat_dim if cfg.stack else embed_dim, self.actions.dim, cfg.norm, cfg.act)
        h = cfg.heads
        self.twohot = TwoHot(cfg.reward_bins, cfg.reward_low, cfg.reward_high)
        reward_out = cfg.reward_bins if cfg.reward_loss == "twohot" else 1
        self.reward_head = MLP(feat_dim, reward_out, h.layers, h.units, cfg.norm, cfg.act, out_scale=0.0)
        self.cont_head = MLP(feat_dim, 1, h.layers, h.units, cfg.norm, cfg.act, out_scale=1.0)
        self.feat_dim = feat_dim
        self.embed_dim = embed_dim

    # ------------------------------------------------------------------------------------ public parts
    def check_batch(self, batch: dict[str, Tensor]) -> None:
        """Raise :class:`BatchError` naming the key when the batch does not fit this model."""
        for key in ("image", "is_first"):
            if key not in batch:
                raise BatchError(f"batch has no {key!r} key; the world model needs image and is_first [B,T]")
        image = batch["image"]
        if image.dtype != torch.uint8 or image.dim() != 5 or tuple(image.shape[2:]) != self.image_shape:
            want = ",".join(map(str, self.image_shape))
            raise BatchError(f"batch 'image' is {image.dtype} {tuple(image.shape)}; this model needs uint8 "
                             f"[B,T,{want}] (resize the data or rebuild the model)")
        if self.proprio_enc is not None and "proprio" not in batch:
            raise BatchError("batch has no 'proprio' key but the model was built with proprio=true")

    def embed(self, batch: dict[str, Tensor]) -> Tensor:
        """Frames (and proprio) ``[B,T,...]`` → posterior inputs ``[B,T,E]``."""
        x = self.codec.encode(batch["image"])
        if self.proprio_enc is not None:
            x = torch.cat([x, self.proprio_enc(self._proprio(batch)).to(x.dtype)], -1)
        return x

    def _proprio(self, batch: dict[str, Tensor]) -> Tensor:
        """The proprio vector as the encoder reads it and the decoder predicts it."""
        x = batch["proprio"].float()
        return symlog(x) if self.cfg.proprio_symlog else x

    def observe(self, batch: dict[str, Tensor], state: State | None = None, prev_action: Tensor | None = None,
                sample: bool = True) -> tuple[State, State]:
        """Posterior and prior states ``[B,T]`` of a batch (see :meth:`RSSM.observe`)."""
        self.check_batch(batch)
        post, prior, _ = self._observe(batch, state, prev_action, sample)
        return post, prior

    def _frozen_stack(self) -> bool:
        return self.af_rssm is not None and self.training and int(self.updates) < self.cfg.stack_freeze

    def _observe(self, batch: dict[str, Tensor], state: State | None = None, prev_action: Tensor | None = None,
                 sample: bool = True) -> tuple[State, State, tuple[State, State] | None]:
        """``(post, prior, (af_post, af_prior) or None)``: with APV stacking the frames pass through the
        action-free RSSM first (held fixed, without gradient, for the first ``stack_freeze`` updates)."""
        is_first = batch["is_first"]
        af = None
        if self.af_rssm is None:
            inputs = self.embed(batch)
        else:
            frozen = self._frozen_stack()
            with torch.no_grad() if frozen else contextlib.nullcontext():
                embed = self.embed(batch)
                none = embed.new_zeros(*embed.shape[:2], 0)
                af = self.af_rssm.observe(embed, none, is_first, sample=sample)
            inputs = self.af_rssm.features(af[0])  # made under no_grad while frozen: no gradient flows back
        post, prior = self.rssm.observe(inputs, self.actions(batch), is_first, state, prev_action, sample)
        return post, prior, af

    def initial_carry(self, batch_size: int) -> tuple[State, State | None]:
        """What :meth:`filter_step` carries between env steps, at the start of an episode."""
        af = self.af_rssm.initial(batch_size) if self.af_rssm is not None else None
        return self.rssm.initial(batch_size), af

    def filter_step(self, carry: tuple[State, State | None], prev_action: Tensor, frame: dict[str, Tensor],
                    is_first: Tensor) -> tuple[State, tuple[State, State | None]]:
        """One acting step: the carried states, the previous action input ``[B,A]``, a frame batch
        ``{"image": [B,1,H,W,C], ...}`` and ``is_first [B]`` → posterior ``[B]`` and the new carry."""
        state, af_state = carry
        embed = self.embed(frame)[:, 0]
        if self.af_rssm is not None:
            none = embed.new_zeros(embed.shape[0], 0)
            af_state, _ = self.af_rssm.obs_step(af_state, none, embed, is_first)
            embed = self.af_rssm.features(af_state)
        post, _ = self.rssm.obs_step(state, prev_action, embed, is_first)
        return post, (post, af_state)

    def after_update(self) -> None:
        """Count updates (APV's ``stack_freeze`` reads it)."""
        self.updates += 1

    def imagine(self, start: State, actions: Tensor | None = None,
                policy: Callable[[State], Tensor] | None = None, horizon: int | None = None,
                sample: bool = True, last_only: bool = False) -> State:
        """Open-loop states ``[B,H]`` from ``start [B]`` (see :meth:`RSSM.imagine`)."""
        return self.rssm.imagine(start, actions, policy, horizon, sample, last_only)

    def features(self, state: State) -> Tensor:
        """``[..., F]`` = deter and flattened latents: the input of the heads and of an actor-critic."""
        return self.rssm.features(state)

    def decode(self, features: Tensor, frames: Tensor | None = None) -> Tensor:
        """Features ``[B,T,F]`` → image mean ``[B,T,H,W,C]`` on the [0,1] scale."""
        return self.codec.decode(features, frames)

    def reward(self, features: Tensor) -> Tensor:
        """Predicted reward ``[...]`` for features ``[..., F]``."""
        out = self.reward_head(features)
        if self.cfg.reward_loss == "mse":
            return out.float().squeeze(-1)
        return self.twohot.decode(out)

    def reward_loss(self, features: Tensor, reward: Tensor) -> Tensor:
        """Per-step reward loss ``[...]`` of features ``[..., F]`` against rewards ``[...]``."""
        out = self.reward_head(features)
        if self.cfg.reward_loss == "mse":
            return 0.5 * (out.float().squeeze(-1) - reward.float()) ** 2
        return self.twohot.loss(out, reward)

    def cont(self, features: Tensor) -> Tensor:
        """Predicted probability ``[...]`` that the episode continues after this state."""
        return torch.sigmoid(self.cont_head(features).float().squeeze(-1))

    # --------------------------------------------------------------------------------------- training
    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Scalar training loss and detached scalar metrics for one batch ``[B,T,...]``."""
        loss, metrics, _ = self.loss_and_states(batch)
        return loss, metrics

    def loss_and_states(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor], State]:
        """:meth:`loss` plus the posterior states ``[B,T]`` (start states for imagination training)."""
        self.check_batch(batch)
        frozen = self._frozen_stack()
        post, prior, af = self._observe(batch)
        self.last_af_post = af[0].detach() if af is not None else None  # APV's bonus reads it, frozen or not
        c = self.cfg.loss
        # [B,T] each (scalars with free_avg)
        dyn, rep, kl = kl_balance(post.logits, prior.logits, c.free_nats, c.free_avg)
        if af is not None and not frozen:  # the action-free model keeps learning its own prior
            af_dyn, af_rep, _ = kl_balance(af[0].logits, af[1].logits, c.free_nats, c.free_avg)
            dyn, rep = dyn + af_dyn, rep + af_rep
        feat = self.features(post)  # [B,T,F]
        terms: dict[str, tuple[float, Tensor]] = {}
        image = batch["image"]
        terms["image"] = (c.image, self.codec.loss(self.codec.decode(feat, image), image))
        if self.proprio_dec is not None:
            target = self._proprio(batch)
            terms["proprio"] = (c.proprio, mse_sum(self.proprio_dec(feat), target, 1))
        if "reward" in batch:
            terms["reward"] = (c.reward, self.reward_loss(feat, batch["reward"]))
        if "is_terminal" in batch:
            cont = 1.0 - batch["is_terminal"].float()
            terms["cont"] = (c.cont, bernoulli_nll(self.cont_head(feat).squeeze(-1), cont))
        for plug in (self.actions, self.codec):
            for name, term in plug.aux_losses(batch).items():
                if name in terms:
                    raise ValueError(f"{type(plug).__name__} returns a loss named {name!r}, which the world "
                                     f"model already has")
                terms[name] = term
        means = {name: value.mean() for name, (_, value) in terms.items()}
        total = sum(scale * means[name] for name, (scale, _) in terms.items())
        total = total + c.kl_dyn * dyn.mean() + c.kl_rep * rep.mean()
        metrics = {name: value.detach() for name, value in means.items()}
        metrics.update(
            total=total.detach(), kl_dyn=dyn.mean().detach(), kl_rep=rep.mean().detach(), kl=kl.mean(),
            prior_ent=categorical_entropy(prior.logits.detach()).mean(),
            post_ent=categorical_entropy(post.logits.detach()).mean(),
        )
        return total, metrics, post

    # ------------------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def open_loop(self, batch: dict[str, Tensor], context: int, sample: bool = True) -> dict[str, Tensor]:
        """Observe the first ``context`` frames, then predict the rest from the batch's actions alone.

        Returns ``pred`` and ``truth``, uint8 ``[B,T-context,H,W,C]``. The action chosen after the last
        context frame drives the first prediction, as the schema aligns them.
        """
        self.check_batch(batch)
        steps = batch["image"].shape[1]
        if not 0 < context < steps:
            raise ValueError(f"open_loop context={context} must be between 1 and T-1={steps - 1}")
        seen = {k: v[:, :context] for k, v in batch.items() if torch.is_tensor(v) and v.dim() >= 2}
        action_in = self.actions(batch)  # [B,T,A], schema-aligned
        post, _, _ = self._observe(seen, sample=sample)
        start = post.map(lambda x: x[:, -1])  # state at o_{context-1}
        states = self.rssm.imagine(start, actions=action_in[:, context - 1:steps - 1], sample=sample)
        pred = self.codec.decode(self.features(states), seen["image"])
        return {"pred": FrameCodec.to_uint8(pred), "truth": batch["image"][:, context:].clone()}
