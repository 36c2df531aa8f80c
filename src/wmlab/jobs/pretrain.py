"""``wmlab train pretrain``: pretrain the RSSM world model on action-free video (APV, ContextWM, PreLAR).

    wmlab train pretrain method=apv data=videos/ run_dir=runs/pre_apv          # a folder of mp4/webm/gif
    wmlab train pretrain method=contextwm data=data/rlbench_like               # an episode store
    wmlab train pretrain method=prelar data=data/walker preset=dreamerv2       # actions in the store ignored
    wmlab train dreamer method=apv init=runs/pre_apv env=metaworld:drawer-open preset=dreamerv2

Whatever ``data=`` holds, only frames are used: stores with actions are read without ``action`` and
``reward``; video files and frame folders are imported once into ``<run_dir>/videos`` (resized to
``size``). No simulator is involved. ``method=`` applies that method's pretraining settings
(:mod:`wmlab.jobs.methods`); sizes come from ``preset=`` and must match the fine-tuning preset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wmlab.jobs import Job
from wmlab.jobs import world_model as wmjob
from wmlab.jobs.methods import phase
from wmlab.train.distributed import write_run_file

FRAME_KEYS = ("image", "is_first", "is_last", "is_terminal")


@dataclass
class PretrainJobConfig(wmjob.WorldModelJobConfig):
    method: str = field(default="apv", metadata={"doc": "apv | contextwm | prelar | plain (see wmlab.jobs.methods)"})
    size: tuple[int, int] = field(default=(64, 64), metadata={"doc": "frame size when data= is video to import"})
    run_dir: str = field(default="runs/pretrain", metadata={"doc": "run folder; the same folder again resumes"})


def frames_only(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec a pretraining model sees: no actions, no rewards."""
    out = dict(spec)
    out.update(action_dim=None, action_discrete=False, num_actions=None)
    out["keys"] = [k for k in spec.get("keys", FRAME_KEYS) if k in FRAME_KEYS]
    return out


_MAKE_VIDEOS = "import videos with `wmlab data import SRC out=<store>` or record rollouts with `wmlab collect`"


def video_store(cfg: PretrainJobConfig) -> str:
    """``data`` itself if it is an episode store, else the store its videos are imported into."""
    from wmlab.data.formats import import_data

    src = Path(cfg.data)
    if not cfg.data:
        raise FileNotFoundError("no data given: pass data=<episode store, video file or folder of videos>")
    if (src / "store.json").is_file():
        return str(src)
    if not src.exists():
        raise FileNotFoundError(f"data={src} does not exist; pass an episode store, a video file or a folder "
                                f"of videos/frames")
    out = Path(cfg.run_dir) / "videos"
    import_data(src, out, size=tuple(cfg.size))
    return str(out)


def _methods_check(cfg: PretrainJobConfig) -> None:
    from wmlab.config import ConfigError

    if cfg.model.action_input == "real":
        raise ConfigError(f"pretraining reads no actions, but model.action_input=real; use method= "
                          f"({', '.join(PRESET_METHODS)}) or model.action_input=none|prelar")


def run(cfg: PretrainJobConfig) -> dict[str, Any]:
    import torch

    from wmlab.data.loader import make_loader
    from wmlab.data.store import open_training_store
    from wmlab.models.world_model import WorldModel
    from wmlab.train import Trainer

    _methods_check(cfg)
    path = video_store(cfg)
    store = open_training_store(path, _MAKE_VIDEOS)
    spec = frames_only(store.spec)
    torch.manual_seed(cfg.trainer.seed)
    model = WorldModel(cfg.model, spec)
    split = cfg.train_split or wmjob._train_split(store, cfg.eval.split)
    keys = [k for k in FRAME_KEYS if k in store.spec["keys"]]

    def data(seed: int) -> Any:
        return make_loader(store.root, cfg.batch_size, cfg.length, workers=cfg.workers, seed=seed, split=split,
                           keys=keys)

    evaluators = []
    if cfg.trainer.eval_every and store.ids(split=cfg.eval.split):
        evaluators.append(wmjob._open_loop_evaluator(_FrameStore(store, keys), cfg.eval))
    import json

    # Written first: a fine-tuning run may start from this one's checkpoints while it still trains.
    write_run_file(Path(cfg.run_dir) / "spec.json", json.dumps(spec, indent=1, default=list))
    with Trainer(model, data, cfg.trainer, cfg.run_dir, evaluators=evaluators, model_config=cfg.model) as trainer:
        return trainer.fit()


class _FrameStore:
    """A read view of a store whose windows hold only the frame keys (for the open-loop evaluator)."""

    def __init__(self, store: Any, keys: list[str]) -> None:
        self._store, self._keys = store, keys

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def window(self, eid: str, start: int, length: int, keys: Any = None, out: Any = None) -> Any:
        return self._store.window(eid, start, length, keys=self._keys)


def evaluate(cfg: PretrainJobConfig, **overrides: Any) -> dict[str, Any]:
    """Open-loop prediction of the pretrained model on the held-out split (frames only)."""
    from wmlab.data.store import open_training_store

    store = open_training_store(video_store(cfg), _MAKE_VIDEOS)
    keys = [k for k in FRAME_KEYS if k in store.spec["keys"]]
    return wmjob.evaluate_store(cfg, _FrameStore(store, keys), frames_only(store.spec), **overrides)


PRESET_METHODS = phase("pretrain")

def _presets() -> dict[str, Any]:
    from wmlab.agents.config import DREAMERV2_METAWORLD_WORLD_MODEL, DREAMERV2_WORLD_MODEL

    return {**wmjob.PRESETS, "dreamerv2": {"model": DREAMERV2_WORLD_MODEL},
            "dreamerv2_metaworld": {"model": DREAMERV2_METAWORLD_WORLD_MODEL}}


PRESETS = _presets()

JOB = Job("pretrain", PretrainJobConfig, run, evaluate, PRESETS, PRESET_METHODS)
