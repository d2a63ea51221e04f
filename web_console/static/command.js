// The leaders' command view (领导指挥视图): read-only. The map (incidents by response level or
// priority, units, depots, shelters with occupancy, plan activations, a warnings layer for issue 20),
// the key figures, plan progress per agency, charts (chart.js), and a receive-only WebRTC preview of
// the command conference over the join page's signalling (/ws/conference/<id>, message "preview").
// Live: /ws/events moves markers from the events' payloads and schedules one summary reload at most
// every RELOAD_MS (a burst of events is one request); the summary is also reloaded when idle.
/* global L, Chart */

const cfg = JSON.parse(document.getElementById("command-config").textContent);
const T = cfg.t;
const RELOAD_MS = 1500;
// The national colours of the response levels (I red, II orange, III yellow, IV blue).
const LEVEL_COLOURS = { I: "#d32f2f", II: "#f57c00", III: "#fbc02d", IV: "#1976d2" };
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const levelText = (level) => T.level_badge.replace("{level}", level);
const byTestId = (id) => document.querySelector(`[data-testid="${id}"]`);

const state = { summary: null, incidents: new Map(), units: new Map(), resources: new Map(), legend: null,
  levels: new Map(), conference: null };
let map, layers, charts = {}, reloadTimer = null, lastReload = 0, preview = null;

async function get(path) {
  const res = await fetch(path, { headers: { Accept: "application/json" } });
  if (!res.ok) throw new Error(`${path}: ${res.status}`);
  return res.json();
}

// ---------------------------------------------------------------- the map

function initMap(st) {
  map = L.map("command-map", { zoomControl: false, attributionControl: false, zoomSnap: 0.25 });
  const counties = L.geoJSON(st.boundaries, {
    style: { color: "#5b8db8", weight: 2, fillColor: "#16324d", fillOpacity: 0.7 },
    onEachFeature: (f, layer) => layer.bindTooltip(f.properties.name, { sticky: true }),
  }).addTo(map);
  map.fitBounds(counties.getBounds(), { padding: [10, 10] });
  layers = {
    incidents: L.layerGroup().addTo(map), units: L.layerGroup().addTo(map), depots: L.layerGroup().addTo(map),
    shelters: L.layerGroup().addTo(map), plans: L.layerGroup().addTo(map), warnings: L.layerGroup().addTo(map),
    gauges: L.layerGroup().addTo(map),  // issue 20's monitoring fills it (static/monitoring.js)
  };
  L.control.layers(null, {
    [T.layer_incidents]: layers.incidents, [T.layer_units]: layers.units, [T.layer_depots]: layers.depots,
    [T.layer_shelters]: layers.shelters, [T.layer_plans]: layers.plans, [T.layer_warnings]: layers.warnings,
    [T.layer_gauges]: layers.gauges,
  }, { collapsed: false, position: "topright" }).addTo(map);
}

function incidentColour(inc) {
  const level = state.levels.get(inc.id);
  if (level) return LEVEL_COLOURS[level];
  return inc.colour || (state.legend && state.legend.priority[inc.priority] || {}).colour || "#999";
}

function drawIncidents() {
  layers.incidents.clearLayers();
  for (const inc of state.incidents.values()) {
    if (inc.status === "closed" || inc.training) continue;
    const level = state.levels.get(inc.id);
    L.circleMarker([inc.lat, inc.lon], { radius: level ? 10 : 7, color: "#fff", weight: 1.5, fillOpacity: 0.95,
      fillColor: incidentColour(inc), className: "cmd-incident" })
      .bindTooltip(`${esc(inc.id)} ${esc(inc.category_name)}/${esc(inc.subtype_name)} · ${esc(inc.priority_name)}`
        + (level ? ` · ${esc(levelText(level))}` : "") + (inc.address ? `<br>${esc(inc.address)}` : ""))
      .addTo(layers.incidents);
  }
}

function drawUnits() {
  layers.units.clearLayers();
  for (const u of state.units.values()) {
    if (u.training || u.lon === null || u.lat === null) continue;
    L.circleMarker([u.lat, u.lon], { radius: 4, color: u.colour, weight: 1, fillColor: u.colour, fillOpacity: 0.9,
      className: "cmd-unit" }).bindTooltip(`${esc(u.callsign)} · ${esc(u.type_name)} · ${esc(u.status_name)}`)
      .addTo(layers.units);
  }
}

function drawResources() {
  layers.depots.clearLayers();
  layers.shelters.clearLayers();
  for (const r of state.resources.values()) {
    if (r.kind === "depot") {
      const stock = r.stock.map((s) => `${esc(s.name)} ${s.quantity}${esc(s.unit)}`).join("、");
      L.circleMarker([r.lat, r.lon], { radius: 6, color: "#d0a85c", weight: 2, fillColor: "#7a5b1e", fillOpacity: 0.9,
        className: "cmd-depot" }).bindTooltip(`${esc(r.name)}<br>${stock}`).addTo(layers.depots);
    } else if (r.kind === "shelter") {
      const share = r.capacity ? r.occupancy / r.capacity : 0;
      const colour = share >= 0.9 ? "#d32f2f" : share >= 0.6 ? "#f57c00" : "#2ea043";
      L.circleMarker([r.lat, r.lon], { radius: 7, color: colour, weight: 2, fillColor: colour, fillOpacity: 0.35 + share * 0.6,
        className: "cmd-shelter" })
        .bindTooltip(`${esc(r.name)}<br>${esc(T.occupancy)} ${r.occupancy} / ${esc(T.capacity)} ${r.capacity}`)
        .addTo(layers.shelters);
    }
  }
}

function drawPlans() {
  layers.plans.clearLayers();
  for (const a of (state.summary ? state.summary.activations : [])) {
    L.circleMarker([a.lat, a.lon], { radius: 20, color: LEVEL_COLOURS[a.level], weight: 3, dashArray: "6 4",
      fill: false, className: "cmd-plan" })
      .bindTooltip(`${esc(a.plan_name)} · ${esc(levelText(a.level))} · ${a.done}/${a.total}`, { permanent: true,
        direction: "right", className: "cmd-plan-label" })
      .addTo(layers.plans);
  }
}

// ---------------------------------------------------------------- figures, plans, charts

function setFigure(id, value, alert) {
  const box = byTestId(`figure-${id}`);
  byTestId(`figure-${id}-value`).textContent = value;
  box.classList.toggle("alert", Boolean(alert));
}

function priorityName(p) {
  const name = state.legend && state.legend.priority[p] ? state.legend.priority[p].name : "";
  return cfg.lang === "en" ? `${T.priority}${p}` : `${name || p + T.priority}`;
}

function percent(v) { return v === null || v === undefined ? "–" : `${v}%`; }

function renderFigures(s) {
  const f = s.figures;
  setFigure("open-incidents", f.open_incidents.total);
  $("by-level").innerHTML = ["I", "II", "III", "IV"].filter((lv) => f.open_incidents.by_level[lv])
    .map((lv) => `<span class="chip" data-level="${lv}" style="background:${LEVEL_COLOURS[lv]}">${lv} ${f.open_incidents.by_level[lv]}</span>`)
    .join("") + ["1", "2"].map((p) => `${esc(priorityName(p))} ${f.open_incidents.by_priority[p]}`).join(" · ");
  setFigure("units-deployed", f.units_deployed);
  $("units-total").textContent = `/ ${f.units_total}`;
  setFigure("calls-waiting", f.calls_waiting, f.calls_waiting > 0);
  setFigure("answer-10", percent(f.answer.within_10), f.answer.within_10 !== null && f.answer.within_10 < 90);
  setFigure("answer-15", percent(f.answer.within_15), f.answer.within_15 !== null && f.answer.within_15 < 90);
  $("answer-sub").textContent = `${f.answer.answered} / ${f.answer.offered}`;
  setFigure("tasks-overdue", f.tasks_overdue, f.tasks_overdue > 0);
  $("tasks-open").textContent = `${T.tasks_open} ${f.tasks_open}`;
}

function renderPlans(s) {
  const box = $("plans");
  if (!s.activations.length) { box.innerHTML = `<p class="muted">${esc(T.no_plans)}</p>`; return; }
  box.innerHTML = s.activations.map((a) => `
    <article class="activation" data-testid="activation" data-activation="${a.id}" data-level="${a.level}">
      <header><span class="level-badge" data-testid="activation-level" style="background:${LEVEL_COLOURS[a.level]}">${esc(levelText(a.level))}</span>
        <span class="plan-name">${esc(a.plan_name)}</span><span class="incident">${esc(a.incident_id)}</span>
        <span class="incident">${a.done}/${a.total} ${esc(T.done)}</span></header>
      ${a.agencies.map((g) => `
        <div class="agency" data-testid="agency-progress" data-agency="${esc(g.agency)}" data-done="${g.done}" data-acknowledged="${g.acknowledged}" data-total="${g.total}" data-overdue="${g.overdue}">
          <span>${esc(g.agency_name)}</span>
          <span class="bar" title="${esc(T.acknowledged)} ${g.acknowledged} · ${esc(T.done)} ${g.done}"><i style="width:${g.total ? Math.round(100 * g.done / g.total) : 0}%"></i><b style="width:${g.total ? Math.round(100 * (g.acknowledged - g.done) / g.total) : 0}%"></b></span>
          <span class="count">${g.done}/${g.total}</span>
          <span class="overdue">${g.overdue ? `${g.overdue} ${esc(T.overdue)}` : ""}</span>
        </div>`).join("")}
    </article>`).join("");
}

Chart.defaults.color = "#c9d6e3";
Chart.defaults.borderColor = "#1f3b57";
Chart.defaults.animation = false;  // a wall display redraws on every update: no animation churn

function hourLabel(iso) { return new Date(iso).toLocaleTimeString(cfg.lang, { hour: "2-digit", minute: "2-digit" }); }

function chart(id, config) {
  if (charts[id]) {
    charts[id].data = config.data;
    charts[id].update("none");
  } else {
    charts[id] = new Chart($(id), { ...config, options: { responsive: true, maintainAspectRatio: false,
      plugins: { legend: { display: config.legend !== false, labels: { boxWidth: 12 } } }, ...(config.options || {}) } });
  }
}

function renderCharts(s) {
  const labels = s.series.hours.map(hourLabel);
  chart("chart-incidents", { type: "bar", legend: false, data: { labels, datasets: [
    { label: T.open_incidents, data: s.series.incidents, backgroundColor: "#f57c00" }] },
    options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } } });
  chart("chart-answer", { type: "line", data: { labels, datasets: [
    { label: T.mean, data: s.series.answer_mean_s, borderColor: "#58a6ff", backgroundColor: "#58a6ff", spanGaps: true },
    { label: T.max, data: s.series.answer_max_s, borderColor: "#ff6b6b", backgroundColor: "#ff6b6b", spanGaps: true }] },
    options: { scales: { y: { beginAtZero: true } } } });
  const used = s.resources_consumed.slice(0, 8);
  chart("chart-resources", { type: "bar", legend: false, data: { labels: used.map((r) => `${r.name}（${r.unit}）`),
    datasets: [{ label: T.count, data: used.map((r) => r.quantity), backgroundColor: "#d0a85c" }] },
    options: { indexAxis: "y", scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } } });
}

// ---------------------------------------------------------------- the command conference

function stopPreview() {
  if (preview) { preview.ws.close(); preview.pc.close(); preview = null; }
  $("preview").srcObject = null;
}

async function startPreview(conferenceId) {
  stopPreview();
  const pc = new RTCPeerConnection();
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.ontrack = (e) => { $("preview").srcObject = new MediaStream([e.track]); };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    const t = setTimeout(resolve, 3000);
    pc.addEventListener("icegatheringstatechange", () => { if (pc.iceGatheringState === "complete") { clearTimeout(t); resolve(); } });
  });
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/ws/conference/${encodeURIComponent(conferenceId)}`);
  preview = { pc, ws, conferenceId };
  window.ccPreview = pc;  // for diagnostics and the browser tests (getStats)
  ws.onopen = () => ws.send(JSON.stringify({ type: "preview", sdp: pc.localDescription.sdp }));
  ws.onmessage = (msg) => {
    const m = JSON.parse(msg.data);
    if (m.type === "answer") pc.setRemoteDescription({ type: "answer", sdp: m.sdp });
    else if (m.type === "refused" || m.type === "bye" || m.type === "error") { stopPreview(); showConference(null); }
  };
  const keepAlive = setInterval(() => { if (ws.readyState === 1) ws.send('{"type":"ping"}'); else clearInterval(keepAlive); }, 15000);
}

// The leader's controls (content token, deck, a room's camera: web_console/content_console.py,
// deck_console.py, camera_console.py; the same role checks as the chair console's).
const csrf = () => $("command").dataset.csrf;

async function post(url, body) {
  const res = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
                                 body: JSON.stringify(body) });
  const data = await res.json().catch(() => ({}));
  $("content-status").textContent = res.ok ? "" : (typeof data.detail === "string" ? data.detail : res.statusText);
  if (res.ok && data.holder !== undefined) renderContent(data);
  else refreshContent();
}

function renderContent(c) {
  const holder = c ? c.holder : null;
  $("content-holder").textContent = !c ? "" : (holder ? (c.holder_name || holder) : T.content_nobody);
  $("content-holder").dataset.holder = holder || "";
  $("content-revoke").disabled = !holder;
  const deck = c && c.deck;
  $("deck-show").disabled = !deck;
  $("deck-show").title = deck ? "" : T.deck_none;
}

async function refreshContent() {
  const id = state.conference;
  if (!id || $("leader-controls").hidden) return;
  const res = await fetch(`/api/conferences/${encodeURIComponent(id)}/content`).catch(() => null);
  renderContent(res && res.ok ? await res.json() : null);
}

$("content-take").addEventListener("click", () => post(`/api/conferences/${state.conference}/content`, { action: "take" }));
$("content-revoke").addEventListener("click", () => post(`/api/conferences/${state.conference}/content`, { action: "revoke" }));
$("deck-show").addEventListener("click", () => post(`/api/decks/${state.conference}`, { action: "show" }));

function showControls(conf) {
  const running = Boolean(conf && conf.previewable);  // the MCU runs here: its content and cameras too
  $("leader-controls").hidden = !running;
  const panel = $("camera-panel");
  panel.dataset.conference = running ? conf.conference_id : "";
  panel.dispatchEvent(new Event("conference"));
  if (running) refreshContent();
}

function showConference(conf) {
  const id = conf ? conf.conference_id : null;
  $("no-conference").hidden = Boolean(conf);
  $("join").hidden = !conf;
  $("conference-name").textContent = conf ? `${conf.conference_id} · ${conf.incident_id}` : "";
  if (conf) $("join").href = conf.join_url;
  if (id === state.conference) return;
  state.conference = id;
  showControls(conf);
  if (conf && conf.previewable) startPreview(id).catch(() => stopPreview());
  else stopPreview();
}

// ---------------------------------------------------------------- loading and live updates

async function reloadSummary() {
  reloadTimer = null;
  lastReload = Date.now();
  const s = await get("/api/command/summary");
  state.summary = s;
  state.levels = new Map();
  for (const a of s.activations) {
    const prev = state.levels.get(a.incident_id);
    if (!prev || ["I", "II", "III", "IV"].indexOf(a.level) < ["I", "II", "III", "IV"].indexOf(prev)) state.levels.set(a.incident_id, a.level);
  }
  renderFigures(s); renderPlans(s); renderCharts(s); drawPlans(); drawIncidents();
  showConference(s.conference);
  document.body.dataset.updated = s.generated_at;  // the tests wait on this
}

function reloadSoon() {
  if (reloadTimer) return;
  reloadTimer = setTimeout(() => reloadSummary().catch(() => {}), Math.max(0, lastReload + RELOAD_MS - Date.now()));
}

function onEvent(ev) {
  const p = ev.payload || {};
  const family = ev.topic.split(".")[0];
  if (ev.topic === "unit.positions") {
    for (const [id, lon, lat] of p.positions || []) {
      const u = state.units.get(id);
      if (u) Object.assign(u, { lon, lat });
    }
    drawUnits();
    return;  // positions move markers only: no summary reload for them
  }
  if ((ev.topic === "incident.created" || ev.topic === "incident.updated") && p.incident) {
    state.incidents.set(p.incident.id, p.incident);
    drawIncidents();
  }
  if (ev.topic === "unit.status") { for (const u of p.units || []) state.units.set(u.id, u); drawUnits(); }
  if (family === "resource" && p.resource) { state.resources.set(p.resource.id, p.resource); drawResources(); }
  if (["incident", "unit", "plan", "resource", "conference"].includes(family)) reloadSoon();
  if (family === "conference") refreshContent();
}

function connect() {
  const conn = $("conn");
  window.openEventStream({  // web_console/static/event_stream.js: reconnects with ?since=<last id>
    onEvent,
    onState: (up) => { conn.textContent = up ? `● ${T.live}` : `○ ${T.offline}`; conn.classList.toggle("up", up); },
    beforeReconnect: () => loadMap().catch(() => {}),
  });
}

async function loadMap(first) {
  const [st, units, res] = await Promise.all([get("/api/dispatch/state"), get("/api/units?training=false"),
    get(`/api/resources?kind=depot&kind=shelter&lang=${encodeURIComponent(cfg.lang)}`)]);
  state.legend = st.legend;
  if (first) initMap(st);
  state.incidents = new Map(st.incidents.filter((i) => !i.training).map((i) => [i.id, i]));
  state.units = new Map(units.map((u) => [u.id, u]));
  state.resources = new Map(res.resources.map((r) => [r.id, r]));
  drawIncidents(); drawUnits(); drawResources();
}

await loadMap(true);
await reloadSummary();
connect();
setInterval(() => { if (Date.now() - lastReload >= cfg.idle_reload_s * 1000) reloadSoon(); }, 5000);
// The warnings layer is issue 20's: it adds its polygons here (window.ccCommand.layers.warnings).
window.ccCommand = { map, layers, state, reloadSummary };
