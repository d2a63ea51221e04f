"""Issue 19's agencies (气象, 地震, 卫健, 应急管理): every category, agency and unit type is complete —
a run card, an EIDO mapping, an English name, and demo units (marked made up) that can answer it."""
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from config.site_plan import load_site_plan
from dispatch.exchange.eido import AGENCY_TYPE, INCIDENT_TYPE_TEXT, RESOURCE_TYPE
from dispatch.model import AGENCIES, CATEGORIES, UNIT_TYPES, Location, new_incident
from dispatch.names_en import AGENCY_EN, english_names
from dispatch.recommendation import Recommender
from dispatch.response_plans import ResponsePlans
from dispatch.service import DEFAULT_PLANS
from dispatch.site import stations_from_plan, units_from_plan
from gis.routing import EtaEstimator

DEMO = Path(__file__).resolve().parents[2] / "config" / "demo" / "yunfu.toml"
NOW = datetime(2026, 7, 1, tzinfo=UTC)
NEW = {"meteorology": "气象", "earthquake": "地震", "health": "卫健", "emergency_mgmt": "应急管理"}


def test_new_agencies_have_categories_unit_types_and_names() -> None:
    assert {k: AGENCIES[k] for k in NEW} == NEW
    leads = {c.lead_agency for c in CATEGORIES.values()}
    assert set(NEW) <= leads
    assert {t.agency for t in UNIT_TYPES.values()} >= set(NEW)
    names = english_names()
    assert names["气象"] == "Meteorology" and names["地震灾害"] == "Earthquake" and names["矿山事故"] == "Mine accident"
    assert set(AGENCY_EN) == set(AGENCIES)
    codes = [c.code for c in CATEGORIES.values()]
    assert len(codes) == len(set(codes))  # EIDO import maps the code back to one category


def test_every_category_agency_and_unit_type_maps_to_eido() -> None:
    assert set(INCIDENT_TYPE_TEXT) == set(CATEGORIES)
    assert set(AGENCY_TYPE) == set(AGENCIES) and len(set(AGENCY_TYPE.values())) == len(AGENCY_TYPE)
    assert set(RESOURCE_TYPE) == set(UNIT_TYPES)


def test_every_category_has_a_run_card_that_the_demo_units_can_fill() -> None:
    plans = ResponsePlans.load(DEFAULT_PLANS)
    plan = load_site_plan(DEMO)
    stations = {s.id: s for s in stations_from_plan(plan)}
    units = units_from_plan(plan)
    assert {u.type for u in units} >= {k for k, t in UNIT_TYPES.items() if t.agency in NEW}
    assert all(s.approximate for s in stations.values() if s.agency in NEW)  # made up, and says so
    rec = Recommender(EtaEstimator(), stations)
    rec.upsert_many(units)
    for key, cat in CATEGORIES.items():
        for sub in cat.subtypes:
            card = plans.select(key, sub, 1)
            assert card is not None, (key, sub)
            inc = new_incident("I1", key, sub, 1, Location(111.5700, 22.7690), NOW, "t")
            results = rec.recommend(inc, card, NOW)
            assert all(r.shortfall == 0 for r in results), (key, sub, card.name)
            # the lead agency gets a unit too: else its component would stay "new" for ever
            leads = {c for t in UNIT_TYPES.values() if t.agency == cat.lead_agency for c in t.capabilities}
            assert any(r.capability in leads for r in card.requirements), (key, sub, card.name)
