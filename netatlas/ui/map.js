// The dependency map (GET /api/map): machines as boxes that expand into their processes, groups
// of remote ends without an agent, and the connections of the range between them.
import { api, ApiError } from "./api.js";
import { timeRangeFrom } from "./timerange.js";
import { h, clear, fmtBytes, fmtNum, fmtMs, fmtTime, debounce, store, notice, hashParams, setHashParams } from "./util.js";
import { ago, connectionRecords, machinePanel, processPanel, recordsTable } from "./details.js";
import { layered } from "./layout.js";
import { FLEET_STYLE, applyZoomStyles, debugHook, hoverEdges, machineIcons, wheelZoom } from "./mapview.js";
import { problemsPanel } from "./problems.js";
import { mapTable } from "./maptable.js";

const SYSTEM_PROCESSES = "System,svchost.exe,lsass.exe,services.exe,wininit.exe,csrss.exe,smss.exe";
const EXPAND_UP_TO = 12;        // maps of more machines than this start with the machines collapsed...
const FOCUS_EXPANDED = 3;       // ...but for their focus machines, when there are this few
// Edge status -> how it is drawn and what it is called; worst first (an aggregated edge takes the worst).
const STATUS = {
  used_to_work: { label: "used to work", color: "#c50f1f" },
  failed: { label: "failed", color: "#d13438" },
  new: { label: "new", color: "#0f6cbd" },
  ok: { label: "ok", color: "#8a96a3" },
};
const STATUS_ORDER = Object.keys(STATUS);
const MAX_FIT_ZOOM = 1.25;
const COLLAPSE_GROUPS_OVER = 40;  // machines: maps larger than this open grouped, their groups collapsed
const OUTSIDE = { clients: "Clients", servers: "Other servers", internet: "Internet" };
const GROUP_COLORS = { clients: "#f1e6f7", servers: "#fdf1dc", internet: "#e3f3ea" };

let cytoscapeReady = false;
function registerLayouts() {
  if (cytoscapeReady) return;
  cytoscapeReady = true;
  try { if (window.cytoscapeFcose) window.cytoscape.use(window.cytoscapeFcose); } catch { /* registered already */ }
}

const STYLE = [
  { selector: "node", style: { label: "data(label)", "font-family": "system-ui, sans-serif", "font-size": 11,
    color: "#1f2933", "text-wrap": "ellipsis", "text-max-width": 160 } },
  { selector: "node[kind = 'machine']", style: { shape: "round-rectangle", "background-color": "#eef3fb",
    "border-width": 1.5, "border-color": "#5b7db1", width: 170, height: 36, "text-valign": "center", "text-max-width": 160,
    "font-weight": 600, padding: 0 } },
  { selector: "node[kind = 'machine']:parent", style: { "text-valign": "top", "text-halign": "center",
    "text-margin-y": -4, "background-opacity": 0.9, padding: 10 } },
  { selector: "node[kind = 'machine'][?focus]", style: { "border-width": 3, "border-color": "#0b62d6", "background-color": "#dde9fb" } },
  { selector: "node[kind = 'machine'][?failing]", style: { "border-color": "#d13438" } },
  // a machine whose heartbeat stopped (webmap.heartbeat_state): dashed red border, pale red box
  { selector: "node[kind = 'machine'][?stopped], node[kind = 'container'][?stopped]", style: { "border-style": "dashed",
    "border-color": "#c50f1f", "border-width": 2.5, "background-color": "#fde7e9" } },
  { selector: "node[kind = 'process']", style: { shape: "round-rectangle", "background-color": "#ffffff",
    "border-width": 1, "border-color": "#9fb3c8", width: 120, height: 22, "font-size": 10, "text-valign": "center",
    "text-max-width": 112 } },
  { selector: "node[kind = 'group']", style: { shape: "round-rectangle", "border-width": 1, "border-style": "dashed",
    "border-color": "#8a96a3", "background-color": "data(color)", width: 170, height: 30, "text-valign": "center",
    "text-max-width": 160,
    "font-size": 10 } },
  { selector: "node[kind = 'group'][?malicious]", style: { "border-color": "#c50f1f", "border-width": 2, "border-style": "solid" } },
  { selector: "node[kind = 'container']", style: { shape: "round-rectangle", "background-color": "#f7f9fb",
    "border-width": 1, "border-style": "dashed", "border-color": "#b6c2cf", "text-valign": "top",
    "text-halign": "center", "font-size": 12, color: "#52606d", padding: 0 } },
  { selector: "node[kind = 'container']:parent", style: { padding: 10 } },
  { selector: "node[kind = 'container']:childless", style: { width: 260, height: 52, "text-valign": "center",
    "text-max-width": 250, "font-size": 13,
    "background-color": "#e9eef4", "font-weight": 600 } },
  { selector: "edge", style: { width: "data(width)", "line-color": "data(color)", "target-arrow-color": "data(color)",
    "target-arrow-shape": "triangle", "curve-style": "bezier", "arrow-scale": 0.8, opacity: 0.85 } },
  { selector: "edge[status = 'failed'], edge[status = 'used_to_work']", style: { "z-index": 10, opacity: 1 } },
  { selector: "edge[status = 'used_to_work']", style: { "line-style": "dashed", label: "used to work" } },
  { selector: "edge[status = 'new']", style: { "line-style": "dotted", label: "new" } },
  { selector: "edge[label]", style: { "font-size": 10, color: "data(color)", "text-background-color": "#fff",
    "text-background-opacity": 0.85, "text-background-padding": 2, "font-weight": 600 } },
  { selector: ":selected", style: { "overlay-color": "#0b62d6", "overlay-opacity": 0.15, "overlay-padding": 4 } },
  { selector: ".faded", style: { opacity: 0.15 } },
  ...FLEET_STYLE,
];

// ------------------------------------------------------------------ from the answer to elements

function subnetOf(ip) {
  if (!ip) return "other";
  if (ip.includes(":")) return ip.split(":").slice(0, 4).join(":") + "::/64";
  return ip.split(".").slice(0, 3).join(".") + ".0/24";
}

// A machine's tier or role: its tier or role tag, else its name without the trailing number (as
// webmap.role_of: web-07.contoso.local -> web).
function tierOf(machine) {
  for (const [k, v] of Object.entries(machine.tags || {})) {
    if ((k.toLowerCase() === "tier" || k.toLowerCase() === "role") && String(v).trim()) return String(v).trim();
  }
  const name = machine.computer || machine.id;
  const short = /^[\d.]+$/.test(name) || name.includes(":") ? name : name.split(".")[0];
  return short.replace(/[-_]?\d+$/, "") || short;
}

// The tag key a "by tag" map groups by: the one most of its machines have ("" when none has tags).
export function tagKeyOf(machines) {
  const counts = new Map();
  for (const m of machines) for (const k of Object.keys(m.tags || {})) counts.set(k, (counts.get(k) || 0) + 1);
  return [...counts.keys()].sort().reduce((best, k) => (!best || counts.get(k) > counts.get(best) ? k : best), "");
}

const CONTAINERS = {
  none: null,
  subnet: (m) => subnetOf((m.ips || []).find((a) => !a.includes(":")) || (m.ips || [])[0]),
  tier: (m) => tierOf(m),
  tag: (m, key) => (key && (m.tags || {})[key] !== undefined ? `${key}=${m.tags[key]}` : `no ${key || "tag"}`),
};

function mergeStatus(a, b) {
  return STATUS_ORDER.indexOf(a) <= STATUS_ORDER.indexOf(b) ? a : b;
}

function edgeWidth(bytes, links) {
  return Math.min(9, 1 + Math.log10(1 + (bytes || 0) / 1000) + Math.log10(1 + (links || 0)) / 2);
}

// view: {groupBy, expanded: Set, collapsed: Set, collapsedContainers: Set}
export function buildElements(data, view) {
  const by = CONTAINERS[view.groupBy];
  const tagKey = view.groupBy === "tag" ? tagKeyOf(data.machines) : "";
  const containerOf = by ? (m) => by(m, tagKey) : null;
  const els = [];
  const visible = new Map();      // any endpoint id -> the id of the node it is drawn as
  view.visible = visible;
  const failing = new Set();
  for (const e of data.edges) if (e.failing) failing.add(e.source);
  const malicious = new Set((data.groups || []).filter((g) => g.malicious).map((g) => g.id));
  const threat = new Set();       // processes with an edge to or from a malicious group
  for (const e of data.edges) {
    if (malicious.has(e.target)) threat.add(e.source);
    if (malicious.has(e.source)) threat.add(e.target);
  }
  const containers = new Map();
  const manyMachines = data.machines.length > EXPAND_UP_TO;
  const fewFocus = data.machines.filter((m) => m.focus).length <= FOCUS_EXPANDED;
  for (const m of data.machines) {
    const value = containerOf ? containerOf(m) : null;
    const cid = containerOf ? `c-${view.groupBy}:${value}` : null;
    if (cid && !containers.has(cid)) containers.set(cid, { label: value, count: 0 });
    if (cid) containers.get(cid).count++;
    if (cid && m.heartbeat_stopped) containers.get(cid).stopped = (containers.get(cid).stopped || 0) + 1;
    const containerShut = cid && view.collapsedContainers.has(cid);
    const open = view.expanded.has(m.id) || (!view.collapsed.has(m.id) && ((m.focus && fewFocus) || !manyMachines));
    const shown = containerShut ? cid : m.id;
    visible.set(m.id, shown);
    const procs = m.processes || [];
    if (!containerShut) {
      const processFailing = procs.some((p) => failing.has(p.id));
      const icons = machineIcons({ os: m.os, agent: !!m.os, stale: !!m.heartbeat_stopped,
        threat: procs.some((p) => threat.has(p.id)) });
      els.push({ group: "nodes", data: { id: m.id, kind: "machine", label: shortName(m.computer) + (open || !procs.length ? "" : `  (${procs.length})`),
        parent: cid || undefined, focus: !!m.focus, failing: processFailing, open, stopped: !!m.heartbeat_stopped,
        lastHeartbeat: m.last_heartbeat || undefined, icons, os: m.os || "" } });
    }
    for (const p of procs) {
      visible.set(p.id, containerShut ? cid : open ? p.id : m.id);
      if (open && !containerShut) {
        els.push({ group: "nodes", data: { id: p.id, kind: "process", parent: m.id, machine: m.id, label: p.display || p.name } });
      }
    }
  }
  for (const [cid, c] of containers) {
    const shut = view.collapsedContainers.has(cid);
    els.push({ group: "nodes", data: { id: cid, kind: "container", stopped: shut && !!c.stopped,
      // collapsed: short (its name and size) so that it reads at the fitted zoom of a big map
      label: shut ? `${c.label} · ${c.count}${c.stopped ? ` · ${c.stopped} ⚠` : ""}`
        : `${c.label} · ${c.count} machine${c.count === 1 ? "" : "s"}` } });
  }
  // Clients groups that call into one collapsed group of machines fold into one node with it.
  const callees = new Map();
  for (const e of data.edges) {
    if (!callees.has(e.source)) callees.set(e.source, new Set());
    callees.get(e.source).add(visible.get(e.target) || e.target);
  }
  const folded = new Map();
  for (const g of data.groups || []) {
    const into = [...(callees.get(g.id) || [])];
    const outside = view.collapsedContainers.size && !view.openOutside.has(g.kind) && OUTSIDE[g.kind];
    if (!outside && g.kind === "clients" && into.length === 1 && view.collapsedContainers.has(into[0])) {
      const id = `${into[0]}-clients`;
      visible.set(g.id, id);
      const f = folded.get(id) || { label: containers.get(into[0]).label, groups: 0, malicious: false };
      f.groups += 1;
      f.malicious = f.malicious || !!g.malicious;
      folded.set(id, f);
      continue;
    }
    // a grouped map of many machines folds the remote ends into one node per kind, until opened
    if (view.collapsedContainers.size && !view.openOutside.has(g.kind) && OUTSIDE[g.kind]) {
      const id = `x-${g.kind}`;
      visible.set(g.id, id);
      const f = folded.get(id) || { outside: g.kind, groups: 0, malicious: false };
      f.groups += 1;
      f.malicious = f.malicious || !!g.malicious;
      folded.set(id, f);
      continue;
    }
    visible.set(g.id, g.id);
    els.push({ group: "nodes", data: { id: g.id, kind: "group", label: g.label, color: GROUP_COLORS[g.kind] || "#f3f4f6",
      malicious: !!g.malicious } });
  }
  for (const [id, f] of folded) {
    if (f.outside) {
      els.push({ group: "nodes", data: { id, kind: "outside", outside: f.outside, label: `${OUTSIDE[f.outside]} (${f.groups})`,
        color: GROUP_COLORS[f.outside], malicious: f.malicious } });
      continue;
    }
    els.push({ group: "nodes", data: { id, kind: "group", label: `Clients of ${f.label} (${f.groups} ports)`,
      color: GROUP_COLORS.clients, malicious: f.malicious, folded: true } });
  }
  const merged = new Map();
  for (const e of data.edges) {
    const s = visible.get(e.source) || e.source, t = visible.get(e.target) || e.target;
    if (s === t) continue;
    const key = `${s}→${t}`;
    let m = merged.get(key);
    if (!m) {
      m = { id: `v-${merged.size}`, source: s, target: t, links: 0, failed: 0, live: 0, bytes_sent: 0,
        bytes_received: 0, records: 0, rt_weight: 0, rt_sum: 0, status: "ok", ports: new Set(), edges: [], failing: false };
      merged.set(key, m);
    }
    for (const f of ["links", "failed", "live", "bytes_sent", "bytes_received", "records"]) m[f] += e[f] || 0;
    if (e.response_ms !== null && e.response_ms !== undefined) {
      const w = Math.max(1, e.links || 0);
      m.rt_sum += e.response_ms * w;
      m.rt_weight += w;
    }
    m.status = m.edges.length ? mergeStatus(m.status, e.status || "ok") : e.status || "ok";
    if (e.port !== undefined && e.port !== null) m.ports.add(e.port);
    m.failing = m.failing || !!e.failing;
    m.edges.push(e);
  }
  const known = new Set(els.map((n) => n.data.id));
  for (const m of merged.values()) {
    if (!known.has(m.source) || !known.has(m.target)) continue;
    const bytes = m.bytes_sent + m.bytes_received;
    // failing (by the failure rate, webmap.failing): drawn red on top whatever the others say
    if (!m.failing && (m.status === "failed" || m.status === "used_to_work")) m.status = "ok";
    if (m.failing && m.status !== "used_to_work") m.status = "failed";
    els.push({ group: "edges", data: { id: m.id, source: m.source, target: m.target, status: m.status, failing: m.failing,
      color: STATUS[m.status] ? STATUS[m.status].color : STATUS.ok.color, width: edgeWidth(bytes, m.links),
      label: m.status === "used_to_work" || m.status === "new" ? STATUS[m.status].label : undefined,
      links: m.links, failed: m.failed, live: m.live, bytes, bytes_sent: m.bytes_sent, bytes_received: m.bytes_received,
      response_ms: m.rt_weight ? m.rt_sum / m.rt_weight : null, records: m.records, ports: [...m.ports].sort((a, b) => a - b),
      edges: m.edges } });
  }
  return els;
}

function shortName(computer) {
  return computer || "?";
}

// Several answers of /api/map (a saved list: one per machine) as one.
function mergeMaps(answers) {
  const out = { range: answers[0].range, focus: [], machines: [], groups: [], edges: [], loopback_hidden: 0 };
  const seen = { machines: new Map(), groups: new Set(), edges: new Set() };
  for (const a of answers) {
    out.focus.push(...(a.focus || []));
    out.loopback_hidden += a.loopback_hidden || 0;
    for (const m of a.machines) {
      const had = seen.machines.get(m.id);
      if (!had) { seen.machines.set(m.id, m); out.machines.push(m); }
      else {
        had.focus = had.focus || m.focus;
        const ids = new Set((had.processes || []).map((p) => p.id));
        for (const p of m.processes || []) if (!ids.has(p.id)) had.processes.push(p);
      }
    }
    for (const g of a.groups || []) if (!seen.groups.has(g.id)) { seen.groups.add(g.id); out.groups.push(g); }
    for (const e of a.edges) if (!seen.edges.has(e.id)) { seen.edges.add(e.id); out.edges.push(e); }
  }
  return out;
}

// ------------------------------------------------------------------ the page

export async function mount(main) {
  registerLayouts();
  const params = hashParams();
  const state = {
    machine: params.machine || "",
    group: params.machine ? "" : params.group || "all",
    onlyFailures: params.only_failures === "1",
    hideLoopback: params.hide_loopback !== "0",
    exclude: params.exclude || "",
    groupBy: params.groupBy || "",      // "": automatic (grouped by the remembered choice past ~40 machines)
    openOutside: new Set(), mode: params.mode === "table" ? "table" : "map",
    layout: params.layout || "layered",
    selected: params.sel || "",     // the selected node (machine, process, group), in the address
    expanded: new Set(), collapsed: new Set(), collapsedContainers: new Set(),
    data: null, machineDetails: new Map(),
  };
  let cy = null;
  let loadSeq = 0;
  let alive = true;         // until the page is left: answers that come later are dropped

  const time = timeRangeFrom(params, () => load());
  const status = h("div.map-status");
  const canvas = h("div.map-canvas#cy");
  const tooltip = h("div.tooltip", { hidden: true });
  const loopbackNotice = h("div.map-notice#loopback-notice", { hidden: true, role: "status" });
  const groupNotice = h("div.map-notice#group-notice", { hidden: true, role: "status" });
  const tableBox = h("div.map-table#map-table", { hidden: true });
  const problems = problemsPanel({ focus: (item) => focusOn(item) });
  const details = h("aside.details#details", notice("Select a machine, a process, a group or a connection."));

  // --- focus: a machine (search) or a group
  const search = h("input#machine-search", { type: "search", placeholder: "machine name or IP", value: state.machine,
    autocomplete: "off", oninput: debounce(() => suggest(), 200),
    onkeydown: (e) => { if (e.key === "Enter") { e.preventDefault(); pickMachine(search.value.trim()); } } });
  const suggestions = h("div.suggestions", { hidden: true });
  const groupSelect = h("select#group", { onchange: () => pickGroup(groupSelect.value) });
  const groupValue = h("input#group-value", { placeholder: "", hidden: true,
    onkeydown: (e) => { if (e.key === "Enter") { e.preventDefault(); pickGroup(groupSelect.value); } } });
  const saveList = h("button.small", { onclick: saveAsList, title: "Keep the machines of this map as a named list" }, "Save as list…");

  function fillGroups() {
    const lists = store.get("lists", {});
    const current = state.group;
    clear(groupSelect,
      h("option", { value: "" }, "— a group —"),
      h("option", { value: "all" }, "All machines"),
      h("option", { value: "tag:" }, "By tag (KEY=VALUE)…"),
      h("option", { value: "subnet:" }, "By subnet (CIDR)…"),
      Object.keys(lists).length ? h("optgroup", { label: "Saved lists" },
        Object.keys(lists).sort().map((name) => h("option", { value: `list:${name}` }, `${name} (${lists[name].length})`))) : null);
    const kind = current.startsWith("tag:") ? "tag:" : current.startsWith("subnet:") ? "subnet:" : current;
    groupSelect.value = [...groupSelect.options].some((o) => o.value === kind) ? kind : "";
    groupValue.hidden = !(kind === "tag:" || kind === "subnet:");
    groupValue.placeholder = kind === "tag:" ? "tier=web" : "10.1.0.0/16";
    if (kind === "tag:" || kind === "subnet:") groupValue.value = current.slice(kind.length);
  }

  async function suggest() {
    const text = search.value.trim();
    if (!text) { suggestions.hidden = true; return; }
    try {
      const { machines } = await api.get("/api/machines", { search: text });
      clear(suggestions, machines.length ? machines.slice(0, 12).map((m) => h("button.suggestion", {
        onclick: () => { search.value = m.computer; pickMachine(m.id); } },
      h("b", m.computer), " ", h("span.muted", (m.ips || []).join(", "))))
        : h("div.suggestion.muted#no-machine", `No machine is named “${text}” (a name, an id or an address).`));
      suggestions.hidden = false;
    } catch (e) {
      clear(suggestions, notice(e.message, "error"));
      suggestions.hidden = false;
    }
  }

  function pickMachine(id) {
    if (!id) return;
    suggestions.hidden = true;
    Object.assign(state, { machine: id, group: "", selected: "" });
    fillGroups();
    load();
  }

  function pickGroup(value) {
    if (value === "tag:" || value === "subnet:") {
      groupValue.hidden = false;
      groupValue.placeholder = value === "tag:" ? "tier=web" : "10.1.0.0/16";
      const typed = groupValue.value.trim();
      if (!typed || (value === "subnet:" && !typed.includes("/")) || (value === "tag:" && !typed.includes("="))) {
        groupValue.focus();
        return;
      }
      value += typed;
    }
    if (!value) return;
    Object.assign(state, { group: value, machine: "", selected: "" });
    search.value = "";
    fillGroups();
    load();
  }

  function saveAsList() {
    if (!state.data) return;
    const name = prompt("Name of the list of these machines:", "my machines");
    if (!name) return;
    const lists = store.get("lists", {});
    lists[name] = (state.data.focus && state.data.focus.length ? state.data.focus : state.data.machines.map((m) => m.id));
    store.set("lists", lists);
    state.group = `list:${name}`;
    state.machine = "";
    fillGroups();
  }

  // --- filters and layout
  const check = (id, label, value, onchange, title) => h("label.check", { title },
    h(`input#${id}`, { type: "checkbox", checked: value, onchange }), label);
  const excludeText = h("input#exclude", { type: "text", value: state.exclude || SYSTEM_PROCESSES,
    onchange: () => { if (excludeBox.checked) { state.exclude = excludeText.value; load(); } } });
  const excludeBox = h("input#exclude-on", { type: "checkbox", checked: !!state.exclude,
    onchange: () => { state.exclude = excludeBox.checked ? excludeText.value : ""; load(); } });
  const groupBy = h("select#group-by", { onchange: () => {
    state.groupBy = groupBy.value;
    store.set("mapGroupBy", groupBy.value);        // the user's choice, remembered
    state.openOutside.clear();
    collapseLarge(); draw(true); } },
    h("option", { value: "none" }, "no grouping"), h("option", { value: "tier" }, "group by tier / role"),
    h("option", { value: "subnet" }, "group by subnet"), h("option", { value: "tag" }, "group by tag"));
  const modeButton = h("button.small#map-mode", { onclick: () => { state.mode = state.mode === "map" ? "table" : "map"; remember(true); showMode(); } },
    state.mode === "table" ? "Show the map" : "Show as a table");
  const layoutSelect = h("select#layout", { onchange: () => { state.layout = layoutSelect.value; load(); } },
    h("option", { value: "layered" }, "layered: callers → callees"), h("option", { value: "force" }, "force-directed (fcose)"));
  layoutSelect.value = state.layout;

  const controls = h("aside.controls",
    h("section", h("h3", "Machine or group"),
      h("div.search-box", search, suggestions),
      h("div.row", groupSelect), groupValue, h("div.row", saveList)),
    h("section", h("h3", "Time range"), time.element),
    h("section", h("h3", "Filters"),
      check("only-failures", "Only failures", state.onlyFailures, (e) => { state.onlyFailures = e.target.checked; load(); }),
      check("hide-loopback", "Hide loopback", state.hideLoopback, (e) => { state.hideLoopback = e.target.checked; load(); },
        "Leave out connections whose both ends are loopback (127.0.0.1, ::1): within one machine"),
      h("label.check", excludeBox, "Exclude processes"), excludeText),
    h("section", h("h3", "Layout"), layoutSelect, groupBy,
      h("div.row.buttons",
        h("button.small", { onclick: () => { state.collapsed.clear(); state.expanded = new Set(state.data ? state.data.machines.map((m) => m.id) : []); draw(true); } }, "Expand all"),
        h("button.small", { onclick: () => { state.expanded.clear(); state.collapsed = new Set(state.data ? state.data.machines.map((m) => m.id) : []); draw(true); } }, "Collapse all"),
        h("button.small", { onclick: () => cy && fit() }, "Fit"),
        h("button.small", { onclick: () => draw(true) }, "Re-layout")),
      h("p.hint", "Double-click a machine or a group box to expand or collapse it.")),
    h("section.legend", h("h3", "Legend"),
      Object.entries(STATUS).map(([id, s]) => h("div.legend-row",
        h("span.swatch", { style: { borderTop: `3px ${id === "used_to_work" ? "dashed" : id === "new" ? "dotted" : "solid"} ${s.color}` } }), s.label)),
      h("div.legend-row", h("span.box.machine"), "machine (box of its processes)"),
      h("div.legend-row", h("span.box.stopped"), "machine whose heartbeat stopped"),
      h("div.legend-row", h("span.box.clients"), "clients of a port"),
      h("div.legend-row", h("span.box.servers"), "servers of a port"),
      h("div.legend-row", h("span.box.internet"), "internet endpoints")));

  clear(main, h("div.map-page", controls, h("div.map-main", status, canvas, tableBox, loopbackNotice, groupNotice, tooltip),
    h("div.map-side", problems.element, details)));
  controls.querySelector("section.legend").before(h("section", h("h3", "View"), modeButton));
  fillGroups();

  // --- loading and drawing
  function query() {
    const range = time.value();
    return { ...(state.machine ? { machine: state.machine } : { group: state.group || "all" }), ...range,
      only_failures: state.onlyFailures ? 1 : undefined, hide_loopback: state.hideLoopback ? 1 : 0,
      exclude: state.exclude || undefined };
  }

  // The view in the address; push: a user's step (a machine or group chosen, a filter), so Back returns before it.
  function remember(push = false) {
    setHashParams("map", { machine: state.machine, group: state.machine ? "" : state.group, ...time.params(),
      only_failures: state.onlyFailures ? 1 : "", hide_loopback: state.hideLoopback ? "" : 0, exclude: state.exclude,
      groupBy: state.groupBy, layout: state.layout === "layered" ? "" : state.layout,
      mode: state.mode === "table" ? "table" : "", sel: state.selected }, push);
  }

  async function load(push = true) {
    const seq = ++loadSeq;
    const q = query();
    remember(push);
    status.textContent = "loading…";
    status.className = "map-status";
    try {
      let data;
      if (q.group && q.group.startsWith("list:")) {
        const ids = store.get("lists", {})[q.group.slice(5)] || [];
        if (!ids.length) throw new Error("this list has no machines");
        const { group, ...rest } = q;
        data = mergeMaps(await Promise.all(ids.map((id) => api.get("/api/map", { ...rest, machine: id }))));
      } else {
        data = await api.get("/api/map", q);
      }
      if (seq !== loadSeq || !alive) return;
      state.data = data;
      state.machineDetails.clear();
      state.openOutside.clear();
      collapseLarge();
      draw(true);
      // the selection (from the address, or kept across a filter) when it is still on the map
      const chosen = state.selected && cy.getElementById(state.selected);
      if (chosen && chosen.nonempty()) { chosen.select(); select(chosen); }
      else if (state.selected) { state.selected = ""; remember(); }
      if (!q.group || !q.group.startsWith("list:")) problems.load(q);
    } catch (e) {
      if (seq !== loadSeq) return;
      status.textContent = e instanceof ApiError ? `${e.code}: ${e.message}` : e.message;
      status.className = "map-status error";
      loopbackNotice.hidden = true;
    }
  }

  // A large map grouped by subnet or tier starts with its groups collapsed: a box per group.
  // The grouping drawn: the user's, else past COLLAPSE_GROUPS_OVER machines the remembered choice
  // (tier / role unless the user chose another), else none.
  function groupByOf() {
    if (state.groupBy) return state.groupBy;
    const many = state.data && state.data.machines.length > COLLAPSE_GROUPS_OVER;
    return many ? store.get("mapGroupBy", "tier") : "none";
  }

  function collapseLarge() {
    state.collapsedContainers.clear();
    const by = groupByOf();
    groupBy.value = by;
    const key = CONTAINERS[by];
    if (!key || !state.data || state.data.machines.length <= COLLAPSE_GROUPS_OVER) return;
    const tag = by === "tag" ? tagKeyOf(state.data.machines) : "";
    for (const m of state.data.machines) state.collapsedContainers.add(`c-${by}:${key(m, tag)}`);
  }

  function summary(data) {
    const failing = data.edges.filter((e) => e.failing).length;
    const usedToWork = data.edges.filter((e) => e.status === "used_to_work").length;
    const fresh = data.edges.filter((e) => e.status === "new").length;
    const stopped = data.machines.filter((m) => m.heartbeat_stopped).length;
    const r = data.range || {};
    return [`${data.machines.length} machines, ${(data.groups || []).length} remote groups, ${data.edges.length} connections`,
      failing ? h("span.bad", ` · ${failing} failing`) : "", usedToWork ? h("span.bad", ` · ${usedToWork} used to work`) : "",
      fresh ? h("span.new", ` · ${fresh} new since yesterday`) : "",
      stopped ? h("span.bad#heartbeat-stopped", ` · ${stopped} heartbeat${stopped === 1 ? "" : "s"} stopped`) : "",
      data.loopback_hidden ? h("span.muted", ` · ${fmtNum(data.loopback_hidden)} loopback hidden`) : "",
      r.from ? h("span.muted", ` · ${fmtTime(r.from)} → ${fmtTime(r.to)}`) : ""];
  }

  // keep: node id -> position to keep (an expand keeps everything else where it was)
  function draw(relayout, keep) {
    const data = state.data;
    if (!data) return;
    clear(status, summary(data));
    const view = { ...state, groupBy: groupByOf() };
    const elements = buildElements(data, view);
    state.visible = view.visible;
    if (!cy) {
      cy = window.cytoscape({ container: canvas, elements, style: STYLE, minZoom: 0.02, maxZoom: 4,
        userZoomingEnabled: false });
      window.netatlasMap = cy;        // for the browser tests and the console
      wheelZoom(cy, canvas);
      debugHook(cy);
      cy.on("zoom", () => applyZoomStyles(cy));
      wire();
    } else {
      cy.elements().remove();
      cy.add(elements);
    }
    if (!elements.length) {
      clear(status, summary(data), h("span.muted", " · nothing in this range"));
    }
    showLoopbackNotice(data);
    showGroupNotice(data, view.groupBy);
    if (relayout) runLayout(keep);
    applyZoomStyles(cy);
    if (state.mode === "table") showMode();
  }

  // "by tag" on machines without tags: say why every machine is in one box
  function showGroupNotice(data, by) {
    groupNotice.hidden = !(by === "tag" && data.machines.length && !tagKeyOf(data.machines));
    if (!groupNotice.hidden) {
      clear(groupNotice, h("b", "No machine of this map has tags"), " (VMComputerTags_CL has no record for them), so grouping ",
        "by tag puts them all in one box. Group by tier / role or by subnet instead.");
    }
  }

  function showMode() {
    const table = state.mode === "table";
    modeButton.textContent = table ? "Show the map" : "Show as a table";
    canvas.hidden = table;
    tableBox.hidden = !table;
    if (table && state.data) clear(tableBox, mapTable(state.data, { open: (id) => { state.mode = "map"; showMode(); focusNodes([id]); } }));
  }

  // Centre the map on drawn nodes (the nodes they are drawn as when inside a collapsed box: the box
  // is opened first, keeping the rest where it was).
  function focusNodes(ids, edgeId) {
    if (!cy || !state.data) return;
    const owner = new Map();
    for (const m of state.data.machines) for (const p of m.processes || []) owner.set(p.id, m.id);
    const boxes = new Set();
    for (const id of ids) {
      const shown = state.visible.get(id) || id;
      if (shown.startsWith("c-")) boxes.add(shown);
      if (shown.startsWith("x-")) { state.openOutside.add(shown.slice(2)); boxes.add(shown); }
    }
    if (boxes.size) {
      for (const b of boxes) state.collapsedContainers.delete(b);
      draw(true, positions());
    }
    let eles = cy.collection();
    for (const id of ids) {
      const n = cy.getElementById(state.visible.get(id) || id);
      if (n.nonempty()) eles = eles.union(n);
      else if (owner.has(id)) eles = eles.union(cy.getElementById(state.visible.get(owner.get(id)) || owner.get(id)));
    }
    if (edgeId) {
      const e = cy.edges().filter((x) => (x.data("edges") || []).some((m) => m.id === edgeId));
      eles = eles.union(e);
    }
    if (eles.empty()) return;
    cy.elements().unselect();
    eles.select();
    cy.fit(eles, 120);
    if (cy.zoom() > 1.5) { cy.zoom(1.5); cy.center(eles); }
    applyZoomStyles(cy);
  }

  function focusOn(item) {
    if (state.mode === "table") { state.mode = "map"; showMode(); }
    focusNodes(item.focus.nodes || [], item.focus.edge);
  }

  function positions() {
    return new Map(cy.nodes().filter((n) => n.isChildless()).map((n) => [n.id(), { ...n.position() }]));
  }

  // Machines whose every connection is loopback would be empty boxes: say why, and offer the switch.
  function showLoopbackNotice(data) {
    const n = data.loopback_hidden || 0;
    loopbackNotice.hidden = !(n && !data.edges.length && data.machines.length);
    if (loopbackNotice.hidden) return;
    const focus = data.machines.filter((m) => m.focus);
    const one = focus.length === 1 ? focus[0] : data.machines.length === 1 ? data.machines[0] : null;
    clear(loopbackNotice,
      h("b", `All ${fmtNum(n)} connection${n === 1 ? "" : "s"} ${one ? `of ${one.computer}` : "of these machines"} `
        + `${n === 1 ? "is" : "are"} loopback`),
      ` (${one ? "within the machine" : "each within its machine"}), hidden by “Hide loopback”.`,
      h("button.small#show-loopback", { onclick: showLoopback }, "Show loopback"));
  }

  function showLoopback() {
    state.hideLoopback = false;
    controls.querySelector("#hide-loopback").checked = false;
    load();
  }

  // Fit the map's boxes to the view (not their labels, which semantic zoom sizes by the zoom), but
  // no closer than MAX_FIT_ZOOM (a map of three boxes stays their size).
  function fit() {
    const bb = cy.elements().boundingBox({ includeLabels: false, includeOverlays: false });
    const pad = 30, w = cy.width(), ht = cy.height();
    if (!bb.w || !bb.h || !isFinite(bb.w)) { cy.fit(undefined, pad); return; }
    const zoom = Math.max(cy.minZoom(), Math.min(MAX_FIT_ZOOM, (w - 2 * pad) / bb.w, (ht - 2 * pad) / bb.h));
    cy.viewport({ zoom, pan: { x: (w - zoom * (bb.x1 + bb.x2)) / 2, y: (ht - zoom * (bb.y1 + bb.y2)) / 2 } });
    applyZoomStyles(cy);
  }

  // After a layout, nodes drawn before go back where they were; new ones (an opened box's) move
  // by as much as the box they came out of, so the place the user looked at stays put.
  function restore(keep) {
    const moved = [];
    for (const n of cy.nodes().filter((x) => x.isChildless())) {
      if (keep.has(n.id())) n.position(keep.get(n.id()));
      else moved.push(n);
    }
    if (!moved.length) return;
    const kept = cy.nodes().filter((x) => x.isChildless() && keep.has(x.id()));
    const fresh = cy.collection(moved).boundingBox();
    const all = kept.nonempty() ? kept.boundingBox() : fresh;
    // the new nodes as a block where the box they came out of was, else right of what was kept
    const from = keep.anchor && keep.get(keep.anchor);
    const dx = from ? from.x - (fresh.x1 + fresh.x2) / 2 : all.x2 + 160 - fresh.x1;
    const dy = from ? from.y - fresh.y1 - 20 : all.y1 - fresh.y1;
    for (const n of moved) n.position({ x: n.position("x") + dx, y: n.position("y") + dy });
  }

  function runLayout(keep) {
    const n = cy.nodes().length;
    if (state.layout === "layered") {
      layered(cy);
      if (keep) {
        const z = cy.zoom(), pan = { ...cy.pan() };
        restore(keep);
        cy.viewport({ zoom: z, pan });
        cy.emit("netatlas:laidout");
        canvas.dataset.ready = "1";
        return;
      }
      fit();
      cy.emit("netatlas:laidout");
      canvas.dataset.ready = "1";
      return;
    }
    const fcose = typeof window.cytoscapeFcose !== "undefined";
    const layout = cy.layout(fcose ? {
      name: "fcose", quality: n > 400 ? "draft" : "default", randomize: true, animate: false, fit: true, padding: 30,
      nodeDimensionsIncludeLabels: true, packComponents: true, tile: true, nodeRepulsion: () => 9000,
      idealEdgeLength: () => 90, edgeElasticity: () => 0.3, nestingFactor: 0.6, gravity: 0.3, gravityRangeCompound: 2,
      gravityCompound: 1.5, numIter: 2500, nodeSeparation: 90,
    } : { name: "cose", animate: false, fit: true, padding: 30, nodeDimensionsIncludeLabels: true });
    layout.run();
    fit();
    cy.emit("netatlas:laidout");
    canvas.dataset.ready = "1";
  }

  function wire() {
    hoverEdges(cy, canvas, (edge, pos, same) => {
      if (!same) {
        const d = edge.data();
        const attempts = d.links + d.failed;
        clear(tooltip,
          h("div.tt-title", `${label(d.source)} → ${label(d.target)}`),
          h("div", `port ${d.ports.join(", ") || "?"} · `, h("b", STATUS[d.status] ? STATUS[d.status].label : d.status)),
          h("div", `links ${fmtNum(d.links)} · failed `, h(d.failed ? "b.bad" : "span", fmtNum(d.failed)),
            attempts && d.failed ? ` (${(100 * d.failed / attempts).toFixed(1)} %)` : "", ` · live ${fmtNum(d.live)}`),
          h("div", `bytes ${fmtBytes(d.bytes_sent)} sent · ${fmtBytes(d.bytes_received)} received`),
          h("div", `response time ${fmtMs(d.response_ms)}`));
        tooltip.dataset.edge = edge.id();
      }
      tooltip.hidden = false;
      place(pos);
    }, () => { tooltip.hidden = true; delete tooltip.dataset.edge; });
    cy.on("mouseover", "node[kind = 'machine'][?stopped]", (evt) => {
      const d = evt.target.data();
      clear(tooltip, h("div.tt-title", d.label), h("div", h("b.bad", "heartbeat stopped"),
        d.lastHeartbeat ? ` · last ${fmtTime(d.lastHeartbeat)} (${ago(d.lastHeartbeat)})` : ""));
      tooltip.hidden = false;
      place(evt.renderedPosition);
    });
    cy.on("mouseout", "node", () => { if (!tooltip.dataset.edge) tooltip.hidden = true; });
    // a zoom or a pan moves what a tooltip points at: hoverEdges hides it then, a node's as an edge's
    cy.on("tap", "node", (evt) => {
      const d = evt.target.data();
      // groups open on click: a collapsed group of machines, or the folded remote ends
      if ((d.kind === "container" && state.collapsedContainers.has(d.id)) || d.kind === "outside") { toggle(evt.target); return; }
      select(evt.target);
    });
    cy.on("tap", "edge", (evt) => showEdge(evt.target.data()));
    // a tap near an edge (the same hover target) opens it too, whatever its drawn width
    cy.on("tap", (evt) => {
      if (evt.target !== cy) return;
      const e = window.netatlasMapDebug.edgeAt(evt.renderedPosition.x, evt.renderedPosition.y);
      if (e) showEdge(cy.getElementById(e).data());
    });
    cy.on("tap", (evt) => { if (evt.target === cy) { state.selected = ""; remember(); clear(details, notice("Select a machine, a process, a group or a connection.")); } });
    // Cytoscape calls any two quick taps a dbltap, even on two elements: both taps must be on this node.
    let taps = [null, null];
    cy.on("tap", (evt) => { taps = [taps[1], evt.target === cy ? null : evt.target.id()]; });
    cy.on("dbltap", "node", (evt) => {
      if (Date.now() - toggledAt < 700) return;     // the second tap of a click that just opened it
      if (taps[0] === evt.target.id() && taps[1] === evt.target.id()) toggle(evt.target);
    });
  }

  function place(pos) {
    tooltip.style.left = `${pos.x + 16}px`;
    tooltip.style.top = `${pos.y + 40}px`;
  }

  function label(id) {
    const n = cy.getElementById(id);
    return n.nonempty() ? n.data("label") : id;
  }

  let toggledAt = 0;
  function toggle(node) {
    const d = node.data();
    const keep = positions();
    keep.anchor = d.id;
    toggledAt = Date.now();
    if (d.kind === "outside") {
      state.openOutside.add(d.outside);
      draw(true, keep);
      return;
    }
    if (d.kind === "container") {
      if (state.collapsedContainers.has(d.id)) state.collapsedContainers.delete(d.id);
      else state.collapsedContainers.add(d.id);
    } else {
      const id = d.kind === "process" ? d.machine : d.id;
      const open = d.kind === "process" || d.open;
      if (d.kind !== "machine" && d.kind !== "process") return;
      if (open) { state.expanded.delete(id); state.collapsed.add(id); }
      else { state.collapsed.delete(id); state.expanded.add(id); }
    }
    // a collapsed box opened: its children are new, everything else stays where it was
    draw(true, keep);
    // the selected box's panel drawn again as the box now is (its button says what a click does next)
    const again = state.selected === d.id && cy.getElementById(d.id);
    if (again && again.nonempty()) select(again);
  }

  async function details_of(machineId) {
    if (!state.machineDetails.has(machineId)) {
      state.machineDetails.set(machineId, api.get(`/api/machines/${encodeURIComponent(machineId)}`));
    }
    return state.machineDetails.get(machineId);
  }

  async function select(node) {
    const d = node.data();
    const data = state.data;
    state.selected = d.id;
    remember();
    if (d.kind === "machine") {
      const m = data.machines.find((x) => x.id === d.id);
      clear(details, h("h2", m.computer), notice("loading…"));
      try {
        const info = await details_of(d.id);
        clear(details, machinePanel(m, info, {
          focus: () => { search.value = m.computer; pickMachine(m.id); },
          toggle: () => toggle(node), open: d.open, range: data.range,
        }));
      } catch (e) { clear(details, h("h2", m.computer), notice(e.message, "error")); }
    } else if (d.kind === "process") {
      const m = data.machines.find((x) => x.id === d.machine);
      const p = (m.processes || []).find((x) => x.id === d.id);
      clear(details, h("h2", p.display || p.name), notice("loading…"));
      try {
        clear(details, processPanel(m, p, await details_of(m.id)));
      } catch (e) { clear(details, processPanel(m, p, null), notice(e.message, "error")); }
    } else if (d.kind === "group") {
      const g = data.groups.find((x) => x.id === d.id);
      if (!g) {
        clear(details, h("h2", d.label), h("p.hint", "Inbound callers of the machines of a collapsed group; double-click the group to see them."));
        return;
      }
      clear(details, h("h2", g.label), h("dl.props",
        h("dt", "kind"), h("dd", { clients: "clients (inbound callers)", servers: "servers of one port (outbound targets)", internet: "internet endpoints" }[g.kind] || g.kind),
        g.count !== undefined ? [h("dt", "count"), h("dd", fmtNum(g.count))] : null,
        g.country ? [h("dt", "country"), h("dd", g.country)] : null,
        g.malicious ? [h("dt", "threat"), h("dd.bad", "a malicious address (threat intelligence)")] : null,
        h("dt", "addresses"), h("dd", (g.ips || []).slice(0, 50).join(", ") + ((g.ips || []).length > 50 ? " …" : ""))));
    } else if (d.kind === "container") {
      clear(details, h("h2", d.label), h("p.hint", "Click again (or double-click) to open or close this group of machines."));
    } else if (d.kind === "outside") {
      clear(details, h("h2", d.label), h("p.hint", "Remote ends without an agent, folded while the map is grouped; click again to show them."));
    }
  }

  async function showEdge(d) {
    const head = [h("h2", `${label(d.source)} → ${label(d.target)}`),
      h("dl.props",
        h("dt", "status"), h(`dd${d.status === "ok" ? "" : d.status === "new" ? ".new" : ".bad"}`, STATUS[d.status] ? STATUS[d.status].label : d.status),
        h("dt", "port"), h("dd", d.ports.join(", ")),
        h("dt", "links"), h("dd", `${fmtNum(d.links)} established, ${fmtNum(d.failed)} failed, ${fmtNum(d.live)} live`),
        h("dt", "bytes"), h("dd", `${fmtBytes(d.bytes_sent)} sent, ${fmtBytes(d.bytes_received)} received`),
        h("dt", "response time"), h("dd", fmtMs(d.response_ms)),
        h("dt", "records"), h("dd", fmtNum(d.records)))];
    clear(details, head, h("h3", "VMConnection records"), notice("loading…"));
    const range = state.data.range || time.value();
    try {
      const answers = await Promise.all(d.edges.slice(0, 10).map((e) => api.get("/api/edges",
        { source: e.source, target: e.target, port: e.port, from: range.from, to: range.to })));
      const columns = answers[0].columns;
      const rows = answers.flatMap((a) => a.rows);
      // a short row per record that fits the panel, opening to every column of its record; the
      // whole table (every column) one click away
      clear(details, head, h("h3", `VMConnection records (${fmtNum(rows.length)}${d.edges.length > 10 ? `, first 10 of ${d.edges.length} connections` : ""})`),
        h("div#edge-records", connectionRecords(columns, rows)),
        h("details#edge-all-columns", h("summary", `All ${columns.length} columns`), recordsTable(columns, rows)));
    } catch (e) {
      clear(details, head, notice(e.message, "error"));
    }
  }

  load(false);
  return () => {
    alive = false;
    if (cy) cy.destroy();
    delete window.netatlasMap;
  };
}
