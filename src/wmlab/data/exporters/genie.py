"""Write a store as a GenieRedux dataset folder (layout in :mod:`wmlab.data.importers.genie`).

Frames are JPEG (as GenieRedux writes them), so images come back close but not bit-exact; actions,
ids and metadata round-trip exactly, except the last row's action: a record pairs a frame with the
next one, so the final frame has none (the wmlab schema leaves it zero anyway). Each session also gets an
``info.json`` with the episode's wmlab metadata, which the importer reads back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from wmlab.data.formats import FormatError, register_writer
from wmlab.data.store import EpisodeStore


def _records(action: np.ndarray) -> list[dict[str, Any]]:
    # Record t pairs frame t-1 with the action that led to frame t (the GenieRedux convention).
    out = [{"src_id": -1, "tgt_id": 0, "action": _jsonable(np.zeros_like(action[0]))}]
    for t in range(1, len(action)):
        out.append({"src_id": t - 1, "tgt_id": t, "action": _jsonable(action[t - 1])})
    return out


def _jsonable(a: np.ndarray) -> Any:
    return a.tolist() if a.ndim else a.item()


@register_writer("genie")
def write_genie(store: EpisodeStore, out: Path, quality: int = 95) -> Path:
    """``out/info.json`` + ``out/<instance>/<session>/{frames/%06d.jpg, actions.json, info.json}``."""
    from PIL import Image

    spec = store.spec
    if spec is None or spec["action_dim"] is None:
        raise FormatError(f"store {store.root} has no actions; GenieRedux datasets need them")
    if out.exists() and any(out.iterdir()):
        raise FormatError(f"{out} is not empty; export into a new folder")
    out.mkdir(parents=True, exist_ok=True)
    used: set[tuple[str, str]] = set()
    dataset_info = None
    for i, eid in enumerate(store.ids()):
        meta = store.meta(eid)
        genie = meta.pop("genie", None) or {}
        dataset_info = dataset_info or genie.get("info")
        inst, sess = str(genie.get("instance", f"{i:06d}")), str(genie.get("session", "000000"))
        if (inst, sess) in used or "/" in inst + sess or inst.startswith(".") or sess.startswith("."):
            inst, sess = f"{i:06d}", "000000"
        used.add((inst, sess))
        sess_dir = out / inst / sess
        (sess_dir / "frames").mkdir(parents=True)
        ep = store.load(eid, ["image", "action"])
        for t in range(len(ep["image"])):
            Image.fromarray(np.asarray(ep["image"][t])).save(sess_dir / "frames" / f"{t:06d}.jpg", quality=quality)
        with open(sess_dir / "actions.json", "w") as f:
            json.dump({"actions": _records(np.asarray(ep["action"]))}, f)
        meta.pop("source", None)
        meta.pop("num_actions", None)
        with open(sess_dir / "info.json", "w") as f:
            json.dump(meta, f)
    if dataset_info is None:
        n = None
        if spec["action_discrete"]:
            n = spec["num_actions"] or int(store.stats()["action"]["max"]) + 1
        dataset_info = {
            "name": store.root.name,
            "version": "0.0.0",
            "info": {"action_space": [n] if n else [spec["action_dim"]], "observation_space": list(spec["image"][:2])},
        }
    with open(out / "info.json", "w") as f:
        json.dump(dataset_info, f)
    return out
