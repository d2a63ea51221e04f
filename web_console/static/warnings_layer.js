// The active-warnings layer (issue 20): draws each warning in force (its CAP polygons and circles,
// coloured by severity) into a Leaflet layer group, and keeps it current. Used by /warnings, the
// dispatch map (window.dispatchConsole) and the leaders' view (window.ccCommand.layers.warnings).
const COLOURS = { Extreme: "#d00000", Severe: "#ff8800", Moderate: "#e6c200", Minor: "#0066cc", Unknown: "#888888" };

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

export function drawWarnings(group, warnings) {
  group.clearLayers();
  for (const w of warnings) {
    const colour = COLOURS[w.content.severity] || COLOURS.Unknown;
    const tip = `${esc(w.content.headline)}`;
    for (const area of w.content.areas) {
      for (const ring of area.polygons) {
        L.polygon(ring.map(([lon, lat]) => [lat, lon]), { color: colour, weight: 2, fillOpacity: 0.15,
          className: "warning-area" }).bindTooltip(tip).addTo(group);
      }
      for (const [lon, lat, km] of area.circles) {
        L.circle([lat, lon], { radius: km * 1000, color: colour, weight: 2, fillOpacity: 0.15,
          className: "warning-area" }).bindTooltip(tip).addTo(group);
      }
    }
  }
}

export async function loadActive() {
  const r = await fetch("/api/warnings/active", { credentials: "same-origin" });
  return r.ok ? r.json() : [];
}

export function keepDrawn(group, everyMs = 10000) {
  const refresh = async () => { drawWarnings(group, await loadActive()); };
  refresh();
  const timer = setInterval(refresh, everyMs);
  return { refresh, stop: () => clearInterval(timer) };
}

// Attach to whichever map the page has, once it exists.
function attach() {
  if (window.ccCommand?.layers?.warnings) {
    window.ccWarnings = keepDrawn(window.ccCommand.layers.warnings);
    return true;
  }
  if (window.dispatchConsole?.map) {
    const group = L.layerGroup().addTo(window.dispatchConsole.map);
    window.dispatchConsole.warnings = group;
    window.ccWarnings = keepDrawn(group);
    return true;
  }
  return false;
}
if (!document.getElementById("warnings-config")) {
  let tries = 0;
  const timer = setInterval(() => { if (attach() || ++tries > 100) clearInterval(timer); }, 200);
}
