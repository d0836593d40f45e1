// Query results as ECharts charts: the `render` operator's visualizations, and the world map
// (render scatterchart with (kind=map), or any result with latitude/longitude columns), drawn
// offline on the country shapes of world-atlas (vendor/world-atlas/countries-110m.json).
import { h, fmtNum, fmtBytes } from "./util.js";
import { commonUnit, fmtValue } from "./units.js";

const NUMERIC = new Set(["long", "int", "real", "decimal"]);
const isLat = (n) => /latitude(_d)?$/i.test(n) || /^(lat|Lat|LAT)$|(_lat|Lat)$/.test(n);
const isLon = (n) => /longitude(_d)?$/i.test(n) || /^(lon|lng|Lon|Lng|LON|LNG)$|(_lon|_lng|Lon|Lng)$/.test(n);
const MAX_SERIES = 25;
const MAX_POINTS_PER_SERIES = 5000;
const MAX_CATEGORIES = 200;          // bars: the first 200 categories
const MAX_SLICES = 100;              // pie: the first 100 slices

// What a chart left out, said over it: choice.notes gets "200 of 350 categories".
function cut(choice, shown, total, what) {
  if (choice && total > shown) (choice.notes ||= []).push(`${shown.toLocaleString("en-US")} of ${total.toLocaleString("en-US")} ${what}`);
}

export const VISUALIZATIONS = {
  timechart: (r, opts, choice) => lineLike(r, opts, { area: false }, choice),
  linechart: (r, opts, choice) => lineLike(r, opts, { area: false }, choice),
  areachart: (r, opts, choice) => lineLike(r, opts, { area: true }, choice),
  stackedareachart: (r, opts, choice) => lineLike(r, opts, { area: true, stack: true }, choice),
  barchart: (r, opts, choice) => bars(r, opts, { horizontal: true }, choice),
  columnchart: (r, opts, choice) => bars(r, opts, { horizontal: false }, choice),
  piechart: (r, opts, choice) => pie(r, opts, choice),
  scatterchart: (r, opts, choice) => scatter(r, opts, choice),
};

// {columns: [{name, type}], rows} -> helpers
function table(result) {
  const t = result.tables[0];
  return { columns: t.columns, rows: t.rows, index: (name) => t.columns.findIndex((c) => c.name === name) };
}

function names(v) {
  if (!v) return [];
  return (Array.isArray(v) ? v : String(v).split(",")).map((s) => s.trim()).filter(Boolean);
}

export function latLonColumns(result) {
  const cols = result.tables[0].columns;
  const lat = cols.findIndex((c) => isLat(c.name) && (NUMERIC.has(c.type) || c.type === "dynamic"));
  const lon = cols.findIndex((c) => isLon(c.name) && (NUMERIC.has(c.type) || c.type === "dynamic"));
  return lat >= 0 && lon >= 0 ? { lat, lon } : null;
}

// What the result should be drawn as: "map", a visualization of VISUALIZATIONS, or null (a table).
export function chartKind(result) {
  const render = result.render || {};
  const vis = render.visualization;
  if (render.kind === "map" || (latLonColumns(result) && (!vis || vis === "scatterchart" || vis === "map"))) {
    return latLonColumns(result) ? "map" : null;
  }
  return VISUALIZATIONS[vis] ? vis : null;
}

const compact = (v) => (Math.abs(v) >= 1000 ? Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 }).format(v) : String(v));
const num = (v) => (v === null || v === undefined || v === "" ? null : +v);

// The x column, y columns and series (split) columns of a line-like or bar chart.
function roles(t, render, xPrefer) {
  const { columns } = t;
  let x = render.xcolumn ? t.index(render.xcolumn) : columns.findIndex(xPrefer);
  if (x < 0) x = 0;
  let ys = names(render.ycolumns).map(t.index).filter((i) => i >= 0);
  if (!ys.length) ys = columns.map((c, i) => (i !== x && NUMERIC.has(c.type) ? i : -1)).filter((i) => i >= 0);
  let split = names(render.series).map(t.index).filter((i) => i >= 0);
  if (!split.length) split = columns.map((c, i) => (i !== x && !ys.includes(i) && (c.type === "string" || c.type === "bool" || c.type === "guid") ? i : -1)).filter((i) => i >= 0);
  return { x, ys, split };
}

// Series by (split values, y column): {name: [[x, y], ...]}: the ones of choice.only (names),
// else the choice.max (default MAX_SERIES) largest by total. choice.all and choice.shown get the
// names of every series (the largest first) and of those drawn, for the page to say what it cut.
function seriesOf(t, { x, ys, split }, xValue, choice = {}) {
  const out = new Map();
  for (const row of t.rows) {
    const key = split.map((i) => row[i]).join(" / ");
    for (const y of ys) {
      const name = [key, ys.length > 1 || !key ? t.columns[y].name : ""].filter(Boolean).join(" · ");
      if (!out.has(name)) out.set(name, []);
      out.get(name).push([xValue(row[x]), num(row[y])]);
    }
  }
  let list = [...out];
  const total = ([, pts]) => pts.reduce((s, [, v]) => s + Math.abs(v || 0), 0);
  const ranked = list.length > 1 ? list.slice().sort((a, b) => total(b) - total(a)) : list;
  if (choice.only) {
    const wanted = new Set(choice.only);
    list = list.filter(([name]) => wanted.has(name));
  } else {
    const max = choice.max || MAX_SERIES;
    if (list.length > max) list = ranked.slice(0, max);
  }
  choice.all = ranked.map(([name]) => name);
  choice.shown = list.map(([name]) => name);
  const longest = Math.max(0, ...list.map(([, pts]) => pts.length));
  cut(choice, MAX_POINTS_PER_SERIES, longest, "points of the longest series");
  return list.map(([name, pts]) => [name, pts.slice(0, MAX_POINTS_PER_SERIES)]);
}

// The value axis and tooltip of y columns sharing a unit (bytes, ms, ...): values in it.
function unitAxis(t, ys) {
  const unit = commonUnit(ys.map((i) => t.columns[i]));
  if (!unit) return { axis: { formatter: compact }, tooltip: {} };
  return { unit, axis: { formatter: (v) => fmtValue(v, unit) }, tooltip: { valueFormatter: (v) => fmtValue(v, unit) } };
}

function base(render, extra = {}) {
  return {
    animation: false,
    title: render.title ? { text: render.title, left: "center", textStyle: { fontSize: 14 } } : undefined,
    tooltip: { trigger: "axis", confine: true },
    legend: { type: "scroll", bottom: 0 },
    grid: { left: 60, right: 30, top: render.title ? 40 : 20, bottom: 70, containLabel: true },
    toolbox: { right: 10, feature: { saveAsImage: { title: "save" }, dataZoom: { title: { zoom: "zoom", back: "undo" } } } },
    ...extra,
  };
}

function lineLike(result, render, { area, stack }, choice) {
  const t = table(result);
  const r = roles(t, render, (c) => c.type === "datetime");
  const isTime = t.columns[r.x].type === "datetime";
  const u = unitAxis(t, r.ys);
  const series = seriesOf(t, r, isTime ? (v) => v : num, choice).map(([name, pts]) => ({
    name, type: "line", showSymbol: pts.length < 40, symbolSize: 4, sampling: "lttb",
    data: pts.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)),
    areaStyle: area ? { opacity: 0.35 } : undefined, stack: stack ? "total" : undefined,
  }));
  return base(render, {
    xAxis: { type: isTime ? "time" : "value", name: render.xtitle, nameLocation: "middle", nameGap: 28 },
    yAxis: { type: "value", name: render.ytitle || u.unit, scale: false, axisLabel: u.axis },
    tooltip: { trigger: "axis", confine: true, ...u.tooltip },
    dataZoom: [{ type: "inside" }],
    series,
  });
}

function bars(result, render, { horizontal }, choice) {
  const t = table(result);
  const r = roles(t, render, (c) => !NUMERIC.has(c.type));
  const u = unitAxis(t, r.ys);
  const every = [...new Set(t.rows.map((row) => String(row[r.x])))];
  cut(choice, MAX_CATEGORIES, every.length, "categories");
  const categories = every.slice(0, MAX_CATEGORIES);
  const pos = new Map(categories.map((c, i) => [c, i]));
  const series = seriesOf(t, r, String, choice).map(([name, pts]) => {
    const data = new Array(categories.length).fill(null);
    for (const [c, v] of pts) if (pos.has(c)) data[pos.get(c)] = v;
    return { name, type: "bar", data, stack: render.kind === "stacked" || render.kind === "stacked100" ? "total" : undefined };
  });
  const cat = { type: "category", data: categories, name: render.xtitle, axisLabel: { interval: 0, width: 160, overflow: "truncate" } };
  const val = { type: "value", name: render.ytitle || u.unit, axisLabel: u.axis };
  return base(render, {
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" }, confine: true, ...u.tooltip },
    xAxis: horizontal ? val : { ...cat, axisLabel: { ...cat.axisLabel, rotate: categories.length > 8 ? 35 : 0 } },
    yAxis: horizontal ? { ...cat, inverse: true } : val,
    series,
  });
}

function pie(result, render, choice) {
  const t = table(result);
  const value = t.columns.findIndex((c) => NUMERIC.has(c.type));
  const labels = t.columns.map((c, i) => (i !== value && !NUMERIC.has(c.type) ? i : -1)).filter((i) => i >= 0);
  const data = t.rows.map((row) => ({ name: labels.map((i) => row[i]).join(" / ") || String(row[value]), value: num(row[value]) }));
  return base(render, {
    tooltip: { trigger: "item", confine: true },
    legend: { type: "scroll", orient: "vertical", right: 10, top: 20, bottom: 20 },
    series: [{ type: "pie", radius: ["30%", "70%"], center: ["40%", "52%"], data: (cut(choice, MAX_SLICES, data.length, "slices"), data.slice(0, MAX_SLICES)),
      label: { formatter: "{b}: {d}%" } }],
  });
}

function scatter(result, render, choice) {
  const t = table(result);
  const x = render.xcolumn ? t.index(render.xcolumn) : t.columns.findIndex((c) => NUMERIC.has(c.type) || c.type === "datetime");
  const r = roles(t, render, (c, i) => i === x);
  r.x = Math.max(0, x);
  r.ys = r.ys.filter((i) => i !== r.x);
  const isTime = t.columns[r.x].type === "datetime";
  const u = unitAxis(t, r.ys);
  const series = seriesOf(t, r, isTime ? (v) => v : num, choice).map(([name, pts]) => ({ name, type: "scatter", symbolSize: 7, data: pts }));
  return base(render, {
    tooltip: { trigger: "item", confine: true, ...u.tooltip },
    xAxis: { type: isTime ? "time" : "value", name: render.xtitle || t.columns[r.x].name, nameLocation: "middle", nameGap: 28, scale: true },
    yAxis: { type: "value", name: render.ytitle || u.unit, scale: true, axisLabel: u.axis },
    series,
  });
}

// ------------------------------------------------------------------ the world map

let worldReady = null;

// Polygons of the 110m shapes that cross the antimeridian (Russia, Fiji, Antarctica) wrap
// around the map in a plain equirectangular view; shift their far points by 360 degrees.
function unwrap(geometry) {
  const fixRing = (ring) => {
    const out = [ring[0]];
    for (let i = 1; i < ring.length; i++) {
      let [lon, lat] = ring[i];
      const prev = out[i - 1][0];
      while (lon - prev > 180) lon -= 360;
      while (lon - prev < -180) lon += 360;
      out.push([lon, lat]);
    }
    return out;
  };
  if (geometry.type === "Polygon") geometry.coordinates = geometry.coordinates.map(fixRing);
  if (geometry.type === "MultiPolygon") geometry.coordinates = geometry.coordinates.map((p) => p.map(fixRing));
  return geometry;
}

export function loadWorld() {
  if (!worldReady) {
    worldReady = fetch("/ui/vendor/world-atlas/countries-110m.json").then((r) => r.json()).then((topo) => {
      const geo = window.topojson.feature(topo, topo.objects.countries);
      geo.features = geo.features.filter((f) => f.geometry).map((f) => ({ ...f, geometry: unwrap(f.geometry) }));
      window.echarts.registerMap("world", geo);
    });
  }
  return worldReady;
}

// Points of the result: one per place (rows at the same place add up), sized by a numeric column.
function points(result, render) {
  const t = table(result);
  const { lat, lon } = latLonColumns(result);
  const yNames = names(render.ycolumns);
  let size = yNames.length ? t.index(yNames[0]) : t.columns.findIndex((c, i) => i !== lat && i !== lon && NUMERIC.has(c.type));
  const label = t.columns.findIndex((c) => c.type === "string");
  const places = new Map();
  for (const row of t.rows) {
    const la = num(row[lat]), lo = num(row[lon]);
    if (la === null || lo === null || Number.isNaN(la) || Number.isNaN(lo) || (la === 0 && lo === 0)) continue;
    const key = `${la.toFixed(2)},${lo.toFixed(2)}`;
    const p = places.get(key) || { lon: lo, lat: la, value: 0, rows: 0, label: label >= 0 ? row[label] : "" };
    p.value += size >= 0 ? num(row[size]) || 0 : 1;
    p.rows += 1;
    places.set(key, p);
  }
  return { places: [...places.values()], sizeName: size >= 0 ? t.columns[size].name : "rows", labelName: label >= 0 ? t.columns[label].name : "" };
}

function worldOption(result, render) {
  const { places, sizeName } = points(result, render);
  const max = Math.max(1, ...places.map((p) => p.value));
  return {
    animation: false,
    title: render.title ? { text: render.title, left: "center", textStyle: { fontSize: 14 } } : undefined,
    tooltip: { trigger: "item", confine: true,
      formatter: (p) => p.data ? `${p.data.label || ""}<br>${p.data.value[1].toFixed(2)}, ${p.data.value[0].toFixed(2)}<br>${sizeName}: ${fmtNum(p.data.total)} (${fmtNum(p.data.rows)} rows)` : p.name },
    geo: { map: "world", roam: true, zoom: 1.15, center: [10, 20], itemStyle: { areaColor: "#e6ebf1", borderColor: "#aab4c0", borderWidth: 0.5 },
      emphasis: { itemStyle: { areaColor: "#d5dde7" }, label: { show: false } }, silent: false },
    series: [{
      type: "scatter", coordinateSystem: "geo", name: sizeName,
      data: places.map((p) => ({ value: [p.lon, p.lat], total: p.value, rows: p.rows, label: p.label })),
      symbolSize: (v, p) => 6 + 24 * Math.sqrt(p.data.total / max),
      itemStyle: { color: "#d13438", opacity: 0.75, borderColor: "#fff", borderWidth: 0.5 },
    }],
  };
}

// Draw the result in el; returns {chart, kind, points?, series?, allSeries?, shownSeries?} (chart:
// the ECharts instance). choice: {max, only} of the series to draw (seriesOf).
export async function drawChart(el, result, geoip, choice = {}) {
  const kind = chartKind(result);
  const render = result.render || {};
  if (!kind) return null;
  if (kind === "map") {
    await loadWorld();
    const box = h("div.chart-box.world");
    const note = h("div.geo-note#geoip-note", geoipText(geoip));
    el.replaceChildren(box, note);
    const chart = window.echarts.init(box, null, { renderer: "canvas" });
    const option = worldOption(result, render);
    chart.setOption(option);
    return { chart, kind, points: option.series[0].data.length };
  }
  const box = h("div.chart-box");
  el.replaceChildren(box);
  const chart = window.echarts.init(box, null, { renderer: "canvas" });
  const picked = { max: choice.max, only: choice.only };
  const option = VISUALIZATIONS[kind](result, render, picked);
  chart.setOption(option);
  return { chart, kind, series: option.series.length, allSeries: picked.all || [], shownSeries: picked.shown || [],
    notes: picked.notes || [] };
}

function geoipText(info) {
  if (!info) return "";
  if (info.enabled === false) return "No GeoIP database: remote addresses are not placed.";
  const parts = [`Places from ${info.databaseType || "a GeoIP database"}`];
  if (info.built) parts.push(`built ${info.built}`);
  if (info.ageDays !== undefined) parts.push(`${fmtNum(info.ageDays)} days old`);
  return `${parts.join(", ")}. ${info.attribution || ""}`;
}

// ------------------------------------------------------------------ performance counters

// A counter's unit (docs/web-api.md: /api/performance's counters, /api/machines/{id}/performance's charts) -> its text.
const UNIT_FORMATS = {
  "%": (v) => `${(+v).toFixed(1)} %`,
  MB: (v) => `${fmtNum(Math.round(v))} MB`,
  "B/s": (v) => `${fmtBytes(v)}/s`,
  "/s": (v) => `${fmtNum(v)}/s`,
  ms: (v) => `${fmtNum(v)} ms`,
};
export function fmtUnit(v, unit) {
  if (v === null || v === undefined || Number.isNaN(+v)) return "–";
  return (UNIT_FORMATS[unit] || fmtNum)(v);
}

// One chart of /api/machines/{id}/performance ({id, title, unit, series: [{name, values}]}) over the bins' times.
export function perfOption(chart, times) {
  const axis = { "%": { min: 0, max: 100 } }[chart.unit] || { min: 0 };
  return {
    animation: false,
    title: { text: chart.title, left: 4, top: 0, textStyle: { fontSize: 12, fontWeight: 600 } },
    tooltip: { trigger: "axis", confine: true, valueFormatter: (v) => fmtUnit(v, chart.unit) },
    legend: chart.series.length > 1 ? { type: "scroll", bottom: 0, textStyle: { fontSize: 10 }, itemHeight: 8 } : undefined,
    grid: { left: 8, right: 12, top: 26, bottom: chart.series.length > 1 ? 30 : 8, containLabel: true },
    xAxis: { type: "time", axisLabel: { fontSize: 10, hideOverlap: true } },
    yAxis: { type: "value", ...axis, axisLabel: { fontSize: 10, formatter: (v) => compactUnit(v, chart.unit) } },
    series: chart.series.map((s) => ({ name: s.name, type: "line", showSymbol: false, connectNulls: false,
      data: s.values.map((v, i) => [times[i], v]) })),
  };
}

function compactUnit(v, unit) {
  if (unit === "B/s") return fmtBytes(v);
  return compact(v);
}

// A small SVG line of values (nulls are gaps), scaled to [min(0, low), high].
export function sparkline(values, { width = 120, height = 24, max } = {}) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.classList.add("sparkline");
  const known = values.filter((v) => v !== null && v !== undefined);
  const top = max ?? Math.max(0, ...known), bottom = Math.min(0, ...known);
  const span = top - bottom || 1;
  const step = values.length > 1 ? width / (values.length - 1) : 0;
  let d = "", pen = false;
  values.forEach((v, i) => {
    if (v === null || v === undefined) { pen = false; return; }
    const x = (i * step).toFixed(1), y = (height - 1 - ((v - bottom) / span) * (height - 2)).toFixed(1);
    d += `${pen ? "L" : "M"}${x},${y}`;
    pen = true;
  });
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", d);
  svg.append(path);
  svg.dataset.points = String(known.length);
  return svg;
}
