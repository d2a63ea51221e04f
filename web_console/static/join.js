// Browser client of /join/<id>: camera + microphone to the MCU, its composite view and N-1 audio back.
// Signalling: /ws/conference/<id> (see web_console/conference_console.py). No external assets.
(function () {
  "use strict";
  const root = document.getElementById("join");
  if (!root) return;
  const text = JSON.parse(document.getElementById("join-i18n").textContent);
  const conferenceId = root.dataset.conference;
  const $ = (id) => document.getElementById(id);
  const form = $("join-form"), errorBox = $("join-error"), call = $("call"), ended = $("ended");
  let pc = null, ws = null, stream = null, statsTimer = null, lastStats = null, leaving = false;

  function fillDevices(devices, kind, select, current) {
    select.innerHTML = "";
    devices.filter((d) => d.kind === kind).forEach((d, i) => {
      const opt = document.createElement("option");
      opt.value = d.deviceId;
      opt.textContent = d.label || kind + " " + (i + 1);
      if (d.deviceId === current) opt.selected = true;
      select.appendChild(opt);
    });
  }

  async function listDevices() {
    try {
      const probe = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
      probe.getTracks().forEach((t) => t.stop());
    } catch (e) { /* permissions refused: the list has no labels but still works */ }
    const devices = await navigator.mediaDevices.enumerateDevices();
    ["camera", "camera-live"].forEach((id) => fillDevices(devices, "videoinput", $(id)));
    ["microphone", "microphone-live"].forEach((id) => fillDevices(devices, "audioinput", $(id)));
  }

  async function openMedia(cameraId, micId) {
    return navigator.mediaDevices.getUserMedia({
      video: cameraId ? { deviceId: { exact: cameraId }, width: 640, height: 360 } : { width: 640, height: 360 },
      audio: micId ? { deviceId: { exact: micId } } : true,
    });
  }

  function gatheringDone(peer, ms) {
    if (peer.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      peer.addEventListener("icegatheringstatechange", () => {
        if (peer.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
      });
    });
  }

  function showEnded(message) {
    call.hidden = true;
    form.hidden = true;
    ended.hidden = false;
    ended.textContent = message;
    cleanup();
  }

  function cleanup() {
    if (statsTimer) clearInterval(statsTimer);
    statsTimer = null;
    if (pc) pc.close();
    if (stream) stream.getTracks().forEach((t) => t.stop());
    pc = null;
  }

  function refused(reply) {
    cleanup();
    $("join-button").disabled = false;
    if (reply.code === "wrong_pin") {
      errorBox.textContent = text.wrong_pin;
    } else if (reply.code === "too_many_attempts") {
      let left = Math.ceil(reply.retry_after || 30);
      $("join-button").disabled = true;
      const tick = () => {
        errorBox.textContent = text.too_many_attempts.replace("{s}", left);
        if (left-- <= 0) { $("join-button").disabled = false; errorBox.textContent = ""; return; }
        setTimeout(tick, 1000);
      };
      tick();
    } else if (text[reply.code]) {
      showEnded(text[reply.code]);
    } else {
      errorBox.textContent = reply.message || reply.code;
    }
    errorBox.dataset.code = reply.code;
  }

  async function join(ev) {
    ev.preventDefault();
    errorBox.textContent = "";
    $("join-button").disabled = true;
    try {
      stream = await openMedia($("camera").value, $("microphone").value);
    } catch (e) {
      errorBox.textContent = text.no_devices;
      $("join-button").disabled = false;
      return;
    }
    pc = new RTCPeerConnection();
    window.ccPeer = pc; // for diagnostics and the browser tests (getStats)
    stream.getTracks().forEach((t) => pc.addTrack(t, stream));
    pc.ontrack = (e) => {
      if (e.track.kind === "video") $("remote").srcObject = new MediaStream([e.track]);
      else { const a = new Audio(); a.srcObject = new MediaStream([e.track]); a.play().catch(() => {}); }
    };
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringDone(pc, 3000);
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(proto + "//" + location.host + "/ws/conference/" + encodeURIComponent(conferenceId));
    ws.onopen = () => ws.send(JSON.stringify({
      type: "join", sdp: pc.localDescription.sdp, name: $("name").value,
      pin: $("pin") ? $("pin").value : "",
    }));
    ws.onmessage = async (msg) => {
      const reply = JSON.parse(msg.data);
      if (reply.type === "answer") {
        await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
        root.dataset.participant = reply.participant_id;
        form.hidden = true;
        call.hidden = false;
        $("local").srcObject = stream;
        statsTimer = setInterval(updateQuality, 2000);
        setInterval(() => { if (ws && ws.readyState === 1) ws.send('{"type":"ping"}'); }, 10000);
      } else if (reply.type === "refused") {
        refused(reply);
      } else if (reply.type === "bye") {
        showEnded(text[reply.reason] || text.left);
      } else if (reply.type === "error") {
        showEnded(reply.message);
      }
    };
    ws.onclose = () => { if (!leaving && pc) showEnded(text.lost); };
  }

  async function updateQuality() {
    if (!pc) return;
    const report = await pc.getStats();
    let lost = 0, received = 0, rtt = null, decoded = 0;
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") { lost += s.packetsLost || 0; received += s.packetsReceived || 0; decoded = s.framesDecoded || 0; }
      if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined) rtt = s.currentRoundTripTime;
    });
    const prev = lastStats || { lost: 0, received: 0, decoded: 0 };
    const dl = lost - prev.lost, dr = received - prev.received, dd = decoded - prev.decoded;
    lastStats = { lost, received, decoded };
    const loss = dr + dl > 0 ? dl / (dr + dl) : 0;
    let level = "good";
    if (dd === 0 || loss > 0.08 || (rtt !== null && rtt > 0.4)) level = "poor";
    else if (loss > 0.02 || (rtt !== null && rtt > 0.15)) level = "fair";
    const q = $("quality");
    q.dataset.level = level;
    q.textContent = text[level] + (rtt !== null ? " · " + Math.round(rtt * 1000) + " ms" : "") +
      " · " + (loss * 100).toFixed(1) + "%";
  }

  function toggle(kind, button, onText, offText) {
    if (!stream) return;
    const tracks = kind === "audio" ? stream.getAudioTracks() : stream.getVideoTracks();
    const enabled = !(tracks[0] && tracks[0].enabled);
    tracks.forEach((t) => { t.enabled = enabled; });
    button.textContent = enabled ? onText : offText;
    button.setAttribute("aria-pressed", String(!enabled));
  }

  async function switchDevice(kind) {
    if (!pc || !stream) return;
    const fresh = kind === "video"
      ? await navigator.mediaDevices.getUserMedia({ video: { deviceId: { exact: $("camera-live").value } } })
      : await navigator.mediaDevices.getUserMedia({ audio: { deviceId: { exact: $("microphone-live").value } } });
    const track = fresh.getTracks()[0];
    const sender = pc.getSenders().find((s) => s.track && s.track.kind === kind);
    const old = kind === "video" ? stream.getVideoTracks()[0] : stream.getAudioTracks()[0];
    if (sender) await sender.replaceTrack(track);
    if (old) { stream.removeTrack(old); old.stop(); }
    stream.addTrack(track);
  }

  function leave() {
    leaving = true;
    if (ws && ws.readyState === 1) ws.send('{"type":"leave"}');
    showEnded(text.left);
  }

  form.addEventListener("submit", join);
  $("mute-mic").addEventListener("click", (e) => toggle("audio", e.target, text.mute_mic, text.unmute_mic));
  $("mute-cam").addEventListener("click", (e) => toggle("video", e.target, text.camera_off, text.camera_on));
  $("camera-live").addEventListener("change", () => switchDevice("video"));
  $("microphone-live").addEventListener("change", () => switchDevice("audio"));
  $("leave").addEventListener("click", leave);
  window.addEventListener("beforeunload", () => { leaving = true; if (ws) ws.close(); });
  listDevices();
})();
