"""AVL (automatic vehicle location): batch validation and geofence arrival detection.

``validate_batch`` takes the parsed JSON of ``POST /api/avl`` (a list of objects) and splits it
into accepted fixes and per-item rejections with a reason; one bad item never sinks the batch.
Rejected: not an object, unknown unit, coordinates missing/out of range, timestamp missing,
unparseable, without a UTC offset, or more than ``max_future_s`` in the future (clock skew of a
phone is tolerated up to that), or older than ``max_age_s``. Optional speed/heading/accuracy
are range-checked. A fix older than the unit's newest known fix is accepted into the track but
marked ``latest=False`` so it does not move the unit backwards on the map.

``ArrivalDetector`` turns fixes into "arrived on scene" events: a unit that is dispatched or en
route and reports ``min_fixes`` consecutive fixes within ``radius_m`` of its incident arrives.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dispatch.model import Position, UnitStatus
from gis.geodesy import haversine_m


@dataclass(frozen=True)
class AvlFix:
    unit_id: str
    position: Position
    accuracy_m: float | None
    latest: bool  # newest fix we know for this unit (moves the unit on the map)
    index: int  # position in the batch


@dataclass(frozen=True)
class AvlRejection:
    index: int
    unit_id: str | None
    code: str  # machine-readable: malformed | unknown_unit | bad_coordinates | bad_timestamp | future_timestamp | too_old | bad_value
    reason: str  # zh-CN


@dataclass(frozen=True)
class AvlBatchResult:
    accepted: tuple[AvlFix, ...]
    rejected: tuple[AvlRejection, ...]

    def as_json(self) -> dict[str, Any]:
        """Response body for the endpoint."""
        return {
            "accepted": len(self.accepted),
            "rejected": [
                {"index": r.index, "unit_id": r.unit_id, "code": r.code, "reason": r.reason} for r in self.rejected
            ],
        }


class _Reject(Exception):
    def __init__(self, code: str, reason: str) -> None:
        self.code, self.reason = code, reason


def _num(item: Mapping[str, Any], key: str, lo: float, hi: float, required: bool, code: str) -> float | None:
    v = item.get(key)
    if v is None:
        if required:
            raise _Reject(code, f"缺少字段 {key}")
        return None
    if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
        raise _Reject(code, f"{key} 不是有效数字: {v!r}")
    if not lo <= v <= hi:
        raise _Reject(code, f"{key} 超出范围 [{lo:g}, {hi:g}]: {v}")
    return float(v)


def parse_timestamp(v: Any) -> datetime:
    """ISO 8601 with a UTC offset (``2026-11-21T08:00:00+08:00`` or ``...Z``) or Unix seconds."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        if not math.isfinite(v):
            raise _Reject("bad_timestamp", f"时间戳无效: {v!r}")
        try:
            return datetime.fromtimestamp(v, UTC)
        except (OverflowError, OSError, ValueError):
            raise _Reject("bad_timestamp", f"时间戳无效: {v!r}") from None
    if not isinstance(v, str):
        raise _Reject("bad_timestamp", f"时间戳无效: {v!r}")
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00") if v.endswith("Z") else v)
    except ValueError:
        raise _Reject("bad_timestamp", f"时间戳不是 ISO 8601: {v!r}") from None
    if t.tzinfo is None:
        raise _Reject("bad_timestamp", f"时间戳缺少时区偏移: {v!r}")
    return t


def validate_batch(
    items: Any,
    known_units: Container[str],
    now: datetime,
    last_fix_at: Mapping[str, datetime] | None = None,
    max_future_s: float = 30.0,
    max_age_s: float = 86_400.0,
) -> AvlBatchResult:
    """Split a batch into accepted fixes and per-item rejections (see module doc)."""
    if not isinstance(items, list):
        return AvlBatchResult((), (AvlRejection(-1, None, "malformed", "请求体必须是 JSON 数组"),))
    known_fix: Mapping[str, datetime] = last_fix_at if last_fix_at is not None else {}
    newest: dict[str, datetime] = {}  # newest fix time per unit, as this batch advances it
    latest_at: dict[str, int] = {}  # index in `accepted` of the unit's current latest fix
    accepted: list[AvlFix] = []
    rejected: list[AvlRejection] = []
    for i, item in enumerate(items):
        uid: str | None = None
        try:
            if not isinstance(item, dict):
                raise _Reject("malformed", "每一项必须是 JSON 对象")
            raw_uid = item.get("unit_id")
            if not isinstance(raw_uid, str) or not raw_uid:
                raise _Reject("malformed", "缺少 unit_id")
            uid = raw_uid
            if uid not in known_units:
                raise _Reject("unknown_unit", f"未知力量 {uid}")
            lon = _num(item, "lon", -180, 180, True, "bad_coordinates")
            lat = _num(item, "lat", -90, 90, True, "bad_coordinates")
            if "ts" not in item:
                raise _Reject("bad_timestamp", "缺少字段 ts")
            ts = parse_timestamp(item["ts"])
            ahead = (ts - now).total_seconds()
            if ahead > max_future_s:
                raise _Reject("future_timestamp", f"时间戳比服务器时间超前 {ahead:.0f} 秒")
            if -ahead > max_age_s:
                raise _Reject("too_old", f"时间戳过旧（{-ahead / 3600:.1f} 小时前）")
            speed = _num(item, "speed_kmh", 0, 400, False, "bad_value")
            heading = _num(item, "heading_deg", 0, 360, False, "bad_value")
            acc = _num(item, "accuracy_m", 0, 100_000, False, "bad_value")
        except _Reject as r:
            rejected.append(AvlRejection(i, uid, r.code, r.reason))
            continue
        assert lon is not None and lat is not None
        prev = newest.get(uid) or known_fix.get(uid)
        latest = prev is None or ts >= prev
        if latest:
            j = latest_at.get(uid)
            if j is not None:  # an earlier accepted fix of this batch is no longer the latest
                f = accepted[j]
                accepted[j] = AvlFix(f.unit_id, f.position, f.accuracy_m, False, f.index)
            newest[uid] = ts
            latest_at[uid] = len(accepted)
        accepted.append(AvlFix(uid, Position(lon, lat, ts, speed, heading), acc, latest, i))
    return AvlBatchResult(tuple(accepted), tuple(rejected))


@dataclass(frozen=True)
class Arrival:
    unit_id: str
    incident_id: str
    at: datetime
    distance_m: float


ARRIVAL_FROM: frozenset[UnitStatus] = frozenset({UnitStatus.DISPATCHED, UnitStatus.EN_ROUTE})


@dataclass
class ArrivalDetector:
    """Geofence around each incident: consecutive fixes inside ``radius_m`` mean arrival."""

    radius_m: float = 150.0
    min_fixes: int = 2  # one noisy fix near a scene (passing by on the expressway) is not arrival
    _inside: dict[str, int] = field(default_factory=dict)

    def observe(
        self,
        unit_id: str,
        status: UnitStatus,
        incident_id: str | None,
        fix: Position,
        incident_location: Callable[[str], tuple[float, float] | None],
    ) -> Arrival | None:
        """Feed one accepted (latest) fix; returns an Arrival once, when the unit arrives."""
        if status not in ARRIVAL_FROM or incident_id is None:
            self._inside.pop(unit_id, None)
            return None
        loc = incident_location(incident_id)
        if loc is None:
            return None
        d = haversine_m(fix.lon, fix.lat, loc[0], loc[1])
        if d > self.radius_m:
            self._inside.pop(unit_id, None)
            return None
        n = self._inside.get(unit_id, 0) + 1
        self._inside[unit_id] = n
        if n == self.min_fixes:
            return Arrival(unit_id, incident_id, fix.at, d)
        return None


def is_stale(fix: Position | None, now: datetime, stale_after_s: float = 300.0) -> bool:
    """True when a unit has no fix or its last fix is older than ``stale_after_s`` (shown as stale)."""
    return fix is None or (now - fix.at).total_seconds() > stale_after_s
