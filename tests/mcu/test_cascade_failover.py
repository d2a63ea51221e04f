"""Path failover of one cascade link (mcu.cascade.failover), on a fake clock."""
from __future__ import annotations

import pytest

from mcu.cascade.failover import (
    Action,
    CallState,
    Dial,
    FailoverConfig,
    FailoverLink,
    Hangup,
    Observation,
    ObservationKind,
    PathState,
    Route,
)

P, B = Route.PRIMARY, Route.BACKUP
K = ObservationKind


def make(**overrides: float) -> FailoverLink:
    cfg = FailoverConfig(primary_target="sip:cascade@10.0.1.2", backup_target="sip:99001@trunk.telecom",
                         **overrides)  # type: ignore[arg-type]
    return FailoverLink(cfg)


def state_of(link: FailoverLink) -> PathState:
    return link.state  # through a call, so mypy does not narrow the state across actions


class World:
    """Fake clock + the link; `run` advances time in steps, feeding media and probes for
    the routes that are 'working' and collecting the actions."""

    def __init__(self, link: FailoverLink) -> None:
        self.link = link
        self.now = 0.0
        self.actions: list[tuple[float, Action]] = []
        self.media: set[Route] = set()    # routes whose line carries RTP
        self.probes: set[Route] = set()   # routes whose address answers OPTIONS
        self.answer: set[Route] = set()   # routes that answer a dial (after 0.5 s)
        self._pending: dict[Route, float] = {}

    def _record(self, acts: list[Action]) -> None:
        for a in acts:
            self.actions.append((self.now, a))
            if isinstance(a, Dial):
                self._pending[a.route] = self.now + 0.5
            elif isinstance(a, Hangup):
                self._pending.pop(a.route, None)

    def obs(self, kind: ObservationKind, route: Route, detail: str = "") -> None:
        self._record(self.link.observe(Observation(kind, route, self.now, detail)))

    def start(self) -> None:
        self._record(self.link.start(self.now))

    def run(self, until: float, step: float = 0.25) -> None:
        while self.now < until - 1e-9:
            self.now = round(self.now + step, 6)
            for route, due in list(self._pending.items()):
                if self.now >= due and self._pending.pop(route, None) is not None:
                    if route in self.answer:
                        self.obs(K.CALL_UP, route)
                    else:
                        self.obs(K.CALL_FAILED, route, "408 请求超时")
            for route in (P, B):
                if route in self.media and self.link.call_state(route) is CallState.UP:
                    self.obs(K.MEDIA, route)
                if self.now % 1 == 0:  # one OPTIONS probe a second
                    self.obs(K.OPTIONS_OK if route in self.probes else K.OPTIONS_TIMEOUT, route)
            self._record(self.link.tick(self.now))

    def state(self) -> PathState:
        return state_of(self.link)

    def states(self) -> list[str]:
        return [e.state.value for e in self.link.history]

    def dials(self, route: Route, after: float = 0.0) -> list[float]:
        return [t for t, a in self.actions if isinstance(a, Dial) and a.route is route and t >= after]

    def hangups(self, route: Route, after: float = 0.0) -> list[float]:
        return [t for t, a in self.actions if isinstance(a, Hangup) and a.route is route and t >= after]


def healthy_world(**overrides: float) -> World:
    w = World(make(**overrides))
    w.media = {P, B}
    w.probes = {P, B}
    w.answer = {P, B}
    w.start()
    return w


def test_start_dials_only_the_primary_and_reaches_primary() -> None:
    w = healthy_world()
    assert w.actions == [(0.0, Dial(P, "sip:cascade@10.0.1.2"))]
    w.run(10)
    assert w.state() is PathState.PRIMARY
    assert w.dials(B) == []
    assert w.states() == ["primary"]
    assert w.link.status()["calls"] == {"primary": "up", "backup": "idle"}


def test_line_down_fails_over_to_backup_within_the_target() -> None:
    w = healthy_world()
    w.run(10)
    w.media.discard(P)
    w.probes.discard(P)
    w.answer.discard(P)
    w.run(20)
    assert w.state() is PathState.BACKUP
    (dial_backup,) = w.dials(B)
    assert dial_backup - 10 <= 3.0 + 0.25  # rtp_timeout (or an earlier OPTIONS timeout)
    backup_up = next(e.at for e in w.link.history if e.state is PathState.BACKUP)
    assert backup_up - 10 < 5.0  # issue target: media back within 5 s of the line going down
    assert w.states() == ["primary", "down", "backup"]
    assert 10 <= w.hangups(P)[0] <= 13.25
    reasons = [e.reason for e in w.link.history]
    assert any("专线" in r for r in reasons[1:2])


def test_rtp_inactivity_alone_triggers_failover_at_the_threshold() -> None:
    w = healthy_world(rtp_timeout=3.0)
    w.run(10)
    w.media.discard(P)  # OPTIONS still answered: only media stops
    w.run(12.75)
    assert w.state() is PathState.PRIMARY
    w.run(13.25)
    assert w.state() is not PathState.PRIMARY
    assert "RTP" in w.link.history[-1].reason


def test_switch_back_after_hold_exactly_once() -> None:
    w = healthy_world(hold=30)
    w.run(10)
    w.media.discard(P); w.probes.discard(P); w.answer.discard(P)  # noqa: E702
    w.run(20)
    assert w.state() is PathState.BACKUP
    w.media.add(P); w.probes.add(P); w.answer.add(P)  # noqa: E702  line restored at t=20
    w.run(49)
    assert w.state() is PathState.BACKUP  # not before the hold time
    w.run(120)
    assert w.state() is PathState.PRIMARY
    assert w.states() == ["primary", "down", "backup", "primary"]
    switch_back = w.link.history[-1]
    assert 50 <= switch_back.at <= 51.5
    assert "30" in switch_back.reason
    (hang_backup,) = w.hangups(B)
    assert hang_backup == switch_back.at  # make before break: backup dropped once primary is up
    assert len(w.dials(P, after=20)) == 1


def test_unhealthy_probe_restarts_the_hold() -> None:
    w = healthy_world(hold=30)
    w.run(10)
    w.media.discard(P); w.probes.discard(P); w.answer.discard(P)  # noqa: E702
    w.run(20)
    w.probes.add(P); w.answer.add(P); w.media.add(P)  # noqa: E702
    w.run(40)
    w.obs(K.OPTIONS_TIMEOUT, P)  # one lost probe at t=40
    w.run(69)
    assert w.state() is PathState.BACKUP  # 20+30 has passed but health was interrupted at 40
    w.run(75)
    assert w.state() is PathState.PRIMARY


def test_silent_probes_are_not_continuous_health() -> None:
    w = healthy_world(hold=10, probe_gap=3)
    w.run(5)
    w.media.discard(P); w.probes.discard(P); w.answer.discard(P)  # noqa: E702
    w.run(10)
    link = w.link
    assert state_of(link) is PathState.BACKUP
    link.observe(Observation(K.OPTIONS_OK, P, 10.5))
    link.observe(Observation(K.MEDIA, B, 12))
    link.tick(14)  # no answer for 3.5 s: nothing was reported, but it is not continuous
    link.observe(Observation(K.MEDIA, B, 14.2))
    link.observe(Observation(K.OPTIONS_OK, P, 14.5))
    for t in range(15, 25):
        link.observe(Observation(K.MEDIA, B, t))
        assert link.tick(t) == []  # at 21, 10.5 + 10 has passed, but health restarted at 14.5
        if t < 24:
            assert link.observe(Observation(K.OPTIONS_OK, P, t + 0.5)) == []
    acts = link.observe(Observation(K.OPTIONS_OK, P, 24.5))
    assert acts == [Dial(P, "sip:cascade@10.0.1.2")]


def test_flapping_primary_doubles_the_hold_and_stable_link_resets_it() -> None:
    w = healthy_world(hold=10, max_hold=35, flap_window=60)
    w.run(5)
    down_times = []
    for _ in range(3):
        w.media.discard(P); w.probes.discard(P); w.answer.discard(P)  # noqa: E702
        w.run(w.now + 8)
        assert w.state() is PathState.BACKUP
        down_times.append(w.now)
        w.media.add(P); w.probes.add(P); w.answer.add(P)  # noqa: E702
        before = len(w.link.history)
        w.run(w.now + w.link.hold + 3)
        assert w.state() is PathState.PRIMARY, w.link.history
        assert len(w.link.history) == before + 1
        w.run(w.now + 5)  # flaps again 5 s after switching back
    assert w.link.hold == 35 or w.link.flaps >= 2
    holds = []
    w.media.discard(P); w.probes.discard(P); w.answer.discard(P)  # noqa: E702
    w.run(w.now + 8)
    holds.append(w.link.hold)
    assert w.link.flaps == 3
    assert w.link.hold == 35  # 10 * 2**3 = 80, capped at max_hold
    w.media.add(P); w.probes.add(P); w.answer.add(P)  # noqa: E702
    t = w.now
    w.run(t + 34)
    assert w.state() is PathState.BACKUP
    w.run(t + 40)
    assert w.state() is PathState.PRIMARY
    w.run(w.now + 61)  # stable for the flap window
    assert w.link.flaps == 0 and w.link.hold == 10


def test_hold_growth_sequence() -> None:
    w = healthy_world(hold=10, max_hold=1000, flap_window=60)
    w.run(5)
    seen = []
    for _ in range(3):
        w.media.discard(P); w.probes.discard(P); w.answer.discard(P)  # noqa: E702
        w.run(w.now + 8)
        seen.append(w.link.hold)
        w.media.add(P); w.probes.add(P); w.answer.add(P)  # noqa: E702
        w.run(w.now + w.link.hold + 3)
        w.run(w.now + 5)
    assert seen == [10, 20, 40]


def test_primary_dial_failing_during_switch_back_is_a_flap_and_keeps_backup() -> None:
    w = healthy_world(hold=10)
    w.run(5)
    w.media.discard(P); w.probes.discard(P); w.answer.discard(P)  # noqa: E702
    w.run(10)
    w.probes.add(P)  # OPTIONS answered but calls still fail
    w.run(30)
    assert w.state() is PathState.BACKUP
    assert w.link.flaps >= 1 and w.link.hold >= 20
    assert w.hangups(B) == []  # the backup carried the conference throughout
    assert "down" not in w.states()[2:]


def test_simultaneous_failure_goes_down_and_primary_wins_recovery() -> None:
    w = healthy_world(retry_interval=2)
    w.run(10)
    w.media.clear(); w.probes.clear(); w.answer.clear()  # noqa: E702
    w.run(30)
    assert w.state() is PathState.DOWN
    assert w.states()[-1] == "down"
    # both routes keep being retried, spaced by the retry interval (no tight loop)
    for route in (P, B):
        d = w.dials(route, after=11)
        assert len(d) >= 4
        assert all(b - a >= 2 for a, b in zip(d, d[1:], strict=False))
    w.media = {P, B}; w.probes = {P, B}; w.answer = {P, B}  # noqa: E702
    w.run(40)
    assert w.state() is PathState.PRIMARY
    assert w.link.call_state(B) is CallState.IDLE


def test_both_routes_failing_at_the_same_instant() -> None:
    link = make()
    link.start(0)
    link.observe(Observation(K.CALL_UP, P, 0.5))
    link.observe(Observation(K.MEDIA, P, 3))
    acts = link.observe(Observation(K.CALL_FAILED, P, 5, "BYE"))
    assert acts == [Dial(B, "sip:99001@trunk.telecom")]
    link.observe(Observation(K.CALL_UP, B, 5.2))
    assert state_of(link) is PathState.BACKUP
    acts = link.observe(Observation(K.CALL_FAILED, B, 6, "503"))
    assert state_of(link) is PathState.DOWN
    assert acts == []  # primary retry not due yet (failed at 5, retry at 7)
    assert link.next_deadline() == 7
    acts = link.tick(7)
    assert acts == [Dial(P, "sip:cascade@10.0.1.2")]
    assert link.tick(8) == [Dial(B, "sip:99001@trunk.telecom")]


def test_backup_failing_while_on_backup_redials() -> None:
    w = healthy_world()
    w.run(5)
    w.media.discard(P); w.probes.discard(P); w.answer.discard(P)  # noqa: E702
    w.run(10)
    w.obs(K.CALL_FAILED, B, "BYE 来自电信会议系统")
    assert w.state() is PathState.DOWN
    w.run(15)
    assert w.state() is PathState.BACKUP
    assert len(w.dials(B)) == 2


def test_control_channel_loss_fails_the_primary_after_threshold() -> None:
    w = healthy_world(control_timeout=3)
    w.run(5)
    w.obs(K.CONTROL_LOST, P)
    w.run(7)
    w.obs(K.CONTROL_UP, P)  # back before the threshold: nothing happens
    w.run(12)
    assert w.states() == ["primary"]
    w.obs(K.CONTROL_LOST, P)
    w.run(14.75)
    assert w.state() is PathState.PRIMARY
    w.run(15.25)
    assert w.state() is not PathState.PRIMARY
    assert "控制通道" in w.link.history[-1].reason


def test_control_loss_on_backup_keeps_the_county_in_the_picture() -> None:
    w = healthy_world()
    w.run(5)
    w.media.discard(P); w.probes.discard(P); w.answer.discard(P)  # noqa: E702
    w.run(10)
    w.obs(K.CONTROL_LOST, B)
    w.run(30)
    assert w.state() is PathState.BACKUP


def test_options_timeout_with_flowing_media_does_not_fail_a_live_call() -> None:
    w = healthy_world()
    w.run(5)
    w.obs(K.OPTIONS_TIMEOUT, P)
    assert w.state() is PathState.PRIMARY
    w.obs(K.SIP_ERROR, P, "OPTIONS 503")  # an explicit SIP error does
    assert w.state() is PathState.DOWN


def test_startup_dial_timeout_arms_the_backup() -> None:
    link = make(dial_timeout=5)
    assert link.start(0) == [Dial(P, "sip:cascade@10.0.1.2")]
    assert link.start(0) == []
    assert link.tick(4.9) == []
    assert link.next_deadline() == 5
    assert link.tick(5) == [Hangup(P, "专线呼叫超时"), Dial(B, "sip:99001@trunk.telecom")]


def test_stale_answer_to_abandoned_call_is_ignored() -> None:
    link = make(dial_timeout=5)
    link.start(0)
    link.tick(5)  # primary given up
    assert link.observe(Observation(K.CALL_UP, P, 5.1)) == []
    assert link.call_state(P) is CallState.IDLE


def test_backup_answering_after_primary_is_hung_up() -> None:
    link = make()
    link.start(0)
    link.observe(Observation(K.CALL_FAILED, P, 0.2))
    link.observe(Observation(K.CALL_UP, B, 0.4))
    link.tick(2.2)  # primary retried? no: on backup the primary waits for healthy probes
    assert state_of(link) is PathState.BACKUP
    assert link.call_state(P) is CallState.IDLE


def test_time_going_backwards_is_rejected_and_changes_nothing() -> None:
    link = make()
    link.start(10)
    before = link.status()
    with pytest.raises(ValueError, match="backwards"):
        link.observe(Observation(K.CALL_UP, P, 9))
    assert link.status() == before
    with pytest.raises(TypeError):
        link.observe("call_up")  # type: ignore[arg-type]


@pytest.mark.parametrize("field,value", [("rtp_timeout", 0), ("hold", -1), ("max_hold", 1),
                                          ("history_size", 0), ("primary_target", "")])
def test_bad_config_is_refused(field: str, value: object) -> None:
    kwargs: dict[str, object] = {"primary_target": "sip:a@b", "backup_target": "sip:c@d", field: value}
    with pytest.raises(ValueError, match=field):
        FailoverConfig(**kwargs)  # type: ignore[arg-type]


def test_history_is_bounded_and_serialisable() -> None:
    w = healthy_world(history_size=3, hold=1, flap_window=1)
    w.run(5)
    for _ in range(4):
        w.media.discard(P); w.probes.discard(P); w.answer.discard(P)  # noqa: E702
        w.run(w.now + 6)
        w.media.add(P); w.probes.add(P); w.answer.add(P)  # noqa: E702
        w.run(w.now + 6)
    status = w.link.status()
    assert len(status["history"]) == 3
    assert {"at", "state", "previous", "reason"} <= set(status["history"][0])


def test_end_of_a_call_we_hung_up_is_not_a_failure() -> None:
    w = healthy_world(hold=10)
    w.run(5)
    w.media.discard(P); w.probes.discard(P); w.answer.discard(P)  # noqa: E702
    w.run(10)
    w.media.add(P); w.probes.add(P); w.answer.add(P)  # noqa: E702
    w.run(14)
    health_before = w.link.status()
    w.obs(K.CALL_FAILED, P, "BYE of the old primary call")  # late report for the call hung up at 8
    assert w.link.status() == health_before
    w.run(30)
    assert w.states()[-1] == "primary"
    assert w.link.history[-1].at <= 22.5  # health counted from ~11, not restarted at 14
    assert w.link.flaps == 0
