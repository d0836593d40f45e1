// The shell: the login by query key, the navigation between the pages, sign out.
// Each page is a module exporting mount(element, params) -> optional unmount function.
import { api, session, ApiError } from "./api.js";
import { h, clear } from "./util.js";

const PAGES = {
  map: { title: "Map", load: () => import("./map.js") },
  logs: { title: "Logs", load: () => import("./logs.js") },
  usage: { title: "Usage", load: () => import("./usage.js") },
  network: { title: "Network", load: () => import("./network.js") },
  performance: { title: "Performance", load: () => import("./performance.js") },
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
      try {
        await api.check(key);
        session.signIn(key);
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
  const out = h("button.link#signout", { onclick: signOut, title: "Forget the key in this browser tab" }, "Sign out");
  const main = h("main#page");
  clear(root, h("header.topbar", h("a.brand", { href: "#/map" }, h("span.logo", "◉"), " netatlas"), nav, out), main);
  return main;
}

function signOut() {
  session.signOut();
  location.hash = "";
  login("Signed out.");
}

// Pages keep their state in the address with history.replaceState, which fires no hashchange:
// a hashchange is a navigation (a link, the address bar, back), and mounts the page anew.
async function route() {
  if (!session.key()) return login();
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

window.addEventListener("hashchange", route);
// a page shown inside another (a workbook's map tile): without the top bar
if (window.self !== window.top) document.documentElement.classList.add("embedded");
window.addEventListener("netatlas:unauthorized", () => {
  session.signOut();
  login("The key was refused; sign in again.");
});
route();
