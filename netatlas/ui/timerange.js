// The time range of the map and the network chart: a preset ("last 30 minutes"), or any range
// within VMConnection's retention (from/to fields), and a slider that moves the window in time.
import { api } from "./api.js";
import { h, fmtTime } from "./util.js";

const PRESETS = [
  ["30m", "Last 30 minutes", 30], ["1h", "Last hour", 60], ["6h", "Last 6 hours", 360],
  ["24h", "Last 24 hours", 1440], ["3d", "Last 3 days", 4320], ["7d", "Last 7 days", 10080],
  ["custom", "Custom range", null],
];
const MINUTE = 60_000;
let retentionDays = null;

async function retention() {
  if (retentionDays === null) {
    try { retentionDays = (await api.get("/api/retention")).tables.VMConnection || 30; }
    catch { retentionDays = 30; }
  }
  return retentionDays;
}

function toLocalInput(d) {
  const p = (x) => String(x).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

export class TimeRange {
  // initial: {from, to} ISO strings (a custom range) or {preset}; onChange(range) after each change.
  constructor(initial = {}, onChange = () => {}) {
    this.onChange = onChange;
    this.preset = initial.from ? "custom" : initial.preset || "30m";
    this.to = initial.to ? new Date(initial.to) : new Date();
    this.from = initial.from ? new Date(initial.from) : new Date(this.to - this.presetMinutes() * MINUTE);
    this.select = h("select.preset", { onchange: () => this.pickPreset(this.select.value), title: "Time range" },
      PRESETS.map(([id, label]) => h("option", { value: id, selected: id === this.preset }, label)));
    this.fromInput = h("input", { type: "datetime-local", onchange: () => this.typed(), title: "From (local time)" });
    this.toInput = h("input", { type: "datetime-local", onchange: () => this.typed(), title: "To (local time)" });
    this.slider = h("input.slider", { type: "range", min: 0, max: 1, step: 1, title: "Move the window in time",
      oninput: () => this.slid(false), onchange: () => this.slid(true) });
    this.label = h("div.range-label");
    this.element = h("div.timerange", this.select,
      h("div.range-fields", h("label", "from", this.fromInput), h("label", "to", this.toInput)),
      this.slider, this.label);
    this.sync();
    retention().then(() => this.sync());
  }

  presetMinutes() {
    return (PRESETS.find(([id]) => id === this.preset) || PRESETS[0])[2] || 30;
  }

  // {from, to} ISO strings; a preset range ends now.
  value() {
    if (this.preset !== "custom") {
      this.to = new Date();
      this.from = new Date(this.to - this.presetMinutes() * MINUTE);
      this.sync();
    }
    return { from: this.from.toISOString(), to: this.to.toISOString() };
  }

  // What to keep in the page's address: a preset's name, or the range.
  params() {
    return this.preset === "custom" ? { from: this.from.toISOString(), to: this.to.toISOString() } : { range: this.preset };
  }

  pickPreset(id) {
    this.preset = id;
    if (id !== "custom") this.value();
    this.sync();
    this.onChange();
  }

  typed() {
    const from = new Date(this.fromInput.value), to = new Date(this.toInput.value);
    if (Number.isNaN(+from) || Number.isNaN(+to) || from >= to) return;
    Object.assign(this, { preset: "custom", from, to });
    this.sync();
    this.onChange();
  }

  // The slider's value is the window's end, in minutes since the oldest retained minute.
  slid(done) {
    const length = this.to - this.from;
    const oldest = Date.now() - (retentionDays || 30) * 1440 * MINUTE;
    this.to = new Date(oldest + (+this.slider.value) * MINUTE);
    this.from = new Date(this.to - length);
    this.preset = "custom";
    this.sync(!done);
    if (done) this.onChange();
  }

  sync(sliding = false) {
    this.select.value = this.preset;
    this.fromInput.value = toLocalInput(this.from);
    this.toInput.value = toLocalInput(this.to);
    const days = retentionDays || 30;
    const oldest = Date.now() - days * 1440 * MINUTE;
    if (!sliding) {
      this.slider.max = String(days * 1440);
      this.slider.step = "5";
      this.slider.value = String(Math.round((this.to - oldest) / MINUTE));
    }
    const minutes = Math.round((this.to - this.from) / MINUTE);
    const span = minutes >= 1440 ? `${(minutes / 1440).toFixed(1)} d` : minutes >= 60 ? `${(minutes / 60).toFixed(1)} h` : `${minutes} min`;
    this.label.textContent = `${fmtTime(this.from)} → ${fmtTime(this.to)} (${span}; retention ${days} d)`;
  }
}

// A TimeRange from the page address's parameters.
export function timeRangeFrom(params, onChange) {
  return new TimeRange(params.from && params.to ? { from: params.from, to: params.to } : { preset: params.range }, onChange);
}
