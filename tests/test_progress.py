"""netatlas.progress: long work says how far it is, how fast, and how long is left (issue 10, finding 7:
the first start printed one line and then nothing for three minutes)."""
from __future__ import annotations

import io

from netatlas.progress import Progress, clock_text


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_when_not_a_terminal_at_most_every_interval():
    out, clock = io.StringIO(), FakeClock()
    p = Progress("loading the demo", 168, "h", out=out, tty=False, clock=clock, interval=5.0)
    for hour in range(1, 169):
        clock.now += 0.25                  # 4 simulated hours a second: 42 s in all
        p.update(hour, records=hour * 22_000)
    p.finish()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    # a line after 1 s, then one every 5 s of 42 s, the last update (done), and the closing line
    assert 8 <= len(lines) <= 11, lines
    # the first once a second has passed (a rate to tell), then every 5 s
    assert lines[0] == "loading the demo: 4/168 h (2%), 88,000 records, 4.0 h/s, about 41 s left"
    assert lines[1] == "loading the demo: 24/168 h (14%), 528,000 records, 4.0 h/s, about 36 s left"
    assert lines[-2].startswith("loading the demo: 168/168 h (100%), 3,696,000 records")
    assert lines[-1] == "loading the demo: 168 h, 3,696,000 records in 42 s"


def test_no_line_before_a_rate_can_be_told():
    out, clock = io.StringIO(), FakeClock()
    p = Progress("x", 10, out=out, tty=False, clock=clock, interval=5.0)
    clock.now += 0.1
    p.update(1)
    assert out.getvalue() == ""


def test_terminal_bar_redrawn_in_place_with_counts_rate_and_eta():
    out, clock = io.StringIO(), FakeClock()
    p = Progress("loading the demo", 168, "h", out=out, tty=True, clock=clock, redraw=0.2)
    clock.now += 10
    p.update(42, records=1_000_000)
    first = out.getvalue()
    assert first == ("\rloading the demo  [#####...............]  42/168 h  1,000,000 records  4.2 h/s  ETA 0:30")
    clock.now += 0.1                       # too soon to redraw
    p.update(43, records=1_020_000)
    assert out.getvalue() == first
    clock.now += 0.2
    p.update(84, records=2_000_000)
    assert out.getvalue()[len(first):] == (
        "\rloading the demo  [##########..........]  84/168 h  2,000,000 records  8.2 h/s  ETA 0:10")
    p.note("a line of its own")           # the bar is blanked first, then the line
    width = len("loading the demo  [##########..........]  84/168 h  2,000,000 records  8.2 h/s  ETA 0:10")
    assert out.getvalue().endswith("\r" + " " * width + "\r" + "a line of its own\n")
    clock.now += 10
    p.update(168, records=4_000_000)
    p.finish()
    assert out.getvalue().endswith("\rloading the demo: 168 h, 4,000,000 records in 20 s\n")


def test_clock_text():
    assert [clock_text(s) for s in (0, 7, 62, 3723)] == ["0:00", "0:07", "1:02", "1:02:03"]
