"""Importers/exporters on tiny generated data: Dreamer npz, GenieRedux folders, videos, Minari."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import imageio
import numpy as np
import pytest
from PIL import Image

from wmlab.data import EpisodeStore, make_flags
from wmlab.data.formats import FormatError, detect_format, export_data, import_data
from wmlab.data.images import resize_frames


def smooth_frames(length: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Frames that survive JPEG/H.264 nearly intact: a gradient plus a per-frame colour."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([yy * 255 / h, xx * 255 / w, np.full((h, w), 128.0)], -1)
    cols = rng.uniform(-60, 60, (length, 1, 1, 3))
    return np.clip(base[None] * 0.5 + 64 + cols, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------- Dreamer
def write_npz_dir(root: Path, style: str) -> dict[str, dict[str, np.ndarray]]:
    """Dreamer episode files: "v3" (int actions after o_t), "v2" (one-hot led-to + flags + discount),
    "v1" (continuous led-to, discount only)."""
    rng = np.random.default_rng(0)
    files = {}
    for i, length in enumerate((9, 6)):
        ep = {"image": rng.integers(0, 256, (length, 16, 16, 3), dtype=np.uint8),
              "reward": rng.standard_normal(length).astype(np.float32)}
        if style == "v3":
            ep["action"] = rng.integers(0, 5, length).astype(np.int32)
            ep.update(make_flags(length, terminal=i == 0))
            ep["log_speed"] = rng.standard_normal((length, 2)).astype(np.float64)  # extra key kept as-is
        elif style == "v2":
            ep["action"] = np.eye(4, dtype=np.float32)[rng.integers(0, 4, length)]
            ep["action"][0] = 0
            ep.update(make_flags(length, terminal=i == 0))
            ep["discount"] = 1.0 - ep["is_terminal"].astype(np.float32)
        else:
            ep["action"] = rng.uniform(-1, 1, (length, 3)).astype(np.float32)
            ep["action"][0] = 0
            ep["discount"] = np.ones(length, np.float32)
            ep["discount"][-1] = 0.0 if i == 1 else 1.0
        name = f"sub/ep{i}-{length}.npz" if i else f"ep{i}-{length}.npz"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(root / name, **ep)
        files[name] = ep
    return files


@pytest.mark.parametrize("style", ["v3", "v2", "v1"])
def test_dreamer_import_converts_and_export_round_trips_bit_for_bit(tmp_path: Path, style: str) -> None:
    files = write_npz_dir(tmp_path / "npz", style)
    assert detect_format(tmp_path / "npz") == "dreamer"
    store = import_data(tmp_path / "npz", tmp_path / "store")
    assert len(store) == 2
    eps = {store.meta(e)["dreamer"]["file"]: store.load(e) for e in store.ids()}
    for name, orig in files.items():
        ep = eps[name]
        if style == "v3":
            assert ep["action"].dtype == np.int64 and np.array_equal(ep["action"], orig["action"])
            assert ep["log_speed"].dtype == np.float64
        elif style == "v2":  # one-hot led-to → ids chosen after o_t
            assert np.array_equal(ep["action"][:-1], orig["action"][1:].argmax(1)) and ep["action"][-1] == 0
            assert store.spec["num_actions"] == 4
        else:
            assert np.array_equal(ep["action"][:-1], orig["action"][1:]) and not ep["action"][-1].any()
            assert np.array_equal(ep["is_terminal"], orig["discount"] == 0) and ep["is_first"][0]

    out = export_data(store, tmp_path / "back", "dreamer")
    for name, orig in files.items():
        with np.load(out / name, allow_pickle=False) as z:
            back = {k: z[k] for k in z.files}
        assert set(back) == set(orig), name
        for key in orig:
            assert back[key].dtype == orig[key].dtype and np.array_equal(back[key], orig[key]), (name, key)


def test_dreamer_export_can_write_v2_style_for_apv_contextwm(tmp_path: Path) -> None:
    files = write_npz_dir(tmp_path / "npz", "v3")
    store = EpisodeStore(tmp_path / "store", "a")
    for name, orig in files.items():  # a store that did not come from Dreamer files
        ep = {k: v for k, v in orig.items() if k != "action"}
        store.add({**ep, "action": orig["action"].astype(np.int64)}, {"num_actions": 5})
    out = export_data(store, tmp_path / "v2", "dreamer", action_convention="led_to", one_hot=True)
    for eid in store.ids():
        with np.load(out / f"{eid}-{store.length(eid)}.npz") as z:
            act = z["action"]
        assert act.dtype == np.float32 and act.shape[1] == 5 and not act[0].any()
        assert np.array_equal(act[1:].argmax(1), store.load(eid)["action"][:-1])


def test_dreamer_bad_file_is_named(tmp_path: Path) -> None:
    write_npz_dir(tmp_path / "npz", "v3")
    bad = tmp_path / "npz" / "zz-broken.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(FormatError, match="zz-broken.npz"):
        import_data(tmp_path / "npz", tmp_path / "store")
    assert len(EpisodeStore(tmp_path / "store")) == 2  # the files before the bad one went in whole
    bad.unlink()
    again = import_data(tmp_path / "npz", tmp_path / "store")  # re-running skips what is already there
    assert len(again) == 2 and again.last_import.skipped_existing == 2 and again.last_import.added == 0


# ---------------------------------------------------------------------------------------- GenieRedux
def write_genie(root: Path) -> dict[str, tuple[np.ndarray, list[int]]]:
    root.mkdir(parents=True)
    (root / "info.json").write_text(json.dumps({"name": "coinrun", "version": "2.0.0", "info": {"action_space": [7]}}))
    sessions = {}
    for inst, length in ((0, 6), (1, 4)):
        sess = root / f"{inst:06d}" / "000000"
        (sess / "frames").mkdir(parents=True)
        frames = smooth_frames(length, 24, 24, seed=inst)
        for t, f in enumerate(frames):
            Image.fromarray(f).save(sess / "frames" / f"{t:06d}.jpg", quality=98)
        acts = [int(a) for a in np.random.default_rng(inst).integers(0, 9, length)]
        if inst == 0:  # GenieRedux records: src frame, the action taken there, tgt frame
            recs = [{"src_id": t - 1, "tgt_id": t, "action": acts[t - 1] if t else 3, "extras": {}} for t in range(length)]
            (sess / "actions.json").write_text(json.dumps({"actions": recs}))
            acts[-1] = 0  # nothing is chosen at the last frame
        else:  # a plain list, one id per frame
            (sess / "actions.json").write_text(json.dumps(acts))
        sessions[f"{inst:06d}"] = (frames, acts)
    return sessions


def test_genie_import_export_round_trip(tmp_path: Path) -> None:
    sessions = write_genie(tmp_path / "genie")
    assert detect_format(tmp_path / "genie") == "genie"
    store = import_data(tmp_path / "genie", tmp_path / "store", split="train")
    assert len(store) == 2 and store.spec["action_discrete"] and store.spec["num_actions"] == 9  # ids up to 8 > 7
    assert "reward" not in store.spec["keys"]
    for eid in store.ids():
        meta = store.meta(eid)
        frames, acts = sessions[meta["genie"]["instance"]]
        ep = store.load(eid)
        assert ep["action"].tolist() == acts and meta["genie"]["info"]["name"] == "coinrun"
        assert np.abs(ep["image"].astype(int) - frames).mean() < 3 and meta["split"] == "train"

    out = export_data(store, tmp_path / "exported", "genie")
    back = import_data(out, tmp_path / "store2")
    for a, b in zip(store.ids(), back.ids()):
        # GenieRedux records have no slot for the last row's action (nothing is chosen there).
        assert np.array_equal(back.load(b)["action"][:-1], store.load(a)["action"][:-1])
        assert back.load(b)["action"][-1] == 0
        assert back.meta(b)["genie"] == store.meta(a)["genie"] and back.meta(b)["split"] == "train"
        assert np.abs(back.load(b)["image"].astype(int) - store.load(a)["image"]).mean() < 3
    with pytest.raises(FormatError, match="not empty"):
        export_data(store, out, "genie")


# ---------------------------------------------------------------------------------------- video
def write_videos(root: Path) -> dict[str, np.ndarray]:
    root.mkdir(parents=True)
    clips = {"a.mp4": smooth_frames(12, 48, 64, 1), "b.gif": smooth_frames(6, 32, 32, 2),
             "c": smooth_frames(5, 40, 40, 3), "d": smooth_frames(4, 20, 20, 4),
             "e.webm": smooth_frames(8, 32, 48, 5)}  # SSv2's own clips are VP9 .webm
    with imageio.get_writer(root / "a.mp4", fps=10, macro_block_size=1, quality=9) as w:
        for f in clips["a.mp4"]:
            w.append_data(f)
    with imageio.get_writer(root / "e.webm", fps=12, codec="libvpx-vp9", macro_block_size=1, quality=9) as w:
        for f in clips["e.webm"]:
            w.append_data(f)
    imageio.v3.imwrite(root / "b.gif", clips["b.gif"], duration=100, loop=0)
    for name, ext in (("c", "jpg"), ("d", "png")):
        (root / name).mkdir()
        for t, f in enumerate(clips[name]):
            Image.fromarray(f).save(root / name / f"{t:04d}.{ext}", quality=98)
    return clips


def test_video_folder_import_resizes_every_kind(tmp_path: Path) -> None:
    clips = write_videos(tmp_path / "videos")
    assert detect_format(tmp_path / "videos") == "video"
    store = import_data(tmp_path / "videos", tmp_path / "store", size=(16, 16))
    assert len(store) == 5 and store.spec["image"] == (16, 16, 3) and store.spec["action_dim"] is None
    for eid, (name, frames) in zip(store.ids(), sorted(clips.items())):
        ep = store.load(eid)
        assert store.meta(eid)["source"].endswith(name) and len(ep["image"]) == len(frames)
        want = resize_frames(frames, (16, 16))
        tol = 12 if name == "b.gif" else 6  # gif palettes quantise colours
        assert np.abs(ep["image"].astype(int) - want).mean() < tol, name
        assert ep["is_first"][0] and ep["is_last"][-1] and not ep["is_terminal"].any()
    assert store.meta(store.ids()[0])["fps"] == pytest.approx(10.0)


def test_video_list_files_carry_captions(tmp_path: Path) -> None:
    write_videos(tmp_path / "videos")
    ssv2 = [{"id": "a", "label": "pushing a cup", "template": "Pushing [something]"},
            {"id": "c", "label": "lifting a box"}]
    (tmp_path / "train.json").write_text(json.dumps(ssv2))
    store = import_data(tmp_path / "train.json", tmp_path / "store", size=16, video_root=tmp_path / "videos")
    metas = [store.meta(e) for e in store.ids()]
    assert [m["caption"] for m in metas] == ["pushing a cup", "lifting a box"]
    assert metas[0]["template"] == "Pushing [something]" and metas[0]["source"].endswith("a.mp4")

    (tmp_path / "videos" / "list.txt").write_text("# name caption\nb.gif\ta spinning gif\nd\n")
    store2 = import_data(tmp_path / "videos" / "list.txt", tmp_path / "store2", size=16, stride=2)
    assert [store2.meta(e).get("caption") for e in store2.ids()] == ["a spinning gif", None]
    assert [store2.length(e) for e in store2.ids()] == [3, 2]  # every 2nd frame

    (tmp_path / "bad.json").write_text(json.dumps([{"id": "nope"}]))
    with pytest.raises(FormatError, match="'nope' not found"):
        import_data(tmp_path / "bad.json", tmp_path / "store3", size=16)
    with pytest.raises(FormatError, match="no option 'fps'.*stride"):
        import_data(tmp_path / "videos", tmp_path / "store3", fps=5)


def test_resize_is_antialiased_and_centre_cropped() -> None:
    checker = ((np.indices((64, 64)).sum(0) % 2) * 255).astype(np.uint8)
    frames = np.repeat(checker[None, ..., None], 3, -1)
    small = resize_frames(frames, (16, 16))
    assert abs(small.mean() - 127.5) < 2 and small.std() < 2  # no aliasing into black/white blocks
    wide = np.zeros((1, 40, 80, 3), np.uint8)
    wide[:, :, 20:60, 1] = 255  # green centre square, black sides
    crop = resize_frames(wide, (10, 10))
    assert (crop[..., 1] == 255).all() and (crop[..., 0] == 0).all()


# ---------------------------------------------------------------------------------------- Minari
def _minari_storage_available() -> bool:
    return any(importlib.util.find_spec(m) is not None for m in ("h5py", "pyarrow"))


def build_store(root: Path, discrete: bool) -> EpisodeStore:
    store = EpisodeStore(root, "a")
    rng = np.random.default_rng(1)
    for i, length in enumerate((7, 4, 1)):
        ep = {"image": rng.integers(0, 256, (length, 32, 32, 3), dtype=np.uint8),
              "reward": rng.standard_normal(length).astype(np.float32), **make_flags(length, terminal=i == 0)}
        if discrete:
            ep["action"] = rng.integers(0, 3, length).astype(np.int64)
        else:
            ep["action"] = rng.uniform(-1, 1, (length, 2)).astype(np.float32)
            ep["proprio"] = rng.standard_normal((length, 4)).astype(np.float32)
        store.add(ep, {"num_actions": 5} if discrete else {})
    return store


@pytest.mark.skipif(not _minari_storage_available(), reason="Minari needs h5py or pyarrow to store datasets")
@pytest.mark.parametrize("discrete", [True, False])
def test_minari_export_loads_back_with_minari(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, discrete: bool) -> None:
    import gymnasium as gym
    import minari

    store = build_store(tmp_path / "store", discrete)
    path = export_data(store, tmp_path / "minari", "minari", dataset_id="wmlab/test-v0")
    assert path == tmp_path / "minari" / "wmlab" / "test-v0"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    ds = minari.load_dataset("wmlab/test-v0")
    assert isinstance(ds.action_space, gym.spaces.Discrete if discrete else gym.spaces.Box)
    if discrete:
        assert ds.action_space.n == 5
    episodes = list(ds.iterate_episodes())
    assert len(episodes) == 2  # the 1-step episode has no transition
    for got, eid in zip(episodes, store.ids()):
        ep = store.load(eid)
        assert np.array_equal(got.observations["image"], ep["image"])
        if not discrete:
            assert np.array_equal(got.observations["proprio"], ep["proprio"])
        assert np.array_equal(got.actions, ep["action"][:-1])
        assert np.array_equal(got.rewards, ep["reward"][1:])
        assert np.array_equal(got.terminations, ep["is_terminal"][1:])
        assert bool(got.truncations[-1]) != bool(ep["is_terminal"][-1])


def test_minari_export_needs_actions(tmp_path: Path) -> None:
    write_videos(tmp_path / "videos")
    store = import_data(tmp_path / "videos" / "c", tmp_path / "store")
    with pytest.raises(FormatError, match="no actions/rewards"):
        export_data(store, tmp_path / "minari", "minari")
    with pytest.raises(FormatError, match="unknown export format 'hdf9'"):
        export_data(store, tmp_path / "x", "hdf9")
