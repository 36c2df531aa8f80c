"""``wmlab train dreamer``: a Dreamer agent online from an environment, offline from a store, or with no
data at all from a trained world model.

    wmlab train dreamer env=dmc:walker_walk                         # DreamerV3 online from 64×64 pixels
    wmlab train dreamer env=dmc:walker_walk preset=dreamerv2        # the DreamerV2 baseline
    wmlab train dreamer env=dmc:walker_walk agent.explore=plan2explore
    wmlab train dreamer data=data/walker online=false env=dmc:walker_walk
    wmlab train dreamer init=runs/wm start=imagined env=dmc:walker_walk
    wmlab eval runs/dreamer episodes=20                              # mean ± std return, videos, results.csv

Online, collection and training interleave per step: between two policy steps the agent makes the updates
the train ratio allows (replayed steps per policy step) on the episodes already in the replay; an episode
enters the replay when it ends. Checkpoints fall between episodes and hold everything the run needs to continue
exactly: weights, optimizers, RNG, the replay sampler's position and the step counters. Episodes a crashed run
collected after its last checkpoint are removed from the replay on resume and collected again, identically.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
import torch

from wmlab.jobs import Job
from wmlab.jobs import doc_field as _doc
from wmlab.jobs.warmstart import load_world_model, method_of, read_spec, spec_of_init
from wmlab.train.distributed import write_run_file

_BIG = 2**62


def _agent_config() -> Any:
    from wmlab.agents.config import AgentConfig

    return AgentConfig()


def _trainer_config() -> Any:
    from wmlab.train import TrainerConfig

    return TrainerConfig(log_every=100, ckpt_every=5000)


@dataclass
class EpisodeEvalConfig:
    episodes: int = _doc("evaluation episodes (each its own env seed)", 10)
    every: int = _doc("online: evaluate every N env steps (0: only at the end); offline: every "
                      "trainer.eval_every updates", 10000)
    sample: bool = _doc("act with policy samples instead of the policy's mode", False)
    videos: int = _doc("episodes saved as video per evaluation, with an open-loop prediction video (0 = no videos)", 1)
    seed: int = _doc("env seed of the first evaluation episode (training episodes use seeds below 10^8)",
                     100_000_000)
    table: str = _doc("results table to append to (default: results.csv in the run folder's parent)", "")
    score_random: float | None = _doc("random-policy return for the normalised score (default: the reference "
                                      "table's, used only for episodes played as it was measured)", None)
    score_expert: float | None = _doc("expert return for the normalised score (default: the reference table's)",
                                      None)


@dataclass
class DreamerJobConfig:
    env: str = _doc("environment id (online collection and evaluation episodes)", "dmc:walker_walk")
    data: str = _doc("episode store to learn from when online=false", "")
    online: bool = _doc("collect experience with the agent while training", True)
    start: Literal["posterior", "imagined"] = _doc(
        "where imagination starts: posterior (replayed data) or imagined (sampled from the world model; needs init=, "
        "no data)", "posterior")
    init: str = _doc("run folder or checkpoint whose world model initialises this agent", "")
    method: str = _doc("fine-tuning settings of a video-pretraining method: none | plain | apv | contextwm | "
                       "prelar (see wmlab.jobs.methods); pair it with init=<pretrained run>", "none")
    run_dir: str = _doc("run folder; the same folder again resumes", "runs/dreamer")
    env_steps: int = _doc("online: environment steps (frames, counting action repeat) to train for", 100_000)
    action_repeat: int = _doc("env steps per agent step", 2)
    size: tuple[int, int] = _doc("image height, width", (64, 64))
    time_limit: int | None = _doc("agent steps per episode (none: the suite's own limit)", None)
    render: Literal["fast", "full"] = _doc("MuJoCo suites: fast (no shadows or multisampling, ~10x faster to draw) "
                                           "or full (the suite's own frames, as published pixel scores used)",
                                           "fast")
    prefill: int = _doc("online: env steps of uniformly random actions before the agent acts", 5000)
    train_ratio: float = _doc("replayed steps per agent step (updates = agent steps × ratio / (B·T))", 512.0)
    pretrain: int = _doc("online: extra updates right after the prefill", 0)
    batch_size: int = _doc("replay windows per update", 16)
    length: int = _doc("steps per replay window", 64)
    ckpt_every: int = _doc("online: checkpoint every N env steps (and at the end)", 10000)
    agent: Any = _doc("agent config", factory=_agent_config)
    trainer: Any = _doc("trainer config (steps counts updates when offline)", factory=_trainer_config)
    eval: EpisodeEvalConfig = _doc("evaluation episodes", factory=EpisodeEvalConfig)


REPLAY_KEYS = ("image", "action", "reward", "is_first", "is_terminal", "proprio")


# ------------------------------------------------------------------------------------------------ replay
class Replay:
    """Uniform random windows from an episode store, with the online run's counters.

    Its ``state_dict`` (sampler RNG, episodes, agent and env steps, schedule) is saved in every checkpoint by
    the trainer, so a resumed run samples the same batches and collects the same episodes.
    """

    def __init__(self, store: Any, batch_size: int, length: int, seed: int, split: str | None = None) -> None:
        from wmlab.data.loader import WindowIndex

        self.store, self.batch_size, self.length = store, batch_size, length
        self.keys = [k for k in REPLAY_KEYS if k in (store.spec or {}).get("keys", REPLAY_KEYS)]
        self.split = split
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.index = WindowIndex(store, length, split)
        self.counters = {"episodes": 0, "agent_steps": 0, "env_steps": 0, "train_from": 0, "next_eval": 0,
                         "next_ckpt": 0}

    def add(self, episode: dict[str, np.ndarray], meta: dict[str, Any], action_repeat: int) -> str:
        eid = self.store.add(episode, meta)
        steps = len(episode["image"]) - 1
        self.counters["episodes"] += 1
        self.counters["agent_steps"] += steps
        self.counters["env_steps"] += steps * action_repeat
        self.index.update()
        self.keys = [k for k in REPLAY_KEYS if k in self.store.spec["keys"]]
        return eid

    def drop_after_checkpoint(self) -> int:
        """Remove episodes numbered past the checkpoint's count (collected by a run that then crashed)."""
        extra = [e for e in self.store.ids() if int(self.store.meta(e).get("index", -1)) >= self.counters["episodes"]]
        if extra:
            self.store.remove(extra)
        self.index.update()
        return len(extra)

    def sample(self) -> dict[str, torch.Tensor]:
        eids, starts = self.index.sample(self.rng, self.batch_size)
        windows = [self.store.window(e, int(s), self.length, keys=self.keys) for e, s in zip(eids, starts)]
        return {k: torch.as_tensor(np.stack([w[k] for w in windows])) for k in self.keys}

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            yield self.sample()

    def state_dict(self) -> dict[str, Any]:
        state = self.rng.bit_generator.state
        rng = {"state": str(state["state"]["state"]), "inc": str(state["state"]["inc"]),
               "has_uint32": int(state["has_uint32"]), "uinteger": int(state["uinteger"])}
        return {"rng": rng, "counters": dict(self.counters)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        r = state["rng"]
        self.rng.bit_generator.state = {"bit_generator": "PCG64",
                                        "state": {"state": int(r["state"]), "inc": int(r["inc"])},
                                        "has_uint32": int(r["has_uint32"]), "uinteger": int(r["uinteger"])}
        self.counters.update({k: int(v) for k, v in state["counters"].items()})


class ImaginedStarts:
    """The data of ``start=imagined``: no replay, only how many start states each update imagines."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __iter__(self) -> Iterator[dict[str, int]]:
        while True:
            yield {"starts": self.count}


# ------------------------------------------------------------------------------------------------ pieces
def make_env(cfg: DreamerJobConfig, env_id: str | None = None) -> Any:
    from wmlab.envs import make, render_setting

    env_id = env_id or cfg.env
    if not env_id:
        raise ValueError("no environment: pass env=<suite:task> (e.g. env=dmc:walker_walk)")
    return make(env_id, size=tuple(cfg.size), action_repeat=cfg.action_repeat, time_limit=cfg.time_limit,
                **render_setting(cfg.render))


def build_agent(cfg: DreamerJobConfig, spec: dict[str, Any]) -> Any:
    from wmlab.agents.dreamer import DreamerAgent

    return DreamerAgent(cfg.agent, spec)


def _spec_path(cfg: DreamerJobConfig) -> Path:
    return Path(cfg.run_dir) / "spec.json"


def _save_spec(cfg: DreamerJobConfig, spec: dict[str, Any]) -> None:
    write_run_file(_spec_path(cfg), json.dumps(spec, indent=1, default=list))


def _load_spec(cfg: DreamerJobConfig) -> dict[str, Any]:
    path = _spec_path(cfg)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; is {cfg.run_dir} a trained dreamer run?")
    return read_spec(path)


def play_episodes(agent: Any, env: Any, episodes: int, seed: int, sample: bool = False,
                  behavior: str = "task") -> list[dict[str, np.ndarray]]:
    """Run the agent's policy for ``episodes`` episodes (env seeds ``seed``, ``seed+1``, …)."""
    from wmlab.agents.dreamer import agent_policy
    from wmlab.envs.collect import rollout

    was_training = agent.training
    agent.eval()
    try:
        return [rollout(env, agent_policy(agent, behavior, sample), seed=seed + i) for i in range(episodes)]
    finally:
        agent.train(was_training)


def summarize(episodes: list[dict[str, np.ndarray]]) -> dict[str, float]:
    returns = np.array([float(ep["reward"].sum()) for ep in episodes])
    out = {"return_mean": float(returns.mean()), "return_std": float(returns.std()),
           "length": float(np.mean([len(ep["reward"]) - 1 for ep in episodes]))}
    if all("success" in ep for ep in episodes):
        out["success"] = float(np.mean([float(ep["success"].max() > 0) for ep in episodes]))
    return out


def _open_loop_video(agent: Any, store: Any, context: int = 5, horizon: int = 45) -> np.ndarray | None:
    """Real (top) over predicted (bottom) frames of the newest replay episode."""
    ids = [e for e in store.ids() if store.length(e) >= context + 2]
    if not ids:
        return None
    eid = ids[-1]
    steps = min(store.length(eid), context + horizon)
    keys = [k for k in REPLAY_KEYS if k in store.spec["keys"]]
    window = store.window(eid, 0, steps, keys=keys)
    device = next(agent.parameters()).device
    batch = {k: torch.as_tensor(v)[None].to(device) for k, v in window.items()}
    agent.eval()
    try:
        out = agent.wm.open_loop(batch, context=context)
    finally:
        agent.train()
    seen = window["image"][:context]
    truth = np.concatenate([seen, out["truth"][0].cpu().numpy()])
    pred = np.concatenate([seen, out["pred"][0].cpu().numpy()])
    return np.concatenate([truth, pred], axis=1)


def _evaluate_now(trainer: Any, agent: Any, env: Any, cfg: DreamerJobConfig, env_step: int,
                  store: Any | None) -> dict[str, float]:
    from wmlab.train import checkpoint as ckpt

    rng = ckpt.capture_rng(trainer.device)
    try:
        episodes = play_episodes(agent, env, cfg.eval.episodes, cfg.eval.seed, cfg.eval.sample)
        stats = summarize(episodes)
        values = {f"eval/{k}": v for k, v in stats.items()}
        values["env_step"] = env_step
        trainer.log_scalars(values)
        trainer.last_metrics.update(values)
        if cfg.eval.videos:
            frames = [ep["image"] for ep in episodes[:cfg.eval.videos]]
            shortest = min(len(f) for f in frames)
            trainer.log_video("eval/policy", np.stack([f[:shortest] for f in frames]))
        if store is not None and cfg.eval.videos:
            video = _open_loop_video(agent, store)
            if video is not None:
                trainer.log_video("eval/open_loop", video)
        return stats
    finally:
        ckpt.restore_rng(rng, trainer.device)


def _trainer_config_for(cfg: DreamerJobConfig, online: bool) -> Any:
    if online:  # the driver decides when to train, evaluate and checkpoint
        return replace(cfg.trainer, steps=_BIG, ckpt_every=0, eval_every=0, progress=False)
    return cfg.trainer


def _check(cfg: DreamerJobConfig) -> None:
    from wmlab.config import ConfigError, check_choices

    check_choices(cfg)
    if cfg.start == "imagined":
        if not cfg.init:
            raise ConfigError("start=imagined learns from a trained world model: pass init=<world_model or "
                              "dreamer run>")
    elif not cfg.online and not cfg.data:
        raise ConfigError("online=false learns from a fixed dataset: pass data=<episode store> (or "
                          "start=imagined with init=<run> to learn with no data)")
    for name in ("batch_size", "length", "action_repeat"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name}={getattr(cfg, name)} must be >= 1")
    if cfg.train_ratio <= 0:
        raise ConfigError(f"train_ratio={cfg.train_ratio} must be > 0")
    if cfg.init:
        pretrained = method_of(cfg.init)
        if pretrained is not None and pretrained != cfg.method:
            raise ConfigError(f"init={cfg.init} was trained with method={pretrained}, but this run has "
                              f"method={cfg.method}: its {pretrained} parts would be dropped; add method={pretrained} "
                              f"(or start from another run)")


# --------------------------------------------------------------------------------------------------- run
def run(cfg: DreamerJobConfig) -> dict[str, Any]:
    _check(cfg)
    Path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
    if cfg.online and cfg.start == "posterior":
        return _run_online(cfg)
    return _run_offline(cfg)


def _init_agent(cfg: DreamerJobConfig, spec: dict[str, Any]) -> Any:
    import logging

    from wmlab.train import seed_everything

    seed_everything(cfg.trainer.seed)
    agent = build_agent(cfg, spec)
    if cfg.init:
        report = load_world_model(agent, cfg.init)
        logging.getLogger("wmlab.dreamer").info(
            "world model from %s: %d tensors loaded, %d new%s", report["path"], report["loaded"], len(report["new"]),
            f" ({', '.join(report['new'][:8])})" if report["new"] else "")
        write_run_file(Path(cfg.run_dir) / "init.json", json.dumps(report, indent=1))
    return agent


def _run_offline(cfg: DreamerJobConfig) -> dict[str, Any]:
    from wmlab.data.store import open_training_store
    from wmlab.train import Trainer

    if cfg.start == "imagined":
        spec = spec_of_init(cfg.init)
        data: Any = ImaginedStarts(cfg.batch_size * cfg.length)
        store = None
    else:
        store = open_training_store(cfg.data, f"record one with `wmlab collect env={cfg.env} out=<store>`")
        spec = store.spec
        data = Replay(store, cfg.batch_size, cfg.length, seed=cfg.trainer.seed)
    _save_spec(cfg, spec)
    agent = _init_agent(cfg, spec)
    evaluators = []
    env = make_env(cfg) if cfg.env and cfg.trainer.eval_every else None
    if env is not None:
        def episodes(trainer: Any, step: int) -> dict[str, float]:
            return {f"eval/{k}": v for k, v in summarize(play_episodes(
                agent, env, cfg.eval.episodes, cfg.eval.seed, cfg.eval.sample)).items()}

        evaluators.append(episodes)
    with Trainer(agent, data, cfg.trainer, cfg.run_dir, evaluators=evaluators,
                 optimizer_groups=lambda m: m.optimizer_groups(), model_config=cfg.agent) as trainer:
        out = trainer.fit()
    if env is not None:
        env.close()
    return out


def _run_online(cfg: DreamerJobConfig) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from wmlab.data.store import EpisodeStore
    from wmlab.envs.collect import rollout
    from wmlab.envs.policies import make_policy
    from wmlab.train import Trainer
    from wmlab.train import checkpoint as ckpt
    from wmlab.train import seed_everything

    run_dir = Path(cfg.run_dir)
    store = EpisodeStore(run_dir / "replay", mode="a")
    env, eval_env = make_env(cfg), make_env(cfg)
    resuming = ckpt.find_last(run_dir / "checkpoints") is not None
    if not resuming and len(store):
        store.remove(store.ids())  # a run that crashed before its first checkpoint starts over
    seed = cfg.trainer.seed
    replay = Replay(store, cfg.batch_size, cfg.length, seed=seed)
    seed_everything(seed)
    ar = cfg.action_repeat

    def episode_seed(index: int) -> int:
        return seed * 1_000_000 + index

    if not resuming:
        while replay.counters["env_steps"] < max(cfg.prefill, 1):
            i = replay.counters["episodes"]
            policy = make_policy("random", env.action_space, episode_seed(i))
            replay.add(rollout(env, policy, episode_seed(i), cfg.time_limit),
                       {"index": i, "seed": episode_seed(i), "policy": "random"}, ar)
        replay.counters["train_from"] = replay.counters["agent_steps"]
        replay.counters["next_eval"] = replay.counters["env_steps"] + cfg.eval.every if cfg.eval.every else _BIG
        replay.counters["next_ckpt"] = replay.counters["env_steps"] + cfg.ckpt_every if cfg.ckpt_every else _BIG
    _save_spec(cfg, store.spec)
    agent = _init_agent(cfg, store.spec)
    behavior = "explore" if agent.explorer is not None else "task"
    batch_steps = cfg.batch_size * cfg.length
    with Trainer(agent, replay, _trainer_config_for(cfg, True), run_dir,
                 optimizer_groups=lambda m: m.optimizer_groups(), model_config=cfg.agent) as trainer:
        dropped = replay.drop_after_checkpoint() if resuming else 0
        if dropped:
            trainer.log_scalars({"replay/dropped_after_checkpoint": dropped})
        c = replay.counters
        bar = tqdm(total=cfg.env_steps, initial=min(c["env_steps"], cfg.env_steps), desc=run_dir.name,
                   unit="step", dynamic_ncols=True, disable=not cfg.trainer.progress)
        stats: dict[str, float] = {}
        t0 = time.perf_counter()
        def due(steps_in_episode: int) -> int:  # updates the train ratio allows after this many agent steps
            taken = c["agent_steps"] + steps_in_episode - c["train_from"]
            return cfg.pretrain + int(taken * cfg.train_ratio / batch_steps)

        def acting_and_training(act: Any) -> Any:
            """The policy, with the updates that fall due trained between its steps (DreamerV3 interleaves
            per step: the policy improves within an episode, from the episodes already in the replay)."""
            steps = [0]

            def policy(obs: dict) -> Any:
                if due(steps[0]) > trainer.step:
                    trainer.fit(until=due(steps[0]))
                steps[0] += 1
                return act(obs)

            return policy

        while c["env_steps"] < cfg.env_steps:
            i = c["episodes"]
            before = c["env_steps"]
            policy = acting_and_training(_agent_policy(agent, behavior))
            episode = rollout(env, policy, episode_seed(i), cfg.time_limit)
            replay.add(episode, {"index": i, "seed": episode_seed(i), "policy": behavior}, ar)
            trainer.fit(until=due(0))  # the rest, counted with the whole episode
            values = {"episode/return": float(episode["reward"].sum()), "episode/length": len(episode["reward"]) - 1,
                      "env_step": c["env_steps"], "replay/episodes": c["episodes"],
                      "time/env_steps_per_s": (c["env_steps"] - before) / max(time.perf_counter() - t0, 1e-9)}
            if "success" in episode:
                values["episode/success"] = float(episode["success"].max() > 0)
            trainer.log_scalars(values)
            last = c["env_steps"] >= cfg.env_steps
            if c["env_steps"] >= c["next_eval"] or last:
                stats = _evaluate_now(trainer, agent, eval_env, cfg, c["env_steps"], store)
                while c["next_eval"] <= c["env_steps"]:
                    c["next_eval"] += cfg.eval.every or _BIG
            if c["env_steps"] >= c["next_ckpt"] or last:
                while c["next_ckpt"] <= c["env_steps"]:
                    c["next_ckpt"] += cfg.ckpt_every or _BIG
                trainer.save_checkpoint()
            bar.update(min(c["env_steps"], cfg.env_steps) - bar.n)
            bar.set_postfix(ret=f"{values['episode/return']:.1f}", updates=trainer.step, refresh=False)
            t0 = time.perf_counter()
        bar.close()
        out = {"step": trainer.step, "env_steps": c["env_steps"], "episodes": c["episodes"],
               **{f"eval/{k}": v for k, v in stats.items()}}
    env.close()
    eval_env.close()
    return out


def _agent_policy(agent: Any, behavior: str) -> Any:
    from wmlab.agents.dreamer import agent_policy

    return agent_policy(agent, behavior, sample=True)


# ----------------------------------------------------------------------------------------------- evaluate
def evaluate(cfg: DreamerJobConfig, env: str | None = None, **overrides: Any) -> dict[str, Any]:
    """Run the trained task policy for ``episodes`` episodes; write eval.json and videos, and append a row to
    the results table (``results.csv`` beside the run folder unless ``table=`` names another). Other keys
    (``episodes``, ``seed``, ``sample``, ``videos``, ``table``) override the run's ``eval`` settings."""
    from wmlab import config as C
    from wmlab.eval.scores import normalize
    from wmlab.train import load_weights
    from wmlab.train.logger import write_mp4

    e = C.apply(cfg.eval, overrides)
    episodes, seed, sample, videos = e.episodes, e.seed, e.sample, e.videos
    if episodes < 1:
        raise ValueError(f"episodes={episodes} must be >= 1")
    env_id = env or cfg.env
    agent = build_agent(cfg, _load_spec(cfg))
    info = load_weights(cfg.run_dir, agent)
    environment = make_env(cfg, env_id)
    try:
        played = play_episodes(agent, environment, episodes, seed, sample)
    finally:
        environment.close()
    stats = summarize(played)
    run = Path(cfg.run_dir)
    paths = [str(write_mp4(run / "videos" / f"eval_{info['step']:08d}_{i}.mp4", ep["image"], fps=15))
             for i, ep in enumerate(played[:videos])]
    returns = [float(ep["reward"].sum()) for ep in played]
    normalized = normalize(env_id, stats["return_mean"], e.score_random, e.score_expert,
                           action_repeat=cfg.action_repeat, time_limit=cfg.time_limit)
    out = {"run": str(run), "env": env_id, "checkpoint step": info["step"], "episodes": episodes,
           "seeds": f"{seed}..{seed + episodes - 1}", "policy": "sample" if sample else "mode", **stats,
           "normalized": normalized, "returns": returns, "videos": paths}
    (run / "eval.json").write_text(json.dumps(out, indent=2))
    table_path = Path(e.table or run.parent / "results.csv")
    _append_row(table_path, {
        "run": str(run), "env": env_id, "step": info["step"], "episodes": episodes,
        "return_mean": round(stats["return_mean"], 2), "return_std": round(stats["return_std"], 2),
        "success": "" if "success" not in stats else round(stats["success"], 3),
        "normalized": "" if normalized is None else round(normalized, 3),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    out["table"] = str(table_path)
    return out


def pool_evaluations(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Evaluations of several runs pooled per setting (runs whose configs differ only in seeds and bookkeeping,
    as ``wmlab compare`` groups them): the mean over runs of each run's mean return, the std over runs (seeds)
    and the std over all their episodes; success rate and normalised score the same way where every run has one.
    """
    from wmlab.eval.curves import group_runs

    by_run = {str(Path(r["run"])): r for r in results}
    pooled = {}
    for label, runs in group_runs(list(by_run)).items():
        rs = [by_run[str(run)] for run in runs]
        means = np.array([r["return_mean"] for r in rs])
        row: dict[str, Any] = {
            "runs": len(rs), "episodes": int(sum(r["episodes"] for r in rs)),
            "checkpoint steps": [r["checkpoint step"] for r in rs],
            "return_mean": float(means.mean()), "return_std": float(means.std()),
            "return_std_episodes": float(np.std(np.concatenate([r["returns"] for r in rs])))}
        for key in ("success", "normalized"):
            values = [r.get(key) for r in rs]
            if all(v is not None for v in values):
                row[key] = float(np.mean(values))
                row[f"{key}_std"] = float(np.std(values))
        pooled[label] = row
    return pooled


def _append_row(path: Path, row: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
        if header != list(row):
            raise ValueError(f"{path} has the columns {','.join(header)}, not those of an evaluation row "
                             f"({','.join(row)}); name another results table with table=<path>")
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


# ------------------------------------------------------------------------------------------------ presets
def _presets() -> dict[str, dict[str, Any]]:
    from wmlab.agents.config import PRESETS as AGENT

    return {
        # Tiny: a whole online run in seconds, for tests and smoke runs.
        "debug": {"env": "dmc:cartpole_balance", "size": (16, 16), "time_limit": 25, "env_steps": 200,
                  "prefill": 100, "train_ratio": 32.0, "batch_size": 4, "length": 8, "ckpt_every": 100,
                  "agent": AGENT["debug"],
                  "trainer": {"log_every": 5, "progress": False, "tensorboard": False},
                  "eval": {"episodes": 2, "every": 100}},
        # CPU-sized: the learning-curve runs in the README.
        "small": {"agent": AGENT["small"]},
        "paper": {},  # the defaults are the paper configuration
        "dreamerv2": {"agent": AGENT["dreamerv2"], "train_ratio": 160.0, "length": 50, "pretrain": 100,
                      "trainer": {"weight_decay": 1e-6}},
        # The video-pretraining papers' Meta-World runs: 500-step episodes at action repeat 1, batch 50×50
        # every 5 steps (train ratio 500), 1024-wide RSSM.
        "dreamerv2_metaworld": {"agent": AGENT["dreamerv2_metaworld"], "train_ratio": 500.0, "batch_size": 50,
                                "length": 50, "pretrain": 100, "action_repeat": 1, "time_limit": 500,
                                "trainer": {"weight_decay": 1e-6}},
    }


PRESETS = _presets()

def _methods() -> dict[str, Any]:
    from wmlab.jobs.methods import phase

    return {"none": {}, **phase("finetune")}


JOB = Job("dreamer", DreamerJobConfig, run, evaluate, PRESETS, _methods(), pool=pool_evaluations)
