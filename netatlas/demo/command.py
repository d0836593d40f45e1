"""``netatlas demo``: fill a workspace with the simulated datacenter (a row of cli.COMMANDS)."""
from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone

DEFAULT_DATA = "netatlas-data"


def demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=("remove",),
                   help="remove: delete the simulated machines' records (every table, their Usage, the demo's "
                        "threat-intelligence feed) from a workspace that now holds real ones; the workspace must "
                        "not be served meanwhile. Without it: fill the workspace with the datacenter")
    p.add_argument("--data", metavar="DIR", default=DEFAULT_DATA,
                   help=f"the workspace directory (created if missing; default: ./{DEFAULT_DATA}, as for 'up')")
    p.add_argument("--machines", type=int, default=200, metavar="N", help="machines in the datacenter (default: 200)")
    p.add_argument("--days", type=int, default=7, metavar="N", help="days of data up to now (default: 7)")
    p.add_argument("--seed", type=int, default=1, metavar="N",
                   help="the random seed: the same seed (and --end) gives the same records (default: 1)")
    p.add_argument("--end", metavar="DATETIME",
                   help="the end of the simulated window, ISO 8601 UTC (default: now, to the minute)")
    p.add_argument("--append", action="store_true",
                   help="add to a workspace that already holds connection records (default: refuse)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on standard error")


def _end(text: str | None) -> datetime | None:
    from ..errors import UsageError
    if text is None:
        return None
    from ..kql.literals import parse_datetime
    d = parse_datetime(text)
    if d is None:
        raise UsageError(f"--end expects an ISO 8601 datetime (e.g. 2024-05-02T12:00:00Z), got {text!r}")
    return d.replace(tzinfo=timezone.utc)


def cmd_demo(args: argparse.Namespace) -> int:
    if args.action == "remove":
        return cmd_remove(args)
    return cmd_fill(args)


def cmd_remove(args: argparse.Namespace) -> int:
    """``netatlas demo remove``: the marker's machines out of every table (demo/remove.py)."""
    from pathlib import Path

    from ..errors import EXIT_FAILED, EXIT_OK, UsageError
    from ..workspace import WorkspaceBusyError
    from .live import Marker
    from .remove import remove
    data = Path(args.data)
    marker = Marker.load(data) if (data / "netatlas.duckdb").exists() else None
    if marker is None:
        raise UsageError(f"{data} holds no simulated datacenter (no {data / '.demo-loaded'}: it is written "
                         "when `netatlas up` or `netatlas demo` loads one)")
    if marker.removed:
        print(f"netatlas demo remove: the simulated datacenter was already removed from {data}", file=sys.stderr)
        return EXIT_OK
    from .. import connect
    from .live import upgrade
    try:
        ws = connect(data, geoip=False)
    except WorkspaceBusyError:
        print(f"netatlas demo remove: the workspace in {data} is held by a running server (`netatlas up` or "
              "`netatlas workspace serve`); stop it (Ctrl-C), then run `netatlas demo remove` again",
              file=sys.stderr)
        return EXIT_FAILED
    try:
        if not marker.machine_ids:       # a marker from before the live demo: the machines from its seed
            upgrade(ws, marker)
        deleted = remove(ws, marker)
    finally:
        ws.close()
    marker.removed, marker.live = True, False
    marker.save(data)
    width = max([len(t) for t in deleted] + [5])
    for table, n in deleted.items():
        print(f"{table:<{width}}  {n:>10,}")
    print(f"{'total':<{width}}  {sum(deleted.values()):>10,}")
    print(f"removed the {len(marker.machine_ids)} simulated machines' records and the demo's threat-intelligence "
          f"feed from {data}; `netatlas up` will not load the demo again")
    return EXIT_OK


def cmd_fill(args: argparse.Namespace) -> int:
    from ..errors import EXIT_OK, UsageError
    from ..workspace import open_workspace
    from . import MIN_MACHINES
    from .pipeline import TimedWorkspace
    if args.machines < MIN_MACHINES:
        raise UsageError(f"--machines must be at least {MIN_MACHINES} (one machine of each kind)")
    if not 1 <= args.days <= 90:
        raise UsageError("--days must be between 1 and 90")
    end = _end(args.end)
    from ..progress import Progress
    progress = None if args.quiet else Progress("  generated", args.days * 24, "h")
    with open_workspace(args.data) as ws:
        held = ws.query("VMConnection | count").rows[0][0]
        if held and not args.append:
            raise UsageError(f"the workspace in {args.data} already holds {held} VMConnection records; "
                             "use an empty directory, or --append to add another datacenter")
        print(f"netatlas demo: {args.machines} machines, {args.days} days (seed {args.seed}) into {args.data}",
              file=sys.stderr, flush=True)
        timed = TimedWorkspace(ws)
        t0 = time.perf_counter()
        from .pipeline import load, plan
        env = plan(args.machines, args.days, args.seed, end)
        counts = load(timed, env, progress=progress)
        total = time.perf_counter() - t0
        if progress is not None:
            progress.finish()
        _note_machines(args.data, env, counts, total)
    width = max(len(t) for t in counts)
    for table, n in counts.items():
        print(f"{table:<{width}}  {n:>10,}")
    print(f"{'total':<{width}}  {sum(counts.values()):>10,}")
    print(f"generated in {total - timed.seconds:.1f} s, ingested in {timed.seconds:.1f} s ({total:.1f} s in all)")
    return EXIT_OK


def _note_machines(data: str, env, counts: dict, seconds: float) -> None:
    """The marker (demo/live.py) says which machines are simulated: written when there is none or the
    demo was removed (then ``up`` goes on with this datacenter instead of loading another), extended
    by ``--append``."""
    from pathlib import Path

    from .live import Marker, marker_for
    marker = Marker.load(Path(data))
    if marker is None or marker.removed:
        marker_for(env, counts, seconds).save(Path(data))
        return
    marker.machine_ids = list(dict.fromkeys(marker.machine_ids + [m.id for m in env.machines]))
    marker.computers = list(dict.fromkeys(marker.computers + [m.name for m in env.machines]))
    marker.save(Path(data))
