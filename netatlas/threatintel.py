"""Enrich stage, threat intelligence: feeds -> ThreatIntelligenceIndicator rows -> a matcher that
says which indicator, if any, a remote address falls under.

Feeds, in the formats people have (``parse(data, format)``, format guessed when not given):

======== ================================================================================
stix     a STIX 2.1 bundle (as MISP and OpenCTI export it): ``indicator`` objects whose
         pattern compares ``ipv4-addr:value`` / ``ipv6-addr:value`` to an address or a CIDR
         range (several ORed comparisons give several indicators); name, description,
         indicator_types and labels (-> threat type), confidence (or x_opencti_score),
         valid_from / valid_until / modified, revoked, TLP marking (the four standard
         marking-definition ids, or a ``tlp:...`` label), external_references (-> report link)
csv      a CSV blocklist (abuse.ch Feodo Tracker style): a header row (possibly inside a
         ``#`` comment) naming the address column (dst_ip, ip, ip_address, ...) and, when
         present, first seen, last seen, malware/threat, description, confidence, reference
list     one address or CIDR range per line, ``#`` comments (FireHOL netsets, plain lists);
         a ``# Category : ...`` comment (FireHOL) gives the threat type
======== ================================================================================

Threat types are the seed's list (``THREAT_TYPES``); a feed's words are mapped onto it by
``KEYWORDS`` (labels and types first, then names, then free text; in each, the first keyword
that matches wins; Watchlist when nothing matches; ``threat_type=`` overrides).

``store(con, indicators, source)`` replaces the rows of that source (a feed is a snapshot).
``Matcher.load(con)`` builds the lookup from the active, unexpired rows: exact addresses in a
dict, ranges in one dict per prefix length, so a lookup costs one dict probe per distinct
prefix length. The most specific match wins (an address, then the longest prefix), then the
highest severity and confidence.
"""
from __future__ import annotations

import csv
import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .addresses import parse as parse_address
from .store.duckdb import in_transaction

TABLE = "ThreatIntelligenceIndicator"
THREAT_TYPES = ("Botnet", "C2", "CryptoMining", "Darknet", "DDos", "MaliciousUrl", "Malware", "Phishing", "Proxy",
                "PUA", "Watchlist")
# words of a feed (names, labels, indicator types, categories) -> threat type; first match wins
KEYWORDS: tuple[tuple[str, str], ...] = (
    (r"\bc2\b|c&c|command[- _]and[- _]control|\bcnc\b", "C2"),
    (r"botnet|\bbot\b", "Botnet"),
    (r"crypto[- _]?min|coin[- _]?min|\bminer\b|mining", "CryptoMining"),
    (r"\btor\b|darknet|onion", "Darknet"),
    (r"ddos|denial[- _]of[- _]service", "DDos"),
    (r"phish", "Phishing"),
    (r"proxy|anonymi[sz]", "Proxy"),
    (r"\bpua\b|\bpup\b|adware|potentially[- _]unwanted", "PUA"),
    (r"malicious[- _]url", "MaliciousUrl"),
    (r"malware|trojan|ransom|backdoor|malicious[- _]activity|compromised|exploit|attack|abuse", "Malware"),
)
TLP_MARKINGS = {   # STIX 2.1's standard TLP marking-definition ids
    "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9": "White",
    "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da": "Green",
    "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82": "Amber",
    "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed": "Red",
}
TLP_NAMES = {"white": "White", "clear": "White", "green": "Green", "amber": "Amber", "amber+strict": "Amber",
             "red": "Red"}
DEFAULT_SEVERITY = 3         # the seed: "Values are 0 - 5 ... Default value is 3"
DEFAULT_CONFIDENCE = 50
IP_COLUMNS = ("dst_ip", "ip", "ip_address", "ipaddress", "ip_addr", "address", "indicator", "value", "network",
              "cidr", "ip_range", "src_ip", "host")
CSV_FIELDS = {   # indicator field -> CSV header names, first present wins
    "first": ("first_seen_utc", "first_seen", "firstseen", "date_added", "dateadded", "first_reported"),
    "last": ("last_online", "last_seen", "lastseen", "last_seen_utc", "last_reported", "updated"),
    "threat": ("threat_type", "threat", "malware", "malware_family", "category", "tags", "type"),
    "description": ("description", "comment", "comments", "reason"),
    "confidence": ("confidence", "confidence_level", "score"),
    "reference": ("reference", "reference_link", "url", "link"),
    "port": ("dst_port", "port"),
    "status": ("c2_status", "status"),
}
STIX_IP = re.compile(r"(ipv4-addr|ipv6-addr):value\s*=\s*'([^']+)'")


class FeedError(ValueError):
    """A feed that cannot be read; the message says where (line or object) and why."""


@dataclass
class Indicator:
    network: str                       # "1.2.3.4" or "10.0.0.0/8" (canonical)
    threat_type: str = "Watchlist"
    description: str = ""
    tlp: str = "White"
    confidence: float = DEFAULT_CONFIDENCE
    severity: int = DEFAULT_SEVERITY
    first_reported: datetime | None = None
    last_reported: datetime | None = None
    expires: datetime | None = None
    active: bool = True
    reference: str = ""
    additional: str = ""
    external_id: str = ""
    tags: list[str] = field(default_factory=list)

    @property
    def is_range(self) -> bool:
        return "/" in self.network


# ---------------------------------------------------------------- parse

def parse(data: bytes | str, fmt: str | None = None, *, threat_type: str | None = None,
          source: str = "") -> tuple[list[Indicator], dict]:
    """Indicators of a feed and a report {"format", "indicators", "skipped": {reason: count}}."""
    text = data.decode("utf-8-sig", errors="replace") if isinstance(data, bytes) else data
    fmt = fmt or guess_format(text)
    if fmt not in PARSERS:
        raise FeedError(f"unknown feed format {fmt!r}; expected one of {', '.join(PARSERS)}")
    if threat_type is not None and threat_type not in THREAT_TYPES:
        raise FeedError(f"unknown threat type {threat_type!r}; expected one of {', '.join(THREAT_TYPES)}")
    skipped: dict[str, int] = {}
    indicators = PARSERS[fmt](text, skipped, threat_type)
    return indicators, {"format": fmt, "source": source, "indicators": len(indicators), "skipped": skipped}


def guess_format(text: str) -> str:
    head = text.lstrip()[:1]
    if head in "{[":
        return "stix"
    body = [ln for ln in text.splitlines()[:50] if ln.strip() and not ln.lstrip().startswith("#")]
    if body and sum("," in ln for ln in body) >= max(1, len(body) // 2):
        return "csv"
    return "list"


def classify(*groups: str, default: str = "Watchlist") -> str:
    """The threat type the first group of words that says one says (groups in order of trust:
    labels before names before free text)."""
    for words in groups:
        text = (words or "").lower()
        for pattern, kind in KEYWORDS:
            if re.search(pattern, text):
                return kind
    return default


def network(value: str) -> str | None:
    """Canonical text of an address or CIDR range; None when it is neither."""
    value = value.strip().strip('"').strip()
    try:
        if "/" in value:
            net = ipaddress.ip_network(value, strict=False)
            if net.prefixlen == net.max_prefixlen:
                return str(net.network_address)
            return str(net)
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _time(value) -> datetime | None:
    if value in (None, ""):
        return None
    text = str(value).strip().replace("Z", "+00:00")
    for candidate in (text, text.replace(" ", "T")):
        try:
            t = datetime.fromisoformat(candidate)
            return t.astimezone(timezone.utc) if t.tzinfo else t.replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    return None


def _count(skipped: dict, reason: str) -> None:
    skipped[reason] = skipped.get(reason, 0) + 1


def _stix(text: str, skipped: dict, threat_type: str | None) -> list[Indicator]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise FeedError(f"not a STIX bundle: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    objects = doc.get("objects") if isinstance(doc, dict) else doc
    if not isinstance(objects, list):
        raise FeedError("not a STIX bundle: no \"objects\" list")
    markings = dict(TLP_MARKINGS)
    for obj in objects:   # custom TLP marking definitions (STIX 2.0 style)
        if isinstance(obj, dict) and obj.get("type") == "marking-definition":
            tlp = (obj.get("definition") or {}).get("tlp") if isinstance(obj.get("definition"), dict) else None
            name = tlp or (obj.get("name", "").lower().removeprefix("tlp:") if "tlp" in obj.get("name", "").lower() else None)
            if name and name.lower() in TLP_NAMES:
                markings[obj.get("id", "")] = TLP_NAMES[name.lower()]
    out = []
    for i, obj in enumerate(objects):
        if not isinstance(obj, dict) or obj.get("type") != "indicator":
            continue
        try:
            out += _stix_indicator(i, obj, markings, skipped, threat_type)
        except (TypeError, AttributeError, ValueError, KeyError) as e:
            raise FeedError(f"STIX object {i} ({obj.get('id', 'no id')!s:.80}): not an indicator this reader "
                            f"understands: {type(e).__name__}: {e}") from None
    return out


def _stix_indicator(i: int, obj: dict, markings: dict, skipped: dict, threat_type: str | None) -> list[Indicator]:
    """One STIX indicator object -> its indicators (one per address or range its pattern names)."""
    out = []
    pattern = obj.get("pattern", "")
    if obj.get("pattern_type", "stix") != "stix" or not isinstance(pattern, str):
        _count(skipped, "not a STIX pattern")
        return out
    values = STIX_IP.findall(pattern)
    if not values:
        _count(skipped, "no IP address in the pattern")
        return out
    labels = [str(x) for x in obj.get("labels", []) if isinstance(x, (str, int))]
    kinds = [str(x) for x in obj.get("indicator_types", []) if isinstance(x, str)]
    tlp = next((markings[m] for m in obj.get("object_marking_refs", []) if m in markings), None)
    tlp = tlp or next((TLP_NAMES[x.lower().split(":", 1)[1]] for x in labels
                       if x.lower().startswith("tlp:") and x.lower().split(":", 1)[1] in TLP_NAMES), "White")
    confidence = obj.get("confidence", obj.get("x_opencti_score", DEFAULT_CONFIDENCE))
    refs = [r for r in obj.get("external_references", []) if isinstance(r, dict)]
    reference = next((r["url"] for r in refs if r.get("url")), "")
    kind = threat_type or classify(" ".join(labels + kinds), obj.get("name", ""), obj.get("description", ""))
    extra = {k: obj[k] for k in ("name", "indicator_types", "labels", "kill_chain_phases") if obj.get(k)}
    for _, value in values:
        net = network(value)
        if net is None:
            _count(skipped, "not an IP address or range")
            continue
        out.append(Indicator(
            network=net, threat_type=kind, description=str(obj.get("description") or obj.get("name") or ""),
            tlp=tlp, confidence=_number(confidence, DEFAULT_CONFIDENCE, 0, 100),
            severity=_severity(labels, obj.get("x_severity")),
            first_reported=_time(obj.get("valid_from") or obj.get("created")),
            last_reported=_time(obj.get("modified") or obj.get("created")),
            expires=_time(obj.get("valid_until")), active=not obj.get("revoked", False),
            reference=reference, additional=json.dumps(extra, sort_keys=True) if extra else "",
            external_id=str(obj.get("id", f"object {i}")), tags=labels))
    return out


def _number(value, default: float, lo: float, hi: float) -> float:
    try:
        return min(hi, max(lo, float(value)))
    except (TypeError, ValueError):
        return default


MISP_LEVELS = {"high": 5, "medium": 3, "low": 2, "undefined": 1}


def _severity(labels: list[str], explicit) -> int:
    if explicit is not None:
        return int(_number(explicit, DEFAULT_SEVERITY, 0, 5))
    for label in labels:   # MISP: misp:threat-level="high"
        m = re.search(r"threat[-_]level\W*(\w+)", label.lower())
        if m and m.group(1) in MISP_LEVELS:
            return MISP_LEVELS[m.group(1)]
    return DEFAULT_SEVERITY


def _comments(text: str) -> list[str]:
    return [ln.lstrip()[1:].strip() for ln in text.splitlines() if ln.lstrip().startswith("#")]


def _csv(text: str, skipped: dict, threat_type: str | None) -> list[Indicator]:
    lines = text.splitlines()
    comments = _comments(text)
    body = [(n, ln) for n, ln in enumerate(lines, 1) if ln.strip() and not ln.lstrip().startswith("#")]
    if not body:
        return []
    header, rows = None, body
    first = next(csv.reader([body[0][1]]))
    if not any(network(v) for v in first):        # the first data line is the header
        header, rows = [h.strip().lower() for h in first], body[1:]
    else:                                          # a header inside the last comment that looks like one
        for c in reversed(comments):
            cand = [h.strip().lower() for h in next(csv.reader([c]))] if "," in c else []
            if any(h in IP_COLUMNS for h in cand):
                header = cand
                break
    if header is None:
        raise FeedError("CSV feed without a header row naming the address column "
                        f"(one of {', '.join(IP_COLUMNS)}); use --format list for bare addresses")
    ip_col = next((header.index(h) for h in IP_COLUMNS if h in header), None)
    if ip_col is None:
        raise FeedError(f"CSV header {header!r} has no address column (one of {', '.join(IP_COLUMNS)})")
    col = {k: next((header.index(h) for h in names if h in header), None) for k, names in CSV_FIELDS.items()}
    feed_words = " ".join(comments[:30])
    out = []
    for n, ln in rows:
        try:
            row = next(csv.reader([ln]))
        except csv.Error as e:
            raise FeedError(f"CSV line {n}: {e}") from None
        if ip_col >= len(row):
            _count(skipped, "short row")
            continue
        net = network(row[ip_col])
        if net is None:
            _count(skipped, "not an IP address or range")
            continue
        get = lambda k: row[col[k]].strip() if col[k] is not None and col[k] < len(row) else ""  # noqa: E731
        threat = get("threat")
        kind = threat_type or classify(threat, feed_words, " ".join(header).replace("_", " "))
        status = get("status")
        details = ", ".join(x for x in (threat, f"port {get('port')}" if get("port") else "", status) if x)
        out.append(Indicator(
            network=net, threat_type=kind, description=get("description") or details or kind,
            confidence=_number(get("confidence"), 75 if status == "online" else DEFAULT_CONFIDENCE, 0, 100),
            first_reported=_time(get("first")), last_reported=_time(get("last")) or _time(get("first")),
            reference=get("reference"), additional=json.dumps({h: row[i] for i, h in enumerate(header) if i < len(row)},
                                                              sort_keys=True),
            tags=[threat] if threat else []))
    return out


def _list(text: str, skipped: dict, threat_type: str | None) -> list[Indicator]:
    comments = _comments(text)
    category = next((c.split(":", 1)[1].strip() for c in comments
                     if re.match(r"category\s*:", c, re.IGNORECASE)), "")
    kind = threat_type or classify(category, " ".join(comments[:30]))
    reference = next((c.split(":", 1)[1].strip() for c in comments
                      if re.match(r"(maintainer url|source|url)\s*:", c, re.IGNORECASE)), "")
    out = []
    for n, ln in enumerate(text.splitlines(), 1):
        value = ln.split("#", 1)[0].strip()
        if not value:
            continue
        net = network(value.split()[0])
        if net is None:
            _count(skipped, "not an IP address or range")
            continue
        out.append(Indicator(network=net, threat_type=kind, description=category or kind, reference=reference))
    return out


PARSERS = {"stix": _stix, "csv": _csv, "list": _list}


# ---------------------------------------------------------------- store

COLUMNS = ("TimeGenerated", "IndicatorId", "ExternalIndicatorId", "SourceSystem", "Active", "ThreatType",
           "Description", "NetworkIP", "NetworkCidrBlock", "TrafficLightProtocolLevel", "ConfidenceScore",
           "ThreatSeverity", "FirstReportedDateTime", "LastReportedDateTime", "ExpirationDateTime",
           "ReportReferenceLink", "AdditionalInformation", "Tags", "Type")


# Sentinel's other columns: what an imported indicator has in them (a network indicator alerts; strings
# no feed here fills are '', flags false, numbers null), after COLUMNS in this order
SENTINEL_VALUES = {"Action": "alert", "PassiveOnly": False, "_IsBillable": "True"}
SQL_TYPES = {"bool": "BOOLEAN", "int": "INTEGER", "long": "BIGINT", "real": "DOUBLE", "datetime": "TIMESTAMP"}


def sentinel_columns() -> list[tuple[str, str]]:
    """(column, KQL type) of the table's columns beyond COLUMNS (catalogue order)."""
    from .catalogue import Catalogue
    return [(c, t) for c, t in Catalogue.load().get(TABLE).columns if c not in COLUMNS]


def _sentinel_value(column: str, typ: str, source: str):
    if column == "IndicatorProvider":
        return source
    if column in SENTINEL_VALUES:
        return SENTINEL_VALUES[column]
    return "" if typ == "string" else False if typ == "bool" else None


def rows(indicators: list[Indicator], source: str, now: datetime | None = None) -> list[tuple]:
    now = (now or datetime.now(timezone.utc)).replace(tzinfo=None)
    extra = tuple(_sentinel_value(c, t, source) for c, t in sentinel_columns())
    out, seen = [], set()
    for ind in indicators:
        key = (ind.network, ind.external_id)
        if key in seen:
            continue
        seen.add(key)
        ident = "netatlas--" + hashlib.sha1(f"{source}\0{ind.network}\0{ind.external_id}".encode()).hexdigest()[:24]
        naive = lambda t: t.astimezone(timezone.utc).replace(tzinfo=None) if t else None  # noqa: E731
        out.append((now, ident, ind.external_id, source, ind.active, ind.threat_type, ind.description,
                    "" if ind.is_range else ind.network, ind.network if ind.is_range else "", ind.tlp,
                    float(ind.confidence), int(ind.severity), naive(ind.first_reported), naive(ind.last_reported),
                    naive(ind.expires), ind.reference, ind.additional, json.dumps(ind.tags), TABLE) + extra)
    return out


# how each column is read back from the staging file
READ = {"TimeGenerated": "TIMESTAMP", "Active": "BOOLEAN", "ConfidenceScore": "DOUBLE", "ThreatSeverity": "INTEGER",
        "FirstReportedDateTime": "TIMESTAMP", "LastReportedDateTime": "TIMESTAMP", "ExpirationDateTime": "TIMESTAMP"}


def store(con, indicators: list[Indicator], source: str, now: datetime | None = None) -> int:
    """Replace the indicators of ``source`` with these (one transaction); the number stored.
    Staged through a JSON file read by DuckDB (row-by-row inserts take ~0.7 ms a row)."""
    import os
    import tempfile

    import orjson
    data = rows(indicators, source, now)
    extra = sentinel_columns()
    names = COLUMNS + tuple(c for c, _ in extra)
    read = READ | {c: SQL_TYPES.get(t, "VARCHAR") for c, t in extra}
    fd, path = tempfile.mkstemp(prefix="netatlas-indicators-", suffix=".json")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(orjson.dumps([dict(zip(names, r)) for r in data], option=orjson.OPT_NAIVE_UTC))
    except BaseException:
        os.unlink(path)
        raise
    cols = ", ".join(f'"{c}"' for c in names)
    spec = ", ".join(f"'{c}': '{read.get(c, 'VARCHAR')}'" for c in names)

    def replace(con):
        con.execute(f'DELETE FROM "{TABLE}" WHERE SourceSystem = ?', [source])
        if data:
            con.execute(f'INSERT INTO "{TABLE}" ({cols}) SELECT {cols} FROM read_json(?, format=\'array\', '
                        f'columns={{{spec}}})', [path])
    try:
        in_transaction(con, replace)
    finally:
        os.unlink(path)
    return len(data)


def summary(con) -> dict:
    """Indicators stored: in all, active, and per source."""
    total, active = con.execute(f'SELECT count(*), count(*) FILTER (WHERE Active) FROM "{TABLE}"').fetchone()
    by_source = dict(con.execute(f'SELECT SourceSystem, count(*) FROM "{TABLE}" GROUP BY ALL ORDER BY 1').fetchall())
    return {"total": total, "active": active, "by_source": by_source}


# ---------------------------------------------------------------- match

SEEN_MAX = 200_000         # addresses whose range lookup a Matcher remembers


@dataclass(frozen=True)
class Match:
    """What VMConnection's malicious-IP columns take from the indicator a remote address matched."""
    threat_type: str
    description: str
    tlp: str
    confidence: str
    severity: int
    first_reported: str
    last_reported: str
    reference: str
    additional: str


def _iso(t) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t is not None else ""


class Matcher:
    """Active, unexpired indicators by exact address and by prefix length."""

    def __init__(self, entries: list[tuple[str, Match]] = ()):
        self.exact: dict[str, Match] = {}
        self.ranges: dict[tuple[int, int], dict[int, Match]] = {}      # (version, prefix) -> network int -> match
        for net, m in entries:
            if "/" in net:
                n = ipaddress.ip_network(net)
                bucket = self.ranges.setdefault((n.version, n.prefixlen), {})
                key = int(n.network_address)
                if key not in bucket or _better(m, bucket[key]):
                    bucket[key] = m
            elif net not in self.exact or _better(m, self.exact[net]):
                self.exact[net] = m
        self._order = sorted(self.ranges, key=lambda k: -k[1])
        self.size = len(self.exact) + sum(len(b) for b in self.ranges.values())
        self._seen: dict[str, Match | None] = {}       # address -> its answer (ranges cost a parse)
        self.valid_until: datetime | None = None       # the earliest expiry of what it holds

    @classmethod
    def load(cls, con, now: datetime | None = None) -> "Matcher":
        now = (now or datetime.now(timezone.utc)).replace(tzinfo=None)
        rows_ = con.execute(
            f'SELECT NetworkIP, NetworkCidrBlock, ThreatType, Description, TrafficLightProtocolLevel, '
            f'ConfidenceScore, ThreatSeverity, FirstReportedDateTime, LastReportedDateTime, ReportReferenceLink, '
            f'AdditionalInformation, ExpirationDateTime FROM "{TABLE}" WHERE Active AND (ExpirationDateTime IS NULL '
            f'OR ExpirationDateTime > ?)', [now]).fetchall()
        entries = []
        expiries = []
        for ip, cidr, kind, desc, tlp, conf, sev, first, last, ref, extra, expires in rows_:
            net = ip or cidr
            if not net:
                continue
            if expires is not None:
                expiries.append(expires)
            entries.append((net, Match(kind or "Watchlist", desc or "", tlp or "White",
                                       str(int(conf)) if conf is not None else "", int(sev or 0), _iso(first),
                                       _iso(last), ref or "", extra or "")))
        matcher = cls(entries)
        matcher.valid_until = min(expiries).replace(tzinfo=timezone.utc) if expiries else None
        return matcher

    def stale(self, now: datetime | None = None) -> bool:
        """True once an indicator it holds has expired: the workspace then builds it again."""
        return self.valid_until is not None and (now or datetime.now(timezone.utc)) >= self.valid_until

    def match(self, ip: str) -> Match | None:
        hit = self.exact.get(ip)
        if hit is not None or not self.size:
            return hit
        seen = self._seen.get(ip, self)
        if seen is not self:
            return seen
        if len(self._seen) >= SEEN_MAX:
            self._seen.clear()
        found = self._seen[ip] = self._match_range(ip)
        return found

    def _match_range(self, ip: str) -> Match | None:
        a = parse_address(ip)
        if a is None:
            return None
        if str(a) != ip and (hit := self.exact.get(str(a))) is not None:      # another spelling of it
            return hit
        value, bits = int(a), a.max_prefixlen
        for version, prefix in self._order:
            if version != a.version:
                continue
            found = self.ranges[(version, prefix)].get(value >> (bits - prefix) << (bits - prefix))
            if found is not None:
                return found
        return None

    def __len__(self) -> int:
        return self.size


def _better(a: Match, b: Match) -> bool:
    return (a.severity, a.confidence.zfill(3), a.last_reported) > (b.severity, b.confidence.zfill(3), b.last_reported)
