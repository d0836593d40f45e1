// Workbooks (GET/POST/PUT/DELETE /api/workbooks, POST /api/workbooks/run and /import): saved pages
// of parameters and query tiles. The address says which workbook and its parameters' values:
// #/workbooks/<id>?TimeRange=P1D&Computer=web-01 (a shared link opens the same page; each change
// of a value is a step Back returns from); a workbook
// made or imported here and not saved yet is #/workbooks/draft (kept in this tab's sessionStorage).
// A multi-select parameter's value is a JSON array (?Computers=["a","b"]); a tile whose
// visibleWhen does not hold is hidden and not run.
import { ApiError, api, download } from "./api.js";
import { drawChart, chartKind } from "./charts.js";
import { h, clear, fmtNum, nav, notice } from "./util.js";

const DRAFT = "netatlas.workbookDraft";
const NUMERIC = new Set(["long", "int", "real", "decimal"]);
const PARAMETER_TYPES = ["timerange", "machine", "group", "text"];
const TILE_TYPES = ["query", "map", "text"];
const VISUALIZATIONS = ["auto", "table", "tiles", "timechart", "linechart", "areachart", "barchart", "columnchart",
  "piechart", "scatterchart"];
const SIZES = ["full", "half", "third"];
const RANGES = [["PT30M", "Last 30 minutes"], ["PT1H", "Last hour"], ["PT6H", "Last 6 hours"], ["P1D", "Last 24 hours"],
  ["P2D", "Last 48 hours"], ["P7D", "Last 7 days"], ["P30D", "Last 30 days"]];
const TABLE_ROWS = 100;
// a tile's fields by its type (workbooks.py TILE_KEYS): the rest is dropped when the type changes
const TILE_KEYS = { query: ["query", "visualization", "timeRange", "timespan", "tiles"], map: ["machine", "group", "timeRange"],
  text: ["text"], unsupported: ["note", "original"] };
const COMMON_KEYS = ["id", "type", "title", "size", "visibleWhen", "note"];
const MULTI_TYPES = ["text", "machine"];
const QUOTES = [["'", "' (single)"], ['"', '" (double)'], ["", "none"]];
const COMPARISONS = ["equals", "not_equals"];

// A multi parameter's value: a JSON array of strings in its text ("" or "[]": nothing selected).
function multiValues(v) {
  if (!v || !String(v).trim()) return [];
  try { const a = JSON.parse(v); return Array.isArray(a) ? a.filter((x) => typeof x === "string") : []; } catch { return []; }
}

const unwritten = (t) => (t.type === "query" && !(t.query || "").trim()) || (t.type === "map" && !(t.machine || "").trim() && !(t.group || "").trim());

// The workbook as the server takes it: no empty fields, no fields of another tile type.
function clean(wb) {
  const copy = JSON.parse(JSON.stringify(wb));
  delete copy.builtin;
  copy.tiles = copy.tiles.map((t) => Object.fromEntries(Object.entries(t).filter(([k, v]) =>
    (COMMON_KEYS.includes(k) || (TILE_KEYS[t.type] || []).includes(k)) && (v !== "" || k === "title")
    && !(k === "visibleWhen" && !v.length))));
  return copy;
}

// Tiles run a few at a time: a workbook of 30 tiles does not fill the server's query queue (429).
const RUN_AT_ONCE = 4;
let running = 0;
const waiting = [];
async function limited(fn) {
  if (running >= RUN_AT_ONCE) await new Promise((resolve) => waiting.push(resolve));
  running++;
  try { return await fn(); } finally { running--; const next = waiting.shift(); if (next) next(); }
}

// Writes, whose 403 (a query key may not write) is said in place, not a sign-out.
const write = (method, path, body) => api.quiet(method, path, body);

function route() {
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const id = decodeURIComponent(path.split("/")[1] || "");
  return { id, values: Object.fromEntries(new URLSearchParams(query)) };
}

function address(id, values) {
  const q = new URLSearchParams(Object.entries(values).filter(([, v]) => v !== undefined && v !== null && v !== ""));
  return `#/workbooks/${encodeURIComponent(id)}${q.toString() ? `?${q}` : ""}`;
}

const blank = () => ({ format: "netatlas-workbook", version: 1, id: "", title: "New workbook", description: "",
  parameters: [{ name: "TimeRange", type: "timerange", label: "Time range", value: "P1D" }], tiles: [] });

export async function mount(main) {
  const { id } = route();
  if (!id) return listPage(main);
  let wb;
  try {
    wb = id === "draft" ? JSON.parse(sessionStorage.getItem(DRAFT) || "null") : await api.get(`/api/workbooks/${encodeURIComponent(id)}`);
  } catch (e) {
    clear(main, h("div.workbooks-page", notice(`The workbook ${id} could not be read: ${e.message}`, "error"),
      h("a", { href: "#/workbooks" }, "All workbooks")));
    return null;
  }
  if (!wb) { clear(main, h("div.workbooks-page", notice("No draft workbook in this tab.", "error"), h("a", { href: "#/workbooks" }, "All workbooks"))); return null; }
  return workbookPage(main, wb, id === "draft");
}

// ------------------------------------------------------------------ the list

async function listPage(main) {
  const list = h("div.wb-list#workbook-list", notice("Loading…"));
  const file = h("input#wb-import-file", { type: "file", accept: ".json,application/json", hidden: true,
    onchange: () => importFile(file.files[0], status) });
  const status = h("div.wb-status#wb-status", { role: "status" });
  clear(main, h("div.workbooks-page",
    h("div.toolbar", h("h2", "Workbooks"), h("div.spacer"),
      h("button.primary#wb-new", { onclick: () => openDraft(blank(), {}) }, "New workbook"),
      h("button#wb-import", { onclick: () => file.click(), title: "A workbook's JSON: netatlas's export or an Azure Monitor workbook (gallery template)" }, "Import JSON…"), file),
    status, list));
  try {
    const { workbooks } = await api.get("/api/workbooks");
    clear(list, workbooks.map((w) => h("a.wb-entry", { href: address(w.id, {}), dataset: { workbook: w.id } },
      h("div.wb-entry-title", w.title, w.builtin ? h("span.badge", "built-in") : null),
      h("div.hint", w.description || "", ` · ${w.tiles} tiles`))));
  } catch (e) {
    clear(list, notice(`The workbooks could not be listed: ${e.message}`, "error"));
  }
  return null;
}

function openDraft(wb, values) {
  sessionStorage.setItem(DRAFT, JSON.stringify(wb));
  location.hash = address("draft", values);
}

async function importFile(f, status) {
  if (!f) return;
  try {
    const data = JSON.parse(await f.text());
    const title = data.title ? "" : f.name.replace(/\.json$/i, "");
    const wb = await api.post("/api/workbooks/import", data, title ? { title } : undefined);
    openDraft(wb, {});
  } catch (e) {
    clear(status, h("div.notice.error", `The file could not be imported: ${e.message}`));
  }
}

// ------------------------------------------------------------------ one workbook

function workbookPage(main, wb, isDraft) {
  let alive = true;
  let dirty = isDraft;
  let editing = false;
  let runSeq = 0;
  const charts = [];
  const values = {};
  const given = route().values;
  const status = h("div.wb-status#wb-status", { role: "status" });
  const paramBar = h("div.wb-params#wb-params");
  const grid = h("div.wb-grid#wb-tiles");
  const editor = h("div.wb-editor#wb-editor", { hidden: true });
  const title = h("h2#wb-title");
  const description = h("div.hint#wb-description");
  const link = h("input.wb-link#wb-link", { readOnly: true, hidden: true, onclick: () => link.select() });

  const saveButton = h("button.primary#wb-save", { onclick: save }, "Save");
  const copyButton = h("button#wb-save-copy", { onclick: saveCopy }, "Save as copy");
  const editButton = h("button#wb-edit", { onclick: toggleEdit }, "Edit");
  const deleteButton = h("button#wb-delete", { onclick: remove }, "Delete");
  clear(main, h("div.workbooks-page",
    h("div.toolbar", h("a", { href: "#/workbooks" }, "Workbooks"), h("span.muted", "›"), title, h("div.spacer"),
      h("button#wb-refresh", { onclick: () => runAll(), title: "Run every tile again" }, "Refresh"),
      editButton, saveButton, copyButton,
      h("button#wb-export", { onclick: exportJson, title: "Download this workbook as JSON (netatlas's format)" }, "Export JSON"),
      h("button#wb-share", { onclick: share, title: "A link to this workbook with these parameter values" }, "Copy link"),
      deleteButton),
    description, link, status, paramBar, editor, grid));

  function say(text, kind = "info") { clear(status, text ? h(`div.notice.${kind}`, text) : null); }

  function keepDraft() { if (isDraft) sessionStorage.setItem(DRAFT, JSON.stringify(wb)); }

  function chrome() {
    title.textContent = wb.title + (dirty && !isDraft ? " (changed)" : "");
    description.textContent = wb.description || "";
    saveButton.hidden = wb.builtin;
    saveButton.disabled = !dirty;
    deleteButton.hidden = isDraft || wb.builtin;
    editButton.textContent = editing ? "Done" : "Edit";
    document.title = `${wb.title} · netatlas`;
  }

  // --- parameters: one input each; a change is put in the address and runs the tiles again
  function paramValue(p) { return values[p.name] ?? p.value ?? ""; }

  // A tile's visibleWhen (workbooks.Values.visible): every condition holds for the values the
  // server would use (an empty value is the default; a multi parameter's values joined by ",").
  function compared(name) {
    const p = wb.parameters.find((q) => q.name === name);
    if (!p) return "";
    const v = values[p.name] === undefined || values[p.name] === null || values[p.name] === "" ? p.value ?? "" : values[p.name];
    return p.multi ? multiValues(v).join(",") : v;
  }
  const visible = (t) => (t.visibleWhen || []).every((c) => (compared(c.parameter) === (c.value ?? "")) === ((c.comparison || "equals") === "equals"));

  // A multi-select: its choices (static, its query's or, for machines, the inventory's) with the
  // selected values ticked; the value is their JSON array ("[]": none).
  function multiInput(p, attrs, set) {
    const selected = multiValues(paramValue(p));
    const fill = (choices) => {
      const all = [...selected.filter((v) => !choices.includes(v)), ...choices];
      clear(select, all.map((c) => h("option", { value: c, selected: selected.includes(c) }, c)));
    };
    const select = h("select", { ...attrs, multiple: true, size: 4,
      onchange: () => set(JSON.stringify([...select.selectedOptions].map((o) => o.value))) });
    fill(p.choices || []);
    if (p.query) {
      select.dataset.state = "loading";
      const parameters = Object.fromEntries(wb.parameters.map((q) => [q.name, paramValue(q)]));
      api.post("/api/workbooks/run", { workbook: clean(wb), parameter: p.name, parameters }).then((out) => {
        fill(out.choices); select.dataset.state = "done";
      }).catch((e) => { select.dataset.state = "error"; select.title = `The choices' query failed: ${e.message}`; });
    } else if (p.type === "machine" && !(p.choices || []).length) {
      select.dataset.state = "loading";
      api.get("/api/machines").then(({ machines }) => { fill(machines.map((m) => m.computer)); select.dataset.state = "done"; })
        .catch(() => { select.dataset.state = "error"; });
    }
    return select;
  }

  function paramInput(p) {
    const set = (v) => {
      values[p.name] = v;
      remember();
      // drop-downs whose query names this parameter are filled again
      if (wb.parameters.some((q) => q.query && q.name !== p.name && q.query.includes(`{${p.name}`))) drawParams();
      runAll();
    };
    const attrs = { dataset: { param: p.name }, title: p.note || p.label };
    let input;
    if (p.multi) {
      input = multiInput(p, attrs, set);
    } else if (p.type === "timerange") {
      const known = RANGES.some(([v]) => v === paramValue(p));
      const custom = h("input.wb-range-custom", { value: known ? "" : paramValue(p), placeholder: "start/end (ISO 8601)", hidden: known,
        onchange: () => set(custom.value.trim()) });
      const select = h("select", { ...attrs, onchange: () => {
        custom.hidden = select.value !== "custom";
        if (select.value !== "custom") set(select.value);
      } }, RANGES.map(([v, label]) => h("option", { value: v, selected: v === paramValue(p) }, label)),
      h("option", { value: "custom", selected: !known }, "Custom…"));
      input = h("span", select, custom);
    } else if (p.query) {
      // a drop-down filled by its query (POST /api/workbooks/run with "parameter")
      const select = h("select", { ...attrs, onchange: (e) => set(e.target.value) },
        h("option", { value: paramValue(p), selected: true }, paramValue(p) || "(none)"));
      select.dataset.state = "loading";
      const parameters = Object.fromEntries(wb.parameters.map((q) => [q.name, paramValue(q)]));
      api.post("/api/workbooks/run", { workbook: clean(wb), parameter: p.name, parameters }).then((out) => {
        const current = paramValue(p);
        const choices = out.choices.includes(current) || !current ? out.choices : [current, ...out.choices];
        clear(select, current ? null : h("option", { value: "" }, "(none)"),
          choices.map((c) => h("option", { value: c, selected: c === current }, c)));
        select.dataset.state = "done";
      }).catch((e) => { select.dataset.state = "error"; select.title = `The choices' query failed: ${e.message}`; });
      input = select;
    } else if (p.choices && p.choices.length) {
      input = h("select", { ...attrs, onchange: (e) => set(e.target.value) },
        p.choices.map((c) => h("option", { value: c, selected: c === paramValue(p) }, c)));
    } else {
      const listId = `wb-list-${p.name}`;
      const datalist = p.type === "machine" ? h(`datalist#${listId}`) : null;
      input = h("input", { ...attrs, value: paramValue(p), list: datalist ? listId : undefined,
        placeholder: { machine: "machine name, id or address", group: "all, tag:KEY=VALUE or subnet:CIDR" }[p.type] || "",
        onchange: (e) => set(e.target.value.trim()),
        onfocus: datalist ? () => fillMachines(datalist) : undefined });
      if (datalist) input = h("span", input, datalist);
    }
    return h("label.wb-param", h("span.wb-param-label", p.label || p.name), input,
      p.note ? h("span.hint.wb-param-note", p.note) : null);
  }

  async function fillMachines(datalist) {
    if (datalist.childElementCount) return;
    try {
      const { machines } = await api.get("/api/machines");
      clear(datalist, machines.map((m) => h("option", { value: m.computer })));
    } catch { /* the input still takes any text */ }
  }

  function remember() {
    const shown = Object.fromEntries(wb.parameters.filter((p) => values[p.name] !== undefined && values[p.name] !== p.value)
      .map((p) => [p.name, values[p.name]]));
    const next = address(isDraft ? "draft" : wb.id, shown);
    // a step of its own: Back returns to the values before (app.js mounts the page anew for an
    // address other than the one the app last wrote, util.nav)
    if (location.hash !== next) { history.pushState(null, "", next); nav.href = location.href; }
  }

  function drawParams() {
    clear(paramBar, wb.parameters.map(paramInput));
    paramBar.hidden = !wb.parameters.length;
  }

  // --- tiles
  function runBody(tile) {
    const parameters = Object.fromEntries(wb.parameters.map((p) => [p.name, paramValue(p)]));
    if (!dirty && wb.id) return { id: wb.id, tile: tile.id, parameters };
    const sent = clean(wb);         // a tile not written yet does not stop the others
    sent.tiles = sent.tiles.filter((t) => !unwritten(t));
    return { workbook: sent, tile: tile.id, parameters };
  }

  function runAll() {
    for (const c of charts.splice(0)) { try { c.dispose(); } catch { /* gone */ } }
    const seq = ++runSeq;
    clear(grid, wb.tiles.length ? wb.tiles.map((t) => tileCard(t, seq)) : notice("No tiles yet: Edit, then Add tile."));
  }

  function tileCard(tile, seq) {
    const body = h("div.wb-tile-body", notice("Running…"));
    const heading = h("div.wb-tile-title", tile.title || "");
    const meta = h("div.hint.wb-tile-meta");
    const card = h(`section.wb-tile.size-${tile.size || "full"}`, { dataset: { tile: tile.id, type: tile.type, state: "running" } },
      heading, body, tile.note && tile.type !== "unsupported" ? h("div.hint.wb-tile-note", tile.note) : null, meta);
    if (!visible(tile)) {       // its visibleWhen does not hold: hidden, not run (a change of a value runs runAll again)
      card.hidden = true;
      card.dataset.state = "hidden";
      return card;
    }
    if (unwritten(tile)) {
      card.dataset.state = "empty";
      clear(body, notice("No query yet: Edit, then write one."));
      return card;
    }
    if (tile.type === "unsupported") {
      card.dataset.state = "unsupported";
      clear(body, h("div.wb-unsupported", tile.note || "not supported"));
      return card;
    }
    runTile(tile, seq, card, heading, body, meta);
    return card;
  }

  async function runTile(tile, seq, card, heading, body, meta) {
    try {
      const out = await limited(() => (alive && seq === runSeq ? api.post("/api/workbooks/run", runBody(tile)) : null));
      if (!alive || seq !== runSeq || !out) return;
      heading.textContent = out.title || "";
      if (out.text !== undefined) {
        body.replaceChildren(markdown(out.text));
      } else if (out.map) {
        const q = new URLSearchParams(Object.entries(out.map).filter(([, v]) => v));
        body.replaceChildren(h("iframe.wb-map", { src: `/#/map?${q}`, title: out.title || "map", loading: "lazy" }));
        card.dataset.machine = out.map.machine || out.map.group;
      } else {
        const rows = out.tables[0].rows.length;
        card.dataset.rows = String(rows);
        card.title = out.query;
        meta.textContent = `${fmtNum(rows)} rows${out.statistics.truncated ? ` (cut at ${fmtNum(out.statistics.max_rows)})` : ""}`;
        await drawResult(tile, out, body);
      }
      card.dataset.state = "done";
    } catch (e) {
      if (!alive || seq !== runSeq) return;
      card.dataset.state = "error";
      clear(body, h("div.notice.error.wb-error", h("b", e.code || "ERROR"), `: ${e.message}`));
    }
  }

  async function drawResult(tile, out, body) {
    let vis = tile.visualization || "auto";
    if (vis === "auto") vis = chartKind(out) ? "chart" : "table";
    if (vis === "table") return body.replaceChildren(table(out));
    if (vis === "tiles") return body.replaceChildren(numberTiles(out, tile.tiles || {}));
    const result = vis === "chart" ? out : { ...out, render: { ...(out.render || {}), visualization: vis } };
    if (!chartKind(result) || !out.tables[0].rows.length) return body.replaceChildren(table(out));
    const drawn = await drawChart(body, result, null);
    if (drawn && drawn.chart) charts.push(drawn.chart);
    if (body.firstChild) body.firstChild.classList.add("wb-chart");
  }

  // --- editing
  function toggleEdit() {
    editing = !editing;
    editor.hidden = !editing;
    if (editing) drawEditor();
    else { drawParams(); runAll(); }
    chrome();
  }

  function changed() { dirty = true; keepDraft(); chrome(); }

  function field(label, input) { return h("label.wb-field", h("span", label), input); }

  function drawEditor() {
    const bind = (obj, key, el, after) => {
      el.value = obj[key] ?? "";
      el.dataset.field = key;
      el.addEventListener("change", () => { obj[key] = el.value; changed(); if (after) after(); });
      return el;
    };
    const select = (options, current) => h("select", options.map((o) => h("option", { value: o, selected: o === current }, o)));
    const params = wb.parameters.map((p, i) => h("div.wb-edit-param", { dataset: { index: i } },
      field("Name", bind(p, "name", h("input.wb-param-name"), ((old) => () => {
        for (const t of wb.tiles) {         // the tiles bound to it follow
          if (t.timeRange === old) t.timeRange = p.name;
          for (const c of t.visibleWhen || []) if (c.parameter === old) c.parameter = p.name;
        }
        drawEditor();
      })(p.name))),
      field("Type", bind(p, "type", select(PARAMETER_TYPES, p.type), () => { if (!MULTI_TYPES.includes(p.type)) setMulti(p, false); drawEditor(); })),
      field("Label", bind(p, "label", h("input"))),
      field("Default value", bind(p, "value", h("input.wb-param-value", { placeholder: p.type === "timerange" ? "P1D" : p.multi ? '["a","b"]' : "" }))),
      MULTI_TYPES.includes(p.type) ? field("Multiple", h("input.wb-param-multi", { type: "checkbox", checked: !!p.multi, dataset: { field: "multi" },
        onchange: (e) => { setMulti(p, e.target.checked); changed(); drawEditor(); } })) : null,
      p.multi ? field("Quote", bind(p, "quote", h("select", QUOTES.map(([v, label]) => h("option", { value: v }, label))))) : null,
      p.multi ? field("Delimiter", bind(p, "delimiter", h("input.wb-param-delimiter", { size: 4 }))) : null,
      p.type === "timerange" ? null : field("Choices: a query (its first column)", bind(p, "query", h("input.wb-param-query", { placeholder: "VMComputer | distinct Computer" }))),
      h("button.small", { onclick: () => {
        const [gone] = wb.parameters.splice(i, 1);
        for (const t of wb.tiles) if (t.visibleWhen) t.visibleWhen = t.visibleWhen.filter((c) => c.parameter !== gone.name);
        changed(); drawEditor();
      } }, "Remove")));
    const ranges = ["", ...wb.parameters.filter((p) => p.type === "timerange").map((p) => p.name)];
    const tiles = wb.tiles.map((t, i) => {
      const parts = [
        field("Title", bind(t, "title", h("input.wb-tile-title-input"))),
        field("Type", bind(t, "type", select(TILE_TYPES, t.type), drawEditor)),
        field("Size", bind(t, "size", select(SIZES, t.size || "full"))),
      ];
      if (t.type === "query") {
        parts.push(field("Visualization", bind(t, "visualization", select(VISUALIZATIONS, t.visualization || "auto"))),
          field("Time range", bind(t, "timeRange", select(ranges, t.timeRange || ""))),
          field("Query (KQL; {Name} puts a parameter's value in)", bind(t, "query", h("textarea.wb-query", { rows: 5, spellcheck: false }))));
      } else if (t.type === "map") {
        parts.push(field("Machine ({Name} allowed)", bind(t, "machine", h("input.wb-map-machine"))),
          field("or group (all, tag:K=V, subnet:CIDR, {Name})", bind(t, "group", h("input.wb-map-group"))),
          field("Time range", bind(t, "timeRange", select(ranges, t.timeRange || ""))));
      } else if (t.type === "text") {
        parts.push(field("Markdown", bind(t, "text", h("textarea.wb-text", { rows: 4 }))));
      }
      parts.push(conditionsEditor(t));
      return h("div.wb-edit-tile", { dataset: { index: i } }, parts,
        h("div.row",
          h("button.small", { disabled: i === 0, onclick: () => { wb.tiles.splice(i - 1, 0, ...wb.tiles.splice(i, 1)); changed(); drawEditor(); } }, "Move up"),
          h("button.small", { onclick: () => { wb.tiles.splice(i, 1); changed(); drawEditor(); } }, "Remove")));
    });
    clear(editor,
      h("div.wb-edit-head", field("Title", bind(wb, "title", h("input#wb-edit-title"))),
        field("Description", bind(wb, "description", h("input#wb-edit-description")))),
      h("h3", "Parameters"), params,
      h("button.small#wb-add-param", { onclick: () => {
        let n = wb.parameters.length + 1;
        while (wb.parameters.some((p) => p.name === `Param${n}`)) n++;
        wb.parameters.push({ name: `Param${n}`, type: "text", label: `Param${n}`, value: "" }); changed(); drawEditor();
      } }, "Add parameter"),
      h("h3", "Tiles"), tiles,
      h("button.small#wb-add-tile", { onclick: () => {
        let n = wb.tiles.length + 1;
        while (wb.tiles.some((t) => t.id === `tile-${n}`)) n++;
        const range = wb.parameters.find((p) => p.type === "timerange");
        wb.tiles.push({ id: `tile-${n}`, type: "query", title: `Tile ${n}`, query: "", visualization: "table", size: "full",
          ...(range ? { timeRange: range.name } : {}) });
        changed(); drawEditor();
      } }, "Add tile"));
  }

  // A parameter made multi (its value, and the one the page holds, a JSON array of the one it
  // had) or single (its first value).
  function setMulti(p, on) {
    const toMulti = (v) => (v && !v.trim().startsWith("[") ? JSON.stringify([v]) : v || "");
    const toSingle = (v) => multiValues(v)[0] || "";
    if (on === !!p.multi) return;
    const convert = on ? toMulti : toSingle;
    p.value = convert(p.value);
    if (values[p.name] !== undefined) { values[p.name] = convert(values[p.name]); remember(); }
    if (on) Object.assign(p, { multi: true, quote: p.quote ?? "'", delimiter: p.delimiter ?? "," });
    else { delete p.multi; delete p.quote; delete p.delimiter; }
  }

  // A tile's visibleWhen: a row per condition (parameter, comparison, value), all must hold.
  function conditionsEditor(t) {
    const names = wb.parameters.map((p) => p.name);
    const rows = (t.visibleWhen || []).map((c, j) => h("div.wb-edit-condition", { dataset: { condition: j } },
      h("select.wb-cond-parameter", { onchange: (e) => { c.parameter = e.target.value; changed(); } },
        names.map((n) => h("option", { value: n, selected: n === c.parameter }, n))),
      h("select.wb-cond-comparison", { onchange: (e) => { c.comparison = e.target.value; changed(); } },
        COMPARISONS.map((n) => h("option", { value: n, selected: n === (c.comparison || "equals") }, n.replace("_", " ")))),
      h("input.wb-cond-value", { value: c.value ?? "", placeholder: "value", onchange: (e) => { c.value = e.target.value; changed(); } }),
      h("button.small", { onclick: () => { t.visibleWhen.splice(j, 1); if (!t.visibleWhen.length) delete t.visibleWhen; changed(); drawEditor(); } }, "×")));
    return field("Visible when (all hold)", h("div.wb-edit-conditions", rows,
      names.length ? h("button.small.wb-add-condition", { onclick: () => {
        (t.visibleWhen ||= []).push({ parameter: names[0], comparison: "equals", value: "" }); changed(); drawEditor();
      } }, "Add condition") : null));
  }

  // --- save, export, share, delete
  async function save() {
    try {
      const body = clean(wb);
      const stored = isDraft || !wb.id ? await write("POST", "/api/workbooks", body) : await write("PUT", `/api/workbooks/${encodeURIComponent(wb.id)}`, body);
      if (isDraft) sessionStorage.removeItem(DRAFT);
      dirty = false;
      Object.assign(wb, stored);
      chrome();
      say("Saved.");
      location.hash = address(stored.id, {});
    } catch (e) { saveError(e); }
  }

  async function saveCopy() {
    try {
      const body = clean(wb);
      body.id = "";
      if (wb.builtin || !isDraft) body.title = `${wb.title} (copy)`;
      const stored = await write("POST", "/api/workbooks", body);
      location.hash = address(stored.id, {});
    } catch (e) { saveError(e); }
  }

  function saveError(e) {
    say(e.status === 403 || e.status === 401 ? `Saving needs an admin key (${e.code}): sign in with one, or export the JSON.`
      : `Not saved: ${e.message}`, "error");
  }

  function exportJson() {
    const body = clean(wb);
    download(`${(body.id || body.title || "workbook").replace(/[^A-Za-z0-9_-]+/g, "-")}.json`, JSON.stringify(body, null, 2), "application/json");
  }

  function share() {
    link.hidden = false;
    link.value = location.href;
    link.select();
    if (navigator.clipboard) navigator.clipboard.writeText(location.href).catch(() => {});
    say(isDraft ? "A draft's link opens only in this tab: save the workbook to share it." : "The link is copied (and shown above).");
  }

  async function remove() {
    if (!confirm(`Delete the workbook ${wb.title}?`)) return;
    try {
      await write("DELETE", `/api/workbooks/${encodeURIComponent(wb.id)}`);
      location.hash = "#/workbooks";
    } catch (e) { saveError(e); }
  }

  for (const p of wb.parameters) if (given[p.name] !== undefined) values[p.name] = given[p.name];
  chrome();
  drawParams();
  runAll();
  return () => {
    alive = false;
    for (const c of charts.splice(0)) { try { c.dispose(); } catch { /* gone */ } }
  };
}

// ------------------------------------------------------------------ views of a result

function cellText(v, type) {
  if (v === null || v === undefined) return "";
  if (typeof v === "object") return JSON.stringify(v);
  if (type === "datetime") return String(v).replace("T", " ").replace("Z", "");
  if (NUMERIC.has(type)) return fmtNum(v);
  return String(v);
}

function table(out) {
  const t = out.tables[0];
  if (!t.rows.length) return notice("No rows.");
  return h("div.wb-table", h("table.grid.small",
    h("thead", h("tr", t.columns.map((c) => h("th", { title: c.type }, c.name)))),
    h("tbody", t.rows.slice(0, TABLE_ROWS).map((r) => h("tr", r.map((v, i) =>
      h(`td${NUMERIC.has(t.columns[i].type) ? ".num" : ""}`, cellText(v, t.columns[i].type))))))),
  t.rows.length > TABLE_ROWS ? h("div.hint", `${fmtNum(TABLE_ROWS)} of ${fmtNum(t.rows.length)} rows shown`) : null);
}

// Tiles of numbers: a card per row (at most 24), its title, value and subtitle columns.
function numberTiles(out, spec) {
  const t = out.tables[0];
  const at = (name, fallback) => { const i = name ? t.columns.findIndex((c) => c.name === name) : -1; return i >= 0 ? i : fallback; };
  const value = at(spec.value, t.columns.findIndex((c) => NUMERIC.has(c.type)));
  const label = at(spec.title, t.columns.findIndex((c, i) => i !== value && !NUMERIC.has(c.type)));
  const sub = at(spec.subtitle, -1);
  if (!t.rows.length) return notice("No rows.");
  return h("div.cards.wb-number-tiles", t.rows.slice(0, 24).map((r) => h("div.card.wb-number",
    h("div.card-title", label >= 0 ? cellText(r[label], t.columns[label].type) : t.columns[value]?.name || ""),
    h("div.card-value", value >= 0 ? cellText(r[value], t.columns[value].type) : ""),
    sub >= 0 ? h("div.card-sub", cellText(r[sub], t.columns[sub].type)) : null)));
}

// A small markdown: headings, lists, paragraphs; **bold**, *italic*, `code`, [links](https://...).
function inline(text) {
  const out = [];
  const re = /(\*\*([^*]+)\*\*|\*([^*]+)\*|`([^`]+)`|\[([^\]]+)\]\((https?:[^)\s]+)\))/g;
  let last = 0, m;
  while ((m = re.exec(text))) {
    if (m.index > last) out.push(text.slice(last, m.index));
    if (m[2]) out.push(h("b", m[2]));
    else if (m[3]) out.push(h("i", m[3]));
    else if (m[4]) out.push(h("code", m[4]));
    else out.push(h("a", { href: m[6], target: "_blank", rel: "noopener" }, m[5]));
    last = re.lastIndex;
  }
  out.push(text.slice(last));
  return out;
}

export function markdown(text) {
  const box = h("div.wb-markdown");
  let list = null, para = [];
  const flush = () => { if (para.length) box.append(h("p", inline(para.join(" ")))); para = []; };
  for (const line of String(text).split(/\r?\n/)) {
    const heading = line.match(/^(#{1,6})\s+(.*)$/);
    const item = line.match(/^\s*[-*]\s+(.*)$/);
    if (heading) { flush(); list = null; box.append(h(`h${Math.min(6, heading[1].length + 1)}`, inline(heading[2]))); }
    else if (item) { flush(); if (!list) { list = h("ul"); box.append(list); } list.append(h("li", inline(item[1]))); }
    else if (!line.trim()) { flush(); list = null; }
    else { list = null; para.push(line.trim()); }
  }
  flush();
  return box;
}
