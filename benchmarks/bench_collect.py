"""Collection throughput: env steps/s with 64×64 rendering, one process vs worker processes.

For dmc:walker_walk, metaworld:drawer-open and procgen:coinrun:

- ``env loop``: ``make(...)`` then ``step`` with random actions in this process (simulation + rendering only);
- ``collect, N workers``: random episodes into a fresh store with ``wmlab.envs.collect.collect`` (the code
  path of ``wmlab collect``), counting rendering, episode assembly and the atomic store write, and worker
  start-up (a spawned Python process importing the simulator), as a user would see it.

    python benchmarks/bench_collect.py            # full
    python benchmarks/bench_collect.py --quick    # tiny, proves the script runs
    python benchmarks/bench_collect.py --envs dmc:walker_walk --action-repeat 2   # as Dreamer collects DMC

With ``--action-repeat N`` each agent step is N env steps and one rendered frame; rates count agent steps.

Prints a markdown table and writes it to benchmarks/results/collect.md, JSON (with the CPU model) to collect.json
(``--quick``: collect_quick.*).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from report import run_meta, write_results  # noqa: E402
ENVS = ["dmc:walker_walk", "metaworld:drawer-open", "procgen:coinrun"]


def env_loop(env_id: str, steps: int, repeat: int = 1, render: str = "fast") -> dict:
    """Agent steps/s of one env in this process: simulation and 64×64 rendering, no storage."""
    from wmlab.envs import make, render_setting

    env = make(env_id, size=(64, 64), action_repeat=repeat, **render_setting(render))
    env.action_space.seed(0)
    env.reset(seed=0)
    env.step(env.action_space.sample())  # the first render builds the GL context: not part of the rate
    t0 = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    seconds = time.perf_counter() - t0
    env.close()
    return {"env": env_id, "mode": "env loop", "workers": 0, "action_repeat": repeat, "render": render, "steps": steps,
            "seconds": round(seconds, 2), "steps_per_s": round(steps / seconds, 1)}


def collect_rate(env_id: str, episodes: int, max_steps: int, workers: int, repeat: int = 1,
                 render: str = "fast") -> dict:
    from wmlab.envs import render_setting
    from wmlab.envs.collect import collect

    root = Path(tempfile.mkdtemp(prefix="wmlab-bench-collect-"))
    try:
        summary = collect(env_id, root / "store", episodes=episodes, workers=workers, max_steps=max_steps,
                          size=(64, 64), action_repeat=repeat, progress=False, **render_setting(render))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"env": env_id, "mode": f"collect, {workers} worker{'s' if workers > 1 else ''}", "workers": workers,
            "action_repeat": repeat, "render": render, "steps": summary["steps"], "seconds": summary["seconds"],
            "steps_per_s": summary["steps_per_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny run to check the script works")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--envs", default=",".join(ENVS), help="comma-separated env ids")
    parser.add_argument("--action-repeat", type=int, default=1,
                        help="env steps per agent step (steps and rates below count agent steps, one frame each)")
    parser.add_argument("--render", choices=["fast", "full"], default="fast",
                        help="MuJoCo frames: fast (no shadows or multisampling, the default) or full (the suite's own)")
    parser.add_argument("--out", default=None,
                        help="JSON path (default benchmarks/results/collect[_quick].json; the .md beside it)")
    args = parser.parse_args()
    loop_steps, episode_steps = (30, 20) if args.quick else (1000, 250)
    rows = []
    repeat = args.action_repeat
    for env_id in args.envs.split(","):
        rows.append(env_loop(env_id, loop_steps, repeat, args.render))
        print(rows[-1], flush=True)
        for workers in [int(w) for w in args.workers.split(",")]:
            episodes = 2 if args.quick else 4 * workers
            rows.append(collect_rate(env_id, episodes, episode_steps, workers, repeat, args.render))
            print(rows[-1], flush=True)
    lines = ["| env | mode | action repeat | agent steps | seconds | agent steps/s |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['env']} | {r['mode']} | {r['action_repeat']} | {r['steps']} | {r['seconds']:.1f} | "
              f"{r['steps_per_s']:.0f} |" for r in rows]
    out = args.out or HERE / "results" / ("collect_quick.json" if args.quick else "collect.json")
    meta = run_meta(args.quick, image=[64, 64], action_repeat=repeat, render=args.render)
    write_results(out, "\n".join(lines), meta, rows=rows)


if __name__ == "__main__":
    main()
