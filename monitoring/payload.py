"""Readings as they arrive, over MQTT or HTTP: parsed, checked, or rejected with a reason. Pure.

**MQTT**: topic ``<prefix>/<gauge_id>/reading`` (prefix ``cc/gauges`` by default), payload a
UTF-8 JSON object::

    {"value": 21.37, "at": "2026-12-07T08:00:00Z"}     # at: ISO 8601 with a zone, or epoch seconds
    {"value": 21.37}                                   # at omitted: the time it was received

**Batches** (HTTP ``POST /api/monitoring/readings``, or MQTT topic ``<prefix>/batch``):
``{"readings": [{"gauge": "<id>", "value": ..., "at": ...}, ...]}``, at most `MAX_BATCH_ITEMS` items
and `MAX_BATCH_PAYLOAD` bytes; each item is judged like an MQTT payload (a bad item is rejected
alone); a batch that is not such an object is one rejection.

Rules (the reason names are the counters' labels):
- ``too_large``: the payload is over `MAX_PAYLOAD` bytes (checked before parsing);
- ``bad_topic``: the topic is not ``<prefix>/<gauge_id>/reading``;
- ``not_json``: not UTF-8 JSON; ``not_object``: JSON but not an object;
- ``unknown_gauge``: no gauge with that id (the id is named in the message);
- ``bad_value``: ``value`` missing, not a number (booleans and strings are not numbers), NaN or infinite;
- ``out_of_range``: outside the gauge's ``valid_range``;
- ``bad_time``: ``at`` not ISO 8601 with a zone nor finite epoch seconds; ``future_time``: more than
  `MAX_AHEAD_S` ahead of the receiver's clock; ``too_old``: more than `MAX_AGE_S` behind it.
A rejected payload changes nothing. Extra keys are ignored (devices add their own).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from monitoring.gauges import GaugeSet

MAX_PAYLOAD = 4096
MAX_BATCH_PAYLOAD = 1 << 20
MAX_BATCH_ITEMS = 5000
MAX_AHEAD_S = 300.0
MAX_AGE_S = 30 * 24 * 3600.0
DEFAULT_PREFIX = "cc/gauges"
REASONS = ("too_large", "bad_topic", "not_json", "not_object", "unknown_gauge", "bad_value", "out_of_range",
           "bad_time", "future_time", "too_old")


@dataclass(frozen=True)
class Reading:
    gauge_id: str
    value: float
    at: float  # epoch seconds


@dataclass(frozen=True)
class Rejected:
    reason: str  # one of REASONS
    detail: str


def gauge_of_topic(topic: str, prefix: str = DEFAULT_PREFIX) -> str | None:
    """The gauge id of ``<prefix>/<id>/reading``, or None."""
    head = prefix.rstrip("/") + "/"
    if not topic.startswith(head) or not topic.endswith("/reading"):
        return None
    gauge_id = topic[len(head):-len("/reading")]
    return gauge_id if gauge_id and "/" not in gauge_id and len(gauge_id) <= 64 else None


def parse_mqtt(topic: str, payload: bytes, gauges: GaugeSet, now: float,
               prefix: str = DEFAULT_PREFIX) -> Reading | Rejected:
    """One MQTT message to a reading or a rejection."""
    if len(payload) > MAX_PAYLOAD:
        return Rejected("too_large", f"payload of {len(payload)} bytes (limit {MAX_PAYLOAD})")
    gauge_id = gauge_of_topic(topic, prefix)
    if gauge_id is None:
        return Rejected("bad_topic", f"topic {topic[:100]!r} is not {prefix}/<gauge>/reading")
    try:
        data = json.loads(payload.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return Rejected("not_json", f"{gauge_id}: payload is not UTF-8 JSON")
    if not isinstance(data, dict):
        return Rejected("not_object", f"{gauge_id}: payload is not a JSON object")
    return check_item(gauge_id, data, gauges, now)


def parse_batch(payload: bytes, gauges: GaugeSet, now: float) -> list[Reading | Rejected]:
    """A batch payload to its readings and rejections (one rejection when the batch itself is bad)."""
    if len(payload) > MAX_BATCH_PAYLOAD:
        return [Rejected("too_large", f"batch of {len(payload)} bytes (limit {MAX_BATCH_PAYLOAD})")]
    try:
        data = json.loads(payload.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return [Rejected("not_json", "batch is not UTF-8 JSON")]
    return parse_batch_object(data, gauges, now)


def parse_batch_object(data: object, gauges: GaugeSet, now: float) -> list[Reading | Rejected]:
    items = data.get("readings") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return [Rejected("not_object", "batch must be an object with a 'readings' list")]
    if len(items) > MAX_BATCH_ITEMS:
        return [Rejected("too_large", f"batch of {len(items)} readings (limit {MAX_BATCH_ITEMS})")]
    return [parse_item(item, gauges, now) for item in items]


def parse_item(item: object, gauges: GaugeSet, now: float) -> Reading | Rejected:
    """One item of an HTTP batch (``{"gauge": id, "value": ..., "at": ...}``)."""
    if not isinstance(item, dict):
        return Rejected("not_object", "a reading is not a JSON object")
    gauge_id = item.get("gauge")
    if not isinstance(gauge_id, str):
        return Rejected("unknown_gauge", "reading without a 'gauge' id")
    return check_item(gauge_id, item, gauges, now)


def check_item(gauge_id: str, data: dict[str, Any], gauges: GaugeSet, now: float) -> Reading | Rejected:
    gauge = gauges.get(gauge_id)
    if gauge is None:
        return Rejected("unknown_gauge", f"unknown gauge {gauge_id[:64]!r}")
    value = data.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return Rejected("bad_value", f"{gauge_id}: 'value' must be a number")
    value = float(value) if not isinstance(value, int) or abs(value) < 2**63 else math.inf
    if not math.isfinite(value):
        return Rejected("bad_value", f"{gauge_id}: 'value' must be finite")
    lo, hi = gauge.valid_range
    if not lo <= value <= hi:
        return Rejected("out_of_range", f"{gauge_id}: value {value:g} outside [{lo:g}, {hi:g}] {gauge.unit}")
    at = _time(data.get("at"), now)
    if at is None:
        return Rejected("bad_time", f"{gauge_id}: 'at' must be ISO 8601 with a zone or epoch seconds")
    if at > now + MAX_AHEAD_S:
        return Rejected("future_time", f"{gauge_id}: 'at' is {at - now:.0f} s in the future")
    if at < now - MAX_AGE_S:
        return Rejected("too_old", f"{gauge_id}: 'at' is older than {MAX_AGE_S / 86400:.0f} days")
    return Reading(gauge_id, value, at)


def _time(raw: object, now: float) -> float | None:
    if raw is None:
        return now
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        try:
            t = float(raw)
        except OverflowError:
            return None
        return t if math.isfinite(t) else None
    if isinstance(raw, str) and len(raw) <= 40:
        try:
            parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed.timestamp() if parsed.tzinfo is not None else None
    return None


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")
