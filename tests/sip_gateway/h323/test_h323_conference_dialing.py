"""Dial-out (console invite/hang-up), dial-in by IP with the DTMF IVR and PIN, flow control,
and the bad paths: bad invites, capability mismatch, silent and absent peers, release in every
state. Each call is a real H.323 call over loopback TCP with RTP media."""
from __future__ import annotations

import asyncio
import itertools
import shutil
import socket
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core.runtime import CoreServices
from mcu.legs.h323 import bitrate_for_pane
from mcu.legs.h323_bridge import H323Bridge
from mcu.legs.h323_settings import parse_address
from sip_gateway.h323.capabilities import DEFAULT_FORMATS, Codec, MediaFormat
from sip_gateway.h323.events import CallConnected, CallReleased, ChannelOpened, MasterSlaveDetermined
from sip_gateway.h323.h245 import H245Session
from sip_gateway.h323.q931 import Cause
from tests.sip_gateway.h323.h323_conference_kit import (
    RED,
    Mcu,
    OtherSite,
    Terminal,
    amplitude_at,
    free_port,
    start_mcu,
    stop_mcu,
)

CONFERENCE = "80000001"


def status(mcu: Mcu, site_id: str, conference: str = CONFERENCE) -> str | None:
    conf = mcu.conferences.running(conference)
    assert conf is not None
    return {s["site_id"]: s["status"] for s in conf.site_list()}.get(site_id)


async def eventually(predicate: object, seconds: float = 10.0) -> None:
    assert callable(predicate)
    async with asyncio.timeout(seconds):
        for _ in itertools.count():  # polling: the conditions span several objects
            if predicate():
                return
            await asyncio.sleep(0.05)


async def hears(terminal: Terminal, freq: float, seconds: float = 8.0) -> None:
    """The terminal received a tone of ``freq`` within the last half second (IVR prompts)."""
    def tone_now() -> bool:
        recent = terminal.audio[-25:]
        return len(recent) == 25 and amplitude_at(np.concatenate(recent), freq) > 50
    await terminal.until(tone_now, seconds)
    terminal.audio.clear()  # the next prompt must be a new one


async def clean(bridge: H323Bridge) -> None:
    """Every call gone and every bound RTP port closed."""
    await eventually(lambda: not bridge.sites and not bridge.ports.reserved, 10)


async def test_dial_out_invite_flow_control_and_hang_up(services: CoreServices) -> None:
    mcu = await start_mcu(services, free_port())
    # The room's line stated (as a plan entry's line_kbps would): an unstated one starts low (CIF).
    mcu.bridge.line_kbps = lambda site_id: 2048  # type: ignore[method-assign]
    mcu.bridge.line_known = lambda site_id: True  # type: ignore[method-assign]
    conf = mcu.conferences.running(CONFERENCE)
    assert conf is not None
    other = await OtherSite.join(conf)
    terminal = Terminal(alias="luoding", name="罗定市会议室")
    port = free_port()
    await terminal.listen(port)
    try:
        site = await mcu.bridge.invite(CONFERENCE, "luoding-room", f"127.0.0.1:{port}", alias="8001")
        assert status(mcu, "luoding-room") == "calling"
        await eventually(lambda: status(mcu, "luoding-room") == "joined", 15)
        assert "luoding-room" in conf.room.participants
        await terminal.until(lambda: len(terminal.frames) > 2, 15)
        rgb = terminal.frames[-1].to_ndarray(format="rgb24")
        assert ((abs(rgb.astype(int) - RED).sum(axis=2) < 90).mean()) > 0.05  # the other site's pane
        # flowControlCommand below the 640x360 encoder's rate: the site moves to the CIF encoder.
        assert site.site is not None and site.site.video is not None
        assert (site.site.video.width, site.site.video.height) == (640, 360)
        incoming = [e.channel for e in terminal.of(ChannelOpened)
                    if isinstance(e, ChannelOpened) and not e.channel.outgoing and e.channel.session_id == 2]
        assert terminal.handle is not None
        terminal.handle.flow_control(incoming[0].number, 256_000)
        await eventually(lambda: site.flow_cap_bps == 256_000, 5)
        assert (site.site.video.width, site.site.video.height) == (352, 288)
        assert site.extra_stats()["flow_control_bps"] == 256_000
        frames_before = len(terminal.frames)
        await terminal.until(lambda: len(terminal.frames) > frames_before + 2 and
                             (terminal.frames[-1].width, terminal.frames[-1].height) == (352, 288), 10)
        # Bad invites change nothing.
        for args, message in [((CONFERENCE, "luoding-room", f"127.0.0.1:{port}"), "已在会议中"),
                              (("99999999", "x", "127.0.0.1"), "会议未在进行"),
                              ((CONFERENCE, "x y", "127.0.0.1"), "无效的会场标识"),
                              ((CONFERENCE, "x", "127.0.0.1:99999"), "无效的端口"),
                              ((CONFERENCE, "x", "bad host!"), "无效的 H.323 地址"),
                              ((CONFERENCE, "x", ""), "缺少")]:
            with pytest.raises(ValueError, match=message):
                await mcu.bridge.invite(*args)
        assert status(mcu, "x") is None and len(mcu.bridge.sites) == 1
        # Hang up from the console.
        assert await mcu.bridge.hangup(CONFERENCE, "luoding-room") is True
        assert await mcu.bridge.hangup(CONFERENCE, "luoding-room") is False
        await eventually(lambda: status(mcu, "luoding-room") == "left")
        await terminal.until(lambda: bool(terminal.of(CallReleased)))
        released = terminal.of(CallReleased)[0]
        assert isinstance(released, CallReleased) and released.cause == Cause.NORMAL_CALL_CLEARING
        await clean(mcu.bridge)
        # Redial calls the last address again; the chair removing the site hangs the call up.
        redialled = await mcu.bridge.redial(CONFERENCE, "luoding-room")
        await eventually(lambda: redialled.site is not None, 15)  # joined, media started
        assert status(mcu, "luoding-room") == "joined"
        conf.room.remove("luoding-room")
        await terminal.until(lambda: len(terminal.of(CallReleased)) == 2, 10)
        await eventually(lambda: status(mcu, "luoding-room") == "left")
        await clean(mcu.bridge)
        with pytest.raises(ValueError, match="没有可重拨"):
            await mcu.bridge.redial(CONFERENCE, "never-called")
        # The site plan's H.323 endpoints are the default addresses.
        room = next(r for r in services.plan.meeting_rooms if any(e.protocol == "h323" for e in r.endpoints))
        planned = mcu.bridge.plan_address(room.id)
        assert planned is not None and planned == (room.name, room.endpoints[0].address)
        assert mcu.bridge.plan_address("no-such-room") is None
    finally:
        other.stop()
        await terminal.close()
        await stop_mcu(mcu)


async def test_console_adds_an_h323_site_by_address(services: CoreServices) -> None:
    from mcu.conferences import DialError
    from mcu.legs.h323_bridge import H323SiteDialer

    mcu = await start_mcu(services, free_port())
    mcu.bridge.config.t303_setup = 1.0
    mcu.conferences.register_dialer("h323", H323SiteDialer(mcu.bridge))
    terminal = Terminal(alias="tongle", name="通乐村委")
    port = free_port()
    await terminal.listen(port)
    try:
        site_id, protocol = await mcu.conferences.dial_address(CONFERENCE, f"h323:8009@127.0.0.1:{port}",
                                                               "通乐村委", "chair")
        assert protocol == "h323" and site_id.startswith("h323-")
        await eventually(lambda: status(mcu, site_id) == "joined", 15)
        await terminal.until(lambda: len(terminal.frames) > 2, 15)
        with pytest.raises(DialError) as refused:  # nobody listens there: refused, shown as failed
            await mcu.conferences.dial_address(CONFERENCE, f"127.0.0.1:{free_port()}", "", "chair")
        assert refused.value.code == "unavailable"
        with pytest.raises(DialError) as bad:
            await mcu.conferences.dial_address(CONFERENCE, "h323:", "", "chair")
        assert bad.value.code == "bad_address"
        assert await mcu.bridge.hangup(CONFERENCE, site_id) is True
        await eventually(lambda: status(mcu, site_id) == "left")
    finally:
        await terminal.close()
        await stop_mcu(mcu)


async def test_dial_out_to_absent_and_silent_peers_fails(services: CoreServices) -> None:
    mcu = await start_mcu(services, free_port())
    mcu.bridge.config.t303_setup = 1.0
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        with pytest.raises(ConnectionError):
            await mcu.bridge.invite(CONFERENCE, "xinxing-room", f"127.0.0.1:{free_port()}", alias="8002")
        assert status(mcu, "xinxing-room") == "failed"
        await mcu.bridge.invite(CONFERENCE, "yunan-room", f"127.0.0.1:{silent.getsockname()[1]}", alias="8003")
        assert status(mcu, "yunan-room") == "calling"
        await eventually(lambda: status(mcu, "yunan-room") == "failed", 5)  # T303: no answer to Setup
        # Hung up by the console while still calling: back to idle.
        await mcu.bridge.invite(CONFERENCE, "luoding-room", f"127.0.0.1:{silent.getsockname()[1]}", alias="8004")
        assert await mcu.bridge.hangup(CONFERENCE, "luoding-room") is True
        await eventually(lambda: status(mcu, "luoding-room") == "idle", 5)
        await clean(mcu.bridge)
    finally:
        silent.close()
        await stop_mcu(mcu)


async def test_dial_in_by_ip_with_ivr_and_pin(services: CoreServices) -> None:
    mcu = await start_mcu(services, free_port())
    record = await mcu.conferences.create(name="防汛会商", actor="chair", pin="2468")
    await mcu.conferences.start_conference(record.id, actor="chair")
    terminal = Terminal(alias="yunan")
    try:
        await terminal.dial(mcu.address, None)  # by IP: no number, no alias
        await terminal.until(lambda: bool(terminal.of(CallConnected)) and bool(terminal.of(MasterSlaveDetermined)))
        assert terminal.handle is not None
        await hears(terminal, 660)  # the tone prompt: enter the conference id
        terminal.handle.send_user_input("12345678#")  # no such conference: asked again
        await hears(terminal, 400)  # invalid
        await hears(terminal, 660)
        terminal.handle.send_user_input(f"{record.id}#")
        await hears(terminal, 880)  # enter the PIN
        terminal.handle.send_user_input("1111#")  # wrong PIN: asked again
        await hears(terminal, 400)
        await hears(terminal, 880)
        assert not mcu.bridge.sites or all(s.site is None for s in mcu.bridge.sites)
        terminal.handle.send_user_input("2468#")
        await hears(terminal, 784)  # joining: C-E-G
        await eventually(lambda: status(mcu, "h323-yunan", record.id) == "joined", 10)
        terminal.handle.release()
        await eventually(lambda: status(mcu, "h323-yunan", record.id) == "left")
        await clean(mcu.bridge)
    finally:
        await terminal.close()
        await stop_mcu(mcu)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing (make test installs it as root)")
async def test_ivr_speaks_after_its_beeps(services: CoreServices, tmp_path: Path) -> None:
    from mcu.legs.prompts import PromptLibrary

    mcu = await start_mcu(services, free_port(), prompts=PromptLibrary(tmp_path / "prompts").all())
    terminal = Terminal(alias="yunan")
    try:
        await terminal.dial(mcu.address, None)  # by IP: the IVR asks for the conference id
        await hears(terminal, 660)              # its beeps first...
        await asyncio.sleep(2.0)                # ...then 请输入会议号，以井号键结束
        speech = np.concatenate(terminal.audio[-75:]).astype(np.float64)  # the last 1.5 s
        frames = speech[: len(speech) // 960 * 960].reshape(-1, 960)
        voiced = np.sqrt((frames ** 2).mean(axis=1)) > 300
        assert voiced.mean() > 0.3, voiced.mean()  # the beeps ended > 1.5 s ago: beeps alone are silent here
    finally:
        await terminal.close()
        await stop_mcu(mcu)


async def test_dial_in_by_number_to_pin_conference_and_ivr_gives_up(services: CoreServices) -> None:
    mcu = await start_mcu(services, free_port())
    record = await mcu.conferences.create(name="应急指挥", actor="chair", pin="1357")
    await mcu.conferences.start_conference(record.id, actor="chair")
    mcu.bridge.settings = type(mcu.bridge.settings)(**{**mcu.bridge.settings.__dict__, "ivr_attempts": 2})
    good, bad = Terminal(alias="yunan"), Terminal(alias="luoding")
    try:
        await good.dial(mcu.address, record.id)  # by number: only the PIN is asked for
        await good.until(lambda: bool(good.of(MasterSlaveDetermined)))
        assert good.handle is not None
        good.handle.send_user_input("1357#")
        await eventually(lambda: status(mcu, "h323-yunan", record.id) == "joined", 10)
        await bad.dial(mcu.address, record.id)
        await bad.until(lambda: bool(bad.of(MasterSlaveDetermined)))
        assert bad.handle is not None
        bad.handle.send_user_input("0000#")
        await asyncio.sleep(0.3)
        bad.handle.send_user_input("0001#")  # second wrong PIN: released
        await bad.until(lambda: bool(bad.of(CallReleased)))
        released = bad.of(CallReleased)[0]
        assert isinstance(released, CallReleased) and released.cause == Cause.CALL_REJECTED
        assert status(mcu, "h323-luoding", record.id) is None
    finally:
        await good.close()
        await bad.close()
        await stop_mcu(mcu)


async def test_capability_mismatch_releases_with_cause_88(services: CoreServices) -> None:
    mcu = await start_mcu(services, free_port())
    video_only = Terminal(formats=(MediaFormat(Codec.H261, max_bitrate=3840, mpi=(("cifMPI", 1),)),),
                          fast_start=False, tunnelling=True)
    try:
        await video_only.dial(mcu.address, CONFERENCE)
        await video_only.until(lambda: bool(video_only.of(CallReleased)))
        released = video_only.of(CallReleased)[0]
        assert isinstance(released, CallReleased) and released.cause == Cause.INCOMPATIBLE_DESTINATION
        assert not any(s["protocol"] == "h323" and s["status"] == "joined"
                       for s in mcu.conferences.running(CONFERENCE).site_list())  # type: ignore[union-attr]
        await clean(mcu.bridge)
    finally:
        await video_only.close()
        await stop_mcu(mcu)


@pytest.mark.parametrize("when", ["after-setup", "in-ivr", "joined"])
async def test_release_in_every_state_cleans_up(services: CoreServices, when: str) -> None:
    mcu = await start_mcu(services, free_port())
    terminal = Terminal(alias="xinxing")
    try:
        await terminal.dial(mcu.address, None if when == "in-ivr" else CONFERENCE)
        assert terminal.handle is not None
        if when == "in-ivr":
            await terminal.until(lambda: bool(terminal.of(CallConnected)))
        elif when == "joined":
            await eventually(lambda: status(mcu, "h323-xinxing") == "joined", 10)
        terminal.handle.release()
        await clean(mcu.bridge)
        assert status(mcu, "h323-xinxing") in (None, "left")
    finally:
        await terminal.close()
        await stop_mcu(mcu)


def test_bitrate_for_pane() -> None:
    assert bitrate_for_pane((320, 180), 1_920_000) == 384_000
    assert bitrate_for_pane(None, 1_920_000) == 384_000  # not shown anywhere: keep it cheap
    assert bitrate_for_pane((640, 360), 1_920_000) == 600_000
    assert bitrate_for_pane((1280, 720), 1_920_000) is None
    assert bitrate_for_pane((320, 180), 256_000) is None  # already below the cap


def test_parse_address() -> None:
    assert parse_address("10.1.2.3") == parse_address("10.1.2.3:1720")
    assert parse_address("mcu.example:1721").port == 1721
    for bad in ("", "a b", "host:0", "host:70000", "host:x"):
        with pytest.raises(ValueError):
            parse_address(bad)


class _AdvertisesVideoButRejectsIt(H245Session):
    """A room system that lists H.264 in its capabilities but refuses the video channel
    (as some do when their video input is busy): OLC reject with dataTypeNotSupported."""

    advertised: Sequence[MediaFormat] = DEFAULT_FORMATS

    def send_capabilities(self, now: float, formats: Sequence[MediaFormat] | None = None) -> None:
        super().send_capabilities(now, self.advertised if formats is None else formats)


async def test_video_olc_rejected_site_joins_audio_only(services: CoreServices) -> None:
    mcu = await start_mcu(services, free_port())
    conf = mcu.conferences.running(CONFERENCE)
    assert conf is not None
    other = await OtherSite.join(conf)
    terminal = Terminal(alias="yunan", fast_start=False)
    try:
        handle = await terminal.dial(mcu.address, CONFERENCE)
        call = handle.call
        audio_only = [f for f in DEFAULT_FORMATS if not f.codec.is_video]
        call.h245 = _AdvertisesVideoButRejectsIt(replace(call.config.h245_config(call.media_ports),
                                                         formats=audio_only), call.rng)
        await eventually(lambda: any(s.site is not None for s in mcu.bridge.sites), 15)
        assert status(mcu, "h323-yunan") == "joined"
        site = next(iter(mcu.bridge.sites))
        assert site.site is not None and site.site.video is None and site.media.outgoing_video is None
        assert site.rejected == ["2:dataTypeNotSupported"]
        assert site.extra_stats()["rejected_channels"] == ["2:dataTypeNotSupported"]
        await terminal.until(lambda: len(terminal.audio) > 50, 10)
        pcm = np.concatenate(terminal.audio[-25:])
        assert amplitude_at(pcm, 440) > 20  # the other site is heard
        assert not terminal.frames
        terminal.handle.release()  # type: ignore[union-attr]
        await clean(mcu.bridge)
    finally:
        other.stop()
        await terminal.close()
        await stop_mcu(mcu)
