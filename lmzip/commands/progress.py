"""A one-line progress display for long runs: bytes done/total, rate, ETA, on stderr.

It draws only when its stream is a terminal and only once the operation has run for
``delay`` seconds (short runs print nothing), redraws the line in place with ``\\r`` at
most every ``interval`` seconds, and clears the line when closed. A small ticker thread
keeps the elapsed time moving while the compressor works on a long segment between two
progress callbacks. No dependencies beyond the standard library.

    with Progress(total=len(data), label="notes.txt") as progress:
        blob = compressor.compress(data, progress=progress)   # progress(n) adds n bytes
"""

from __future__ import annotations

import math
import shutil
import sys
import threading
import time
from typing import Callable, TextIO

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'`` (binary units; whole bytes below 1 KiB)."""
    n = float(n)
    for unit in _UNITS:
        if abs(n) < 1024 or unit == _UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    """``75.2`` -> ``'1:15'``, ``3725`` -> ``'1:02:05'``."""
    if not math.isfinite(seconds) or seconds < 0:
        return "--:--"
    s = int(seconds + 0.5)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class Progress:
    """Callable progress sink: ``progress(n)`` records ``n`` more bytes done.

    ``total``: bytes expected (None or 0: unknown, no percentage/ETA).
    ``enabled``: None means "if ``stream`` is a terminal".
    ``clock``: injectable for tests (defaults to ``time.monotonic``).
    ``ticker``: redraw from a background thread every ``interval`` seconds, so the line
    stays alive between callbacks (off in tests that drive the clock by hand).
    """

    def __init__(self, total: int | None, label: str = "", *, stream: TextIO | None = None,
                 enabled: bool | None = None, delay: float = 1.0, interval: float = 0.25,
                 clock: Callable[[], float] = time.monotonic, ticker: bool = True) -> None:
        self.total = total or 0
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _isatty(self.stream) if enabled is None else bool(enabled)
        self.delay = delay
        self.interval = interval
        self.clock = clock
        self.done = 0
        self.start = clock()
        self._drawn = 0  # width of what is currently on the line (0: nothing to clear)
        self._line = ""  # what is currently on the line (identical redraws are skipped)
        self._last_draw = -math.inf
        self._closed = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.enabled and ticker:
            self._thread = threading.Thread(target=self._tick, name="lmzip-progress", daemon=True)
            self._thread.start()

    # -- feeding -------------------------------------------------------------------------

    def __call__(self, n: int) -> None:
        self.update(n)

    def update(self, n: int) -> None:
        with self._lock:
            self.done += n
            self._maybe_draw()

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                self._maybe_draw()

    # -- drawing -------------------------------------------------------------------------

    def render(self, now: float | None = None) -> str:
        """The status line (without ``\\r`` or padding)."""
        now = self.clock() if now is None else now
        elapsed = max(now - self.start, 0.0)
        done = self.done
        parts = []
        if self.total:
            pct = min(100.0, 100.0 * done / self.total)
            parts.append(f"{human_bytes(done)} / {human_bytes(self.total)} ({pct:3.0f}%)")
        else:
            parts.append(human_bytes(done))
        rate = done / elapsed if elapsed > 0 else 0.0
        parts.append(f"{human_bytes(rate)}/s" if done else "--/s")
        parts.append(f"elapsed {human_duration(elapsed)}")
        if self.total:
            eta = (self.total - done) / rate if rate > 0 else math.inf
            parts.append(f"ETA {human_duration(eta)}")
        return (f"{self.label}: " if self.label else "") + "  ".join(parts)

    def _maybe_draw(self) -> None:
        if not self.enabled or self._closed:
            return
        now = self.clock()
        if now - self.start < self.delay or now - self._last_draw < self.interval:
            return
        self._last_draw = now
        line = self.render(now)
        width = max(10, shutil.get_terminal_size(fallback=(80, 24)).columns - 1)
        line = line[:width]
        if line == self._line:
            return
        pad = " " * max(0, self._drawn - len(line))
        self._write("\r" + line + pad)
        self._drawn, self._line = len(line), line

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # closed or broken stream: stop drawing, never fail the work
            self.enabled = False

    # -- closing -------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the ticker and clear the line (idempotent)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._drawn and self.enabled:
                self._write("\r" + " " * self._drawn + "\r")
            self._drawn, self._line = 0, ""

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["Progress", "human_bytes", "human_duration"]
