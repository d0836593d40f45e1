"""The agent's collector under load, on loopback: CPU, memory and the share of connections captured.

    python bench/agent.py [--seconds 60] [--open 2000] [--rate 1000] [--udp-rate 500] [--poll 1]
                          [--collectors ebpf,netlink,psutil]

A load generator keeps ``--open`` connections open and opens ``--rate`` new short connections a
second (connect, send 10 bytes, close) and ``--udp-rate`` new UDP sockets a second (each sends a
10-byte request and waits for its 10-byte answer, as a DNS lookup does; the flows expected are the
agent's new flows: the distinct minute and local port pairs whose port had no datagram the minute
before, a port reused to the same server within a minute, or the next, being the same flow) for ``--seconds``,
against a server in another process. The
agent's collector (``netatlas.agent.collect.Collector``, the one `netatlas agent run` uses, without
the shipper) runs in a third process, once per collector, one after the other, against the same
server. Reported: its CPU over the load (share of one core, from
/proc/PID/stat), its VmRSS and VmHWM, and the connections to the load's port its records count
(LinksEstablished, outbound; UDP: Protocol "udp" flows) against the ground truth. Goals for eBPF:
100 % captured, < 1 % of a core, < 60 MB. ``errors`` are the load's own failures (a connect refused,
an answer not back within 5 s, a write that failed): a connection counts in the truth once
established and a flow once its request went, whatever follows. A collector this tree does not
have is reported as such.
Needs root (netlink close events). Runs in a fresh network namespace when it can create one.

Then the metric sampling (``netatlas.agent.perf``): ``--looks`` looks at this host's /proc, each
turned into its records (InsightsMetrics, Perf and Heartbeat, all on), timed on the process's own
CPU clock; the agent takes one look a minute, so the cost of one look over 60 s is the share of a
core the sampling adds. Goal: < 0.2 %. ``--sampling-only`` measures only that.
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
from netatlas.agent.collect import collector
port, poll, kind, udp_port = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
d = tempfile.mkdtemp()
c = collector(AgentConfig(workspace_url="http://127.0.0.1:9", workspace_id="bench", key="YmVuY2g=",
                          poll=poll, collector=kind, spool=d + "/spool", machine_id_file=d + "/machine-id"))
counts = {"established": 0, "terminated": 0, "failed": 0, "records": 0, "udp": 0}
def take(out):
    for r in out.get("VMConnection", []):
        counts["records"] += 1
        if r["Direction"] == "outbound" and r.get("Protocol") == "udp" and r["DestinationPort"] == udp_port:
            counts["udp"] += r.get("LinksEstablished") or 0
        elif r["Direction"] == "outbound" and r["DestinationPort"] == port:
            counts["established"] += r["LinksEstablished"]
            counts["terminated"] += r["LinksTerminated"]
            counts["failed"] += r.get("LinksFailed") or 0
print("ready", flush=True)
import select
while True:                       # collect() every 15 s, as `agent run` does, until told to stop
    r, _, _ = select.select([sys.stdin], [], [], 15)
    take(c())
    if r:
        sys.stdin.readline()
        break
time.sleep(2 * poll)              # the last close events
take(c.final())                   # a last look, and the open window closed
print(json.dumps(dict(counts, stats=c.stats, unowned=c.agg.unowned, overflow=c.agg.overflow)), flush=True)
'''

SERVER = r'''
import asyncio, sys
async def handle(r, w):
    while await r.read(65536):
        pass
    w.close()
class Echo(asyncio.DatagramProtocol):
    def connection_made(self, t):
        self.t = t
    def datagram_received(self, data, addr):
        self.t.sendto(data, addr)
async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    await asyncio.get_running_loop().create_datagram_endpoint(Echo, local_addr=("127.0.0.1", int(sys.argv[2])))
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


class _Ask(asyncio.DatagramProtocol):
    """One UDP flow: a request, then its answer."""
    def __init__(self, done: asyncio.Future):
        self.done = done

    def connection_made(self, transport):
        transport.sendto(b"0123456789")

    def datagram_received(self, data, addr):
        if not self.done.done():
            self.done.set_result(data)


async def load(port: int, udp_port: int, keep: int, rate: int, udp_rate: int, seconds: float) -> dict:
    held = []
    for _ in range(keep):
        held.append(await asyncio.open_connection("127.0.0.1", port))
    short = errors = 0
    # (minute, local port) of each datagram: a new socket on a port used to the same peer that minute
    # is the same flow, and one used the minute before continues it (not new; the agent's rule)
    flows = set()
    loop = asyncio.get_running_loop()

    async def flow():
        nonlocal errors
        done = loop.create_future()
        sent_at = time.time()
        try:
            t, _ = await loop.create_datagram_endpoint(lambda: _Ask(done), remote_addr=("127.0.0.1", udp_port))
        except OSError:
            errors += 1
            return
        local = t.get_extra_info("sockname")[1]
        flows.add((int(sent_at // 60), local))        # the request went (connection_made sent it)
        try:
            await asyncio.wait_for(done, 5)
            flows.add((int(time.time() // 60), local))
        except (OSError, asyncio.TimeoutError):
            errors += 1                               # no answer: the request's flow still counts
        finally:
            t.close()

    async def one():
        nonlocal short, errors
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            errors += 1                               # never established: not in the truth
            return
        short += 1                                    # established: it counts whatever follows
        try:
            w.write(b"0123456789")
            await w.drain()
            w.close()
            await w.wait_closed()
        except OSError:
            errors += 1

    t0 = time.monotonic()
    tasks = []
    sent = asked = 0
    while (elapsed := time.monotonic() - t0) < seconds:
        while sent < int(elapsed * rate) + 1:
            tasks.append(asyncio.create_task(one()))
            sent += 1
        while udp_rate and asked < int(elapsed * udp_rate) + 1:
            tasks.append(asyncio.create_task(flow()))
            asked += 1
        await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    for _, w in held:
        w.close()
    new_flows = sum(1 for minute, local in flows if (minute - 1, local) not in flows)
    return {"long": keep, "short": short, "udp": new_flows, "errors": errors, "seconds": time.monotonic() - t0}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--open", type=int, default=2000)
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--udp-rate", type=int, default=500, help="new UDP flows a second (0: none)")
    p.add_argument("--poll", type=float, default=1.0)
    p.add_argument("--port", type=int, default=47000)
    p.add_argument("--collectors", default="ebpf,netlink,psutil", help="which collectors to measure, in turn")
    p.add_argument("--looks", type=int, default=500, help="looks at /proc timed for the metric sampling")
    p.add_argument("--sampling-only", action="store_true", help="measure the metric sampling only")
    p.add_argument("--in-netns", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.sampling_only:
        report_sampling(args.looks)
        return 0
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
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(args.port), str(args.port + 1)],
                              stdout=subprocess.PIPE, text=True)
    from netatlas.agent.config import COLLECTORS
    kinds = args.collectors.split(",")
    missing = [k for k in kinds if k not in COLLECTORS]
    try:
        assert server.stdout.readline().strip() == "listening"
        rows = {kind: measure(kind, args, env) for kind in kinds if kind not in missing}
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"load: {args.open} held + {args.rate} new TCP connections and {args.udp_rate} UDP flows a second "
          f"for {args.seconds:g} s, poll {args.poll:g} s; goals for ebpf: 100 % captured, < 1 % of a core, < 60 MB")
    print(f"{'collector':10} {'TCP captured':>17} {'share':>8} {'UDP flows':>15} {'share':>8} {'CPU':>7} "
          f"{'VmRSS':>7} {'VmHWM':>7}  {'unowned':>7} {'errors':>6}  goals")
    for kind, r in rows.items():
        met = r["share"] == 1.0 and r["core"] < 0.01 and r["rss_kb"] < 60 * 1024
        print(f"{kind:10} {r['established']:>8}/{r['expected']:<8} {r['share']:8.2%} {r['udp']:>7}/{r['udp_expected']:<7} "
              f"{r['udp_share']:8.2%} {r['core']:7.2%} {r['rss_kb'] / 1024:5.0f}MB {r['hwm_kb'] / 1024:5.0f}MB  "
              f"{r['unowned']:>7} {r['errors']:>6}  {('met' if met else 'NOT met') if kind == 'ebpf' else ''}")
    for kind in missing:
        print(f"{kind:10} not a collector of this tree (it has: {', '.join(COLLECTORS)})")
    for kind, r in rows.items():
        print(f"{kind} stats: {r['stats']}")
    report_sampling(args.looks)
    return 0


def sampling_cost(looks: int) -> dict:
    """CPU seconds of one look at /proc and its records (InsightsMetrics, Perf, Heartbeat)."""
    sys.path.insert(0, str(ROOT))
    from netatlas.agent.perf import Sampler, heartbeat_columns, read_proc
    from netatlas.agent.proc import Proc
    info = Proc("/").machine()
    sampler = Sampler("bench", "bench", lambda: read_proc("/"), heartbeat=lambda: heartbeat_columns(info, {}, "0"),
                      metrics=True, perf=True)
    sampler(0.0)                                   # the baseline look
    records = 0
    t0 = time.process_time()
    for i in range(1, looks + 1):
        out = sampler(i * 60.0)                    # a new minute each time: a look and its records
        records += sum(len(v) for v in out.values())
    cpu = (time.process_time() - t0) / looks
    return {"cpu_s": cpu, "records": records / looks, "core": cpu / 60.0}


def report_sampling(looks: int) -> None:
    r = sampling_cost(looks)
    print(f"metric sampling: {r['cpu_s'] * 1000:.2f} ms of CPU per look ({r['records']:.0f} records: "
          f"InsightsMetrics, Perf, Heartbeat), one look a minute = {r['core']:.4%} of a core; goal < 0.2 %: "
          f"{'met' if r['core'] < 0.002 else 'NOT met'}")


def measure(kind: str, args, env) -> dict:
    agent = subprocess.Popen([sys.executable, "-c", AGENT, str(args.port), str(args.poll), kind, str(args.port + 1)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert agent.stdout.readline().strip() == "ready"
        time.sleep(2 * args.poll)                      # the baseline dump is behind us
        cpu0, t0 = cpu_seconds(agent.pid), time.monotonic()
        truth = asyncio.run(load(args.port, args.port + 1, args.open, args.rate, args.udp_rate, args.seconds))
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
                udp_expected=truth["udp"], udp_share=result["udp"] / truth["udp"] if truth["udp"] else 0.0,
                core=(cpu1 - cpu0) / (t1 - t0), rss_kb=rss, hwm_kb=hwm, errors=truth["errors"])


if __name__ == "__main__":
    sys.exit(main())
