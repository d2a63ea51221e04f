"""The loss switch (FEC, intra refresh): on after sustained loss, off after sustained quiet, no flapping."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcu.legs.loss_switch import LossRules, LossSwitch


def test_sustained_loss_turns_it_on_and_a_single_report_does_not() -> None:
    switch = LossSwitch()
    assert switch.report(0.03, 0.0) is None  # the count starts
    assert switch.report(0.001, 1.0) is None  # a clean report resets it
    assert switch.report(0.03, 2.0) is None
    assert switch.report(0.025, 3.0) is None
    assert switch.report(0.03, 4.0) is True and switch.on  # 2 s at >= 2 %


def test_a_burst_turns_it_on_at_once() -> None:
    switch = LossSwitch()
    assert switch.report(0.2, 0.0) is True


def test_it_turns_off_only_after_ten_quiet_seconds_and_loss_between_thresholds_keeps_it_on() -> None:
    switch = LossSwitch(on=True)
    for t in range(0, 10):
        assert switch.report(0.0, float(t)) is None
    assert switch.report(0.01, 10.0) is None  # 1 %: between the thresholds, the quiet count restarts
    for t in range(11, 21):
        assert switch.report(0.004, float(t)) is None
    assert switch.report(0.0, 21.0) is False and not switch.on  # 10 s at <= 0.5 %


def test_no_flapping_within_the_hold_time() -> None:
    switch = LossSwitch(LossRules(off_after=1.0, min_hold=5.0))
    assert switch.report(0.5, 0.0) is True
    assert switch.report(0.0, 1.0) is None and switch.report(0.0, 2.5) is None  # quiet, but held
    assert switch.report(0.0, 5.0) is False


def test_broken_reports_are_ignored() -> None:
    switch = LossSwitch()
    assert switch.report(-1, 0.0) is None and switch.report(7.0, 0.0) is None and not switch.on
    assert switch.report(0.5, 10.0) is True
    assert switch.report(0.0, 5.0) is None  # time went backwards
    with pytest.raises(ValueError):
        LossRules(off_loss=0.05, on_loss=0.02)


@given(st.lists(st.tuples(st.floats(-1, 2, allow_nan=False), st.floats(0, 2, allow_nan=False)), max_size=60))
def test_it_never_changes_twice_within_the_hold_time(steps: list[tuple[float, float]]) -> None:
    switch, now, changed = LossSwitch(), 0.0, []
    for loss, dt in steps:
        now += dt
        if switch.report(loss, now) is not None:
            changed.append(now)
    assert all(b - a >= switch.rules.min_hold for a, b in zip(changed, changed[1:], strict=False))
    assert switch.changes == len(changed)
