"""netatlas up, end to end: a fresh directory becomes a served workspace with the demo datacenter,
and every seed query answers through POST /api/query with rows."""
from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import PACKAGE, ROOT

# minutes of waiting on the clock: run beside the rest of the suite (tests/background.py)
pytestmark = pytest.mark.background


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed_blocks():
    text = (PACKAGE / "seed-queries.kql").read_text()
    parts = re.split(r"^// ==== (.+)$", text, flags=re.M)
    return [(parts[i].strip(), parts[i + 1]) for i in range(1, len(parts), 2)]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data = tmp_path_factory.mktemp("up") / "netatlas-data"
    port = free_port()
    p, out = start_up(data, port, "--machines", "24", "--days", "2", agent=True, ticks=False)
    try:
        yield port, printed_query_key(out), out, data
    finally:
        stop_up(p)


def post_query(port: int, key: str, text: str) -> tuple[int, dict]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", "/api/query", body=json.dumps({"query": text}),
              headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    r = c.getresponse()
    return r.status, json.loads(r.read())


def test_up_prints_what_to_use(served):
    port, key, out, data = served
    assert "loading the demo environment" in out
    assert f":{port}/api/query" in out and "workspace id" in out
    assert key in out                      # keys are shown on the first start
    assert (data / ".demo-loaded").exists()


@pytest.mark.parametrize("title,query", seed_blocks(), ids=[t[:50] for t, _ in seed_blocks()])
def test_every_seed_query_answers_with_rows(served, title, query):
    port, key, _, _ = served
    status, body = post_query(port, key, query)
    assert status == 200, body
    table = body["tables"][0]
    assert table["rows"], f"{title}: no rows"
    assert body["statistics"]["truncated"] is False
    if "render" in query:
        assert body["render"]["visualization"] in ("timechart", "scatterchart")


def test_the_demo_is_enriched_world_map_names_and_malicious_traffic(served):
    """The seed's world-map and FQDN queries have places and names; the demo's threat feed, loaded by
    up before the demo's connections, flags exactly the simulated suspicious addresses."""
    port, key, _, _ = served
    blocks = dict(seed_blocks())
    status, body = post_query(port, key, blocks["Remote endpoints on the world map (blog, example 3)"])
    points = body["tables"][0]["rows"]
    assert status == 200 and points and all(r[1] is not None and r[2] is not None and r[0] for r in points)
    status, body = post_query(port, key, blocks["Connections by FQDN (blog, example 4)"])
    assert status == 200 and any("api.stripe.com" in r[0] for r in body["tables"][0]["rows"])
    status, body = post_query(port, key, "VMConnection | where MaliciousIp != '' "
                                         "| summarize by MaliciousIp, IndicatorThreatType | order by MaliciousIp asc")
    assert status == 200 and body["tables"][0]["rows"] == [["185.220.101.47", "Darknet"], ["218.92.0.107", "Malware"],
                                                           ["45.155.205.233", "Botnet"]]


def test_the_local_agent_puts_this_machine_on_the_map(served):
    """The host's own agent, started by up, ships this machine's inventory and processes."""
    import os
    port, key, out, data = served
    if os.geteuid() != 0:
        pytest.skip("the local agent needs root; this run is not root")
    assert "local agent: running" in out
    deadline = time.monotonic() + 120
    found = {}
    while time.monotonic() < deadline:
        id_file = data / "agent" / "machine-id"
        me = "m-" + id_file.read_text().strip() if id_file.exists() else "?"
        for table in ("VMComputer", "VMProcess"):
            status, body = post_query(port, key, f'{table} | where Machine == "{me}" | count')
            assert status == 200, body
            found[table] = body["tables"][0]["rows"][0][0]
        if all(found.values()):
            break
        time.sleep(3)
    assert all(found.values()), f"no records of {me} after 120 s: {found}; agent log:\n" + \
        (data / "agent.log").read_text()[-3000:]


# --------------------------------------------------------------------------- the live demo (issue 10)

def start_up(data, port: int, *extra: str, env_extra: dict | None = None, agent: bool = False,
             ticks: bool = True) -> tuple[subprocess.Popen, str]:
    """`netatlas up` on DATA and PORT (without its local agent unless ``agent``; ``ticks``: the
    demo's live minutes looked for every second, progress on every step), its output up to the
    banner's last line, once /healthz answers."""
    import os
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env_extra or {}))   # the agent up starts runs this tree
    if ticks:
        env.update(NETATLAS_DEMO_TICK_SECONDS="1", NETATLAS_PROGRESS_SECONDS="0")
    p = subprocess.Popen([sys.executable, "-m", "netatlas", "up", "--data", str(data), "--port", str(port),
                          *([] if agent else ["--no-agent"]), *extra], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=env)
    out = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        out.append(line)
        if "/metrics" in line:
            break
    for _ in range(100):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                break
        except OSError:
            time.sleep(0.2)
    else:
        stop_up(p)
        pytest.fail("netatlas up did not serve:\n" + "".join(out))
    return p, "".join(out)


def stop_up(p: subprocess.Popen) -> None:
    p.send_signal(signal.SIGINT)
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def rows_of(port: int, key: str, text: str) -> list:
    status, body = post_query(port, key, text)
    assert status == 200, body
    return body["tables"][0]["rows"]


def printed_query_key(out: str) -> str:
    """The query key `up` printed (query secrets are stored hashed: up makes one each start)."""
    found = re.findall(r"^  query\s+(\S+)$", out, re.M)
    assert found, out
    return found[-1]


def marker_of(data) -> dict:
    return json.loads((data / ".demo-loaded").read_text())


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A small demo served by up, its first live minute posted (the next minute's end: at most ~70 s)."""
    data = tmp_path_factory.mktemp("live") / "netatlas-data"
    port = free_port()
    p, out = start_up(data, port, "--machines", "15", "--days", "1")
    key = printed_query_key("".join(out))
    end = marker_of(data)["end"]
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and marker_of(data)["through"] <= end:
            time.sleep(1)
        yield dict(data=data, port=port, key=key, out=out, end=end, process=p)
    finally:
        if p.poll() is None:
            stop_up(p)


def test_first_start_shows_progress_when_not_a_terminal(live):
    """Finding 7: the first start said one line, then nothing until it served. Now: lines with
    done/total, records, rate and time left (plain lines: the output is a pipe), then the total."""
    out = live["out"]
    steps = re.findall(r"^  loading the demo: (\d+)/24 h \(\d+%\), ([\d,]+) records, [\d.,]+ h/s, about \d+ s left$",
                       out, re.M)
    assert [int(h) for h, _ in steps] == [6, 12, 18, 24], out
    assert re.search(r"^  loading the demo: 24 h, [\d,]+ records in \d+ s$", out, re.M), out
    assert "\r" not in out


def test_live_minutes_arrive_through_the_ingestion_api(live):
    """Finding 6: the demo's data ended at the first start, so the default map (last 30 minutes)
    emptied after half an hour. Now each minute that ends is posted to /api/ingest like an agent's."""
    from datetime import datetime, timedelta, timezone
    port, key, end = live["port"], live["key"], live["end"]
    through = marker_of(live["data"])["through"]
    assert through > end, "no live minute posted within 150 s"
    got = rows_of(port, key, f"VMConnection | where TimeGenerated >= datetime({end}) "
                             f"| summarize n = count(), last = max(TimeGenerated), minutes = dcount(TimeGenerated)")
    n, last, minutes = got[0]
    assert n > 0 and minutes >= 1
    last = datetime.strptime(last[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    assert datetime.now(timezone.utc) - last < timedelta(minutes=3)
    # the hourly inventory and the bound ports keep coming: the last hour is populated
    for table in ("VMComputer", "VMProcess", "VMBoundPort"):
        assert rows_of(port, key, f"{table} | where TimeGenerated > ago(1h) | count")[0][0] > 0, table
    # through the server's ingestion endpoint: counted in its metrics, with the demo's batch ids
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    metrics = c.getresponse().read().decode()
    assert re.search(r'netatlas_batches_ingested_total\{table="VMConnection"\} [1-9]', metrics), metrics[:2000]


def test_the_payment_api_keeps_failing_in_live_minutes(live):
    port, key, end = live["port"], live["key"], live["end"]
    got = rows_of(port, key, f"VMConnection | where TimeGenerated >= datetime({end}) "
                             f"and RemoteDnsQuestions == '[\"api.stripe.com\"]' "
                             f"| summarize n = count(), established = sum(LinksEstablished), failed = sum(LinksFailed)")
    n, established, failed = got[0]
    assert n > 0 and established == 0 and failed >= n


def test_demo_remove_refuses_a_served_workspace(live):
    p = subprocess.run([sys.executable, "-m", "netatlas", "demo", "remove", "--data", str(live["data"])],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 1 and "held by a running server" in p.stderr and "stop it" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr


def test_restart_catches_up_without_duplicates_and_no_demo_pauses(live):
    """Stopped across a minute's end, the next start fills the minutes it missed, once; every
    minute from the window's end on has records, and none is stored twice. `up --no-demo` then
    neither reloads nor goes on."""
    from datetime import datetime, timezone
    data, port, key, end = live["data"], live["port"], live["key"], live["end"]
    stop_up(live["process"])
    stopped_at = marker_of(data)["through"]
    # stay stopped until a minute has ended
    while datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:00Z") <= stopped_at:
        time.sleep(1)
    time.sleep(1)
    p, out = start_up(data, port, "--machines", "15", "--days", "1")
    old_key, key = key, printed_query_key(out)     # each start makes a query key, revoking the last one
    try:
        assert "loading the demo environment" not in out
        assert "demo caught up" in out, out
        assert key != old_key and post_query(port, old_key, "print 1")[0] == 403
        assert marker_of(data)["through"] > stopped_at
        minutes = rows_of(port, key, f"VMConnection | where TimeGenerated >= datetime({end}) "
                                     f"and TimeGenerated < datetime({marker_of(data)['through']}) "
                                     f"| summarize by bin(TimeGenerated, 1m) | count")[0][0]
        span = rows_of(port, key, f"print m = datetime_diff('minute', datetime({marker_of(data)['through']}), "
                                  f"datetime({end}))")[0][0]
        assert minutes == span >= 2         # the live minute(s) before the stop, and those it missed
        dups = rows_of(port, key, "VMConnection | summarize n = count() by ConnectionId, Direction, TimeGenerated "
                                  "| where n > 1 | count")
        assert dups == [[0]]
        dups = rows_of(port, key, "VMComputer | summarize n = count() by Machine, TimeGenerated | where n > 1 | count")
        assert dups == [[0]]
    finally:
        stop_up(p)
    through = marker_of(data)["through"]
    held = None
    p, out = start_up(data, port, "--no-demo")
    key = printed_query_key(out)
    try:
        assert "paused for this run (--no-demo)" in out and "loading the demo" not in out
        held = rows_of(port, key, "VMConnection | count")[0][0]
        time.sleep(3)
        assert marker_of(data)["through"] == through
        assert rows_of(port, key, "VMConnection | count")[0][0] == held > 0
    finally:
        stop_up(p)


def test_up_refuses_a_demo_too_small(tmp_path):
    p = subprocess.run([sys.executable, "-m", "netatlas", "up", "--data", str(tmp_path / "d"), "--machines", "3",
                        "--no-agent", "--port", str(free_port())], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 2 and "--machines must be at least 15" in p.stderr and "Traceback" not in p.stderr


def test_up_names_a_broken_demo_marker(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    (data / ".demo-loaded").write_text("{nope")
    p = subprocess.run([sys.executable, "-m", "netatlas", "up", "--data", str(data), "--no-agent",
                        "--port", str(free_port())], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 1 and "is not a demo marker" in p.stderr and "Traceback" not in p.stderr
