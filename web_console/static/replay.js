// /replay: recorded conferences the caller may replay, and a player showing the people view and the
// content stream side by side (or one of them), on one clock. Each segment is fetched one track at
// a time (?track=people | content) and appended to its own MediaSource with
// timestampOffset = (segment start - recording start), so both videos share one timeline.
(function () {
  const cfg = JSON.parse(document.getElementById("replay-config").textContent);
  const T = (key, values) => {
    let s = cfg.texts[key.replace(/^replay\./, "")] || key;  // the page gets the replay.* texts without the prefix
    for (const [k, v] of Object.entries(values || {})) s = s.replace("{" + k + "}", v);
    return s;
  };
  const $ = (id) => document.getElementById(id);
  const list = $("recordings");
  const errorEl = $("replay-error");
  const seek = $("replay-seek");
  const playBtn = $("replay-play");
  const stage = $("replay-stage");
  let current = null; // {id, t0, duration, people, content, spans}
  const clock = { t: 0, playing: false, last: null };

  async function api(method, url, body) {
    const opts = { method, credentials: "same-origin", headers: {} };
    if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
    if (method !== "GET") opts.headers["X-CSRF-Token"] = cfg.csrf;
    const r = await fetch(url + (url.includes("?") ? "&" : "?") + "lang=" + encodeURIComponent(cfg.lang), opts);
    const data = await r.json().catch(() => ({}));
    if (!r.ok) { const e = new Error(data.detail || r.statusText); e.status = r.status; e.code = data.code; throw e; }
    return data;
  }

  function showError(err) {
    errorEl.hidden = !err;
    errorEl.textContent = err ? (err.message || String(err)) : "";
    errorEl.dataset.code = err && err.code ? err.code : "";
  }

  function fmt(s) {
    s = Math.max(0, Math.floor(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = String(s % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
  }

  // One video element fed segment by segment (the people track or the content track).
  class TrackPlayer {
    constructor(video, segs, overlay) {
      this.video = video;
      this.overlay = overlay;
      this.segs = segs;
      this.busy = false;
      this.ms = new MediaSource();
      video.src = URL.createObjectURL(this.ms);
      this.ready = new Promise((resolve) => this.ms.addEventListener("sourceopen", () => {
        if (segs.length) {
          this.mime = `video/mp4; codecs="${segs[0].codecs}"`;
          this.sb = this.ms.addSourceBuffer(this.mime);
          this.sb.mode = "segments";
        }
        resolve();
      }, { once: true }));
    }
    segAt(t) { return this.segs.find((s) => t >= s.a - 0.05 && t < s.b); }
    buffered(t) {
      const r = this.video.buffered;
      for (let i = 0; i < r.length; i++) if (t >= r.start(i) - 0.05 && t <= r.end(i) - 0.02) return true;
      return false;
    }
    update(fn) {
      return new Promise((resolve, reject) => {
        const done = () => { this.sb.removeEventListener("error", fail); resolve(); };
        const fail = () => { this.sb.removeEventListener("updateend", done); reject(new Error("SourceBuffer error")); };
        this.sb.addEventListener("updateend", done, { once: true });
        this.sb.addEventListener("error", fail, { once: true });
        fn();
      });
    }
    async pump(t) { // what is needed around t; drop what is long past; one fetch at a time
      if (this.busy || !this.sb) return;
      const want = this.segs.find((s) => !s.loaded && s.b > t - 1 && s.a < t + 20);
      const old = this.segs.find((s) => s.loaded && (s.b < t - 60 || s.a > t + 120));
      if (!want && !old) return;
      this.busy = true;
      try {
        if (old) {
          old.loaded = false;
          await this.update(() => this.sb.remove(old.a, old.b));
        } else {
          const r = await fetch(want.url, { credentials: "same-origin" });
          if (!r.ok) { const d = await r.json().catch(() => ({})); throw Object.assign(new Error(d.detail || r.statusText), { code: d.code }); }
          const bytes = await r.arrayBuffer();
          this.sb.timestampOffset = want.a;
          await this.update(() => this.sb.appendBuffer(bytes));
          want.loaded = true;
        }
      } catch (err) {
        if (want) want.loaded = true; // a broken segment is not retried in a loop
        showError(err);
      } finally {
        this.busy = false;
      }
    }
    follow(t, playing, show) {
      const v = this.video;
      if (!show || !this.segAt(t)) {
        if (!v.paused) v.pause();
        if (this.overlay) this.overlay.hidden = !!show && !!this.segAt(t);
        return;
      }
      if (this.overlay) this.overlay.hidden = true;
      if (!this.buffered(t)) {
        if (Math.abs(v.currentTime - t) > 0.5) v.currentTime = t;
        return;
      }
      const drift = v.currentTime - t;
      if (!playing) {
        if (!v.paused) v.pause();
        if (Math.abs(drift) > 0.02) v.currentTime = t;
        return;
      }
      if (Math.abs(drift) > 0.4) v.currentTime = t;
      else v.playbackRate = Math.max(0.5, Math.min(2, 1 - drift * 0.5));
      if (v.paused) v.play().catch(() => {});
    }
    destroy() {
      this.video.pause();
      this.video.removeAttribute("src");
      this.video.load();
    }
  }

  function inContent(t) { return current && current.spans.some(([a, b]) => t >= a && t < b); }

  function tick(now) {
    if (current) {
      if (clock.playing && clock.last !== null) clock.t = Math.min(current.duration, clock.t + (now - clock.last) / 1000);
      if (clock.t >= current.duration) clock.playing = false;
      clock.last = now;
      const t = clock.t;
      current.people.pump(t);
      current.content.pump(t);
      current.people.follow(t, clock.playing, true);
      current.content.follow(t, clock.playing, inContent(t));
      $("content-overlay").hidden = inContent(t);
      stage.dataset.contentNow = inContent(t) ? "1" : "0";
      if (document.activeElement !== seek) seek.value = String(t);
      $("replay-time").textContent = `${fmt(t)} / ${fmt(current.duration)}`;
      playBtn.textContent = clock.playing ? "⏸" : "▶";
    }
    requestAnimationFrame(tick);
  }

  function seekTo(t) {
    if (!current) return;
    clock.t = Math.max(0, Math.min(current.duration, t));
  }

  async function open(id) {
    showError(null);
    if (current) { current.people.destroy(); current.content.destroy(); current = null; }
    for (const b of list.querySelectorAll("button")) b.classList.toggle("current", b.dataset.id === id);
    $("replay-name").textContent = T("replay.loading");
    let plan, info;
    try {
      info = await api("GET", `/api/replay/${encodeURIComponent(id)}`);
      plan = await api("POST", `/api/replay/${encodeURIComponent(id)}/playback`, {});
    } catch (err) {
      $("replay-name").textContent = T("replay.pick");
      showError(err);
      return;
    }
    const t0 = plan.start_ms;
    const rel = (ms) => (ms - t0) / 1000;
    const peopleSegs = plan.segments.map((s) => ({ url: s.people_url, codecs: s.codecs, a: rel(s.start_ms), b: rel(s.end_ms), loaded: false }));
    const contentSegs = plan.segments.filter((s) => s.content_url).map((s) => ({
      url: s.content_url, codecs: s.content_codecs, a: rel(s.start_ms), b: rel(s.end_ms), loaded: false }));
    current = {
      id, t0, duration: rel(plan.end_ms),
      spans: plan.content.map((c) => [rel(c.start_ms), rel(c.end_ms)]),
      people: new TrackPlayer($("people-video"), peopleSegs, null),
      content: new TrackPlayer($("content-video"), contentSegs, $("content-overlay")),
    };
    await Promise.all([current.people.ready, current.content.ready]);
    $("replay-name").textContent = `${plan.name || id}（${id}）`;
    seek.max = String(current.duration);
    seek.disabled = playBtn.disabled = false;
    clock.t = 0;
    clock.playing = false;
    const spans = $("replay-spans");
    spans.replaceChildren(...current.spans.map(([a, b]) => {
      const s = document.createElement("span");
      s.style.left = `${(100 * a) / current.duration}%`;
      s.style.width = `${(100 * (b - a)) / current.duration}%`;
      return s;
    }));
    $("replay-content-info").textContent = current.spans.length
      ? T("replay.content_spans") + "：" + current.spans.map(([a, b]) => `${fmt(a)}–${fmt(b)}`).join("，")
      : T("replay.no_content");
    stage.dataset.ready = "1";
    renderGrants(info);
  }

  function renderGrants(info) {
    const box = $("replay-grants");
    box.hidden = !info.can_grant;
    if (!info.can_grant) return;
    $("grant-list").replaceChildren(...(info.grants || []).map((g) => {
      const li = document.createElement("li");
      li.dataset.user = g.username;
      li.textContent = `${g.username}（${T("replay.granted_by", { by: g.granted_by })}）`;
      const btn = document.createElement("button");
      btn.type = "button";
      btn.textContent = T("replay.revoke");
      btn.addEventListener("click", async () => {
        try {
          const r = await api("DELETE", `/api/replay/${encodeURIComponent(current.id)}/grants/${encodeURIComponent(g.username)}`);
          renderGrants({ can_grant: true, grants: r.grants });
        } catch (err) { showError(err); }
      });
      li.append(" ", btn);
      return li;
    }));
  }

  $("grant-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!current) return;
    try {
      const r = await api("POST", `/api/replay/${encodeURIComponent(current.id)}/grants`, { username: $("grant-user").value.trim() });
      $("grant-user").value = "";
      showError(null);
      renderGrants({ can_grant: true, grants: r.grants });
    } catch (err) { showError(err); }
  });
  playBtn.addEventListener("click", () => {
    clock.playing = !clock.playing;
    if (clock.playing && current && clock.t >= current.duration) clock.t = 0;
  });
  seek.addEventListener("input", () => seekTo(Number(seek.value)));
  $("replay-layout").addEventListener("change", (ev) => { stage.className = "replay-stage " + ev.target.value; });

  async function loadList() {
    try {
      const data = await api("GET", "/api/replay");
      list.replaceChildren(...data.conferences.map((c) => {
        const li = document.createElement("li");
        const b = document.createElement("button");
        b.type = "button";
        b.dataset.id = c.conference_id;
        b.textContent = `${c.name || c.conference_id}（${c.conference_id}）`;
        b.addEventListener("click", () => { history.replaceState(null, "", "/replay/" + c.conference_id); open(c.conference_id); });
        li.append(b);
        return li;
      }));
      $("no-recordings").hidden = data.conferences.length > 0;
    } catch (err) { showError(err); }
  }

  // For tests and deep links: seek to a wall-clock time (ms) of the open recording.
  window.replayPlayer = {
    seekWall(ms) { if (current) seekTo((ms - current.t0) / 1000); },
    play(on) { clock.playing = !!on; },
    state() { return current ? { t: clock.t, t0: current.t0, duration: current.duration, spans: current.spans } : null; },
  };
  loadList();
  if (cfg.conference) open(cfg.conference);
  requestAnimationFrame(tick);
})();
