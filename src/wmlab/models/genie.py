"""Genie: a generative interactive environment learned from video (video tokenizer, latent action model,
MaskGIT dynamics), with actions inferred from frames or, in the guided variant, given.

Shapes: B batch, T frames, N tokens per frame, H×W×C image (uint8 in batches, any size the patch divides).
``action[t]`` is the action taken after frame ``t`` (the episode schema): it leads from frame ``t`` to
``t+1``, so frame ``t`` is generated from the action ``action[t-1]``.

One :class:`Genie` module holds the three parts; ``stage`` picks which one :meth:`Genie.loss` trains (the
others stay frozen in eval mode), so a run's checkpoint is always the whole, self-contained model.

- :class:`VideoTokenizer` — ST-transformer encoder/decoder over patches with a VQ bottleneck: frames ↔
  discrete tokens ``[B,T,N]``.
- :class:`LatentActionModel` — infers a code in ``0…codes-1`` (default 8) for each transition from the two
  frames (and the past), trained so that a decoder given the past frames and the code reconstructs the next
  frame. The codes come from real frames at evaluation too.
- :class:`Dynamics` — MaskGIT over tokens: training masks a random 50–100 % of each frame's tokens and
  predicts them from the past and the action; generation fills a frame in ``steps`` iterations at a given
  temperature (every iteration runs, see :attr:`Dynamics.iterations`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmlab.models.config import doc
from wmlab.nn.blocks import LayerNorm
from wmlab.nn.st import FrameCache, STTransformer, VectorQuantizer, cosine_schedule, patchify, unpatchify

STAGES = ("tokenizer", "lam", "dynamics")


@dataclass
class TokenizerConfig:
    width: int = doc(512, "transformer width")
    enc_depth: int = doc(8, "encoder ST blocks")
    dec_depth: int = doc(8, "decoder ST blocks")
    heads: int = doc(8, "attention heads")
    patch: int = doc(4, "patch side in pixels (one token per patch)")
    codes: int = doc(1024, "codebook size")
    code_dim: int = doc(32, "code vector size")
    beta: float = doc(0.25, "commitment loss weight")


@dataclass
class LAMConfig:
    width: int = doc(512, "transformer width")
    enc_depth: int = doc(8, "encoder ST blocks")
    dec_depth: int = doc(8, "decoder ST blocks")
    heads: int = doc(8, "attention heads")
    patch: int = doc(16, "patch side in pixels")
    codes: int = doc(8, "latent actions (codebook size)")
    code_dim: int = doc(32, "latent action vector size")
    beta: float = doc(0.25, "commitment loss weight")


@dataclass
class DynamicsConfig:
    width: int = doc(512, "transformer width")
    depth: int = doc(12, "ST blocks")
    heads: int = doc(8, "attention heads")
    mask_min: float = doc(0.5, "lowest fraction of a frame's tokens masked in training")
    mask_max: float = doc(1.0, "highest fraction of a frame's tokens masked in training")
    steps: int = doc(25, "MaskGIT decoding iterations per generated frame (each one runs)")
    temperature: float = doc(1.0, "sampling temperature (0: most likely token)")
    choice_noise: float = doc(4.5, "Gumbel noise on token confidences, annealed to 0 over the iterations")


@dataclass
class GenieConfig:
    tokenizer: TokenizerConfig = doc(TokenizerConfig(), "video tokenizer")
    lam: LAMConfig = doc(LAMConfig(), "latent action model")
    dynamics: DynamicsConfig = doc(DynamicsConfig(), "MaskGIT dynamics")
    guided: bool = doc(False, "condition the dynamics on the data's real actions (no latent action model)")
    max_frames: int = doc(16, "frames the models attend over (training windows and the generation window)")


def _pixels(image: Tensor) -> Tensor:
    """uint8 ``[...,H,W,C]`` → float in [-0.5, 0.5]."""
    return image.float() / 255.0 - 0.5


class _PatchTransformer(nn.Module):
    """Patch embedding + learned position per patch + ST transformer."""

    def __init__(self, in_dim: int, tokens: int, width: int, depth: int, heads: int) -> None:
        super().__init__()
        self.embed = nn.Linear(in_dim, width)
        self.pos = nn.Parameter(torch.randn(tokens, width) * 0.02)
        self.transformer = STTransformer(width, depth, heads)

    def forward(self, x: Tensor, cache: FrameCache | None = None, commit: bool = False) -> Tensor:
        return self.transformer(self.embed(x) + self.pos, cache, commit)


class VideoTokenizer(nn.Module):
    """Frames ``[B,T,H,W,C]`` ↔ tokens ``[B,T,N]`` (N = H·W / patch²) through an ST-transformer VQ autoencoder."""

    def __init__(self, cfg: TokenizerConfig, image: tuple[int, int, int]) -> None:
        super().__init__()
        self.cfg, self.image = cfg, image
        h, w, c = image
        self.grid = (h // cfg.patch, w // cfg.patch)
        self.tokens = self.grid[0] * self.grid[1]
        self.encoder = _PatchTransformer(cfg.patch ** 2 * c, self.tokens, cfg.width, cfg.enc_depth, cfg.heads)
        self.to_code = nn.Linear(cfg.width, cfg.code_dim)
        self.vq = VectorQuantizer(cfg.codes, cfg.code_dim, cfg.beta)
        self.decoder = _PatchTransformer(cfg.code_dim, self.tokens, cfg.width, cfg.dec_depth, cfg.heads)
        self.to_pixels = nn.Linear(cfg.width, cfg.patch ** 2 * c)

    def quantise(self, image: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """uint8 ``[B,T,H,W,C]`` → (straight-through codes ``[B,T,N,code_dim]``, tokens ``[B,T,N]``, VQ stats)."""
        z = self.to_code(self.encoder(patchify(_pixels(image), self.cfg.patch)))
        return self.vq(z)

    @torch.no_grad()
    def encode(self, image: Tensor) -> Tensor:
        """uint8 ``[B,T,H,W,C]`` → tokens ``[B,T,N]`` (int64)."""
        return self.quantise(image)[1]

    def _pixels_out(self, h: Tensor) -> Tensor:
        return unpatchify(self.to_pixels(h), self.cfg.patch, self.image[:2], self.image[2]) + 0.5

    def decode_codes(self, codes: Tensor, cache: FrameCache | None = None, commit: bool = False) -> Tensor:
        """Code vectors ``[B,T,N,code_dim]`` → frames in [0,1] (float ``[B,T,H,W,C]``, unclamped)."""
        return self._pixels_out(self.decoder(codes, cache, commit))

    @torch.no_grad()
    def decode(self, tokens: Tensor, cache: FrameCache | None = None) -> Tensor:
        """Tokens ``[B,T,N]`` → uint8 frames ``[B,T,H,W,C]``; with a cache, frames after the cached ones."""
        pixels = self.decode_codes(self.vq.lookup(tokens), cache, commit=cache is not None)
        return to_uint8(pixels)

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        image = batch["image"]
        codes, _, stats = self.quantise(image)
        recon = self.decode_codes(codes)
        target = image.float() / 255.0
        mse = (recon.float() - target).pow(2).mean()
        total = mse + stats["commit"]
        return total, {"tokenizer/mse": mse.detach(), "tokenizer/psnr": -10 * torch.log10(mse.detach()),
                       "tokenizer/commit": stats["commit"].detach(),
                       "tokenizer/perplexity": stats["perplexity"].detach(),
                       "tokenizer/codes_used": stats["used"].detach(),
                       "tokenizer/usage": stats["used"].detach() / self.cfg.codes}


def to_uint8(pixels: Tensor) -> Tensor:
    return (pixels.float().clamp(0, 1) * 255 + 0.5).to(torch.uint8)


class LatentActionModel(nn.Module):
    """Infers a discrete latent action for each transition of a clip, from the frames alone.

    The encoder reads patches of every frame; time attention is causal, so the tokens of frame ``t+1`` have
    seen frames ``<= t+1`` and can hold local motion. The action of transition ``t → t+1`` is the change of
    every token from frame ``t`` to ``t+1``, projected and quantised: a difference, so what stays the same
    (the scene) cancels and what changed, and where (the motion), decides the code. The decoder reads the past frames
    ``<= t`` and that action and predicts frame ``t+1``; the small codebook makes the action carry only what
    the past cannot explain.
    """

    def __init__(self, cfg: LAMConfig, image: tuple[int, int, int]) -> None:
        super().__init__()
        self.cfg, self.image = cfg, image
        h, w, c = image
        tokens = (h // cfg.patch) * (w // cfg.patch)
        self.encoder = _PatchTransformer(cfg.patch ** 2 * c, tokens, cfg.width, cfg.enc_depth, cfg.heads)
        self.to_action = nn.Sequential(nn.Flatten(-2), LayerNorm(tokens * cfg.width),
                                       nn.Linear(tokens * cfg.width, cfg.code_dim))
        self.vq = VectorQuantizer(cfg.codes, cfg.code_dim, cfg.beta)
        self.decoder = _PatchTransformer(cfg.patch ** 2 * c, tokens, cfg.width, cfg.dec_depth, cfg.heads)
        self.action_in = nn.Linear(cfg.code_dim, cfg.width)
        self.to_pixels = nn.Linear(cfg.width, cfg.patch ** 2 * c)

    def quantise(self, image: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """uint8 ``[B,T,H,W,C]`` → (action vectors ``[B,T-1,code_dim]``, codes ``[B,T-1]``, VQ stats)."""
        if image.shape[1] < 2:
            raise ValueError(f"the latent action model needs clips of at least 2 frames, got {image.shape[1]}")
        h = self.encoder(patchify(_pixels(image), self.cfg.patch))  # [B,T,N,width]
        return self.vq(self.to_action(h[:, 1:] - h[:, :-1]))

    @torch.no_grad()
    def infer(self, image: Tensor) -> Tensor:
        """Latent action codes of the transitions of real frames: uint8 ``[B,T,H,W,C]`` → int64 ``[B,T-1]``."""
        return self.quantise(image)[1]

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        image = batch["image"]
        actions, codes, stats = self.quantise(image)
        past = patchify(_pixels(image[:, :-1]), self.cfg.patch)
        h = self.decoder.transformer(self.decoder.embed(past) + self.decoder.pos + self.action_in(actions)[:, :, None])
        pred = unpatchify(self.to_pixels(h), self.cfg.patch, self.image[:2], self.image[2]) + 0.5
        target = image[:, 1:].float() / 255.0
        mse = (pred.float() - target).pow(2).mean()
        return mse + stats["commit"], {"lam/mse": mse.detach(), "lam/psnr": -10 * torch.log10(mse.detach()),
                                       "lam/commit": stats["commit"].detach(),
                                       "lam/perplexity": stats["perplexity"].detach(),
                                       "lam/codes_used": stats["used"].detach()}


class Dynamics(nn.Module):
    """MaskGIT transformer over tokens ``[B,T,N]`` conditioned on one action id per frame.

    Vocabulary: ``codes`` tokens plus a mask token. Actions: ``num_actions`` ids (latent codes or real
    actions) plus a "none" id for a clip's first frame, whose predecessor is unknown.
    """

    def __init__(self, cfg: DynamicsConfig, codes: int, tokens: int, num_actions: int) -> None:
        super().__init__()
        self.cfg, self.codes, self.tokens, self.num_actions = cfg, codes, tokens, num_actions
        self.mask_id = codes
        self.token_embed = nn.Embedding(codes + 1, cfg.width)
        self.action_embed = nn.Embedding(num_actions + 1, cfg.width)
        self.pos = nn.Parameter(torch.randn(tokens, cfg.width) * 0.02)
        self.transformer = STTransformer(cfg.width, cfg.depth, cfg.heads)
        self.head = nn.Linear(cfg.width, codes)
        self.iterations = 0  # MaskGIT iterations run by the last generation call

    def frame_actions(self, actions: Tensor, frames: int) -> Tensor:
        """Actions ``[B,K]`` (``action[t]``: frame t → t+1) → the id conditioning each of ``frames`` frames."""
        if actions.shape[1] < frames - 1:
            raise ValueError(f"{frames} frames need {frames - 1} actions, got {actions.shape[1]}")
        none = actions.new_full((actions.shape[0], 1), self.num_actions)
        ids = torch.cat([none, actions[:, :frames - 1].long()], 1)
        if ((ids < 0) | (ids > self.num_actions)).any():
            raise ValueError(f"action ids must be in [0, {self.num_actions - 1}]")
        return ids

    def forward(self, tokens: Tensor, action_ids: Tensor, cache: FrameCache | None = None,
                commit: bool = False) -> Tensor:
        """Tokens ``[B,T,N]`` (mask id where unknown), per-frame action ids ``[B,T]`` → logits ``[B,T,N,codes]``."""
        x = self.token_embed(tokens) + self.pos + self.action_embed(action_ids)[:, :, None]
        return self.head(self.transformer(x, cache, commit))

    def loss(self, tokens: Tensor, action_ids: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        b, t, n = tokens.shape
        ratio = torch.empty(b, t, 1, device=tokens.device).uniform_(self.cfg.mask_min, self.cfg.mask_max)
        mask = torch.rand(b, t, n, device=tokens.device) < ratio
        mask[:, 0] = False  # the first frame is the prompt: always seen
        logits = self(torch.where(mask, self.mask_id, tokens), action_ids)
        ce = F.cross_entropy(logits.float().reshape(-1, self.codes), tokens.reshape(-1), reduction="none")
        weight = mask.reshape(-1).float()
        loss = (ce * weight).sum() / weight.sum().clamp_min(1.0)
        correct = (logits.argmax(-1) == tokens).reshape(-1).float()
        accuracy = (correct * weight).sum() / weight.sum().clamp_min(1.0)
        return loss, {"dynamics/ce": loss.detach(), "dynamics/accuracy": accuracy.detach()}

    def _fill(self, logits_of: Any, tokens: Tensor, masked: Tensor, steps: int, temperature: float,
              generator: torch.Generator | None) -> Tensor:
        """MaskGIT: fill the ``masked`` positions of ``tokens`` ``[B,M]`` in ``steps`` iterations.

        Each iteration samples every masked position (temperature; 0 = most likely), keeps the most confident
        and re-masks the rest so that a cos(π/2 · i/steps) fraction stays masked after iteration ``i``.
        """
        if steps < 1:
            raise ValueError(f"MaskGIT steps must be >= 1, got {steps}")
        total = int(masked[0].sum())
        tokens = torch.where(masked, self.mask_id, tokens)
        for i in range(steps):
            self.iterations += 1
            logits = logits_of(tokens).float()
            if temperature > 0:
                probs = torch.softmax(logits / temperature, -1)
                flat = probs.reshape(-1, self.codes)
                sampled = torch.multinomial(flat, 1, generator=generator).reshape(masked.shape)
            else:
                probs = torch.softmax(logits, -1)
                sampled = logits.argmax(-1)
            confidence = probs.gather(-1, sampled[..., None])[..., 0].clamp_min(1e-20).log()
            noise_scale = self.cfg.choice_noise * (1 - (i + 1) / steps)
            if noise_scale > 0 and temperature > 0:
                u = torch.rand(confidence.shape, generator=generator, device=confidence.device)
                confidence = confidence - noise_scale * torch.log(-torch.log(u.clamp(1e-20, 1 - 1e-7)))
            tokens = torch.where(masked, sampled, tokens)
            remain = min(math.floor(total * cosine_schedule(i + 1, steps)), int(masked[0].sum()) - 1)
            if remain <= 0:
                masked = torch.zeros_like(masked)
                continue
            confidence = torch.where(masked, confidence, torch.inf)
            lowest = confidence.topk(remain, -1, largest=False).indices
            masked = torch.zeros_like(masked).scatter_(-1, lowest, True)
            tokens = torch.where(masked, self.mask_id, tokens)
        return tokens

    @torch.no_grad()
    def next_frame(self, cache: FrameCache, action_id: Tensor, steps: int, temperature: float,
                   generator: torch.Generator | None = None) -> Tensor:
        """Generate the frame after the cached ones, given the action id ``[B]`` leading into it → tokens ``[B,N]``;
        the finished frame is committed to the cache."""
        b = action_id.shape[0]
        ids = action_id.long()[:, None]
        tokens = torch.full((b, self.tokens), self.mask_id, dtype=torch.long, device=action_id.device)
        masked = torch.ones_like(tokens, dtype=torch.bool)
        out = self._fill(lambda tok: self(tok[:, None], ids, cache)[:, 0], tokens, masked, steps, temperature,
                         generator)
        self(out[:, None], ids, cache, commit=True)
        return out

    @torch.no_grad()
    def fill_clip(self, tokens: Tensor, action_ids: Tensor, known: int, steps: int, temperature: float,
                  generator: torch.Generator | None = None) -> Tensor:
        """One pass over a whole clip: frames ``>= known`` of ``tokens`` ``[B,T,N]`` are generated together,
        MaskGIT iterating over all their tokens at once → tokens ``[B,T,N]``."""
        b, t, n = tokens.shape
        masked = torch.zeros(b, t, n, dtype=torch.bool, device=tokens.device)
        masked[:, known:] = True
        out = self._fill(lambda tok: self(tok.reshape(b, t, n), action_ids).reshape(b, t * n, -1),
                         tokens.reshape(b, t * n), masked.reshape(b, t * n), steps, temperature, generator)
        return out.reshape(b, t, n)


class Genie(nn.Module):
    """Tokenizer + latent action model (unless guided) + dynamics; ``stage`` picks what :meth:`loss` trains."""

    def __init__(self, cfg: GenieConfig, spec: dict[str, Any], stage: str = "tokenizer") -> None:
        super().__init__()
        self.cfg = cfg
        image = tuple(int(v) for v in spec["image"])
        self.image = image
        for name, patch in (("tokenizer", cfg.tokenizer.patch), ("lam", cfg.lam.patch)):
            if image[0] % patch or image[1] % patch:
                raise ValueError(f"images of {image[0]}x{image[1]} are not divisible by model.{name}.patch={patch}; "
                                 f"choose a patch that divides both sides")
        self.tokenizer = VideoTokenizer(cfg.tokenizer, image)
        if cfg.guided:
            if not spec.get("action_discrete") or not spec.get("num_actions"):
                raise ValueError("model.guided=true needs discrete actions in the data (e.g. procgen episodes "
                                 "with 'action' [T] ids); this data has none: train with guided=false")
            self.lam = None
            num_actions = int(spec["num_actions"])
        else:
            self.lam = LatentActionModel(cfg.lam, image)
            num_actions = cfg.lam.codes
        self.num_actions = num_actions
        self.dynamics = Dynamics(cfg.dynamics, cfg.tokenizer.codes, self.tokenizer.tokens, num_actions)
        self.stage = ""
        self.set_stage(stage)

    def set_stage(self, stage: str) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown Genie stage {stage!r}; choose from {', '.join(STAGES)}")
        if stage == "lam" and self.lam is None:
            raise ValueError("a guided Genie has no latent action model to train (stage=lam); "
                             "its dynamics use the real actions")
        self.stage = stage
        for name, part in self.parts().items():
            part.requires_grad_(name == stage)
        self.train(self.training)

    def parts(self) -> dict[str, nn.Module]:
        parts = {"tokenizer": self.tokenizer, "dynamics": self.dynamics}
        if self.lam is not None:
            parts["lam"] = self.lam
        return parts

    def train(self, mode: bool = True) -> "Genie":
        """Only the part being trained is in training mode: frozen parts never update their codebooks."""
        super().train(mode)
        for name, part in self.parts().items():
            part.train(mode and name == self.stage)
        return self

    def actions_of(self, batch: dict[str, Tensor]) -> Tensor:
        """The per-transition action ids ``[B,T-1]`` the dynamics are conditioned on: the data's actions
        (guided) or the latent actions inferred from the frames."""
        if self.lam is None:
            if "action" not in batch:
                raise ValueError("a guided Genie needs 'action' in the batch")
            action = batch["action"][:, :-1].long()
            if action.min() < 0 or action.max() >= self.num_actions:
                raise ValueError(f"action ids outside [0, {self.num_actions - 1}] in the batch")
            return action
        return self.lam.infer(batch["image"])

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        if self.stage == "tokenizer":
            return self.tokenizer.loss(batch)
        if self.stage == "lam":
            return self.lam.loss(batch)
        image = batch["image"]
        tokens = self.tokenizer.encode(image)
        action_ids = self.dynamics.frame_actions(self.actions_of(batch), image.shape[1])
        return self.dynamics.loss(tokens, action_ids)

    @torch.no_grad()
    def generate(self, prompt: Tensor, actions: Tensor, method: str = "autoregressive", steps: int | None = None,
                 temperature: float | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Frames that follow ``prompt`` (uint8 ``[B,P,H,W,C]``) under ``actions`` ``[B,P-1+K]`` (``actions[i]``
        leads from frame i to i+1; the first ``P-1`` are the prompt's own) → uint8 ``[B,K,H,W,C]``.

        ``autoregressive`` generates frame by frame (each fully decoded before the next, any length, the
        attention window sliding over the last ``max_frames``); ``one_go`` generates all ``K`` frames in one
        MaskGIT pass over the clip (``P + K <= max_frames``).
        """
        steps = self.cfg.dynamics.steps if steps is None else int(steps)
        temperature = self.cfg.dynamics.temperature if temperature is None else float(temperature)
        p, total = prompt.shape[1], actions.shape[1] + 1
        k = total - p
        if k < 1:
            raise ValueError(f"{p} prompt frames and {actions.shape[1]} actions generate nothing: pass "
                             f"{p - 1} prompt actions plus one per frame to generate")
        if actions.max() >= self.num_actions or actions.min() < 0:
            raise ValueError(f"action ids must be in [0, {self.num_actions - 1}]")
        self.dynamics.iterations = 0
        tokens = self.tokenizer.encode(prompt)
        if method == "one_go":
            if total > self.cfg.max_frames:
                raise ValueError(f"one_go generates a clip of at most max_frames={self.cfg.max_frames} frames; "
                                 f"asked for {total}: use method=autoregressive")
            ids = self.dynamics.frame_actions(actions, total)
            clip = torch.cat([tokens, tokens.new_full((tokens.shape[0], k, tokens.shape[2]),
                                                      self.dynamics.mask_id)], 1)
            clip = self.dynamics.fill_clip(clip, ids, p, steps, temperature, generator)
            return self.tokenizer.decode(clip)[:, p:]
        if method != "autoregressive":
            raise ValueError(f"unknown generation method {method!r}; use autoregressive or one_go")
        stream = GenieStream(self, steps, temperature, generator)
        stream.start(prompt, actions[:, :p - 1], tokens)
        return torch.stack([stream.step(actions[:, p - 1 + i]) for i in range(k)], 1)


class GenieStream:
    """Frame-by-frame generation with cached attention: the engine of autoregressive generation and play."""

    def __init__(self, model: Genie, steps: int, temperature: float, generator: torch.Generator | None = None):
        self.model, self.steps, self.temperature, self.generator = model, steps, temperature, generator
        window = model.cfg.max_frames
        self.dynamics_cache = FrameCache(window)
        self.decoder_cache = FrameCache(window)

    @torch.no_grad()
    def start(self, prompt: Tensor, actions: Tensor, tokens: Tensor | None = None) -> Tensor:
        """Observe prompt frames uint8 ``[B,P,H,W,C]`` with their ``P-1`` actions; returns their reconstruction."""
        m = self.model
        window = m.cfg.max_frames
        self.dynamics_cache, self.decoder_cache = FrameCache(window), FrameCache(window)
        tokens = m.tokenizer.encode(prompt) if tokens is None else tokens
        ids = m.dynamics.frame_actions(actions, prompt.shape[1])
        m.dynamics(tokens, ids, self.dynamics_cache, commit=True)
        return m.tokenizer.decode(tokens, self.decoder_cache)

    @torch.no_grad()
    def step(self, action: Tensor) -> Tensor:
        """Action ids ``[B]`` → the next frame, uint8 ``[B,H,W,C]``."""
        if int(action.min()) < 0 or int(action.max()) >= self.model.num_actions:
            raise ValueError(f"action ids must be in [0, {self.model.num_actions - 1}], got {action.tolist()}")
        tokens = self.model.dynamics.next_frame(self.dynamics_cache, action, self.steps, self.temperature,
                                                self.generator)
        return self.model.tokenizer.decode(tokens[:, None], self.decoder_cache)[:, 0]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
