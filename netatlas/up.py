"""``netatlas up``: the README's main command.

Creates the workspace in ./netatlas-data (identity and keys first), loads the simulated
datacenter the first time (``--no-demo`` skips it), starts the local agent when this host can
run it, then serves the workspace until Ctrl-C, printing the URLs and keys to use.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

DEMO_MARKER = ".demo-loaded"


def up_arguments(p: argparse.ArgumentParser) -> None:
    from .server.settings import SETTINGS
    p.add_argument("--data", metavar="DIR", default="netatlas-data",
                   help="the workspace directory (created if missing; default: ./netatlas-data)")
    p.add_argument("--no-demo", action="store_true", help="do not load the simulated datacenter on first start")
    p.add_argument("--machines", type=int, default=200, help="machines in the demo environment (default: 200)")
    p.add_argument("--days", type=int, default=7, help="days of demo data (default: 7)")
    p.add_argument("--seed", type=int, default=1, help="seed of the demo environment (default: 1)")
    p.add_argument("--no-agent", action="store_true", help="do not start the agent for this machine")
    for s in SETTINGS:
        if s.name in UP_SETTINGS:
            p.add_argument(s.flag, metavar=s.metavar, type=s.type, default=None,
                           help=f"{s.help} (default: {s.default}; env {s.env})")


UP_SETTINGS = ("host", "port", "geoip_db", "threatintel_feeds")    # server settings up takes too


def load_demo_once(data: Path, args, out=sys.stdout) -> None:
    marker = data / DEMO_MARKER
    if args.no_demo or marker.exists():
        return
    from . import connect
    from .cli import geoip_setting
    from .demo import generate
    out.write(f"loading the demo environment: {args.machines} machines, {args.days} days (first start only)\n")
    out.flush()
    t0 = time.monotonic()
    ws = connect(data, geoip=geoip_setting(args.geoip_db))
    try:
        counts = generate(ws, machines=args.machines, days=args.days, seed=args.seed)
    finally:
        ws.close()
    marker.write_text(json.dumps({"machines": args.machines, "days": args.days, "seed": args.seed,
                                  "records": counts, "seconds": round(time.monotonic() - t0, 1)}, indent=1))
    total = sum(counts.values())
    out.write(f"  {total:,} records in {time.monotonic() - t0:.0f} s\n")


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
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    url = f"http://{host if ':' not in host else f'[{host}]'}:{settings.port}"
    log = open(data / "agent.log", "ab")
    env = dict(os.environ, NETATLAS_AGENT_KEY=key.secret)   # the key stays out of the process list
    proc = subprocess.Popen([sys.executable, "-m", "netatlas", "agent", "run", "--workspace-url", url,
                             "--workspace-id", identity.workspace_id, "--spool", str(data / "agent" / "spool"),
                             "--machine-id-file", str(data / "agent" / "machine-id")],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    print(f"local agent: running (pid {proc.pid}, log {data / 'agent.log'}); this machine appears in the map "
          f"within a minute or two")
    return proc


def cmd_up(args: argparse.Namespace) -> int:
    from .keys import load_or_create
    from .server.run import serve
    from .server.settings import Settings
    data = Path(args.data)
    identity = load_or_create(data)
    load_demo_once(data, args)
    settings = Settings.from_env(**{name: getattr(args, name) for name in UP_SETTINGS})
    # up is the local, first-contact command: it always shows the keys to use
    print("keys to use with this workspace:")
    for k in identity.keys:
        print(f"  {k.role:<7} {k.secret}")
    agent = start_local_agent(data, identity, settings, args)
    try:
        from .cli import open_workspace
        return serve(data, settings, open_workspace=lambda d: open_workspace(d, settings.geoip_db))
    finally:
        if agent is not None:
            agent.terminate()
            try:
                agent.wait(15)
            except Exception:
                agent.kill()
