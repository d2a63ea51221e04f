// Response plans (应急预案, issue 19). Two places use this script:
// * the dispatch console: a panel under the selected incident — activate a plan at a level, change
//   the level, stand down; the task list per agency with status buttons. An agency desk sees and
//   updates only its agency's tasks. It follows plan.* events and the console's incident selection.
// * /plans (admins): the plan library — versions, approve, download TOML/JSON, upload a new version.
// Texts and names come from /api/plans-ui in the caller's language (zh-CN, or English).

const me = await (await fetch("/api/me")).json();
const ui = await (await fetch("/api/plans-ui")).json();
const T = (k) => ui.texts[k] || k;
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const NEXT = { assigned: ["acknowledged", "ack"], acknowledged: ["in_progress", "start"], in_progress: ["done", "done"] };

async function api(method, path, body) {
  const opts = { method, headers: { "X-CSRF-Token": me.csrf_token } };
  if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    const d = data.detail;
    throw new Error(typeof d === "string" ? d : Array.isArray(d) ? d.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ") : JSON.stringify(d));
  }
  return data;
}

function say(el, text, bad) { if (el) { el.textContent = text; el.className = bad ? "error" : "ok"; } }

// ---------------------------------------------------------------- the dispatch console's panel

const panel = { incident: null, plans: [], box: null };

function levelOptions(selected) {
  return Object.entries(ui.legend.levels).map(([k, n]) => `<option value="${k}"${k === selected ? " selected" : ""}>${esc(n)}</option>`).join("");
}

function taskRow(t) {
  const next = NEXT[t.status];
  const mine = !ui.desk_agency || ui.desk_agency === t.agency;
  const btn = next && mine ? `<button data-task="${t.id}" data-to="${next[0]}" data-testid="task-${next[0]}">${esc(T(next[1]))}</button>` : "";
  return `<li data-testid="plan-task" data-task-id="${t.id}" data-status="${t.status}" class="task ${t.status}">
    <span class="task-title">${esc(t.title)}</span> · <b data-testid="task-status">${esc(t.status_name)}</b>
    ${t.note ? `<span class="muted">（${esc(t.note)}）</span>` : ""} ${btn}</li>`;
}

function activationHtml(a) {
  const p = a.proposals || {};
  const agencies = a.agencies.map((g) => `<div class="plan-agency" data-testid="plan-agency" data-agency="${esc(g.agency)}">
      <h4>${esc(ui.legend.agencies[g.agency] || g.agency_name)} <span class="muted">${g.done}/${g.tasks.length}</span></h4>
      <ul>${g.tasks.map(taskRow).join("")}</ul></div>`).join("");
  const controls = ui.desk_agency || a.status !== "active" ? "" : `<div class="row">
      <select data-testid="plan-level-select">${levelOptions(a.level)}</select>
      <button data-act="level" data-testid="plan-change-level">${esc(T("change_level"))}</button>
      <button data-act="end" data-testid="plan-end">${esc(T("end"))}</button></div>`;
  const props = ui.desk_agency ? "" : `<details data-testid="plan-proposals"><summary>${esc(T("proposals"))}</summary>
      ${p.commander ? `<div>${esc(T("commander"))}：${esc(p.commander.name)}</div>` : ""}
      ${(p.units || []).length ? `<div>${esc(T("units"))}：${esc(p.units.join("、"))}</div>` : ""}
      ${(p.resources || []).length ? `<div>${esc(T("resources"))}：${esc(p.resources.map((r) => `${r.name} ${r.quantity}${r.unit}`).join("、"))}</div>` : ""}
      ${p.warning ? `<div>${esc(T("warning"))}：${esc(p.warning)}</div>` : ""}
      ${(p.notify || []).length ? `<div>${esc(T("notify"))}：${esc(p.notify.map((n) => n.name).join("、"))}</div>` : ""}
      <div>${esc(T("history"))}：${esc(a.level_history.map((h) => `${h.from ? h.from + "→" : ""}${h.level} ${h.actor}`).join("；"))}</div></details>`;
  return `<div class="plan-activation" data-testid="plan-activation" data-activation-id="${a.id}" data-level="${a.level}">
    <h3>${esc(a.plan_name)} · <span data-testid="plan-level">${esc(a.level_name)}</span>${a.status !== "active" ? ` · ${esc(T("ended"))}` : ""}</h3>
    ${a.conference_id ? `<div>${esc(T("conference"))}：<a href="/join/${esc(a.conference_id)}" data-testid="plan-conference">${esc(a.conference_id)}</a></div>` : ""}
    ${controls}${agencies}${props}</div>`;
}

async function renderPanel() {
  const box = panel.box;
  const id = panel.incident;
  if (!id) { box.innerHTML = `<p class="muted">${esc(T("pick_incident"))}</p>`; return; }
  let data;
  try { data = await api("GET", `/api/incidents/${encodeURIComponent(id)}/plans`); } catch (e) { box.innerHTML = `<p class="error">${esc(e.message)}</p>`; return; }
  if (id !== panel.incident) return;  // another incident was selected meanwhile
  const approved = panel.plans.filter((p) => p.approved_version);
  // the plans whose hazards cover the incident's category come first (the likely choice)
  const inc = window.dispatchConsole.state.incidents.get(id);
  const covers = (p) => inc && p.hazards.some((h) => h === inc.category || h === `${inc.category}/${inc.subtype}`);
  approved.sort((a, b) => covers(b) - covers(a));
  const form = ui.desk_agency ? `<p class="muted" data-testid="plan-desk">${esc(T("desk"))}：${esc(ui.legend.agencies[ui.desk_agency])}</p>` :
    `<form id="plan-activate" class="row" data-testid="plan-activate-form">
      <select name="plan_key" data-testid="plan-select">${approved.map((p) => `<option value="${esc(p.key)}">${esc(p.name)}</option>`).join("")}</select>
      <select name="level" data-testid="plan-level-new">${levelOptions("II")}</select>
      <input name="reason" placeholder="${esc(T("reason"))}" size="16">
      <button type="submit" data-testid="plan-activate">${esc(T("activate"))}</button>
      ${ui.admin ? `<a href="/plans">${esc(T("manage"))}</a>` : ""}</form>`;
  box.innerHTML = `${form}<p id="plan-panel-msg" role="status"></p>
    ${data.activations.length ? data.activations.map(activationHtml).join("") : `<p class="muted">${esc(T("none"))}</p>`}`;
  const msg = box.querySelector("#plan-panel-msg");
  const run = async (f) => { try { await f(); say(msg, T("ok")); await renderPanel(); } catch (e) { say(msg, e.message, true); } };
  const fa = box.querySelector("#plan-activate");
  if (fa) fa.onsubmit = (e) => { e.preventDefault(); const f = new FormData(fa);
    run(() => api("POST", `/api/incidents/${encodeURIComponent(id)}/plans`, { plan_key: f.get("plan_key"), level: f.get("level"), reason: f.get("reason") })); };
  box.querySelectorAll("[data-task]").forEach((b) => { b.onclick = () => run(() => api("POST", `/api/plan-tasks/${b.dataset.task}`, { status: b.dataset.to })); });
  box.querySelectorAll(".plan-activation").forEach((el) => {
    const aid = el.dataset.activationId;
    const lv = el.querySelector("[data-act=level]");
    if (lv) lv.onclick = () => run(() => api("POST", `/api/plan-activations/${aid}/level`, { level: el.querySelector("[data-testid=plan-level-select]").value }));
    const end = el.querySelector("[data-act=end]");
    if (end) end.onclick = () => run(() => api("POST", `/api/plan-activations/${aid}/end`));
  });
}

async function startDispatchPanel() {
  while (!(window.dispatchConsole && window.dispatchConsole.state)) await new Promise((r) => setTimeout(r, 50));
  const dc = window.dispatchConsole;
  const section = document.createElement("section");
  section.className = "panel plans";
  section.id = "plan-panel";
  section.dataset.testid = "plan-panel";
  section.innerHTML = `<h2>${esc(T("panel"))}</h2><div id="plan-box"></div>`;
  const after = document.getElementById("resource-panel") || document.querySelector(".dispatch-grid");
  after.after(section);
  panel.box = section.querySelector("#plan-box");
  panel.plans = (await api("GET", "/api/plans")).plans;
  panel.incident = dc.state.selected;
  document.addEventListener("incident-selected", (e) => { panel.incident = e.detail; renderPanel(); });
  document.addEventListener("cc-event", (e) => {
    const ev = e.detail;
    if (!ev.topic.startsWith("plan.")) return;
    const inc = (ev.payload.activation || {}).incident_id || ev.payload.incident_id;
    if (inc && inc === panel.incident) renderPanel();
  });
  renderPanel();
  window.planPanel = panel;
}

// ---------------------------------------------------------------- the admins' plan library (/plans)

async function startLibrary() {
  const rows = document.getElementById("plan-rows");
  const msg = document.getElementById("plan-msg");
  const doc = document.getElementById("plan-doc");
  const draw = async () => {
    const data = await api("GET", "/api/plans");
    rows.innerHTML = data.plans.flatMap((p) => p.versions.map((v) => `<tr data-testid="plan-version" data-key="${esc(p.key)}" data-version="${v.version}" data-status="${v.status}">
      <td>${esc(p.name)} <code>${esc(p.key)}</code></td><td>${esc(p.hazards.join(", "))}</td><td>${v.version}</td>
      <td>${esc(T("status." + v.status))}</td><td>${esc(v.created_by)} ${esc(v.created_at.slice(0, 16))}</td><td>${esc(v.approved_by || "")}</td>
      <td><button data-view="${esc(p.key)}" data-v="${v.version}">${esc(T("view"))}</button>
        <a href="/api/plans/${encodeURIComponent(p.key)}/export?format=toml&version=${v.version}" download>TOML</a>
        <a href="/api/plans/${encodeURIComponent(p.key)}/export?format=json&version=${v.version}" download>JSON</a>
        ${v.status === "draft" ? `<button data-approve="${esc(p.key)}" data-v="${v.version}" data-testid="plan-approve">${esc(T("approve"))}</button>` : ""}</td></tr>`)).join("");
    rows.querySelectorAll("[data-approve]").forEach((b) => { b.onclick = async () => {
      try { await api("POST", `/api/plans/${encodeURIComponent(b.dataset.approve)}/versions/${b.dataset.v}/approve`); say(msg, T("ok")); await draw(); } catch (e) { say(msg, e.message, true); } }; });
    rows.querySelectorAll("[data-view]").forEach((b) => { b.onclick = async () => {
      const r = await fetch(`/api/plans/${encodeURIComponent(b.dataset.view)}/export?format=toml&version=${b.dataset.v}`);
      doc.textContent = await r.text(); }; });
  };
  const form = document.getElementById("plan-upload");
  form.onsubmit = async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const file = f.get("file");
    const text = file && file.size ? await file.text() : f.get("text");
    const format = file && file.size && file.name.endsWith(".json") ? "json" : f.get("format");
    try { const out = await api("POST", "/api/plans", { format, text }); say(msg, `${T("ok")}: ${out.key} v${out.version}`); await draw(); } catch (err) { say(msg, err.message, true); }
  };
  await draw();
}

if (document.getElementById("plan-rows")) await startLibrary();
else await startDispatchPanel();
