// The network chart (GET /api/network): machine-to-machine traffic as a zoomable force-directed
// graph, edges weighted by bytes or links, nodes coloured by subnet (click a subnet in the legend
// to hide it), a click on a machine opens its details. Coloured by wave (GET /api/waves, waves.js):
// a colour per migration wave, the machine pairs crossing between waves listed beside the chart,
// and a machine can be moved to another wave to see the crossing traffic change (in the browser;
// the moves are kept in the address). Coloured by community: the plan's communities (machines that
// talk together, the shared services' groups last), a colour each.
// A subnet's colour is the same in every view (a hash into SUBNET_COLOURS, kept: subnetColour); the
// machines keep their places between filters and redraws (POSITIONS); the hubs (most
// connected) and the selected machine are labelled, the selection ringed.
import { api, ApiError } from "./api.js";
import { assignment, crossing, waveColour } from "./waves.js";
import { timeRangeFrom } from "./timerange.js";
import { machinePanel } from "./details.js";
import { h, clear, fmtBytes, fmtNum, hashParams, setHashParams, notice, store } from "./util.js";

const SYSTEM_PROCESSES = "System,svchost.exe,lsass.exe,services.exe,wininit.exe,csrss.exe,smss.exe";
const PALETTE = ["#0f6cbd", "#ca5010", "#498205", "#8764b8", "#038387", "#e3008c", "#986f0b", "#4f6bed", "#c239b3", "#6e6e6e"];
// 36 colours told apart at a glance: Kelly's colours of maximum contrast (without white, black
// and grey, which means "no subnet"), then the light and middle tones of Tableau's 20 and a few
// more that none of those is close to.
export const SUBNET_COLOURS = ["#F3C300", "#875692", "#F38400", "#A1CAF1", "#BE0032", "#C2B280", "#008856",
  "#E68FAC", "#0067A5", "#F99379", "#604E97", "#F6A600", "#B3446C", "#DCD300", "#882D17", "#8DB600", "#654522",
  "#E25822", "#2B3D26", "#17BECF", "#9467BD", "#E377C2", "#98DF8A", "#C5B0D5", "#FF9896", "#9EDAE5", "#C49C94",
  "#DBDB8D", "#F7B6D2", "#FFBB78", "#2CA02C", "#003F5C", "#6B6ECF", "#B5CF6B", "#E7969C", "#7B4173"];
const HUBS = 12;                  // machines labelled on a chart of many: the most connected
const POSITIONS = new Map();      // machine id -> [x, y] where the chart last put it (kept between views)

// The colour of a subnet, the same whatever else the chart shows: its FNV-1a hash picks a place
// in SUBNET_COLOURS; when another subnet already has that colour, the next free one. What each
// subnet got is kept (localStorage "netatlas.subnetColours"), so a subnet keeps its colour in
// every view and after reloads, and the first 36 subnets all differ. "other" (none) is grey.
let assigned = null;
export function subnetColour(subnet) {
  if (!subnet || subnet === "other") return "#8a8886";
  if (!assigned) assigned = store.get("subnetColours", {});
  if (!(subnet in assigned)) {
    const n = SUBNET_COLOURS.length, used = new Set(Object.values(assigned));
    let x = 0x811c9dc5;
    for (let i = 0; i < subnet.length; i++) { x ^= subnet.charCodeAt(i); x = Math.imul(x, 0x01000193) >>> 0; }
    let slot = x % n;
    for (let k = 0; k < n && used.has(slot); k++) slot = (slot + 1) % n;
    assigned[subnet] = slot;
    store.set("subnetColours", assigned);
  }
  return SUBNET_COLOURS[assigned[subnet] % SUBNET_COLOURS.length];
}

const COLOUR_BY = ["subnet", "wave", "community"];

// The user's moves of machines to other waves in the address: "machine:wave,machine:wave".
function movesFrom(text) {
  const out = {};
  for (const item of (text || "").split(",")) {
    const at = item.lastIndexOf(":");
    const n = Number(item.slice(at + 1));
    if (at > 0 && Number.isInteger(n) && n > 0) out[item.slice(0, at)] = n;
  }
  return out;
}

function movesText(moves) {
  return Object.entries(moves).sort().map(([id, n]) => `${id}:${n}`).join(",");
}

export async function mount(main) {
  const params = hashParams();
  const state = { subnet: params.subnet || "", weight: params.weight || "bytes", exclude: params.exclude || "",
    onlyFailing: params.only_failing === "1", data: null, selected: params.sel || "",
    colourBy: COLOUR_BY.includes(params.colour) ? params.colour : "subnet", waveSize: params.wave_size || "", report: null,
    moves: movesFrom(params.moves) };
  let chart = null, seq = 0, waveSeq = 0, alive = true;

  const time = timeRangeFrom({ range: params.range || "1h", from: params.from, to: params.to }, () => load());
  const colourBy = h("select#colour-by", { onchange: () => { state.colourBy = colourBy.value; load(); } },
    COLOUR_BY.map((c) => h("option", { value: c }, c)));
  colourBy.value = state.colourBy;
  const waveSize = h("input#wave-size", { type: "number", min: "1", placeholder: "no limit", value: state.waveSize,
    onchange: () => { state.waveSize = waveSize.value.trim(); if (planned()) load(); } });
  const subnet = h("input#subnet", { placeholder: "10.1.0.0/16", value: state.subnet,
    onchange: () => { state.subnet = subnet.value.trim(); load(); } });
  const weight = h("select#weight", { onchange: () => { state.weight = weight.value; load(); } },
    h("option", { value: "bytes" }, "bytes"), h("option", { value: "links" }, "connections"));
  weight.value = state.weight;
  const excludeText = h("input#net-exclude", { value: state.exclude || SYSTEM_PROCESSES,
    onchange: () => { if (excludeOn.checked) { state.exclude = excludeText.value; load(); } } });
  const excludeOn = h("input", { type: "checkbox", checked: !!state.exclude,
    onchange: () => { state.exclude = excludeOn.checked ? excludeText.value : ""; load(); } });
  const onlyFailing = h("input", { type: "checkbox", checked: state.onlyFailing,
    onchange: () => { state.onlyFailing = onlyFailing.checked; remember(true); draw(true); } });
  const find = h("input#net-find", { type: "search", placeholder: "highlight a machine", value: params.find || "",
    oninput: () => { highlight(find.value.trim()); remember(); } });
  const status = h("div.map-status");
  const box = h("div.network-canvas#network");
  const machineBox = h("div#net-machine", notice("Click a machine for its details."));
  const wavesPanel = h("section#waves-panel", { hidden: true });
  const details = h("aside.details#net-details", wavesPanel, machineBox);

  clear(main, h("div.map-page",
    h("aside.controls",
      h("section", h("h3", "Time range"), time.element),
      h("section", h("h3", "Filter"),
        h("label.field", "subnet (CIDR)", subnet),
        h("label.field", "edge weight", weight),
        h("label.check", onlyFailing, "Only connections with failures"),
        h("label.check", excludeOn, "Exclude processes"), excludeText,
        h("label.field", "find", find)),
      h("section", h("h3", "Colour"),
        h("label.field", "colour by", colourBy),
        h("label.field", "max machines per wave", waveSize)),
      h("section", h("p.hint", "Scroll to zoom, drag to pan or move a machine; click a subnet in the legend to hide it."))),
    h("div.map-main", status, box), details));

  // The chart's state in the address; push: a user's step (a filter changed), Back returns before it.
  function remember(push = false) {
    setHashParams("network", { ...time.params(), subnet: state.subnet, weight: state.weight === "bytes" ? "" : state.weight,
      exclude: state.exclude, only_failing: state.onlyFailing ? 1 : "", colour: state.colourBy === "subnet" ? "" : state.colourBy,
      wave_size: planned() ? state.waveSize : "", sel: state.selected, find: find.value.trim(),
      moves: state.colourBy === "wave" ? movesText(state.moves) : "" }, push);
  }

  async function load(push = true) {
    const mine = ++seq;
    remember(push);
    status.textContent = "loading…";
    status.className = "map-status";
    try {
      const range = time.value();
      const [data, report] = await Promise.all([
        api.get("/api/network", { ...range, subnet: state.subnet, weight: state.weight, exclude: state.exclude }),
        planned() ? loadWaves(range) : null]);
      if (mine !== seq || !alive) return;
      state.data = data;
      if (report) {
        // another plan (range, cap, weight): the user's moves were over the old one (the first
        // plan keeps the moves the address brought)
        if (state.report && JSON.stringify(report.waves) !== JSON.stringify(state.report.waves)) state.moves = {};
        state.report = report;
      }
      draw(true);
      if (find.value.trim()) highlight(find.value.trim());
      if (state.selected && !machineBox.querySelector("h2")) select(state.selected, false);
    } catch (e) {
      if (mine !== seq) return;
      status.textContent = e instanceof ApiError ? `${e.code}: ${e.message}` : e.message;
      status.className = "map-status error";
    }
  }

  // The waves of the machines over the chart's range, weighted as the chart is.
  function loadWaves(range) {
    const seconds = Math.max(1, Math.round((Date.parse(range.to) - Date.parse(range.from)) / 1000));
    return api.get("/api/waves", { range: `${seconds}s`, to: range.to, max_wave_size: state.waveSize,
      weight: state.weight === "links" ? "connections" : "bytes", exclude: state.exclude });
  }

  function planned() {           // colouring that needs the migration plan (GET /api/waves)
    return state.colourBy === "wave" || state.colourBy === "community";
  }

  function byWave() {
    return state.colourBy === "wave" && state.report;
  }

  // machine -> community number (from 1) of the plan; the shared services' groups come last
  function byCommunity() {
    if (state.colourBy !== "community" || !state.report) return null;
    const out = {};
    state.report.communities.forEach((members, i) => { for (const m of members) out[m] = i + 1; });
    return out;
  }

  // Where the chart put each machine, so a recolouring keeps the picture.
  function positions() {
    const out = {};
    if (!chart) return out;
    const series = chart.getModel() && chart.getModel().getSeriesByIndex(0);
    if (!series) return out;
    const d = series.getData();
    for (let i = 0; i < d.count(); i++) {
      const layout = d.getItemLayout(i);
      if (layout) out[d.getRawDataItem(i).id] = layout;
    }
    return out;
  }

  function draw(keep = false) {
    const data = state.data;
    if (!data) return;
    for (const [id, xy] of Object.entries(positions())) POSITIONS.set(id, xy);
    const at = keep ? Object.fromEntries(POSITIONS) : {};
    const communities = byCommunity();
    const waves = byWave() ? assignment(state.report, state.moves) : communities;
    const noun = communities ? "community" : "wave";
    const count = communities ? state.report.communities.length
      : waves ? Math.max(state.report.waves.length, ...Object.values(waves)) : 0;
    const waveNames = Array.from({ length: count }, (_, i) => `${noun} ${i + 1}`).concat([`no ${noun}`]);
    const waveOf = (id) => (waves && waves[id]) || 0;
    const category = (n) => (waves ? (waveOf(n.id) ? waveOf(n.id) - 1 : count) : subnets.indexOf(n.subnet || "other"));
    const degree = new Map();
    const key = state.weight === "links" ? "links" : "bytes";
    const edges = data.edges.filter((e) => !state.onlyFailing || e.failed > 0);
    const used = new Set(edges.flatMap((e) => [e.source, e.target]));
    const nodes = data.nodes.filter((n) => !state.onlyFailing || used.has(n.id));
    const subnets = [...new Set(nodes.map((n) => n.subnet || "other"))].sort();
    const names = waves ? waveNames : subnets;
    const maxNode = Math.max(1, ...nodes.map((n) => n[key] || 0));
    for (const e of edges) for (const id of [e.source, e.target]) degree.set(id, (degree.get(id) || 0) + 1);
    const hubs = new Set(nodes.slice().sort((a, b) => (degree.get(b.id) || 0) - (degree.get(a.id) || 0)
      || (b[key] || 0) - (a[key] || 0)).slice(0, HUBS).map((n) => n.id));
    const maxEdge = Math.max(1, ...edges.map((e) => e[key] || 0));
    const failing = edges.filter((e) => e.failed > 0).length;
    clear(status, `${nodes.length} machines, ${edges.length} connections between them`,
      failing ? h("span.bad", ` · ${failing} with failures`) : "", h("span.muted", ` · weighted by ${state.weight === "links" ? "connections" : "bytes"}`));
    if (!chart) {
      chart = window.echarts.init(box);
      window.netatlasNetwork = chart;
      chart.on("click", (p) => { if (p.dataType === "node") select(p.data.id); });
    }
    const many = nodes.length > 60;
    const pinned = new Set();     // data indexes whose labels are always shown
    chart.setOption({
      animation: false,
      color: PALETTE,
      tooltip: { confine: true, formatter: (p) => (p.dataType === "edge"
        ? `${p.data.sourceName} → ${p.data.targetName}<br>${fmtBytes(p.data.bytes)} · ${fmtNum(p.data.links)} links${p.data.failed ? ` · <b style="color:#d13438">${fmtNum(p.data.failed)} failed</b>` : ""}`
        : `<b>${p.data.name}</b><br>${p.data.subnet}${waves ? ` · ${p.data.wave ? `${noun} ${p.data.wave}` : `no ${noun}`}` : ""}<br>${fmtBytes(p.data.bytes)} · ${fmtNum(p.data.links)} links`) },
      legend: [{ data: names, type: "scroll", bottom: 0 }],
      series: [{
        type: "graph", layout: "force", roam: true, draggable: true, zoom: 1,
        categories: waves ? waveNames.map((s, i) => ({ name: s, itemStyle: { color: i >= count ? waveColour(0)
          : communities ? SUBNET_COLOURS[i % SUBNET_COLOURS.length] : waveColour(i + 1) } }))
          : subnets.map((s) => ({ name: s, itemStyle: { color: subnetColour(s) } })),
        force: { repulsion: many ? 160 : 900, gravity: many ? 0.12 : 0.06, edgeLength: many ? [40, 180] : [80, 260], friction: 0.2,
          layoutAnimation: nodes.length > 300 },
        label: { show: !many, position: "right", fontSize: 11, formatter: (p) => p.data.name.split(".")[0] },
        // on a chart of many: the hubs and the selection keep their labels
        labelLayout: (p) => ({ hideOverlap: !(p.dataIndex !== undefined && pinned.has(p.dataIndex)) }),
        emphasis: { focus: "adjacency", label: { show: true }, lineStyle: { width: 4 } },
        edgeSymbol: ["none", "arrow"], edgeSymbolSize: 6,
        data: nodes.map((n, i) => {
          const chosen = n.id === state.selected, hub = hubs.has(n.id) && many;
          if (chosen || hub) pinned.add(i);
          return { id: n.id, name: n.computer || n.id, subnet: n.subnet || "other",
            category: category(n), wave: waveOf(n.id), bytes: n.bytes, links: n.links, hub, selected: chosen,
            ...(at[n.id] ? { x: at[n.id][0], y: at[n.id][1], fixed: true } : {}),
            symbolSize: 10 + 30 * Math.sqrt((n[key] || 0) / maxNode) + (chosen ? 6 : 0),
            ...(chosen ? { itemStyle: { borderColor: "#111", borderWidth: 3, shadowBlur: 12, shadowColor: "rgba(0,0,0,.45)" },
              label: { show: true, fontWeight: "bold", fontSize: 13, backgroundColor: "#fff", padding: [1, 3] }, z: 10 }
              : hub ? { label: { show: true, fontWeight: 600 } } : {}) };
        }),
        links: edges.map((e) => ({ source: e.source, target: e.target, bytes: e.bytes, links: e.links, failed: e.failed,
          sourceName: name(e.source), targetName: name(e.target),
          lineStyle: { width: 0.8 + 6 * Math.sqrt((e[key] || 0) / maxEdge), color: e.failed > 0 ? "#d13438" : "#9aa5b1",
            opacity: e.failed > 0 ? 0.95 : 0.6, curveness: 0.1,
            type: waves && waveOf(e.source) !== waveOf(e.target) ? "dashed" : "solid" } })),
      }],
    }, true);
    box.dataset.ready = "1";
    box.dataset.nodes = String(nodes.length);
    box.dataset.edges = String(edges.length);
    box.dataset.colour = state.colourBy;
    box.dataset.selected = state.selected || "";
    box.dataset.labelled = String(pinned.size);
    if (waves && !communities) box.dataset.waves = String(count); else delete box.dataset.waves;
    if (communities) box.dataset.communities = String(count); else delete box.dataset.communities;
    showWaves(communities ? null : waves);
  }

  // The side list: the crossing traffic under the current waves, and the move of a machine.
  function showWaves(waves) {
    wavesPanel.hidden = !waves;
    if (!waves) return clear(wavesPanel);
    const report = state.report;
    const cross = crossing(report, waves);
    const count = Math.max(report.waves.length, ...Object.values(waves));
    const computer = {};
    for (const w of report.waves) for (const m of w.machines) computer[m.machine] = m.computer || m.machine;
    const label = (id) => (computer[id] || id).split(".")[0];
    const machines = Object.keys(waves).sort((a, b) => label(a).localeCompare(label(b)));
    const moved = Object.keys(state.moves).length;
    const pick = h("select#move-machine", machines.map((id) => h("option", { value: id }, `${label(id)} (wave ${waves[id]})`)));
    if (state.selected && waves[state.selected]) pick.value = state.selected;
    const target = h("select#move-wave", Array.from({ length: count + 1 }, (_, i) =>
      h("option", { value: String(i + 1) }, i < count ? `wave ${i + 1}` : `wave ${i + 1} (new)`)));
    const syncTarget = () => { target.value = String(waves[pick.value] || 1); };
    pick.addEventListener("change", () => { state.selected = pick.value; syncTarget(); });
    syncTarget();
    const total = h("p#crossing-total", { dataset: { bytes: String(cross.bytes), pairs: String(cross.edges.length) } },
      h("b", fmtBytes(cross.bytes)), ` crossing between waves in ${fmtNum(cross.edges.length)} machine pairs`,
      ` (${fmtNum(cross.connections)} connections${cross.backward ? `, ${cross.backward} called by an earlier wave` : ""})`,
      moved ? h("span.muted", ` · was ${fmtBytes(report.crossing_bytes)} before ${moved} move${moved > 1 ? "s" : ""}`) : "");
    clear(wavesPanel,
      h("h3", `Migration waves (${count})`),
      h("div.legend", Array.from({ length: count }, (_, i) => h("div.legend-row",
        h("span.box", { style: { background: waveColour(i + 1), borderColor: waveColour(i + 1) } }),
        `wave ${i + 1}: ${machines.filter((id) => waves[id] === i + 1).length} machines`))),
      total,
      h("div.wave-move", h("label.field", "machine", pick), h("label.field", "to wave", target),
        h("div.buttons",
          h("button#move-apply", { type: "button", onclick: () => {
            const id = pick.value, n = +target.value;
            if (!id || !n) return;
            state.selected = id;
            const original = assignment(report)[id];
            if (n === original) delete state.moves[id]; else state.moves[id] = n;
            remember(true);
            draw(true);
          } }, "Move"),
          h("button#move-reset", { type: "button", disabled: !moved, onclick: () => { state.moves = {}; remember(true); draw(true); } },
            "Undo moves"))),
      h("table.grid.small#crossing-list",
        h("thead", h("tr", h("th", "from"), h("th", "to"), h("th", "bytes"), h("th", "waves"))),
        h("tbody", cross.edges.map((e) => h("tr", { dataset: { caller: e.caller, callee: e.callee } },
          h("td", label(e.caller)), h("td", label(e.callee)), h("td.num", fmtBytes(e.bytes)),
          h("td", { title: e.caller_wave < e.callee_wave ? "the caller's wave moves first" : "" },
            `${e.caller_wave} → ${e.callee_wave}${e.caller_wave < e.callee_wave ? " ⚠" : ""}`))))));
  }

  function name(id) {
    const n = state.data.nodes.find((x) => x.id === id);
    return n ? n.computer : id;
  }

  function highlight(text) {
    if (!chart || !state.data) return;
    chart.dispatchAction({ type: "downplay", seriesIndex: 0 });
    if (!text) return;
    const lower = text.toLowerCase();
    const nodes = chart.getOption().series[0].data;
    const idx = nodes.map((n, i) => (n.name.toLowerCase().includes(lower) ? i : -1)).filter((i) => i >= 0);
    if (idx.length) chart.dispatchAction({ type: "highlight", seriesIndex: 0, dataIndex: idx });
  }

  async function select(id, redraw = true) {
    const n = state.data.nodes.find((x) => x.id === id) || { id, computer: id };
    state.selected = id;
    remember();
    if (redraw) draw(true);
    const pick = wavesPanel.querySelector("#move-machine");
    if (pick && [...pick.options].some((o) => o.value === id)) {
      pick.value = id;
      pick.dispatchEvent(new Event("change"));
    }
    clear(machineBox, h("h2", n.computer), notice("loading…"));
    try {
      const info = await api.get(`/api/machines/${encodeURIComponent(id)}`);
      clear(machineBox, machinePanel({ id, computer: n.computer, ips: [] }, info, {
        focus: () => { location.hash = `#/map?machine=${encodeURIComponent(id)}`; }, range: time.value(),
      }), h("dl.props", h("dt", "traffic"), h("dd", `${fmtBytes(n.bytes)} · ${fmtNum(n.links)} links`)));
    } catch (e) {
      clear(machineBox, h("h2", n.computer), notice(e.message, "error"));
    }
  }

  const onResize = () => chart && chart.resize();
  window.addEventListener("resize", onResize);
  load(false);
  return () => {
    alive = false;
    window.removeEventListener("resize", onResize);
    if (chart) chart.dispose();
    delete window.netatlasNetwork;
  };
}
