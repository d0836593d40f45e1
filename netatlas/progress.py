"""Progress of long work (the demo's load, its catch-up after a restart): done of total, rate, ETA.

On a terminal, one line redrawn in place (at most every ``REDRAW`` seconds):

    loading the demo  [#########...........]  72/168 h  1,601,233 records  14.2 h/s  ETA 0:07

Elsewhere (a log file, a pipe), plain lines, at most one every ``INTERVAL`` seconds:

    loading the demo: 72/168 h (43%), 1,601,233 records, 14.2 h/s, about 7 s left

``finish()`` ends with one line saying what was done and how long it took. The clock and the
terminal test are parameters, so tests drive both renderings with a fake clock.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

REDRAW = 0.2       # seconds between redraws of the terminal line
INTERVAL = 5.0     # seconds between plain lines
BAR = 20           # characters of the bar


def clock_text(seconds: float) -> str:
    """0:07, 1:02:03."""
    s = max(0, int(round(seconds)))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """``update(done, **counts)`` as work advances; ``note(text)`` for a line of its own; ``finish()``.

    ``unit``: what ``done``/``total`` count (``"h"``: hours); ``counts``: other running totals shown
    beside it (``records=1601233``)."""

    def __init__(self, label: str, total: float, unit: str = "", *, out: TextIO | None = None,
                 tty: bool | None = None, clock: Callable[[], float] = time.monotonic,
                 interval: float = INTERVAL, redraw: float = REDRAW):
        self.label, self.total, self.unit = label, total, unit
        self.out = out if out is not None else sys.stderr
        self.tty = _isatty(self.out) if tty is None else tty
        self.clock, self.interval, self.redraw = clock, interval, redraw
        self.started = clock()
        self.done = 0.0
        self.counts: dict[str, int] = {}
        self._shown_at: float | None = None     # when the last line or redraw was written
        self._width = 0                         # of the terminal line drawn, to blank what is left of it

    # ---- what the caller says ------------------------------------------------------------------------
    def update(self, done: float, **counts: int) -> None:
        self.done = done
        self.counts.update(counts)
        now = self.clock()
        wait = self.redraw if self.tty else self.interval
        if self._shown_at is not None and now - self._shown_at < wait and done < self.total:
            return
        if self._shown_at is None and not self.tty and now - self.started < min(self.interval, 1.0):
            return   # a plain line only once there is a rate to show
        self._shown_at = now
        if self.tty:
            self._draw(self.bar_line(now))
        else:
            self._write(self.plain_line(now) + "\n")

    def note(self, text: str) -> None:
        """A line of its own (on a terminal, above the bar, which is drawn again on the next update)."""
        self._clear()
        self._write(text + "\n")

    def finish(self, text: str | None = None) -> float:
        """The closing line (default: label, what was done, seconds taken); returns the seconds."""
        seconds = self.clock() - self.started
        self._clear()
        extra = "".join(f", {n:,} {k}" for k, n in self.counts.items())
        self._write((text or f"{self.label}: {self._amount(self.done)}{extra} in {seconds:.0f} s") + "\n")
        return seconds

    # ---- rendering -------------------------------------------------------------------------------------
    def rate(self, now: float) -> float:
        elapsed = now - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta(self, now: float) -> float | None:
        r = self.rate(now)
        return (self.total - self.done) / r if r > 0 else None

    def _amount(self, value: float) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"{value:,.0f}{unit}"

    def bar_line(self, now: float) -> str:
        frac = min(1.0, self.done / self.total) if self.total else 1.0
        filled = int(round(frac * BAR))
        eta = self.eta(now)
        counts = "".join(f"  {n:,} {k}" for k, n in self.counts.items())
        return (f"{self.label}  [{'#' * filled}{'.' * (BAR - filled)}]  {self.done:,.0f}/{self._amount(self.total)}"
                f"{counts}  {self.rate(now):,.1f} {self.unit or 'items'}/s"
                f"  ETA {clock_text(eta) if eta is not None else '?'}")

    def plain_line(self, now: float) -> str:
        pct = 100 * self.done / self.total if self.total else 100
        eta = self.eta(now)
        counts = "".join(f", {n:,} {k}" for k, n in self.counts.items())
        left = f", about {eta:.0f} s left" if eta is not None else ""
        return (f"{self.label}: {self.done:,.0f}/{self._amount(self.total)} ({pct:.0f}%){counts}, "
                f"{self.rate(now):,.1f} {self.unit or 'items'}/s{left}")

    def _draw(self, line: str) -> None:
        pad = max(0, self._width - len(line))
        self._write("\r" + line + " " * pad)
        self._width = len(line)

    def _clear(self) -> None:
        if self.tty and self._width:
            self._write("\r" + " " * self._width + "\r")
            self._width = 0

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
