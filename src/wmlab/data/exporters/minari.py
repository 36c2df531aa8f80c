"""Write a store as a Minari dataset (https://minari.farama.org), for offline-RL tooling.

Minari episodes hold T observations and T-1 transitions: ``actions[t]``, ``rewards[t]``,
``terminations[t]``, ``truncations[t]`` describe o_t → o_{t+1}. From a wmlab episode of T rows:
``observations = {image, proprio?}[0:T]``, ``actions = action[0:T-1]``, ``rewards = reward[1:T]``,
``terminations = is_terminal[1:T]``, and the final transition is a truncation unless the episode
terminated. Episodes of a single step carry no transition and are left out.

Minari reads the datasets root from ``MINARI_DATASETS_PATH``; here ``out`` is that root, set only for
the duration of the export. Images are stored losslessly (``jpeg=False``) unless asked otherwise.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from wmlab.data.formats import FormatError, register_writer
from wmlab.data.store import EpisodeStore


@contextlib.contextmanager
def datasets_root(path: Path) -> Iterator[None]:
    """Point Minari at ``path`` while the block runs."""
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def _storage_format(requested: str | None) -> str:
    if requested is not None:
        return requested
    import importlib.util

    for fmt, module in (("hdf5", "h5py"), ("arrow", "pyarrow")):
        if importlib.util.find_spec(module) is not None:
            return fmt
    raise FormatError("Minari needs h5py or pyarrow to write datasets; install one (pip install h5py)")


def spaces(store: EpisodeStore) -> tuple[Any, Any]:
    """Gymnasium observation (Dict: image, proprio) and action spaces of a store."""
    import gymnasium as gym

    spec = store.spec
    obs = {"image": gym.spaces.Box(0, 255, tuple(spec["image"]), np.uint8)}
    if spec["proprio_dim"] is not None:
        obs["proprio"] = gym.spaces.Box(-np.inf, np.inf, (spec["proprio_dim"],), np.float32)
    stats = store.stats()["action"]
    if spec["action_discrete"]:
        action = gym.spaces.Discrete(spec["num_actions"] or int(stats["max"]) + 1)
    else:
        inside = min(np.min(stats["min"]), -np.max(stats["max"])) >= -1.0
        bound = 1.0 if inside else np.inf
        action = gym.spaces.Box(-bound, bound, (spec["action_dim"],), np.float32)
    return gym.spaces.Dict(obs), action


def _buffers(store: EpisodeStore, obs_keys: list[str]) -> Iterator[Any]:
    from minari.data_collector import EpisodeBuffer

    index = 0
    for eid in store.ids():
        if store.length(eid) < 2:
            continue
        ep = store.load(eid)
        trunc = np.zeros(len(ep["image"]) - 1, bool)
        trunc[-1] = not bool(ep["is_terminal"][-1])
        yield EpisodeBuffer(
            id=index,
            observations={k: np.asarray(ep[k]) for k in obs_keys},
            actions=np.asarray(ep["action"][:-1]),
            rewards=np.asarray(ep["reward"][1:]),
            terminations=np.asarray(ep["is_terminal"][1:]),
            truncations=trunc,
        )
        index += 1


@register_writer("minari")
def write_minari(
    store: EpisodeStore,
    out: Path,
    dataset_id: str | None = None,
    jpeg: bool = False,
    data_format: str | None = None,
    description: str | None = None,
    author: str | None = None,
    author_email: str | None = None,
    algorithm_name: str | None = None,
    code_permalink: str | None = None,
) -> Path:
    """Create Minari dataset ``dataset_id`` (default ``wmlab/<store name>-v0``) under the root ``out``.

    Load it back with ``MINARI_DATASETS_PATH=out`` and ``minari.load_dataset(dataset_id)``."""
    try:
        import minari
    except ImportError:
        raise FormatError("Minari export needs the minari package: pip install 'wmlab[minari]'") from None
    spec = store.spec
    if spec is None or "action" not in spec["keys"] or "reward" not in spec["keys"]:
        raise FormatError(f"store {store.root} has no actions/rewards; Minari datasets need both")
    if not any(store.length(e) >= 2 for e in store.ids()):
        raise FormatError(f"store {store.root} has no episode with 2 or more steps (Minari needs transitions)")
    if dataset_id is None:
        stem = re.sub(r"[^A-Za-z0-9_]+", "_", store.root.resolve().name).strip("_") or "store"
        dataset_id = f"wmlab/{stem}-v0"
    fmt = _storage_format(data_format)
    obs_space, act_space = spaces(store)
    out.mkdir(parents=True, exist_ok=True)
    with datasets_root(out):
        from minari.storage import get_dataset_path

        if Path(get_dataset_path(dataset_id)).exists() and any(Path(get_dataset_path(dataset_id)).iterdir()):
            raise FormatError(f"Minari dataset {dataset_id!r} already exists under {out}; pick another dataset_id")
        with warnings.catch_warnings():  # Minari nags about every optional field left empty
            warnings.simplefilter("ignore", UserWarning)
            minari.create_dataset_from_buffers(
                dataset_id=dataset_id,
                buffer=_buffers(store, list(obs_space.spaces)),  # consumed lazily: one episode in memory at a time
                observation_space=obs_space,
                action_space=act_space,
                algorithm_name=algorithm_name,
                author=author,
                author_email=author_email,
                code_permalink=code_permalink,
                description=description or f"Exported by wmlab from {store.root}",
                data_format=fmt,
                jpeg_encoding=jpeg,
            )
        return Path(get_dataset_path(dataset_id))
