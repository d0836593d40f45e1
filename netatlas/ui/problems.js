// The problems list beside the map (GET /api/problems): connections to malicious addresses,
// dependencies that used to work, failing dependencies, new listening ports; each a link that
// focuses the map on it (focus(item): the map's node and edge ids in item.focus).
import { api, ApiError } from "./api.js";
import { h, clear, notice } from "./util.js";

const KINDS = {
  malicious: { label: "malicious address", cls: "bad" },
  used_to_work: { label: "used to work", cls: "bad" },
  failing: { label: "failing", cls: "bad" },
  new_port: { label: "new listening port", cls: "new" },
};
const SHOWN = 60;      // items listed per kind before "more"

export function problemsPanel({ focus }) {
  const list = h("div.problems-list");
  const head = h("h3", "Problems");
  const element = h("section.problems#problems", head, list);
  let seq = 0;

  function render(answer) {
    const items = answer.problems;
    head.textContent = `Problems (${items.length})`;
    if (!items.length) { clear(list, h("p.muted", "Nothing failing, no malicious address, no new listening port in this range.")); return; }
    const byKind = new Map();
    for (const p of items) (byKind.get(p.kind) || byKind.set(p.kind, []).get(p.kind)).push(p);
    clear(list, [...byKind].map(([kind, ps]) => h("details.problem-kind", { open: kind !== "new_port" || ps.length < 10 },
      h("summary", h(`span.${KINDS[kind].cls}`, KINDS[kind].label), ` · ${ps.length}`),
      h("ul", ps.slice(0, SHOWN).map((p) => h("li", h("a.problem", { href: "#", title: p.detail, dataset: { kind },
        onclick: (e) => { e.preventDefault(); focus(p); } }, p.title), h("div.muted.small", p.detail)))),
      ps.length > SHOWN ? h("p.muted", `… and ${ps.length - SHOWN} more`) : null)));
  }

  async function load(q) {
    const mine = ++seq;
    clear(list, notice("loading…"));
    const { only_failures, ...params } = q;
    try {
      const answer = await api.get("/api/problems", params);
      if (mine === seq) render(answer);
    } catch (e) {
      if (mine === seq) clear(list, notice(e instanceof ApiError ? `${e.code}: ${e.message}` : e.message, "error"));
    }
  }

  return { element, load };
}
