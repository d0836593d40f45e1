"""Ship stage: records -> signed, gzip-compressed batches to the workspace, through a bounded on-disk spool.

| step | does | where |
|---|---|---|
| enqueue | records of one table -> batches of at most batch_max_records: gzip JSON, each with a durable batch id, written to the spool (temp file, fsync, rename) before anything is sent | ``Shipper.enqueue`` |
| cap | the spool past spool_max_bytes: the oldest batches are dropped, counted and logged | ``Shipper._enforce_cap`` |
| flush | spooled batches sent oldest first, SharedKey-signed (``netatlas.auth.signed_headers``); each removed only after a 200, or quarantined in ``rejected/`` on a 4xx naming a record or the batch (``outcome``); anything else (5xx, 429, 408, 401/403, no answer) keeps it and stops the flush until a backoff (or the server's Retry-After) has passed | ``Shipper.flush``, ``HttpSender`` |
| quarantine | ``rejected/`` capped at quarantine_max_bytes: the oldest deleted, logged by id and counted; listed and resent by ``netatlas agent spool list|resend`` | ``Shipper._cap_quarantine``, ``spool_rows``, ``resend`` |
| lock | one agent per spool: an flock on ``agent.lock`` holding the pid | ``SpoolLock`` |
| run | the agent's loop: ``collect()`` every interval -> ``enqueue``; flushes on the shipper's own thread | ``run``, ``Shipper.start`` |

The spool directory:

    state.json                                 {"spool_id": "3fa2b1c0", "next": 43}: the next sequence number
    000000000042.VMConnection.500.<id>.gz      one batch: sequence, table, records, batch id; the body as sent
    rejected/<same name> and <name>.reply.json batches the workspace refused for good, and its answer
    .<name>.tmp                                a batch being written (removed at start: never sent)
    agent.lock                                 flock'ed by the agent running on the spool; its pid

A batch id is ``<agent id>.<spool id>.<sequence>``: the agent id from machine_id_file, a random
spool id chosen when the spool is created (so an emptied spool never reuses an id the workspace
has stored), and a sequence number persisted in state.json before the batch is written. The
workspace stores a batch id once (``x-ms-batch-id``), so a batch sent again after a lost answer is
acknowledged as a duplicate and not stored twice.

Statistics (``Shipper.stats``, counters since start plus two gauges, ready to be shipped as metrics):
``STATS``.
"""
from __future__ import annotations

import gzip
import http.client
import json
import logging
import os
import random
import re
import secrets
import signal
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping
from urllib.parse import quote, urlsplit

import orjson

from .. import __version__
from ..auth import signed_headers
from ..errors import AgentError, CollectorUnavailable, SpoolBusy
from .config import AgentConfig, ConfigError, load_machine_id

log = logging.getLogger("netatlas.agent.ship")

STATS = (
    "enqueued_batches", "enqueued_records",     # written to the spool
    "sent_batches", "sent_records",             # acknowledged by the workspace (200)
    "duplicate_batches",                        # acknowledged as already stored (a resend after a lost answer)
    "rejected_batches", "rejected_records",     # refused for good (400...): moved to rejected/
    "quarantine_dropped_batches", "quarantine_dropped_records",   # rejected/ past quarantine_max_bytes
    "dropped_batches", "dropped_records",       # dropped from the spool at its cap, or not writable
    "send_failures",                            # flushes stopped by a refusal, an error or a timeout
    "spool_batches", "spool_bytes",             # gauges: what the spool holds now
    "quarantine_batches", "quarantine_bytes",   # gauges: what rejected/ holds now
)

BACKOFF_FIRST = 1.0    # seconds after a failed flush, doubling (with jitter) up to the backoff_max setting
RETRY_AFTER_MAX = 600.0                   # a server's Retry-After is honoured up to this many seconds
LOCK = "agent.lock"                       # flock'ed by the agent that uses the spool; holds its pid
REPLY_MAX_BYTES = 64 * 1024
STATE = "state.json"
REJECTED = "rejected"
TABLE = re.compile(r"[A-Za-z0-9_]{1,100}")
BATCH_FILE = re.compile(r"(\d{12})\.([A-Za-z0-9_]+)\.(\d+)\.([A-Za-z0-9._:\-]{1,128})\.gz")
JSON_OPTIONS = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z | orjson.OPT_SERIALIZE_NUMPY




# ---------------------------------------------------------------- sending

@dataclass(frozen=True)
class Reply:
    """The workspace's answer to one batch."""
    status: int
    body: bytes = b""
    retry_after: float | None = None   # the Retry-After header, in seconds (capped at RETRY_AFTER_MAX)

    def error(self) -> dict:
        try:
            err = json.loads(self.body).get("error")
        except (ValueError, AttributeError):
            err = None
        return err if isinstance(err, dict) else {"message": self.body[:300].decode("utf-8", "replace")}

    @property
    def duplicate(self) -> bool:
        try:
            return json.loads(self.body).get("duplicate") is True
        except (ValueError, AttributeError):
            return False


# send(table, gzipped body, batch id) -> Reply; raises OSError or http.client.HTTPException when
# there is no answer (refused, reset, timed out).
Send = Callable[[str, bytes, str], Reply]

DELIVERED, REJECTED_FOR_GOOD, RETRY = "delivered", "rejected", "retry"

# The statuses that may be final: the workspace refused this batch for what it holds. Final only
# when the answer says so (FINAL_WHEN); anything else is RETRY, the batch kept: 401/403 (a key or a
# clock can be fixed), 408, 429, 5xx, 507 (the workspace is busy or its storage failed), a 400/404
# without a code (a proxy's, a wrong URL), and no answer at all.
FINAL_STATUSES = (400, 404, 413, 415)
# codes that name the batch itself (its body, size, table or id) rather than the workspace's state
BATCH_CODES = frozenset({"INGEST_BAD_BODY", "INGEST_SHAPE", "INGEST_TOO_LARGE", "INGEST_UNKNOWN_TABLE",
                         "INGEST_READ_ONLY_TABLE", "INGEST_BAD_BATCH_ID"})
FINAL_WHEN = (
    lambda err: "record" in err or "field" in err,   # a record that does not fit its table
    lambda err: err.get("code") in BATCH_CODES,
)


def outcome(reply: Reply) -> str:
    """What becomes of a batch after ``reply``: DELIVERED, REJECTED_FOR_GOOD (quarantined) or RETRY."""
    if 200 <= reply.status < 300:
        return DELIVERED
    if reply.status in FINAL_STATUSES and any(test(reply.error()) for test in FINAL_WHEN):
        return REJECTED_FOR_GOOD
    return RETRY


def retry_after(value: str | None) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) -> seconds from now, capped; None if absent or bad."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX) if seconds == seconds else None


# X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH: the right certificate for another name
NAME_MISMATCH = dict.fromkeys((62, 64), "the certificate does not name the host of workspace_url: make it "
                              "with subjectAltName=IP:ADDRESS or DNS:NAME as the agents write the URL")
UNTRUSTED = ("the workspace's certificate is not trusted by this host: give it (or the CA that signed it) "
             "with --ca-file / ca_file")

# a kept-alive connection the server has closed in the meantime fails with one of these (over
# https the close arrives as TLS's end of stream: SSLEOFError, or SSLZeroReturnError)
STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, ConnectionAbortedError,
         ssl.SSLEOFError, ssl.SSLZeroReturnError)


class HttpSender:
    """``Send`` over HTTP(S) with one kept-alive connection: POST {base}/api/ingest/{table}.
    Connect and every read are limited by ``config.timeout``."""

    def __init__(self, config: AgentConfig):
        if config.missing():
            raise ConfigError("cannot send: missing " + ", ".join(s.name for s in config.missing()))
        url = urlsplit(config.workspace_url)
        self.config, self.https = config, url.scheme == "https"
        self.host, self.port, self.base = url.hostname, url.port, url.path.rstrip("/")
        self.context = self._tls_context(config) if self.https else None
        self.conn: http.client.HTTPConnection | None = None
        self.user_agent = f"netatlas-agent/{__version__}"

    @staticmethod
    def _tls_context(config: AgentConfig) -> ssl.SSLContext:
        if getattr(config, "tls_fingerprint", ""):     # a pinned (self-signed) workspace certificate
            from ..tlscert import pinned_context
            return pinned_context(config.tls_fingerprint)
        try:
            ctx = ssl.create_default_context(cafile=config.ca_file or None)
        except OSError as e:   # ssl.SSLError too: not PEM certificates
            raise ConfigError(f"ca_file: cannot load {config.ca_file} as PEM certificates to trust: "
                              f"{getattr(e, 'reason', None) or e.strerror or e}") from None
        if not config.verify_tls:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _connect(self) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.config.timeout,
                                               context=self.context)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.config.timeout)

    def _post(self, path: str, body: bytes, headers: dict) -> Reply:
        if self.conn is None:
            self.conn = self._connect()
        try:
            self.conn.request("POST", path, body=body, headers=headers)
            r = self.conn.getresponse()
            data = r.read(REPLY_MAX_BYTES)
            if r.will_close or not r.isclosed():   # closing, or an answer longer than we read
                self.close()
            return Reply(r.status, data, retry_after(r.getheader("Retry-After")))
        except BaseException:
            self.close()
            raise

    def __call__(self, table: str, body: bytes, batch_id: str) -> Reply:
        path = f"{self.base}/api/ingest/{quote(table)}"
        headers = signed_headers(self.config.workspace_id, self.config.key, body, path, gzipped=True,
                                 batch_id=batch_id)
        headers["User-Agent"] = self.user_agent
        reused = self.conn is not None
        try:
            return self._post(path, body, headers)
        except STALE:
            if not reused:
                raise
            return self._post(path, body, headers)   # the kept-alive connection was stale: once more, anew

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# ---------------------------------------------------------------- the spool

@dataclass(frozen=True)
class Spooled:
    seq: int
    table: str
    records: int
    batch_id: str
    size: int
    path: Path

    @classmethod
    def parse(cls, path: Path) -> "Spooled | None":
        m = BATCH_FILE.fullmatch(path.name)
        if not m:
            return None
        return cls(int(m[1]), m[2], int(m[3]), m[4], path.stat().st_size, path)


@dataclass
class FlushReport:
    """What one ``flush`` did; ``error`` says why it stopped early (None: the spool is empty)."""
    sent: int = 0
    duplicates: int = 0
    rejected: int = 0
    remaining: int = 0
    error: str | None = None
    retry_in: float = 0.0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """``data`` at ``path``, all or nothing: a temp file beside it, fsynced, renamed (the caller
    fsyncs the directory)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _batches(directory: Path) -> list[Spooled]:
    """The batch files in ``directory``, oldest first (none if it does not exist)."""
    try:
        paths = list(directory.iterdir())
    except FileNotFoundError:
        return []
    found = []
    for p in paths:
        try:
            if e := Spooled.parse(p):
                found.append(e)
        except FileNotFoundError:   # sent or resent meanwhile
            pass
    return sorted(found, key=lambda e: e.seq)


def pending(spool: str | os.PathLike) -> list[Spooled]:
    """The batches waiting in ``spool`` to be sent, oldest first."""
    return _batches(Path(spool))


def quarantined(spool: str | os.PathLike) -> list[Spooled]:
    """The batches the workspace refused for good, in ``spool``/rejected/, oldest first."""
    return _batches(Path(spool) / REJECTED)


class SpoolLock:
    """The spool held by one agent: an flock on ``agent.lock`` in it, which holds the holder's pid.
    The kernel releases it when the holder dies, however it dies."""

    def __init__(self, spool: str | os.PathLike):
        self.path = Path(spool) / LOCK
        self.fd: int | None = None

    def holder(self) -> str:
        try:
            return self.path.read_text(encoding="ascii").strip() or "unknown"
        except (OSError, UnicodeDecodeError):
            return "unknown"

    def acquire(self, what: str = "use") -> "SpoolLock":
        """Hold the spool, or SpoolBusy naming the live agent that holds it."""
        import fcntl
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise AgentError(f"cannot use the spool directory {self.path.parent}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolBusy(f"cannot {what} the spool {self.path.parent}: another agent (pid {self.holder()}) "
                            f"holds it ({self.path}); stop that agent first") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)   # closing the last descriptor drops the flock
            self.fd = None

    def __enter__(self) -> "SpoolLock":
        return self.acquire() if self.fd is None else self

    def __exit__(self, *exc) -> None:
        self.release()


def encode(records: list) -> bytes:
    """One batch body: the records as a JSON array, gzip-compressed."""
    return gzip.compress(orjson.dumps(records, option=JSON_OPTIONS), compresslevel=6, mtime=0)


class Shipper:
    """The spool and its sender. ``enqueue`` from the collecting thread; ``flush`` from one
    thread at a time (``start()`` runs it on the shipper's own thread). ``send`` defaults to
    ``HttpSender(config)``; tests pass their own."""

    def __init__(self, config: AgentConfig, send: Send | None = None, *, agent_id: str | None = None):
        self.config = config
        self._send = send
        self.agent_id = agent_id or load_machine_id(config.machine_id_file)
        self.dir = Path(config.spool)
        self.rejected_dir = self.dir / REJECTED
        self.stats: dict[str, int] = dict.fromkeys(STATS, 0)
        self._lock = threading.Lock()          # the spool index, the sequence and stats
        self._flush_lock = threading.Lock()    # one flush at a time
        self._entries: list[Spooled] = []      # oldest first
        self._inflight: Spooled | None = None  # being sent: the cap does not drop it
        self._failures = 0
        self.retry_at = 0.0                    # time.monotonic() before which the loop does not flush
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._open()

    # ---- opening: recover what a previous run left

    def _open(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)   # records name hosts and peers
            self.rejected_dir.mkdir(exist_ok=True, mode=0o700)
            for tmp in self.dir.glob(".*.tmp"):
                tmp.unlink()   # half-written before a crash: never renamed, so never counted or sent
            state = self._read_state()
            entries = sorted((e for p in self.dir.iterdir() if (e := Spooled.parse(p))), key=lambda e: e.seq)
            rejected = [int(m[1]) for p in self.rejected_dir.iterdir() if (m := BATCH_FILE.fullmatch(p.name))]
        except OSError as e:
            raise AgentError(f"cannot use the spool directory {self.dir}: {e.strerror or e}") from None
        self.spool_id = state["spool_id"]
        self._next = max([state["next"]] + [e.seq + 1 for e in entries] + [s + 1 for s in rejected])
        self._add(entries)
        if entries:
            log.info("spool %s: %d batches (%d bytes) from a previous run, to send first",
                     self.dir, len(entries), self.stats["spool_bytes"])
        with self._lock:
            self._enforce_cap()
        self._cap_quarantine()

    def _read_state(self) -> dict:
        try:
            state = json.loads((self.dir / STATE).read_text(encoding="utf-8"))
            if isinstance(state.get("spool_id"), str) and isinstance(state.get("next"), int):
                return state
            log.warning("spool %s: %s is not as expected; starting a new spool id", self.dir, STATE)
        except FileNotFoundError:
            pass
        except (ValueError, AttributeError):
            log.warning("spool %s: %s is not a JSON object; starting a new spool id", self.dir, STATE)
        state = {"spool_id": secrets.token_hex(4), "next": 0}
        self._write_state(state)
        return state

    def _write_state(self, state: dict) -> None:
        _write_atomic(self.dir / STATE, json.dumps(state).encode())
        _fsync_dir(self.dir)

    # the index and its gauges change only here (callers hold _lock, or are __init__)
    def _add(self, entries: list[Spooled]) -> None:
        self._entries.extend(entries)
        self.stats["spool_batches"] += len(entries)
        self.stats["spool_bytes"] += sum(e.size for e in entries)

    def _remove(self, entry: Spooled) -> bool:
        if entry not in self._entries:
            return False
        self._entries.remove(entry)
        self.stats["spool_batches"] -= 1
        self.stats["spool_bytes"] -= entry.size
        return True

    # ---- enqueue

    def batch_id(self, seq: int) -> str:
        return f"{self.agent_id}.{self.spool_id}.{seq}"

    def enqueue(self, table: str, records: Iterable[Mapping]) -> list[str]:
        """Write ``records`` of ``table`` to the spool as batches of at most batch_max_records;
        returns their batch ids. Never sends: the flush does. A spool that cannot be written
        drops the records (counted in dropped_*, logged) rather than raising."""
        records = list(records)   # a value orjson cannot serialize raises TypeError here
        if not records:
            return []
        if not TABLE.fullmatch(table):
            raise ValueError(f"not a table name: {table!r}")
        n = self.config.batch_max_records
        chunks = [records[i:i + n] for i in range(0, len(records), n)]
        bodies = [encode(chunk) for chunk in chunks]
        with self._lock:
            try:
                written = self._write_batches(table, chunks, bodies)
            except OSError as e:
                self.stats["dropped_batches"] += len(chunks)
                self.stats["dropped_records"] += len(records)
                log.error("spool %s not writable (%s): dropped %d %s records", self.dir, e.strerror or e,
                          len(records), table)
                return []
            self._add(written)
            self.stats["enqueued_batches"] += len(written)
            self.stats["enqueued_records"] += len(records)
            self._enforce_cap()
        self._wake.set()
        return [e.batch_id for e in written]

    def _write_batches(self, table: str, chunks: list[list], bodies: list[bytes]) -> list[Spooled]:
        first = self._next
        self._next += len(chunks)
        self._write_state({"spool_id": self.spool_id, "next": self._next})   # the ids are taken, even on a crash
        written = []
        for seq, chunk, body in zip(range(first, self._next), chunks, bodies):
            batch_id = self.batch_id(seq)
            path = self.dir / f"{seq:012d}.{table}.{len(chunk)}.{batch_id}.gz"
            _write_atomic(path, body)
            written.append(Spooled(seq, table, len(chunk), batch_id, len(body), path))
        _fsync_dir(self.dir)
        return written

    def _enforce_cap(self) -> None:
        """Drop the oldest batches (not the one being sent) until the spool fits its cap. Holds _lock."""
        cap, dropped = self.config.spool_max_bytes, []
        while self.stats["spool_bytes"] > cap:
            victim = next((e for e in self._entries if e is not self._inflight), None)
            if victim is None:
                break
            self._remove(victim)
            victim.path.unlink(missing_ok=True)
            dropped.append(victim)
        if dropped:
            self.stats["dropped_batches"] += len(dropped)
            self.stats["dropped_records"] += sum(e.records for e in dropped)
            log.warning("spool %s over its cap of %d bytes: dropped the %d oldest batches (%d records, "
                        "%s to %s); %d batches (%d records) dropped since start", self.dir, cap, len(dropped),
                        sum(e.records for e in dropped), dropped[0].batch_id, dropped[-1].batch_id,
                        self.stats["dropped_batches"], self.stats["dropped_records"])

    # ---- flush

    @property
    def sender(self) -> Send:
        if self._send is None:
            self._send = HttpSender(self.config)
        return self._send

    def pending(self) -> list[Spooled]:
        """The spooled batches, oldest first."""
        with self._lock:
            return list(self._entries)

    def flush(self, deadline: float | None = None, stop: threading.Event | None = None) -> FlushReport:
        """Send the spooled batches, oldest first, until the spool is empty, a batch fails
        (``report.error``; the loop waits ``report.retry_in`` seconds), ``deadline``
        (time.monotonic()) has passed or ``stop`` is set."""
        with self._flush_lock:
            report = FlushReport()
            while (deadline is None or time.monotonic() < deadline) and not (stop and stop.is_set()):
                with self._lock:
                    entry = self._inflight = self._entries[0] if self._entries else None
                if entry is None:
                    break
                try:
                    if not self._flush_one(entry, report):
                        break
                finally:
                    with self._lock:
                        self._inflight = None
            with self._lock:
                report.remaining = len(self._entries)
            if report.error is None:
                self._failures, self.retry_at = 0, 0.0
            return report

    def _flush_one(self, entry: Spooled, report: FlushReport) -> bool:
        try:
            body = entry.path.read_bytes()
        except FileNotFoundError:   # removed behind our back: nothing to send
            self._forget(entry)
            return True
        try:
            reply = self.sender(entry.table, body, entry.batch_id)
        except ssl.SSLCertVerificationError as e:
            return self._failed(entry, report, f"{type(e).__name__}: {e}; {self._why(e)}")
        except (OSError, http.client.HTTPException) as e:
            return self._failed(entry, report, f"{type(e).__name__}: {e}")
        what = outcome(reply)
        if what == DELIVERED:
            self._forget(entry)
            with self._lock:
                self.stats["sent_batches"] += 1
                self.stats["sent_records"] += entry.records
                self.stats["duplicate_batches"] += reply.duplicate
            report.sent += 1
            report.duplicates += reply.duplicate
            return True
        err = reply.error()
        text = f"{reply.status} {err.get('code', '')}: {err.get('message', '')}".replace(" :", ":")
        if what == REJECTED_FOR_GOOD:
            self._reject(entry, reply, text)
            report.rejected += 1
            return True
        return self._failed(entry, report, text, reply.retry_after)

    def _why(self, e: ssl.SSLCertVerificationError) -> str:
        """What to do about a certificate the agent refused."""
        if e.verify_code in NAME_MISMATCH:
            return NAME_MISMATCH[e.verify_code]
        if self.config.ca_file:
            return f"it is not signed by a certificate of ca_file {self.config.ca_file}"
        return UNTRUSTED

    def _forget(self, entry: Spooled) -> None:
        entry.path.unlink(missing_ok=True)
        with self._lock:
            self._remove(entry)

    def _reject(self, entry: Spooled, reply: Reply, text: str) -> None:
        kept = self.rejected_dir / entry.path.name
        try:
            os.replace(entry.path, kept)
            reply_doc = {"status": reply.status, "batch_id": entry.batch_id, "table": entry.table,
                         "records": entry.records, "error": reply.error()}
            _write_atomic(kept.with_name(kept.name + ".reply.json"), json.dumps(reply_doc, indent=2).encode())
            self._cap_quarantine()
        except OSError as e:
            log.warning("could not keep rejected batch %s in %s: %s", entry.batch_id, self.rejected_dir, e)
            entry.path.unlink(missing_ok=True)
        self._forget(entry)
        with self._lock:
            self.stats["rejected_batches"] += 1
            self.stats["rejected_records"] += entry.records
        log.error("the workspace refused batch %s (%d %s records) for good: %s; kept in %s", entry.batch_id,
                  entry.records, entry.table, text, kept)

    def _cap_quarantine(self) -> None:
        """rejected/ past quarantine_max_bytes: the oldest quarantined batches removed, each one
        counted (quarantine_dropped_*) and logged by id; the gauges updated."""
        batches = quarantined(self.dir)
        total, cap, dropped = sum(e.size for e in batches), self.config.quarantine_max_bytes, []
        while batches and total > cap:
            old = batches.pop(0)
            old.path.unlink(missing_ok=True)
            old.path.with_name(old.path.name + ".reply.json").unlink(missing_ok=True)
            total -= old.size
            dropped.append(old)
        with self._lock:
            self.stats["quarantine_batches"], self.stats["quarantine_bytes"] = len(batches), total
            if dropped:
                self.stats["quarantine_dropped_batches"] += len(dropped)
                self.stats["quarantine_dropped_records"] += sum(e.records for e in dropped)
        if dropped:
            log.error("quarantine %s over its cap of %d bytes (quarantine_max_bytes): deleted the %d oldest "
                      "refused batches (%d records): %s; %d batches (%d records) deleted so since start",
                      self.rejected_dir, cap, len(dropped), sum(e.records for e in dropped),
                      ", ".join(e.batch_id for e in dropped), self.stats["quarantine_dropped_batches"],
                      self.stats["quarantine_dropped_records"])

    def _failed(self, entry: Spooled, report: FlushReport, text: str, retry_in: float | None = None) -> bool:
        self._failures += 1
        delay = min(self.config.backoff_max, BACKOFF_FIRST * 2 ** (self._failures - 1)) * random.uniform(0.5, 1.0)
        if retry_in is not None:   # the workspace said when (Retry-After): not sooner, capped
            delay = max(delay, retry_in)
        self.retry_at = time.monotonic() + delay
        with self._lock:
            self.stats["send_failures"] += 1
        report.error, report.retry_in = text, delay
        log.warning("cannot send batch %s to %s: %s; %d batches kept in the spool, next try in %.1f s",
                    entry.batch_id, self.config.workspace_url, text, len(self._entries), delay)
        return False

    # ---- the shipper's thread

    def start(self) -> "Shipper":
        """Flush on a thread of its own: when woken by ``enqueue``, once a backoff has passed."""
        self._thread = threading.Thread(target=self._loop, name="netatlas-ship", daemon=True)
        self._wake.set()   # whatever a previous run left goes first
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._closing.is_set():
            wait = self.retry_at - time.monotonic()
            if wait > 0:   # backing off: enqueue does not hurry it
                self._closing.wait(wait)
                continue
            if not self.pending():   # nothing to send: until enqueue (or close) wakes us
                self._wake.wait()
                self._wake.clear()
                continue
            self._wake.clear()
            try:
                self.flush(stop=self._closing)
            except Exception:   # a bug must not end shipping: log it and try again later
                log.exception("flush failed")
                self.retry_at = time.monotonic() + self.config.backoff_max

    def close(self, timeout: float | None = None) -> None:
        """Stop the thread; one last flush for at most ``timeout`` seconds (default config.timeout)
        unless in backoff. What is not sent stays in the spool for the next start."""
        self._closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.pending() and time.monotonic() >= self.retry_at:
            self.flush(deadline=time.monotonic() + (self.config.timeout if timeout is None else timeout))
        close = getattr(self._send, "close", None)
        if close:
            close()

    def __enter__(self) -> "Shipper":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------- the agent's loop

# collect() -> {table: [records]}: what was observed since its previous call.
Collect = Callable[[], Mapping[str, Iterable[Mapping]]]


def run(config: AgentConfig, collect: Collect, *, stop: threading.Event | None = None,
        shipper: Shipper | None = None) -> dict[str, int]:
    """Call ``collect()`` every ``config.interval`` seconds and enqueue what it returns, while the
    shipper flushes on its own thread; until ``stop`` is set. Returns the shipper's stats.
    A collect() that raises is logged and counted (``collect_errors``); the loop goes on."""
    stop = stop or threading.Event()
    shipper = shipper or Shipper(config)
    shipper.stats.setdefault("collect_errors", 0)
    shipper.start()
    try:
        next_at = time.monotonic() + config.interval
        try:
            while not stop.wait(max(0.0, next_at - time.monotonic())):
                next_at = max(next_at + config.interval, time.monotonic())   # late: skip, do not bunch up
                try:
                    for table, records in collect().items():
                        shipper.enqueue(table, records)
                except Exception:
                    shipper.stats["collect_errors"] += 1
                    log.exception("collect() failed; trying again in %g s", config.interval)
        except KeyboardInterrupt:
            pass
        last_minute(collect, shipper)
    finally:
        shipper.close()           # one last flush; what it cannot send stays in the spool
    return dict(shipper.stats)


def last_minute(collect: Collect, shipper: Shipper) -> None:
    """Stopping: the collector's open minute (``collect.final()``, where it has one) enqueued, so
    it is sent by the last flush or kept in the spool for the next start."""
    final = getattr(collect, "final", None)
    if final is None:
        return
    try:
        records = final()
    except Exception:
        shipper.stats["collect_errors"] += 1
        log.exception("the open minute could not be closed")
        return
    for table, rows in records.items():
        shipper.enqueue(table, rows)
    log.info("netatlas agent: the open minute closed: %s",
             ", ".join(f"{len(rows)} {table}" for table, rows in records.items()) or "nothing to send")


# where the collector plugs in: COLLECTOR[0].COLLECTOR[1](config) -> Collect, joining the observe
# stages (netlink.py, proc.py) and the aggregate stage (records.py)
COLLECTOR = ("netatlas.agent.collect", "collector")


def find_collector(config: AgentConfig) -> Collect:
    """This host's collector (``COLLECTOR``), or CollectorUnavailable while it does not exist."""
    import importlib
    import importlib.util
    module, name = COLLECTOR
    if importlib.util.find_spec(module) is not None:
        factory = getattr(importlib.import_module(module), name, None)
        if factory is not None:
            return factory(config)
    raise CollectorUnavailable(f"collector not available yet: this build of netatlas has no agent collector "
                               f"({module}.{name}); the configuration is valid (`netatlas agent run --check` "
                               f"prints it), but there is nothing to collect and ship")


# ---------------------------------------------------------------- netatlas agent run

def run_arguments(p) -> None:
    p.add_argument("--check", action="store_true",
                   help="check the configuration, print it (the key hidden) and exit")


def cmd_run(args, config: AgentConfig) -> int:
    if args.check:
        print(config.describe(), end="")
        return 0
    # before the collector starts: what it says while starting (which collector, why not another) is logged too
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from ..errors import UsageError
    try:   # before anything else: a second agent on this spool would send the same batch ids
        lock = SpoolLock(config.spool).acquire("run an agent on")
    except AgentError as e:
        raise UsageError(str(e)) from None
    collect = find_collector(config)
    stop = threading.Event()
    stop_on_signals(stop)
    watch_parent(stop)
    exit_after_stop(stop, config.timeout + STOP_GRACE)
    shipper = Shipper(config)
    shipper.sender   # a ca_file that cannot be loaded: refused now, not at the first batch
    log.info("netatlas agent: shipping to %s every %g s (spool %s)", config.workspace_url, config.interval,
             config.spool)
    try:
        run(config, collect, stop=stop, shipper=shipper)
    except KeyboardInterrupt:
        pass
    finally:   # what this run did, drops and refusals included: the counters are not shipped anywhere else
        log.info("netatlas agent: stopped; %s", " ".join(f"{k}={v}" for k, v in shipper.stats.items()))
        lock.release()
    return 0


PARENT_ENV = "NETATLAS_AGENT_PARENT"   # set by `netatlas up`: the agent stops when that process is gone
STOP_GRACE = 5.0                        # seconds past the last flush's timeout that stopping may take


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM, SIGHUP and SIGINT (Ctrl-C) set ``stop``: the agent stops between two collections.
    Ctrl-C as Python's KeyboardInterrupt, raised wherever the main thread was (a netlink dump half
    read, a lock held), could leave the open minute's close waiting forever."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda *_: stop.set())


def exit_after_stop(stop: threading.Event, seconds: float) -> None:
    """Once ``stop`` is set (SIGTERM, SIGHUP, the parent gone), the process ends within ``seconds``
    even if shutting down hangs (a send, a collector): the spool is on disk, so nothing is lost, and
    an agent must never outlive the ``up`` that started it."""
    def deadline():
        stop.wait()
        log.info("netatlas agent: stopping (at most %g s)", seconds)
        time.sleep(seconds)
        log.error("netatlas agent: still running %g s after it was asked to stop; exiting now", seconds)
        logging.shutdown()
        os._exit(1)
    threading.Thread(target=deadline, name="netatlas-stop-deadline", daemon=True).start()


def watch_parent(stop: threading.Event, environ: Mapping[str, str] = os.environ) -> None:
    """An agent started by ``netatlas up`` stops with it: on Linux the kernel sends SIGTERM
    (PR_SET_PDEATHSIG, set by up in the child); elsewhere, and as a second line, a thread sees the
    parent pid change (the agent re-parented) and sets ``stop``."""
    parent = environ.get(PARENT_ENV)
    if not parent or not parent.isdigit():
        return

    def watch():
        while not stop.wait(1.0):
            if os.getppid() != int(parent):
                log.warning("netatlas agent: its parent (pid %s) is gone; stopping", parent)
                stop.set()
    threading.Thread(target=watch, name="netatlas-parent-watch", daemon=True).start()


# ---------------------------------------------------------------- netatlas agent spool list|resend

SPOOL_COLUMNS = ("state", "id", "table", "records", "bytes", "age", "why")


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _why(entry: Spooled) -> str:
    """Why a quarantined batch was refused: its saved answer, in one line."""
    try:
        doc = json.loads(entry.path.with_name(entry.path.name + ".reply.json").read_text(encoding="utf-8"))
        err = doc.get("error") or {}
        where = "".join(f" {k}={err[k]}" for k in ("record", "field") if k in err)
        return f"{doc.get('status')} {err.get('code', '')}{where}: {err.get('message', '')}".replace(" :", ":")
    except (OSError, ValueError, AttributeError):
        return "(no saved answer)"


def spool_rows(spool: str | os.PathLike, now: float | None = None) -> list[dict]:
    """The pending and quarantined batches of ``spool``, oldest first, as ``SPOOL_COLUMNS`` rows."""
    now = time.time() if now is None else now
    rows = []
    for state, entries in (("pending", pending(spool)), ("quarantined", quarantined(spool))):
        for e in entries:
            try:
                age = _age(max(0.0, now - e.path.stat().st_mtime))
            except FileNotFoundError:
                continue
            rows.append({"state": state, "id": e.batch_id, "table": e.table, "records": e.records,
                         "bytes": e.size, "age": age, "why": _why(e) if state == "quarantined" else ""})
    return rows


def resend(spool: str | os.PathLike, ids: Iterable[str] = (), *, every: bool = False) -> list[Spooled]:
    """Move quarantined batches (by batch id or sequence number; ``every``: all) back to the queue,
    holding the spool's lock (SpoolBusy while an agent runs on it). Unknown ids: AgentError."""
    spool = Path(spool)
    with SpoolLock(spool).acquire("resend batches of"):
        batches = quarantined(spool)
        if every:
            chosen = batches
        else:
            by_id = {**{str(e.seq): e for e in batches}, **{e.batch_id: e for e in batches}}
            unknown = [i for i in ids if i not in by_id]
            if unknown:
                raise AgentError(f"not quarantined in {spool / REJECTED}: {', '.join(unknown)} "
                                 f"(`netatlas agent spool list` shows the ids)")
            chosen = list({by_id[i].seq: by_id[i] for i in ids}.values())
        for e in chosen:
            os.replace(e.path, spool / e.path.name)
            e.path.with_name(e.path.name + ".reply.json").unlink(missing_ok=True)
        if chosen:
            _fsync_dir(spool)
        return chosen


def spool_arguments(p) -> None:
    import argparse
    sub = p.add_subparsers(dest="spool_action", metavar="list|resend", required=True)
    sub.add_parser("list", help="the pending and quarantined batches: id, table, records, bytes, age, why "
                                "quarantined")
    r = sub.add_parser("resend", help="move quarantined batches back to the queue (while no agent runs on the spool)")
    r.add_argument("ids", nargs="*", metavar="ID", help="batch ids (or sequence numbers) as `spool list` shows them")
    r.add_argument("--all", action="store_true", help="every quarantined batch")
    for q in sub.choices.values():   # the spool's settings after the action too (`spool list --spool DIR`)
        q.add_argument("--spool", default=argparse.SUPPRESS, help="the spool directory (as for `agent run`)")
        q.add_argument("--config", default=argparse.SUPPRESS, help="a TOML file of settings (as for `agent run`)")


def cmd_spool(args, config: AgentConfig) -> int:
    from ..errors import UsageError
    if args.spool_action == "list":
        rows = spool_rows(config.spool)
        if not rows:
            print(f"spool {config.spool}: empty")
            return 0
        widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in SPOOL_COLUMNS}
        print("  ".join(c.ljust(widths[c]) for c in SPOOL_COLUMNS).rstrip())
        for r in rows:
            print("  ".join(str(r[c]).ljust(widths[c]) for c in SPOOL_COLUMNS).rstrip())
        return 0
    if bool(args.ids) == bool(args.all):
        raise UsageError("agent spool resend: give batch ids or --all (one of the two)")
    try:
        moved = resend(config.spool, args.ids, every=args.all)
    except AgentError as e:
        raise UsageError(str(e)) from None
    print(f"{len(moved)} quarantined batches ({sum(e.records for e in moved)} records) moved back to the queue "
          f"of {config.spool}; the agent sends them when it next runs")
    return 0
