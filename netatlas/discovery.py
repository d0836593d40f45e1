"""``DIR/server.json``: where the workspace server of DIR listens, for commands that cannot open DIR.

DuckDB lets one process hold a workspace file; while ``netatlas up`` or ``netatlas workspace
serve`` runs, ``netatlas query`` and ``netatlas shell`` find the server here and ask it instead
(``remote.py``). The server writes the file once it listens and removes it when it stops:

    {"url": "http://127.0.0.1:8080", "pid": 4242, "started": "2024-05-01T10:00:00Z"}

An optional ``"cafile"`` names the certificate authority a client verifies an https server with.
``"token"`` is a random bearer token made for this run of the server: query and admin keys are
stored hashed (``keys.py``), so local commands cannot read one; the token lets a user who can read
DIR (0700) query the server on this machine, and dies with the run.
The file is written beside its place and renamed (never seen half-written), with mode 0600.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

SERVER_FILE = "server.json"
# addresses that mean "every interface": a client on this machine reaches them at loopback
ANY_ADDRESS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


@dataclass(frozen=True)
class Published:
    """What server.json says; ``path`` is the file it was read from."""
    url: str
    pid: int
    started: str
    path: Path
    cafile: str | None = None
    token: str | None = None

    def alive(self) -> bool:
        """Whether the process named by ``pid`` still runs (on this machine)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:     # it runs, as another user
            return True
        return True


def path_of(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / SERVER_FILE


def url_for(host: str, port: int, scheme: str = "http") -> str:
    """The URL a client on this machine uses for a server bound to ``host``:``port``."""
    host = ANY_ADDRESS.get(host, host)
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def new_token() -> str:
    """A per-run local token (``"token"`` of server.json)."""
    import secrets
    return "local_" + secrets.token_urlsafe(32)


def publish(data_dir: str | os.PathLike, url: str, *, cafile: str | None = None,
            token: str | None = None) -> Path:
    """Write server.json for this process (atomically, mode 0600); returns its path."""
    path = path_of(data_dir)
    doc = {"url": url, "pid": os.getpid(),
           "started": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    if cafile:
        doc["cafile"] = str(cafile)
    if token:
        doc["token"] = token
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (json.dumps(doc, indent=2) + "\n").encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def withdraw(data_dir: str | os.PathLike) -> None:
    """Remove server.json if this process wrote it (a later server's file stays)."""
    path = path_of(data_dir)
    try:
        if read(data_dir).pid == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def read(data_dir: str | os.PathLike) -> Published:
    """The published server of DIR; FileNotFoundError when none, ValueError when unreadable."""
    path = path_of(data_dir)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return Published(url=str(doc["url"]).rstrip("/"), pid=int(doc["pid"]), started=str(doc.get("started", "")),
                         path=path, cafile=doc.get("cafile") or None, token=doc.get("token") or None)
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a server address file: {e}") from None


def live_url(data_dir: str | os.PathLike) -> str | None:
    """The url of the server holding ``data_dir`` when server.json names a live process, else None."""
    try:
        published = read(data_dir)
    except (OSError, ValueError):
        return None
    return published.url if published.alive() else None
