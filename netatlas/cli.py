"""The command line: ``netatlas <command> ...``.

Every subcommand is one row of ``COMMANDS`` (name, help, a function that declares its
arguments, a function that runs it); every output format is one entry of ``FORMATS``.

Exit codes: 0 success, 1 the workspace could not be opened or the query failed while running,
2 a mistake in the query text or on the command line (a --data that is not a workspace
included), 130 interrupted.

``query`` and ``shell`` open the workspace directory themselves; while a workspace server
holds it they ask that server instead (``remote.py``), and print the same.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from typing import TYPE_CHECKING

from . import __version__
from . import up
from .agent.config import agent_arguments, cmd_agent
from .demo.command import cmd_demo, demo_arguments
from .errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, KqlError, NetatlasError, UsageError
from .shell import describe
from .limits import DEFAULT_MAX_ROWS, DEFAULT_TIMEOUT

if TYPE_CHECKING:       # the engine is imported where a command uses it: `netatlas agent` never does
    from .remote import RemoteWorkspace
    from .result import Result
    from .workspace import Workspace

UP_DATA = "netatlas-data"
NUMERIC = {"long", "int", "real", "decimal"}


# ---------------------------------------------------------------- output formats

def cell(value) -> str:
    """One JSON-ready value as table/CSV text: strings as they are, null empty, the rest as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def _count(n: int) -> str:
    return f"({n} row{'' if n == 1 else 's'})"


def format_table(res: Result) -> str:
    """Aligned columns under a header line and a rule; numbers right-aligned; then the row count.
    A query of several tabular statements: each table under its name, a blank line between."""
    if not res.more:
        return _format_one(res)
    from .result import table_name
    return "\n".join(f"{table_name(i)}\n{_format_one(t)}" for i, t in enumerate(res.tables()))


def _format_one(res: Result) -> str:
    body = [[_escape(cell(v)) for v in row] for row in res.json_rows()]
    header = list(res.columns)
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(header)]
    right = [t in NUMERIC for t in res.types]

    def line(cells: list[str]) -> str:
        parts = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)]
        return "  ".join(parts).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in body]
    out.append(_count(len(body)))
    return "\n".join(out) + "\n"


def format_json(res: Result) -> str:
    """One line of JSON in the shape of ``Result.to_json()``: tables, render, statistics."""
    return json.dumps(res.to_json(), ensure_ascii=False) + "\n"


def format_csv(res: Result) -> str:
    """A header row of column names, then one row per result row (dynamic values as JSON); the
    first table of a query of several."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(res.columns)
    writer.writerows([cell(v) for v in row] for row in res.json_rows())
    return buf.getvalue()


FORMATS: dict[str, Callable[[Result], str]] = {
    "table": format_table,
    "json": format_json,
    "csv": format_csv,
}


# ---------------------------------------------------------------- shared helpers

def open_workspace(path: str | None, geoip: str | None = None, store: str | None = None) -> "Workspace":
    """``workspace.open_workspace`` (imported when a command opens one: the CLI starts without DuckDB)."""
    from .workspace import open_workspace as open_it
    return open_it(path, geoip, store)


WORKSPACE_MARKS = ("netatlas.duckdb", "workspace.json")   # a directory holding either is a workspace


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    p = p.add_mutually_exclusive_group()
    p.add_argument("--data", metavar="DIR", default=UP_DATA,
                   help=f"the workspace directory, made by `netatlas up` or `workspace serve` (default: "
                   f"./{UP_DATA}); while its server runs, the query goes through that server")
    p.add_argument("--memory", action="store_true",
                   help="use a new, empty in-memory workspace instead (every table present, no rows): "
                   "for trying KQL with print, range, datatable")


def require_workspace(data: Path) -> None:
    """A usage error unless ``data`` is a workspace directory: a query never answers from a new,
    empty workspace made by a mistyped path."""
    if data.is_dir() and any((data / mark).exists() for mark in WORKSPACE_MARKS):
        return
    what = "does not exist" if not data.exists() else "is not a directory" if not data.is_dir() else \
        f"is not a netatlas workspace (it holds neither {' nor '.join(WORKSPACE_MARKS)})"
    raise UsageError(f"{data} {what}; create a workspace there with `netatlas up --data {data}` or "
                     f"`netatlas workspace serve --data {data}`, or give --data the directory of one")


def open_for_query(args: argparse.Namespace) -> Workspace | RemoteWorkspace:
    """The workspace ``query`` and ``shell`` read: in memory (--memory), the directory itself, or,
    when a server holds the directory, that server (``remote.through_server``)."""
    from .workspace import WorkspaceBusyError
    if args.memory:
        return open_workspace(None)
    data = Path(args.data)
    require_workspace(data)
    try:
        return open_workspace(data)
    except WorkspaceBusyError:
        from .remote import through_server
        return through_server(data)


def parse_params(items: list[str] | None) -> dict[str, str]:
    """``name=value`` pairs; values stay text and are converted to the type the query declares."""
    params = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--param expects name=value, got {item!r}")
        params[name.strip()] = value
    return params


def run_query(ws: Workspace | RemoteWorkspace, text: str, args: argparse.Namespace, params: dict | None = None) -> None:
    """Run one query and print it in the chosen format; KQL and runtime errors propagate."""
    res = ws.query(text, params=params, timeout=args.timeout, max_rows=args.max_rows)
    sys.stdout.write(FORMATS[args.format](res))
    sys.stdout.flush()
    if res.truncated and getattr(res, "truncated_by", None) == "max_result_bytes":
        print(f"warning: {res.truncation}", file=sys.stderr)
    elif res.truncated:
        print(f"warning: result truncated to the first {len(res.rows)} rows (raise --max-rows)",
              file=sys.stderr)


def _read_stdin() -> str:
    return sys.stdin.read() if sys.stdin is not None else ""


def _stdin_is_tty() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def add_output_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=list(FORMATS), default="table",
                   help="how to print the result (default: table)")
    p.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS, metavar="N",
                   help=f"keep at most N result rows and warn when more exist (default: {DEFAULT_MAX_ROWS})")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"stop a query running longer than this (default: {DEFAULT_TIMEOUT:g})")


# ---------------------------------------------------------------- netatlas query

def query_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kql", nargs="?", help="the query; omit it to use -f or standard input")
    p.add_argument("-f", "--file", metavar="FILE", help="read the query from FILE ('-' for standard input)")
    add_data_arguments(p)
    p.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="a value for `declare query_parameters(NAME:type)`; repeatable")
    add_output_arguments(p)


def query_text(args: argparse.Namespace) -> str:
    if args.kql is not None and args.file is not None:
        raise UsageError("give the query either as an argument or with -f, not both")
    if args.kql is not None:
        text = args.kql
    elif args.file not in (None, "-"):
        try:
            text = Path(args.file).read_text(encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot read {args.file}: {e.strerror or e}") from None
    else:
        if _stdin_is_tty():
            print("reading KQL from standard input; end it with Ctrl-D", file=sys.stderr)
        text = _read_stdin()
    if not text.strip():
        raise UsageError("no query given (pass it as an argument, with -f FILE, or on standard input)")
    return text


def cmd_query(args: argparse.Namespace) -> int:
    text = query_text(args)
    params = parse_params(args.param)
    with open_for_query(args) as ws:
        run_query(ws, text, args, params)
    return EXIT_OK


# ---------------------------------------------------------------- netatlas shell

def shell_arguments(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p)
    add_output_arguments(p)


def where_it_is(args: argparse.Namespace, ws: Workspace | RemoteWorkspace) -> str:
    """The banner's words for the workspace the shell reads."""
    if args.memory:
        return "a new, empty in-memory workspace (--memory)"
    from .remote import RemoteWorkspace
    path = Path(args.data).resolve()
    if isinstance(ws, RemoteWorkspace):
        return f"workspace {path}, through its server at {ws.url} (pid {ws.published.pid}), which holds it"
    return f"workspace {path}, opened directly"


def cmd_shell(args: argparse.Namespace) -> int:
    from .shell import interact
    if not _stdin_is_tty():
        text = _read_stdin().rstrip()
        text = text[:-2] if text.endswith(";;") else text
        if not text.strip():
            print("netatlas shell: no query on standard input; run it in a terminal for the KQL prompt",
                  file=sys.stderr)
            return EXIT_OK
        with open_for_query(args) as ws:
            run_query(ws, text, args)
        return EXIT_OK
    with open_for_query(args) as ws:
        return interact(ws.catalogue, lambda text: run_query(ws, text, args), where_it_is(args, ws))


# ---------------------------------------------------------------- netatlas version

def version_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--all", action="store_true", help="also print the versions of DuckDB, sqlglot and Python")


def version_text(full: bool) -> str:
    if not full:
        return f"netatlas {__version__}"
    import sqlglot
    from .store.duckdb import VERSION as duckdb_version
    return (f"netatlas {__version__}\nduckdb {duckdb_version}\nsqlglot {sqlglot.__version__}\n"
            f"python {sys.version.split()[0]}")


def cmd_version(args: argparse.Namespace) -> int:
    print(version_text(args.all))
    return EXIT_OK


# ---------------------------------------------------------------- netatlas workspace serve

def workspace_arguments(p: argparse.ArgumentParser) -> None:
    from .server.install import install_arguments
    from .server.settings import CONFIG_ENV, SETTINGS
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    s = sub.add_parser("serve", help="run the workspace server: ingestion, query and retention API",
                       description="Run the workspace server (HTTP API) over the workspace in DIR. On "
                       "first start it creates the workspace id, an ingest key and a query key in "
                       "DIR/workspace.json and prints them. Every option can also be set with its "
                       "environment variable or in the --config file (flag > environment > file > default).")
    i = sub.add_parser("install", help="write the server's configuration file and systemd unit, and create "
                       "the workspace", description="Write the server's configuration file and a systemd unit "
                       "running `netatlas workspace serve --config FILE`, and create the workspace (id and keys) "
                       "in DIR. The options are those of `workspace serve`.")
    for a in (s, i):
        a.add_argument("--config", metavar="FILE", default=None,
                       help=f"a TOML file of settings, one key per option below (max_rows = 1000 for "
                       f"--max-rows) (env {CONFIG_ENV}; default: none)")
        for setting in SETTINGS:
            a.add_argument(setting.flag, dest=setting.name, default=None, metavar=setting.value_name,
                           help=f"{setting.help} (default: {setting.default or 'none'}; env {setting.env})")
    install_arguments(i)
    from .backup import backup_arguments
    backup_arguments(sub)


def cmd_workspace(args: argparse.Namespace) -> int:
    from . import backup
    actions = {"serve": cmd_serve, "install": cmd_install_workspace, "backup": backup.cmd_backup,
               "restore": backup.cmd_restore}
    return actions[args.action](args)


def server_settings(args: argparse.Namespace):
    """The server's settings from flags > environment > --config file > defaults."""
    from .server import SETTINGS, Settings
    try:
        return Settings.from_env(file=args.config, **{s.name: getattr(args, s.name) for s in SETTINGS})
    except ValueError as e:
        raise UsageError(str(e)) from None


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve
    settings = server_settings(args)
    return serve(settings.data, settings,
                 open_workspace=lambda d: open_workspace(d, settings.geoip_db, settings.store))


def cmd_install_workspace(args: argparse.Namespace) -> int:
    from .server.install import cmd_install
    return cmd_install(args, server_settings(args))


# ---------------------------------------------------------------- netatlas keys

def keys_arguments(p: argparse.ArgumentParser) -> None:
    from .keys import ROLES
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, help in (("list", "print the workspace id and every key (ingest secrets; query and admin "
                                  "keys are stored hashed: their prefix)"),
                         ("create", "add a key with the given role and print it (its secret: shown only now)"),
                         ("revoke", "remove a key: requests made with it are refused from now on"),
                         ("rotate", "give a key a new secret (same id and role), printed only now")):
        a = sub.add_parser(action, help=help, description=help)
        a.add_argument("--data", metavar="DIR", default=UP_DATA,
                       help=f"the workspace directory (default: ./{UP_DATA})")
        if action in ("revoke", "rotate"):
            a.add_argument("id", metavar="ID", help="the key's id (k_…, as `keys list` prints it)")
        a.add_argument("--format", choices=list(KEY_FORMATS), default="table",
                       help="how to print (default: table; secret: the secrets alone, one a line, for a "
                       "script: QUERY_KEY=$(netatlas keys create --role query --format secret))")
        if action in ("list", "create"):
            a.add_argument("--role", choices=ROLES, required=action == "create",
                           help="ingest: signs agents' batches; query: reads through the query API; admin: "
                           "threat intel import, retention changes, backup, and queries"
                           + ("" if action == "create" else " (default: every key)"))


def cmd_keys(args: argparse.Namespace) -> int:
    from . import keys
    if args.action != "create" and not keys.path_of(args.data).is_file():
        raise NetatlasError(f"{args.data!r} is not a workspace (no {keys.WORKSPACE_FILE}); "
                            "`netatlas up` or `netatlas workspace serve --data DIR` creates one")
    try:
        if args.action == "create":
            shown = [keys.create_key(args.data, args.role)]
        elif args.action == "revoke":
            revoked = keys.revoke_key(args.data, args.id)
            sys.stdout.write(f"revoked {revoked.role} key {revoked.id}\n")
            return EXIT_OK
        elif args.action == "rotate":
            shown = [keys.rotate_key(args.data, args.id)]
        else:
            shown = [k for k in keys.list_keys(args.data) if args.role in (None, k.role)]
        ident = keys.load(args.data)
    except KeyError as e:
        raise NetatlasError(f"{args.data}: {e.args[0]}") from None
    except (OSError, ValueError) as e:
        raise NetatlasError(f"cannot read or write the keys in {args.data!r}: {e}") from None
    if args.format == "secret" and any(not k.secret for k in shown):
        raise NetatlasError("query and admin keys are stored hashed: their secret is shown only when "
                            "created or rotated (`netatlas keys create --role query --format secret`)")
    sys.stdout.write(KEY_FORMATS[args.format](ident, shown))
    return EXIT_OK


def _shown_secret(k) -> str:
    return k.secret or f"{k.prefix}… (hashed)"


def _keys_table(ident, shown) -> str:
    lines = [f"workspace {ident.workspace_id}", f"{'id':<11}  {'role':<6}  {'created':<20}  secret"]
    lines += [f"{k.id:<11}  {k.role:<6}  {k.created:<20}  {_shown_secret(k)}" for k in shown]
    return "\n".join(lines) + "\n"


def _keys_json(ident, shown) -> str:
    return json.dumps({"workspace_id": ident.workspace_id,
                       "keys": [{"id": k.id, "role": k.role, "created": k.created,
                                 **({"secret": k.secret} if k.secret else {"prefix": k.prefix})}
                                for k in shown]}, indent=2) + "\n"


KEY_FORMATS = {
    "table": _keys_table,
    "json": _keys_json,
    "secret": lambda ident, shown: "".join(f"{k.secret}\n" for k in shown),
}


# ---------------------------------------------------------------- netatlas threatintel

def threatintel_arguments(p: argparse.ArgumentParser) -> None:
    from .threatintel import PARSERS, THREAT_TYPES
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = sub.add_parser("import", help="load a feed of malicious addresses into ThreatIntelligenceIndicator",
                       description="Load a threat-intelligence feed (STIX 2.1 bundle, CSV blocklist, or a list of "
                       "addresses and CIDR ranges) into ThreatIntelligenceIndicator, replacing the indicators "
                       "imported before under the same --source. Connections ingested from then on whose "
                       "remote address matches an active indicator get VMConnection's malicious-IP columns. "
                       "With --server, the running workspace server imports it (a query key); otherwise the "
                       "workspace directory is opened directly.")
    a.add_argument("file", metavar="FILE", help="the feed file ('-' for standard input)")
    a.add_argument("--format", choices=list(PARSERS), default=None, help="the feed's format (default: guessed)")
    a.add_argument("--source", default=None, help="the feed's name (default: the file name)")
    a.add_argument("--threat-type", choices=THREAT_TYPES, default=None,
                   help="the threat type of every indicator (default: from the feed's own words)")
    a.add_argument("--data", metavar="DIR", default=UP_DATA, help=f"the workspace directory (default: ./{UP_DATA})")
    a.add_argument("--server", metavar="URL", default=None,
                   help="a running workspace server to import through, e.g. http://127.0.0.1:8080")
    a.add_argument("--key", default=os.environ.get("NETATLAS_QUERY_KEY"),
                   help="a query key of that server (default: $NETATLAS_QUERY_KEY)")
    a.add_argument("--format-output", dest="output", choices=["table", "json"], default="table",
                   help="how to print the report (default: table)")


def cmd_threatintel(args: argparse.Namespace) -> int:
    from . import threatintel as ti
    data = sys.stdin.buffer.read() if args.file == "-" else None
    if data is None:
        try:
            data = Path(args.file).read_bytes()
        except OSError as e:
            raise NetatlasError(f"cannot read {args.file}: {e.strerror}") from None
    source = args.source or (Path(args.file).name if args.file != "-" else "stdin")
    if args.server:
        report = _import_through_server(args, data, source)
    else:
        try:
            indicators, report = ti.parse(data, args.format, threat_type=args.threat_type, source=source)
        except ti.FeedError as e:
            raise NetatlasError(f"{args.file}: {e}") from None
        with open_workspace(args.data) as ws:
            report["stored"] = ws.import_indicators(indicators, source)
    if args.output == "json":
        print(json.dumps(report, indent=2))
    else:
        skipped = ", ".join(f"{n} {why}" for why, n in report["skipped"].items()) or "none"
        print(f"{source}: {report['stored']} indicators stored ({report['format']}); skipped: {skipped}")
    return EXIT_OK


def _import_through_server(args: argparse.Namespace, data: bytes, source: str) -> dict:
    import urllib.error
    import urllib.parse
    import urllib.request
    if not args.key:
        raise UsageError("--server needs --key (a query key) or NETATLAS_QUERY_KEY")
    query = {"source": source} | ({"format": args.format} if args.format else {}) | \
        ({"threat_type": args.threat_type} if args.threat_type else {})
    url = args.server.rstrip("/") + "/api/threatintel/import?" + urllib.parse.urlencode(query)
    req = urllib.request.Request(url, data=data, method="POST", headers={
        "Authorization": f"Bearer {args.key}", "Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:      # noqa: S310 (the operator's server)
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            message = json.loads(e.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = e.reason
        raise NetatlasError(f"{args.server}: {e.code}: {message}") from None
    except OSError as e:
        raise NetatlasError(f"cannot reach {args.server}: {e}") from None


# ---------------------------------------------------------------- netatlas import (importer.py)

def _import_arguments(p: argparse.ArgumentParser) -> None:
    from .importer import import_arguments
    import_arguments(p)


def _cmd_import(args: argparse.Namespace) -> int:
    from .importer import cmd_import
    return cmd_import(args)


# ---------------------------------------------------------------- netatlas waves (waves.py)

def waves_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="DIR", default=UP_DATA, help=f"the workspace directory (default: ./{UP_DATA})")
    p.add_argument("--max-wave-size", type=int, default=None, metavar="N", help="at most N machines per wave")
    p.add_argument("--weight", choices=["bytes", "connections"], default="bytes",
                   help="what a dependency weighs: BytesSent+BytesReceived or LinksEstablished (default: bytes)")
    p.add_argument("--pin", action="append", default=[], metavar="MACHINE=WAVE",
                   help="put a machine (its Machine id or Computer name) in a wave, numbered from 1; repeatable")
    p.add_argument("--exclude", action="append", default=[], metavar="PROCESS,...",
                   help="process names whose connections do not count (as caller or listener); repeatable")
    p.add_argument("--range", default="7d", metavar="TIMESPAN", help="the connections of the last TIMESPAN (default: 7d)")
    p.add_argument("--to", default=None, metavar="DATETIME",
                   help="the end of the range, ISO 8601 (e.g. 2026-11-25T00:00:00Z; default: now)")
    p.add_argument("--format", choices=["text", "csv", "json"], default="text", help="the report's format (default: text)")
    p.add_argument("--output", metavar="FILE", default=None, help="write the report to FILE (default: standard output)")


def cmd_waves(args: argparse.Namespace) -> int:
    from datetime import timedelta
    from .kql.literals import parse_timespan
    from .waves import FORMATS as WAVE_FORMATS, Options, WavesError, plan
    ticks = parse_timespan(args.range)
    if ticks is None or ticks <= 0:
        raise UsageError(f"--range expects a timespan such as 7d or 12h, got {args.range!r}")
    pins = {}
    for item in args.pin:
        name, sep, wave = item.rpartition("=")
        if not sep or not name or not wave.strip().isdigit():
            raise UsageError(f"--pin expects MACHINE=WAVE, got {item!r}")
        pins[name] = int(wave)
    exclude = frozenset(p.strip() for item in args.exclude for p in item.split(",") if p.strip())
    end = None
    if args.to is not None:
        from .server.timespan import TimespanError, parse_datetime
        try:
            end = parse_datetime(args.to)
        except TimespanError:
            raise UsageError(f"--to expects an ISO 8601 time such as 2026-11-25T00:00:00Z, got {args.to!r}") from None
    data = Path(args.data)
    require_workspace(data)
    options = Options(max_wave_size=args.max_wave_size, weight=args.weight, pins=pins, exclude=exclude,
                      range=timedelta(microseconds=ticks / 10), now=end)
    from .workspace import WorkspaceBusyError
    try:
        ws = open_workspace(data)
    except WorkspaceBusyError:          # held by its server (`netatlas up`): ask the server
        from .remote import through_server
        ws = through_server(data)
    with ws:
        try:
            report = plan(ws, options)
        except WavesError as e:
            raise UsageError(str(e)) from None
    text = WAVE_FORMATS[args.format](report)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_OK


# ---------------------------------------------------------------- the command table

@dataclass(frozen=True)
class Command:
    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: tuple[Command, ...] = (
    Command("up", "start the workspace server on ./netatlas-data (with the demo datacenter the first time)",
            up.up_arguments, up.cmd_up),
    Command("shell", "an interactive KQL prompt on a workspace directory (default ./netatlas-data)",
            shell_arguments, cmd_shell),
    Command("query", "run one KQL query and print its result", query_arguments, cmd_query),
    Command("version", "print the version", version_arguments, cmd_version),
    Command("demo", "fill a workspace with a simulated datacenter (machines, processes, connections)",
            demo_arguments, cmd_demo),
    Command("workspace", "run the workspace server (`workspace serve --data DIR`), install it as a systemd "
            "service (`workspace install`), back it up and restore it", workspace_arguments, cmd_workspace),
    Command("keys", "list, create, revoke or rotate the workspace's ingest, query and admin keys", keys_arguments, cmd_keys),
    Command("threatintel", "import threat-intelligence feeds (STIX, CSV, address lists) that flag malicious "
            "remote addresses", threatintel_arguments, cmd_threatintel),
    Command("import", "import a CSV or JSON export of Azure Log Analytics tables (VMConnection, VMComputer, "
            "VMProcess, VMBoundPort...)", _import_arguments, _cmd_import),
    Command("agent", "the agent: `agent run` ships this host's processes and connections to a workspace, "
            "`agent install` writes its configuration and systemd unit", agent_arguments, cmd_agent),
    Command("waves", "migration waves: groups of machines that talk together, in the order to move them",
            waves_arguments, cmd_waves),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netatlas", description="netatlas: a self-hosted service map with a KQL engine on DuckDB.",
        epilog="exit codes: 0 ok, 1 workspace or run-time failure, 2 KQL or usage error, 130 interrupted")
    parser.add_argument("--version", action="version", version=f"netatlas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for c in COMMANDS:
        p = sub.add_parser(c.name, help=c.help, description=c.help)
        c.arguments(p)
        p.set_defaults(run=c.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.run(args)
    except UsageError as e:
        print(f"netatlas {args.command}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KqlError as e:
        print(str(e), file=sys.stderr)
        return EXIT_USAGE
    except NetatlasError as e:
        print(describe(e), file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (e.g. `| head`): stop quietly, without a second error at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
