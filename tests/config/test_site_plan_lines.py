"""Line rates in the site plan: per meeting-room endpoint, per cascade link, a default per protocol."""
from __future__ import annotations

from pathlib import Path

import pytest

from config.errors import ConfigError
from config.settings import DEMO_DIR
from config.site_plan import load_site_plan
from tests.config.test_site_plan_nodes import NODES

DEMO_LINES = "[lines]\nsip = 2048\nh323 = 2048\nwebrtc = 2048\ndemo = 2048\ncascade = 2048\n"


def plan_with(tmp_path: Path, extra: str = "", rooms: str = "", lines: str = DEMO_LINES) -> Path:
    """The demo plan with more meeting rooms, its [lines] replaced and ``extra`` appended."""
    text = (DEMO_DIR / "yunfu.toml").read_text(encoding="utf-8")
    assert DEMO_LINES in text
    text = text.replace(DEMO_LINES, lines).replace("[[conferences]]", rooms + "\n[[conferences]]", 1)
    (tmp_path / "yunfu_counties.geojson").write_bytes((DEMO_DIR / "yunfu_counties.geojson").read_bytes())
    path = tmp_path / "plan.toml"
    path.write_text(text + extra, encoding="utf-8")
    return path

ROOM = '''
[[meeting_rooms]]
id = "luoding-sip"
name = "罗定市分会场（SIP）"
area = "445381"
endpoints = [{ protocol = "sip", address = "sip:ld@10.1.1.9", line_kbps = 768 },
             { protocol = "h323", address = "10.1.1.10", line_kbps = 1024 },
             { protocol = "webrtc" }]
'''


def test_the_demo_plan_has_the_defaults() -> None:
    plan = load_site_plan(DEMO_DIR / "yunfu.toml")
    assert plan.lines.for_protocol("sip") == 2048 and plan.line_kbps("cascade", node="anything") == 2048


def test_endpoint_and_link_rates_and_defaults(tmp_path: Path) -> None:
    nodes = NODES.replace('backup = "sip:9', 'line_kbps = 768\nbackup = "sip:9')
    lines = "[lines]\nsip = 1536\nwebrtc = 1000\ncascade = 2000\n"
    plan = load_site_plan(plan_with(tmp_path, nodes, ROOM, lines))
    assert plan.line_kbps("sip", room_id="luoding-sip") == 768
    assert plan.line_kbps("sip", address="sip:ld@10.1.1.9") == 768
    assert plan.line_kbps("h323", room_id="luoding-sip") == 1024
    assert plan.line_kbps("webrtc", room_id="luoding-sip") == 1000  # endpoint without a rate: the default
    assert plan.line_kbps("sip", room_id="city-main") == 1536  # a room without a SIP endpoint
    assert plan.line_kbps("sip") == 1536  # an unknown caller
    assert plan.line_kbps("sip", address="sip:other@10.0.0.1") == 1536
    assert plan.line_kbps("h323") == 2048  # not set in [lines]: the built-in default
    assert plan.line_kbps("cascade", node="luoding") == 768
    assert plan.line_kbps("cascade", node="city") == 2000  # the root has no uplink of its own
    assert plan.line_kbps("cascade", node="ghost") == 2000
    # what the plan itself names (None: only the default stands in, an unknown line)
    assert plan.configured_line_kbps("sip", room_id="luoding-sip") == 768
    assert plan.configured_line_kbps("webrtc", room_id="luoding-sip") is None
    assert plan.configured_line_kbps("sip", room_id="city-main") is None
    assert plan.configured_line_kbps("sip") is None
    assert plan.configured_line_kbps("cascade", node="luoding") == 768
    assert plan.configured_line_kbps("cascade", node="city") is None


@pytest.mark.parametrize("bad, field", [
    ("line_kbps = 768 }", None),  # the valid case, for contrast
    ("line_kbps = 0 }", "meeting_rooms.10.endpoints.0.line_kbps"),
    ("line_kbps = -768 }", "meeting_rooms.10.endpoints.0.line_kbps"),
    ("line_kbps = 10000000 }", "meeting_rooms.10.endpoints.0.line_kbps"),
    ('line_kbps = "fast" }', "meeting_rooms.10.endpoints.0.line_kbps"),
    ("line_kbps = 7.5 }", "meeting_rooms.10.endpoints.0.line_kbps"),
    ("line_kbs = 768 }", "meeting_rooms.10.endpoints.0.line_kbs"),
])
def test_a_bad_endpoint_rate_is_named(tmp_path: Path, bad: str, field: str | None) -> None:
    room = ROOM.replace("line_kbps = 768 }", bad)
    path = plan_with(tmp_path, rooms=room)
    if field is None:
        load_site_plan(path)
        return
    with pytest.raises(ConfigError) as err:
        load_site_plan(path)
    assert field in str(err.value) and "plan.toml" in str(err.value)


@pytest.mark.parametrize("extra, field", [
    (NODES.replace('backup = "sip:9', 'line_kbps = 10\nbackup = "sip:9'), "nodes.1.line_kbps"),
    (NODES.replace('backup = "sip:9', 'line_kbps = 20000000000\nbackup = "sip:9'), "nodes.1.line_kbps"),
    ("[lines]\nsip = -1\n", "lines.sip"),
    ("[lines]\ncascade = 0\n", "lines.cascade"),
    ("[lines]\nisdn = 128\n", "lines.isdn"),
])
def test_a_bad_link_or_default_rate_is_named(tmp_path: Path, extra: str, field: str) -> None:
    path = plan_with(tmp_path, lines=extra) if extra.startswith("[lines]") else plan_with(tmp_path, extra)
    with pytest.raises(ConfigError) as err:
        load_site_plan(path)
    assert field in str(err.value)
