// Dispatch map console: Leaflet map (vector county boundaries, no tiles unless a local MBTiles is
// configured), incident queue, unit status board, incident detail with recommendations and
// timeline. Live updates arrive on /ws/events; every change goes through the REST API.
/* global L */

const cfg = JSON.parse(document.getElementById("dispatch-config").textContent);
const EN = cfg.lang === "en";
// Model names (categories, statuses, unit types) arrive in zh-CN; the page translates them in English mode.
const N = (name) => (cfg.names || {})[name] || name;
const T = EN ? {
  dispatchAll: "Dispatch all recommended", dispatchSel: "Dispatch selected", conference: "Start command conference",
  report: "Situation report", eido: "EIDO", close: "Close", recall: "Recall", note: "Add note",
  disposition: "Disposition?", reason: "Reason?", noteText: "Note?", plan: "Run card", noPlan: "No run card",
  shortfall: "short", timeline: "Timeline", units: "Units", comps: "Components", confs: "Conferences",
  dispatchTo: "Dispatch to", pickIncident: "Select an incident first", status: "Status", incident: "Incident",
  reopen: "Reopen", capDone: "Warning issued", clickPoints: "Click the map to add points; then press Finish",
  needPoints: "At least 3 points", pickHere: "Location", running: "running", requested: "requested", joint: "joint", drill: "drill", stale: "stale",
  real: "REAL",
  callAlarm: (n) => `ALARM: ${n} real emergency call(s) waiting at the desk — every call-taking position is in training mode.`,
  realOpen: (ids) => `Real incident(s) open while in training mode: ${ids}. Leave training to see real units.`,
} : {
  dispatchAll: "全部推荐调派", dispatchSel: "调派所选", conference: "启动指挥会议",
  report: "态势报告", eido: "EIDO 导出", close: "结案", recall: "召回", note: "添加备注",
  disposition: "处置结果？", reason: "重新打开原因？", noteText: "备注内容？", plan: "调派预案", noPlan: "无匹配预案",
  shortfall: "缺", timeline: "处置时间线", units: "调派力量", comps: "联动分警", confs: "指挥会议",
  dispatchTo: "调派到", pickIncident: "请先选择警情", status: "状态", incident: "警情",
  reopen: "重新打开", capDone: "预警已发布", clickPoints: "在地图上依次点击顶点，然后点“完成绘制”",
  needPoints: "至少需要 3 个顶点", pickHere: "位置", running: "进行中", requested: "已请求", joint: "联动", drill: "演练", stale: "定位过期",
  real: "真实",
  callAlarm: (n) => `告警：接警台有 ${n} 个真实报警在排队 — 所有接警席位都处于演练模式！`,
  realOpen: (ids) => `演练模式下有真实警情待处置：${ids}。请退出演练查看真实力量。`,
};

const state = { incidents: new Map(), units: new Map(), selected: null, legend: null, training: cfg.training, callAlarm: null };
// A real incident is always shown; drill incidents only in training mode.
const shown = (inc) => !inc.training || state.training;
const markers = { incidents: new Map(), units: new Map() };
let map;

async function api(method, path, body) {
  const opts = { method, headers: { "X-CSRF-Token": cfg.csrf } };
  if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
  const res = await fetch(path, opts);
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const d = data.detail;
    const msg = typeof d === "string" ? d : d && d.message
      ? d.message + ": " + (d.errors || (d.issues || []).map((i) => `${i.path} [${i.rule}] ${i.message}`)).join("; ")
      : JSON.stringify(d);
    throw new Error(msg);
  }
  return data;
}

function esc(s) { return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]); }
function el(html) { const t = document.createElement("template"); t.innerHTML = html.trim(); return t.content.firstChild; }
function flash(msg, bad) {
  const box = document.getElementById("detail-msg");
  if (box) { box.textContent = msg; box.className = bad ? "error" : "ok"; }
  else if (bad) alert(msg);
}

// ---------------------------------------------------------------- map

function initMap(st) {
  map = L.map("map", { zoomControl: true, attributionControl: false });
  if (cfg.tiles) L.tileLayer("/tiles/{z}/{x}/{y}", { maxZoom: 18 }).addTo(map);
  const counties = L.geoJSON(st.boundaries, {
    style: { color: "#455a64", weight: 2, fillColor: "#eef3f7", fillOpacity: 0.6 },
    onEachFeature: (f, layer) => layer.bindTooltip(f.properties.name, { sticky: true }),
  }).addTo(map);
  map.fitBounds(counties.getBounds());
  for (const s of st.stations) {
    L.circleMarker([s.lat, s.lon], { radius: 3, color: "#1f6feb", weight: 1 }).bindTooltip(s.name).addTo(map);
  }
  const lg = document.getElementById("legend");
  lg.innerHTML = Object.values(st.legend.unit_status).map((s) => `<span><i class="swatch" style="background:${s.colour}"></i>${esc(N(s.name))}</span>`).join("")
    + " | " + Object.entries(st.legend.priority).map(([p, s]) => `<span><i class="swatch" style="background:${s.colour};border-radius:2px"></i>${p} ${esc(N(s.name))}</span>`).join("");
  map.on("click", onMapClick);
}

function incidentIcon(inc) {
  const sel = state.selected === inc.id ? " selected" : "";
  return L.divIcon({ className: "", iconSize: [22, 22], iconAnchor: [11, 11],
    html: `<div class="inc-marker${sel}" data-incident-id="${esc(inc.id)}" data-priority="${inc.priority}" style="background:${inc.colour}"></div>` });
}

function unitIcon(u) {
  return L.divIcon({ className: "", iconSize: [14, 14], iconAnchor: [7, 7],
    html: `<div class="unit-marker${u.stale ? " stale" : ""}" data-unit-id="${esc(u.id)}" data-status="${u.status}" style="background:${u.colour}"></div>` });
}

function drawIncident(inc) {
  let mk = markers.incidents.get(inc.id);
  if (inc.status === "closed" || !shown(inc)) {
    if (mk) { mk.remove(); markers.incidents.delete(inc.id); }
    return;
  }
  if (!mk) {
    mk = L.marker([inc.lat, inc.lon], { icon: incidentIcon(inc), zIndexOffset: 1000 }).addTo(map);
    mk.on("click", (e) => { L.DomEvent.stopPropagation(e); select(inc.id, false); });
    markers.incidents.set(inc.id, mk);
  } else {
    mk.setLatLng([inc.lat, inc.lon]);
    mk.setIcon(incidentIcon(inc));
  }
  mk.bindTooltip(`${inc.training ? "【演练】" : ""}${inc.id} ${N(inc.category_name)}/${N(inc.subtype_name)} · ${N(inc.priority_name)} · ${N(inc.status_name)}`);
}

// Units standing at their station (no AVL fix) are fanned out around it so each stays clickable.
function spot(u) {
  if (u.position_source !== "station") return [u.lat, u.lon];
  let h = 0;
  for (const ch of u.id) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  const a = (h % 360) * Math.PI / 180;
  return [u.lat + 0.004 * Math.sin(a), u.lon + 0.004 * Math.cos(a)];
}

function drawUnit(u) {
  if (u.lon == null || u.training !== state.training) return;
  let mk = markers.units.get(u.id);
  if (!mk) {
    mk = L.marker(spot(u), { icon: unitIcon(u) }).addTo(map);
    mk.on("click", (e) => { L.DomEvent.stopPropagation(e); unitPopup(u.id); });
    markers.units.set(u.id, mk);
  } else {
    mk.setLatLng(spot(u));
    const node = mk.getElement() && mk.getElement().querySelector(".unit-marker");
    if (node && node.dataset.status === u.status && node.classList.contains("stale") === !!u.stale) { /* moved only */ }
    else mk.setIcon(unitIcon(u));
  }
  mk.bindTooltip(`${u.callsign} · ${N(u.type_name)} · ${N(u.status_name)}${u.stale ? " · " + T.stale : ""}`);
}

function unitPopup(unitId) {
  const u = state.units.get(unitId);
  const inc = state.selected && state.incidents.get(state.selected);
  const div = document.createElement("div");
  div.innerHTML = `<b>${esc(u.callsign)}</b> ${esc(N(u.type_name))}<br>${esc(N(u.status_name))}${u.incident_id ? " · " + esc(u.incident_id) : ""}<br>`;
  if (inc && ["available", "returning"].includes(u.status)) {
    const b = el(`<button class="primary" data-testid="popup-dispatch">${T.dispatchTo} ${esc(inc.id)}</button>`);
    b.onclick = async () => {
      try { await api("POST", `/api/incidents/${encodeURIComponent(inc.id)}/dispatch`, { unit_ids: [u.id] }); map.closePopup(); }
      catch (err) { b.replaceWith(el(`<span class="error" data-testid="popup-error">${esc(err.message)}</span>`)); }
    };
    div.appendChild(b);
  } else if (!inc) {
    div.appendChild(el(`<span class="muted">${T.pickIncident}</span>`));
  }
  L.popup().setLatLng([u.lat, u.lon]).setContent(div).openOn(map);
}

// ---------------------------------------------------------------- queue, board, detail

function renderQueue() {
  const ul = document.getElementById("queue");
  const list = [...state.incidents.values()].filter((i) => i.status !== "closed" && shown(i))
    .sort((a, b) => a.priority - b.priority || b.created_at.localeCompare(a.created_at));
  ul.innerHTML = list.length ? "" : `<li class="muted">${esc(cfg.empty)}</li>`;
  for (const inc of list) {
    const li = el(`<li data-incident-id="${esc(inc.id)}" style="border-left-color:${inc.colour}">
      <div><b>${esc(N(inc.category_name))}/${esc(N(inc.subtype_name))}</b>${inc.training ? `<span class="tag drill">${T.drill}</span>` : state.training ? `<span class="tag real" data-testid="tag-real">${T.real}</span>` : ""}${inc.joint ? `<span class="tag">${T.joint}</span>` : ""}</div>
      <div>${esc(N(inc.priority_name))} · <span data-testid="queue-status">${esc(N(inc.status_name))}</span> · ${esc(inc.county_name)}${esc(inc.township_name ? "/" + inc.township_name : "")}</div>
      <div class="id">${esc(inc.id)}</div></li>`);
    if (inc.id === state.selected) li.classList.add("selected");
    li.onclick = () => select(inc.id);
    ul.appendChild(li);
  }
}

const STATUS_OPTIONS = ["available", "en_route", "on_scene", "transporting", "at_hospital", "returning", "out_of_service"];

function renderBoard() {
  const tb = document.querySelector("#board tbody");
  tb.innerHTML = "";
  const units = [...state.units.values()].filter((u) => u.training === state.training)
    .sort((a, b) => (a.status === "available") - (b.status === "available")  // busy units first
      || a.agency.localeCompare(b.agency) || a.id.localeCompare(b.id));
  for (const u of units) {
    const opts = STATUS_OPTIONS.map((s) => `<option value="${s}" ${s === u.status ? "selected" : ""}>${esc(N(state.legend.unit_status[s].name))}</option>`).join("");
    const tr = el(`<tr data-unit-id="${esc(u.id)}" data-status="${u.status}"><td><i class="status-dot" style="background:${u.colour}"></i>${esc(u.callsign)}</td>
      <td>${esc(N(u.type_name))}</td><td>${esc(N(u.status_name))}</td><td>${esc(u.incident_id || "")}</td>
      <td>${u.stale ? `<span class="tag">${T.stale}</span>` : ""}</td>
      <td><select data-testid="unit-status-select">${u.status === "dispatched" ? `<option selected>${esc(N(u.status_name))}</option>` : ""}${opts}</select></td></tr>`);
    tr.querySelector("select").onchange = async (e) => {
      try { await api("POST", `/api/units/${encodeURIComponent(u.id)}/status`, { status: e.target.value }); }
      catch (err) { alert(err.message); renderBoard(); }
    };
    tb.appendChild(tr);
  }
}

let uncertainty = null; // circle of the selected incident's location uncertainty

async function select(id, fly = true) {
  state.selected = id;
  if (uncertainty) { uncertainty.remove(); uncertainty = null; }
  const inc = state.incidents.get(id);
  if (inc && fly) map.setView([inc.lat, inc.lon], Math.max(map.getZoom(), 11));
  if (inc && inc.uncertainty_m) {
    uncertainty = L.circle([inc.lat, inc.lon], { radius: inc.uncertainty_m, color: inc.colour, weight: 1, fillOpacity: 0.1 }).addTo(map);
  }
  for (const inc of state.incidents.values()) drawIncident(inc);
  renderQueue();
  document.dispatchEvent(new CustomEvent("incident-selected", { detail: id }));
  await renderDetail();
}

async function renderDetail() {
  const box = document.getElementById("detail");
  const id = state.selected;
  if (!id) return;
  let inc, rec;
  try {
    [inc, rec] = await Promise.all([api("GET", `/api/incidents/${encodeURIComponent(id)}`),
      api("GET", `/api/incidents/${encodeURIComponent(id)}/recommendations`)]);
  } catch (err) { box.innerHTML = `<p class="error">${esc(err.message)}</p>`; return; }
  if (state.selected !== id) return;
  const unitName = (uid) => (state.units.get(uid) || { callsign: uid }).callsign;
  const next = ["en_route", "on_scene", "under_control", "closed"];
  const compSelect = (c) => c.status === "closed" ? esc(N(c.status_name)) : `<select data-agency="${esc(c.agency)}" data-testid="component-status">
    <option value="">${esc(N(c.status_name))}</option>${next.filter((s) => next.indexOf(s) > next.indexOf(c.status) || !next.includes(c.status))
    .map((s) => `<option value="${s}">${esc(state.legend.incident_status[s])}</option>`).join("")}</select>`;
  const comps = inc.components.map((c) => `<div class="row">${esc(N(c.agency_name))}：${compSelect(c)} ${c.units.map((u) =>
    `<span class="tag">${esc(unitName(u))} <button class="link" data-recall="${esc(u)}" data-testid="recall">${T.recall}</button></span>`).join("")}</div>`).join("");
  const cands = rec.requirements.map((r) => `<div class="row"><b>${esc(state.legend.capabilities[r.capability] || r.capability)}</b> × ${r.count}${r.shortfall ? ` <span class="error">${T.shortfall} ${r.shortfall}</span>` : ""}</div>` +
    r.candidates.map((c) => `<div class="cand${c.recommended ? " rec" : ""}"><label><input type="checkbox" value="${esc(c.unit_id)}" ${c.recommended ? "checked" : ""}>
      ${esc(c.callsign)} · ${Math.round(c.eta_s / 60)} min</label><div class="muted">${esc(c.explanation)}</div></div>`).join("")).join("");
  const confs = inc.conferences.map((c) => `<div class="row" data-testid="conference-link"><a href="/join/${esc(c.conference_id)}">${esc(c.conference_id)}</a> ${esc(T[c.status] || c.status)} · ${esc(c.rooms.join("、"))}</div>`).join("");
  box.innerHTML = `
    <h3 data-testid="detail-id">${inc.training ? "【演练】" : ""}${esc(inc.id)}</h3>
    <div class="row"><b>${esc(N(inc.category_name))}/${esc(N(inc.subtype_name))}</b> · ${esc(N(inc.priority_name))} · <span data-testid="detail-status">${esc(N(inc.status_name))}</span></div>
    <div class="row">${esc(inc.county_name)} ${esc(inc.township_name)} ${esc(inc.address)} (${inc.lon.toFixed(5)}, ${inc.lat.toFixed(5)})</div>
    ${inc.description ? `<div class="row">${esc(inc.description)}</div>` : ""}
    <div class="actions">
      ${inc.status === "closed" ? `<button data-act="reopen">${T.reopen}</button>` : `
      <button class="primary" data-act="dispatch-all" data-testid="dispatch-all">${T.dispatchAll}</button>
      <button data-act="dispatch-sel" data-testid="dispatch-selected">${T.dispatchSel}</button>
      <button data-act="conference" data-testid="start-conference">${T.conference}</button>
      <button data-act="note">${T.note}</button>
      <button data-act="close" data-testid="close-incident">${T.close}</button>`}
      <a href="/dispatch/incidents/${encodeURIComponent(inc.id)}/report" target="_blank" data-testid="report-link">${T.report}</a>
      <a href="/api/incidents/${encodeURIComponent(inc.id)}/eido" target="_blank">${T.eido}</a>
    </div>
    <div id="detail-msg"></div>
    <h4>${T.comps}</h4>${comps}
    ${confs ? `<h4>${T.confs}</h4><div data-testid="conferences">${confs}</div>` : ""}
    <h4>${T.plan}: ${esc(rec.plan || T.noPlan)}</h4><div id="cands">${cands}</div>
    <h4>${T.timeline}</h4><ul class="timeline" data-testid="timeline">${inc.timeline.map((e) =>
      `<li>${esc(e.at.substring(11, 19))} ${esc(e.actor)} ${esc(e.action)} ${esc(Object.values(e.detail).join(" "))}</li>`).join("")}</ul>`;
  const enc = encodeURIComponent(inc.id);
  const act = async (fn) => { try { await fn(); } catch (err) { flash(err.message, true); } };
  box.querySelectorAll("[data-recall]").forEach((b) => { b.onclick = () => act(() => api("POST", `/api/incidents/${enc}/recall`, { unit_id: b.dataset.recall })); });
  box.querySelectorAll("[data-agency]").forEach((sel) => {
    sel.onchange = () => act(() => api("POST", `/api/incidents/${enc}/status`, { status: sel.value, agency: sel.dataset.agency }));
  });
  const on = (name, fn) => { const b = box.querySelector(`[data-act=${name}]`); if (b) b.onclick = () => act(fn); };
  on("dispatch-all", () => api("POST", `/api/incidents/${enc}/dispatch`, { recommended: true }));
  on("dispatch-sel", () => api("POST", `/api/incidents/${enc}/dispatch`, { unit_ids: [...box.querySelectorAll("#cands input:checked")].map((c) => c.value) }));
  on("conference", async () => { const c = await api("POST", `/api/incidents/${enc}/conference`); flash(`${T.conference}: ${c.conference_id}`); await renderDetail(); });
  on("note", async () => { const t = prompt(T.noteText); if (t) await api("POST", `/api/incidents/${enc}/notes`, { text: t }); });
  on("close", async () => { const t = prompt(T.disposition); if (t) await api("POST", `/api/incidents/${enc}/close`, { text: t }); });
  on("reopen", async () => { const t = prompt(T.reason); if (t) await api("POST", `/api/incidents/${enc}/reopen`, { text: t }); });
}

// ---------------------------------------------------------------- new incident, warning polygon

let mode = null; // "new" | "draw"
let draft = null;

function onMapClick(e) {
  if (mode === "new") {
    draft = { lon: e.latlng.lng, lat: e.latlng.lat };
    document.getElementById("new-where").textContent = `${T.pickHere}: ${draft.lon.toFixed(5)}, ${draft.lat.toFixed(5)}`;
    mode = null;
    document.getElementById("new-dialog").showModal();
  } else if (mode === "draw") {
    draft.points.push([e.latlng.lng, e.latlng.lat]);
    draft.line.setLatLngs(draft.points.map(([x, y]) => [y, x]));
  }
}

function fillCategories() {
  const cat = document.getElementById("new-category");
  const sub = document.getElementById("new-subtype");
  cat.innerHTML = Object.entries(state.legend.categories).map(([k, c]) => `<option value="${k}">${esc(N(c.name))}</option>`).join("");
  const subs = () => { sub.innerHTML = Object.entries(state.legend.categories[cat.value].subtypes).map(([k, n]) => `<option value="${k}">${esc(n)}</option>`).join(""); };
  cat.onchange = subs; subs();
}

function setupForms() {
  document.getElementById("btn-new").onclick = () => {
    mode = "new";
    document.getElementById("new-where").textContent = T.clickPoints.split("，")[0];
    map.getContainer().style.cursor = "crosshair";
  };
  const nd = document.getElementById("new-dialog");
  nd.addEventListener("close", async () => {
    map.getContainer().style.cursor = "";
    if (nd.returnValue !== "create" || !draft) return;
    const f = new FormData(document.getElementById("new-form"));
    try {
      const inc = await api("POST", "/api/incidents", { category: f.get("category"), subtype: f.get("subtype"),
        priority: Number(f.get("priority")), lon: draft.lon, lat: draft.lat, address: f.get("address"), description: f.get("description") });
      upsertIncident(inc); select(inc.id);
    } catch (err) { alert(err.message); }
    draft = null;
  });
  document.getElementById("btn-draw").onclick = () => {
    const btn = document.getElementById("btn-draw");
    if (mode === "draw") {
      if (draft.points.length < 3) { alert(T.needPoints); return; }
      mode = null; btn.textContent = btn.dataset.label;
      document.getElementById("cap-result").textContent = "";
      document.getElementById("cap-dialog").showModal();
      return;
    }
    mode = "draw"; btn.dataset.label = btn.textContent; btn.textContent = cfg.finish;
    if (draft && draft.line) draft.line.remove();
    draft = { points: [], line: L.polygon([], { color: "#d32f2f", dashArray: "6 4" }).addTo(map) };
  };
  const cd = document.getElementById("cap-dialog");
  document.getElementById("cap-form").addEventListener("submit", async (e) => {
    if (e.submitter && e.submitter.value !== "issue") { if (draft && draft.line) draft.line.remove(); draft = null; return; }
    e.preventDefault();
    const f = new FormData(e.target);
    try {
      const out = await api("POST", "/api/cap", { event: f.get("event"), level: f.get("level"), headline: f.get("headline"),
        description: f.get("description"), instruction: f.get("instruction"), polygon: draft.points, incident_id: state.selected });
      document.getElementById("cap-result").innerHTML = `${T.capDone}: <a href="/api/cap/${encodeURIComponent(out.identifier)}" target="_blank" data-testid="cap-identifier">${esc(out.identifier)}</a>`;
      setTimeout(() => cd.close(), 1500);
    } catch (err) { document.getElementById("cap-result").textContent = err.message; }
  });
  const search = document.getElementById("place-search");
  let places = [];
  search.addEventListener("input", async () => {
    const q = search.value.trim();
    const hit = places.find((p) => p.label === q);
    if (hit) { map.setView([hit.lat, hit.lon], 13); return; }
    if (!q) return;
    try { places = await api("GET", `/api/gazetteer?q=${encodeURIComponent(q)}`); } catch { return; }
    document.getElementById("place-results").innerHTML = places.map((p) => `<option value="${esc(p.label)}">`).join("");
  });
  const tb = document.getElementById("btn-training");
  tb.onclick = async () => {
    try { await api("POST", "/api/dispatch/training", { enabled: !state.training }); } catch (err) { alert(err.message); }
  };
}

// ---------------------------------------------------------------- live updates

function upsertIncident(inc) {
  const old = state.incidents.get(inc.id);
  state.incidents.set(inc.id, { ...(old || {}), ...inc });
  drawIncident(state.incidents.get(inc.id));
}

function upsertUnit(u) {
  state.units.set(u.id, u);
  drawUnit(u);
}

let queued = null;
function refreshSoon() {
  if (queued) return;
  queued = setTimeout(() => { queued = null; renderQueue(); renderBoard(); renderAlarm(); }, 50);
}

// The alarm: real calls waiting while every call-taking position trains, and (in training mode)
// real incidents still open.
function renderAlarm() {
  const box = document.getElementById("real-alarm");
  const lines = [];
  if (state.callAlarm && state.callAlarm.active) lines.push(T.callAlarm(state.callAlarm.waiting));
  if (state.training) {
    const real = [...state.incidents.values()].filter((i) => !i.training && i.status !== "closed").map((i) => i.id);
    if (real.length) lines.push(T.realOpen(real.join(", ")));
  }
  box.innerHTML = lines.map((l) => `<div>${esc(l)}</div>`).join("");
  box.hidden = !lines.length;
}

function onEvent(ev) {
  const p = ev.payload || {};
  document.dispatchEvent(new CustomEvent("cc-event", { detail: ev }));  // for resources.js and other add-ons
  switch (ev.topic) {
    case "incident.created":
    case "incident.updated":
      upsertIncident(p.incident);
      refreshSoon();
      if (p.incident.id === state.selected) renderDetail();
      break;
    case "unit.status":
      for (const u of p.units) upsertUnit(u);
      refreshSoon();
      break;
    case "unit.positions":
      for (const [id, lon, lat, at] of p.positions) {
        const u = state.units.get(id);
        if (!u) continue;
        Object.assign(u, { lon, lat, fix_at: at, stale: false, position_source: "avl" });
        drawUnit(u);
      }
      break;
    case "incident.conference_requested":
      if (p.incident_id === state.selected) renderDetail();
      break;
    case "call.training_alarm":
      state.callAlarm = p;
      renderAlarm();
      break;
    case "system.training_mode":
      location.reload();
      break;
    default:
  }
}

function connect() {
  const conn = document.getElementById("conn");
  window.openEventStream({  // web_console/static/event_stream.js: reconnects with ?since=<last id>
    onEvent,
    onState: (up) => { conn.textContent = up ? "●" : "○"; conn.classList.toggle("up", up); },
    beforeReconnect: () => load(false),
  });
}

// A fix ages without any event: re-check staleness periodically and grey the unit out.
function markStale() {
  const now = Date.now();
  for (const u of state.units.values()) {
    if (u.position_source !== "avl" || !u.fix_at || u.stale) continue;
    if (now - Date.parse(u.fix_at) > state.staleAfter * 1000) { u.stale = true; drawUnit(u); refreshSoon(); }
  }
}

async function load(first) {
  const st = await api("GET", "/api/dispatch/state");
  state.legend = st.legend;
  state.staleAfter = st.stale_after_s;
  state.training = st.training;
  state.callAlarm = st.training_alarm;
  if (first) initMap(st);
  for (const u of st.units) upsertUnit(u);
  for (const inc of st.incidents) upsertIncident(inc);
  renderQueue(); renderBoard(); renderAlarm();
}

document.body.classList.toggle("training", cfg.training);
await load(true);
fillCategories();
setupForms();
connect();
setInterval(markStale, 15000);
window.dispatchConsole = { state, markers, map };
