"""The README's "Running it for real: a second host", run as it is written, on two machines made of
namespaces:

    n2h-XXXX-srv  10.88.0.1  the workspace server (installed as a service, https, firewalled)
    n2h-XXXX-host 10.88.0.2  the other host (its agent installed as a service)

joined by a veth pair. Each machine is a network namespace plus a mount namespace in which /etc,
/opt and /var/lib are overlays whose writes land in the test's temporary directory, so the
README's paths (/opt/netatlas, /etc/netatlas, /etc/systemd/system, /var/lib/netatlas) are used
as written, without touching this machine's. The README's ```sh second-host:NAME``` blocks are
extracted and run line by line (a line continued by a backslash is one line), in the clone's
parent directory, with only what a reader fills in replaced: SERVER_IP, and WORKSPACE_ID,
INGEST_KEY, QUERY_KEY as the block's own `keys list` printed them. What cannot run here is done
as what it stands for: `scp root@SERVER_IP:FILE DEST` copies the server's file, and `systemctl
daemon-reload && systemctl enable --now UNIT` runs the ExecStart= of the unit file the block just
wrote (with its Environment=, in /), as systemd would.

The namespaces have no way out to a package index, so the two machines install as an offline
host would: from a directory of wheels (`pip download` of the clone's dependencies and its build
backend, made first, outside the namespaces), named by PIP_NO_INDEX and PIP_FIND_LINKS in their
environment; the README's `pip install` line itself is unchanged.

Before the README's lines the server gets a firewall that drops what it does not allow (nftables,
table inet filter, as Debian's /etc/nftables.conf with a drop policy): the host cannot reach
port 8080 until the README's `nft` line, and can after. Then the test makes traffic between the
two (5 connections from the server to a listener on the host) and the README's check block,
run on the server, must show the host as a machine of the workspace (VMComputer) and those
connections (VMConnection, inbound to port 9000 from the server's address), shipped over https
by an agent that trusts the server's self-signed certificate through --ca-file.

Needs root (`ip netns add`, mounts); skipped, saying why, when a namespace cannot be created.
Takes 2-3.5 minutes: the wheels (`pip download`, ~45 s), two `pip install`s of the clone (in
parallel), then up to a minute and a half for the host's first one-minute VMConnection window to
close and ship.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path

import pytest

import systemd_units

# minutes of waiting on the clock: run beside the rest of the suite (tests/background.py)
pytestmark = pytest.mark.background

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BLOCK = re.compile(r"^```sh second-host:(\S+)\n(.*?)^```$", re.M | re.S)
SYSTEMCTL = re.compile(r"systemctl daemon-reload && systemctl enable --now (\S+)")
SCP = re.compile(r"scp root@SERVER_IP:(\S+) (\S+)")
IP = {"srv": "10.88.0.1", "host": "10.88.0.2"}
OVERLAID = ("etc", "opt", "var/lib")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TRAFFIC_PORT, TRAFFIC_CONNECTIONS = 9000, 5

# the server's firewall before the README's line: drop what is not allowed (ssh, replies, loopback)
FIREWALL = """
table inet filter {
    chain input { type filter hook input priority filter; policy drop;
                  ct state established,related accept; iif lo accept; tcp dport 22 accept; }
    chain forward { type filter hook forward priority filter; policy drop; }
    chain output { type filter hook output priority filter; policy accept; }
}
"""

LISTENER = r'''
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", %d)); s.listen(64)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    while c.recv(65536):
        pass
    c.sendall(b"ok\n"); c.close()
'''

CLIENT = r'''
import socket, sys, time
for i in range(int(sys.argv[3])):
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
    c.sendall(b"x" * 1000); c.shutdown(socket.SHUT_WR)
    while c.recv(65536):
        pass
    c.close(); time.sleep(0.2)
print("done", flush=True)
'''


def readme_blocks() -> dict[str, list[str]]:
    """The README's second-host blocks: name -> its command lines (continuations joined)."""
    found = {}
    for name, body in BLOCK.findall(README.read_text(encoding="utf-8")):
        found[name] = [line.strip() for line in body.replace("\\\n", " ").splitlines() if line.strip()]
    return found


def sh(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=check, capture_output=True, text=True, **kw)


class Machine:
    """A network namespace and a mount namespace (held by a sleeping process) in which /etc, /opt
    and /var/lib are overlays on this machine's, their changes kept under ``tmp``."""

    def __init__(self, role: str, ns: str, tmp: Path):
        self.role, self.ns, self.tmp = role, ns, tmp / role
        self.home = self.tmp / "home"
        self.holder: subprocess.Popen | None = None
        self.services: dict[str, subprocess.Popen] = {}
        self.pip: dict[str, str] = {}      # an offline host's pip settings

    def start(self) -> None:
        mounts = []
        for d in OVERLAID:
            upper, work = self.tmp / "upper" / d.replace("/", "-"), self.tmp / "work" / d.replace("/", "-")
            upper.mkdir(parents=True)
            work.mkdir(parents=True)
            mounts.append(f"mount -t overlay overlay -o lowerdir=/{d},upperdir={upper},workdir={work} /{d}")
        self.home.mkdir(parents=True)
        script = "set -e; " + "; ".join(mounts) + "; echo ready; exec sleep infinity"
        self.holder = subprocess.Popen(["ip", "netns", "exec", self.ns, "unshare", "--mount", "--propagation",
                                        "private", "sh", "-c", script], stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
        line = self.holder.stdout.readline()
        assert line.strip() == "ready", f"{self.role}: could not mount its overlays: {self.holder.stderr.read()}"

    def enter(self, *argv: str, wd: str = "/") -> list[str]:
        return ["nsenter", "-t", str(self.holder.pid), "-m", "-n", f"--wd={wd}", "--", *argv]

    def env(self, **extra: str) -> dict:
        return {"PATH": PATH, "HOME": str(self.home), "LANG": "C.UTF-8"} | self.pip | extra

    def run(self, line: str, *, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        """One README line, by sh, in this machine, in its home directory (holding the clone)."""
        r = subprocess.run(self.enter("sh", "-ec", line, wd=str(self.home)), capture_output=True, text=True,
                           env=self.env(), timeout=timeout)
        if check:
            assert r.returncode == 0, f"{self.role}: `{line}` exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
        return r

    def path(self, path: str) -> Path:
        """A path as this machine sees it."""
        return Path(f"/proc/{self.holder.pid}/root{path}")

    def spawn(self, label: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.tmp / f"{label}.log", "wb")
        p = subprocess.Popen(self.enter(*argv), stdout=log, stderr=subprocess.STDOUT, env=env or self.env())
        self.services[label] = p
        return p

    def start_unit(self, unit: str) -> None:
        """`systemctl enable --now UNIT`: its ExecStart= with its Environment=, in /."""
        text = self.path(f"/etc/systemd/system/{unit}.service").read_text()
        argv, env = systemd_units.command(text)
        self.spawn(unit, argv, {"PATH": PATH, "LANG": "C.UTF-8"} | env)

    def log(self, label: str) -> str:
        path = self.tmp / f"{label}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for p in self.services.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.services.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.holder is not None and self.holder.poll() is None:
            self.holder.kill()
            self.holder.wait()


@pytest.fixture
def machines(tmp_path):
    tag = uuid.uuid4().hex[:6]
    names = {role: f"n2h-{tag}-{role}" for role in IP}
    created = []
    r = sh("ip", "netns", "add", names["srv"], check=False)
    if r.returncode != 0:
        print(f"skipping: `ip netns add` failed: {r.stderr.strip()}")
        pytest.skip(f"cannot create network namespaces (needs root): {r.stderr.strip()}")
    created.append(names["srv"])
    ms = {}
    try:
        sh("ip", "netns", "add", names["host"])
        created.append(names["host"])
        sh("ip", "-n", names["srv"], "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
           "netns", names["host"])
        for role, ns in names.items():
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", f"{IP[role]}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            ms[role] = Machine(role, ns, tmp_path)
            ms[role].start()
        sh("ip", "netns", "exec", names["srv"], "nft", "-f", "-", input=FIREWALL)
        yield ms
    finally:
        for m in ms.values():
            m.stop()
        for ns in reversed(created):
            sh("ip", "netns", "del", ns, check=False)


UNTRACKED = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", "build", "netatlas-data",
                                   ".pytest_cache")


def copy_clone(dest: Path) -> None:
    """The repository's tracked files, as `git clone` or `scp -r` would bring them to a machine
    (outside a git checkout: the directory without what building and testing leave behind)."""
    listed = sh("git", "-C", str(ROOT), "ls-files", "-z", check=False)
    if listed.returncode != 0:
        shutil.copytree(ROOT, dest, symlinks=True, ignore=UNTRACKED)
        return
    for name in filter(None, listed.stdout.split("\0")):
        src, dst = ROOT / name, dest / name
        if not src.exists() and not src.is_symlink():
            continue                      # deleted in the working tree
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)


def wheelhouse(clone: Path, dest: Path) -> None:
    """The clone's dependencies and its build backend as files, for machines without an index."""
    requires = tomllib.loads((clone / "pyproject.toml").read_text())["build-system"]["requires"]
    r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "-d", str(dest), str(clone), *requires],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"pip download of the clone's dependencies failed:\n{r.stderr[-3000:]}"


def wait_for(what: str, check, timeout: float, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def keys_from(output: str) -> dict[str, str]:
    """`netatlas keys list` and `keys create` (tables) -> WORKSPACE_ID, INGEST_KEY, QUERY_KEY
    (a hashed key's prefix, "abc123… (hashed)", is no secret: skipped)."""
    found = {}
    for line in output.splitlines():
        if line.startswith("workspace "):
            found.setdefault("WORKSPACE_ID", line.split()[1])
        elif line.startswith("k_") and not line.endswith("(hashed)"):
            _id, role, _created, secret = line.split()
            found.setdefault(f"{role.upper()}_KEY", secret)
    return found


def fill(line: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        line = line.replace(name, value)
    return line


def table(output: str) -> list[dict]:
    body = json.loads(output)
    assert "tables" in body, body
    t = body["tables"][0]
    return [dict(zip([c["name"] for c in t["columns"]], row)) for row in t["rows"]]


@pytest.mark.timeout(600)
def test_the_readmes_second_host_commands_enroll_a_host_over_https(machines, tmp_path):
    t0 = time.monotonic()
    blocks = readme_blocks()
    assert set(blocks) == {"install", "server", "host", "check"}, f"README blocks: {sorted(blocks)}"
    srv, host = machines["srv"], machines["host"]
    values = {"SERVER_IP": IP["srv"]}
    for m in (srv, host):      # each machine its own copy, in its home directory, where the lines run
        copy_clone(m.home / "netatlas")
    wheelhouse(srv.home / "netatlas", tmp_path / "wheels")
    for m in (srv, host):
        m.pip = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path / "wheels")}
    t_wheels = time.monotonic()

    def do(machine: Machine, line: str) -> subprocess.CompletedProcess | None:
        """One README line: systemctl and scp as what they stand for, the others as written."""
        if m := SYSTEMCTL.fullmatch(line):
            machine.start_unit(m[1])
        elif m := SCP.fullmatch(line):
            shutil.copy(srv.path(m[1]), machine.path(m[2]))
        else:
            return machine.run(fill(line, values))
        return None

    try:
        # ---- on both machines: the install, in parallel
        (line,) = blocks["install"]
        installs = {m.role: subprocess.Popen(m.enter("sh", "-ec", line, wd=str(m.home)), env=m.env(),
                                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                    for m in (srv, host)}
        for role, p in installs.items():
            out, _ = p.communicate(timeout=400)
            assert p.returncode == 0, f"{role}: `{line}`:\n{out[-3000:]}"
        assert srv.path("/opt/netatlas/bin/netatlas").exists() and not Path("/opt/netatlas/bin/netatlas").exists()
        t_installed = time.monotonic()

        # ---- on the server
        reachable = f"curl -sk --max-time 3 -o /dev/null https://{IP['srv']}:8080/healthz"
        keys_listed = ""
        for line in blocks["server"]:
            if line.startswith("nft "):       # before the firewall line: the server is up, the host cannot reach it
                wait_for("the workspace server", lambda: srv.run(
                    f"curl -sf --cacert /etc/netatlas/server.crt https://{IP['srv']}:8080/healthz",
                    check=False).returncode == 0, 60)
                blocked = host.run(reachable, check=False)
                assert blocked.returncode == 28, f"port 8080 reachable before the nft line: {blocked}"
            r = do(srv, line)
            if line.startswith("nft "):
                assert host.run(reachable, check=False).returncode == 0, "still blocked after the nft line"
            if "netatlas keys " in line:
                keys_listed += r.stdout
        assert keys_listed, "the server block printed no keys"
        values |= keys_from(keys_listed)
        service = srv.log("netatlas-workspace")
        assert "https://0.0.0.0:8080/healthz" in service, service
        assert srv.path("/var/lib/netatlas/workspace.json").stat().st_mode & 0o777 == 0o600

        # ---- on the host
        for line in blocks["host"]:
            do(host, line)
        agent_toml = host.path("/etc/netatlas/agent.toml").read_text()
        assert f'workspace_url = "https://{IP["srv"]}:8080"' in agent_toml
        assert 'ca_file = "/etc/netatlas/server.crt"' in agent_toml
        wait_for("the agent to start shipping", lambda: "shipping to" in host.log("netatlas-agent"), 60)
        machine = "m-" + host.path("/var/lib/netatlas-agent/machine-id").read_text().strip()

        # ---- traffic between the two: the server connects to a listener on the host
        listener = host.spawn("listener", ["python3", "-c", LISTENER % TRAFFIC_PORT])
        wait_for("the listener", lambda: "listening" in host.log("listener"), 30, every=0.2)
        time.sleep(2)      # past the agent's first look at the sockets
        client = srv.run(f"python3 -c {shlex.quote(CLIENT)} {IP['host']} {TRAFFIC_PORT} {TRAFFIC_CONNECTIONS}")
        assert "done" in client.stdout
        t_traffic = time.monotonic()

        # ---- the README's check, on the server, until the host and its connections are there
        machines_line, connections_line = [fill(line, values) for line in blocks["check"]]

        def arrived():
            computers = table(srv.run(machines_line).stdout)
            inbound = [r for r in table(srv.run(connections_line).stdout)
                       if r["Machine"] == machine and r["Direction"] == "inbound"
                       and r["RemoteIp"] == IP["srv"] and r["DestinationPort"] == TRAFFIC_PORT]
            done = machine in {r["Machine"] for r in computers} and \
                sum(r["Links"] for r in inbound) >= TRAFFIC_CONNECTIONS
            return inbound if done else None

        inbound = wait_for("the host and its connections in the workspace", arrived, 150, every=5)
        assert sum(r["Links"] for r in inbound) == TRAFFIC_CONNECTIONS, inbound
        t_arrived = time.monotonic()

        # its agent shipped over https, trusting the server's certificate, without a failure
        assert "cannot send" not in host.log("netatlas-agent"), host.log("netatlas-agent")
        assert listener.poll() is None
        print(f"\nwheels {t_wheels - t0:.0f} s, install {t_installed - t_wheels:.0f} s, "
              f"server and host {t_traffic - t_installed:.0f} s, "
              f"records in the workspace {t_arrived - t_traffic:.0f} s after the traffic")
    except BaseException:
        for m in (srv, host):
            for label in m.services:
                print(f"---- {m.role} {label}\n{m.log(label)[-4000:]}")
        raise
