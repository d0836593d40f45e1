// Small helpers the pages share: building elements, formatting numbers and times, localStorage.

// h("div.card#id", {onclick, title, ...}, child, "text", [children]): an element.
export function h(spec, attrs = {}, ...children) {
  if (attrs === null || typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs)) {
    children.unshift(attrs);
    attrs = {};
  }
  const [, tag = "div", rest = ""] = spec.match(/^([a-z0-9-]*)(.*)$/i);
  const el = document.createElement(tag || "div");
  for (const part of rest.match(/[.#][^.#]+/g) || []) {
    if (part[0] === ".") el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "style" && typeof value === "object") Object.assign(el.style, value);
    else if (name in el && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const UNITS = ["B", "KB", "MB", "GB", "TB"];
export function fmtBytes(n) {
  if (n === null || n === undefined || Number.isNaN(+n)) return "";
  let v = +n, i = 0;
  while (Math.abs(v) >= 1000 && i < UNITS.length - 1) { v /= 1000; i++; }
  return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)} ${UNITS[i]}`;
}
export const fmtNum = (n) => (n === null || n === undefined ? "" : (+n).toLocaleString("en-US", { maximumFractionDigits: 2 }));
export const fmtMs = (n) => (n === null || n === undefined ? "–" : `${(+n).toFixed(+n < 10 ? 1 : 0)} ms`);
export const fmtMB = (mb) => fmtBytes(mb * 1e6);

// "2026-11-25 21:30" in the browser's time zone.
export function fmtTime(d) {
  const t = d instanceof Date ? d : new Date(d);
  const p = (x) => String(x).padStart(2, "0");
  return `${t.getFullYear()}-${p(t.getMonth() + 1)}-${p(t.getDate())} ${p(t.getHours())}:${p(t.getMinutes())}`;
}

export function debounce(fn, ms = 250) {
  let timer;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

// JSON values in localStorage under "netatlas.<name>".
export const store = {
  get(name, fallback) {
    try { const v = localStorage.getItem(`netatlas.${name}`); return v === null ? fallback : JSON.parse(v); }
    catch { return fallback; }
  },
  set(name, value) { localStorage.setItem(`netatlas.${name}`, JSON.stringify(value)); },
};

// A message in place of content: loading, empty or an error.
export function notice(text, kind = "info") {
  return h(`div.notice.${kind}`, text);
}

// The page's hash parameters: "#/map?machine=web-01" -> {machine: "web-01"}.
export function hashParams() {
  const q = location.hash.split("?")[1] || "";
  return Object.fromEntries(new URLSearchParams(q));
}
// The address the app last routed or wrote: a popstate or hashchange to another address is a
// navigation (Back, Forward, a link), one to this address is not (app.js).
export const nav = { href: null };

// (Not when the address already names another page: a navigation that has not been handled yet.)
// push: the change is a user's step (a machine chosen, a query run): a new history entry, so Back
// returns to the view before it; otherwise the current entry is rewritten.
export function setHashParams(page, params, push = false) {
  const current = location.hash.replace(/^#\/?/, "").split(/[?/]/)[0];
  if (current && current !== page) return;
  const q = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== ""));
  const next = `#/${page}${q.toString() ? `?${q}` : ""}`;
  if (location.hash !== next) {
    if (push && current) history.pushState(null, "", next);
    else history.replaceState(null, "", next);
  }
  nav.href = location.href;
}
