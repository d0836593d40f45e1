"""Azure's protocols, so the clients teams already use work against netatlas unchanged; one module
per API:

- ``kusto.py``: the Kusto (Azure Data Explorer) REST API: ``/v2/rest/query``, ``/v1/rest/query``,
  ``/v1/rest/mgmt``, ``/v1/rest/auth/metadata`` (azure-kusto-data, Kqlmagic);
- ``loganalytics.py``: the Log Analytics query API: ``/v1/workspaces/{id}/query``, ``/v1/$batch``
  (azure-monitor-query);
- ``ingestion.py``: the Logs Ingestion API through data collection rules
  (``/dataCollectionRules/{id}/streams/{stream}``, azure-monitor-ingestion);
- ``collector.py``: the HTTP Data Collector API (``/api/logs``).

``common.py`` holds what they share: the database's name, how an answer's columns are typed for
Kusto, the query request's limits. ``ROUTES`` is mounted by ``server/app.py``.
"""
from __future__ import annotations

from starlette.routing import Route

from . import collector, ingestion, kusto, loganalytics

ROUTES = [
    Route("/v2/rest/query", kusto.query_v2, methods=["POST"]),
    Route("/v1/rest/query", kusto.query_v1, methods=["POST"]),
    Route("/v1/rest/mgmt", kusto.mgmt, methods=["POST"]),
    Route("/v1/rest/auth/metadata", kusto.auth_metadata, methods=["GET"]),
    Route("/v1/workspaces/{workspace}/query", loganalytics.query, methods=["GET", "POST"]),
    Route("/v1/$batch", loganalytics.batch, methods=["POST"]),
    Route(collector.PATH, collector.post, methods=["POST"]),
    Route("/dataCollectionRules/{rule}/streams/{stream}", ingestion.upload, methods=["POST"]),
    Route("/api/dcr", ingestion.rules, methods=["GET"]),
    Route("/api/dcr/{rule}", ingestion.rule, methods=["GET", "PUT", "DELETE"]),
]

__all__ = ["ROUTES"]
