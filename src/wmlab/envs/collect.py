"""Collect episodes from any registered env into an episode store, with several worker processes.

Episode ``i`` is played with seed ``seed + i`` (for Procgen: level ``seed + i``), so a dataset can be
re-collected exactly and train/test splits made from disjoint seed ranges. Each worker writes its own
episodes straight into the store; each episode is committed atomically, so a killed run loses at most the
episodes in flight and a re-run with the same settings appends the rest.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from wmlab.envs.policies import make_policy


def rollout(env: Any, policy: Callable[[dict], Any], seed: int, max_steps: int | None = None) -> dict[str, np.ndarray]:
    """Play one episode and return it in the episode schema.

    Row t holds o_t, the reward that arrived with it (0 on row 0) and the action chosen after seeing it;
    the last row's action is zeros. ``is_terminal`` is set only when the env terminated (not truncated).
    """
    obs, _ = env.reset(seed=seed)
    rows: dict[str, list] = {k: [v] for k, v in obs.items()}
    rewards, actions, successes = [0.0], [], [0.0]
    terminated = False
    steps = 0
    while True:
        action = policy(obs)
        actions.append(action)
        obs, reward, terminated, truncated, info = env.step(action)
        steps += 1
        for k, v in obs.items():
            rows[k].append(v)
        rewards.append(float(reward))
        successes.append(float(info.get("success", 0.0)))
        if terminated or truncated or (max_steps is not None and steps >= max_steps):
            break
    length = len(rewards)
    space = env.action_space
    discrete = not hasattr(space, "shape") or space.shape == ()
    zero = np.zeros((), np.int64) if discrete else np.zeros(space.shape, np.float32)
    actions.append(zero)
    episode = {k: np.stack(v) for k, v in rows.items()}
    episode["image"] = episode["image"].astype(np.uint8)
    if "proprio" in episode:
        episode["proprio"] = episode["proprio"].astype(np.float32)
    episode["action"] = np.stack(actions).astype(np.int64 if discrete else np.float32)
    episode["reward"] = np.asarray(rewards, np.float32)
    episode["success"] = np.asarray(successes, np.float32)
    flags = np.zeros(length, bool)
    episode["is_first"] = flags.copy()
    episode["is_first"][0] = True
    episode["is_last"] = flags.copy()
    episode["is_last"][-1] = True
    episode["is_terminal"] = flags.copy()
    episode["is_terminal"][-1] = bool(terminated)
    return episode


def _worker(job: dict[str, Any], indices: list[int], counter: Any,
            on_episode: Callable[[], None] | None = None) -> None:
    """Collect the episodes ``indices`` (a worker process, or the parent when workers=1)."""
    from wmlab.data.store import EpisodeStore
    from wmlab.envs.registry import make

    env = make(job["env"], size=job["size"], action_repeat=job["action_repeat"], **job["env_kwargs"])
    store = EpisodeStore(job["out"], mode="a")
    try:
        for i in indices:
            seed = job["seed"] + i
            policy = make_policy(job["policy"], env.action_space, seed, **job["policy_kwargs"])
            episode = rollout(env, policy, seed, job["max_steps"])
            meta = {"env": job["env"], "seed": seed, "policy": job["policy"], "size": list(job["size"]),
                    "action_repeat": job["action_repeat"], "index": i}
            if job["split"]:
                meta["split"] = job["split"]
            if env.action_space.shape == ():
                meta["num_actions"] = int(env.action_space.n)
            store.add(episode, meta)
            with counter.get_lock():
                counter.value += len(episode["reward"])
            if on_episode is not None:
                on_episode()
    finally:
        env.close()


def collect(env_id: str, out: str | Path, episodes: int, workers: int = 1, policy: str = "random",
            max_steps: int | None = None, seed: int = 0, size: tuple[int, int] = (64, 64),
            action_repeat: int = 1, split: str | None = None, progress: bool = True,
            policy_kwargs: dict | None = None, **env_kwargs: Any) -> dict[str, Any]:
    """Collect ``episodes`` episodes of ``env_id`` into the store at ``out``; returns a summary."""
    from tqdm import tqdm

    from wmlab.data.store import EpisodeStore
    from wmlab.envs.registry import make

    if episodes < 1:
        raise ValueError(f"episodes must be ≥ 1, got {episodes}")
    make(env_id, size=(8, 8), **env_kwargs).close()  # fail fast on a bad id or setting, before any worker
    make_policy(policy, None, 0, check_only=True, **(policy_kwargs or {}))
    job = {"env": env_id, "out": str(out), "size": tuple(size), "action_repeat": action_repeat, "seed": seed,
           "policy": policy, "max_steps": max_steps, "split": split, "env_kwargs": env_kwargs,
           "policy_kwargs": dict(policy_kwargs or {})}
    store = EpisodeStore(out, mode="a")
    before, steps_before = len(store), store.num_steps
    workers = max(1, min(int(workers), episodes))
    ctx = mp.get_context("spawn")
    counter = ctx.Value("q", 0)
    shards = [list(range(w, episodes, workers)) for w in range(workers)]
    t0 = time.time()
    bar = tqdm(total=episodes, desc=f"collect {env_id}", unit="ep", disable=not progress, dynamic_ncols=True,
               mininterval=1.0)
    if workers == 1:
        os.environ.setdefault("MUJOCO_GL", "egl")

        def advance() -> None:
            bar.update(1)
            bar.set_postfix(steps=counter.value, refresh=False)

        _worker(job, shards[0], counter, advance)
    else:
        procs = [ctx.Process(target=_worker, args=(job, shard, counter), daemon=True) for shard in shards]
        for p in procs:
            p.start()
        try:
            while any(p.is_alive() for p in procs):
                time.sleep(0.25)
                store.refresh()
                bar.n = len(store) - before
                bar.set_postfix(steps=counter.value, refresh=False)
                bar.refresh()
        finally:
            for p in procs:
                p.join(timeout=0.1)
                if p.is_alive():
                    p.terminate()
        failed = [p.exitcode for p in procs if p.exitcode]
        if failed:
            raise RuntimeError(f"{len(failed)} collection worker(s) failed (exit codes {failed}); "
                               f"episodes already committed in {out} are intact")
    store.refresh()
    bar.n = len(store) - before
    bar.close()
    seconds = time.time() - t0
    steps = store.num_steps - steps_before
    return {"out": str(out), "env": env_id, "episodes": len(store) - before, "steps": steps,
            "seconds": round(seconds, 2), "steps_per_s": round(steps / max(seconds, 1e-9), 1),
            "store_episodes": len(store)}

