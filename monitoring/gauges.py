"""Gauges as the site plan configures them: ``[[gauges]]`` tables, validated with the field named.

A gauge measures one numeric quantity at one place (river or reservoir level, rainfall, wind, any
sensor). Each has a unit, a reporting period, the range of plausible values (a reading outside it is
rejected, never stored) and thresholds::

    [[gauges]]
    id = "gauge-xijiang-ducheng"            # [a-z0-9-], used in MQTT topics
    name = "西江都城水文站"
    name_en = "Xijiang Ducheng hydrological station"
    kind = "river_level"                    # river_level | reservoir_level | rainfall | wind | sensor
    unit = "m"
    county = "445322"
    position = [111.53292, 23.23971]
    position_quality = "made-up"
    period_s = 60                           # expected reporting period
    stale_periods = 5                       # fault when no reading for 5 periods
    stuck_after_s = 3600                    # fault when the value has not changed for an hour (0: never)
    valid_range = [0.0, 60.0]
      [[gauges.thresholds]]
      key = "warning"                       # unique per gauge
      name = "警戒水位"
      name_en = "warning level"
      value = 21.0
      hysteresis = 0.1                      # cleared below 20.9
      direction = "rising"                  # rising (level ≥ value) | falling (level ≤ value)
      window_s = 0                          # > 0: the threshold is on the sum over that window (rain 1 h/3 h/24 h)
      severity = "warning"                  # warning | critical
      action = "incident"                   # none | incident | propose_plan
      plan = "flood"                        # propose_plan: the plan key and level proposed
      level = "IV"

The site plan keeps these tables raw (``SitePlan.gauges``); `load_gauges` validates them here, where
the concept lives, and names the file, the line and the field of any problem.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from config.errors import ConfigError, describe_validation_error
from config.site_plan import SitePlan

GaugeKind = Literal["river_level", "reservoir_level", "rainfall", "wind", "sensor"]
GAUGE_ID = r"^[a-z0-9][a-z0-9-]{0,63}$"
MAX_WINDOW_S = 7 * 24 * 3600


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Threshold(_Item):
    key: str = Field(pattern=r"^[a-z0-9_]{1,32}$")
    name: str = Field(min_length=1, max_length=64)
    name_en: str = ""
    value: float
    hysteresis: float = Field(0.0, ge=0.0)
    direction: Literal["rising", "falling"] = "rising"
    window_s: int = Field(0, ge=0, le=MAX_WINDOW_S, description="> 0: on the sum over that window")
    severity: Literal["warning", "critical"] = "warning"
    action: Literal["none", "incident", "propose_plan"] = "none"
    plan: str = ""
    level: Literal["I", "II", "III", "IV"] = "IV"

    @model_validator(mode="after")
    def _plan_named(self) -> Threshold:
        if self.action == "propose_plan" and not self.plan:
            raise ValueError("action 'propose_plan' needs 'plan' (a response plan key)")
        return self


class Gauge(_Item):
    id: str = Field(pattern=GAUGE_ID)
    name: str = Field(min_length=1, max_length=64)
    name_en: str = ""
    kind: GaugeKind
    unit: str = Field(min_length=1, max_length=16)
    county: str = ""
    position: tuple[float, float]
    position_quality: Literal["surveyed", "approximate", "made-up"]
    period_s: int = Field(60, ge=1, le=86400)
    stale_periods: int = Field(5, ge=1, le=1000)
    stuck_after_s: int = Field(0, ge=0, le=MAX_WINDOW_S)
    valid_range: tuple[float, float]
    thresholds: list[Threshold] = Field(default_factory=list)

    @field_validator("position")
    @classmethod
    def _wgs84(cls, v: tuple[float, float]) -> tuple[float, float]:
        lon, lat = v
        if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
            raise ValueError(f"position {list(v)} is not [longitude, latitude] in WGS 84")
        return v

    @field_validator("valid_range")
    @classmethod
    def _range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not v[0] < v[1]:
            raise ValueError(f"valid_range {list(v)} must be [min, max] with min < max")
        return v

    @model_validator(mode="after")
    def _thresholds(self) -> Gauge:
        keys = [t.key for t in self.thresholds]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"threshold key {dup[0]!r} appears twice")
        lo, hi = self.valid_range
        for t in self.thresholds:
            if t.window_s == 0 and not lo <= t.value <= hi:
                raise ValueError(f"threshold {t.key!r}: value {t.value} is outside valid_range {list(self.valid_range)}")
        return self

    @property
    def stale_after_s(self) -> float:
        return float(self.period_s * self.stale_periods)

    def threshold(self, key: str) -> Threshold | None:
        return next((t for t in self.thresholds if t.key == key), None)


class _Gauges(_Item):
    gauges: list[Gauge]


@dataclass(frozen=True)
class GaugeSet:
    """The validated gauges of a plan, by id, in plan order."""

    by_id: dict[str, Gauge]

    def __iter__(self) -> Any:
        return iter(self.by_id.values())

    def __len__(self) -> int:
        return len(self.by_id)

    def get(self, gauge_id: str) -> Gauge | None:
        return self.by_id.get(gauge_id)


def parse_gauges(raw: list[dict[str, Any]], text: str = "", counties: set[str] | None = None,
                 plans: set[str] | None = None) -> tuple[GaugeSet, list[str]]:
    """The gauges of ``raw`` plus the problems found (each ``line N: field 'gauges.i.x': message``)."""
    try:
        parsed = _Gauges(gauges=raw)
    except ValidationError as err:
        return GaugeSet({}), describe_validation_error(err, text)
    problems: list[str] = []
    by_id: dict[str, Gauge] = {}
    for i, g in enumerate(parsed.gauges):
        if g.id in by_id:
            problems.append(f" field 'gauges.{i}.id': gauge id {g.id!r} appears twice")
        if counties is not None and g.county and g.county not in counties:
            problems.append(f" field 'gauges.{i}.county': unknown county {g.county!r}")
        for j, t in enumerate(g.thresholds):
            if plans is not None and t.action == "propose_plan" and t.plan not in plans:
                problems.append(f" field 'gauges.{i}.thresholds.{j}.plan': unknown response plan {t.plan!r}")
        by_id[g.id] = g
    return GaugeSet(by_id), problems


def load_gauges(plan: SitePlan, plans: set[str] | None = None) -> GaugeSet:
    """The plan's gauges; ConfigError naming the plan file, the line and the field on any problem."""
    text = ""
    if plan.source_path is not None:
        try:
            text = plan.source_path.read_text(encoding="utf-8")
        except OSError:
            text = ""
    gauges, problems = parse_gauges(list(plan.gauges), text, {c.adcode for c in plan.counties}, plans)
    if problems:
        raise ConfigError(plan.source_path, problems)
    return gauges
