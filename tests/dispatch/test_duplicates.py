from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dispatch.avl import is_stale
from dispatch.duplicates import find_duplicates
from dispatch.model import Location, Position, close_incident, new_incident

T = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
P = (111.5700, 22.7700)
M = 1 / 111_195  # degrees of latitude per metre


def inc(i: str, cat: str, dlat_m: float, minutes_ago: float):  # type: ignore[no-untyped-def]
    return new_incident(i, cat, "general", 2, Location(P[0], P[1] + dlat_m * M), T - timedelta(minutes=minutes_ago), "t")


def test_near_recent_related_open_incidents_nearest_first() -> None:
    incidents = [
        inc("A", "traffic", 300, 5),  # same category, 300 m
        inc("B", "medical", 100, 2),  # related, closer
        inc("C", "traffic", 800, 1),  # too far
        inc("D", "traffic", 50, 45),  # too old
        inc("E", "police", 10, 1),  # police is related to traffic
        inc("F", "flood_control", 10, 1),  # not related to traffic
        close_incident(inc("G", "traffic", 10, 1), "误报", T, "t"),  # closed
    ]
    got = find_duplicates(*P, "traffic", T, incidents)
    assert [c.incident_id for c in got] == ["A", "E", "B"]  # same category first, then by distance
    assert 299 < got[0].distance_m < 301 and got[0].age_s == 300 and got[0].same_category
    assert [c.incident_id for c in find_duplicates(*P, "traffic", T, incidents, radius_m=1000)] == ["A", "C", "E", "B"]
    assert find_duplicates(*P, "other", T, incidents) == []


def test_stale() -> None:
    assert is_stale(None, T)
    assert not is_stale(Position(*P, T - timedelta(seconds=299)), T)
    assert is_stale(Position(*P, T - timedelta(seconds=301)), T)
