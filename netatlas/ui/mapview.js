// How the fleet map reads on screen (issue 17): semantic zoom (group names stay legible at any
// zoom, machine and process names appear once they are), a wheel step of about 12 % a notch,
// failing edges at a fixed on-screen width with a hover target of their own (the nearest edge
// within a few pixels of the pointer, failing ones first, whatever their drawn width), status
// icons on machine boxes, and a debug hook for the browser tests (window.netatlasMapDebug).

export const WHEEL_STEP = 1.12;        // zoom factor of one wheel notch
const GROUP_FONT_PX = 12;              // on-screen size of the names of groups of machines and of remote ends
const GROUP_FONT_MAX = 200;            // model px: most a group's name grows when zoomed far out
const NAME_MIN_PX = 9;                 // machine and process names below this on screen are not drawn
const FAILING_WIDTH_PX = 4;            // failed and used-to-work edges, on screen
const HIT_PX = 7;                      // how near the pointer an edge is hovered
const BIG_KINDS = "node[kind = 'container'], node[kind = 'group'], node[kind = 'outside']";

export const FLEET_STYLE = [
  { selector: "node[kind = 'machine'], node[kind = 'process']", style: { "min-zoomed-font-size": NAME_MIN_PX } },
  { selector: "node[kind = 'machine'][icons]", style: { "background-image": "data(icons)", "background-fit": "none",
    "background-position-x": "100%", "background-position-y": "0%", "background-width": "auto",
    "background-height": "auto", "background-clip": "none", "background-image-containment": "over",
    "background-offset-x": -3, "background-offset-y": 3 } },
  { selector: "node[kind = 'outside']", style: { shape: "round-rectangle", "border-width": 1, "border-style": "dashed",
    "border-color": "#8a96a3", "background-color": "data(color)", width: 260, height: 52, "text-valign": "center",
    "font-weight": 600 } },
  { selector: "node[kind = 'outside'][?malicious]", style: { "border-color": "#c50f1f", "border-width": 2, "border-style": "solid" } },
  { selector: "edge[?failing]", style: { "z-index": 20, "z-compound-depth": "top", opacity: 1 } },
  { selector: "edge.hovered", style: { "overlay-color": "#0b62d6", "overlay-opacity": 0.18, "overlay-padding": 5 } },
];

// ------------------------------------------------------------------ machine status icons

const ICON_CACHE = new Map();

function osOf(os) {
  const t = (os || "").toLowerCase();
  if (t.includes("windows")) return "windows";
  return t ? "linux" : "";
}

// The icons of a machine box: its OS, its agent (present: it reports VMComputer), a stale heartbeat,
// a threat hit (a connection to or from an address threat intelligence names). An SVG data URI.
export function machineIcons({ os, agent, stale, threat }) {
  const key = `${osOf(os)}|${agent}|${stale}|${threat}`;
  if (ICON_CACHE.has(key)) return ICON_CACHE.get(key);
  const parts = [];
  let x = 0;
  const add = (svg) => { parts.push(`<g transform="translate(${x},0)">${svg}</g>`); x += 15; };
  const kind = osOf(os);
  if (kind === "windows") add('<rect x="1" y="1" width="5.5" height="5.5" fill="#0b62d6"/><rect x="7.5" y="1" width="5.5" height="5.5" fill="#0b62d6"/><rect x="1" y="7.5" width="5.5" height="5.5" fill="#0b62d6"/><rect x="7.5" y="7.5" width="5.5" height="5.5" fill="#0b62d6"/><title>Windows</title>');
  else if (kind === "linux") add('<circle cx="7" cy="7" r="6" fill="#1f2933"/><text x="7" y="10.5" font-size="9" font-family="sans-serif" text-anchor="middle" fill="#fff">L</text><title>Linux</title>');
  if (agent) add('<circle cx="7" cy="7" r="5" fill="#107c10"/><title>agent present</title>');
  if (stale) add('<path d="M7 1 L13 13 L1 13 Z" fill="#f7630c"/><text x="7" y="12" font-size="8" font-family="sans-serif" text-anchor="middle" fill="#fff">!</text><title>heartbeat stale</title>');
  if (threat) add('<circle cx="7" cy="7" r="6" fill="#c50f1f"/><text x="7" y="10.5" font-size="9" font-family="sans-serif" font-weight="bold" text-anchor="middle" fill="#fff">☠</text><title>threat hit</title>');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${Math.max(x, 1)}" height="14">${parts.join("")}</svg>`;
  const uri = x ? `data:image/svg+xml;utf8,${encodeURIComponent(svg)}` : undefined;
  ICON_CACHE.set(key, uri);
  return uri;
}

// ------------------------------------------------------------------ semantic zoom and the wheel

export function applyZoomStyles(cy) {
  const z = cy.zoom();
  const font = Math.min(GROUP_FONT_MAX, Math.max(13, GROUP_FONT_PX / z));
  cy.batch(() => {
    // a name may pass its box by up to half the gap between columns (layout.js), then ellipsis
    cy.nodes(BIG_KINDS).style({ "font-size": font, "text-max-width": 310 });
    cy.edges("[?failing]").style({ width: FAILING_WIDTH_PX / z });
  });
}

export function wheelZoom(cy, container) {
  container.addEventListener("wheel", (e) => {
    e.preventDefault();
    const notches = e.deltaMode === 1 ? e.deltaY / 3 : e.deltaMode === 2 ? e.deltaY * 10 : e.deltaY / 100;
    const level = cy.zoom() * Math.pow(WHEEL_STEP, -Math.max(-5, Math.min(5, notches)));
    const box = container.getBoundingClientRect();
    cy.zoom({ level: Math.max(cy.minZoom(), Math.min(cy.maxZoom(), level)),
      renderedPosition: { x: e.clientX - box.left, y: e.clientY - box.top } });
  }, { passive: false });
}

// ------------------------------------------------------------------ hovering edges

function distToSegment(p, a, b) {
  const dx = b.x - a.x, dy = b.y - a.y;
  const len = dx * dx + dy * dy;
  const t = len ? Math.max(0, Math.min(1, ((p.x - a.x) * dx + (p.y - a.y) * dy) / len)) : 0;
  return Math.hypot(p.x - (a.x + t * dx), p.y - (a.y + t * dy));
}

// The edge under a rendered point: the nearest within HIT_PX, a failing one before any other.
export function edgeAt(cy, p) {
  let best = null;
  for (const e of cy.edges(":visible")) {
    const s = e.renderedSourceEndpoint(), t = e.renderedTargetEndpoint(), m = e.renderedMidpoint();
    const d = Math.min(distToSegment(p, s, m), distToSegment(p, m, t));
    if (d > HIT_PX) continue;
    const rank = [e.data("failing") ? 0 : 1, d];
    if (!best || rank[0] < best.rank[0] || (rank[0] === best.rank[0] && rank[1] < best.rank[1])) best = { e, rank };
  }
  return best ? best.e : null;
}

// Hover by edgeAt rather than Cytoscape's own hit test (which follows the drawn width and the
// drawing order): show(edge, point) on entering an edge, hide() on leaving it, and hide() on every
// zoom or pan, which moves whatever a tooltip pointed at (a node's tooltip goes with it too).
export function hoverEdges(cy, container, show, hide) {
  let current = null;
  container.addEventListener("mousemove", (ev) => {
    const box = container.getBoundingClientRect();
    const p = { x: ev.clientX - box.left, y: ev.clientY - box.top };
    const e = edgeAt(cy, p);
    if (e && current && e.id() === current.id()) { show(e, p, true); return; }
    if (current) current.removeClass("hovered");
    current = e;
    if (e) { e.addClass("hovered"); show(e, p, false); } else hide();
  });
  container.addEventListener("mouseleave", () => { if (current) current.removeClass("hovered"); current = null; hide(); });
  cy.on("zoom pan", () => { if (current) current.removeClass("hovered"); current = null; hide(); });
}

// ------------------------------------------------------------------ for the browser tests

export function debugHook(cy) {
  window.netatlasMapDebug = {
    // every node label drawn, with its font size on screen (px)
    labels: () => cy.nodes(":visible").filter((n) => n.data("label")).map((n) => {
      const px = n.pstyle("font-size").pfValue * cy.zoom();
      const min = (n.pstyle("min-zoomed-font-size") || {}).pfValue || 0;
      return { id: n.id(), kind: n.data("kind"), text: n.data("label"), fontPx: px, drawn: px >= min,
        x: n.renderedPosition("x"), y: n.renderedPosition("y") };
    }),
    edgeAt: (x, y) => { const e = edgeAt(cy, { x, y }); return e ? e.id() : null; },
    // a point on an edge (rendered), away from nodes and from other edges where it can
    pointOn: (id) => {
      const e = cy.getElementById(id);
      const s = e.renderedSourceEndpoint(), t = e.renderedTargetEndpoint(), m = e.renderedMidpoint();
      const along = (a, b, f) => ({ x: a.x + f * (b.x - a.x), y: a.y + f * (b.y - a.y) });
      for (const f of [0.5, 0.6, 0.4, 0.7, 0.3, 0.8, 0.2, 0.85, 0.15]) {
        const p = f < 0.5 ? along(s, m, 2 * f) : along(m, t, 2 * f - 1);
        const inside = cy.nodes().some((n) => { const b = n.renderedBoundingBox(); return p.x > b.x1 && p.x < b.x2 && p.y > b.y1 && p.y < b.y2; });
        if (!inside && edgeAt(cy, p) === e) return p;
      }
      return null;
    },
    zoom: () => cy.zoom(),
  };
}
