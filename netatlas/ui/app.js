// The shell: the login by query key (a session cookie, every tab; or a share link's read-only
// view), the navigation between the pages (Back and Forward step through the user's own steps:
// pages push an entry per step, util.setHashParams), sign out, share links (share.js).
// Each page is a module exporting mount(element, params) -> optional unmount function.
import { api, session, ApiError } from "./api.js";
import { h, clear, nav as routed } from "./util.js";

const PAGES = {
  map: { title: "Map", load: () => import("./map.js") },
  logs: { title: "Logs", load: () => import("./logs.js") },
  usage: { title: "Usage", load: () => import("./usage.js") },
  network: { title: "Network", load: () => import("./network.js") },
  performance: { title: "Performance", load: () => import("./performance.js") },
  alerts: { title: "Alerts", load: () => import("./alerts.js") },
  workbooks: { title: "Workbooks", load: () => import("./workbooks.js") },
};
const DEFAULT_PAGE = "map";

const root = document.getElementById("app");
let unmount = null;
let shown = null;       // the name of the page on screen
let routes = 0;         // navigations so far

function pageOf(hash) {
  const name = (hash.replace(/^#\/?/, "").split("?")[0] || DEFAULT_PAGE).split("/")[0];
  return PAGES[name] ? name : DEFAULT_PAGE;
}

function login(message) {
  if (unmount) { unmount(); unmount = null; }
  shown = null;
  const input = h("input#key", { type: "password", placeholder: "query key", autocomplete: "current-password",
    required: true, autofocus: true });
  const error = h("div.login-error", { role: "alert" }, message || "");
  const button = h("button.primary", { type: "submit" }, "Sign in");
  const form = h("form.login-card", {
    onsubmit: async (event) => {
      event.preventDefault();
      button.disabled = true;
      error.textContent = "";
      const key = input.value.trim();
      // a key replaces the page's (expired) share link: the view's address stays
      if (session.share()) history.replaceState(null, "", location.pathname + location.hash);
      try {
        await session.signIn(key);
        route();
      } catch (e) {
        error.textContent = e instanceof ApiError && (e.status === 401 || e.status === 403)
          ? `This is not a query key of this workspace (${e.code}).` : `The workspace did not answer: ${e.message}`;
        button.disabled = false;
      }
    },
  },
  h("h1", h("span.logo", "◉"), " netatlas"),
  h("p", "Sign in with a query key of this workspace (the one `netatlas up` printed, or a new one: ", h("code", "netatlas keys create --role query --data DIR"), ")."),
  input, button, error);
  clear(root, h("div.login", form));
  input.focus();
}

function shell() {
  const nav = h("nav", Object.entries(PAGES).map(([id, page]) =>
    h("a", { href: `#/${id}`, dataset: { page: id } }, page.title)));
  const readOnly = session.readOnly();
  const out = readOnly ? h("span.badge.read-only#read-only", { title: "Opened from a share link: queries only, until it expires" }, "read-only share")
    : h("button.link#signout", { onclick: signOut, title: "End the session (every tab of this browser)" }, "Sign out");
  const share = session.who && session.who.role === "admin"
    ? h("button.link#share", { onclick: () => import("./share.js").then((m) => m.openShare()), title: "A read-only link to this view that expires" }, "Share…") : null;
  const main = h("main#page");
  clear(root, h("header.topbar", h("a.brand", { href: "#/map" }, h("span.logo", "◉"), " netatlas"), nav, share, out), main);
  return main;
}

async function signOut() {
  await session.signOut();
  history.pushState(null, "", location.pathname + location.search);
  login("Signed out.");
}

// Pages keep their state in the address with history.pushState (a user's step) or replaceState,
// which fire no event: a hashchange or popstate is a navigation (a link, the address bar, Back,
// Forward), and mounts the page of the address anew.
async function route() {
  routed.href = location.href;
  if (!session.who && !(await session.check())) {
    return login(session.share() ? "This share link expired or was revoked." : undefined);
  }
  const name = pageOf(location.hash);
  if (unmount) { unmount(); unmount = null; }
  const main = root.querySelector("#page") || shell();
  for (const a of root.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === name);
  shown = name;
  const mine = ++routes;
  document.title = `${PAGES[name].title} · netatlas`;
  clear(main);
  try {
    const module = await PAGES[name].load();
    if (mine !== routes) return;            // another navigation came first
    main.dataset.page = name;
    unmount = (await module.mount(main)) || null;
  } catch (e) {
    console.error(`the ${name} page failed:`, e);
    clear(main, h("div.notice.error", `The ${PAGES[name].title} page failed: ${e.message}`));
  }
}

// Back and Forward (popstate) and links (hashchange) to another address mount its view; Chromium
// fires both for one step between entries that differ in the hash: the second finds routed.href set.
const navigated = () => { if (location.href !== routed.href) route(); };
window.addEventListener("hashchange", navigated);
window.addEventListener("popstate", navigated);
// a page shown inside another (a workbook's map tile): without the top bar
if (window.self !== window.top) document.documentElement.classList.add("embedded");
window.addEventListener("netatlas:unauthorized", (e) => {
  session.who = null;
  const code = e.detail.code || "401";
  login(session.share() ? "This share link expired or was revoked."
    : code === "AUTH_MISSING" ? "Signed out (in another tab?); sign in again." : `The session ended (${code}); sign in again.`);
});
route();
