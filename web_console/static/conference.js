// Chair console: schedule, site list with live status/levels/speaker, every chair operation, live preview.
// State comes from /api/conferences/<id>; changes by any chair arrive as bus events over /ws/events.
(function () {
  "use strict";
  const root = document.getElementById("console");
  if (!root) return;
  const text = JSON.parse(document.getElementById("conf-i18n").textContent);
  const csrf = root.dataset.csrf;
  const $ = (id) => document.getElementById(id);
  let current = null, state = null, refreshTimer = null, preview = null;

  async function api(method, path, body) {
    const res = await fetch(path, {
      method, headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) {
      const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
      $("console-error").textContent = detail || res.statusText;
      throw new Error(detail);
    }
    // Only the chair's own actions clear the last error: a background refresh (bus events) must not
    // wipe a refusal before it is read.
    if (method !== "GET") $("console-error").textContent = "";
    return data;
  }
  // Controls whose change is on its way to the server: a state refresh arriving meanwhile (another
  // chair's change, a bus event) must not flip them back under the user's hand.
  const pending = new Set();
  const op = (name, args, control) => {
    if (control) pending.add(control);
    return api("POST", "/api/conferences/" + current + "/ops", Object.assign({ op: name }, args || {}))
      .finally(() => { if (control) pending.delete(control); })
      .then(render).catch(() => {});
  };
  const settle = (id, apply) => { if (!pending.has(id)) apply($(id)); };

  // -- schedule ----------------------------------------------------------------------------------
  async function loadList() {
    const list = await api("GET", "/api/conferences");
    const ul = $("conference-list");
    ul.innerHTML = "";
    list.forEach((c) => {
      const li = document.createElement("li");
      li.dataset.conference = c.id;
      if (c.id === current) li.className = "selected";
      const label = document.createElement("span");
      label.innerHTML = "<b></b><br><span class='status'></span>";
      label.querySelector("b").textContent = c.name;
      label.querySelector(".status").textContent = c.id + " · " + (text[c.status] || c.status) +
        (c.starts_at ? " · " + new Date(c.starts_at).toLocaleString() : "");
      li.appendChild(label);
      const button = document.createElement("button");
      if (c.running) {
        button.textContent = text.open;
        button.onclick = () => select(c.id);
      } else {
        button.textContent = text.start;
        button.onclick = () => api("POST", "/api/conferences/" + c.id + "/start").then(() => select(c.id)).catch(() => {});
      }
      button.dataset.testid = "open-" + c.id;
      button.setAttribute("data-testid", "open-" + c.id);
      li.appendChild(button);
      ul.appendChild(li);
    });
  }

  // meeting notice by SMS (issue 20): on by default when a chosen room has contacts, until the chair
  // sets it by hand
  let smsNoticeTouched = false;
  const createForm = $("create-form");
  createForm.sms_notice.addEventListener("change", () => { smsNoticeTouched = true; });
  createForm.sites.addEventListener("change", () => {
    if (!smsNoticeTouched) {
      createForm.sms_notice.checked = Array.from(createForm.sites.selectedOptions).some((o) => o.dataset.contacts === "1");
    }
  });

  $("create-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.target;
    const iso = (v) => (v ? new Date(v).toISOString() : null);
    const body = {
      name: f.name.value, pin: f.pin.value, guests: f.guests.checked, start_now: f.start_now.checked,
      sites: Array.from(f.sites.selectedOptions).map((o) => o.value),
      starts_at: iso(f.starts_at.value), ends_at: iso(f.ends_at.value), sms_notice: f.sms_notice.checked,
    };
    try {
      const created = await api("POST", "/api/conferences", body);
      f.reset();
      smsNoticeTouched = false;
      await loadList();
      if (created.running) select(created.id);
    } catch (e) { /* shown */ }
  });

  // -- one conference ------------------------------------------------------------------------------
  async function select(id) {
    current = id;
    location.hash = id;
    await refresh();
    loadList();
    startPreview();
    refreshRecording();
    refreshCascade();
  }

  async function refresh() {
    if (!current) return;
    try { render(await api("GET", "/api/conferences/" + current)); } catch (e) { /* shown */ }
  }

  function scheduleRefresh() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(() => { refreshTimer = null; refresh(); }, 80);
  }

  function options(select, items, value) {
    const prev = value !== undefined ? value : select.value;
    select.innerHTML = "";
    items.forEach(([v, label]) => {
      const o = document.createElement("option");
      o.value = v; o.textContent = label;
      select.appendChild(o);
    });
    if (prev !== undefined && items.some(([v]) => v === prev)) select.value = prev;
  }

  const PANES = { "1": 1, "2": 2, "1+5": 6, "1+7": 8, "2x2": 4, "3x3": 9, "4x4": 16, "5x5": 25, "6x6": 36, "7x7": 49, "auto": 0 };

  function render(s) {
    state = s;
    $("room").hidden = !s.running;
    if (!s.running) return;
    const c = s.conference;
    $("room-title").textContent = c.name + " (" + c.id + ")";
    const link = location.origin + "/join/" + c.id;
    $("join-link").href = link; $("join-link").textContent = link;
    $("lock").textContent = s.locked ? text.unlock : text.lock;
    $("lock").classList.toggle("on", s.locked);
    settle("layout", (el) => { el.value = s.layout; });
    settle("voice", (el) => { el.checked = s.voice_activated; });
    settle("labels", (el) => { el.checked = s.labels; });
    // Remote sites (behind a cascade link) are not in this node's room: no panes or polling for them.
    const joined = s.sites.filter((x) => x.status === "joined" && !x.remote);
    const siteOptions = joined.map((x) => [x.site_id, x.name]);
    options($("pane-index"), Array.from({ length: PANES[s.layout] || 0 }, (_, i) => [String(i), String(i + 1)]));
    options($("pane-site"), siteOptions);
    options($("polling-sites"), siteOptions);
    if (s.polling) Array.from($("polling-sites").options).forEach((o) => { o.selected = s.polling.sites.includes(o.value); });
    if (document.activeElement !== $("banner-text")) $("banner-text").value = s.banner ? s.banner.text : "";
    renderSites(s);
  }

  function button(label, onclick, testid, disabled, title) {
    const b = document.createElement("button");
    b.type = "button"; b.textContent = label; b.onclick = onclick;
    if (testid) b.setAttribute("data-testid", testid);
    if (disabled) { b.disabled = true; }
    if (title) b.title = title;
    return b;
  }

  function renderSites(s) {
    const body = $("sites");
    body.innerHTML = "";
    s.sites.forEach((site) => {
      const tr = document.createElement("tr");
      tr.dataset.site = site.site_id;
      tr.setAttribute("data-testid", "site-" + site.site_id);
      tr.dataset.status = site.status;
      if (site.speaking) tr.classList.add("speaking");
      if (site.protocol === "demo") tr.classList.add("demo");
      if (site.remote) tr.classList.add("remote");
      const name = document.createElement("td");
      name.className = "name"; name.dataset.demo = text.demo;
      name.textContent = site.name + (site.chair ? " ★" : "") + (s.broadcast === site.site_id ? " ◉" : "");
      if (site.remote) {
        const via = document.createElement("span");
        via.className = "via"; via.setAttribute("data-testid", "via-" + site.site_id);
        via.textContent = text.via + " " + (site.via_names || site.via).join(" › ");
        name.appendChild(via);
      }
      const proto = document.createElement("td"); proto.textContent = site.remote ? text.cascade_site : site.protocol;
      const st = document.createElement("td");
      st.className = "state-" + site.status; st.textContent = text[site.status] || site.status;
      st.setAttribute("data-testid", "status-" + site.site_id);
      if (site.detail && site.detail !== site.status) {
        const detail = document.createElement("div");
        detail.className = "muted site-detail"; detail.textContent = site.detail;
        detail.setAttribute("data-testid", "detail-" + site.site_id);
        st.appendChild(detail);
      }
      const level = document.createElement("td");
      level.innerHTML = "<span class='meter'><i></i></span>";
      level.querySelector(".meter").setAttribute("data-testid", "meter-" + site.site_id);
      const ops = document.createElement("td");
      const box = document.createElement("div"); box.className = "site-ops"; ops.appendChild(box);
      const id = site.site_id;
      if (site.remote && site.status === "joined") {
        // Sent to the node hosting the site over the cascade control channel; its answer (or a clear
        // error: unreachable, timeout, refused) is this request's answer.
        box.appendChild(button(text.broadcast, () => op("broadcast", { site: id }), "broadcast-" + id));
        box.appendChild(button(text.roll_call, () => op("roll_call", { site: id }), "rollcall-" + id));
        box.appendChild(button(site.muted ? text.unmute : text.mute, () => op("mute", { site: id, enabled: !site.muted }), "mute-" + id));
        box.appendChild(button(text.cascade_banner, () => op("banner", { site: id, text: $("banner-text").value }), "banner-" + id));
        // select-view on the node that hosts the site: its sources are that node's own sites
        const same = s.sites.filter((x) => x.remote && x.status === "joined" && x.site_id !== id
          && JSON.stringify(x.via) === JSON.stringify(site.via));
        if (same.length) {
          const sv = document.createElement("select");
          sv.setAttribute("data-testid", "select-view-" + id);
          sv.title = text.select_view;
          options(sv, [["", text.select_view + "…"]].concat(same.map((x) => [x.site_id, x.name])), "");
          sv.onchange = () => { if (sv.value) op("select_view", { site: id, target: sv.value }); };
          box.appendChild(sv);
        }
      } else if (site.remote) {
        // status unknown (channel lost) or not joined there: nothing to command
      } else if (site.status === "joined") {
        box.appendChild(button(text.broadcast, () => op("broadcast", { site: id }), "broadcast-" + id));
        box.appendChild(button(text.roll_call, () => op("roll_call", { site: id }), "rollcall-" + id));
        box.appendChild(button(site.muted ? text.unmute : text.mute, () => op("mute", { site: id, enabled: !site.muted }), "mute-" + id));
        box.appendChild(button(site.deaf ? text.undeaf : text.deaf, () => op("deaf", { site: id, enabled: !site.deaf }), "deaf-" + id));
        if (!site.chair) box.appendChild(button(text.chair, () => op("chair", { site: id }), "chair-" + id));
        const sv = document.createElement("select");
        sv.setAttribute("data-testid", "select-view-" + id);
        sv.title = text.select_view;
        options(sv, [["", text.select_view + "…"]].concat(s.sites.filter((x) => x.status === "joined" && !x.remote && x.site_id !== id)
          .map((x) => [x.site_id, x.name])), s.selected[id] || "");
        sv.onchange = () => op("select_view", { site: id, target: sv.value || null });
        box.appendChild(sv);
        box.appendChild(button(text.remove, () => op("remove", { site: id }), "remove-" + id));
      }
      if (site.protocol === "sip" || site.protocol === "h323") {
        ["invite", "redial", "hangup"].forEach((action) => {
          box.appendChild(button(text[action],
            () => api("POST", "/api/conferences/" + current + "/sites/" + id + "/" + action).then(refresh).catch(() => {}),
            action + "-" + id, !site.dial, site.dial ? "" : text.dial_unavailable));
        });
      }
      [name, proto, st, level, ops].forEach((td) => tr.appendChild(td));
      body.appendChild(tr);
      const stats = statsText(site.stats);
      if (stats && site.status === "joined") {  // a line of its own under the site: the columns are narrow
        const row = document.createElement("tr");
        row.className = "stats-row";
        const cell = document.createElement("td");
        cell.colSpan = 5; cell.className = "muted site-stats"; cell.textContent = stats;
        cell.setAttribute("data-testid", "stats-" + site.site_id);
        row.appendChild(cell);
        body.appendChild(row);
      }
    });
  }

  // Call statistics of SIP/H.323 sites: codec, resolution, bitrate, loss, jitter per received stream.
  function statsText(stats) {
    if (!stats || !Array.isArray(stats.streams)) return "";
    return stats.streams.filter((x) => x.codec).map((x) => {
      const parts = [x.codec];
      if (Array.isArray(x.resolution)) parts.push(x.resolution[0] + "×" + x.resolution[1]);
      if (x.bitrate_kbps !== undefined) parts.push(Math.round(x.bitrate_kbps) + " kb/s");
      if (x.packets_lost !== undefined) parts.push(text.stats_loss + " " + x.packets_lost);
      if (x.jitter_ms !== undefined) parts.push(text.stats_jitter + " " + Math.round(x.jitter_ms) + " ms");
      return parts.join(" ");
    }).join("  ·  ");
  }

  // Add a site by address: a SIP URI, or an H.323 alias / number / IP; the call shows in the list.
  $("add-site-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.target;
    try {
      await api("POST", "/api/conferences/" + current + "/sites", { address: f.address.value.trim(), name: f.name.value.trim() });
      f.reset();
      refresh();
    } catch (e) { /* shown */ }
  });

  function levels(payload) {
    Object.entries(payload.levels || {}).forEach(([id, db]) => {
      const meter = document.querySelector("[data-testid='meter-" + CSS.escape(id) + "'] i");
      if (meter) meter.style.width = Math.max(0, Math.min(100, (db + 60) * 100 / 60)) + "%";
    });
  }

  // -- controls ------------------------------------------------------------------------------------
  $("layout").onchange = () => op("layout", { layout: $("layout").value }, "layout");
  $("pane-assign").onclick = () => op("pane", {
    index: Number($("pane-index").value), mode: $("pane-mode").value,
    site: $("pane-mode").value === "static" ? $("pane-site").value : null,
  });
  $("voice").onchange = () => op("voice_activated", { enabled: $("voice").checked }, "voice");
  $("labels").onchange = () => op("labels", { enabled: $("labels").checked }, "labels");
  $("broadcast-cancel").onclick = () => op("broadcast", { site: null });
  $("mute-all").onclick = () => op("mute_all_except_chair");
  $("polling-start").onclick = () => op("polling_start", {
    sites: Array.from($("polling-sites").selectedOptions).map((o) => o.value),
    interval: Number($("polling-interval").value),
  });
  $("polling-stop").onclick = () => op("polling_stop");
  $("banner-set").onclick = () => op("banner", {
    text: $("banner-text").value, position: $("banner-position").value, scroll: $("banner-scroll").checked,
  });
  $("banner-clear").onclick = () => op("banner", { text: "" });
  $("lock").onclick = () => op("lock", { enabled: !(state && state.locked) });

  // Recording: the broadcast view + mixed audio into the recording store (inspectors replay it).
  let recording = false;
  async function refreshRecording() {
    if (!current) return;
    // 404 (with available/recording in the body) means "not recording": not an error to show.
    const res = await fetch("/api/conferences/" + current + "/recording").catch(() => null);
    const r = res ? await res.json().catch(() => null) : null;
    $("record").hidden = !(r && r.available);
    recording = !!(r && r.recording);
    $("record").textContent = recording ? text.record_stop : text.record;
    $("record").classList.toggle("on", recording);
  }
  $("record").onclick = () => api(recording ? "DELETE" : "POST", "/api/conferences/" + current + "/recording")
    .then(refreshRecording).catch(() => {});
  $("extend").onclick = () => api("POST", "/api/conferences/" + current + "/extend", { minutes: 30 }).then(loadList).catch(() => {});
  $("end").onclick = () => {
    if (!confirm(text.ended + "?")) return;
    api("POST", "/api/conferences/" + current + "/end").then(() => { stopPreview(); $("room").hidden = true; loadList(); }).catch(() => {});
  };

  // -- live preview (receive-only WebRTC of the broadcast view) ------------------------------------
  function stopPreview() {
    if (preview) { preview.ws.close(); preview.pc.close(); preview = null; }
  }

  async function startPreview() {
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
    const ws = new WebSocket(proto + "//" + location.host + "/ws/conference/" + current);
    preview = { pc, ws };
    window.ccPreview = pc;
    ws.onopen = () => ws.send(JSON.stringify({ type: "preview", sdp: pc.localDescription.sdp }));
    ws.onmessage = (msg) => {
      const m = JSON.parse(msg.data);
      if (m.type === "answer") pc.setRemoteDescription({ type: "answer", sdp: m.sdp });
    };
  }

  // -- cascade links: path state (专线 / 电信备份 / 中断) and switch history per child node ------------
  // Loaded from /api/conferences/<id>/cascade (the failover's status()), then kept live from the
  // `cascade.path` events {conference_id, node, state, previous, reason, at}.
  let cascade = { links: [], channels: {}, labels: {} };
  const when = (at) => {
    if (at === null || at === undefined || at === "") return "";
    const d = typeof at === "number" ? new Date(at * 1000) : new Date(at);
    return isNaN(d.getTime()) ? String(at) : d.toLocaleTimeString();
  };
  const pathText = (st) => text["path_" + st] || text.path_none;

  async function refreshCascade() {
    if (!current) return;
    const id = current;
    const data = await api("GET", "/api/conferences/" + id + "/cascade").catch(() => null);
    if (!data || id !== current) return;
    cascade = { links: data.links || [], channels: data.channels || {}, labels: data.labels || {} };
    renderCascade();
  }

  function renderCascade() {
    const box = $("cascade-links");
    box.innerHTML = "";
    const links = new Map();
    cascade.links.forEach((l) => links.set(l.node, l));
    Object.keys(cascade.channels).forEach((n) => { if (!links.has(n)) links.set(n, { node: n, state: null, history: [] }); });
    $("cascade-panel").hidden = links.size === 0;
    links.forEach((link, node) => {
      const card = document.createElement("div");
      card.className = "cascade-link"; card.setAttribute("data-testid", "cascade-link-" + node);
      const head = document.createElement("header");
      const title = document.createElement("strong"); title.textContent = cascade.labels[node] || node;
      const badge = document.createElement("span");
      badge.className = "path-badge path-" + (link.state || "none");
      badge.setAttribute("data-testid", "path-" + node); badge.dataset.state = link.state || "";
      badge.textContent = pathText(link.state);
      head.append(title, badge);
      if (link.since) {
        const since = document.createElement("span"); since.className = "channel";
        since.textContent = text.since + " " + when(link.since); head.appendChild(since);
      }
      if (node in cascade.channels) {
        const ch = document.createElement("span");
        ch.className = "channel" + (cascade.channels[node] ? "" : " down");
        ch.setAttribute("data-testid", "channel-" + node);
        ch.textContent = cascade.channels[node] ? text.channel_up : text.channel_down;
        head.appendChild(ch);
      }
      card.appendChild(head);
      const table = document.createElement("table");
      table.className = "grid"; table.setAttribute("data-testid", "history-" + node);
      table.innerHTML = "<thead><tr><th></th><th></th><th></th></tr></thead><tbody></tbody>";
      [text.cascade_at, text.cascade_change, text.cascade_reason].forEach((h, i) => { table.querySelectorAll("th")[i].textContent = h; });
      const history = (link.history || []).slice().reverse();  // newest first
      history.forEach((h) => {
        const tr = document.createElement("tr");
        [when(h.at), pathText(h.previous) + " → " + pathText(h.state), h.reason || ""].forEach((v) => {
          const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
        });
        table.tBodies[0].appendChild(tr);
      });
      if (!history.length) {
        const tr = document.createElement("tr"); const td = document.createElement("td");
        td.colSpan = 3; td.className = "muted"; td.textContent = text.no_history; tr.appendChild(td);
        table.tBodies[0].appendChild(tr);
      }
      card.appendChild(table);
      box.appendChild(card);
    });
  }

  function onPathEvent(p) {
    if (p.conference_id !== current) return;
    let link = cascade.links.find((l) => l.node === p.node);
    if (!link) { link = { node: p.node, role: "down", state: null, since: null, history: [] }; cascade.links.push(link); }
    link.state = p.state; link.since = p.at;
    link.history = (link.history || []).concat([{ at: p.at, state: p.state, previous: p.previous, reason: p.reason }]);
    renderCascade();
  }

  // -- events from every chair ----------------------------------------------------------------------
  function connectEvents(topics, handle) {  // event_stream.js: reconnects with ?since=<last id>
    window.openEventStream({ topics, onEvent: (ev) => handle(ev.topic, ev.payload || {}) });
  }

  connectEvents("conference.*", (topic, p) => {
    if (topic === "conference.audio_levels") { if (p.conference_id === current) levels(p); return; }
    if (["conference.scheduled", "conference.started", "conference.ended", "conference.extended"].includes(topic)) loadList();
    if (p.conference_id === current) scheduleRefresh();
    if (p.conference_id === current && topic.startsWith("conference.recording_")) refreshRecording();
    // a control channel came or went: its state is shown on the link
    if (p.conference_id === current && topic === "conference.remote_sites") refreshCascade();
  });
  connectEvents("cascade.*", (topic, p) => { if (topic === "cascade.path") onPathEvent(p); });
  loadList().then(() => { if (location.hash.length > 1) select(location.hash.substring(1)); });
})();
