// Every call the UI makes: fetch with the query key (kept in sessionStorage), JSON in and out,
// and the server's one error shape turned into an ApiError (code, message, line, column, hint).
const KEY = "netatlas.queryKey";

export const session = {
  key: () => sessionStorage.getItem(KEY),
  signIn: (key) => sessionStorage.setItem(KEY, key),
  signOut: () => sessionStorage.removeItem(KEY),
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

async function call(path, { method = "GET", params, body, key = session.key(), as = "json" } = {}) {
  const headers = { Authorization: `Bearer ${key}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path + qs(params), {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    let error = { message: `${method} ${path}: HTTP ${response.status}` };
    try { error = (await response.json()).error || error; } catch { /* not JSON */ }
    if (response.status === 401 || (response.status === 403 && key === session.key())) {
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
  // A cheap authenticated call: is this a query key of this workspace?
  check: (key) => call("/api/retention", { key }),
  query: (query, timespan) => call("/api/query", { method: "POST", body: timespan ? { query, timespan } : { query } }),
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
