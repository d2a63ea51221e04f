"""Emergency numbers on our SIP endpoint: the trunk side of the call-taking desk (issue 8).

A call to one of the configured numbers (``settings.emergency.numbers``, default 110/119/120/122)
arriving from the operator trunk or an internal phone is answered at once with a queue tone
(the caller keeps their place and hears that the centre has the call), recorded from the first
frame, and handed to the desk through the small :class:`EmergencyDesk` interface. Any other
dialled number goes to the ``fallback`` handler (the conference gateway) unchanged.

The trunk is either a registration toward the operator (digest credentials) or a static peer;
both are optional, internal phones reach the endpoint directly.

``mcu`` never imports ``dispatch``: the desk implements :class:`EmergencyDesk`.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import wave
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np

from sip_gateway.rtp.leg import RTP_PORT_RANGE, MediaLeg
from sip_gateway.sip import events as ev
from sip_gateway.sip.dialog import Call, CallState
from sip_gateway.sip.digest import Credentials
from sip_gateway.sip.endpoint import Answer, Decision, Reject, SipEndpoint
from sip_gateway.sip.errors import SipParseError
from sip_gateway.sip.uri import NameAddr

log = logging.getLogger(__name__)

SAMPLE_RATE = 48000
FRAME = 960  # 20 ms at 48 kHz
Pcm = np.ndarray


def _tone(freq: float, on_s: float, off_s: float) -> Pcm:
    n_on, n_off = int(SAMPLE_RATE * on_s), int(SAMPLE_RATE * off_s)
    t = np.arange(n_on) / SAMPLE_RATE
    return np.concatenate([(6000 * np.sin(2 * np.pi * freq * t)), np.zeros(n_off)]).astype(np.int16)


# Chinese ringback (GB 16833 style, 450 Hz, 1 s on / 4 s off): "the centre has your call, hold on".
QUEUE_TONE = _tone(450, 1.0, 4.0)


@dataclass(frozen=True)
class TrunkConfig:
    """How the operator reaches us. ``registrar`` set → register; ``peer`` set → static peer."""

    numbers: tuple[str, ...] = ("110", "119", "120", "122")
    registrar: str = ""  # e.g. "sip:ims.operator.cn"
    aor: str = ""  # e.g. "sip:075812345@ims.operator.cn"
    username: str = ""
    password: str = ""
    peer: str = ""  # static peer host (the operator's SBC); informational + qualify target
    recordings_dir: Path = Path("var/recordings/calls")
    port_range: tuple[int, int] = RTP_PORT_RANGE  # settings.rtp: RTP/RTCP ports of every caller's leg


@dataclass(frozen=True)
class IncomingEmergencyCall:
    """What the desk needs from an INVITE: who, what number, and the raw location data."""

    call_key: str
    number: str
    name: str
    dialled: str
    content_type: str
    body: bytes
    geolocation: list[str]
    recording: Path
    received_at: datetime | None = None  # when the INVITE arrived: the queue orders by it


class EmergencyDesk(Protocol):
    async def call_arrived(self, call: IncomingEmergencyCall, handle: EmergencySite) -> object: ...

    async def caller_hung_up(self, call_key: str) -> None: ...


class CallRecorder:
    """Both directions of an emergency call mixed into one 48 kHz mono WAV (caller + centre).

    Frames from each side are queued and written on the call's 20 ms media clock (``tick``), so
    the file has the call's real duration even while one side is silent or sends no RTP.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._wav: wave.Wave_write | None = wave.open(str(path), "wb")
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(SAMPLE_RATE)
        self._caller: deque[Pcm] = deque(maxlen=10)  # a little jitter; older frames are dropped
        self._centre: deque[Pcm] = deque(maxlen=10)

    def centre(self, pcm: Pcm) -> None:
        """20 ms the centre sent (queue tone or the call-taker)."""
        self._centre.append(pcm)

    def caller(self, pcm: Pcm) -> None:
        """20 ms from the caller."""
        self._caller.append(pcm)

    def tick(self) -> None:
        """Write one 20 ms frame: the mix of what each side had queued (silence if nothing)."""
        if self._wav is None:
            return
        mixed = np.zeros(FRAME, dtype=np.int32)
        for side in (self._caller, self._centre):
            if side:
                frame = side.popleft()
                mixed[: len(frame)] += frame[:FRAME].astype(np.int32)
        self._wav.writeframes(np.clip(mixed, -32768, 32767).astype("<i2").tobytes())

    def close(self) -> None:
        if self._wav is not None:
            self._wav.close()
            self._wav = None


@dataclass(eq=False)
class EmergencySite:
    """One emergency caller's SIP call and RTP leg, as the desk controls it."""

    call: Call
    leg: MediaLeg
    trunk: EmergencyTrunk
    recorder: CallRecorder
    queue_tone: bool = True
    on_caller_audio: list[Callable[[Pcm], None]] = field(default_factory=list)
    on_dtmf: list[Callable[[str], None]] = field(default_factory=list)
    _tone_task: asyncio.Task[None] | None = None

    def send_audio(self, pcm: Pcm) -> None:
        """20 ms toward the caller (the call-taker's voice once bridged); recorded."""
        self.recorder.centre(pcm)
        self.leg.send_audio(pcm)

    def stop_queue_tone(self) -> None:
        """The call-taker answered: from now on the desk supplies the audio."""
        self.queue_tone = False

    def hangup(self) -> None:
        """End the call from the centre's side (BYE)."""
        self.trunk.endpoint.hangup(self.call)

    def send_dtmf(self, digit: str) -> None:
        """A digit toward the caller's side (SIP INFO application/dtmf-relay)."""
        self.trunk.endpoint.send_dtmf_info(self.call, digit)


class _CallerSink:
    def __init__(self, trunk: EmergencyTrunk) -> None:
        self.trunk = trunk

    def on_audio(self, leg: MediaLeg, pcm: Pcm) -> None:
        site = self.trunk.site_for_leg(leg)
        if site is not None:
            site.recorder.caller(pcm)
            for listener in site.on_caller_audio:
                listener(pcm)

    def on_video(self, leg: MediaLeg, frame: av.VideoFrame) -> None:
        """Emergency calls are audio-only."""

    def on_dtmf(self, leg: MediaLeg, digit: str) -> None:
        site = self.trunk.site_for_leg(leg)
        if site is not None:
            for listener in site.on_dtmf:
                listener(digit)

    def on_keyframe_request(self, leg: MediaLeg) -> None:
        """No video."""


def caller_identity(call: Call) -> tuple[str, str]:
    """(number, display name) from P-Asserted-Identity when the trunk sends it, else From."""
    assert call.invite is not None
    for header in ("P-Asserted-Identity", "From"):
        value = call.invite.headers.get(header)
        if not value:
            continue
        try:
            addr = NameAddr.parse(value.split(",")[0])
        except SipParseError:
            continue
        return (addr.uri.user or ""), (addr.display or "")
    return "", ""


class EmergencyTrunk:
    """Answers emergency numbers with a queue tone and gives the calls to the desk."""

    def __init__(self, endpoint: SipEndpoint, desk: EmergencyDesk, config: TrunkConfig | None = None,
                 media_host: str = "127.0.0.1",
                 fallback: Callable[[Call], Awaitable[Decision]] | None = None) -> None:
        self.endpoint = endpoint
        self.desk = desk
        self.config = config or TrunkConfig()
        self.media_host = media_host
        self.fallback = fallback if fallback is not None else endpoint.on_invite
        self.sites: dict[str, EmergencySite] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        endpoint.on_invite = self.on_invite
        endpoint.listeners.append(self._on_event)

    def start(self) -> None:
        """Register toward the operator when a registrar is configured."""
        c = self.config
        if c.registrar:
            creds = Credentials(c.username, c.password) if c.username else None
            self.endpoint.register(c.registrar, c.aor, creds)
            log.info("emergency trunk: registering %s at %s", c.aor, c.registrar)
        if c.peer:
            self.endpoint.qualify(f"sip:{c.peer}", 60.0)

    def site_for_leg(self, leg: MediaLeg) -> EmergencySite | None:
        return next((s for s in self.sites.values() if s.leg is leg), None)

    def is_emergency(self, call: Call) -> bool:
        return (call.request_user or "") in self.config.numbers

    async def on_invite(self, call: Call) -> Decision:
        """Emergency number → answer with the queue tone; anything else → the fallback."""
        if not self.is_emergency(call):
            return await self.fallback(call)
        received_at = datetime.now(UTC)
        if call.offer is not None and not any(m.kind == "audio" and m.port for m in call.offer.media):
            return Reject(488, "Audio required")
        try:
            leg = await MediaLeg.allocate(self.media_host, video=False, sink=_CallerSink(self),
                                          port_range=self.config.port_range)
        except OSError as exc:  # range exhausted: the operator's switch retries or reroutes on 503
            log.error("emergency call %s: %s", call.call_id, exc)
            return Reject(503, "No media ports available")
        if call.state == CallState.TERMINATED:
            await leg.close()
            await self.desk.caller_hung_up(call.key)
            return None
        safe = "".join(ch if ch.isalnum() else "_" for ch in call.call_id)[:80]
        recorder = CallRecorder(self.config.recordings_dir / f"{safe}.wav")
        site = EmergencySite(call, leg, self, recorder)
        self.sites[call.key] = site
        number, name = caller_identity(call)
        assert call.invite is not None
        incoming = IncomingEmergencyCall(
            call.key, number, name, call.request_user or "", call.invite.headers.get("Content-Type") or "",
            call.invite.body, call.invite.headers.get_all("Geolocation"), recorder.path, received_at)
        self._spawn(self._arrived(incoming, site))
        return Answer(leg.local_media)

    async def _arrived(self, incoming: IncomingEmergencyCall, site: EmergencySite) -> None:
        try:
            await self.desk.call_arrived(incoming, site)
        except Exception:  # noqa: BLE001 - a desk failure must not drop an emergency caller
            log.exception("desk could not take call %s", incoming.call_key)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.CallEstablished | ev.MediaUpdated):
            site = self.sites.get(event.call.key)
            if site is not None:
                site.leg.start(event.call.streams)
                if isinstance(event, ev.CallEstablished):
                    site._tone_task = asyncio.ensure_future(self._media_clock(site))
        elif isinstance(event, ev.DtmfReceived):
            site = self.sites.get(event.call.key)
            if site is not None:
                for listener in site.on_dtmf:
                    listener(event.digit)
        elif isinstance(event, ev.CallEnded):
            site = self.sites.pop(event.call.key, None)
            if site is None:
                return
            if site._tone_task is not None:
                site._tone_task.cancel()
            site.recorder.close()
            self._spawn(site.leg.close())
            self._spawn(self.desk.caller_hung_up(event.call.key))

    async def _media_clock(self, site: EmergencySite) -> None:
        """The call's 20 ms clock: queue tone while waiting, and the recording for the whole call."""
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        i = 0
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                if site.queue_tone:
                    start = (i * FRAME) % len(QUEUE_TONE)
                    site.send_audio(QUEUE_TONE[start:start + FRAME])
                    i += 1
                site.recorder.tick()
                next_tick += 0.02
                await asyncio.sleep(max(0.0, next_tick - loop.time()))

    async def close(self) -> None:
        """Hang up every emergency call and release their legs."""
        for site in list(self.sites.values()):
            site.hangup()
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 2.0)


# ---------------------------------------------------------------------------------------------
# The call as a two-party (or three-party) audio room in the MCU: the call-taker's browser and
# agency desks join as WebRTC participants, the caller as a SIP site (mcu.site_media), so the
# room's mixer gives everyone N-1 audio and conferencing/transfer are joins and leaves.


class _CallerRtpLeg:
    """What ``SiteMedia`` needs from a leg, on top of the emergency site (audio only)."""

    def __init__(self, site: EmergencySite) -> None:
        self.site = site

    def send_audio(self, pcm: Pcm) -> None:
        if not self.site.queue_tone:  # on hold the caller hears the queue tone, not the room
            self.site.send_audio(pcm)

    def send_video_access_unit(self, access_unit: bytes, timestamp_90k: int) -> None:
        """Audio-only call."""

    def request_keyframe(self) -> None:
        """Audio-only call."""


@dataclass(eq=False)
class CallRoom:
    """One emergency call's room: the conference, the caller's site media, the browsers' legs."""

    conference: Any
    media: Any
    site: EmergencySite
    legs: dict[str, Any] = field(default_factory=dict)


class EmergencyBridge:
    """Bridges emergency calls into MCU rooms (``core.capabilities["mcu"]``: conferences + WebRTC)."""

    def __init__(self, mcu: Any, sip: Any = None) -> None:
        self.mcu = mcu
        self.sip = sip  # mcu.sip_bridge.SipBridge: dials SIP extensions (agency desks) into the room
        self.rooms: dict[str, CallRoom] = {}

    async def open(self, call_id: str, site: EmergencySite, caller_name: str) -> CallRoom:
        """Create and start the call's room with the caller in it (idempotent)."""
        if call_id in self.rooms:
            return self.rooms[call_id]
        from mcu.site_media import SiteMedia

        service = self.mcu.conferences
        record = await service.create(name=f"接警 {call_id}"[:100], actor="desk", kind="emergency_call")
        conf = await service.start_conference(record.id, "desk")
        media = await SiteMedia.join(conf, "caller", caller_name or "报警人", "sip", _CallerRtpLeg(site),
                                     video=None, stats_interval=0)
        site.on_caller_audio.append(lambda pcm: None if site.queue_tone else media.on_audio(pcm))
        room = CallRoom(conf, media, site)
        self.rooms[call_id] = room
        return room

    async def join_browser(self, call_id: str, participant_id: str, name: str, offer_sdp: str) -> str:
        """A call-taker or agency desk joins by WebRTC; returns the SDP answer."""
        room = self.rooms[call_id]
        old = room.legs.pop(participant_id, None)
        if old is not None:
            await old.close("rejoin")
        leg = self.mcu.webrtc.create(room.conference, participant_id=participant_id, name=name)
        answer = str(await leg.answer(offer_sdp))
        room.legs[participant_id] = leg
        return answer

    async def leave(self, call_id: str, participant_id: str) -> None:
        """A browser (or a dialled SIP extension) leaves: transfer completed, or its part hung up."""
        room = self.rooms.get(call_id)
        if room is None or participant_id not in room.legs:
            return
        leg = room.legs.pop(participant_id)
        if participant_id.startswith("sip-"):
            with contextlib.suppress(Exception):
                await self.sip.hangup(room.conference.id, participant_id[4:])
        else:
            await leg.close("left")

    async def dial(self, call_id: str, uri: str, name: str) -> str:
        """Call a SIP extension (an agency desk's phone) into the call's room; returns its site id."""
        room = self.rooms.get(call_id)
        if room is None:
            raise ValueError("通话尚未建立话音")
        if self.sip is None:
            raise ValueError("本节点未运行 SIP 外呼")
        try:
            site = await self.sip.invite(room.conference.id, uri=uri, name=name)
        except ValueError as exc:  # DialOutError
            raise ValueError(str(exc)) from None
        room.legs[f"sip-{site.site_id}"] = site
        return str(site.site_id)

    def hold(self, call_id: str, on_hold: bool) -> None:
        """Hold: the caller hears the queue tone and is not heard in the room; resume reverses it."""
        room = self.rooms.get(call_id)
        if room is not None:
            room.site.queue_tone = on_hold

    def participant_left(self, conference_id: str, participant_id: str) -> str | None:
        """A participant left some room: forget a dialled SIP extension; returns the call id if it
        was one of our rooms' extensions."""
        for call_id, room in self.rooms.items():
            if room.conference.id == conference_id and room.legs.pop(f"sip-{participant_id}", None) is not None:
                return call_id
        return None

    def participants(self, call_id: str) -> list[str]:
        room = self.rooms.get(call_id)
        return sorted(room.legs) if room else []

    async def close(self, call_id: str) -> None:
        """The call ended: close the browsers' legs, the caller's site media, end the room."""
        room = self.rooms.get(call_id)
        if room is None:
            return
        for pid in list(room.legs):
            with contextlib.suppress(Exception):
                await self.leave(call_id, pid)
        self.rooms.pop(call_id, None)
        with contextlib.suppress(Exception):
            await room.media.close("ended")
        with contextlib.suppress(Exception):
            await self.mcu.conferences.end(room.conference.id, "desk")
