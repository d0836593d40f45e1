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
    import os
    env = dict(os.environ, PYTHONPATH=str(ROOT))   # the agent up starts must run this tree's netatlas
    p = subprocess.Popen([sys.executable, "-m", "netatlas", "up", "--data", str(data), "--port", str(port),
                          "--machines", "24", "--days", "2"], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=env)
    out = []
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            out.append(line)
            if "/healthz" in line:
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
            pytest.fail("netatlas up did not serve:\n" + "".join(out))
        keys = json.loads((data / "workspace.json").read_text())
        query_key = next(k["secret"] for k in keys["keys"] if k["role"] == "query")
        yield port, query_key, "".join(out), data
    finally:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


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
