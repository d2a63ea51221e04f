// Inspector console: search → timeline → logged playback (MSE, up to 4 cameras on one clock),
// bookmarks, legal holds, export, watermarked viewing copy, signed tree heads.
// Plain JS, no build step, no external URLs.
"use strict";
(function () {
  const cfg = JSON.parse(document.getElementById("inspect-config").textContent);
  const T = (key, vars) => {
    let s = cfg.texts["inspect." + key] || key;
    for (const [k, v] of Object.entries(vars || {})) s = s.replace("{" + k + "}", v);
    return s;
  };
  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "dataset") Object.assign(e.dataset, v);
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  };
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  const fmt = (ms) => {
    const d = new Date(ms);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  };
  const toLocalInput = (ms) => fmt(ms).replace(" ", "T");
  const fromLocalInput = (v) => (v ? new Date(v).getTime() : NaN);
  const dur = (ms) => {
    const s = Math.round(ms / 1000);
    return s >= 3600 ? `${Math.floor(s / 3600)}h${pad(Math.floor((s % 3600) / 60))}m` : s >= 60 ? `${Math.floor(s / 60)}m${pad(s % 60)}s` : `${s}s`;
  };

  async function api(method, url, body) {
    const opts = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    if (method !== "GET") opts.headers["X-CSRF-Token"] = cfg.csrf;
    const r = await fetch(url, opts);
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (!r.ok) {
      const d = data && data.detail;
      const err = new Error(describeError(d, r.status));
      err.status = r.status;
      err.detail = d;
      throw err;
    }
    return data;
  }
  function describeError(d, status) {
    if (d && typeof d === "object" && !Array.isArray(d)) {
      const known = cfg.texts["inspect.err." + d.code];
      return known || d.message || String(status);
    }
    if (Array.isArray(d)) return T("err.invalid") + " " + d.map((e) => (e.loc || []).slice(-1)[0] + ": " + e.msg).join("; ");
    return (d ? String(d) : "") || `HTTP ${status}`;
  }
  function showError(id, err) {
    const p = $(id);
    if (!err) { p.hidden = true; p.textContent = ""; return; }
    p.hidden = false;
    p.textContent = err.message || String(err);
  }

  // ---- state ---------------------------------------------------------------------------------
  const state = {
    halls: [], cams: {}, // camera id -> {id,label,hall,window,window_name}
    search: null, // last search result
    selected: new Set(),
    view: null, // playback plan
  };

  // ---- cameras & search form -----------------------------------------------------------------
  async function loadCameras() {
    const data = await api("GET", "/api/inspect/cameras");
    state.halls = data.halls;
    const hallSel = $("f-hall"), cw = $("c-window");
    hallSel.replaceChildren();
    cw.replaceChildren();
    for (const h of data.halls) {
      hallSel.append(el("option", { value: h.id }, h.name));
      for (const w of h.windows) {
        cw.append(el("option", { value: w.id }, `${h.name} · ${w.name}`));
        for (const c of w.cameras) state.cams[c.id] = { ...c, hall: h.id, hall_name: h.name, window: w.id, window_name: w.name };
      }
    }
    fillWindows();
  }
  function fillWindows() {
    const hall = state.halls.find((h) => h.id === $("f-hall").value);
    const ws = $("f-window");
    ws.replaceChildren(el("option", { value: "" }, T("all")));
    for (const w of hall ? hall.windows : []) ws.append(el("option", { value: w.id }, w.name));
    fillCameras();
  }
  function fillCameras() {
    const hall = state.halls.find((h) => h.id === $("f-hall").value);
    const win = $("f-window").value;
    const cs = $("f-camera");
    cs.replaceChildren(el("option", { value: "" }, T("all")));
    for (const w of hall ? hall.windows : []) {
      if (win && w.id !== win) continue;
      for (const c of w.cameras) cs.append(el("option", { value: c.id }, c.label + stateMark(c.state)));
    }
  }
  const stateMark = (s) => (s === "recording" ? "" : ` (${T("state." + s)})`);

  async function runSearch(startMs, endMs) {
    showError("search-error", null);
    const q = new URLSearchParams({ start_ms: String(startMs), end_ms: String(endMs) });
    if ($("f-camera").value) q.append("camera", $("f-camera").value);
    else if ($("f-window").value) q.set("window", $("f-window").value);
    else q.set("hall", $("f-hall").value);
    try {
      state.search = await api("GET", "/api/inspect/search?" + q);
    } catch (err) {
      showError("search-error", err);
      return;
    }
    // a new search ends the playback of the previous range (its view stays logged)
    player.stop();
    state.view = null;
    $("player-panel").hidden = true;
    const rec = state.search.cameras.filter((c) => c.recorded_ms > 0).map((c) => c.id);
    state.selected = new Set(rec.slice(0, Math.min(2, cfg.maxCameras)));
    renderResults();
  }

  // ---- timeline ------------------------------------------------------------------------------
  function renderResults() {
    const s = state.search;
    $("results").hidden = false;
    $("range-label").textContent = `${fmt(s.start_ms)} — ${fmt(s.end_ms)} (${dur(s.end_ms - s.start_ms)})`;
    const nr = $("no-recording");
    nr.hidden = !s.no_recording;
    const nearest = $("nearest");
    nearest.replaceChildren();
    for (const sp of s.nearest) {
      const label = `${(state.cams[sp.camera] || {}).label || sp.camera}: ${fmt(sp.start_ms)} — ${fmt(sp.end_ms)}`;
      nearest.append(el("li", {}, el("button", {
        type: "button", class: "link", "data-testid": "nearest-span",
        onclick: () => jumpTo(sp.start_ms - 60000, sp.end_ms + 60000),
      }, label)));
    }
    const tl = $("timeline");
    tl.replaceChildren(axis(s.start_ms, s.end_ms));
    const gapList = $("gap-list");
    gapList.replaceChildren();
    const pct = (ms) => (100 * (ms - s.start_ms)) / (s.end_ms - s.start_ms);
    for (const cam of s.cameras) {
      const track = el("div", { class: "track", "data-testid": "track", title: T("click_to_seek") });
      for (const sp of cam.spans) {
        const why = sp.reason ? T("reason." + sp.reason) + (sp.cause ? ` (${sp.cause})` : "") : T("legend.recorded");
        track.append(el("div", {
          class: "span " + sp.kind, "data-kind": sp.kind, "data-reason": sp.reason,
          style: `left:${pct(sp.start_ms)}%;width:${Math.max(0.2, pct(sp.end_ms) - pct(sp.start_ms))}%`,
          title: `${fmt(sp.start_ms)} — ${fmt(sp.end_ms)} · ${why}`,
        }));
        if (sp.kind === "gap" || sp.kind === "deleted") {
          gapList.append(el("li", { "data-testid": "gap-item" },
            `${cam.label}: ${fmt(sp.start_ms)} — ${fmt(sp.end_ms)} (${dur(sp.end_ms - sp.start_ms)}) · ${why}`));
        }
      }
      for (const h of s.holds.filter((h) => h.cameras.includes(cam.id))) {
        const a = Math.max(h.start_ms, s.start_ms), b = Math.min(h.end_ms, s.end_ms);
        track.append(el("div", { class: "hold-band", style: `left:${pct(a)}%;width:${pct(b) - pct(a)}%`,
          title: `${T("legend.hold")}: ${h.placed_reason} (${h.placed_by})` }));
      }
      for (const b of s.bookmarks.filter((b) => b.camera === cam.id)) {
        track.append(el("div", { class: "bm-mark", "data-testid": "bm-mark", style: `left:${pct(b.at_ms)}%`,
          title: `${fmt(b.at_ms)} ${b.note} (${b.created_by})` }));
      }
      track.append(el("div", { class: "cursor", hidden: true }));
      track.addEventListener("click", (ev) => {
        const r = track.getBoundingClientRect();
        const at = s.start_ms + ((ev.clientX - r.left) / r.width) * (s.end_ms - s.start_ms);
        if (state.view && at >= state.view.start_ms && at <= state.view.end_ms) player.seekMs(at);
      });
      const box = el("input", { type: "checkbox", "data-testid": "select-camera", value: cam.id,
        checked: state.selected.has(cam.id) || null, onchange: (ev) => toggleCamera(cam.id, ev.target) });
      tl.append(el("div", { class: "row", "data-camera": cam.id, "data-testid": "timeline-row" },
        el("label", { class: "cam" }, box, el("span", {}, cam.label),
          el("small", { class: "muted" }, ` ${dur(cam.recorded_ms)} · ${T("state." + cam.state)}`)),
        track));
    }
    $("gap-details").hidden = gapList.children.length === 0;
  }
  function axis(a, b) {
    const ax = el("div", { class: "row axis" }, el("span", { class: "cam" }));
    const scale = el("div", { class: "track scale" });
    for (let i = 0; i <= 4; i++) {
      const at = a + ((b - a) * i) / 4;
      scale.append(el("span", { style: `left:${i * 25}%` }, fmt(at).slice(11)));
    }
    ax.append(scale);
    return ax;
  }
  function toggleCamera(id, box) {
    if (box.checked) {
      if (state.selected.size >= cfg.maxCameras) {
        box.checked = false;
        showError("view-error", new Error(T("err.too_many_cameras")));
        return;
      }
      state.selected.add(id);
    } else state.selected.delete(id);
    showError("view-error", null);
  }
  function jumpTo(startMs, endMs) {
    $("f-start").value = toLocalInput(startMs);
    $("f-end").value = toLocalInput(endMs);
    runSearch(startMs, endMs);
  }
  function drawCursor(ms) {
    const s = state.search;
    if (!s) return;
    const p = (100 * (ms - s.start_ms)) / (s.end_ms - s.start_ms);
    for (const c of document.querySelectorAll(".track .cursor")) {
      c.hidden = p < 0 || p > 100;
      c.style.left = p + "%";
    }
  }

  // ---- synchronised playback (Media Source Extensions) -----------------------------------------
  // Each segment file is a self-contained fragmented MP4 starting at media time 0; appending it
  // with timestampOffset = (segment start - range start) puts every camera on one wall-clock
  // timeline, so one clock drives all videos and gaps simply have no data.
  class CamPlayer {
    constructor(cam, t0) {
      this.cam = cam;
      this.t0 = t0;
      this.segs = cam.segments.map((s) => ({ ...s, a: (s.start_ms - t0) / 1000, b: (s.end_ms - t0) / 1000, loaded: false }));
      this.video = el("video", { muted: true, playsinline: true, preload: "auto", "data-testid": "video", "data-camera": cam.id });
      this.video.muted = true;
      this.overlay = el("div", { class: "overlay", hidden: true });
      this.box = el("figure", { class: "cam-video" }, this.video, this.overlay,
        el("figcaption", {}, cam.label, " ", el("button", { type: "button", class: "link", onclick: () => { this.video.muted = !this.video.muted; } }, T("sound"))));
      this.ms = new MediaSource();
      this.video.src = URL.createObjectURL(this.ms);
      this.busy = false;
      this.ready = new Promise((resolve) => this.ms.addEventListener("sourceopen", () => {
        const codecs = (cam.segments[0] && cam.segments[0].codecs) || "avc1.42E01E";
        this.mime = `video/mp4; codecs="${codecs}"`;
        this.sb = this.ms.addSourceBuffer(this.mime);
        this.sb.mode = "segments";
        resolve();
      }, { once: true }));
    }
    segAt(t) { return this.segs.find((s) => t >= s.a - 0.05 && t < s.b); }
    buffered(t) {
      const r = this.video.buffered;
      for (let i = 0; i < r.length; i++) if (t >= r.start(i) - 0.05 && t <= r.end(i) - 0.05) return true;
      return false;
    }
    async pump(t) { // load what is needed around t, evict what is long past; one fetch at a time
      if (this.busy || !this.sb) return;
      const want = this.segs.find((s) => !s.loaded && s.b > t - 1 && s.a < t + 20);
      // keep the SourceBuffer small: drop what is a minute behind or two minutes ahead (after a seek)
      const old = this.segs.find((s) => s.loaded && (s.b < t - 60 || s.a > t + 120));
      if (!want && !old) return;
      this.busy = true;
      try {
        if (old) {
          old.loaded = false;
          await this.update(() => this.sb.remove(old.a, old.b));
        } else {
          const r = await fetch(want.url, { credentials: "same-origin" });
          if (!r.ok) throw new Error(await r.text());
          const bytes = await r.arrayBuffer();
          const mime = `video/mp4; codecs="${want.codecs}"`;
          if (want.codecs && mime !== this.mime && this.sb.changeType) { this.sb.changeType(mime); this.mime = mime; }
          this.sb.timestampOffset = want.a;
          await this.update(() => this.sb.appendBuffer(bytes));
          want.loaded = true;
        }
      } catch (err) {
        if (want) want.loaded = true; // do not retry a broken segment in a loop
        this.overlay.hidden = false;
        this.overlay.textContent = T("load_failed") + " " + (err.message || err);
      } finally {
        this.busy = false;
      }
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
    // Follow the shared clock: play at its rate, correct drift, pause in gaps.
    follow(t, playing, rate) {
      const v = this.video;
      const seg = this.segAt(t);
      if (!seg) {
        if (!v.paused) v.pause();
        this.overlay.hidden = false;
        this.overlay.textContent = T("no_footage_here");
        return;
      }
      if (!this.buffered(t)) {
        this.overlay.hidden = false;
        this.overlay.textContent = T("loading");
        if (Math.abs(v.currentTime - t) > 0.5) v.currentTime = t;
        return;
      }
      this.overlay.hidden = true;
      const drift = v.currentTime - t;
      if (!playing) {
        if (!v.paused) v.pause();
        if (Math.abs(drift) > 0.02) v.currentTime = t;
        return;
      }
      if (Math.abs(drift) > 0.4) {
        v.currentTime = t;
        v.playbackRate = rate;
      } else {
        // gentle correction: a little faster when behind, slower when ahead
        v.playbackRate = Math.max(0.25, Math.min(16, rate * (1 - drift * 0.5)));
      }
      if (v.paused) v.play().catch(() => {});
    }
    destroy() {
      this.video.pause();
      this.video.removeAttribute("src");
      this.video.load();
    }
  }

  const player = {
    cams: [], t: 0, tStart: 0, tEnd: 0, origin: 0, waitingSince: 0, playing: false, rate: 1, last: 0, timer: null, fps: 25,
    async start(view) {
      this.stop();
      this.view = view;
      // The media timeline starts at the earliest segment (a segment may begin before the range):
      // MSE drops frames before time 0, so no offset may be negative.
      const starts = view.cameras.flatMap((c) => c.segments.map((s) => s.start_ms));
      this.origin = Math.min(view.start_ms, ...starts);
      this.tStart = (view.start_ms - this.origin) / 1000;
      this.tEnd = (view.end_ms - this.origin) / 1000;
      this.cams = view.cameras.map((c) => new CamPlayer(c, this.origin));
      this.fps = Math.max(...view.cameras.map((c) => c.fps || 25));
      $("videos").replaceChildren(...this.cams.map((p) => p.box));
      $("videos").dataset.count = String(this.cams.length);
      await Promise.all(this.cams.map((p) => p.ready));
      // start at the range start, or where the first footage in the range begins
      const first = Math.min(...this.cams.flatMap((p) => p.segs.map((s) => s.a)));
      this.t = Math.max(this.tStart, isFinite(first) ? first : this.tStart);
      this.playing = false;
      this.waitingSince = 0;
      this.last = performance.now();
      this.timer = setInterval(() => this.tick(), 50);
      this.render();
    },
    stop() {
      if (this.timer) clearInterval(this.timer);
      this.timer = null;
      for (const p of this.cams) p.destroy();
      this.cams = [];
      this.playing = false;
    },
    tick() {
      const now = performance.now();
      if (this.playing) {
        // the clock waits while a camera that has footage at t is still loading it
        // (but not for ever: after 1.5 s the others go on and the late one catches up by seeking)
        const waiting = this.cams.some((p) => p.segAt(this.t) && !p.buffered(this.t));
        if (waiting && !this.waitingSince) this.waitingSince = now;
        if (!waiting) this.waitingSince = 0;
        if (!waiting || now - this.waitingSince > 1500) this.t += ((now - this.last) / 1000) * this.rate;
        if (this.t >= this.tEnd) { this.t = this.tEnd; this.playing = false; }
      }
      this.last = now;
      for (const p of this.cams) { p.pump(this.t); p.follow(this.t, this.playing, this.rate); }
      this.render();
    },
    render() {
      $("btn-play").textContent = this.playing ? T("pause") : T("play");
      $("btn-play").dataset.playing = this.playing ? "1" : "0";
      const sc = $("scrubber");
      const span = this.tEnd - this.tStart;
      if (!sc.matches(":active")) sc.value = String(span > 0 ? (1000 * (this.t - this.tStart)) / span : 0);
      const ms = this.view ? this.origin + this.t * 1000 : 0;
      $("clock").textContent = this.view ? `${fmt(ms)}.${pad(Math.floor(ms % 1000), 3)} · ${this.rate}×` : "--";
      $("clock").dataset.ms = String(Math.round(ms));
      drawCursor(ms);
    },
    toggle() { this.playing = !this.playing; this.last = performance.now(); this.render(); },
    seek(t) { this.t = Math.max(this.tStart, Math.min(this.tEnd, t)); this.render(); },
    seekMs(ms) { if (this.view) this.seek((ms - this.origin) / 1000); },
    seekFraction(f) { this.seek(this.tStart + f * (this.tEnd - this.tStart)); },
    step(n) { this.playing = false; this.seek(this.t + n / this.fps); },
    setRate(r) { this.rate = r; },
    nowMs() { return this.view ? Math.round(this.origin + this.t * 1000) : 0; },
  };
  window.inspectPlayer = player; // for tests and the curious

  async function startView(ev) {
    ev.preventDefault();
    showError("view-error", null);
    const s = state.search;
    if (!s) return;
    const cameras = [...state.selected];
    if (!cameras.length) { showError("view-error", new Error(T("err.no_cameras"))); return; }
    const reason = $("view-reason").value.trim();
    if (!reason) { showError("view-error", new Error(T("err.reason_required"))); $("view-reason").focus(); return; }
    let view;
    try {
      view = await api("POST", "/api/inspect/playback", { cameras, start_ms: s.start_ms, end_ms: s.end_ms, reason });
    } catch (err) {
      if (err.detail && err.detail.code === "no_recording") { s.no_recording = true; s.nearest = err.detail.nearest || []; renderResults(); }
      showError("view-error", err);
      return;
    }
    state.view = view;
    $("player-panel").hidden = false;
    $("view-logged").textContent = T("view_logged", { reason: view.reason });
    const bm = $("bm-camera");
    bm.replaceChildren(...view.cameras.map((c) => el("option", { value: c.id }, c.label)));
    await player.start(view);
    renderBookmarks();
    renderHolds();
    $("player-panel").scrollIntoView({ behavior: "smooth", block: "start" });
  }

  // ---- bookmarks -----------------------------------------------------------------------------
  async function refreshBookmarks() {
    const s = state.search;
    if (!s) return;
    const q = new URLSearchParams({ start_ms: String(s.start_ms), end_ms: String(s.end_ms) });
    for (const c of s.cameras) q.append("camera", c.id);
    s.bookmarks = await api("GET", "/api/inspect/bookmarks?" + q);
    renderResults();
    renderBookmarks();
  }
  function renderBookmarks() {
    const s = state.search;
    const ul = $("bookmarks");
    ul.replaceChildren();
    for (const b of (s && s.bookmarks) || []) {
      const label = (state.cams[b.camera] || {}).label || b.camera;
      ul.append(el("li", { "data-testid": "bookmark", "data-id": b.id },
        el("button", { type: "button", class: "link", onclick: () => {
          player.seekMs(b.at_ms);
        } }, fmt(b.at_ms)),
        ` ${label} · ${b.note || T("bookmark.nonote")} · ${b.created_by}`));
    }
  }
  async function addBookmark(ev) {
    ev.preventDefault();
    if (!state.view) return;
    try {
      await api("POST", "/api/inspect/bookmarks", { camera: $("bm-camera").value, at_ms: player.nowMs(), note: $("bm-note").value });
      $("bm-note").value = "";
      await refreshBookmarks();
    } catch (err) { alert(err.message); }
  }

  // ---- holds ---------------------------------------------------------------------------------
  async function renderHolds() {
    let holds = [];
    try { holds = await api("GET", "/api/inspect/holds"); } catch (err) { showError("hold-error", err); return; }
    const ul = $("holds");
    ul.replaceChildren();
    for (const h of holds.filter((h) => !h.lifted)) {
      const reason = el("input", { placeholder: T("hold.lift_reason"), "data-testid": "lift-reason", maxlength: 500 });
      ul.append(el("li", { "data-testid": "hold", "data-id": h.id },
        `${h.cameras.map((c) => (state.cams[c] || {}).label || c).join("、")} · ${fmt(h.start_ms)} — ${fmt(h.end_ms)} · ${h.placed_reason} (${h.placed_by}) `,
        reason,
        el("button", { type: "button", "data-testid": "hold-lift", onclick: async () => {
          try {
            await api("POST", `/api/inspect/holds/${h.id}/lift`, { reason: reason.value });
            showError("hold-error", null);
            await refreshHolds();
          } catch (err) { showError("hold-error", err); }
        } }, T("hold.lift"))));
    }
  }
  async function refreshHolds() { // the list and the timeline bands
    await renderHolds();
    const s = state.search;
    if (!s) return;
    const ids = new Set(s.cameras.map((c) => c.id));
    s.holds = (await api("GET", "/api/inspect/holds")).filter((h) => !h.lifted && h.start_ms < s.end_ms
      && h.end_ms > s.start_ms && h.cameras.some((c) => ids.has(c)));
    renderResults();
  }
  async function placeHold(ev) {
    ev.preventDefault();
    const v = state.view;
    if (!v) return;
    try {
      await api("POST", "/api/inspect/holds", { cameras: v.cameras.map((c) => c.id), start_ms: v.start_ms, end_ms: v.end_ms, reason: $("hold-reason").value });
      $("hold-reason").value = "";
      showError("hold-error", null);
      await refreshHolds();
    } catch (err) { showError("hold-error", err); }
  }

  // ---- export & viewing copy -----------------------------------------------------------------
  async function doExport(ev) {
    ev.preventDefault();
    const v = state.view;
    if (!v) return;
    showError("export-error", null);
    $("export-result").textContent = T("working");
    try {
      const r = await api("POST", "/api/inspect/exports", { cameras: v.cameras.map((c) => c.id), start_ms: v.start_ms, end_ms: v.end_ms, reason: $("export-reason").value });
      $("export-result").replaceChildren(el("a", { href: r.url, download: r.name, "data-testid": "export-link" }, T("export.download", { name: r.name })),
        ` · ${T("export.summary", { n: r.segments, mb: (r.bytes / 1048576).toFixed(1), size: r.tree_size })}`);
      loadHead().catch(() => {});
    } catch (err) { $("export-result").textContent = ""; showError("export-error", err); }
  }
  async function viewingCopy() {
    const v = state.view;
    if (!v) return;
    showError("export-error", null);
    const cam = $("bm-camera").value;
    // a viewing copy is re-encoded: at most 10 minutes around the current position
    const a = Math.max(v.start_ms, player.nowMs() - 300000), b = Math.min(v.end_ms, a + 600000);
    $("copy-result").textContent = T("working");
    try {
      const r = await api("POST", "/api/inspect/viewing-copies", { camera: cam, start_ms: a, end_ms: b, reason: $("export-reason").value });
      $("copy-result").replaceChildren(el("a", { href: r.url, download: r.name, "data-testid": "copy-link" }, T("copy.download", { name: r.name })));
    } catch (err) { $("copy-result").textContent = ""; showError("export-error", err); }
  }

  // ---- signed tree head ----------------------------------------------------------------------
  const KEPT = "cc.inspect.kept_head";
  let latestHead = null;
  async function loadHead() {
    const kept = JSON.parse(localStorage.getItem(KEPT) || "null");
    const data = await api("GET", "/api/inspect/head");
    latestHead = data.tree_head;
    const h = latestHead;
    const dl = $("head");
    dl.replaceChildren();
    const row = (k, v) => dl.append(el("dt", {}, T("head." + k)), el("dd", { "data-field": k }, v));
    row("size", String(h.tree_size));
    row("root", h.root_hash);
    row("time", fmt(h.timestamp_ms));
    row("key", h.key_id);
    row("kept", kept ? `${kept.tree_size} · ${fmt(kept.timestamp_ms)}` : T("head.none"));
  }
  function keepHead() {
    if (!latestHead) return;
    localStorage.setItem(KEPT, JSON.stringify(latestHead));
    $("head-result").textContent = T("head.kept_ok", { size: latestHead.tree_size });
    loadHead();
  }
  async function checkHead() {
    const kept = JSON.parse(localStorage.getItem(KEPT) || "null");
    const res = $("head-result");
    if (!kept) { res.textContent = T("head.none"); return; }
    try {
      const r = await api("POST", "/api/inspect/head/check", { tree_head: kept });
      res.className = r.consistent ? "ok" : "error";
      res.dataset.consistent = r.consistent ? "1" : "0";
      res.textContent = r.consistent
        ? T("head.consistent", { kept: r.kept_size, size: r.head ? r.head.tree_size : r.tree_size, n: (r.consistency_proof || []).length })
        : T("head.inconsistent", { detail: r.detail });
      // Do not only trust the server's word: check the RFC 6962 consistency proof here too.
      if (r.consistent && window.crypto && crypto.subtle) {
        const h = await api("GET", "/api/inspect/head?kept_size=" + kept.tree_size);
        const ok = await verifyConsistency(kept.tree_size, h.tree_head.tree_size, kept.root_hash, h.tree_head.root_hash, h.consistency_proof || []);
        res.dataset.browserVerified = ok ? "1" : "0";
        res.append(" ", T(ok ? "head.browser_ok" : "head.browser_fail", { size: h.tree_head.tree_size }));
        if (!ok) res.className = "error";
      }
    } catch (err) { res.textContent = err.message; }
  }

  // RFC 9162 §2.1.4.2: verify that the tree of size `second` (root sr) extends the tree of size `first` (root fr).
  const hex2buf = (h) => new Uint8Array(h.match(/../g).map((b) => parseInt(b, 16)));
  const buf2hex = (b) => [...new Uint8Array(b)].map((x) => x.toString(16).padStart(2, "0")).join("");
  async function nodeHash(left, right) {
    const data = new Uint8Array(1 + left.length + right.length);
    data[0] = 1;
    data.set(left, 1);
    data.set(right, 1 + left.length);
    return new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  }
  async function verifyConsistency(first, second, firstHex, secondHex, proofHex) {
    if (first > second) return false;
    if (first === second) return proofHex.length === 0 && firstHex === secondHex;
    if (first === 0) return true;
    const proof = proofHex.map(hex2buf);
    if (!proof.length) return false;
    if ((first & (first - 1)) === 0) proof.unshift(hex2buf(firstHex));
    let fn = first - 1, sn = second - 1;
    while (fn & 1) { fn >>= 1; sn >>= 1; }
    let fr = proof[0], sr = proof[0];
    for (const c of proof.slice(1)) {
      if (sn === 0) return false;
      if ((fn & 1) || fn === sn) {
        fr = await nodeHash(c, fr);
        sr = await nodeHash(c, sr);
        if (!(fn & 1)) while (!(fn & 1) && fn !== 0) { fn >>= 1; sn >>= 1; }
      } else {
        sr = await nodeHash(sr, c);
      }
      fn >>= 1; sn >>= 1;
    }
    return buf2hex(fr) === firstHex && buf2hex(sr) === secondHex && sn === 0;
  }
  window.inspectVerifyConsistency = verifyConsistency; // for tests

  // ---- live updates from other inspectors ----------------------------------------------------
  function listen() {  // event_stream.js: reconnects with ?since=<last id>
    window.openEventStream({ topics: "recording.*", onEvent: (ev) => {
      if (ev.topic === "recording.bookmark" && state.search) refreshBookmarks().catch(() => {});
      if (ev.topic === "recording.hold" && state.view) refreshHolds().catch(() => {});
    } });
  }

  // ---- wiring --------------------------------------------------------------------------------
  async function init() {
    await loadCameras();
    $("f-hall").addEventListener("change", fillWindows);
    $("f-window").addEventListener("change", fillCameras);
    $("search-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const a = fromLocalInput($("f-start").value), b = fromLocalInput($("f-end").value);
      if (!(a < b)) { showError("search-error", new Error(T("err.bad_range"))); return; }
      runSearch(a, b);
    });
    $("complaint-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      complaint($("c-window").value, fromLocalInput($("c-at").value));
    });
    $("view-form").addEventListener("submit", startView);
    $("btn-play").addEventListener("click", () => player.toggle());
    $("btn-fwd").addEventListener("click", () => player.step(1));
    $("btn-back").addEventListener("click", () => player.step(-1));
    $("speed").addEventListener("change", (ev) => player.setRate(parseFloat(ev.target.value)));
    $("scrubber").addEventListener("input", (ev) => player.seekFraction(parseFloat(ev.target.value) / 1000));
    // keyboard: space play/pause, "," / "." one frame back / forward (not while typing)
    document.addEventListener("keydown", (ev) => {
      if (!state.view || ev.target.closest("input, select, textarea, button")) return;
      if (ev.key === " ") { ev.preventDefault(); player.toggle(); }
      else if (ev.key === ",") player.step(-1);
      else if (ev.key === ".") player.step(1);
    });
    $("bookmark-form").addEventListener("submit", addBookmark);
    $("hold-form").addEventListener("submit", placeHold);
    $("export-form").addEventListener("submit", doExport);
    $("btn-copy").addEventListener("click", viewingCopy);
    $("btn-keep").addEventListener("click", keepHead);
    $("btn-check").addEventListener("click", checkHead);
    const now = Date.now();
    $("f-start").value = toLocalInput(now - 10 * 60000);
    $("f-end").value = toLocalInput(now);
    $("c-at").value = toLocalInput(now - 2 * 60000);
    presetFromUrl();
    loadHead().catch(() => {});
    listen();
  }
  function complaint(windowId, at) {
    if (!windowId || !isFinite(at)) { showError("search-error", new Error(T("err.bad_range"))); return; }
    const cam = Object.values(state.cams).find((c) => c.window === windowId);
    if (!cam) { showError("search-error", new Error(T("err.unknown_window"))); return; }
    $("f-hall").value = cam.hall;
    fillWindows();
    $("f-window").value = windowId;
    fillCameras();
    jumpTo(at - cfg.complaintWindowMs, at + cfg.complaintWindowMs);
  }
  // /inspect?window=W&at=T (a complaint), or ?hall=&window=&camera=&start=&end= (times: ISO 8601 or epoch ms)
  function presetFromUrl() {
    const q = new URLSearchParams(location.search);
    const time = (v) => (v === null ? NaN : /^\d+$/.test(v) ? Number(v) : new Date(v).getTime());
    if (q.get("window") && q.get("at")) { complaint(q.get("window"), time(q.get("at"))); return; }
    if (q.get("hall")) { $("f-hall").value = q.get("hall"); fillWindows(); }
    if (q.get("window")) { $("f-window").value = q.get("window"); fillCameras(); }
    if (q.get("camera")) {
      const c = state.cams[q.get("camera")];
      if (c) { $("f-hall").value = c.hall; fillWindows(); $("f-window").value = c.window; fillCameras(); $("f-camera").value = c.id; }
    }
    const a = time(q.get("start")), b = time(q.get("end"));
    if (isFinite(a) && isFinite(b)) jumpTo(a, b);
  }
  init().catch((err) => showError("search-error", err));
})();
