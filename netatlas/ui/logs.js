// Logs: a KQL editor (highlighting and completion from GET /api/schema, the seed queries from
// GET /api/samples), POST /api/query, errors under the text they point at, the result as a
// sortable table (CSV made here, Parquet from POST /api/export) and as the chart `render` asks for.
import { api, ApiError, download } from "./api.js";
import { defineKql, kqlHint, vocab } from "./kql-mode.js";
import { drawChart, chartKind } from "./charts.js";
import { h, clear, fmtNum, fmtTime, store, notice, hashParams, setHashParams } from "./util.js";
import { unitOf, fmtValue } from "./units.js";

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

function cell(v, type, unit = "") {
  if (v === null || v === undefined) return "";
  if (typeof v === "object") return JSON.stringify(v);
  if (type === "datetime") return String(v).replace("T", " ").replace("Z", "");
  if (unit || NUMERIC.has(type)) return fmtValue(v, unit);
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

// One table of a query's answer as an answer of its own (what the table and the chart draw): a
// further table carries its own render and statistics (POST /api/query: Result.to_json).
function tableView(result, i) {
  if (!i) return result;
  const t = result.tables[i];
  return { tables: [t], render: t.render || null, statistics: t.statistics || {} };
}

// The result table: click a header to sort by it (again: the other way).
function resultTable(result) {
  const t = result.tables[0];
  let rows = t.rows.slice();
  let sortBy = -1, desc = false, shown = PAGE_ROWS;
  const units = t.columns.map(unitOf);
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
    }, c.name, h("span.type", units[i] && units[i] !== "timespan" && units[i] !== "id" ? `${c.type}, ${units[i]}` : c.type))));
    // a value in its unit (1.2 MB, 230 ms); the exact value in its title
    const body = rows.slice(0, shown).map((r) => h("tr", r.map((v, i) => {
      const text = cell(v, t.columns[i].type, units[i]);
      const raw = v === null || v === undefined || typeof v === "object" ? "" : String(v);
      return h(`td${NUMERIC.has(t.columns[i].type) || units[i] ? ".num" : ""}`, raw && raw !== text ? { title: raw } : {}, text);
    })));
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
  let current = 0;      // the result table shown (a query of several tabular statements gives several)
  // The address keeps the query and its range (q, timespan: "query" for "set in query"): a reload
  // or a copied address opens the same query, run.
  const params = hashParams();
  const fromAddress = params.q !== undefined && params.q.trim() !== "";
  const spanOf = (v) => (v === "query" ? "" : v);
  const initialSpan = params.timespan !== undefined && TIMESPANS.some(([v]) => v === spanOf(params.timespan))
    ? spanOf(params.timespan) : store.get("timespan", "P1D");
  // the chart's series: how many, or which (charts.js); in the address too (series, pick)
  const seriesChoice = { max: 25, only: null };
  if (fromAddress && +params.series >= 1) seriesChoice.max = Math.floor(+params.series);
  if (fromAddress && params.pick) {
    try {
      const pick = JSON.parse(params.pick);
      if (Array.isArray(pick) && pick.every((x) => typeof x === "string")) seriesChoice.only = pick;
    } catch (e) { /* not a list: the largest series, as without it */ }
  }

  const timespan = h("select#timespan", { title: "Time range applied to every table the query reads" },
    TIMESPANS.map(([v, label]) => h("option", { value: v, selected: v === initialSpan }, label)));
  timespan.value = initialSpan;
  timespan.addEventListener("change", () => { store.set("timespan", timespan.value); remember(false); });
  const runButton = h("button.primary#run", { onclick: () => run(), title: "Run (Ctrl+Enter)" }, "▶ Run");
  const saveButton = h("button#save", { onclick: () => saveQuery() }, "Save…");
  const stats = h("span.stats#stats");
  const editorBox = h("div.editor#editor");
  const errorBox = h("div.query-error#query-error", { hidden: true, role: "alert" });
  const tabs = h("div.tabs");
  const exportCsv = h("button.small#export-csv", { disabled: true, onclick: () => exportAsCsv() }, "Export CSV");
  const exportParquet = h("button.small#export-parquet", { disabled: true, onclick: () => exportAsParquet() }, "Export Parquet");
  const output = h("div.output#output", notice("Write a query and run it, or pick a sample."));
  const seriesBar = h("div.series-bar#series-bar", { hidden: true });
  const sideTabs = h("div.tabs.side-tabs");
  const sideList = h("div.side-list");

  clear(main, h("div.logs-page",
    h("div.logs-side-wrap", sideTabs, sideList),
    h("div.logs-main",
      h("div.toolbar", runButton, timespan, saveButton, stats),
      editorBox, errorBox,
      h("div.results-bar", tabs, h("div.spacer"), exportCsv, exportParquet),
      seriesBar, output)));

  const cm = window.CodeMirror(editorBox, {
    value: fromAddress ? params.q : store.get("draft", "VMConnection\n| summarize Connections = count() by Computer\n| top 10 by Connections"),
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
  let schema = null;
  api.get("/api/schema").then((answer) => { schema = answer; vocab.set(answer); cm.setOption("mode", "kql"); if (sideTab === "schema") showSide(); })
    .catch((e) => { sideError = e.message; });
  let samples = [];
  let sideError = "";
  const samplesReady = api.get("/api/samples").then((s) => { samples = [...(s.samples || []), ...LOCAL_SAMPLES]; }).catch((e) => { samples = []; sideError = e.message; });
  let sideTab = "samples";
  function showSide(which = sideTab) {
    sideTab = which;
    clear(sideTabs, [["samples", "Samples"], ["schema", "Schema"], ["history", "History"], ["saved", "Saved"]].map(([id, label]) =>
      h(`button.tab${id === sideTab ? ".active" : ""}`, { onclick: () => showSide(id), dataset: { tab: id } }, label)));
    const entry = (title, query, extra) => h("div.side-entry",
      h("button.entry", { title: query, onclick: () => { cm.setValue(query); cm.focus(); } }, h("span.entry-title", title),
        h("span.entry-query", query.split("\n")[0])), extra);
    if (which === "schema") {
      clear(sideList, schemaBrowser());
    } else if (which === "samples") {
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

  // The schema browser: the tables of GET /api/schema, each opening to its columns; a click on a
  // name inserts it at the cursor.
  const filter = h("input#schema-filter", { type: "search", placeholder: "filter tables and columns", oninput: () => fillSchema() });
  const schemaList = h("div.schema-list#schema-list");
  const opened = new Set();
  function insert(text) {
    cm.replaceSelection(text);
    cm.focus();
  }
  function fillSchema() {
    if (!schema) return clear(schemaList, notice(sideError || "loading…", sideError ? "error" : "info"));
    const text = filter.value.trim().toLowerCase();
    const tables = Object.entries(schema.tables).sort(([a], [b]) => a.localeCompare(b)).map(([name, cols]) => {
      const hits = text ? cols.filter(([c]) => c.toLowerCase().includes(text)) : cols;
      if (text && !name.toLowerCase().includes(text) && !hits.length) return null;
      const open = opened.has(name) || (text && hits.length && !name.toLowerCase().includes(text));
      return h("div.schema-table", { dataset: { table: name } },
        h("div.schema-head",
          h("button.small.link.toggle", { title: open ? "Hide the columns" : "Show the columns",
            onclick: () => { if (opened.has(name)) opened.delete(name); else opened.add(name); fillSchema(); } }, open ? "▾" : "▸"),
          h("button.schema-name", { title: `Insert ${name}`, onclick: () => insert(name) }, name),
          h("span.muted", ` ${cols.length}`)),
        open ? h("div.schema-columns", (text && !name.toLowerCase().includes(text) ? hits : cols).map(([c, type]) =>
          h("button.schema-column", { title: `Insert ${c} (${type})`, dataset: { column: c }, onclick: () => insert(c) },
            c, h("span.type", type)))) : null);
    });
    clear(schemaList, tables.filter(Boolean).length ? tables : notice("No table or column matches."));
  }
  function schemaBrowser() {
    fillSchema();
    return [filter, schemaList];
  }

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

  // An error is shown once: under the text it points at, or (no position) in the box above the results.
  function showError(e) {
    clearError();
    if (!e.line || !e.column || e.line > cm.lineCount()) {
      const where = e.line ? ` at line ${e.line}, column ${e.column}` : "";
      clear(errorBox, h("b", e.code || "ERROR"), where, ": ", e.message, e.hint ? h("div.hint", `hint: ${e.hint}`) : null);
      errorBox.hidden = false;
      return;
    }
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
  // The query and its range in the address; push: a run is a step Back returns before.
  function remember(push) {
    const text = cm.getValue();
    setHashParams("logs", { q: text.trim() ? text : "", timespan: timespan.value || "query",
      series: seriesChoice.max !== 25 ? String(seriesChoice.max) : "",
      pick: seriesChoice.only ? JSON.stringify(seriesChoice.only) : "" }, push);
  }

  async function run(text = cm.getValue(), span = timespan.value, push = true, keepSeries = false) {
    if (!text.trim()) return;
    if (!keepSeries) seriesChoice.only = null;       // a new run draws the largest series again
    if (text === cm.getValue()) remember(push);
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
      stats.textContent = `${fmtNum(s.rows)} rows · ${Math.round(performance.now() - t0)} ms` + (s.truncated ? ` · cut at ${fmtNum(s.max_rows)} rows` : "")
        + (result.tables.length > 1 ? ` · ${result.tables.length} tables` : "");
      stats.className = s.truncated ? "stats warn" : "stats";
      exportCsv.disabled = exportParquet.disabled = false;
      current = 0;
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
    const shown = tableView(result, current);
    const kind = chartKind(shown);
    // a query of several tabular statements (T1; T2) gives several tables: a picker of them
    const picker = result.tables.length > 1 ? h("select#result-table", {
      title: "The query's result tables, one for each tabular statement",
      onchange: (e) => { current = Number(e.target.value); show(chartKind(tableView(result, current)) ? "chart" : "table"); },
    }, result.tables.map((tb, i) => h("option", { value: String(i), selected: i === current },
      `${tb.name} (${fmtNum(tb.rows.length)} rows)`))) : null;
    clear(tabs, picker, h(`button.tab${which === "table" ? ".active" : ""}`, { onclick: () => show("table"), dataset: { tab: "table" } }, "Table"),
      kind ? h(`button.tab${which === "chart" ? ".active" : ""}`, { onclick: () => show("chart"), dataset: { tab: "chart" } },
        kind === "map" ? "World map" : `Chart (${kind})`) : null);
    output.dataset.view = which;
    if (which === "chart" && kind) {
      if (kind === "map" && !geoipInfo) geoipInfo = await api.get("/api/geoip").catch(() => null);
      const box = h("div.chart-wrap#chart");
      clear(output, box);
      chart = await drawChart(box, shown, geoipInfo, seriesChoice);
      box.dataset.kind = chart.kind;
      box.dataset.ready = "1";
      showSeriesBar();
    } else {
      seriesBar.hidden = true;
      clear(output, shown.tables[0].rows.length ? resultTable(shown) : notice("The query returned no rows."));
    }
  }

  // Over the chart: how many of its series are drawn ("25 of 400 series shown"), how many to
  // draw (the largest first) and which (a list to tick).
  function showSeriesBar() {
    const all = (chart && chart.allSeries) || [];
    const notes = (chart && chart.notes) || [];
    seriesBar.hidden = all.length <= 1 && !notes.length;
    if (seriesBar.hidden) return;
    const cuts = notes.length ? h("span.series-note.warn#chart-cut", `${notes.join(", ")} shown`) : null;
    if (all.length <= 1) return clear(seriesBar, cuts);
    const count = h("input#series-count", { type: "number", min: "1", max: String(all.length), value: String(Math.min(seriesChoice.max, all.length)),
      title: "How many series to draw, the largest first",
      onchange: () => { seriesChoice.max = Math.max(1, +count.value || 1); seriesChoice.only = null; remember(false); show("chart"); } });
    const picker = h("div.series-picker#series-picker", { hidden: true });
    const choose = h("button.small#series-choose", { onclick: () => { picker.hidden = !picker.hidden; } }, "Choose series…");
    const ticked = new Set(chart.shownSeries);
    const find = h("input#series-find", { type: "search", placeholder: "filter series", oninput: () => fillPicker() });
    const list = h("div.series-list");
    function fillPicker() {
      const text = find.value.trim().toLowerCase();
      clear(list, all.filter((n) => !text || n.toLowerCase().includes(text)).slice(0, 500).map((n) =>
        h("label.check", h("input", { type: "checkbox", checked: ticked.has(n), dataset: { series: n },
          onchange: (e) => { if (e.target.checked) ticked.add(n); else ticked.delete(n); } }), n)));
    }
    fillPicker();
    clear(picker, find, list, h("div.row.buttons",
      h("button.small.primary#series-apply", { onclick: () => { seriesChoice.only = [...ticked]; remember(false); show("chart"); } }, "Draw these"),
      h("button.small", { onclick: () => { ticked.clear(); fillPicker(); } }, "None")));
    const shown = chart.shownSeries.length;
    clear(seriesBar, h(`span.series-note${shown < all.length ? ".warn" : ""}#series-note`,
      shown < all.length ? `${fmtNum(shown)} of ${fmtNum(all.length)} series shown` + (seriesChoice.only ? " (chosen)" : " (the largest)")
        : `all ${fmtNum(all.length)} series shown`),
      h("label", " draw ", count, " largest "), choose, picker, cuts);
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
  if (fromAddress) run(params.q, timespan.value, false, true);
  return () => {
    alive = false;
    window.removeEventListener("resize", onResize);
    if (chart) chart.chart.dispose();
    delete window.netatlasLogs;
  };
}
