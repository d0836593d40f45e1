"""Enrichment at ingestion: geolocation from the shipped GeoLite2-City database, and the malicious-IP
columns from threat-intelligence feeds in each format (files written by the tests), matched
exactly or by CIDR range. Through ``Workspace.ingest`` here; tests/test_server_enrichment.py
covers the HTTP paths.
"""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import netatlas
from netatlas import threatintel as ti
from netatlas.geoip import GeoIP, GeoIPError, bundled_database, is_public

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime.now(timezone.utc).replace(microsecond=0)
T = (NOW - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
LOCAL = "10.1.0.5"

# Values read from the GeoLite2-City database of maxminddb-geolite2 2018.703 (build of 2018-07-03)
KNOWN = {
    "151.101.64.223": ("United States", 37.7697, -122.3933),    # Fastly, San Francisco
    "8.8.8.8": ("United States", 37.751, -97.822),              # country-level only
    "185.220.101.47": ("Germany", 51.2993, 9.491),
    "2001:4860:4860::8888": ("United States", 37.4192, -122.0574),   # Google, Mountain View
}
NOT_PUBLIC = ["10.0.0.9", "192.168.1.20", "172.16.5.5", "127.0.0.1", "169.254.10.10", "100.64.0.7", "::1",
              "fe80::1", "fd00::5", "224.0.0.251"]
MALICIOUS_COLUMNS = ("MaliciousIp", "IndicatorThreatType", "Description", "TLPLevel", "Confidence", "Severity",
                     "FirstReportedDateTime", "LastReportedDateTime", "IsActive", "ReportReferenceLink",
                     "AdditionalInformation")


def conn(remote: str, direction: str = "outbound", **extra) -> dict:
    src, dst = (LOCAL, remote) if direction == "outbound" else (remote, LOCAL)
    return dict(dict(TimeGenerated=T, Computer="web-1", Direction=direction, SourceIp=src, DestinationIp=dst,
                     DestinationPort=443), **extra)


def rows(ws, query: str) -> list[dict]:
    r = ws.query(query)
    return [dict(zip(r.columns, row)) for row in r.rows]


def by_remote(ws) -> dict[str, dict]:
    return {r["RemoteIp"]: r for r in rows(ws, "VMConnection")}


# ---------------------------------------------------------------- geolocation

def test_public_addresses_get_country_and_coordinates_from_the_shipped_database():
    ws = netatlas.connect()
    ws.ingest("VMConnection", [conn(ip) for ip in KNOWN] + [conn("8.8.8.8", "inbound", Computer="web-2")])
    got = rows(ws, "VMConnection | project Computer, RemoteIp, RemoteCountry, RemoteLatitude, RemoteLongitude")
    for r in got:
        country, lat, lon = KNOWN[r["RemoteIp"]]
        assert (r["RemoteCountry"], r["RemoteLatitude"], r["RemoteLongitude"]) == \
            (country, pytest.approx(lat, abs=1e-9), pytest.approx(lon, abs=1e-9)), r
    assert {r["Computer"] for r in got if r["RemoteIp"] == "8.8.8.8"} == {"web-1", "web-2"}   # inbound: SourceIp


def test_private_loopback_link_local_and_unknown_addresses_stay_empty():
    ws = netatlas.connect()
    ws.ingest("VMConnection", [conn(ip) for ip in NOT_PUBLIC] + [conn("45.155.205.233")])   # allocated after 2018
    for r in rows(ws, "VMConnection"):
        assert (r["RemoteCountry"], r["RemoteLatitude"], r["RemoteLongitude"]) == ("", None, None), r
    assert not [ip for ip in NOT_PUBLIC if is_public(ip)]


def test_only_public_addresses_reach_the_database():
    ws = netatlas.connect()
    geo, asked = ws.geoip, []
    find = geo._find
    geo._find = lambda ip: asked.append(ip) or find(ip)          # what goes to the mmdb reader
    ws.ingest("VMConnection", [conn(ip) for ip in NOT_PUBLIC] + [conn("151.101.64.223"), conn("151.101.64.223")])
    assert asked == ["151.101.64.223"]


def test_values_a_record_brings_are_kept():
    ws = netatlas.connect()
    ws.ingest("VMConnection", [conn("151.101.64.223", RemoteCountry="Elsewhere", RemoteLatitude=1.5,
                                    RemoteLongitude=2.5)])
    [r] = rows(ws, "VMConnection")
    assert (r["RemoteCountry"], r["RemoteLatitude"], r["RemoteLongitude"]) == ("Elsewhere", 1.5, 2.5)


def test_cache_answers_repeated_addresses():
    geo = GeoIP()
    assert geo.lookup("151.101.64.223") == KNOWN["151.101.64.223"]
    assert geo.lookup("151.101.64.223") is geo.lookup("151.101.64.223")
    assert (geo.lookups, geo.hits) == (1, 2)


def test_geolocation_off_and_another_database(tmp_path):
    off = netatlas.connect(geoip=False)
    off.ingest("VMConnection", [conn("151.101.64.223")])
    assert rows(off, "VMConnection")[0]["RemoteCountry"] == ""
    copy = tmp_path / "city.mmdb"
    copy.write_bytes(bundled_database().read_bytes())
    named = netatlas.connect(geoip=copy)
    named.ingest("VMConnection", [conn("151.101.64.223")])
    assert rows(named, "VMConnection")[0]["RemoteCountry"] == "United States"
    info = named.geoip.info()
    assert info["path"] == str(copy) and info["databaseType"] == "GeoLite2-City" and not info["bundled"]
    assert info["built"] == "2018-07-03" and "MaxMind" in info["attribution"] and info["ageDays"] > 3000


def test_a_database_that_is_not_one_is_a_clear_error(tmp_path):
    bad = tmp_path / "not-a.mmdb"
    bad.write_bytes(b"this is not a MaxMind database")
    with pytest.raises(GeoIPError, match=r"cannot open the GeoIP database .*not-a\.mmdb"):
        netatlas.connect(geoip=bad)
    with pytest.raises(GeoIPError, match="cannot open"):
        netatlas.connect(geoip=tmp_path / "missing.mmdb")


# ---------------------------------------------------------------- threat intelligence: formats

STIX = {
    "type": "bundle", "id": "bundle--1",
    "objects": [
        {"type": "indicator", "spec_version": "2.1", "id": "indicator--exact", "created": "2026-01-02T03:04:05Z",
         "modified": "2026-11-01T00:00:00Z", "name": "Emotet C2 server", "description": "Emotet command and control",
         "indicator_types": ["malicious-activity"], "labels": ["c2"], "pattern": "[ipv4-addr:value = '198.18.0.1']",
         "pattern_type": "stix", "valid_from": "2026-01-02T03:04:05Z", "confidence": 85,
         "object_marking_refs": ["marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"],
         "external_references": [{"source_name": "vendor", "url": "https://intel.example/emotet"}]},
        {"type": "indicator", "spec_version": "2.1", "id": "indicator--range", "created": "2025-05-05T00:00:00Z",
         "modified": "2025-06-06T00:00:00Z", "name": "Scanner range", "labels": ["misp:threat-level=\"high\""],
         "indicator_types": ["anomalous-activity"], "description": "mass scanning, exploit attempts",
         "pattern": "[ipv4-addr:value = '203.0.113.0/24' OR ipv6-addr:value = '2001:db8:bad::/48']",
         "pattern_type": "stix", "valid_from": "2025-05-05T00:00:00Z"},
        {"type": "indicator", "spec_version": "2.1", "id": "indicator--domain", "created": "2026-01-01T00:00:00Z",
         "modified": "2026-01-01T00:00:00Z", "pattern": "[domain-name:value = 'evil.example']",
         "pattern_type": "stix", "valid_from": "2026-01-01T00:00:00Z"},
        {"type": "indicator", "spec_version": "2.1", "id": "indicator--revoked", "created": "2026-01-01T00:00:00Z",
         "modified": "2026-01-01T00:00:00Z", "revoked": True, "name": "no longer bad",
         "pattern": "[ipv4-addr:value = '198.18.0.2']", "pattern_type": "stix", "valid_from": "2026-01-01T00:00:00Z"},
        {"type": "indicator", "spec_version": "2.1", "id": "indicator--expired", "created": "2024-01-01T00:00:00Z",
         "modified": "2024-01-01T00:00:00Z", "name": "old phishing host",
         "pattern": "[ipv4-addr:value = '198.18.0.3']", "pattern_type": "stix", "valid_from": "2024-01-01T00:00:00Z",
         "valid_until": "2024-02-01T00:00:00Z"},
        {"type": "identity", "spec_version": "2.1", "id": "identity--x", "name": "someone"},
    ],
}

FEODO = """################################################################
# abuse.ch Feodo Tracker Botnet C2 IP Blocklist (CSV)          #
# Last updated: 2026-11-25 10:00:00 UTC                        #
################################################################
#
# "first_seen_utc","dst_ip","dst_port","c2_status","last_online","malware"
"2026-10-01 07:44:46","198.18.1.10","443","online","2026-11-24","QakBot"
"2026-09-12 11:02:13","198.18.1.11","8080","offline","2026-10-30","Dridex"
"2026-09-12 11:02:13","not-an-ip","8080","offline","2026-10-30","Dridex"
"""

PLAIN_CSV = """ip,threat,description,confidence,reference
198.18.2.20,phishing,credential phishing kit host,95,https://intel.example/p/1
198.18.2.0/28,cryptomining,pool proxies,60,
"""

FIREHOL = """#
# firehol_level1 ipset
#
# Maintainer      : FireHOL
# Maintainer URL  : http://iplists.firehol.org/
# Category        : attacks
#
198.18.3.0/24
198.18.4.7
"""

PLAIN = """# our own blocklist
198.18.5.5
198.18.5.6   # trailing comment
garbage
"""


def load(fmt: str, text: str, ws=None, **kw):
    ws = ws or netatlas.connect()
    indicators, report = ti.parse(text, fmt, source=fmt, **kw)
    ws.import_indicators(indicators, fmt)
    return ws, report


def test_stix_exact_and_cidr_matches_carry_every_indicator_column():
    ws, report = load("stix", json.dumps(STIX))
    assert report["indicators"] == 5 and report["skipped"] == {"no IP address in the pattern": 1}
    ws.ingest("VMConnection", [conn("198.18.0.1"), conn("203.0.113.77", "inbound"), conn("2001:db8:bad:1::9"),
                               conn("198.18.0.2"), conn("198.18.0.3"), conn("198.18.0.4"), conn("10.0.0.1")])
    got = by_remote(ws)
    exact = got["198.18.0.1"]
    assert {c: exact[c] for c in MALICIOUS_COLUMNS} == {
        "MaliciousIp": "198.18.0.1", "IndicatorThreatType": "C2", "Description": "Emotet command and control",
        "TLPLevel": "Red", "Confidence": "85", "Severity": 3, "FirstReportedDateTime": "2026-01-02T03:04:05Z",
        "LastReportedDateTime": "2026-11-01T00:00:00Z", "IsActive": "True",
        "ReportReferenceLink": "https://intel.example/emotet",
        "AdditionalInformation": json.dumps({"indicator_types": ["malicious-activity"], "labels": ["c2"],
                                             "name": "Emotet C2 server"}, sort_keys=True)}
    for ip in ("203.0.113.77", "2001:db8:bad:1::9"):                 # by range, IPv4 and IPv6
        r = got[ip]
        assert (r["MaliciousIp"], r["IndicatorThreatType"], r["Severity"], r["TLPLevel"], r["Confidence"]) == \
            (ip, "Malware", 5, "White", "50"), r
    for ip in ("198.18.0.2", "198.18.0.3", "198.18.0.4", "10.0.0.1"):   # revoked, expired, unknown, private
        assert {c: got[ip][c] for c in MALICIOUS_COLUMNS} == {c: ("" if c != "Severity" else None)
                                                              for c in MALICIOUS_COLUMNS}, ip


def test_feodo_csv_with_its_header_in_a_comment():
    ws, report = load("csv", FEODO)
    assert report["indicators"] == 2 and report["skipped"] == {"not an IP address or range": 1}
    ws.ingest("VMConnection", [conn("198.18.1.10"), conn("198.18.1.11"), conn("198.18.1.12")])
    got = by_remote(ws)
    assert (got["198.18.1.10"]["IndicatorThreatType"], got["198.18.1.10"]["Description"],
            got["198.18.1.10"]["FirstReportedDateTime"], got["198.18.1.10"]["LastReportedDateTime"],
            got["198.18.1.10"]["Confidence"]) == ("C2", "QakBot, port 443, online", "2026-10-01T07:44:46Z",
                                                  "2026-11-24T00:00:00Z", "75")
    assert got["198.18.1.11"]["MaliciousIp"] == "198.18.1.11"
    assert json.loads(got["198.18.1.11"]["AdditionalInformation"])["malware"] == "Dridex"
    assert got["198.18.1.12"]["MaliciousIp"] == ""


def test_csv_with_a_header_row_exact_and_range():
    ws, _ = load("csv", PLAIN_CSV)
    ws.ingest("VMConnection", [conn("198.18.2.20"), conn("198.18.2.5"), conn("198.18.2.16")])
    got = by_remote(ws)
    assert (got["198.18.2.20"]["IndicatorThreatType"], got["198.18.2.20"]["Confidence"],
            got["198.18.2.20"]["ReportReferenceLink"]) == ("Phishing", "95", "https://intel.example/p/1")
    assert (got["198.18.2.5"]["IndicatorThreatType"], got["198.18.2.5"]["Description"]) == \
        ("CryptoMining", "pool proxies")                              # in 198.18.2.0/28
    assert got["198.18.2.16"]["MaliciousIp"] == ""                    # just past the /28


def test_firehol_netset_and_a_plain_list():
    ws, report = load("list", FIREHOL)
    assert report["indicators"] == 2
    ws, report = load("list", PLAIN, ws=ws)
    assert report == {"format": "list", "source": "list", "indicators": 2,
                      "skipped": {"not an IP address or range": 1}}
    ws.ingest("VMConnection", [conn("198.18.5.6")])
    assert by_remote(ws)["198.18.5.6"]["IndicatorThreatType"] == "Watchlist"
    ws2, _ = load("list", FIREHOL)
    ws2.ingest("VMConnection", [conn("198.18.3.200"), conn("198.18.4.7")])
    got = by_remote(ws2)
    assert got["198.18.3.200"]["IndicatorThreatType"] == "Malware"    # "Category : attacks"
    assert got["198.18.4.7"]["ReportReferenceLink"] == "http://iplists.firehol.org/"


def test_the_most_specific_indicator_wins_and_a_reimport_replaces_its_feed():
    ws = netatlas.connect()
    ws.import_indicators(ti.parse("198.18.0.0/16\n", "list", threat_type="Watchlist")[0], "wide")
    ws.import_indicators(ti.parse("198.18.7.0/24\n", "list", threat_type="Botnet")[0], "narrow")
    ws.import_indicators(ti.parse("198.18.7.7\n", "list", threat_type="C2")[0], "exact")
    ws.ingest("VMConnection", [conn("198.18.7.7"), conn("198.18.7.8"), conn("198.18.8.8")])
    got = by_remote(ws)
    assert [got[ip]["IndicatorThreatType"] for ip in ("198.18.7.7", "198.18.7.8", "198.18.8.8")] == \
        ["C2", "Botnet", "Watchlist"]
    ws.import_indicators([], "exact")                                  # the feed now lists nothing
    assert rows(ws, "ThreatIntelligenceIndicator | summarize count() by SourceSystem | order by SourceSystem asc") == \
        [{"SourceSystem": "narrow", "count_": 1}, {"SourceSystem": "wide", "count_": 1}]
    ws.ingest("VMConnection", [conn("198.18.7.7", Computer="later")])
    assert rows(ws, "VMConnection | where Computer == 'later'")[0]["IndicatorThreatType"] == "Botnet"


def test_the_indicator_table_holds_what_was_imported():
    ws, _ = load("stix", json.dumps(STIX))
    got = {r["ExternalIndicatorId"] + " " + (r["NetworkIP"] or r["NetworkCidrBlock"]): r
           for r in rows(ws, "ThreatIntelligenceIndicator")}
    assert set(got) == {"indicator--exact 198.18.0.1", "indicator--range 203.0.113.0/24",
                        "indicator--range 2001:db8:bad::/48", "indicator--revoked 198.18.0.2",
                        "indicator--expired 198.18.0.3"}
    assert got["indicator--revoked 198.18.0.2"]["Active"] is False
    assert got["indicator--exact 198.18.0.1"]["TrafficLightProtocolLevel"] == "Red"
    assert got["indicator--exact 198.18.0.1"]["ConfidenceScore"] == 85.0


def test_an_indicator_stops_matching_when_it_expires():
    soon = (datetime.now(timezone.utc) + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    bundle = {"type": "bundle", "objects": [
        {"type": "indicator", "id": "indicator--soon", "pattern": "[ipv4-addr:value = '198.18.40.4']",
         "pattern_type": "stix", "valid_from": "2026-01-01T00:00:00Z", "valid_until": soon}]}
    ws, _ = load("stix", json.dumps(bundle))
    ws.ingest("VMConnection", [conn("198.18.40.4", Computer="before")])
    import time
    time.sleep(max(0.0, (datetime.fromisoformat(soon.replace("Z", "+00:00")) - datetime.now(timezone.utc))
                   .total_seconds()) + 0.2)
    ws.ingest("VMConnection", [conn("198.18.40.4", Computer="after")])
    got = {r["Computer"]: r["MaliciousIp"] for r in rows(ws, "VMConnection")}
    assert got == {"before": "198.18.40.4", "after": ""}


def test_an_address_spelled_otherwise_matches_an_exact_indicator():
    ws, _ = load("list", "198.18.41.1\n2001:db8::41\n")
    ws.ingest("VMConnection", [conn("::ffff:198.18.41.1"), conn("2001:DB8:0::41")])
    assert {r["RemoteIp"]: r["MaliciousIp"] for r in rows(ws, "VMConnection")} == {
        "::ffff:198.18.41.1": "::ffff:198.18.41.1", "2001:DB8:0::41": "2001:DB8:0::41"}


def test_a_stix_object_of_the_wrong_shape_is_a_feed_error_naming_it():
    bundle = {"type": "bundle", "objects": [{"type": "indicator", "id": "indicator--odd", "name": 5,
                                             "pattern": "[ipv4-addr:value = '198.18.42.2']", "pattern_type": "stix",
                                             "object_marking_refs": 3}]}
    with pytest.raises(ti.FeedError, match=r"STIX object 0 \(indicator--odd\)"):
        ti.parse(json.dumps(bundle), "stix")


@pytest.mark.parametrize("fmt, text, message", [
    ("stix", '{"type": "bundle", "objects": [', r"invalid JSON at line 1, column \d+"),
    ("stix", '{"type": "bundle"}', 'no "objects" list'),
    ("csv", "name,port\nfoo,80\n", "CSV header .* has no address column"),
    ("xml", "<x/>", "unknown feed format 'xml'"),
])
def test_a_feed_that_cannot_be_read_is_a_clear_error_and_replaces_nothing(fmt, text, message):
    ws, _ = load("list", "198.18.9.9\n")
    with pytest.raises(ti.FeedError, match=message):
        ti.parse(text, fmt)
    assert rows(ws, "ThreatIntelligenceIndicator | count") == [{"Count": 1}]


def test_formats_are_guessed():
    assert ti.guess_format(json.dumps(STIX)) == "stix"
    assert ti.guess_format(FEODO) == "csv" and ti.guess_format(PLAIN_CSV) == "csv"
    assert ti.guess_format(FIREHOL) == "list" and ti.guess_format(PLAIN) == "list"


def test_cli_import_into_a_workspace_directory(tmp_path):
    feed = tmp_path / "feodo.csv"
    feed.write_text(FEODO)
    env = {"PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "netatlas", "threatintel", "import", str(feed), "--data",
                          str(tmp_path / "ws")], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "feodo.csv: 2 indicators stored (csv); skipped: 1 not an IP address or range"
    bad = tmp_path / "bad.json"
    bad.write_text("{ nope")
    out = subprocess.run([sys.executable, "-m", "netatlas", "threatintel", "import", str(bad), "--data",
                          str(tmp_path / "ws")], capture_output=True, text=True, env=env)
    assert out.returncode == 1 and "bad.json: not a STIX bundle: invalid JSON at line 1, column 3" in out.stderr
    with netatlas.connect(tmp_path / "ws") as ws:
        assert rows(ws, "ThreatIntelligenceIndicator | summarize count() by SourceSystem") == \
            [{"SourceSystem": "feodo.csv", "count_": 2}]


# ---------------------------------------------------------------- remote machines

@pytest.fixture(params=["duckdb", "chdb"])
def any_store_ws(request, tmp_path):
    """A workspace on each store: DuckDB (in memory) and ClickHouse (chdb, its tables there, the
    senders learned at ingestion in the workspace's own database)."""
    if request.param == "chdb":
        pytest.importorskip("chdb", reason="chdb is not installed: pip install -e '.[clickhouse]'")
        ws = netatlas.connect(tmp_path / "ws", store="chdb")
    else:
        ws = netatlas.connect()
    yield ws
    ws.close()


def test_addresses_resolve_to_machines_by_their_own_addresses_and_behind_a_nat(any_store_ws):
    ws = any_store_ws
    ws.ingest("VMComputer", [
        dict(TimeGenerated=T, Computer="db-1", Machine="m-db1", Ipv4Addresses=["10.0.5.1", "10.0.6.1"],
             Ipv6Addresses=["fd00::51"]),
        dict(TimeGenerated=T, Computer="db-2", Machine="m-db2", Ipv4Addresses=["10.0.5.2"]),
        dict(TimeGenerated=(NOW - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ"), Computer="old",
             Machine="m-old", Ipv4Addresses=["10.0.5.9"])])
    # two agents behind one NAT gateway: their batches come from 198.51.100.7, none of their own
    for name in ("web-1", "web-2"):
        body = json.dumps([dict(TimeGenerated=T, Computer=name, Machine=f"m-{name}", Ipv4Addresses=["192.168.0.10"])])
        ws.ingest_json("VMComputer", body, sender="198.51.100.7")
    ws.ingest_json("VMComputer", json.dumps([dict(TimeGenerated=T, Computer="db-2", Machine="m-db2",
                                                  Ipv4Addresses=["10.0.5.2"])]), sender="10.0.5.2")   # its own
    ws.ingest_json("VMComputer", json.dumps([dict(TimeGenerated=T, Computer="lo", Machine="m-lo")]), sender="127.0.0.1")
    got = ws.resolve_addresses(["10.0.6.1", "fd00:0::51", "10.0.5.2", "10.0.5.9", "198.51.100.7", "127.0.0.1",
                                "::ffff:10.0.5.2", "8.8.8.8"])
    assert got == {
        "10.0.6.1": [{"machine": "m-db1", "computer": "db-1", "via": "address"}],
        "fd00:0::51": [{"machine": "m-db1", "computer": "db-1", "via": "address"}],     # canonical form
        "10.0.5.2": [{"machine": "m-db2", "computer": "db-2", "via": "address"}],
        "10.0.5.9": [],                                                                 # older than a day
        "198.51.100.7": [{"machine": "m-web-1", "computer": "web-1", "via": "nat"},
                         {"machine": "m-web-2", "computer": "web-2", "via": "nat"}],
        "127.0.0.1": [],
        "::ffff:10.0.5.2": [{"machine": "m-db2", "computer": "db-2", "via": "address"}],
        "8.8.8.8": []}
    assert ws.resolve_addresses(["10.0.5.9"], lookback_days=7)["10.0.5.9"][0]["machine"] == "m-old"


# ---- the enrich stage's tables (enrich.py) -----------------------------------------------------

def test_every_fill_and_lookup_renders_sql_the_store_runs_for_every_table():
    """Each FILLS row and each lookup's fills, rendered for every catalogue table they apply to,
    runs in DuckDB over a staged row of that table (the columns as read, __bytes, the lookups'
    columns): a row of the tables is never a text that only fails when a batch arrives."""
    from netatlas import enrich, ingest
    from netatlas.catalogue import Catalogue
    cat = Catalogue.load()
    ws = netatlas.connect()
    try:
        con = ws.connection
        checked = 0
        for table in cat.tables.values():
            exprs = dict(enrich.columns(table, {"workspace_id": "w"}))
            joins = ""
            for spec in enrich.LOOKUPS:
                if table.name in spec.tables:
                    exprs.update(enrich._lookup_exprs(spec, table))
                    cols = ", ".join(f"CAST(NULL AS {t}) AS {n}" for n, t in spec.columns)
                    joins += f", (SELECT {cols}) AS {spec.alias}"
            if not exprs:
                continue
            staged = ", ".join(f"CAST(NULL AS {ingest.READ_AS[t]}) AS {ingest._q(c)}" for c, t in table.columns)
            select = ", ".join(f"{e} AS {ingest._q(c)}" for c, e in exprs.items())
            row = con.execute(f"SELECT {select} FROM (SELECT {staged}, 17 AS __bytes) AS __batch{joins}").fetchone()
            got = dict(zip(exprs, row))
            assert got.get("Type", table.name) == table.name
            if "_BilledSize" in got:
                assert got["_BilledSize"] == 17.0
            checked += 1
        assert checked == sum(1 for t in cat.tables.values() if "Type" in t.column_types)
    finally:
        ws.close()


def test_fills_apply_by_the_tables_columns():
    """A column is filled only in the tables that have it (and what it needs): _ResourceId needs a
    Computer, RemoteIp is VMConnection's; the workspace id is in the machine's resource id."""
    from netatlas import enrich
    from netatlas.catalogue import Catalogue
    cat = Catalogue.load()
    vm = enrich.columns(cat.get("VMConnection"), {"workspace_id": "ws-7"})
    assert {"Type", "SourceSystem", "_BilledSize", "_IsBillable", "_ResourceId", "RemoteIp"} <= set(vm)
    assert "/netatlas/workspaces/ws-7/machines/" in vm["_ResourceId"]
    from netatlas.catalogue import Table
    no_computer = Table("Custom_CL", (("TimeGenerated", "datetime"), ("_ResourceId", "string"), ("Type", "string")))
    assert set(enrich.columns(no_computer, {})) == {"Type"}          # no machine to make a resource id of
    assert all("RemoteIp" not in enrich.columns(t, {}) for t in cat.tables.values() if t.name != "VMConnection")
