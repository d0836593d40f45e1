// The side panels of the map and the network chart: a machine (its VMComputer record, tags,
// processes and ports), a process (command line, version, user), and tables of records.
import { h, fmtNum, fmtTime } from "./util.js";

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

// Records {columns, rows}: columns as names or {name, type}.
export function recordsTable(columns, rows) {
  const names = columns.map((c) => (typeof c === "string" ? c : c.name));
  return h("div.records", h("table.grid.small", h("thead", h("tr", names.map((c) => h("th", c)))),
    h("tbody", rows.map((r) => h("tr", (Array.isArray(r) ? r : names.map((n) => r[n])).map((v) => h("td", text(v))))))));
}
