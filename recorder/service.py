"""The recorder role: cameras → segments → log + index, heads, retention, views, exports.

`RecorderService` is what `commandcenter up` (role recorder/all) starts and what the web
console calls for search, playback, bookmarks, holds and exports. Cameras can be added,
changed or removed while it runs. Start-up recovers from an unclean stop:
  * staging files (segments open at the crash) are discarded: at most one per camera;
  * committed files that never reached the index (crash between rename and insert) are
    indexed, reusing their log leaf when it was already appended;
  * the log is checked against its last signed head (rewritten rows stop start-up).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

from core.audit import AuditLog
from core.db import Database
from core.tasks import cancel_and_wait
from recorder.export import ExportResult, ExportSegment, export_bundle
from recorder.holds import LegalHolds
from recorder.index import CONTIGUOUS_MS, IndexedSegment, SegmentIndex
from recorder.ingest import CameraConfig, CameraHealth, CameraWorker, CommittedSegment, Gap, sha256_file
from recorder.leaves import AccessLeaf, ContentLeaf, GapLeaf, SegmentLeaf
from recorder.pg_storage import PgLogStorage
from recorder.retention import RetentionConfig, apply_retention, plan_retention
from recorder.s3_store import S3Config, S3Store
from recorder.segmenter import TARGET_SEGMENT_S, CutPolicy, codecs_string
from recorder.signing import KeyStore, public_key_pem
from recorder.store import DirectoryStore, check_camera_id, parse_key
from recorder.transparency_log import TransparencyLog
from recorder.watermark import make_viewing_copy

log = logging.getLogger(__name__)


class AccessError(ValueError):
    """A view/export request without a reason or with a bad range: nothing is logged or shown."""


@dataclass(frozen=True)
class RecorderConfig:
    """Settings of one recorder node (the lead maps these from `Settings.recorder`)."""

    recordings_dir: Path = Path("var/recordings")
    keys_dir: Path = Path("var/keys")
    recorder_id: str = "recorder-1"
    log_id: str = "recorder"
    segment_seconds: float = TARGET_SEGMENT_S
    head_interval_s: float = 120.0
    retention_interval_s: float = 60.0
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    s3: S3Config | None = None  # None: segments in the directory tree `recordings_dir`


def make_store(config: RecorderConfig) -> DirectoryStore | S3Store:
    """The configured segment store; S3StoreError (before anything is written) if S3 is not usable."""
    if config.s3 is None:
        return DirectoryStore(config.recordings_dir)
    return S3Store(config.s3, config.recordings_dir)  # local staging and read cache under recordings_dir


@dataclass
class RecoveryReport:
    staging_discarded: int = 0
    reindexed: int = 0
    relogged: int = 0


class RecorderService:
    def __init__(self, db: Database, config: RecorderConfig, audit: AuditLog | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.audit = audit or AuditLog(db)
        self.store = make_store(config)
        self.keys = KeyStore(config.keys_dir)
        self.log = TransparencyLog(PgLogStorage(db), self.keys, config.log_id, clock)
        self.index = SegmentIndex(db)
        self.holds = LegalHolds(db, self.log, self.audit, clock)
        self.workers: dict[str, CameraWorker] = {}
        self.cameras: dict[str, CameraConfig] = {}
        self.recording_paused = False  # set when retention cannot free enough disk
        self.alarms: list[str] = []
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._last_end: dict[str, int | None] = {}
        self._gap_cause: dict[str, str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.recovery = RecoveryReport()

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self, cameras: Sequence[CameraConfig] = ()) -> None:
        self._loop = asyncio.get_running_loop()
        await self.log.open()
        self.recovery = await self.recover()
        if self.log.latest_head is None or self.log.latest_head.tree_size != self.log.size:
            await self.log.sign_head()
        self._tasks = [
            asyncio.create_task(self._consume(), name="recorder-consume"),
            asyncio.create_task(self.log.run_head_signer(self.config.head_interval_s), name="recorder-heads"),
            asyncio.create_task(self._retention_loop(), name="recorder-retention"),
        ]
        for cam in cameras:
            await self.add_camera(cam)

    async def stop(self) -> None:
        """Stop every camera (their open segments are committed), drain, sign a final head."""
        workers = list(self.workers.values())
        self.workers.clear()
        await asyncio.gather(*(asyncio.to_thread(w.stop) for w in workers))
        await self._queue.join()
        await cancel_and_wait(self._tasks)
        self._tasks = []
        if self.log.latest_head is None or self.log.latest_head.tree_size != self.log.size:
            await self.log.sign_head()

    # ---- cameras (run-time changes) ----------------------------------------------------------

    async def add_camera(self, cam: CameraConfig) -> None:
        if cam.camera_id in self.workers:
            raise ValueError(f"camera {cam.camera_id} is already recording")
        if cam.camera_id not in self._last_end:
            self._last_end[cam.camera_id] = await self.index.last_end_ms(cam.camera_id)
        loop = self._loop or asyncio.get_running_loop()
        worker = CameraWorker(
            cam, self.store,
            on_segment=lambda seg: loop.call_soon_threadsafe(self._queue.put_nowait, ("segment", seg)),
            on_gap=lambda gap: loop.call_soon_threadsafe(self._queue.put_nowait, ("gap", gap)),
            policy=CutPolicy(self.config.segment_seconds), clock=self.clock,
        )
        self.cameras[cam.camera_id] = cam
        self.workers[cam.camera_id] = worker
        worker.start()

    async def remove_camera(self, camera_id: str) -> None:
        worker = self.workers.pop(camera_id, None)
        self.cameras.pop(camera_id, None)
        if worker is not None:
            await asyncio.to_thread(worker.stop)
            self._gap_cause[camera_id] = "camera removed from recording"

    async def update_camera(self, cam: CameraConfig) -> None:
        await self.remove_camera(cam.camera_id)
        self._gap_cause[cam.camera_id] = "camera settings changed"
        await self.add_camera(cam)

    # ---- other segment producers (conference recordings) ----------------------------------------

    @property
    def running(self) -> bool:
        """Started and not stopped: segments handed in are logged and indexed."""
        return bool(self._tasks)

    async def attach_source(self, camera_id: str, gap_cause: str) -> Callable[[CommittedSegment], None]:
        """Take segments from a producer other than a camera worker (e.g. a conference recording).

        Returns a thread-safe callback: each segment given to it is logged (segment leaf) and
        indexed exactly like a camera's. `gap_cause` explains the time since the source's last
        indexed segment, if there is a gap (e.g. "recording stopped"). Raises ValueError for a
        bad id, an id a camera records under, or a service that is not running.
        """
        check_camera_id(camera_id)
        if camera_id in self.workers:
            raise ValueError(f"{camera_id} is a camera recording here")
        if not self.running or self._loop is None:
            raise ValueError("recorder is not running")
        if camera_id not in self._last_end:
            self._last_end[camera_id] = await self.index.last_end_ms(camera_id)
        self._gap_cause[camera_id] = gap_cause
        loop = self._loop

        def on_segment(seg: CommittedSegment) -> None:
            loop.call_soon_threadsafe(self._queue.put_nowait, ("segment", seg))
        return on_segment

    async def drain(self) -> None:
        """Wait until every segment handed in so far is logged and indexed."""
        await self._queue.join()

    def health(self) -> dict[str, CameraHealth]:
        return {cid: w.health.snapshot() for cid, w in self.workers.items()}

    # ---- segments and gaps from the camera threads --------------------------------------------

    async def _consume(self) -> None:
        while True:
            kind, item = await self._queue.get()
            try:
                if kind == "segment":
                    await self._record_segment(item)
                elif kind == "gap":
                    self._gap_cause[item.camera] = item.cause
            except Exception:
                log.exception("recorder: could not record %s %r", kind, item)
            finally:
                self._queue.task_done()

    async def _record_segment(self, seg: CommittedSegment) -> None:
        last = self._last_end.get(seg.camera)
        if last is not None and seg.start_ms - last > CONTIGUOUS_MS:
            cause = self._gap_cause.pop(seg.camera, "") or "recorder not running"
            await self._record_gap(Gap(seg.camera, last, seg.start_ms, cause))
        leaf = SegmentLeaf(seg.camera, seg.start_ms, seg.end_ms, seg.sha256, seg.size,
                           self.config.recorder_id, seg.key)
        index = await self.log.append(leaf)
        await self.index.add_segment(seg, self.log.log_id, index, self.config.recorder_id)
        for start_ms, end_ms in seg.content_spans:  # the conference's content stream in this segment
            await self.log.append(ContentLeaf(seg.camera, start_ms, end_ms, seg.key, seg.content_codec,
                                              self.config.recorder_id))
        self._last_end[seg.camera] = max(seg.end_ms, last or 0)

    async def _record_gap(self, gap: Gap) -> None:
        index = await self.log.append(GapLeaf(gap.camera, gap.start_ms, gap.end_ms, gap.cause,
                                              self.config.recorder_id))
        await self.index.add_gap(gap.camera, gap.start_ms, gap.end_ms, gap.cause, self.log.log_id, index)

    # ---- crash recovery -------------------------------------------------------------------------

    async def recover(self) -> RecoveryReport:
        report = RecoveryReport()
        report.staging_discarded = len(await asyncio.to_thread(self.store.discard_staging))
        for key in await asyncio.to_thread(self._recent_keys):
            if await self.index.has_key(key):
                continue
            parsed = parse_key(key)
            leaf_row = await self.db.fetchrow(
                "SELECT idx, body FROM recorder_log_leaves WHERE log_id=$1 AND kind='segment' AND body->>'key'=$2",
                self.log.log_id, key)
            path = self.store.local_path(key)
            assert path is not None
            probe = await asyncio.to_thread(_probe, path)
            if leaf_row is not None:
                body = leaf_row["body"]
                index, digest, size = int(leaf_row["idx"]), str(body["sha256"]), int(body["size"])
            else:
                digest, size = await asyncio.to_thread(sha256_file, path), path.stat().st_size
                index = await self.log.append(SegmentLeaf(parsed.camera, parsed.start_ms, parsed.end_ms, digest,
                                                          size, self.config.recorder_id, key))
                report.relogged += 1
            seg = CommittedSegment(parsed.camera, key, parsed.start_ms, parsed.end_ms, size, digest,
                                   probe[0], probe[1], probe[2], probe[3], 0)
            await self.index.add_segment(seg, self.log.log_id, index, self.config.recorder_id)
            report.reindexed += 1
        if report.staging_discarded or report.reindexed:
            log.warning("recorder recovery: %s", report)
        return report

    def _recent_keys(self) -> list[str]:
        """Keys of the newest two days per camera: where a crash can leave unindexed files."""
        if isinstance(self.store, S3Store):
            return self.store.recent_keys(days=2)
        keys: list[str] = []
        root = self.store.root
        for cam_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for day_dir in sorted(p for p in cam_dir.iterdir() if p.is_dir())[-2:]:
                keys.extend(self.store.keys(f"{cam_dir.name}/{day_dir.name}/"))
        return keys

    # ---- inspectors: views, exports, store audit --------------------------------------------------

    async def record_view(self, user: str, cameras: Sequence[str], start_ms: int, end_ms: int, reason: str,
                          source: str = "") -> int:
        """Log a playback request (leaf + audit entry) before any footage is served; returns the leaf index."""
        if not reason.strip():
            raise AccessError("查看录像必须填写原因 (a reason is required)")
        if end_ms <= start_ms or not cameras:
            raise AccessError("cameras and a range with end after start are required")
        index = await self.log.append(AccessLeaf("view", user, tuple(cameras), start_ms, end_ms, reason,
                                                 int(self.clock() * 1000)))
        await self.audit.record(user, "recorder.view", ",".join(cameras), source=source,
                                detail={"start_ms": start_ms, "end_ms": end_ms, "reason": reason, "leaf": index})
        return index

    async def playback(self, user: str, cameras: Sequence[str], start_ms: int, end_ms: int, reason: str,
                       source: str = "") -> dict[str, list[dict[str, Any]]]:
        """Log the view, then return per camera the segments a Media Source Extensions player appends.

        Each segment file starts at media time 0; the player sets
        `sourceBuffer.timestampOffset = (start_ms - range_start_ms) / 1000` before appending it, so
        every camera shares one wall-clock timeline (synchronised playback, gaps stay empty).
        Raises AccessError without a reason, index.NoRecording (with nearest spans) when empty.
        """
        if not reason.strip():
            raise AccessError("查看录像必须填写原因 (a reason is required)")
        segs = await self.index.require_segments(cameras, start_ms, end_ms)
        await self.record_view(user, cameras, start_ms, end_ms, reason, source)
        plan: dict[str, list[dict[str, Any]]] = {c: [] for c in cameras}
        for seg in segs:
            plan[seg.camera].append({"key": seg.store_key, "start_ms": seg.start_ms, "end_ms": seg.end_ms,
                                     "codecs": seg.codec, "width": seg.width, "height": seg.height,
                                     "size": seg.size})
        return plan

    async def viewed_segment(self, user: str, key: str, max_age_s: float = 8 * 3600) -> IndexedSegment | None:
        """The live segment `key` if a view leaf of `user` (logged within `max_age_s`) covers it, else None.

        The web console serves segment bytes only through this check: footage reaches a user only
        after `playback()` logged that user's view of that camera and range.
        """
        seg = await self.index.segment_by_key(key)
        if seg is None or seg.deleted:
            return None
        since_ms = int((self.clock() - max_age_s) * 1000)
        covered = await self.db.fetchval(
            "SELECT EXISTS (SELECT 1 FROM recorder_log_leaves WHERE kind = 'access' AND log_id = $1"
            " AND body->>'user' = $2 AND (body->>'time_ms')::bigint >= $3 AND body->>'action' = 'view'"
            " AND body->'cameras' ? $4 AND (body->>'start_ms')::bigint < $6 AND (body->>'end_ms')::bigint > $5)",
            self.log.log_id, user, since_ms, seg.camera, seg.start_ms, seg.end_ms)
        return seg if covered else None

    async def viewing_copy(self, user: str, camera: str, start_ms: int, end_ms: int, reason: str, dest: Path,
                           source: str = "") -> int:
        """A re-encoded copy with user, time and reason burned in (the evidence copy stays untouched)."""
        segs = await self.index.require_segments([camera], start_ms, end_ms)
        leaf = await self.record_view(user, [camera], start_ms, end_ms, reason, source)
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.clock()))
        caption = f"{user} {stamp} 查看原因: {reason} (日志#{leaf}) 仅供查看，非证据副本"
        paths = [p for p in (self.store.local_path(s.store_key) for s in segs) if p is not None]
        return await asyncio.to_thread(make_viewing_copy, paths, dest, caption)

    async def export(self, user: str, cameras: Sequence[str], start_ms: int, end_ms: int, reason: str,
                     dest: Path, as_zip: bool = False, source: str = "") -> ExportResult:
        """Export a range (raises index.NoRecording with the nearest spans when nothing is there)."""
        if not reason.strip():
            raise AccessError("导出必须填写原因 (a reason is required)")
        segs = await self.index.require_segments(cameras, start_ms, end_ms)
        explained = [g.leaf_index for g in await self.index.gaps(cameras, start_ms, end_ms)]
        deleted = await self.index.segments(cameras, start_ms, end_ms, include_deleted=True)
        for seg in (s for s in deleted if s.deleted):
            idx = await self.db.fetchval(
                "SELECT idx FROM recorder_log_leaves WHERE log_id=$1 AND kind='retention'"
                " AND body->'segment_leaves' @> to_jsonb($2::bigint) ORDER BY idx LIMIT 1",
                self.log.log_id, seg.leaf_index)
            if idx is not None:
                explained.append(int(idx))
        await self.log.refresh()
        result = await export_bundle(
            self.log, self.store, dest, user=user, reason=reason, cameras=cameras, start_ms=start_ms,
            end_ms=end_ms, segments=[ExportSegment(s.leaf_index, s.store_key) for s in segs],
            explained_leaves=explained, as_zip=as_zip, clock=self.clock)
        await self.audit.record(user, "recorder.export", ",".join(cameras), source=source,
                                detail={"start_ms": start_ms, "end_ms": end_ms, "reason": reason,
                                        "segments": result.segments, "leaf": result.export_leaf_index})
        return result

    async def head_for_inspector(self, kept_size: int | None = None) -> dict[str, Any]:
        """The latest signed head and public key, plus a consistency proof from a head the inspector kept."""
        await self.log.refresh()
        head = self.log.latest_head or await self.log.sign_head()
        out: dict[str, Any] = {"tree_head": head.to_dict(),
                               "public_key": public_key_pem(self.log.public_key(head.key_id)).decode()}
        if kept_size is not None:
            out["consistency_proof"] = [p.hex() for p in self.log.consistency_proof(kept_size, head.tree_size)]
        return out

    async def audit_store(self, check_hashes: bool = True) -> list[str]:
        """Compare the live index with the store: missing or changed segment files, by key."""
        problems: list[str] = []
        for seg in await self.index.all_live_segments():
            path = self.store.local_path(seg.store_key)
            if path is None or not await asyncio.to_thread(path.is_file):
                problems.append(f"missing: {seg.store_key}")
            elif check_hashes and await asyncio.to_thread(sha256_file, path) != seg.sha256:
                problems.append(f"changed: {seg.store_key}")
        return problems

    # ---- retention ---------------------------------------------------------------------------------

    async def run_retention(self) -> int:
        plan = plan_retention(await self.index.all_live_segments(), await self.holds.active(),
                              self.config.retention, int(self.clock() * 1000),
                              await asyncio.to_thread(self.store.free_bytes))
        deleted = await apply_retention(plan, self.log, self.store, self.index, clock=self.clock)
        if plan.insufficient and not self.recording_paused:
            self.recording_paused = True
            self.alarms.append("磁盘空间不足：保留策略无法释放足够空间，录像已暂停")
            log.error("recorder: disk full even after retention; recording paused")
            for worker in self.workers.values():
                worker.pause()
        elif not plan.insufficient and self.recording_paused:
            self.recording_paused = False
            for worker in self.workers.values():
                worker.resume()
        return deleted

    async def _retention_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.retention_interval_s)
            try:
                await self.run_retention()
            except Exception:
                log.exception("recorder: retention failed")


def _probe(path: Path) -> tuple[str, int, int, bool]:
    """(codecs string, width, height, has audio) of a committed segment file."""
    try:
        with av.open(str(path)) as c:
            video = c.streams.video[0]
            audio = c.streams.audio[0] if c.streams.audio else None
            return codecs_string(video, audio), int(video.codec_context.width or 0), \
                int(video.codec_context.height or 0), audio is not None
    except (av.FFmpegError, IndexError):
        return "", 0, 0, False
