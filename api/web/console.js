// The operators' console: projections and their rebuilds, the pseudonymised event log, the
// statistics as charts, models and workers. Admins only, through the public API (the routes
// under /api/v1/admin, /models, /workers and /stats), nothing else.
"use strict";
/* global $, el, say, api, after, signedIn, when, attempt, hooks, loginForm, uPlot */

const main = () => $("#main");
let timer = null; // the live refresh of the projections view
// Rebuilds started here, by projection: the generation they replace. Once the table shows a
// newer generation, the rebuild's bar stands at 100%.
const started = new Map();
// The charts on show, resized with the window.
let plots = [];
window.addEventListener("resize", () => {
  for (const p of plots) p.setSize({ width: chartWidth(), height: p.height });
});

function refreshNav() {
  for (const a of document.querySelectorAll("[data-signed-in]")) a.hidden = !signedIn();
}

function stopTimer() {
  if (timer) clearInterval(timer);
  timer = null;
}

// ---------------------------------------------------------------- sign in

function loginView() {
  const form = loginForm("Admin e-mail or username", "Console", async () => {
    const me = await api("GET", "/me");
    if (!me.is_admin) say("This account is not an admin: the console's views will refuse it.", true);
    location.hash = "#/projections";
  });
  main().replaceChildren(el("h1", {}, "Console"), form);
}

// ---------------------------------------------------------------- projections

async function projectionsView() {
  const table = el("table", { id: "projections" },
    el("caption", {}, "Refreshed every second"),
    el("thead", {}, el("tr", {}, ...["Projection", "Version", "Generation", "Position", "Lag (events)",
      "Lag (s)", "Events/s", "State", "Rebuild", "Last error", ""].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody"));
  main().replaceChildren(el("h1", {}, "Projections"), el("div", { class: "scroll" }, table));
  const draw = async () => {
    const data = await api("GET", "/admin/projections");
    const rows = data.projections.map((p) => {
      const r = p.rebuild;
      const was = started.get(p.name);
      const swapped = !r && was !== undefined && p.generation > was;
      const progress = r
        ? Math.min(99, Math.round((100 * (r.position || 0)) / Math.max(1, r.target || data.head)))
        : swapped ? 100 : null;
      return el("tr", { "data-projection": p.name },
        el("th", { scope: "row" }, p.name),
        el("td", { class: "num", "data-field": "version" }, p.version),
        el("td", { class: "num", "data-field": "generation" }, p.generation),
        el("td", { class: "num" }, p.position),
        el("td", { class: "num" }, p.lag_events),
        el("td", { class: "num" }, p.lag_seconds.toFixed(1)),
        el("td", { class: "num" }, Math.round(p.events_per_second)),
        el("td", { "data-field": "state" }, p.state),
        el("td", { "data-field": "rebuild" }, progress !== null
          ? el("span", {}, el("progress", { max: "100", value: String(progress), "aria-label": `rebuild of ${p.name}` }),
            swapped ? " 100%, swapped in" : ` ${progress}%`)
          : "—"),
        el("td", {}, p.last_error || ""),
        el("td", {}, el("button", { type: "button", class: "quiet", disabled: !!r, onclick: () => attempt(async () => {
          started.set(p.name, p.generation);
          await api("POST", `/admin/projections/${p.name}/rebuild`);
          say(`Rebuilding ${p.name}: the new generation catches up beside the live one, then takes its place.`);
          await draw();
        }) }, "Rebuild")));
    });
    table.tBodies[0].replaceChildren(...rows);
  };
  await attempt(draw, false);
  timer = setInterval(() => attempt(draw, false), 1000);
}

// ---------------------------------------------------------------- the event log

async function eventsView(params) {
  const form = el("form", { class: "filters", "aria-label": "Filter events", onsubmit: (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const name of ["start_after", "until", "stream", "type", "correlation"]) {
      if (form[name].value.trim()) q.set(name, form[name].value.trim());
    }
    location.hash = `#/events?${q}`;
  } },
    ...[["start_after", "After position"], ["until", "Up to position"], ["stream", "Stream"],
      ["type", "Event type"], ["correlation", "Correlation id"]].map(([name, label]) =>
      el("div", {}, el("label", { for: `f-${name}` }, label),
        el("input", { id: `f-${name}`, name, type: "text", value: params.get(name) || "" }))),
    el("div", {}, el("button", { type: "submit" }, "Show")));
  const list = el("section", { "aria-label": "Events" });
  main().replaceChildren(el("h1", {}, "Event log"),
    el("p", { class: "meta" }, "Pseudonymised as analysts see it: no user id, e-mail or secret."),
    form, list);
  await attempt(async () => {
    const q = new URLSearchParams(params);
    q.set("limit", "50");
    const page = await api("GET", `/admin/events?${q}`);
    if (!page.items.length) list.append(el("p", { class: "empty" }, "No events."));
    for (const e of page.items) list.append(eventCard(e));
    if (page.next_start_after) {
      const next = new URLSearchParams(params);
      next.set("start_after", page.next_start_after);
      list.append(el("p", {}, el("a", { href: `#/events?${next}` }, "Next page")));
    }
  }, false);
}

function eventCard(e) {
  const follow = (name, value) => el("button", { type: "button", class: "link",
    onclick: () => { location.hash = `#/events?${new URLSearchParams({ [name]: value })}`; } }, value);
  const m = e.metadata || {};
  return el("article", { class: "card", "data-position": e.position },
    el("h2", {}, `${e.position} · ${e.type}`),
    el("p", { class: "meta" }, "stream ", follow("stream", e.stream), ` v${e.version}`, when(e.occurred_at)),
    el("p", { class: "meta" },
      m.correlation_id ? el("span", {}, "correlation ", follow("correlation", m.correlation_id)) : null,
      m.causation_id ? el("span", {}, `causation ${m.causation_id}`) : null,
      m.actor ? el("span", {}, `actor ${m.actor}`) : null),
    el("pre", {}, JSON.stringify(e.data, null, 2)));
}

// ---------------------------------------------------------------- statistics

async function statsView() {
  main().replaceChildren(el("h1", {}, "Statistics"));
  await attempt(async () => {
    const to = new Date();
    const from = new Date(to.getTime() - 29 * 86400e3);
    const day = (d) => d.toISOString().slice(0, 10);
    const daily = await api("GET", `/stats/daily?from=${day(from)}&to=${day(to)}${after("&")}`);
    const xs = daily.days.map((d) => Date.parse(`${d.day}T00:00:00Z`) / 1000);
    const series = [
      ["Active users", "#1f6b4a", daily.days.map((d) => d.active_users)],
      ["Posts", "#2b5fb3", daily.days.map((d) => d.posts)],
      ["Comments", "#b3552b", daily.days.map((d) => d.comments)],
      ["Tasks", "#7a3fb0", daily.days.map((d) => d.tasks.published)],
    ];
    const line = el("div", { class: "chart", id: "chart-daily", role: "img", "aria-label": "Users, posts, comments and tasks per day, last 30 days" });
    main().append(el("h2", {}, "Per day, last 30 days"), line);
    plots = [];
    plots.push(new uPlot({
      width: chartWidth(), height: 280,
      series: [{}, ...series.map(([label, stroke]) => ({ label, stroke, width: 2 }))],
      axes: [{}, { label: "count" }],
    }, [xs, ...series.map((s) => s[2])], line));
    window.chartData = { daily: series.map(([label, , values]) => ({ label, values })) };

    const overview = await api("GET", `/stats/overview${after()}`);
    const models = Object.keys(overview.tasks.by_model);
    const statuses = ["published", "succeeded", "failed", "cancelled"];
    const bars = el("div", { class: "chart", id: "chart-tasks", role: "img", "aria-label": "Tasks by model and status" });
    main().append(el("h2", {}, "Tasks by model and status"), bars);
    if (!models.length) {
      bars.append(el("p", { class: "empty" }, "No tasks yet."));
    } else {
      // One bar per model and status, side by side.
      const labels = models.flatMap((m) => statuses.map((s) => `${m} ${s}`));
      const counts = models.flatMap((m) => statuses.map((s) => overview.tasks.by_model[m][s]));
      plots.push(new uPlot({
        width: chartWidth(), height: 260,
        scales: { x: { time: false, range: [-0.5, labels.length - 0.5] } },
        axes: [
          { values: (_, ticks) => ticks.map((t) => labels[t] ?? ""), splits: () => labels.map((_, i) => i), rotate: -30, size: 70 },
          { label: "tasks" },
        ],
        series: [{}, { label: "tasks", fill: "#2b5fb3", stroke: "#2b5fb3", paths: uPlot.paths.bars({ size: [0.6, 80] }) }],
      }, [labels.map((_, i) => i), counts], bars));
      window.chartData.tasks = { labels, counts };
    }
  }, false);
}

function chartWidth() {
  return Math.min(1040, Math.max(280, main().clientWidth - 60));
}

// ---------------------------------------------------------------- models and workers

async function modelsView() {
  main().replaceChildren(el("h1", {}, "Models and workers"));
  await attempt(async () => {
    const [models, workers] = await Promise.all([api("GET", `/models${after()}`), api("GET", `/workers${after()}`)]);
    main().append(el("h2", {}, "Models"), el("div", { class: "scroll" }, el("table", {},
      el("thead", {}, el("tr", {}, ...["Name", "Kind", "At once", "Enabled", ""].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, ...models.map((m) => el("tr", {},
        el("th", { scope: "row" }, m.name), el("td", {}, m.kind), el("td", { class: "num" }, m.max_concurrent),
        el("td", {}, m.enabled ? "yes" : "no"),
        el("td", {}, el("button", { type: "button", class: "quiet", onclick: () => attempt(async () => {
          await api("POST", `/models/${encodeURIComponent(m.name)}/${m.enabled ? "disable" : "enable"}`);
          await modelsView();
        }) }, m.enabled ? "Disable" : "Enable"))))))));
    const modelForm = el("form", { class: "card", "aria-label": "Register a model", onsubmit: (e) => {
      e.preventDefault();
      attempt(async () => {
        await api("POST", "/models", {
          name: modelForm.name.value,
          kind: modelForm.kind.value,
          max_concurrent: Number(modelForm.max.value),
          input_schema: JSON.parse(modelForm.schema.value || "{}"),
        });
        await modelsView();
      });
    } },
      el("label", { for: "m-name" }, "Name"), el("input", { id: "m-name", name: "name", type: "text", required: true }),
      el("label", { for: "m-kind" }, "Kind"), el("input", { id: "m-kind", name: "kind", type: "text", value: "text-to-image", required: true }),
      el("label", { for: "m-max" }, "Tasks at once"), el("input", { id: "m-max", name: "max", type: "text", inputmode: "numeric", value: "4" }),
      el("label", { for: "m-schema" }, "Input schema (JSON Schema)"), el("textarea", { id: "m-schema", name: "schema" }, '{"type": "object"}'),
      el("div", { class: "row" }, el("button", { type: "submit" }, "Register model")));
    main().append(modelForm, el("h2", {}, "Workers"), el("div", { class: "scroll" }, el("table", {},
      el("thead", {}, el("tr", {}, ...["Name", "Models", "Revoked", ""].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, ...workers.map((w) => el("tr", {},
        el("th", { scope: "row" }, w.name), el("td", {}, w.models.join(", ")), el("td", {}, w.revoked ? "yes" : "no"),
        el("td", {}, w.revoked ? "" : el("button", { type: "button", class: "danger", onclick: () => attempt(async () => {
          await api("DELETE", `/workers/${w.worker_id}`);
          await modelsView();
        }) }, "Revoke"))))))));
    const workerForm = el("form", { class: "card", "aria-label": "Register a worker", onsubmit: (e) => {
      e.preventDefault();
      attempt(async () => {
        const done = await api("POST", "/workers", {
          name: workerForm.name.value,
          models: workerForm.models.value.split(/[\s,]+/).filter(Boolean),
        });
        await modelsView();
        say(`Worker registered. Its token, shown this once: ${done.token}`);
      });
    } },
      el("label", { for: "w-name" }, "Name"), el("input", { id: "w-name", name: "name", type: "text", required: true }),
      el("label", { for: "w-models" }, "Models (separated by spaces)"), el("input", { id: "w-models", name: "models", type: "text", required: true }),
      el("div", { class: "row" }, el("button", { type: "submit" }, "Register worker")));
    main().append(workerForm);
  }, false);
}

// ---------------------------------------------------------------- routing

async function route() {
  stopTimer();
  refreshNav();
  if (!signedIn()) return loginView();
  const [path, query] = (location.hash || "#/projections").slice(1).split("?");
  const params = new URLSearchParams(query || "");
  if (path === "/events") await eventsView(params);
  else if (path === "/stats") await statsView();
  else if (path === "/models") await modelsView();
  else await projectionsView();
}

hooks.refresh = refreshNav;
window.addEventListener("hashchange", () => {
  say("");
  route();
});
document.addEventListener("DOMContentLoaded", route);
