// Alerts (/api/alerts/*, netatlas/server/alerts.py): the log search alert rules with their state,
// enable/disable, evaluate now, a form to create or edit a rule, and the history. Changing a rule
// needs an admin key: with a query key the server's 403 is shown in place.
import { api } from "./api.js";
import { h, clear, fmtTime, notice } from "./util.js";

const OPERATORS = [">", ">=", "<", "<=", "==", "!="];
const AGGREGATIONS = ["count", "sum", "avg", "min", "max"];
const SEVERITY = ["Sev0 critical", "Sev1 error", "Sev2 warning", "Sev3 informational", "Sev4 verbose"];
const BLANK = { name: "", description: "", query: "", frequency: "5m", window: "5m", measure: null, aggregation: "count",
  dimensions: [], operator: ">", threshold: 0, severity: 3, mute: "0s", enabled: true, actions: { webhooks: [], email: false } };

export async function mount(main) {
  let alive = true;
  const status = h("div.alerts-status");
  const rulesBox = h("div.alerts-rules");
  const formBox = h("div.alerts-form");
  const historyBox = h("div.alerts-history");
  let historyRule = null;
  clear(main, h("div.alerts-page",
    h("div.toolbar", h("button.primary#alert-new", { onclick: () => edit(null) }, "New rule"),
      h("button#alert-refresh", { onclick: () => load() }, "Refresh"), status),
    rulesBox, formBox, h("h3", "History"), historyBox));

  async function load() {
    try {
      const { rules } = await api.get("/api/alerts/rules");
      if (!alive) return;
      drawRules(rules);
      await loadHistory();
    } catch (e) {
      clear(rulesBox, notice(e.message, "error"));
    }
  }

  function drawRules(rules) {
    if (!rules.length) { clear(rulesBox, notice("no alert rules")); return; }
    clear(rulesBox, h("table.grid#alert-rules",
      h("thead", h("tr", ["", "rule", "severity", "state", "condition", "every / over", "last evaluated", ""].map((c) => h("th", c)))),
      h("tbody", rules.map((r) => h("tr", { dataset: { rule: r.id, state: r.state } },
        h("td", h("input", { type: "checkbox", checked: r.enabled, title: r.enabled ? "enabled: click to disable" : "disabled: click to enable",
          onchange: (ev) => act(`/api/alerts/rules/${encodeURIComponent(r.id)}/${ev.target.checked ? "enable" : "disable"}`) })),
        h("td", { title: r.description || "" }, r.name, r.builtin ? h("span.muted", " (built-in)") : ""),
        h("td", `Sev${r.severity}`),
        h("td", r.state === "fired" ? h("strong.alert-fired", `fired (${r.fired})`) : "ok",
          r.last_error ? h("div.muted", { title: r.last_error }, "last evaluation failed") : ""),
        h("td", `${r.measure === null ? "rows" : `${r.aggregation}(${r.measure})`} ${r.operator} ${r.threshold}` +
          (r.dimensions.length ? ` by ${r.dimensions.join(", ")}` : "")),
        h("td", `${r.frequency} / ${r.window}`),
        h("td", r.last_evaluated ? fmtTime(new Date(r.last_evaluated)) : "never"),
        h("td", h("button.small", { onclick: () => edit(r) }, "Edit"), " ",
          h("button.small", { onclick: () => act(`/api/alerts/rules/${encodeURIComponent(r.id)}/evaluate`) }, "Evaluate now"), " ",
          h("button.small", { onclick: () => { historyRule = r.id; loadHistory(); } }, "History")))))));
  }

  async function act(path) {
    status.textContent = "";
    try { await api.post(path); } catch (e) { status.textContent = e.message; }
    load();
  }

  async function loadHistory() {
    try {
      const { history } = await api.get("/api/alerts/history", { rule: historyRule, limit: 100 });
      if (!alive) return;
      const title = historyRule ? h("div", `rule ${historyRule} `, h("button.link", { onclick: () => { historyRule = null; loadHistory(); } }, "all rules")) : "";
      clear(historyBox, title, history.length ? h("table.grid.small#alert-history",
        h("thead", h("tr", ["at", "rule", "event", "dimensions", "value", "detail"].map((c) => h("th", c)))),
        h("tbody", history.map((e) => h("tr", { dataset: { event: e.event } },
          h("td", fmtTime(new Date(e.at))), h("td", e.name || e.rule), h("td", e.event),
          h("td", Object.entries(e.dimensions || {}).map(([k, v]) => `${k}=${v}`).join(", ")),
          h("td", e.value === undefined || e.value === null ? "" : String(e.value)),
          h("td", { title: e.error || "" }, e.error || (e.until ? `muted until ${fmtTime(new Date(e.until))}` : "")))))) : notice("nothing yet"));
    } catch (e) {
      clear(historyBox, notice(e.message, "error"));
    }
  }

  function edit(rule) {
    const r = rule || BLANK;
    const input = (name, value, attrs = {}) => h(`input#alert-${name}`, { name, value: value ?? "", ...attrs });
    const fields = {
      name: input("name", r.name, { required: true }),
      description: input("description", r.description),
      query: h("textarea#alert-query", { name: "query", rows: 6, spellcheck: false }, r.query),
      frequency: input("frequency", r.frequency, { size: 6 }),
      window: input("window", r.window, { size: 6 }),
      measure: input("measure", r.measure || "", { placeholder: "(row count)" }),
      aggregation: h("select#alert-aggregation", AGGREGATIONS.map((a) => h("option", { value: a, selected: a === r.aggregation }, a))),
      dimensions: input("dimensions", r.dimensions.join(", "), { placeholder: "Computer, RemoteIp" }),
      operator: h("select#alert-operator", OPERATORS.map((o) => h("option", { value: o, selected: o === r.operator }, o))),
      threshold: input("threshold", r.threshold, { type: "number", step: "any" }),
      severity: h("select#alert-severity", SEVERITY.map((s, i) => h("option", { value: i, selected: i === r.severity }, s))),
      mute: input("mute", r.mute, { size: 6 }),
      enabled: h("input#alert-enabled", { type: "checkbox", checked: r.enabled }),
      webhooks: h("textarea#alert-webhooks", { rows: 2, placeholder: "one URL per line" }, r.actions.webhooks.join("\n")),
      email: input("email", r.actions.email === true ? "default" : (r.actions.email || []).join(", "),
        { placeholder: "default (smtp_to), addresses, or empty" }),
    };
    const error = h("div.login-error#alert-error", { role: "alert" });
    const row = (label, ...els) => h("label.alert-field", h("span", label), ...els);
    clear(formBox, h("form.alert-editor", {
      onsubmit: async (ev) => {
        ev.preventDefault();
        const email = fields.email.value.trim();
        const body = {
          name: fields.name.value, description: fields.description.value, query: fields.query.value,
          frequency: fields.frequency.value, window: fields.window.value,
          measure: fields.measure.value.trim() || null, aggregation: fields.measure.value.trim() ? fields.aggregation.value : "count",
          dimensions: fields.dimensions.value.split(",").map((s) => s.trim()).filter(Boolean),
          operator: fields.operator.value, threshold: +fields.threshold.value, severity: +fields.severity.value,
          mute: fields.mute.value, enabled: fields.enabled.checked,
          actions: { webhooks: fields.webhooks.value.split("\n").map((s) => s.trim()).filter(Boolean),
            email: email === "default" ? true : email ? email.split(",").map((s) => s.trim()) : false },
        };
        try {
          if (rule) await api.put(`/api/alerts/rules/${encodeURIComponent(rule.id)}`, body);
          else await api.post("/api/alerts/rules", body);
          clear(formBox);
          load();
        } catch (e) {
          error.textContent = e.info && e.info.field ? `${e.message}` + (e.line ? ` (line ${e.line}, column ${e.column})` : "") : e.message;
          const bad = e.info && e.info.field && fields[e.info.field.split(/[.[]/)[0] === "actions" ? e.info.field.split(".")[1] : e.info.field.split(/[.[]/)[0]];
          if (bad) bad.focus();
        }
      },
    }, h("h3", rule ? `Edit ${rule.name}` : "New alert rule"),
    row("name", fields.name), row("description", fields.description), row("query (KQL)", fields.query),
    h("div.alert-row", row("every", fields.frequency), row("over the last", fields.window), row("mute for", fields.mute)),
    h("div.alert-row", row("measure column", fields.measure), row("aggregation", fields.aggregation),
      row("split by", fields.dimensions)),
    h("div.alert-row", row("operator", fields.operator), row("threshold", fields.threshold), row("severity", fields.severity),
      row("enabled", fields.enabled)),
    row("webhooks", fields.webhooks), row("e-mail", fields.email), error,
    h("div.buttons", h("button.primary#alert-save", { type: "submit" }, "Save"), " ",
      h("button", { type: "button", onclick: () => clear(formBox) }, "Cancel"),
      rule && !rule.builtin ? h("button#alert-delete", { type: "button", onclick: async () => {
        try { await api.del(`/api/alerts/rules/${encodeURIComponent(rule.id)}`); clear(formBox); load(); }
        catch (e) { error.textContent = e.message; }
      } }, "Delete") : "")));
    fields.name.focus();
  }

  load();
  return () => { alive = false; };
}
