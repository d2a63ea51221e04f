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
  let answered = null, sendSize = null; // the MCU's last "send_size" (send_size.js), applied after the answer

  function videoSender() { return pc ? pc.getSenders().find((s) => s.track && s.track.kind === "video") : null; }
  function applySendSize() { if (sendSize && window.ccApplySendSize) window.ccApplySendSize(videoSender(), sendSize); }

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
    closeShare(false);
    closeWatch(false);
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
        answered = pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
        await answered;
        root.dataset.participant = reply.participant_id;
        form.hidden = true;
        call.hidden = false;
        $("local").srcObject = stream;
        statsTimer = setInterval(updateQuality, 2000);
        setInterval(() => { if (ws && ws.readyState === 1) ws.send('{"type":"ping"}'); }, 10000);
      } else if (reply.type.startsWith("content_") || reply.type === "hand" || reply.type === "hand_refused") {
        onContentMessage(reply);
      } else if (reply.type === "send_size") {
        sendSize = reply;
        if (answered) await answered.catch(() => {});
        applySendSize();
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
    if (kind === "video") applySendSize(); // the scale depends on the new camera's size
  }

  // -- screen sharing: a second, send-only peer connection marked as content on the signalling socket --
  let sharePc = null, shareStream = null, handUp = false;
  const contentStatus = (message) => {
    const box = $("content-status");
    box.textContent = message || "";
    box.hidden = !message;
  };

  function closeShare(notify) {
    if (notify && ws && ws.readyState === 1) ws.send('{"type":"content_stop"}');
    if (sharePc) sharePc.close();
    if (shareStream) shareStream.getTracks().forEach((t) => t.stop());
    sharePc = null; shareStream = null; window.ccContentPeer = null;
    const button = $("share");
    if (button) { button.textContent = text.share; button.setAttribute("aria-pressed", "false"); }
  }

  async function offerContent() {
    if (sharePc) sharePc.close();
    sharePc = new RTCPeerConnection();
    window.ccContentPeer = sharePc; // for diagnostics and the browser tests (getStats)
    const track = shareStream.getVideoTracks()[0];
    track.contentHint = "detail"; // slides and text: keep the detail, lower the frame rate
    sharePc.addTransceiver(track, { direction: "sendonly", streams: [shareStream] });
    await sharePc.setLocalDescription(await sharePc.createOffer());
    await gatheringDone(sharePc, 3000);
    ws.send(JSON.stringify({ type: "content_offer", sdp: sharePc.localDescription.sdp }));
  }

  async function share() {
    if (shareStream) { closeShare(true); contentStatus(""); return; }
    try {
      shareStream = await navigator.mediaDevices.getDisplayMedia({
        video: { width: { max: 1920 }, height: { max: 1080 }, frameRate: { max: 15 } }, audio: false });
    } catch (e) {
      shareStream = null;
      contentStatus(text.share_cancelled);
      return;
    }
    shareStream.getVideoTracks()[0].addEventListener("ended", () => { closeShare(true); contentStatus(""); });
    $("share").textContent = text.share_stop;
    $("share").setAttribute("aria-pressed", "true");
    try { await offerContent(); } catch (e) { closeShare(true); contentStatus(text.share_failed); }
  }

  function setHand(up, message) {
    handUp = up;
    $("hand").textContent = up ? text.lower_hand : text.raise_hand;
    $("hand").setAttribute("aria-pressed", String(up));
    if (message !== undefined) contentStatus(message);
  }

  async function onContentMessage(reply) {
    const box = $("content-status");
    if (reply.type === "content_answer") {
      if (sharePc) await sharePc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
      contentStatus(text.sharing);
    } else if (reply.type === "content_refused") {
      if (reply.code === "awaiting_chair" && shareStream) {
        if (sharePc) { sharePc.close(); sharePc = null; }
        contentStatus(text.share_waiting); // keep the capture: the chair may grant it
      } else {
        closeShare(false);
        const own = text["share_" + reply.code];
        contentStatus(own ? own.replace("{name}", reply.presenter || "") : reply.message || text.share_failed);
      }
    } else if (reply.type === "content_granted") {
      if (shareStream) offerContent().catch(() => { closeShare(true); contentStatus(text.share_failed); });
    } else if (reply.type === "content_stopped") {
      const wasSharing = !!shareStream;
      closeShare(false);
      if (wasSharing) contentStatus(text["share_ended_" + reply.reason] || text.share_ended_released);
    } else if (reply.type === "content_live") {
      if (reply.live && !shareStream) watchContent().catch(() => closeWatch(true));
      else if (!reply.live) closeWatch(true);
    } else if (reply.type === "content_watch_refused") {
      closeWatch(false);
    } else if (reply.type === "content_watch_answer") {
      if (watchPc) await watchPc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
    } else if (reply.type === "hand") {
      setHand(reply.state === "raised", text["hand_" + reply.state]);
    } else if (reply.type === "hand_refused") {
      contentStatus(reply.code === "too_fast" ? text.share_too_fast : reply.message);
    }
    if (reply.code) box.dataset.code = reply.code; else delete box.dataset.code;
  }

  // -- the content as a second stream: a receive-only peer connection while someone presents --------
  let watchPc = null;
  function closeWatch(notify) {
    if (notify && watchPc && ws && ws.readyState === 1) ws.send('{"type":"content_unwatch"}');
    if (watchPc) watchPc.close();
    watchPc = null; window.ccContentView = null;
    $("content-video").hidden = true;
    $("content-video").srcObject = null;
  }

  async function watchContent() {
    closeWatch(false);
    watchPc = new RTCPeerConnection();
    window.ccContentView = watchPc; // for diagnostics and the browser tests (getStats)
    watchPc.addTransceiver("video", { direction: "recvonly" });
    watchPc.ontrack = (e) => { $("content-video").srcObject = new MediaStream([e.track]); $("content-video").hidden = false; };
    await watchPc.setLocalDescription(await watchPc.createOffer());
    await gatheringDone(watchPc, 3000);
    ws.send(JSON.stringify({ type: "content_watch", sdp: watchPc.localDescription.sdp }));
  }

  function toggleHand() {
    if (ws && ws.readyState === 1) ws.send(JSON.stringify({ type: handUp ? "lower_hand" : "raise_hand" }));
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
  $("share").addEventListener("click", share);
  $("hand").addEventListener("click", toggleHand);
  if (!navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia) $("share").hidden = true;
  window.addEventListener("beforeunload", () => { leaving = true; if (ws) ws.close(); });
  listDevices();
})();
