// The side panels of the map, the network chart and the performance page: a machine (its
// VMComputer record, tags, processes and ports; its performance charts and last heartbeat over the
// page's range), a process (command line, version, user), and tables of records.
import { api } from "./api.js";
import { perfOption } from "./charts.js";
import { h, clear, fmtBytes, fmtNum, fmtTime, notice } from "./util.js";

// The first of several spellings a field may have (VMComputer's column or a short name).
export function pick(obj, ...names) {
  if (!obj) return undefined;
  for (const n of names) if (obj[n] !== undefined && obj[n] !== null && obj[n] !== "") return obj[n];
  return undefined;
}

function list(v) {
  if (v === undefined || v === null) return [];
  if (Array.isArray(v)) return v;
  if (typeof v === "string" && v.startsWith("[")) { try { return JSON.parse(v); } catch { /* text */ } }
  return [v];
}

function text(v) {
  if (v === undefined || v === null) return "";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

const MB = 1024 * 1024;

// /api/machines/{id}'s answer -> {record, tags, processes, ports}.
export function machineInfo(info) {
  info = info || {};
  const record = pick(info, "computer", "record", "machine", "vmcomputer", "VMComputer") || info;
  return {
    record: typeof record === "object" ? record : info,
    tags: pick(info, "tags") || pick(record, "tags", "Tags") || {},
    processes: pick(info, "processes") || [],
    ports: pick(info, "ports", "bound_ports", "boundPorts") || [],
  };
}

function propRows(pairs) {
  return h("dl.props", pairs.filter(([, v]) => v !== undefined && v !== null && v !== "" && !(Array.isArray(v) && !v.length))
    .map(([k, v]) => [h("dt", k), h("dd", Array.isArray(v) ? v.join(", ") : text(v))]));
}

// How long ago a time was, in words: "4 min ago", "3 h ago", "2 d ago".
export function ago(t, now = Date.now()) {
  const minutes = Math.max(0, Math.round((now - new Date(t)) / 60000));
  if (minutes < 90) return `${minutes} min ago`;
  if (minutes < 2880) return `${Math.round(minutes / 60)} h ago`;
  return `${Math.round(minutes / 1440)} d ago`;
}

// A machine's last heartbeat ({last_heartbeat, heartbeat_stopped} of /api/map, /api/performance...).
// short: how long ago only (the time in the title).
export function heartbeatText(x, { short = false } = {}) {
  if (!x || !x.last_heartbeat) return h("span.muted", short ? "none" : "no heartbeat in the day before the range's end");
  const when = short ? ago(x.last_heartbeat) : `${fmtTime(x.last_heartbeat)} (${ago(x.last_heartbeat)})`;
  return h(x.heartbeat_stopped ? "span.bad.heartbeat-stopped" : "span.heartbeat-ok", { title: fmtTime(x.last_heartbeat) },
    `${when}${x.heartbeat_stopped ? " · heartbeat stopped" : ""}`);
}

let perfCharts = [];       // the ECharts of machine panels: disposed once their panel has left the page

// A machine's performance over the range ({from, to}): GET /api/machines/{key}/performance, its last
// heartbeat and one small chart per counter (charts.perfOption).
export function performanceSection(key, range) {
  const beat = h("div#machine-heartbeat", notice("loading…"));
  const box = h("div.perf-charts#machine-perf");
  const section = h("div.perf-section", h("h3", "Last heartbeat"), beat, h("h3", "Performance"), box);
  perfCharts = perfCharts.filter((c) => { if (document.body.contains(c.getDom())) return true; c.dispose(); return false; });
  api.get(`/api/machines/${encodeURIComponent(key)}/performance`, { from: range.from, to: range.to }).then((perf) => {
    clear(beat, heartbeatText(perf));
    const charts = perf.charts.filter((c) => c.series.length);
    if (!charts.length) {
      clear(box, notice("no performance counters (InsightsMetrics) in this range"));
      box.dataset.ready = "1";
      box.dataset.charts = "0";
      return;
    }
    clear(box);
    for (const c of charts) {
      const el = h("div.perf-chart", { dataset: { chart: c.id } });
      box.append(el);
      const chart = window.echarts.init(el, null, { renderer: "canvas" });
      chart.setOption(perfOption(c, perf.times));
      perfCharts.push(chart);
    }
    box.dataset.ready = "1";
    box.dataset.charts = String(charts.length);
  }).catch((e) => {
    clear(beat);
    clear(box, notice(e.message, "error"));
    box.dataset.ready = "1";
  });
  return section;
}

// actions: focus (the map of this machine), toggle (expand its processes), open, range ({from, to}:
// its performance over this range).
export function machinePanel(m, info, actions = {}) {
  const { record, tags, processes, ports } = machineInfo(info);
  const memory = pick(record, "PhysicalMemoryMB", "PhysicalMemory_d", "memory_mb");
  const ips = [...list(pick(record, "Ipv4Addresses", "ips")), ...list(pick(record, "Ipv6Addresses"))];
  const tagEntries = Object.entries(typeof tags === "string" ? JSON.parse(tags || "{}") : tags || {});
  const panel = h("div.machine-panel",
    h("h2", pick(record, "Computer", "computer") || m.computer),
    h("div.row.buttons",
      actions.focus ? h("button.small", { onclick: actions.focus }, "Map of this machine") : null,
      actions.toggle ? h("button.small", { onclick: actions.toggle }, actions.open ? "Collapse" : "Expand processes") : null),
    h("h3", "Properties"),
    h("div#machine-props", propRows([
      ["OS", pick(record, "OperatingSystemFullName", "os") || m.os],
      ["OS family", pick(record, "OperatingSystemFamily")],
      ["CPUs", pick(record, "Cpus", "cpus")],
      ["CPU speed", pick(record, "CpuSpeed") ? `${pick(record, "CpuSpeed")} MHz` : undefined],
      ["memory", memory !== undefined ? `${fmtNum(memory / 1024)} GB (${fmtNum(memory)} MB)` : undefined],
      ["IPs", ips.length ? ips : m.ips],
      ["DNS names", list(pick(record, "DnsNames"))],
      ["MAC addresses", list(pick(record, "MacAddresses"))],
      ["virtualization", [pick(record, "VirtualMachineType"), pick(record, "VirtualizationState")].filter(Boolean).join(", ")],
      ["hypervisor", pick(record, "HypervisorType")],
      ["boot time", pick(record, "BootTime") ? fmtTime(pick(record, "BootTime")) : undefined],
      ["time zone", pick(record, "TimeZone")],
      ["agent", pick(record, "DependencyAgentVersion", "AgentId")],
      ["machine id", pick(record, "Machine") || m.id],
      ["last record", pick(record, "TimeGenerated") ? fmtTime(pick(record, "TimeGenerated")) : undefined],
    ])),
    actions.range ? performanceSection(pick(record, "Machine") || m.id, actions.range) : null,
    h("h3", "Tags"),
    tagEntries.length ? h("div.tags", tagEntries.map(([k, v]) => h("span.tag", `${k}=${text(v)}`))) : h("p.muted", "no tags"),
    h("h3", `Processes (${processes.length})`),
    processes.length ? simpleTable(["name", "version", "user", "started"], processes.map((p) => [
      pick(p, "name", "DisplayName", "ExecutableName", "ProcessName"),
      pick(p, "version", "ProductVersion", "FileVersion"),
      pick(p, "user", "UserName"),
      pick(p, "start_time", "started", "StartTime") ? fmtTime(pick(p, "start_time", "started", "StartTime")) : "",
    ])) : h("p.muted", "none reported"),
    h("h3", `Bound ports (${ports.length})`),
    ports.length ? simpleTable(["port", "ip", "process", "protocol"], ports.map((p) => [
      pick(p, "port", "Port"), pick(p, "ip", "Ip"), pick(p, "name", "ProcessName", "process"), pick(p, "protocol", "Protocol"),
    ])) : h("p.muted", "none in the last hour"),
    h("details", h("summary", "All columns of the VMComputer record"),
      propRows(Object.entries(record).filter(([, v]) => typeof v !== "object" || v === null || Array.isArray(v))
        .map(([k, v]) => [k, Array.isArray(v) ? v.map(text) : v]))));
  return panel;
}

export function processPanel(m, p, info) {
  const { processes } = machineInfo(info);
  const full = processes.find((x) => pick(x, "id", "Process") === p.id)
    || processes.find((x) => pick(x, "name", "ExecutableName", "ProcessName") === p.name) || {};
  return h("div.process-panel",
    h("h2", p.display || p.name),
    h("p.muted", `on ${m.computer}`),
    h("div#process-props", propRows([
      ["command line", pick(full, "command_line", "CommandLine")],
      ["version", pick(full, "version", "ProductVersion", "FileVersion")],
      ["user", [pick(full, "user_domain", "UserDomain"), pick(full, "user", "UserName")].filter(Boolean).join("\\")],
      ["executable", pick(full, "executable", "ExecutablePath", "ExecutableName")],
      ["product", [pick(full, "product", "ProductName"), pick(full, "company", "CompanyName")].filter(Boolean).join(", ")],
      ["description", pick(full, "description", "Description")],
      ["started", pick(full, "start_time", "started", "StartTime") ? fmtTime(pick(full, "start_time", "started", "StartTime")) : undefined],
      ["listening on", p.ports && p.ports.length ? p.ports.join(", ") : undefined],
      ["process id", p.id],
    ])));
}

function simpleTable(headers, rows) {
  return h("div.records", h("table.grid.small", h("thead", h("tr", headers.map((c) => h("th", c)))),
    h("tbody", rows.map((r) => h("tr", r.map((v) => h("td", text(v))))))));
}

// An edge's VMConnection records in a narrow panel: a short row each (time, direction, links,
// failures, bytes) that opens to every column of its record.
export function connectionRecords(columns, rows) {
  const names = columns.map((c) => (typeof c === "string" ? c : c.name));
  const at = (r, n) => r[names.indexOf(n)];
  const body = h("tbody");
  for (const r of rows) {
    const full = h("tr.record-full", { hidden: true },
      h("td", { colSpan: 5 }, propRows(names.map((n, i) => [n, Array.isArray(r[i]) ? r[i].map(text) : r[i]]))));
    body.append(h("tr.record", { title: "click for every column of this record", onclick: () => { full.hidden = !full.hidden; } },
      h("td", { title: text(at(r, "TimeGenerated")) }, at(r, "TimeGenerated") ? fmtTime(at(r, "TimeGenerated")).slice(5) : ""),
      h("td", text(at(r, "Direction"))),
      h("td.num", fmtNum(at(r, "LinksEstablished") || 0)), h("td.num", fmtNum(at(r, "LinksFailed") || 0)),
      h("td.num", fmtBytes((at(r, "BytesSent") || 0) + (at(r, "BytesReceived") || 0)))), full);
  }
  return h("div.records", h("table.grid.small", h("thead", h("tr", ["time", "direction", "links", "failed", "bytes"]
    .map((c) => h("th", c)))), body));
}

// Records {columns, rows}: columns as names or {name, type}.
export function recordsTable(columns, rows) {
  const names = columns.map((c) => (typeof c === "string" ? c : c.name));
  return h("div.records", h("table.grid.small", h("thead", h("tr", names.map((c) => h("th", c)))),
    h("tbody", rows.map((r) => h("tr", (Array.isArray(r) ? r : names.map((n) => r[n])).map((v) => h("td", text(v))))))));
}
