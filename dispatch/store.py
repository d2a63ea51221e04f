"""PostgreSQL persistence of the dispatch model: rows ↔ ``Incident`` / ``Unit`` / ``Station``.

The model is pure and immutable, so saving is a diff: ``save_incident(conn, new, old)`` writes
what changed between two versions of an incident (new timeline entries, notes, calls, links,
component statuses, assignments taken or released). The timeline table refuses UPDATE and DELETE
(a trigger), so history can only grow. Every function takes a connection, so callers put several
writes in one transaction.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from dispatch.model import (
    Caller,
    Component,
    Incident,
    IncidentStatus,
    Location,
    Position,
    Station,
    TimelineEntry,
    Unit,
    UnitStatus,
)

INCIDENT_QUERY = """
SELECT i.*,
  (SELECT coalesce(json_agg(json_build_object('agency', c.agency, 'status', c.status) ORDER BY c.position), '[]')
     FROM incident_components c WHERE c.incident_id = i.id) AS components,
  (SELECT coalesce(json_agg(json_build_object('unit', u.unit_id, 'agency', u.agency,
                                              'released', u.released_at IS NOT NULL) ORDER BY u.id), '[]')
     FROM incident_units u WHERE u.incident_id = i.id) AS assignments,
  (SELECT coalesce(array_agg(call_id ORDER BY position), '{}') FROM incident_calls WHERE incident_id = i.id) AS calls,
  (SELECT coalesce(array_agg(text ORDER BY position), '{}') FROM incident_notes WHERE incident_id = i.id) AS notes,
  (SELECT coalesce(array_agg(b ORDER BY at, b), '{}') FROM incident_links
     WHERE a = i.id AND kind = 'related') AS related,
  (SELECT coalesce(array_agg(a ORDER BY at, a), '{}') FROM incident_links
     WHERE b = i.id AND kind = 'merged') AS merged_from,
  (SELECT coalesce(json_agg(json_build_object('seq', seq, 'at', at, 'actor', actor, 'action', action,
                                              'detail', detail) ORDER BY seq), '[]')
     FROM incident_timeline WHERE incident_id = i.id) AS timeline
FROM incidents i
"""


def incident_from_row(r: asyncpg.Record) -> Incident:
    """Assemble an Incident from one row of ``INCIDENT_QUERY``."""
    comps = []
    for c in r["components"]:
        units = [a["unit"] for a in r["assignments"] if a["agency"] == c["agency"] and not a["released"]]
        released = [a["unit"] for a in r["assignments"] if a["agency"] == c["agency"] and a["released"]]
        comps.append(Component(c["agency"], IncidentStatus(c["status"]), tuple(units), tuple(released)))
    timeline = tuple(
        TimelineEntry(t["seq"], datetime.fromisoformat(t["at"]), t["actor"], t["action"], dict(t["detail"]))
        for t in r["timeline"])
    return Incident(
        id=r["id"], category=r["category"], subtype=r["subtype"], priority=r["priority"],
        location=Location(r["lon"], r["lat"], r["uncertainty_m"], r["location_source"], r["address"],
                          r["county_code"], r["township_code"]),
        created_at=r["created_at"], description=r["description"],
        caller=Caller(r["caller_number"], r["caller_name"]), components=tuple(comps),
        calls=tuple(r["calls"]), notes=tuple(r["notes"]), related=tuple(r["related"]),
        merged_into=r["merged_into"], merged_from=tuple(r["merged_from"]), disposition=r["disposition"],
        training=r["training"], timeline=timeline,
    )


async def load_incident(conn: asyncpg.Connection, incident_id: str, *, for_update: bool = False) -> Incident | None:
    """One incident, or None. ``for_update`` locks its row until the transaction ends."""
    if for_update:
        if await conn.fetchval("SELECT id FROM incidents WHERE id = $1 FOR UPDATE", incident_id) is None:
            return None
    row = await conn.fetchrow(INCIDENT_QUERY + " WHERE i.id = $1", incident_id)
    return incident_from_row(row) if row else None


async def load_incidents(conn: asyncpg.Connection, *, training: bool | None = None, open_only: bool = False,
                         limit: int = 1000) -> list[Incident]:
    """Incidents newest first, optionally only open ones or only one training flag."""
    rows = await conn.fetch(
        INCIDENT_QUERY + " WHERE ($1::boolean IS NULL OR i.training = $1) AND (NOT $2 OR i.status <> 'closed')"
        " ORDER BY i.created_at DESC LIMIT $3", training, open_only, limit)
    return [incident_from_row(r) for r in rows]


def _assignments(inc: Incident | None) -> set[tuple[str, str]]:
    return {(c.agency, u) for c in inc.components for u in c.units} if inc else set()


async def save_incident(conn: asyncpg.Connection, new: Incident, old: Incident | None, township_id: str | None = None) -> None:
    """Write ``new``; with ``old`` (the version it was derived from) only what changed is appended."""
    loc = new.location
    await conn.execute(
        """INSERT INTO incidents (id, category, subtype, priority, status, lon, lat, uncertainty_m, location_source,
             address, county_code, township_code, township_id, description, caller_number, caller_name, merged_into,
             disposition, training, created_at, updated_at)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20, now())
           ON CONFLICT (id) DO UPDATE SET category=$2, subtype=$3, priority=$4, status=$5, lon=$6, lat=$7,
             uncertainty_m=$8, location_source=$9, address=$10, county_code=$11, township_code=$12,
             township_id=coalesce($13, incidents.township_id), description=$14, caller_number=$15,
             caller_name=$16, merged_into=$17, disposition=$18, updated_at=now()""",
        new.id, new.category, new.subtype, new.priority, new.status.value, loc.lon, loc.lat, loc.uncertainty_m,
        loc.source, loc.address, loc.county_code, loc.township_code, township_id, new.description,
        new.caller.number, new.caller.name, new.merged_into, new.disposition, new.training, new.created_at)
    await conn.executemany(
        "INSERT INTO incident_components (incident_id, agency, status, position) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (incident_id, agency) DO UPDATE SET status = EXCLUDED.status",
        [(new.id, c.agency, c.status.value, i) for i, c in enumerate(new.components)])
    at = new.timeline[-1].at if new.timeline else new.created_at
    before, after = _assignments(old), _assignments(new)
    await conn.executemany(
        "INSERT INTO incident_units (incident_id, unit_id, agency, assigned_at) VALUES ($1, $2, $3, $4)",
        [(new.id, u, a, at) for a, u in sorted(after - before)])
    await conn.executemany(
        "UPDATE incident_units SET released_at = $3, released_by = $4 "
        "WHERE incident_id = $1 AND unit_id = $2 AND released_at IS NULL",
        [(new.id, u, at, new.timeline[-1].actor if new.timeline else "") for _a, u in sorted(before - after)])
    n_calls = len(old.calls) if old else 0
    await conn.executemany("INSERT INTO incident_calls (incident_id, call_id, position) VALUES ($1, $2, $3)",
                           [(new.id, c, i) for i, c in enumerate(new.calls) if i >= n_calls])
    n_notes = len(old.notes) if old else 0
    await conn.executemany("INSERT INTO incident_notes (incident_id, position, text) VALUES ($1, $2, $3)",
                           [(new.id, i, t) for i, t in enumerate(new.notes) if i >= n_notes])
    old_related = set(old.related) if old else set()
    await conn.executemany(
        "INSERT INTO incident_links (a, b, kind, at) VALUES ($1, $2, 'related', $3) ON CONFLICT DO NOTHING",
        [(new.id, b, at) for b in new.related if b not in old_related])
    old_merged = set(old.merged_from) if old else set()
    await conn.executemany(
        "INSERT INTO incident_links (a, b, kind, at) VALUES ($1, $2, 'merged', $3) ON CONFLICT DO NOTHING",
        [(d, new.id, at) for d in new.merged_from if d not in old_merged])
    n_tl = len(old.timeline) if old else 0
    await conn.executemany(
        "INSERT INTO incident_timeline (incident_id, seq, at, actor, action, detail) VALUES ($1, $2, $3, $4, $5, $6)",
        [(new.id, e.seq, e.at, e.actor, e.action, dict(e.detail)) for e in new.timeline[n_tl:]])


# ---------------------------------------------------------------- stations and units

UNIT_COLUMNS = ("id, callsign, type, station_id, crew, extra_capabilities, status, incident_id, lon, lat, fix_at, "
                "speed_kmh, heading_deg, has_avl, last_dispatched_at, training")


def unit_from_row(r: asyncpg.Record | dict[str, Any]) -> Unit:
    from dispatch.model import Capability

    pos = None
    if r["lon"] is not None and r["fix_at"] is not None:
        pos = Position(r["lon"], r["lat"], r["fix_at"], r["speed_kmh"], r["heading_deg"])
    return Unit(
        id=r["id"], callsign=r["callsign"], type=r["type"], station_id=r["station_id"], crew=tuple(r["crew"]),
        extra_capabilities=frozenset(Capability(c) for c in r["extra_capabilities"]),
        status=UnitStatus(r["status"]), incident_id=r["incident_id"], position=pos, has_avl=r["has_avl"],
        last_dispatched_at=r["last_dispatched_at"], training=r["training"])


async def load_units(conn: asyncpg.Connection, ids: Sequence[str] | None = None, *, for_update: bool = False) -> list[Unit]:
    lock = " FOR UPDATE" if for_update else ""
    if ids is None:
        rows = await conn.fetch(f"SELECT {UNIT_COLUMNS} FROM units ORDER BY id")
    else:
        rows = await conn.fetch(f"SELECT {UNIT_COLUMNS} FROM units WHERE id = ANY($1) ORDER BY id{lock}", list(ids))
    return [unit_from_row(r) for r in rows]


async def save_unit(conn: asyncpg.Connection, new: Unit, old: Unit | None, actor: str, source: str) -> None:
    """Write a unit's status/assignment (not its position: AVL does that in bulk) and its history."""
    await conn.execute(
        "UPDATE units SET status = $2, incident_id = $3, last_dispatched_at = $4, updated_at = now() WHERE id = $1",
        new.id, new.status.value, new.incident_id, new.last_dispatched_at)
    if old is None or old.status != new.status:
        await conn.execute(
            "INSERT INTO unit_status_history (unit_id, at, frm, status, incident_id, actor, source) "
            "VALUES ($1, now(), $2, $3, $4, $5, $6)",
            new.id, old.status.value if old else "", new.status.value, new.incident_id or (old.incident_id if old else None),
            actor, source)


async def seed_stations_and_units(conn: asyncpg.Connection, stations: Iterable[Station], units: Iterable[Unit]) -> int:
    """Insert stations and units that do not exist yet (a restart keeps live status); returns units added."""
    await conn.executemany(
        "INSERT INTO stations (id, name, agency, lon, lat, county_code, approximate) VALUES ($1,$2,$3,$4,$5,$6,$7) "
        "ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, lon = EXCLUDED.lon, lat = EXCLUDED.lat",
        [(s.id, s.name, s.agency, s.lon, s.lat, s.county_code, s.approximate) for s in stations])
    added = 0
    for u in units:
        status = await conn.execute(
            "INSERT INTO units (id, callsign, type, station_id, crew, extra_capabilities, status, has_avl, training) "
            "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT (id) DO NOTHING",
            u.id, u.callsign, u.type, u.station_id, list(u.crew), sorted(c.value for c in u.extra_capabilities),
            u.status.value, u.has_avl, u.training)
        added += status.endswith(" 1")
    return added


async def load_stations(conn: asyncpg.Connection) -> list[Station]:
    rows = await conn.fetch("SELECT id, name, agency, lon, lat, county_code, approximate FROM stations ORDER BY id")
    return [Station(r["id"], r["name"], r["agency"], r["lon"], r["lat"], r["county_code"], r["approximate"]) for r in rows]
