"""``netatlas up``: the README's main command.

Creates the workspace in ./netatlas-data (identity and keys first), loads the simulated
datacenter the first time and catches it up to now on later starts (``--no-demo`` skips both),
starts the local agent when this host can run it and the demo's live producer (demo/live.py),
then serves the workspace until Ctrl-C, printing the URLs and keys to use.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

DEMO_MARKER = ".demo-loaded"      # demo/live.py's Marker


def up_arguments(p: argparse.ArgumentParser) -> None:
    from .server.settings import SETTINGS
    p.add_argument("--data", metavar="DIR", default="netatlas-data",
                   help="the workspace directory (created if missing; default: ./netatlas-data)")
    p.add_argument("--no-demo", action="store_true",
                   help="no simulated datacenter: not loaded on first start; one loaded before is not caught up or "
                        "kept live in this run (its records stay; `netatlas demo remove` deletes them)")
    p.add_argument("--machines", type=int, default=200, help="machines in the demo environment (default: 200)")
    p.add_argument("--days", type=int, default=7, help="days of demo data (default: 7)")
    p.add_argument("--seed", type=int, default=1, help="seed of the demo environment (default: 1)")
    p.add_argument("--no-agent", action="store_true", help="do not start the agent for this machine")
    for s in SETTINGS:
        if s.name in UP_SETTINGS:
            p.add_argument(s.flag, metavar=s.value_name, default=None,
                           help=f"{s.help} (default: {s.default}; env {s.env})")


UP_SETTINGS = ("host", "port", "geoip_db", "threatintel_feeds", "store")    # server settings up takes too


def start_demo(data: Path, args, out=sys.stdout):
    """The simulated datacenter: loaded on the first start, caught up to now on later ones (the
    minutes it missed while stopped, bounded: live.catch_up); returns its Marker when it goes on
    live while the server runs, else None (``--no-demo``, removed, or a marker of an earlier version)."""
    from .demo.live import Marker
    marker = Marker.load(data)
    if args.no_demo:
        if marker is not None and marker.live and not marker.removed:
            out.write("demo: paused for this run (--no-demo); its records stay (`netatlas demo remove` deletes them)\n")
        return None
    if marker is None:
        return load_demo(data, args, out)
    if marker.removed:
        out.write("demo: removed from this workspace (netatlas demo remove); not loaded again\n")
        return None
    if not marker.live:
        return None
    from . import connect
    from .workspace import geoip_setting
    from .demo.live import catch_up, upgrade
    ws = connect(data, geoip=geoip_setting(args.geoip_db), store=args.store or None)
    try:
        if marker.end is None:          # loaded by a version before the live demo
            if not upgrade(ws, marker):
                out.write("demo: the marker names a demo whose records are not in this workspace; not going on\n")
                return None
            marker.save(data)
        counts = catch_up(ws, data, marker, out=out,
                          progress_for=lambda hours: _progress("  catching up the demo", hours, out))
    finally:
        ws.close()
    if counts:
        out.write(f"  demo caught up: {sum(counts.values()):,} records up to {marker.through}\n")
    return marker


def load_demo(data: Path, args, out=sys.stdout):
    """The first start: the demo's window, with progress; writes the marker."""
    from . import connect
    from .errors import UsageError
    from .workspace import geoip_setting
    from .demo import MIN_MACHINES
    from .demo.live import marker_for
    from .demo.pipeline import load, plan
    if args.machines < MIN_MACHINES:
        raise UsageError(f"--machines must be at least {MIN_MACHINES} (one machine of each kind)")
    if not 1 <= args.days <= 90:
        raise UsageError("--days must be between 1 and 90")
    out.write(f"loading the demo environment: {args.machines} machines, {args.days} days (first start only)\n")
    out.flush()
    t0 = time.monotonic()
    progress = _progress("  loading the demo", args.days * 24, out)
    ws = connect(data, geoip=geoip_setting(args.geoip_db), store=args.store or None)
    try:
        env = plan(args.machines, args.days, args.seed, None)
        counts = load(ws, env, progress=progress)
    finally:
        ws.close()
    progress.finish()
    marker = marker_for(env, counts, time.monotonic() - t0)
    marker.save(data)
    return marker


def _progress(label: str, hours: float, out):
    """A progress.Progress of hours of demo data (NETATLAS_PROGRESS_SECONDS: seconds between plain lines)."""
    import os
    from .progress import INTERVAL, Progress
    return Progress(label, hours, "h", out=out, interval=float(os.environ.get("NETATLAS_PROGRESS_SECONDS", INTERVAL)))


def start_live_demo(data: Path, marker, identity, settings):
    """The demo's producer (demo/live.py): each minute's records posted to this server as they happen."""
    if marker is None:
        return None
    from .demo.live import Producer
    key = next(k for k in identity.keys if k.role == "ingest")
    producer = Producer(data, marker, _local_url(settings), identity.workspace_id, key.secret,
                        log=lambda msg: print(msg, file=sys.stderr, flush=True))
    producer.start()
    print("demo: live: each minute's records are posted to /api/ingest as the minute ends "
          f"(`netatlas demo remove --data {data}` deletes the simulated machines)")
    return producer


def _local_url(settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    scheme = "https" if settings.tls_cert else "http"
    return f"{scheme}://{host if ':' not in host else f'[{host}]'}:{settings.port}"


def start_local_agent(data: Path, identity, settings, args):
    """The host's own agent, shipping this machine's processes and connections to the server."""
    import os
    import subprocess
    from . import agent
    if args.no_agent:
        print("local agent: not started (--no-agent)")
        return None
    if not agent.RUNNABLE:
        print("local agent: not started (the agent is not complete in this version)")
        return None
    if os.geteuid() != 0:
        print("local agent: not started (it needs root to read every socket and process)")
        return None
    key = next(k for k in identity.keys if k.role == "ingest")
    url = _local_url(settings)
    log = open(data / "agent.log", "ab")
    from .agent.ship import PARENT_ENV
    # the key stays out of the process list; the agent stops when up is gone (watch_parent)
    env = dict(os.environ, NETATLAS_AGENT_KEY=key.secret, **{PARENT_ENV: str(os.getpid())})
    tls = ["--ca-file", settings.tls_cert] if settings.tls_cert else []   # up's own certificate
    proc = subprocess.Popen([sys.executable, "-m", "netatlas", "agent", "run", "--workspace-url", url,
                             "--workspace-id", identity.workspace_id, "--spool", str(data / "agent" / "spool"),
                             "--machine-id-file", str(data / "agent" / "machine-id"), *tls],
                            stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent)
    print(f"local agent: running (pid {proc.pid}, log {data / 'agent.log'}); this machine appears in the map "
          f"within a minute or two")
    return proc


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the agent child, before exec (Linux): the kernel kills it (SIGKILL: it may be too busy to
    handle SIGTERM) when up dies without stopping it, as by kill -9; its spool is on disk."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Stop(BaseException):
    """SIGTERM or SIGHUP reached up: unwinds to the finally that stops the agent and the demo."""


def _on_stop_signals():
    """SIGTERM and SIGHUP end up as Ctrl-C does: through cmd_up's finally (uvicorn handles them while
    it serves and raises them again once it has stopped; this handler then unwinds)."""
    import signal

    def handler(signum, frame):
        raise Stop(signum)
    signal.signal(signal.SIGTERM, handler)
    # SIGHUP as SIGTERM: while serving, uvicorn's own SIGTERM handler shuts down gracefully first
    signal.signal(signal.SIGHUP, lambda *_: signal.raise_signal(signal.SIGTERM))


def stop_agent(agent) -> None:
    """SIGTERM to the agent (its last flush takes at most its timeout), SIGKILL after 15 s."""
    import subprocess
    if agent is None or agent.poll() is not None:
        return
    agent.terminate()
    try:
        agent.wait(15)
    except subprocess.TimeoutExpired:
        agent.kill()
        agent.wait()


UP_KEY_FILE = ".up-query-key"   # the id of the query key the last `up` made for the web UI


def ui_query_key(data: Path):
    """A new query key for this run's web UI (query secrets are stored hashed, so the last one
    cannot be shown again): the one the previous `up` made is revoked."""
    from . import keys
    marker = data / UP_KEY_FILE
    try:
        keys.revoke_key(data, marker.read_text().strip())
    except (OSError, KeyError):
        pass
    key = keys.create_key(data, "query")
    fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.id + "\n")
    return key


def cmd_up(args: argparse.Namespace) -> int:
    from .keys import load_or_create
    from .server.run import serve
    from .server.settings import Settings
    data = Path(args.data)
    identity = load_or_create(data)
    marker = start_demo(data, args)
    settings = Settings.from_env(**{name: getattr(args, name) for name in UP_SETTINGS})
    # up is the local, first-contact command: it always shows the keys to use
    print("keys to use with this workspace:")
    for k in [*identity.by_role("ingest"), ui_query_key(data), *(k for k in identity.fresh if k.role == "admin")]:
        print(f"  {k.role:<7} {k.secret}")     # an admin key only when made now: it is stored hashed
    _on_stop_signals()
    agent = producer = None
    try:
        agent = start_local_agent(data, identity, settings, args)
        producer = start_live_demo(data, marker, identity, settings)
        from .workspace import open_workspace
        return serve(data, settings, open_workspace=lambda d: open_workspace(d, settings.geoip_db, settings.store))
    except Stop as e:
        return 128 + e.args[0]
    finally:
        stop_agent(agent)
        if producer is not None:
            producer.stop()
