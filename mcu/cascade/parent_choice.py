"""Which parent node a child cascades into: the city's primary node, a standby city node, ...

A child node lists its parents in order of preference (`Node.parent`, then
`Node.standby_parents`). Sans-I/O: the owner reports every OPTIONS answer of a parent's SIP
address with `answered(parent, at)` and calls `tick(now)` at `next_deadline()`; both return the
`ParentSwitch` they decide (or None), and the choice records every switch in `history`.
The owner re-forms its up-links on the new parent; what the up-link does on its own (the telecom
backup of the private line, `failover.FailoverLink`) is unchanged and works under any parent.

Rules:
* The choice starts on the first parent, so a node whose primary parent is up never moves.
* The current parent is *gone* when it has not answered OPTIONS for `dead_after` seconds since its
  last answer; one that never answered is gone `startup_grace` after the start (nodes of a cascade
  start in any order: a county up before the city must not move to the standby at once).
* A gone parent is left for the first parent, in list order, that is *alive*: it answered within
  `dead_after` (the same measure, so a parent is never both gone and alive). When no parent is alive the choice stays where it is (nothing better to go to; the
  up-link's own failover to the telecom bridge carries the conference meanwhile).
* While on a later parent, an earlier one that has answered continuously (no gap longer than
  `probe_gap`) for `hold` seconds *since it was left* wins it back: the primary city node restarted is used again once
  it has proved itself for as long as a private line must before its link switches back.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ParentChoiceConfig:
    parents: tuple[str, ...]          # node names, most preferred first
    dead_after: float = 3.0
    probe_gap: float = 3.0
    hold: float = 30.0
    startup_grace: float = 10.0
    history_size: int = 50

    def __post_init__(self) -> None:
        if not self.parents:
            raise ValueError("parents must name at least one node")
        if len(set(self.parents)) != len(self.parents):
            raise ValueError("parents must not repeat a node")
        for name in ("dead_after", "probe_gap", "hold", "startup_grace"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.history_size < 1:
            raise ValueError("history_size must be at least 1")


@dataclass(frozen=True)
class ParentSwitch:
    at: float
    parent: str
    previous: str
    reason: str


@dataclass
class _Probe:
    last_ok: float | None = None
    healthy_since: float | None = None


@dataclass
class ParentChoice:
    """The parent one child node cascades into now (`current`)."""

    config: ParentChoiceConfig
    started: float
    current: str = field(init=False)
    switches_total: int = 0   # switches ever made (history itself is bounded)
    history: deque[ParentSwitch] = field(init=False)
    _probes: dict[str, _Probe] = field(init=False)
    _now: float = field(init=False)

    def __post_init__(self) -> None:
        self.current = self.config.parents[0]
        self.history = deque(maxlen=self.config.history_size)
        self._probes = {p: _Probe() for p in self.config.parents}
        self._now = self.started

    def answered(self, parent: str, at: float) -> ParentSwitch | None:
        """``parent`` answered an OPTIONS probe at ``at``; unknown names raise KeyError."""
        probe = self._probes[parent]
        self._advance(at)
        if probe.last_ok is None or at - probe.last_ok > self.config.probe_gap:
            probe.healthy_since = at
        probe.last_ok = at
        return self.tick(at)

    def tick(self, now: float) -> ParentSwitch | None:
        """Apply the rules at ``now``; the switch made, if any."""
        self._advance(now)
        cfg = self.config
        if now >= self._gone_at():
            alive = next((p for p in cfg.parents if p != self.current and self._alive(p, now)), None)
            if alive is not None:
                return self._switch(alive, f"上级节点 {self.current} {cfg.dead_after:g} 秒无应答，改接 {alive}")
            return None
        index = cfg.parents.index(self.current)
        for p in cfg.parents[:index]:
            probe = self._probes[p]
            if self._alive(p, now) and probe.healthy_since is not None and now - probe.healthy_since >= cfg.hold:
                return self._switch(p, f"上级节点 {p} 已连续正常 {cfg.hold:g} 秒，切回")
        return None

    def next_deadline(self) -> float | None:
        """The earliest time `tick` may decide something new."""
        cfg = self.config
        times = [self._gone_at()]
        for p in cfg.parents[:cfg.parents.index(self.current)]:
            probe = self._probes[p]
            if probe.healthy_since is not None and probe.last_ok is not None:
                times.append(probe.healthy_since + cfg.hold)
        return min(times)

    def _gone_at(self) -> float:
        last = self._probes[self.current].last_ok
        if last is not None:
            return last + self.config.dead_after
        return self.started + self.config.startup_grace  # only the first parent, before any answer

    def _alive(self, parent: str, now: float) -> bool:
        last = self._probes[parent].last_ok
        return last is not None and now - last < self.config.dead_after

    def _switch(self, parent: str, reason: str) -> ParentSwitch:
        switch = ParentSwitch(self._now, parent, self.current, reason)
        self._probes[self.current] = _Probe()  # a parent left must prove itself afresh
        self.history.append(switch)
        self.switches_total += 1
        self.current = parent
        return switch

    def _advance(self, now: float) -> None:
        if now < self._now:
            raise ValueError(f"time went backwards: {now} < {self._now}")
        self._now = now


__all__ = ["ParentChoice", "ParentChoiceConfig", "ParentSwitch"]
