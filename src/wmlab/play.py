"""``wmlab play``: a person plays a learned world model from the keyboard.

A world model is played through the :class:`World` protocol: ``reset`` starts it from one frame, ``step``
advances it by one action id and returns the next frame. Four front ends drive it:

* ``ui="script"`` (or ``actions=`` given): plays a fixed list of action ids without a keyboard.
* ``ui="terminal"``: draws frames with 24-bit ANSI colour (two pixel rows per text row, ``▀``) and reads
  keys without echo or line buffering. Turn-based by default (one step per key press); ``realtime=True``
  steps every ``1/fps`` seconds and takes ``world.idle_action`` when no key was pressed.
* ``ui="window"``: a matplotlib window (needs a display and an interactive backend).
* ``ui="auto"``: window if a display is available, else terminal if stdin is a terminal.

In the terminal and the window ``q`` or escape quits and ``r`` restarts from the start frame; these keys
are reserved even if the world binds them. Every frame shown is recorded, and the session can be saved as
an mp4::

    from wmlab.play import load_start_frame, play
    frame = load_start_frame("data/coinrun", world.size)            # uint8 [H,W,3]
    summary = play(world, frame, ui="terminal", out="session.mp4")

``wmlab play <run_dir>`` (see :func:`play_run`) loads the world from a run folder and starts from a frame of
the run's own dataset unless ``start=`` names another store or an image.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Literal, Protocol, Sequence, TextIO, runtime_checkable

import numpy as np

from wmlab import config as C
from wmlab.config import ConfigError
from wmlab.terminal import EOF, KeyReader, Screen, decode_key, isatty, render_ansi

__all__ = ["World", "PlayConfig", "load_start_frame", "play", "play_run", "display_available", "decode_key",
           "render_ansi"]

UIS = ("auto", "script", "terminal", "window")
QUIT_KEYS = ("q", "escape", "ctrl+c", "ctrl+d")
RESTART_KEY = "r"
_RESERVED = (*QUIT_KEYS, RESTART_KEY)
_SHOWN_KEY = {"left": "←", "right": "→", "up": "↑", "down": "↓"}
_NON_INTERACTIVE = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


@runtime_checkable
class World(Protocol):
    """A playable world model.

    ``keys`` maps key names (lowercase single characters such as ``"a"`` and ``"1"``, and ``"left"``,
    ``"right"``, ``"up"``, ``"down"``, ``"space"``, ``"enter"``, ``"escape"``) to action ids;
    ``action_names[i]`` names action ``i``; ``idle_action`` is taken when no key is pressed in real time.
    """

    keys: dict[str, int]
    action_names: list[str]
    idle_action: int

    def reset(self, frame: np.ndarray) -> np.ndarray:
        """Start from a uint8 ``[H,W,3]`` frame; returns the uint8 ``[H,W,3]`` frame to show."""
        ...

    def step(self, action: int) -> np.ndarray:
        """Advance one step with action id ``action``; returns the next uint8 ``[H,W,3]`` frame."""
        ...


def _doc(text: str, default: Any = None) -> Any:
    """A config field with its one-line meaning (shown by ``wmlab play --help``)."""
    return field(default=default, metadata={"doc": text})


@dataclass
class PlayConfig:
    """Settings of ``wmlab play <run_dir>`` (see :func:`play_run`)."""

    start: str | None = _doc("episode store or image (png/jpg) to start from; none: the run's dataset", None)
    episode: str | None = _doc("episode id, or its position among the store's test episodes (all if none)", None)
    index: int = _doc("frame of that episode to start from (negative: from the end)", 0)
    ui: Literal["auto", "script", "terminal", "window"] = _doc(
        "auto | terminal | window | script (script plays actions= without a keyboard)", "auto")
    out: str | None = _doc("mp4 to save the session to; auto: <run_dir>/play/session_<time>.mp4; none: no video",
                           "auto")
    actions: list[int] | None = _doc("action ids to play without a keyboard, e.g. 1,1,7", None)
    max_steps: int = _doc("steps before the session ends", 1000)
    fps: float = _doc("real-time step rate, key polling rate and video frame rate", 15.0)
    realtime: bool = _doc("step every 1/fps seconds (idle action without a key) instead of once per key", False)
    scale: int = _doc("largest upscale of the model's frames on screen", 8)
    steps: int | None = _doc("MaskGIT iterations per frame (fewer: faster, rougher; none: the model's own)", None)
    temperature: float | None = _doc("sampling temperature (none: the model's own)", None)
    seed: int = _doc("sampling seed", 0)


# ----------------------------------------------------------------------------- start frames
def _resize(frame: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """uint8 ``[h,w,3]`` → uint8 ``[H,W,3]`` (PIL bilinear); unchanged when it already has ``size=(H, W)``."""
    if size is None or tuple(frame.shape[:2]) == tuple(size):
        return frame
    from PIL import Image

    h, w = (int(s) for s in size)
    return np.array(Image.fromarray(frame).resize((w, h), Image.Resampling.BILINEAR))


def _read_image(path: Path) -> np.ndarray:
    """An image file → uint8 ``[H,W,3]`` (grey and RGBA converted, 16-bit scaled, first frame of a gif)."""
    import imageio.v3 as iio

    from wmlab.data.images import ImageReadError, to_rgb

    try:
        arr = np.asarray(iio.imread(path))
    except Exception as e:  # decoders raise many types (OSError, ValueError, RuntimeError, ...)
        raise ImageReadError(f"start={path} cannot be read as an image ({type(e).__name__}: {e}); "
                             "pass a png/jpg file or an episode store folder") from None
    if arr.ndim == 4:
        arr = arr[0]
    if arr.dtype == np.uint16:
        arr = (arr.astype(np.float32) / 257.0).round().astype(np.uint8)
    return np.ascontiguousarray(to_rgb(arr, f"start={path}"))


def _store_frame(path: Path, episode: int | str | None, index: int) -> np.ndarray:
    """Frame ``index`` of one episode of the store at ``path`` → uint8 ``[H,W,3]``."""
    from wmlab.data.images import to_rgb
    from wmlab.data.store import EpisodeStore, StoreNotFoundError

    try:
        store = EpisodeStore(path, mode="r")
    except StoreNotFoundError:
        raise FileNotFoundError(f"start={path} is a folder but not an episode store; pass an episode store "
                                "folder or an image file (png/jpg)") from None
    ids = store.ids(split="test") or store.ids()
    if not ids:
        raise ConfigError(f"episode store {path} holds no episodes; pass another start= store or an image")
    if episode is None:
        eid = ids[0]
    elif isinstance(episode, str) and episode in store:
        eid = episode
    else:
        try:
            pos = int(episode)
        except (TypeError, ValueError):
            raise ConfigError(f"episode={episode!r} is not an episode of {path}; pass an id such as {ids[0]} "
                              f"or a position 0..{len(ids) - 1}") from None
        if not -len(ids) <= pos < len(ids):
            which = "test episodes" if store.ids(split="test") else "episodes"
            raise ConfigError(f"episode={pos} is out of range: {path} has {len(ids)} {which}; "
                              f"pass 0..{len(ids) - 1}")
        eid = ids[pos]
    length = store.length(eid)
    pos = int(index) + length if int(index) < 0 else int(index)
    if not 0 <= pos < length:
        raise ConfigError(f"index={index} is outside episode {eid} of {length} frames; pass 0..{length - 1}")
    return np.ascontiguousarray(to_rgb(store.window(eid, pos, 1, keys=["image"])["image"][0], f"episode {eid}"))


def load_start_frame(start: str | os.PathLike, size: tuple[int, int] | None, episode: int | str | None = None,
                     index: int = 0) -> np.ndarray:
    """The frame a session starts from, as uint8 ``[H,W,3]`` with ``(H, W) = size`` (None: as stored).

    ``start`` is an image file (png/jpg/..., read with imageio) or an episode store folder. From a store,
    ``episode`` is an episode id or a position among the store's test episodes (all episodes if it has no
    test split; default: the first), and ``index`` the frame of that episode (negative counts from the end).
    Frames of another size are resized with PIL bilinear.
    """
    path = Path(start).expanduser()
    if path.is_dir():
        frame = _store_frame(path, episode, index)
    elif path.is_file():
        frame = _read_image(path)
    else:
        raise FileNotFoundError(f"start={start} does not exist; pass an image file (png/jpg) or an episode "
                                "store folder")
    return _resize(frame, size)


# ----------------------------------------------------------------------------- session
def _check_action(action: Any, world: World) -> int:
    n = len(world.action_names)
    try:
        value = int(action)
    except (TypeError, ValueError):
        value = -1
    if isinstance(action, bool) or value != action or not 0 <= value < n:
        raise ConfigError(f"action {action!r} is not an action id of this world; pass ids 0..{n - 1} "
                          f"({', '.join(f'{i}={name}' for i, name in enumerate(world.action_names))})")
    return value


def _check_frame(frame: Any, what: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A frame shown by the session: a private uint8 ``[H,W,3]`` copy (``shape``: what earlier frames had)."""
    arr = np.asarray(frame)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"{what}: expected a uint8 [H,W,3] frame, got {arr.dtype} {list(arr.shape)}")
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{what} returned a {list(arr.shape)} frame after {list(shape)} frames; "
                         "every frame of a session must have one size")
    return np.array(arr, copy=True)


class _Session:
    """One play session: the world, the frames shown so far and timing."""

    def __init__(self, world: World, start_frame: np.ndarray, max_steps: int) -> None:
        self.world = world
        self.start_frame = start_frame
        self.max_steps = max_steps
        self.frames: list[np.ndarray] = []  # each uint8 [H,W,3]
        self.actions: list[int] = []
        self.restarts = 0
        self.step_seconds = 0.0
        self.last = ""  # the last key and what it did, for the status line
        self._times: deque[float] = deque(maxlen=32)
        self.started = time.monotonic()
        self._show(world.reset(start_frame), "world.reset")

    @property
    def frame(self) -> np.ndarray:
        return self.frames[-1]

    @property
    def done(self) -> bool:
        return len(self.actions) >= self.max_steps

    @property
    def recent_fps(self) -> float:
        """Frames shown per second over the last (up to 32) frames."""
        if len(self._times) < 2 or self._times[-1] <= self._times[0]:
            return 0.0
        return (len(self._times) - 1) / (self._times[-1] - self._times[0])

    def _show(self, frame: Any, what: str) -> None:
        self.frames.append(_check_frame(frame, what, self.frames[0].shape if self.frames else None))
        self._times.append(time.monotonic())

    def step(self, action: int) -> None:
        tic = time.perf_counter()
        frame = self.world.step(action)
        self.step_seconds = time.perf_counter() - tic
        self.actions.append(action)
        self._show(frame, f"world.step({action})")

    def restart(self) -> None:
        self.restarts += 1
        self._show(self.world.reset(self.start_frame), "world.reset")

    def press(self, key: str, bindings: dict[str, int]) -> int | str | None:
        """What one key press asks for: ``"quit"`` (also at the end of the input), ``"restart"`` (already
        done here), the action id bound to the key (for the caller to take), or None (not bound)."""
        if key == EOF or key in QUIT_KEYS:
            return "quit"
        if key == RESTART_KEY:
            self.restart()
            self.last = "r: restart"
            return "restart"
        if key in bindings:
            self.last = f"{key}: {self.world.action_names[bindings[key]]}"
            return bindings[key]
        self.last = f"{key}: not bound"
        return None

    def summary(self, video: Path | None) -> dict[str, Any]:
        seconds = time.monotonic() - self.started
        return {"steps": len(self.actions), "frames": len(self.frames), "seconds": round(seconds, 3),
                "fps": round(len(self.frames) / seconds, 2) if seconds > 0 else 0.0,
                "video": str(video) if video is not None else None, "actions": list(self.actions),
                "restarts": self.restarts}


def _bindings(world: World) -> dict[str, int]:
    """The world's key → action id map without the reserved keys, checked against its actions."""
    out = {}
    for key, action in dict(world.keys).items():
        if key.lower() in _RESERVED:
            continue
        out[key.lower()] = _check_action(action, world)
    return out


def _legend(world: World, bindings: dict[str, int]) -> str:
    """``"→ right  ←/a left  r restart  q quit"``: the keys of each action, in action order."""
    by_action: dict[int, list[str]] = {}
    for key, action in bindings.items():
        by_action.setdefault(action, []).append(_SHOWN_KEY.get(key, key))
    parts = [f"{'/'.join(keys)} {world.action_names[a]}" for a, keys in sorted(by_action.items())]
    return "  ".join([*parts, "r restart", "q quit"])


def _status(session: _Session, realtime: bool) -> str:
    mode = "real-time" if realtime else "turn-based"
    return (f"step {len(session.actions)}/{session.max_steps}  {session.recent_fps:.1f} frames/s  "
            f"model {1000 * session.step_seconds:.0f} ms/step  {mode}  {session.last}").rstrip()


# ----------------------------------------------------------------------------- terminal
def _run_terminal(session: _Session, bindings: dict[str, int], legend: str, realtime: bool, fps: float,
                  scale: int, input_stream: Any, output_stream: TextIO) -> None:
    """Play in the terminal until a quit key, the end of the input, or ``max_steps``.

    When ``input_stream`` is a terminal it is switched to cbreak mode (keys arrive at once, without echo)
    and restored afterwards, whatever happens."""
    reader = KeyReader(input_stream)
    screen = Screen(output_stream, legend, scale)
    saved = None
    if reader.fd is not None and os.isatty(reader.fd):
        import termios
        import tty

        saved = termios.tcgetattr(reader.fd)
        tty.setcbreak(reader.fd, termios.TCSANOW)
    period = 1.0 / fps
    try:
        screen.open()
        screen.draw(session.frame, _status(session, realtime))
        if realtime:
            _terminal_realtime(session, bindings, reader, screen, period)
        else:
            while not session.done:
                key = reader.read_key(period)
                if key is None:
                    if screen.resized():
                        screen.draw(session.frame, _status(session, realtime))
                    continue
                asked = session.press(key, bindings)
                if asked == "quit":
                    break
                if isinstance(asked, int):
                    session.step(asked)
                screen.draw(session.frame, _status(session, realtime))
    except KeyboardInterrupt:
        pass
    finally:
        try:
            screen.close()
        finally:
            if saved is not None:
                import termios

                termios.tcsetattr(reader.fd, termios.TCSADRAIN, saved)


def _terminal_realtime(session: _Session, bindings: dict[str, int], reader: KeyReader, screen: Screen,
                       period: float) -> None:
    """A step every ``period`` seconds with the last action key pressed since the previous step, or the
    world's idle action."""
    idle = _check_action(session.world.idle_action, session.world)
    tick = time.monotonic() + period
    while not session.done:
        action: int | None = None
        while True:
            key = reader.read_key(max(0.0, tick - time.monotonic()))
            if key is None:
                break
            asked = session.press(key, bindings)
            if asked == "quit":
                return
            if asked == "restart":
                action = None
                screen.draw(session.frame, _status(session, True))
            elif asked is not None:
                action = int(asked)
            if time.monotonic() >= tick:
                break
        session.step(idle if action is None else action)
        screen.draw(session.frame, _status(session, True))
        tick = max(tick + period, time.monotonic())  # a slow model lowers the rate instead of bursting


# ----------------------------------------------------------------------------- window
def _interactive_backend() -> str | None:
    """The matplotlib backend that would open windows, or None if only a file-writing one is usable."""
    import matplotlib

    name = matplotlib.get_backend()
    low = name.lower()
    return None if low in _NON_INTERACTIVE or "inline" in low or low.startswith("module://") else name


def display_available() -> bool:
    """Whether a matplotlib window can open: a display (``DISPLAY``/``WAYLAND_DISPLAY``; macOS and
    Windows have their own) and an interactive backend."""
    has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if not has_display and sys.platform not in ("darwin", "win32"):
        return False
    return _interactive_backend() is not None


_MPL_KEYS = {" ": "space", "return": "enter", "esc": "escape"}  # matplotlib key names that differ from ours


def _pump_events(fig: Any, seconds: float) -> None:
    """Let the GUI draw and deliver events for ``seconds``."""
    fig.canvas.draw_idle()
    fig.canvas.start_event_loop(max(seconds, 0.001))


def _run_window(session: _Session, bindings: dict[str, int], legend: str, realtime: bool, fps: float,
                scale: int, pump: Callable[[Any, float], None] | None = None) -> None:
    """Play in a matplotlib window until a quit key, closing the window, or ``max_steps``.

    ``pump(fig, seconds)`` runs the GUI for a while and delivers key events (default: the backend's
    event loop); matplotlib's own key bindings are switched off while playing."""
    import matplotlib.pyplot as plt

    keymaps = {k: [] for k in plt.rcParams if k.startswith("keymap.")}
    keys: deque[str] = deque()
    closed = []
    h, w = session.frame.shape[:2]
    with plt.rc_context(keymaps):
        fig = plt.figure(figsize=(max(w * scale / 100, 3.0), max(h * scale / 100, 3.0) + 0.6))
        try:
            fig.canvas.manager.set_window_title("wmlab play")
        except AttributeError:
            pass
        ax = fig.add_axes((0.0, 0.12, 1.0, 0.88))
        ax.set_axis_off()
        image = ax.imshow(session.frame, interpolation="nearest")
        text = fig.text(0.01, 0.01, "", fontsize=8, family="monospace", va="bottom", wrap=True)

        def on_key(event: Any) -> None:
            if event.key:
                key = _MPL_KEYS.get(event.key, event.key)
                keys.append(key.lower() if len(key) == 1 else key)

        fig.canvas.mpl_connect("key_press_event", on_key)
        fig.canvas.mpl_connect("close_event", lambda event: closed.append(True))

        def draw() -> None:
            image.set_data(session.frame)
            text.set_text(f"{legend}\n{_status(session, realtime)}")

        if pump is None:
            plt.show(block=False)
            pump = _pump_events
        period = 1.0 / fps
        idle = _check_action(session.world.idle_action, session.world)
        pending: int | None = None  # real time: the action key pressed since the last step
        tick = time.monotonic() + period
        try:
            draw()
            while not session.done and not closed:
                pump(fig, max(0.0, tick - time.monotonic()) if realtime else period)
                while keys and not session.done:
                    asked = session.press(keys.popleft(), bindings)
                    if asked == "quit":
                        return
                    if asked == "restart":
                        pending = None
                    elif asked is not None and realtime:
                        pending = int(asked)
                    elif asked is not None:
                        session.step(int(asked))
                if realtime and time.monotonic() >= tick and not session.done:
                    session.step(idle if pending is None else pending)
                    pending = None
                    tick = max(tick + period, time.monotonic())
                draw()
        except KeyboardInterrupt:
            pass
        finally:
            plt.close(fig)


# ----------------------------------------------------------------------------- play
def _choose_ui(ui: str, actions: Sequence[int] | None, input_stream: Any) -> str:
    """The front end to use: "script", "terminal" or "window" (ConfigError when ``ui`` cannot work here)."""
    if ui not in UIS:
        raise ConfigError(f"ui={ui!r} is not a front end; choose from {', '.join(UIS)}")
    if actions is not None:
        if ui not in ("auto", "script"):
            raise ConfigError(f"actions= plays without a keyboard, but ui={ui}; leave ui=auto or drop actions=")
        return "script"
    if ui == "script":
        raise ConfigError("ui=script plays a fixed list of actions; pass actions=1,1,7,... (action ids)")
    if ui == "window":
        if not display_available():
            has_env = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
            why = "no interactive matplotlib backend (install tkinter or PyQt)" if has_env else "no display"
            raise ConfigError(f"{why}: use ui=terminal")
        return "window"
    if ui == "terminal":
        if sys.platform == "win32":
            raise ConfigError("ui=terminal needs a Unix terminal (termios); use ui=window")
        return "terminal"
    if display_available():
        return "window"
    if isatty(input_stream) and sys.platform != "win32":
        return "terminal"
    raise ConfigError("no display and stdin is not a terminal: pass actions=1,1,7,... to play without a "
                      "keyboard, or run in a terminal")


def play(world: World, start_frame: np.ndarray, ui: str = "auto", out: str | os.PathLike | None = None,
         actions: Sequence[int] | None = None, max_steps: int = 1000, fps: float = 15.0, scale: int = 8,
         input_stream: BinaryIO | TextIO | None = None, output_stream: TextIO | None = None,
         realtime: bool = False) -> dict[str, Any]:
    """Play ``world`` from ``start_frame`` (uint8 ``[H,W,3]``) and return a summary.

    ``ui``: "script" (or ``actions`` given) plays ``actions`` without a keyboard; "terminal", "window" and
    "auto" as described in :mod:`wmlab.play`. At most ``max_steps`` steps are taken. ``fps`` is the step
    rate in real time (``realtime=True``), the key polling rate, and the frame rate of the saved video.
    ``scale`` caps how much frames are enlarged on screen. ``input_stream``/``output_stream`` (default
    stdin/stdout) are what the terminal front end reads keys from and draws on.

    Every frame shown (the reset frame, one per step, one per restart) is recorded; with ``out`` they are
    saved as an mp4. Returns ``{"steps", "frames", "seconds", "fps" (frames shown per second), "video"
    (path or None), "actions" (ids taken), "restarts"}``.
    """
    if not fps > 0:
        raise ConfigError(f"fps={fps} must be a positive number of frames per second, e.g. fps=15")
    if max_steps < 0:
        raise ConfigError(f"max_steps={max_steps} must be 0 or more")
    if scale < 1:
        raise ConfigError(f"scale={scale} must be an integer of 1 or more")
    input_stream = sys.stdin if input_stream is None else input_stream
    output_stream = sys.stdout if output_stream is None else output_stream
    mode = _choose_ui(ui, actions, input_stream)
    script = [_check_action(a, world) for a in actions] if actions is not None else []
    bindings = _bindings(world)
    start = _check_frame(start_frame, "start_frame")
    session = _Session(world, start, max_steps)
    if mode == "script":
        for action in script[:max_steps]:
            session.step(action)
    elif mode == "terminal":
        _run_terminal(session, bindings, _legend(world, bindings), realtime, fps, scale, input_stream,
                      output_stream)
    else:
        _run_window(session, bindings, _legend(world, bindings), realtime, fps, scale)
    video = None
    if out is not None:
        from wmlab.train.logger import write_mp4

        video = write_mp4(out, np.stack(session.frames), fps)
    return session.summary(video)


def play_run(run_dir: str | os.PathLike, world: World | None = None, **settings: Any) -> dict[str, Any]:
    """``wmlab play <run_dir> key=value ...``: play the world model of a run folder (see :class:`PlayConfig`).

    ``world`` is used instead of loading the run's (``wmlab.jobs.genie.load_world(run_dir)``) when given;
    it may carry ``size`` (``(H, W)`` the start frame is resized to) and ``default_start`` (the store used
    when ``start`` is not set). ``input_stream``/``output_stream`` go to :func:`play`; the other settings
    are :class:`PlayConfig` keys, as strings from the command line or Python values.
    """
    streams = {k: settings.pop(k) for k in ("input_stream", "output_stream") if k in settings}
    cfg = C.apply(PlayConfig(), settings)
    run_dir = Path(run_dir)
    if world is None:
        if not run_dir.is_dir():
            raise FileNotFoundError(f"run folder {run_dir} does not exist; pass a run_dir trained with "
                                    "`wmlab train`")
        from wmlab.jobs.genie import load_world

        world = load_world(str(run_dir), steps=cfg.steps, temperature=cfg.temperature, seed=cfg.seed)
    start = cfg.start or getattr(world, "default_start", None)
    if not start:
        raise ConfigError(f"no start frame: {run_dir} names no dataset; pass start=<episode store or image>")
    frame = load_start_frame(start, getattr(world, "size", None), cfg.episode, cfg.index)
    out = cfg.out
    if out == "auto":
        out = str(run_dir / "play" / f"session_{time.strftime('%Y%m%d_%H%M%S')}.mp4")
    return play(world, frame, ui=cfg.ui, out=out, actions=cfg.actions, max_steps=cfg.max_steps, fps=cfg.fps,
                scale=cfg.scale, realtime=cfg.realtime, **streams)
