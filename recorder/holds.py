"""Legal holds (evidence locks): place and lift, each logged in the transparency log and the audit log."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.audit import AuditLog
from core.db import Database
from recorder.leaves import LegalHoldLeaf
from recorder.retention import HoldRange
from recorder.transparency_log import TransparencyLog


class HoldError(ValueError):
    """A bad hold request (empty reason, bad range, unknown or already lifted hold)."""


@dataclass(frozen=True)
class Hold:
    id: str
    cameras: tuple[str, ...]
    start_ms: int
    end_ms: int
    placed_by: str
    placed_reason: str
    lifted: bool


class LegalHolds:
    def __init__(self, db: Database, log: TransparencyLog, audit: AuditLog,
                 clock: Callable[[], float] = time.time) -> None:
        self.db, self.log, self.audit, self.clock = db, log, audit, clock

    async def place(self, user: str, cameras: Sequence[str], start_ms: int, end_ms: int, reason: str,
                    source: str = "") -> str:
        """Place a hold; returns its id."""
        if not reason.strip():
            raise HoldError("必须填写原因 (a reason is required)")
        if end_ms <= start_ms or not cameras:
            raise HoldError("a hold needs cameras and a range with end after start")
        hold_id = uuid.uuid4().hex[:12]
        await self.log.append(LegalHoldLeaf("place", hold_id, tuple(cameras), start_ms, end_ms, user, reason,
                                            int(self.clock() * 1000)))
        await self.db.execute(
            "INSERT INTO recorder_legal_holds (id, cameras, start_ms, end_ms, placed_by, placed_reason)"
            " VALUES ($1,$2,$3,$4,$5,$6)", hold_id, list(cameras), start_ms, end_ms, user, reason)
        await self.audit.record(user, "recorder.hold.place", hold_id, source=source,
                                detail={"cameras": list(cameras), "start_ms": start_ms, "end_ms": end_ms,
                                        "reason": reason})
        return hold_id

    async def lift(self, hold_id: str, user: str, reason: str, source: str = "") -> None:
        if not reason.strip():
            raise HoldError("必须填写原因 (a reason is required)")
        row = await self.db.fetchrow("SELECT cameras, start_ms, end_ms, lifted_at FROM recorder_legal_holds"
                                     " WHERE id = $1", hold_id)
        if row is None:
            raise HoldError(f"unknown hold {hold_id}")
        if row["lifted_at"] is not None:
            raise HoldError(f"hold {hold_id} is already lifted")
        await self.log.append(LegalHoldLeaf("lift", hold_id, tuple(row["cameras"]), int(row["start_ms"]),
                                            int(row["end_ms"]), user, reason, int(self.clock() * 1000)))
        await self.db.execute("UPDATE recorder_legal_holds SET lifted_by=$2, lifted_reason=$3, lifted_at=now()"
                              " WHERE id=$1", hold_id, user, reason)
        await self.audit.record(user, "recorder.hold.lift", hold_id, source=source, detail={"reason": reason})

    async def active(self) -> list[HoldRange]:
        rows = await self.db.fetch("SELECT cameras, start_ms, end_ms FROM recorder_legal_holds WHERE lifted_at IS NULL")
        return [HoldRange(tuple(r["cameras"]), int(r["start_ms"]), int(r["end_ms"])) for r in rows]

    async def list(self) -> list[Hold]:
        rows = await self.db.fetch("SELECT id, cameras, start_ms, end_ms, placed_by, placed_reason,"
                                   " lifted_at IS NOT NULL AS lifted FROM recorder_legal_holds ORDER BY placed_at")
        return [Hold(r["id"], tuple(r["cameras"]), int(r["start_ms"]), int(r["end_ms"]), r["placed_by"],
                     r["placed_reason"], r["lifted"]) for r in rows]
