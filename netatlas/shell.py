"""``netatlas shell``'s interactive prompt: read a statement, run it, print it, go on.

A statement is KQL over one or more lines, ended by an empty line or by ``;;``; a line that
starts with one of ``COMMANDS`` (``help``, ``exit``, ``quit``) is that command. Line editing,
history (``~/.netatlas_history`` or ``$NETATLAS_HISTORY``) and Tab completion come from
readline; ``complete`` is the completion itself, a pure function of the text typed so far.
The command line (``cli.py``) chooses the workspace, local or through its server, and how a
result is printed.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

from . import __version__
from .errors import KqlError, NetatlasError

HISTORY_ENV = "NETATLAS_HISTORY"
HISTORY_FILE = ".netatlas_history"
HISTORY_LENGTH = 2000
PROMPT, CONTINUATION = "kql> ", "...> "
# what ends a word for completion: KQL names keep '-' (project-away) and '_'
DELIMITERS = " \t\n|()[]{},;:=<>!+*/%\"'."

BANNER = """\
netatlas {version} shell: {where}
tables: {tables}
End a query with an empty line or ';;'. Tab completes names, `help` lists commands and tables,
`exit` or Ctrl-D quits; Ctrl-C drops the query being typed.
"""


def describe(e: NetatlasError) -> str:
    """How an error is printed: a KqlError with its caret, others behind their code."""
    return str(e) if isinstance(e, KqlError) else f"{e.code}: {e}"


# ---------------------------------------------------------------- names to complete

# words inside an operator's arguments that are neither columns nor functions
KEYWORDS = ("and", "or", "by", "on", "asc", "desc", "nulls", "first", "last", "kind", "with", "step", "from",
            "to", "in", "!in", "has", "!has", "has_any", "contains", "!contains", "startswith", "endswith",
            "matches", "regex", "between", "like", "true", "false")
# words after which a table name comes: join/lookup/union, their options (kind=inner), an opening
# parenthesis, tables already listed with commas
TABLE_AFTER = re.compile(r"\b(?:join|lookup|union)(?:\s+[\w-]+\s*=\s*[\w-]+)*(?:\s*\(?\s*\w+\s*\)?\s*,)*\s*\(?\s*$",
                         re.IGNORECASE)
STATEMENT_START = re.compile(r"^\s*([A-Za-z_][\w]*)")


@dataclass(frozen=True)
class Names:
    """What completion offers: tables with their columns, functions, tabular operators, and the
    words a statement may start with."""
    tables: dict[str, list[str]]
    types: dict[str, list[str]]          # the KQL type of each column, in the order of ``tables``
    functions: list[str]
    operators: list[str]
    starters: list[str]

    @classmethod
    def of(cls, catalogue) -> "Names":
        """The names of ``catalogue`` and of the KQL engine's tables (as the web UI's /api/schema)."""
        from .kql import parser
        from .webmap import schema
        s = schema(catalogue)
        return cls(tables={t: [c for c, _ in cols] for t, cols in s["tables"].items()},
                   types={t: [k for _, k in cols] for t, cols in s["tables"].items()},
                   functions=s["functions"], operators=sorted(parser.OPERATORS),
                   starters=sorted(set(parser.SOURCES) | {"let", "declare"}) + sorted(COMMANDS))

    def columns(self, table: str | None) -> list[str]:
        """The columns of ``table``; of every table when it is not one."""
        if table in self.tables:
            return self.tables[table]
        return sorted({c for cols in self.tables.values() for c in cols})


def complete(text: str, before: str, names: Names) -> list[str]:
    """Candidates for the word ``text``, given ``before``: the statement typed before that word
    (earlier lines included). At the start of a statement: tables, sources and shell commands;
    after ``|``: operators; after join/lookup/union: tables; elsewhere: the columns of the table
    the statement starts with (of every table when it starts otherwise), functions (with their
    '('), keywords and tables. Prefixes match case-insensitively; the names keep their case."""
    head = before.rstrip()
    statement = before.rsplit(";", 1)[-1]
    if not head or head.endswith(";"):
        pool = list(names.tables) + names.starters
    elif head.endswith("|"):
        pool = names.operators
    elif TABLE_AFTER.search(head):
        pool = list(names.tables)
    else:
        m = STATEMENT_START.match(statement)
        pool = (names.columns(m.group(1) if m else None) + [f + "(" for f in names.functions] + list(KEYWORDS)
                + list(names.tables))
    low = text.lower()
    seen: dict[str, None] = {}
    for name in pool:
        if name.lower().startswith(low):
            seen.setdefault(name)
    return list(seen)


# ---------------------------------------------------------------- reading statements

def read_statement(read_line: Callable[[str], str], commands=(), lines: list[str] | None = None) -> str | None:
    """Lines up to an empty line or a line ending in ';;'; None at end of input (Ctrl-D). A first
    line whose first word is one of ``commands`` is returned at once. ``lines``: a list that
    holds the lines read so far (completion looks at it)."""
    lines = [] if lines is None else lines
    lines.clear()
    try:
        while True:
            try:
                line = read_line(CONTINUATION if lines else PROMPT)
            except EOFError:
                return None
            stripped = line.rstrip()
            first = stripped.split(maxsplit=1)[:1]
            if not lines and first and first[0].rstrip(";").lower() in commands:
                return stripped.rstrip(";")
            if stripped.endswith(";;"):
                lines.append(stripped[:-2])
                text = "\n".join(lines)
                if text.strip():
                    return text
                lines.clear()
            elif stripped:
                lines.append(line)
            elif lines:
                return "\n".join(lines)
    finally:
        lines.clear()


# ---------------------------------------------------------------- commands of the shell

@dataclass
class Shell:
    """One session: the workspace's names, how to run a query, where to print."""
    names: Names
    execute: Callable[[str], None]
    out: TextIO = field(default_factory=lambda: sys.stdout)


def cmd_help(shell: Shell, arg: str) -> int | None:
    names = shell.names
    if arg:
        table = next((t for t in names.tables if t.lower() == arg.lower()), None)
        if table is None:
            print(f"no table {arg!r}; the tables are {', '.join(names.tables)}", file=shell.out)
        else:
            cols = list(zip(names.tables[table], names.types[table]))
            width = max(len(c) for c, _ in cols)
            print("\n".join([f"{table}:"] + [f"  {c:<{width}}  {t}" for c, t in cols]), file=shell.out)
        return None
    width = max(len(t) for t in names.tables)
    out = ["commands (at the start of a line):"]
    out += [f"  {name:<12}  {help}" for name, (help, _) in COMMANDS.items()]
    out += ["a query ends at an empty line or at ';;'; Tab completes tables, columns, operators, functions;",
            "Ctrl-C drops the query being typed, Ctrl-D quits",
            "tables:"]
    out += [f"  {t:<{width}}  {len(cols)} columns" for t, cols in names.tables.items()]
    print("\n".join(out), file=shell.out)
    return None


def cmd_exit(shell: Shell, arg: str) -> int | None:
    return 0


COMMANDS: dict[str, tuple[str, Callable[[Shell, str], int | None]]] = {
    "help": ("this list; `help TABLE` lists the columns of TABLE", cmd_help),
    "exit": ("leave the shell (so do `quit` and Ctrl-D)", cmd_exit),
    "quit": ("leave the shell", cmd_exit),
}


# ---------------------------------------------------------------- readline: history, completion

def history_path() -> Path:
    return Path(os.environ.get(HISTORY_ENV) or Path.home() / HISTORY_FILE)


def start_readline(names: Names, pending: list[str]) -> Callable[[], None]:
    """Line editing, history and Tab completion for ``input()``; returns what saves the history.
    Without readline, or when the history file cannot be read or written, the shell still runs."""
    try:
        import readline
    except ImportError:
        return lambda: None
    matches: list[str] = []

    def completer(text: str, state: int) -> str | None:
        if state == 0:
            current = readline.get_line_buffer()[:readline.get_begidx()]
            matches[:] = complete(text, "\n".join(pending + [current]), names)
        return matches[state] if state < len(matches) else None

    readline.set_completer_delims(DELIMITERS)
    readline.set_completer(completer)
    readline.parse_and_bind("bind ^I rl_complete" if "libedit" in (readline.__doc__ or "") else "tab: complete")
    path = history_path()
    try:
        readline.read_history_file(path)
    except OSError:
        pass
    readline.set_history_length(HISTORY_LENGTH)

    def save() -> None:
        try:
            readline.write_history_file(path)
        except OSError:
            pass
    return save


# ---------------------------------------------------------------- the loop

def banner(where: str, names: Names) -> str:
    return BANNER.format(version=__version__, where=where, tables=", ".join(names.tables))


def repl(shell: Shell, read_line: Callable[[str], str] = input, pending: list[str] | None = None) -> int:
    """Read, run, print until ``exit`` or Ctrl-D; errors are shown and the prompt goes on."""
    while True:
        try:
            text = read_statement(read_line, COMMANDS, pending)
        except KeyboardInterrupt:
            print(file=shell.out)
            continue
        if text is None:
            print(file=shell.out)
            return 0
        word, _, arg = text.strip().partition(" ")
        if word.lower() in COMMANDS and "\n" not in text:
            code = COMMANDS[word.lower()][1](shell, arg.strip())
            if code is not None:
                return code
            continue
        try:
            shell.execute(text)
        except KqlError as e:
            print(str(e), file=sys.stderr)
        except NetatlasError as e:
            print(describe(e), file=sys.stderr)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)


def interact(catalogue, execute: Callable[[str], None], where: str) -> int:
    """The interactive shell over the tables of ``catalogue``, running queries with ``execute``:
    a banner saying ``where`` the workspace is, then ``repl`` with readline's history and completion."""
    names = Names.of(catalogue)
    pending: list[str] = []
    save = start_readline(names, pending)
    print(banner(where, names))
    try:
        return repl(Shell(names, execute), pending=pending)
    finally:
        save()
