"""Retention: per-camera and per-hall limits in days and/or bytes, oldest first, legal holds exempt.

Which limits apply to a camera (halls → cameras from the site plan, `camera_hall`):
  * a camera with its own policy (`per_camera`) keeps its days and per-camera bytes;
  * otherwise, a camera in a hall with a policy (`per_hall`) takes the hall's days and no
    per-camera byte limit (the hall's policy replaces the default for its cameras);
  * otherwise the default policy (days, bytes per camera);
  * a hall's `max_bytes` is a budget for the total of all its cameras (own policy or not),
    enforced oldest first across the hall.

Planning is a pure function (`plan_retention`); `apply_retention` does the I/O in an
order that is safe to interrupt: the `RetentionLeaf` (intent) is logged first, then the
bytes are deleted, then the index rows are marked. Leaves are never deleted, so every
hole left by retention is explained in the log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from recorder.index import IndexedSegment, SegmentIndex
from recorder.leaves import RetentionLeaf
from recorder.store import SegmentStore
from recorder.transparency_log import TransparencyLog

DAY_MS = 86_400_000


@dataclass(frozen=True)
class RetentionPolicy:
    """Keep at most `max_days` of age and/or `max_bytes` per camera (None: no limit)."""

    max_days: float | None = 30.0
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.max_days is not None and self.max_days <= 0:
            raise ValueError("max_days must be positive")
        if self.max_bytes is not None and self.max_bytes < 0:
            raise ValueError("max_bytes must not be negative")


@dataclass(frozen=True)
class RetentionConfig:
    default: RetentionPolicy = RetentionPolicy()
    per_camera: dict[str, RetentionPolicy] = field(default_factory=dict)
    min_free_bytes: int = 1 << 30  # below this much free space, delete oldest footage of any camera
    per_hall: dict[str, RetentionPolicy] = field(default_factory=dict)  # max_bytes = the hall's total
    camera_hall: dict[str, str] = field(default_factory=dict)  # camera id → hall id, from the site plan

    def policy(self, camera: str) -> RetentionPolicy:
        """The days and per-camera bytes limit of `camera` (see the module docstring)."""
        if camera in self.per_camera:
            return self.per_camera[camera]
        hall = self.per_hall.get(self.camera_hall.get(camera, ""))
        if hall is not None:
            return RetentionPolicy(max_days=hall.max_days, max_bytes=None)
        return self.default

    def hall_cameras(self) -> dict[str, set[str]]:
        """Hall id → its cameras, for halls with a policy."""
        out: dict[str, set[str]] = {h: set() for h in self.per_hall}
        for camera, hall in self.camera_hall.items():
            if hall in out:
                out[hall].add(camera)
        return out


@dataclass(frozen=True)
class HoldRange:
    """An active legal hold: segments of these cameras overlapping [start_ms, end_ms) are exempt."""

    cameras: tuple[str, ...]
    start_ms: int
    end_ms: int

    def covers(self, seg: IndexedSegment) -> bool:
        return seg.camera in self.cameras and seg.start_ms < self.end_ms and seg.end_ms > self.start_ms


@dataclass
class RetentionPlan:
    delete: list[tuple[IndexedSegment, str]] = field(default_factory=list)  # (segment, policy that chose it)
    insufficient: bool = False  # disk still below min_free_bytes after deleting everything allowed
    freed_bytes: int = 0


def plan_retention(
    segments: Sequence[IndexedSegment],
    holds: Sequence[HoldRange],
    config: RetentionConfig,
    now_ms: int,
    free_bytes: int,
) -> RetentionPlan:
    """Choose what to delete: age and size limits per camera, then free space, oldest first."""
    plan = RetentionPlan()
    chosen: set[int] = set()
    live = sorted((s for s in segments if not s.deleted), key=lambda s: (s.start_ms, s.id))
    deletable = [s for s in live if not any(h.covers(s) for h in holds)]

    def take(seg: IndexedSegment, why: str) -> None:
        chosen.add(seg.id)
        plan.delete.append((seg, why))
        plan.freed_bytes += seg.size

    by_camera: dict[str, list[IndexedSegment]] = {}
    for s in live:
        by_camera.setdefault(s.camera, []).append(s)
    for camera, segs in by_camera.items():
        policy = config.policy(camera)
        if policy.max_days is not None:
            cutoff = now_ms - int(policy.max_days * DAY_MS)
            for s in deletable:
                if s.camera == camera and s.end_ms <= cutoff and s.id not in chosen:
                    take(s, f"max_days={policy.max_days:g}")
        if policy.max_bytes is not None:
            total = sum(s.size for s in segs if s.id not in chosen)
            for s in deletable:
                if total <= policy.max_bytes:
                    break
                if s.camera == camera and s.id not in chosen:
                    take(s, f"max_bytes={policy.max_bytes}")
                    total -= s.size
    for hall, cameras in config.hall_cameras().items():
        budget = config.per_hall[hall].max_bytes
        if budget is None:
            continue
        total = sum(s.size for s in live if s.camera in cameras and s.id not in chosen)
        for s in deletable:
            if total <= budget:
                break
            if s.camera in cameras and s.id not in chosen:
                take(s, f"hall {hall} max_bytes={budget}")
                total -= s.size
    deficit = config.min_free_bytes - (free_bytes + plan.freed_bytes)
    for s in deletable:
        if deficit <= 0:
            break
        if s.id not in chosen:
            take(s, f"min_free_bytes={config.min_free_bytes}")
            deficit -= s.size
    plan.insufficient = deficit > 0
    return plan


async def apply_retention(
    plan: RetentionPlan,
    log: TransparencyLog,
    store: SegmentStore,
    index: SegmentIndex,
    actor: str = "retention",
    clock: Callable[[], float] = time.time,
) -> int:
    """Carry out a plan; returns the number of segments deleted."""
    by_camera: dict[tuple[str, str], list[IndexedSegment]] = {}
    for seg, why in plan.delete:
        by_camera.setdefault((seg.camera, why), []).append(seg)
    for (camera, why), segs in by_camera.items():
        await log.append(RetentionLeaf(camera, tuple(s.leaf_index for s in segs), why, int(clock() * 1000)))
        for s in segs:
            await asyncio.to_thread(store.delete, s.store_key)
        await index.mark_deleted([s.id for s in segs], actor)
    return len(plan.delete)
