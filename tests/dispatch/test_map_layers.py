from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dispatch.map_layers import STALE_COLOUR, incident_points, unit_points
from dispatch.model import UNIT_STATUS_COLOURS, Location, Position, Station, Unit, UnitStatus, new_incident
from gis.jurisdictions import load_areas_geojson
from gis.map_builder import PRIORITY_COLOURS, MapSpec, render_html

T = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
COUNTIES = Path(__file__).resolve().parents[2] / "config" / "demo" / "yunfu_counties.geojson"


def test_colours_and_offline_render() -> None:
    incs = [new_incident("A", "fire", "residential", 1, Location(111.57, 22.77, address="罗城"), T, "t"),
            new_incident("B", "medical", "cardiac", 4, Location(111.6, 22.8), T, "t", training=True)]
    st = {"S": Station("S", "站", "fire", 111.5, 22.7)}
    units = [Unit("U1", "罗定水罐1", "fire_engine", "S", position=Position(111.58, 22.78, T - timedelta(seconds=10)),
                  status=UnitStatus.EN_ROUTE, incident_id="A"),
             Unit("U2", "罗定救1", "ambulance_bls", "S", position=Position(111.58, 22.78, T - timedelta(hours=1))),
             Unit("U3", "罗定登高1", "ladder", "S", has_avl=False),
             Unit("U4", "无站", "ladder", "NOPE", has_avl=False)]
    ip = incident_points(incs)
    assert [p.colour for p in ip] == [PRIORITY_COLOURS[1], PRIORITY_COLOURS[4]]
    assert ip[1].name.startswith("【演练】") and "罗城" in ip[0].detail
    up = unit_points(units, st, T)
    assert [p.id for p in up] == ["U1", "U2", "U3"]
    assert up[0].colour == UNIT_STATUS_COLOURS[UnitStatus.EN_ROUTE] and up[1].colour == STALE_COLOUR
    assert "定位过期" in up[1].detail and "驻地位置" in up[2].detail and (up[2].lon, up[2].lat) == (111.5, 22.7)
    html = render_html(MapSpec(counties=load_areas_geojson(COUNTIES), layers={"incidents": ip, "units": up}))
    assert not re.search(r"https?://", html) and UNIT_STATUS_COLOURS[UnitStatus.EN_ROUTE] in html
