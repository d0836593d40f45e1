"""The workspace server: the HTTP API of one workspace (``netatlas workspace serve``).

| endpoint | auth | does | module |
|---|---|---|---|
| ``POST /api/ingest/{Table}`` | SharedKey, a key of a role the table takes (ingest; admin for ThreatIntelligenceIndicator) | store a batch of records (JSON array, optionally gzip) | ``ingest.py`` |
| ``POST /api/query`` | Bearer, query key | run a KQL query: ``{"query", "timespan", "parameters", "max_rows", "timeout"}`` | ``query.py`` |
| ``GET /api/retention`` | Bearer, query key | retention days per table and the schedule | ``retention.py`` |
| ``PUT /api/retention/{Table}`` | Bearer, admin key | ``{"days": N}``: change a table's retention | ``retention.py`` |
| ``POST /api/retention/apply`` | Bearer, admin key | run a retention pass now | ``retention.py`` |
| ``POST /api/threatintel/import?source=NAME`` | Bearer, admin key | a feed (STIX, CSV, list) replaces that source's indicators | ``threatintel.py`` |
| ``GET /api/threatintel`` | Bearer, query key | indicators stored and matching, the scheduled feeds | ``threatintel.py`` |
| ``GET /api/geoip`` | Bearer, query key | the GeoIP database: type, build date, age, attribution | ``threatintel.py`` |
| ``GET /api/machines/resolve?ip=A&ip=B`` | Bearer, query key | the monitored machine(s) each address belongs to (own address, or seen behind a NAT) | ``machines.py`` |
| ``POST /api/backup`` | Bearer, admin key | ``{"target": DIR}``: a consistent copy of the workspace into a new or empty directory on the server (``netatlas/backup.py``) | ``backup.py`` |
| ``GET /api/map?machine=M`` or ``?group=G`` | Bearer, query key | the dependency map of a machine or a group (all, tag:K=V, subnet:CIDR) over ``from``/``to``: machines, processes, groups, edges with status (docs/web-api.md) | ``views.py`` (``webmap.py``) |
| ``GET /api/problems?machine=M`` or ``?group=G`` | Bearer, query key | the problems list beside the map: malicious connections, failing and used-to-work dependencies, new listening ports, each with the map's node and edge to focus on | ``views.py`` (``problems.py``) |
| ``GET /api/machines?search=TEXT`` | Bearer, query key | machines (latest VMComputer) whose name or an address matches | ``views.py`` |
| ``GET /api/machines/{id}`` | Bearer, query key | one machine: its latest VMComputer record, tags, processes, bound ports | ``views.py`` |
| ``GET /api/machines/{id}/performance`` | Bearer, query key | one machine's performance charts over ``from``/``to`` (InsightsMetrics, binned) and its last heartbeat | ``views.py`` (``performance.py``) |
| ``GET /api/performance?counter=&stat=&top=`` | Bearer, query key | machines ranked by a statistic of a counter over ``from``/``to`` (VM insights' Top N), each with its series and last heartbeat | ``views.py`` (``performance.py``) |
| ``GET /api/edges?source=&target=&port=`` | Bearer, query key | the VMConnection records under one map edge | ``views.py`` |
| ``GET /api/network`` | Bearer, query key | machine-to-machine traffic for the network chart | ``views.py`` |
| ``GET /api/waves?range=&to=&max_wave_size=&weight=&pin=M=W&exclude=`` | Bearer, query key | migration waves: machines per wave, the dependencies crossing between waves (``netatlas waves --format json``) | ``views.py`` (``waves.py``) |
| ``GET /api/usage?days=N`` | Bearer, query key | MB per day and table, the top machines and processes, retention | ``views.py`` |
| ``GET /api/schema``, ``GET /api/samples`` | Bearer, query key | tables, columns, function and operator names; the seed queries | ``views.py`` |
| ``GET /api/alerts/rules``, ``GET /api/alerts/rules/{id}``, ``GET /api/alerts/history`` | Bearer, query key | alert rules with their state; the history of fired, resolved, muted, errors | ``alerts.py`` (``netatlas/alerts.py``) |
| ``POST``/``PUT``/``DELETE /api/alerts/rules[/{id}]``, ``POST /api/alerts/rules/{id}/enable``, ``/disable``, ``/evaluate[?at=]``, ``POST /api/alerts/evaluate`` | Bearer, admin key | create, change, remove, switch and evaluate alert rules | ``alerts.py`` |
| ``GET /api/workbooks``, ``GET /api/workbooks/{id}``; ``POST /api/workbooks``, ``PUT``/``DELETE /api/workbooks/{id}`` | Bearer, query key; admin key to write | saved workbooks (parameters and query tiles) in DIR/workbooks/, the built-in Service Map one (docs/web-api.md) | ``workbooks.py`` (``netatlas/workbooks.py``) |
| ``POST /api/workbooks/import``, ``POST /api/workbooks/run`` | Bearer, query key | a workbook's JSON (netatlas's or Azure Monitor's) as netatlas's; one tile run with the parameters' values | ``workbooks.py`` |
| ``POST /api/export?format=parquet`` | Bearer, query key | the body of ``/api/query``; the result as a Parquet file | ``ui.py`` |
| ``POST /api/session`` (``{"key"}``), ``GET``, ``DELETE /api/session`` | the key in the body; the session cookie | sign in to the web UI (an HttpOnly, SameSite=Strict session cookie, session_ttl), who is signed in, sign out | ``sessions.py`` |
| ``POST /api/shares``, ``GET /api/shares``, ``DELETE /api/shares/{id}`` | Bearer, admin key | read-only share links that expire (``X-Netatlas-Share: <token>``: query-only access) | ``sessions.py`` |
| ``GET /``, ``GET /ui/...`` | none (the page asks for the query key) | the web UI: ``netatlas/ui/`` | ``ui.py`` |
| ``POST /v2/rest/query``, ``/v1/rest/query``, ``/v1/rest/mgmt``; ``GET /v1/rest/auth/metadata`` | Bearer, query key (anonymous_query addresses: none); the metadata none | the Kusto REST API (Azure Data Explorer's clients, Kqlmagic) | ``azure/kusto.py`` |
| ``POST``/``GET /v1/workspaces/{id}/query``, ``POST /v1/$batch`` | Bearer, query key (anonymous_query addresses: none) | the Log Analytics query API (azure-monitor-query) | ``azure/loganalytics.py`` |
| ``POST /dataCollectionRules/{id}/streams/{stream}`` | Bearer, ingest key | the Logs Ingestion API through a data collection rule (azure-monitor-ingestion) | ``azure/ingestion.py`` |
| ``PUT``/``GET``/``DELETE /api/dcr/{id}``, ``GET /api/dcr`` | Bearer, admin key | define, read, remove data collection rules (Azure's JSON) | ``azure/ingestion.py`` |
| ``POST /api/logs?api-version=2016-04-01`` | SharedKey, ingest key | the HTTP Data Collector API: ``Log-Type`` -> ``<Log-Type>_CL``, made on first sight | ``azure/collector.py`` |
| ``GET /healthz`` | none | ``{"status": "ok", ...}`` | ``health.py`` |
| ``GET /metrics`` | none | Prometheus text format | ``health.py`` |

"Query key" means a query or an admin key (an admin key can also query), or the per-run local
token of ``DIR/server.json`` (``discovery.py``), which the admin endpoints take too. Every
endpoint that takes a key also takes the web UI's session cookie of one (a state-changing request
with the cookie also needs ``X-Netatlas-CSRF: 1``; setting session_ttl), and every query-key
endpoint a share link's token (``X-Netatlas-Share``, ``sessions.py``).

Settings (``settings.py``; flag ``--max-rows``, environment ``NETATLAS_MAX_ROWS``, key ``max_rows``
of the ``--config`` TOML file, ...): data, host, port, tls_cert, tls_key (https when both are set),
max_body_bytes, max_rows, query_timeout, retention_days, retention_interval, max_clock_skew,
geoip_db, threatintel_feeds, threatintel_interval, tls (``self-signed``: a certificate made in
DIR/tls on first start, ``netatlas/tlscert.py``). ``netatlas workspace install`` (``install.py``)
writes them to a configuration file beside a systemd unit that serves it.
Queries: max_result_bytes (a result is cut past it, or past max_rows: ``statistics.truncated``,
``truncated_by`` and ``message``), query_concurrency and query_queue (queries run side by side on
that many DuckDB cursors; when all are busy and the queue is full: 429 QUERY_BUSY with Retry-After).
Against slow and spoofing clients (``guard.py``): header_timeout, body_timeout, keepalive_timeout,
max_connections; trusted_proxies (X-Forwarded-For is believed only from those addresses).
Azure's protocols (``azure/``): anonymous_query (addresses or CIDRs, or loopback, whose requests to
the Kusto and Log Analytics APIs need no key: Kqlmagic's anonymous mode; default none).
Alerts (``alerts.py``, ``netatlas/alerts.py``, ``netatlas/notify.py``): alerts_interval (the scheduler's
pass), public_url (links in notifications), smtp_host, smtp_port, smtp_from, smtp_to, smtp_starttls,
smtp_user, smtp_password_file, smtp_ca_file (the SMTP server of e-mail actions).
The fleet map: map_failure_rate (the share of an edge's failed link attempts that makes it failing).

Ingestion headers: ``Authorization: SharedKey <workspace id>:<signature>`` and ``x-ms-date`` (see
``netatlas.auth``), ``Content-Type: application/json``, ``Content-Length``, optionally
``Content-Encoding: gzip``, ``x-ms-content-sha256`` (the signed body digest, required from netatlas
agents) and ``x-ms-batch-id``: an id (1-128 of ``A-Z a-z 0-9 . _ : -``) that
makes a retried batch idempotent; a batch whose id was stored before is acknowledged with
``"duplicate": true`` and not stored again. Without the header only a verbatim replay (the same
signature, within the clock-skew window) is answered as a duplicate (``auth.ReplayCache``).

Status codes: 200 done; 400 a bad request (a record that does not fit its table names
``record`` and ``field``; a query mistake names ``line`` and ``column``); 401 no, malformed or
stale credentials, or a body that does not match its signed digest; 403 a wrong key or a key of a
role that may not do this; 404 unknown table or path;
405 wrong method; 411 no Content-Length on an ingestion request; 413 a body over
max_body_bytes (after decompression); 415 not JSON or an encoding other than gzip; 504 a query
past its time limit (as the Log Analytics query API answers); 500 a bug. Every error body is
``{"error": {"code", "message", ...}}`` (``http.py``).

Storage: setting min_free_bytes (default 1 GiB) is the free space kept on the data directory's
filesystem; below it ingestion answers 507 STORAGE_FULL with Retry-After and ``/healthz`` says
``"status": "storage_full"`` with the reason. A store that cannot write (a full disk, an I/O
error, a write conflict) answers 503 STORAGE_UNAVAILABLE with Retry-After, logged with its cause.
Nothing of such a batch is stored: send it again later (``ingest.py``).

Importing this package does not import Starlette or uvicorn (the command line reads the
settings table at every start); ``create_app`` and ``serve`` load them on first use.
"""
from __future__ import annotations

from .settings import SETTINGS, Setting, Settings

__all__ = ["SETTINGS", "Setting", "Settings", "create_app", "serve"]


def __getattr__(name: str):
    if name == "create_app":
        from .app import create_app
        return create_app
    if name == "serve":
        from .run import serve
        return serve
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
