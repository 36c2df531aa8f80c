"""wmlab play: script, terminal and window front ends on a fake world, start frames, the CLI command."""

from __future__ import annotations

import io
import json
import os
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

from wmlab import play as P
from wmlab.cli import main
from wmlab.config import ConfigError
from wmlab.data import EpisodeStore, make_flags

SIZE = (16, 24)  # (H, W), even sides so the mp4 keeps them


class FakeWorld:
    """A world whose frame colour is 10 × the sum of the actions since the last reset."""

    keys = {"left": 1, "right": 2, "up": 3, "space": 3, "a": 1, "1": 0, "q": 2}
    action_names = ["noop", "left", "right", "jump"]
    idle_action = 0
    size = SIZE

    def __init__(self, default_start: str | None = None) -> None:
        self.default_start = default_start
        self.total = 0
        self.resets = 0

    def reset(self, frame: np.ndarray) -> np.ndarray:
        self.total = 0
        self.resets += 1
        return frame

    def step(self, action: int) -> np.ndarray:
        self.total += action
        return np.full((*SIZE, 3), (10 * self.total) % 256, np.uint8)


def start_frame() -> np.ndarray:
    frame = np.zeros((*SIZE, 3), np.uint8)
    frame[:, :, 0] = 200
    return frame


def read_video(path: Path) -> np.ndarray:
    """All frames of an mp4 as uint8 [T,H,W,3] (the reader is closed, so ffmpeg's pipes are too)."""
    import imageio.v2 as imageio

    with imageio.get_reader(path) as reader:
        return np.stack([np.asarray(f) for f in reader])


def no_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")


def test_world_protocol_and_script_mode_writes_video(tmp_path: Path) -> None:
    world = FakeWorld()
    assert isinstance(world, P.World)
    out = tmp_path / "v" / "session.mp4"
    res = P.play(world, start_frame(), ui="script", actions=[2, 2, 1, 3], out=str(out), fps=10)
    assert res["actions"] == [2, 2, 1, 3] and res["steps"] == 4 and res["frames"] == 5
    assert res["video"] == str(out) and res["seconds"] >= 0 and res["restarts"] == 0
    video = read_video(out)
    assert video.shape == (5, *SIZE, 3)
    assert abs(int(video[-1].mean()) - 80) <= 3  # 10 * (2+2+1+3)

    res = P.play(world, start_frame(), actions=[1] * 10, max_steps=3)  # actions alone mean script mode
    assert res["steps"] == 3 and res["video"] is None
    with pytest.raises(ConfigError, match="action 9 is not an action id.*0..3"):
        P.play(world, start_frame(), actions=[1, 9])
    with pytest.raises(ConfigError, match="ui=script .*actions="):
        P.play(world, start_frame(), ui="script")
    with pytest.raises(ConfigError, match="ui='gui' is not a front end"):
        P.play(world, start_frame(), ui="gui", actions=[1])


def test_decode_key() -> None:
    assert P.decode_key(b"\x1b[Cq") == ("right", 3)
    assert P.decode_key(b"\x1bOA") == ("up", 3)
    assert P.decode_key(b"\x1b[1;5D") == ("left", 6)
    assert P.decode_key(b"\x1b[3~") == ("unknown", 4)
    assert P.decode_key(b"\x1b") == ("escape", 1)
    assert P.decode_key(b"\x1b", final=False) == (None, 0)
    assert P.decode_key(b"\x1b[", final=False) == (None, 0)
    assert P.decode_key(b" ") == ("space", 1) and P.decode_key(b"\r") == ("enter", 1)
    assert P.decode_key(b"A") == ("a", 1) and P.decode_key(b"\x03") == ("ctrl+c", 1)
    assert P.decode_key("é".encode()) == ("é", 2)


def test_terminal_turn_based_from_a_byte_stream(tmp_path: Path) -> None:
    world = FakeWorld()
    keys = io.BytesIO(b"\x1b[C \x1b[Dx1q\x1b[C")  # right, space, left, x (unbound), 1, q quits before →
    screen = io.StringIO()
    res = P.play(world, start_frame(), ui="terminal", input_stream=keys, output_stream=screen, fps=50)
    assert res["actions"] == [2, 3, 1, 0]  # "q" is reserved for quitting even though the world binds it
    text = screen.getvalue()
    assert "\x1b[38;2;200;0;0m" in text and "\x1b[48;2;" in text and "▀" in text  # the start frame, in colour
    assert "\x1b[38;2;60;60;60m" in text  # the last frame: 10 * (2+3+1+0)
    assert "→ right" in text and "↑/space jump" in text and "q quit" in text and "frames/s" in text
    assert "x: not bound" in text
    assert text.endswith("\x1b[?1049l")  # the screen is handed back

    world = FakeWorld()
    res = P.play(world, start_frame(), ui="terminal", input_stream=io.BytesIO(b"\x1b[Cr\x1b[C\x1b"),
                 output_stream=io.StringIO(), out=str(tmp_path / "s.mp4"))
    assert res["actions"] == [2, 2] and res["restarts"] == 1 and world.resets == 2
    assert res["frames"] == 4  # reset, step, restart, step
    res = P.play(FakeWorld(), start_frame(), ui="terminal", input_stream=io.BytesIO(b"aaaaa"),
                 output_stream=io.StringIO(), max_steps=2)
    assert res["actions"] == [1, 1]


def test_terminal_realtime_takes_idle_action_between_keys() -> None:
    read, write = os.pipe()
    try:
        os.write(write, b"\x1b[C")
        with open(read, "rb", buffering=0, closefd=False) as keys:
            res = P.play(FakeWorld(), start_frame(), ui="terminal", realtime=True, fps=50, max_steps=4,
                         input_stream=keys, output_stream=io.StringIO())
    finally:
        os.close(read)
        os.close(write)
    assert res["actions"] == [2, 0, 0, 0]
    assert res["seconds"] >= 3 / 50


def test_terminal_settings_are_restored_on_a_tty() -> None:
    pty = pytest.importorskip("pty")
    import termios

    master, slave = pty.openpty()
    canonical = []

    class Watching(FakeWorld):
        def step(self, action: int) -> np.ndarray:
            canonical.append(bool(termios.tcgetattr(slave)[3] & termios.ICANON))
            return super().step(action)

    typist = threading.Timer(0.2, lambda: os.write(master, b"\x1b[C\x1b[Cq"))
    unstick = threading.Timer(5.0, lambda: os.write(master, b"\nq\n"))  # ends a line-buffered read
    try:
        before = termios.tcgetattr(slave)
        typist.start()
        unstick.start()
        with open(slave, "rb", buffering=0, closefd=False) as keys:
            res = P.play(Watching(), start_frame(), ui="terminal", input_stream=keys,
                         output_stream=io.StringIO(), fps=50)
        assert res["actions"] == [2, 2]
        assert canonical == [False, False]  # keys arrived one by one, not line by line
        assert termios.tcgetattr(slave) == before
    finally:
        typist.cancel()
        unstick.cancel()
        os.close(master)
        os.close(slave)


def test_window_mode_with_injected_key_events(monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backend_bases import KeyEvent

    script = [["right", " "], ["z"], ["r"], ["left"], ["q"]]

    def pump(fig, seconds: float) -> None:
        for key in script.pop(0) if script else ["q"]:
            fig.canvas.callbacks.process("key_press_event", KeyEvent("key_press_event", fig.canvas, key))

    session = P._Session(FakeWorld(), start_frame(), 100)
    bindings = P._bindings(session.world)
    P._run_window(session, bindings, P._legend(session.world, bindings), False, 30.0, 4, pump=pump)
    assert session.actions == [2, 3, 1] and session.restarts == 1
    assert len(session.frames) == 5

    script = [["right"], [], ["left", "x"], [], ["r"], ["up"]]

    def realtime_pump(fig, seconds: float) -> None:
        time.sleep(seconds)
        if script:
            pump(fig, seconds)

    session = P._Session(FakeWorld(), start_frame(), 8)
    P._run_window(session, bindings, "", True, 50.0, 4, pump=realtime_pump)
    assert session.actions == [2, 0, 1, 0, 0, 3, 0, 0] and session.restarts == 1


def test_render_ansi_fits_the_terminal() -> None:
    lines = P.render_ansi(start_frame()[:3, :2], 80, 24, scale=1)  # odd: the last row has no background
    assert lines == ["\x1b[38;2;200;0;0m\x1b[48;2;200;0;0m▀▀\x1b[0m", "\x1b[38;2;200;0;0m\x1b[49m▀▀\x1b[0m"]
    lines = P.render_ansi(np.zeros((64, 64, 3), np.uint8), 40, 10)
    assert len(lines) == 10 and all(line.count("▀") == 20 for line in lines)
    lines = P.render_ansi(np.zeros((4, 4, 3), np.uint8), 200, 100, scale=3)
    assert len(lines) == 6 and lines[0].count("▀") == 12


def test_ui_errors_without_display_or_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    no_display(monkeypatch)
    assert not P.display_available()
    with pytest.raises(ConfigError) as err:
        P.play(FakeWorld(), start_frame(), input_stream=io.BytesIO())
    msg = str(err.value)
    assert "\n" not in msg and "actions=" in msg and "terminal" in msg
    with pytest.raises(ConfigError, match="^no display: use ui=terminal$"):
        P.play(FakeWorld(), start_frame(), ui="window")
    with pytest.raises(ConfigError, match="actions= plays without a keyboard"):
        P.play(FakeWorld(), start_frame(), ui="terminal", actions=[1])


def test_load_start_frame_from_image_and_store(tmp_path: Path) -> None:
    import imageio.v3 as iio

    png = tmp_path / "start.png"
    big = np.zeros((40, 60, 3), np.uint8)
    big[..., 1] = 123
    iio.imwrite(png, big)
    frame = P.load_start_frame(str(png), SIZE)
    assert frame.shape == (*SIZE, 3) and frame.dtype == np.uint8 and (frame[..., 1] == 123).all()
    grey = tmp_path / "grey.png"
    iio.imwrite(grey, np.full((16, 24), 7, np.uint8))
    assert P.load_start_frame(grey, SIZE).shape == (*SIZE, 3)

    store = EpisodeStore(tmp_path / "store", mode="a")
    for e in range(3):
        image = np.zeros((5, 8, 12, 3), np.uint8)
        image[:, :, :, 0] = np.arange(5)[:, None, None] + 10 * e  # red = 10 * episode + frame
        ep = {"image": image, "action": np.zeros((5, 2), np.float32), "reward": np.zeros(5, np.float32),
              **make_flags(5)}
        store.add(ep, {"split": "train" if e == 0 else "test"})
    ids = store.ids()
    root = str(tmp_path / "store")
    assert P.load_start_frame(root, None).shape == (8, 12, 3)
    assert P.load_start_frame(root, None)[0, 0, 0] == 10  # first test episode, frame 0
    assert P.load_start_frame(root, None, episode=1, index=3)[0, 0, 0] == 23
    assert P.load_start_frame(root, None, episode="1", index=-1)[0, 0, 0] == 24
    assert P.load_start_frame(root, None, episode=ids[0], index=2)[0, 0, 0] == 2  # by id, any split
    assert P.load_start_frame(root, SIZE).shape == (*SIZE, 3)
    with pytest.raises(ConfigError, match="episode=5 is out of range.*2 test episodes"):
        P.load_start_frame(root, None, episode=5)
    with pytest.raises(ConfigError, match="index=9 is outside episode .* of 5 frames"):
        P.load_start_frame(root, None, index=9)
    with pytest.raises(ConfigError, match="episode='nope' is not an episode"):
        P.load_start_frame(root, None, episode="nope")

    with pytest.raises(FileNotFoundError) as err:
        P.load_start_frame(tmp_path / "missing.png", SIZE)
    assert "missing.png" in str(err.value) and "image file" in str(err.value) and "store" in str(err.value)
    (tmp_path / "folder").mkdir()
    with pytest.raises(FileNotFoundError, match="folder but not an episode store"):
        P.load_start_frame(tmp_path / "folder", SIZE)
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(ValueError, match="cannot be read as an image"):
        P.load_start_frame(bad, SIZE)


def test_play_run_defaults(tmp_path: Path) -> None:
    import imageio.v3 as iio

    png = tmp_path / "start.png"
    iio.imwrite(png, start_frame())
    run = tmp_path / "run"
    run.mkdir()
    res = P.play_run(run, world=FakeWorld(default_start=str(png)), actions="2,1", fps="20")
    assert res["actions"] == [2, 1] and res["video"].startswith(str(run / "play" / "session_"))
    assert Path(res["video"]).is_file()
    res = P.play_run(run, world=FakeWorld(), start=str(png), actions=[3], out="none")
    assert res["video"] is None and res["actions"] == [3]
    with pytest.raises(ConfigError, match="no start frame: .* start="):
        P.play_run(run, world=FakeWorld(), actions=[1])
    with pytest.raises(ConfigError, match="unknown config key 'max_step'; did you mean max_steps"):
        P.play_run(run, world=FakeWorld(), max_step=3)


def test_cli_play(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import imageio.v3 as iio

    png = tmp_path / "start.png"
    iio.imwrite(png, start_frame())
    run = tmp_path / "run"
    run.mkdir()
    genie = types.ModuleType("wmlab.jobs.genie")
    genie.load_world = lambda run_dir, **kw: FakeWorld(default_start=str(png))
    monkeypatch.setitem(sys.modules, "wmlab.jobs.genie", genie)

    assert main(["play", str(run), "actions=2,2,3", f"out={tmp_path / 'cli.mp4'}"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["actions"] == [2, 2, 3] and summary["frames"] == 4 and (tmp_path / "cli.mp4").is_file()

    genie.load_world = lambda run_dir, **kw: FakeWorld()
    assert main(["play", str(run), "actions=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no start frame" in err
    no_display(monkeypatch)
    assert main(["play", str(run), f"start={png}"]) == 2  # stdin is not a terminal under pytest
    assert "pass actions=" in capsys.readouterr().err
    assert main(["play", str(run), "start=nowhere.png", "actions=1"]) == 2
    assert "start=nowhere.png does not exist" in capsys.readouterr().err
    assert main(["play", "--help"]) == 0 and "realtime=" in capsys.readouterr().out
    assert main(["play"]) == 2 and "usage: wmlab play <run_dir>" in capsys.readouterr().err
