"""Emergency resources: the catalogue, the allocation rules and the nearest search by ETA (pure)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from shapely.geometry import Point, shape

from dispatch.model import ValidationError
from dispatch.resources.model import (
    CatalogueError,
    Resource,
    ResourceConflict,
    ResourceKind,
    ResourceNotFound,
    check_allocation,
    load_catalogue,
    parse_catalogue,
    resource_view,
)
from dispatch.resources.search import Query, ResourceIndex
from gis.routing import EtaEstimator, RoadNetwork

DEMO = Path(__file__).resolve().parents[2] / "config" / "demo"


def depot(rid: str, lon: float, lat: float, sandbags: int) -> Resource:
    return Resource(rid, ResourceKind.DEPOT, rid, lon, lat, stock={"sandbag": sandbags, "pump": 1})


def test_demo_catalogue_is_marked_made_up_and_inside_its_counties() -> None:
    text = (DEMO / "resources.toml").read_text(encoding="utf-8")
    assert "MADE UP" in text.split("\n\n")[0]
    resources = load_catalogue(DEMO / "resources.toml")
    kinds = {r.kind for r in resources}
    assert kinds == set(ResourceKind)
    counties = {str(f["properties"]["adcode"]): shape(f["geometry"])
                for f in json.loads((DEMO / "yunfu_counties.geojson").read_text(encoding="utf-8"))["features"]}
    for r in resources:
        assert r.made_up, r.id
        assert counties[r.county_code].contains(Point(r.lon, r.lat)), r.id
    shelter = next(r for r in resources if r.id == "shelter-liudu-square")
    assert resource_view(shelter)["occupancy"] == 120 and resource_view(shelter)["capacity"] == 800


@pytest.mark.parametrize("doc,field", [
    ({"depots": [{"id": "d", "name": "x", "position": [112.0, 22.9], "supplies": {"sand": 3}}]}, "supplies.sand"),
    ({"depots": [{"id": "d", "name": "x", "position": [112.0, 22.9], "supplies": {"sandbag": -3}}]}, "sandbag"),
    ({"shelters": [{"id": "s", "name": "x", "position": [112.0, 22.9], "capacity": 10, "occupancy": 11}]},
     "occupancy"),
    ({"hospitals": [{"id": "h", "name": "x", "position": [112.0, 95.0], "beds_total": 10}]}, "position"),
    ({"teams": [{"id": "t", "name": "x", "position": [112.0, 22.9], "headcount": 5, "skills": ["flying"]}]},
     "skills"),
    ({"experts": [{"id": "e", "name": "x", "position": [112.0, 22.9]}]}, "specialty"),
    ({"depots": [{"id": "d", "name": "x", "position": [112.0, 22.9], "colour": "red"}]}, "colour"),
    ({"warehouses": []}, "warehouses"),
])
def test_bad_catalogue_names_the_field(doc: dict[str, object], field: str) -> None:
    with pytest.raises(CatalogueError) as e:
        parse_catalogue(doc, "res.toml")
    assert "res.toml" in str(e.value) and field in str(e.value)


def test_allocation_rules() -> None:
    d = depot("d1", 112.0, 22.9, 100)
    assert check_allocation(d, "sandbag", 100).unit == "袋"
    with pytest.raises(ResourceConflict, match="库存不足.*现有 100 袋，申请 101 袋"):
        check_allocation(d, "sandbag", 101)
    with pytest.raises(ResourceNotFound, match="item"):
        check_allocation(d, "tent", 1)
    with pytest.raises(ValidationError, match="quantity"):
        check_allocation(d, "sandbag", 0)


def test_nearest_depots_with_enough_sandbags_by_eta_great_circle() -> None:
    idx = ResourceIndex(EtaEstimator())
    here = (112.000, 22.900)
    idx.upsert_many([
        depot("closest-but-short", 112.001, 22.900, 499),  # excluded: fewer than 500
        depot("b", 112.010, 22.900, 600),
        depot("a", 112.005, 22.900, 500),
        depot("d", 112.030, 22.900, 5000),
        depot("c", 112.020, 22.900, 900),
        Resource("shelter", ResourceKind.SHELTER, "s", 112.0, 22.9, capacity=10, stock={"places": 10}),
    ])
    q = Query(*here, ResourceKind.DEPOT, k=3, item="sandbag", min_quantity=500)
    got = idx.nearest(q)
    assert [h.resource.id for h in got] == ["a", "b", "c"]
    assert [h.eta.seconds for h in got] == sorted(h.eta.seconds for h in got)
    assert [h.resource.id for h in idx.nearest_brute_force(q)] == ["a", "b", "c"]
    # the stock changes: "a" drops below 500 and leaves the answer
    idx.set_stock("a", "sandbag", 10)
    assert [h.resource.id for h in idx.nearest(q)] == ["b", "c", "d"]


def test_nearest_orders_by_road_eta_not_straight_line() -> None:
    # The incident sits on a fast highway (100 km/h) that reaches "far"; "near" is 2 km away on a
    # slow track (10 km/h). Straight-line order is near, far; ETA order is far, near.
    roads = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"speed_kmh": 100},
         "geometry": {"type": "LineString", "coordinates": [[112.0, 22.9], [112.05, 22.9]]}},
        {"type": "Feature", "properties": {"speed_kmh": 10},
         "geometry": {"type": "LineString", "coordinates": [[112.0, 22.9], [112.0, 22.918]]}},
    ]}
    idx = ResourceIndex(EtaEstimator(RoadNetwork.from_geojson(roads)))
    idx.upsert_many([depot("near", 112.0, 22.918, 800), depot("far", 112.05, 22.9, 800)])
    hits = idx.nearest(Query(112.0, 22.9, ResourceKind.DEPOT, k=2, item="sandbag", min_quantity=500))
    assert [h.resource.id for h in hits] == ["far", "near"]
    assert hits[0].straight_m > hits[1].straight_m and hits[0].eta.method == "road"


@pytest.mark.parametrize("kw,field", [({"k": 0}, "k"), ({"item": "gold"}, "item"), ({"min_quantity": 0}, "min_quantity"),
                                      ({"skill": "juggling"}, "skill")])
def test_bad_query_names_the_field(kw: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        Query(112.0, 22.9, ResourceKind.DEPOT, **kw)  # type: ignore[arg-type]
