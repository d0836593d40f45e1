"""The configure stage, one machinery for the agent (``agent/config.py``) and the workspace server
(``server/settings.py``): each declares its settings once, in a table of ``Setting``s, and this
module derives the rest.

- A setting has a name (also its key in the TOML file), a default, a kind, a help text and an
  environment prefix; its flag (``--max-rows``) and environment variable (``NETATLAS_MAX_ROWS``,
  ``NETATLAS_AGENT_INTERVAL``) follow from the name.
- A kind (``KINDS``) says how a value is read (text from a flag or the environment, or a TOML
  value), written back to TOML, and shown; a value not of its kind is a ValueError saying what
  was expected.
- ``resolve`` applies the precedence: a flag, then the environment variable, then the TOML file,
  then the default; a refusal names where the value came from (a secret's value is not shown).
- ``settings_class`` makes the frozen dataclass of a table (``Settings``, ``AgentConfig``).
"""
from __future__ import annotations

import base64
import binascii
import math
import os
import re
from dataclasses import dataclass, field, make_dataclass
from typing import Callable, Mapping
from urllib.parse import urlsplit

from . import configfile
from .configfile import toml_str

MiB = 1024 * 1024


# ---------------------------------------------------------------- kinds: text -> value -> TOML

def split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _string(value) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _text(value) -> str:
    return _string(value).strip()


def _int(value) -> int:
    if isinstance(value, str):
        try:
            value = int(value.strip().replace("_", ""))
        except ValueError:
            raise ValueError(f"expected a whole number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a whole number, got {value!r}")
    return value


def _count(value) -> int:
    value = _int(value)
    if value < 1:
        raise ValueError(f"expected a whole number of at least 1, got {value!r}")
    return value


def _number(value) -> float:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


def _seconds(value) -> float:
    try:
        value = _number(value)
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {value!r}") from None
    if value <= 0:
        raise ValueError(f"expected a positive number of seconds, got {value!r}")
    return value


UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
         "g": 1000**3, "gb": 1000**3, "gib": 1024**3}


def _bytes(value) -> int:
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d[\d_]*)\s*([A-Za-z]*)\s*", value)
        if not m or m.group(2).lower() not in UNITS:
            raise ValueError(f"expected a size in bytes (65536, 256MiB, 1GB), got {value!r}")
        value = int(m.group(1).replace("_", "")) * UNITS[m.group(2).lower()]
    return _count(value)


TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _bool(value) -> bool:
    if isinstance(value, str) and value.strip().lower() in TRUE | FALSE:
        return value.strip().lower() in TRUE
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _names(value) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(split(value))
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of names, got {value!r}")
    return tuple(v.strip() for v in value if v.strip())


def _tags(value) -> dict[str, str]:
    if isinstance(value, str):
        value = split(value)
    if isinstance(value, (list, tuple)):
        pairs = {}
        for item in value:
            name, sep, text = item.partition("=") if isinstance(item, str) else ("", "", "")
            if not sep or not name.strip():
                raise ValueError(f"expected key=value, got {item!r}")
            pairs[name.strip()] = text.strip()
        value = pairs
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError(f"expected key=value pairs, got {value!r}")
    return dict(value)


def _url(value) -> str:
    text = _text(value)
    if text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL with a host, got {text!r}")
        parts.port   # raises ValueError on a port out of range
    return text.rstrip("/")


def _key(value) -> str:
    text = _text(value)
    if text:
        try:
            base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("expected an ingest key (base64, as `netatlas keys list` prints it)") from None
    return text


def one_of(*choices: str) -> Callable[[object], str]:
    def choice(value) -> str:
        text = _text(value).lower()
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return text
    return choice


@dataclass(frozen=True)
class Kind:
    metavar: str
    coerce: Callable[[object], object]   # a value from a flag, the environment (text) or TOML -> the value
    toml: Callable[[object], str]        # the value -> TOML text
    show: Callable[[object], str] = str  # the value -> text for help and --check
    secret: bool = False                 # its value never appears in a message


def _toml_list(v) -> str:
    return "[" + ", ".join(toml_str(x) for x in v) + "]"


def _toml_table(v) -> str:
    return "{" + ", ".join(f"{toml_str(k)} = {toml_str(x)}" for k, x in v.items()) + "}"


KINDS: dict[str, Kind] = {
    "string": Kind("TEXT", _string, toml_str, lambda v: v or "none"),     # as given
    "text": Kind("TEXT", _text, toml_str, lambda v: v or "none"),         # spaces around taken off
    "path": Kind("PATH", _text, toml_str, lambda v: v or "none"),
    "url": Kind("URL", _url, toml_str, lambda v: v or "none"),
    "key": Kind("KEY", _key, toml_str, lambda v: "(hidden)" if v else "none", secret=True),
    "int": Kind("N", _int, str),
    "count": Kind("N", _count, str, lambda v: f"{v:,}"),
    "number": Kind("NUMBER", _number, repr, lambda v: f"{v:g}"),
    "seconds": Kind("SECONDS", _seconds, repr, lambda v: f"{v:g}"),
    "bytes": Kind("BYTES", _bytes, str, lambda v: f"{v:,}" + (f" ({v // MiB} MiB)" if v % MiB == 0 else "")),
    "bool": Kind("BOOL", _bool, lambda v: "true" if v else "false", lambda v: "true" if v else "false"),
    "names": Kind("NAME,...", _names, _toml_list, lambda v: ",".join(v) or "none"),
    "tags": Kind("KEY=VALUE,...", _tags, _toml_table, lambda v: ",".join(f"{k}={x}" for k, x in v.items()) or "none"),
}


# ---------------------------------------------------------------- settings

@dataclass(frozen=True)
class Setting:
    name: str
    default: object
    kind: str
    help: str
    required: bool = False
    metavar: str | None = None          # the flag's value in --help (default: the kind's)
    prefix: str = "NETATLAS_"           # of its environment variable

    @property
    def env(self) -> str:
        return self.prefix + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def value_name(self) -> str:
        return self.metavar or KINDS[self.kind].metavar

    def coerce(self, value):
        """A flag's or the environment's text, or a TOML value -> the setting's value; ValueError
        saying what was expected otherwise."""
        return KINDS[self.kind].coerce(value)

    def show(self, value) -> str:
        return KINDS[self.kind].show(value)

    def toml(self, value) -> str:
        """The value as TOML text."""
        return KINDS[self.kind].toml(value)


def resolve(settings: tuple[Setting, ...], flags: Mapping[str, object] | None, environ: Mapping[str, str] | None,
            file: str | os.PathLike | None, error: type[Exception]) -> dict[str, object]:
    """The values set by ``flags`` (those not None), else by ``environ`` (default os.environ), else
    by the TOML ``file`` (none when None), coerced; settings set nowhere are left out (their
    default holds). ``error`` for a bad file or value, naming where the value came from."""
    flags = flags or {}
    environ = os.environ if environ is None else environ
    from_file = configfile.read(file, [s.name for s in settings], error) if file else {}
    values = {}
    for s in settings:
        if flags.get(s.name) is not None:
            source, raw = s.flag, flags[s.name]
        elif s.env in environ:
            raw = environ[s.env]
            source = s.env if KINDS[s.kind].secret else f"{s.env}={raw!r}"
        elif s.name in from_file:
            source, raw = f"{file}: {s.name}", from_file[s.name]
        else:
            continue
        try:
            values[s.name] = s.coerce(raw)
        except ValueError as e:
            raise error(f"{source}: {e}") from None
    return values


def _default(s: Setting):
    return field(default_factory=lambda: type(s.default)(s.default)) if isinstance(s.default, dict) \
        else field(default=s.default)


def settings_class(name: str, settings: tuple[Setting, ...], error: type[Exception], module: str,
                   namespace: dict | None = None):
    """The frozen dataclass of a table of settings, one field per setting with its default; values
    are coerced on construction (``error`` naming the setting), so ``Cls(port="9000").port`` is 9000."""
    def post_init(self) -> None:
        for s in settings:
            try:
                object.__setattr__(self, s.name, s.coerce(getattr(self, s.name)))
            except ValueError as e:
                raise error(f"{s.name}: {e}") from None

    def changed(self) -> dict[str, object]:
        """The settings whose value is not the default."""
        return {s.name: getattr(self, s.name) for s in settings if getattr(self, s.name) != s.default}

    def describe(self) -> str:
        """Every setting and its value, one a line (secrets hidden)."""
        width = max(len(s.name) for s in settings)
        return "".join(f"{s.name:<{width}}  {s.show(getattr(self, s.name))}\n" for s in settings)

    cls = make_dataclass(name, [(s.name, object, _default(s)) for s in settings], frozen=True,
                         namespace={"__post_init__": post_init, "changed": changed, "describe": describe,
                                    **(namespace or {})})
    cls.__module__ = module
    if any(isinstance(s.default, dict) for s in settings):
        cls.__hash__ = None
    return cls


__all__ = ["KINDS", "Kind", "Setting", "resolve", "settings_class", "one_of", "split"]
