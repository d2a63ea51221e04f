"""Rate policing of an H.239 presenter's content channel (pure rule, time as an argument) and the
content budget we send within (issue 18)."""
from __future__ import annotations

from mcu.legs.h323_content import GRACE_S, RETELL_S, SUSTAIN_S, ContentRatePolice, PoliceVerdict

MAX_BPS = 256_000  # the channel's maxBitRate


def feed(police: ContentRatePolice, start: float, seconds: float, bps: float, octets: int,
         step: float = 0.1) -> tuple[int, list[tuple[float, PoliceVerdict]]]:
    """Send at ``bps`` for ``seconds`` in steps of ``step``, a frame each step; returns the octet
    counter and the verdicts with their times."""
    out = []
    n = round(seconds / step)
    for i in range(1, n + 1):
        now = start + i * step
        octets += round(bps * step / 8)
        out.append((now, police.sample(octets, now, frame=True)))
    return octets, out


def test_within_and_slightly_above_the_rate_is_left_alone() -> None:
    police = ContentRatePolice(MAX_BPS)
    police.sample(0, 0.0)
    octets, verdicts = feed(police, 0.0, 10.0, MAX_BPS * 1.4, 0)
    assert not any(v.tell or v.drop for _, v in verdicts)
    assert police.told == 0 and police.dropped == 0


def test_sustained_excess_is_told_then_dropped_beyond_the_rate_until_it_slows() -> None:
    police = ContentRatePolice(MAX_BPS)
    police.sample(0, 0.0)
    octets, verdicts = feed(police, 0.0, 8.0, MAX_BPS * 3, 0)
    told = [t for t, v in verdicts if v.tell]
    # The first over window is [0, 1); the run has lasted SUSTAIN_S at the close of [1, 2).
    assert len(told) == 1 and SUSTAIN_S - 0.01 <= told[0] <= SUSTAIN_S + 0.11
    drops = [t for t, v in verdicts if v.drop]
    assert drops and min(drops) >= told[0] + GRACE_S
    # In a dropping second, the frames within the channel's rate (1/3 of them at 3x) still pass.
    second = [v.drop for t, v in verdicts if 6.0 < t <= 7.0]
    assert 0 < second.count(False) <= 4 and second.count(True) >= 6
    assert police.dropped == len(drops)
    # The presenter slows to its rate: the next closed window ends the run, nothing is dropped.
    octets, verdicts = feed(police, 8.0, 3.0, MAX_BPS * 0.9, octets)
    assert not any(v.drop for t, v in verdicts if t > 9.05) and not any(v.tell for _, v in verdicts)


def test_the_command_is_repeated_only_every_retell_interval_and_for_a_new_run() -> None:
    police = ContentRatePolice(MAX_BPS)
    police.sample(0, 0.0)
    octets, verdicts = feed(police, 0.0, RETELL_S + 5, MAX_BPS * 2, 0)
    told = [t for t, v in verdicts if v.tell]
    assert len(told) == 2 and told[1] - told[0] >= RETELL_S
    octets, _ = feed(police, RETELL_S + 5, 2.0, 0, octets)  # a pause ends the run
    octets, verdicts = feed(police, RETELL_S + 7, 4.0, MAX_BPS * 2, octets)
    assert sum(v.tell for _, v in verdicts) == 1  # a new run is told again


def test_counter_reset_and_no_rate_police_nothing() -> None:
    police = ContentRatePolice(MAX_BPS)
    police.sample(1_000_000, 0.0)
    assert police.sample(10, 0.5) == PoliceVerdict()  # a restarted stream: a new window, no huge rate
    assert police.sample(20, 1.6) == PoliceVerdict() and police.over_since is None
    unlimited = ContentRatePolice(0)
    _, verdicts = feed(unlimited, 0.0, 6.0, 10_000_000, 0)
    assert not any(v.tell or v.drop for _, v in verdicts)
