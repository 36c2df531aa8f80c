"""Terminal input and output for ``wmlab play``: key presses decoded from raw bytes (arrows, escape
sequences, UTF-8), a non-blocking key reader, and frames drawn with 24-bit ANSI colour (``▀``, two pixel rows
per text row)."""

from __future__ import annotations

import io
import os
import select
import shutil
import textwrap
from typing import Any, TextIO

import numpy as np

ARROWS = {"A": "up", "B": "down", "C": "right", "D": "left"}
_NAMED_BYTES = {0x20: "space", 0x0D: "enter", 0x0A: "enter", 0x09: "tab", 0x7F: "backspace"}
ESCAPE_WAIT = 0.05  # seconds to wait for the rest of an escape sequence after a lone ESC byte
EOF = "<eof>"  # read_key's answer once the input has ended


def fileno(stream: Any) -> int | None:
    try:
        return int(stream.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


def isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def decode_key(buf: bytes, final: bool = True) -> tuple[str | None, int]:
    """The first key in the raw terminal bytes ``buf`` and how many bytes it used.

    Arrow keys arrive as ``ESC [ A``..``ESC [ D`` (or ``ESC O A``..); other escape sequences decode to
    ``"unknown"``. Returns ``(None, 0)`` when ``buf`` is empty, or holds only the start of a sequence and
    ``final`` is False (more bytes may follow); with ``final`` a lone ``ESC`` is the escape key.
    """
    if not buf:
        return None, 0
    first = buf[0]
    if first == 0x1B:
        if len(buf) == 1:
            return ("escape", 1) if final else (None, 0)
        if buf[1] not in (ord("["), ord("O")):
            return "escape", 1
        for i in range(2, len(buf)):
            if 0x40 <= buf[i] <= 0x7E:  # the final byte of a CSI/SS3 sequence
                return ARROWS.get(chr(buf[i]), "unknown"), i + 1
            if buf[1] == ord("O") or not 0x20 <= buf[i] <= 0x3F:
                return "unknown", i + 1
        return ("unknown", len(buf)) if final else (None, 0)
    if first in _NAMED_BYTES:
        return _NAMED_BYTES[first], 1
    if first < 0x20:
        return f"ctrl+{chr(first + 0x60)}", 1
    width = 1 if first < 0x80 else 2 if first < 0xE0 else 3 if first < 0xF0 else 4
    if len(buf) < width and not final:
        return None, 0
    return buf[:width].decode("utf-8", errors="replace").lower(), min(width, len(buf))


class KeyReader:
    """Keys from a byte stream: a file descriptor (terminal, pipe) read with ``select`` timeouts, or a
    file-like object without one (e.g. ``io.BytesIO``), read as far as it goes."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.fd = fileno(stream)
        self.buf = b""
        self.ended = False

    def _fill(self, timeout: float | None) -> bool:
        """Append the bytes available within ``timeout`` seconds; False when none came."""
        if self.ended:
            return False
        if self.fd is not None:
            ready, _, _ = select.select([self.fd], [], [], timeout)
            if not ready:
                return False
            data = os.read(self.fd, 1024)
        else:
            data = self.stream.read(1024)
            if isinstance(data, str):
                data = data.encode()
        if not data:
            self.ended = True
            return False
        self.buf += data
        return True

    def read_key(self, timeout: float | None) -> str | None:
        """The next key name, None if no key came within ``timeout`` seconds, ``"<eof>"`` once the input ended."""
        waited = False
        while True:
            key, used = decode_key(self.buf, final=self.ended or waited)
            if key is not None:
                self.buf = self.buf[used:]
                return key
            if self.ended:
                return EOF
            if not self._fill(ESCAPE_WAIT if self.buf else timeout):
                if self.buf:
                    waited = True
                    continue
                return EOF if self.ended else None


def render_ansi(frame: np.ndarray, max_cols: int, max_rows: int, scale: int = 8) -> list[str]:
    """uint8 ``[H,W,3]`` → text rows of ``▀`` in 24-bit ANSI colour (top pixel foreground, bottom pixel
    background), resized to fit ``max_cols`` columns and ``max_rows`` rows and at most ``scale`` times larger
    (nearest when enlarging, box average when shrinking)."""
    from PIL import Image

    h, w = frame.shape[:2]
    factor = min(float(scale), max_cols / w, 2 * max_rows / h)
    out_w, out_h = max(1, int(w * factor)), max(1, int(h * factor))
    if (out_h, out_w) != (h, w):
        resample = Image.Resampling.NEAREST if factor >= 1 else Image.Resampling.BOX
        frame = np.asarray(Image.fromarray(frame).resize((out_w, out_h), resample))
    lines = []
    for y in range(0, out_h, 2):
        top = frame[y].tolist()
        bottom = frame[y + 1].tolist() if y + 1 < out_h else None
        parts, previous = [], None
        for x in range(out_w):
            cell = (top[x], bottom[x] if bottom is not None else None)
            if cell != previous:
                fg = "\x1b[38;2;{};{};{}m".format(*cell[0])
                bg = "\x1b[48;2;{};{};{}m".format(*cell[1]) if cell[1] is not None else "\x1b[49m"
                parts.append(fg + bg)
                previous = cell
            parts.append("▀")
        parts.append("\x1b[0m")
        lines.append("".join(parts))
    return lines


class Screen:
    """Draws frames and the legend on an ANSI terminal (alternate screen, cursor hidden while playing)."""

    def __init__(self, out: TextIO, legend: str, scale: int) -> None:
        self.out = out
        self.legend = legend
        self.scale = scale
        self.size: tuple[int, int] | None = None

    def open(self) -> None:
        self.out.write("\x1b[?1049h\x1b[?25l\x1b[2J")
        self.out.flush()

    def close(self) -> None:
        self.out.write("\x1b[0m\x1b[?25h\x1b[?1049l")
        self.out.flush()

    def resized(self) -> bool:
        return tuple(shutil.get_terminal_size((80, 24))) != self.size

    def draw(self, frame: np.ndarray, status: str) -> None:
        cols, rows = shutil.get_terminal_size((80, 24))
        self.size = (cols, rows)
        width = max(cols - 1, 10)
        text = textwrap.wrap(self.legend, width, break_on_hyphens=False)[: max(1, rows // 4)]
        text += [status[:width]]
        image = render_ansi(frame, width, max(rows - len(text) - 1, 1), self.scale)
        body = "\x1b[K\r\n".join([*image, *text])
        self.out.write(f"\x1b[H{body}\x1b[K\x1b[J")
        self.out.flush()
