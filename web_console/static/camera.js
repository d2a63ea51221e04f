// Chair console: far-end camera control (H.281 over H.224) of a selected room system.
// Press and hold a direction: a start, a continue every 400 ms, a stop on release (the far end also
// stops by itself 800 ms after the last one, so a lost release is harmless). Presets 1-6 activate, or
// store with the checkbox. Buttons are greyed, with the reason as tooltip, where the site did not
// negotiate FECC or its camera cannot do that. See web_console/camera_console.py.
(function () {
  "use strict";
  // the chair console (#console, the conference in the URL hash) or the leader's command view
  // (#command, the conference in the panel's data-conference, set by command.js)
  const root = document.getElementById("console") || document.getElementById("command");
  const panel = document.getElementById("camera-panel");
  if (!root || !panel) return;
  const text = JSON.parse(document.getElementById("camera-i18n").textContent);
  const csrf = root.dataset.csrf;
  const $ = (id) => document.getElementById(id);
  const conference = () => panel.dataset.conference ||
    (root.id === "console" && location.hash.length > 1 ? location.hash.substring(1) : null);
  const select = $("camera-site");
  const CONTINUE_MS = 400;
  let holding = null;  // {move, timer}

  const url = (site) => "/api/conferences/" + conference() + "/cameras/" + encodeURIComponent(site);

  async function call(method, site, body) {
    const res = await fetch(url(site), {
      method, headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) {
      $("camera-status").textContent = typeof data.detail === "string" ? data.detail : res.statusText;
      throw new Error(String(res.status));
    }
    return data;
  }

  function show(state) {
    const axes = state ? state.axes : {};
    panel.querySelectorAll(".camera-move").forEach((b) => {
      const axis = b.dataset.move.split("_")[0];
      const ok = !!state && state.available && axes[axis];
      b.disabled = !ok;
      b.title = ok ? "" : (!state || !state.available ? text.unavailable : text.unsupported);
    });
    panel.querySelectorAll(".camera-preset").forEach((b) => {
      const ok = !!state && state.available && Number(b.dataset.preset) <= state.presets;
      b.disabled = !ok;
      b.title = ok ? "" : (!state || !state.available ? text.unavailable : text.unsupported);
    });
    $("camera-status").textContent = !state ? "" : (state.available ? text.ready : text.unavailable);
    panel.dataset.available = state && state.available ? "true" : "false";
  }

  async function refresh() {
    const site = select.value;
    if (!site || !conference()) { show(null); return; }
    try { show(await call("GET", site)); } catch (e) { show(null); }
  }

  async function loadSites() {
    if (!conference()) return;
    const res = await fetch("/api/conferences/" + conference()).catch(() => null);
    if (!res || !res.ok) return;
    const data = await res.json();
    const keep = select.value;
    const ids = (data.sites || []).map((s) => [s.site_id, s.name || s.site_id]);
    select.replaceChildren(new Option(text.pick, ""), ...ids.map(([id, name]) => new Option(name + " (" + id + ")", id)));
    if (ids.some(([id]) => id === keep)) select.value = keep;
    refresh();
  }

  function release() {
    if (!holding) return;
    const { move, site, timer } = holding;
    holding = null;
    clearInterval(timer);
    call("POST", site, { action: "stop", move }).catch(() => {});
  }

  panel.querySelectorAll(".camera-move").forEach((b) => {
    b.addEventListener("pointerdown", (event) => {
      if (b.disabled || holding) return;
      event.preventDefault();
      const site = select.value, move = b.dataset.move;
      const timer = setInterval(() => call("POST", site, { action: "continue", move }).catch(release), CONTINUE_MS);
      holding = { move, site, timer };
      call("POST", site, { action: "start", move }).catch(release);
    });
    ["pointerup", "pointerleave", "pointercancel"].forEach((name) => b.addEventListener(name, release));
  });
  panel.querySelectorAll(".camera-preset").forEach((b) => {
    b.addEventListener("click", () => {
      const action = $("camera-store").checked ? "store" : "preset";
      call("POST", select.value, { action, preset: Number(b.dataset.preset) }).then(show).catch(() => {});
    });
  });
  select.addEventListener("change", refresh);
  window.addEventListener("hashchange", loadSites);
  panel.addEventListener("conference", loadSites);
  window.addEventListener("blur", release);
  loadSites();
  setInterval(loadSites, 5000);
})();
