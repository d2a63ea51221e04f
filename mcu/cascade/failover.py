"""Path selection for one cascade link: primary route (private line) or backup (telecom bridge).

Sans-I/O: the owner feeds `Observation`s (each with its own monotonic timestamp) and calls
`tick(now)` at `next_deadline()`; every call returns `Action`s to perform (dial / hang up a
route) and the link records `PathEvent`s (timestamp, new state, reason) in `history`.

Rules (why each one exists is in docs/cascade.md):
* A route fails on a SIP error or dropped call, an OPTIONS timeout, RTP inactivity longer than
  `rtp_timeout`, a dial that does not answer within `dial_timeout`, or (primary only, while it
  carries the link) the control channel lost for longer than `control_timeout`.
* Primary fails -> dial the backup at once (media back well within 5 s with 3 s thresholds).
* On backup, the primary is probed (OPTIONS over the private line); the link switches back only
  after the primary has been continuously healthy for the hold time (make before break: the
  backup is hung up once the primary call is up).
* A primary that fails within `flap_window` of a switch-back is a flap: the hold time doubles
  (capped at `max_hold`); it returns to `hold` after the primary stays up for `flap_window`.
* Both routes down -> state DOWN; each route is redialled every `retry_interval`, primary wins.
"""
from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Any


class Route(enum.Enum):
    PRIMARY = "primary"
    BACKUP = "backup"


class PathState(enum.Enum):
    PRIMARY = "primary"
    BACKUP = "backup"
    DOWN = "down"


class ObservationKind(enum.Enum):
    CALL_UP = "call_up"              # the route's SIP call is established (media may flow)
    CALL_FAILED = "call_failed"      # INVITE rejected, BYE received, transport error: a SIP error
    MEDIA = "media"                  # RTP received on the route's call
    OPTIONS_OK = "options_ok"        # an OPTIONS probe to the route's address was answered
    OPTIONS_TIMEOUT = "options_timeout"
    SIP_ERROR = "sip_error"          # any other SIP failure on the route (e.g. OPTIONS 5xx)
    CONTROL_UP = "control_up"        # control channel (route ignored: it rides whatever route works)
    CONTROL_LOST = "control_lost"


@dataclass(frozen=True)
class Observation:
    kind: ObservationKind
    route: Route
    at: float
    detail: str = ""


@dataclass(frozen=True)
class Dial:
    route: Route
    target: str


@dataclass(frozen=True)
class Hangup:
    route: Route
    reason: str


Action = Dial | Hangup


@dataclass(frozen=True)
class PathEvent:
    at: float
    state: PathState
    previous: PathState
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "state": self.state.value, "previous": self.previous.value,
                "reason": self.reason}


@dataclass(frozen=True)
class FailoverConfig:
    primary_target: str              # the other node's conference SIP URI over the private line
    backup_target: str               # the telecom bridge conference's SIP URI through the trunk
    rtp_timeout: float = 3.0
    dial_timeout: float = 5.0
    control_timeout: float = 3.0
    probe_gap: float = 3.0           # longer gap between OPTIONS answers breaks "continuously healthy"
    hold: float = 30.0
    max_hold: float = 600.0
    flap_window: float = 120.0
    retry_interval: float = 2.0
    history_size: int = 100

    def __post_init__(self) -> None:
        for name in ("rtp_timeout", "dial_timeout", "control_timeout", "probe_gap", "hold",
                     "max_hold", "flap_window", "retry_interval"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.max_hold < self.hold:
            raise ValueError("max_hold must be at least hold")
        if not self.primary_target or not self.backup_target:
            raise ValueError("primary_target and backup_target are required")
        if self.history_size < 1:
            raise ValueError("history_size must be at least 1")


class CallState(enum.Enum):
    IDLE = "idle"
    DIALING = "dialing"
    UP = "up"


@dataclass
class _RouteStatus:
    call: CallState = CallState.IDLE
    since: float = 0.0               # when `call` last changed
    last_media: float = 0.0
    healthy_since: float | None = None   # probe health (used for the primary while on backup)
    last_ok: float | None = None
    next_retry: float = 0.0


_REASONS = {
    ObservationKind.CALL_FAILED: "呼叫失败或被挂断",
    ObservationKind.OPTIONS_TIMEOUT: "OPTIONS 探测超时",
    ObservationKind.SIP_ERROR: "SIP 错误",
}
_ROUTE_NAMES = {Route.PRIMARY: "专线", Route.BACKUP: "电信备份"}


@dataclass
class FailoverLink:
    """The path state machine of one cascade link (one county as seen from its parent)."""

    config: FailoverConfig
    state: PathState = PathState.DOWN
    history: deque[PathEvent] = field(init=False)
    hold: float = field(init=False)
    flaps: int = 0
    events_total: int = 0  # PathEvents ever recorded (history itself is bounded)
    _routes: dict[Route, _RouteStatus] = field(init=False)
    _now: float = field(init=False, default=float("-inf"))
    _started: bool = False
    _switched_back_at: float | None = None
    _control_lost_at: float | None = None
    _backup_armed: bool = False  # the backup is only ever dialled once the primary has failed

    def __post_init__(self) -> None:
        self.history = deque(maxlen=self.config.history_size)
        self.hold = self.config.hold
        self._routes = {Route.PRIMARY: _RouteStatus(), Route.BACKUP: _RouteStatus()}

    # --- inputs -------------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """Begin: dial the primary route (idempotent)."""
        self._advance(now)
        if self._started:
            return []
        self._started = True
        return [self._dial(Route.PRIMARY)]

    def observe(self, obs: Observation) -> list[Action]:
        """Feed one health observation; returns the actions it triggers (timers run first)."""
        if not isinstance(obs, Observation):
            raise TypeError("observe() takes an Observation")
        actions = self.tick(obs.at)
        r = self._routes[obs.route]
        kind = obs.kind
        if kind is ObservationKind.CALL_UP:
            actions += self._call_up(obs.route)
        elif kind is ObservationKind.MEDIA:
            if r.call is CallState.UP:
                r.last_media = obs.at
        elif kind is ObservationKind.OPTIONS_OK:
            self._probe_ok(r, obs.at)
        elif kind is ObservationKind.CALL_FAILED and r.call is CallState.IDLE:
            pass  # the end of a call we already hung up or gave up on: not news about the line
        elif kind in _REASONS:
            reason = f"{_ROUTE_NAMES[obs.route]}{_REASONS[kind]}" + (f"：{obs.detail}" if obs.detail else "")
            # An OPTIONS timeout while media still flows on the call is not yet a failure of a
            # live call (a lost probe); it does break probe health. A SIP error always fails.
            r.healthy_since = None
            r.last_ok = None
            if kind is ObservationKind.OPTIONS_TIMEOUT and r.call is CallState.UP \
                    and obs.at - r.last_media < self.config.rtp_timeout:
                return actions
            if r.call is not CallState.IDLE:
                actions += self._route_failed(obs.route, reason, call_gone=kind is ObservationKind.CALL_FAILED)
        elif kind is ObservationKind.CONTROL_LOST:
            if self._control_lost_at is None:
                self._control_lost_at = obs.at
        elif kind is ObservationKind.CONTROL_UP:
            self._control_lost_at = None
        return actions

    def tick(self, now: float) -> list[Action]:
        """Run the timers due at `now` (call it at `next_deadline()`)."""
        self._advance(now)
        actions: list[Action] = []
        cfg = self.config
        for route, r in self._routes.items():
            if r.call is CallState.UP and now - r.last_media >= cfg.rtp_timeout:
                actions += self._route_failed(route, f"{_ROUTE_NAMES[route]}媒体中断（{cfg.rtp_timeout:g} 秒无 RTP）")
            elif r.call is CallState.DIALING and now - r.since >= cfg.dial_timeout:
                actions += self._route_failed(route, f"{_ROUTE_NAMES[route]}呼叫超时")
            if r.last_ok is not None and now - r.last_ok > cfg.probe_gap:
                r.healthy_since = None  # probes stopped answering: health is no longer continuous
                r.last_ok = None
        if (self._control_lost_at is not None and self.state is PathState.PRIMARY
                and now - self._control_lost_at >= cfg.control_timeout):
            self._control_lost_at = None
            actions += self._route_failed(Route.PRIMARY, f"控制通道中断超过 {cfg.control_timeout:g} 秒")
        primary = self._routes[Route.PRIMARY]
        if (self.state is PathState.PRIMARY and self._switched_back_at is not None
                and now - self._switched_back_at >= cfg.flap_window):
            self._switched_back_at = None  # stable again: forget earlier flaps
            self.flaps = 0
            self.hold = cfg.hold
        if (self.state is PathState.BACKUP and primary.call is CallState.IDLE
                and primary.healthy_since is not None and now - primary.healthy_since >= self.hold):
            actions.append(self._dial(Route.PRIMARY))
        if self.state is PathState.DOWN and self._started:
            actions += self._retry_due()
        return actions

    # --- outputs ------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest time `tick` has something to do, or None."""
        cfg = self.config
        times: list[float] = []
        for r in self._routes.values():
            if r.call is CallState.UP:
                times.append(r.last_media + cfg.rtp_timeout)
            elif r.call is CallState.DIALING:
                times.append(r.since + cfg.dial_timeout)
            if r.last_ok is not None:
                times.append(r.last_ok + cfg.probe_gap + 1e-6)
        if self._control_lost_at is not None and self.state is PathState.PRIMARY:
            times.append(self._control_lost_at + cfg.control_timeout)
        if self.state is PathState.PRIMARY and self._switched_back_at is not None:
            times.append(self._switched_back_at + cfg.flap_window)
        primary = self._routes[Route.PRIMARY]
        if self.state is PathState.BACKUP and primary.call is CallState.IDLE and primary.healthy_since is not None:
            times.append(primary.healthy_since + self.hold)
        if self.state is PathState.DOWN and self._started:
            times += [r.next_retry for route, r in self._routes.items()
                      if r.call is CallState.IDLE and (route is Route.PRIMARY or self._backup_armed)]
        return min(times) if times else None

    def call_state(self, route: Route) -> CallState:
        return self._routes[route].call

    def status(self) -> dict[str, Any]:
        """JSON for the console: state, hold time, calls and the switch history."""
        return {"state": self.state.value, "hold_seconds": self.hold, "flaps": self.flaps,
                "calls": {route.value: r.call.value for route, r in self._routes.items()},
                "history": [e.to_json() for e in self.history]}

    # --- internals ----------------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        if now < self._now:
            raise ValueError(f"time went backwards: {now} < {self._now}")
        self._now = now

    def _set_state(self, state: PathState, reason: str) -> None:
        if state is self.state:
            return
        self.history.append(PathEvent(self._now, state, self.state, reason))
        self.events_total += 1
        self.state = state

    def _dial(self, route: Route) -> Dial:
        r = self._routes[route]
        r.call, r.since = CallState.DIALING, self._now
        target = self.config.primary_target if route is Route.PRIMARY else self.config.backup_target
        return Dial(route, target)

    def _probe_ok(self, r: _RouteStatus, at: float) -> None:
        if r.last_ok is None or at - r.last_ok > self.config.probe_gap:
            r.healthy_since = at
        r.last_ok = at

    def _call_up(self, route: Route) -> list[Action]:
        r = self._routes[route]
        if r.call is not CallState.DIALING:
            return []  # a stale answer to a call we already gave up on
        r.call, r.since, r.last_media = CallState.UP, self._now, self._now
        other = Route.BACKUP if route is Route.PRIMARY else Route.PRIMARY
        actions: list[Action] = []
        if route is Route.PRIMARY:
            if self.state is PathState.BACKUP:
                self._switched_back_at = self._now
                self._set_state(PathState.PRIMARY, f"专线已连续正常 {self.hold:g} 秒，切回专线")
            else:
                self._set_state(PathState.PRIMARY, "专线已接通")
            if self._routes[other].call is not CallState.IDLE:
                actions.append(self._hang_up(other, "已切回专线"))
        elif self.state is PathState.PRIMARY:
            actions.append(self._hang_up(route, "专线正常，不需要备份"))
        else:
            self._set_state(PathState.BACKUP, "经电信备份线路接通")
        return actions

    def _hang_up(self, route: Route, reason: str) -> Hangup:
        r = self._routes[route]
        r.call, r.since = CallState.IDLE, self._now
        return Hangup(route, reason)

    def _route_failed(self, route: Route, reason: str, call_gone: bool = False) -> list[Action]:
        cfg = self.config
        r = self._routes[route]
        actions: list[Action] = []
        was = r.call
        if was is not CallState.IDLE:
            if call_gone:
                r.call, r.since = CallState.IDLE, self._now
            else:
                actions.append(self._hang_up(route, reason))
        r.healthy_since = None
        r.last_ok = None
        r.next_retry = self._now + cfg.retry_interval
        if route is Route.PRIMARY:
            self._backup_armed = True
            if self._switched_back_at is not None or (was is CallState.DIALING and self.state is PathState.BACKUP):
                # failed soon after (or while) switching back: a flap, so wait longer next time
                self.flaps += 1
                self.hold = min(cfg.hold * 2 ** self.flaps, cfg.max_hold)
                self._switched_back_at = None
            if self.state is PathState.PRIMARY:
                self._set_state(PathState.DOWN, reason)
        elif self.state is PathState.BACKUP:
            self._set_state(PathState.DOWN, reason)
        if self.state is PathState.DOWN:
            actions += self._retry_due()
        return actions

    def _retry_due(self) -> list[Action]:
        # Primary first, so that when both answer the primary wins and the backup is hung up.
        return [self._dial(route) for route in (Route.PRIMARY, Route.BACKUP)
                if self._routes[route].call is CallState.IDLE and self._now >= self._routes[route].next_retry
                and (route is Route.PRIMARY or self._backup_armed)]
