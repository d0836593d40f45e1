// Logs: a KQL editor (highlighting and completion from GET /api/schema, the seed queries from
// GET /api/samples), POST /api/query, errors under the text they point at, the result as a
// sortable table (CSV made here, Parquet from POST /api/export) and as the chart `render` asks for.
import { api, ApiError, download } from "./api.js";
import { defineKql, kqlHint, vocab } from "./kql-mode.js";
import { drawChart, chartKind } from "./charts.js";
import { h, clear, fmtNum, fmtTime, store, notice } from "./util.js";

const TIMESPANS = [["", "Set in query"], ["PT30M", "Last 30 minutes"], ["PT1H", "Last hour"], ["PT4H", "Last 4 hours"],
  ["P1D", "Last 24 hours"], ["P2D", "Last 48 hours"], ["P7D", "Last 7 days"], ["P30D", "Last 30 days"]];
const PAGE_ROWS = 200;
const HISTORY_SIZE = 50;
const NUMERIC = new Set(["long", "int", "real", "decimal"]);
// The UI's own samples, after the seed's (GET /api/samples): netatlas's answers to what the seed
// left to be written.
export const LOCAL_SAMPLES = [
  { title: "Clusters: migration waves of the machines talking together (netatlas; blog, example 5)",
    query: `VMConnection
| where TimeGenerated > ago(1d)
| evaluate migration_waves(MaxWaveSize = 6, Weight = "bytes")
| summarize Machines = make_list(Computer), CrossingBytes = sum(CrossingBytes) by Wave, Community
| order by Wave asc` },
];
let modeDefined = false;
let geoipInfo = null;

function cell(v, type) {
  if (v === null || v === undefined) return "";
  if (typeof v === "object") return JSON.stringify(v);
  if (type === "datetime") return String(v).replace("T", " ").replace("Z", "");
  return String(v);
}

export function toCsv(columns, rows) {
  const quote = (s) => (/[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
  const lines = [columns.map((c) => quote(c.name)).join(",")];
  for (const r of rows) lines.push(r.map((v) => quote(v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v))).join(","));
  return lines.join("\r\n") + "\r\n";
}

function compare(a, b, type) {
  if (a === null || a === undefined || a === "") return b === null || b === undefined || b === "" ? 0 : -1;
  if (b === null || b === undefined || b === "") return 1;
  if (NUMERIC.has(type)) return +a - +b;
  if (typeof a === "object") return JSON.stringify(a).localeCompare(JSON.stringify(b));
  return String(a) < String(b) ? -1 : String(a) > String(b) ? 1 : 0;
}

// The result table: click a header to sort by it (again: the other way).
function resultTable(result) {
  const t = result.tables[0];
  let rows = t.rows.slice();
  let sortBy = -1, desc = false, shown = PAGE_ROWS;
  const wrap = h("div.result-table");
  function render() {
    const head = h("tr", t.columns.map((c, i) => h("th", {
      title: `${c.name} (${c.type}); click to sort`, dataset: { column: c.name },
      class: i === sortBy ? (desc ? "sorted desc" : "sorted asc") : "",
      onclick: () => {
        desc = sortBy === i ? !desc : false;
        sortBy = i;
        rows = t.rows.slice().sort((a, b) => compare(a[i], b[i], c.type) * (desc ? -1 : 1));
        render();
      },
    }, c.name, h("span.type", c.type))));
    const body = rows.slice(0, shown).map((r) => h("tr", r.map((v, i) => h(`td${NUMERIC.has(t.columns[i].type) ? ".num" : ""}`, cell(v, t.columns[i].type)))));
    const more = rows.length > shown ? h("button.small.more", { onclick: () => { shown += PAGE_ROWS * 5; render(); } },
      `Show more (${fmtNum(shown)} of ${fmtNum(rows.length)} rows shown)`) : null;
    clear(wrap, h("table.grid#result-grid", h("thead", head), h("tbody", body)), more);
  }
  render();
  return wrap;
}

export async function mount(main) {
  if (!modeDefined) { defineKql(window.CodeMirror); modeDefined = true; }
  const hint = kqlHint(window.CodeMirror);
  let result = null, chart = null, lastRequest = null, errorMarks = [], alive = true;

  const timespan = h("select#timespan", { title: "Time range applied to every table the query reads" },
    TIMESPANS.map(([v, label]) => h("option", { value: v, selected: v === store.get("timespan", "P1D") }, label)));
  timespan.addEventListener("change", () => store.set("timespan", timespan.value));
  const runButton = h("button.primary#run", { onclick: () => run(), title: "Run (Ctrl+Enter)" }, "▶ Run");
  const saveButton = h("button#save", { onclick: () => saveQuery() }, "Save…");
  const stats = h("span.stats#stats");
  const editorBox = h("div.editor#editor");
  const errorBox = h("div.query-error#query-error", { hidden: true, role: "alert" });
  const tabs = h("div.tabs");
  const exportCsv = h("button.small#export-csv", { disabled: true, onclick: () => exportAsCsv() }, "Export CSV");
  const exportParquet = h("button.small#export-parquet", { disabled: true, onclick: () => exportAsParquet() }, "Export Parquet");
  const output = h("div.output#output", notice("Write a query and run it, or pick a sample."));
  const sideTabs = h("div.tabs.side-tabs");
  const sideList = h("div.side-list");

  clear(main, h("div.logs-page",
    h("div.logs-side-wrap", sideTabs, sideList),
    h("div.logs-main",
      h("div.toolbar", runButton, timespan, saveButton, stats),
      editorBox, errorBox,
      h("div.results-bar", tabs, h("div.spacer"), exportCsv, exportParquet),
      output)));

  const cm = window.CodeMirror(editorBox, {
    value: store.get("draft", "VMConnection\n| summarize Connections = count() by Computer\n| top 10 by Connections"),
    mode: "kql", lineNumbers: true, matchBrackets: true, indentUnit: 4, viewportMargin: Infinity,
    placeholder: "VMConnection | where LinksFailed > 0 | summarize count() by Computer",
    extraKeys: {
      "Ctrl-Enter": () => run(), "Cmd-Enter": () => run(), "Shift-Enter": () => run(),
      "Ctrl-Space": (editor) => editor.showHint({ hint, completeSingle: false }),
    },
  });
  cm.on("inputRead", (editor, change) => {
    if (editor.state.completionActive) return;
    if (/^[\w-]$/.test(change.text[0]) || change.text[0] === " ") {
      const line = editor.getLine(change.from.line).slice(0, change.from.ch + 1);
      if (change.text[0] === " " && !/(\|| render)\s$/.test(line)) return;
      editor.showHint({ hint, completeSingle: false });
    }
  });
  cm.on("change", () => { clearError(); store.set("draft", cm.getValue()); });
  window.netatlasLogs = { editor: cm, run: (...a) => run(...a), get result() { return result; }, get chart() { return chart; } };

  // --- vocabulary and samples
  api.get("/api/schema").then((schema) => { vocab.set(schema); cm.setOption("mode", "kql"); }).catch(() => {});
  let samples = [];
  let sideError = "";
  const samplesReady = api.get("/api/samples").then((s) => { samples = [...(s.samples || []), ...LOCAL_SAMPLES]; }).catch((e) => { samples = []; sideError = e.message; });
  let sideTab = "samples";
  function showSide(which = sideTab) {
    sideTab = which;
    clear(sideTabs, [["samples", "Samples"], ["history", "History"], ["saved", "Saved"]].map(([id, label]) =>
      h(`button.tab${id === sideTab ? ".active" : ""}`, { onclick: () => showSide(id), dataset: { tab: id } }, label)));
    const entry = (title, query, extra) => h("div.side-entry",
      h("button.entry", { title: query, onclick: () => { cm.setValue(query); cm.focus(); } }, h("span.entry-title", title),
        h("span.entry-query", query.split("\n")[0])), extra);
    if (which === "samples") {
      clear(sideList, samples.length ? samples.map((s) => entry(s.title, s.query)) : notice(sideError || "loading…", sideError ? "error" : "info"));
    } else if (which === "history") {
      const hist = store.get("history", []);
      clear(sideList, hist.length ? [h("button.small.link", { onclick: () => { store.set("history", []); showSide(); } }, "Clear history"),
        hist.map((e) => entry(fmtTime(e.at), e.query))] : notice("The queries you run appear here."));
    } else {
      const saved = store.get("saved", []);
      clear(sideList, saved.length ? saved.map((s, i) => entry(s.name, s.query, h("button.small.link.delete", {
        title: "Delete", onclick: () => { saved.splice(i, 1); store.set("saved", saved); showSide(); } }, "✕")))
        : notice("Save a query with “Save…”."));
    }
  }
  showSide();
  samplesReady.then(() => showSide());

  function saveQuery() {
    const name = prompt("Name of this query:", cm.getValue().split("\n")[0].slice(0, 60));
    if (!name) return;
    const saved = store.get("saved", []).filter((s) => s.name !== name);
    saved.unshift({ name, query: cm.getValue() });
    store.set("saved", saved);
    showSide("saved");
  }

  // --- errors under the text they point at
  function clearError() {
    for (const m of errorMarks) m.clear();
    errorMarks = [];
    errorBox.hidden = true;
  }

  function showError(e) {
    clearError();
    const where = e.line ? ` at line ${e.line}, column ${e.column}` : "";
    clear(errorBox, h("b", e.code || "ERROR"), where, ": ", e.message, e.hint ? h("div.hint", `hint: ${e.hint}`) : null);
    errorBox.hidden = false;
    if (!e.line || !e.column || e.line > cm.lineCount()) return;
    const line = e.line - 1, ch = Math.min(e.column - 1, cm.getLine(line).length);
    const word = cm.findWordAt({ line, ch });
    const end = word.head.ch > ch && word.anchor.ch === ch ? word.head : { line, ch: Math.min(ch + 1, cm.getLine(line).length) };
    errorMarks.push(cm.markText({ line, ch }, end, { className: "cm-kql-error", attributes: { title: e.message } }));
    const width = Math.max(1, end.ch - ch);
    const caret = h("div.caret", "^".repeat(width));
    const message = h("div.message", h("b", e.code), `: ${e.message}`, e.hint ? h("span.hint", ` (${e.hint})`) : null);
    const widget = h("div.kql-error-widget", { dataset: { line: e.line, column: e.column } }, caret, message);
    errorMarks.push(cm.addLineWidget(line, widget, { coverGutter: false, noHScroll: true }));
    // Put the caret under the column: measured, so that fonts and padding do not matter.
    const align = () => {
      const target = cm.charCoords({ line, ch }, "window").left;
      const base = widget.getBoundingClientRect().left;
      caret.style.marginLeft = `${Math.max(0, target - base)}px`;
      message.style.marginLeft = `${Math.max(0, Math.min(target - base, widget.clientWidth - 380))}px`;
    };
    align();
    requestAnimationFrame(align);
  }

  // --- running
  async function run(text = cm.getValue(), span = timespan.value) {
    if (!text.trim()) return;
    clearError();
    runButton.disabled = true;
    stats.textContent = "running…";
    lastRequest = span ? { query: text, timespan: span } : { query: text };
    const history = store.get("history", []).filter((e) => e.query !== text);
    history.unshift({ query: text, at: new Date().toISOString() });
    store.set("history", history.slice(0, HISTORY_SIZE));
    if (sideTab === "history") showSide();
    const t0 = performance.now();
    try {
      result = await api.post("/api/query", lastRequest);
      if (!alive) return;
      const s = result.statistics || {};
      stats.textContent = `${fmtNum(s.rows)} rows · ${Math.round(performance.now() - t0)} ms` + (s.truncated ? ` · cut at ${fmtNum(s.max_rows)} rows` : "");
      stats.className = s.truncated ? "stats warn" : "stats";
      exportCsv.disabled = exportParquet.disabled = false;
      await show(chartKind(result) ? "chart" : "table");
    } catch (e) {
      result = null;
      exportCsv.disabled = exportParquet.disabled = true;
      stats.textContent = "";
      clear(tabs);
      clear(output);
      if (e instanceof ApiError) showError(e);
      else showError({ code: "NETWORK", message: e.message });
    } finally {
      runButton.disabled = false;
    }
  }

  async function show(which) {
    if (chart) { chart.chart.dispose(); chart = null; }
    const kind = chartKind(result);
    clear(tabs, h(`button.tab${which === "table" ? ".active" : ""}`, { onclick: () => show("table"), dataset: { tab: "table" } }, "Table"),
      kind ? h(`button.tab${which === "chart" ? ".active" : ""}`, { onclick: () => show("chart"), dataset: { tab: "chart" } },
        kind === "map" ? "World map" : `Chart (${kind})`) : null);
    output.dataset.view = which;
    if (which === "chart" && kind) {
      if (kind === "map" && !geoipInfo) geoipInfo = await api.get("/api/geoip").catch(() => null);
      const box = h("div.chart-wrap#chart");
      clear(output, box);
      chart = await drawChart(box, result, geoipInfo);
      box.dataset.kind = chart.kind;
      box.dataset.ready = "1";
    } else {
      clear(output, result.tables[0].rows.length ? resultTable(result) : notice("The query returned no rows."));
    }
  }

  function exportAsCsv() {
    if (!result) return;
    download("query.csv", toCsv(result.tables[0].columns, result.tables[0].rows), "text/csv");
  }

  async function exportAsParquet() {
    if (!lastRequest) return;
    exportParquet.disabled = true;
    try {
      download("query.parquet", await api.blob("/api/export", lastRequest, { format: "parquet" }));
    } catch (e) {
      showError(e);
    } finally {
      exportParquet.disabled = false;
    }
  }

  const onResize = () => chart && chart.chart.resize();
  window.addEventListener("resize", onResize);
  cm.focus();
  return () => {
    alive = false;
    window.removeEventListener("resize", onResize);
    if (chart) chart.chart.dispose();
    delete window.netatlasLogs;
  };
}
