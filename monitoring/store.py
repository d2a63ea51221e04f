"""Readings and alarms in PostgreSQL (tables of monitoring/migrations/0001_monitoring.sql).

Readings are written in batches with COPY (`copy_records_to_table`): one round trip for thousands of
rows. Charts read through ``monitoring_readings_gauge_at`` and are downsampled in the database
(`date_bin` buckets with min/max/mean/sum), so a 7-day chart of a 10 s gauge is a few hundred points.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.db import Database

READING_COLUMNS = ("gauge_id", "at", "value")
SPANS = {"24h": (24 * 3600, 300), "7d": (7 * 24 * 3600, 1800)}  # span → (seconds, bucket seconds)


def ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


async def insert_readings(db: Database, rows: Sequence[tuple[str, float, float]]) -> int:
    """Store (gauge_id, epoch seconds, value) rows with one COPY; returns how many."""
    if not rows:
        return 0
    async with db.pool.acquire() as conn:
        await conn.copy_records_to_table("monitoring_readings", columns=READING_COLUMNS,
                                         records=[(g, ts(at), v) for g, at, v in rows])
    return len(rows)


async def latest(db: Database, gauge_ids: Iterable[str]) -> dict[str, tuple[float, float]]:
    """The newest (epoch seconds, value) of each gauge that has one (an index probe per gauge)."""
    rows = await db.fetch(
        "SELECT g, r.at, r.value FROM unnest($1::text[]) AS g, LATERAL ("
        " SELECT at, value FROM monitoring_readings WHERE gauge_id = g ORDER BY at DESC LIMIT 1) AS r",
        list(gauge_ids))
    return {r["g"]: (r["at"].timestamp(), r["value"]) for r in rows}


@dataclass(frozen=True)
class Bucket:
    at: float  # bucket start, epoch seconds
    min: float
    max: float
    mean: float
    sum: float
    count: int


async def series(db: Database, gauge_id: str, since: float, until: float, bucket_s: int) -> list[Bucket]:
    """Readings of one gauge in [since, until), in buckets of `bucket_s` seconds."""
    rows = await db.fetch(
        "SELECT date_bin(make_interval(secs => $4), at, timestamptz '2000-01-01 00:00+00') AS b,"
        " min(value) AS lo, max(value) AS hi, avg(value) AS mean, sum(value) AS total, count(*) AS n"
        " FROM monitoring_readings WHERE gauge_id = $1 AND at >= $2 AND at < $3 GROUP BY b ORDER BY b",
        gauge_id, ts(since), ts(until), float(bucket_s))
    return [Bucket(r["b"].timestamp(), r["lo"], r["hi"], r["mean"], r["total"], r["n"]) for r in rows]


async def count_readings(db: Database, gauge_id: str | None = None) -> int:
    if gauge_id is None:
        return int(await db.fetchval("SELECT count(*) FROM monitoring_readings"))
    return int(await db.fetchval("SELECT count(*) FROM monitoring_readings WHERE gauge_id = $1", gauge_id))


# -- alarms ------------------------------------------------------------------------------------

async def open_alarm(db: Database, gauge_id: str, kind: str, key: str, severity: str, value: float | None,
                     at: float) -> int | None:
    """A new open alarm's id; None when one is already open for that gauge and key."""
    row = await db.fetchrow(
        "INSERT INTO monitoring_alarms (gauge_id, kind, key, severity, value, raised_at) VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (gauge_id, kind, key) WHERE cleared_at IS NULL DO NOTHING RETURNING id",
        gauge_id, kind, key, severity, value, ts(at))
    return None if row is None else int(row["id"])


async def clear_alarm(db: Database, gauge_id: str, kind: str, key: str, value: float | None, at: float) -> int | None:
    row = await db.fetchrow(
        "UPDATE monitoring_alarms SET cleared_at = $4, cleared_value = $5"
        " WHERE gauge_id = $1 AND kind = $2 AND key = $3 AND cleared_at IS NULL RETURNING id",
        gauge_id, kind, key, ts(at), value)
    return None if row is None else int(row["id"])


async def set_response(db: Database, alarm_id: int, incident_id: str | None, proposal: dict[str, Any] | None,
                       error: str = "") -> None:
    await db.execute(
        "UPDATE monitoring_alarms SET incident_id = $2, proposal = $3::jsonb, response_error = $4 WHERE id = $1",
        alarm_id, incident_id, proposal, error)


async def acknowledge(db: Database, alarm_id: int, actor: str, note: str) -> dict[str, Any] | None:
    """Acknowledge an alarm once; None when there is no such alarm, {} when it was acknowledged before."""
    async with db.transaction() as conn:
        row = await conn.fetchrow("SELECT acked_by FROM monitoring_alarms WHERE id = $1 FOR UPDATE", alarm_id)
        if row is None:
            return None
        if row["acked_by"] is not None:
            return {}
        await conn.execute("UPDATE monitoring_alarms SET acked_by = $2, acked_at = now(), ack_note = $3 WHERE id = $1",
                           alarm_id, actor, note)
    return await alarm(db, alarm_id)


async def open_alarms(db: Database) -> list[tuple[str, str, str]]:
    """(gauge_id, kind, key) of every open alarm: the machines' state after a restart."""
    rows = await db.fetch("SELECT gauge_id, kind, key FROM monitoring_alarms WHERE cleared_at IS NULL")
    return [(r["gauge_id"], r["kind"], r["key"]) for r in rows]


async def open_incident_of(db: Database, gauge_id: str) -> str | None:
    """The incident of the gauge's open threshold alarms, if one was made (one incident per flood episode)."""
    value = await db.fetchval(
        "SELECT incident_id FROM monitoring_alarms WHERE gauge_id = $1 AND kind = 'threshold'"
        " AND cleared_at IS NULL AND incident_id IS NOT NULL ORDER BY raised_at LIMIT 1", gauge_id)
    return None if value is None else str(value)


_ALARM_COLUMNS = ("id, gauge_id, kind, key, severity, value, raised_at, cleared_at, cleared_value, acked_by, acked_at,"
                  " ack_note, incident_id, proposal, response_error")


def _row(r: Any) -> dict[str, Any]:
    out = dict(r)
    for k in ("raised_at", "cleared_at", "acked_at"):
        out[k] = out[k].isoformat() if out[k] is not None else None
    out["proposal"] = json.loads(out["proposal"]) if isinstance(out["proposal"], str) else out["proposal"]
    return out


async def alarm(db: Database, alarm_id: int) -> dict[str, Any] | None:
    r = await db.fetchrow(f"SELECT {_ALARM_COLUMNS} FROM monitoring_alarms WHERE id = $1", alarm_id)
    return None if r is None else _row(r)


async def alarms(db: Database, *, active_only: bool = False, limit: int = 200) -> list[dict[str, Any]]:
    """Alarms, newest first: open or unacknowledged ones (``active_only``) or all."""
    where = "WHERE cleared_at IS NULL OR acked_by IS NULL" if active_only else ""
    rows = await db.fetch(f"SELECT {_ALARM_COLUMNS} FROM monitoring_alarms {where} ORDER BY raised_at DESC, id DESC"
                          f" LIMIT $1", limit)
    return [_row(r) for r in rows]
