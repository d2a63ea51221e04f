"""Fuzz targets (bounded): parsers of outside input either succeed or raise their own error type."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatch.exchange import pidf
from dispatch.exchange.cap import CapAlert, area_from_polygon, build_cap, validate_cap
from dispatch.exchange.eido import EidoError, export_incident, import_incident
from dispatch.model import Location, new_incident
from dispatch.response_plans import PlanError, ResponsePlans

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
T = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
    max_leaves=12,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, prefix + (i,))
    return out


BASE_EIDO = export_incident(
    new_incident("F-1", "fire", "residential", 1, Location(111.5, 22.7, 10.0, "x", "某地"), T, "t", "d", call_id="C1"),
    now=T,
)
EIDO_PATHS = [p for p in _paths(BASE_EIDO) if p]


@FUZZ
@given(st.data())
def test_eido_import_never_crashes(data: st.DataObject) -> None:
    doc = json.loads(json.dumps(BASE_EIDO))
    for _ in range(data.draw(st.integers(1, 4))):
        path = data.draw(st.sampled_from(EIDO_PATHS))
        cur: Any = doc
        try:
            for k in path[:-1]:
                cur = cur[k]
            cur[path[-1]] = data.draw(json_values)
        except (KeyError, IndexError, TypeError):
            continue
    try:
        import_incident(doc)
    except EidoError as e:
        assert e.errors


@FUZZ
@given(json_values)
def test_eido_import_random_json(doc: Any) -> None:
    try:
        import_incident(doc)
    except EidoError:
        pass


GOOD_CAP = build_cap(CapAlert("ID-1", "s@x", T, "e", "h", "d", (area_from_polygon("a", [(1, 1), (2, 1), (2, 2)]),)))


@FUZZ
@given(st.data())
def test_cap_validator_never_crashes(data: st.DataObject) -> None:
    text = GOOD_CAP
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(text)))
        j = data.draw(st.integers(i, min(len(text), i + 20)))
        text = text[:i] + data.draw(st.text(max_size=12)) + text[j:]
    issues = validate_cap(text)
    assert all(i.rule and i.message for i in issues)


@FUZZ
@given(st.text(max_size=300))
def test_pidf_parse_never_crashes(text: str) -> None:
    try:
        pidf.parse(text)
    except pidf.PidfError:
        pass


@FUZZ
@given(st.data())
def test_response_plan_loader_never_crashes(data: st.DataObject) -> None:
    base = ('[[plan]]\nname = "x"\ncategory = "fire"\nsubtype = "*"\npriority = [1]\n'
            '[[plan.require]]\ncapability = "engine"\ncount = 2\n')
    lines = base.splitlines()
    k = data.draw(st.integers(0, len(lines) - 1))
    lines[k] = data.draw(st.sampled_from([
        "", "count = -1", "priority = 'x'", "area = [[1]]", "[[plan]]", "[plan]", "require = 3",
        "category = 7", "capability = []", "name = ''", "x = 1", "subtype = 5",
    ]) | st.text(max_size=20))
    try:
        ResponsePlans.loads("\n".join(lines), "fuzz.toml")
    except PlanError as e:
        assert str(e).startswith("fuzz.toml")


ODD_VALUES = [None, 5, "x", [], {}, [1], {"a": 1}, True, -1.5]


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    d = json.loads(json.dumps(doc))
    cur = d
    for k in path[:-1]:
        cur = cur[k]
    cur[path[-1]] = value
    return d


def test_eido_type_confusion_sweep() -> None:
    """Every field of a real EIDO (and of our extension block) replaced by every odd JSON type:
    the import either succeeds or raises EidoError, never anything else."""
    ext = json.loads(BASE_EIDO["additionalDataComponent"][0]["additionalDataByValue"])
    docs = [_set(BASE_EIDO, p, v) for p in EIDO_PATHS for v in ODD_VALUES]
    for p in [q for q in _paths(ext) if q]:
        for v in ODD_VALUES:
            d = json.loads(json.dumps(BASE_EIDO))
            d["additionalDataComponent"][0]["additionalDataByValue"] = json.dumps(_set(ext, p, v))
            docs.append(d)
    assert len(docs) > 500
    for d in docs:
        try:
            import_incident(d)
        except EidoError as e:
            assert e.errors
