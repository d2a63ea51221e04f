"""WebRTC legs in process: an aiortc client joins a running conference over a real peer connection.

The client sends a solid-colour camera; what it receives is decoded and checked pixel by pixel.
"""
from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from typing import Any

import pytest
from mcu_helpers import colour, identify, yuv_at

from bench.webrtc_client import ColourCamera, ToneMicrophone, WebRtcTestClient
from mcu.conferences import RunningConference
from mcu.legs.webrtc import WebRtcConfig, WebRtcLeg, WebRtcLegs
from mcu.media import solid_yuv_frame
from mcu.room import RoomSettings

CONFIG = WebRtcConfig(host_addresses=("127.0.0.1",))


@pytest.fixture
def room_settings() -> RoomSettings:
    return RoomSettings(width=640, height=360, fps=10)  # the rooms of the shared `conferences` fixture


async def _join(legs: WebRtcLegs, conf: RunningConference, pid: str, colour_index: int | None,
                codec: str | None = None) -> tuple[WebRtcTestClient, WebRtcLeg]:
    camera = ColourCamera(colour(colour_index), 320, 180, fps=10) if colour_index is not None else None
    client = WebRtcTestClient(camera, ToneMicrophone(440 + 110 * (colour_index or 0)))
    leg = legs.create(conf, participant_id=pid, name=pid)
    answer = await leg.answer(await client.offer(), codec=codec)
    await client.accept(answer)
    return client, leg


async def _wait_for(predicate, within: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.1)


def _panes(frame: Any, xs: list[int]) -> list[int | None]:
    return [identify(yuv_at(frame, x, frame.height // 2, radius=6), tolerance=20) for x in xs]


def _sees(client: WebRtcTestClient, expected: list[int | None], xs_frac: list[float]) -> bool:
    frame = client.latest
    if frame is None:
        return False
    return _panes(frame, [int(f * frame.width) for f in xs_frac]) == expected


@pytest.mark.parametrize("codec", ["h264", "vp8"])
async def test_client_receives_composite_with_own_pane_and_others(conference: RunningConference, codec: str) -> None:
    legs = WebRtcLegs(CONFIG)
    a, leg_a = await _join(legs, conference, "site-a", 3, codec)
    b, leg_b = await _join(legs, conference, "site-b", 17, codec)
    try:
        assert leg_a.codec == codec
        conference.room.set_layout("2")
        # Left pane: site-a (its own camera through decode, compose, shared encode); right: site-b.
        await _wait_for(lambda: _sees(a, [3, 17], [0.25, 0.75]), 20)
        await _wait_for(lambda: _sees(b, [3, 17], [0.25, 0.75]), 20)
        # Both receive the same shared encoder: no per-browser encode.
        keys = conference.room.encoder_keys
        assert len(keys) == 1 and keys[0].view_id == "broadcast" and keys[0].codec == codec
        # aiortc's video decoder threads run below the compositor/encoders (nice 5).
        decoders = [t for t in threading.enumerate() if t.name == "video-decoder" and t.native_id]
        assert decoders and all(os.getpriority(os.PRIO_PROCESS, t.native_id or 0) >= 5 for t in decoders)
        # Audio flows both ways: the leg feeds the mixer, the client gets its N-1 mix.
        await _wait_for(lambda: leg_a.stats.audio_frames_in > 20 and a.audio_frames > 20 and a.audio_peak > 500)
        # A chair operation changes what the client receives: broadcast site-b.
        conference.room.broadcast("site-b")
        await _wait_for(lambda: _sees(a, [17, 17], [0.25, 0.75]), 10)
    finally:
        await a.close()
        await b.close()
        await legs.stop()
    assert conference.room.participants == {}
    assert conference.room.encoder_keys == []


class FixedBudget:
    """A test budget (what the per-site rate budget will provide)."""

    def __init__(self, kbps: int) -> None:
        self.kbps = kbps

    def video_kbps(self) -> int:
        return self.kbps


def _signed_ts_step(a: int, b: int) -> int:
    return ((b - a + 2**31) % 2**32) - 2**31


async def test_keyframe_requests_go_through_the_tier_machine(conference: RunningConference) -> None:
    legs = WebRtcLegs(CONFIG)
    a, leg = await _join(legs, conference, "site-a", 5, "h264")
    try:
        await a.wait_frames(3, 20)
        assert leg.size == (640, 360)  # an unknown line starts at the 500k tier, never 720p
        encoder = conference.room.encoder(leg.subscription.key)  # type: ignore[union-attr]
        assert encoder is not None
        await asyncio.sleep(1.1)  # past the start IDR's limits
        before = encoder.policy.requests
        leg._sender._send_keyframe()  # type: ignore[union-attr]  # what aiortc calls on PLI/FIR
        leg._sender._send_keyframe()  # type: ignore[union-attr]  # the same receiver again at once
        assert encoder.policy.requests == before + 1 and encoder.policy.pending
        assert leg.stats.keyframes_coalesced >= 1
        # REMB is handed to the budget.
        leg._sender._RTCRtpSender__encoder.target_bitrate = 500_000  # type: ignore[union-attr]
        assert leg.stats.remb == 500_000 and leg.remb._samples
    finally:
        await a.close()
        await legs.stop()


async def test_a_tier_move_is_seamless_for_a_site_and_a_viewer(conference: RunningConference) -> None:
    """A budget drop moves both to 352x288: the picture follows, RTP timestamps never jump back."""
    legs = WebRtcLegs(CONFIG)
    a, leg = await _join(legs, conference, "site-a", 5, "h264")
    viewer_client = WebRtcTestClient(None, None)
    viewer = legs.create(conference, participant_id="viewer-1", view="broadcast")
    await viewer_client.accept(await viewer.answer(await viewer_client.offer()))
    stamps: dict[str, list[int]] = {"site": [], "viewer": []}
    stop = asyncio.Event()

    async def watch() -> None:
        while not stop.is_set():
            for name, client in (("site", a), ("viewer", viewer_client)):
                frame = client.latest
                if frame is not None and frame.pts is not None and (not stamps[name] or stamps[name][-1] != frame.pts):
                    stamps[name].append(int(frame.pts))
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    try:
        await a.wait_frames(3, 20)
        await viewer_client.wait_frames(3, 20)
        assert a.latest is not None and a.latest.width == 640
        await asyncio.sleep(1.0)
        # The old tier's encoder is older than the new one: without a rewrite the timestamps would jump back.
        for each in (leg, viewer):
            each.budget = FixedBudget(300)
        await _wait_for(lambda: leg.size == (352, 288) and viewer.size == (352, 288), 5)
        await _wait_for(lambda: a.latest is not None and a.latest.width == 352
                        and viewer_client.latest is not None and viewer_client.latest.width == 352, 15)
        await _wait_for(lambda: [k.width for k in conference.room.encoder_keys] == [352], 5)  # the old tier stopped
        await asyncio.sleep(1.0)
        assert leg.stats.resolution_switches == 1 and viewer.stats.resolution_switches == 1
        assert conference.tiers.tier_of("site-a").size == (352, 288)
    finally:
        stop.set()
        await watcher
        await a.close()
        await viewer_client.close()
        await legs.stop()
    for name, seen in stamps.items():
        steps = [_signed_ts_step(x, y) for x, y in zip(seen, seen[1:], strict=False)]
        assert len(steps) > 10, name
        assert min(steps) > 0, (name, steps)  # never back
        assert max(steps) < 90_000, (name, steps)  # never a jump of a second or more (10 fps: 9000 a frame)
    assert conference.room.encoder_keys == []
    assert len(conference.tiers) == 0


async def test_select_view_and_roll_call_change_the_received_picture(conference: RunningConference) -> None:
    legs = WebRtcLegs(CONFIG)
    a, _ = await _join(legs, conference, "site-a", 3)
    other = await conference.join("sip-x", "SIP 会场", "sip")
    stop = asyncio.Event()

    async def feed() -> None:
        while not stop.is_set():
            other.push_video(solid_yuv_frame(320, 180, *colour(11)))
            await asyncio.sleep(0.1)

    feeder = asyncio.create_task(feed())
    try:
        conference.room.set_layout("2")
        await _wait_for(lambda: _sees(a, [3, 11], [0.25, 0.75]), 20)
        conference.room.select_view("site-a", "sip-x")
        await _wait_for(lambda: _sees(a, [11, 11], [0.1, 0.9]), 10)
        conference.room.select_view("site-a", None)
        conference.room.roll_call("sip-x")  # everyone sees the rolled-call site full screen
        await _wait_for(lambda: _sees(a, [11, 11], [0.1, 0.9]), 10)
        conference.room.set_chair("sip-x")
        conference.room.roll_call("site-a")  # the broadcast site itself sees the chair site
        await _wait_for(lambda: _sees(a, [11, 11], [0.1, 0.9]), 10)
        assert conference.room.view_for("site-a") == "select:sip-x"
    finally:
        stop.set()
        await feeder
        await a.close()
        await legs.stop()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_churn_returns_tasks_sockets_and_encoders_to_baseline(conference: RunningConference) -> None:
    legs = WebRtcLegs(CONFIG)
    for _ in range(2):  # warm up lazily created pools and caches
        c, leg = await _join(legs, conference, "warm", 1)
        await c.wait_frames(1, 20)
        await c.close()
        await leg.close()
    await asyncio.sleep(0.5)
    gc.collect()
    tasks0, fds0 = len(asyncio.all_tasks()), _open_fds()
    for round_ in range(2):
        pairs = [await _join(legs, conference, f"churn-{round_}-{i}", i) for i in range(5)]
        await pairs[0][0].wait_frames(2, 30)
        assert len(conference.room.participants) == 5
        for client, leg in pairs:
            await client.close()
            await leg.close()
    await asyncio.sleep(1.0)
    gc.collect()
    assert conference.room.participants == {}
    assert conference.room.encoder_keys == []
    assert legs.legs == {}
    assert len(asyncio.all_tasks()) <= tasks0 + 1
    assert _open_fds() <= fds0 + 2
    assert all(s["status"] == "left" for s in conference.site_list() if s["site_id"].startswith("churn"))


async def test_audio_only_peer_is_mixed_and_shown_as_a_placeholder(conference: RunningConference) -> None:
    legs = WebRtcLegs(CONFIG)
    a, _ = await _join(legs, conference, "site-a", 3)
    phone = WebRtcTestClient(None, ToneMicrophone(880), video=False)
    leg = legs.create(conference, participant_id="phone", name="phone")
    answer = await leg.answer(await phone.offer())
    await phone.accept(answer)
    try:
        assert "m=video" not in answer and leg.codec is None and leg.subscription is None
        # Its voice reaches the others; it hears them (N-1); it never gets video.
        await _wait_for(lambda: leg.stats.audio_frames_in > 20 and phone.audio_frames > 20 and phone.audio_peak > 500)
        conference.room.set_layout("2")
        await _wait_for(lambda: _sees(a, [3, None], [0.25, 0.75]), 20)  # its pane: the placeholder, not a colour
        assert phone.frames == 0 and "phone" in conference.room.participants
    finally:
        await phone.close()
        await a.close()
        await legs.stop()


async def test_viewer_offer_without_video_is_refused(conference: RunningConference) -> None:
    legs = WebRtcLegs(CONFIG)
    viewer = WebRtcTestClient(None, None, video=False)
    viewer.pc.addTransceiver("audio", direction="recvonly")
    leg = legs.create(conference, participant_id="wall", name="wall", view="broadcast")
    with pytest.raises(ValueError, match="no video"):
        await leg.answer(await viewer.offer())
    assert "wall" not in conference.room.participants
    await viewer.close()
    await legs.stop()


async def test_peer_that_vanishes_is_dropped_by_the_media_watchdog(conference: RunningConference) -> None:
    legs = WebRtcLegs(WebRtcConfig(host_addresses=("127.0.0.1",), media_timeout=2.0))
    a, leg = await _join(legs, conference, "ghost", 2)
    await a.wait_frames(2, 20)
    # Kill the client's transport without any goodbye (no BYE, no DTLS close): like a crashed browser.
    for transceiver in a.pc.getTransceivers():
        transceiver.sender.replaceTrack(None)
    t0 = time.monotonic()
    await asyncio.wait_for(leg.closed.wait(), 10)
    assert time.monotonic() - t0 < 6
    assert "ghost" not in conference.room.participants
    assert next(s for s in conference.site_list() if s["site_id"] == "ghost")["status"] == "failed"
    await a.close()
    await legs.stop()


async def test_host_candidates_only_on_configured_addresses_and_ice_servers_from_settings() -> None:
    from aiortc import RTCPeerConnection

    from mcu.legs.webrtc import webrtc_config

    WebRtcLegs(CONFIG)  # configures 127.0.0.1 only
    pc = RTCPeerConnection()
    pc.addTransceiver("video")
    await pc.setLocalDescription(await pc.createOffer())
    candidates = [line.split()[4] for line in pc.localDescription.sdp.splitlines() if line.startswith("a=candidate")]
    await pc.close()
    assert candidates and set(candidates) == {"127.0.0.1"}
    from types import SimpleNamespace

    from config.settings import WebRtcSettings

    webrtc = WebRtcSettings.model_validate(
        {"ice_servers": [{"urls": "turn:turn.example:3478", "username": "u", "credential": "p"}]})
    config = webrtc_config(SimpleNamespace(settings=SimpleNamespace(webrtc=webrtc)))  # type: ignore[arg-type]
    assert config.host_addresses == ("127.0.0.1",)
    server = config.rtc_configuration().iceServers[0]
    assert (server.urls, server.username, server.credential) == ("turn:turn.example:3478", "u", "p")
