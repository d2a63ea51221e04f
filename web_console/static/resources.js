// Emergency resources on the dispatch map (issue 19): one togglable layer per kind (depots, teams,
// experts, shelters, hospitals) with a popup of stock/capacity/beds, and the allocation panel of the
// selected incident: its allocations (with return), and "the nearest with at least N of an item"
// by ETA, each with an allocate button. Stock updates live from resource.* events.
/* global L */

const cfg = JSON.parse(document.getElementById("resource-config").textContent);
const T = (k) => cfg.t[k] || k;
const KINDS = ["depot", "team", "expert", "shelter", "hospital"];
const COLOURS = { depot: "#8d6e63", team: "#f57c00", expert: "#7b1fa2", shelter: "#2e7d32", hospital: "#c62828" };
const GLYPH = { depot: "仓", team: "队", expert: "专", shelter: "避", hospital: "医" };

const res = { byId: new Map(), markers: new Map(), layers: {}, legend: null, selected: null };

function esc(s) { return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]); }

async function api(method, path, body) {
  const opts = { method, headers: { "X-CSRF-Token": cfg.csrf } };
  if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    const d = data.detail;
    throw new Error(typeof d === "string" ? d : Array.isArray(d) ? d.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ") : JSON.stringify(d));
  }
  return data;
}

// A request id per allocation click: the server refuses the same id twice (no double allocation
// when a click is repeated or a request is retried). getRandomValues works without a secure context.
function requestId() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

function stockText(r) {
  return r.stock.map((s) => `${esc(s.name)} ${s.quantity} ${esc(s.unit)}`).join("，");
}

function popupHtml(r) {
  const rows = [`<b>${esc(r.name)}</b> <span class="muted">${esc(T("kind." + r.kind))}</span>`];
  if (r.kind === "depot") rows.push(`${T("stock")}：<span data-testid="res-stock">${stockText(r)}</span>`);
  if (r.kind === "shelter") rows.push(`${T("capacity")} ${r.capacity} · ${T("occupancy")} <span data-testid="res-occupancy">${r.occupancy}</span>`);
  if (r.kind === "hospital") rows.push(`${T("beds")}：<span data-testid="res-beds">${r.beds_free}/${r.beds_total}</span>`, `${T("specialties")}：${esc(r.specialties.join("、"))}`);
  if (r.kind === "team") rows.push(`${T("headcount")} ${r.headcount} · ${T("skills")}：${esc(r.skill_names.join("、"))}${r.deployed ? ` · <b>${T("deployed")}</b>` : ""}`);
  if (r.kind === "expert") rows.push(`${T("specialty")}：${esc(r.specialty)}`);
  if (r.contact) rows.push(`${T("contact")}：${esc(r.contact)}`);
  if (r.made_up) rows.push(`<span class="muted">${T("made_up")}</span>`);
  return `<div class="res-popup" data-resource-id="${esc(r.id)}">${rows.join("<br>")}</div>`;
}

function icon(r) {
  const off = r.kind === "team" ? r.deployed : r.kind === "depot" ? false : r.kind === "shelter" ? r.occupancy >= r.capacity : r.kind === "hospital" ? r.beds_free === 0 : false;
  return L.divIcon({ className: "", iconSize: [18, 18], iconAnchor: [9, 9],
    html: `<div class="res-marker${off ? " off" : ""}" data-resource-id="${esc(r.id)}" data-kind="${r.kind}" style="background:${COLOURS[r.kind]}">${GLYPH[r.kind]}</div>` });
}

function draw(r) {
  res.byId.set(r.id, r);
  let mk = res.markers.get(r.id);
  if (!mk) {
    mk = L.marker([r.lat, r.lon], { icon: icon(r), zIndexOffset: -500 });
    mk.addTo(res.layers[r.kind]);
    res.markers.set(r.id, mk);
  } else {
    mk.setIcon(icon(r));
  }
  mk.bindPopup(popupHtml(r));
  mk.bindTooltip(`${r.name}${r.kind === "depot" ? " · " + r.stock.map((s) => `${s.name} ${s.quantity}`).join(" ") : ""}`);
}

// ---------------------------------------------------------------- allocation panel

async function renderPanel() {
  const box = document.getElementById("resource-alloc");
  const id = res.selected;
  if (!id) { box.innerHTML = `<p class="muted">${T("pick_incident")}</p>`; return; }
  let allocs;
  try { allocs = await api("GET", `/api/incidents/${encodeURIComponent(id)}/resources`); }
  catch (err) { box.innerHTML = `<p class="error">${esc(err.message)}</p>`; return; }
  if (res.selected !== id) return;
  const items = Object.entries(res.legend.items);
  const rows = allocs.map((a) => `<li data-testid="allocation" data-released="${a.released_at ? "1" : ""}">${esc(a.resource_name)} · ${esc(a.item_name)} ${a.quantity} ${esc(a.unit)}
    ${a.released_at ? `<span class="muted">${T("released")}</span>` : `<button class="link" data-release="${a.id}" data-testid="release">${T("release")}</button>`}</li>`).join("");
  box.innerHTML = `
    <ul class="allocs">${rows || `<li class="muted">${T("none")}</li>`}</ul>
    <form id="res-find" class="row">
      <select name="kind" data-testid="res-kind">${KINDS.filter((k) => k !== "expert").map((k) => `<option value="${k}">${esc(T("kind." + k))}</option>`).join("")}</select>
      <select name="item" data-testid="res-item">${items.map(([k, i]) => `<option value="${k}" ${k === "sandbag" ? "selected" : ""}>${esc(i.name)}</option>`).join("")}</select>
      ${T("at_least")} <input name="min" type="number" min="1" value="500" size="6" data-testid="res-min">
      <button class="primary" data-testid="res-find">${T("find")}</button>
    </form>
    <div id="res-msg" data-testid="res-msg"></div>
    <ol id="res-results" data-testid="res-results"></ol>`;
  const kindSel = box.querySelector("[name=kind]"), itemSel = box.querySelector("[name=item]");
  const fit = () => {  // each kind's allocatable item
    const fixed = { team: "team", shelter: "places", hospital: "beds" }[kindSel.value];
    if (fixed) itemSel.value = fixed;
    else if (["team", "places", "beds"].includes(itemSel.value)) itemSel.value = "sandbag";
  };
  kindSel.onchange = fit;
  box.querySelectorAll("[data-release]").forEach((b) => {
    b.onclick = async () => {
      try { await api("POST", `/api/resource-allocations/${b.dataset.release}/release`); await renderPanel(); }
      catch (err) { msg(err.message, true); }
    };
  });
  box.querySelector("#res-find").onsubmit = async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const need = Number(f.get("min"));
    const q = new URLSearchParams({ kind: f.get("kind"), item: f.get("item"), min_quantity: need, k: 3, incident_id: id });
    let out;
    try { out = await api("GET", `/api/resources/nearest?${q}`); } catch (err) { msg(err.message, true); return; }
    const ol = box.querySelector("#res-results");
    ol.innerHTML = out.results.length ? "" : `<li class="muted">${T("no_results")}</li>`;
    for (const r of out.results) {
      const have = (r.stock.find((s) => s.item === f.get("item")) || {}).quantity;
      const li = document.createElement("li");
      li.dataset.testid = "res-result";
      li.dataset.resourceId = r.id;
      li.innerHTML = `<b>${esc(r.name)}</b> · ${T("eta")} ${Math.ceil(r.eta_min)} ${T("minutes")} · ${esc(f.get("item") && res.legend.items[f.get("item")].name)} ${have}
        <input type="number" min="1" value="${need}" size="6" data-testid="res-qty"> <button data-testid="res-allocate">${T("allocate")}</button>
        <div class="muted">${esc(r.assumption)}</div>`;
      const rid = requestId();  // one id per offered allocation: a second click is refused, not doubled
      li.querySelector("button").onclick = async () => {
        try {
          await api("POST", `/api/incidents/${encodeURIComponent(id)}/resources`, { resource_id: r.id, item: f.get("item"),
            quantity: Number(li.querySelector("input").value), request_id: rid });
          msg(`${T("done")}: ${r.name}`);
          await renderPanel();
        } catch (err) { msg(err.message, true); }
      };
      ol.appendChild(li);
    }
  };
}

function msg(text, bad) {
  const m = document.getElementById("res-msg");
  if (m) { m.textContent = text; m.className = bad ? "error" : "ok"; }
}

// ---------------------------------------------------------------- start

async function ready() {
  while (!(window.dispatchConsole && window.dispatchConsole.map)) await new Promise((r) => setTimeout(r, 50));
  return window.dispatchConsole;
}

const dc = await ready();
const data = await api("GET", "/api/resources");
res.legend = data.legend;
const overlays = {};
for (const k of KINDS) {
  res.layers[k] = L.layerGroup().addTo(dc.map);
  overlays[`<span data-testid="layer-${k}"><i class="swatch" style="background:${COLOURS[k]}"></i>${esc(T("kind." + k))}</span>`] = res.layers[k];
}
L.control.layers(null, overlays, { collapsed: false, position: "topright" }).addTo(dc.map);
for (const r of data.resources) draw(r);
res.selected = dc.state.selected;
document.addEventListener("incident-selected", (e) => { res.selected = e.detail; renderPanel(); });
document.addEventListener("cc-event", (e) => {
  const ev = e.detail;
  if (!ev.topic.startsWith("resource.")) return;
  if (ev.payload.resource && ev.payload.resource.kind) draw(ev.payload.resource);
  if (ev.payload.allocation && ev.payload.allocation.incident_id === res.selected) renderPanel();
});
renderPanel();
window.resourceLayers = res;
