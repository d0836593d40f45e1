"""The ClickHouse dialect's runtime, as data: the SQL functions its SQL may call.

``FUNCTIONS``: name -> "(params) -> body", installed by the store once per connection as
``CREATE OR REPLACE FUNCTION name AS (params) -> body`` (ClickHouse inlines them, like DuckDB's
macros). Dynamic values are JSON text in a String; timespans Int64 ticks of 100 ns; datetimes
DateTime64(6, 'UTC'). Each one does what the DuckDB runtime's function of the same name does
(``dialects/duckdb/runtime.py``); ``tests/golden`` runs both.
"""
from __future__ import annotations

from ...tokens import TICKS
from .series import FUNCTIONS as SERIES_FUNCTIONS

# DuckDB's json_type names for ClickHouse's JSONType names
_JSON_TYPES = ("['Null', 'String', 'Array', 'Object', 'Int64', 'UInt64', 'Double', 'Bool']",
               "['NULL', 'VARCHAR', 'ARRAY', 'OBJECT', 'BIGINT', 'UBIGINT', 'DOUBLE', 'BOOLEAN']")
_KQL_TYPES = "['array', 'dictionary', 'string', 'long', 'long', 'real', 'bool', 'null']"

_IPV4 = r"'^(\\d{1,3})\\.(\\d{1,3})\\.(\\d{1,3})\\.(\\d{1,3})(/\\d{1,2})?$'"
_PREFIX = r"coalesce(toInt64OrNull(extract(s, '/(\\d+)$')), 32)"

_UNITS = "[" + ", ".join(f"'{u}'" for u in TICKS) + "]"
_UNIT_TICKS = "[" + ", ".join(f"toInt64({t})" for t in TICKS.values()) + "]"

FUNCTIONS: dict[str, str] = {
    # totimespan(text) as literals.parse_timespan reads it: [-][d.]hh:mm[:ss[.fffffff]], a number
    # and a unit (2h, 1.5d, 100ms), or a number of days
    "netatlas_totimespan": "(s) -> if(isNull(s), NULL, netatlas_timespan_text(trimBoth(trimBoth(assumeNotNull(s)), '\\'\"')))",
    "netatlas_timespan_text": (
        r"(t) -> multiIf(match(t, '^-?(\d+\.)?\d{1,2}:\d{1,2}(:\d{1,2}(\.\d{1,7})?)?$'), "
        r"if(startsWith(t, '-'), -1, 1) * ((((toInt64OrZero(extract(t, '^-?(\d+)\.\d{1,2}:')) * 24 "
        r"+ toInt64OrZero(extract(t, '^-?(?:\d+\.)?(\d{1,2}):'))) * 60 "
        r"+ toInt64OrZero(extract(t, '^-?(?:\d+\.)?\d{1,2}:(\d{1,2})'))) * 60 "
        r"+ toInt64OrZero(extract(t, '^-?(?:\d+\.)?\d{1,2}:\d{1,2}:(\d{1,2})'))) * 10000000 "
        r"+ toInt64OrZero(rightPad(extract(t, ':\d{1,2}\.(\d{1,7})$'), 7, '0'))), "
        r"match(t, '^-?\d+(\.\d+)?\s*[A-Za-z]+$') AND "
        f"has({_UNITS}, lower(extract(t, '([A-Za-z]+)$'))), "
        r"if(startsWith(t, '-'), -1, 1) * toInt64(round(toFloat64(extract(t, '^-?(\d+(?:\.\d+)?)')) * "
        f"transform(lower(extract(t, '([A-Za-z]+)$')), {_UNITS}, {_UNIT_TICKS}, toInt64(0)))), "
        "isNotNull(toFloat64OrNull(t)), toInt64(round(toFloat64OrZero(t) * 864000000000)), NULL)"),
    # parse_url(text) as the DuckDB runtime's _parse_url (Python's urlsplit): a JSON object
    "netatlas_parse_url": (
        "(s) -> if(ifNull(s, '') = '', '{}', concat("
        "'{\"Scheme\":', toJSONString(protocol(assumeNotNull(s))), "
        "',\"Host\":', toJSONString(lower(extract(assumeNotNull(s), '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?\\[?([^\\]:/?#]*)'))), "
        "',\"Port\":', toJSONString(extract(assumeNotNull(s), '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?(?:\\[[^\\]]*\\]|[^:/?#]*):(\\d+)')), "
        "',\"Path\":', toJSONString(path(assumeNotNull(s))), "
        r"',\"Username\":', toJSONString(extract(assumeNotNull(s), '^[A-Za-z][A-Za-z0-9+.-]*://([^:@/]*)(?::[^@/]*)?@')), "
        r"',\"Password\":', toJSONString(extract(assumeNotNull(s), '^[A-Za-z][A-Za-z0-9+.-]*://[^:@/]*:([^@/]*)@')), "
        "',\"Query Parameters\":{', arrayStringConcat(arrayMap(p -> concat("
        "toJSONString(decodeURLFormComponent(splitByChar('=', p)[1])), ':', "
        "toJSONString(decodeURLFormComponent(arrayStringConcat(arraySlice(splitByChar('=', p), 2), '=')))), "
        "extractURLParameters(assumeNotNull(s))), ','), '}', "
        "',\"Fragment\":', toJSONString(fragment(assumeNotNull(s))), '}'))"),
    "netatlas_round": "(x, d) -> if(isNull(x), NULL, sign(x) * floor(abs(x) * pow(10, d) + 0.5) / pow(10, d))",
    "netatlas_series": ("(a, b, st) -> if(st = 0 OR (b - a) / st < 0, [], "
                        "arrayMap(i -> a + i * st, range(toUInt64(floor((b - a) / st) + 1))))"),
    "netatlas_list_slice": "(l, a, b) -> arraySlice(l, a, greatest(b - a + 1, 0))",
    "netatlas_json_type": (f"(j) -> if(isNull(j), NULL, transform(toString(JSONType(j)), {_JSON_TYPES[0]}, "
                           f"{_JSON_TYPES[1]}, 'NULL'))"),
    "netatlas_json_value_str": ("(raw) -> multiIf(isNull(raw), NULL, raw = 'null', NULL, "
                                "toString(JSONType(raw)) = 'String', JSONExtractString(raw), raw)"),
    "netatlas_dynamic_str": ("(j) -> multiIf(isNull(j), NULL, toString(JSONType(j)) = 'String', JSONExtractString(j), "
                             "toString(JSONType(j)) = 'Null', '', j)"),
    "netatlas_gettype": (f"(j) -> if(isNull(j), 'null', transform(toString(JSONType(j)), "
                         f"['Array', 'Object', 'String', 'Int64', 'UInt64', 'Double', 'Bool', 'Null'], {_KQL_TYPES}, 'null'))"),
    "netatlas_parse_json": "(s) -> if(isValidJSON(s), s, toJSONString(s))",
    # a value as JSON text: a String is a dynamic value already (the planner passes dynamic values),
    # LowCardinality too (toJSONString of a LowCardinality column is one)
    "netatlas_json_value": ("(x) -> if(toTypeName(x) IN ('String', 'Nullable(String)', 'LowCardinality(String)', "
                            "'LowCardinality(Nullable(String))'), ifNull(toString(x), 'null'), "
                            "toJSONString(x))"),
    # a JSON object (text) without its null-valued members
    "netatlas_json_drop_nulls": ("(j) -> if(isNull(j), NULL, concat('{', arrayStringConcat(arrayMap(m -> "
                                 "concat(toJSONString(m.1), ':', m.2), arrayFilter(m -> m.2 != 'null', "
                                 "JSONExtractKeysAndValuesRaw(assumeNotNull(j)))), ','), '}'))"),
    "netatlas_json_array": "(texts) -> concat('[', arrayStringConcat(arrayMap(t -> ifNull(t, 'null'), texts), ','), ']')",
    # dynamic arrays as lists of JSON texts (DuckDB's JSON[]): empty for a value that is no array
    "netatlas_json_list": "(j) -> if(toString(JSONType(ifNull(j, ''))) = 'Array', JSONExtractArrayRaw(ifNull(j, '')), [])",
    "netatlas_array_sort": (
        "(j, dir) -> if(toString(JSONType(ifNull(j, ''))) != 'Array', NULL, netatlas_json_array(if(dir = 'DESC', "
        "arrayReverseSort(JSONExtractArrayRaw(ifNull(j, ''))), arraySort(JSONExtractArrayRaw(ifNull(j, ''))))))"),
    "netatlas_mv_list": (
        "(j, bagexp) -> multiIf(isNull(j), [CAST(NULL, 'Nullable(String)')], "
        "toString(JSONType(ifNull(j, ''))) = 'Array', arrayMap(x -> toNullable(x), JSONExtractArrayRaw(ifNull(j, ''))), "
        "toString(JSONType(ifNull(j, ''))) = 'Object', arrayMap(k -> toNullable(if(bagexp = 'array', "
        "concat('[', toJSONString(k), ',', JSONExtractRaw(ifNull(j, ''), k), ']'), "
        "concat('{', toJSONString(k), ':', JSONExtractRaw(ifNull(j, ''), k), '}'))), "
        "JSONExtractKeys(ifNull(j, ''))), [toNullable(j)])"),
    "netatlas_set_union": "(a, b) -> arrayDistinct(arrayConcat(a, b))",
    "netatlas_set_intersect": "(a, b) -> arrayDistinct(arrayFilter(x -> has(b, x), a))",
    "netatlas_set_difference": "(a, b) -> arrayDistinct(arrayFilter(x -> NOT has(b, x), a))",
    "netatlas_array_index_of": (
        "(l, x, st, ln, occ) -> if(occ < 0 OR ln < -1, NULL, netatlas_nth_or(arrayFilter(i -> l[i + 1] = x, "
        "range(netatlas_window_start(toInt64(length(l)), st), greatest(netatlas_window_start(toInt64(length(l)), st), "
        "if(ln = -1, toInt64(length(l)), least(netatlas_window_start(toInt64(length(l)), st) + ln, toInt64(length(l))))))), "
        "greatest(occ, 1), -1))"),
    # indexof(s, m, start, length, occurrence) as .NET's IndexOf runs it (DuckDB's runtime: _indexof)
    "netatlas_indexof_step": (
        "(s, m, pos, ln) -> toInt64(if(pos > lengthUTF8(s), -1, "
        "if(positionUTF8(substringUTF8(s, pos + 1, greatest(if(ln = -1, lengthUTF8(s), least(pos + ln, lengthUTF8(s))) - pos, 0)), m) = 0, -1, "
        "pos + positionUTF8(substringUTF8(s, pos + 1, greatest(if(ln = -1, lengthUTF8(s), least(pos + ln, lengthUTF8(s))) - pos, 0)), m) - 1)))"),
    "netatlas_indexof": (
        "(s, m, st, ln, occ) -> if(isNull(s) OR isNull(m) OR isNull(st) OR isNull(ln) OR isNull(occ) OR occ < 0 OR ln < -1, NULL, "
        "tupleElement(arrayFold((acc, i) -> if(tupleElement(acc, 2) = -1, acc, "
        "(assumeNotNull(netatlas_indexof_step(assumeNotNull(s), assumeNotNull(m), tupleElement(acc, 1), assumeNotNull(ln))) + 1, "
        "assumeNotNull(netatlas_indexof_step(assumeNotNull(s), assumeNotNull(m), tupleElement(acc, 1), assumeNotNull(ln))))), "
        "range(toUInt64(greatest(assumeNotNull(occ), 1))), "
        "(toInt64(if(assumeNotNull(st) < 0, greatest(toInt64(lengthUTF8(assumeNotNull(s))) + assumeNotNull(st), 0), assumeNotNull(st))), "
        "toInt64(0))), 2))"),
    # ipv6_compare(a, b, bits): IPv4 as IPv4-mapped IPv6, prefixes from "/n" (DuckDB's runtime: _ipv6_compare)
    # an address with ':' is IPv6, but ::a.b.c.d, which Kusto reads as the IPv4 address a.b.c.d
    "netatlas_ipv6_is_v6": r"(a) -> position(a, ':') > 0 AND NOT match(a, '^::\d+\.\d+\.\d+\.\d+$')",
    "netatlas_ipv6_addr": (
        "(s) -> toIPv6OrNull(if(netatlas_ipv6_is_v6(splitByChar('/', s)[1]), splitByChar('/', s)[1], "
        "concat('::ffff:', replaceOne(splitByChar('/', s)[1], '::', ''))))"),
    "netatlas_ipv6_bits": (
        r"(s) -> if(netatlas_ipv6_is_v6(splitByChar('/', s)[1]), coalesce(toInt64OrNull(extract(s, '/(\d+)$')), 128), "
        r"coalesce(toInt64OrNull(extract(s, '/(\d+)$')) + 96, 128))"),
    "netatlas_ipv6_compare": (
        "(a, b, bits) -> if(isNull(netatlas_ipv6_addr(a)) OR isNull(netatlas_ipv6_addr(b)), NULL, "
        "toInt64(sign(netatlas_ipv6_prefix_cmp(assumeNotNull(netatlas_ipv6_addr(a)), assumeNotNull(netatlas_ipv6_addr(b)), "
        "toUInt8(least(coalesce(bits, 128), netatlas_ipv6_bits(a), netatlas_ipv6_bits(b)))))))"),
    # parse_ipv6(s) / parse_ipv6_mask(s, bits): eight groups of four hex digits, masked ("" when no address)
    "netatlas_parse_ipv6": (
        "(s, m) -> if(isNull(netatlas_ipv6_addr(s)), '', arrayStringConcat(arrayMap(i -> substring(lower(hex("
        "tupleElement(IPv6CIDRToRange(assumeNotNull(netatlas_ipv6_addr(s)), toUInt8(greatest(least(netatlas_ipv6_bits(s), "
        "coalesce(m, 128)), 0))), 1))), i * 4 + 1, 4), range(8)), ':'))"),
    "netatlas_ipv6_prefix_cmp": (
        "(x, y, p) -> if(tupleElement(IPv6CIDRToRange(x, p), 1) < tupleElement(IPv6CIDRToRange(y, p), 1), -1, "
        "if(tupleElement(IPv6CIDRToRange(x, p), 1) > tupleElement(IPv6CIDRToRange(y, p), 1), 1, 0))"),
    "netatlas_window_start": "(n, st) -> if(st < 0, greatest(n + st, 0), least(st, n))",
    "netatlas_nth_or": "(l, n, dflt) -> if(length(l) >= n, toInt64(l[n]), dflt)",
    # bag_remove_keys (as DuckDB's runtime): the bag rebuilt from its raw key/value pairs
    "netatlas_bag_drop": (
        "(j, ks) -> if(isNull(j) OR toString(JSONType(ifNull(j, ''))) != 'Object', j, concat('{', arrayStringConcat("
        "arrayMap(p -> concat(toJSONString(p.1), ':', p.2), arrayFilter(p -> NOT has(ks, p.1), "
        "JSONExtractKeysAndValuesRaw(ifNull(j, '')))), ','), '}'))"),
    "netatlas_bag_put": (
        "(j, k, v) -> if(isNull(j) OR toString(JSONType(ifNull(j, ''))) != 'Object', j, concat('{', arrayStringConcat("
        "arrayMap(p -> concat(toJSONString(p.1), ':', if(p.1 = k, ifNull(v, 'null'), p.2)), "
        "JSONExtractKeysAndValuesRaw(ifNull(j, ''))), ','), '}'))"),
    "netatlas_bag_get": "(j, k) -> JSONExtractRaw(ifNull(j, ''), k)",
    "netatlas_array_slice": (
        "(j, s, e) -> if(toString(JSONType(j)) != 'Array', NULL, netatlas_json_array(arraySlice(JSONExtractArrayRaw(j), "
        "if(s < 0, JSONLength(j) + s, s) + 1, "
        "greatest(if(e < 0, JSONLength(j) + e + 1, e + 1) - if(s < 0, JSONLength(j) + s, s), 0))))"),
    "netatlas_make_set_values": "(l) -> netatlas_json_array(arrayDistinct(l))",
    "netatlas_make_set_dynamic": (
        "(l) -> netatlas_json_array(arrayDistinct(arrayFlatten(arrayMap(x -> "
        "if(toString(JSONType(x)) = 'Array', JSONExtractArrayRaw(x), [x]), l))))"),
    "netatlas_make_bag": (
        "(l) -> arrayFold((acc, x) -> JSONMergePatch(acc, x), "
        "arrayFilter(x -> toString(JSONType(x)) = 'Object', l), '{}')"),
    "netatlas_datetime_str": (
        "(ts) -> if(isNull(ts), NULL, if(toUnixTimestamp64Micro(ts) % 1000000 = 0, "
        "formatDateTime(ts, '%Y-%m-%dT%H:%i:%SZ'), concat(formatDateTime(ts, '%Y-%m-%dT%H:%i:%S.%f'), '0Z')))"),
    "netatlas_timespan_str": (
        "(t) -> if(isNull(t), NULL, concat(if(t < 0, '-', ''), "
        "if(abs(t) >= 864000000000, concat(toString(intDiv(abs(t), 864000000000)), '.'), ''), "
        "leftPad(toString(intDiv(abs(t), 36000000000) % 24), 2, '0'), ':', "
        "leftPad(toString(intDiv(abs(t), 600000000) % 60), 2, '0'), ':', "
        "leftPad(toString(intDiv(abs(t), 10000000) % 60), 2, '0'), "
        "if(abs(t) % 10000000 != 0, concat('.', leftPad(toString(abs(t) % 10000000), 7, '0')), '')))"),
    "netatlas_real_str": (
        "(x) -> multiIf(isNull(x), NULL, isNaN(x), 'NaN', isInfinite(x), if(x > 0, 'Infinity', '-Infinity'), "
        "x = trunc(x) AND abs(x) < 1e15, toString(toInt64(x)), toString(x))"),
    "netatlas_countof": (
        "(s, m) -> if(lengthUTF8(m) = 0, 0, length(arrayFilter(i -> substringUTF8(s, i, lengthUTF8(m)) = m, "
        "range(1, toUInt64(greatest(lengthUTF8(s) - lengthUTF8(m) + 2, 1))))))"),
    "netatlas_extract_all": "(s, p, g) -> arrayMap(m -> m[g + 1], extractAllGroupsVertical(s, concat('(', p, ')')))",
    "netatlas_make_datetime": (          # null for a day the month lacks, as DuckDB's try(make_timestamp)
        "(y, m, d, h, mi, s) -> if(m BETWEEN 1 AND 12 AND d BETWEEN 1 AND 31 AND "
        "toDayOfMonth(makeDate(y, m, 1) + INTERVAL (d - 1) DAY) = d, makeDateTime64(y, m, d, h, mi, toUInt8(floor(s)), "
        "toUInt32(round((s - floor(s)) * 1000000)), 6, 'UTC'), NULL)"),
    "netatlas_nearest_rank": "(sorted, p) -> if(empty(sorted), NULL, sorted[toUInt64(greatest(ceil(length(sorted) * p), 1))])",
    "netatlas_ipv4_masked": (
        "(v, bits) -> multiIf(bits >= 32, v, bits <= 0, 0, "
        "intDiv(v, bitShiftLeft(toInt64(1), 32 - bits)) * bitShiftLeft(toInt64(1), 32 - bits))"),
    "netatlas_ipv4_prefix": f"(s) -> {_PREFIX}",
    "netatlas_parse_ipv4": (
        f"(s) -> if(match(s, {_IPV4}) "
        r"AND toInt64OrZero(extract(s, '^(\\d+)')) < 256 AND toInt64OrZero(extract(s, '^\\d+\\.(\\d+)')) < 256 "
        r"AND toInt64OrZero(extract(s, '^\\d+\\.\\d+\\.(\\d+)')) < 256 "
        r"AND toInt64OrZero(extract(s, '^\\d+\\.\\d+\\.\\d+\\.(\\d+)')) < 256, "
        r"netatlas_ipv4_masked(toInt64OrZero(extract(s, '^(\\d+)')) * 16777216 + "
        r"toInt64OrZero(extract(s, '^\\d+\\.(\\d+)')) * 65536 + toInt64OrZero(extract(s, '^\\d+\\.\\d+\\.(\\d+)')) * 256 + "
        r"toInt64OrZero(extract(s, '^\\d+\\.\\d+\\.\\d+\\.(\\d+)')), "
        f"{_PREFIX}), NULL)"),
    "netatlas_format_ipv4": (
        "(v) -> if(isNull(v) OR v < 0 OR v > 4294967295, NULL, concat(toString(intDiv(v, 16777216)), '.', "
        "toString(intDiv(v, 65536) % 256), '.', toString(intDiv(v, 256) % 256), '.', toString(v % 256)))"),
    "netatlas_ipv4_in_range": (
        r"(ip, rng) -> netatlas_ipv4_masked(netatlas_parse_ipv4(ip), "
        r"coalesce(toInt64OrNull(extract(rng, '/(\\d+)$')), 32)) = netatlas_parse_ipv4(rng)"),
    "netatlas_ipv4_compare": (
        r"(a, b, bits) -> toInt64(sign(netatlas_ipv4_masked(netatlas_parse_ipv4(a), least(bits, "
        r"coalesce(toInt64OrNull(extract(a, '/(\\d+)$')), 32), coalesce(toInt64OrNull(extract(b, '/(\\d+)$')), 32))) - "
        r"netatlas_ipv4_masked(netatlas_parse_ipv4(b), least(bits, "
        r"coalesce(toInt64OrNull(extract(a, '/(\\d+)$')), 32), coalesce(toInt64OrNull(extract(b, '/(\\d+)$')), 32)))))"),
    "netatlas_ipv4_is_private": (
        "(ip) -> netatlas_ipv4_in_range(ip, '10.0.0.0/8') OR netatlas_ipv4_in_range(ip, '172.16.0.0/12') "
        "OR netatlas_ipv4_in_range(ip, '192.168.0.0/16')"),
}

FUNCTIONS.update(SERIES_FUNCTIONS)

__all__ = ["FUNCTIONS"]
