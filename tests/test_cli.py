"""The `netatlas` command, run as a subprocess (`python -m netatlas`) the way a person runs it."""
from __future__ import annotations

import csv
import io
import json
import os
import pty
import select
import subprocess
import sys
import time
import tomllib
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
    assert ok(run("query", PRINT_ALL)) == (
        's  n    r  b     d                     t           dyn            nul\n'
        '-  -  ---  ----  --------------------  ----------  -------------  ---\n'
        'x  1  2.5  true  2024-01-01T10:00:00Z  1.02:03:04  {"k": [1, 2]}\n'
        '(1 row)\n')


def test_table_format_right_aligns_numbers_and_counts_rows():
    out = ok(run("query", "range x from 8 to 11 step 1 | extend s = strcat('v', x)"))
    assert out.splitlines() == [" x  s", "--  ---", " 8  v8", " 9  v9", "10  v10", "11  v11", "(4 rows)"]


def test_table_format_escapes_line_breaks_in_cells():
    out = ok(run("query", 'print s=strcat("a", "\\n", "b")'))
    assert out.splitlines()[2] == "a\\nb"


def test_json_format_is_the_result_json_shape():
    doc = json.loads(ok(run("query", "--format", "json", PRINT_ALL)))
    table = doc["tables"][0]
    assert [(c["name"], c["type"]) for c in table["columns"]] == [
        ("s", "string"), ("n", "long"), ("r", "real"), ("b", "bool"), ("d", "datetime"),
        ("t", "timespan"), ("dyn", "dynamic"), ("nul", "long")]
    assert table["rows"] == [["x", 1, 2.5, True, "2024-01-01T10:00:00Z", "1.02:03:04", {"k": [1, 2]}, None]]
    assert doc["statistics"]["rows"] == 1 and doc["statistics"]["truncated"] is False


def test_json_format_carries_render():
    doc = json.loads(ok(run("query", "--format", "json", "range x from 1 to 3 step 1 | render timechart")))
    assert doc["render"]["visualization"] == "timechart"


def test_csv_format_quotes_and_writes_dynamic_as_json():
    out = ok(run("query", "--format", "csv", 'print s="a,\\"b\\"", dyn=dynamic({"k":[1,2]}), nul=long(null), b=false'))
    assert list(csv.reader(io.StringIO(out))) == [["s", "dyn", "nul", "b"], ['a,"b"', '{"k": [1, 2]}', "", "false"]]


# ---------------------------------------------------------------- netatlas query: where the query comes from

def test_query_from_file(tmp_path):
    f = tmp_path / "q.kql"
    f.write_text("// a comment\nrange x from 1 to 3 step 1\n| summarize total = sum(x)\n")
    assert ok(run("query", "--format", "csv", "-f", str(f))) == "total\n6\n"


def test_query_from_stdin():
    assert ok(run("query", "--format", "csv", stdin="print v = 40 + 2\n")) == "v\n42\n"


def test_query_file_missing_is_a_usage_error(tmp_path):
    p = run("query", "-f", str(tmp_path / "nope.kql"))
    assert p.returncode == 2 and "cannot read" in p.stderr and "Traceback" not in p.stderr


def test_empty_query_is_a_usage_error():
    p = run("query", stdin="  \n")
    assert p.returncode == 2 and "no query given" in p.stderr


# ---------------------------------------------------------------- netatlas query: workspace, params, limits

def test_data_directory_is_created_and_read(tmp_path):
    data = tmp_path / "ws"
    assert ok(run("query", "--data", str(data), "--format", "csv", "VMConnection | count")) == "Count\n0\n"
    assert (data / "netatlas.duckdb").is_file()
    with netatlas.connect(data) as ws:
        ws.ingest("VMConnection", [{"TimeGenerated": "2024-01-01T00:00:00Z", "Computer": "web-1"}])
    out = ok(run("query", "--data", str(data), "--format", "csv", "VMConnection | project Computer"))
    assert out == "Computer\nweb-1\n"


def test_kql_error_exits_2_with_caret_and_hint_and_no_traceback():
    p = run("query", "range x from 1 to 3 step 1 | wher x > 1")
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
    out = ok(run("query", "--format", "csv", "--param", "n=21", "--param", "who=a=b",
                 "--param", "since=2024-05-01T00:00:00Z", q))
    assert out == "twice,who,since\n42,a=b,2024-05-01T00:00:00Z\n"


def test_param_without_equals_is_a_usage_error():
    p = run("query", "--param", "n", "print 1")
    assert p.returncode == 2 and "name=value" in p.stderr


def test_param_of_the_wrong_type_is_a_kql_error():
    p = run("query", "--param", "n=abc", "declare query_parameters(n:long); print n")
    assert p.returncode == 2 and "^" in p.stderr and "Traceback" not in p.stderr


def test_truncated_result_warns():
    p = run("query", "--format", "csv", "--max-rows", "2", "range x from 1 to 5 step 1")
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


# ---------------------------------------------------------------- netatlas up

def test_shell_without_a_terminal_runs_stdin_as_one_query(tmp_path):
    out = ok(run("shell", "--format", "csv", stdin="range x from 1 to 2 step 1\n| count\n;;\n", cwd=tmp_path))
    assert out == "Count\n2\n"
    assert (tmp_path / "netatlas-data" / "netatlas.duckdb").is_file()


def test_shell_with_empty_stdin_exits_0_with_a_message(tmp_path):
    p = subprocess.run([sys.executable, "-m", "netatlas", "shell"], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, cwd=tmp_path, env=env(), timeout=120)
    assert p.returncode == 0 and p.stdout == "" and "no query" in p.stderr


def test_shell_without_a_terminal_reports_kql_errors(tmp_path):
    p = run("shell", stdin="print x = y\n", cwd=tmp_path)
    assert p.returncode == 2 and "^" in p.stderr and "Traceback" not in p.stderr


class Terminal:
    """A child process on a pseudo-terminal, read until an expected text shows up."""

    def __init__(self, args: list[str], cwd: Path):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env(),
                                     close_fds=True)
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
        try:
            return self.proc.wait(timeout=60)
        finally:
            os.close(self.master)


def test_shell_in_a_terminal_is_an_interactive_prompt(tmp_path):
    term = Terminal([sys.executable, "-m", "netatlas", "shell"], tmp_path)
    try:
        assert "9 tables: VMConnection" in term.expect("kql> ")
        term.send("range x from 1 to 3 step 1\n")
        term.expect("...> ")
        term.send("| summarize total = sum(x)\n\n")
        assert "total" in term.expect("(1 row)")
        term.expect("kql> ")
        term.send("print v = nope;;\n")
        shown = term.expect("kql> ")
        assert "unknown column or variable 'nope'" in shown and "^^^^" in shown
        term.send("\x04")   # Ctrl-D
        assert term.close() == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
    assert (tmp_path / "netatlas-data" / "netatlas.duckdb").is_file()


def test_read_statement_ends_at_empty_line_or_double_semicolon():
    from netatlas.cli import read_statement
    lines = iter(["", "a", "| b", "", "c;;", ";;", "d", "e ;;  "])
    read = lambda prompt: next(lines)   # noqa: E731
    assert read_statement(read) == "a\n| b"
    assert read_statement(read) == "c"
    assert read_statement(read) == "d\ne "

    def eof(prompt):
        raise EOFError
    assert read_statement(eof) is None


@pytest.mark.parametrize("argv", [["query", "--help"], ["up", "--help"], ["shell", "--help"], ["version", "--help"]])
def test_every_subcommand_has_help(argv):
    out = ok(run(*argv))
    assert "usage: netatlas" in out
