"""Display names of processes: an interpreter is shown by what it runs.

Nine of twelve processes of a Python host would otherwise all be called ``python3.11``. As Service
Map's display names do, a process whose executable is an interpreter (``INTERPRETERS``: python,
java, node, ruby, perl, php, dotnet) is named after the script, module, jar or main class of its
command line; ``ProcessName`` / ``ExecutableName`` stay the executable. Code given on the command
line (``python -c``, ``node -e``), a bare interpreter, or a command line we cannot read keep the
executable's name.

``display_name(executable_name, argv) -> str`` is the whole interface (``proc.py`` calls it with
the process's argv from ``/proc/PID/cmdline``).
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Callable

__all__ = ["display_name", "INTERPRETERS", "Interpreter"]

Namer = Callable[[str], "str | None"]


def _base(path: str) -> str | None:
    """A script or jar by its file name: /opt/app/manage.py -> manage.py."""
    name = posixpath.basename(path.rstrip("/"))
    return name or None


def _module(name: str) -> str | None:
    """python -m http.server -> http.server."""
    return name or None


def _java_class(name: str) -> str | None:
    """A main class by its simple name: org.apache.catalina.startup.Bootstrap -> Bootstrap."""
    return name.rsplit(".", 1)[-1] or None


def _java_module(value: str) -> str | None:
    """java -m module[/mainclass] -> the main class's simple name, else the module."""
    module, _, main = value.partition("/")
    return _java_class(main) if main else module or None


def _dotnet_app(operand: str) -> str | None:
    """dotnet app.dll -> app.dll; a command of the SDK (dotnet build, dotnet test) keeps dotnet."""
    return _base(operand) if operand.lower().endswith((".dll", ".exe")) else None


@dataclass(frozen=True)
class Interpreter:
    """How one interpreter's command line names what it runs.

    ``runs``: options (or words) whose value is the program: a namer of the value.
    ``inline``: options whose value is program text: the process keeps the interpreter's name.
    ``values``: options that take the next argument as their value (or an attached one).
    ``attached``: options whose value can only be attached (``perl -i.bak``): the rest of the argument.
    ``grouped``: single-letter options may share one argument (``python -uBm x``).
    ``words``: commands before the program that are skipped like options (``dotnet exec app.dll``).
    ``operand``: the namer of the first argument that is not an option (the script).
    """
    pattern: re.Pattern
    operand: Namer
    runs: dict[str, Namer] = field(default_factory=dict)
    inline: frozenset[str] = frozenset()
    values: frozenset[str] = frozenset()
    attached: frozenset[str] = frozenset()
    grouped: bool = False
    words: frozenset[str] = frozenset()


_VERSION = r"(?:\d+(?:\.\d+)*)?"
INTERPRETERS: tuple[Interpreter, ...] = (
    Interpreter(re.compile(rf"(?:python{_VERSION}w?|pypy{_VERSION}|platform-python)(?:\.exe)?", re.I), _base,
                runs={"-m": _module}, inline=frozenset({"-c"}),
                values=frozenset({"-W", "-X", "-Q", "--check-hash-based-pycs"}), grouped=True),
    Interpreter(re.compile(r"java(?:w)?(?:\.exe)?", re.I), _java_class,
                runs={"-jar": _base, "-m": _java_module, "--module": _java_module},
                values=frozenset({"-cp", "-classpath", "--class-path", "-p", "--module-path",
                                  "--upgrade-module-path", "--add-modules", "--enable-native-access",
                                  "--add-opens", "--add-exports", "--add-reads", "--limit-modules",
                                  "--patch-module"})),
    Interpreter(re.compile(r"(?:node(?:js)?|bun|deno)(?:\.exe)?", re.I), _base,
                inline=frozenset({"-e", "--eval", "-p", "--print"}),
                values=frozenset({"-r", "--require", "--import", "--loader", "--experimental-loader",
                                  "-C", "--conditions", "--env-file", "--title", "--input-type"})),
    Interpreter(re.compile(rf"ruby{_VERSION}(?:\.exe)?", re.I), _base,
                runs={"-S": _base}, inline=frozenset({"-e"}),
                values=frozenset({"-I", "-r", "-C", "-E", "--encoding"}),
                attached=frozenset({"-0", "-i", "-K", "-T", "-W", "-x", "-F", "-l"}), grouped=True),
    Interpreter(re.compile(rf"perl{_VERSION}(?:\.exe)?", re.I), _base,
                inline=frozenset({"-e", "-E"}),
                attached=frozenset({"-0", "-i", "-l", "-x", "-C", "-d", "-D", "-M", "-m", "-I", "-F", "-V"}),
                grouped=True),
    Interpreter(re.compile(rf"php{_VERSION}(?:-cgi|-cli)?(?:\.exe)?", re.I), _base,
                runs={"-f": _base}, inline=frozenset({"-r", "-B", "-R", "-E"}),
                values=frozenset({"-c", "-d", "-z", "-t"})),
    Interpreter(re.compile(r"dotnet(?:\.exe)?", re.I), _dotnet_app, words=frozenset({"exec"}),
                values=frozenset({"--additionalprobingpath", "--depsfile", "--runtimeconfig", "--fx-version",
                                  "--roll-forward", "--additional-deps"})),
)


def display_name(executable: str, argv: list[str] | tuple[str, ...]) -> str:
    """What to show for a process whose executable file is named ``executable`` and whose command
    line is ``argv`` (argv[0] included): the program an interpreter runs, else the executable."""
    for interpreter in INTERPRETERS:
        if interpreter.pattern.fullmatch(executable):
            return _program(interpreter, list(argv[1:])) or executable
    return executable


def _program(it: Interpreter, args: list[str]) -> str | None:
    """The name of what ``it`` runs with arguments ``args``; None when that is code or nothing."""
    i = 0
    while i < len(args):
        arg = args[i]
        nxt = args[i + 1] if i + 1 < len(args) else ""
        if arg in it.runs:                              # -m module, -jar app.jar
            return it.runs[arg](nxt)
        if arg in it.words:
            i += 1
            continue
        if arg == "--":
            return it.operand(nxt) if nxt else None
        if arg == "-" or not arg.startswith("-"):
            return it.operand(arg) if arg != "-" else None      # "-": the program comes from stdin
        if arg.startswith("--"):
            option, eq, value = arg.partition("=")
            if option in it.runs:
                return it.runs[option](value if eq else nxt)
            if option in it.inline:
                return None
            i += 2 if option in it.values and not eq else 1
            continue
        if it.grouped:
            taken = _grouped(it, arg, nxt)
            if isinstance(taken, tuple):
                return taken[0]
            i += taken
            continue
        option, eq, value = arg.partition("=")
        if option in it.inline:
            return None
        i += 2 if option in it.values and not eq else 1
    return None


def _grouped(it: Interpreter, arg: str, nxt: str) -> int | tuple[str | None]:
    """One argument of single-letter options (-uBm x): how many arguments it uses, or (the name,)
    when one of its letters says what runs."""
    for j in range(1, len(arg)):
        option, rest = "-" + arg[j], arg[j + 1:]
        if option in it.runs:
            return (it.runs[option](rest or nxt),)
        if option in it.inline:
            return (None,)
        if option in it.attached:
            return 1
        if option in it.values:
            return 1 if rest else 2
    return 1
