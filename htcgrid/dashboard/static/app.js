// The htcgrid dashboard: a page per hash route, refreshed every 2 s while it is shown.
"use strict";

const POLL_MS = 2000;
const STATES = ["pending", "processing", "finished", "failed", "cancelled"];
const $ = (id) => document.getElementById(id);
const state = { token: sessionStorage.getItem("htcgrid.token"), user: null, role: null,
  page: null, timer: null, busy: false, cursors: [0], sessionId: null, failedFrom: null, failedNext: null };

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    if (res.status === 401 && path !== "/v1/auth/token") signOut();
    throw new ApiError(res.status, (data && data.error && data.error.message) || res.statusText);
  }
  return data;
}

function td(text, cls) {
  const cell = document.createElement("td");
  cell.textContent = text === null || text === undefined ? "" : String(text);
  if (cls) cell.className = cls;
  return cell;
}

function link(text, href) {
  const a = document.createElement("a");
  a.href = href; a.textContent = text;
  return a;
}

const when = (t) => (t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) : "");
const clock = (t) => new Date(t * 1000).toISOString().slice(11, 19);
const seconds = (s) => (s < 60 ? s.toFixed(1) + " s" : s < 3600 ? (s / 60).toFixed(1) + " min" : (s / 3600).toFixed(1) + " h");

function progress(counts, total, wide) {
  const box = document.createElement("div");
  box.className = "progress" + (wide ? " wide" : "");
  fillProgress(box, counts, total);
  return box;
}

function fillProgress(box, counts, total) {
  box.replaceChildren();
  for (const [key, cls] of [["finished", "bar"], ["failed", "bar failed"], ["cancelled", "bar cancelled"]]) {
    const bar = document.createElement("div");
    bar.className = cls;
    bar.style.width = (100 * (counts[key] || 0) / Math.max(total, 1)).toFixed(2) + "%";
    box.appendChild(bar);
  }
}

// ---- sign-in ----------------------------------------------------------------------

async function whoami() {
  try {
    const me = await api("GET", "/v1/auth/whoami");
    state.user = me.user; state.role = me.role;
  } catch (err) {
    if (err.status === 404) { state.user = "(no auth)"; state.role = "admin"; return true; }
    return false;
  }
  return true;
}

async function signIn(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  try {
    const answer = await api("POST", "/v1/auth/token", { username: $("username").value, password: $("password").value });
    state.token = answer.access_token;
    sessionStorage.setItem("htcgrid.token", state.token);
    state.user = answer.user; state.role = answer.role;
    $("password").value = "";
    if (!location.hash || location.hash === "#/login") location.hash = "#/overview";
    route();
  } catch (err) {
    $("login-error").textContent = err.message;
  }
}

function signOut() {
  state.token = null; state.user = null;
  sessionStorage.removeItem("htcgrid.token");
  show("login");
}

// ---- pages ------------------------------------------------------------------------

const pages = {
  overview: refreshOverview,
  sessions: refreshSessions,
  session: refreshSession,
  agents: refreshAgents,
  functions: refreshFunctions,
};

function show(name) {
  for (const el of document.querySelectorAll(".page")) el.hidden = el.id !== name + "-page";
  $("nav").hidden = name === "login";
  $("logout").hidden = name === "login" || !state.token;
  $("who").textContent = state.user ? `${state.user} (${state.role})` : "";
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("current", a.dataset.page === name);
  state.page = name;
}

async function route() {
  if (!state.user && !(await whoami())) { show("login"); return; }
  const parts = (location.hash || "#/overview").slice(2).split("/");
  let name = parts[0] in pages ? parts[0] : "overview";
  if (name === "session") {
    if (state.sessionId !== parts[1]) { $("task-panel").hidden = true; $("confirm").hidden = true; state.failedFrom = null; }
    state.sessionId = decodeURIComponent(parts[1] || "");
  }
  show(name);
  await refresh();
}

async function refresh() {
  if (state.busy || !state.page || state.page === "login" || document.hidden) return;
  state.busy = true;
  try { await pages[state.page](); } catch (err) { console.warn(err); } finally { state.busy = false; }
}

async function refreshOverview() {
  const o = await api("GET", "/v1/dashboard/overview");
  for (const s of STATES) { const el = $("ov-" + s); if (el) el.textContent = o.tasks[s].toLocaleString(); }
  $("ov-failure-rate").textContent = o.failure_rate === null ? "–" : (100 * o.failure_rate).toFixed(2) + " %";
  $("ov-agents").textContent = o.agents + (o.lost_agents ? ` (+${o.lost_agents} lost)` : "");
  $("ov-slots").textContent = `${o.busy_slots} / ${o.slots}`;
  $("ov-counted").textContent = `tasks of the newest 10,000 sessions, counted at ${clock(o.counted_at)}`;
  const series = [
    { cls: "submitted", points: o.throughput.map((p) => [p.t, p.submitted_per_second]) },
    { cls: "finished", points: o.throughput.map((p) => [p.t, p.finished_per_second]) },
  ];
  charts.lineChart($("throughput-chart"), series, clock, [o.now - 3600, o.now]);
  const body = $("queue-table").tBodies[0];
  body.replaceChildren(...o.queue.map((q) => {
    const tr = document.createElement("tr");
    tr.append(td(q.function), td(q.priority), td(q.pending.toLocaleString()));
    return tr;
  }));
}

function sessionFilter() {
  const params = new URLSearchParams();
  for (const key of ["owner", "state", "function"]) {
    const value = $("filter-" + key).value.trim();
    if (value) params.set(key, value);
  }
  return params;
}

async function refreshSessions() {
  const params = sessionFilter();
  params.set("cursor", state.cursors[state.cursors.length - 1]);
  params.set("limit", "25");
  const page = await api("GET", "/v1/sessions?" + params);
  const body = $("sessions-table").tBodies[0];
  body.replaceChildren(...page.sessions.map((s) => {
    const tr = document.createElement("tr");
    tr.dataset.sessionId = s.session_id;
    const first = td(""); first.appendChild(link(s.session_id, "#/session/" + encodeURIComponent(s.session_id)));
    const bar = td(""); bar.appendChild(progress(s.counts, s.task_count));
    tr.append(first, td(s.owner), td(s.function), td(when(s.created_at)), bar,
      ...STATES.map((k) => td(s.counts[k].toLocaleString(), "count-" + k)));
    return tr;
  }));
  state.nextCursor = page.cursor;
  $("sessions-next").disabled = page.cursor === null;
  $("sessions-first").disabled = state.cursors.length === 1;
}

async function refreshSession() {
  const id = state.sessionId;
  const d = await api("GET", "/v1/dashboard/sessions/" + encodeURIComponent(id));
  if (id !== state.sessionId) return;
  const s = d.session;
  $("session-id").textContent = s.session_id;
  const status = s.cancelled ? "cancelled" : s.complete ? "complete" : "active";
  $("session-id").dataset.state = status;
  $("session-meta").textContent = `${status} · ${s.task_count.toLocaleString()} tasks · function ${s.function} · priority ${s.priority} · owner ${s.owner} · created ${when(s.created_at)}`;
  fillProgress($("session-bar"), s.counts, s.task_count);
  $("session-counts").textContent = STATES.map((k) => `${k} ${s.counts[k].toLocaleString()}`).join(" · ");
  $("cancel-session").disabled = s.complete;
  charts.lineChart($("completion-chart"), [{ cls: "done", points: d.completion.map((p) => [p[0], p[1]]) }], clock);
  charts.histogramChart($("duration-chart"), d.durations);
  charts.histogramChart($("wait-chart"), d.queue_waits);
  $("duration-note").textContent = `from a sample of ${d.durations.sampled} tasks`;
  $("wait-note").textContent = `from a sample of ${d.queue_waits.sampled} tasks`;
  // the first page of failed tasks comes with the session; later pages from the API's index of tasks by state
  let failed = d.failed, next = d.failed_cursor;
  if (state.failedFrom) {
    const p = await api("GET", `/v1/sessions/${encodeURIComponent(id)}/tasks?state=failed&limit=100&cursor=${encodeURIComponent(state.failedFrom)}`);
    if (id !== state.sessionId) return;
    failed = p.tasks; next = p.cursor;
  }
  state.failedNext = next;
  $("failed-next").disabled = next === null;
  $("failed-first").disabled = !state.failedFrom;
  $("failed-note").textContent = `${s.counts.failed.toLocaleString()} failed, 100 a page`;
  $("scan-note").textContent = d.scan_complete
    ? `every ended task read (${d.scanned.toLocaleString()}); at most 100 listed`
    : `${d.scanned.toLocaleString()} ended tasks read so far; more on the next refresh`;
  $("failed-table").tBodies[0].replaceChildren(...failed.map((t) => taskRow(t, [t.attempts, t.error && t.error.type, t.error && t.error.message])));
  $("retried-table").tBodies[0].replaceChildren(...d.retried.map((t) => taskRow(t, [t.state, t.attempts,
    t.error ? `${t.error.type}: ${t.error.message}` : "not recorded: a crash, timeout, lost lease or (with retry_on_error) a handler error"])));
}

function taskRow(t, cells) {
  const tr = document.createElement("tr");
  tr.dataset.taskId = t.task_id;
  const first = td("");
  const a = link(t.task_id, "#");
  a.addEventListener("click", (e) => { e.preventDefault(); openTask(t.task_id); });
  first.appendChild(a);
  tr.append(first, ...cells.map((c, i) => td(c, i === cells.length - 1 ? "wrap" : "")));
  return tr;
}

async function openTask(taskId) {
  $("task-search-error").textContent = "";
  try {
    const t = await api("GET", "/v1/tasks/" + encodeURIComponent(taskId));
    $("task-id").textContent = t.task_id;
    $("task-meta").textContent = `${t.state}${t.cached ? " (cached: answered without running)" : ""} · attempt ${t.attempts} · submitted ${when(t.submitted_at)} · started ${when(t.started_at)} · ended ${when(t.finished_at)}`;
    $("task-error").textContent = t.error ? `${t.error.type}: ${t.error.message}` : "none";
    $("task-traceback").textContent = (t.error && t.error.traceback) || "none";
    $("task-log").textContent = t.log || "(empty)";
    $("task-output").textContent = t.output_url ? `too big to show here: ${t.output_url}` : JSON.stringify(t.output);
    $("task-panel").hidden = false;
  } catch (err) {
    $("task-search-error").textContent = err.message;
  }
}

function findTask(event) {
  event.preventDefault();
  const q = $("task-search").value.trim();
  if (!q) return;
  openTask(/^\d+$/.test(q) ? `${state.sessionId}_${q}` : q);
}

function askCancel() {
  $("confirm-text").textContent = `Cancel session ${state.sessionId}? Its pending and running tasks will be cancelled.`;
  $("confirm").hidden = false;
}

async function cancelSession() {
  $("confirm").hidden = true;
  const answer = await api("POST", "/v1/sessions/" + encodeURIComponent(state.sessionId) + "/cancel");
  $("session-counts").textContent = `cancelled ${answer.total_cancelled_tasks} tasks`;
  await refresh();
}

async function refreshAgents() {
  let d;
  try { d = await api("GET", "/v1/dashboard/agents"); $("agents-error").textContent = ""; }
  catch (err) { $("agents-error").textContent = err.message; return; }
  $("agents-table").tBodies[0].replaceChildren(...d.agents.map((a) => {
    const tr = document.createElement("tr");
    tr.dataset.agentId = a.agent_id;
    if (a.lost) tr.className = "lost";
    tr.append(td(a.agent_id), td(a.lost ? "lost" : "alive", "status"), td(a.host), td(a.pid), td(a.slots),
      td(a.running === null || a.running === undefined ? "" : a.running, "running"),
      td(a.functions ? a.functions.join(", ") : "all"), td(a.version), td(when(a.started_at)), td(seconds(a.heartbeat_age)));
    return tr;
  }));
}

async function refreshFunctions() {
  const d = await api("GET", "/v1/functions");
  const rows = [];
  for (const f of d.functions) {
    for (const v of f.versions) {
      const tr = document.createElement("tr");
      const action = td("");
      if (state.role === "admin" && v.version !== f.current) {
        const b = document.createElement("button");
        b.textContent = "Roll back to this";
        b.addEventListener("click", () => rollback(f.name, v.version));
        action.appendChild(b);
      }
      tr.append(td(f.name), td(v.version), td(v.version === f.current ? "current" : ""), td(v.handler), td(v.runtime),
        td(v.sha256.slice(0, 16) + "…"), td(when(v.created_at)), action);
      rows.push(tr);
    }
  }
  $("functions-table").tBodies[0].replaceChildren(...rows);
}

async function rollback(name, version) {
  if (!window.confirm(`Make version ${version} of ${name} current?`)) return;
  try { await api("POST", `/v1/functions/${encodeURIComponent(name)}/rollback`, { version }); $("functions-error").textContent = ""; }
  catch (err) { $("functions-error").textContent = err.message; }
  await refresh();
}

// ---- wiring -----------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", signIn);
  $("logout").addEventListener("click", signOut);
  $("session-filter").addEventListener("submit", (e) => { e.preventDefault(); state.cursors = [0]; refresh(); });
  $("sessions-next").addEventListener("click", () => { if (state.nextCursor !== null) { state.cursors.push(state.nextCursor); refresh(); } });
  $("sessions-first").addEventListener("click", () => { state.cursors = [0]; refresh(); });
  $("failed-next").addEventListener("click", () => { if (state.failedNext) { state.failedFrom = state.failedNext; refresh(); } });
  $("failed-first").addEventListener("click", () => { state.failedFrom = null; refresh(); });
  $("task-find").addEventListener("submit", findTask);
  $("cancel-session").addEventListener("click", askCancel);
  $("confirm-yes").addEventListener("click", cancelSession);
  $("confirm-no").addEventListener("click", () => { $("confirm").hidden = true; });
  window.addEventListener("hashchange", route);
  state.timer = setInterval(refresh, POLL_MS);
  route();
});
