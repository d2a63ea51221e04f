// The field responders' phone page (/field): the unit's job and its navigation target, big status
// buttons, GPS shared as AVL, and the command conference with the phone camera (audio first, low video
// rate). API: web_console/field_console.py; signalling: /ws/conference/<id> as the join page uses it.
const cfg = JSON.parse(document.getElementById("field-config").textContent);
const T = cfg.t;
const $ = (id) => document.getElementById(id);
const fmt = (s, values) => s.replace(/\{(\w+)\}/g, (_, k) => (values[k] ?? ""));
const unitId = cfg.unit;
let current = null; // the last state answer {unit, incident}

async function call(method, path, body) {
  const r = await fetch(path, {
    method, credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": cfg.csrf },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  return { status: r.status, data };
}

function detailOf(data) {
  if (!data) return "";
  if (typeof data.detail === "string") return data.detail;
  if (Array.isArray(data.detail)) return data.detail.map((d) => d.msg || "").join("; ");
  return "";
}

function message(text, kind) {
  const box = $("message");
  box.textContent = text;
  box.dataset.kind = kind || "info";
  box.hidden = !text;
}

// ---------------------------------------------------------------- the map

let map = null, unitMarker = null, targetMarker = null, line = null, fitted = "";

function drawMap(unit, inc) {
  if (typeof L === "undefined") return;
  if (!map) {
    map = L.map("field-map", { zoomControl: true, attributionControl: false });
    if (cfg.tiles) L.tileLayer("/field/tiles/{z}/{x}/{y}", { maxZoom: 18 }).addTo(map);
  }
  const target = [inc.lat, inc.lon];
  if (!targetMarker) {
    targetMarker = L.marker(target, { title: T.target, icon: L.divIcon({ className: "", iconSize: [22, 22],
      html: '<div class="field-target" data-testid="map-target"></div>' }) }).addTo(map);
  } else targetMarker.setLatLng(target);
  const pts = [target];
  if (unit.lon !== null && unit.lat !== null) {
    const here = [unit.lat, unit.lon];
    pts.push(here);
    if (!unitMarker) {
      unitMarker = L.marker(here, { title: T.unit_here, icon: L.divIcon({ className: "", iconSize: [18, 18],
        html: '<div class="field-unit" data-testid="map-unit"></div>' }) }).addTo(map);
    } else unitMarker.setLatLng(here);
    if (line) line.setLatLngs(pts); else line = L.polyline(pts, { color: "#b71c1c", dashArray: "6 6" }).addTo(map);
    const km = map.distance(here, target) / 1000;
    $("distance").textContent = fmt(T.distance, { km: km.toFixed(km < 10 ? 1 : 0) });
  }
  // refit when the job changes or the unit moved noticeably (~100 m), not on every poll
  const key = inc.id + pts.slice(1).map((p) => p.map((v) => v.toFixed(3)).join(",")).join("");
  if (fitted !== key) {
    map.invalidateSize();
    if (pts.length > 1) map.fitBounds(L.latLngBounds(pts), { padding: [28, 28], maxZoom: 16 });
    else map.setView(target, 15);
    fitted = key;
  }
}

// ---------------------------------------------------------------- state

function render(state) {
  current = state;
  const unit = state.unit;
  if (!unit) return;
  $("callsign").textContent = unit.callsign;
  const st = $("status");
  st.textContent = T.status_names[unit.status] || unit.status;
  st.dataset.status = unit.status;
  st.style.color = unit.colour;
  document.querySelectorAll(".status-button").forEach((b) => {
    const ok = unit.allowed.includes(b.dataset.status);
    b.classList.toggle("allowed", ok);
    b.classList.toggle("current", b.dataset.status === unit.status);
  });
  const inc = state.incident;
  $("no-assignment").hidden = !!inc;
  $("incident").hidden = !inc;
  if (inc) {
    $("inc-priority").textContent = fmt(T.priority, { p: inc.priority });
    $("inc-priority").style.background = inc.colour;
    $("inc-category").textContent = inc.category_name + " · " + inc.subtype_name;
    $("inc-id").textContent = inc.id;
    $("inc-address").textContent = inc.address || [inc.county_name, inc.township_name].filter(Boolean).join(" ");
    $("inc-description").textContent = inc.description;
    const notes = $("inc-notes");
    notes.replaceChildren(...inc.notes.map((n) => { const li = document.createElement("li"); li.textContent = n; return li; }));
    const label = encodeURIComponent(inc.address || inc.id);
    $("navigate").href = `geo:${inc.lat},${inc.lon}?q=${inc.lat},${inc.lon}(${label})`;
    drawMap(unit, inc);
  }
  const conf = inc ? inc.conference_id : null;
  if (!pc) {
    $("conf-state").dataset.state = conf ? "ready" : "none";
    $("conf-state").textContent = conf ? fmt(T.conference_ready, { id: conf }) : T.no_conference;
    $("conf-join").hidden = !conf;
    $("conf-join").dataset.conference = conf || "";
  }
}

async function refresh() {
  const r = await call("GET", "/api/field/state");
  if (r.status === 200 && r.data) render(r.data);
}

async function setStatus(status) {
  const r = await call("POST", `/api/field/units/${encodeURIComponent(unitId)}/status`, { status });
  if (r.status === 200) {
    render(r.data);
    message(fmt(T.status_set, { status: T.status_names[r.data.unit.status] || status }), "ok");
  } else if (r.status === 409 || r.status === 422) {
    message(fmt(T.refused, { reason: detailOf(r.data) }), "refused");
    refresh();
  } else {
    message(fmt(T.failed, { reason: detailOf(r.data) || r.status }), "error");
  }
  $("message").dataset.code = String(r.status);
}

document.querySelectorAll(".status-button").forEach((b) => b.addEventListener("click", () => setStatus(b.dataset.status)));

// ---------------------------------------------------------------- GPS as AVL
// Sent at most every MIN_GAP_MS, and then only when moved MOVE_M or HEARTBEAT_MS passed: a phone on a
// poor link does not flood the dispatch centre, and the map still sees a parked unit as live.

const MIN_GAP_MS = 3000, HEARTBEAT_MS = 30000, MOVE_M = 25;
let watchId = null, lastSent = null, pending = null, sendTimer = null;

function metres(a, b) {
  const r = 6371000, rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad, dLon = (b.lon - a.lon) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * r * Math.asin(Math.sqrt(h));
}

function gpsState(state, text) {
  $("gps-state").dataset.state = state;
  $("gps-state").textContent = text;
}

async function sendFix(fix) {
  lastSent = { ...fix, at: Date.now() };
  const r = await call("POST", `/api/field/units/${encodeURIComponent(unitId)}/avl`, fix);
  if (r.status === 200) {
    gpsState("sent", fmt(T.gps_sent, { time: new Date().toLocaleTimeString(), acc: Math.round(fix.accuracy_m || 0) }));
    refresh();
  } else if (r.status !== 429) {
    gpsState("rejected", fmt(T.gps_rejected, { reason: detailOf(r.data) || r.status }));
  }
}

function onPosition(pos) {
  const c = pos.coords;
  const fix = { lon: c.longitude, lat: c.latitude, ts: new Date(pos.timestamp || Date.now()).toISOString() };
  if (Number.isFinite(c.accuracy)) fix.accuracy_m = Math.min(c.accuracy, 100000);
  if (Number.isFinite(c.speed) && c.speed !== null) fix.speed_kmh = Math.min(c.speed * 3.6, 400);
  if (Number.isFinite(c.heading) && c.heading !== null) fix.heading_deg = c.heading % 360;
  pending = fix;
  const now = Date.now();
  if (lastSent === null) { sendFix(fix); pending = null; return; }
  const due = metres(lastSent, fix) >= MOVE_M || now - lastSent.at >= HEARTBEAT_MS;
  if (!due) return;
  const wait = Math.max(0, MIN_GAP_MS - (now - lastSent.at));
  if (sendTimer) return;
  sendTimer = setTimeout(() => { sendTimer = null; if (pending) { sendFix(pending); pending = null; } }, wait);
}

function onGpsError(err) {
  gpsState("error", err && err.code === 1 ? T.gps_denied : fmt(T.gps_rejected, { reason: err ? err.message : "" }));
}

let heartbeat = null;
function toggleGps() {
  const button = $("gps-toggle");
  if (watchId !== null) {
    navigator.geolocation.clearWatch(watchId);
    clearInterval(heartbeat);
    watchId = null; lastSent = null;
    button.textContent = T.gps_start;
    button.setAttribute("aria-pressed", "false");
    gpsState("off", T.gps_off);
    return;
  }
  if (!navigator.geolocation) { gpsState("error", T.gps_unsupported); return; }
  gpsState("waiting", T.gps_waiting);
  const options = { enableHighAccuracy: true, maximumAge: 5000, timeout: 30000 };
  watchId = navigator.geolocation.watchPosition(onPosition, onGpsError, options);
  // a parked phone may report no new position: ask now and then so the unit does not go stale
  heartbeat = setInterval(() => navigator.geolocation.getCurrentPosition(onPosition, () => {}, options), HEARTBEAT_MS);
  button.textContent = T.gps_stop;
  button.setAttribute("aria-pressed", "true");
}

// ---------------------------------------------------------------- the command conference
// Audio first: the microphone is the first track and goes out at high priority; the camera is small
// (320×240, ≤ 15 fps) and capped at ~300 kbit/s, so a poor mobile link keeps the voice. Without a
// camera the crew joins with audio only.

const VIDEO_MAX_BITRATE = 300000;
let pc = null, ws = null, stream = null, pinger = null, leaving = false;
window.ccFieldPeer = null;

function gatheringDone(peer, ms) {
  if (peer.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    peer.addEventListener("icegatheringstatechange", () => {
      if (peer.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
    });
  });
}

function confState(state, text) {
  $("conf-state").dataset.state = state;
  $("conf-state").textContent = text;
}

function hangUp(state, text) {
  if (pinger) clearInterval(pinger);
  pinger = null;
  if (ws && ws.readyState <= 1) { try { ws.send('{"type":"leave"}'); } catch (e) { /* closing */ } ws.close(); }
  if (pc) pc.close();
  if (stream) stream.getTracks().forEach((t) => t.stop());
  pc = null; ws = null; stream = null; window.ccFieldPeer = null;
  $("conf-call").hidden = true;
  $("conf-join").hidden = false;
  confState(state, text);
}

async function openMedia() {
  try {
    return [await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true },
      video: { width: { ideal: 320 }, height: { ideal: 240 }, frameRate: { max: 15 }, facingMode: "environment" },
    }), false];
  } catch (e) {
    return [await navigator.mediaDevices.getUserMedia({ audio: true }), true];
  }
}

async function capVideo(sender) {
  const p = sender.getParameters();
  if (!p.encodings || !p.encodings.length) p.encodings = [{}];
  Object.assign(p.encodings[0], { maxBitrate: VIDEO_MAX_BITRATE, maxFramerate: 15, priority: "low", networkPriority: "low" });
  try { await sender.setParameters(p); } catch (e) { /* older browsers: the capture size still limits it */ }
  const q = sender.getParameters();
  q.degradationPreference = "maintain-framerate"; // a moving scene: fewer pixels rather than a slideshow
  try { await sender.setParameters(q); } catch (e) { /* not supported: the browser's default (balanced) */ }
}

async function join() {
  const conference = $("conf-join").dataset.conference;
  if (!conference || pc) return;
  $("conf-join").hidden = true;
  confState("connecting", T.connecting);
  let audioOnly = false;
  try {
    [stream, audioOnly] = await openMedia();
  } catch (e) {
    hangUp("error", T.no_devices);
    return;
  }
  pc = new RTCPeerConnection();
  window.ccFieldPeer = pc; // for diagnostics and the browser tests (getStats)
  const audio = stream.getAudioTracks()[0], video = stream.getVideoTracks()[0];
  if (audio) pc.addTransceiver(audio, { direction: "sendrecv", streams: [stream],
    sendEncodings: [{ priority: "high", networkPriority: "high" }] });
  let videoSender = null;
  if (video) {
    video.contentHint = "motion";
    videoSender = pc.addTransceiver(video, { direction: "sendrecv", streams: [stream],
      sendEncodings: [{ maxBitrate: VIDEO_MAX_BITRATE, maxFramerate: 15, priority: "low", networkPriority: "low" }] }).sender;
  } else {
    pc.addTransceiver("video", { direction: "recvonly" }); // still see the conference
  }
  pc.ontrack = (e) => {
    if (e.track.kind === "video") $("conf-remote").srcObject = new MediaStream([e.track]);
    else { const a = new Audio(); a.srcObject = new MediaStream([e.track]); a.play().catch(() => {}); }
  };
  await pc.setLocalDescription(await pc.createOffer());
  await gatheringDone(pc, 3000);
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  ws = new WebSocket(`${proto}//${location.host}/ws/conference/${encodeURIComponent(conference)}`);
  leaving = false;
  const name = current && current.unit ? current.unit.callsign : "";
  ws.onopen = () => ws.send(JSON.stringify({ type: "join", sdp: pc.localDescription.sdp, name }));
  ws.onmessage = async (msg) => {
    let reply;
    try { reply = JSON.parse(msg.data); } catch (e) { return; }
    if (reply.type === "answer") {
      await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
      if (videoSender) await capVideo(videoSender);
      $("conf-call").hidden = false;
      $("conf-local").srcObject = stream;
      $("conf-camera").hidden = !video;
      $("conf-call").dataset.participant = reply.participant_id;
      confState("joined", (audioOnly ? T.audio_only + " · " : "") + fmt(T.in_conference, { name }));
      pinger = setInterval(() => { if (ws && ws.readyState === 1) ws.send('{"type":"ping"}'); }, 10000);
    } else if (reply.type === "refused" || reply.type === "error") {
      leaving = true;
      hangUp("refused", reply.message || reply.code);
    } else if (reply.type === "bye") {
      leaving = true;
      hangUp("ended", T.left);
    }
  };
  ws.onclose = () => { if (!leaving && pc) hangUp("lost", T.lost); };
}

$("conf-join") && $("conf-join").addEventListener("click", () => { join().catch((e) => hangUp("error", String(e))); });
$("conf-leave") && $("conf-leave").addEventListener("click", () => { leaving = true; hangUp("left", T.left); });
$("conf-camera") && $("conf-camera").addEventListener("click", () => {
  if (!stream) return;
  const tracks = stream.getVideoTracks();
  const on = !(tracks[0] && tracks[0].enabled);
  tracks.forEach((t) => { t.enabled = on; });
  $("conf-camera").textContent = on ? T.camera_off : T.camera_on;
  $("conf-camera").setAttribute("aria-pressed", String(!on));
});
$("gps-toggle") && $("gps-toggle").addEventListener("click", toggleGps);

if (unitId) {
  refresh();
  setInterval(refresh, 5000); // responders get no bus events: a new job shows within seconds
}
window.fieldPage = { refresh, state: () => current };
