"""Hand-edited GeoJSON (site plan boundaries, roads): every field replaced by every odd JSON type
gives the loader's own error naming the feature, never a crash."""
from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gis.jurisdictions import JurisdictionError, load_areas_geojson
from gis.routing import RoadNetwork, RoadNetworkError

ODD = [None, 5, "x", [], {}, [1], {"a": 1}, True, -1.5, [[1, 2]]]
AREA = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {
    "adcode": 1, "name": "a", "center": [1, 2], "county": {"adcode": 3}},
    "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}}]}
ROAD = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"speed_kmh": 40, "oneway": False},
        "geometry": {"type": "LineString", "coordinates": [[112, 22], [112.1, 22]]}}]}


def _paths(d: Any, pre: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [pre]
    if isinstance(d, dict):
        for k, v in d.items():
            out += _paths(v, pre + (k,))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out += _paths(v, pre + (i,))
    return out


@pytest.mark.parametrize(("base", "load", "err"), [
    (AREA, lambda p: load_areas_geojson(p, parent_field="county"), JurisdictionError),
    (ROAD, RoadNetwork.from_geojson, RoadNetworkError),
])
def test_sweep(tmp_path: Path, base: dict[str, Any], load: Callable[[Path], object], err: type[Exception]) -> None:
    f = tmp_path / "x.geojson"
    raised = 0
    for path in [p for p in _paths(base) if p]:
        for value in ODD:
            d = copy.deepcopy(base)
            cur: Any = d
            for k in path[:-1]:
                cur = cur[k]
            cur[path[-1]] = value
            f.write_text(json.dumps(d))
            try:
                load(f)
            except err as e:
                raised += 1
                assert "x.geojson" in str(e)
    assert raised > 50
