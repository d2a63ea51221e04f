"""PostgreSQL persistence of resources, stock and allocations (migration 0015_resources.sql).

Allocation is one transaction: the allocation row is inserted first (its ``request_id`` is
unique, so the same request made twice — even at the same instant — finds the first one and is
refused), then the stock is decremented with ``UPDATE ... SET quantity = quantity - n WHERE
quantity >= n RETURNING``. Two allocations of the last items serialise on the stock row's lock:
the second re-evaluates ``quantity >= n`` after the first commits and matches no row. Any refusal
raises inside the transaction, so it rolls back and changes nothing.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg

from dispatch.resources.model import (
    ITEMS,
    Resource,
    ResourceConflict,
    ResourceKind,
    ResourceNotFound,
    duplicate_message,
    released_message,
    shortage_message,
)


async def seed(conn: asyncpg.Connection, resources: Iterable[Resource]) -> int:
    """Insert or refresh resources from the catalogue; stock is inserted only when new (a restart
    keeps live quantities). Returns the number of stock rows added."""
    rs = list(resources)
    await conn.executemany(
        """INSERT INTO resources (id, kind, name, lon, lat, county_code, agency, contact, headcount, skills,
             specialty, capacity, beds_total, specialties, made_up)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)
           ON CONFLICT (id) DO UPDATE SET kind=$2, name=$3, lon=$4, lat=$5, county_code=$6, agency=$7, contact=$8,
             headcount=$9, skills=$10, specialty=$11, capacity=$12, beds_total=$13, specialties=$14, made_up=$15,
             updated_at=now()""",
        [(r.id, r.kind.value, r.name, r.lon, r.lat, r.county_code, r.agency, r.contact, r.headcount, list(r.skills),
          r.specialty, r.capacity, r.beds_total, list(r.specialties), r.made_up) for r in rs])
    added = 0
    for r in rs:
        for item, q in r.stock.items():
            status = await conn.execute(
                "INSERT INTO resource_stock (resource_id, item, quantity, unit) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (resource_id, item) DO NOTHING", r.id, item, q, ITEMS[item].unit)
            added += status.endswith(" 1")
    return added


def _from_row(r: asyncpg.Record, stock: dict[str, int]) -> Resource:
    return Resource(
        id=r["id"], kind=ResourceKind(r["kind"]), name=r["name"], lon=r["lon"], lat=r["lat"],
        county_code=r["county_code"], agency=r["agency"], contact=r["contact"], headcount=r["headcount"],
        skills=tuple(r["skills"]), specialty=r["specialty"], capacity=r["capacity"], beds_total=r["beds_total"],
        specialties=tuple(r["specialties"]), stock=stock, made_up=r["made_up"])


async def load_resources(conn: asyncpg.Connection, ids: list[str] | None = None) -> list[Resource]:
    rows = await conn.fetch("SELECT * FROM resources WHERE $1::text[] IS NULL OR id = ANY($1) ORDER BY id", ids)
    stock_rows = await conn.fetch(
        "SELECT resource_id, item, quantity FROM resource_stock WHERE $1::text[] IS NULL OR resource_id = ANY($1)", ids)
    stock: dict[str, dict[str, int]] = {}
    for s in stock_rows:
        stock.setdefault(s["resource_id"], {})[s["item"]] = s["quantity"]
    return [_from_row(r, stock.get(r["id"], {})) for r in rows]


ALLOCATION_COLUMNS = ("a.id, a.request_id, a.incident_id, a.resource_id, r.name AS resource_name, r.kind, a.item, "
                      "a.quantity, a.note, a.allocated_at, a.allocated_by, a.released_at, a.released_by")


def allocation_view(r: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    spec = ITEMS.get(r["item"])
    return {
        "id": r["id"], "request_id": r["request_id"], "incident_id": r["incident_id"], "resource_id": r["resource_id"],
        "resource_name": r["resource_name"], "kind": r["kind"], "item": r["item"],
        "item_name": spec.name if spec else r["item"], "unit": spec.unit if spec else "", "quantity": r["quantity"],
        "note": r["note"], "allocated_at": r["allocated_at"].isoformat(), "allocated_by": r["allocated_by"],
        "released_at": r["released_at"].isoformat() if r["released_at"] else None, "released_by": r["released_by"],
    }


async def allocate(conn: asyncpg.Connection, *, request_id: str, incident_id: str, resource: Resource, item: str,
                   quantity: int, actor: str, at: datetime, note: str = "") -> tuple[dict[str, Any], int]:
    """Take ``quantity`` of ``item`` from ``resource`` for the incident, inside the caller's transaction.
    Returns (the allocation, the quantity left). ResourceConflict / ResourceNotFound otherwise."""
    alloc_id = await conn.fetchval(
        "INSERT INTO resource_allocations (request_id, incident_id, resource_id, item, quantity, note, allocated_at,"
        " allocated_by) VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT (request_id) DO NOTHING RETURNING id",
        request_id, incident_id, resource.id, item, quantity, note, at, actor)
    if alloc_id is None:
        raise ResourceConflict(duplicate_message(request_id))
    left = await conn.fetchval(
        "UPDATE resource_stock SET quantity = quantity - $3, updated_at = now() "
        "WHERE resource_id = $1 AND item = $2 AND quantity >= $3 RETURNING quantity", resource.id, item, quantity)
    if left is None:
        have = await conn.fetchval("SELECT quantity FROM resource_stock WHERE resource_id = $1 AND item = $2",
                                   resource.id, item)
        if have is None:
            raise ResourceNotFound(f"item: {resource.name} 没有可调拨的 {item}")
        raise ResourceConflict(shortage_message(resource.name, ITEMS[item], have, quantity))
    row = await conn.fetchrow(f"SELECT {ALLOCATION_COLUMNS} FROM resource_allocations a JOIN resources r "
                              "ON r.id = a.resource_id WHERE a.id = $1", alloc_id)
    return allocation_view(row), left


async def release(conn: asyncpg.Connection, allocation_id: int, actor: str, at: datetime) -> tuple[dict[str, Any], int]:
    """Give an allocation back (once). Returns (the allocation, the quantity now in stock)."""
    row = await conn.fetchrow(
        "UPDATE resource_allocations SET released_at = $2, released_by = $3 WHERE id = $1 AND released_at IS NULL "
        "RETURNING resource_id, item, quantity", allocation_id, at, actor)
    if row is None:
        exists = await conn.fetchval("SELECT 1 FROM resource_allocations WHERE id = $1", allocation_id)
        if exists is None:
            raise ResourceNotFound(f"调拨记录 {allocation_id} 不存在")
        raise ResourceConflict(released_message(allocation_id))
    left = await conn.fetchval(
        "UPDATE resource_stock SET quantity = quantity + $3, updated_at = now() WHERE resource_id = $1 AND item = $2 "
        "RETURNING quantity", row["resource_id"], row["item"], row["quantity"])
    full = await conn.fetchrow(f"SELECT {ALLOCATION_COLUMNS} FROM resource_allocations a JOIN resources r "
                               "ON r.id = a.resource_id WHERE a.id = $1", allocation_id)
    return allocation_view(full), int(left)


async def allocations_of(conn: asyncpg.Connection, incident_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(f"SELECT {ALLOCATION_COLUMNS} FROM resource_allocations a JOIN resources r "
                            "ON r.id = a.resource_id WHERE a.incident_id = $1 ORDER BY a.id", incident_id)
    return [allocation_view(r) for r in rows]
