"""EpisodeStore: exact round trip, schema and spec errors, crash safety, concurrent writers, verify."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from wmlab.data import (
    CorruptFileError,
    EpisodeError,
    EpisodeStore,
    SpecMismatchError,
    StoreError,
    info,
    make_flags,
)
from wmlab.data.verify import verify


def episode(length: int, seed: int = 0, size: int = 16, terminal: bool = False, discrete: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    ep = {
        "image": rng.integers(0, 256, (length, size, size, 3), dtype=np.uint8),
        "proprio": rng.standard_normal((length, 5)).astype(np.float32),
        "reward": rng.standard_normal(length).astype(np.float32),
        "joint_pos": rng.standard_normal((length, 2, 3)).astype(np.float64),  # extra key, kept as-is
        **make_flags(length, terminal),
    }
    if discrete:
        ep["action"] = rng.integers(0, 6, length).astype(np.int64)
    else:
        ep["action"] = rng.uniform(-1, 1, (length, 3)).astype(np.float32)
    ep["reward"][0] = 0.0
    return ep


def tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_round_trip_is_bit_exact_and_metadata_survives(tmp_path: Path) -> None:
    store = EpisodeStore(tmp_path / "s", "a")
    eps = [episode(n, seed=n, terminal=n == 7) for n in (7, 12, 3)]
    ids = [store.add(ep, {"env": "test", "seed": i, "split": "train" if i else "test"}) for i, ep in enumerate(eps)]
    assert ids == sorted(ids) and len(set(ids)) == 3  # ids sort by creation time

    reader = EpisodeStore(tmp_path / "s")  # mode "r"
    assert reader.ids() == ids and len(reader) == 3 and reader.num_steps == 22
    for eid, ep in zip(ids, eps):
        got = reader.load(eid)
        assert set(got) == set(ep)
        for key in ep:
            assert got[key].dtype == ep[key].dtype and np.array_equal(got[key], ep[key]), key
            assert not got[key].flags.writeable  # memory-mapped read-only
        win = reader.window(eid, 1, 2, keys=["image", "reward"])
        assert set(win) == {"image", "reward"} and np.array_equal(win["image"], ep["image"][1:3])
    assert reader.meta(ids[1]) == {"env": "test", "seed": 1, "split": "train"}
    assert reader.ids(split="test") == [ids[0]] and reader.ids(split="train") == ids[1:]

    spec = reader.spec
    assert spec["image"] == (16, 16, 3) and spec["action_dim"] == 3 and not spec["action_discrete"]
    assert spec["proprio_dim"] == 5 and "joint_pos" in spec["keys"]

    stats = reader.stats()
    allp = np.concatenate([ep["proprio"] for ep in eps])
    np.testing.assert_allclose(stats["proprio"]["mean"], allp.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(stats["proprio"]["std"], allp.std(0), rtol=1e-5, atol=1e-6)
    imgs = np.concatenate([ep["image"] for ep in eps]).reshape(-1, 3)
    np.testing.assert_allclose(stats["image"]["mean"], imgs.mean(0), rtol=1e-9)
    assert stats["image"]["max"] == imgs.max(0).tolist() and stats["reward"]["count"] == 22
    with pytest.raises(IndexError, match="outside episode"):
        reader.window(ids[2], 2, 2)


def test_missing_store_names_path_and_how_to_create(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        EpisodeStore(tmp_path / "nope")
    msg = str(err.value)
    assert str(tmp_path / "nope") in msg and "wmlab collect" in msg and "wmlab data import" in msg
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("not a store")
    with pytest.raises(StoreError, match="not an episode store"):
        EpisodeStore(tmp_path / "other", "a")


@pytest.mark.parametrize(
    "change, key, expect",
    [
        (lambda e: e.update(image=e["image"].astype(np.float32)), "'image'", "uint8"),
        (lambda e: e.update(image=e["image"].transpose(0, 3, 1, 2)), "'image'", "[T,H,W,3]"),
        (lambda e: e.update(reward=e["reward"].astype(np.float64)), "'reward'", "float32"),
        (lambda e: e.update(reward=e["reward"][:-1]), "'reward'", "same length"),
        (lambda e: e.update(action=e["action"].astype(np.int32)), "'action'", "int64"),
        (lambda e: e.update(is_first=np.ones(6, bool)), "'is_first'", "only at step 0"),
        (lambda e: e.update(is_last=np.zeros(6, bool)), "'is_last'", "final step"),
        (lambda e: e.update(is_terminal=np.arange(6) == 2), "'is_terminal'", "final step"),
        (lambda e: e.update(is_first=e["is_first"].astype(np.int8)), "'is_first'", "bool"),
        (lambda e: e.pop("is_last"), "'is_last'", "missing"),
        (lambda e: e["proprio"].__setitem__((3, 1), np.nan), "'proprio'", "finite"),
        (lambda e: e.update(caption=np.array(["a"] * 6)), "'caption'", "metadata"),
    ],
)
def test_schema_errors_name_the_key(tmp_path: Path, change, key: str, expect: str) -> None:
    store = EpisodeStore(tmp_path / "s", "a")
    ep = episode(6)
    change(ep)
    with pytest.raises(EpisodeError) as err:
        store.add(ep)
    msg = str(err.value)
    assert key in msg and expect in msg and "\n" not in msg
    assert len(store) == 0 and not any((tmp_path / "s" / "episodes").iterdir())


def test_spec_mismatch_is_rejected_without_touching_stored_data(tmp_path: Path) -> None:
    store = EpisodeStore(tmp_path / "s", "a")
    store.add(episode(5, size=16))
    before = tree_hash(tmp_path / "s")
    with pytest.raises(SpecMismatchError) as err:
        store.add(episode(5, size=8))
    assert "'image'" in str(err.value) and "(8, 8, 3)" in str(err.value) and "(16, 16, 3)" in str(err.value)
    with pytest.raises(SpecMismatchError, match="'action'.*int64.*float32"):
        store.add(episode(5, discrete=True))
    bad = episode(5)
    del bad["proprio"]
    with pytest.raises(SpecMismatchError, match="missing key 'proprio'"):
        store.add(bad)
    assert tree_hash(tmp_path / "s") == before and len(EpisodeStore(tmp_path / "s")) == 1


def test_discrete_num_actions_declared_in_meta_is_enforced(tmp_path: Path) -> None:
    store = EpisodeStore(tmp_path / "s", "a")
    store.add(episode(5, discrete=True), {"num_actions": 6})
    assert store.spec["action_discrete"] and store.spec["num_actions"] == 6
    ep = episode(5, discrete=True)
    ep["action"][2] = 9
    with pytest.raises(SpecMismatchError, match="num_actions=6"):
        store.add(ep)


def test_streaming_writer_commits_on_is_last(tmp_path: Path) -> None:
    store = EpisodeStore(tmp_path / "s", "a")
    ep = episode(4, terminal=True)
    writer = store.writer({"policy": "random"})
    eids = []
    for t in range(4):
        step = {k: v[t] for k, v in ep.items() if k != "reward"}
        step["reward"] = float(ep["reward"][t])  # a python float, cast to float32 by the writer
        eids.append(writer.add(step, meta={"seed": 3} if t == 0 else None))
    assert eids[:3] == [None] * 3 and eids[3] is not None and len(writer) == 0
    got = store.load(eids[3])
    for key in ep:
        assert np.array_equal(got[key], ep[key]), key
    assert store.meta(eids[3]) == {"policy": "random", "seed": 3}

    with store.writer() as w2:  # collection stops mid-episode: commit() marks a truncation
        for t in range(3):
            w2.add({k: v[t] for k, v in ep.items() if k not in ("is_first", "is_last", "is_terminal")})
        eid = w2.commit()
        w2.add({k: v[0] for k, v in ep.items()})  # left unfinished: dropped on exit
    flags = store.load(eid, ["is_first", "is_last", "is_terminal"])
    assert flags["is_first"].tolist() == [True, False, False] and flags["is_last"].tolist() == [False, False, True]
    assert not flags["is_terminal"].any() and len(store) == 2


def test_read_only_store_refuses_add_and_pickles_without_open_maps(tmp_path: Path) -> None:
    EpisodeStore(tmp_path / "s", "a").add(episode(5))
    store = EpisodeStore(tmp_path / "s", cache_size=2)
    with pytest.raises(StoreError, match="read-only"):
        store.add(episode(5))
    store.load(store.ids()[0])
    assert len(store._maps) == 2  # LRU bound holds
    clone = pickle.loads(pickle.dumps(store))
    assert len(clone._maps) == 0 and np.array_equal(clone.load(clone.ids()[0])["image"], episode(5)["image"])


def _writer_proc(root: str, seeds: list[int]) -> None:
    store = EpisodeStore(root, "a")
    for s in seeds:
        store.add(episode(6 + s, seed=s), {"seed": s})


def test_refresh_sees_episodes_from_concurrent_writer_processes(tmp_path: Path) -> None:
    root = str(tmp_path / "s")
    EpisodeStore(root, "a")
    reader = EpisodeStore(root)
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer_proc, args=(root, seeds)) for seeds in ([1, 2, 3], [4, 5, 6])]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert len(reader) == 0  # nothing until refresh
    reader.refresh()
    assert len(reader) == 6 and len(set(reader.ids())) == 6
    for eid in reader.ids():
        seed = reader.meta(eid)["seed"]
        assert np.array_equal(reader.load(eid)["image"], episode(6 + seed, seed=seed)["image"])
    assert verify(root) == []


# Child-process prelude: SIGKILL the process from inside the store's writer, right after the first array file
# of the episode after ``KILL_AFTER`` committed ones, so the kill lands mid-write every time.
KILL_MID_WRITE = textwrap.dedent(
    """
    import os, signal
    from pathlib import Path
    import numpy as np
    from wmlab.data import layout

    _save = np.save

    def save(path, arr, **kw):
        _save(path, arr, **kw)
        folder = Path(path).parent
        committed = [d for d in folder.parent.iterdir() if not d.name.startswith(".")]
        if folder.name.startswith(layout.TMP_PREFIX) and len(committed) == KILL_AFTER:
            os.kill(os.getpid(), signal.SIGKILL)

    np.save = save
    """
)

_KILLED_WRITER = KILL_MID_WRITE + textwrap.dedent(
    """
    import sys
    from wmlab.data import EpisodeStore, make_flags
    store = EpisodeStore(sys.argv[1], "a")
    for i in range(10):
        T = 400
        img = np.full((T, 64, 64, 3), i % 256, np.uint8)
        store.add({"image": img, "reward": np.zeros(T, np.float32), **make_flags(T)}, {"i": i})
    """
)


def test_sigkill_mid_write_loses_at_most_the_episode_being_written(tmp_path: Path) -> None:
    root = tmp_path / "s"
    proc = subprocess.run([sys.executable, "-c", "KILL_AFTER = 3\n" + _KILLED_WRITER, str(root)], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    (leftover,) = [p for p in (root / "episodes").iterdir() if p.name.startswith(".tmp-")]
    assert [f.name for f in leftover.iterdir()] == ["image.npy"]  # it died with the 4th episode half written
    store = EpisodeStore(root)
    assert sorted(store.meta(e)["i"] for e in store.ids()) == [0, 1, 2]  # every committed episode is kept
    for eid in store.ids():
        i = store.meta(eid)["i"]
        assert (store.load(eid)["image"][::57] == i % 256).all()
    problems = verify(root)
    assert [p.kind for p in problems] == ["leftover"] and leftover.name in str(problems[0])
    EpisodeStore(root, "a").add({"image": np.zeros((5, 64, 64, 3), np.uint8), "reward": np.zeros(5, np.float32),
                                 **make_flags(5)}, {"i": 9})
    assert len(EpisodeStore(root)) == 4  # the store takes new episodes after the crash
    verify(root, fix=True)
    assert not [p for p in (root / "episodes").iterdir() if p.name.startswith(".tmp-")]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_crash_leftovers_and_corrupt_files_are_named_and_skipped(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = EpisodeStore(root, "a")
    ids = [store.add(episode(6, seed=i)) for i in range(4)]
    from wmlab.data import layout

    # A writer that died mid-write left a temp folder with a partial file.
    tmp = root / "episodes" / f"{layout.TMP_PREFIX}{layout._host()}-{_dead_pid()}-x"
    tmp.mkdir()
    (tmp / "image.npy").write_bytes(b"\x93NUMPY partial")
    # One committed episode got truncated on disk, another lost its meta.json.
    npy = root / "episodes" / ids[1] / "reward.npy"
    npy.write_bytes(npy.read_bytes()[:-8])
    (root / "episodes" / ids[2] / "meta.json").write_text('{"length": 6, "ke')

    with pytest.warns(UserWarning, match=str(root / "episodes" / ids[2] / "meta.json")):
        reader = EpisodeStore(root)
    assert reader.ids() == [ids[0], ids[1], ids[3]] and ids[2] in reader.skipped
    with pytest.raises(CorruptFileError) as err:
        reader.load(ids[1])["reward"]
    assert str(npy) in str(err.value)
    assert np.array_equal(reader.load(ids[3])["image"], episode(6, seed=3)["image"])

    problems = verify(root)
    paths = sorted(p.path for p in problems)
    assert paths == sorted([str(npy), str(root / "episodes" / ids[2] / "meta.json"), str(tmp)])
    assert {p.kind for p in problems if p.path == str(tmp)} == {"leftover"}

    # add() cleans dead writers' leftovers; good episodes stay untouched.
    with pytest.warns(UserWarning, match="skipping episode"):
        writer = EpisodeStore(root, "a")
    writer.add(episode(6, seed=9))
    assert not tmp.exists()


def test_verify_names_bad_values_and_info_summarises(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = EpisodeStore(root, "a")
    ids = [store.add(episode(6, seed=i), {"split": "train" if i < 2 else "test"}) for i in range(3)]
    path = root / "episodes" / ids[1] / "is_first.npy"
    np.save(path, np.ones(6, bool))  # valid file, wrong flags
    problems = verify(root)
    assert len(problems) == 1 and problems[0].path == str(path) and "'is_first'" in problems[0].message

    summary = info(root)
    assert summary["episodes"] == 3 and summary["steps"] == 18 and summary["spec"]["image"] == (16, 16, 3)
    assert summary["splits"] == {"train": {"episodes": 2, "steps": 12}, "test": {"episodes": 1, "steps": 6}}
    assert summary["size_bytes"] > 3 * 6 * 16 * 16 * 3 and "reward" in summary["stats"]
