"""Emergency-call recordings once the call is over: sealed into the transparency log, kept for the
retention period, exported with proofs, and every access audited.

The trunk records each call into a WAV file (``trunk.py`` / the MCU's call room); this module
takes it from there:

* ``recording_finished``: hash the file, store the hash on the call row, append a leaf to the
  recorder's transparency log (``CallRecordingLog``, when a recorder runs in this process);
* ``seal_pending_recordings``: at start, seal files a stopped process left unsealed;
* ``apply_recording_retention``: delete recordings older than
  ``emergency.recording_retention_days`` (the leaf stays; a retention leaf records the deletion);
* ``recording_for`` / ``export_recording``: an inspector listens or exports a bundle (WAV +
  inclusion proof + signed tree head); each access is audited, refusals too.

Calls still in progress (``live``) are never sealed or deleted.
"""
from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Callable, Container
from datetime import datetime, timedelta
from pathlib import Path

from core.audit import AuditLog
from core.db import Database

from .errors import DeskError
from .recordings import CallRecordingLog, digest_file

log = logging.getLogger(__name__)


class CallRecordings:
    """The desk's recordings: sealing, retention, listening and export (see the module docstring)."""

    def __init__(self, db: Database, audit: AuditLog, *, clock: Callable[[], datetime], live: Container[str],
                 retention_days: float | None, retention_interval_s: float) -> None:
        self.db = db
        self.audit = audit
        self.clock = clock
        self.live = live
        self.retention_days = retention_days
        self.retention_interval_s = retention_interval_s
        self.recording_log: CallRecordingLog | None = None  # the recorder's log, when one runs in this process

    async def recording_for(self, call_id: str, actor: str, source: str = "") -> Path:
        """The call's audio recording; every access is audited."""
        path = await self.db.fetchval(
            "SELECT recording_path FROM emergency_calls WHERE id = $1 AND recording_deleted_at IS NULL", call_id)
        if not path or not await asyncio.to_thread(Path(path).is_file):
            await self.audit.record(actor, "call.recording_view", call_id, outcome="failed", source=source)
            raise DeskError(f"呼叫 {call_id} 没有录音")
        await self.audit.record(actor, "call.recording_view", call_id, source=source)
        return Path(path)

    async def recording_finished(self, sip_key: str, path: Path, started: datetime, ended: datetime) -> int | None:
        """The trunk closed a call's recording: store its SHA-256 and append it to the transparency log
        (``trunk.EmergencyDesk``). Returns the leaf index (None: no log in this process)."""
        digest = await asyncio.to_thread(digest_file, path)
        call_id = ""
        for _ in range(50):  # the call row is written by call_arrived, which may still be running
            call_id = await self.db.fetchval("SELECT id FROM emergency_calls WHERE recording_path = $1", str(path)) or ""
            if call_id:
                break
            await asyncio.sleep(0.1)
        if call_id:
            await self.db.execute("UPDATE emergency_calls SET recording_sha256 = $2, recording_size = $3 WHERE id = $1",
                                  call_id, digest.sha256, digest.size)
        if self.recording_log is None:
            log.warning("call recording %s not in the transparency log: no recorder runs in this process", path.name)
            return None
        index = await self.recording_log.append_call_recording(
            call_id, path.name, digest.sha256, digest.size, int(started.timestamp() * 1000),
            int(ended.timestamp() * 1000))
        if call_id:
            await self.db.execute(
                "UPDATE emergency_calls SET recording_log_id = $2, recording_leaf = $3 WHERE id = $1",
                call_id, self.recording_log.log_id, index)
        return index

    async def seal_at_start(self, before: datetime) -> None:
        try:
            await self.seal_pending_recordings(before)
        except Exception:  # noqa: BLE001
            log.exception("sealing left-over call recordings failed")

    async def seal_pending_recordings(self, before: datetime) -> list[str]:
        """Seal recordings of calls offered before ``before`` that never reached the log (the process
        stopped mid-call or before sealing): hash what is on disk and append their leaves."""
        if self.recording_log is None:
            return []
        rows = await self.db.fetch(
            "SELECT id, recording_path, offered_at, ended_at FROM emergency_calls WHERE recording_path <> '' "
            "AND recording_leaf IS NULL AND recording_deleted_at IS NULL AND offered_at < $1 ORDER BY offered_at",
            before)
        sealed: list[str] = []
        for row in rows:
            path = Path(row["recording_path"])
            if row["id"] in self.live or not await asyncio.to_thread(path.is_file):
                continue
            try:
                digest = await asyncio.to_thread(digest_file, path)
                index = await self.recording_log.append_call_recording(
                    row["id"], path.name, digest.sha256, digest.size, int(row["offered_at"].timestamp() * 1000),
                    int((row["ended_at"] or row["offered_at"]).timestamp() * 1000))
                await self.db.execute(
                    "UPDATE emergency_calls SET recording_sha256 = $2, recording_size = $3, recording_log_id = $4, "
                    "recording_leaf = $5 WHERE id = $1", row["id"], digest.sha256, digest.size,
                    self.recording_log.log_id, index)
                sealed.append(row["id"])
            except Exception:  # noqa: BLE001 - one unreadable file must not stop the others
                log.exception("sealing the recording of call %s failed", row["id"])
        if sealed:
            log.info("sealed %d call recording(s) left unsealed by an earlier run", len(sealed))
        return sealed

    async def retention_loop(self) -> None:
        while True:
            try:
                await self.apply_recording_retention()
            except Exception:  # noqa: BLE001 - retry on the next round
                log.exception("call-recording retention failed")
            await asyncio.sleep(self.retention_interval_s)

    async def apply_recording_retention(self, now: datetime | None = None) -> list[str]:
        """Delete recordings of calls that ended more than ``recording_retention_days`` ago.

        Each deletion is audited; the log leaf stays (it proves the recording existed, with its hash)
        and a retention leaf records the deletion. Returns the call ids whose recordings were deleted."""
        days = self.retention_days
        if days is None:
            return []
        now = now or self.clock()
        cutoff = now - timedelta(days=days)
        rows = await self.db.fetch(
            "SELECT id, recording_path, recording_sha256, recording_leaf FROM emergency_calls "
            "WHERE recording_path <> '' AND recording_deleted_at IS NULL "
            "AND COALESCE(ended_at, offered_at) < $1 ORDER BY offered_at", cutoff)
        deleted: list[str] = []
        leaves: list[int] = []
        for row in rows:
            if row["id"] in self.live:
                continue
            path = Path(row["recording_path"])
            try:
                await asyncio.to_thread(path.unlink, True)
            except OSError as exc:
                await self.audit.record("retention", "call.recording_delete", row["id"], outcome="failed",
                                             detail={"file": path.name, "error": str(exc)})
                continue
            await self.db.execute("UPDATE emergency_calls SET recording_deleted_at = $2 WHERE id = $1", row["id"], now)
            await self.audit.record(
                "retention", "call.recording_delete", row["id"],
                detail={"file": path.name, "sha256": row["recording_sha256"], "leaf": row["recording_leaf"],
                        "retention_days": days})
            deleted.append(row["id"])
            if row["recording_leaf"] is not None:
                leaves.append(int(row["recording_leaf"]))
        if deleted and self.recording_log is not None:
            await self.recording_log.append_call_retention(tuple(deleted), tuple(leaves),
                                                           f"emergency.recording_retention_days={days:g}")
        return deleted

    async def export_recording(self, call_id: str, actor: str, reason: str, source: str = "") -> Path:
        """A zip bundle (WAV + inclusion proof + signed tree head) in a temporary directory; audited.
        The caller deletes the file when sent."""
        reason = reason.strip()
        row = await self.db.fetchrow(
            "SELECT recording_path, recording_leaf, recording_deleted_at FROM emergency_calls WHERE id = $1", call_id)

        async def refuse(message: str) -> DeskError:
            await self.audit.record(actor, "call.recording_export", call_id, outcome="failed", source=source,
                                         detail={"reason": reason, "error": message})
            return DeskError(message)

        if not reason:
            raise await refuse("导出必须填写原因 (a reason is required)")
        if row is None or not row["recording_path"]:
            raise await refuse(f"呼叫 {call_id} 没有录音")
        if row["recording_deleted_at"] is not None:
            raise await refuse(f"呼叫 {call_id} 的录音已按保存期限删除")
        if self.recording_log is None or row["recording_leaf"] is None:
            raise await refuse(f"呼叫 {call_id} 的录音尚未记入透明日志，无法导出证明")
        tmp = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="call-export-"))
        dest = tmp / f"{call_id}.zip"
        try:
            await self.recording_log.export_call_recording(
                Path(row["recording_path"]), int(row["recording_leaf"]), dest, call_id=call_id, user=actor,
                reason=reason)
        except (OSError, ValueError) as exc:
            await asyncio.to_thread(_remove_tree, tmp)
            raise await refuse(f"导出失败: {exc}") from None
        await self.audit.record(actor, "call.recording_export", call_id, source=source,
                                     detail={"reason": reason, "leaf": row["recording_leaf"]})
        return dest


def _remove_tree(path: Path) -> None:
    for child in path.iterdir():
        child.unlink(missing_ok=True)
    os.rmdir(path)
