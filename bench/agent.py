"""The agent's collector under load, on loopback: CPU, memory and the share of connections captured.

    python bench/agent.py [--seconds 60] [--open 2000] [--rate 500] [--poll 1] [--collectors netlink,ebpf]

A load generator keeps ``--open`` connections open and opens ``--rate`` new short connections a
second (connect, send 10 bytes, close) for ``--seconds``, against a server in another process. The
agent's collector (``netatlas.agent.collect.Collector``, the one `netatlas agent run` uses, without
the shipper) runs in a third process, once per collector, one after the other, against the same
server. Reported: its CPU over the load (share of one core, from
/proc/PID/stat), its VmRSS and VmHWM, and the connections to the load's port its records count
(LinksEstablished, outbound) against the ground truth. Goals: 100 % captured, < 2 % of a core, < 80 MB.
Needs root (netlink close events). Runs in a fresh network namespace when it can create one.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

AGENT = r'''
import json, sys, tempfile, time
from netatlas.agent.config import AgentConfig
from netatlas.agent.collect import Collector
port, poll, kind = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
d = tempfile.mkdtemp()
c = Collector(AgentConfig(workspace_url="http://127.0.0.1:9", workspace_id="bench", key="YmVuY2g=",
                          poll=poll, collector=kind, spool=d + "/spool", machine_id_file=d + "/machine-id"))
counts = {"established": 0, "terminated": 0, "failed": 0, "records": 0}
def take(out):
    for r in out.get("VMConnection", []):
        counts["records"] += 1
        if r["Direction"] == "outbound" and r["DestinationPort"] == port:
            counts["established"] += r["LinksEstablished"]
            counts["terminated"] += r["LinksTerminated"]
            counts["failed"] += r["LinksFailed"]
print("ready", flush=True)
import select
while True:                       # collect() every 15 s, as `agent run` does, until told to stop
    r, _, _ = select.select([sys.stdin], [], [], 15)
    take(c())
    if r:
        sys.stdin.readline()
        break
time.sleep(2 * poll)              # the last close events
c._stop.set(); c._thread.join()
c.poll()
take(c.agg.flush(time.time() + 120))     # close the open window
print(json.dumps(dict(counts, stats=c.stats, unowned=c.agg.unowned, overflow=c.agg.overflow)), flush=True)
'''

SERVER = r'''
import asyncio, sys
async def handle(r, w):
    while await r.read(65536):
        pass
    w.close()
async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    print("listening", flush=True)
    await srv.serve_forever()
asyncio.run(main())
'''


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_kb(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


async def load(port: int, keep: int, rate: int, seconds: float) -> dict:
    held = []
    for _ in range(keep):
        held.append(await asyncio.open_connection("127.0.0.1", port))
    short = errors = 0

    async def one():
        nonlocal short, errors
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"0123456789")
            await w.drain()
            w.close()
            await w.wait_closed()
            short += 1
        except OSError:
            errors += 1

    t0 = time.monotonic()
    tasks = []
    sent = 0
    while (elapsed := time.monotonic() - t0) < seconds:
        due = int(elapsed * rate) + 1
        while sent < due:
            tasks.append(asyncio.create_task(one()))
            sent += 1
        await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    for _, w in held:
        w.close()
    return {"long": keep, "short": short, "errors": errors, "seconds": time.monotonic() - t0}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--open", type=int, default=2000)
    p.add_argument("--rate", type=int, default=500)
    p.add_argument("--poll", type=float, default=1.0)
    p.add_argument("--port", type=int, default=47000)
    p.add_argument("--collectors", default="netlink,ebpf", help="which collectors to measure, in turn")
    p.add_argument("--in-netns", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))

    if args.in_netns is None and os.geteuid() == 0:     # a namespace of our own: only our sockets
        name = f"na-bench-{os.getpid()}"
        if subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode == 0:
            try:
                subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
                return subprocess.run(["ip", "netns", "exec", name, sys.executable, *sys.argv, "--in-netns",
                                       name]).returncode
            finally:
                subprocess.run(["ip", "netns", "del", name])

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(args.port)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "listening"
        rows = {kind: measure(kind, args, env) for kind in args.collectors.split(",")}
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"load: {args.open} held + {args.rate} new connections a second for {args.seconds:g} s, "
          f"poll {args.poll:g} s; goals: 100 % captured, < 2 % of a core, < 80 MB")
    print(f"{'collector':10} {'captured':>17} {'share':>8} {'CPU':>7} {'VmRSS':>7} {'VmHWM':>7}  "
          f"{'unowned':>7}  goals")
    ok = True
    for kind, r in rows.items():
        met = r["share"] == 1.0 and r["core"] < 0.02 and r["rss_kb"] < 80 * 1024
        ok &= met
        print(f"{kind:10} {r['established']:>8}/{r['expected']:<8} {r['share']:8.2%} {r['core']:7.2%} "
              f"{r['rss_kb'] / 1024:5.0f}MB {r['hwm_kb'] / 1024:5.0f}MB  {r['unowned']:>7}  "
              f"{'met' if met else 'NOT met'}")
    if len(rows) == 2:
        a, b = rows.values()
        print(f"CPU ratio {'/'.join(rows)}: {a['core'] / b['core']:.1f}x" if b["core"] else "")
    for kind, r in rows.items():
        print(f"{kind} stats: {r['stats']}")
    return 0


def measure(kind: str, args, env) -> dict:
    agent = subprocess.Popen([sys.executable, "-c", AGENT, str(args.port), str(args.poll), kind],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert agent.stdout.readline().strip() == "ready"
        time.sleep(2 * args.poll)                      # the baseline dump is behind us
        cpu0, t0 = cpu_seconds(agent.pid), time.monotonic()
        truth = asyncio.run(load(args.port, args.open, args.rate, args.seconds))
        cpu1, t1 = cpu_seconds(agent.pid), time.monotonic()
        rss, hwm = status_kb(agent.pid, "VmRSS"), status_kb(agent.pid, "VmHWM")
        agent.stdin.write("stop\n")
        agent.stdin.flush()
        result = json.loads(agent.stdout.readline())
    finally:
        if agent.poll() is None:
            agent.terminate()
            agent.wait(timeout=10)
    expected = truth["long"] + truth["short"]
    return dict(result, expected=expected, share=result["established"] / expected if expected else 0.0,
                core=(cpu1 - cpu0) / (t1 - t0), rss_kb=rss, hwm_kb=hwm, errors=truth["errors"])


if __name__ == "__main__":
    sys.exit(main())
