// Migration waves on the network chart (GET /api/waves, netatlas/waves.py): a stable colour per
// wave number, and the traffic crossing between waves recomputed in the browser from the report's
// machine pairs (`edges`) when the user moves machines to other waves.

// Wave n always gets WAVE_COLOURS[(n - 1) % length]; machines in no wave are NO_WAVE.
export const WAVE_COLOURS = ["#0f6cbd", "#ca5010", "#498205", "#8764b8", "#038387", "#e3008c", "#986f0b",
  "#4f6bed", "#c239b3", "#13a10e", "#d13438", "#005b70"];
export const NO_WAVE = "#a0a7b0";

export function waveColour(n) {
  return n ? WAVE_COLOURS[(n - 1) % WAVE_COLOURS.length] : NO_WAVE;
}

// machine id -> wave number, as the report placed them, then the user's moves over it.
export function assignment(report, moves = {}) {
  const out = {};
  for (const w of report.waves) for (const m of w.machines) out[m.machine] = w.wave;
  return Object.assign(out, moves);
}

// The machine pairs whose two ends are in different waves under `waves` (machine -> wave), the
// heaviest first, and their totals.
export function crossing(report, waves) {
  const edges = report.edges.map((e) => ({ ...e, caller_wave: waves[e.caller], callee_wave: waves[e.callee] }))
    .filter((e) => e.caller_wave !== e.callee_wave)
    .sort((a, b) => b.bytes - a.bytes || b.connections - a.connections || (a.caller + a.callee).localeCompare(b.caller + b.callee));
  return {
    edges,
    bytes: edges.reduce((s, e) => s + e.bytes, 0),
    connections: edges.reduce((s, e) => s + e.connections, 0),
    backward: edges.filter((e) => e.caller_wave < e.callee_wave).length,
  };
}
