"""Collection throughput: env steps/s with 64×64 rendering, one process vs worker processes.

For dmc:walker_walk, metaworld:drawer-open and procgen:coinrun, collects random episodes into a fresh
store with ``wmlab.envs.collect.collect`` (the same code path as ``wmlab collect``) and reports env steps
per second including rendering, episode assembly and the atomic store write. Worker start-up (a spawned
Python process importing the simulator) is included, as a user would see it.

    python benchmarks/bench_collect.py            # full
    python benchmarks/bench_collect.py --quick    # tiny, proves the script runs

Writes a markdown table to stdout and JSON to benchmarks/results/collect.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

HERE = Path(__file__).resolve().parent
ENVS = {"dmc:walker_walk": 250, "metaworld:drawer-open": 250, "procgen:coinrun": 250}


def measure(env_id: str, episodes: int, max_steps: int, workers: int) -> dict:
    from wmlab.envs.collect import collect

    root = Path(tempfile.mkdtemp(prefix="wmlab-bench-collect-"))
    try:
        summary = collect(env_id, root / "store", episodes=episodes, workers=workers, max_steps=max_steps,
                          size=(64, 64), progress=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"env": env_id, "workers": workers, "episodes": episodes, "steps": summary["steps"],
            "seconds": summary["seconds"], "steps_per_s": summary["steps_per_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny run to check the script works")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--out", default=str(HERE / "results" / "collect.json"))
    args = parser.parse_args()
    rows = []
    for env_id, steps in ENVS.items():
        for workers in [int(w) for w in args.workers.split(",")]:
            episodes = 2 if args.quick else 4 * workers
            rows.append(measure(env_id, episodes, 20 if args.quick else steps, workers))
            print(rows[-1], flush=True)
    print("\n| env | workers | env steps | seconds | env steps/s |\n|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['env']} | {r['workers']} | {r['steps']} | {r['seconds']:.1f} | {r['steps_per_s']:.0f} |")
    if not args.quick:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                                   "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
