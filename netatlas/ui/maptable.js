// The map as tables (machines, processes, dependencies), sortable by any column and filtered by
// free text: the same answer of /api/map, for maps too big to read as a drawing.
import { h, clear, fmtBytes, fmtNum } from "./util.js";

const TABLES = {
  machines: {
    label: "Machines",
    columns: [["computer", "machine"], ["os", "OS"], ["ips", "addresses"], ["processes", "processes", "num"],
      ["tags", "tags"], ["heartbeat", "heartbeat"]],
    rows: (data) => data.machines.map((m) => ({ id: m.id, computer: m.computer, os: m.os, ips: (m.ips || []).join(", "),
      processes: (m.processes || []).length, tags: Object.entries(m.tags || {}).map(([k, v]) => `${k}=${v}`).join(" "),
      heartbeat: m.heartbeat_stopped ? "stopped" : m.last_heartbeat ? "ok" : "" })),
  },
  processes: {
    label: "Processes",
    columns: [["computer", "machine"], ["name", "process"], ["display", "display name"], ["ports", "listening on"]],
    rows: (data) => data.machines.flatMap((m) => (m.processes || []).map((p) => ({ id: p.id, computer: m.computer,
      name: p.name, display: p.display, ports: (p.ports || []).join(", ") }))),
  },
  dependencies: {
    label: "Dependencies",
    columns: [["source", "from"], ["target", "to"], ["port", "port", "num"], ["status", "status"], ["links", "links", "num"],
      ["failed", "failed", "num"], ["rate", "failed %", "num"], ["bytes", "bytes", "num"]],
    rows: (data) => {
      const names = new Map();
      for (const m of data.machines) {
        names.set(m.id, m.computer);
        for (const p of m.processes || []) names.set(p.id, `${p.display || p.name} on ${(m.computer || "").split(".")[0]}`);
      }
      for (const g of data.groups || []) names.set(g.id, g.label);
      return data.edges.map((e) => ({ id: e.source, edge: e.id, source: names.get(e.source) || e.source,
        target: names.get(e.target) || e.target, port: e.port, status: e.failing && e.status !== "used_to_work" ? "failing" : e.status,
        links: e.links, failed: e.failed, rate: e.links + e.failed ? +(100 * e.failed / (e.links + e.failed)).toFixed(1) : 0,
        bytes: e.bytes_sent + e.bytes_received }));
    },
  },
};
const FORMAT = { bytes: fmtBytes, links: fmtNum, failed: fmtNum };
const MAX_ROWS = 2000;

export function mapTable(data, { open }) {
  const view = { table: "machines", sort: null, desc: false, filter: "" };
  const body = h("div.map-table-body");
  const tabs = h("div.tabs", Object.entries(TABLES).map(([id, t]) => h("button.small", { dataset: { table: id },
    onclick: () => { Object.assign(view, { table: id, sort: null }); render(); } }, t.label)));
  const filter = h("input#map-table-filter", { type: "search", placeholder: "filter", oninput: () => { view.filter = filter.value.trim().toLowerCase(); render(); } });

  function render() {
    const t = TABLES[view.table];
    for (const b of tabs.children) b.classList.toggle("active", b.dataset.table === view.table);
    let rows = t.rows(data);
    if (view.filter) rows = rows.filter((r) => t.columns.some(([k]) => String(r[k] ?? "").toLowerCase().includes(view.filter)));
    if (view.sort) {
      const num = (t.columns.find(([k]) => k === view.sort) || [])[2] === "num";
      rows.sort((a, b) => {
        const x = a[view.sort], y = b[view.sort];
        const c = num ? (x || 0) - (y || 0) : String(x ?? "").localeCompare(String(y ?? ""));
        return view.desc ? -c : c;
      });
    }
    const shown = rows.slice(0, MAX_ROWS);
    clear(body, h("p.muted", `${fmtNum(rows.length)} ${t.label.toLowerCase()}${rows.length > MAX_ROWS ? `, the first ${MAX_ROWS} shown` : ""}`),
      h("table.grid",
        h("thead", h("tr", t.columns.map(([k, label]) => h("th", { dataset: { column: k }, onclick: () => {
          view.desc = view.sort === k ? !view.desc : false;
          view.sort = k;
          render();
        } }, label + (view.sort === k ? (view.desc ? " ▾" : " ▴") : ""))))),
        h("tbody", shown.map((r) => h("tr", { ondblclick: () => open(r.id), title: "double-click: show it on the map" },
          t.columns.map(([k]) => h("td", FORMAT[k] ? FORMAT[k](r[k]) : String(r[k] ?? ""))))))));
  }
  render();
  return h("div", h("div.row", tabs, filter), body);
}
