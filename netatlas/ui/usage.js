// Usage (GET /api/usage): ingested volume per day stacked by table, its cost at the price per GB
// the operator sets (kept in this browser), the most chatty machines and processes, and each
// table's retention (PUT /api/retention/{Table} changes it).
import { api, session } from "./api.js";
import { h, clear, fmtNum, fmtMB, store, notice, hashParams, setHashParams } from "./util.js";

const PALETTE = ["#0f6cbd", "#e3008c", "#ca5010", "#498205", "#8764b8", "#038387", "#986f0b", "#c239b3", "#4f6bed", "#6e6e6e"];

export async function mount(main) {
  let chart = null, alive = true;
  const price = h("input#price", { type: "number", min: 0, step: 0.01, value: store.get("pricePerGB", 2.3),
    title: "Price per GB ingested (GB = 10^9 bytes), in your currency", oninput: () => { store.set("pricePerGB", +price.value || 0); if (data) draw(); } });
  const currency = h("input#currency", { type: "text", size: 3, maxLength: 4, value: store.get("currency", "$"),
    oninput: () => { store.set("currency", currency.value); if (data) draw(); } });
  const shownDays = +hashParams().days || store.get("usageDays", 30);      // the address first
  const days = h("select#days", { onchange: () => load(true) },
    [7, 14, 30, 90].map((d) => h("option", { value: d, selected: d === shownDays }, `Last ${d} days`)));
  const cards = h("div.cards");
  const chartBox = h("div.chart-box.usage-chart#usage-chart");
  const tables = h("div.usage-tables");
  clear(main, h("div.usage-page",
    h("div.toolbar", days, h("label", "price per GB ", currency, price)),
    cards, h("h3", "Ingested per day, by table"), chartBox, tables));
  let data = null;

  const cost = (mb) => (mb / 1000) * (+price.value || 0);
  const money = (mb) => `${currency.value}${cost(mb).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;

  async function load(push = false) {
    store.set("usageDays", +days.value);
    setHashParams("usage", { days: days.value }, push);
    clear(cards, notice("loading…"));
    try {
      const answer = await api.get("/api/usage", { days: days.value });
      if (!alive) return;
      data = answer;
      draw();
    } catch (e) {
      clear(cards, notice(e.message, "error"));
    }
  }

  function draw() {
    const perDay = data.days || [];
    const tableNames = [...new Set(perDay.flatMap((d) => Object.keys(d.tables || {})))]
      .sort((a, b) => total(b) - total(a));
    function total(t) { return perDay.reduce((s, d) => s + ((d.tables || {})[t] || 0), 0); }
    const totalMb = data.total_mb ?? tableNames.reduce((s, t) => s + total(t), 0);
    const activeDays = Math.max(1, perDay.length);
    clear(cards,
      card("Ingested", fmtMB(totalMb), `${perDay.length} days`),
      card("Cost", money(totalMb), `at ${currency.value}${price.value} per GB`),
      card("Per day", fmtMB(totalMb / activeDays), money(totalMb / activeDays)),
      card("30 days at this rate", fmtMB((totalMb / activeDays) * 30), money((totalMb / activeDays) * 30)));
    if (!chart) {
      chart = window.echarts.init(chartBox);
      window.netatlasUsage = chart;
    }
    chart.setOption({
      animation: false,
      color: PALETTE,
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" }, confine: true,
        valueFormatter: (v) => (v === null || v === undefined ? "" : `${fmtMB(v)} · ${money(v)}`) },
      legend: { type: "scroll", bottom: 0 },
      grid: { left: 60, right: 20, top: 20, bottom: 60, containLabel: true },
      xAxis: { type: "category", data: perDay.map((d) => d.day) },
      yAxis: { type: "value", name: "MB", axisLabel: { formatter: (v) => fmtNum(v) } },
      series: tableNames.map((t) => ({ name: t, type: "bar", stack: "total", emphasis: { focus: "series" },
        data: perDay.map((d) => +(((d.tables || {})[t] || 0).toFixed(4))) })),
    }, true);
    chartBox.dataset.ready = "1";
    chartBox.dataset.series = String(tableNames.length);
    chartBox.dataset.days = String(perDay.length);
    clear(tables,
      h("div.usage-table",
        h("h3", "Most chatty machines"),
        grid(["machine", "ingested", "cost", "share"], (data.machines || []).map((m) =>
          [m.computer, fmtMB(m.mb), money(m.mb), `${((m.mb / (totalMb || 1)) * 100).toFixed(1)} %`]), "machines")),
      h("div.usage-table",
        h("h3", "Most chatty processes"),
        grid(["process", "machine", "ingested", "cost"], (data.processes || []).map((p) =>
          [p.process, p.computer, fmtMB(p.mb), money(p.mb)]), "processes")),
      h("div.usage-table", h("h3", "Retention per table"), retention(data.retention || {})));
  }

  function card(title, value, sub) {
    return h("div.card", h("div.card-title", title), h("div.card-value", value), h("div.card-sub", sub));
  }

  function grid(headers, rows, id) {
    if (!rows.length) return notice("nothing in this period");
    return h(`table.grid#usage-${id}`, h("thead", h("tr", headers.map((c) => h("th", c)))),
      h("tbody", rows.map((r) => h("tr", r.map((v, i) => h(i > 0 && id === "machines" ? "td.num" : "td", v))))));
  }

  function retention(days) {
    const rows = Object.entries(days).sort(([a], [b]) => a.localeCompare(b));
    return h("table.grid#usage-retention", h("thead", h("tr", h("th", "table"), h("th", "days"), h("th", ""))),
      h("tbody", rows.map(([table, d]) => {
        if (session.readOnly()) return h("tr", h("td", table), h("td", String(d)), h("td", h("span.muted", "read-only share")));
        const input = h("input.days", { type: "number", min: 1, value: d });
        const state = h("span.muted");
        return h("tr", h("td", table), h("td", input), h("td", h("button.small", {
          onclick: async () => {
            try { await api.put(`/api/retention/${encodeURIComponent(table)}`, { days: +input.value }); state.textContent = "saved"; }
            catch (e) { state.textContent = e.message; }
          },
        }, "Set"), " ", state));
      })));
  }

  const onResize = () => chart && chart.resize();
  window.addEventListener("resize", onResize);
  load();
  return () => {
    alive = false;
    window.removeEventListener("resize", onResize);
    if (chart) chart.dispose();
    delete window.netatlasUsage;
  };
}
