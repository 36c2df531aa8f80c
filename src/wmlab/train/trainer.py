"""One training loop for every model: ``model.loss(batch) -> (loss, metrics)`` in, a trained run_dir out.

The loop owns the device, precision (:mod:`wmlab.train.precision`), AdamW, gradient accumulation and
clipping, a guard that skips updates with a non-finite loss or gradient, DDP under torchrun, logging
(:mod:`wmlab.train.logger`), periodic evaluators and checkpoints with exact resume
(:mod:`wmlab.train.checkpoint`). Constructing a Trainer on a run_dir that holds ``checkpoints/last``
continues that run from where it stopped.

Exact resume covers model, optimizer, step, RNG of every rank and the data position of any data object that
has ``state_dict()`` / ``load_state_dict()``; evaluators run with the RNG saved and restored around them, so
evaluating (or not) never changes the training trajectory.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from wmlab.train import checkpoint as ckpt
from wmlab.train import distributed as dd
from wmlab.train.logger import RunLogger
from wmlab.train.options import TrainerConfig
from wmlab.train.memory import keep_freed_memory
from wmlab.train.precision import autocast, native_bf16, pick_device, resolve_precision

log = logging.getLogger("wmlab.train")

Evaluator = Callable[["Trainer", int], dict]
_MAX_SKIP_WARNINGS = 20


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor (and numpy array) in a nested batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, np.ndarray):
        return torch.as_tensor(batch).to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


class Trainer:
    """Train ``model`` on ``data`` under ``config``, writing everything into ``run_dir``.

    Args:
        model: an ``nn.Module`` with ``loss(batch) -> (scalar loss, dict of scalar metrics)``.
        data: an iterable of batches (``dict[str, Tensor]``), or a factory ``data(seed) -> iterable`` that is
            called with this rank's seed (so each process draws different batches). If the data object has
            ``state_dict()``/``load_state_dict()``, its position is checkpointed and restored.
        config: a :class:`TrainerConfig`.
        run_dir: folder for metrics.jsonl, tb/, videos/, checkpoints/.
        evaluators: callables ``(trainer, step) -> dict`` run every ``eval_every`` steps on rank 0; results are
            logged under ``eval/<key>`` (keys holding a ``/`` are kept as they are).
        optimizer_groups: AdamW parameter groups (``[{"params": [...], "lr": ...}, ...]``) or a callable
            ``model -> groups``; default one group of all trainable parameters.
        model_config: the model's config (dataclass or dict), saved in checkpoints; resuming with another one
            is an error.

    A group may carry ``clip`` (its own gradient-norm limit, e.g. actor and critic clipped apart from the
    world model) and ``name``. A model with an ``after_update()`` method has it called after every applied
    update (slow target networks, running normalisers): their state lives in the model's buffers.
    """

    def __init__(self, model: nn.Module, data: Iterable[dict[str, torch.Tensor]] | Callable[[int], Iterable],
                 config: TrainerConfig | None = None, run_dir: str | Path = "runs/default",
                 evaluators: Sequence[Evaluator] = (), optimizer_groups: Any = None, model_config: Any = None):
        if not callable(getattr(model, "loss", None)):
            raise TypeError(f"{type(model).__name__} has no loss(batch) method; the trainer needs "
                            f"loss(batch) -> (loss, metrics)")
        self.config = (config or TrainerConfig()).validate()
        self.run_dir = Path(run_dir)
        self.evaluators = list(evaluators)
        self.model_config = model_config
        self.device = pick_device(self.config.device)
        self.precision = resolve_precision(self.config.precision, self.device)  # what autocast runs: bf16 | fp32
        if self.config.reuse_memory and self.device.type == "cpu":
            keep_freed_memory()
        self.dist = dd.init_distributed(self.device)
        self.is_main = self.dist.is_main
        if self.is_main and self.precision == "bf16" and not native_bf16(self.device):
            log.warning("trainer.precision=bf16 on %s, which has no native bf16 (bf16 matmuls are emulated there, "
                        "10-20x slower); use trainer.precision=auto or fp32", self.device)
        self.ckpt_root = self.run_dir / "checkpoints"
        self.step = 0
        self.skipped_steps = 0
        self._window: tuple[dict[str, torch.Tensor], int, int, float] = ({}, 0, 0, 0.0)  # metrics since last log
        self.last_metrics: dict[str, Any] = {}
        self._skip_warnings = 0
        self._compile_reported = False
        seed_everything(dd.rank_seed(self.config.seed, self.dist.rank))

        self.model = model.to(self.device)
        self.model.train()
        groups = optimizer_groups(self.model) if callable(optimizer_groups) else optimizer_groups
        if groups is None:
            groups = [{"params": [p for p in self.model.parameters() if p.requires_grad]}]
        c = self.config
        # The fused kernel is several times faster than the per-tensor loop, on CPU and GPU alike.
        self.optimizer = torch.optim.AdamW(groups, lr=c.lr, betas=tuple(c.betas), eps=c.eps,
                                           weight_decay=c.weight_decay,
                                           fused=self.device.type in ("cpu", "cuda"))
        for group in self.optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])  # warm-up scales from here (saved with the optimizer)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if not self.params:
            raise ValueError(f"{type(model).__name__} has no trainable parameters to optimise")

        self.data = data(dd.rank_seed(c.seed, self.dist.rank)) if _is_factory(data) else data
        self._data_iter: Iterator | None = None
        self.resumed_from: Path | None = None
        if self.is_main:
            ckpt.clean_partial(self.ckpt_root)
        dd.barrier(self.dist)
        last = ckpt.find_last(self.ckpt_root)
        if last is not None:
            self._resume(last)

        self.module: nn.Module = dd.LossModule(self.model)
        if c.compile:
            self.module = torch.compile(self.module)
        self.module = dd.wrap_ddp(self.module, self.dist, self.device, c.find_unused_parameters)
        self.logger = RunLogger(self.run_dir, enabled=self.is_main, tensorboard=c.tensorboard, wandb=c.wandb,
                                wandb_project=c.wandb_project, config={"trainer": ckpt.config_dict(c),
                                                                      "model": ckpt.config_dict(model_config)},
                                start_step=self.step)

    # ------------------------------------------------------------------------------------------- resume
    def _resume(self, step_dir: Path) -> None:
        state = ckpt.read_state(step_dir)
        ckpt.check_compatible(step_dir, state, self.model, self.model_config)
        ckpt.load_model_file(step_dir / "model.safetensors", self.model, strict=True)
        ckpt.load_optimizer(step_dir, self.optimizer)
        self.step = int(state["step"])
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self.last_metrics = dict(state.get("metrics") or {})
        rank = self.dist.rank
        rngs = state.get("rng") or []
        if rank < len(rngs):
            ckpt.restore_rng(rngs[rank], self.device)
        elif rngs:
            log.warning("checkpoint %s was written by %d process(es); rank %d starts with a fresh seed",
                        step_dir, len(rngs), rank)
        data_states = state.get("data") or []
        if hasattr(self.data, "load_state_dict") and rank < len(data_states) and data_states[rank] is not None:
            self.data.load_state_dict(data_states[rank])
        elif self.is_main:
            log.info("data has no saved position; the resumed run draws batches from a fresh stream")
        self.resumed_from = step_dir
        if self.is_main:
            log.info("resumed from %s (step %d)", step_dir, self.step)

    def save_checkpoint(self) -> Path | None:
        """Checkpoint the current step (every rank must call it: RNG and data positions are gathered)."""
        own = {"rng": ckpt.capture_rng(self.device),
               "data": self.data.state_dict() if hasattr(self.data, "state_dict") else None}
        gathered = dd.gather_objects(own, self.dist)
        path = None
        if self.is_main:
            state = {"config": ckpt.config_dict(self.model_config), "config_hash": ckpt.config_hash(self.model_config),
                     "trainer": ckpt.config_dict(self.config), "precision": self.precision,
                     "world_size": self.dist.world_size,
                     "skipped_steps": self.skipped_steps, "metrics": self.last_metrics,
                     "rng": [g["rng"] for g in gathered], "data": [g["data"] for g in gathered]}
            path = ckpt.save_checkpoint(self.ckpt_root, self.step, self.model, self.optimizer, state,
                                        keep=self.config.keep_checkpoints)
            self.logger.flush()
        dd.barrier(self.dist)
        return path

    # ------------------------------------------------------------------------------------------- loop
    def _next_batch(self) -> Any:
        if self._data_iter is None:
            self._data_iter = iter(self.data)
        try:
            return next(self._data_iter)
        except StopIteration:
            self._data_iter = iter(self.data)  # a finite iterable: start the next pass
            try:
                return next(self._data_iter)
            except StopIteration:
                raise ValueError("the training data yielded no batches; pass a non-empty (ideally infinite) "
                                 "iterable of batches") from None

    def lr_scale(self, step: int) -> float:
        """Learning-rate multiplier of update ``step`` (from 1): linear warm-up, constant, linear decay over the
        last ``decay`` steps (the last update gets ``1/decay`` of the rate, never zero)."""
        c = self.config
        scale = min(1.0, step / c.warmup) if c.warmup else 1.0
        if c.decay:
            scale = min(scale, max(c.steps - step + 1, 1) / c.decay)
        return scale

    def _set_lr(self) -> None:
        if self.config.warmup or self.config.decay:
            scale = self.lr_scale(self.step)  # self.step is the update being made, from 1
            for group in self.optimizer.param_groups:
                group["lr"] = group["initial_lr"] * scale

    def train_step(self) -> dict[str, torch.Tensor] | None:
        """One update over ``grad_accum`` micro-batches; returns detached metrics, or None if it was skipped."""
        c = self.config
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, torch.Tensor] = {}
        for micro in range(c.grad_accum):
            batch = to_device(self._next_batch(), self.device)
            last_micro = micro == c.grad_accum - 1
            # DDP averages gradients during backward; skip that on all but the last micro-batch.
            sync = contextlib.nullcontext() if last_micro or not self.dist.enabled else self.module.no_sync()
            with sync:
                with autocast(self.device, self.precision):
                    loss, metrics = self.module(batch)
                if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                    raise ValueError(f"{type(self.model).__name__}.loss must return a scalar tensor first, got "
                                     f"{type(loss).__name__} {tuple(getattr(loss, 'shape', ()))}")
                if not loss.requires_grad:
                    raise ValueError(f"{type(self.model).__name__}.loss returned a loss without gradient; are "
                                     f"all its parameters frozen or is it computed under no_grad?")
                (loss / c.grad_accum).backward()
            parts = {"loss": loss, **(metrics or {})}
            for k, v in parts.items():
                v = v.detach().float().mean() if isinstance(v, torch.Tensor) else torch.tensor(float(v))
                sums[k] = sums.get(k, 0.0) + v.to(self.device) / c.grad_accum
        grad_norm = self._clip(sums)
        sums["grad_norm"] = grad_norm.detach().float()
        self.step += 1
        checks = torch.stack([sums["loss"], sums["grad_norm"]])
        finite = dd.all_true(bool(torch.isfinite(checks).all().item()), self.dist, self.device)
        if not finite:
            self.optimizer.zero_grad(set_to_none=True)
            self.skipped_steps += 1
            self._warn_skip(sums)
            return None
        self._set_lr()
        self.optimizer.step()
        after = getattr(self.model, "after_update", None)
        if callable(after):
            after()  # e.g. EMA targets and running statistics, updated once per applied update
        return sums

    def _clip(self, sums: dict[str, torch.Tensor]) -> torch.Tensor:
        """Clip gradients: globally to ``grad_clip``, or per parameter group where a group sets ``clip``
        (logged as ``grad_norm/<group name>``); returns the global norm before clipping."""
        c = self.config
        groups = self.optimizer.param_groups
        if not any("clip" in g for g in groups):
            max_norm = c.grad_clip if c.grad_clip > 0 else math.inf
            return torch.nn.utils.clip_grad_norm_(self.params, max_norm, foreach=None)
        squares = []
        for i, group in enumerate(groups):
            clip = group.get("clip", c.grad_clip)
            norm = torch.nn.utils.clip_grad_norm_(group["params"], clip if clip > 0 else math.inf, foreach=None)
            sums[f"grad_norm/{group.get('name', i)}"] = norm.detach().float()
            squares.append(norm.detach().float() ** 2)
        return torch.stack(squares).sum().sqrt()

    def _warn_skip(self, sums: dict[str, torch.Tensor]) -> None:
        if self._skip_warnings >= _MAX_SKIP_WARNINGS:
            return
        self._skip_warnings += 1
        bad = [f"{k}={v.item()}" for k, v in sums.items() if not torch.isfinite(v).all()]
        more = "; further skips are only counted (train/skipped_steps)" if \
            self._skip_warnings == _MAX_SKIP_WARNINGS else ""
        warnings.warn(f"step {self.step}: non-finite {', '.join(bad) or 'value on another rank'}; update skipped "
                      f"({self.skipped_steps} so far){more}", RuntimeWarning, stacklevel=3)

    def fit(self, until: int | None = None) -> dict[str, Any]:
        """Train up to step ``until`` (default ``config.steps``); returns the last logged metrics.

        Calling it again with a larger ``until`` continues (an online-RL driver alternates it with collection).
        """
        c = self.config
        until = c.steps if until is None else min(until, c.steps)
        bar = None
        if c.progress and self.is_main and self.step < until:
            from tqdm.auto import tqdm

            bar = tqdm(total=c.steps, initial=self.step, desc=f"{self.run_dir.name} ({self.precision})",
                       dynamic_ncols=True)
        # The averaging window outlives one call: a driver that trains a few updates at a time (online RL)
        # still logs means over log_every updates. busy: seconds inside train_step (evaluation and saving
        # excluded).
        window, counted, steps, busy = self._window
        try:
            while self.step < until:
                t0 = time.perf_counter()
                metrics = self.train_step()
                if c.compile and self.is_main and not self._compile_reported:
                    self._compile_reported = True
                    log.info("first step (including torch.compile) took %.1f s", time.perf_counter() - t0)
                busy += time.perf_counter() - t0
                steps += 1
                if metrics is not None:
                    for k, v in metrics.items():
                        window[k] = window.get(k, 0.0) + v
                    counted += 1
                final = self.step == c.steps
                if _due(self.step, c.log_every) or final:
                    self._log_train(window, counted, steps, busy, bar)
                    window, counted, steps, busy = {}, 0, 0, 0.0
                if self.evaluators and (_due(self.step, c.eval_every) or (final and c.eval_every)):
                    self.evaluate()
                if c.ckpt_every and (_due(self.step, c.ckpt_every) or final):
                    self.save_checkpoint()
                if bar is not None:
                    bar.update(1)
        finally:
            self._window = (window, counted, steps, busy)
            if bar is not None:
                bar.close()
            self.logger.flush()
        return {"step": self.step, "skipped_steps": self.skipped_steps, **self.last_metrics}

    def _log_train(self, window: dict[str, torch.Tensor], counted: int, steps: int, elapsed: float,
                   bar: Any) -> None:
        # Every rank took the same skip decisions, so ``counted`` (and the keys) agree across ranks.
        values = {f"train/{k}": float(v.item()) / counted for k, v in sorted(window.items())} if counted else {}
        values = dd.mean_across_ranks(values, self.dist, self.device)
        values["train/skipped_steps"] = self.skipped_steps
        values["train/lr"] = self.optimizer.param_groups[0]["lr"]
        values["time/step_s"] = elapsed / max(1, steps)
        self._record(values)
        if bar is not None and "train/loss" in values:
            bar.set_postfix(loss=f"{values['train/loss']:.4g}", skipped=self.skipped_steps, refresh=False)

    def _record(self, values: dict[str, Any]) -> None:
        self.logger.log(self.step, values)
        self.last_metrics.update(values)

    def evaluate(self) -> dict[str, Any]:
        """Run every evaluator now (rank 0; the others wait), log and return their results."""
        results: dict[str, Any] = {}
        if self.is_main:
            rng = ckpt.capture_rng(self.device)
            try:
                for evaluator in self.evaluators:
                    out = evaluator(self, self.step) or {}
                    if not isinstance(out, dict):
                        raise TypeError(f"evaluator {getattr(evaluator, '__name__', evaluator)!r} returned "
                                        f"{type(out).__name__}; return a dict of metrics")
                    results.update({k if "/" in k else f"eval/{k}": v for k, v in out.items()})
            finally:
                ckpt.restore_rng(rng, self.device)
                self.model.train()
            if results:
                row = self.logger.log(self.step, results)
                self.last_metrics.update({k: row.get(k, v) for k, v in results.items()})
        dd.barrier(self.dist)
        return results

    # ------------------------------------------------------------------------------------------- extras
    def log_scalars(self, values: dict[str, Any], step: int | None = None) -> None:
        """Log extra values (e.g. from an online-RL driver) to metrics.jsonl/TensorBoard at ``step``."""
        self.logger.log(self.step if step is None else step, values)

    def log_video(self, name: str, frames: Any, step: int | None = None, fps: int = 10) -> Path | None:
        """Save uint8 frames ``[T,H,W,C]`` or ``[N,T,H,W,C]`` as ``videos/<name>_<step>.mp4`` (+ TB strip)."""
        return self.logger.video(name, frames, self.step if step is None else step, fps=fps)

    def close(self) -> None:
        """Close log writers and leave the process group if this trainer joined it."""
        self.logger.close()
        dd.shutdown(self.dist)

    def __enter__(self) -> "Trainer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _due(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


def _is_factory(data: Any) -> bool:
    """A class or function to call with the rank's seed, as opposed to an iterable of batches."""
    if isinstance(data, type):
        return True
    return callable(data) and not hasattr(data, "__iter__") and not hasattr(data, "__next__")
