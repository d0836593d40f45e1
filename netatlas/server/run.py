"""``serve``: the workspace server under uvicorn, with a banner naming the workspace, its keys and URLs.

uvicorn handles SIGINT and SIGTERM: it stops accepting connections, lets running requests end
(up to ``SHUTDOWN_GRACE`` seconds), then the app's lifespan stops the retention schedule and
closes the workspace, so DuckDB checkpoints and releases its file lock.

Once it listens, the server publishes its URL in ``DIR/server.json`` (``discovery.py``), so
``netatlas query`` and ``netatlas shell`` can ask it while it holds the workspace; the file is
removed when the server stops.
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from pathlib import Path
from typing import Callable, TextIO

from .. import __version__
from .. import discovery
from ..keys import Identity, load_or_create, make_private_dir
from .settings import Settings

SHUTDOWN_GRACE = 10


def banner(data_dir: Path, identity: Identity, settings: Settings, store: str = "duckdb") -> str:
    host = settings.host if ":" not in settings.host else f"[{settings.host}]"
    base = f"{settings.scheme}://{host}:{settings.port}"
    lines = [f"netatlas {__version__} workspace server",
             f"  workspace id  {identity.workspace_id}",
             f"  data          {data_dir.resolve()}",
             f"  store         {store}"]
    if settings.tls_cert:
        from ..tlscert import fingerprint
        lines.append(f"  tls           {settings.tls_cert}")
        lines.append(f"  fingerprint   SHA-256 {fingerprint(settings.tls_cert)}  (agents: tls_fingerprint)")
    listed = f"`netatlas keys list --data {shlex.quote(str(data_dir))}`"
    if identity.fresh:     # query and admin secrets are stored hashed: shown now, once
        lines.append(f"  keys (created now; query and admin secrets are shown only now; {listed} lists them):")
        lines += [f"    {k.role:<7} {k.id}  {k.secret}" for k in identity.fresh]
    else:
        lines.append(f"  keys ({listed}; the ingest secret is shown there, query and admin keys are hashed):")
        lines += [f"    {k.role:<7} {k.id}" for k in identity.keys]
    urls = [("web UI", "GET", "/", "a browser; sign in with the query key"),
            ("ingest", "POST", "/api/ingest/{Table}", "SharedKey signature, ingest key"),
            ("query", "POST", "/api/query", "Authorization: Bearer <query key>"),
            ("retention", "GET", "/api/retention", "query key; changes: admin key"),
            ("threat intel", "POST", "/api/threatintel/import", "admin key; GET /api/threatintel, /api/geoip"),
            ("health", "GET", "/healthz", ""),
            ("metrics", "GET", "/metrics", "Prometheus")]
    width = max(len(base + u[2]) for u in urls)
    lines += [f"  {what:<13} {method:<4} {(base + path):<{width}}  {note}".rstrip()
              for what, method, path, note in urls]
    return "\n".join(lines) + "\n"


def tls_options(settings: Settings) -> dict:
    """uvicorn.Config's TLS arguments: https when tls_cert and tls_key are set."""
    if not settings.tls_cert:
        return {}
    return {"ssl_certfile": settings.tls_cert, "ssl_keyfile": settings.tls_key}


def _publishing_server(data_dir: Path, token: str | None = None):
    """A uvicorn Server that writes DIR/server.json once its socket listens (on the port it got,
    which is the one asked for unless that was 0) and removes it as it starts to stop."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if self.started and self.servers and self.servers[0].sockets:
                port = self.servers[0].sockets[0].getsockname()[1]
                url = discovery.url_for(self.config.host, port, "https" if self.config.is_ssl else "http")
                try:    # with TLS, clients on this machine verify the server with its own certificate
                    discovery.publish(data_dir, url, cafile=self.config.ssl_certfile, token=token)
                except OSError as e:    # the server still serves; local commands just cannot find it
                    print(f"warning: cannot write {discovery.path_of(data_dir)}: {e}", file=sys.stderr)

        async def shutdown(self, sockets=None):
            # here, not after run(): uvicorn re-raises SIGTERM once it has stopped, ending the process
            discovery.withdraw(data_dir)
            await super().shutdown(sockets=sockets)

    return Server


def private_files(data_dir: Path) -> None:
    """Tighten the files directly in DIR (a workspace of an older release) to 0600."""
    for entry in data_dir.iterdir():
        try:
            if entry.is_file() and not entry.is_symlink() and entry.stat().st_mode & 0o077:
                os.chmod(entry, 0o600)
        except OSError:
            pass


def serve(data_dir: str | os.PathLike, settings: Settings | None = None, *,
          open_workspace: Callable = None, out: TextIO = sys.stdout) -> int:
    """Serve the workspace in ``data_dir`` until SIGINT/SIGTERM; returns the exit code.

    The identity (workspace.json) is created first, so the Workspace opens knowing its id; then
    ``open_workspace(data_dir)`` (default ``netatlas.connect``) opens it, before the port is bound,
    so a workspace held by another process fails here with the Workspace's own error."""
    import uvicorn

    from .. import connect
    from . import guard
    from .app import create_app

    settings = settings or Settings()
    settings.check()   # a TLS file that cannot be read: a clear error now, not uvicorn's traceback later
    data_dir = Path(data_dir)
    os.umask(0o077)                     # what the server writes in DIR (DuckDB files too) is 0600
    make_private_dir(data_dir)          # DIR itself 0700
    private_files(data_dir)
    if settings.tls == "self-signed":
        from ..tlscert import TlsError, self_signed
        try:
            cert, key, _ = self_signed(data_dir)
        except TlsError as e:
            from .settings import SettingsError
            raise SettingsError(str(e)) from None
        settings = dataclasses.replace(settings, tls="", tls_cert=str(cert), tls_key=str(key))
        settings.check()
    identity = load_or_create(data_dir)
    token = discovery.new_token()
    workspace = (open_workspace or connect)(data_dir)
    try:
        out.write(banner(data_dir, identity, settings, getattr(workspace, "store_description", "duckdb")))
        out.flush()
        app = create_app(data_dir, settings=settings, workspace=workspace, local_token=token)
        config = uvicorn.Config(app, host=settings.host, port=settings.port, lifespan="on",
                                timeout_graceful_shutdown=SHUTDOWN_GRACE, server_header=False,
                                http=guard.guarded_protocol(settings),   # header/body timeouts, cap
                                timeout_keep_alive=settings.keepalive_timeout,
                                **guard.proxy_options(settings), **tls_options(settings))
        server = _publishing_server(data_dir, token)(config)
        try:
            server.run()
        except SystemExit as e:   # uvicorn exits 1 when the port cannot be bound
            return e.code if isinstance(e.code, int) else 1
        except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once it has shut down: a normal stop
            pass
        return 0
    finally:
        discovery.withdraw(data_dir)
        workspace.close()   # when startup failed (port taken), the lifespan did not close it
