"""``wmlab train world_model``: train the RSSM world model offline from any episode store.

    wmlab train world_model data=data/walker run_dir=runs/walker preset=small
    wmlab eval runs/walker            # open-loop prediction on the held-out split + report.html
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wmlab.jobs import Job
from wmlab.jobs import doc_field as _doc


def _model_config() -> Any:
    from wmlab.models.world_model import WorldModelConfig

    return WorldModelConfig()


def _trainer_config() -> Any:
    from wmlab.train import TrainerConfig

    return TrainerConfig()


@dataclass
class EvalConfig:
    split: str = _doc("episodes to evaluate on: the held-out split (metadata split=test)", "test")
    context: int = _doc("frames the model observes before predicting open loop", 5)
    horizon: int = _doc("frames predicted open loop from the actions alone", 45)
    windows: int = _doc("evaluation windows (random, seeded) averaged in the tables", 32)
    samples: int = _doc("videos shown in the report", 4)
    seed: int = _doc("seed of the window sampler", 0)


@dataclass
class WorldModelJobConfig:
    data: str = _doc("episode store to train on", "")
    run_dir: str = _doc("run folder; the same folder again resumes", "runs/world_model")
    train_split: str | None = _doc("train on episodes of this split (none: 'train' when the store has one, else "
                                   "every episode not in eval.split)", None)
    batch_size: int = _doc("windows per batch", 16)
    length: int = _doc("steps per window", 64)
    workers: int = _doc("DataLoader worker processes", 0)
    model: Any = _doc("world-model config", factory=_model_config)
    trainer: Any = _doc("trainer config", factory=_trainer_config)
    eval: EvalConfig = _doc("evaluation config", factory=EvalConfig)


LOSS_KEYS = ("train/total", "train/image", "train/reward", "train/cont", "train/kl_dyn", "train/kl_rep")


def _store(path: str) -> Any:
    from wmlab.data.store import open_training_store

    return open_training_store(path, "make one with `wmlab collect env=dmc:walker_walk out=data/walker` or "
                                     "`wmlab data import`")


def build_model(cfg: WorldModelJobConfig, spec: dict[str, Any]) -> torch.nn.Module:
    from wmlab.models.world_model import WorldModel

    if spec.get("action_dim") is None and not spec.get("action_discrete") and cfg.model.action_input == "real":
        raise ValueError(f"store {cfg.data} holds action-free video (no 'action' key); train an action-free "
                         f"model with model.action_input=none")
    return WorldModel(cfg.model, spec)


def _open_loop_evaluator(store: Any, ecfg: EvalConfig) -> Any:
    """Every ``trainer.eval_every`` steps: held-out open-loop PSNR beside copy-last, and a video to TensorBoard."""
    small = EvalConfig(split=ecfg.split, context=ecfg.context, horizon=ecfg.horizon,
                       windows=min(ecfg.windows, 8), samples=2, seed=ecfg.seed)

    def evaluate(trainer: Any, step: int) -> dict[str, float]:
        result = open_loop_eval(trainer.model, store, small)
        trainer.model.train()
        table = result["table"]
        first = slice(0, min(10, small.horizon))
        context, truth, pred = result["samples"][0]
        trainer.log_video("open_loop", np.concatenate([np.concatenate([context, truth], 0),
                                                       np.concatenate([context, pred], 0)], axis=2), step)
        return {"open_loop/psnr_1_10": float(table["psnr"][first].mean()),
                "open_loop/copy_last_psnr_1_10": float(table["baseline_psnr"][first].mean())}

    return evaluate


def run(cfg: WorldModelJobConfig) -> dict[str, Any]:
    from wmlab.data.loader import make_loader
    from wmlab.train import Trainer, seed_everything

    store = _store(cfg.data)
    seed_everything(cfg.trainer.seed)  # the same seed, the same initial weights
    model = build_model(cfg, store.spec)
    split = cfg.train_split or _train_split(store, cfg.eval.split)

    def data(seed: int) -> Any:  # each rank gets its own seed under torchrun
        return make_loader(store.root, cfg.batch_size, cfg.length, workers=cfg.workers, seed=seed, split=split)

    evaluators = []
    if cfg.trainer.eval_every and store.ids(split=cfg.eval.split):
        evaluators.append(_open_loop_evaluator(store, cfg.eval))
    with Trainer(model, data, cfg.trainer, cfg.run_dir, evaluators=evaluators, model_config=cfg.model) as trainer:
        return trainer.fit()


def _train_split(store: Any, eval_split: str) -> Any:
    """What a run trains on when ``train_split`` is not given: the 'train' split when the store has one,
    else every episode outside the held-out ``eval_split`` (unsplit ones included), so that split stays
    unseen; ``None`` (every episode) when the store has neither."""
    from wmlab.data.store import Excluding

    splits = set(store.splits())
    if "train" in splits:
        return "train"
    if eval_split in splits:
        return Excluding(eval_split)
    return None


def _windows(store: Any, split: str, length: int, count: int, seed: int) -> list[dict[str, np.ndarray]]:
    ids = [e for e in store.ids(split=split) if store.length(e) >= length]
    if not ids:
        raise ValueError(f"store {store.root} has no {split!r} episodes of at least {length} steps; collect "
                         f"some with `wmlab collect ... split={split} out={store.root}` "
                         f"(or pass eval.split=, eval.context=, eval.horizon=)")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        eid = ids[i % len(ids)] if i < len(ids) else ids[rng.integers(len(ids))]
        start = int(rng.integers(0, store.length(eid) - length + 1))
        out.append(store.window(eid, start, length))
    return out


@torch.no_grad()
def open_loop_eval(model: Any, store: Any, ecfg: EvalConfig, batch_size: int = 8) -> dict[str, Any]:
    """Open-loop predictions on held-out windows: per-step PSNR/SSIM beside the copy-last-frame baseline."""
    from wmlab.eval.metrics import prediction_table

    length = ecfg.context + ecfg.horizon
    windows = _windows(store, ecfg.split, length, ecfg.windows, ecfg.seed)
    model.eval()
    device = next(model.parameters()).device
    preds, truths, contexts = [], [], []
    for i in range(0, len(windows), batch_size):
        chunk = windows[i:i + batch_size]
        batch = {k: torch.as_tensor(np.stack([w[k] for w in chunk])) for k in chunk[0]}
        out = model.open_loop({k: v.to(device) for k, v in batch.items()}, context=ecfg.context)
        preds.append(out["pred"].cpu().numpy())
        truths.append(batch["image"][:, ecfg.context:].numpy())
        contexts.append(batch["image"][:, :ecfg.context].numpy())
    pred, truth, context = (np.concatenate(x) for x in (preds, truths, contexts))
    table = prediction_table(pred, truth, context)
    samples = [(context[i], truth[i], pred[i]) for i in range(min(ecfg.samples, len(pred)))]
    return {"table": table, "samples": samples}


def evaluate(cfg: WorldModelJobConfig, **overrides: Any) -> dict[str, Any]:
    """Evaluate the last checkpoint of a run on the held-out split; writes report.html and eval.json."""
    store = _store(cfg.data)
    return evaluate_store(cfg, store, store.spec, **overrides)


def evaluate_store(cfg: WorldModelJobConfig, store: Any, spec: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """:func:`evaluate` on a given store (view) and data spec."""
    import json

    from wmlab import config as C
    from wmlab.eval.report import read_metrics, write_report
    from wmlab.train import load_weights

    ecfg = C.apply(cfg.eval, overrides)
    model = build_model(cfg, spec)
    step = load_weights(cfg.run_dir, model)["step"]
    result = open_loop_eval(model, store, ecfg)
    table = result["table"]
    run = Path(cfg.run_dir)
    first = slice(0, min(10, ecfg.horizon))
    summary = {
        "data": cfg.data, "eval split": ecfg.split, "checkpoint step": step,
        "context / horizon": f"{ecfg.context} / {ecfg.horizon}", "windows": ecfg.windows,
        "PSNR steps 1-10 (model)": round(float(table["psnr"][first].mean()), 3),
        "PSNR steps 1-10 (copy-last)": round(float(table["baseline_psnr"][first].mean()), 3),
        "SSIM steps 1-10 (model)": round(float(table["ssim"][first].mean()), 4),
        "SSIM steps 1-10 (copy-last)": round(float(table["baseline_ssim"][first].mean()), 4),
    }
    report = write_report(run / "report.html", title=f"World model: {run.name}", table=table,
                          samples=result["samples"], records=read_metrics(run / "metrics.jsonl"),
                          summary=summary, loss_keys=LOSS_KEYS)
    out = {**summary, "report": str(report), "per_step": {k: [round(float(v), 4) for v in vals]
                                                          for k, vals in table.items()}}
    (run / "eval.json").write_text(json.dumps(out, indent=2))
    return out


def _presets() -> dict[str, dict[str, Any]]:
    from wmlab.models.config import PRESETS as MODEL

    return {
        # Tiny: a few steps in seconds, for tests and smoke runs.
        "debug": {"batch_size": 4, "length": 16, "model": MODEL["debug"],
                  "trainer": {"steps": 20, "log_every": 5, "ckpt_every": 10, "eval_every": 10,
                              "progress": False},
                  "eval": {"context": 3, "horizon": 8, "windows": 4, "samples": 2}},
        # What `wmlab quickstart` trains: learns ball-in-cup's dynamics in a few minutes on 2 CPU cores.
        "quickstart": {"length": 32, "model": MODEL["small"],
                       "trainer": {"log_every": 25, "ckpt_every": 175, "eval_every": 175}},
        "small": {"model": MODEL["small"]},
        "paper": {},  # the defaults are the paper configuration
    }


PRESETS = _presets()

JOB = Job("world_model", WorldModelJobConfig, run, evaluate, PRESETS)
