"""Every setting of the workspace server, declared once: name, default, environment variable,
command-line flag, key of the TOML configuration file and help. ``netatlas workspace serve``
builds its options from ``SETTINGS``; a test fails if one is missing from ``--help`` or from the
server's docstring.

Precedence: a command-line flag, then the environment variable, then the configuration file
(``--config FILE`` or ``NETATLAS_CONFIG``; none by default), then the default. The file is
what ``netatlas workspace install`` writes:

    data = "/var/lib/netatlas"
    host = "0.0.0.0"
    port = 8080
    tls_cert = "/etc/netatlas/server.crt"
    tls_key = "/etc/netatlas/server.key"
    retention_days = 90
"""
from __future__ import annotations

import functools
import ipaddress
import os
import ssl
from typing import Mapping

from ..configure import MiB, Setting as _Setting, resolve, settings_class
from ..errors import SettingsError

CONFIG_ENV = "NETATLAS_CONFIG"




def Setting(name: str, default, kind: str, metavar: str, help: str) -> _Setting:
    """A server setting (configure.Setting): its kind ``string``, ``int`` or ``number``, its flag's
    value name, environment variable NETATLAS_<NAME>."""
    return _Setting(name, default, kind, help, metavar=metavar)


DEFAULT_DATA = "netatlas-data"

SETTINGS: tuple[_Setting, ...] = (
    Setting("data", DEFAULT_DATA, "string", "DIR",
            "the workspace directory: its DuckDB file and workspace.json (id and keys); created if missing"),
    Setting("store", "", "string", "STORE",
            "where the catalogue's tables live: duckdb (in DIR's DuckDB file) or chdb[:DIR2] (ClickHouse "
            "embedded through chdb, in DIR2, default DIR; the [clickhouse] extra); default: what the "
            "workspace was created with, duckdb for a new one"),
    Setting("host", "127.0.0.1", "string", "ADDRESS",
            "address to listen on (0.0.0.0 or :: for every interface: other hosts' agents)"),
    Setting("port", 8080, "int", "PORT", "TCP port to listen on"),
    Setting("tls_cert", "", "string", "PATH",
            "a PEM certificate (chain) to serve https with; needs tls_key (default: plain http)"),
    Setting("tls_key", "", "string", "PATH", "the PEM private key of tls_cert"),
    Setting("max_body_bytes", 30 * MiB, "int", "BYTES",
            "largest request body accepted, counted after gzip decompression (larger: 413); "
            "30 MiB is Azure's Data Collector API limit"),
    Setting("max_rows", 500_000, "int", "ROWS",
            "most rows a query returns; past it the result is cut and statistics.truncated is true"),
    Setting("query_timeout", 60.0, "number", "SECONDS", "seconds a query may run before it is stopped (504)"),
    Setting("retention_days", 30, "int", "DAYS",
            "days of data kept in a table whose retention was not set with PUT /api/retention/{Table} "
            "(1 to 4383)"),
    Setting("retention_interval", 3600.0, "number", "SECONDS",
            "seconds between two retention passes (the first runs at start)"),
    Setting("max_clock_skew", 900.0, "number", "SECONDS",
            "seconds an ingestion request's x-ms-date may differ from the server's clock (401 past it)"),
    Setting("geoip_db", "", "string", "PATH",
            "a MaxMind-format city database (GeoLite2-City, DB-IP, IPinfo mmdb) to place remote addresses; "
            "default: the GeoLite2-City of July 2018 shipped by maxminddb-geolite2; 'off' for none"),
    Setting("threatintel_feeds", "", "string", "FEEDS",
            "comma-separated threat-intelligence feeds imported at start and then every "
            "threatintel_interval: files or http(s) URLs, each optionally prefixed by its format "
            "(stix:, csv:, list:; otherwise guessed)"),
    Setting("threatintel_interval", 3600.0, "number", "SECONDS", "seconds between two imports of the feeds"),
    # ---- storage (commit helper, issue 11 item 1) ----
    Setting("min_free_bytes", 1024 * MiB, "int", "BYTES",
            "free space kept on the data directory's filesystem: below it ingestion answers 507 "
            "STORAGE_FULL (with Retry-After) before the store fails, and /healthz says why; 0 for none"),
    # ---- query helper (issue 11, items 7 and 9): the result's size cap, queries side by side
    Setting("max_result_bytes", 64 * MiB, "int", "BYTES",
            "largest query result (its JSON, estimated); past it the result is cut and statistics.truncated is true"),
    Setting("query_concurrency", 0, "int", "QUERIES",
            "queries run at once, each on a DuckDB cursor of its own (0: 4 per core)"),
    Setting("query_queue", 0, "int", "QUERIES",
            "queries that may wait for a cursor when all are busy; past it 429 QUERY_BUSY (0: 2 per cursor)"),
    # --- auth helper (issue 11): a self-signed certificate made on first start
    Setting("tls", "", "string", "MODE",
            "self-signed: serve https with a certificate generated in DIR/tls on first start (its "
            "SHA-256 fingerprint is printed for agents to pin); default: tls_cert/tls_key, else plain http"),
    # -- http helper (issue 11, items 8 and 12): slow clients, the connection cap, proxies (server/guard.py)
    Setting("header_timeout", 10.0, "number", "SECONDS",
            "seconds a connection may take to send a request's headers (also after a keep-alive "
            "answer); past it: 408 and the connection is closed"),
    Setting("body_timeout", 30.0, "number", "SECONDS",
            "seconds a request's body may take to arrive once its headers are complete (408 past it)"),
    Setting("keepalive_timeout", 5.0, "number", "SECONDS", "seconds an idle keep-alive connection stays open"),
    Setting("max_connections", 1000, "int", "COUNT",
            "most open connections; a new one past it closes the oldest that has not sent a whole "
            "request's headers, or is refused (503) when every one is busy"),
    # -- Azure's protocols (issue 14): Kqlmagic's anonymous mode sends no token
    Setting("anonymous_query", "", "string", "ADDRESSES",
            "comma-separated addresses or CIDRs (or 'loopback') whose requests to the Kusto and Log "
            "Analytics APIs may come without a key, as query requests (Kqlmagic's kusto://anonymous); "
            "default: none, every request needs a key"),
    # -- the fleet map (issue 17): when an edge counts as failing
    Setting("map_failure_rate", 0.05, "number", "SHARE",
            "share of an edge's link attempts over the range that must have failed for the map to draw it "
            "failing (0.05: five percent; a request's failure_rate overrides it)"),
    Setting("trusted_proxies", "", "string", "ADDRESSES",
            "comma-separated addresses or CIDRs of reverse proxies whose X-Forwarded-For and "
            "X-Forwarded-Proto are believed (default: none, the headers are ignored)"),
    # -- alerts (issue 17): the scheduler, the links in notifications, the SMTP server of e-mail actions
    Setting("alerts_interval", 30.0, "number", "SECONDS",
            "seconds between two passes of the alert scheduler, each evaluating the enabled rules that are due"),
    Setting("public_url", "", "string", "URL",
            "the server's address as users reach it, for the links in alert notifications "
            "(default: scheme://host:port of this server)"),
    Setting("smtp_host", "", "string", "HOST", "the SMTP server alert e-mails go through (default: none, no e-mail)"),
    Setting("smtp_port", 25, "int", "PORT", "the SMTP server's port (587 for submission with STARTTLS)"),
    Setting("smtp_from", "", "string", "ADDRESS", "the From address of alert e-mails (default: netatlas@smtp_host)"),
    Setting("smtp_to", "", "string", "ADDRESSES",
            "comma-separated addresses an alert rule's e-mail goes to when it names none"),
    Setting("smtp_starttls", False, "bool", "BOOL", "upgrade the SMTP connection with STARTTLS before sending"),
    Setting("smtp_user", "", "string", "USER", "log in to the SMTP server as this user (default: no login)"),
    Setting("smtp_password_file", "", "string", "PATH", "a file holding the SMTP password of smtp_user"),
    Setting("smtp_ca_file", "", "string", "PATH",
            "PEM certificates to trust for the SMTP server's STARTTLS certificate (default: the system's CAs)"),
    # -- share helper (issue 17): the web UI's sign-in session (server/sessions.py)
    Setting("session_ttl", 43200.0, "number", "SECONDS",
            "seconds a web UI sign-in (its session cookie) lasts before the key must be typed again"),
)

def _from_env(cls, environ: Mapping[str, str] | None = None, *, file: str | os.PathLike | None = None,
              **overrides) -> "Settings":
    """``overrides`` that are not None (the flags), then NETATLAS_* variables, then the TOML ``file``
    (default: the file NETATLAS_CONFIG names; none if unset), then the defaults; checked (``check``).
    A value not of its setting's kind is a SettingsError naming where it came from."""
    environ = os.environ if environ is None else environ
    file = file or environ.get(CONFIG_ENV) or None
    values = resolve(SETTINGS, overrides, environ, file, SettingsError)
    settings = cls(**values)
    settings.check()
    return settings


def _check(self) -> None:
    """Settings that cannot work, refused before anything starts: a port out of range, a retention
    out of range, one TLS file without the other, a certificate or key that cannot be read or
    that do not belong together."""
    if not 0 <= self.port <= 65535:
        raise SettingsError(f"port: expected 0 to 65535, got {self.port}")
    if not 1 <= self.retention_days <= 4383:
        raise SettingsError(f"retention_days: expected 1 to 4383 (12 years), got {self.retention_days}")
    if self.tls not in ("", "off", "self-signed"):
        raise SettingsError(f"tls: expected self-signed (or nothing), got {self.tls!r}")
    if self.tls == "self-signed" and self.tls_cert:
        raise SettingsError("tls self-signed and tls_cert are both set: give one (the certificate to "
                            "serve, or self-signed to generate one in the data directory)")
    if bool(self.tls_cert) != bool(self.tls_key):
        given, missing = ("tls_cert", "tls_key") if self.tls_cert else ("tls_key", "tls_cert")
        raise SettingsError(f"{given} is set but {missing} is not: https needs both the certificate "
                            f"(--tls-cert) and its private key (--tls-key)")
    if self.tls_cert:
        self.tls_context()
    for name, low in (("max_result_bytes", 1), ("query_concurrency", 0), ("query_queue", 0)):  # query helper
        if getattr(self, name) < low:
            raise SettingsError(f"{name}: expected at least {low}, got {getattr(self, name)}")
    _check_http(self)
    if not 0 < self.smtp_port <= 65535:
        raise SettingsError(f"smtp_port: expected 1 to 65535, got {self.smtp_port}")
    if self.alerts_interval <= 0:
        raise SettingsError(f"alerts_interval: expected a positive number of seconds, got {self.alerts_interval}")
    if self.smtp_user and not self.smtp_password_file:
        raise SettingsError("smtp_user is set but smtp_password_file is not: the login needs the password's file")


def _check_http(self) -> None:
    """The http settings (header_timeout ... trusted_proxies): positive limits, proxies that are
    addresses or networks."""
    for name in ("header_timeout", "body_timeout", "keepalive_timeout", "max_connections"):
        if getattr(self, name) <= 0:
            raise SettingsError(f"{name}: expected a positive number, got {getattr(self, name)}")
    self.proxy_networks()
    self.anonymous_networks()


@functools.lru_cache(maxsize=16)
def _networks(name: str, text: str) -> tuple:
    """A setting's comma-separated addresses or CIDRs as ipaddress networks ('loopback': 127.0.0.0/8
    and ::1); SettingsError naming an item that is not one. Parsed once per text (requests ask for
    anonymous_query's)."""
    networks = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        if item.lower() == "loopback":
            networks += [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise SettingsError(f"{name}: {item!r} is not an IP address or a CIDR network "
                                f"(e.g. 10.0.0.5, 10.0.0.0/8, ::1)") from None
    return tuple(networks)


def _proxy_networks(self) -> tuple:
    """trusted_proxies as ipaddress networks."""
    return _networks("trusted_proxies", self.trusted_proxies)


def _anonymous_networks(self) -> tuple:
    """anonymous_query as ipaddress networks."""
    return _networks("anonymous_query", self.anonymous_query)


TLS_PEM = (("tls_cert", b"-----BEGIN CERTIFICATE-----", "a PEM certificate"),
           ("tls_key", b"PRIVATE KEY-----", "a PEM private key"))


def _tls_context(self) -> ssl.SSLContext | None:
    """The server's TLS context from tls_cert and tls_key (None without them); SettingsError for
    a file that cannot be read or is not PEM, an encrypted key, or a key that is not the
    certificate's."""
    if not self.tls_cert:
        return None
    for name, marker, what in TLS_PEM:
        path = getattr(self, name)
        try:
            with open(path, "rb") as f:
                text = f.read()
        except OSError as e:
            raise SettingsError(f"{name}: cannot read {path}: {e.strerror or e}") from None
        if marker not in text:
            raise SettingsError(f"{name}: {path} is not {what} (no '{marker.decode().strip('-')}' block)")
        if name == "tls_key" and b"ENCRYPTED" in text:
            raise SettingsError(f"tls_key: {path} is encrypted; the server needs it without a passphrase "
                                f"(`openssl pkey -in {path} -out KEY.pem`, mode 0600)")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(self.tls_cert, self.tls_key, password=b"")
    except ssl.SSLError as e:
        if e.reason == "KEY_VALUES_MISMATCH":
            raise SettingsError(f"tls_key: {self.tls_key} is not the private key of tls_cert {self.tls_cert}") \
                from None
        raise SettingsError(f"tls_cert {self.tls_cert}, tls_key {self.tls_key}: OpenSSL cannot load them "
                            f"as a certificate and its key: {e.reason or e}") from None
    return ctx


def _scheme(self) -> str:
    return "https" if self.tls_cert or self.tls == "self-signed" else "http"


# The settings as one frozen dataclass, generated from the table: Settings(port=9000).port
Settings = settings_class("Settings", SETTINGS, SettingsError, __name__,
                          {"from_env": classmethod(_from_env), "check": _check, "tls_context": _tls_context,
                           "proxy_networks": _proxy_networks, "anonymous_networks": _anonymous_networks,
                           "scheme": property(_scheme)})
