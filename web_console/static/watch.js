// /watch: the conferences streamed live now (kept current by bus events), and a player (hls.js,
// vendored) for one of them. With a watch link (?t=), only that conference, without an account.
(function () {
  const cfg = JSON.parse(document.getElementById("watch-config").textContent);
  const t = (key) => cfg.t["watch." + key] || key;
  const video = document.getElementById("watch-video");
  const nameEl = document.getElementById("watch-name");
  const stateEl = document.getElementById("watch-state");
  const viewersEl = document.getElementById("watch-viewers");
  const list = document.getElementById("streams");
  const none = document.getElementById("no-streams");
  let current = null;  // conference id playing
  let hls = null;
  let retries = 0;
  let streams = {};

  function playlistUrl(id) {
    const base = "/hls/" + encodeURIComponent(id) + "/";
    return cfg.token ? base + "t/" + encodeURIComponent(cfg.token) + "/index.m3u8" : base + "index.m3u8";
  }

  function setState(state) {
    stateEl.className = "badge " + state;
    stateEl.dataset.state = state;
    stateEl.textContent = state ? t(state) : "";
  }

  function stopPlayer() {
    if (hls) { hls.destroy(); hls = null; window.watchPlayer = null; }
    video.removeAttribute("src");
    video.load();
  }

  function play(id, name) {
    stopPlayer();
    current = id;
    retries = 0;
    nameEl.textContent = name || id;
    setState("live");
    const url = playlistUrl(id);
    if (window.Hls && Hls.isSupported()) {
      // Low-Latency HLS: parts, blocking playlist reload, the server's PART-HOLD-BACK as the target
      hls = new Hls({ lowLatencyMode: true, backBufferLength: 30, manifestLoadingMaxRetry: 10,
                      manifestLoadingRetryDelay: 1000, levelLoadingMaxRetry: 6 });
      window.watchPlayer = hls;  // tests read hls.latency and hls.playingDate
      hls.on(Hls.Events.ERROR, (event, data) => {
        if (!data.fatal) return;
        if (data.type === Hls.ErrorTypes.MEDIA_ERROR) { hls.recoverMediaError(); return; }
        if (retries++ < 10 && current === id) {  // the first segments may not be written yet
          setTimeout(() => { if (hls && current === id) hls.loadSource(url); }, 1000);
        } else {
          ended(id);
        }
      });
      hls.loadSource(url);
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = url;
    }
    video.play().catch(() => {});
    renderList();
  }

  function ended(id) {
    if (current !== id) return;
    stopPlayer();
    setState("ended");
    viewersEl.textContent = "";
  }

  function renderList() {
    if (!list) return;
    list.replaceChildren();
    const ids = Object.keys(streams).sort();
    none.hidden = ids.length > 0;
    for (const id of ids) {
      const s = streams[id];
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.testid = "stream-" + id;
      b.className = id === current ? "current" : "";
      b.textContent = (s.name || id) + " · " + id;
      b.onclick = () => play(id, s.name);
      li.append(b);
      list.append(li);
    }
    if (current && streams[current]) {
      viewersEl.textContent = t("viewers").replace("{n}", streams[current].viewers);
    }
  }

  async function refresh() {
    try {
      const r = await fetch("/api/streams", { credentials: "same-origin" });
      if (!r.ok) return;
      streams = {};
      for (const s of await r.json()) streams[s.conference_id] = s;
      renderList();
      if (current && !streams[current]) ended(current);
      if (!current && cfg.conference && streams[cfg.conference]) play(cfg.conference, streams[cfg.conference].name);
    } catch (e) { /* next event or timer */ }
  }

  function connectEvents() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(proto + "//" + location.host + "/ws/events?topics=" +
                             encodeURIComponent("conference.streaming_*"));
    ws.onmessage = (msg) => {
      const ev = JSON.parse(msg.data);
      const p = ev.payload || {};
      if (ev.topic === "conference.streaming_started") { streams[p.conference_id] = p; renderList(); }
      if (ev.topic === "conference.streaming_stopped") {
        delete streams[p.conference_id]; renderList(); ended(p.conference_id);
      }
    };
    ws.onclose = (e) => { if (e.code !== 4401 && e.code !== 4403) setTimeout(() => { refresh(); connectEvents(); }, 3000); };
  }

  if (cfg.token) {
    play(cfg.conference, cfg.conference);
  } else {
    connectEvents();
    refresh();
    setInterval(refresh, 10000);  // viewer counts
  }
})();
