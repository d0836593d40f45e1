"""Configuration files and systemd units, shared by the agent (``agent/config.py``, ``agent/install.py``)
and the workspace server (``server/settings.py``, ``server/install.py``).

``read`` loads a TOML file of settings and refuses unknown names (with a did-you-mean);
``toml_str`` writes a TOML string back; ``write_atomic`` puts a file in place with its mode;
``systemd_quote`` and ``python_path`` build an ``ExecStart=`` line that runs this netatlas.
"""
from __future__ import annotations

import importlib.metadata
import os
import tomllib
from pathlib import Path
from typing import Iterable

from .errors import ConfigError, NetatlasError, did_you_mean




def toml_str(text: str) -> str:
    """A TOML basic string (quotes, backslashes and control characters escaped)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch < " " or ch == "\x7f":
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r"}.get(ch, f"\\u{ord(ch):04x}"))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def read(path: str | os.PathLike, known: Iterable[str], error: type[NetatlasError] = ConfigError) -> dict:
    """The settings a TOML file sets; ``error`` for an unreadable file, bad TOML or a name not in ``known``."""
    known = list(known)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise error(f"cannot read the configuration file {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise error(f"{path}: not valid TOML: {e}") from None
    for name in data:
        if name not in known:
            hint = did_you_mean(name, known)
            raise error(f"{path}: unknown setting {name!r}" + (f"; {hint}" if hint else "") +
                        f" (the settings: {', '.join(known)})")
    return data


def write_atomic(path: Path, text: str, mode: int) -> str:
    """Write ``text`` to ``path`` with ``mode`` (a temporary file renamed over it); returns
    created, replaced or unchanged."""
    path.parent.mkdir(parents=True, exist_ok=True)
    before = path.read_text(encoding="utf-8") if path.exists() else None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return "unchanged" if before == text else ("replaced" if before is not None else "created")


def systemd_quote(arg: str) -> str:
    """One ExecStart word: specifiers (%) and variables ($) escaped, quoted when it needs to be."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if arg and not any(c in arg for c in ' \t\n"\'\\;'):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def python_path() -> str | None:
    """The directory holding this netatlas when it is not installed (a source checkout): a unit
    needs it on PYTHONPATH for `python -m netatlas`."""
    try:
        importlib.metadata.distribution("netatlas")
        return None
    except importlib.metadata.PackageNotFoundError:
        return str(Path(__file__).resolve().parents[1])


def exec_start(python: str, *args: str) -> tuple[str, str]:
    """The ``ExecStart=`` value running ``python -m netatlas ARGS``, and the ``Environment=`` line
    (with its newline) a source checkout needs, or ""."""
    line = " ".join(systemd_quote(a) for a in (python, "-m", "netatlas", *args))
    path = python_path()
    return line, (f"Environment={systemd_quote('PYTHONPATH=' + path)}\n" if path else "")
