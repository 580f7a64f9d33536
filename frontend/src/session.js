// The signed-in session: the token (from the sign-in form or a link's #token=, kept in
// sessionStorage), API calls with it, which pages its role may use, and the page header.

const KEY = "chainsight.token";

export const PAGES = [
  { path: "/map", title: "Live map", probe: "/v1/shipments?status=-" },
  // acting on alerts is the console's job: an audit trail answers 404 (unknown alert) to a
  // role that may act, 403 to one that may not
  { path: "/console", title: "Quality console", probe: "/v1/alerts/-/audit" },
];

/** The session's token, taking one from the URL's #token= (and removing it from the URL). */
export function token() {
  const match = location.hash.match(/token=([^&]+)/);
  if (match) {
    sessionStorage.setItem(KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(KEY);
}

// a link with another token opened in the same tab: start again with it
addEventListener("hashchange", () => location.hash.includes("token=") && location.reload());

export function signIn(value) {
  sessionStorage.setItem(KEY, value.trim());
}

export function signOut() {
  sessionStorage.removeItem(KEY);
  location.assign("/");
}

/** fetch() of an API path with the token; a 401 ends the session. */
export async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${token()}`, ...(options.headers || {}) };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { ...options, headers, body: options.body === undefined ? undefined : JSON.stringify(options.body) });
  if (response.status === 401) {
    sessionStorage.removeItem(KEY);
    location.assign(`/?next=${encodeURIComponent(location.pathname)}&expired=1`);
    throw new Error("the token was refused");
  }
  return response;
}

/** The pages this session's role may use (401: none, the token is unknown). */
export async function allowedPages() {
  const answers = await Promise.all(PAGES.map((page) =>
    fetch(page.probe, { headers: { Authorization: `Bearer ${token()}` } }).then((r) => r.status)));
  if (answers.includes(401)) return null;
  return PAGES.filter((page, i) => answers[i] !== 403);
}

/** Set up a page: a token (else to sign-in), the header's links; whether the role may use
 * `path`. When it may not, the page says so and offers the pages it may use. */
export async function enter(path) {
  if (!token()) {
    location.assign(`/?next=${encodeURIComponent(path)}`);
    return false;
  }
  const pages = await allowedPages();
  if (pages === null) {
    sessionStorage.removeItem(KEY);
    location.assign(`/?next=${encodeURIComponent(path)}&expired=1`);
    return false;
  }
  const nav = document.querySelector("header nav");
  nav.replaceChildren(...pages.map((page) => link(page, page.path === path)), signOutButton());
  if (pages.some((page) => page.path === path)) return true;
  const denied = document.getElementById("denied");
  denied.hidden = false;
  denied.querySelector(".others").replaceChildren(...pages.map((page) => link(page, false)));
  document.body.classList.add("is-denied");
  return false;
}

function link(page, current) {
  const a = document.createElement("a");
  a.href = page.path;
  a.textContent = page.title;
  if (current) a.setAttribute("aria-current", "page");
  return a;
}

function signOutButton() {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "quiet";
  button.textContent = "Sign out";
  button.addEventListener("click", signOut);
  return button;
}

/** The header's connection badge: "live", "lost" (said plainly until it is back), "back". */
export function showConnection(state) {
  const badge = document.getElementById("connection");
  const text = { connecting: "Connecting…", live: "Live", lost: "Connection lost — reconnecting…", back: "Connection is back" };
  badge.dataset.state = state;
  badge.textContent = text[state];
  if (state === "back") {
    clearTimeout(showConnection.timer);
    showConnection.timer = setTimeout(() => badge.dataset.state === "back" && showConnection("live"), 4000);
  }
}

export function escapeHtml(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

/** "12:03:04" of an ISO time (UTC, as the engine's event time). */
export function clock(iso) {
  return iso ? iso.slice(11, 19) : "—";
}
