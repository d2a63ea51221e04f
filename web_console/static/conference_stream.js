// The chair console's live-streaming controls (issue 18): start/stop the stream of the selected
// conference (location.hash, set by conference.js) and copy a watch link for people without an account.
(function () {
  const root = document.getElementById("console");
  const button = document.getElementById("stream");
  const linkButton = document.getElementById("stream-link");
  if (!root || !button) return;
  const csrf = root.dataset.csrf;
  const text = JSON.parse(document.getElementById("stream-i18n").textContent);
  let live = false;
  const current = () => (location.hash.length > 1 ? location.hash.substring(1) : null);

  async function call(method, path, body) {
    return fetch(path, { method, credentials: "same-origin",
                         headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
                         body: body ? JSON.stringify(body) : undefined });
  }

  async function refresh() {
    const id = current();
    if (!id) { button.hidden = linkButton.hidden = true; return; }
    const r = await call("GET", "/api/conferences/" + encodeURIComponent(id) + "/stream").catch(() => null);
    // 404 means "not streaming"; 503 (no MCU in this process) hides the controls
    button.hidden = !r || (r.status !== 200 && r.status !== 404);
    live = !!r && r.status === 200;
    button.textContent = live ? text.stop : text.start;
    button.classList.toggle("on", live);
    linkButton.hidden = !live;
  }

  button.onclick = async () => {
    const id = current();
    if (!id) return;
    await call(live ? "DELETE" : "POST", "/api/conferences/" + encodeURIComponent(id) + "/stream").catch(() => null);
    refresh();
  };

  linkButton.onclick = async () => {
    const id = current();
    const r = await call("POST", "/api/conferences/" + encodeURIComponent(id) + "/stream/link", {}).catch(() => null);
    if (!r || !r.ok) return;
    const url = location.origin + (await r.json()).url;
    linkButton.dataset.url = url;
    try { await navigator.clipboard.writeText(url); } catch (e) { window.prompt(text.copied, url); return; }
    linkButton.title = text.copied;
  };

  window.addEventListener("hashchange", refresh);
  setInterval(refresh, 5000);  // another chair may start or stop it
  refresh();
})();
