"""Collect episodes from any registered env into an episode store, with several worker processes.

Episode ``i`` is played with seed ``seed + i`` (for Procgen: level ``seed + i``; the policy's generator gets
the same seed), so a dataset can be re-collected exactly. Splits come two ways: ``split="train"`` labels every
episode of a command (disjoint seed ranges then make disjoint splits), or ``test_fraction=f`` labels each
episode by its seed alone (:func:`split_for_seed`: a stable hash puts a fraction ``f`` of all seeds in
"test"), so one command makes both splits, a level keeps its split across re-runs and commands, and train and
test never share a level. Each worker writes its own episodes straight into the store; each episode is
committed atomically, so a killed run loses at most the episodes in flight. Running the same command again
skips the seeds the store already holds for these settings and collects only the rest.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from wmlab.envs.policies import check_policy, make_policy

# Settings that, with the seed, fix an episode: a stored episode with the same ones is not collected again.
# "split" is compared with the split this command gives the episode's seed (see _episode_split).
_SAME = ("env", "policy", "size", "action_repeat", "max_steps", "env_kwargs", "policy_kwargs", "split")
_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """The splitmix64 finaliser of ``x`` (taken modulo 2**64): a fixed, well-mixed 64-bit hash."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def split_for_seed(seed: int, test_fraction: float) -> str:
    """The split of the episode with seed ``seed``: "test" if the seed's hash, read as a uniform number in
    [0, 1), is below ``test_fraction``, else "train".

    It depends on the seed alone (not the env, the worker or the process), so a level has the same split in
    every run and every command with the same fraction, and raising the fraction only moves levels from train
    to test. ``test_fraction`` 0 puts every seed in "train".
    """
    return "test" if (_splitmix64(int(seed)) >> 11) / 2.0**53 < test_fraction else "train"


def _episode_split(job: dict[str, Any], seed: int) -> str | None:
    """The split this command records for seed ``seed`` (None: no split)."""
    if job["test_fraction"] > 0:
        return split_for_seed(seed, job["test_fraction"])
    return job["split"]


def rollout(env: Any, policy: Callable[[dict], Any], seed: int, max_steps: int | None = None) -> dict[str, np.ndarray]:
    """Play one episode and return it in the episode schema.

    Row t holds o_t, the reward that arrived with it (0 on row 0) and the action chosen after seeing it;
    the last row's action is zeros. ``is_terminal`` is set only when the env terminated (not truncated, not
    cut by ``max_steps``). Envs that report ``info["success"]`` get a per-step ``success`` float32 column.
    """
    obs, info = env.reset(seed=seed)
    rows: dict[str, list] = {k: [v] for k, v in obs.items()}
    rewards, actions = [0.0], []
    successes: list[float] | None = [float(info["success"])] if "success" in info else None
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
        if successes is not None:
            successes.append(float(info.get("success", 0.0)))
        if terminated or truncated or (max_steps is not None and steps >= max_steps):
            break
    length = len(rewards)
    space = env.action_space
    discrete = space.shape == ()
    actions.append(np.zeros((), np.int64) if discrete else np.zeros(space.shape, np.float32))
    episode = {k: np.stack(v) for k, v in rows.items()}
    episode["image"] = episode["image"].astype(np.uint8)
    if "proprio" in episode:
        episode["proprio"] = episode["proprio"].astype(np.float32)
    episode["action"] = np.stack(actions).astype(np.int64 if discrete else np.float32)
    episode["reward"] = np.asarray(rewards, np.float32)
    if successes is not None:
        episode["success"] = np.asarray(successes, np.float32)
    for key in ("is_first", "is_last", "is_terminal"):
        episode[key] = np.zeros(length, bool)
    episode["is_first"][0] = True
    episode["is_last"][-1] = True
    episode["is_terminal"][-1] = bool(terminated)
    return episode


def _worker(job: dict[str, Any], indices: list[int], counter: Any,
            on_episode: Callable[[], None] | None = None) -> None:
    """Collect the episodes ``indices`` (a worker process, or the parent when workers=1)."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    from wmlab.data.store import EpisodeStore
    from wmlab.envs.registry import make

    env = make(job["env"], size=job["size"], action_repeat=job["action_repeat"], **job["env_kwargs"])
    store = EpisodeStore(job["out"], mode="a")
    try:
        for i in indices:
            seed = job["seed"] + i
            policy = make_policy(job["policy"], env.action_space, seed, env_id=job["env"], **job["policy_kwargs"])
            episode = rollout(env, policy, seed, job["max_steps"])
            meta = {key: job[key] for key in _SAME}
            meta.update(split=_episode_split(job, seed), seed=seed, index=i, length=len(episode["reward"]),
                        **{"return": float(episode["reward"].sum())})
            if job["test_fraction"] > 0:
                meta["test_fraction"] = job["test_fraction"]
            if "success" in episode:
                meta["success"] = bool(episode["success"].any())
            if meta["split"] is None:
                del meta["split"]  # the store reads a missing split as "no split"
            if env.action_space.shape == ():
                meta["num_actions"] = int(env.action_space.n)
            store.add(episode, meta)
            with counter.get_lock():
                counter.value += len(episode["reward"])
            if on_episode is not None:
                on_episode()
    finally:
        env.close()


def _done_seeds(store: Any, job: dict[str, Any], seeds: set[int]) -> set[int]:
    """Those of ``seeds`` the store already holds with the same settings and split (a re-run skips them).

    With ``test_fraction`` set, a stored episode of the same env whose seed is in ``seeds`` but whose split
    differs from the one this command gives that seed raises ValueError: collecting it would put one level in
    both splits.
    """
    done = set()
    for eid in store.ids():
        meta = store.meta(eid)
        if "seed" not in meta or int(meta["seed"]) not in seeds:
            continue
        seed = int(meta["seed"])
        split = _episode_split(job, seed)
        if job["test_fraction"] > 0 and meta.get("env") == job["env"] and isinstance(meta.get("split"), str) \
                and meta["split"] != split:
            raise ValueError(f"store {job['out']} already holds {job['env']} seed {seed} in split "
                             f"{meta['split']!r}, but test_fraction={job['test_fraction']} puts it in {split!r}; "
                             f"collect into a new out= so that no level is in both splits")
        if meta.get("split") == split and all(meta.get(key) == job[key] for key in _SAME if key != "split"):
            done.add(seed)
    return done


def collect(env_id: str, out: str | Path, episodes: int, workers: int = 1, policy: str = "random",
            max_steps: int | None = None, seed: int = 0, size: tuple[int, int] = (64, 64),
            action_repeat: int = 1, split: str | None = None, test_fraction: float = 0.0,
            progress: bool = True, policy_kwargs: dict | None = None, **env_kwargs: Any) -> dict[str, Any]:
    """Collect ``episodes`` episodes of ``env_id`` (seeds ``seed`` … ``seed + episodes - 1``) into the store
    at ``out`` with ``workers`` processes; returns a summary (episodes, steps, speed, mean return, episodes
    per split of this run under "splits" and of the whole store under "store_splits"; "none": no split).

    ``policy`` names a policy of :mod:`wmlab.envs.policies` (built with ``policy_kwargs``); ``max_steps``
    caps each episode in agent steps; other keyword arguments go to :func:`wmlab.envs.make`. ``split`` labels
    every episode; ``test_fraction`` > 0 instead labels each episode "train" or "test" by
    :func:`split_for_seed` (the two cannot be combined).
    """
    from tqdm import tqdm

    from wmlab.data.store import EpisodeStore
    from wmlab.envs.registry import make

    if int(episodes) < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if max_steps is not None and int(max_steps) < 1:
        raise ValueError(f"max_steps must be >= 1 or None, got {max_steps}")
    test_fraction = float(test_fraction)
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1) (e.g. 0.1 for a 10% test split), got {test_fraction}")
    if test_fraction > 0 and split is not None:
        raise ValueError(f"split={split!r} and test_fraction={test_fraction} both given: test_fraction labels each "
                         f"episode train/test by its seed; drop split= (or set test_fraction=0)")
    make(env_id, size=(8, 8), **env_kwargs).close()  # fail fast on a bad id or setting, before any worker
    check_policy(policy, env_id, **(policy_kwargs or {}))
    job = {"env": env_id, "out": str(out), "size": [int(size[0]), int(size[1])], "action_repeat": int(action_repeat),
           "seed": int(seed), "policy": policy, "max_steps": None if max_steps is None else int(max_steps),
           "split": split, "test_fraction": test_fraction, "env_kwargs": dict(env_kwargs),
           "policy_kwargs": dict(policy_kwargs or {})}
    seeds = {job["seed"] + i for i in range(int(episodes))}
    store = EpisodeStore(out, mode="a")
    before, steps_before, old_ids = len(store), store.num_steps, set(store.ids())
    done = _done_seeds(store, job, seeds)
    todo = [i for i in range(int(episodes)) if job["seed"] + i not in done]
    workers = max(1, min(int(workers), len(todo) or 1))
    ctx = mp.get_context("spawn")  # fresh interpreters: no GL context or simulator state crosses a fork
    counter = ctx.Value("q", 0)
    shards = [todo[w::workers] for w in range(workers)]
    t0 = time.time()
    bar = tqdm(total=len(todo), desc=f"collect {env_id}", unit="ep", disable=not progress, dynamic_ncols=True,
               mininterval=1.0)
    if len(todo) and workers == 1:
        def advance() -> None:
            bar.update(1)
            bar.set_postfix(steps=counter.value, refresh=False)

        _worker(job, shards[0], counter, advance)
    elif todo:
        procs = [ctx.Process(target=_worker, args=(job, shard, counter), daemon=True) for shard in shards]
        for p in procs:
            p.start()
        try:
            while any(p.is_alive() for p in procs):
                time.sleep(0.25)
                store.refresh()
                done = len(store) - before
                if done != bar.n:  # redraw only on progress: a log file gets one line per episode, not per poll
                    bar.update(done - bar.n)
                    bar.set_postfix(steps=counter.value)
        finally:
            for p in procs:
                p.join(timeout=0.1)
                if p.is_alive():
                    p.terminate()
        failed = [p.exitcode for p in procs if p.exitcode]
        if failed:
            raise RuntimeError(f"{len(failed)} collection worker(s) failed (exit codes {failed}, traceback above); "
                               f"episodes already committed in {out} are intact and a re-run skips them")
    store.refresh()
    bar.n = len(store) - before
    bar.close()
    seconds = time.time() - t0
    new = [e for e in store.ids() if e not in old_ids]
    metas = [store.meta(e) for e in new]
    steps = store.num_steps - steps_before
    summary = {"out": str(out), "env": env_id, "episodes": len(new), "skipped": int(episodes) - len(todo),
               "steps": steps, "seconds": round(seconds, 2), "steps_per_s": round(steps / max(seconds, 1e-9), 1),
               "store_episodes": len(store), "splits": _count_splits(m.get("split") for m in metas),
               "store_splits": _count_splits(store.split_of(e) for e in store.ids())}
    if metas:
        summary["mean_return"] = float(np.mean([m.get("return", 0.0) for m in metas]))
        if all("success" in m for m in metas):
            summary["success_rate"] = float(np.mean([m["success"] for m in metas]))
    return summary


def _count_splits(splits: Any) -> dict[str, int]:
    """Episodes per split name ("none" for episodes without one)."""
    counts: dict[str, int] = {}
    for split in splits:
        key = split if isinstance(split, str) else "none"
        counts[key] = counts.get(key, 0) + 1
    return counts
