// Performance (GET /api/performance): machines ranked by a statistic of a counter over the range,
// as VM insights' Performance view lists its "Top N": the counter and statistic pickers, N, the
// ranked list with each machine's value as a bar, its series as a sparkline and its last
// heartbeat; a click on a machine opens its details (its record, charts and heartbeat).
import { api, ApiError } from "./api.js";
import { timeRangeFrom } from "./timerange.js";
import { fmtUnit, sparkline } from "./charts.js";
import { machinePanel, performanceSection, heartbeatText } from "./details.js";
import { h, clear, notice, hashParams, setHashParams } from "./util.js";

const DEFAULT_COUNTER = "cpu";
const STAT_TITLES = { avg: "average", p50: "P50", p90: "P90", p95: "P95", max: "maximum", min: "minimum" };

export async function mount(main) {
  const params = hashParams();
  const state = { counter: params.counter || DEFAULT_COUNTER, stat: params.stat || "avg", top: params.top || "10",
    data: null, selected: params.sel || "" };
  let seq = 0, alive = true;

  const time = timeRangeFrom({ range: params.range || "1h", from: params.from, to: params.to }, () => load());
  const counter = h("select#perf-counter", { onchange: () => { state.counter = counter.value; load(); } },
    h("option", { value: state.counter }, state.counter));
  const stat = h("select#perf-stat", { onchange: () => { state.stat = stat.value; load(); } },
    Object.entries(STAT_TITLES).map(([id, title]) => h("option", { value: id }, title)));
  stat.value = state.stat;
  const top = h("input#perf-top", { type: "number", min: 1, max: 100, step: 1, value: state.top,
    onchange: () => { state.top = top.value.trim(); load(); } });
  const status = h("div.map-status#perf-status");
  const list = h("div.perf-table-wrap");
  const details = h("aside.details#perf-details", notice("Click a machine for its details."));

  clear(main, h("div.map-page.perf-page",
    h("aside.controls",
      h("section", h("h3", "Counter"),
        h("label.field", "counter", counter),
        h("label.field", "statistic over the range", stat),
        h("label.field", "machines (top N)", top)),
      h("section", h("h3", "Time range"), time.element),
      h("section", h("p.hint", "The machines whose counter is worst first (the least available memory; the most of the others). Click a machine for its charts."))),
    h("div.map-main.perf-main", status, list), details));

  // The page's state in the address (sel: the machine whose details are open); push: a user's step.
  function remember(push = false) {
    setHashParams("performance", { ...time.params(), counter: state.counter === DEFAULT_COUNTER ? "" : state.counter,
      stat: state.stat === "avg" ? "" : state.stat, top: state.top === "10" ? "" : state.top, sel: state.selected }, push);
  }

  async function load(push = true) {       // push: a user's step (Back returns before it)
    const mine = ++seq;
    remember(push);
    status.textContent = "loading…";
    status.className = "map-status";
    list.dataset.ready = "";
    try {
      const data = await api.get("/api/performance", { counter: state.counter, stat: state.stat, top: state.top, ...time.value() });
      if (mine !== seq || !alive) return;
      state.data = data;
      draw();
    } catch (e) {
      if (mine !== seq || !alive) return;
      status.textContent = e instanceof ApiError ? `${e.code}: ${e.message}` : e.message;
      status.className = "map-status error";
      clear(list);
      list.dataset.ready = "1";
    }
  }

  function draw() {
    const data = state.data;
    clear(counter, data.counters.map((c) => h("option", { value: c.id }, `${c.title} (${c.unit})`)));
    counter.value = data.counter.id;
    const unit = data.counter.unit;
    const machines = data.machines;
    const stopped = machines.filter((m) => m.heartbeat_stopped).length;
    clear(status, `${data.counter.title}: ${STAT_TITLES[data.stat] || data.stat} over the range, top ${data.top}`,
      h("span.muted", ` · ${machines.length} machine${machines.length === 1 ? "" : "s"}`),
      stopped ? h("span.bad", ` · ${stopped} heartbeat${stopped === 1 ? "" : "s"} stopped`) : "");
    if (!machines.length) {
      clear(list, notice("No machine reported this counter (InsightsMetrics) in this range."));
      list.dataset.ready = "1";
      return;
    }
    const values = machines.map((m) => m.value).filter((v) => v !== null);
    const high = unit === "%" ? 100 : Math.max(0, ...values) || 1;
    const peak = unit === "%" ? 100 : Math.max(0, ...machines.flatMap((m) => m.series.filter((v) => v !== null))) || 1;
    clear(list, h("table.grid#perf-list",
      h("thead", h("tr", ["#", "machine", STAT_TITLES[data.stat] || data.stat, "", "over the range", "P95", "max", "last heartbeat"]
        .map((c) => h("th", c)))),
      h("tbody", machines.map((m) => h("tr", {
        dataset: { computer: m.computer, id: m.id || "" }, class: m.computer === state.selected ? "selected" : undefined,
        onclick: (e) => select(m, e.currentTarget),
      },
      h("td.num", String(m.rank)),
      h("td", h("b", m.computer)),
      h("td.num.value", fmtUnit(m.value, unit)),
      h("td", h("div.bar", h("span", { style: { width: `${Math.min(100, Math.max(0, ((m.value || 0) / high) * 100)).toFixed(1)}%` } }))),
      h("td", sparkline(m.series, { max: peak })),
      h("td.num", fmtUnit(m.p95, unit)),
      h("td.num", fmtUnit(m.max, unit)),
      h("td", heartbeatText(m, { short: true })))))));
    list.dataset.ready = "1";
    list.dataset.rows = String(machines.length);
    const chosen = machines.find((m) => m.computer === state.selected);
    if (chosen && !details.querySelector("h2")) select(chosen, list.querySelector("tbody tr.selected"));
  }

  async function select(m, row) {
    state.selected = m.computer;
    remember();
    for (const tr of list.querySelectorAll("tbody tr")) tr.classList.toggle("selected", tr === row);
    const range = state.data.range;
    if (!m.id) {          // counters and heartbeats, but no VMComputer record: its charts only
      clear(details, h("h2", m.computer), h("p.hint", "No VMComputer record: the machine sends only counters."),
        performanceSection(m.computer, range));
      return;
    }
    clear(details, h("h2", m.computer), notice("loading…"));
    try {
      const info = await api.get(`/api/machines/${encodeURIComponent(m.id)}`);
      if (!alive || state.selected !== m.computer) return;
      clear(details, machinePanel({ id: m.id, computer: m.computer, ips: [] }, info, {
        focus: () => { location.hash = `#/map?machine=${encodeURIComponent(m.id)}`; }, range,
      }));
    } catch (e) {
      clear(details, h("h2", m.computer), notice(e.message, "error"));
    }
  }

  load(false);
  return () => { alive = false; };
}
