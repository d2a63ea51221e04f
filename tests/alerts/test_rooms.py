"""Warnings reach meeting rooms, end to end with real SIP room systems (baresip) and the real MCU:

* a township room already in a running conference (baresip called into the demo conference) gets
  the warning as a banner: the conference's composite (what the room's encoder sends) has the red
  banner bar with white text in its bottom rows, which it did not have before, and loses it on Cancel;
  and the room itself sees it: the frames baresip decodes from the MCU's H.264 (its snapshot module,
  asked over its UDP console) show the bar after approval and not before, nor after the Cancel;
* an idle township room (another baresip, auto-answer) is called into a warning broadcast conference
  and hears the spoken warning: its decoded received audio (baresip's sndfile dump) carries speech
  energy, and the delivery is stored as called_answered;
* an unapproved warning sends nothing: no delivery row, no banner, no call.
"""
from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from alerts import capability
from alerts.lifecycle import Area, Content
from config.site_plan import load_site_plan
from core.runtime import CoreServices
from mcu.compositor import Compositor
from mcu.conferences import ConferenceService
from mcu.legs.sip_bridge import SipSiteDialer
from mcu.room import Room, RoomSettings
from mcu.warning_rooms import McuWarningRooms
from tests.alerts.room_peers import (
    RecordingBaresip,
    SnapshotBaresip,
    banner_at_peer,
    looks_like_banner,
    loud_seconds,
)
from tests.conftest import make_settings
from tests.sip_gateway.conference_helpers import DEMO, start_bridge, until

pytestmark = [pytest.mark.slow]
DEMO_PLAN = Path(__file__).resolve().parents[2] / "config" / "demo"
IDLE_ROOM, IDLE_AREA = "445381-05-room", "445381-05"  # 罗镜镇
BUSY_ROOM, BUSY_AREA = "445322-12-room", "445322-12"  # 连滩镇


@pytest.fixture
async def core(seeded_db_url: str, tmp_path: Path) -> AsyncIterator[tuple[CoreServices, RecordingBaresip]]:
    for tool in ("baresip", "espeak-ng"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing (Makefile TEST_DEBS)")
    idle = RecordingBaresip(tmp_path / "idle", tone_hz=440, auto_answer=True)
    plan_dir = tmp_path / "plan"
    shutil.copytree(DEMO_PLAN, plan_dir)
    text = (plan_dir / "yunfu.toml").read_text()
    old = f'address = "sip:{IDLE_ROOM}@127.0.0.1"'
    assert old in text
    (plan_dir / "yunfu.toml").write_text(text.replace(old, f'address = "sip:baresip@127.0.0.1:{idle.sip_port}"'))
    load_site_plan(plan_dir / "yunfu.toml")  # still a valid plan
    started = await CoreServices.start(make_settings(seeded_db_url, tmp_path / "var", site_plan=plan_dir / "yunfu.toml"))
    yield started, idle
    await started.stop()


def banner_rows(conf_room: Room) -> np.ndarray:
    frame: np.ndarray = conf_room.render("broadcast").frame.to_ndarray(format="rgb24").astype(int)
    h = frame.shape[0]
    bar = Compositor.banner_height(Compositor.__new__(Compositor), h)  # the bar's height for this frame
    return frame[h - bar + 2: h - 2]


def content(**kw: object) -> Content:
    c = Content(event="暴雨", headline="罗镜镇连滩镇暴雨红色预警", description="未来3小时将出现特大暴雨。",
                instruction="立即转移低洼地带人员。", severity="Extreme", urgency="Immediate", certainty="Likely",
                areas=(Area("罗镜镇", adcodes=(IDLE_AREA,)), Area("连滩镇", adcodes=(BUSY_AREA,))),
                expires=datetime.now(UTC) + timedelta(hours=3))
    return Content(**{**c.__dict__, **kw})


async def test_warning_reaches_rooms_banner_and_broadcast_call(core: tuple[CoreServices, RecordingBaresip],
                                                               tmp_path: Path, artifacts_dir: Path) -> None:
    services, idle = core
    conferences = ConferenceService(services, room_settings=RoomSettings(fps=10))
    await conferences.start()
    bridge = await start_bridge(services, conferences)
    conferences.register_dialer("sip", SipSiteDialer(bridge))
    busy = SnapshotBaresip(tmp_path / "busy", tone_hz=880, auto_answer=True)
    cap = await capability.start(services, McuWarningRooms(conferences, answer_timeout=30), sweep_every=0)
    svc = cap.service
    try:
        await busy.start()
        await idle.start()
        await busy.wait_log("baresip is ready")
        await idle.wait_log("baresip is ready")
        conf = conferences.running(DEMO)
        assert conf is not None
        await bridge.invite(DEMO, site_id=BUSY_ROOM, uri=f"sip:baresip@127.0.0.1:{busy.sip_port}", name="连滩镇")
        await until(lambda: conf.sites[BUSY_ROOM].status == "joined", 30, "the busy room to join the conference")
        before = looks_like_banner(banner_rows(conf.room))
        assert before[0] < 0.2, before
        await busy.wait_log("video: receiving with resolution", 30)
        await banner_at_peer(busy, shown=False, keep=artifacts_dir / "warning-room-before.png")

        # drafted and submitted, not approved: nothing is sent anywhere
        w = await svc.draft(content(), "dispatcher", "dispatcher")
        await svc.submit(w["id"], "dispatcher", "dispatcher")
        await svc.drain()
        assert await services.db.fetchval("SELECT count(*) FROM warning_deliveries") == 0
        assert conf.room.banner is None
        assert len(conferences.running_conferences()) == 1

        await svc.approve(w["id"], "leader", "leader")
        await until(lambda: conf.room.banner is not None, 10, "the banner on the busy room's conference")
        await svc.drain()
        rows = {d["recipient"]: d for d in await svc.deliveries(w["id"])}
        assert rows[BUSY_ROOM]["status"] == "banner_shown", rows
        assert rows[IDLE_ROOM]["status"] == "called_answered", rows
        assert set(rows) == {BUSY_ROOM, IDLE_ROOM}
        red, white = looks_like_banner(banner_rows(conf.room))
        assert red > 0.5 and white > 0.005, (red, white)
        banner = conf.room.banner
        assert banner is not None and banner.text.startswith("【预警】")
        # what the room decodes has the bar and its text
        red, white = await banner_at_peer(busy, shown=True, keep=artifacts_dir / "warning-room-banner.png")
        assert white > 0.03, (red, white)  # the text: ~0.11 with it, ~0.01 without (the site label)

        # the idle room heard speech: energy well above silence over a few seconds of its decoded audio
        loud = loud_seconds(*idle.heard())
        assert loud > 1.5, f"only {loud:.2f} s of the received audio carried sound"
        assert len(conferences.running_conferences()) == 1  # the broadcast conference ended

        # Cancel (approved) removes the banner
        await svc.propose_cancel(w["id"], "dispatcher", "dispatcher", "雨停")
        await svc.approve(w["id"], "leader", "leader")
        await svc.drain()
        assert conf.room.banner is None
        assert looks_like_banner(banner_rows(conf.room))[0] < 0.2
        await banner_at_peer(busy, shown=False, keep=artifacts_dir / "warning-room-after-cancel.png")
        cancel = [d for d in await svc.deliveries(w["id"]) if d["status"] == "cleared"]
        assert {d["recipient"] for d in cancel} == {BUSY_ROOM, IDLE_ROOM}

        # a warning that expires takes its banner down too (no CAP message is sent for expiry)
        w2 = await svc.draft(content(areas=(Area("连滩镇", adcodes=(BUSY_AREA,)),)), "dispatcher", "dispatcher")
        await svc.submit(w2["id"], "dispatcher", "dispatcher")
        await svc.approve(w2["id"], "leader", "leader")
        await svc.drain()
        assert conf.room.banner is not None
        later = datetime.now(UTC) + timedelta(hours=4)
        svc.clock = lambda: later
        assert await svc.expire_due() == [w2["id"]]
        await svc.drain()
        assert conf.room.banner is None
        assert [m["msg_type"] for m in await svc.messages(w2["id"])] == ["Alert"]
    finally:
        await cap.stop()
        await bridge.stop()
        await busy.stop()
        await idle.stop()
        await conferences.stop()
