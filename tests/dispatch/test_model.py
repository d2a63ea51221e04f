from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dispatch.model import (
    CATEGORIES,
    UNIT_STATUS_COLOURS,
    UNIT_TRANSITIONS,
    Capability,
    IllegalTransition,
    Incident,
    IncidentStatus,
    Location,
    Unit,
    UnitStatus,
    UnitUnavailable,
    ValidationError,
    add_component,
    add_note,
    assign_units,
    change_unit_status,
    close_incident,
    link_call,
    link_incidents,
    merge_incidents,
    new_incident,
    release_unit,
    reopen_incident,
    set_component_status,
    set_priority,
    set_status,
)

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
LOC = Location(111.5698, 22.7685, 30.0, "pidf-lo", "罗定市罗城街道", 445381)
S = IncidentStatus


def t(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def fire() -> Incident:
    return new_incident("INC-1", "fire", "residential", 1, LOC, T0, "接警员甲", "三楼冒烟", call_id="CALL-1")


def engine(uid: str = "E1", **kw: object) -> Unit:
    return Unit(uid, f"罗定{uid}", "fire_engine", "ST-LD", **kw)  # type: ignore[arg-type]


def test_categories_and_codes() -> None:
    assert set(CATEGORIES) == {"police", "fire", "medical", "flood_control", "traffic", "meteorology", "earthquake",
                               "epidemic", "work_safety", "other"}  # the last four: issue 19
    for c in CATEGORIES.values():
        assert c.code[0] == str(c.gbt_class) and "general" in c.subtypes
    assert CATEGORIES["flood_control"].subtypes["typhoon"] == "台风"
    assert set(UNIT_STATUS_COLOURS) == set(UnitStatus) and len(set(UNIT_STATUS_COLOURS.values())) == 8


def test_full_lifecycle_with_timeline() -> None:
    inc = fire()
    assert inc.status == S.NEW and inc.agencies == ("fire",)
    inc, units = assign_units(inc, [engine("E1"), engine("E2")], t(1), "调度员乙")
    assert inc.status == S.DISPATCHED and all(u.status == UnitStatus.DISPATCHED and u.incident_id == "INC-1" for u in units)
    assert units[0].last_dispatched_at == t(1)
    inc = set_status(inc, S.EN_ROUTE, t(2), "调度员乙")
    inc = set_status(inc, S.ON_SCENE, t(8), "geofence")
    inc = set_status(inc, S.UNDER_CONTROL, t(30), "调度员乙")
    with pytest.raises(IllegalTransition, match="未撤回"):
        close_incident(inc, "扑灭", t(40), "调度员乙")
    for u in units:
        inc, _ = release_unit(inc, u, t(41), "调度员乙")
    closed = close_incident(inc, "明火扑灭，无人员伤亡", t(42), "调度员乙")
    assert closed.status == S.CLOSED and closed.disposition.startswith("明火")
    actions = [e.action for e in closed.timeline]
    assert actions[0] == "created" and actions[-1] == "closed"
    assert [e.seq for e in closed.timeline] == list(range(1, len(closed.timeline) + 1))
    # append-only: the earlier value is untouched and a prefix of the later one
    assert closed.timeline[: len(inc.timeline)] == inc.timeline
    reopened = reopen_incident(closed, "复燃", t(60), "调度员乙")
    assert reopened.status == S.NEW and reopened.timeline[-1].detail == {"reason": "复燃"}


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        ([S.EN_ROUTE, S.ON_SCENE, S.UNDER_CONTROL], S.DISPATCHED),
        ([S.EN_ROUTE], S.DISPATCHED),  # backwards
        ([S.EN_ROUTE, S.ON_SCENE], S.EN_ROUTE),
        ([S.UNDER_CONTROL], S.ON_SCENE),
        ([S.ON_SCENE], S.NEW),
    ],
)
def test_illegal_incident_transitions(path: list[IncidentStatus], bad: IncidentStatus) -> None:
    inc, _ = assign_units(fire(), [engine()], t(1), "d")
    for s in path:
        inc = set_status(inc, s, t(2), "d")
    before = inc
    with pytest.raises(IllegalTransition):
        set_status(inc, bad, t(3), "d")
    assert inc == before


def test_new_incident_cannot_go_en_route_and_closed_needs_reopen() -> None:
    inc = fire()
    with pytest.raises(IllegalTransition, match="尚未调派"):
        set_status(inc, S.EN_ROUTE, t(1), "d")
    c = close_incident(inc, "误报", t(1), "d")  # cancel straight from new
    with pytest.raises(IllegalTransition, match="已结案"):
        set_priority(c, 2, t(2), "d")
    with pytest.raises(IllegalTransition, match="重新打开"):
        set_status(c, S.DISPATCHED, t(2), "d")
    with pytest.raises(IllegalTransition, match="未结案"):
        reopen_incident(inc, "x", t(2), "d")
    with pytest.raises(ValidationError, match="原因"):
        reopen_incident(c, " ", t(2), "d")
    with pytest.raises(ValidationError, match="处置结果"):
        close_incident(inc, "", t(1), "d")


def test_bad_fields() -> None:
    with pytest.raises(ValidationError, match="类别"):
        new_incident("X", "arson", "general", 1, LOC, T0, "a")
    with pytest.raises(ValidationError, match="子类"):
        new_incident("X", "fire", "typhoon", 1, LOC, T0, "a")
    for p in (0, 6, 2.5, True):
        with pytest.raises(ValidationError, match="优先级"):
            new_incident("X", "fire", "general", p, LOC, T0, "a")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="时区"):
        new_incident("X", "fire", "general", 1, LOC, datetime(2026, 1, 1), "a")
    with pytest.raises(ValidationError, match="纬度"):
        Location(112.0, 95.0)
    with pytest.raises(ValidationError, match="误差"):
        Location(112.0, 22.0, -1)
    with pytest.raises(ValidationError, match="操作人"):
        add_note(fire(), "x", t(1), "")
    with pytest.raises(ValidationError, match="未知类型"):
        Unit("U", "U", "tank", "S")
    with pytest.raises(ValidationError, match="部门"):
        new_incident("X", "fire", "general", 1, LOC, T0, "a", agencies=["army"])


def test_joint_incident_components() -> None:
    inc = new_incident("INC-2", "traffic", "entrapment", 1, LOC, T0, "a", agencies=["fire"])
    assert inc.agencies == ("police", "fire") and inc.joint
    police = Unit("P1", "罗定巡1", "police_car", "ST-P")
    amb = Unit("A1", "罗定120-1", "ambulance_als", "ST-H")
    inc, (p1, a1) = assign_units(inc, [police, amb], t(1), "d")
    assert inc.agencies == ("police", "fire", "medical")  # medical added by dispatching an ambulance
    assert inc.component("medical").units == ("A1",) and inc.component("fire").status == S.NEW
    assert inc.status == S.NEW  # least advanced open component
    with pytest.raises(IllegalTransition, match="联动"):
        set_status(inc, S.EN_ROUTE, t(2), "d")
    inc = set_component_status(inc, "medical", S.ON_SCENE, t(9), "d")
    assert inc.component("medical").status == S.ON_SCENE and inc.component("police").status == S.DISPATCHED
    with pytest.raises(ValidationError, match="已有"):
        add_component(inc, "fire", t(3), "d")
    inc = set_component_status(inc, "fire", S.CLOSED, t(4), "d")  # fire stood down
    assert inc.status == S.DISPATCHED


def test_unit_status_machine() -> None:
    u = engine()
    with pytest.raises(ValidationError, match="警情"):
        change_unit_status(u, UnitStatus.DISPATCHED, T0)
    with pytest.raises(IllegalTransition, match="待命"):
        change_unit_status(u, UnitStatus.ON_SCENE, T0)
    amb = Unit("A1", "救1", "ambulance_als", "H")
    for s in (UnitStatus.DISPATCHED, UnitStatus.EN_ROUTE, UnitStatus.ON_SCENE, UnitStatus.TRANSPORTING,
              UnitStatus.AT_HOSPITAL, UnitStatus.RETURNING, UnitStatus.AVAILABLE, UnitStatus.OUT_OF_SERVICE):
        amb = change_unit_status(amb, s, T0, "INC-9")
    assert amb.status == UnitStatus.OUT_OF_SERVICE and amb.incident_id is None
    with pytest.raises(IllegalTransition):
        change_unit_status(amb, UnitStatus.DISPATCHED, T0, "INC-9")
    # every status can reach available again through legal steps
    for s in UnitStatus:
        assert UNIT_TRANSITIONS[s], s
    assert Capability.BLS in amb.capabilities and amb.agency == "medical"
    assert Unit("B", "舟1", "boat", "S", extra_capabilities=frozenset({Capability.PUMP})).capabilities >= {
        Capability.BOAT, Capability.PUMP}


def test_conflicting_dispatch_is_refused_and_all_or_nothing() -> None:
    a = fire()
    b = new_incident("INC-3", "fire", "vehicle", 2, LOC, T0, "a")
    a, (e1,) = assign_units(a, [engine("E1")], t(1), "调度员甲")
    with pytest.raises(UnitUnavailable, match="INC-1"):
        assign_units(b, [engine("E2"), e1], t(1), "调度员乙")
    assert b.assigned_units == ()
    oos = change_unit_status(engine("E3"), UnitStatus.OUT_OF_SERVICE, T0)
    with pytest.raises(UnitUnavailable, match="停用"):
        assign_units(b, [oos], t(1), "d")
    with pytest.raises(ValidationError, match="重复"):
        assign_units(b, [engine("E4"), engine("E4")], t(1), "d")
    with pytest.raises(ValidationError, match="演练"):
        assign_units(b, [engine("E5", training=True)], t(1), "d")
    # recall, then the returning unit can go straight to b
    a, e1 = release_unit(a, e1, t(2), "d", recall=True)
    assert e1.status == UnitStatus.RETURNING and a.timeline[-1].action == "unit_recalled"
    b, (e1,) = assign_units(b, [e1], t(3), "d")
    assert e1.incident_id == "INC-3" and a.component("fire").released_units == ("E1",)
    with pytest.raises(ValidationError, match="未调派"):
        release_unit(a, e1, t(4), "d")


def test_merge_and_link_keep_history() -> None:
    a = fire()
    d = new_incident("INC-4", "fire", "residential", 2, LOC, t(1), "接警员丙", call_id="CALL-2")
    d = add_note(d, "邻居报告有人被困", t(2), "接警员丙")
    d, _ = assign_units(d, [engine("E7")], t(3), "d")
    d = add_component(d, "medical", t(3), "d")
    m, dd = merge_incidents(a, d, t(4), "调度员乙")
    assert m.calls == ("CALL-1", "CALL-2") and "邻居报告有人被困" in m.notes and m.merged_from == ("INC-4",)
    assert m.component("fire").units == ("E7",) and m.component("fire").status == S.DISPATCHED
    assert "medical" in m.agencies and m.priority == 1
    assert dd.status == S.CLOSED and dd.merged_into == "INC-1" and dd.timeline[:-1] == d.timeline
    assert dd.timeline[-1].action == "merged_into" and m.timeline[-1].detail["other"] == "INC-4"
    with pytest.raises(IllegalTransition, match="已并入"):
        merge_incidents(m, dd, t(5), "d")
    with pytest.raises(IllegalTransition, match="已并入"):
        reopen_incident(dd, "x", t(5), "d")
    x, y = link_incidents(m, new_incident("INC-5", "police", "general", 3, LOC, T0, "a"), t(6), "d")
    assert x.related == ("INC-5",) and y.related == ("INC-1",)
    with pytest.raises(ValidationError, match="已关联"):
        link_incidents(x, y, t(7), "d")
    with pytest.raises(ValidationError, match="自身"):
        merge_incidents(m, m, t(7), "d")
    with pytest.raises(ValidationError, match="已关联"):
        link_call(m, "CALL-2", t(7), "d")


def test_unit_arrived_moves_unit_and_component() -> None:
    from dispatch.model import unit_arrived

    inc, (e1, e2) = assign_units(fire(), [engine("E1"), engine("E2")], t(1), "d")
    inc = set_status(inc, S.EN_ROUTE, t(2), "d")
    inc, e1 = unit_arrived(inc, e1, t(7))
    assert e1.status == UnitStatus.ON_SCENE and inc.status == S.ON_SCENE
    assert [e.action for e in inc.timeline[-2:]] == ["unit_arrived", "status"] and inc.timeline[-1].actor == "geofence"
    inc = set_status(inc, S.UNDER_CONTROL, t(20), "d")
    inc, e2 = unit_arrived(inc, e2, t(21), "调度员乙")  # late arrival does not move the incident back
    assert inc.status == S.UNDER_CONTROL and e2.status == UnitStatus.ON_SCENE
    with pytest.raises(ValidationError, match="未调派"):
        unit_arrived(inc, engine("E9"), t(22))


def test_units_follow_a_merge() -> None:
    from dispatch.model import units_after_merge

    a = fire()
    d = new_incident("INC-9", "fire", "residential", 2, LOC, t(1), "x")
    d, (e7,) = assign_units(d, [engine("E7")], t(2), "d")
    other = engine("E8")
    m, _ = merge_incidents(a, d, t(3), "d")
    moved = units_after_merge([e7, other], m, "INC-9")
    assert moved[0].incident_id == "INC-1" and moved[1] == other
