// The map's default layout: dependencies flow left to right, in layers (callers, then what they
// call, then what that calls), like a Sugiyama drawing: top-level boxes (machines, groups of
// machines, remote groups) get a layer by the longest path from the callers, an order within
// their layer that brings neighbours level (barycentre sweeps), and tall layers wrap into
// several columns so that 200 machines stay about as wide as they are high. Boxes are stacked
// inside their parent (processes in a machine, machines in a subnet or tier). Positions are set
// on the nodes; the caller fits the view.

const SIZES = { process: [120, 22], machine: [170, 36], group: [170, 30], container: [260, 52], outside: [260, 52] };
const PAD = 10;             // inside a compound box (its style's padding)
const LABEL = 20;           // a compound box's label, drawn above it
const GAP_Y = 14;           // between boxes of a column
const GAP_X = 140;          // between layers: room for the edges and their labels
const COLUMN_GAP = 60;      // between the columns of a wrapped layer
const SWEEPS = 6;
const STRETCH = 3;          // most a wide drawing's rows are spread apart

function kindOf(node) { return node.data("kind"); }

function sortKids(kids) {
  return kids.toArray().sort((a, b) => String(a.data("label")).localeCompare(String(b.data("label"))));
}

// The size of a node's block (its box with its label), for every node under it too.
function measure(node, sizes) {
  const kids = node.children();
  let size;
  if (kids.empty()) {
    const [w, h] = SIZES[kindOf(node)] || [160, 30];
    size = { w, h };
  } else {
    let w = 0, h = 0;
    for (const kid of sortKids(kids)) {
      const m = measure(kid, sizes);
      w = Math.max(w, m.w);
      h += m.h + GAP_Y;
    }
    size = { w: w + 2 * PAD, h: LABEL + h - GAP_Y + 2 * PAD };
  }
  sizes.set(node.id(), size);
  return size;
}

// Put a block whose top edge is at `top` around the vertical line x = cx.
function place(node, cx, top, sizes) {
  const kids = node.children();
  const size = sizes.get(node.id());
  if (kids.empty()) {
    node.position({ x: cx, y: top + size.h / 2 });
    return;
  }
  let y = top + LABEL + PAD;
  for (const kid of sortKids(kids)) {
    place(kid, cx, y, sizes);
    y += sizes.get(kid.id()).h + GAP_Y;
  }
}

function topOf(node) {
  let n = node;
  while (n.parent().nonempty()) n = n.parent();
  return n;
}

// unit -> layer, by the longest path from the units nothing calls (cycles broken by a DFS).
function layers(units, succ) {
  const state = new Map(), back = new Set();
  const visit = (u) => {
    state.set(u, 1);
    for (const v of succ.get(u)) {
      if (state.get(v) === 1) back.add(`${u}>${v}`);
      else if (!state.has(v)) visit(v);
    }
    state.set(u, 2);
  };
  for (const u of units) if (!state.has(u)) visit(u);
  const pred = new Map(units.map((u) => [u, []]));
  for (const u of units) for (const v of succ.get(u)) if (!back.has(`${u}>${v}`)) pred.get(v).push(u);
  const layer = new Map();
  const depth = (u, seen = new Set()) => {
    if (layer.has(u)) return layer.get(u);
    seen.add(u);
    let d = 0;
    for (const p of pred.get(u)) if (!seen.has(p)) d = Math.max(d, depth(p, seen) + 1);
    layer.set(u, d);
    return d;
  };
  for (const u of units) depth(u);
  return layer;
}

export function layered(cy) {
  const tops = cy.nodes().orphans().toArray();
  const ids = tops.map((n) => n.id());
  const byId = new Map(tops.map((n) => [n.id(), n]));
  const succ = new Map(ids.map((u) => [u, new Set()]));
  const neighbours = new Map(ids.map((u) => [u, new Set()]));
  cy.edges().forEach((e) => {
    const s = topOf(e.source()).id(), t = topOf(e.target()).id();
    if (s === t) return;
    succ.get(s).add(t);
    neighbours.get(s).add(t);
    neighbours.get(t).add(s);
  });
  const sizes = new Map();
  for (const n of tops) measure(n, sizes);

  const connected = ids.filter((u) => neighbours.get(u).size);
  const lonely = ids.filter((u) => !neighbours.get(u).size);
  const layer = layers(connected, succ);
  const count = Math.max(0, ...[...layer.values()].map((l) => l + 1));
  const columns = Array.from({ length: count }, () => []);
  const rank = (u) => ({ group: 0, container: 1, machine: 1 }[kindOf(byId.get(u))] ?? 2);
  for (const u of connected.sort((a, b) => rank(a) - rank(b) || String(byId.get(a).data("label")).localeCompare(String(byId.get(b).data("label"))))) {
    columns[layer.get(u)].push(u);
  }

  // Order within layers: each unit at the mean position of its neighbours in the layers before
  // (sweeping right) or after (sweeping left).
  const position = new Map();
  const index = () => columns.forEach((col) => col.forEach((u, i) => position.set(u, i / Math.max(1, col.length - 1))));
  index();
  for (let sweep = 0; sweep < SWEEPS; sweep++) {
    const right = sweep % 2 === 0;
    const order = right ? columns.keys() : [...columns.keys()].reverse();
    for (const l of order) {
      const bary = new Map(columns[l].map((u) => {
        const near = [...neighbours.get(u)].filter((v) => (right ? layer.get(v) < l : layer.get(v) > l));
        return [u, near.length ? near.reduce((s, v) => s + position.get(v), 0) / near.length : position.get(u)];
      }));
      columns[l].sort((a, b) => bary.get(a) - bary.get(b));
      columns[l].forEach((u, i) => position.set(u, i / Math.max(1, columns[l].length - 1)));
    }
  }

  // Wrap tall layers: a target height from the total area, for a landscape drawing.
  let area = 0;
  for (const u of ids) { const s = sizes.get(u); area += (s.w + GAP_X / 2) * (s.h + GAP_Y); }
  const tallest = Math.max(0, ...ids.map((u) => sizes.get(u).h));
  const maxHeight = Math.max(tallest, 700, Math.sqrt(area / 1.7));
  const stacks = [];     // [{units, gap}] left to right
  const wrap = (units, gap) => {
    let col = [], h = 0;
    for (const u of units) {
      const s = sizes.get(u);
      if (col.length && h + s.h > maxHeight) { stacks.push({ units: col, gap: COLUMN_GAP }); col = []; h = 0; }
      col.push(u);
      h += s.h + GAP_Y;
    }
    if (col.length) stacks.push({ units: col, gap });
  };
  for (const col of columns) wrap(col, GAP_X);
  if (lonely.length) {
    if (stacks.length) stacks[stacks.length - 1].gap = GAP_X;
    wrap(lonely.sort((a, b) => String(byId.get(a).data("label")).localeCompare(String(byId.get(b).data("label")))), COLUMN_GAP);
  }

  // A drawing much wider than the view would be fitted small: spread the boxes' centres
  // vertically (never their insides) up to the view's proportions, at most STRETCH times.
  const width = stacks.reduce((w, st) => w + Math.max(...st.units.map((u) => sizes.get(u).w)) + st.gap, 0);
  const height = Math.max(1, ...stacks.map((st) => st.units.reduce((h, u) => h + sizes.get(u).h + GAP_Y, -GAP_Y)));
  const view = Math.max(0.5, cy.width() / Math.max(1, cy.height()));
  const stretch = Math.min(STRETCH, Math.max(1, width / height / view));

  let x = 0;
  for (const stack of stacks) {
    const w = Math.max(...stack.units.map((u) => sizes.get(u).w));
    const h = stack.units.reduce((sum, u) => sum + sizes.get(u).h + GAP_Y, -GAP_Y);
    let top = -h / 2;
    for (const u of stack.units) {
      const size = sizes.get(u);
      const centre = top + size.h / 2;
      place(byId.get(u), x + w / 2, centre * stretch - size.h / 2, sizes);
      top += size.h + GAP_Y;
    }
    x += w + stack.gap;
  }
  return { layers: count, columns: stacks.length, stretch };
}
