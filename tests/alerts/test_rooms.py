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

import asyncio
import glob
import shutil
import socket
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
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
from tests.conftest import make_settings
from tests.sip_gateway.conference_helpers import DEMO, start_bridge, until
from tests.sip_gateway.peers import Baresip

pytestmark = [pytest.mark.slow]
DEMO_PLAN = Path(__file__).resolve().parents[2] / "config" / "demo"
IDLE_ROOM, IDLE_AREA = "445381-05-room", "445381-05"  # 罗镜镇
BUSY_ROOM, BUSY_AREA = "445322-12-room", "445322-12"  # 连滩镇


class RecordingBaresip(Baresip):
    """baresip that also dumps the audio it decodes (what the room hears) to WAV (module sndfile)."""

    def write_config(self) -> None:
        super().write_config()
        with open(self.home / "config", "a") as fh:
            fh.write(f"module sndfile.so\nsnd_path {self.home}\n")

    def heard(self) -> np.ndarray:
        files = sorted(glob.glob(str(self.home / "dump-*-dec.wav")))
        assert files, f"baresip wrote no decoded-audio dump in {self.home}"
        with wave.open(files[-1]) as w:
            data = np.frombuffer(w.readframes(w.getnframes()), np.int16)
            return data.reshape(-1, w.getnchannels())[:, 0] if w.getnchannels() > 1 else data


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SnapshotBaresip(Baresip):
    """baresip whose decoded incoming video can be captured: the snapshot module writes the next
    frame it decodes to ``snapshot-recv-<time>.png``, on the command ``/snapshot`` sent to its UDP
    console (module cons on 127.0.0.1)."""

    cons_port: int = field(default_factory=free_udp_port)

    def write_config(self) -> None:
        super().write_config()
        with open(self.home / "config", "a") as fh:
            fh.write(f"module cons.so\ncons_listen 127.0.0.1:{self.cons_port}\n")

    async def seen(self, keep: Path | None = None) -> np.ndarray:
        """The next frame baresip decodes from the call, as RGB (the PNG copied to `keep` if given)."""
        from PIL import Image

        for old in self.home.glob("snapshot-*.png"):
            old.unlink()
        written = sum("wrote snapshot-recv" in line for line in self.log)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"/snapshot\n", ("127.0.0.1", self.cons_port))
        async with asyncio.timeout(10):
            while sum("wrote snapshot-recv" in line for line in self.log) <= written:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        (png,) = self.home.glob("snapshot-recv-*.png")
        async with asyncio.timeout(5):  # baresip logs "wrote" before the file is closed
            while True:
                try:
                    with Image.open(png) as img:
                        rgb = np.asarray(img.convert("RGB")).astype(int)
                    break
                except OSError:
                    await asyncio.sleep(0.05)
        if keep is not None:
            shutil.copyfile(png, keep)
        return rgb


def peer_banner_rows(frame: np.ndarray) -> np.ndarray:
    """The bottom rows of a decoded frame that lie inside the banner bar at any size (the bar is 1/12
    of the height, at least 20 rows, of the composite, which the room's encoder scales)."""
    h = frame.shape[0]
    return frame[h - max(4, h // 16): h - 2]


async def banner_at_peer(peer: SnapshotBaresip, shown: bool, keep: Path, within: float = 15.0) -> tuple[float, float]:
    """Snapshots of what the room decodes until the banner is (or is no longer) in them; the last one
    is kept in `keep` (test-artifacts)."""
    seen = (0.0, 0.0)
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        seen = looks_like_banner(peer_banner_rows(await peer.seen(keep)), tolerance=60)
        print(f"the room decodes: banner {'wanted' if shown else 'not wanted'}, red {seen[0]:.2f}, "
              f"white {seen[1]:.3f} ({keep.name})")
        if (seen[0] > 0.5) == shown:
            return seen
        await asyncio.sleep(0.5)
    raise AssertionError(f"the room's decoded video {'never showed' if shown else 'still shows'} the banner: "
                         f"red {seen[0]:.2f}, white {seen[1]:.3f}")


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


def looks_like_banner(rows: np.ndarray, tolerance: int = 40) -> tuple[float, float]:
    """Share of the rows' pixels in the banner's red and in its white text colour."""
    red = np.all(np.abs(rows - np.array(Compositor.BANNER_COLOUR)) < tolerance, axis=-1).mean()
    white = np.all(rows > 200, axis=-1).mean()
    return float(red), float(white)


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
        heard = idle.heard().astype(np.float64)
        frames = heard[: len(heard) // 960 * 960].reshape(-1, 960)
        loud = (np.sqrt((frames ** 2).mean(axis=1)) > 500).sum()
        assert loud * 0.02 > 1.5, f"only {loud * 0.02:.2f} s of the received audio carried sound"
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
