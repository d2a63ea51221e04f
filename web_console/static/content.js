// Chair console: the content token (grant/revoke/take, policy), the content layout and the raise-hand queue.
// The conference is the console's current one (location.hash); changes arrive as conference.content /
// conference.hands bus events over /ws/events. See web_console/content_console.py.
(function () {
  "use strict";
  const root = document.getElementById("console");
  const panel = document.getElementById("content-panel");
  if (!root || !panel) return;
  const text = JSON.parse(document.getElementById("content-i18n").textContent);
  const csrf = root.dataset.csrf;
  const $ = (id) => document.getElementById(id);
  const current = () => (location.hash.length > 1 ? location.hash.substring(1) : null);
  let state = null;

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
    if (method !== "GET") $("console-error").textContent = "";
    return data;
  }
  const content = (body) => api("POST", "/api/conferences/" + current() + "/content", body).then(render).catch(() => {});
  const hands = (body) => api("POST", "/api/conferences/" + current() + "/hands", body).then(render).catch(() => {});

  function button(label, onclick, testid) {
    const b = document.createElement("button");
    b.type = "button"; b.textContent = label; b.dataset.testid = testid;
    b.addEventListener("click", onclick);
    return b;
  }
  const clock = (iso) => new Date(iso).toLocaleTimeString();

  function render(s) {
    state = s;
    panel.hidden = false;
    $("content-holder").textContent = s.holder ? (s.holder.startsWith("chair:") ? text.chair : s.holder_name) : text.none;
    $("content-holder").dataset.holder = s.holder || "";
    $("content-live").textContent = s.holder ? (s.live ? text.live + (s.size ? " " + s.size.join("×") : "") : text.waiting) : "";
    $("content-live").dataset.live = s.live ? "1" : "0";
    if (document.activeElement !== $("content-policy")) $("content-policy").value = s.policy;
    if (document.activeElement !== $("content-layout")) $("content-layout").value = s.layout;
    if (document.activeElement !== $("hands-approve")) $("hands-approve").value = s.approve;
    $("hands-mute-others").checked = s.mute_others;
    if (document.activeElement !== $("hands-keys")) $("hands-keys").value = s.raise_keys;
    const requests = $("content-requests");
    requests.innerHTML = "";
    s.requests.forEach((r) => {
      const li = document.createElement("li");
      li.dataset.testid = "content-request-" + r.site_id;
      li.textContent = r.name + " · " + clock(r.at) + " ";
      li.appendChild(button(text.grant, () => content({ action: "grant", site: r.site_id }), "content-grant-" + r.site_id));
      li.appendChild(button(text.dismiss, () => content({ action: "dismiss", site: r.site_id }), "content-dismiss-" + r.site_id));
      requests.appendChild(li);
    });
    renderDeck(s.deck);
    const list = $("hands-list");
    list.innerHTML = "";
    if (!s.hands.length) {
      const tr = document.createElement("tr"), td = document.createElement("td");
      td.colSpan = 3; td.className = "muted"; td.textContent = text.no_hands; tr.appendChild(td); list.appendChild(tr);
    }
    s.hands.forEach((h) => {
      const tr = document.createElement("tr");
      tr.dataset.testid = "hand-" + h.site_id;
      const name = document.createElement("td"); name.textContent = h.name; tr.appendChild(name);
      const at = document.createElement("td");
      at.textContent = clock(h.raised_at) + " · " + (text["via_" + h.via] || h.via); tr.appendChild(at);
      const actions = document.createElement("td");
      actions.appendChild(button(text.approve, () => hands({ action: "approve", site: h.site_id }), "approve-" + h.site_id));
      actions.appendChild(button(text.hand_dismiss, () => hands({ action: "dismiss", site: h.site_id }), "dismiss-" + h.site_id));
      tr.appendChild(actions);
      list.appendChild(tr);
    });
  }

  // The chair's slide deck (web_console/deck_console.py): upload, page, show/stop, remove.
  let deckShown = null;
  function renderDeck(d) {
    $("deck-ops").hidden = !d;
    $("deck-name").textContent = d ? d.name : text.deck_none;
    $("deck-page").textContent = d ? text.deck_page.replace("{page}", d.page).replace("{pages}", d.pages) : "";
    $("deck-page").dataset.page = d ? String(d.page) : "";
    $("deck-status").textContent = d ? (d.showing ? text.deck_showing : text.deck_stopped) : "";
    $("deck-status").dataset.showing = d && d.showing ? "1" : "0";
    const preview = $("deck-preview");
    const key = d ? current() + "/" + d.name + "/" + d.page + "/" + d.pages : null;
    if (key !== deckShown) {
      deckShown = key;
      preview.hidden = !d;
      if (d) preview.src = "/api/decks/" + current() + "/page.png?p=" + encodeURIComponent(key);
    }
  }
  async function uploadDeck(file) {
    $("deck-status").textContent = text.deck_uploading;
    try {
      const res = await fetch("/api/decks/" + current() + "?name=" + encodeURIComponent(file.name.substring(0, 200)), {
        method: "PUT", headers: { "X-CSRF-Token": csrf }, body: file,
      });
      const data = await res.json().catch(() => ({}));
      if (!res.ok) {
        $("console-error").textContent = typeof data.detail === "string" ? data.detail : (res.statusText || String(res.status));
        $("console-error").dataset.code = data.code || "";
        if (state) renderDeck(state.deck);
        return;
      }
      $("console-error").textContent = "";
      render(data);
    } finally {
      $("deck-file").value = "";
    }
  }
  const deck = (body) => api("POST", "/api/decks/" + current(), body).then(render).catch(() => {});
  $("deck-file").addEventListener("change", (e) => { if (e.target.files.length) uploadDeck(e.target.files[0]); });
  document.querySelectorAll("[data-deck]").forEach((b) => b.addEventListener("click", () => deck({ action: b.dataset.deck })));

  async function refresh() {
    if (!current()) return;
    try { render(await api("GET", "/api/conferences/" + current() + "/content")); } catch (e) { panel.hidden = true; }
  }

  $("content-policy").addEventListener("change", (e) => content({ action: "policy", policy: e.target.value }));
  $("content-layout").addEventListener("change", (e) => content({ action: "layout", layout: e.target.value }));
  $("content-revoke").addEventListener("click", () => content({ action: "revoke" }));
  $("content-take").addEventListener("click", () => content({ action: "take" }));
  $("hands-approve").addEventListener("change", (e) => hands({ action: "settings", approve: e.target.value }));
  $("hands-mute-others").addEventListener("change", (e) => hands({ action: "settings", mute_others: e.target.checked }));
  $("hands-keys").addEventListener("change", (e) => hands({ action: "settings", raise_keys: e.target.value }));

  function connect() {  // event_stream.js: reconnects with ?since=<last id>
    window.openEventStream({ topics: "conference.*", onEvent: (ev) => {
      const p = ev.payload || {};
      if ((ev.topic === "conference.content" || ev.topic === "conference.hands") && p.conference_id === current()) render(p);
      if (ev.topic === "conference.started" || ev.topic === "conference.ended") refresh();
    } });
  }
  window.addEventListener("hashchange", refresh);
  connect();
  refresh();
})();
