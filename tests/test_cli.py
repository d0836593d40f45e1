"""The `netatlas` command, run as a subprocess (`python -m netatlas`) the way a person runs it."""
from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
import tomllib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import netatlas

ROOT = Path(__file__).resolve().parent.parent
PRINT_ALL = ('print s="x", n=1, r=2.5, b=true, d=datetime(2024-01-01 10:00:00), t=time(1.02:03:04), '
             'dyn=dynamic({"k":[1,2]}), nul=long(null)')


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([e["PYTHONPATH"]] if e.get("PYTHONPATH") else []))
    return e


def run(*args: str, stdin: str = "", cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`netatlas ARGS` with stdin a pipe holding `stdin` (so never a terminal)."""
    return subprocess.run([sys.executable, "-m", "netatlas", *args], input=stdin, capture_output=True,
                          text=True, cwd=cwd, env=env(), timeout=120)


def ok(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    return p.stdout


# ---------------------------------------------------------------- netatlas query: formats

def test_table_format_aligns_columns_and_renders_values_as_json():
    assert ok(run("query", "--memory", PRINT_ALL)) == (
        's  n    r  b     d                     t           dyn            nul\n'
        '-  -  ---  ----  --------------------  ----------  -------------  ---\n'
        'x  1  2.5  true  2024-01-01T10:00:00Z  1.02:03:04  {"k": [1, 2]}\n'
        '(1 row)\n')


def test_table_format_right_aligns_numbers_and_counts_rows():
    out = ok(run("query", "--memory", "range x from 8 to 11 step 1 | extend s = strcat('v', x)"))
    assert out.splitlines() == [" x  s", "--  ---", " 8  v8", " 9  v9", "10  v10", "11  v11", "(4 rows)"]


def test_table_format_escapes_line_breaks_in_cells():
    out = ok(run("query", "--memory", 'print s=strcat("a", "\\n", "b")'))
    assert out.splitlines()[2] == "a\\nb"


def test_json_format_is_the_result_json_shape():
    doc = json.loads(ok(run("query", "--memory", "--format", "json", PRINT_ALL)))
    table = doc["tables"][0]
    assert [(c["name"], c["type"]) for c in table["columns"]] == [
        ("s", "string"), ("n", "long"), ("r", "real"), ("b", "bool"), ("d", "datetime"),
        ("t", "timespan"), ("dyn", "dynamic"), ("nul", "long")]
    assert table["rows"] == [["x", 1, 2.5, True, "2024-01-01T10:00:00Z", "1.02:03:04", {"k": [1, 2]}, None]]
    assert doc["statistics"]["rows"] == 1 and doc["statistics"]["truncated"] is False


def test_json_format_carries_render():
    doc = json.loads(ok(run("query", "--memory", "--format", "json", "range x from 1 to 3 step 1 | render timechart")))
    assert doc["render"]["visualization"] == "timechart"


def test_csv_format_quotes_and_writes_dynamic_as_json():
    out = ok(run("query", "--memory", "--format", "csv", 'print s="a,\\"b\\"", dyn=dynamic({"k":[1,2]}), nul=long(null), b=false'))
    assert list(csv.reader(io.StringIO(out))) == [["s", "dyn", "nul", "b"], ['a,"b"', '{"k": [1, 2]}', "", "false"]]


# ---------------------------------------------------------------- netatlas query: where the query comes from

def test_query_from_file(tmp_path):
    f = tmp_path / "q.kql"
    f.write_text("// a comment\nrange x from 1 to 3 step 1\n| summarize total = sum(x)\n")
    assert ok(run("query", "--memory", "--format", "csv", "-f", str(f))) == "total\n6\n"


def test_query_from_stdin():
    assert ok(run("query", "--memory", "--format", "csv", stdin="print v = 40 + 2\n")) == "v\n42\n"


def test_query_file_missing_is_a_usage_error(tmp_path):
    p = run("query", "--memory", "-f", str(tmp_path / "nope.kql"))
    assert p.returncode == 2 and "cannot read" in p.stderr and "Traceback" not in p.stderr


def test_empty_query_is_a_usage_error():
    p = run("query", "--memory", stdin="  \n")
    assert p.returncode == 2 and "no query given" in p.stderr


# ---------------------------------------------------------------- netatlas query: workspace, params, limits

def test_data_directory_is_read(tmp_path):
    data = tmp_path / "ws"
    netatlas.connect(data).close()
    assert ok(run("query", "--data", str(data), "--format", "csv", "VMConnection | count")) == "Count\n0\n"
    with netatlas.connect(data) as ws:
        ws.ingest("VMConnection", [{"TimeGenerated": "2024-01-01T00:00:00Z", "Computer": "web-1"}])
    out = ok(run("query", "--data", str(data), "--format", "csv", "VMConnection | project Computer"))
    assert out == "Computer\nweb-1\n"


def test_query_reads_netatlas_data_here_by_default(tmp_path):
    with netatlas.connect(tmp_path / "netatlas-data") as ws:
        ws.ingest("VMConnection", [{"TimeGenerated": "2024-01-01T00:00:00Z", "Computer": "db-7"}])
    assert ok(run("query", "--format", "csv", "VMConnection | project Computer", cwd=tmp_path)) == "Computer\ndb-7\n"


def test_query_without_a_workspace_here_is_an_error_and_creates_nothing(tmp_path):
    # it used to open a new, empty in-memory workspace and print `Count 0` with exit code 0
    p = run("query", "VMConnection | count", cwd=tmp_path)
    assert p.returncode == 2 and p.stdout == "" and "Traceback" not in p.stderr
    assert "netatlas-data does not exist" in p.stderr and "netatlas up" in p.stderr
    assert list(tmp_path.iterdir()) == []


def test_mistyped_data_directory_is_an_error_and_creates_nothing(tmp_path):
    # it used to create the mistyped directory, a new empty workspace in it, and print `Count 0`
    with netatlas.connect(tmp_path / "ws") as ws:
        ws.ingest("VMConnection", [{"TimeGenerated": "2024-01-01T00:00:00Z", "Computer": "web-1"}])
    p = run("query", "--data", str(tmp_path / "wss"), "VMConnection | count")
    assert p.returncode == 2 and p.stdout == "" and "Traceback" not in p.stderr
    assert f"{tmp_path / 'wss'} does not exist" in p.stderr and "workspace serve --data" in p.stderr
    assert not (tmp_path / "wss").exists()


def test_a_directory_that_is_not_a_workspace_is_an_error(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    for path, what in ((tmp_path / "photos", "is not a netatlas workspace"), (tmp_path / "notes.txt", "is not a directory")):
        for command in ("query", "shell"):
            p = run(command, "--data", str(path), stdin="VMConnection | count", cwd=tmp_path)
            assert p.returncode == 2 and p.stdout == "" and f"{path} {what}" in p.stderr, (command, p.stderr)
    assert list((tmp_path / "photos").iterdir()) == []


def test_memory_is_an_empty_workspace_with_every_table():
    assert ok(run("query", "--memory", "--format", "csv", "VMConnection | count")) == "Count\n0\n"


def test_kql_error_exits_2_with_caret_and_hint_and_no_traceback():
    p = run("query", "--memory", "range x from 1 to 3 step 1 | wher x > 1")
    assert p.returncode == 2
    assert p.stdout == ""
    assert "Traceback" not in p.stderr
    assert p.stderr.splitlines() == [
        "KQL_UNKNOWN_OPERATOR at line 1, column 30: unknown operator 'wher'",
        "  range x from 1 to 3 step 1 | wher x > 1",
        "                               ^^^^",
        "hint: did you mean 'where'?",
    ]


def test_params_are_converted_to_the_declared_types():
    q = "declare query_parameters(n:long, who:string, since:datetime); print twice = n * 2, who = who, since = since"
    out = ok(run("query", "--memory", "--format", "csv", "--param", "n=21", "--param", "who=a=b",
                 "--param", "since=2024-05-01T00:00:00Z", q))
    assert out == "twice,who,since\n42,a=b,2024-05-01T00:00:00Z\n"


def test_param_without_equals_is_a_usage_error():
    p = run("query", "--memory", "--param", "n", "print 1")
    assert p.returncode == 2 and "name=value" in p.stderr


def test_param_of_the_wrong_type_is_a_kql_error():
    p = run("query", "--memory", "--param", "n=abc", "declare query_parameters(n:long); print n")
    assert p.returncode == 2 and "^" in p.stderr and "Traceback" not in p.stderr


def test_truncated_result_warns():
    p = run("query", "--memory", "--format", "csv", "--max-rows", "2", "range x from 1 to 5 step 1")
    assert ok(p) == "x\n1\n2\n"
    assert "truncated" in p.stderr


# ---------------------------------------------------------------- version, help, entry points

def test_version():
    assert ok(run("version")).strip() == f"netatlas {netatlas.__version__}"
    assert "duckdb 2.0.0" in ok(run("version", "--all"))


def test_no_command_prints_usage_and_exits_2():
    p = run()
    assert p.returncode == 2 and "query" in p.stderr and "up" in p.stderr


def test_console_script_is_declared():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["scripts"] == {"netatlas": "netatlas.cli:main"}
    from netatlas.cli import main
    assert main(["version"]) == 0



# ---------------------------------------------------------------- beside a running server

def fill_connections(ws) -> None:
    """Six connection records of the last hour (a server's retention pass keeps them)."""
    now = datetime.now(timezone.utc)
    ws.ingest("VMConnection", [{"TimeGenerated": (now - timedelta(minutes=i)).isoformat(), "Computer": f"cli-{i}",
                                "LinksFailed": i} for i in range(1, 7)])


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A filled workspace directory held by its running `netatlas workspace serve`."""
    from test_server import serve_filled
    yield from serve_filled(tmp_path_factory, "cli-served", fill_connections)


def queries_answered(server) -> float:
    from test_server import request
    text = request(server.port, "GET", "/metrics").body
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("netatlas_queries_total{"))


def test_server_publishes_where_it_listens(served):
    doc = json.loads((served.data / "server.json").read_text())
    assert doc["url"] == f"http://127.0.0.1:{served.port}" and doc["pid"] == served.proc.pid and doc["started"]
    assert (served.data / "server.json").stat().st_mode & 0o777 == 0o600


def test_server_withdraws_its_address_when_terminated(tmp_path):
    # uvicorn ends the process by re-raising SIGTERM after its shutdown: the file goes before that
    from test_server import Server
    data = tmp_path / "data"
    server = Server(data).start()
    try:
        assert (data / "server.json").exists()
        server.terminate()
    finally:
        server.kill()
    assert not (data / "server.json").exists()


def test_query_goes_through_the_server_that_holds_the_workspace(served):
    # it used to fail with WORKSPACE_BUSY: the state `netatlas up` leaves a user in
    before = queries_answered(served)
    out = ok(run("query", "--data", str(served.data), "--format", "csv",
                 "VMConnection | where LinksFailed > 3 | project Computer, LinksFailed | order by Computer asc"))
    assert out == "Computer,LinksFailed\ncli-4,4\ncli-5,5\ncli-6,6\n"
    assert queries_answered(served) == before + 1


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_results_through_the_server_print_as_local_ones(served, fmt):
    remote = ok(run("query", "--data", str(served.data), "--format", fmt, PRINT_ALL))
    local = ok(run("query", "--memory", "--format", fmt, PRINT_ALL))
    if fmt == "json":   # the same document, timings aside
        remote, local = json.loads(remote), json.loads(local)
        for doc in (remote, local):
            doc["statistics"].pop("timings_ms")
    assert remote == local


def test_kql_error_through_the_server_prints_the_caret_and_exits_2(served):
    p = run("query", "--data", str(served.data), "VMConnection\n| where Computr == 'x'")
    assert p.returncode == 2 and p.stdout == "" and "Traceback" not in p.stderr
    assert p.stderr.splitlines() == [
        "KQL_UNKNOWN_COLUMN at line 2, column 9: unknown column or variable 'Computr'",
        "  | where Computr == 'x'",
        "          ^^^^^^^",
        "hint: did you mean 'Computer'?",
    ]


def test_max_rows_params_and_timeout_through_the_server(served):
    p = run("query", "--data", str(served.data), "--format", "csv", "--max-rows", "2",
            "VMConnection | project Computer | order by Computer asc")
    assert ok(p) == "Computer\ncli-1\ncli-2\n" and "truncated to the first 2 rows" in p.stderr
    out = ok(run("query", "--data", str(served.data), "--format", "csv", "--param", "n=4", "--param", "who=cli-5",
                 "declare query_parameters(n:long, who:string); VMConnection | where LinksFailed >= n and Computer != who "
                 "| project Computer | order by Computer asc"))
    assert out == "Computer\ncli-4\ncli-6\n"
    p = run("query", "--data", str(served.data), "--timeout", "0.05", "range x from 1 to 3000000000 step 1 | summarize count() by x % 7")
    assert p.returncode == 1 and "KQL_TIMEOUT" in p.stderr and "0.05 s" in p.stderr and "Traceback" not in p.stderr


def test_query_api_takes_lower_limits_only(served):
    from test_server import assert_error_shape
    client = served.client()
    r = client.call("POST", "/api/query", {"query": "range x from 1 to 10 step 1", "max_rows": 3})
    assert r.status == 200 and r.body["tables"][0]["rows"] == [[1], [2], [3]]
    assert r.body["statistics"]["truncated"] is True and r.body["statistics"]["max_rows"] == 3
    r = client.call("POST", "/api/query", {"query": "print 1", "max_rows": 10 ** 12})
    assert r.status == 200 and r.body["statistics"]["max_rows"] == 500_000      # the server's own limit
    for field, bad in (("max_rows", "3"), ("max_rows", 0), ("timeout", -1), ("timeout", True)):
        err = assert_error_shape(client.call("POST", "/api/query", {"query": "print 1", field: bad}), 400, "BAD_REQUEST")
        assert err["field"] == field


def test_shell_with_piped_stdin_goes_through_the_server(served):
    out = ok(run("shell", "--data", str(served.data), "--format", "csv", stdin="VMConnection\n| count\n;;\n"))
    assert out == "Count\n6\n"


def test_shell_in_a_terminal_says_it_goes_through_the_server(served, tmp_path):
    term = Terminal([sys.executable, "-m", "netatlas", "shell", "--data", str(served.data)], tmp_path)
    try:
        assert f"through its server at http://127.0.0.1:{served.port}" in term.expect("kql> ")
        term.send("VMConnection | summarize n = count();;\n")
        assert re.search(r"n\s*\n-\s*\n6\s*\n\(1 row\)", term.expect("(1 row)"))
        term.expect("kql> ")
        term.send("exit\n")
        assert term.close() == 0
    finally:
        term.stop()


def test_query_beside_netatlas_up_on_any_port(tmp_path):
    """The README's state: `netatlas up` runs in ./netatlas-data (here on a port the system chose),
    and `netatlas query` in the same directory, without --data, is answered by it."""
    with netatlas.connect(tmp_path / "netatlas-data") as ws:
        fill_connections(ws)
    up = subprocess.Popen([sys.executable, "-m", "netatlas", "up", "--no-demo", "--no-agent", "--port", "0"],
                          cwd=tmp_path, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    published = tmp_path / "netatlas-data" / "server.json"
    try:
        deadline = time.monotonic() + 60
        while not published.exists():
            assert up.poll() is None and time.monotonic() < deadline, "up did not publish server.json"
            time.sleep(0.1)
        url = json.loads(published.read_text())["url"]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url) and not url.endswith(":0")
        out = ok(run("query", "--format", "csv", "VMConnection | where LinksFailed < 3 | project Computer "
                     "| order by Computer asc", cwd=tmp_path))
        assert out == "Computer\ncli-1\ncli-2\n"
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(30)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
    assert up.returncode == 0 and not published.exists()    # withdrawn as the server stopped


def hold(data: Path) -> subprocess.Popen:
    """Another process holding the workspace in ``data`` (not a server)."""
    p = subprocess.Popen([sys.executable, "-c", "import sys, time, netatlas; ws = netatlas.connect(sys.argv[1]); "
                          "print('held', flush=True); time.sleep(120)", str(data)],
                         stdout=subprocess.PIPE, text=True, env=env())
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_held_workspace_without_a_live_server_is_a_clear_error(tmp_path):
    data = tmp_path / "ws"
    netatlas.connect(data).close()
    holder = hold(data)
    try:
        p = run("query", "--data", str(data), "VMConnection | count")
        assert p.returncode == 1 and p.stdout == "" and "Traceback" not in p.stderr
        assert "held by another process" in p.stderr and f"no workspace server has published its address in {data / 'server.json'}" in p.stderr
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        (data / "server.json").write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": gone.pid,
                                                      "started": "2024-01-01T00:00:00Z"}))
        p = run("query", "--data", str(data), "VMConnection | count")
        assert p.returncode == 1 and p.stdout == "" and "Traceback" not in p.stderr
        assert f"pid {gone.pid}" in p.stderr and "no longer running" in p.stderr and "stale" in p.stderr
    finally:
        holder.kill()
        holder.wait()


# ---------------------------------------------------------------- netatlas shell

def test_shell_without_a_terminal_runs_stdin_as_one_query(tmp_path):
    netatlas.connect(tmp_path / "netatlas-data").close()
    out = ok(run("shell", "--format", "csv", stdin="range x from 1 to 2 step 1\n| count\n;;\n", cwd=tmp_path))
    assert out == "Count\n2\n"


def test_shell_with_empty_stdin_exits_0_with_a_message(tmp_path):
    netatlas.connect(tmp_path / "netatlas-data").close()
    p = subprocess.run([sys.executable, "-m", "netatlas", "shell"], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, cwd=tmp_path, env=env(), timeout=120)
    assert p.returncode == 0 and p.stdout == "" and "no query" in p.stderr


def test_shell_without_a_terminal_reports_kql_errors(tmp_path):
    p = run("shell", "--memory", stdin="print x = y\n", cwd=tmp_path)
    assert p.returncode == 2 and "^" in p.stderr and "Traceback" not in p.stderr


class Terminal:
    """A child process on a pseudo-terminal, read until an expected text shows up. Its shell
    history goes to HISTORY in ``cwd``."""

    def __init__(self, args: list[str], cwd: Path):
        self.master, slave = pty.openpty()
        self.history = cwd / "history"
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, close_fds=True,
                                     env=dict(env(), NETATLAS_HISTORY=str(self.history), TERM="xterm"))
        os.close(slave)
        self.seen = ""

    def expect(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.master], [], [], left)[0]:
                raise AssertionError(f"{text!r} did not appear; the screen so far:\n{self.seen}")
            try:
                chunk = os.read(self.master, 4096)
            except OSError:   # the child closed the terminal
                chunk = b""
            if not chunk:
                raise AssertionError(f"{text!r} did not appear before the end; the screen:\n{self.seen}")
            self.seen += chunk.decode(errors="replace").replace("\r\n", "\n")
        head, _, self.seen = self.seen.partition(text)
        return head + text

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def close(self) -> int:
        return self.proc.wait(timeout=60)

    def rest(self) -> str:
        """What the child wrote after the last expected text, up to its end."""
        while select.select([self.master], [], [], 5)[0]:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.seen += chunk.decode(errors="replace").replace("\r\n", "\n")
        return self.seen

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def test_shell_in_a_terminal_has_help_multiline_completion_history_and_exit(tmp_path):
    with netatlas.connect(tmp_path / "netatlas-data") as ws:
        fill_connections(ws)
    term = Terminal([sys.executable, "-m", "netatlas", "shell"], tmp_path)
    try:
        banner = term.expect("kql> ")
        assert f"workspace {tmp_path / 'netatlas-data'}, opened directly" in banner
        assert "once they exist" not in banner and "`help`" in banner and "';;'" in banner
        term.send("help\n")              # used to be a KQL error, waiting for more lines first
        shown = term.expect("kql> ")
        assert "exit" in shown and "quit" in shown and re.search(r"VMConnection\s+\d+ columns", shown), shown
        term.send("help VMProcess\n")
        assert re.search(r"\n  ExecutableName +string\n", term.expect("kql> "))
        term.send("VMConnection\n")      # a query over two lines, ended by an empty line
        term.expect("...> ")
        term.send("| summarize total = sum(LinksFailed)\n\n")
        assert re.search(r"total\s*\n-+\s*\n\s*21\s*\n\(1 row\)", term.expect("(1 row)"))
        term.expect("kql> ")
        term.send("VMConnec\t")          # Tab completes the table name
        term.expect("VMConnection")
        term.send(" | where LinksF\t")   # and a column of that table
        term.expect("LinksFailed")
        term.send(" > 5 | project Computer;;\n")
        assert "cli-6" in term.expect("(1 row)")
        term.expect("kql> ")
        term.send("print v = nope;;\n")
        shown = term.expect("kql> ")
        assert "unknown column or variable 'nope'" in shown and "^^^^" in shown
        term.send("exit\n")              # used to be a KQL error
        assert term.close() == 0
    finally:
        term.stop()
    history = term.history.read_text()
    assert "help" in history and "| summarize total = sum(LinksFailed)" in history and "exit" in history


def test_shell_quits_on_ctrl_d_and_quit(tmp_path):
    for ending in ("\x04", "quit\n"):
        term = Terminal([sys.executable, "-m", "netatlas", "shell", "--memory"], tmp_path)
        try:
            assert "in-memory workspace" in term.expect("kql> ")
            term.send(ending)
            assert term.close() == 0
        finally:
            term.stop()


def test_shell_runs_when_the_history_cannot_be_written(tmp_path):
    (tmp_path / "history").mkdir()    # a directory where the history file should be
    term = Terminal([sys.executable, "-m", "netatlas", "shell", "--memory"], tmp_path)
    try:
        term.expect("kql> ")
        term.send("print a = 1;;\n")
        term.expect("(1 row)")
        term.send("exit\n")
        assert term.close() == 0 and "Traceback" not in term.rest()
    finally:
        term.stop()


def test_read_statement_ends_at_empty_line_or_double_semicolon():
    from netatlas.shell import read_statement
    lines = iter(["", "a", "| b", "", "c;;", ";;", "d", "e ;;  "])
    read = lambda prompt: next(lines)   # noqa: E731
    assert read_statement(read) == "a\n| b"
    assert read_statement(read) == "c"
    assert read_statement(read) == "d\ne "

    def eof(prompt):
        raise EOFError
    assert read_statement(eof) is None


def test_read_statement_returns_a_command_at_once_but_only_on_a_first_line():
    from netatlas.shell import COMMANDS, read_statement
    lines = iter(["exit", "help VMConnection", "QUIT;;", "range x from 1 to 2 step 1", "exit", ""])
    read = lambda prompt: next(lines)   # noqa: E731
    assert [read_statement(read, COMMANDS) for _ in range(4)] == [
        "exit", "help VMConnection", "QUIT", "range x from 1 to 2 step 1\nexit"]


def test_repl_help_and_exit_with_a_real_workspace(capsys):
    from netatlas.cli import run_query
    from netatlas.shell import Names, Shell, repl
    from argparse import Namespace
    args = Namespace(format="csv", timeout=10.0, max_rows=100)
    lines = iter(["help", "print n = 6 * 7;;", "help NoSuchTable", "exit", "print never = 1;;"])
    with netatlas.connect() as ws:
        shell = Shell(Names.of(ws.catalogue), lambda text: run_query(ws, text, args))
        assert repl(shell, lambda prompt: next(lines)) == 0
    out = capsys.readouterr().out
    assert "exit" in out and "ThreatIntelligenceIndicator" in out
    assert "n\n42\n" in out and "no table 'NoSuchTable'" in out and "never" not in out


# ---------------------------------------------------------------- completion

@pytest.fixture(scope="module")
def names():
    from netatlas.catalogue import Catalogue
    from netatlas.shell import Names
    return Names.of(Catalogue.load())


@pytest.mark.parametrize("text,before,expected,absent", [
    ("VMComp", "", ["VMComputer", "VMComputerTags_CL"], []),                      # tables at the start
    ("vmcomp", "", ["VMComputer", "VMComputerTags_CL"], []),                      # any case
    ("he", "", ["help"], []),                                                     # shell commands too
    ("ra", "", ["range"], []),                                                    # sources
    ("su", "VMConnection | ", ["summarize"], []),                                 # operators after a pipe
    ("project-a", "VMConnection\n| where x > 1 |", ["project-away"], []),
    ("Exe", "VMProcess | where ", ["ExecutableName", "ExecutablePath"], []),       # columns of the table
    ("Remote", "VMConnection\n| where LinksFailed > 0\n| project ", ["RemoteIp", "RemoteCountry"], []),
    ("Exe", "VMConnection | where ", [], ["ExecutableName"]),                     # not another table's
    ("Exe", "range x from 1 to 2 step 1 | extend y = ", ["ExecutableName"], []),  # no table: every column
    ("strc", "VMConnection | extend s = ", ["strcat("], []),                     # functions
    ("dcou", "VMConnection | summarize ", ["dcount("], []),                      # aggregates
    ("VMPro", "VMConnection | join kind=inner (", ["VMProcess"], []),            # tables after join
    ("VMPro", "VMConnection | union ", ["VMProcess"], []),
    ("VMPro", "union withsource=T VMConnection, ", ["VMProcess"], []),
    ("Mach", "VMConnection | join (VMProcess) on ", ["Machine"], []),          # past the table: columns
    ("VMBou", "let a = 1;\n", ["VMBoundPort"], []),                              # a new statement
    ("Li", "let a = 1;\nVMBoundPort | where ", ["LinksLive"], ["LinksFailed"]),   # its table's columns
    ("VMPro", "let p = ", ["VMProcess"], []),                                    # tables in expressions
])
def test_complete(names, text, before, expected, absent):
    from netatlas.shell import complete
    got = complete(text, before, names)
    assert all(e in got for e in expected), got
    assert not any(a in got for a in absent), got
    assert all(g.lower().startswith(text.lower()) for g in got), got


@pytest.mark.parametrize("argv", [["query", "--help"], ["up", "--help"], ["shell", "--help"], ["version", "--help"]])
def test_every_subcommand_has_help(argv):
    out = ok(run(*argv))
    assert "usage: netatlas" in out


# ---------------------------------------------------------------- answers the server rarely gives

@pytest.mark.parametrize("status,body,expected", [
    (200, b'{"not": "a result"}', "answered something that is not a query result"),
    (401, b'{"error": {"code": "AUTH_INVALID", "message": "the key is not valid"}}', "refused the local token of"),
    (502, b"<html>bad gateway</html>", "answered 502"),
    (400, b'{"error": {"code": "BAD_REQUEST", "message": "no"}}', "answered 400 BAD_REQUEST: no"),
])
def test_remote_answers_that_are_not_results_are_clear_errors(tmp_path, status, body, expected):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from netatlas import discovery, keys
    from netatlas.errors import NetatlasError
    from netatlas.remote import RemoteWorkspace

    class Answer(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        published = discovery.Published(url=f"http://127.0.0.1:{httpd.server_address[1]}", pid=os.getpid(),
                                        started="", path=tmp_path / "server.json")
        ws = RemoteWorkspace(tmp_path, published, "local_test")
        with pytest.raises(NetatlasError) as e:
            ws.query("print 1", timeout=5)
        assert expected in str(e.value)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_result_from_json_is_the_inverse_of_to_json():
    from netatlas.result import Result
    q = (PRINT_ALL + ", ms=datetime(2024-01-01 10:00:00.125), g=guid(74be27de-1e4e-49d9-b579-fe0b331d3642), "
         "dec=todecimal(1.5), nan=real(nan), inf=real(-inf), i=toint(3), neg=time(-1.00:00:01)")
    with netatlas.connect() as ws:
        res = ws.query(q)
    again = Result.from_json(json.loads(json.dumps(res.to_json())))
    assert again.to_json() == res.to_json()
    assert [repr(v) for v in again.rows[0]] == [repr(v) for v in res.rows[0]]


@pytest.mark.parametrize("query", ["VMConnection\n| where Computr == 'x'", "print x = 1 +", "range x from 1 to 3 step 1 | wher x > 1",
                                   "print a = strcat('\\n', b)\n\n| take 1"])
def test_kql_error_from_json_prints_as_the_original(query):
    from netatlas.errors import KqlError
    with netatlas.connect() as ws, pytest.raises(KqlError) as e:
        ws.query(query)
    info = json.loads(json.dumps(e.value.to_json()))
    assert str(KqlError.from_json(info, query)) == str(e.value)
