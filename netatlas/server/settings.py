"""Every setting of the workspace server, declared once: name, default, environment variable,
command-line flag and help. ``netatlas workspace serve`` builds its options from ``SETTINGS``;
a test fails if one is missing from ``--help`` or from the server's docstring.

Precedence: a command-line flag, then the environment variable, then the default.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, make_dataclass
from typing import Callable


@dataclass(frozen=True)
class Setting:
    name: str
    default: object
    type: Callable
    metavar: str
    help: str

    @property
    def env(self) -> str:
        return "NETATLAS_" + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


MiB = 1024 * 1024

SETTINGS: tuple[Setting, ...] = (
    Setting("host", "127.0.0.1", str, "ADDRESS", "address to listen on"),
    Setting("port", 8080, int, "PORT", "TCP port to listen on"),
    Setting("max_body_bytes", 32 * MiB, int, "BYTES",
            "largest request body accepted, counted after gzip decompression (larger: 413)"),
    Setting("max_rows", 500_000, int, "ROWS",
            "most rows a query returns; past it the result is cut and statistics.truncated is true"),
    Setting("query_timeout", 60.0, float, "SECONDS", "seconds a query may run before it is stopped (504)"),
    Setting("retention_interval", 3600.0, float, "SECONDS",
            "seconds between two retention passes (the first runs at start)"),
    Setting("max_clock_skew", 900.0, float, "SECONDS",
            "seconds an ingestion request's x-ms-date may differ from the server's clock (401 past it)"),
    Setting("geoip_db", "", str, "PATH",
            "a MaxMind-format city database (GeoLite2-City, DB-IP, IPinfo mmdb) to place remote addresses; "
            "default: the GeoLite2-City of July 2018 shipped by maxminddb-geolite2; 'off' for none"),
    Setting("threatintel_feeds", "", str, "FEEDS",
            "comma-separated threat-intelligence feeds imported at start and then every "
            "threatintel_interval: files or http(s) URLs, each optionally prefixed by its format "
            "(stix:, csv:, list:; otherwise guessed)"),
    Setting("threatintel_interval", 3600.0, float, "SECONDS", "seconds between two imports of the feeds"),
)


def _from_env(cls, environ: dict[str, str] | None = None, **overrides) -> "Settings":
    """Defaults, replaced by NETATLAS_* variables, replaced by ``overrides`` that are not None."""
    environ = os.environ if environ is None else environ
    values = {}
    for s in SETTINGS:
        if overrides.get(s.name) is not None:
            values[s.name] = s.type(overrides[s.name])
        elif s.env in environ:
            try:
                values[s.name] = s.type(environ[s.env])
            except ValueError:
                raise ValueError(f"{s.env}={environ[s.env]!r} is not a valid {s.type.__name__}") from None
    return cls(**values)


# The settings as one frozen dataclass, generated from the table: Settings(port=9000).port
Settings = make_dataclass("Settings", [(s.name, s.type, field(default=s.default)) for s in SETTINGS],
                          frozen=True, namespace={"from_env": classmethod(_from_env)})
Settings.__module__ = __name__
