"""No loop-back on a cascade link, in the room itself (pixels and FFT, no network).

A link's primary call ``cascade-x`` and its backup ``cascade-x-backup`` form one group: neither
is sent its own picture or sound, nor the other's (during a make-before-break switch both are in
the room, and each carries the same far end). A bridge room sends nobody their own picture.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import Settings
from config.site_plan import load_site_plan
from mcu.cascade.naming import backup_site_id, link_name, link_site_id, sip_password
from mcu.cascade.node_check import cascade_problems
from mcu.room import LOOP_FREE_PREFIX, Room, RoomSettings
from tests.cascade.cluster import one_county
from tests.mcu.mcu_helpers import amplitude_at, identify, source_frame, tone, yuv_at

ROOT = Path(__file__).resolve().parents[2]
SITES = {"city-ep": 0, "cascade-county-a": 6, "cascade-county-a-backup": 12, "local": 18}
FREQ = {"city-ep": 500.0, "cascade-county-a": 900.0, "cascade-county-a-backup": 1300.0, "local": 1700.0}


def link_room() -> Room:
    room = Room("81000001", settings=RoomSettings(width=640, height=360))
    for pid in SITES:
        room.join(pid, pid)
    for pid in ("cascade-county-a", "cascade-county-a-backup"):
        room.set_loop_free(pid, group="cascade-county-a")
    for pid, c in SITES.items():
        room.participants[pid].push_video(source_frame(c, 320, 180))
    return room


def colours_in(room: Room, view: str) -> set[int]:
    plan = room.view_plan(view)
    frame = room.render(view).frame
    found = set()
    for pane in plan.panes:
        x, y = pane.rect.centre
        c = identify(yuv_at(frame, x, y))
        if c is not None:
            found.add(c)
    return found


def test_link_view_has_neither_its_own_nor_its_partners_picture() -> None:
    room = link_room()
    for link in ("cascade-county-a", "cascade-county-a-backup"):
        view = room.view_for(link)
        assert view == LOOP_FREE_PREFIX + link
        assert colours_in(room, view) == {SITES["city-ep"], SITES["local"]}
    # Everyone else still sees the link (that is how the county is in the city's picture).
    assert colours_in(room, room.view_for("local")) == set(SITES.values())


def test_broadcasting_the_link_shows_it_everywhere_but_on_the_link() -> None:
    room = link_room()
    room.broadcast("cascade-county-a")
    assert colours_in(room, room.view_for("local")) == {SITES["cascade-county-a"]}
    shown = colours_in(room, room.view_for("cascade-county-a"))
    assert len(shown) == 1 and shown <= {SITES["city-ep"], SITES["local"]}
    # Select-view of its own backup is refused the same way.
    room.broadcast(None)
    room.select_view("cascade-county-a", "cascade-county-a-backup")
    assert SITES["cascade-county-a-backup"] not in colours_in(room, room.view_for("cascade-county-a"))


def test_link_mix_has_neither_its_own_nor_its_partners_sound() -> None:
    room = link_room()
    for i in range(3):
        for pid in SITES:
            room.participants[pid].push_audio(tone(FREQ[pid], 4000, i))
        out = room.audio_tick()
    mixes = dict(zip(out.ids, out.mixes, strict=True))
    for link in ("cascade-county-a", "cascade-county-a-backup"):
        heard = {pid: amplitude_at(mixes[link], f) for pid, f in FREQ.items()}
        assert heard["city-ep"] > 1000 and heard["local"] > 1000, heard
        assert heard["cascade-county-a"] < 50 and heard["cascade-county-a-backup"] < 50, heard
    local = {pid: amplitude_at(mixes["local"], f) for pid, f in FREQ.items()}
    assert local["cascade-county-a"] > 1000 and local["cascade-county-a-backup"] > 1000 and local["local"] < 50


def test_bridge_room_sends_nobody_their_own_picture() -> None:
    room = Room("981000001", settings=RoomSettings(width=640, height=360))
    room.all_loop_free = True
    for pid, c in (("bridge-city", 0), ("bridge-county-a", 6)):
        room.join(pid, pid)
        room.participants[pid].push_video(source_frame(c, 320, 180))
    assert colours_in(room, room.view_for("bridge-city")) == {6}
    assert colours_in(room, room.view_for("bridge-county-a")) == {0}


def test_removing_loop_free_restores_the_plain_view() -> None:
    room = link_room()
    room.set_loop_free("cascade-county-a", False)
    assert room.view_for("cascade-county-a") == "broadcast"
    assert "cascade-county-a" not in room.link_groups


# ---------------------------------------------------------------- names, secrets, node checks
def test_names_and_passwords() -> None:
    assert link_site_id("county-a") == "cascade-county-a"
    assert backup_site_id("county-a") == "cascade-county-a-backup"
    a, b = sip_password("t1", "county-a"), sip_password("t1", "county-b")
    assert a != b and a == sip_password("t1", "county-a") and a != sip_password("t2", "county-a")
    with pytest.raises(ValueError):
        sip_password("", "county-a")


@pytest.fixture
def cascade_plan(tmp_path: Path) -> Path:
    cluster = one_county(tmp_path, lambda node: "postgresql:///unused")
    return cluster.write_plan()


def test_link_name_is_the_area_name(cascade_plan: Path) -> None:
    plan = load_site_plan(cascade_plan)
    node = plan.node("county-a")
    assert node is not None and link_name(plan, node) == "罗定市级联"


def test_node_checks(cascade_plan: Path) -> None:
    plan = load_site_plan(cascade_plan)
    ok = Settings(site_plan=cascade_plan, node_name="county-a", cascade={"token": "s"})
    assert cascade_problems(ok, plan) == []
    assert cascade_problems(Settings(site_plan=cascade_plan, node_name="telecom"), plan) == []
    missing = cascade_problems(Settings(site_plan=cascade_plan, node_name="nobody"), plan)
    assert len(missing) == 1 and "nobody" in missing[0] and "county-a" in missing[0]
    no_token = cascade_problems(Settings(site_plan=cascade_plan, node_name="city"), plan)
    assert len(no_token) == 1 and no_token[0].startswith("cascade.token")


def test_two_links_may_not_share_a_bridge_number(cascade_plan: Path) -> None:
    text = cascade_plan.read_text(encoding="utf-8")
    shared = cascade_plan.with_name("shared.toml")
    # county B with the same backup template as county A: both links would meet in one bridge room
    template = next(line for line in text.splitlines() if line.startswith("backup = "))
    shared.write_text(text + f'\n[[nodes]]\nname = "county-b"\nparent = "city"\narea = "445321"\n'
                             f'sip = "10.0.0.3:5060"\n{template}\n', encoding="utf-8")
    plan = load_site_plan(shared)
    problems = cascade_problems(Settings(site_plan=shared, node_name="county-a", cascade={"token": "s"}), plan)
    assert len(problems) == 1 and problems[0].startswith("nodes.county-a.backup")


@pytest.mark.parametrize(("node", "env", "expected"), [
    ("nobody", {"CC_CASCADE__TOKEN": "s"}, "不在站点规划"),
    ("county-a", {}, "cascade.token"),
])
def test_up_refuses_a_bad_node_before_starting(cascade_plan: Path, tmp_path: Path, node: str,
                                               env: dict[str, str], expected: str) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text(f'site_plan = "{cascade_plan}"\nvar_dir = "{tmp_path / "var"}"\n')
    result = subprocess.run([sys.executable, "-m", "commandcenter", "--config", str(settings), "up", "--role", "mcu",
                             "--node-name", node], capture_output=True, text=True, timeout=60, cwd=ROOT,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env})
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert not (tmp_path / "var").exists(), "nothing was started"


def test_only_the_active_call_of_a_link_is_heard() -> None:
    """While a switch overlaps both calls, the far end is mixed once (two copies would comb-filter)."""
    room = link_room()
    room.set_link_active("cascade-county-a", "cascade-county-a")
    for i in range(3):
        for pid in SITES:
            room.participants[pid].push_audio(tone(FREQ[pid], 4000, i))
        out = room.audio_tick()
    local = dict(zip(out.ids, out.mixes, strict=True))["local"]
    assert amplitude_at(local, FREQ["cascade-county-a"]) > 1000
    assert amplitude_at(local, FREQ["cascade-county-a-backup"]) < 50
    assert not room.participants["cascade-county-a-backup"].muted, "the chair's mute state is untouched"
    room.set_link_active("cascade-county-a", None)
    for pid in SITES:
        room.participants[pid].push_audio(tone(FREQ[pid], 4000, 3))
    out = room.audio_tick()
    local = dict(zip(out.ids, out.mixes, strict=True))["local"]
    assert amplitude_at(local, FREQ["cascade-county-a-backup"]) > 1000
