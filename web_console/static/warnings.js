// 预警发布 (issue 20): draft, submit, approve/reject, update, cancel; CAP messages and deliveries.
import { drawWarnings, loadActive } from "./warnings_layer.js";

const cfg = JSON.parse(document.getElementById("warnings-config").textContent);
const T = cfg.t;
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

async function api(method, path, body) {
  const r = await fetch(path, { method, credentials: "same-origin",
    headers: { "X-CSRF-Token": cfg.csrf, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    const d = data.detail;
    const msg = d && d.field ? `${d.field}: ${d.reason}` : Array.isArray(d) ? d.map((e) => `${e.loc.slice(1).join(".")}: ${e.msg}`).join("; ") : (d || r.status);
    throw new Error(`${T.error}: ${msg}`);
  }
  return data;
}

const map = L.map("warning-map").setView([cfg.center[1], cfg.center[0]], 9);
const layer = L.layerGroup().addTo(map);

function areaChoices() {
  const box = $("area-choices");
  if (!box) return;
  box.innerHTML = cfg.areas.map((a) => `<label style="margin-left:${a.county ? 16 : 0}px"><input type="checkbox" name="area" value="${esc(a.code)}" data-name="${esc(a.name)}" data-testid="area-${esc(a.code)}"> ${esc(a.name)}</label>`).join("");
}

function contentFromForm(form) {
  const checked = [...form.querySelectorAll("input[name=area]:checked")];
  const hours = Number(form.hours.value || 12);
  return {
    event: form.event.value, headline: form.headline.value, description: form.description.value,
    instruction: form.instruction.value, severity: form.severity.value,
    expires: new Date(Date.now() + hours * 3600e3).toISOString(),
    areas: checked.map((c) => ({ desc: c.dataset.name, adcodes: [c.value] })),
  };
}

function actions(w) {
  const b = [];
  const btn = (act, label) => `<button data-act="${act}" data-id="${esc(w.id)}" data-testid="${act}-${esc(w.id)}">${esc(label)}</button>`;
  if (cfg.can_draft && w.state === "draft") b.push(btn("submit", T.submit));
  if (cfg.can_approve && w.state === "pending") { b.push(btn("approve", T.approve)); b.push(btn("reject", T.reject)); }
  if (cfg.can_draft && w.state === "active") { b.push(btn("update", T.update)); b.push(btn("cancel", T.cancel)); }
  return b.join(" ");
}

async function reload() {
  const all = await api("GET", "/api/warnings");
  $("warning-list").innerHTML = all.length ? all.map((w) => `
    <div class="card sev-${esc(w.content.severity)}" data-testid="warning-${esc(w.id)}" data-state="${esc(w.state)}">
      <a href="#" data-show="${esc(w.id)}"><b>${esc(w.content.headline)}</b></a><br>
      <span data-testid="state-${esc(w.id)}">${esc(T["state." + w.state])}</span>
      ${w.state === "pending" ? "· " + esc(T["proposal." + w.proposal]) : ""}
      · ${esc(T["sev." + w.content.severity])} · ${esc(w.content.areas.map((a) => a.desc).join("、"))}
      ${w.reject_reason ? `<br>${esc(T.reason)}: ${esc(w.reject_reason)}` : ""}
      <div>${actions(w)}</div>
    </div>`).join("") : `<p>${esc(T.none)}</p>`;
  drawWarnings(layer, await loadActive());
}

async function show(id) {
  const w = await api("GET", `/api/warnings/${encodeURIComponent(id)}`);
  $("warning-detail").innerHTML = `
    <h3>${esc(w.content.headline)}</h3><p>${esc(w.content.description)}</p>
    <h4>${esc(T.messages)}</h4>
    <table data-testid="cap-messages"><tr><th>msgType</th><th>identifier</th><th>${esc(T.references)}</th><th></th></tr>
    ${w.cap_messages.map((m) => `<tr><td>${esc(m.msg_type)}</td><td>${esc(m.identifier)}</td><td>${esc(m.references)}</td>
      <td><a href="/api/warnings/cap/${encodeURIComponent(m.identifier)}.xml" data-testid="cap-${esc(m.msg_type)}">${esc(T.download)}</a></td></tr>`).join("")}</table>
    <h4>${esc(T.deliveries)}</h4>
    <table data-testid="deliveries"><tr><th>${esc(T.channel)}</th><th>${esc(T.recipient)}</th><th>${esc(T.status)}</th><th></th></tr>
    ${w.deliveries.map((d) => `<tr data-testid="delivery-${esc(d.recipient)}"><td>${esc(d.channel)}</td><td>${esc(d.recipient)}</td>
      <td>${esc(T["delivery." + d.status] || d.status)}</td><td>${esc(d.detail)}</td></tr>`).join("")}</table>
    <h4>${esc(T.steps)}</h4>
    <ol>${w.steps.map((s) => `<li>${esc(new Date(s.at).toLocaleString())} ${esc(s.actor)} (${esc(s.role)}) ${esc(s.action)} ${esc(s.note)}</li>`).join("")}</ol>`;
}

document.addEventListener("click", async (ev) => {
  const el = ev.target.closest("[data-act],[data-show]");
  if (!el) return;
  ev.preventDefault();
  try {
    if (el.dataset.show) { await show(el.dataset.show); return; }
    const id = el.dataset.id, act = el.dataset.act;
    if (act === "reject" || act === "cancel") {
      const reason = prompt(T.reason) ?? "";
      await api("POST", `/api/warnings/${id}/${act}`, { reason });
    } else if (act === "update") {
      const form = $("draft-form");
      await api("POST", `/api/warnings/${id}/update`, contentFromForm(form));
    } else {
      await api("POST", `/api/warnings/${id}/${act}`);
    }
    await reload();
    await show(id);
  } catch (e) {
    alert(e.message);
  }
});

$("draft-form")?.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("draft-error").textContent = "";
  try {
    const body = contentFromForm(ev.target);
    if (ev.target.dataset.planActivation) body.plan_activation = Number(ev.target.dataset.planActivation);
    const w = await api("POST", "/api/warnings", body);
    await reload();
    await show(w.id);
  } catch (e) {
    $("draft-error").textContent = e.message;
  }
});

areaChoices();
const fromPlan = new URLSearchParams(location.search).get("plan_activation");
if (fromPlan && $("draft-form")) {
  try {
    const d = await api("GET", `/api/warnings/plan-draft/${encodeURIComponent(fromPlan)}`);
    const f = $("draft-form");
    f.event.value = d.event; f.headline.value = d.headline; f.description.value = d.description;
    f.dataset.planActivation = d.plan_activation;
  } catch (e) { $("draft-error").textContent = e.message; }
}
await reload();
setInterval(reload, 10000);
window.ccWarningsPage = { reload, show };
