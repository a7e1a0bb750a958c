// The forum: a page over the public HTTP API (/api/v1), nothing else. No build step, no
// framework. Text from the API is put in the page as text (textContent), never as HTML, except
// search highlights, which the server HTML-escapes before it adds <mark>.
"use strict";
/* global API, store, TOKEN, USER, lastPosition, $, el, say, ApiError, api, after, signedIn,
   signIn, signOut, when, attempt, hooks, loginForm, count */

const main = () => $("#main");
// Ids of the posts and comments the signed-in user wrote in this browser, kept per user: the
// API never says who wrote anonymous content, so this is how the page offers to delete it.
const mineKey = () => `treehole.mine.${store.getItem(USER) || ""}`;
let pending = ""; // what to say once the next view is shown

/** Shows another view, then `message` (a navigation clears what was said before). */
function navigate(hash, message = "") {
  pending = message;
  if (location.hash === hash) route();
  else location.hash = hash;
}

const mine = () => new Set(JSON.parse(store.getItem(mineKey()) || "[]"));
function remember(id) {
  const ids = [...mine(), id].slice(-500);
  store.setItem(mineKey(), JSON.stringify(ids));
}

function refreshNav() {
  for (const a of document.querySelectorAll("[data-signed-in]")) a.hidden = !signedIn();
  for (const a of document.querySelectorAll("[data-signed-out]")) a.hidden = signedIn();
  if (signedIn()) listen();
  else stopListening();
}

// ---------------------------------------------------------------- live notifications

// The notification stream, read with fetch (EventSource cannot send the bearer token):
// Server-Sent Events parsed here, resumed with Last-Event-ID after a drop.
let stream = null; // { token, abort } while listening
let lastSeq = null;
let unread = 0;

function listen() {
  const token = store.getItem(TOKEN);
  if (stream && stream.token === token) return;
  stopListening();
  const abort = new AbortController();
  stream = { token, abort };
  (async () => {
    while (!abort.signal.aborted) {
      try {
        const headers = { Authorization: `Bearer ${token}`, Accept: "text/event-stream" };
        if (lastSeq !== null) headers["Last-Event-ID"] = String(lastSeq);
        const res = await fetch(`${API}/me/notifications/stream`, { headers, signal: abort.signal });
        if (res.status === 401) return signOut();
        if (!res.ok || !res.body) throw new Error(`stream ${res.status}`);
        await readEvents(res.body.getReader(), onStreamEvent);
      } catch (e) {
        if (abort.signal.aborted) return;
      }
      await new Promise((r) => setTimeout(r, 2000));
    }
  })();
}

function stopListening() {
  if (stream) stream.abort.abort();
  stream = null;
}

/** Reads Server-Sent Events from `reader`, calling `handle(event, id, data)` for each. */
async function readEvents(reader, handle) {
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message", id = null;
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("id:")) id = line.slice(3).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) handle(event, id, data.join("\n"));
    }
  }
}

function onStreamEvent(event, id, data) {
  if (id !== null) lastSeq = Number(id);
  if (event === "reset") {
    if (location.hash.startsWith("#/inbox")) inboxView();
    return;
  }
  if (event !== "notification") return;
  const n = JSON.parse(data);
  unread += 1;
  const link = document.querySelector("a[href='#/inbox']");
  if (link) link.textContent = `Inbox (${unread})`;
  const list = document.querySelector("#notifications");
  if (list) {
    list.querySelector(".empty")?.remove();
    list.prepend(notificationCard(n));
  }
}

// ---------------------------------------------------------------- posts

function authorLine(item) {
  const name = item.is_host
    ? el("span", { class: "host" }, item.author_name)
    : el("span", {}, item.author_name);
  return el(
    "p",
    { class: "meta" },
    name,
    item.anonymous ? el("span", {}, "anonymous") : null,
    when(item.created_at),
    item.likes !== undefined ? el("span", {}, `▲ ${item.likes} ▼ ${item.dislikes}`) : null
  );
}

function postCard(p) {
  const link = `#/post/${p.post_id}`;
  const card = el(
    "article",
    { class: "card", "data-post": p.post_id },
    p.title ? el("h2", {}, el("a", { href: link }, p.title)) : null,
    authorLine(p)
  );
  if (p.folded) {
    card.append(el("p", { class: "folded" }, `Folded by moderation (${p.folded}).`),
      el("a", { href: link }, "Read it anyway"));
  } else {
    card.append(el("p", { class: "body" }, p.body.length > 280 ? p.body.slice(0, 280) + "…" : p.body));
  }
  card.append(
    el("p", { class: "meta" },
      ...(p.tags || []).map((t) => el("span", { class: "tag" }, `#${t}`)),
      el("a", { href: link }, count(p.comment_count, "comment", "comments")))
  );
  return card;
}

/** A list that loads the next page when its end scrolls into view (cursor paging). */
function infinite(container, load) {
  let cursor = null;
  let done = false;
  let busy = false;
  const sentinel = el("div", { class: "sentinel", "aria-hidden": "true" });
  container.after(sentinel);
  const more = async () => {
    if (done || busy) return;
    busy = true;
    await attempt(async () => {
      const page = await load(cursor);
      cursor = page.next_cursor;
      done = !cursor;
      if (!page.items.length && !container.children.length) {
        container.append(el("p", { class: "empty" }, "Nothing here yet."));
      }
    }, false);
    busy = false;
  };
  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) more();
  }).observe(sentinel);
  return more();
}

async function feedView() {
  const list = el("section", { "aria-label": "Latest posts" });
  main().replaceChildren(el("h1", {}, "Latest"), list);
  await infinite(list, async (cursor) => {
    const q = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
    const page = await api("GET", `/posts?limit=20${q}${after("&")}`);
    list.append(...page.items.map(postCard));
    return page;
  });
}

async function hotView() {
  main().replaceChildren(el("h1", {}, "Hot"));
  await attempt(async () => {
    const page = await api("GET", `/posts/hot?limit=30${after("&")}`);
    main().append(...page.items.map(postCard));
    if (!page.items.length) main().append(el("p", { class: "empty" }, "Nothing is hot yet."));
  });
}

async function postView(id) {
  main().replaceChildren(el("p", {}, "Loading…"));
  let post;
  try {
    post = await api("GET", `/posts/${id}${after()}`);
  } catch (e) {
    main().replaceChildren(el("p", { class: "empty" }, e.message));
    return;
  }
  const ours = mine();
  const article = el(
    "article",
    { class: "card", "data-post": post.post_id },
    el("h1", {}, post.title || "Post"),
    authorLine(post),
    post.folded ? el("p", { class: "folded" }, `Folded by moderation (${post.folded}).`) : null,
    el("p", { class: "body" }, post.body),
    el("p", { class: "meta" }, ...(post.tags || []).map((t) => el("span", { class: "tag" }, `#${t}`)))
  );
  if (signedIn()) article.append(postActions(post, ours));
  const comments = el("section", { "aria-label": "Comments" });
  main().replaceChildren(article, el("h2", {}, `Comments (${post.comment_count})`), comments);
  if (signedIn()) main().append(commentForm(post.post_id));
  await infinite(comments, async (cursor) => {
    const q = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
    const page = await api("GET", `/posts/${id}/comments?limit=50${q}${after("&")}`);
    comments.append(...page.items.map((c) => commentCard(post.post_id, c, ours)));
    return page;
  });
}

function postActions(post, ours) {
  const mineOf = post.mine || {};
  const react = (value) =>
    attempt(async () => {
      const done = await api("PUT", `/posts/${post.post_id}/reaction`, { value });
      say(`Likes ${done.likes}, dislikes ${done.dislikes}.`);
    });
  const row = el(
    "div",
    { class: "row" },
    el("button", { type: "button", class: "quiet", "aria-pressed": String(mineOf.reaction === 1), onclick: () => react(mineOf.reaction === 1 ? 0 : 1) }, "Like"),
    el("button", { type: "button", class: "quiet", "aria-pressed": String(mineOf.reaction === -1), onclick: () => react(mineOf.reaction === -1 ? 0 : -1) }, "Dislike"),
    el("button", { type: "button", class: "quiet", onclick: () => attempt(async () => {
      await api("PUT", `/posts/${post.post_id}/follow`, { following: true });
      say("You follow this post: its new comments reach your inbox.");
    }) }, "Follow"),
    el("button", { type: "button", class: "quiet", onclick: () => attempt(async () => {
      await api("PUT", `/posts/${post.post_id}/follow`, { following: false });
      say("You no longer follow this post.");
    }) }, "Unfollow"),
    reportButton(`/posts/${post.post_id}/reports`)
  );
  if (ours.has(post.post_id)) {
    row.append(el("button", { type: "button", class: "danger", onclick: () => attempt(async () => {
      if (!confirm("Delete this post?")) return;
      await api("DELETE", `/posts/${post.post_id}`);
      location.hash = "#/";
    }) }, "Delete"));
  }
  return row;
}

function reportButton(path) {
  return el("button", { type: "button", class: "quiet", onclick: (ev) => {
    const form = el("form", { class: "card", onsubmit: (e) => {
      e.preventDefault();
      attempt(async () => {
        const text = form.text.value.trim();
        await api("POST", path, { reason: form.reason.value, ...(text ? { text } : {}) });
        form.replaceWith(el("p", { class: "meta" }, "Reported. Thank you."));
      });
    } },
      el("label", { for: "reason" }, "Why?"),
      el("select", { id: "reason", name: "reason" },
        ...["spam", "abuse", "nsfw", "flame_war", "privacy", "illegal", "misinformation", "other"]
          .map((r) => el("option", { value: r }, r.replace("_", " ")))),
      el("label", { for: "report-text" }, "Anything to add (optional)"),
      el("textarea", { id: "report-text", name: "text", maxlength: "1000" }),
      el("div", { class: "row" }, el("button", { type: "submit" }, "Send report")));
    ev.currentTarget.after(form);
  } }, "Report");
}

function commentCard(postId, c, ours) {
  const card = el("article", { class: "card", "data-comment": c.comment_id }, authorLine(c));
  if (c.folded) card.append(el("p", { class: "folded" }, `Folded by moderation (${c.folded}).`));
  card.append(el("p", { class: "body" }, c.body));
  if (signedIn()) {
    const row = el("div", { class: "row" }, reportButton(`/comments/${c.comment_id}/reports`));
    if (ours.has(c.comment_id)) {
      row.append(el("button", { type: "button", class: "danger", onclick: () => attempt(async () => {
        await api("DELETE", `/posts/${postId}/comments/${c.comment_id}`);
        card.remove();
      }) }, "Delete"));
    }
    card.append(row);
  }
  return card;
}

function commentForm(postId) {
  const form = el("form", { class: "card", "aria-label": "Write a comment", onsubmit: (e) => {
    e.preventDefault();
    attempt(async () => {
      const done = await api("POST", `/posts/${postId}/comments`, {
        body: form.body.value,
        anonymous: form.anonymous.checked,
      });
      remember(done.comment_id);
      say(`Commented as ${done.author_name}.`);
      await postView(postId);
    });
  } },
    el("label", { for: "comment-body" }, "Your comment"),
    el("textarea", { id: "comment-body", name: "body", required: true, maxlength: "2000" }),
    el("label", { class: "check" }, el("input", { type: "checkbox", name: "anonymous", checked: true }), "Anonymously (you get a pseudonym under this post)"),
    el("div", { class: "row" }, el("button", { type: "submit" }, "Comment")));
  return form;
}

function newPostView() {
  if (!signedIn()) return loginView();
  const form = el("form", { "aria-label": "Write a post", onsubmit: (e) => {
    e.preventDefault();
    attempt(async () => {
      const tags = form.tags.value.split(/[\s,，]+/).filter(Boolean);
      const done = await api("POST", "/posts", {
        ...(form.title.value.trim() ? { title: form.title.value } : {}),
        body: form.body.value,
        anonymous: form.anonymous.checked,
        tags,
      });
      remember(done.post_id);
      navigate(`#/post/${done.post_id}`, `Posted as ${done.author_name}.`);
    });
  } },
    el("label", { for: "title" }, "Title (optional)"),
    el("input", { id: "title", name: "title", type: "text", maxlength: "120" }),
    el("label", { for: "body" }, "What is on your mind?"),
    el("textarea", { id: "body", name: "body", required: true, maxlength: "10000" }),
    el("label", { for: "tags" }, "Tags (optional, separated by spaces)"),
    el("input", { id: "tags", name: "tags", type: "text" }),
    el("label", { class: "check" }, el("input", { type: "checkbox", name: "anonymous", checked: true }), "Anonymously (shown as 洞主)"),
    el("div", { class: "row" }, el("button", { type: "submit" }, "Post")));
  main().replaceChildren(el("h1", {}, "Write a post"), form);
}

// ---------------------------------------------------------------- search

async function searchView(query) {
  const form = el("form", { role: "search", onsubmit: (e) => {
    e.preventDefault();
    location.hash = `#/search?q=${encodeURIComponent(form.q.value)}`;
  } },
    el("label", { for: "q" }, "Search posts and comments"),
    el("div", { class: "row" },
      el("input", { id: "q", name: "q", type: "search", value: query || "", required: true, maxlength: "200" }),
      el("button", { type: "submit" }, "Search")));
  const results = el("section", { "aria-label": "Results" });
  main().replaceChildren(el("h1", {}, "Search"), form, results);
  if (!query) return;
  await infinite(results, async (cursor) => {
    const c = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
    const page = await api("GET", `/search?q=${encodeURIComponent(query)}&limit=20${c}${after("&")}`);
    results.append(...page.hits.map(hitCard));
    return { items: page.hits, next_cursor: page.next_cursor };
  });
}

/** A search hit: its title and snippet are HTML the server escaped, with <mark>ed words. */
function hitCard(h) {
  const link = `#/post/${h.post_id}`;
  const title = el("a", { href: link });
  title.innerHTML = h.title_highlighted || "Untitled";
  const snippet = el("p", { class: "body" });
  snippet.innerHTML = h.snippet;
  return el("article", { class: "card", "data-post": h.post_id },
    el("h2", {}, title), el("p", { class: "meta" }, h.author_name, when(h.created_at),
      count(h.comment_count, "comment", "comments")), snippet);
}

// ---------------------------------------------------------------- accounts

function loginView() {
  const form = loginForm("E-mail or username", deviceName(), () => navigate("#/"));
  main().replaceChildren(el("h1", {}, "Log in"), form);
}

function deviceName() {
  const ua = navigator.userAgent;
  const kind = /Mobi|Android|iPhone/.test(ua) ? "phone" : "computer";
  return `Browser on a ${kind}`;
}

function registerView() {
  const form = el("form", { "aria-label": "Register", onsubmit: (e) => {
    e.preventDefault();
    attempt(async () => {
      await api("POST", "/users", {
        email: form.email.value,
        username: form.username.value,
        password: form.password.value,
        code: form.code.value,
      });
      const done = await api("POST", "/sessions", {
        login: form.username.value,
        password: form.password.value,
        device: deviceName(),
      });
      await signIn(done.token);
      navigate("#/", "Welcome to the tree hole.");
    });
  } },
    el("label", { for: "email" }, "Campus e-mail"),
    el("div", { class: "row" },
      el("input", { id: "email", name: "email", type: "email", autocomplete: "email", required: true }),
      el("button", { type: "button", class: "quiet", onclick: () => attempt(async () => {
        await api("POST", "/auth/codes", { email: form.email.value });
        say("A code is on its way to your e-mail; it is valid for 5 minutes.");
      }) }, "Send code")),
    el("label", { for: "code" }, "Code from the e-mail"),
    el("input", { id: "code", name: "code", type: "text", inputmode: "numeric", autocomplete: "one-time-code", required: true }),
    el("label", { for: "username" }, "Username (shown only on what you post under your name)"),
    el("input", { id: "username", name: "username", type: "text", autocomplete: "username", required: true }),
    el("label", { for: "new-password" }, "Password"),
    el("input", { id: "new-password", name: "password", type: "password", autocomplete: "new-password", required: true }),
    el("div", { class: "row" }, el("button", { type: "submit" }, "Register")));
  main().replaceChildren(el("h1", {}, "Register"), form);
}

async function meView() {
  if (!signedIn()) return loginView();
  main().replaceChildren(el("h1", {}, "Me"));
  await attempt(async () => {
    const me = await api("GET", `/me${after()}`);
    main().append(el("p", {}, `Signed in as ${me.username} (${me.email}).`),
      el("button", { type: "button", onclick: () => attempt(async () => {
        await api("DELETE", "/sessions/current");
        signOut();
        navigate("#/", "Logged out.");
      }) }, "Log out"));
    const tasks = await api("GET", "/tasks?limit=20");
    main().append(el("h2", {}, "Your tasks"),
      tasks.items.length
        ? el("ul", {}, ...tasks.items.map((t) => el("li", {}, `${t.model}: ${t.status}`, " ", when(t.created_at))))
        : el("p", { class: "empty" }, "No tasks."));
    const sessions = await api("GET", "/me/sessions");
    main().append(el("h2", {}, "Your devices"),
      el("ul", {}, ...sessions.sessions.map((s) => el("li", {},
        `${s.device || "unnamed device"}${s.current ? " (this one)" : ""}, last seen ${s.last_seen} `,
        s.current ? null : el("button", { type: "button", class: "quiet", onclick: () => attempt(async () => {
          await api("DELETE", `/me/sessions/${s.session_id}`);
          await meView();
        }) }, "End")))));
  });
}

function notificationCard(n) {
  const what = n.notice
    ? `Moderation: your ${n.comment_id ? "comment" : "post"} was ${n.notice.act} (${n.notice.reason})`
    : `${n.name}: ${n.excerpt}`;
  return el("article", { class: "card", "data-seq": n.seq },
    el("p", { class: "meta" }, n.reasons.join(", "), when(n.created_at), n.read ? "read" : "new"),
    el("p", {}, el("a", { href: `#/post/${n.post_id}` }, what)));
}

async function inboxView() {
  if (!signedIn()) return loginView();
  const list = el("section", { id: "notifications", "aria-label": "Notifications", "aria-live": "polite" });
  main().replaceChildren(el("h1", {}, "Inbox"), list);
  unread = 0;
  const link = document.querySelector("a[href='#/inbox']");
  if (link) link.textContent = "Inbox";
  await attempt(async () => {
    const page = await api("GET", `/me/notifications?limit=50${after("&")}`);
    if (!page.items.length) list.append(el("p", { class: "empty" }, "No notifications."));
    list.append(...page.items.filter((n) => !list.querySelector(`[data-seq="${n.seq}"]`)).map(notificationCard));
    if (page.items.length && page.read_up_to < page.items[0].seq) {
      await api("POST", "/me/notifications/read", { up_to: page.items[0].seq });
    }
  }, false);
}

// ---------------------------------------------------------------- routing

async function route() {
  refreshNav();
  const hash = location.hash || "#/";
  const [path, query] = hash.slice(1).split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  if (parts[0] === "post" && parts[1]) await postView(parts[1]);
  else if (parts[0] === "hot") await hotView();
  else if (parts[0] === "search") await searchView(params.get("q"));
  else if (parts[0] === "new") newPostView();
  else if (parts[0] === "login") loginView();
  else if (parts[0] === "register") registerView();
  else if (parts[0] === "me") await meView();
  else if (parts[0] === "inbox") await inboxView();
  else await feedView();
}

hooks.refresh = refreshNav;

window.addEventListener("hashchange", () => {
  say(pending);
  pending = "";
  route();
});
document.addEventListener("DOMContentLoaded", route);
