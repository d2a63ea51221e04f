"""Which counties a standby city node meets in their telecom bridge conferences (issue 17).

A county's plan parent (the city) runs a `BackupWatcher` for it: it joins the county's bridge
conference while the county's private line is down. A county that cascades into the **standby**
city node (its `ParentChoice` moved it there because the city is gone) and then loses its line to
the standby dials the same bridge conference, where the dead city cannot meet it. The standby
must, but only while that county is really its child, and never while the city may be in the
same bridge (city → bridge → standby → city would loop the sound back).

Sans-I/O: the owner (`CascadeService` on the standby) reports what it sees and asks `wanted(now)`
which counties need a bridge watcher now; it starts and stops the watchers (a stopped watcher
leaves the county's bridge conference). Two clocks, never compared with each other: a county's
arrival (`arrived`'s ``now``) and the city's announcements (`home`'s ``announced_at``) are both on
the **database's** clock (the owner stamps an arrival with the database's ``now()``; the bus stamps
an event with it), so a clock difference between the nodes and the database cannot make a genuine
announcement look stale; the city's OPTIONS answers and `wanted`'s ``now`` are on the node's own
clock. The owner asks `wanted` only while this node holds the root lease (`root_lease.RootLease`):
the lease, not this machine, is what keeps the two city nodes out of one bridge.

Rules:
* A county is *armed* when it cascades into the standby: its link call is admitted here or its
  control channel authenticates here (`arrived`). A county the standby does not serve (not one of
  ``counties``) is ignored.
* An armed county is *disarmed* only when the city announces that the county is back on it
  (`home`: the county's link call admitted, or its control channel authenticated, at the city;
  both nodes share one database, so the announcement is a bus event). An announcement made before
  the county's latest arrival here is stale and ignored. The county's call or channel ending here
  is no sign: it ends the same way when the line to the standby dies and the county goes to its
  bridge, which is exactly when it needs the standby there.
* The city is *gone* when it has not answered the standby's OPTIONS for ``dead_after`` seconds
  since its last answer; a city never heard is gone ``startup_grace`` after the start. While the
  city is not gone, no county is wanted: the city's own watcher meets the county in its bridge,
  and both city nodes in one bridge would loop the sound. A standby that cannot hear a living city
  (a partition between them) counts it gone here; the root lease, which the living city keeps
  renewing, then keeps the standby out (docs/ha.md).
* `wanted(now)` = the armed counties while the city is gone; otherwise none.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class StandbyWatchConfig:
    city: str                         # the standby's own parent, the counties' plan parent
    counties: frozenset[str]          # the nodes listing this one in standby_parents
    dead_after: float = 3.0
    startup_grace: float = 10.0
    history_size: int = 50

    def __post_init__(self) -> None:
        if not self.city:
            raise ValueError("city must name the standby's parent node")
        if self.city in self.counties:
            raise ValueError("the city cannot be one of its own counties")
        for name in ("dead_after", "startup_grace"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.history_size < 1:
            raise ValueError("history_size must be at least 1")


@dataclass(frozen=True)
class WatchChange:
    at: float
    county: str
    armed: bool
    reason: str


@dataclass
class StandbyWatch:
    """The counties cascading into this standby city node, and whether the city is gone."""

    config: StandbyWatchConfig
    started: float
    history: deque[WatchChange] = field(init=False)
    _armed_since: dict[str, float] = field(default_factory=dict)
    _city_last_ok: float | None = None

    def __post_init__(self) -> None:
        self.history = deque(maxlen=self.config.history_size)

    @property
    def armed(self) -> frozenset[str]:
        return frozenset(self._armed_since)

    def arrived(self, county: str, now: float, how: str = "link") -> bool:
        """The county's link call or control channel arrived here at ``now`` (the database's clock);
        True when it armed it now."""
        if county not in self.config.counties:
            return False
        fresh = county not in self._armed_since
        self._armed_since[county] = now
        if fresh:
            self.history.append(WatchChange(now, county, True, f"arrived ({how})"))
        return fresh

    def home(self, county: str, announced_at: float, now: float) -> bool:
        """The city announced (made at ``announced_at``, the database's clock) that the county is back
        on it; True when it disarmed the county now (``now``: the history's time)."""
        since = self._armed_since.get(county)
        if since is None or announced_at < since:
            return False
        del self._armed_since[county]
        self.history.append(WatchChange(now, county, False, f"back on {self.config.city}"))
        return True

    def city_answered(self, now: float) -> None:
        """The city answered the standby's OPTIONS."""
        if self._city_last_ok is None or now > self._city_last_ok:
            self._city_last_ok = now

    def city_gone(self, now: float) -> bool:
        if self._city_last_ok is None:
            return now - self.started >= self.config.startup_grace
        return now - self._city_last_ok >= self.config.dead_after

    def wanted(self, now: float) -> frozenset[str]:
        """The counties whose bridge conference the standby must watch now."""
        return self.armed if self.city_gone(now) else frozenset()


__all__ = ["StandbyWatch", "StandbyWatchConfig", "WatchChange"]
