"""Score normalisation for results tables: random policy → 0, expert → 1.

``REFERENCE`` holds, per env id, the mean return of a uniformly random policy (measured here with
``benchmarks/random_scores.py``: 10 episodes, action repeat 2, 64×64) and an expert return (for dm_control
tasks the maximum return of 1000; DreamerV3's published 100k-step scores are kept apart in ``PUBLISHED``).
Other tasks normalise with values the caller passes. A reference only fits episodes played as it was
measured (``MEASURED``: action repeat 2, the suite's own 1000-step episodes); for episodes cut shorter or
played at another action repeat :func:`normalize` gives ``None`` rather than a misleading number.
"""

from __future__ import annotations

import json
from pathlib import Path

_FILE = Path(__file__).with_name("reference_scores.json")

# How the references were measured (benchmarks/random_scores.py): what an evaluation must match to use them.
MEASURED = {"action_repeat": 2, "time_limit": None}


def _load() -> dict[str, dict[str, float]]:
    return json.loads(_FILE.read_text()) if _FILE.exists() else {}


REFERENCE: dict[str, dict[str, float]] = _load()

# DreamerV3 (scores/dmc_vision in its repository), 64×64 pixels, 100k env steps (reported 1M-step runs' curve).
PUBLISHED = {
    "dreamerv3@100k": {"dmc:cartpole_balance": 934.0, "dmc:walker_stand": 904.0, "dmc:ball_in_cup_catch": 862.0},
}


def normalize(env_id: str, score: float, random: float | None = None, expert: float | None = None,
              **played: int | None) -> float | None:
    """``(score - random) / (expert - random)``; ``None`` when the task has no reference and none is given, or
    when ``played`` (``action_repeat=``, ``time_limit=``) differs from how the reference was measured."""
    unknown = set(played) - set(MEASURED)
    if unknown:
        raise TypeError(f"normalize: unknown episode settings {sorted(unknown)}; known: {sorted(MEASURED)}")
    ref = REFERENCE.get(env_id, {})
    if any(played[k] != MEASURED[k] for k in played):
        ref = {}  # the reference's episodes were not played this way
    lo = random if random is not None else ref.get("random")
    hi = expert if expert is not None else ref.get("expert")
    if lo is None or hi is None:
        return None
    if hi == lo:
        raise ValueError(f"expert and random scores of {env_id} are equal ({hi}); cannot normalise")
    return (float(score) - lo) / (hi - lo)
