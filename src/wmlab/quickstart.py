"""``wmlab quickstart``: collect → store → train a world model → see what it learned, in minutes on a CPU.

1. Collects sticky-random episodes from a built-in environment into ``<run_dir>/data`` (a train split and a
   held-out test split with other seeds).
2. Trains a small RSSM world model on the train split (bf16 where the CPU has it natively, else fp32).
3. Predicts 45 frames open loop from 5 context frames on held-out windows and writes
   ``<run_dir>/report.html``: real vs predicted video, PSNR and SSIM per step against the copy-last-frame
   baseline, and loss curves.

Running it again with the same ``run_dir`` reuses the data and resumes training where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wmlab import config as C


def _doc(text: str, default: Any) -> Any:
    return field(default=default, metadata={"doc": text})


@dataclass
class QuickstartConfig:
    env: str = _doc("built-in environment to collect from", "dmc:ball_in_cup_catch")
    run_dir: str = _doc("run folder (data, checkpoints, report)", "runs/quickstart")
    episodes: int = _doc("training episodes to collect", 20)
    test_episodes: int = _doc("held-out episodes (other seeds) for the report", 4)
    max_steps: int = _doc("agent steps per episode", 200)
    action_repeat: int = _doc("env steps per agent step", 4)
    policy: str = _doc("collection policy", "random")
    workers: int = _doc("collection worker processes", 2)
    steps: int = _doc("world-model training steps", 350)
    preset: str = _doc("world_model job preset the run starts from", "quickstart")
    context: int = _doc("frames observed before open-loop prediction", 5)
    horizon: int = _doc("frames predicted open loop", 45)


def _collect_split(cfg: QuickstartConfig, data: Path, split: str, episodes: int, seed: int) -> None:
    from wmlab.api import collect
    from wmlab.data.store import EpisodeStore

    have = 0
    if data.exists():
        store = EpisodeStore(data, mode="r")
        have = len(store.ids(split=split))
    if have >= episodes:
        print(f"[quickstart] {split}: {have} episodes already in {data}")
        return
    collect(env=cfg.env, out=str(data), episodes=episodes - have, workers=cfg.workers, policy=cfg.policy,
            max_steps=cfg.max_steps, seed=seed + have, size=(64, 64), action_repeat=cfg.action_repeat,
            split=split)


def run_quickstart(**settings: Any) -> dict[str, Any]:
    from wmlab.api import prepare_run

    cfg = C.apply(QuickstartConfig(), settings)
    run_dir = Path(cfg.run_dir)
    data = run_dir / "data"
    t0 = time.time()
    print(f"[quickstart] 1/3 collecting {cfg.episodes}+{cfg.test_episodes} episodes of {cfg.env}")
    _collect_split(cfg, data, "train", cfg.episodes, seed=0)
    _collect_split(cfg, data, "test", cfg.test_episodes, seed=1_000_000)
    t1 = time.time()
    print(f"[quickstart] 2/3 training the world model for {cfg.steps} steps")
    job, jcfg = prepare_run("world_model", None if (run_dir / "model" / "config.yaml").exists() else cfg.preset,
                            run_dir=str(run_dir / "model"), data=str(data),
                            **{"trainer.steps": cfg.steps, "eval.context": cfg.context,
                               "eval.horizon": cfg.horizon})
    job.run(jcfg)
    t2 = time.time()
    print("[quickstart] 3/3 open-loop evaluation on held-out episodes")
    result = job.evaluate(jcfg)
    t3 = time.time()
    report = run_dir / "report.html"
    Path(result["report"]).replace(report)
    result["report"] = str(report)
    result["seconds"] = {"collect": round(t1 - t0, 1), "train": round(t2 - t1, 1), "eval": round(t3 - t2, 1),
                         "total": round(t3 - t0, 1)}
    print(f"[quickstart] report: {report}")
    return {k: v for k, v in result.items() if k != "per_step"}
