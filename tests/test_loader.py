"""make_loader: shapes and dtypes, windows are real slices, length weighting, seeds, refresh, splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from wmlab.data import EpisodeStore, make_flags, make_loader
from wmlab.data.loader import NoWindowsError
from wmlab.data.store import Excluding, selects

LENGTHS = (30, 5, 50, 12)  # the 5-step episode is too short for the windows below


def episode(index: int, length: int) -> dict:
    rng = np.random.default_rng(index)
    return {
        "image": rng.integers(0, 256, (length, 8, 8, 3), dtype=np.uint8),
        "action": rng.uniform(-1, 1, (length, 2)).astype(np.float32),
        "reward": rng.standard_normal(length).astype(np.float32),
        "step_id": (index * 1000 + np.arange(length)).astype(np.int64),  # says where a window came from
        **make_flags(length, terminal=index % 2 == 0),
    }


@pytest.fixture
def store(tmp_path: Path) -> EpisodeStore:
    store = EpisodeStore(tmp_path / "s", "a")
    for i, n in enumerate(LENGTHS):
        store.add(episode(i, n), {"split": "test" if i == 3 else "train"})
    return store


def check_windows(store: EpisodeStore, batch: dict[str, torch.Tensor], length: int) -> list[tuple[int, int]]:
    """Every row of the batch equals store.window of the episode/start its step_id names."""
    ids = store.ids()
    origins = []
    for b in range(batch["step_id"].shape[0]):
        first = int(batch["step_id"][b, 0])
        index, start = divmod(first, 1000)
        want = store.window(ids[index], start, length)
        for key, value in want.items():
            assert np.array_equal(batch[key][b].numpy(), value), key
        origins.append((index, start))
    return origins


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_have_schema_shapes_and_are_real_windows(store: EpisodeStore, workers: int) -> None:
    loader = make_loader(store.root, batch_size=6, length=10, workers=workers, seed=1)
    it = iter(loader)
    for _ in range(3):
        batch = next(it)
        assert batch["image"].shape == (6, 10, 8, 8, 3) and batch["image"].dtype == torch.uint8
        assert batch["action"].shape == (6, 10, 2) and batch["action"].dtype == torch.float32
        assert batch["reward"].shape == (6, 10) and batch["is_first"].dtype == torch.bool
        assert batch["step_id"].dtype == torch.int64
        origins = check_windows(store, batch, 10)
        assert all(index != 1 for index, _ in origins)  # never the 5-step episode


def test_windows_are_uniform_over_valid_starts(store: EpisodeStore) -> None:
    it = iter(make_loader(store, batch_size=512, length=10, keys=["step_id"], seed=0))
    firsts = torch.cat([next(it)["step_id"][:, 0] for _ in range(8)]).numpy()
    index, start = np.divmod(firsts, 1000)
    counts = {i: max(n - 10 + 1, 0) for i, n in enumerate(LENGTHS)}  # 21, 0, 41, 3 starts
    total = sum(counts.values())
    for i, n in counts.items():
        frac = float((index == i).mean())
        assert abs(frac - n / total) < 0.03, (i, frac, n / total)
        if n:
            assert start[index == i].max() <= LENGTHS[i] - 10
    assert len(np.unique(firsts[index == 2])) > 35  # starts spread over the whole episode


def test_seeds_reproduce_and_differ(store: EpisodeStore) -> None:
    def first(seed: int, workers: int) -> list[torch.Tensor]:
        it = iter(make_loader(store, batch_size=4, length=6, workers=workers, keys=["step_id"], seed=seed))
        return [next(it)["step_id"] for _ in range(4)]

    a, b, c = first(3, 0), first(3, 0), first(4, 0)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    w1, w2 = first(3, 2), first(3, 2)
    assert all(torch.equal(x, y) for x, y in zip(w1, w2))
    assert not torch.equal(w1[0], w1[1])  # the two workers draw different batches
    # Batch i depends on (seed, i) only: the worker count does not change the stream.
    assert all(torch.equal(x, y) for x, y in zip(a, w1))


@pytest.mark.parametrize("workers", [0, 2])
def test_a_restored_loader_continues_the_stream(store: EpisodeStore, workers: int) -> None:
    loader = make_loader(store, batch_size=4, length=6, workers=workers, keys=["step_id"], seed=5)
    it = iter(loader)
    stream = [next(it)["step_id"] for _ in range(6)]
    assert loader.state_dict() == {"position": 6}
    resumed = make_loader(store, batch_size=4, length=6, workers=workers, keys=["step_id"], seed=5)
    resumed.load_state_dict({"position": 3})
    it = iter(resumed)
    assert all(torch.equal(next(it)["step_id"], want) for want in stream[3:])
    assert resumed.state_dict() == {"position": 6}
    with pytest.raises(RuntimeError, match="before the first batch"):
        resumed.load_state_dict({"position": 0})


def test_keys_limit_what_is_read(store: EpisodeStore) -> None:
    batch = next(iter(make_loader(store, batch_size=2, length=4, keys=["action", "reward"])))
    assert set(batch) == {"action", "reward"}
    assert not any(key == "image" for _, key in store._maps)  # image files were never opened
    with pytest.raises(KeyError, match="'proprio'"):
        make_loader(store, batch_size=2, length=4, keys=["proprio"])


def test_no_long_enough_episode_is_a_clear_error(store: EpisodeStore, tmp_path: Path) -> None:
    with pytest.raises(NoWindowsError, match="has 60 steps.*longest of 4: 50"):
        make_loader(store, batch_size=2, length=60)
    with pytest.raises(NoWindowsError, match="no episodes"):
        make_loader(EpisodeStore(tmp_path / "empty", "a"), batch_size=2, length=4)


def test_split_and_refresh_pick_the_right_episodes(store: EpisodeStore) -> None:
    batch = next(iter(make_loader(store, batch_size=32, length=10, keys=["step_id"], split="test")))
    assert (batch["step_id"] // 1000 == 3).all()

    reader = EpisodeStore(store.root)
    it = iter(make_loader(reader, batch_size=64, length=40, keys=["step_id"], refresh_s=0))
    assert (next(it)["step_id"] // 1000 == 2).all()  # only the 50-step episode is long enough
    store.add(episode(4, 400))  # written after the loader started (another writer)
    seen = torch.cat([next(it)["step_id"] // 1000 for _ in range(3)])
    assert (seen == 4).float().mean() > 0.5  # 361 of 372 starts are in the new episode


def test_excluding_a_split_keeps_unsplit_episodes(tmp_path: Path) -> None:
    store = EpisodeStore(tmp_path / "mixed", "a")
    for i, split in enumerate([None, None, "test", "val"]):
        store.add(episode(i, 30), {"split": split} if split else {})
    assert store.ids(Excluding("test")) == [store.ids()[i] for i in (0, 1, 3)]
    assert repr(Excluding("test")) == "not 'test'" and selects(Excluding("test"), None)
    assert not selects(Excluding("test"), "test") and selects(None, "test") and not selects("train", None)
    # Through a worker process (the selector is pickled with the dataset): never a window of the test episode.
    loader = make_loader(store, batch_size=64, length=10, keys=["step_id"], split=Excluding("test"), workers=1)
    seen = set((next(iter(loader))["step_id"][:, 0] // 1000).tolist())
    assert seen <= {0, 1, 3} and len(seen) == 3


def test_dataset_pickles_for_spawned_workers(store: EpisodeStore) -> None:
    import pickle

    from wmlab.data.loader import WindowDataset

    store.load(store.ids()[0])  # open maps must not travel
    ds = pickle.loads(pickle.dumps(WindowDataset(store, 3, 10, seed=5)))
    direct = next(iter(WindowDataset(store, 3, 10, seed=5)))
    batch = next(iter(ds))
    assert all(torch.equal(batch[k], direct[k]) for k in direct)


def test_open_maps_stay_bounded(tmp_path: Path) -> None:
    store = EpisodeStore(tmp_path / "s", "a", cache_size=8)
    for i in range(12):
        store.add(episode(i, 20))
    it = iter(make_loader(store, batch_size=16, length=5))
    for _ in range(10):
        next(it)
    assert len(store._maps) <= 8
