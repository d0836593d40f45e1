"""The workspace's identity and keys: ``DIR/workspace.json``.

A workspace has one id (a UUID) and any number of keys. A key has a role (``ROLES``):
``ingest`` keys sign the batches agents send (the SharedKey scheme of ``netatlas.auth``), ``query``
keys are the bearer tokens of the query API, ``admin`` keys do what changes the workspace (threat
intelligence import, retention changes, keys, backup) and can also query and sign batches for the
tables only an admin may write (``ThreatIntelligenceIndicator``).

    {"id": "6f1c…", "created": "2024-05-01T10:00:00Z",
     "keys": [{"id": "k_3fa2b1c0", "role": "ingest", "secret": "<base64 of 32 random bytes>",
               "created": "2024-05-01T10:00:00Z"},
              {"id": "k_77e0c1d2", "role": "query", "hash": "sha256:<hex>", "prefix": "q3Zx",
               "created": "2024-05-01T10:00:00Z"}, …]}

Ingest keys keep their secret (the server needs it to check an HMAC); query and admin keys are
stored as the SHA-256 of their secret (``HASHED_ROLES``); an admin key signs a batch (for a table
only an admin may write) with that SHA-256 as its HMAC key (``Key.signing_key``): the secret is shown once, when the key
is created or rotated, and ``keys list`` shows its first characters (``prefix``). A workspace.json
of an older release (ingest and query keys, secrets in clear) is upgraded on first load: its
query secrets are hashed and an admin key is added (``Identity.fresh`` holds it, to print once).

The file is created on first use with one key of each role, with mode 0600 (the secrets are in
it), and always replaced whole (written beside it, flushed, renamed), under an advisory lock so
that ``netatlas keys create`` and a starting server never interleave.
"""
from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

WORKSPACE_FILE = "workspace.json"
LOCK_FILE = ".workspace.json.lock"
ROLES = ("ingest", "query", "admin")
HASHED_ROLES = ("query", "admin")      # stored as a hash: the secret is shown once
SECRET_BYTES = 32
PREFIX_CHARS = 6


@dataclass(frozen=True, slots=True)
class Key:
    id: str
    role: str
    secret: str       # base64 of SECRET_BYTES random bytes; "" for a hashed key read from disk
    created: str      # RFC 3339, UTC
    hash: str = ""    # "sha256:<hex of SHA-256 of the secret>" (query and admin keys)
    prefix: str = ""  # the secret's first PREFIX_CHARS characters, to tell keys apart

    @property
    def secret_bytes(self) -> bytes:
        return base64.b64decode(self.secret)

    @property
    def signing_bytes(self) -> bytes:
        """The HMAC key of the SharedKey signature: an ingest key's secret; for a hashed key
        (query, admin) the SHA-256 of its secret, which is what the server keeps."""
        if self.hash:
            return bytes.fromhex(self.hash.partition(":")[2])
        if self.role in HASHED_ROLES:
            return hashlib.sha256(self.secret.encode("utf-8")).digest()
        return self.secret_bytes

    @property
    def signing_key(self) -> str:
        """``signing_bytes`` as base64: what a client gives ``auth.signed_headers`` (and Azure tools
        take as the "shared key")."""
        return base64.b64encode(self.signing_bytes).decode("ascii")

    @property
    def hashed(self) -> bool:
        return bool(self.hash)

    def matches(self, presented: str) -> bool:
        """Whether ``presented`` is this key's secret (constant-time)."""
        if self.hash:
            return hmac.compare_digest(secret_hash(presented), self.hash)
        return bool(self.secret) and hmac.compare_digest(self.secret.encode("ascii"),
                                                         presented.encode("utf-8", "replace"))

    def stored(self) -> dict:
        """What workspace.json holds for this key."""
        if self.role in HASHED_ROLES:
            return {"id": self.id, "role": self.role, "hash": self.hash or secret_hash(self.secret),
                    "prefix": self.prefix or self.secret[:PREFIX_CHARS], "created": self.created}
        return {"id": self.id, "role": self.role, "secret": self.secret, "created": self.created}


def secret_hash(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True, slots=True)
class Identity:
    """What workspace.json holds; ``new`` is true when this call created the file."""
    workspace_id: str
    created: str
    keys: tuple[Key, ...]
    new: bool = False
    fresh: tuple[Key, ...] = ()     # keys created by this call, with their secrets (to show once)

    def by_role(self, role: str) -> list[Key]:
        return [k for k in self.keys if k.role == role]

    def to_json(self) -> dict:
        return {"id": self.workspace_id, "created": self.created,
                "keys": [k.stored() for k in self.keys]}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_key(role: str) -> Key:
    if role not in ROLES:
        raise ValueError(f"a key's role is one of {', '.join(ROLES)}, not {role!r}")
    return _with_secret(Key(id=f"k_{secrets.token_hex(4)}", role=role, secret="", created=_now()))


def _with_secret(key: Key) -> Key:
    """``key`` with a new random secret (and its hash and prefix, for a hashed role)."""
    secret = base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")
    hashed = key.role in HASHED_ROLES
    return replace(key, secret=secret, hash=secret_hash(secret) if hashed else "",
                   prefix=secret[:PREFIX_CHARS] if hashed else "")


def make_private_dir(path: str | os.PathLike) -> Path:
    """Create the data directory (and parents) with mode 0700; an existing one is tightened to 0700."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        try:
            os.chmod(path, 0o700)
        except OSError:
            pass
    return path


def path_of(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / WORKSPACE_FILE


@contextmanager
def _locked(data_dir: Path):
    make_private_dir(data_dir)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)   # closing releases the lock


def _read(path: Path) -> Identity:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        keys = tuple(Key(id=k["id"], role=k["role"], secret=k.get("secret", ""), created=k["created"],
                         hash=k.get("hash", ""), prefix=k.get("prefix", "")) for k in data["keys"])
        bad = [k.id for k in keys if k.role not in ROLES or not (k.secret or k.hash)]
        if bad:
            raise ValueError(f"key {bad[0]} has no secret or hash, or a role other than {', '.join(ROLES)}")
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


def _upgraded(ident: Identity) -> Identity | None:
    """An identity of an older release brought up to date (query secrets hashed, an admin key
    added), or None when it is up to date."""
    clear = any(k.role in HASHED_ROLES and k.secret and not k.hash for k in ident.keys)
    admin = () if ident.by_role("admin") else (new_key("admin"),)
    if not clear and not admin:
        return None
    keys = tuple(replace(k, hash=secret_hash(k.secret), prefix=k.secret[:PREFIX_CHARS])
                 if k.role in HASHED_ROLES and not k.hash else k for k in ident.keys)
    return Identity(ident.workspace_id, ident.created, keys + admin, fresh=admin)


def load_or_create(data_dir: str | os.PathLike) -> Identity:
    """The workspace's identity, creating it (an id, one key of each role) on first use, or
    upgrading an older one (``_upgraded``). The keys created by this call keep their secrets in
    the returned Identity (``fresh``); on disk, query and admin keys are hashes."""
    path = path_of(data_dir)
    with _locked(Path(data_dir)):
        if path.exists():
            ident = _read(path)
            upgraded = _upgraded(ident)
            if upgraded is None:
                return ident
            _write(path, upgraded)
            return upgraded
        fresh = tuple(new_key(role) for role in ROLES)
        ident = Identity(workspace_id=str(uuid.uuid4()), created=_now(), keys=fresh, new=True, fresh=fresh)
        _write(path, ident)
        return ident


def create_key(data_dir: str | os.PathLike, role: str) -> Key:
    """Add a key of the given role (creating the workspace identity if needed) and return it."""
    key = new_key(role)
    load_or_create(data_dir)
    path = path_of(data_dir)
    with _locked(Path(data_dir)):
        ident = _read(path)
        _write(path, Identity(ident.workspace_id, ident.created, ident.keys + (key,)))
    return key


def _change(data_dir: str | os.PathLike, key_id: str, change) -> Key:
    """Apply ``change(key) -> Key | None`` (None: remove it) to one key; KeyError when no key has the id."""
    load_or_create(data_dir)
    path = path_of(data_dir)
    with _locked(Path(data_dir)):
        ident = _read(path)
        found = next((k for k in ident.keys if k.id == key_id), None)
        if found is None:
            raise KeyError(f"no key {key_id!r} in this workspace; the keys are "
                           f"{', '.join(k.id for k in ident.keys)}")
        new = change(found)
        keys = tuple(k for k in (new if k is found else k for k in ident.keys) if k is not None)
        _write(path, Identity(ident.workspace_id, ident.created, keys))
    return new or found


def revoke_key(data_dir: str | os.PathLike, key_id: str) -> Key:
    """Remove a key: requests signed or authorized with it are refused from now on."""
    return _change(data_dir, key_id, lambda k: None)


def rotate_key(data_dir: str | os.PathLike, key_id: str) -> Key:
    """Give a key a new secret (same id and role), returned with the secret to show once."""
    return _change(data_dir, key_id, _with_secret)


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
