"""Emergency numbers on our SIP endpoint: the trunk side of the call-taking desk (issue 8).

A call to one of the configured numbers (``settings.emergency.numbers``, default 110/119/120/122)
arriving from the operator trunk or an internal phone is answered at once with a queue tone
(the caller keeps their place and hears that the centre has the call), recorded from the first
frame, and handed to the desk through the small :class:`EmergencyDesk` interface. Any other
dialled number goes to the ``fallback`` handler (the conference gateway) unchanged.

The trunk is either a registration toward the operator (digest credentials) or a static peer.
Only the configured trunk peers (:mod:`mcu.trunk_trust`: addresses/networks, and a TLS identity
where TLS is used) may deliver emergency calls; any other source gets 403 and an audit entry. Their
``P-Asserted-Identity``/``From``/PIDF-LO are believed only from a peer with ``trust_identity``
(RFC 3325); otherwise the desk shows the number as unverified. Trunk peers skip the per-source
INVITE limit. Each call's recording gets a server-generated unique name, created exclusively.

``mcu`` never imports ``dispatch``: the desk implements :class:`EmergencyDesk`.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import wave
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np

from sip_gateway.aio.ports import RTP_PORT_RANGE
from sip_gateway.aio.rtp_leg import MediaLeg
from sip_gateway.aio.sip_endpoint import Answer, Decision, Reject, SipEndpoint
from sip_gateway.sip import events as ev
from sip_gateway.sip.dialog import Call, CallState
from sip_gateway.sip.digest import Credentials
from sip_gateway.sip.errors import SipParseError
from sip_gateway.sip.uri import NameAddr

from .trunk_trust import LOOPBACK_PEERS, TrunkPeer, TrunkTrust

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
    # Who may deliver emergency INVITEs (settings emergency.trunk.peers); empty = refuse every one.
    peers: tuple[TrunkPeer, ...] = LOOPBACK_PEERS


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
    caller_verified: bool = False  # number/location asserted by a trusted trunk peer (RFC 3325)
    source: str = ""  # transport:host:port the INVITE came from
    trunk_peer: str = ""  # label of the trunk peer that delivered it


class TrunkAudit(Protocol):
    """``core.audit.AuditLog``: refused INVITEs are written to the audit log."""

    async def record(self, actor: str, action: str, target: str = "", *, outcome: str = "ok",
                     source: str = "", detail: dict[str, Any] | None = None) -> int: ...


class EmergencyDesk(Protocol):
    async def call_arrived(self, call: IncomingEmergencyCall, handle: EmergencySite) -> object: ...

    async def caller_hung_up(self, call_key: str) -> None: ...

    # Optional (called when present): the call's recording is complete and closed.
    # async def recording_finished(self, call_key: str, path: Path, started: datetime, ended: datetime) -> None


def new_recording_file(directory: Path, now: datetime) -> tuple[Path, int]:
    """A new, server-named recording file created exclusively (O_EXCL): never an existing file.

    The name is the UTC time plus 128 random bits; nothing the caller sends is part of it.
    Returns the path and the open descriptor (mode 0640).
    """
    directory.mkdir(parents=True, exist_ok=True)
    for _ in range(5):
        path = directory / f"{now:%Y%m%dT%H%M%S}Z-{secrets.token_hex(16)}.wav"
        try:
            return path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o640)
        except FileExistsError:  # 2^-128: only if someone planted the name; take another
            continue
    raise FileExistsError(f"cannot create a new recording file in {directory}")


class CallRecorder:
    """Both directions of an emergency call mixed into one 48 kHz mono WAV (caller + centre).

    Frames from each side are queued and written on the call's 20 ms media clock (``tick``), so
    the file has the call's real duration even while one side is silent or sends no RTP.
    """

    def __init__(self, directory: Path, now: datetime | None = None) -> None:
        self.started = now or datetime.now(UTC)
        self.path, fd = new_recording_file(directory, self.started)
        self._file = os.fdopen(fd, "wb")
        self._wav: wave.Wave_write | None = wave.open(self._file, "wb")
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
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    @property
    def closed(self) -> bool:
        return self._wav is None


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


def caller_identity(call: Call, trust_pai: bool = True) -> tuple[str, str]:
    """(number, display name) from P-Asserted-Identity when a trusted trunk sends it, else From.

    ``trust_pai`` False (the source is not in our trust domain): a PAI header is ignored (RFC 3325 §5).
    """
    assert call.invite is not None
    for header in ("P-Asserted-Identity", "From") if trust_pai else ("From",):
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
                 fallback: Callable[[Call], Awaitable[Decision]] | None = None,
                 audit: TrunkAudit | None = None) -> None:
        self.endpoint = endpoint
        self.desk = desk
        self.config = config or TrunkConfig()
        self.trust = TrunkTrust(self.config.peers)
        self.audit = audit
        endpoint.ua.invite_rate_exempt = self.trust.address_allowed  # the operator's SBC carries every call
        self.media_host = media_host
        self.fallback = fallback if fallback is not None else endpoint.on_invite
        self.sites: dict[str, EmergencySite] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        endpoint.on_invite = self.on_invite
        endpoint.listeners.append(self._on_event)

    def set_peers(self, peers: tuple[TrunkPeer, ...]) -> None:
        """Change who may deliver emergency calls (and skip the INVITE limit); calls in progress stay."""
        self.config = replace(self.config, peers=tuple(peers))
        self.trust = TrunkTrust(self.config.peers)
        self.endpoint.ua.invite_rate_exempt = self.trust.address_allowed

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
        source = call.source or call.flow
        peer = self.trust.match(source.host, source.transport, self.endpoint.peer_certificate(source))
        if peer is None:
            await self._refused(call, source)
            return Reject(403, "Not a trunk peer")
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
        try:
            recorder = CallRecorder(self.config.recordings_dir, received_at)
        except OSError as exc:  # the recordings directory is unusable: answer anyway, the call matters more
            log.error("emergency call %s: recording not possible: %s", call.call_id, exc)
            await leg.close()
            return Reject(503, "Recording unavailable")
        site = EmergencySite(call, leg, self, recorder)
        self.sites[call.key] = site
        number, name = caller_identity(call, peer.trust_identity)
        assert call.invite is not None
        incoming = IncomingEmergencyCall(
            call.key, number, name, call.request_user or "", call.invite.headers.get("Content-Type") or "",
            call.invite.body, call.invite.headers.get_all("Geolocation"), recorder.path, received_at,
            caller_verified=peer.trust_identity, source=f"{source.transport}:{source.host}:{source.port}",
            trunk_peer=peer.label)
        self._spawn(self._arrived(incoming, site))
        return Answer(leg.local_media)

    async def _refused(self, call: Call, source: Any) -> None:
        """Log and audit an emergency INVITE from outside the trunk (who claimed to call, what, from where)."""
        assert call.invite is not None
        headers = call.invite.headers
        claimed, _ = caller_identity(call)
        where = f"{source.transport}:{source.host}:{source.port}"
        reason = self.trust.why_refused(source.host, source.transport)
        log.warning("emergency INVITE to %s from %s refused (403): %s", call.request_user, where, reason)
        if self.audit is None:
            return
        detail = {"reason": reason, "dialled": _clean(call.request_user or ""), "call_id": _clean(call.call_id),
                  "from": _clean(headers.get("From") or ""),
                  "p_asserted_identity": _clean(headers.get("P-Asserted-Identity") or "")}
        try:
            await self.audit.record(f"sip:{_clean(claimed) or 'anonymous'}", "emergency.invite_refused",
                                    _clean(call.request_user or ""), outcome="denied", source=where, detail=detail)
        except Exception:  # noqa: BLE001 - the refusal stands even if the audit write fails
            log.exception("auditing a refused emergency INVITE failed")

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
            self._spawn(self._recording_done(event.call.key, site.recorder))

    async def _recording_done(self, call_key: str, recorder: CallRecorder) -> None:
        """Hand the closed recording to the desk (it hashes it into the transparency log)."""
        finished = getattr(self.desk, "recording_finished", None)
        if finished is None:
            return
        try:
            await finished(call_key, recorder.path, recorder.started, datetime.now(UTC))
        except Exception:  # noqa: BLE001
            log.exception("recording of call %s not sealed", call_key)

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


def _clean(text: str, limit: int = 200) -> str:
    """Header text safe for the audit log (no control characters such as NUL, bounded)."""
    return "".join(ch for ch in text if ch.isprintable())[:limit]


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
