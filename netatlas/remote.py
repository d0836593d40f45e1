"""A workspace held by its running server, queried through ``POST /api/query``.

``netatlas query`` and ``netatlas shell`` open the workspace directory themselves; when a server
holds it (``WorkspaceBusyError``), ``through_server`` finds that server in ``DIR/server.json``
(``discovery.py``) and returns a ``RemoteWorkspace``: the same ``query()`` as a Workspace, with
a query key of ``DIR/workspace.json``, giving the same ``Result`` and raising the same errors
(a ``KqlError`` with its span, so the caret is printed as for a local query).
"""
from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from . import discovery
from .catalogue import Catalogue
from .errors import KqlError, NetatlasError, QueryExecutionError, QueryLimitError, ServerUnavailableError
from .result import Result

# seconds the client waits beyond the query's own time limit (the server answers 504 at that limit)
REPLY_GRACE = 30.0
# codes of the server's error answers that are not a KqlError: code -> the error a local query raises
RUNTIME_ERRORS = {"KQL_TIMEOUT": QueryLimitError, "KQL_RUNTIME": QueryExecutionError}




def pinned_context(cafile: str) -> ssl.SSLContext:
    """TLS that trusts exactly the server's own certificate (server.json's cafile, self-signed or
    not): the server of DIR is found through a file only DIR's owner reads, on this machine, so the
    name it is reached by (loopback) need not be in its certificate."""
    context = ssl.create_default_context(cafile=cafile)
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.check_hostname = False
    return context


class RemoteWorkspace:
    """The query side of a Workspace, answered by the server at ``url``."""

    def __init__(self, data_dir: Path, published: discovery.Published, token: str):
        self.path, self.published, self.token = data_dir, published, token
        self.url = published.url
        self.catalogue = Catalogue.load()     # the server's tables: the catalogue is part of the package
        self._ssl = pinned_context(published.cafile) if published.cafile else None

    def query(self, text: str, *, params: dict | None = None, timeout: float | None = None,
              max_rows: int | None = None) -> Result:
        body = {"query": text}
        if params:
            body["parameters"] = params
        if max_rows is not None:
            body["max_rows"] = max_rows
        if timeout is not None:
            body["timeout"] = timeout
        req = urllib.request.Request(self.url + "/api/query", data=json.dumps(body).encode("utf-8"), method="POST",
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        wait = (timeout or 0) + REPLY_GRACE
        try:
            with urllib.request.urlopen(req, timeout=wait, context=self._ssl) as r:   # noqa: S310 (DIR's own server)
                answer = r.read()
        except urllib.error.HTTPError as e:
            raise self._error(e, text) from None
        except (OSError, ValueError) as e:
            raise ServerUnavailableError(f"the workspace server of {self.path} at {self.url} (pid "
                                         f"{self.published.pid}) did not answer: {getattr(e, 'reason', e)}") from None
        try:
            return Result.from_json(json.loads(answer))
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise NetatlasError(f"{self.url}/api/query answered something that is not a query result "
                                f"({type(e).__name__}: {e})") from None

    def _error(self, e: urllib.error.HTTPError, text: str) -> NetatlasError:
        try:
            info = json.loads(e.read())["error"]
            code, message = info["code"], info["message"]
        except (ValueError, KeyError, TypeError):
            return NetatlasError(f"{self.url}/api/query answered {e.code} {e.reason}")
        if code in RUNTIME_ERRORS:
            return RUNTIME_ERRORS[code](message)
        if code.startswith("KQL"):
            return KqlError.from_json(info, text)
        if e.code in (401, 403):
            return NetatlasError(f"the server at {self.url} refused the local token of "
                                 f"{self.published.path}: {message}")
        return NetatlasError(f"{self.url}/api/query answered {e.code} {code}: {message}")

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def through_server(data_dir: str | os.PathLike) -> RemoteWorkspace:
    """The server holding ``data_dir``, or an error saying why there is none to ask."""
    data_dir = Path(data_dir)
    try:
        published = discovery.read(data_dir)
    except FileNotFoundError:
        raise ServerUnavailableError(
            f"the workspace in {data_dir} is held by another process, and no workspace server has "
            f"published its address in {discovery.path_of(data_dir)}; another `netatlas shell`, "
            f"`query` or `demo` may be using it: wait for it or stop it") from None
    except (OSError, ValueError) as e:
        raise ServerUnavailableError(f"the workspace in {data_dir} is held by another process, and "
                                     f"{discovery.path_of(data_dir)} cannot be read: {e}") from None
    if not published.alive():
        raise ServerUnavailableError(
            f"the workspace in {data_dir} is held by another process, but the server named in "
            f"{published.path} (pid {published.pid}, {published.url}, started {published.started}) is no "
            f"longer running; that file is stale")
    if not published.token:     # query keys are hashed: the server's per-run token is the local way in
        raise ServerUnavailableError(f"the workspace in {data_dir} is served at {published.url}, but "
                                     f"{published.path} holds no local token (a server of an older release?); "
                                     f"restart it, or query it with a query key over HTTP")
    return RemoteWorkspace(data_dir, published, published.token)
