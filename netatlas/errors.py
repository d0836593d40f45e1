"""Errors netatlas raises, drawn as a hierarchy:

    NetatlasError
    ├── KqlError                 a problem with query text; points at a span of it
    │   ├── KqlSyntaxError       code KQL_SYNTAX
    │   └── KqlSemanticError     KQL_UNKNOWN_TABLE, KQL_UNKNOWN_COLUMN, KQL_UNKNOWN_FUNCTION,
    │                            KQL_UNKNOWN_OPERATOR, KQL_TYPE, KQL_ARGUMENTS, KQL_UNSUPPORTED,
    │                            KQL_BAD_REGEX
    │   (either)                 KQL_QUERY_TOO_COMPLEX: past a shape limit of limits.py
    ├── QueryLimitError          the query ran past its time limit (KQL_TIMEOUT)
    ├── QueryExecutionError      the store refused a query that compiled (KQL_RUNTIME)
    └── IngestError              a record does not fit its table (INGEST_*)

Every error has a machine-readable ``code`` and a human message; ``KqlError`` also carries the
span of the offending text and renders it with a caret line.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Iterable


_SURROGATES = re.compile("[\ud800-\udfff]")


class NetatlasError(Exception):
    code = "NETATLAS"

    def to_json(self) -> dict:
        return {"code": self.code, "message": str(self)}


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int

    def __add__(self, other: "Span") -> "Span":
        return Span(min(self.start, other.start), max(self.end, other.end))


def line_col(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of an offset into text."""
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


def offset_of(text: str, line: int, column: int) -> int:
    """The offset into text of a 1-based line and column (the inverse of ``line_col``)."""
    start = 0
    for _ in range(line - 1):
        nl = text.find("\n", start)
        if nl < 0:
            return len(text)
        start = nl + 1
    return min(start + column - 1, len(text))


class KqlError(NetatlasError):
    code = "KQL"

    def __init__(self, message: str, span: Span | None = None, *, code: str | None = None,
                 hint: str | None = None, text: str | None = None):
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint
        self.text = text
        if code:
            self.code = code

    def attach(self, text: str) -> "KqlError":
        if self.text is None:
            self.text = text
        return self

    @property
    def line(self) -> int | None:
        return line_col(self.text, self.span.start)[0] if self.text is not None and self.span else None

    @property
    def column(self) -> int | None:
        return line_col(self.text, self.span.start)[1] if self.text is not None and self.span else None

    def __str__(self) -> str:
        out = [f"{self.code}: {self.message}"]
        if self.text is not None and self.span is not None:
            line, col = line_col(self.text, self.span.start)
            lines = self.text.splitlines() or [""]
            if line > len(lines):   # the end of a query that ends with a newline
                line, col = len(lines), len(lines[-1]) + 1
            src = _SURROGATES.sub("\ufffd", lines[line - 1])   # printable and encodable, same width
            width = max(1, min(self.span.end, self.span.start + len(src) - col + 1) - self.span.start)
            out[0] = f"{self.code} at line {line}, column {col}: {self.message}"
            out.append(f"  {src}")
            out.append("  " + " " * (col - 1) + "^" * width)
        if self.hint:
            out.append(f"hint: {self.hint}")
        return "\n".join(out)

    def to_json(self) -> dict:
        """The error as the HTTP API sends it; ``length``: characters of the text it points at."""
        return {"code": self.code, "message": self.message, "line": self.line,
                "column": self.column, "length": self.span.end - self.span.start if self.line else None,
                "hint": self.hint, "display": str(self)}

    @classmethod
    def from_json(cls, info: dict, text: str) -> "KqlError":
        """The error ``to_json`` described, about ``text`` (the query sent): same code, span, caret."""
        span = None
        if isinstance(info.get("line"), int) and isinstance(info.get("column"), int):
            start = offset_of(text, info["line"], info["column"])
            length = info.get("length")
            span = Span(start, start + (length if isinstance(length, int) and length > 0 else 1))
        return cls(str(info.get("message", "")), span, code=info.get("code") or None, hint=info.get("hint"),
                   text=text)


class KqlSyntaxError(KqlError):
    code = "KQL_SYNTAX"


class KqlSemanticError(KqlError):
    code = "KQL_SEMANTIC"


class QueryLimitError(NetatlasError):
    code = "KQL_TIMEOUT"


class QueryExecutionError(NetatlasError):
    code = "KQL_RUNTIME"


class IngestError(NetatlasError):
    code = "INGEST"

    def __init__(self, message: str, *, code: str = "INGEST", record: int | None = None,
                 field: str | None = None):
        super().__init__(message)
        self.code = code
        self.record = record
        self.field = field

    def to_json(self) -> dict:
        return {"code": self.code, "message": str(self), "record": self.record, "field": self.field}


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A hint naming the closest candidate, case-insensitively, or None."""
    cands = list(candidates)
    lowered = {c.lower(): c for c in cands}
    if name.lower() in lowered:
        return f"did you mean '{lowered[name.lower()]}'? (names are case-sensitive)"
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return f"did you mean '{lowered[close[0]]}'?" if close else None



class RuleError(IngestError):
    """A data collection rule that cannot work (dcr.py): what is wrong, and where."""

    def __init__(self, message: str, code: str = "DCR_INVALID"):
        super().__init__(message, code=code)

class StorageError(NetatlasError):
    """The store could not write (a full disk, an I/O error, a write conflict): nothing of the batch
    was stored, and sending it again later may work (HTTP 503 STORAGE_UNAVAILABLE with Retry-After)."""
    code = "STORAGE_UNAVAILABLE"


class StorageFullError(StorageError):
    """Free space below the workspace's reserve (min_free_bytes): refused before the store fails
    (HTTP 507 STORAGE_FULL with Retry-After)."""
    code = "STORAGE_FULL"


# ---- the other stages' errors, all here (issue 13): each module imports its own from this one

class QueryBusyError(NetatlasError):
    """Every query cursor is busy and the queue is full: retry after ``retry_after`` seconds."""
    code = "QUERY_BUSY"

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


class WebMapError(NetatlasError):
    """A request the map cannot answer: names the parameter (``field``) and the HTTP status."""
    code = "BAD_PARAMETER"

    def __init__(self, message: str, *, field: str, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.field, self.status = field, status
        if code:
            self.code = code


class AuthError(NetatlasError):
    code = "AUTH"

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code


class BackupError(NetatlasError):
    """A backup or restore that cannot be done as asked (the target, the backup's contents)."""
    code = "BACKUP_INVALID"


class ConfigError(NetatlasError):
    """A setting that is missing, unknown or not of its kind (the message names where it came from)."""
    code = "CONFIG"


class ServerUnavailableError(NetatlasError):
    """The workspace is held, and no live server of it can be reached."""
    code = "WORKSPACE_BUSY"


class ImportFileError(NetatlasError):
    """The file cannot be imported as it is: says which row and column, and why."""
    code = "IMPORT_INVALID"

    def __init__(self, message: str, *, record: int | None = None, field: str | None = None):
        super().__init__(message)
        self.record, self.field = record, field


class ServerRefused(NetatlasError):
    """The server's error answer: ``str`` names the request, ``server_message`` is its message."""
    code = "IMPORT_REFUSED"

    def __init__(self, where: str, status: int, error: dict):
        self.server_message = str(error.get("message"))
        super().__init__(f"{where}: {status} {error.get('code', '')}: {self.server_message}".replace(" : ", ": "))
        self.status, self.record, self.field = status, error.get("record"), error.get("field")


class AgentError(NetatlasError):
    code = "AGENT"


class CollectorUnavailable(AgentError):
    code = "AGENT_NO_COLLECTOR"


class SpoolBusy(AgentError):
    code = "AGENT_SPOOL_BUSY"


class StoreError(NetatlasError):
    """A store that cannot be opened as named (an unknown engine, a bad --store text)."""
    code = "STORE"


class StoreBusyError(StoreError):
    """The store's files are held by another process."""
    code = "WORKSPACE_BUSY"


class SchemaVersionError(NetatlasError):
    """The workspace was written by a newer netatlas (migrate.py)."""
    code = "WORKSPACE_TOO_NEW"


class SettingsError(ConfigError, ValueError):
    """A server setting that is not of its kind, or settings that do not fit together (TLS)."""
    code = "SERVER_SETTINGS"


class AgentConfigError(ConfigError):
    """An agent setting that is missing, unknown or not of its kind (the message names where it
    came from); ``agent.config.ConfigError``."""
    code = "AGENT_CONFIG"


class MarkerError(NetatlasError):
    """The live demo's marker file cannot be read as its own (demo/live.py)."""
    code = "DEMO_MARKER"


# ---- the command line's --------------------------------------------------------------------

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130     # what a command exits with


class AlertError(NetatlasError):
    """A rule that cannot be stored, or a request about rules that cannot be answered; ``field``
    names the offending field, ``status`` the HTTP status it deserves."""
    code = "ALERT_INVALID"

    def __init__(self, message: str, field: str | None = None, *, code: str = "ALERT_INVALID",
                 status: int = 400, **extra):
        super().__init__(message)
        self.field, self.code, self.status, self.extra = field, code, status, extra

    def to_json(self) -> dict:
        return {"code": self.code, "message": str(self), "field": self.field, **self.extra}


class UsageError(Exception):
    """A mistake on the command line (not in the KQL text): exit 2 with the message."""
