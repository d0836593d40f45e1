// Units of query result columns, read from their names and types, and the text of a value in
// its unit: bytes (1.2 MB), rates (3.4 MB/s), durations (2 h 5 min, 230 ms), percentages.
// The logs page's table and charts show values this way; the raw value stays in the cell's
// title, the sort order and the CSV.
import { fmtBytes, fmtNum } from "./util.js";

const NUMERIC = new Set(["long", "int", "real", "decimal"]);

// [unit, test of the column's name], first match wins; a name says its unit the way KQL
// tables name them (BytesSent, ResponseTimeMax in ms, Quantity_MB, DurationSeconds, CpuPercent).
export const UNIT_RULES = [
  ["id", /(port|pid|id|year|code|number|version|wave|community|index)$/i],    // numbers that name: no separators
  ["bytes/s", /(bytes?|_b)(_?per_?s(ec(ond)?)?|_?\/_?s|ps)$/i],
  ["bits/s", /(bits?_?per_?s(ec(ond)?)?|bps)$/i],
  ["MB", /(^|_|[a-z])(MB|MiB|Mbytes|Megabytes)$/],
  ["GB", /(^|_|[a-z])(GB|GiB|Gigabytes)$/],
  ["bytes", /bytes?(sent|received|total|in|out|read|written|_?sum|_?max|_?min|_?avg)?$|^bytes|(^|_)size(_?bytes)?$/i],
  ["ms", /(_ms|Ms|Millis(econds)?|ResponseTime(Max|Min|Sum|Avg)?|Latency(Ms)?)$/],
  ["s", /(_s|_sec|Secs?|Seconds|Duration(Seconds)?)$/],
  ["%", /(percent(age)?|pct|_%|%)$/i],
  ["/s", /(per_?s(ec(ond)?)?|_?rate|PerSec)$/i],
];

// The unit of a column {name, type}: one of UNIT_RULES' units ("id": a number that names, a port
// or a process id, shown as it is), "timespan", or "" (a plain number or text).
export function unitOf(column) {
  if (!column) return "";
  if (column.type === "timespan") return "timespan";
  if (!NUMERIC.has(column.type)) return "";
  const rule = UNIT_RULES.find(([, test]) => test.test(column.name));
  return rule ? rule[0] : "";
}

// Seconds as "230 ms", "12.5 s", "4 min 3 s", "3 h 4 min", "2 d 3 h".
export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(+seconds)) return "";
  const s = +seconds, a = Math.abs(s), sign = s < 0 ? "-" : "";
  if (a < 1) return `${sign}${+(a * 1000).toFixed(a < 0.01 ? 2 : 0)} ms`;
  if (a < 60) return `${sign}${+a.toFixed(1)} s`;
  const two = (big, bigUnit, small, smallUnit) => `${sign}${big} ${bigUnit}${small ? ` ${small} ${smallUnit}` : ""}`;
  if (a < 3600) return two(Math.floor(a / 60), "min", Math.round(a % 60), "s");
  if (a < 86400) return two(Math.floor(a / 3600), "h", Math.round((a % 3600) / 60), "min");
  return two(Math.floor(a / 86400), "d", Math.round((a % 86400) / 3600), "h");
}

// A KQL timespan's text ("1.02:03:04.5", "-00:00:01") -> seconds, or null.
export function timespanSeconds(text) {
  const m = /^(-)?(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)$/.exec(String(text).trim());
  if (!m) return null;
  const s = (+m[2] || 0) * 86400 + +m[3] * 3600 + +m[4] * 60 + +m[5];
  return m[1] ? -s : s;
}

const FORMATS = {
  id: (v) => String(v),
  bytes: (v) => fmtBytes(v),
  "bytes/s": (v) => `${fmtBytes(v)}/s`,
  "bits/s": (v) => `${fmtBytes(v).replace(/B$/, "b")}/s`,
  MB: (v) => fmtBytes(v * 1e6),
  GB: (v) => fmtBytes(v * 1e9),
  ms: (v) => fmtDuration(v / 1000),
  s: (v) => fmtDuration(v),
  "%": (v) => `${(+v).toFixed(Math.abs(v) < 10 ? 2 : 1)} %`,
  "/s": (v) => `${fmtNum(v)}/s`,
  timespan: (v) => { const s = timespanSeconds(v); return s === null ? String(v) : fmtDuration(s); },
};

// The text of a value in its unit (a plain number: thousands separators).
export function fmtValue(v, unit) {
  if (v === null || v === undefined || v === "") return "";
  if (unit === "timespan") return FORMATS.timespan(v);
  if (Number.isNaN(+v)) return String(v);
  return (FORMATS[unit] || fmtNum)(v);
}

// The unit all these columns share, or "".
export function commonUnit(columns) {
  const units = new Set(columns.map(unitOf));
  return units.size === 1 ? [...units][0] : "";
}
