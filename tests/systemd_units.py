"""What systemd would run for a unit file, for tests that cannot run systemd: the ``ExecStart=``
command line as an argv and the ``Environment=`` variables, parsed from the unit's text."""
from __future__ import annotations

import re
import shlex


def sections(text: str) -> dict[str, dict[str, list[str]]]:
    """``{section: {key: [values, in order]}}``; comments and blank lines skipped."""
    out: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if m := re.fullmatch(r"\[(.+)\]", line):
            current = out.setdefault(m[1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"not a unit file line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return out


def _words(value: str) -> list[str]:
    """systemd's quoting (double quotes, backslash escapes) and its %% and $$ escapes undone."""
    return [w.replace("%%", "%").replace("$$", "$") for w in shlex.split(value)]


def command(text: str) -> tuple[list[str], dict[str, str]]:
    """The service's ExecStart argv and its Environment= variables."""
    service = sections(text)["Service"]
    (exec_start,) = service["ExecStart"]
    env = dict(w.split("=", 1) for value in service.get("Environment", []) for w in _words(value))
    return _words(exec_start), env
