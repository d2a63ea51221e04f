"""Fuzz (bounded, hypothesis): whatever content the lifecycle accepts must build valid CAP 1.2 XML,
so an approval can never fail at send time; whatever it refuses is refused with ``Refused``."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts import codec
from alerts import lifecycle as lc
from alerts.lifecycle import Area, Content, Refused
from dispatch.exchange.cap import validate_cap

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
KNOWN = {"445381", "445381-05"}
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

texts = st.text(max_size=200)
coords = st.floats(-200, 200) | st.sampled_from([float("nan"), float("inf")])
rings = st.tuples(st.lists(st.tuples(coords, coords), max_size=8), st.booleans()).map(
    lambda x: tuple(x[0]) + ((x[0][0],) if x[0] and x[1] else ()))  # closed, or left open
areas = st.builds(Area, desc=texts, polygons=st.lists(rings, max_size=2).map(tuple),
                  circles=st.lists(st.tuples(coords, coords, st.floats(-10, 1000)), max_size=2).map(tuple),
                  adcodes=st.lists(st.sampled_from(["445381", "445381-05", "999", ""]), max_size=2).map(tuple))
GOOD = Content(event="暴雨", headline="暴雨预警", description="将有暴雨。", instruction="", severity="Severe",
               urgency="Expected", certainty="Likely", areas=(Area("罗定市", adcodes=("445381",)),),
               expires=T0 + timedelta(hours=3))


def either(good: object, bad: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    """Mostly a valid value, sometimes a fuzzed one: so accepted contents are common."""
    return st.one_of(st.just(good), st.just(good), bad)


contents = st.builds(
    Content, event=either(GOOD.event, texts), headline=either(GOOD.headline, texts),
    description=either(GOOD.description, texts), instruction=either(GOOD.instruction, texts),
    severity=either("Severe", st.sampled_from(["Extreme", "Severe", "Moderate", "Minor", "Unknown", "Big"])),
    urgency=either("Expected", st.sampled_from(["Immediate", "Expected", "Now"])),
    certainty=either("Likely", st.sampled_from(["Likely", "Sure"])),
    areas=either(GOOD.areas, st.lists(areas, max_size=3).map(tuple)),
    expires=either(GOOD.expires, st.integers(-3600, 40 * 86400).map(lambda s: T0 + timedelta(seconds=s))),
    category=either("Met", st.sampled_from(["Met", "Geo", "Nonsense"])))
accepted = {"n": 0}


@FUZZ
@given(contents)
def test_accepted_content_always_builds_valid_cap(c: Content) -> None:
    try:
        w = lc.draft("w1", "445300000000000", c, "d", "dispatcher", T0, KNOWN)
    except Refused:
        return
    accepted["n"] += 1
    w = lc.approve(lc.submit(w, "d", "dispatcher", T0), "l", "leader", T0)
    w, msg = lc.send(w, "445300000000000_20260601080000_0", T0)
    xml = codec.cap_xml(w, msg, "云浮市")  # raises CapError if the document breaks a CAP rule
    assert validate_cap(xml) == []
    assert codec.warning_from_json(codec.warning_to_json(w)) == w


def test_the_fuzz_accepted_some() -> None:
    """The property above is only worth something if many generated contents were accepted."""
    accepted["n"] = 0
    test_accepted_content_always_builds_valid_cap()
    assert accepted["n"] >= 30, accepted


@FUZZ
@given(texts)
def test_banner_text_is_always_showable(headline: str) -> None:
    """The MCU's banner refuses non-printable text and more than 200 characters: message_text never
    hands it either, whatever headline was accepted."""
    from alerts.service import message_text

    text = message_text(Content(**{**GOOD.__dict__, "headline": headline}))
    assert text.isprintable() and len(text) <= 200
