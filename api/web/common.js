// What the forum (`/`) and the console (`/console`) share: building elements, speaking to the
// public API (a problem+json answer becomes an error carrying its `detail`), and the session
// token, kept in this browser's localStorage for this origin.
"use strict";

/** What a page sets: `refresh` redraws what depends on being signed in. */
const hooks = { refresh: () => {} };
const API = "/api/v1";
const store = window.localStorage;
const TOKEN = "treehole.token";
const USER = "treehole.user"; // the signed-in user's id
let lastPosition = 0; // the position of our last write: reads wait for it (?after=)
const $ = (sel, root = document) => root.querySelector(sel);
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v === true) node.setAttribute(k, "");
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function say(text, error = false) {
  const s = $("#status");
  s.textContent = text || "";
  s.classList.toggle("error", !!error);
}

class ApiError extends Error {}

/** Calls the API; a problem+json answer becomes an ApiError carrying its `detail`. */
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const token = store.getItem(TOKEN);
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(API + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) {
    if (res.status === 401 && token) signOut();
    throw new ApiError((data && data.detail) || `${res.status} ${res.statusText}`);
  }
  if (data && typeof data.position === "number" && data.position > lastPosition) {
    lastPosition = data.position;
  }
  return data;
}

const after = (sep = "?") => (lastPosition ? `${sep}after=${lastPosition}` : "");
const signedIn = () => !!store.getItem(TOKEN);
/** Keeps the session's token and who it is. */
async function signIn(token) {
  store.setItem(TOKEN, token);
  const me = await api("GET", "/me");
  store.setItem(USER, me.user_id);
  hooks.refresh();
}

function signOut() {
  store.removeItem(TOKEN);
  store.removeItem(USER);
  hooks.refresh();
}
/** "1 comment", "2 comments". */
const count = (n, one, many) => `${n} ${n === 1 ? one : many}`;

function when(iso) {
  const d = new Date(iso);
  return el("time", { datetime: iso }, d.toLocaleString());
}

/** Runs `work`, showing its error's detail instead of letting it escape; `fresh` clears what
 * was said before (a person's action), a background load leaves it. */
async function attempt(work, fresh = true) {
  try {
    if (fresh) say("");
    await work();
  } catch (e) {
    say(e instanceof ApiError ? e.message : `Something went wrong: ${e.message}`, true);
  }
}


/** The log-in form: `loginLabel` names the login field, `device` labels the session in
 * `GET /me/sessions`, and `then` runs once signed in. */
function loginForm(loginLabel, device, then) {
  const form = el("form", { "aria-label": "Log in", onsubmit: (e) => {
    e.preventDefault();
    attempt(async () => {
      const done = await api("POST", "/sessions", {
        login: form.login.value,
        password: form.password.value,
        device,
      });
      await signIn(done.token);
      await then();
    });
  } },
    el("label", { for: "login" }, loginLabel),
    el("input", { id: "login", name: "login", type: "text", autocomplete: "username", required: true }),
    el("label", { for: "password" }, "Password"),
    el("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true }),
    el("div", { class: "row" }, el("button", { type: "submit" }, "Log in")));
  return form;
}
