"""The dispatch capability: configuration beside the site plan (run cards, roads), bad files named."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.runtime import CoreServices
from dispatch.capability import start
from dispatch.response_plans import PlanError
from tests.conftest import make_settings

STATION = (111.56920, 22.76242)  # st-luoding-police
SCENE = (111.5800, 22.7700)


def road_file(tmp_path: Path) -> Path:
    line = [[STATION[0], STATION[1]], [SCENE[0], STATION[1]], [SCENE[0], SCENE[1]]]
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"speed_kmh": 30}, "geometry": {"type": "LineString", "coordinates": line}}]}
    path = tmp_path / "roads.geojson"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


async def test_roads_and_run_cards_from_configuration(fresh_db_url: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cards = tmp_path / "cards.toml"
    cards.write_text('[[plan]]\nname = "本地预案"\ncategory = "police"\nsubtype = "*"\n'
                     '[[plan.require]]\ncapability = "patrol"\ncount = 3\n', encoding="utf-8")
    monkeypatch.setenv("CC_DISPATCH__ROADS", str(road_file(tmp_path)))
    monkeypatch.setenv("CC_DISPATCH__RESPONSE_PLANS", str(cards))
    monkeypatch.setenv("CC_DISPATCH__TRAINING", "0")
    core = await CoreServices.start(make_settings(fresh_db_url, tmp_path), seed=False)
    try:
        cap = await start(core)
        try:
            svc = cap.service
            inc = await svc.create_incident(category="police", priority=3, lon=SCENE[0], lat=SCENE[1], actor="d1")
            card, results = await svc.recommend(inc.id)
            assert card == "本地预案" and len(results[0].recommended) == 3
            best = results[0].candidates[0]
            assert best.unit_id.startswith("luoding-police") and best.eta.method == "road"
            # 30 km/h along the two legs of the road, not the straight line
            assert best.eta.distance_m > best.straight_m
            assert any(c.eta.method == "great_circle" for c in results[0].candidates)  # stations far from the road
        finally:
            await cap.stop()
    finally:
        await core.stop()


async def test_a_bad_run_card_file_stops_the_start_naming_it(fresh_db_url: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    cards = tmp_path / "bad.toml"
    cards.write_text('[[plan]]\nname = "x"\ncategory = "nope"\n', encoding="utf-8")
    monkeypatch.setenv("CC_DISPATCH__RESPONSE_PLANS", str(cards))
    core = await CoreServices.start(make_settings(fresh_db_url, tmp_path), seed=False)
    try:
        with pytest.raises(PlanError, match="bad.toml"):
            await start(core)
    finally:
        await core.stop()
