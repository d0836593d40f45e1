// Every call the UI makes: fetch with the sign-in session's cookie (HttpOnly: set by
// POST /api/session, sent by the browser in every tab) or a share link's token (?share= in the
// page's address), JSON in and out, and the server's one error shape turned into an ApiError
// (code, message, line, column, hint). Every call carries X-Netatlas-CSRF, which the server
// asks of a cookie request that changes state (server/sessions.py).

// The share link's token of this page (read-only access), if it was opened from one.
const shareToken = () => new URLSearchParams(location.search).get("share") || "";

export const session = {
  who: null,                           // GET /api/session's answer once signed in
  share: shareToken,
  // Is this browser signed in (its cookie, or the page's share link)? Fills session.who.
  async check() {
    try {
      const who = await call("/api/session", { quiet: true });
      session.who = who.signed_in ? who : null;
    } catch { session.who = null; }
    return session.who;
  },
  async signIn(key) { session.who = await call("/api/session", { method: "POST", body: { key }, quiet: true }); },
  async signOut() {
    session.who = null;
    if (!shareToken()) await call("/api/session", { method: "DELETE", quiet: true }).catch(() => {});
  },
  readOnly: () => !!(session.who && session.who.read_only),
};

export class ApiError extends Error {
  constructor(status, error) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || `HTTP_${status}`;
    Object.assign(this, { line: error.line, column: error.column, hint: error.hint, info: error });
  }
}

// Query string of the set values of params (arrays repeat the name).
export function qs(params = {}) {
  const q = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "" || value === false) continue;
    for (const v of Array.isArray(value) ? value : [value]) q.append(name, v === true ? "1" : String(v));
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}

async function call(path, { method = "GET", params, body, quiet = false, as = "json" } = {}) {
  const headers = { "X-Netatlas-CSRF": "1" };
  if (shareToken()) headers["X-Netatlas-Share"] = shareToken();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path + qs(params), {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin",
  });
  if (!response.ok) {
    let error = { message: `${method} ${path}: HTTP ${response.status}` };
    try { error = (await response.json()).error || error; } catch { /* not JSON */ }
    if (!quiet && response.status === 401) {
      window.dispatchEvent(new CustomEvent("netatlas:unauthorized", { detail: error }));
    }
    throw new ApiError(response.status, error);
  }
  return as === "blob" ? response.blob() : response.json();
}

export const api = {
  get: (path, params) => call(path, { params }),
  post: (path, body, params) => call(path, { method: "POST", body, params }),
  put: (path, body) => call(path, { method: "PUT", body }),
  del: (path) => call(path, { method: "DELETE" }),
  blob: (path, body, params) => call(path, { method: "POST", body, params, as: "blob" }),
  delete: (path) => call(path, { method: "DELETE" }),
  query: (query, timespan) => call("/api/query", { method: "POST", body: timespan ? { query, timespan } : { query } }),
  // a call whose refusal the page says in place (a 401 does not sign the browser out)
  quiet: (method, path, body) => call(path, { method, body, quiet: true }),
};

// A file download of a Blob or text made in the browser.
export function download(name, data, type = "application/octet-stream") {
  const blob = data instanceof Blob ? data : new Blob([data], { type });
  const a = Object.assign(document.createElement("a"), { href: URL.createObjectURL(blob), download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}
