"""PreLAR's learnable latent actions as an action input (``action_input=prelar``).

Paper: Zhang et al., "PreLAR: World Model Pre-training with Learnable Action Representation", ECCV 2024.
Action-free video is pretrained with an action-conditioned RSSM whose "action" is a latent action ``z_t``
inferred by a latent action model (LAM) from the frame pair ``(o_t, o_{t+1})``. When the data has real
actions (fine-tuning), an action encoder maps them into the same latent-action space, and an alignment loss
pulls the encoded actions onto the (reused, pretrained, detached) LAM's inferred latent actions.

The LAM learns with the world-model loss (pretraining: its ``z`` is the RSSM's action input) and with an
InfoNCE loss that makes each ``z_t`` pick out its own transition among the others of the batch: queries are
a projection of ``z_t``, keys a projection of the frame-embedding change ``e_{t+1} - e_t``, cosine
similarities over a temperature, cross-entropy (both directions) with the matching transition as positive.
Unlike the original code's ``sign()``-based loss, its gradient is real and reaches every LAM parameter.
One deliberate difference from the published method: the contrastive keys are the LAM's own frame-embedding
changes (the paper ties latent-action differences to differences of the RSSM's prior). The continuous latent
action is by default deterministic and ``tanh``-bounded; ``latent_action.kl > 0`` makes it PreLAR's Gaussian
with a KL bottleneck toward N(0, 1) (``latent_action_kl``), and ``latent_action.codes`` a discrete one.

Latent actions are continuous (``tanh`` of the LAM's output) or, with ``latent_action.codes=N``, discrete:
the output is quantised to the nearest of ``N`` unit-norm codes (EMA codebook, straight-through gradient,
a commitment loss ``latent_action_commit``), and encoded real actions are unit-norm vectors aligned to them.

The mode follows the data spec at construction: actions in the spec → fine-tuning, none → pretraining.
By default the LAM keeps learning at fine-tuning (InfoNCE on the new task's frames; the alignment target is
detached). ``latent_action.freeze=true`` fixes it instead: its parameters take no gradient, it runs in eval mode
(the Gaussian's mean, a still codebook), so it builds no graph, and only the alignment term remains.
The LAM's parameters (``lam.*``) are named identically in both modes, so a pretrained checkpoint's LAM
loads into a fine-tuning model; ``action_encoder.*`` exists only in fine-tuning mode.

Alignment with the episode schema: row ``t`` drives ``o_t → o_{t+1}``. The last row of a window has no
next frame, and a row whose next frame starts a new episode (``is_first[t+1]``) has no real transition:
the LAM gives those rows zeros and the losses skip them.

Shape legend: ``B`` batch, ``T`` time, ``H,W,C`` image, ``E`` frame embedding, ``D`` latent action width
(``dim``), ``A`` raw action size, ``N`` transitions in the contrastive batch.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmlab.models.actions import ACTION_INPUTS, ActionInput, BatchError, _batch_shape
from wmlab.models.config import WorldModelConfig
from wmlab.nn.blocks import MLP, ConvEncoder, compute_dtype
from wmlab.nn.st import VectorQuantizer

MAX_NCE = 512  # transitions in one InfoNCE batch; larger batches are subsampled


class LatentActionModel(nn.Module):
    """Frames ``[B,T,H,W,C]`` → latent actions ``[B,T,D]`` (zeros on rows without a next frame), plus the
    query/key projections of the contrastive loss."""

    def __init__(self, cfg: WorldModelConfig, image: tuple[int, int, int]) -> None:
        super().__init__()
        la, c = cfg.latent_action, cfg.cnn
        self.frames = ConvEncoder(image, la.depth, (), c.kernel, c.min_res, cfg.norm, cfg.act)
        e = self.frames.out_dim
        self.gaussian = la.kl > 0 and la.codes == 0
        self.infer = MLP(2 * e, 2 * la.dim if self.gaussian else la.dim, la.layers, la.units, cfg.norm, cfg.act)
        self.query = MLP(la.dim, la.units, 1, la.units, cfg.norm, cfg.act)
        self.key = MLP(e, la.units, 1, la.units, cfg.norm, cfg.act)
        self.dim = la.dim
        self.vq = VectorQuantizer(la.codes, la.dim, la.beta) if la.codes > 0 else None

    def embed(self, image: Tensor) -> Tensor:
        """uint8 ``[B,T,H,W,C]`` → ``[B,T,E]`` (every frame once)."""
        lead = image.shape[:-3]
        x = image.reshape(-1, *image.shape[-3:]).to(compute_dtype(image))
        x = (x - 127.5) * (1.0 / 255.0)  # out of place: never writes into the batch
        return self.frames(x).reshape(*lead, -1)

    def latent(self, embed: Tensor, valid: Tensor) -> tuple[Tensor, Tensor | None]:
        """Embeddings ``[B,T,E]`` and transition mask ``[B,T-1]`` → latent actions ``[B,T,D]`` (float32) and
        their regulariser: the commitment loss of discrete latent actions, the KL to N(0, 1) of Gaussian ones
        (mean over real transitions; scalar), ``None`` for tanh-bounded ones."""
        cur, nxt = embed[:, :-1], embed[:, 1:]
        out = self.infer(torch.cat([cur, nxt - cur], -1)).float()  # [B,T-1,D] (or 2D: mean, log-std)
        commit = None
        mask = valid.unsqueeze(-1).to(out.dtype)
        if self.gaussian:
            mean, log_std = out.chunk(2, -1)
            log_std = log_std.clamp(-5.0, 2.0)
            z = mean + log_std.exp() * torch.randn_like(mean) if self.training else mean
            z = z * mask
            kl = 0.5 * (mean.pow(2) + (2 * log_std).exp() - 1.0 - 2 * log_std).sum(-1)  # [B,T-1]
            commit = (kl * mask[..., 0]).sum() / mask.sum().clamp(min=1.0)
        elif self.vq is None:
            z = torch.tanh(out) * mask
        else:  # only real transitions are quantised and move the codebook
            z = out.new_zeros(out.shape)
            if bool(valid.any()):
                z[valid], _, stats = self.vq(out[valid])
                commit = stats["commit"]
            else:
                commit = out.sum() * 0.0
        return torch.cat([z, z.new_zeros(z.shape[0], 1, z.shape[-1])], 1), commit

    def nce(self, embed: Tensor, z: Tensor, valid: Tensor, temperature: float) -> Tensor:
        """InfoNCE over the valid transitions of the batch (scalar, float32): ``z_t`` must identify
        ``e_{t+1} - e_t`` among the others, and vice versa."""
        delta = (embed[:, 1:] - embed[:, :-1])[valid]  # [N,E]
        zq = z[:, :-1][valid]  # [N,D]
        n = delta.shape[0]
        if n < 2:  # nothing to contrast against; keep the graph connected
            return (zq.sum() + delta.sum()).float() * 0.0
        if n > MAX_NCE:
            pick = torch.randperm(n, device=delta.device)[:MAX_NCE]
            delta, zq, n = delta[pick], zq[pick], MAX_NCE
        q = F.normalize(self.query(zq).float(), dim=-1)
        k = F.normalize(self.key(delta).float(), dim=-1)
        logits = q @ k.t() / temperature  # [N,N]
        target = torch.arange(n, device=logits.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


@ACTION_INPUTS.register("prelar")
class LatentActions(ActionInput):
    """Latent actions inferred from frames (pretraining) or encoded from real actions (fine-tuning)."""

    def __init__(self, cfg: WorldModelConfig, spec: dict[str, Any]) -> None:
        super().__init__(cfg, spec)
        la = cfg.latent_action
        if la.dim <= 0:
            raise ValueError(f"latent_action.dim={la.dim} must be positive")
        if la.codes < 0 or la.codes == 1:
            raise ValueError(f"latent_action.codes={la.codes} must be 0 (continuous latent actions) or at least 2")
        if la.temperature <= 0:
            raise ValueError(f"latent_action.temperature={la.temperature} must be positive")
        if spec.get("image") is None:
            raise ValueError("action_input=prelar infers latent actions from frames, but the data spec has no image")
        h, w, c = (int(v) for v in spec["image"])
        self.dim = la.dim
        self.scale_nce, self.scale_align, self.temperature = la.contrastive, la.align, la.temperature
        self.kl_scale = la.kl
        if la.kl < 0:
            raise ValueError(f"latent_action.kl={la.kl} must be >= 0")
        self.lam = LatentActionModel(cfg, (h, w, c))
        self.discrete = bool(spec.get("action_discrete"))
        if self.discrete and not spec.get("num_actions"):
            raise ValueError("the data spec has discrete actions but no num_actions")
        size = spec.get("num_actions") if self.discrete else spec.get("action_dim")
        self.action_size = int(size) if size else 0
        self.finetune = self.action_size > 0
        self.action_encoder: MLP | None = None
        if self.finetune:
            self.action_encoder = MLP(self.action_size, la.dim, la.layers, la.units, cfg.norm, cfg.act)
        self.frozen = bool(la.freeze)
        if self.frozen and not self.finetune:
            raise ValueError("latent_action.freeze=true fixes the latent action model at fine-tuning, but the data "
                             "spec has no actions (pretraining), where that model is what learns; leave it false "
                             "to pretrain")
        if self.frozen:
            self.lam.requires_grad_(False)
            self.lam.eval()
        self._cache: tuple[tuple[Any, ...], Tensor, Tensor, Tensor, Tensor | None] | None = None

    def train(self, mode: bool = True) -> "LatentActions":
        super().train(mode)
        if self.frozen:
            self.lam.eval()  # a fixed LAM: deterministic latent actions, a codebook that does not move
        return self

    def __getstate__(self) -> dict[str, Any]:
        # The cache holds a weak reference and non-leaf tensors: never copy or pickle it.
        state = dict(super().__getstate__())
        state["_cache"] = None
        return state

    # ------------------------------------------------------------------------------------ latent actions
    def _key(self, image: Tensor) -> tuple[Any, ...]:
        dev = image.device.type
        autocast = torch.is_autocast_enabled(dev)
        return (weakref.ref(image), image._version, torch.is_grad_enabled(), self.training, autocast,
                torch.get_autocast_dtype(dev) if autocast else None,
                tuple(p._version for p in self.lam.parameters()))

    def infer(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """``(z [B,T,D], embed [B,T,E], valid [B,T-1])`` of the batch's frames; reuses the last result when
        called again on the same (unmodified) image tensor under the same grad/autocast mode (so a discrete
        codebook moves once per batch)."""
        z, embed, valid, _ = self._infer(batch)
        return z, embed, valid

    def _infer(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        if "image" not in batch:
            raise BatchError("batch has no 'image' key; action_input=prelar infers latent actions from frames")
        image = batch["image"]
        if image.dim() != 5:
            raise BatchError(f"batch 'image' has shape {tuple(image.shape)}; expected [B,T,H,W,C]")
        key = self._key(image)
        if self._cache is not None:
            old, *result = self._cache
            if old[0]() is image and old[1:] == key[1:]:
                return tuple(result)  # type: ignore[return-value]
        b, t = image.shape[:2]
        valid = torch.ones(b, max(t - 1, 0), dtype=torch.bool, device=image.device)
        if "is_first" in batch:  # o_{t+1} starting a new episode is no successor of o_t
            valid = valid & ~batch["is_first"][:, 1:].to(device=image.device, dtype=torch.bool)
        embed = self.lam.embed(image)  # a fixed LAM (no parameter requires grad) builds no graph here
        z, commit = self.lam.latent(embed, valid)
        self._cache = (key, z, embed, valid, commit)
        return z, embed, valid, commit

    def encode(self, action: Tensor) -> Tensor:
        """Real actions → latent actions ``[..., D]``: continuous ``[..., A]``; discrete as int indices
        ``[...]`` or one-hot/probabilities float ``[..., num_actions]``."""
        if self.action_encoder is None:
            raise BatchError("action_input=prelar is in pretraining mode (the data spec has no actions), so it "
                             "has no action encoder and cannot encode real actions; build the model with a "
                             "spec that has actions to fine-tune")
        if self.discrete:
            if action.is_floating_point():
                if action.shape[-1] != self.action_size:
                    raise BatchError(f"float discrete action has last dim {action.shape[-1]}; expected one-hot "
                                     f"[..., {self.action_size}] (or int indices)")
                x = action
            else:
                x = F.one_hot(action.long(), self.action_size)
        else:
            if action.shape[-1] != self.action_size:
                raise BatchError(f"action has {action.shape[-1]} dims but the model was built for "
                                 f"{self.action_size}")
            x = action
        out = self.action_encoder(x.float()).float()
        if self.lam.vq is not None:
            return F.normalize(out, dim=-1)  # where the codes live
        return out if self.lam.gaussian else torch.tanh(out)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        if not self.finetune:
            return self.infer(batch)[0]
        if "action" not in batch:
            raise BatchError("batch has no 'action' key, but action_input=prelar was built for a spec with "
                             "actions (fine-tuning); build it from an action-free spec to pretrain")
        action = batch["action"]
        shape = _batch_shape(batch)
        if self.discrete:  # int indices [B,T] or one-hot float [B,T,n]
            ok = action.dim() == 3 or (action.dim() == 2 and not action.is_floating_point())
        else:
            ok = action.dim() == 3
        ok = ok and action.shape[:2] == shape
        if not ok:
            want = f"[B,T] indices or [B,T,{self.action_size}] one-hot" if self.discrete else \
                f"[B,T,{self.action_size}]"
            raise BatchError(f"batch 'action' has shape {tuple(action.shape)}; expected {want}")
        return self.encode(action)

    # --------------------------------------------------------------------------------------------- losses
    def aux_losses(self, batch: dict[str, Tensor]) -> dict[str, tuple[float, Tensor]]:
        z, embed, valid, commit = self._infer(batch)
        self._cache = None  # consumed: do not keep the graph alive past the loss
        terms: dict[str, tuple[float, Tensor]] = {}
        if not self.frozen:
            terms["latent_action_nce"] = (self.scale_nce, self.lam.nce(embed, z, valid, self.temperature))
            if commit is not None and self.lam.gaussian:
                terms["latent_action_kl"] = (self.kl_scale, commit)
            elif commit is not None:
                terms["latent_action_commit"] = (1.0, commit)  # β is inside
        if self.finetune and "action" in batch:
            action = batch["action"][:, :-1]
            err = (self.encode(action) - z[:, :-1].detach()).pow(2).mean(-1)  # [B,T-1]
            mask = valid.to(err.dtype)
            terms["latent_action_align"] = (self.scale_align, (err * mask).sum() / mask.sum().clamp(min=1.0))
        return terms
