// Monitoring (监测, issue 20): gauges as live markers coloured by state on the host page's map (the
// dispatch console's, or the leaders' /command view's `gauges` layer), a side panel with the chosen
// gauge's chart (last 24 h / 7 d, chart.js, threshold lines) and the alarm list with acknowledge
// (dispatchers; leaders and chairs read). Live from /ws/events?topics=monitoring.* ; texts from
// /api/monitoring/gauges in the caller's language.
/* global L, Chart */

const STATE_COLOURS = { normal: "#2e7d32", warning: "#f57c00", critical: "#d32f2f", fault: "#757575", nodata: "#b0bec5" };
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const root = document.getElementById("monitoring-panel");

// Gauges get a pane above the markers: an alarm's incident sits on its gauge and must not hide it.
function pane(map) {
  if (!map.getPane("ccGauges")) map.createPane("ccGauges").style.zIndex = 650;
  return "ccGauges";
}

async function host() {
  for (let i = 0; i < 600; i++) {  // the page's own module creates the map; wait for it (≤ 60 s)
    const cmd = window.ccCommand;
    if (cmd && cmd.layers && cmd.layers.gauges) return { layer: cmd.layers.gauges, pane: pane(cmd.map) };
    const dc = window.dispatchConsole;
    if (dc && dc.map) return { layer: L.layerGroup().addTo(dc.map), pane: pane(dc.map) };
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("monitoring: no map on this page");
}

const me = await (await fetch("/api/me")).json();
let ui = await get("/api/monitoring/gauges");
const T = (k) => ui.texts[k] || k;
const gauges = new Map(ui.gauges.map((g) => [g.id, g]));
const markers = new Map();
const view = { gauge: null, span: "24h", chart: null, alarms: [] };
const { layer, pane: gaugePane } = await host();

async function get(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" } });
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

const name = (g) => (ui.lang === "en" && g.name_en) ? g.name_en : g.name;
const stateOf = (g) => (g.value === null || g.value === undefined) ? "nodata" : g.state;
const fmt = (v) => (v === null || v === undefined) ? "–" : Number(v).toFixed(2).replace(/\.?0+$/, "");
const when = (t) => t ? new Date(t * 1000).toLocaleString(ui.lang === "en" ? "en-GB" : "zh-CN", { hour12: false }) : "–";

// ---------------------------------------------------------------- markers

function drawGauge(g) {
  const st = stateOf(g);
  let m = markers.get(g.id);
  if (!m) {
    m = L.circleMarker([g.position[1], g.position[0]], { radius: 8, weight: 2, color: "#fff", fillOpacity: 0.95,
      className: "gauge-marker", pane: gaugePane }).addTo(layer);
    m.on("click", () => select(g.id));
    markers.set(g.id, m);
  }
  m.setStyle({ fillColor: STATE_COLOURS[st], radius: st === "critical" ? 11 : st === "warning" ? 10 : 8 });
  if (st === "warning" || st === "critical") m.bringToFront();  // an alarming gauge is never under a quiet neighbour
  m.bindTooltip(`${esc(name(g))} · ${fmt(g.value)} ${esc(g.unit)} · ${esc(T("state_" + st))}`);
  const el = m.getElement && m.getElement();
  if (el) { el.setAttribute("data-gauge", g.id); el.setAttribute("data-state", st); el.setAttribute("data-testid", "gauge-marker"); }
}

// ---------------------------------------------------------------- the panel

function skeleton() {
  root.innerHTML = `
    <h2>${esc(T("panel"))} <span class="mqtt" data-testid="mqtt-status">${ui.mqtt.connected ? "" : esc(T("mqtt_down"))}</span></h2>
    <div class="gauge-detail" data-testid="gauge-detail"><p class="muted">${esc(T("select_gauge"))}</p></div>
    <h3>${esc(T("alarms"))}</h3>
    <ul class="gauge-alarms" data-testid="monitoring-alarms"></ul>`;
  root.querySelector(".gauge-alarms").addEventListener("click", async (e) => {
    const b = e.target.closest("button[data-ack]");
    if (!b) return;
    b.disabled = true;
    const r = await fetch(`/api/monitoring/alarms/${b.dataset.ack}/acknowledge`, { method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": me.csrf_token }, body: "{}" });
    if (!r.ok && r.status !== 409) b.disabled = false;
    await loadAlarms();
  });
}

function thresholdText(g, t) {
  const n = ui.lang === "en" && t.name_en ? t.name_en : t.name;
  return `${esc(n)} ${fmt(t.value)} ${esc(g.unit)}`;
}

function renderDetail() {
  const box = root.querySelector(".gauge-detail");
  const g = gauges.get(view.gauge);
  if (!g) return;
  const st = stateOf(g);
  box.innerHTML = `
    <div class="gauge-head"><b data-testid="gauge-name">${esc(name(g))}</b> · ${esc(T("kind_" + g.kind))}
      ${g.position_quality === "made-up" ? `<small class="muted">${esc(T("made_up"))}</small>` : ""}
      <button class="close" data-testid="gauge-close">${esc(T("close"))}</button></div>
    <div><span class="gauge-state state-${st}" data-testid="gauge-state" data-state="${st}">${esc(T("state_" + st))}</span>
      ${esc(T("value"))} <b data-testid="gauge-value">${fmt(g.value)}</b> ${esc(g.unit)} · ${esc(when(g.at))}</div>
    <div class="muted">${esc(T("thresholds"))}: ${g.thresholds.map((t) => thresholdText(g, t)).join("；") || "–"}</div>
    <div class="spans">
      <button data-span="24h" class="${view.span === "24h" ? "on" : ""}" data-testid="span-24h">${esc(T("span_24h"))}</button>
      <button data-span="7d" class="${view.span === "7d" ? "on" : ""}" data-testid="span-7d">${esc(T("span_7d"))}</button></div>
    <div class="gauge-chart-box"><canvas data-testid="gauge-chart"></canvas></div>`;
  box.querySelector(".close").onclick = () => { view.gauge = null; box.innerHTML = `<p class="muted">${esc(T("select_gauge"))}</p>`; };
  for (const b of box.querySelectorAll("button[data-span]")) b.onclick = () => { view.span = b.dataset.span; renderDetail(); };
  drawChart(g, box.querySelector("canvas"));
}

async function drawChart(g, canvas) {
  const data = await get(`/api/monitoring/gauges/${encodeURIComponent(g.id)}/series?span=${view.span}`);
  if (view.chart) view.chart.destroy();
  const rain = g.kind === "rainfall";
  const labels = data.points.map((p) => new Date(p.at * 1000).toLocaleString(ui.lang === "en" ? "en-GB" : "zh-CN",
    view.span === "24h" ? { hour: "2-digit", minute: "2-digit", hour12: false } : { month: "numeric", day: "numeric", hour: "2-digit", hour12: false }));
  const datasets = [{ label: `${T(rain ? "sum" : "mean")} (${g.unit})`, data: data.points.map((p) => rain ? p.sum : p.mean),
    borderColor: "#1976d2", backgroundColor: "rgba(25,118,210,0.3)", pointRadius: 2, type: rain ? "bar" : "line" }];
  if (!rain) {
    datasets.push({ label: T("max"), data: data.points.map((p) => p.max), borderColor: "rgba(25,118,210,0.35)", pointRadius: 0, borderDash: [2, 2] });
    for (const t of g.thresholds.filter((x) => !x.window_s)) {
      datasets.push({ label: thresholdText(g, t).replace(/&[^;]+;/g, ""), data: data.points.map(() => t.value), pointRadius: 0,
        borderColor: t.severity === "critical" ? STATE_COLOURS.critical : STATE_COLOURS.warning, borderDash: [6, 4] });
    }
  }
  canvas.dataset.points = String(data.points.length);
  view.chart = new Chart(canvas, { type: rain ? "bar" : "line", data: { labels, datasets },
    options: { animation: false, responsive: true, maintainAspectRatio: false, plugins: { legend: { labels: { boxWidth: 10 } } } } });
}

function select(id) { view.gauge = id; renderDetail(); }

// ---------------------------------------------------------------- alarms

function alarmLabel(a) {
  const g = gauges.get(a.gauge_id) || { name: a.gauge_id, unit: "", thresholds: [] };
  const t = g.thresholds.find((x) => x.key === a.key);
  const what = a.kind === "fault" ? T("fault_" + a.key) : t ? (ui.lang === "en" && t.name_en ? t.name_en : t.name) : a.key;
  return `${esc(name(g))} · ${esc(what)}${a.value !== null ? ` · ${fmt(a.value)} ${esc(g.unit)}` : ""}`;
}

function renderAlarms() {
  const ul = root.querySelector(".gauge-alarms");
  if (!view.alarms.length) { ul.innerHTML = `<li class="muted">${esc(T("no_alarms"))}</li>`; return; }
  ul.innerHTML = view.alarms.map((a) => {
    const p = a.proposal;
    return `<li class="alarm ${a.severity} ${a.cleared_at ? "cleared" : "open"}" data-testid="monitoring-alarm" data-alarm="${a.id}"
        data-key="${esc(a.key)}" data-acked="${a.acked_by ? "true" : "false"}">
      <span class="sev">${esc(T(a.kind === "fault" ? "state_fault" : "raised"))}</span> ${alarmLabel(a)}
      <small>${esc(when(Date.parse(a.raised_at) / 1000))} · ${esc(T(a.cleared_at ? "cleared" : "open"))}</small>
      ${a.incident_id ? `<div>${esc(T("incident"))} <b data-testid="alarm-incident">${esc(a.incident_id)}</b></div>` : ""}
      ${p ? `<div data-testid="alarm-proposal">${esc(T("proposal"))}: ${esc(p.plan_name)} ${esc(p.level)}${esc(T("level_suffix"))}</div>` : ""}
      ${a.acked_by ? `<div class="acked" data-testid="alarm-acked">${esc(T("acknowledged"))} · ${esc(T("ack_by"))} ${esc(a.acked_by)}</div>`
        : ui.can_acknowledge ? `<button data-ack="${a.id}" data-testid="alarm-ack">${esc(T("acknowledge"))}</button>` : ""}
    </li>`;
  }).join("");
}

async function loadAlarms() { view.alarms = (await get("/api/monitoring/alarms?active=true")).alarms; renderAlarms(); }

// ---------------------------------------------------------------- live

let alarmTimer = null;
function alarmsSoon() { clearTimeout(alarmTimer); alarmTimer = setTimeout(() => loadAlarms().catch(() => {}), 300); }

function onEvent(ev) {
  if (ev.topic === "monitoring.readings") {
    for (const x of ev.payload.gauges || []) {
      const g = gauges.get(x.id);
      if (!g) continue;
      Object.assign(g, { value: x.value, at: x.at, state: x.state });
      drawGauge(g);
      if (view.gauge === g.id) renderDetail();
    }
  } else if (ev.topic && ev.topic.startsWith("monitoring.alarm")) {
    alarmsSoon();
  }
}

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/ws/events?topics=monitoring.*`);
  ws.onmessage = (msg) => onEvent(JSON.parse(msg.data));
  ws.onclose = (e) => {
    if (e.code === 4401 || e.code === 4403) return;
    setTimeout(async () => {
      ui = await get("/api/monitoring/gauges").catch(() => ui);
      for (const g of ui.gauges) { gauges.set(g.id, g); drawGauge(g); }
      loadAlarms().catch(() => {});
      connect();
    }, 3000);
  };
}

skeleton();
for (const g of gauges.values()) drawGauge(g);
await loadAlarms();
connect();
window.ccMonitoring = { gauges, markers, view, select };
