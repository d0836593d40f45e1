// The network chart (GET /api/network): machine-to-machine traffic as a zoomable force-directed
// graph, edges weighted by bytes or links, nodes coloured by subnet (click a subnet in the legend
// to hide it), a click on a machine opens its details.
import { api, ApiError } from "./api.js";
import { timeRangeFrom } from "./timerange.js";
import { machinePanel } from "./details.js";
import { h, clear, fmtBytes, fmtNum, hashParams, setHashParams, notice } from "./util.js";

const SYSTEM_PROCESSES = "System,svchost.exe,lsass.exe,services.exe,wininit.exe,csrss.exe,smss.exe";
const PALETTE = ["#0f6cbd", "#ca5010", "#498205", "#8764b8", "#038387", "#e3008c", "#986f0b", "#4f6bed", "#c239b3", "#6e6e6e"];

export async function mount(main) {
  const params = hashParams();
  const state = { subnet: params.subnet || "", weight: params.weight || "bytes", exclude: params.exclude || "",
    onlyFailing: params.only_failing === "1", data: null };
  let chart = null, seq = 0, alive = true;

  const time = timeRangeFrom({ range: params.range || "1h", from: params.from, to: params.to }, () => load());
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
    onchange: () => { state.onlyFailing = onlyFailing.checked; draw(); } });
  const find = h("input#net-find", { type: "search", placeholder: "highlight a machine", oninput: () => highlight(find.value.trim()) });
  const status = h("div.map-status");
  const box = h("div.network-canvas#network");
  const details = h("aside.details#net-details", notice("Click a machine for its details."));

  clear(main, h("div.map-page",
    h("aside.controls",
      h("section", h("h3", "Time range"), time.element),
      h("section", h("h3", "Filter"),
        h("label.field", "subnet (CIDR)", subnet),
        h("label.field", "edge weight", weight),
        h("label.check", onlyFailing, "Only connections with failures"),
        h("label.check", excludeOn, "Exclude processes"), excludeText,
        h("label.field", "find", find)),
      h("section", h("p.hint", "Scroll to zoom, drag to pan or move a machine; click a subnet in the legend to hide it."))),
    h("div.map-main", status, box), details));

  async function load() {
    const mine = ++seq;
    setHashParams("network", { ...time.params(), subnet: state.subnet, weight: state.weight === "bytes" ? "" : state.weight,
      exclude: state.exclude, only_failing: state.onlyFailing ? 1 : "" });
    status.textContent = "loading…";
    status.className = "map-status";
    try {
      const data = await api.get("/api/network", { ...time.value(), subnet: state.subnet, weight: state.weight, exclude: state.exclude });
      if (mine !== seq || !alive) return;
      state.data = data;
      draw();
    } catch (e) {
      if (mine !== seq) return;
      status.textContent = e instanceof ApiError ? `${e.code}: ${e.message}` : e.message;
      status.className = "map-status error";
    }
  }

  function draw() {
    const data = state.data;
    if (!data) return;
    const key = state.weight === "links" ? "links" : "bytes";
    const edges = data.edges.filter((e) => !state.onlyFailing || e.failed > 0);
    const used = new Set(edges.flatMap((e) => [e.source, e.target]));
    const nodes = data.nodes.filter((n) => !state.onlyFailing || used.has(n.id));
    const subnets = [...new Set(nodes.map((n) => n.subnet || "other"))].sort();
    const maxNode = Math.max(1, ...nodes.map((n) => n[key] || 0));
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
    chart.setOption({
      animation: false,
      color: PALETTE,
      tooltip: { confine: true, formatter: (p) => (p.dataType === "edge"
        ? `${p.data.sourceName} → ${p.data.targetName}<br>${fmtBytes(p.data.bytes)} · ${fmtNum(p.data.links)} links${p.data.failed ? ` · <b style="color:#d13438">${fmtNum(p.data.failed)} failed</b>` : ""}`
        : `<b>${p.data.name}</b><br>${p.data.subnet}<br>${fmtBytes(p.data.bytes)} · ${fmtNum(p.data.links)} links`) },
      legend: [{ data: subnets, type: "scroll", bottom: 0 }],
      series: [{
        type: "graph", layout: "force", roam: true, draggable: true, zoom: 1,
        categories: subnets.map((s) => ({ name: s })),
        force: { repulsion: many ? 160 : 900, gravity: many ? 0.12 : 0.06, edgeLength: many ? [40, 180] : [80, 260], friction: 0.2,
          layoutAnimation: nodes.length > 300 },
        label: { show: !many, position: "right", fontSize: 11, formatter: (p) => p.data.name.split(".")[0] },
        emphasis: { focus: "adjacency", label: { show: true }, lineStyle: { width: 4 } },
        labelLayout: { hideOverlap: true },
        edgeSymbol: ["none", "arrow"], edgeSymbolSize: 6,
        data: nodes.map((n) => ({ id: n.id, name: n.computer || n.id, subnet: n.subnet || "other",
          category: subnets.indexOf(n.subnet || "other"), bytes: n.bytes, links: n.links,
          symbolSize: 10 + 30 * Math.sqrt((n[key] || 0) / maxNode) })),
        links: edges.map((e) => ({ source: e.source, target: e.target, bytes: e.bytes, links: e.links, failed: e.failed,
          sourceName: name(e.source), targetName: name(e.target),
          lineStyle: { width: 0.8 + 6 * Math.sqrt((e[key] || 0) / maxEdge), color: e.failed > 0 ? "#d13438" : "#9aa5b1",
            opacity: e.failed > 0 ? 0.95 : 0.6, curveness: 0.1 } })),
      }],
    }, true);
    box.dataset.ready = "1";
    box.dataset.nodes = String(nodes.length);
    box.dataset.edges = String(edges.length);
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

  async function select(id) {
    const n = state.data.nodes.find((x) => x.id === id) || { id, computer: id };
    clear(details, h("h2", n.computer), notice("loading…"));
    try {
      const info = await api.get(`/api/machines/${encodeURIComponent(id)}`);
      clear(details, machinePanel({ id, computer: n.computer, ips: [] }, info, {
        focus: () => { location.hash = `#/map?machine=${encodeURIComponent(id)}`; }, range: time.value(),
      }), h("dl.props", h("dt", "traffic"), h("dd", `${fmtBytes(n.bytes)} · ${fmtNum(n.links)} links`)));
    } catch (e) {
      clear(details, h("h2", n.computer), notice(e.message, "error"));
    }
  }

  const onResize = () => chart && chart.resize();
  window.addEventListener("resize", onResize);
  load();
  return () => {
    alive = false;
    window.removeEventListener("resize", onResize);
    if (chart) chart.dispose();
    delete window.netatlasNetwork;
  };
}
