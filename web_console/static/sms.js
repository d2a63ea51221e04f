// 短信平台 (issue 20): the outbox, each number's delivery with report times, the gateway's state, retry.
// Live: every sms.* event of /ws/events (event_stream.js) reloads the list and the open message
// (coalesced to one reload per 300 ms); the gateway's state is read every 5 s.
const cfg = JSON.parse(document.getElementById("sms-config").textContent);
const T = cfg.t;
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const fmt = (iso) => (iso ? new Date(iso).toLocaleString(cfg.lang) : "");
const tr = (key, vars) => String(T[key] ?? key).replace(/\{(\w+)\}/g, (_, k) => String(vars[k] ?? ""));
let selected = null;

async function api(method, path, body) {
  const r = await fetch(path, { method, credentials: "same-origin",
    headers: { "X-CSRF-Token": cfg.csrf, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    const d = data.detail;
    const msg = Array.isArray(d) ? d.map((e) => `${e.loc.slice(1).join(".")}: ${e.msg}`).join("; ") : (d || r.status);
    throw new Error(`${T.failed_request}: ${msg}`);
  }
  return data;
}

function overall(m) {  // one word for a message: pending while any number waits in our queue
  if (m.queued > 0) return "queued";
  if (m.failed > 0) return m.delivered > 0 ? "mixed" : "failed";
  if (m.recipients > 0 && m.delivered === m.recipients) return "delivered";
  return "submitted";
}

function row(m) {
  const st = overall(m);
  return `<tr class="msg${m.id === selected ? " selected" : ""}" data-id="${m.id}" data-testid="msg-${m.id}" data-status="${st}">
      <td>${m.id}</td><td>${esc(fmt(m.created_at))}</td><td data-testid="source-${m.id}">${esc(T["source." + m.source])}</td>
      <td class="text" title="${esc(m.text)}">${esc(m.text)}</td><td>${m.parts}</td>
      <td class="st-${st}" data-testid="status-${m.id}">${esc(T["status." + st])}<br><small>${esc(tr("counts", { ...m, total: m.recipients }))}</small></td></tr>`;
}

function queued(view) {  // a new message, from its sms.queued event: shown at once, as it was queued
  const c = view.counts || {};
  const m = { ...view, recipients: view.recipients.length, delivered: c.delivered || 0, failed: c.failed || 0,
              queued: c.queued || 0 };
  const fs = $("filter-status").value, fo = $("filter-source").value;
  if ((fs && !(c[fs] > 0)) || (fo && fo !== m.source) || document.querySelector(`#outbox tr[data-id="${m.id}"]`)) return;
  const body = $("outbox");
  if (!body.querySelector("tr.msg")) body.innerHTML = "";
  body.insertAdjacentHTML("afterbegin", row(m));
}

async function loadList() {
  const q = new URLSearchParams({ limit: "100" });
  if ($("filter-status").value) q.set("status", $("filter-status").value);
  if ($("filter-source").value) q.set("source", $("filter-source").value);
  const { messages } = await api("GET", `/api/sms/messages?${q}`);
  $("outbox").innerHTML = messages.length ? messages.map(row).join("") : `<tr><td colspan="6">${esc(T.none)}</td></tr>`;
}

async function loadDetail() {
  if (selected === null) return;
  const m = await api("GET", `/api/sms/messages/${selected}`);
  const retryable = m.recipients.some((r) => r.status === "queued" || r.status === "failed");
  $("detail").innerHTML = `<div class="box" data-testid="detail-${m.id}">
    <b>#${m.id}</b> ${esc(fmt(m.created_at))} · ${esc(m.created_by)} · ${esc(m.reference)}<br>
    <p>${esc(m.text)}</p><small>${esc(m.encoding)} · ${m.parts} ${esc(T.parts)}</small>
    ${cfg.can_retry && retryable ? `<button id="retry" data-testid="retry">${esc(T.retry)}</button>` : ""}
    <span id="retry-result" data-testid="retry-result"></span>
    <table><thead><tr><th>${esc(T.number)}</th><th>${esc(T.name)}</th><th>${esc(T.via)}</th><th>${esc(T.state)}</th>
      <th>${esc(T.attempts)}</th><th>${esc(T.submitted_at)}</th><th>${esc(T.reported_at)}</th><th>${esc(T.error)}</th></tr></thead>
    <tbody>${m.recipients.map((r) => `<tr data-testid="recipient-${esc(r.number)}" data-status="${esc(r.status)}">
      <td>${esc(r.number)}</td><td>${esc(r.name)}</td><td>${esc(r.via)}</td>
      <td class="st-${esc(r.status)}">${esc(T["status." + r.status])}</td><td>${r.attempts}</td>
      <td>${esc(fmt(r.submitted_at))}</td><td data-testid="reported-${esc(r.number)}">${esc(fmt(r.reported_at))}</td>
      <td class="error">${esc(r.error)}</td></tr>`).join("")}</tbody></table></div>`;
  const btn = $("retry");
  if (btn) btn.onclick = async () => {
    try {
      const r = await api("POST", `/api/sms/messages/${m.id}/retry`);
      $("retry-result").textContent = tr("retried", { n: r.requeued });
    } catch (e) { $("retry-result").textContent = e.message; }
    schedule();
  };
}

async function loadGateway() {
  try {
    const g = await api("GET", "/api/sms/gateway");
    const el = $("gateway-state");
    el.textContent = g.up ? T.up : T.down;
    el.className = g.up ? "up" : "down";
    el.dataset.up = String(g.up);
    $("gateway-detail").innerHTML = `<small>${esc(g.bearerbox)} · ${esc(T.smsc)}: ${esc(g.smsc || "-")}</small><br>
      <span data-testid="gateway-queue">${esc(tr("gateway_queue", { n: g.queued }))}</span> ·
      <span data-testid="waiting" data-n="${g.waiting}">${esc(tr("waiting", { n: g.waiting }))}</span>`;
  } catch (e) {
    $("gateway-state").textContent = T.down;
    $("gateway-state").dataset.up = "false";
    $("gateway-detail").textContent = e.message;
  }
}

async function reload() {
  try {
    await loadList();
    await loadDetail();
    if (cfg.enabled) $("error").textContent = "";
  } catch (e) { $("error").textContent = e.message; }
}

let timer = null;
function schedule() {
  if (timer !== null) return;
  timer = setTimeout(async () => { timer = null; await reload(); await loadGateway(); }, 300);
}

$("outbox").addEventListener("click", (e) => {
  const row = e.target.closest("tr.msg");
  if (!row) return;
  selected = Number(row.dataset.id);
  reload();
});
$("filter-status").onchange = reload;
$("filter-source").onchange = reload;
const form = $("send-form");
if (form) form.onsubmit = async (e) => {
  e.preventDefault();
  try {
    const numbers = form.numbers.value.split(/[,，;；\s]+/).filter(Boolean);
    const m = await api("POST", "/api/sms/messages", { text: form.text.value, kind: "bulletin", numbers });
    $("send-result").textContent = `${T.sent_ok} #${m.id}`;
    selected = m.id;
    form.reset();
  } catch (err) { $("send-result").textContent = err.message; }
  schedule();
};

if (cfg.enabled) {
  reload();
  loadGateway();
  setInterval(loadGateway, 5000);
  window.openEventStream({
    topics: "sms.*",
    onEvent: (ev) => {
      if (ev.topic === "sms.queued" && ev.payload && ev.payload.message) queued(ev.payload.message);
      if (ev.topic.startsWith("sms.")) schedule();
    },
    onState: (up) => { $("live").textContent = up ? T.live : T.offline; $("live").dataset.up = String(up); },
    beforeReconnect: reload,
  });
}
