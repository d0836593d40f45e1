"""The workspace's identity and keys: ``DIR/workspace.json``.

A workspace has one id (a UUID) and any number of keys. A key has a role: ``ingest`` keys sign
the batches agents send (the SharedKey scheme of ``netatlas.auth``), ``query`` keys are the
bearer tokens of the query API. Neither role can do the other's work.

    {"id": "6f1c…", "created": "2024-05-01T10:00:00Z",
     "keys": [{"id": "k_3fa2b1c0", "role": "ingest", "secret": "<base64 of 32 random bytes>",
               "created": "2024-05-01T10:00:00Z"}, …]}

The file is created on first use with one key of each role, with mode 0600 (the secrets are in
it), and always replaced whole (written beside it, flushed, renamed), under an advisory lock so
that ``netatlas keys create`` and a starting server never interleave.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

WORKSPACE_FILE = "workspace.json"
LOCK_FILE = ".workspace.json.lock"
ROLES = ("ingest", "query")
SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class Key:
    id: str
    role: str
    secret: str       # base64 of SECRET_BYTES random bytes
    created: str      # RFC 3339, UTC

    @property
    def secret_bytes(self) -> bytes:
        return base64.b64decode(self.secret)


@dataclass(frozen=True, slots=True)
class Identity:
    """What workspace.json holds; ``new`` is true when this call created the file."""
    workspace_id: str
    created: str
    keys: tuple[Key, ...]
    new: bool = False

    def by_role(self, role: str) -> list[Key]:
        return [k for k in self.keys if k.role == role]

    def to_json(self) -> dict:
        return {"id": self.workspace_id, "created": self.created,
                "keys": [asdict(k) for k in self.keys]}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_key(role: str) -> Key:
    if role not in ROLES:
        raise ValueError(f"a key's role is one of {', '.join(ROLES)}, not {role!r}")
    secret = base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")
    return Key(id=f"k_{secrets.token_hex(4)}", role=role, secret=secret, created=_now())


def path_of(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / WORKSPACE_FILE


@contextmanager
def _locked(data_dir: Path):
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)   # closing releases the lock


def _read(path: Path) -> Identity:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        keys = tuple(Key(id=k["id"], role=k["role"], secret=k["secret"], created=k["created"])
                     for k in data["keys"])
        return Identity(workspace_id=data["id"], created=data["created"], keys=keys)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a netatlas workspace identity file: {e}") from None


def _write(path: Path, ident: Identity) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (json.dumps(ident.to_json(), indent=2) + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load(data_dir: str | os.PathLike) -> Identity:
    """The identity of an existing workspace; FileNotFoundError when there is none yet."""
    return _read(path_of(data_dir))


def load_or_create(data_dir: str | os.PathLike) -> Identity:
    """The workspace's identity, creating it (an id, one ingest key, one query key) on first use."""
    path = path_of(data_dir)
    with _locked(Path(data_dir)):
        if path.exists():
            return _read(path)
        ident = Identity(workspace_id=str(uuid.uuid4()), created=_now(),
                         keys=(new_key("ingest"), new_key("query")))
        _write(path, ident)
        return Identity(ident.workspace_id, ident.created, ident.keys, new=True)


def create_key(data_dir: str | os.PathLike, role: str) -> Key:
    """Add a key of the given role (creating the workspace identity if needed) and return it."""
    key = new_key(role)
    load_or_create(data_dir)
    path = path_of(data_dir)
    with _locked(Path(data_dir)):
        ident = _read(path)
        _write(path, Identity(ident.workspace_id, ident.created, ident.keys + (key,)))
    return key


def list_keys(data_dir: str | os.PathLike) -> list[Key]:
    """Every key of the workspace, oldest first (creating the identity if needed)."""
    return list(load_or_create(data_dir).keys)


class KeyStore:
    """The identity as a running server sees it: re-read when workspace.json changes on disk,
    so a key added with ``netatlas keys create`` works without a restart."""

    def __init__(self, data_dir: str | os.PathLike):
        self.path = path_of(data_dir)
        self._identity = load_or_create(data_dir)
        self._stamp = self._stat()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    @property
    def identity(self) -> Identity:
        stamp = self._stat()
        if stamp is not None and stamp != self._stamp:
            try:
                self._identity = _read(self.path)
                self._stamp = stamp
            except (OSError, ValueError):
                pass   # a half-visible file: keep the keys we had
        return self._identity
