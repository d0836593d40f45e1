"""The Starlette application: routes, the shared state of the views, error handlers, lifespan."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.middleware import Middleware
from starlette.routing import Route

from ..auth import AuthError, ReplayCache
from ..catalogue import Catalogue
from ..keys import KeyStore
from ..metrics import Metrics, add_storage_metrics
from ..pool import QueryBusyError
from . import azure, backup, health, ingest, machines, query, retention, threatintel, views
from . import alerts, sessions, ui, workbooks
from .http import HttpError, error_response
from .settings import Settings

log = logging.getLogger("netatlas.server")

ROUTES = (
    Route("/api/ingest/{table}", ingest.ingest, methods=["POST"]),
    Route("/api/query", query.query, methods=["POST"]),
    Route("/api/retention", retention.show, methods=["GET"]),
    Route("/api/retention/apply", retention.apply, methods=["POST"]),
    Route("/api/retention/{table}", retention.change, methods=["PUT"]),
    Route("/api/threatintel", threatintel.show, methods=["GET"]),
    Route("/api/threatintel/import", threatintel.import_, methods=["POST"]),
    Route("/api/geoip", threatintel.geoip, methods=["GET"]),
    Route("/api/machines/resolve", machines.resolve, methods=["GET"]),
    Route("/api/backup", backup.backup, methods=["POST"]),
    # the web UI's JSON (views.py, docs/web-api.md); /api/machines/{id} after /api/machines/resolve
    Route("/api/map", views.map_, methods=["GET"]),
    Route("/api/problems", views.problems, methods=["GET"]),
    Route("/api/machines", views.machines, methods=["GET"]),
    Route("/api/machines/{id}", views.machine, methods=["GET"]),
    Route("/api/machines/{id}/performance", views.machine_performance, methods=["GET"]),
    Route("/api/performance", views.performance, methods=["GET"]),
    Route("/api/edges", views.edges, methods=["GET"]),
    Route("/api/network", views.network, methods=["GET"]),
    Route("/api/waves", views.waves, methods=["GET"]),
    Route("/api/usage", views.usage, methods=["GET"]),
    Route("/api/schema", views.schema, methods=["GET"]),
    Route("/api/samples", views.samples, methods=["GET"]),
    # alert rules, their evaluation and history (server/alerts.py, netatlas/alerts.py)
    Route("/api/alerts/rules", alerts.list_rules, methods=["GET"]),
    Route("/api/alerts/rules", alerts.create, methods=["POST"]),
    Route("/api/alerts/rules/{id}", alerts.show, methods=["GET"]),
    Route("/api/alerts/rules/{id}", alerts.update, methods=["PUT"]),
    Route("/api/alerts/rules/{id}", alerts.delete, methods=["DELETE"]),
    Route("/api/alerts/rules/{id}/enable", alerts.enable, methods=["POST"]),
    Route("/api/alerts/rules/{id}/disable", alerts.disable, methods=["POST"]),
    Route("/api/alerts/rules/{id}/evaluate", alerts.evaluate, methods=["POST"]),
    Route("/api/alerts/evaluate", alerts.evaluate_all, methods=["POST"]),
    Route("/api/alerts/history", alerts.history, methods=["GET"]),
    # sign-in sessions (a cookie) and read-only share links (sessions.py, issue 17)
    Route("/api/session", sessions.sign_in, methods=["POST"]),
    Route("/api/session", sessions.whoami, methods=["GET"]),
    Route("/api/session", sessions.sign_out, methods=["DELETE"]),
    Route("/api/shares", sessions.create_share, methods=["POST"]),
    Route("/api/shares", sessions.list_shares, methods=["GET"]),
    Route("/api/shares/{id}", sessions.revoke_share, methods=["DELETE"]),
    # workbooks (workbooks.py): import and run before /api/workbooks/{id}
    Route("/api/workbooks", workbooks.list_, methods=["GET"]),
    Route("/api/workbooks", workbooks.create, methods=["POST"]),
    Route("/api/workbooks/import", workbooks.import_, methods=["POST"]),
    Route("/api/workbooks/run", workbooks.run, methods=["POST"]),
    Route("/api/workbooks/{id}", workbooks.get, methods=["GET"]),
    Route("/api/workbooks/{id}", workbooks.update, methods=["PUT"]),
    Route("/api/workbooks/{id}", workbooks.delete, methods=["DELETE"]),
    # Azure's protocols (server/azure/): the Kusto REST API, ...
    *azure.ROUTES,
    Route("/healthz", health.healthz, methods=["GET"]),
    Route("/metrics", health.metrics, methods=["GET"]),
    # the web UI (server/ui.py): after every API route, which keep priority
    Route("/api/export", ui.export, methods=["POST"]),
    Route("/", ui.index, methods=["GET"]),
    Route("/ui", ui.to_index, methods=["GET"]),     # relative redirects to / (never from Host)
    Route("/ui/", ui.to_index, methods=["GET"]),
    ui.FILES,                   # Mount("/ui", ...): netatlas/ui/
)

HTTP_CODES = {400: "BAD_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "BODY_TOO_LARGE"}
CHALLENGES = {"/api/ingest/": 'SharedKey realm="netatlas"'}


@dataclass
class Service:
    """What the views share: the open workspace, its keys, settings and metrics."""
    data_dir: Path
    settings: Settings
    workspace: object
    keys: KeyStore
    catalogue: Catalogue
    metrics: Metrics
    retention_last: dict | None = None
    retention_next: float | None = None
    threatintel_feeds: list = field(default_factory=list)     # the last scheduled import of each feed
    threatintel_next: float | None = None
    replay: ReplayCache | None = None     # accepted signatures without a batch id (auth.ReplayCache)
    local_token: str | None = None         # the per-run token of local commands (discovery.py)
    _closed: bool = field(default=False, repr=False)
    query_limiter: object = field(default=None, repr=False)   # threads of queries and views (run_query)
    alerts: object = field(default=None, repr=False)          # alerts.AlertStore (DIR/alerts.json)
    sessions: object = None               # sign-in sessions (sessions.SessionStore)
    shares: object = None                 # read-only share links (sessions.ShareLinks)

    async def run(self, fn, *args, **kwargs):
        """Run blocking DuckDB work in the thread pool."""
        return await run_in_threadpool(fn, *args, **kwargs)

    async def run_query(self, fn, *args, **kwargs):
        """Run a query, or a view's queries, in threads of their own (as many as the workspace's
        query pool has cursors and queue places), so queries waiting for a cursor never take the
        threads ingestion runs in; QueryBusyError (429) at once when they are all taken."""
        import anyio
        limiter = self.query_limiter
        if limiter is None:
            limiter = self.query_limiter = anyio.CapacityLimiter(query_threads(self.workspace))
        if limiter.borrowed_tokens >= limiter.total_tokens:
            pool = self.workspace.pool
            raise QueryBusyError(f"too many queries: {pool.running} running and {pool.waiting} waiting "
                                 f"(query_concurrency {pool.slots}, query_queue {pool.queue})")
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=limiter)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.workspace.close()


# ---------------------------------------------------------------- errors: one JSON shape

async def on_http_error(request: Request, exc: HttpError) -> Response:
    return exc.response()


async def on_auth_error(request: Request, exc: AuthError) -> Response:
    challenge = next((v for p, v in CHALLENGES.items() if request.url.path.startswith(p)), 'Bearer realm="netatlas"')
    headers = {"WWW-Authenticate": challenge} if exc.status == 401 else None
    return error_response(exc.status, exc.code, str(exc), headers=headers)


async def on_starlette_error(request: Request, exc: HTTPException) -> Response:
    code = HTTP_CODES.get(exc.status_code, f"HTTP_{exc.status_code}")
    message = exc.detail
    if exc.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"{request.url.path} does not take {request.method}; it takes {allowed}"
    return error_response(exc.status_code, code, message, headers=exc.headers)


async def on_busy(request: Request, exc: QueryBusyError) -> Response:
    service_ = getattr(request.app.state, "service", None)
    if service_ is not None:
        service_.metrics.queries.inc(outcome="busy")
    return error_response(429, exc.code, f"{exc}; retry in {exc.retry_after} s",
                          headers={"Retry-After": str(exc.retry_after)}, retry_after=exc.retry_after)


def query_threads(workspace) -> int:
    pool = getattr(workspace, "pool", None)
    return pool.slots + pool.queue if pool is not None else 40


async def on_bug(request: Request, exc: Exception) -> Response:
    log.error("unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "INTERNAL", f"an unexpected error: {type(exc).__name__}; see the server's log")


EXCEPTION_HANDLERS = {HttpError: on_http_error, AuthError: on_auth_error, HTTPException: on_starlette_error,
                      QueryBusyError: on_busy, Exception: on_bug}


# ---------------------------------------------------------------- the app

def create_app(data_dir: str | os.PathLike, *, settings: Settings | None = None, workspace=None,
               local_token: str | None = None) -> Starlette:
    """The workspace server for DIR. ``workspace``: an already open Workspace for DIR (the app
    closes it at shutdown); without it the app opens DIR at startup. ``local_token``: a per-run
    bearer token for query work by commands on this machine (``discovery.py``)."""
    settings = settings or Settings()
    data_dir = Path(data_dir)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        keys = KeyStore(data_dir)   # creates workspace.json first: the Workspace reads its id on open
        ws = workspace
        if ws is None:
            from .. import connect
            ws = await run_in_threadpool(connect, data_dir)
        ws.default_retention_days = settings.retention_days
        if getattr(ws, "pool", None) is not None:       # queries side by side (pool.py)
            ws.pool.configure(settings.query_concurrency or None, settings.query_queue or None)
            threading.Thread(target=ws.pool.warm, name="netatlas-query-pool-warm", daemon=True).start()
        ws.refuse_expired = True        # a TimeGenerated older than its table's retention: 400
        catalogue = getattr(ws, "catalogue", None) or Catalogue.load()
        svc = Service(data_dir=data_dir, settings=settings, workspace=ws, keys=keys,
                      catalogue=catalogue, metrics=add_storage_metrics(Metrics(catalogue.names())),
                      replay=ReplayCache(2 * settings.max_clock_skew), local_token=local_token,
                      sessions=sessions.SessionStore(settings.session_ttl), shares=sessions.ShareLinks(data_dir))
        app.state.service = svc
        svc.alerts = await run_in_threadpool(alerts.open_store, svc)
        tasks = [asyncio.create_task(retention.schedule(svc), name="netatlas-retention"),
                 asyncio.create_task(threatintel.schedule(svc), name="netatlas-threatintel"),
                 asyncio.create_task(alerts.schedule(svc), name="netatlas-alerts"),
                 asyncio.create_task(retention.compaction(svc), name="netatlas-rollup")]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await run_in_threadpool(svc.close)

    sessions.redact_access_log()            # a share link's token stays out of the access log
    app = Starlette(routes=list(ROUTES), exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan,
                    middleware=[Middleware(sessions.SessionMiddleware)])
    app.router.redirect_slashes = False     # its redirects echo the Host header: /healthz/ is a 404
    return app
