"""Alerts: log search alert rules as Azure Monitor has them, their evaluation and their state.

A rule is a KQL query run through the workspace's own engine (``Workspace.query``) at an
evaluation time ``at`` over a window: ``timespan=(at - window, at)`` limits every table it reads,
and ``now()``/``ago()`` are ``at``. Its rows are split into alert instances by the rule's
``dimensions`` (the values of those columns; none: one instance), each instance's ``value`` is
its row count (``measure`` null, aggregation ``count``) or an aggregation (sum, avg, min, max) of
a numeric column, compared with ``threshold`` by ``operator`` (> >= < <= == !=).

| piece | what | where |
|---|---|---|
| rule | id, name, query, frequency, window, measure/aggregation, dimensions, operator, threshold, severity 0-4, mute, enabled, actions (webhooks, email) | ``validate()``, ``FIELDS`` |
| evaluation | the query's rows -> {instance: (dimensions, value)} | ``measure()`` |
| state | per rule and instance: fired or resolved, since when, the value, when it last fired | ``AlertStore.evaluate()`` |
| history | fired, resolved, muted, error, action_failed entries, newest last, at most MAX_ALERT_HISTORY | ``AlertStore.history()`` |
| actions | webhook (JSON POST) and e-mail (SMTP) per state change; failures become history entries | ``notify.py`` |
| built-ins | four rules, off by default, for the seed's cases | ``BUILTINS`` |

State is stateful as Azure's auto-resolving alerts: an instance fires when its condition becomes
true and resolves when it stops (an instance that no longer has rows has a value of 0 rows, or
none for a column, which resolves it). After firing, an instance does not fire again until
``mute`` has passed since (Azure's mute actions): a true condition in that time is a ``muted``
history entry. Everything lives in ``DIR/alerts.json`` (written whole, atomically, at every
change), so a restart keeps rules, state and history.
"""
from __future__ import annotations

import copy
import json
import math
import operator
import os
import re
import threading
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from .errors import AlertError, KqlError, NetatlasError, QueryExecutionError, QueryLimitError
from .kql.literals import short_timespan
from .server.timespan import parse_datetime as parse_time
from .webmap import iso as webmap_iso
from .limits import (MAX_ALERT_HISTORY, MAX_ALERT_INSTANCES, MAX_ALERT_QUERY_CHARS, MAX_ALERT_RULES,
                     MAX_ALERT_WEBHOOKS)

FILE = "alerts.json"
OPERATORS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
             "==": operator.eq, "!=": operator.ne}
AGGREGATIONS = {"count": None, "sum": sum, "avg": lambda v: sum(v) / len(v), "min": min, "max": max}
NUMERIC = {"long", "int", "real", "decimal"}
SEVERITIES = range(0, 5)                 # Sev0 (critical) .. Sev4 (verbose), as Azure
MIN_FREQUENCY = timedelta(minutes=1)
MAX_SPAN = timedelta(days=30)            # the longest window, frequency and mute
EVALUATION_TIMEOUT = 60.0
EVALUATION_ROWS = 100_000                # rows an evaluation reads (past it: an error entry)


# ---------------------------------------------------------------- times

def iso(t: datetime | None) -> str | None:
    return None if t is None else webmap_iso(t)


def parse_span(value, field: str) -> timedelta:
    """A number of seconds, a KQL timespan (5m, 1d, 00:05:00) or an ISO 8601 duration (PT5M, as
    Azure's evaluationFrequency and windowSize) -> timedelta; AlertError naming ``field``."""
    if isinstance(value, bool) or value is None:
        raise AlertError(f"{field}: expected a timespan (5m, 1h, PT5M or seconds), got {value!r}", field)
    if isinstance(value, (int, float)):
        span = timedelta(seconds=value) if math.isfinite(value) else None
    elif isinstance(value, str) and value.strip()[:1] in ("P", "p"):
        from .server.timespan import TimespanError, parse_duration
        try:
            span = parse_duration(value)
        except TimespanError as e:
            raise AlertError(f"{field}: {e}", field) from None
    elif isinstance(value, str):
        from .kql.literals import parse_timespan
        ticks = parse_timespan(value)
        span = None if ticks is None else timedelta(microseconds=ticks / 10)
    else:
        span = None
    if span is None:
        raise AlertError(f"{field}: expected a timespan (5m, 1h, PT5M or seconds), got {value!r}", field)
    return span


show_span = short_timespan             # timedelta -> the shortest KQL timespan that says it


# ---------------------------------------------------------------- rules

# field -> default of a new rule (None: required)
FIELDS = {
    "name": None, "description": "", "query": None, "frequency": "5m", "window": "5m",
    "measure": None, "aggregation": "count", "dimensions": [], "operator": ">", "threshold": 0,
    "severity": 3, "mute": "0s", "enabled": True, "actions": {"webhooks": [], "email": False},
}
READ_ONLY = ("id", "builtin", "created", "updated")


def _check_compiled(rule: dict, compiled) -> None:
    """The measure and dimensions against the query's columns (and the measure numeric)."""
    types = dict(zip(compiled.columns, compiled.types))
    for i, d in enumerate(rule["dimensions"]):
        if d not in types:
            raise AlertError(f"dimensions[{i}]: the query has no column {d!r}; its columns are "
                             f"{', '.join(compiled.columns)}", "dimensions")
    m = rule["measure"]
    if m is not None:
        if m not in types:
            raise AlertError(f"measure: the query has no column {m!r}; its columns are "
                             f"{', '.join(compiled.columns)}", "measure")
        if str(types[m]) not in NUMERIC:
            raise AlertError(f"measure: column {m!r} is {types[m]}, not a number (long, int, real, decimal)",
                             "measure")


def validate(body: dict, base: dict | None = None, *, workspace=None, now: datetime | None = None) -> dict:
    """A rule from a request body: a new one (``base`` None) takes FIELDS' defaults, an update
    changes ``base``'s fields that the body names. AlertError naming the first field refused; the
    query is compiled on ``workspace`` (its errors carry the compiler's message, line, column)."""
    if not isinstance(body, dict):
        raise AlertError("a rule is a JSON object", None)
    for key in body:
        if key not in FIELDS and key not in READ_ONLY:
            raise AlertError(f"unknown field {key!r}; the fields are {', '.join(FIELDS)}", key)
    for key in READ_ONLY:
        if key in body and (base is None or body[key] != base.get(key)):
            raise AlertError(f"{key} is set by the server and cannot be given", key)
    rule = copy.deepcopy(base) if base is not None else copy.deepcopy(FIELDS)
    rule.update({k: copy.deepcopy(v) for k, v in body.items() if k in FIELDS})
    for key, default in FIELDS.items():
        if rule.get(key) is None and default is None and key != "measure":
            raise AlertError(f"{key} is required", key)

    name = rule["name"]
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise AlertError("name: expected a non-empty string of at most 200 characters", "name")
    rule["name"] = name.strip()
    if not isinstance(rule["description"], str) or len(rule["description"]) > 2000:
        raise AlertError("description: expected a string of at most 2000 characters", "description")
    query = rule["query"]
    if not isinstance(query, str) or not query.strip():
        raise AlertError("query: expected a non-empty string of KQL", "query")
    if len(query) > MAX_ALERT_QUERY_CHARS:
        raise AlertError(f"query: {len(query)} characters, more than the {MAX_ALERT_QUERY_CHARS} a rule's "
                         f"query may have", "query", code="ALERT_LIMIT", limit=MAX_ALERT_QUERY_CHARS)
    spans = {}
    for key, low in (("frequency", MIN_FREQUENCY), ("window", timedelta(seconds=1)), ("mute", timedelta())):
        span = parse_span(rule[key], key)
        if not low <= span <= (MAX_SPAN + timedelta(days=2) if key == "window" else MAX_SPAN):
            raise AlertError(f"{key}: {show_span(span) if span >= timedelta() else rule[key]!r} is out of "
                             f"range: {show_span(low) if low else '0s'} to {show_span(MAX_SPAN)}", key)
        spans[key] = span
        rule[key] = show_span(span) if span else "0s"
    m = rule["measure"]
    if m is not None and (not isinstance(m, str) or not m.strip()):
        raise AlertError("measure: expected a column name, or null to count rows", "measure")
    agg = rule["aggregation"]
    if agg not in AGGREGATIONS:
        raise AlertError(f"aggregation: expected one of {', '.join(AGGREGATIONS)}, got {agg!r}", "aggregation")
    if (m is None) != (agg == "count"):
        raise AlertError("aggregation: count goes with no measure (the row count); a measure column takes "
                         "sum, avg, min or max", "aggregation")
    dims = rule["dimensions"]
    if not isinstance(dims, list) or not all(isinstance(d, str) and d for d in dims) or len(set(dims)) != len(dims):
        raise AlertError("dimensions: expected a list of distinct column names", "dimensions")
    if rule["operator"] not in OPERATORS:
        raise AlertError(f"operator: expected one of {' '.join(OPERATORS)}, got {rule['operator']!r}", "operator")
    thr = rule["threshold"]
    if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not math.isfinite(thr):
        raise AlertError(f"threshold: expected a number, got {thr!r}", "threshold")
    sev = rule["severity"]
    if isinstance(sev, bool) or not isinstance(sev, int) or sev not in SEVERITIES:
        raise AlertError(f"severity: expected 0 (critical) to 4 (verbose), got {sev!r}", "severity")
    if not isinstance(rule["enabled"], bool):
        raise AlertError("enabled: expected true or false", "enabled")
    rule["actions"] = _actions(rule["actions"])
    if workspace is not None:
        try:
            compiled = workspace.compile(query, now=now or datetime.now(timezone.utc), max_rows=EVALUATION_ROWS)
        except KqlError as e:
            info = e.to_json()
            info.pop("display", None)
            info.pop("code", None)
            raise AlertError(f"query: {info.pop('message', str(e))}", "query", code=e.code, **info) from None
        except (QueryLimitError, QueryExecutionError) as e:
            raise AlertError(f"query: {e}", "query", code=e.code) from None
        _check_compiled(rule, compiled)
    return rule


def _actions(actions) -> dict:
    if not isinstance(actions, dict):
        raise AlertError("actions: expected {\"webhooks\": [URL, ...], \"email\": true | [ADDRESS, ...]}", "actions")
    unknown = [k for k in actions if k not in ("webhooks", "email")]
    if unknown:
        raise AlertError(f"actions: unknown action {unknown[0]!r}; the actions are webhooks and email",
                         f"actions.{unknown[0]}")
    hooks = actions.get("webhooks", [])
    if not isinstance(hooks, list) or not all(isinstance(u, str) for u in hooks):
        raise AlertError("actions.webhooks: expected a list of http(s) URLs", "actions.webhooks")
    if len(hooks) > MAX_ALERT_WEBHOOKS:
        raise AlertError(f"actions.webhooks: {len(hooks)} URLs, more than the {MAX_ALERT_WEBHOOKS} a rule may have",
                         "actions.webhooks", code="ALERT_LIMIT", limit=MAX_ALERT_WEBHOOKS)
    from urllib.parse import urlsplit
    for i, url in enumerate(hooks):
        try:
            parts = urlsplit(url)
            parts.port
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise AlertError(f"actions.webhooks[{i}]: {url!r} is not an http:// or https:// URL", "actions.webhooks")
    email = actions.get("email", False)
    if not isinstance(email, bool):
        if not isinstance(email, list) or not email or not all(
                isinstance(a, str) and re.fullmatch(r"[^@\s,<>]+@[^@\s,<>]+", a) for a in email):
            raise AlertError("actions.email: expected true (the smtp_to setting's addresses), false, or a list "
                             "of e-mail addresses", "actions.email")
    return {"webhooks": list(hooks), "email": email}


# ---------------------------------------------------------------- evaluation

def instance_key(dimensions: dict) -> str:
    return json.dumps(dimensions, sort_keys=True, default=str, ensure_ascii=False)


def _plain(v):
    if isinstance(v, datetime):
        return iso(v)
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v) if not isinstance(v, (dict, list)) else v


def measure(rule: dict, columns: list[str], rows: list[tuple]) -> dict[str, tuple[dict, float | None]]:
    """The query's rows -> {instance key: (dimensions, value)}: rows split by the rule's dimension
    columns, each part's row count or its measure column aggregated (None when it has no number)."""
    index = {c: i for i, c in enumerate(columns)}
    dims = rule["dimensions"]
    parts: dict[str, tuple[dict, list]] = {}
    for row in rows:
        d = {c: _plain(row[index[c]]) for c in dims}
        parts.setdefault(instance_key(d), (d, []))[1].append(row)
    if not dims and not parts:
        parts[instance_key({})] = ({}, [])
    out = {}
    for key, (d, part) in parts.items():
        if rule["measure"] is None:
            out[key] = (d, len(part))
            continue
        col = index[rule["measure"]]
        values = [float(r[col]) for r in part
                  if isinstance(r[col], (int, float, Decimal)) and not isinstance(r[col], bool)]
        values = [v for v in values if math.isfinite(v)]
        out[key] = (d, AGGREGATIONS[rule["aggregation"]](values) if values else None)
    return out


def holds(rule: dict, value) -> bool:
    return value is not None and OPERATORS[rule["operator"]](value, rule["threshold"])


# ---------------------------------------------------------------- built-in rules

BUILTINS = {
    "builtin-used-to-work": {
        "name": "Dependency that used to work now fails",
        "description": "An outbound dependency (machine, process, remote address, port) with failed links in "
                       "the last 15 minutes whose same 15 minutes one day earlier had established links and "
                       "no failures: the map's \"used to work\" edge status.",
        "query": """let recent = 15m;
let current = VMConnection
| where TimeGenerated >= ago(recent) and Direction == "outbound"
| summarize Failed = sum(LinksFailed), Links = sum(LinksEstablished) by Computer, ProcessName, RemoteIp, DestinationPort
| where Failed > 0;
let before = VMConnection
| where TimeGenerated >= ago(1d + recent) and TimeGenerated < ago(1d) and Direction == "outbound"
| summarize BeforeLinks = sum(LinksEstablished), BeforeFailed = sum(LinksFailed) by Computer, ProcessName, RemoteIp, DestinationPort
| where BeforeLinks > 0 and BeforeFailed == 0;
current
| join kind=inner (before) on Computer, ProcessName, RemoteIp, DestinationPort
| project Computer, ProcessName, RemoteIp, DestinationPort, Failed, Links, BeforeLinks""",
        "frequency": "5m", "window": "P1DT15M", "dimensions": ["Computer", "ProcessName", "RemoteIp", "DestinationPort"],
        "severity": 2, "mute": "1h",
    },
    "builtin-malicious-address": {
        "name": "Connection to a malicious address",
        "description": "A connection in the last hour to or from an address of the threat intelligence "
                       "indicators (VMConnection.MaliciousIp, set at ingestion).",
        "query": """VMConnection
| where MaliciousIp != ""
| summarize Connections = count(), LastSeen = max(TimeGenerated), ThreatType = max(IndicatorThreatType)
    by Computer, ProcessName, RemoteIp""",
        "frequency": "5m", "window": "1h", "dimensions": ["Computer", "ProcessName", "RemoteIp"],
        "severity": 1, "mute": "1h",
    },
    "builtin-new-listening-port": {
        "name": "New listening port",
        "description": "A port a machine started listening on in the last hour that it did not listen on in "
                       "the day before (machines that reported bound ports before only).",
        "query": """let recent = 1h;
let known = VMBoundPort
| where TimeGenerated < ago(recent)
| summarize by Machine, Port, Protocol;
let reporting = VMBoundPort
| where TimeGenerated < ago(recent)
| distinct Machine;
VMBoundPort
| where TimeGenerated >= ago(recent) and Machine in (reporting)
| summarize FirstSeen = min(TimeGenerated) by Computer, Machine, Port, Protocol, ProcessName
| join kind=leftanti (known) on Machine, Port, Protocol""",
        "frequency": "15m", "window": "P1DT1H", "dimensions": ["Computer", "Port", "Protocol", "ProcessName"],
        "severity": 3, "mute": "1d",
    },
    "builtin-heartbeat-stopped": {
        "name": "Machine heartbeat stopped",
        "description": "A machine that sent heartbeats in the last day (Heartbeat, or VM insights' Computer "
                       "Heartbeat metric) but none in the last 5 minutes.",
        "query": """union
    (Heartbeat | project Computer, TimeGenerated),
    (InsightsMetrics | where Namespace == "Computer" and Name == "Heartbeat" | project Computer, TimeGenerated)
| summarize LastHeartbeat = max(TimeGenerated) by Computer
| where LastHeartbeat < ago(5m)""",
        "frequency": "5m", "window": "1d", "dimensions": ["Computer"], "severity": 1, "mute": "1h",
    },
}


def builtin_rules() -> dict[str, dict]:
    """The built-in rules as stored: disabled, no actions."""
    out = {}
    for rid, spec in BUILTINS.items():
        rule = validate({**spec, "enabled": False})
        out[rid] = dict(rule, id=rid, builtin=True)
    return out


# ---------------------------------------------------------------- the store

class AlertStore:
    """Rules, state and history of a workspace, kept in ``DIR/alerts.json``. Thread-safe: one lock
    guards the data; evaluations run one at a time (``_evaluating``)."""

    def __init__(self, directory: str | os.PathLike, *, notifier=None,
                 history_limit: int = MAX_ALERT_HISTORY, rule_limit: int = MAX_ALERT_RULES):
        self.path = Path(directory) / FILE
        self.notifier = notifier
        self.history_limit, self.rule_limit = history_limit, rule_limit
        self._lock = threading.RLock()
        self._evaluating = threading.Lock()
        try:
            data = json.loads(self.path.read_text()) if self.path.exists() else {}
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:
            raise AlertError(f"{self.path} cannot be read ({e}): repair it, or move it away to start with "
                             f"the built-in rules only", None, code="ALERT_STORE", status=500) from None
        self.rules: dict[str, dict] = data.get("rules", {})
        self.state: dict[str, dict] = data.get("state", {})     # rule id -> {"instances": {...}, "last_evaluated"}
        self.entries: list[dict] = data.get("history", [])
        self.seq = data.get("seq", len(self.entries))
        added = False
        for rid, rule in builtin_rules().items():
            if rid not in self.rules:
                self.rules[rid] = dict(rule, created=iso(_now()), updated=iso(_now()))
                added = True
        if added or not self.path.exists():
            self._save()

    # ---- persistence
    def _save(self) -> None:
        with self._lock:
            data = {"version": 1, "rules": self.rules, "state": self.state, "history": self.entries,
                    "seq": self.seq}
            tmp = self.path.with_name(self.path.name + ".tmp")
            # 0600 as the workspace's other files: webhook URLs may hold tokens
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(data, indent=1, default=str))
            os.replace(tmp, self.path)

    # ---- rules
    def list(self) -> list[dict]:
        with self._lock:
            return [self.show(rid) for rid in self.rules]

    def show(self, rid: str) -> dict:
        with self._lock:
            rule = self.rules.get(rid)
            if rule is None:
                raise AlertError(f"no alert rule {rid!r}", "id", code="ALERT_NOT_FOUND", status=404)
            st = self.state.get(rid, {})
            instances = [dict(i, key=k) for k, i in st.get("instances", {}).items()]
            fired = [i for i in instances if i["state"] == "fired"]
            return dict(copy.deepcopy(rule), state="fired" if fired else "ok", fired=len(fired),
                        instances=instances, last_evaluated=st.get("last_evaluated"),
                        last_error=st.get("last_error"))

    def create(self, body: dict, workspace=None) -> dict:
        rule = validate(body, workspace=workspace)
        with self._lock:
            if len(self.rules) >= self.rule_limit:
                raise AlertError(f"the workspace has {len(self.rules)} alert rules, the most it may have "
                                 f"(MAX_ALERT_RULES); delete one first", None, code="ALERT_LIMIT", status=409,
                                 limit=self.rule_limit)
            rid = uuid.uuid4().hex[:12]
            self.rules[rid] = dict(rule, id=rid, builtin=False, created=iso(_now()), updated=iso(_now()))
            self._save()
        return self.show(rid)

    def update(self, rid: str, body: dict, workspace=None) -> dict:
        with self._lock:
            base = self.rules.get(rid)
        if base is None:
            raise AlertError(f"no alert rule {rid!r}", "id", code="ALERT_NOT_FOUND", status=404)
        # a changed query, measure or dimensions: compiled again, and the old instances forgotten
        recompile = any(k in body and body[k] != base.get(k) for k in ("query", "measure", "dimensions", "aggregation"))
        rule = validate(body, base, workspace=workspace if recompile else None)
        with self._lock:
            if rid not in self.rules:
                raise AlertError(f"no alert rule {rid!r}", "id", code="ALERT_NOT_FOUND", status=404)
            rule["updated"] = iso(_now())
            self.rules[rid] = rule
            if recompile:         # other instances now: the old ones' state no longer means anything
                self.state.pop(rid, None)
            self._save()
        return self.show(rid)

    def delete(self, rid: str) -> None:
        with self._lock:
            rule = self.rules.get(rid)
            if rule is None:
                raise AlertError(f"no alert rule {rid!r}", "id", code="ALERT_NOT_FOUND", status=404)
            if rule.get("builtin"):
                raise AlertError(f"{rid} is a built-in rule: disable it instead ({{\"enabled\": false}})", "id",
                                 code="ALERT_BUILTIN", status=409)
            del self.rules[rid]
            self.state.pop(rid, None)
            self._save()

    # ---- history
    def _record(self, entry: dict) -> dict:
        with self._lock:
            self.seq += 1
            entry = {"seq": self.seq, **entry}
            self.entries.append(entry)
            del self.entries[:-self.history_limit]
            return entry

    def history(self, rule: str | None = None, limit: int = 100) -> list[dict]:
        """The newest entries first."""
        with self._lock:
            out = [e for e in reversed(self.entries) if rule is None or e.get("rule") == rule]
            return copy.deepcopy(out[:limit])

    # ---- evaluation
    def due(self, now: datetime) -> list[str]:
        """Enabled rules whose last evaluation is at least their frequency before ``now``."""
        out = []
        with self._lock:
            for rid, rule in self.rules.items():
                last = self.state.get(rid, {}).get("last_evaluated")
                if rule["enabled"] and (last is None or now - parse_time(last)
                                        >= parse_span(rule["frequency"], "frequency")):
                    out.append(rid)
        return out

    def evaluate(self, rid: str, workspace, at: datetime | None = None) -> dict:
        """Run rule ``rid`` at ``at`` (default now), change its instances' state, run the actions of
        the changes; answers {"rule", "at", "window", "instances": [...], "changes": [history entries]}.
        A query that fails is an ``error`` entry and changes no state."""
        at = (at or _now()).astimezone(timezone.utc)
        with self._evaluating:
            with self._lock:
                rule = copy.deepcopy(self.rules.get(rid))
            if rule is None:
                raise AlertError(f"no alert rule {rid!r}", "id", code="ALERT_NOT_FOUND", status=404)
            window = parse_span(rule["window"], "window")
            start = at - window
            base = {"rule": rid, "name": rule["name"], "severity": rule["severity"], "at": iso(at),
                    "window": {"start": iso(start), "end": iso(at)}}
            try:
                res = workspace.query(rule["query"], now=at, timespan=(start, at), max_rows=EVALUATION_ROWS,
                                      timeout=EVALUATION_TIMEOUT)
                if res.truncated:
                    raise AlertError(f"the query returned more than {EVALUATION_ROWS} rows; summarize it", "query")
                values = measure(rule, res.columns, res.rows)
                if len(values) > MAX_ALERT_INSTANCES:
                    raise AlertError(f"the query made {len(values)} dimension combinations, more than the "
                                     f"{MAX_ALERT_INSTANCES} an evaluation may (MAX_ALERT_INSTANCES)", "dimensions")
            except Exception as e:          # noqa: BLE001: an evaluation never stops the scheduler
                message = f"{type(e).__name__}: {e}" if not isinstance(e, NetatlasError) else str(e)
                with self._lock:
                    if rid not in self.rules:           # deleted meanwhile
                        return dict(base, instances=[], changes=[], error=message)
                    st = self.state.setdefault(rid, {"instances": {}})
                    st["last_evaluated"], st["last_error"] = iso(at), message
                    entry = self._record(dict(base, event="error", error=message))
                    self._save()
                return dict(base, instances=[], changes=[entry], error=message)
            mute = parse_span(rule["mute"], "mute")
            changes = []
            with self._lock:
                if rid not in self.rules:               # deleted meanwhile: nothing to keep
                    return dict(base, instances=[], changes=[])
                st = self.state.setdefault(rid, {"instances": {}})
                instances = st["instances"]
                for key in set(instances) - set(values):       # no rows now: 0 rows, or no value
                    values[key] = (instances[key]["dimensions"], 0 if rule["measure"] is None else None)
                for key, (dims, value) in values.items():
                    inst = instances.get(key)
                    true = holds(rule, value)
                    if inst is None:
                        if not true:
                            continue
                        inst = instances[key] = {"dimensions": dims, "state": "resolved", "since": None,
                                                 "value": None, "last_fired": None}
                    inst["value"] = value
                    if true and inst["state"] != "fired":
                        last = inst.get("last_fired")
                        if last is not None and mute and at - parse_time(last) < mute:
                            if inst.get("muted_since") is None:
                                inst["muted_since"] = iso(at)
                                changes.append(self._record(dict(base, event="muted", dimensions=dims, value=value,
                                                                 until=iso(parse_time(last) + mute))))
                            continue
                        inst.update(state="fired", since=iso(at), last_fired=iso(at), muted_since=None)
                        changes.append(self._record(dict(base, event="fired", dimensions=dims, value=value)))
                    elif not true and inst["state"] == "fired":
                        inst.update(state="resolved", since=iso(at))
                        changes.append(self._record(dict(base, event="resolved", dimensions=dims, value=value)))
                    elif not true:
                        inst["muted_since"] = None
                # resolved instances whose mute has passed are forgotten (their history stays)
                for key in [k for k, i in instances.items() if i["state"] == "resolved" and key_expired(i, at, mute)]:
                    del instances[key]
                st["last_evaluated"], st["last_error"] = iso(at), None
                shown = [dict(i, key=k) for k, i in instances.items()]
                self._save()
            for entry in [c for c in changes if c["event"] in ("fired", "resolved")]:
                for failure in self._act(rule, entry):
                    changes.append(failure)
            if any(c["event"] == "action_failed" for c in changes):
                self._save()
            return dict(base, instances=copy.deepcopy(shown), changes=copy.deepcopy(changes))

    def _act(self, rule: dict, entry: dict) -> list[dict]:
        """The rule's actions for one fired or resolved entry; each failure becomes a history entry."""
        if self.notifier is None:
            return []
        out = []
        for action, target, error in self.notifier.send(rule, entry):
            if error is not None:
                out.append(self._record({"rule": entry["rule"], "name": entry["name"], "severity": entry["severity"],
                                         "at": entry["at"], "event": "action_failed", "action": action,
                                         "target": target, "for": entry["seq"], "error": error}))
        return out

    def evaluate_due(self, workspace, now: datetime | None = None) -> list[dict]:
        now = now or _now()
        return [self.evaluate(rid, workspace, now) for rid in self.due(now)]


def key_expired(inst: dict, at: datetime, mute: timedelta) -> bool:
    last = inst.get("last_fired")
    return inst.get("muted_since") is None and (last is None or at - parse_time(last) >= mute)


def _now() -> datetime:
    return datetime.now(timezone.utc)
