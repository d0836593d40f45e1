"""The DuckDB dialect's runtime, as data: the helper SQL macros and functions generated SQL may call.

The store installs them once per connection (``netatlas.store.duckdb.install_runtime``): simple
conversions are SQL macros (``MACROS``: name -> "(params) AS body", inlined by DuckDB, so they
cost nothing); rare, intricate ones (IPv6, timespan formats, datetime text parsing) are Python
functions (``UDFS``: name, function, argument types, result type) registered with DuckDB.
"""
from __future__ import annotations

import ipaddress
import json
import struct

from ...literals import format_timespan, parse_datetime, parse_timespan, timespan_format_tokens

MACROS = {
    # a JSON object without its null-valued members (merge patching it onto {} drops them)
    "netatlas_json_drop_nulls": "(j) AS json_merge_patch(CAST('{}' AS JSON), j)",
    "netatlas_datetime_str": (
        "(ts) AS CASE WHEN ts IS NULL THEN NULL WHEN microsecond(ts) % 1000000 = 0 "
        "THEN strftime(ts, '%Y-%m-%dT%H:%M:%SZ') "
        "ELSE strftime(ts, '%Y-%m-%dT%H:%M:%S.%f') || '0Z' END"),
    "netatlas_timespan_str": (
        "(t) AS CASE WHEN t IS NULL THEN NULL ELSE "
        "(CASE WHEN t < 0 THEN '-' ELSE '' END) || "
        "(CASE WHEN abs(t) >= 864000000000 THEN CAST(abs(t) // 864000000000 AS VARCHAR) || '.' ELSE '' END) || "
        "lpad(CAST((abs(t) // 36000000000) % 24 AS VARCHAR), 2, '0') || ':' || "
        "lpad(CAST((abs(t) // 600000000) % 60 AS VARCHAR), 2, '0') || ':' || "
        "lpad(CAST((abs(t) // 10000000) % 60 AS VARCHAR), 2, '0') || "
        "(CASE WHEN abs(t) % 10000000 <> 0 THEN '.' || lpad(CAST(abs(t) % 10000000 AS VARCHAR), 7, '0') ELSE '' END) END"),
    "netatlas_parse_timespan": (
        "(s) AS CASE WHEN regexp_full_match(s, '-?(\\d+\\.)?\\d{1,2}:\\d{1,2}(:\\d{1,2}(\\.\\d{1,7})?)?') THEN "
        "(CASE WHEN s LIKE '-%' THEN -1 ELSE 1 END) * ("
        "coalesce(TRY_CAST(regexp_extract(s, '^-?(\\d+)\\.\\d{1,2}:', 1) AS BIGINT), 0) * 864000000000 + "
        "CAST(regexp_extract(s, '(\\d{1,2}):\\d{1,2}(:|$)', 1) AS BIGINT) * 36000000000 + "
        "CAST(regexp_extract(s, '\\d{1,2}:(\\d{1,2})(:|$)', 1) AS BIGINT) * 600000000 + "
        "coalesce(TRY_CAST(regexp_extract(s, '\\d{1,2}:\\d{1,2}:(\\d{1,2})', 1) AS BIGINT), 0) * 10000000 + "
        "coalesce(TRY_CAST(rpad(regexp_extract(s, ':\\d{1,2}\\.(\\d{1,7})$', 1), 7, '0') AS BIGINT), 0)) "
        "END"),
    "netatlas_real_str": (
        "(x) AS CASE WHEN x IS NULL THEN NULL WHEN isnan(x) THEN 'NaN' "
        "WHEN isinf(x) THEN (CASE WHEN x > 0 THEN 'Infinity' ELSE '-Infinity' END) "
        "WHEN x = trunc(x) AND abs(x) < 1e15 THEN CAST(CAST(x AS BIGINT) AS VARCHAR) "
        "ELSE CAST(x AS VARCHAR) END"),
    "netatlas_dynamic_str": (
        "(j) AS CASE WHEN j IS NULL THEN NULL WHEN json_type(j) = 'VARCHAR' THEN json_extract_string(j, '$') "
        "WHEN json_type(j) = 'NULL' THEN '' ELSE CAST(j AS VARCHAR) END"),
    "netatlas_json_list": (
        "(j) AS CASE WHEN json_type(j) = 'ARRAY' THEN CAST(j AS JSON[]) ELSE NULL END"),
    "netatlas_parse_json": (
        "(s) AS CASE WHEN json_valid(s) THEN CAST(s AS JSON) ELSE to_json(s) END"),
    "netatlas_gettype": (
        "(j) AS CASE json_type(j) WHEN 'ARRAY' THEN 'array' WHEN 'OBJECT' THEN 'dictionary' "
        "WHEN 'VARCHAR' THEN 'string' WHEN 'BIGINT' THEN 'long' WHEN 'UBIGINT' THEN 'long' "
        "WHEN 'DOUBLE' THEN 'real' WHEN 'BOOLEAN' THEN 'bool' WHEN 'NULL' THEN 'null' ELSE 'null' END"),
    "netatlas_array_slice": (
        "(j, s, e) AS CASE WHEN json_type(j) <> 'ARRAY' THEN NULL ELSE to_json(list_slice(CAST(j AS JSON[]), "
        "(CASE WHEN s < 0 THEN json_array_length(j) + s ELSE s END) + 1, "
        "CASE WHEN e < 0 THEN json_array_length(j) + e + 1 ELSE e + 1 END))::JSON END"),
    # bag_remove_keys: a bag without the listed first-level keys; a key's value replaced; a key's value
    # (anything not a bag is returned as it is)
    "netatlas_bag_drop": (
        "(j, ks) AS CASE WHEN json_type(j) <> 'OBJECT' THEN j ELSE to_json(map_from_entries(list_filter("
        "map_entries(CAST(j AS MAP(VARCHAR, JSON))), lambda e: NOT list_contains(ks, e.key))))::JSON END"),
    "netatlas_bag_put": (
        "(j, k, v) AS CASE WHEN json_type(j) <> 'OBJECT' THEN j ELSE to_json(map_from_entries(list_transform("
        "map_entries(CAST(j AS MAP(VARCHAR, JSON))), lambda e: CASE WHEN e.key = k THEN {'key': e.key, 'value': v} "
        "ELSE e END)))::JSON END"),
    "netatlas_bag_get": "(j, k) AS json_extract(j, '$.' || to_json(k)::VARCHAR)",
    "netatlas_array_sort": (
        "(j, dir) AS CASE WHEN json_type(j) <> 'ARRAY' THEN NULL ELSE to_json(list_sort(CAST(j AS JSON[]), dir))::JSON END"),
    # set_* work on JSON[] lists and return lists (folded over several arrays by the builder)
    "netatlas_set_union": "(a, b) AS list_distinct(list_concat(a, b))",
    "netatlas_set_intersect": "(a, b) AS list_distinct(list_filter(a, lambda x: list_contains(b, x)))",
    "netatlas_set_difference": "(a, b) AS list_distinct(list_filter(a, lambda x: NOT list_contains(b, x)))",
    # array_index_of over the elements' JSON texts: start < 0 counts from the end, length -1 = to the end,
    # the occ-th match (1-based); null for occurrence < 0 or length < -1
    "netatlas_array_index_of": (
        "(l, x, st, ln, occ) AS CASE WHEN l IS NULL OR occ < 0 OR ln < -1 THEN NULL ELSE coalesce(list_filter("
        "range(CASE WHEN st < 0 THEN greatest(len(l) + st, 0) ELSE st END, "
        "CASE WHEN ln = -1 THEN len(l) ELSE least((CASE WHEN st < 0 THEN greatest(len(l) + st, 0) ELSE st END) + ln, "
        "len(l)) END), lambda i: l[i + 1] = x)[greatest(occ, 1)], -1) END"),
    "netatlas_ipv4_masked": (
        "(v, bits) AS CASE WHEN bits >= 32 THEN v WHEN bits <= 0 THEN 0 "
        "ELSE (v // (1::BIGINT << (32 - bits))) * (1::BIGINT << (32 - bits)) END"),
    "netatlas_parse_ipv4": (
        "(s) AS CASE WHEN regexp_full_match(s, '(\\d{1,3})\\.(\\d{1,3})\\.(\\d{1,3})\\.(\\d{1,3})(/\\d{1,2})?') "
        "AND CAST(regexp_extract(s, '^(\\d+)', 1) AS BIGINT) < 256 "
        "AND CAST(regexp_extract(s, '^\\d+\\.(\\d+)', 1) AS BIGINT) < 256 "
        "AND CAST(regexp_extract(s, '^\\d+\\.\\d+\\.(\\d+)', 1) AS BIGINT) < 256 "
        "AND CAST(regexp_extract(s, '^\\d+\\.\\d+\\.\\d+\\.(\\d+)', 1) AS BIGINT) < 256 THEN "
        "netatlas_ipv4_masked("
        "CAST(regexp_extract(s, '^(\\d+)', 1) AS BIGINT) * 16777216 + "
        "CAST(regexp_extract(s, '^\\d+\\.(\\d+)', 1) AS BIGINT) * 65536 + "
        "CAST(regexp_extract(s, '^\\d+\\.\\d+\\.(\\d+)', 1) AS BIGINT) * 256 + "
        "CAST(regexp_extract(s, '^\\d+\\.\\d+\\.\\d+\\.(\\d+)', 1) AS BIGINT), "
        "coalesce(TRY_CAST(regexp_extract(s, '/(\\d+)$', 1) AS BIGINT), 32)) END"),
    "netatlas_format_ipv4": (
        "(v) AS CASE WHEN v IS NULL OR v < 0 OR v > 4294967295 THEN NULL ELSE "
        "CAST(v // 16777216 AS VARCHAR) || '.' || CAST((v // 65536) % 256 AS VARCHAR) || '.' || "
        "CAST((v // 256) % 256 AS VARCHAR) || '.' || CAST(v % 256 AS VARCHAR) END"),
    "netatlas_ipv4_in_range": (
        "(ip, rng) AS netatlas_ipv4_masked(netatlas_parse_ipv4(ip), "
        "coalesce(TRY_CAST(regexp_extract(rng, '/(\\d+)$', 1) AS BIGINT), 32)) = "
        "netatlas_parse_ipv4(rng)"),
    "netatlas_ipv4_compare": (
        "(a, b, bits) AS sign(netatlas_ipv4_masked(netatlas_parse_ipv4(a), least(bits, "
        "coalesce(TRY_CAST(regexp_extract(a, '/(\\d+)$', 1) AS BIGINT), 32), "
        "coalesce(TRY_CAST(regexp_extract(b, '/(\\d+)$', 1) AS BIGINT), 32))) - "
        "netatlas_ipv4_masked(netatlas_parse_ipv4(b), least(bits, "
        "coalesce(TRY_CAST(regexp_extract(a, '/(\\d+)$', 1) AS BIGINT), 32), "
        "coalesce(TRY_CAST(regexp_extract(b, '/(\\d+)$', 1) AS BIGINT), 32))))::BIGINT"),
    "netatlas_ipv4_prefix": "(s) AS coalesce(TRY_CAST(regexp_extract(s, '/(\\d+)$', 1) AS BIGINT), 32)",
    "netatlas_make_set_values": "(l) AS coalesce(to_json(list_distinct(l)), '[]')::JSON",
    "netatlas_make_set_dynamic": (
        "(l) AS coalesce(to_json(list_distinct(flatten(list_transform(l, lambda x: CASE WHEN json_type(x) = 'ARRAY' "
        "THEN CAST(x AS JSON[]) ELSE [x] END)))), '[]')::JSON"),
    "netatlas_make_bag": (
        "(l) AS list_reduce(list_prepend('{}'::JSON, list_filter(l, lambda x: json_type(x) = 'OBJECT')), "
        "lambda a, b: json_merge_patch(a, b))"),
    "netatlas_mv_list": (
        "(j, bagexp) AS CASE WHEN j IS NULL THEN [NULL::JSON] WHEN json_type(j) = 'ARRAY' THEN CAST(j AS JSON[]) "
        "WHEN json_type(j) = 'OBJECT' THEN list_transform(json_keys(j), lambda k: CASE WHEN bagexp = 'array' "
        "THEN json_array(k, json_extract(j, '$.\"' || replace(k, '\"', '\\\"') || '\"')) "
        "ELSE json_object(k, json_extract(j, '$.\"' || replace(k, '\"', '\\\"') || '\"')) END) "
        "ELSE [j] END"),
    # countof(s, m): plain matches may overlap
    "netatlas_countof": (
        "(s, m) AS CASE WHEN length(m) = 0 THEN 0 ELSE len(list_filter(range(length(s) - length(m) + 1), "
        "lambda i: substring(s, i + 1, length(m)) = m)) END"),
    "netatlas_ipv4_is_private": (
        "(ip) AS netatlas_ipv4_in_range(ip, '10.0.0.0/8') OR netatlas_ipv4_in_range(ip, '172.16.0.0/12') "
        "OR netatlas_ipv4_in_range(ip, '192.168.0.0/16')"),
}


def _todatetime(s: str | None):
    return None if s is None else parse_datetime(s)


def _totimespan(s: str | None):
    return None if s is None else parse_timespan(s)


def _ipv6_compare(a: str | None, b: str | None, bits: int | None):
    try:
        na = ipaddress.ip_network(_v6(a), strict=False)
        nb = ipaddress.ip_network(_v6(b), strict=False)
    except (ValueError, TypeError, AttributeError):    # not an address, or null
        return None
    p = min(bits if bits is not None else 128, na.prefixlen, nb.prefixlen)
    va = int(na.network_address) >> (128 - p) if p else 0
    vb = int(nb.network_address) >> (128 - p) if p else 0
    return (va > vb) - (va < vb)


def _parse_ipv6(s: str | None, bits: int | None):
    """parse_ipv6 / parse_ipv6_mask: the canonical IPv6 text (eight groups of four hex digits, IPv4
    as IPv4-mapped), masked to the address's own prefix and ``bits``; "" when it is none."""
    try:
        net = ipaddress.ip_network(_v6(s), strict=False)
    except (ValueError, TypeError):
        return ""
    p = max(0, min(net.prefixlen, bits if bits is not None else 128))
    v = (int(net.network_address) >> (128 - p)) << (128 - p) if p else 0
    h = f"{v:032x}"
    return ":".join(h[i:i + 4] for i in range(0, 32, 4))


def _v6(s: str) -> str:
    addr, _, bits = s.partition("/")
    if addr.startswith("::") and addr.count(".") == 3 and ":" not in addr[2:]:
        addr = addr[2:]          # ::a.b.c.d is the IPv4 address a.b.c.d, as Kusto reads it
    ip = ipaddress.ip_address(addr)
    if ip.version == 4:
        ip = ipaddress.IPv6Address("::ffff:" + addr)
        bits = str(96 + int(bits)) if bits else ""
    return f"{ip}/{bits}" if bits else str(ip)


def _format_timespan(ticks: int | None, fmt: str):
    if ticks is None:
        return ""
    neg, t = ticks < 0, abs(ticks)
    parts = {"d": t // 864_000_000_000, "h": (t // 36_000_000_000) % 24, "m": (t // 600_000_000) % 60,
             "s": (t // 10_000_000) % 60, "f": t % 10_000_000}
    out = []
    for kind, c, run in timespan_format_tokens(fmt):
        if kind == "text":
            out.append(c)
        elif c in "fF":
            digits = f"{parts['f']:07d}"[:run]
            out.append(digits.rstrip("0") if c == "F" else digits)
        else:
            out.append(str(parts["h" if c == "H" else c]).zfill(run))
    return ("-" if neg else "") + "".join(out)


def _indexof(s: str | None, m: str | None, start: int | None, length: int | None, occurrence: int | None):
    """indexof(s, m, start, length, occurrence) as Kusto runs it (.NET IndexOf(m, start, length)):
    start < 0 counts from the end, length -1 = to the end, a match must lie inside the window, and
    each further occurrence is looked for in a window of the same length starting after the last one."""
    if s is None or m is None or start is None or length is None or occurrence is None:
        return None
    if occurrence < 0 or length < -1:
        return None
    pos = max(len(s) + start, 0) if start < 0 else start
    found = -1
    for _ in range(max(occurrence, 1)):
        if pos > len(s):
            return -1
        end = len(s) if length == -1 else min(pos + length, len(s))
        found = s.find(m, pos, end)
        if found < 0:
            return -1
        pos = found + 1
    return found


_URL_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!*()")


def _url_encode(s: str | None, plus: bool | None):
    """.NET HttpUtility.UrlEncode, as Kusto's url_encode: lower-case hex, space as '+' (or %20)."""
    if s is None:
        return None
    out = []
    for b in s.encode("utf-8"):
        if b in _URL_SAFE:
            out.append(chr(b))
        elif b == 0x20 and plus:
            out.append("+")
        else:
            out.append(f"%{b:02x}")
    return "".join(out)


def _parse_url(s: str | None):
    from urllib.parse import parse_qsl, urlsplit
    if not s:
        return json.dumps({})
    try:
        u = urlsplit(s)
        return json.dumps({"Scheme": u.scheme, "Host": u.hostname or "", "Port": str(u.port or ""),
                           "Path": u.path, "Username": u.username or "", "Password": u.password or "",
                           "Query Parameters": dict(parse_qsl(u.query)), "Fragment": u.fragment})
    except ValueError:
        return json.dumps({})


_M64 = (1 << 64) - 1
_P1, _P2, _P3, _P4, _P5 = (11400714785074694791, 14029467366897019727, 1609587929392839161,
                           9650029242287828579, 2870177450012600261)


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M64


def _round(acc: int, lane: int) -> int:
    return _rotl((acc + lane * _P2) & _M64, 31) * _P1 & _M64


def _xxhash64(s: str | None):
    """XXH64 (seed 0) of the string's UTF-8 bytes as a signed 64-bit number: Kusto's hash() of a
    string, and its graphs' node ids (ClickHouse's xxHash64)."""
    return None if s is None else _xxh64(s.encode("utf-8"))


def _xxhash64_long(v: int | None):
    """XXH64 of a long's 8 bytes, little-endian: Kusto's hash() of a long, a timespan or a
    datetime's ticks (ClickHouse's xxHash64 of an Int64)."""
    return None if v is None else _xxh64(int(v).to_bytes(8, "little", signed=True))


def _xxhash64_real(v: float | None):
    """XXH64 of a real's IEEE double, little-endian (ClickHouse's xxHash64 of a Float64)."""
    return None if v is None else _xxh64(struct.pack("<d", v))


def _xxh64(b: bytes) -> int:
    n, i = len(b), 0
    if n >= 32:
        v = [(_P1 + _P2) & _M64, _P2, 0, (-_P1) & _M64]
        while i + 32 <= n:
            v = [_round(v[k], int.from_bytes(b[i + 8 * k:i + 8 * k + 8], "little")) for k in range(4)]
            i += 32
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _M64
        for x in v:
            h = ((h ^ _round(0, x)) * _P1 + _P4) & _M64
    else:
        h = _P5
    h = (h + n) & _M64
    while i + 8 <= n:
        h = (_rotl(h ^ _round(0, int.from_bytes(b[i:i + 8], "little")), 27) * _P1 + _P4) & _M64
        i += 8
    if i + 4 <= n:
        h = (_rotl(h ^ (int.from_bytes(b[i:i + 4], "little") * _P1 & _M64), 23) * _P2 + _P3) & _M64
        i += 4
    while i < n:
        h = _rotl(h ^ (b[i] * _P5 & _M64), 11) * _P1 & _M64
        i += 1
    h = (h ^ (h >> 33)) * _P2 & _M64
    h = (h ^ (h >> 29)) * _P3 & _M64
    h ^= h >> 32
    return h - (1 << 64) if h >= 1 << 63 else h


UDFS = [
    ("netatlas_xxhash64", _xxhash64, ["VARCHAR"], "BIGINT"),
    ("netatlas_xxhash64_long", _xxhash64_long, ["BIGINT"], "BIGINT"),
    ("netatlas_xxhash64_real", _xxhash64_real, ["DOUBLE"], "BIGINT"),
    ("netatlas_todatetime", _todatetime, ["VARCHAR"], "TIMESTAMP"),
    ("netatlas_totimespan", _totimespan, ["VARCHAR"], "BIGINT"),
    ("netatlas_ipv6_compare", _ipv6_compare, ["VARCHAR", "VARCHAR", "BIGINT"], "BIGINT"),
    ("netatlas_parse_ipv6", _parse_ipv6, ["VARCHAR", "BIGINT"], "VARCHAR"),
    ("netatlas_format_timespan", _format_timespan, ["BIGINT", "VARCHAR"], "VARCHAR"),
    ("netatlas_parse_url", _parse_url, ["VARCHAR"], "JSON"),
    ("netatlas_indexof", _indexof, ["VARCHAR", "VARCHAR", "BIGINT", "BIGINT", "BIGINT"], "BIGINT"),
    ("netatlas_url_encode", _url_encode, ["VARCHAR", "BOOLEAN"], "VARCHAR"),
]



def _jv(text):
    """A scalar argument passed as JSON text (a dynamic value): its value."""
    return None if text is None else json.loads(text)


def _series_udfs():
    """The series_* functions (``series.py``): series and scalars that keep their type (fill values,
    broadcast operands) arrive as JSON text."""
    from . import series as S
    V, J = "VARCHAR", "JSON"
    out = [(f"netatlas_series_{op}", (lambda op: lambda a, b: S.binary(op, a, b))(op), [V, V], J) for op in S.BINARY]
    out += [(f"netatlas_series_{op}", (lambda op: lambda a: S.unary(op, a))(op), [V], J) for op in S.UNARY]
    out += [
        ("netatlas_series_sum", S.series_sum, [V], "DOUBLE"),
        ("netatlas_series_stats", S.stats, [V, "BOOLEAN"], J),
        ("netatlas_series_fit_line", S.fit_line, [V], J),
        ("netatlas_series_fill_const", lambda s, c, p: S.fill_const(s, _jv(c), _jv(p)), [V, V, V], J),
        ("netatlas_series_fill_forward", lambda s, p: S.fill_forward(s, _jv(p)), [V, V], J),
        ("netatlas_series_fill_backward", lambda s, p: S.fill_backward(s, _jv(p)), [V, V], J),
        ("netatlas_series_fill_linear", lambda s, p, e, c: S.fill_linear(s, _jv(p), e, _jv(c)), [V, V, "BOOLEAN", V], J),
        ("netatlas_series_decompose", S.decompose, [V, "BIGINT", V, "BIGINT", "DOUBLE"], J),
        ("netatlas_series_decompose_forecast", S.decompose_forecast, [V, "BIGINT", "BIGINT", V, "DOUBLE"], J),
        ("netatlas_series_seasonal", S.seasonal, [V, "BIGINT"], J),
        ("netatlas_series_fit_poly", S.fit_poly, [V, V, "BIGINT"], J),
        ("netatlas_series_fft", S.fft, [V, V], J),
        ("netatlas_series_ifft", S.ifft, [V, V], J),
        ("netatlas_series_iir", S.iir, [V, V, V], J),
        ("netatlas_series_fir", S.fir, [V, V, "BOOLEAN", "BOOLEAN"], J),
        ("netatlas_series_dot_product", S.dot_product, [V, V], "DOUBLE"),
        ("netatlas_series_cosine_similarity", S.cosine_similarity, [V, V], "DOUBLE"),
        ("netatlas_series_pearson_correlation", S.pearson_correlation, [V, V], "DOUBLE"),
        ("netatlas_series_magnitude", S.magnitude, [V], "DOUBLE"),
        ("netatlas_series_outliers", S.outliers, [V, V, "DOUBLE", "DOUBLE", "DOUBLE"], J),
        ("netatlas_series_periods_detect", S.periods_detect, [V, "DOUBLE", "DOUBLE", "BIGINT"], J),
        ("netatlas_series_periods_validate", S.periods_validate, [V, V], J),
        ("netatlas_series_decompose_anomalies", S.anomalies, [V, "DOUBLE", "BIGINT", V, "BIGINT", V, "DOUBLE"], J),
        ("netatlas_series_fit_2lines", S.fit_2lines, [V], J),
    ]
    return out


UDFS += _series_udfs()
SERIES_UDFS = [name for name, *_ in UDFS if name.startswith("netatlas_series_")]


__all__ = ["MACROS", "UDFS", "SERIES_UDFS", "format_timespan"]
