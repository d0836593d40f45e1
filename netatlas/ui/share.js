// Share links (admins): a read-only link to the view on screen that expires (POST /api/shares),
// the links made so far and their revocation (GET, DELETE /api/shares). The link is the page's
// address with ?share=<token>: whoever opens it sees that view, may query, and changes nothing.
import { api } from "./api.js";
import { h, clear, fmtTime, notice } from "./util.js";

const EXPIRIES = [["1h", "1 hour"], ["1d", "1 day"], ["7d", "7 days"], ["30d", "30 days"]];

export function linkFor(token) {
  return `${location.origin}${location.pathname}?share=${encodeURIComponent(token)}${location.hash}`;
}

export function openShare() {
  document.getElementById("share-dialog")?.remove();
  const expiry = h("select#share-expiry", EXPIRIES.map(([v, label]) => h("option", { value: v, selected: v === "7d" }, label)));
  const label = h("input#share-label", { type: "text", placeholder: "who it is for (optional)" });
  const made = h("div.share-made");
  const list = h("div.share-list", notice("loading…"));
  const close = () => dialog.remove();
  const dialog = h("div.dialog#share-dialog", { role: "dialog", "aria-label": "Share this view" },
    h("div.dialog-card",
      h("h2", "Share this view, read only"),
      h("p.hint", "Whoever opens the link sees this view and may run queries until it expires; nothing can be changed with it."),
      h("div.row", h("label", "expires in ", expiry), label,
        h("button.primary#share-create", { onclick: create }, "Create link")),
      made,
      h("h3", "Links"), list,
      h("div.row.buttons", h("button#share-close", { onclick: close }, "Close"))));
  dialog.addEventListener("keydown", (e) => { if (e.key === "Escape") close(); });
  document.body.append(dialog);

  async function create() {
    try {
      const share = await api.post("/api/shares", { expires_in: expiry.value, label: label.value.trim() });
      const url = h("input#share-url", { type: "text", readOnly: true, value: linkFor(share.token) });
      clear(made, h("div.row", url, h("button.small", { onclick: () => { url.select(); navigator.clipboard?.writeText(url.value).catch(() => {}); } }, "Copy")),
        h("p.hint", `Expires ${fmtTime(share.expires)}. The link is shown only now.`));
      url.select();
      refresh();
    } catch (e) { clear(made, notice(e.message, "error")); }
  }

  async function refresh() {
    try {
      const { shares } = await api.get("/api/shares");
      clear(list, shares.length ? h("table.grid.share-table", h("tbody", shares.slice().reverse().map((s) => h("tr", { dataset: { id: s.id } },
        h("td", s.label || h("span.muted", s.id)), h("td", s.expired ? h("span.bad", "expired") : `until ${fmtTime(s.expires)}`),
        h("td", h("button.small.link.revoke", { onclick: async () => { await api.delete(`/api/shares/${s.id}`); refresh(); } }, "Revoke"))))))
        : notice("No share links yet."));
    } catch (e) { clear(list, notice(e.message, "error")); }
  }
  refresh();
}
