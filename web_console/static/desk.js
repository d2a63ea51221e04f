// Call-taking desk: ring, caller data (number, name, locations with source and uncertainty circle,
// county/township), history, possible duplicates with one-click merge, the incident form, hang-up
// with disposition, and the desk dashboard. Live updates arrive on /ws/desk, which also tells the
// server this position is alive (if it drops mid-call the call goes back to the head of the queue).
/* global L */

const cfg = JSON.parse(document.getElementById("desk-config").textContent);
const EN = cfg.lang === "en";
// Model names (categories, statuses, unit types) arrive in zh-CN; the page translates them in English mode.
const N = (name) => (cfg.names || {})[name] || name;
const T = EN ? {
  ringing: "Incoming call", from: "from", dialled: "dialled", waiting: "waiting", ringingN: "ringing",
  answered: "answered", abandoned: "abandoned", offered: "offered", within: "answered within",
  invalid: "invalid", radius: "radius", source: { "pidf-lo": "network (PIDF-LO)", "aml-sms": "handset AML (SMS)",
    "aml-https": "handset AML (HTTPS)", manual: "typed by call-taker" },
  merge: "Merge into this incident", created: "Incident created", merged: "Call merged into", none: "none",
  noLocation: "No usable location yet: type a place or ask the caller", prefilled: "Location",
  states: { available: "available", offered: "ringing", busy: "on a call", wrap_up: "wrap-up", paused: "paused", logged_out: "signed off" },
  callback: "call back", overflow: "overflow", recording: "recording", requeued: "requeued after a position failure", hour: "answer time per hour (s)",
  verified: "✓ network-verified", unverified: "⚠ unverified number",
  unverifiedTip: "Not asserted by a trusted operator trunk: the caller may have set this number (and location) themselves",
  drill: "drill", trainingFigs: "Training (not in the figures above)", callbacksOpen: "to call back",
  alarm: (n, p) => `ALARM: ${n} real emergency call(s) waiting — every signed-on position (${p}) is in training mode. Leave training to answer.`,
  trainingOn: "Training position: on", trainingOff: "Training position",
} : {
  ringing: "来电", from: "主叫", dialled: "拨打", waiting: "排队", ringingN: "振铃", answered: "已接",
  abandoned: "放弃", offered: "呼入", within: "秒内接听率", invalid: "无效", radius: "半径",
  source: { "pidf-lo": "网络定位（PIDF-LO）", "aml-sms": "手机 AML（短信）", "aml-https": "手机 AML（HTTPS）", manual: "接警员输入" },
  merge: "合并到此警情", created: "已建立警情", merged: "已合并到警情", none: "无",
  noLocation: "暂无可用位置：请输入地点或询问报警人", prefilled: "位置",
  states: { available: "空闲", offered: "振铃中", busy: "通话中", wrap_up: "话后整理", paused: "暂停", logged_out: "未签入" },
  callback: "已回拨", overflow: "溢出组", recording: "录音", requeued: "席位掉线后重新排队", hour: "每小时接听用时（秒）",
  verified: "✓ 网络核实", unverified: "⚠ 号码未核实",
  unverifiedTip: "该号码（及位置）不是由受信任的运营商中继提供的，可能由主叫自行设置",
  drill: "演练", trainingFigs: "演练（不计入以上统计）", callbacksOpen: "待回拨",
  alarm: (n, p) => `告警：${n} 个真实报警正在排队 — 所有签入席位（${p}）都处于演练模式，请退出演练接听！`,
  trainingOn: "演练席位：开", trainingOff: "演练席位",
};

const state = { call: null, offer: null, positions: [] };
let map, callLayer;

async function api(method, path, body) {
  const opts = { method, headers: { "X-CSRF-Token": cfg.csrf } };
  if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
  const res = await fetch(path, opts);
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail));
  return data;
}

function esc(s) { return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]); }
const $ = (id) => document.getElementById(id);
function msg(text, bad) { const m = $("form-msg"); m.textContent = text; m.className = bad ? "error" : "ok"; }

// ---------------------------------------------------------------- map

function initMap(boundaries) {
  map = L.map("map", { attributionControl: false });
  const counties = L.geoJSON(boundaries, {
    style: { color: "#455a64", weight: 2, fillColor: "#eef3f7", fillOpacity: 0.6 },
    onEachFeature: (f, layer) => layer.bindTooltip(f.properties.name, { sticky: true }),
  }).addTo(map);
  map.fitBounds(counties.getBounds());
  callLayer = L.layerGroup().addTo(map);
  map.on("click", async (e) => {
    if (!state.call) return;
    try {
      await api("POST", `/api/desk/calls/${state.call.id}/location`,
        { lon: e.latlng.lng, lat: e.latlng.lat, radius_m: 50, label: "" });
      await loadCall(state.call.id);
    } catch (err) { msg(err.message, true); }
  });
}

function drawLocations(call) {
  map.invalidateSize();  // the panels beside the map change height with the call data
  callLayer.clearLayers();
  const pts = call.locations.filter((l) => l.valid && l.lat != null);
  for (const l of pts) {
    const best = call.location && l.source === call.location.source && l.lat === call.location.lat;
    const colour = best ? "#c62828" : "#1565c0";
    if (l.radius_m) {
      L.circle([l.lat, l.lon], { radius: l.radius_m, color: colour, weight: 2, fillOpacity: 0.15, className: "uncertainty" }).addTo(callLayer);
    }
    L.circleMarker([l.lat, l.lon], { radius: 6, color: colour, fillOpacity: 1, className: best ? "call-marker best" : "call-marker" })
      .bindTooltip(`${T.source[l.source] || l.source}${l.radius_m ? ` ±${Math.round(l.radius_m)} m` : ""}`).addTo(callLayer);
  }
  for (const d of call.duplicates) {
    L.circleMarker([d.incident.lat, d.incident.lon], { radius: 7, color: "#6a1b9a", fillOpacity: 0.6, className: "dup-marker" })
      .bindTooltip(`${d.incident.id} ${N(d.incident.category_name) || ""} ${d.distance_m} m`).addTo(callLayer);
  }
  const loc = call.location;
  if (loc) {
    const ll = L.latLng(loc.lat, loc.lon);
    map.fitBounds(ll.toBounds(Math.max(2 * (loc.radius_m || 0), 300)), { maxZoom: 17, animate: false });
  }
}

// ---------------------------------------------------------------- call panel

function locationItem(l) {
  const where = l.lat != null ? `${l.lat.toFixed(5)}, ${l.lon.toFixed(5)}` : "";
  const civic = Object.entries(l.civic || {}).filter(([k]) => !["positioned_at", "method"].includes(k)).map(([, v]) => v).join(" ");
  const area = [l.county, l.township].filter(Boolean).join(" ");
  return `<li class="${l.valid ? "" : "invalid"}" data-source="${esc(l.source)}">
    <b>${esc(T.source[l.source] || l.source)}</b> ${esc(l.shape)} ${esc(where)}
    ${l.radius_m != null ? `<span class="radius">${T.radius} ${Math.round(l.radius_m)} m</span>` : ""}
    ${area ? `<span class="area" data-testid="location-area">${esc(area)}</span>` : ""}
    ${civic ? `<div>${esc(civic)}</div>` : ""}
    ${l.valid ? "" : `<div class="reason" data-testid="location-invalid">${T.invalid}: ${esc(l.reason)}</div>`}
  </li>`;
}

function renderCall(call) {
  state.call = call;
  $("no-call").hidden = true;
  $("call").hidden = false;
  $("caller-number").textContent = call.number;
  const verified = $("caller-verified");
  verified.textContent = call.number_verified ? T.verified : T.unverified;
  verified.className = call.number_verified ? "verified" : "unverified flag";
  verified.title = call.number_verified ? "" : T.unverifiedTip;
  $("caller-name").textContent = call.name || "";
  $("dialled").textContent = `${call.dialled} · ${N(call.category_name)}`;
  $("call-flags").textContent = (call.flags || []).length ? T.requeued : "";
  $("locations").innerHTML = call.locations.length ? call.locations.map(locationItem).join("") : `<li class="muted">${T.noLocation}</li>`;
  $("duplicates").innerHTML = call.duplicates.length ? call.duplicates.map((d) => `<li>
      <b>${esc(d.incident.id)}</b> ${esc(N(d.incident.category_name) || d.incident.category)} ${d.distance_m} m · ${Math.round(d.age_s / 60)} min
      <button data-merge="${esc(d.incident.id)}" data-testid="btn-merge">${T.merge}</button></li>`).join("")
    : `<li class="muted">${T.none}</li>`;
  const h = call.history;
  $("history").innerHTML = (h.calls.length + h.incidents.length) ? [
    ...h.incidents.map((i) => `<li>${esc(i.created_at.substring(0, 16).replace("T", " "))} <b>${esc(i.id)}</b> ${esc(N(i.category_name))} ${esc(i.status)}</li>`),
    ...h.calls.map((c) => `<li>${esc(c.offered_at.substring(0, 16).replace("T", " "))} ${esc(c.dialled)} ${esc(c.state)} ${esc(c.disposition)}
      ${c.incident_id ? esc(c.incident_id) : ""}
      ${c.has_recording ? `<button data-play="${esc(c.id)}" data-testid="btn-play">▶ ${T.recording}</button>` : ""}</li>`),
  ].join("") : `<li class="muted">${T.none}</li>`;
  const form = $("incident-form");
  if (!form.dataset.call || form.dataset.call !== call.id) {
    form.dataset.call = call.id;
    form.category.value = call.category;
    fillSubtypes();
  }
  const loc = call.location;
  $("f-where").textContent = loc ? `${T.prefilled}: ${T.source[loc.source] || loc.source} ${loc.lat.toFixed(5)}, ${loc.lon.toFixed(5)}`
    + `${loc.radius_m ? ` ±${Math.round(loc.radius_m)} m` : ""} ${loc.county || ""} ${loc.township || ""}` : T.noLocation;
  if (loc && loc.civic && !form.address.value) {
    form.address.value = Object.entries(loc.civic).filter(([k]) => !["positioned_at", "method", "country", "label"].includes(k)).map(([, v]) => v).join("");
  }
  $("btn-create").disabled = !loc || !!call.incident_id;
  $("btn-hangup").disabled = false;
  if (call.position === cfg.position && call.state === "answered" && !call.training) startMedia(call.id);  // a drill caller has no voice
  drawLocations(call);
}

function clearCall() {
  state.call = null;
  $("no-call").hidden = false;
  $("call").hidden = true;
  $("btn-create").disabled = true;
  $("btn-hangup").disabled = true;
  const form = $("incident-form");
  form.reset();
  delete form.dataset.call;
  if (callLayer) callLayer.clearLayers();
}

async function loadCall(id) { renderCall(await api("GET", `/api/desk/calls/${id}`)); }

function fillSubtypes() {
  const form = $("incident-form");
  const subs = cfg.categories[form.category.value].subtypes;
  form.subtype.innerHTML = Object.entries(subs).map(([k, n]) => `<option value="${k}">${esc(N(n))}</option>`).join("");
  form.subtype.value = "general";  // tojson sorts keys: pick the general subtype explicitly
}

// ---------------------------------------------------------------- side panel

function renderQueue(q) {
  $("queue").innerHTML = q.calls.map((c) => `<li class="${c.state}${c.training ? " drill" : ""}" data-call="${esc(c.id)}">${c.training ? `<span class="drill-tag">${T.drill}</span> ` : ""}${esc(c.number)}${c.number_verified || c.training ? "" : ` <span class="flag" title="${esc(T.unverifiedTip)}">${T.unverified}</span>`} → ${esc(c.dialled)}
    <span class="muted">${c.state === "offered" ? `${T.ringingN} ${esc(c.position)}` : T.waiting}</span></li>`).join("");
  state.positions = q.positions;
  $("positions").innerHTML = q.positions.map((p) => `<li class="pos-${p.state}" data-position="${esc(p.id)}">${esc(p.id)}
    <span class="pill">${T.states[p.state] || p.state}</span> ${p.training ? `<span class="drill-tag">${T.drill}</span>` : ""} ${p.group === "overflow" ? `<span class="muted">${T.overflow}</span>` : ""} ${p.mark ? `<span class="flag">${esc(p.mark)}</span>` : ""}</li>`).join("");
  const me = q.positions.find((p) => p.id === cfg.position);
  const st = me ? me.state : "logged_out";
  $("position-state").textContent = T.states[st] || st;
  $("position-state").dataset.state = st;
  const training = !!(me && me.training);
  const tb = $("btn-training-position");
  tb.setAttribute("aria-pressed", String(training));
  tb.textContent = training ? T.trainingOn : T.trainingOff;
  document.body.classList.toggle("training", training);
  const mine = q.calls.find((c) => c.state === "offered" && c.position === cfg.position);
  setRing(mine || null);
}

function setRing(call) {
  state.offer = call;
  $("ring").hidden = !call;
  if (call) $("ring-text").textContent = `${call.training ? `【${T.drill}】` : ""}${T.ringing} · ${T.from} ${call.number}${call.name ? " " + call.name : ""} · ${T.dialled} ${call.dialled} ${N(call.category_name)}`;
}

function renderDashboard(d) {
  const within = Object.entries(d.within).map(([s, v]) => `<div class="fig" data-testid="within-${s}"><b>${v == null ? "–" : v + "%"}</b><span>${s} ${T.within}</span></div>`).join("");
  const pos = Object.entries(d.positions).map(([s, n]) => `${T.states[s] || s} ${n}`).join(" · ");
  const t = d.training || {};
  $("dashboard").innerHTML = `<div class="figs">
    <div class="fig" data-testid="dash-waiting"><b>${d.waiting}</b><span>${T.waiting}</span></div>
    <div class="fig"><b>${d.ringing}</b><span>${T.ringingN}</span></div>
    <div class="fig" data-testid="dash-offered"><b>${d.offered}</b><span>${T.offered}</span></div>
    <div class="fig" data-testid="dash-answered"><b>${d.answered}</b><span>${T.answered}</span></div>
    <div class="fig" data-testid="dash-abandoned"><b>${d.abandoned}</b><span>${T.abandoned}</span></div>
    <div class="fig" data-testid="dash-callbacks"><b>${d.callbacks_open}</b><span>${T.callbacksOpen}</span></div>
    ${within}</div>
    <p class="fig-training" data-testid="dash-training"><span class="drill-tag">${T.trainingFigs}</span>
      ${T.offered} <b data-testid="dash-training-offered">${t.offered ?? 0}</b> · ${T.answered} <b>${t.answered ?? 0}</b>
      · ${T.abandoned} <b>${t.abandoned ?? 0}</b> · ${T.callbacksOpen} <b>${t.callbacks_open ?? 0}</b></p>
    <p class="muted">${esc(pos)}</p>`;
  const alarm = d.training_alarm || {};
  $("training-alarm").hidden = !alarm.active;
  $("training-alarm").textContent = alarm.active ? T.alarm(alarm.waiting, (alarm.positions || []).join(", ")) : "";
  const c = $("hour-chart");
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  g.fillStyle = "#455a64";
  g.font = "10px sans-serif";
  g.fillText(T.hour, 2, 10);
  const rows = d.per_hour.slice(-12);
  const max = Math.max(15, ...rows.map((r) => r.max_s));
  const w = (c.width - 10) / Math.max(rows.length, 1);
  rows.forEach((r, i) => {
    const h = (r.mean_s / max) * (c.height - 30);
    g.fillStyle = r.mean_s <= cfg.thresholds[0] ? "#2e7d32" : "#ef6c00";
    g.fillRect(5 + i * w, c.height - 15 - h, w - 4, h);
    g.fillStyle = "#455a64";
    g.fillText(r.hour.substring(11, 13), 5 + i * w, c.height - 3);
  });
}

function renderCallbacks(list) {
  $("callbacks").innerHTML = list.length ? list.map((c) => `<li data-testid="callback-entry">${c.training ? `<span class="drill-tag">${T.drill}</span> ` : ""}${esc(c.number)}
    <span class="muted">${esc(c.listed_at.substring(11, 19))} · ${Math.round(c.waited_s)} s</span>
    <button data-callback="${esc(c.call_id)}">${T.callback}</button></li>`).join("") : `<li class="muted">${T.none}</li>`;
}

let refreshTimer = null;
function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, 150);
}

async function refresh() {
  const [q, d, cb] = await Promise.all([api("GET", "/api/desk/state").then((s) => s.queue),
    api("GET", "/api/desk/dashboard"), api("GET", "/api/desk/callbacks")]);
  renderQueue(q);
  renderDashboard(d);
  renderCallbacks(cb);
  if (!state.call) {
    const active = q.active.find((c) => c.position === cfg.position);
    if (active) await loadCall(active.id);
  }
}

// ---------------------------------------------------------------- softphone (WebRTC into the call's MCU room)

const phone = { pc: null, stream: null, callId: null, muted: false, held: false };

function waitIce(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") { pc.removeEventListener("icegatheringstatechange", done); resolve(); } };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 3000);
  });
}

function phoneButtons(on) {
  for (const id of ["btn-hold", "btn-mute", "btn-dtmf", "btn-invite", "btn-transfer", "btn-blind"]) { const b = $(id); if (b) b.disabled = !on; }
}

async function startMedia(callId) {
  if (!cfg.softphone || phone.callId === callId) return;
  stopMedia();
  phone.callId = callId;
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
  const pc = new RTCPeerConnection();
  phone.pc = pc; phone.stream = stream; phone.muted = false; phone.held = false;
  stream.getAudioTracks().forEach((t) => pc.addTrack(t, stream));
  pc.ontrack = (e) => {
    if (e.track.kind !== "audio") return;
    const remote = new MediaStream([e.track]);
    $("remote-audio").srcObject = remote;
    window.deskRemoteStream = remote;  // tests analyse what the call-taker hears
  };
  pc.onconnectionstatechange = () => { $("media-state").textContent = pc.connectionState; $("media-state").dataset.state = pc.connectionState; };
  await pc.setLocalDescription(await pc.createOffer());
  await waitIce(pc);
  try {
    const { sdp } = await api("POST", `/api/desk/calls/${callId}/media`, { sdp: pc.localDescription.sdp });
    await pc.setRemoteDescription({ type: "answer", sdp });
    phoneButtons(true);
  } catch (err) { msg(err.message, true); stopMedia(); }
}

function stopMedia() {
  if (phone.pc) phone.pc.close();
  if (phone.stream) phone.stream.getTracks().forEach((t) => t.stop());
  phone.pc = null; phone.stream = null; phone.callId = null;
  window.deskRemoteStream = null;
  if ($("media-state")) { $("media-state").textContent = "–"; delete $("media-state").dataset.state; }
  phoneButtons(false);
}

function softphoneControls() {
  if (!cfg.softphone) return;
  $("btn-hold").onclick = async () => {
    try { phone.held = !phone.held; await api("POST", `/api/desk/calls/${phone.callId}/hold`, { on_hold: phone.held }); }
    catch (err) { msg(err.message, true); }
  };
  $("btn-mute").onclick = () => {
    phone.muted = !phone.muted;
    if (phone.stream) phone.stream.getAudioTracks().forEach((t) => { t.enabled = !phone.muted; });
    $("btn-mute").classList.toggle("on", phone.muted);
  };
  $("btn-dtmf").onclick = async () => {
    try { await api("POST", `/api/desk/calls/${phone.callId}/dtmf`, { digits: $("dtmf").value }); $("dtmf").value = ""; }
    catch (err) { msg(err.message, true); }
  };
  $("btn-invite").onclick = async () => {
    try { await api("POST", `/api/desk/calls/${phone.callId}/invite`, { target: $("agency").value.trim() }); }
    catch (err) { msg(err.message, true); }
  };
  const transfer = (blind) => async () => {
    try {
      await api("POST", `/api/desk/calls/${phone.callId}/transfer`, { target: $("agency").value.trim(), blind });
      stopMedia(); clearCall(); refreshSoon();
    } catch (err) { msg(err.message, true); }
  };
  $("btn-transfer").onclick = transfer(false);
  $("btn-blind").onclick = transfer(true);
  $("btn-join").onclick = async () => {
    const id = $("invite").dataset.call;
    await startMedia(id);
    $("btn-join").hidden = true; $("btn-leave").hidden = false;
  };
  $("btn-leave").onclick = async () => {
    const id = $("invite").dataset.call;
    try { await api("POST", `/api/desk/calls/${id}/leave`); } catch (err) { msg(err.message, true); }
    stopMedia(); $("invite").hidden = true;
  };
}

function onCallEvent(ev) {
  const p = ev.payload;
  if (ev.topic === "call.invite" && p.target === cfg.position) {
    $("invite").dataset.call = p.call_id;
    $("invite-text").textContent = `${p.by} → ${p.call ? p.call.number + " " + p.call.dialled : p.call_id}`;
    $("invite").hidden = false; $("btn-join").hidden = false; $("btn-leave").hidden = true;
  }
  if (ev.topic === "call.transferred" && p.to === cfg.position) {
    $("invite").hidden = true;
    loadCall(p.call_id);
  }
  if (ev.topic === "call.participants" && state.call && p.call_id === state.call.id && $("participants")) {
    $("participants").textContent = (p.participants || []).join(" · ");
  }
  if (ev.topic === "call.ended" && phone.callId === p.call_id) { stopMedia(); $("invite").hidden = true; }
}

// ---------------------------------------------------------------- live events

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/ws/desk`);
  const conn = $("conn");
  let ping;
  ws.onopen = () => { conn.textContent = "●"; conn.className = "conn up"; ping = setInterval(() => ws.send("ping"), 15000); refresh(); };
  ws.onmessage = async (m) => {
    const ev = JSON.parse(m.data);
    refreshSoon();
    onCallEvent(ev);
    if (state.call && ev.payload.call_id === state.call.id) {
      if (ev.topic === "call.ended") clearCall();
      else if (["call.location", "call.incident"].includes(ev.topic)) await loadCall(state.call.id);
    }
  };
  ws.onclose = (e) => {
    conn.textContent = "○"; conn.className = "conn down"; clearInterval(ping);
    if (e.code !== 4401 && e.code !== 4403) setTimeout(connect, 2000);
  };
}

// ---------------------------------------------------------------- actions

async function setPosition(st) {
  try { await api("POST", "/api/desk/position", { state: st, group: $("group").value }); await refresh(); }
  catch (err) { msg(err.message, true); }
}

$("btn-available").onclick = () => setPosition("available");
$("btn-pause").onclick = () => setPosition("paused");
$("btn-training-position").onclick = async () => {
  const on = $("btn-training-position").getAttribute("aria-pressed") !== "true";
  try {
    const me = state.positions.find((p) => p.id === cfg.position);
    if (!me || me.state === "logged_out") await api("POST", "/api/desk/position", { state: "available", group: $("group").value, training: on });
    else await api("POST", "/api/desk/position/training", { training: on });
    await refresh();
  } catch (err) { msg(err.message, true); }
};
$("btn-answer").onclick = async () => {
  if (!state.offer) return;
  try {
    const call = await api("POST", `/api/desk/calls/${state.offer.id}/answer`);
    setRing(null);
    await loadCall(call.id);
    if (!call.training) startMedia(call.id);
    refreshSoon();
  } catch (err) { msg(err.message, true); refreshSoon(); }
};
$("f-category").onchange = fillSubtypes;
$("incident-form").onsubmit = async (e) => {
  e.preventDefault();
  if (!state.call) return;
  const f = e.target;
  try {
    const inc = await api("POST", `/api/desk/calls/${state.call.id}/incident`, {
      category: f.category.value, subtype: f.subtype.value, priority: Number(f.priority.value),
      address: f.address.value, description: f.description.value,
    });
    msg(`${T.created} ${inc.id}`);
    $("btn-create").disabled = true;
    $("disposition").value = "incident";
  } catch (err) { msg(err.message, true); }
};
$("btn-hangup").onclick = async () => {
  if (!state.call) return;
  try {
    await api("POST", `/api/desk/calls/${state.call.id}/hangup`, { disposition: $("disposition").value });
    stopMedia();
    clearCall();
    refreshSoon();
  } catch (err) { msg(err.message, true); }
};
document.addEventListener("click", async (e) => {
  const merge = e.target.closest("[data-merge]");
  if (merge && state.call) {
    try {
      const inc = await api("POST", `/api/desk/calls/${state.call.id}/merge`, { incident_id: merge.dataset.merge });
      msg(`${T.merged} ${inc.id}`);
      $("btn-create").disabled = true;
      $("disposition").value = "duplicate";
    } catch (err) { msg(err.message, true); }
  }
  const play = e.target.closest("[data-play]");
  if (play) {  // fetched only on click: every playback is written to the audit log
    const audio = document.createElement("audio");
    audio.controls = true; audio.src = `/api/desk/calls/${play.dataset.play}/recording`;
    play.replaceWith(audio);
    audio.play().catch(() => {});
  }
  const cb = e.target.closest("[data-callback]");
  if (cb) { try { await api("POST", `/api/desk/callbacks/${cb.dataset.callback}/done`); refreshSoon(); } catch (err) { msg(err.message, true); } }
  const place = e.target.closest("[data-place]");
  if (place && state.call) {
    const p = JSON.parse(place.dataset.place);
    try {
      await api("POST", `/api/desk/calls/${state.call.id}/location`, { lon: p.lon, lat: p.lat, radius_m: p.approximate ? 500 : 100, label: p.label });
      $("place-results").innerHTML = "";
      $("place-search").value = "";
      await loadCall(state.call.id);
    } catch (err) { msg(err.message, true); }
  }
});
let searchTimer = null;
$("place-search").oninput = (e) => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(async () => {
    const q = e.target.value.trim();
    const list = q ? await api("GET", `/api/desk/places?q=${encodeURIComponent(q)}`) : [];
    $("place-results").innerHTML = list.map((p) => `<li data-place='${esc(JSON.stringify(p))}' data-testid="place-option">${esc(p.label)}</li>`).join("");
  }, 200);
};

(async function main() {
  const st = await api("GET", "/api/desk/state");
  initMap(st.boundaries);
  renderQueue(st.queue);
  renderDashboard(st.dashboard);
  renderCallbacks(st.callbacks);
  fillSubtypes();
  softphoneControls();
  connect();
})();
