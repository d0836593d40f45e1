"""Compute the expected answer of every seed query on the fixture, independently of netatlas.

Each query of netatlas/seed-queries.kql (the seed's queries, shipped with the package) is re-implemented here in plain Python (lists of dicts,
sorted(), ...) following Kusto's documented semantics, and its answer is written to
expected/<slug>.expected.json in the golden JSON format (tests/golden/README.md), plus:

- "ordered": true when the query ends in a sort; "order_by": [[column, "asc"|"desc"], ...] then
  says which columns the order is defined on. Rows whose sort keys tie may come in any order
  (Kusto's sort is not stable); here they are written in a canonical order.
- "render": the visualization and its properties for `render` queries.
- "title" (the block's header) and "notes" (anything a reader should know).

Run:  python tests/seed/compute_expected.py         (rewrites expected/, prints a review)
      python tests/seed/compute_expected.py --check (fails if a file would change)
"""
from __future__ import annotations

import json
import re
import sys
from collections import OrderedDict
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import fixture  # noqa: E402

ROOT = HERE.parents[1]  # /work/main
SEED_QUERIES = [ROOT / "netatlas" / "seed-queries.kql"]
SCHEMAS = [ROOT / "netatlas" / "schemas.json"]
OUT = HERE / "expected"
NOW = fixture.NOW


def _first_existing(paths: list[Path]) -> Path:
    for p in paths:
        if p.exists():
            return p
    raise FileNotFoundError(paths)


SCHEMA: dict[str, list[tuple[str, str]]] = {
    t: [tuple(c) for c in cols] for t, cols in json.loads(_first_existing(SCHEMAS).read_text()).items()
}

# --------------------------------------------------------------------------- tables


class T:
    """A table: ordered (name, KQL type) columns and rows as dicts."""

    def __init__(self, columns: list[tuple[str, str]], rows: list[dict]):
        self.columns = list(columns)
        self.rows = rows

    @property
    def names(self) -> list[str]:
        return [c for c, _ in self.columns]

    def type_of(self, name: str) -> str:
        return dict(self.columns)[name]


def empty_value(kql_type: str):
    return "" if kql_type == "string" else None


_PY_TYPES = {"string": str, "long": int, "int": int, "real": float, "bool": bool, "datetime": datetime,
             "guid": str, "dynamic": (list, dict, str, int, float, bool)}


def load_tables() -> dict[str, T]:
    """fixture.records() completed the way Workspace.ingest does: absent string -> "", else null."""
    tables = {}
    recs = fixture.records()
    for name, cols in SCHEMA.items():
        rows = []
        known = {c for c, _ in cols}
        for r in recs.get(name, []):
            unknown = set(r) - known
            assert not unknown, f"{name}: unknown columns {unknown}"
            row = {}
            for c, t in cols:
                v = r.get(c, empty_value(t))
                if v is not None:
                    assert isinstance(v, _PY_TYPES[t]) and not (t in ("long", "int", "real") and isinstance(v, bool)), \
                        f"{name}.{c}: {v!r} is not {t}"
                    if t == "datetime":
                        assert v.tzinfo is not None, f"{name}.{c} naive datetime"
                row[c] = v
            rows.append(row)
        tables[name] = T(cols, rows)
    return tables


# --------------------------------------------------------------------------- operators


def where(t: T, pred) -> T:
    return T(t.columns, [r for r in t.rows if pred(r)])


def project(t: T, *specs) -> T:
    """specs: "Col" or ("NewName", "type", fn(row))."""
    cols, fns = [], []
    for s in specs:
        if isinstance(s, str):
            cols.append((s, t.type_of(s)))
            fns.append(lambda r, s=s: r[s])
        else:
            name, typ, fn = s
            cols.append((name, typ))
            fns.append(fn)
    return T(cols, [{c: f(r) for (c, _), f in zip(cols, fns)} for r in t.rows])


def extend(t: T, name: str, typ: str, fn) -> T:
    cols = [c for c in t.columns if c[0] != name] + [(name, typ)]
    return T(cols, [dict(r, **{name: fn(r)}) for r in t.rows])


def project_away(t: T, *names: str) -> T:
    return T([c for c in t.columns if c[0] not in names], [{k: v for k, v in r.items() if k not in names}
                                                           for r in t.rows])


def _freeze(v):
    if isinstance(v, (list, dict)):
        return json.dumps(v, sort_keys=True)
    return v


def distinct(t: T, *names: str) -> T:
    seen, rows = set(), []
    for r in t.rows:
        key = tuple(_freeze(r[n]) for n in names)
        if key not in seen:
            seen.add(key)
            rows.append({n: r[n] for n in names})
    return T([(n, t.type_of(n)) for n in names], rows)


def summarize(t: T, by: list, aggs: list) -> T:
    """by: "Col" or (name, type, fn). aggs: (name, type, fn(rows))."""
    by_specs = [(b, t.type_of(b), (lambda r, b=b: r[b])) if isinstance(b, str) else b for b in by]
    groups: "OrderedDict[tuple, list]" = OrderedDict()
    keys: dict[tuple, tuple] = {}
    for r in t.rows:
        vals = tuple(f(r) for _, _, f in by_specs)
        k = tuple(_freeze(v) for v in vals)
        groups.setdefault(k, []).append(r)
        keys[k] = vals
    if not by_specs and not groups:
        groups[()] = []
        keys[()] = ()
    cols = [(n, ty) for n, ty, _ in by_specs] + [(n, ty) for n, ty, _ in aggs]
    rows = []
    for k, rs in groups.items():
        row = {n: v for (n, _, _), v in zip(by_specs, keys[k])}
        for n, _, f in aggs:
            row[n] = f(rs)
        rows.append(row)
    return T(cols, rows)


def arg_max(t: T, maximize: str, by: list[str], returns: list[str] | None = None) -> T:
    """summarize arg_max(maximize, *|returns...) by ...: by columns, then `maximize`, then the
    returned columns (for *, every other input column in input order). Rows whose `maximize` is
    null are ignored unless the whole group is null; ties are refused (they would make the
    answer non-deterministic)."""
    if returns is None:
        returns = [c for c in t.names if c not in by and c != maximize]
    groups: "OrderedDict[tuple, list]" = OrderedDict()
    for r in t.rows:
        groups.setdefault(tuple(_freeze(r[b]) for b in by), []).append(r)
    rows = []
    for rs in groups.values():
        valued = [r for r in rs if r[maximize] is not None] or rs[:1]
        best = max(valued, key=lambda r: r[maximize])
        tied = [r for r in valued if r[maximize] == best[maximize]]
        assert len(tied) == 1, f"arg_max tie on {maximize} for {[best[b] for b in by]}"
        rows.append({c: best[c] for c in by + [maximize] + returns})
    cols = [(c, t.type_of(c)) for c in by + [maximize] + returns]
    return T(cols, rows)


def join(left: T, right: T, kind: str, left_key, right_key) -> T:
    """Kusto join (inner, leftouter, fullouter) on one equality. The result has every left column,
    then every right column; a right column whose name is taken gets the suffix 1 (2, ...).
    Missing sides are empty: "" for strings, null otherwise."""
    lk = left_key if callable(left_key) else (lambda r, k=left_key: r[k])
    rk = right_key if callable(right_key) else (lambda r, k=right_key: r[k])
    taken = set(left.names)
    rename = {}
    for c in right.names:
        new, i = c, 0
        while new in taken:
            i += 1
            new = f"{c}{i}"
        rename[c] = new
        taken.add(new)
    cols = left.columns + [(rename[c], ty) for c, ty in right.columns]
    r_empty = {rename[c]: empty_value(ty) for c, ty in right.columns}
    l_empty = {c: empty_value(ty) for c, ty in left.columns}
    index: dict = {}
    for r in right.rows:
        k = rk(r)
        if k is not None:
            index.setdefault(k, []).append(r)
    matched_right = set()
    rows = []
    for l in left.rows:
        k = lk(l)
        matches = index.get(k, []) if k is not None else []
        for r in matches:
            matched_right.add(id(r))
            rows.append({**l, **{rename[c]: v for c, v in r.items()}})
        if not matches and kind in ("leftouter", "fullouter"):
            rows.append({**l, **r_empty})
    if kind == "fullouter":
        for r in right.rows:
            if id(r) not in matched_right:
                rows.append({**l_empty, **{rename[c]: v for c, v in r.items()}})
    return T(cols, rows)


def union(*tables: T) -> T:
    cols: list = []
    for t in tables:
        for c in t.columns:
            if c not in cols:
                cols.append(c)
    rows = []
    for t in tables:
        rows += [{c: r.get(c, empty_value(ty)) for c, ty in cols} for r in t.rows]
    return T(cols, rows)


def _kusto_tostring(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, datetime):
        return fmt_datetime(v)
    if isinstance(v, float):
        return repr(v) if v != int(v) else str(int(v))
    if isinstance(v, (list, dict)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def has(value, term: str) -> bool:
    """Kusto `has` (case-insensitive): term occurs with no alphanumeric right before or after it."""
    s, t = _kusto_tostring(value).lower(), term.lower()
    return re.search(r"(?<![0-9a-z])" + re.escape(t) + r"(?![0-9a-z])", s) is not None


def contains(value, term: str) -> bool:
    return term.lower() in _kusto_tostring(value).lower()


def search(table_name: str, t: T, term: str) -> T:
    """search in (Table) "term": `has` on every column ("*x*" -> contains); adds $table first."""
    if term.startswith("*") and term.endswith("*") and len(term) > 2:
        match = lambda v: contains(v, term[1:-1])  # noqa: E731
    else:
        assert "*" not in term
        match = lambda v: has(v, term)  # noqa: E731
    rows = [dict({"$table": table_name}, **r) for r in t.rows if any(match(v) for v in r.values())]
    return T([("$table", "string")] + t.columns, rows)


def make_set(values: list) -> list:
    """make_set: distinct non-null values; an array value contributes its elements."""
    out, seen = [], set()
    for v in values:
        for e in (v if isinstance(v, list) else [v]):
            if e is None:
                continue
            k = _freeze(e)
            if k not in seen:
                seen.add(k)
                out.append(e)
    return out


def bin_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def todynamic(s: str):
    try:
        return json.loads(s)
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------- sorting


def sort(t: T, keys: list[tuple[str, str]]) -> T:
    """Kusto sort: asc -> nulls first, desc -> nulls last. Ties are broken canonically (by the
    JSON of the whole row) so the written file is deterministic; the order is only *defined*
    on `keys`."""
    rows = sorted(t.rows, key=lambda r: json.dumps([to_json(r[c], ty) for c, ty in t.columns]))
    for col, direction in reversed(keys):
        desc = direction == "desc"
        nonnull = [r for r in rows if r[col] is not None]
        nulls = [r for r in rows if r[col] is None]
        nonnull.sort(key=lambda r: r[col], reverse=desc)
        # Python's sort with reverse=True stays stable, as needed for multi-key sorts.
        rows = nonnull + nulls if desc else nulls + nonnull
    # Guard: the fixture avoids string orderings that depend on case (ordinal vs case-insensitive).
    for col, direction in keys:
        if t.type_of(col) == "string":
            seq = [r[col] for r in rows]
            alt = sorted(set(seq), key=lambda s: (s.casefold(), s), reverse=direction == "desc")
            groups = [s for i, s in enumerate(seq) if i == 0 or seq[i - 1] != s]
            if len(keys) == 1:
                assert groups == alt, f"case-dependent ordering of {col}"
    out = T(t.columns, rows)
    out.order_by = [[c, d] for c, d in keys]
    return out


# --------------------------------------------------------------------------- JSON values


def fmt_datetime(v: datetime) -> str:
    v = v.astimezone(timezone.utc)
    s = v.strftime("%Y-%m-%dT%H:%M:%S")
    if v.microsecond:
        s += ("." + f"{v.microsecond:06d}").rstrip("0")
    return s + "Z"


def fmt_timespan(v: timedelta) -> str:
    ticks = (v.days * 86400 + v.seconds) * 10_000_000 + v.microseconds * 10
    sign = "-" if ticks < 0 else ""
    ticks = abs(ticks)
    days, rem = divmod(ticks, 864_000_000_000)
    hours, rem = divmod(rem, 36_000_000_000)
    minutes, rem = divmod(rem, 600_000_000)
    seconds, frac = divmod(rem, 10_000_000)
    s = f"{sign}{days}." if days else sign
    s += f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    if frac:
        s += f".{frac:07d}"
    return s


def to_json(v, kql_type: str):
    if v is None:
        return None
    if kql_type == "datetime":
        return fmt_datetime(v)
    if kql_type == "timespan":
        return fmt_timespan(v)
    if kql_type == "real":
        return float(v)
    if kql_type in ("long", "int"):
        return int(v)
    if kql_type == "guid":
        return str(v)
    if kql_type == "decimal":
        return str(v)
    return v


# --------------------------------------------------------------------------- the queries

QUERIES = {}


def query(title: str):
    def register(fn):
        QUERIES[title] = fn
        return fn
    return register


def count_(rows):
    return len(rows)


def sum_of(col):
    return lambda rows: sum(r[col] for r in rows if r[col] is not None) if any(
        r[col] is not None for r in rows) else None


def smc_latest(tb) -> T:
    return arg_max(tb["ServiceMapComputer_CL"], "TimeGenerated", ["ResourceId"])


@query("Sessions per machine and process (blog, example 2)")
def q_sessions(tb):
    j = join(tb["VMConnection"], tb["VMComputer"], "fullouter", "Computer", "Computer")
    s = summarize(j, ["Computer", "ProcessName"], [("count_", "long", count_)])
    biggest = max(r["count_"] for r in s.rows)
    res = sort(where(s, lambda r: r["count_"] > 100000), [("Computer", "asc"), ("count_", "desc")])
    res.notes = (f"Legitimately empty on this small fixture: the largest count_ before the filter is "
                 f"{biggest} (the join pairs each VMConnection row with the machine's "
                 f"{len(tb['VMComputer'].rows) // 6} VMComputer records). The blog's threshold is for real "
                 f"workspaces; this block checks parsing, the fullouter join and the schema.")
    return res


@query("Remote endpoints on the world map (blog, example 3)")
def q_world_map(tb):
    t = where(tb["VMConnection"], lambda r: r["RemoteLatitude"] is not None and r["RemoteLatitude"] > 0)
    res = project(t, "RemoteCountry", "RemoteLatitude", "RemoteLongitude", "BytesSent")
    res.render = {"visualization": "scatterchart", "kind": "map"}
    return res


@query("Remote endpoints with DNS names (blog, example 4)")
def q_dns_names(tb):
    t = project(tb["VMConnection"], "RemoteCountry", "RemoteLatitude", "RemoteLongitude", "BytesSent", "SourceIp",
                "DestinationIp", "RemoteDnsQuestions")
    res = sort(t, [("RemoteCountry", "desc")])
    res.notes = "`order by` without asc/desc sorts descending; empty RemoteCountry (private IPs) comes last."
    return res


@query("Connections by FQDN (blog, example 4)")
def q_fqdn(tb):
    t = where(tb["VMConnection"], lambda r: r["RemoteDnsQuestions"] != "")
    s = summarize(t, ["RemoteDnsQuestions"], [("CountAll", "long", count_)])
    return sort(project(s, "RemoteDnsQuestions", "CountAll"), [("CountAll", "desc")])


@query("Connections without FQDN, localhost excluded (blog, example 4)")
def q_no_fqdn(tb):
    t = where(tb["VMConnection"], lambda r: r["RemoteDnsQuestions"] == "" and (
        r["DestinationIp"] != "127.0.0.1" or r["SourceIp"] != "127.0.0.1"))
    s = summarize(t, ["Computer"], [("CountAll", "long", count_)])
    return project(s, "Computer", "CountAll")


@query("Machine inventory, latest record (blog, example 6)")
def q_inventory(tb):
    return project(smc_latest(tb), "ComputerName_s", "VirtualMachineType_s", "VirtualizationState_s",
                   "OperatingSystemFullName_s", "DnsNames_s", "Ipv4Addresses_s", "CpuSpeed_d", "Cpus_d",
                   "PhysicalMemory_d")


@query("Distinct process identities (blog, example 7)")
def q_identities(tb):
    d = distinct(tb["VMProcess"], "DisplayName", "ProductVersion", "Description", "Group", "CompanyName",
                 "InternalName", "CommandLine", "UserName", "UserDomain")
    return sort(d, [("DisplayName", "asc")])


@query("Clusters of machines talking together (blog, example 5; the blog left the query to be written)")
def q_autocluster(tb):
    return {"pending": "autocluster plugin"}


@query("List all known machines (docs)")
def q_all_machines(tb):
    return smc_latest(tb)


@query("When was the VM last rebooted (docs)")
def q_rebooted(tb):
    t = extend(tb["ServiceMapComputer_CL"], "DaysSinceBoot", "timespan",
               lambda r: NOW - r["BootTime_t"] if r["BootTime_t"] is not None else None)
    s = summarize(t, ["Computer", "DaysSinceBoot", "BootTime_t"], [])
    return sort(s, [("BootTime_t", "asc")])


@query("Summary of Azure VMs by image, location, and SKU (docs)")
def q_azure_summary(tb):
    t = where(tb["ServiceMapComputer_CL"], lambda r: r["AzureLocation_s"] != "")
    return summarize(t, ["ComputerName_s", "AzureImageOffering_s", "AzureLocation_s", "AzureImageSku_s"], [])


@query("Physical memory of all managed computers (docs)")
def q_memory(tb):
    return project(smc_latest(tb), "PhysicalMemory_d", "ComputerName_s")


@query("Computer name, DNS, IP, and OS (docs)")
def q_name_dns_ip_os(tb):
    return project(smc_latest(tb), "ComputerName_s", "OperatingSystemFullName_s", "DnsNames_s", "Ipv4Addresses_s")


@query('Processes with "sql" in the command line (docs)')
def q_sql_cmdline(tb):
    t = where(tb["ServiceMapProcess_CL"], lambda r: "sql" in r["CommandLine_s"])  # contains_cs
    return arg_max(t, "TimeGenerated", ["ResourceId"])


@query("Find a machine by resource name (docs)")
def q_find_by_name(tb):
    s = search("ServiceMapComputer_CL", tb["ServiceMapComputer_CL"], "m-4b9c93f9-bc37-46df-b43c-899ba829e07b")
    return arg_max(s, "TimeGenerated", ["ResourceId"])


@query("Find a machine by IP address (docs)")
def q_find_by_ip(tb):
    s = search("ServiceMapComputer_CL", tb["ServiceMapComputer_CL"], "10.229.243.232")
    return arg_max(s, "TimeGenerated", ["ResourceId"])


@query("All known processes on a machine (docs)")
def q_machine_processes(tb):
    t = where(tb["ServiceMapProcess_CL"],
              lambda r: r["MachineResourceName_s"] == "m-559dbcd8-3130-454d-8d1d-f624e57961bc")
    return arg_max(t, "TimeGenerated", ["ResourceId"])


@query("All computers running SQL Server (docs)")
def q_sql_computers(tb):
    hits = distinct(search("ServiceMapProcess_CL", tb["ServiceMapProcess_CL"], "*sql*"), "MachineResourceName_s")
    machines = {r["MachineResourceName_s"] for r in hits.rows}
    res = distinct(where(tb["ServiceMapComputer_CL"], lambda r: r["ResourceName_s"] in machines), "ComputerName_s")
    res.notes = ('"*sql*" is a case-insensitive `contains` over every column, so every process of acme-sql01 '
                 "matches (Computer), and acme-pg01 matches through PostgreSQL's command line and paths.")
    return res


@query("Unique product versions of curl (docs)")
def q_curl(tb):
    return distinct(where(tb["ServiceMapProcess_CL"], lambda r: r["ExecutableName_s"] == "curl"), "ProductVersion_s")


@query("Computer group of all computers running CentOS (docs)")
def q_centos(tb):
    t = where(tb["ServiceMapComputer_CL"], lambda r: "CentOS" in r["OperatingSystemFullName_s"])
    return distinct(t, "ComputerName_s")


@query("Bytes sent and received per hour and machine (docs)")
def q_bytes_per_hour(tb):
    s = summarize(tb["VMConnection"], [("TimeGenerated", "datetime", lambda r: bin_hour(r["TimeGenerated"])),
                                        "Computer"],
                  [("sum_BytesSent", "long", sum_of("BytesSent")), ("sum_BytesReceived", "long", sum_of("BytesReceived"))])
    res = sort(s, [("Computer", "desc")])
    res.render = {"visualization": "timechart"}
    return res


@query("Which machines transmit the most bytes (docs)")
def q_most_bytes(tb):
    j = join(tb["VMConnection"], tb["ServiceMapComputer_CL"], "fullouter", "Computer", "ComputerName_s")
    s = summarize(j, ["Computer", "AzureVMSize_s"],
                  [("count_BytesSent", "long", lambda rows: sum(1 for r in rows if r["BytesSent"] is not None))])
    res = sort(s, [("count_BytesSent", "desc")])
    res.notes = ("Each VMConnection row pairs with every ServiceMapComputer_CL record of its computer, so counts "
                 "are connection rows x inventory records; acme-demo splits by its two VM sizes. acme-dc02 has no "
                 "connections: its right-only rows give Computer \"\" (empty left string) and count 0.")
    return res


@query("Link status trends (docs)")
def q_link_trends(tb):
    since = NOW - timedelta(hours=24)
    t = where(tb["VMConnection"], lambda r: r["TimeGenerated"] >= since and r["Computer"] == "acme-demo")

    def dcount(col):
        return lambda rows: len({r[col] for r in rows if r[col] is not None})

    s = summarize(t, [("TimeGenerated", "datetime", lambda r: bin_hour(r["TimeGenerated"]))],
                  [(f"dcount_{c}", "long", dcount(c)) for c in
                   ("LinksEstablished", "LinksLive", "LinksFailed", "LinksTerminated")])
    s.render = {"visualization": "timechart"}
    return s


@query("Connection failures trend (docs)")
def q_failures_trend(tb):
    t = where(tb["VMConnection"], lambda r: r["Computer"] == "acme-demo")
    t = extend(t, "bythehour", "int", lambda r: r["TimeGenerated"].hour)
    t = project(t, "bythehour", "LinksFailed")
    res = sort(summarize(t, ["bythehour"], [("failCount", "long", count_)]), [("bythehour", "asc")])
    res.render = {"visualization": "timechart"}
    res.notes = "failCount counts acme-demo's records per hour of day (count(), not a sum of LinksFailed)."
    return res


@query("Bound ports (docs)")
def q_bound_ports(tb):
    since = NOW - timedelta(hours=24)
    t = where(tb["VMBoundPort"], lambda r: r["TimeGenerated"] >= since and r["Computer"] == "admdemo-appsvr")
    res = distinct(t, "Port", "ProcessName")
    res.notes = ("node:3000's last record is exactly NOW-24h (kept: >= is inclusive); python3:8000's last record "
                 "is one minute earlier (dropped). 127.0.0.1 binds are not filtered here.")
    return res


@query("Number of open ports across machines (docs)")
def q_open_ports(tb):
    t = where(tb["VMBoundPort"], lambda r: r["Ip"] != "127.0.0.1")
    s = summarize(t, ["Computer", "Machine", "Port", "Protocol"], [])
    return sort(summarize(s, ["Computer", "Machine"], [("OpenPorts", "long", count_)]), [("OpenPorts", "desc")])


@query("Score processes by the number of ports they have open (docs)")
def q_process_ports(tb):
    t = where(tb["VMBoundPort"], lambda r: r["Ip"] != "127.0.0.1")
    s = summarize(t, ["ProcessName", "Port", "Protocol"], [])
    return sort(summarize(s, ["ProcessName"], [("OpenPorts", "long", count_)]), [("OpenPorts", "desc")])


@query("Aggregate behavior for each port (docs)")
def q_port_behaviour(tb):
    t = where(tb["VMBoundPort"], lambda r: r["Ip"] != "127.0.0.1")
    by = ["Machine", "Computer", "ProcessName", "Ip", "Port", "IsWildcardBind"]
    groups: "OrderedDict[tuple, list]" = OrderedDict()
    for r in t.rows:
        groups.setdefault(tuple(r[b] for b in by), []).append(r)
    rows = []
    for key, rs in groups.items():
        latest = max(rs, key=lambda r: r["TimeGenerated"])
        assert sum(1 for r in rs if r["TimeGenerated"] == latest["TimeGenerated"]) == 1
        row = dict(zip(by, key))
        for c in ("BytesSent", "BytesReceived", "LinksEstablished", "LinksTerminated"):
            row[c] = sum_of(c)(rs)
        row["TimeGenerated"] = latest["TimeGenerated"]
        row["LinksLive"] = latest["LinksLive"]
        rows.append(row)
    cols = [(b, t.type_of(b)) for b in by] + [(c, "long") for c in
                                               ("BytesSent", "BytesReceived", "LinksEstablished", "LinksTerminated")]
    cols += [("TimeGenerated", "datetime"), ("LinksLive", "long")]
    s = project_away(T(cols, rows), "TimeGenerated")
    res = sort(s, [("Machine", "desc"), ("Computer", "desc"), ("Port", "desc"), ("Ip", "desc"),
                   ("ProcessName", "desc")])
    res.notes = "`order by` columns without asc/desc are each descending."
    return res


@query("Outbound dependencies of a group of machines (docs)")
def q_dependencies(tb):
    machines = {"m-82412a7a-6a32-45a9-a8d6-538354224a25"}
    # ips: ServiceMapComputer_CL | summarize ips = makeset(todynamic(Ipv4Addresses_s)) by MonitoredMachine
    #      | mvexpand ips to typeof(string)
    s = summarize(tb["ServiceMapComputer_CL"], [("MonitoredMachine", "string", lambda r: r["ResourceName_s"])],
                  [("ips", "dynamic", lambda rows: make_set([todynamic(r["Ipv4Addresses_s"]) for r in rows]))])
    ips = T([("MonitoredMachine", "string"), ("ips", "string")],
            [{"MonitoredMachine": r["MonitoredMachine"], "ips": _kusto_tostring(ip)} for r in s.rows for ip in r["ips"]])
    out = arg_max(where(tb["VMConnection"], lambda r: r["Machine"] in machines), "TimeGenerated", ["ConnectionId"])
    conn_cols = ["ConnectionId", "Direction", "Machine", "Process", "ProcessName", "SourceIp", "DestinationIp",
                 "DestinationPort", "Protocol", "RemoteIp"]
    local = project(where(out, lambda r: r["RemoteIp"].lower().startswith("127.")), *conn_cols,
                    ("RemoteMachine", "string", lambda r: r["Machine"]))
    j = join(where(out, lambda r: not r["RemoteIp"].lower().startswith("127.")), ips, "leftouter", "RemoteIp", "ips")
    remote = summarize(j, conn_cols + [("RemoteMachine", "string", lambda r: r["MonitoredMachine"])], [])
    remote_machines = {r["RemoteMachine"] for r in remote.rows}
    u = union(local, remote)
    u = where(u, lambda r: r["Direction"] == "outbound" or (
        r["Direction"] == "inbound" and r["RemoteMachine"] not in machines))
    u = summarize(u, conn_cols + ["RemoteMachine"], [])
    u = extend(u, "RemotePort", "int", lambda r: r["DestinationPort"] if r["Direction"] == "outbound" else 0)
    u = extend(u, "JoinKey", "string", lambda r: ":".join(
        _kusto_tostring(r[c]) for c in ("RemoteMachine", "RemoteIp", "RemotePort", "Protocol")))
    ports = arg_max(where(tb["VMBoundPort"], lambda r: r["Machine"] in remote_machines), "TimeGenerated", ["PortId"])
    ports = extend(ports, "JoinKey", "string", lambda r: ":".join(
        _kusto_tostring(r[c]) for c in ("Machine", "Ip", "Port", "Protocol")))
    j2 = join(u, ports, "leftouter", "JoinKey", "JoinKey")
    assert {"Process1", "ProcessName1"} <= set(j2.names)

    def remote_of(r):
        if r["RemoteMachine"] == "":
            return {}
        return {"Machine": r["RemoteMachine"], "Process": r["Process1"], "ProcessName": r["ProcessName1"]}

    res = summarize(j2, conn_cols[:-1], [("Remote", "dynamic", lambda rows: make_set([remote_of(r) for r in rows]))])
    res.notes = ("Remote is a make_set (element order undefined; every set here has one element). Unmonitored "
                 "remotes give [{}]; inbound remotes and the loopback row find no port (RemotePort 0, or the local "
                 "machine is not among remoteMachines) so Process/ProcessName are empty strings; the loopback "
                 "inbound java row is dropped because its RemoteMachine is in `machines`.")
    return res


# --------------------------------------------------------------------------- driver


def parse_blocks(text: str) -> "OrderedDict[str, str]":
    blocks: "OrderedDict[str, str]" = OrderedDict()
    title = None
    for line in text.splitlines():
        m = re.match(r"^// ==== (.+?)\s*$", line)
        if m:
            title = m.group(1)
            blocks[title] = ""
        elif title is not None:
            blocks[title] += line + "\n"
    return OrderedDict((k, v.strip() + "\n") for k, v in blocks.items())


def slug(title: str) -> str:
    """The title lowercased, every non-alphanumeric character replaced by "_" (no collapsing)."""
    return re.sub(r"[^a-z0-9]", "_", title.lower())


def to_document(title: str, res) -> dict:
    if isinstance(res, dict):
        return res  # {"pending": ...}, written as is
    doc = {"title": title,
           "columns": [[c, ty] for c, ty in res.columns],
           "rows": [[to_json(r[c], ty) for c, ty in res.columns] for r in res.rows],
           "ordered": hasattr(res, "order_by")}
    if hasattr(res, "order_by"):
        doc["order_by"] = res.order_by
    if hasattr(res, "render"):
        doc["render"] = res.render
    if hasattr(res, "notes"):
        doc["notes"] = res.notes
    return doc


def dump(doc: dict) -> str:
    """One row per line: readable diffs, easy review."""
    parts = ["{"]
    keys = list(doc)
    for i, k in enumerate(keys):
        comma = "," if i < len(keys) - 1 else ""
        if k in ("rows", "columns") and doc[k]:
            inner = ",\n".join("    " + json.dumps(r, ensure_ascii=False) for r in doc[k])
            parts.append(f'  "{k}": [\n{inner}\n  ]{comma}')
        else:
            parts.append(f"  {json.dumps(k)}: {json.dumps(doc[k], ensure_ascii=False)}{comma}")
    parts.append("}")
    return "\n".join(parts) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    blocks = parse_blocks(_first_existing(SEED_QUERIES).read_text())
    missing = [t for t in blocks if t not in QUERIES]
    extra = [t for t in QUERIES if t not in blocks]
    assert not missing and not extra, f"blocks without an answer: {missing}; answers without a block: {extra}"
    tables = load_tables()
    OUT.mkdir(exist_ok=True)
    index, changed = {}, []
    for title, kql in blocks.items():
        doc = to_document(title, QUERIES[title](tables))
        name = f"{slug(title)}.expected.json"
        index[name] = title
        text = dump(doc)
        path = OUT / name
        if not path.exists() or path.read_text() != text:
            changed.append(name)
            if not check:
                path.write_text(text)
        review(title, name, doc)
    idx = json.dumps({"files": index}, indent=2, ensure_ascii=False) + "\n"
    if not (OUT / "index.json").exists() or (OUT / "index.json").read_text() != idx:
        changed.append("index.json")
        if not check:
            (OUT / "index.json").write_text(idx)
    stale = sorted(p.name for p in OUT.glob("*.expected.json") if p.name not in index)
    print(f"\n{len(blocks)} blocks; {'would change' if check else 'rewritten'}: {changed or 'none'}; "
          f"stale files: {stale or 'none'}")
    return 1 if check and (changed or stale) else 0


def review(title: str, name: str, doc: dict, show: int = 8) -> None:
    print(f"\n=== {title}\n    {name}")
    if "pending" in doc:
        print(f"    pending: {doc['pending']}")
        return
    print("    columns:", ", ".join(f"{c}:{t}" for c, t in doc["columns"]))
    extra = [f"ordered by {doc['order_by']}" if doc["ordered"] else "unordered"]
    if "render" in doc:
        extra.append(f"render {doc['render']}")
    print(f"    {len(doc['rows'])} rows, " + ", ".join(extra))
    for r in doc["rows"][:show]:
        s = json.dumps(r, ensure_ascii=False)
        print("     ", s if len(s) < 220 else s[:217] + "...")
    if len(doc["rows"]) > show:
        print(f"      ... {len(doc['rows']) - show} more")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
