"""The resource service: the directory in memory (for the map and the nearest search), allocation
and release in one transaction each, then the audit entry and a bus event (``resource.allocated``,
``resource.released``) that carries the resource's new stock, so every console — and the
directory of every other process — updates without a reload.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from core.runtime import CoreServices
from dispatch.model import ValidationError
from dispatch.resources import store
from dispatch.resources.model import (
    Resource,
    ResourceConflict,
    ResourceKind,
    ResourceNotFound,
    check_item,
    check_quantity,
    resource_view,
)
from dispatch.resources.search import Hit, Query, ResourceIndex
from gis.routing import EtaEstimator

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ResourceService:
    def __init__(self, core: CoreServices, eta: EtaEstimator, catalogue: Sequence[Resource] = (),
                 clock: Callable[[], datetime] = _utcnow) -> None:
        self.core = core
        self.db = core.db
        self.catalogue = list(catalogue)
        self.index = ResourceIndex(eta)
        self.clock = clock
        self._listener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        async with self.db.transaction() as conn:
            await store.seed(conn, self.catalogue)
            self.index.upsert_many(await store.load_resources(conn))
        self._listener = asyncio.create_task(self._follow_bus(), name="resources-bus")

    async def stop(self) -> None:
        if self._listener:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    async def _follow_bus(self) -> None:
        """Another process allocated or released: reload that resource's stock."""
        with self.core.bus.subscribe("resource.*", maxsize=10_000) as sub:
            async for event in sub:
                if event.origin == self.core.bus.node_id:
                    continue
                rid = (event.payload.get("resource") or {}).get("id")
                if not isinstance(rid, str):
                    continue
                try:
                    async with self.db.pool.acquire() as conn:
                        self.index.upsert_many(await store.load_resources(conn, [rid]))
                except (OSError, asyncpg.PostgresError):
                    log.exception("resources: reloading %s failed", rid)

    # ------------------------------------------------------------------ reading

    def resource(self, resource_id: str) -> Resource:
        r = self.index.resources.get(resource_id)
        if r is None:
            raise ResourceNotFound(f"resource_id: 资源 {resource_id} 不存在")
        return r

    def directory(self, kinds: set[ResourceKind] | None = None, en: bool = False) -> list[dict[str, Any]]:
        return [resource_view(r, en) for r in sorted(self.index.resources.values(), key=lambda r: (r.kind, r.id))
                if kinds is None or r.kind in kinds]

    def nearest(self, query: Query) -> list[Hit]:
        return self.index.nearest(query)

    async def incident_position(self, incident_id: str) -> tuple[float, float]:
        row = await self.db.fetchrow("SELECT lon, lat FROM incidents WHERE id = $1", incident_id)
        if row is None:
            raise ResourceNotFound(f"警情 {incident_id} 不存在")
        return row["lon"], row["lat"]

    async def allocations(self, incident_id: str) -> list[dict[str, Any]]:
        async with self.db.pool.acquire() as conn:
            if await conn.fetchval("SELECT 1 FROM incidents WHERE id = $1", incident_id) is None:
                raise ResourceNotFound(f"警情 {incident_id} 不存在")
            return await store.allocations_of(conn, incident_id)

    # ------------------------------------------------------------------ changing

    async def allocate(self, incident_id: str, resource_id: str, item: str, quantity: int, request_id: str,
                       actor: str, source: str = "", note: str = "") -> dict[str, Any]:
        """Allocate in one transaction; ResourceConflict (409) when the stock is short or the request
        was already made, ResourceNotFound (404) for an unknown incident/resource/item."""
        resource = self.resource(resource_id)
        check_item(resource, item)
        check_quantity(quantity)
        if not request_id or len(request_id) > 64:
            raise ValidationError("request_id: 必须是 1–64 字符的请求编号")
        try:
            async with self.db.transaction() as conn:
                inc = await conn.fetchrow("SELECT status FROM incidents WHERE id = $1 FOR SHARE", incident_id)
                if inc is None:
                    raise ResourceNotFound(f"警情 {incident_id} 不存在")
                if inc["status"] == "closed":
                    raise ResourceConflict(f"警情 {incident_id} 已结案，不能调拨资源")
                alloc, left = await store.allocate(conn, request_id=request_id, incident_id=incident_id,
                                                   resource=resource, item=item, quantity=quantity, actor=actor,
                                                   at=self.clock(), note=note)
        except ResourceConflict as e:
            await self.core.audit.record(actor, "resource.allocate", resource_id, outcome="denied", source=source,
                                         detail={"incident": incident_id, "item": item, "quantity": quantity,
                                                 "reason": str(e)})
            raise
        return await self._changed("resource.allocated", "resource.allocate", actor, source, alloc, left)

    async def release(self, allocation_id: int, actor: str, source: str = "") -> dict[str, Any]:
        async with self.db.transaction() as conn:
            alloc, left = await store.release(conn, allocation_id, actor, self.clock())
        return await self._changed("resource.released", "resource.release", actor, source, alloc, left)

    async def _changed(self, topic: str, action: str, actor: str, source: str, alloc: dict[str, Any],
                       left: int) -> dict[str, Any]:
        r = self.index.set_stock(alloc["resource_id"], alloc["item"], left)
        await self.core.audit.record(actor, action, alloc["resource_id"], source=source, detail={
            "allocation": alloc["id"], "incident": alloc["incident_id"], "item": alloc["item"],
            "quantity": alloc["quantity"], "left": left})
        view = resource_view(r) if r else {"id": alloc["resource_id"]}
        await self.core.bus.publish(topic, {"allocation": alloc, "resource": view, "actor": actor})
        return {"allocation": alloc, "resource": view}
