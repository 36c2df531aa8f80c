"""The Python API that the ``wmlab`` command line is a thin layer over.

Each function takes the same ``key=value`` settings as its command (values may be strings, as typed on the
command line, or Python values) and returns a plain summary dict.

    import wmlab.api as wm
    wm.collect(env="dmc:walker_walk", episodes=10, out="data/walker")
    wm.train("world_model", data="data/walker", run_dir="runs/walker", preset="small")
    wm.evaluate("runs/walker")
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

from wmlab import config as C
from wmlab.config import ConfigError


def _doc(text: str, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING) -> Any:
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"doc": text})
    return field(default=default, metadata={"doc": text})


@dataclass
class CollectConfig:
    env: str = _doc("environment id, e.g. dmc:walker_walk, metaworld:drawer-open, procgen:coinrun",
                    "dmc:walker_walk")
    out: str = _doc("episode store to write (created if missing, appended to if present)", "data/collect")
    episodes: int = _doc("number of episodes", 10)
    workers: int = _doc("worker processes", 1)
    policy: str = _doc("random | sticky (repeat the last action with probability sticky_prob) | expert "
                       "(Meta-World's scripted policy for the task, metaworld:* envs)", "random")
    sticky_prob: float | None = _doc("policy=sticky only: probability of repeating the last action (none: 0.75)",
                                     None)
    expert_noise: float | None = _doc("policy=expert only: std of Gaussian noise added to its actions (none: 0)",
                                      None)
    max_steps: int | None = _doc("episode length cap in agent steps (after action repeat); none: the env's own",
                                 None)
    seed: int = _doc("seed of the first episode; episode i uses seed + i (for Procgen: the level)", 0)
    size: tuple[int, int] = _doc("image size (height, width)", (64, 64))
    action_repeat: int = _doc("repeat each action this many env steps", 1)
    render: Literal["fast", "full"] = _doc("MuJoCo suites: fast (no shadows or multisampling, ~10x faster to draw) "
                                           "or full (the suite's own frames, as published pixel scores used)",
                                           "fast")
    split: str | None = _doc("split recorded in every episode's metadata (train / test); for both splits in one "
                             "command use test_fraction instead", None)
    test_fraction: float = _doc("label each episode test (a stable hash of its seed below this) or train: one "
                                "command makes both splits, a level keeps its split across runs, and the splits "
                                "share no level; 0: off", 0.0)
    progress: bool = _doc("show a progress bar", True)


def collect(**settings: Any) -> dict[str, Any]:
    """Collect episodes from an environment into an episode store."""
    from wmlab.envs import render_setting
    from wmlab.envs.collect import collect as run_collect

    cfg = C.apply(CollectConfig(), settings)
    policy_kwargs = {}
    if cfg.sticky_prob is not None:
        if cfg.policy != "sticky":
            raise ConfigError(f"sticky_prob={cfg.sticky_prob} applies to policy=sticky only, not "
                              f"policy={cfg.policy}; add policy=sticky or drop sticky_prob")
        policy_kwargs["prob"] = float(cfg.sticky_prob)
    if cfg.expert_noise is not None:
        if cfg.policy != "expert":
            raise ConfigError(f"expert_noise={cfg.expert_noise} applies to policy=expert only, not "
                              f"policy={cfg.policy}; add policy=expert or drop expert_noise")
        policy_kwargs["noise"] = float(cfg.expert_noise)
    return run_collect(cfg.env, cfg.out, cfg.episodes, workers=cfg.workers, policy=cfg.policy,
                       max_steps=cfg.max_steps, seed=cfg.seed, size=cfg.size, action_repeat=cfg.action_repeat,
                       split=cfg.split, test_fraction=cfg.test_fraction, progress=cfg.progress,
                       policy_kwargs=policy_kwargs, **render_setting(cfg.render))


def prepare_run(job_name: str, preset: str | None = None, **overrides: Any) -> tuple[Any, Any]:
    """Resolve a job's config for ``run_dir``: a new run gets defaults ← preset ← overrides; an existing run
    folder resumes from its saved config (with any overrides, e.g. more steps, on top)."""
    from wmlab import jobs

    job = jobs.get(job_name)
    run_dir = Path(str(overrides.pop("run_dir", None) or f"runs/{job_name}"))
    saved = run_dir / "config.yaml"
    if saved.exists():
        info = run_info(run_dir)
        if info.get("job") != job_name:
            raise ConfigError(f"{run_dir} holds a {info.get('job')!r} run, not {job_name!r}; "
                              f"choose another run_dir=")
        if preset and preset != info.get("preset"):
            raise ConfigError(f"{run_dir} was started with preset={info.get('preset')}; a preset cannot change "
                              f"on resume (choose a new run_dir= for preset={preset})")
        cfg = C.apply(C.load(job.config_cls, saved), overrides)
        preset = info.get("preset")  # a resume without preset= keeps the one the run started with
    else:
        cfg = C.resolve(job.config_cls(), job.presets, preset, {})
        method = overrides.get("method", getattr(cfg, "method", None))
        if method is not None and job.methods:
            if method not in job.methods:
                raise ConfigError(f"unknown method {method!r} for {job_name}; choose from "
                                  f"{', '.join(job.methods)}")
            cfg = C.apply(cfg, C.flatten(job.methods[method]))
        cfg = C.apply(cfg, overrides)
    cfg = dataclasses.replace(cfg, run_dir=str(run_dir))
    from wmlab import __version__
    from wmlab.train.distributed import env_info, write_run_file

    # Under torchrun every process resolves the config; only the first writes it. run.json goes first: a
    # config.yaml marks a run folder that another process may already resume from.
    write_run_file(run_dir / "run.json", json.dumps({"job": job_name, "preset": preset, "wmlab": __version__}))
    if env_info().is_main:
        C.save(cfg, saved)
    return job, cfg


def run_info(run_dir: Path) -> dict[str, Any]:
    """What run.json says of a run folder: its job, preset and wmlab version."""
    path = run_dir / "run.json"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a wmlab run folder (no run.json); "
                                f"train one with `wmlab train <job> run_dir={run_dir}`")
    return json.loads(path.read_text())


def train(job_name: str, preset: str | None = None, **overrides: Any) -> Any:
    """Train job ``job_name`` (see :func:`wmlab.jobs.names`); the same ``run_dir`` again resumes.

    ``config.yaml`` always describes the command that wrote the run's newest checkpoint: a command that fails
    before writing one (a resume refused for another model config, a mistyped ``data=``) puts back the config
    the run had before it, or removes the one it created, so the original command and ``wmlab eval`` still work.
    """
    run_dir = Path(str(overrides.get("run_dir") or f"runs/{job_name}"))
    saved = run_dir / "config.yaml"
    before = saved.read_bytes() if saved.exists() else None
    marks = _checkpoint_marks(run_dir)
    job, cfg = prepare_run(job_name, preset, **overrides)
    try:
        return job.run(cfg)
    except BaseException:
        from wmlab.train.distributed import env_info

        if env_info().is_main and _checkpoint_marks(run_dir) == marks:  # nothing of this command was kept
            if before is None:
                saved.unlink(missing_ok=True)
            else:
                C.write_atomic(saved, before)
        raise


def _checkpoint_marks(run_dir: Path) -> dict[str, str]:
    """The ``last`` pointer of every checkpoints folder in a run (Genie keeps one per stage)."""
    if not run_dir.is_dir():
        return {}
    return {str(p): p.read_text() for p in sorted(run_dir.glob("**/checkpoints/last")) if p.is_file()}


def evaluate(run_dir: str | Sequence[str], **overrides: Any) -> Any:
    """Evaluate a trained run folder on its held-out data and write its report.

    Several run folders (seeds of a setting, or settings side by side) are each evaluated with the same
    overrides; where their job pools evaluations (dreamer: mean ± std over seeds per setting), the result is
    ``{"runs": [each run's result], "over seeds": {setting: pooled}}``.
    """
    from wmlab import jobs

    if not isinstance(run_dir, (str, Path)):
        runs = [str(r) for r in run_dir]
        if not runs:
            raise ConfigError("evaluate needs at least one run folder")
        kinds = {r: run_info(Path(r))["job"] for r in runs}
        if len(set(kinds.values())) > 1:
            raise ConfigError("evaluate several runs of one job at a time; given "
                              + ", ".join(f"{r} ({j})" for r, j in kinds.items()))
        results = [evaluate(r, **overrides) for r in runs]
        pool = jobs.get(next(iter(kinds.values()))).pool
        return {"runs": results, **({"over seeds": pool(results)} if pool is not None else {})}
    run = Path(run_dir)
    info = run_info(run)
    job = jobs.get(info["job"])
    if job.evaluate is None:
        raise ConfigError(f"job {info['job']!r} has no evaluation")
    cfg = C.load(job.config_cls, run / "config.yaml")
    return job.evaluate(cfg, **overrides)


def generate(run_dir: str, **settings: Any) -> dict[str, Any]:
    """Generate video from a trained Genie run: prompt frames of a held-out episode, then its (or the given)
    actions, autoregressively or in one pass; writes real-above-generated mp4."""
    from wmlab.jobs.genie import generate as run_generate

    info = run_info(Path(run_dir))
    if info.get("job") != "genie":
        raise ConfigError(f"{run_dir} holds a {info.get('job')!r} run; `wmlab generate` needs a genie run")
    cfg = C.apply(GenerateConfig(), settings)
    return run_generate(run_dir, **dataclasses.asdict(cfg))


@dataclass
class GenerateConfig:
    out: str | None = _doc("mp4 to write (default <run_dir>/generate/<episode>_<start>_<method>.mp4)", None)
    episode: str | None = _doc("episode id (default: the first held-out episode)", None)
    start: int = _doc("first frame of the prompt in the episode", 0)
    prompt: int = _doc("real frames given before generating", 4)
    frames: int = _doc("frames to generate", 10)
    actions: list[int] | None = _doc("action ids after the prompt (default: the episode's own)", None)
    method: str = _doc("autoregressive or one_go", "autoregressive")
    steps: int | None = _doc("MaskGIT iterations per frame (default: the model's)", None)
    temperature: float | None = _doc("sampling temperature (default: the model's)", None)
    seed: int = _doc("sampling seed", 0)
    split: str = _doc("split the default episode comes from", "test")


def data_info(data: str) -> dict[str, Any]:
    from wmlab.data import info

    return info(data)


def data_import(src: str, out: str, format: str | None = None, size: Any = None, **options: Any) -> dict[str, Any]:
    from wmlab.data.formats import import_data

    size = C.coerce(size, Optional[tuple[int, int]], "size")
    store = import_data(src, out, format=format, size=size, **options)
    return {"out": str(out), "episodes": len(store), "steps": store.num_steps}


def data_export(data: str, out: str, format: str = "dreamer", **options: Any) -> dict[str, Any]:
    from wmlab.data.formats import export_data
    from wmlab.data.store import EpisodeStore

    export_data(EpisodeStore(data, mode="r"), out, format=format, **options)
    return {"out": str(out), "format": format}


def data_verify(data: str) -> list[Any]:
    from wmlab.data.verify import verify

    return verify(data)


def quickstart(**settings: Any) -> dict[str, Any]:
    from wmlab.quickstart import run_quickstart

    return run_quickstart(**settings)


def benchmarks(names: Sequence[str] = ()) -> dict[str, Path]:
    """The benchmark scripts of the source checkout's ``benchmarks/`` folder, by name (all, or those named)."""
    root = Path(__file__).resolve().parents[2] / "benchmarks"
    if not root.is_dir():
        raise FileNotFoundError(f"no benchmarks/ folder at {root}; benchmarks run from a source checkout")
    known = {s.stem.removeprefix("bench_"): s for s in sorted(root.glob("bench_*.py"))}
    for name in names:
        if name not in known:
            raise ConfigError(f"unknown benchmark {name!r}; choose from {', '.join(known)}")
    return {name: known[name] for name in names} if names else known


def bench(names: list[str], **settings: Any) -> int:
    """Run benchmark scripts (all, or those named); ``key=value`` settings become ``--key=value`` flags."""
    scripts = benchmarks(names)
    extra = [f"--{k}={v}" if v not in ("", None, True, "true") else f"--{k}" for k, v in settings.items()]
    code = 0
    for script in scripts.values():
        code |= subprocess.call([sys.executable, str(script), *extra])
    return code
