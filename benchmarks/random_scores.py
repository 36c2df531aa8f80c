"""Reference scores for ``wmlab.eval.scores.normalize``: mean return of a uniformly random policy.

    python benchmarks/random_scores.py                     # the DMC-vision tasks below, 10 episodes each
    python benchmarks/random_scores.py --envs dmc:walker_walk --episodes 20

Random actions, action repeat 2 (the DMC-vision protocol), env seeds 0..N-1. dm_control rewards are in [0, 1]
per env step over 1000 steps, so the expert score is the maximum return, 1000. Writes
``src/wmlab/eval/reference_scores.json`` (merged with what it holds).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "wmlab" / "eval" / "reference_scores.json"
DMC_VISION = ["dmc:acrobot_swingup", "dmc:ball_in_cup_catch", "dmc:cartpole_balance", "dmc:cartpole_balance_sparse",
              "dmc:cartpole_swingup", "dmc:cartpole_swingup_sparse", "dmc:cheetah_run", "dmc:finger_spin",
              "dmc:finger_turn_easy", "dmc:finger_turn_hard", "dmc:hopper_hop", "dmc:hopper_stand",
              "dmc:pendulum_swingup", "dmc:quadruped_run", "dmc:quadruped_walk", "dmc:reacher_easy",
              "dmc:reacher_hard", "dmc:walker_run", "dmc:walker_stand", "dmc:walker_walk"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", default=",".join(DMC_VISION))
    parser.add_argument("--episodes", type=int, default=10)
    args = parser.parse_args()

    from wmlab.envs import make
    from wmlab.envs.collect import rollout
    from wmlab.envs.policies import make_policy

    table = json.loads(OUT.read_text()) if OUT.exists() else {}
    for env_id in args.envs.split(","):
        env = make(env_id, size=(8, 8), action_repeat=2)
        returns = [float(rollout(env, make_policy("random", env.action_space, seed), seed)["reward"].sum())
                   for seed in range(args.episodes)]
        env.close()
        entry = {"random": round(float(np.mean(returns)), 2), "random_std": round(float(np.std(returns)), 2),
                 "episodes": args.episodes}
        if env_id.startswith("dmc:"):
            entry["expert"] = 1000.0
        table[env_id] = entry
        print(f"{env_id}: random {entry['random']:.1f} ± {entry['random_std']:.1f}", flush=True)
    OUT.write_text(json.dumps(dict(sorted(table.items())), indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
