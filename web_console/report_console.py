"""The situation report (态势报告) of an incident: the printable page, its folium map and its PDF.

The content comes from ``dispatch.situation`` (plans, tasks, resources, conferences) and the
dispatch service (facts, units, timeline); the PDF is the same report as a self-contained document
printed by headless Chromium (``web_console.report_pdf``). Who may read it: dispatchers,
call-takers, the chair, the leader and admins. Errors: unknown incident → 404; no PDF (Chromium missing,
busy, too slow) → 503 with a message in the caller's language.
"""
from __future__ import annotations

import asyncio
import logging
import re
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from config.roles import Role
from dispatch.map_layers import incident_points, unit_points
from dispatch.service import DispatchService
from dispatch.situation import local_time, situation
from dispatch.views import timeline_view
from gis.map_builder import MapPoint, MapSpec, render_html
from gis.static_map import fit_view, render_svg
from web_console.auth import Principal, RoleFirstRoute, client_address, node_of, require, services_of
from web_console.dispatch_console import model_errors, service_of
from web_console.i18n import translate
from web_console.report_pdf import ChromiumPrinter, PdfError
from web_console.templating import language_of, render, templates

router = APIRouter(route_class=RoleFirstRoute)

# the situation report (and its PDF): also the chair and the leader, who follow the incident
REPORT_READERS = require(Role.DISPATCHER, Role.CALLTAKER, Role.CHAIR, Role.LEADER)
ReportReader = Annotated[Principal, Depends(REPORT_READERS)]
REPORT_TZ = ZoneInfo("Asia/Shanghai")  # the report's times are local time
PDF_REFUSALS = {"missing": "sitrep.pdf_unavailable", "timeout": "sitrep.pdf_timeout", "busy": "sitrep.pdf_busy",
                "failed": "sitrep.pdf_failed"}
RESOURCE_COLOURS = {"depot": "#8250df", "team": "#0969da", "shelter": "#1a7f37", "hospital": "#cf222e"}
log = logging.getLogger(__name__)


async def _report_context(request: Request, incident_id: str) -> dict[str, Any]:
    """What the situation report shows (the page and the PDF): the incident, its units and
    timeline, and ``sitrep`` (dispatch/situation.py: plans, tasks, resources, conferences)."""
    svc = service_of(request)  # 503 when dispatch does not run on this node
    node = node_of(request).dispatch
    if node is None:
        raise HTTPException(503, "调度服务未在本节点运行")
    with model_errors():
        inc = await svc.incident(incident_id)
    units = [svc.unit_json(svc.recommender.units[u]) for c in inc.components for u in (*c.units, *c.released_units)
             if u in svc.recommender.units]
    now = svc.clock()
    report = await situation(inc.id, inc.location.lon, inc.location.lat, plans=node.plans, resources=node.resources,
                             conferences=svc, room_names={r.id: r.name for r in svc.plan.meeting_rooms}, now=now,
                             tz=REPORT_TZ, en=language_of(request) == "en")
    timeline = [{**e, "local_at": local_time(e["at"], REPORT_TZ)} for e in timeline_view(inc)]
    return {"inc": svc.view(inc), "incident": inc, "timeline": timeline, "units": units, "sitrep": report,
            "generated_at": now.astimezone(REPORT_TZ).strftime("%Y-%m-%d %H:%M:%S")}


@router.get("/dispatch/incidents/{incident_id}/report", include_in_schema=False)
async def report_page(request: Request, incident_id: str, principal: ReportReader) -> Response:
    """Printable situation report: facts, components, units, plan activations with each agency's
    tasks, resources allocated, command conferences, a map and the timeline."""
    return render(request, "dispatch_report.html", **await _report_context(request, incident_id))


def _printer(request: Request) -> ChromiumPrinter:
    """This app's PDF printer (one per app: its concurrency limit is shared by every request)."""
    state = request.app.state
    printer: ChromiumPrinter | None = getattr(state, "report_printer", None)
    if printer is None:
        s = services_of(request).settings.dispatch
        printer = ChromiumPrinter(s.report_chromium, s.report_pdf_timeout_seconds, s.report_pdf_concurrency)
        state.report_printer = printer
    return printer


def _report_svg(request: Request, ctx: dict[str, Any]) -> str:
    """The report's map for print (inline SVG): county boundaries, the incident's units, the
    resources allocated to it, and the incident itself."""
    svc = service_of(request)
    cap = node_of(request).dispatch
    inc = ctx["incident"]
    ids = {u for c in inc.components for u in (*c.units, *c.released_units)}
    units = [svc.recommender.units[u] for u in ids if u in svc.recommender.units]
    allocated = {a["resource_id"] for rows in ctx["sitrep"]["allocations"].values() for a in rows}
    points = []
    for rid in sorted(allocated):
        r = cap.resources.index.resources.get(rid) if cap is not None else None  # None: gone from the directory
        if r is not None:
            points.append(MapPoint(r.id, r.name, r.lon, r.lat, RESOURCE_COLOURS.get(r.kind.value), approximate=r.made_up))
    unit_layer = unit_points(units, svc.stations, svc.clock())
    view = fit_view(inc.location.lon, inc.location.lat, [*unit_layer, *points])
    return render_svg(view, list(svc.jurisdictions.counties.areas), {"units": unit_layer, "resources": points},
                      focus=incident_points([inc]))


@router.get("/dispatch/incidents/{incident_id}/report.pdf", include_in_schema=False)
async def report_pdf(request: Request, incident_id: str, principal: ReportReader) -> Response:
    """The situation report as PDF, printed by headless Chromium (CJK fonts embedded). 404 for an
    unknown incident; 503 with a zh-CN/English message when Chromium is missing, busy or too slow."""
    ctx = await _report_context(request, incident_id)
    lang = language_of(request)
    html = templates.env.get_template("dispatch_report_pdf.html").render(
        **ctx, lang=lang, t=lambda key, **kw: translate(lang, key, **kw), map_svg=_report_svg(request, ctx))
    try:
        pdf = await _printer(request).print_pdf(html)
    except PdfError as e:
        log.warning("report PDF of %s refused: %s", incident_id, e)
        raise HTTPException(503, translate(lang, PDF_REFUSALS[e.reason])) from None
    await services_of(request).audit.record(principal.user.username, "incident.report_pdf", incident_id,
                                            source=client_address(request), detail={"bytes": len(pdf)})
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", incident_id)[:80]
    return Response(pdf, media_type="application/pdf", headers={
        "Content-Disposition": f"attachment; filename=\"situation-report-{safe}.pdf\"; "
                               f"filename*=UTF-8''{quote('态势报告-' + safe + '.pdf')}",
        "Cache-Control": "no-store"})


def _facilities(svc: DispatchService, kind: str) -> list[MapPoint]:
    return [MapPoint(f.id, f.name, f.position[0], f.position[1], approximate=f.position_quality != "surveyed")
            for f in svc.plan.facilities if f.kind == kind]


@router.get("/dispatch/incidents/{incident_id}/report/map", include_in_schema=False)
async def report_map(request: Request, incident_id: str, principal: ReportReader) -> HTMLResponse:
    """The report's folium map (every asset local)."""
    svc = service_of(request)
    with model_errors():
        inc = await svc.incident(incident_id)
    now = svc.clock()
    ids = {u for c in inc.components for u in (*c.units, *c.released_units)}
    units = [svc.recommender.units[u] for u in ids if u in svc.recommender.units]
    spec = MapSpec(
        counties=list(svc.jurisdictions.counties.areas),
        layers={"incidents": incident_points([inc]), "units": unit_points(units, svc.stations, now),
                "stations": [MapPoint(s.id, s.name, s.lon, s.lat, approximate=s.approximate)
                             for s in svc.stations.values()],
                "hydrants": _facilities(svc, "hydrant"), "flood_gauges": _facilities(svc, "flood_gauge")},
        center=(inc.location.lon, inc.location.lat), zoom=12)
    return HTMLResponse(await asyncio.to_thread(render_html, spec))

