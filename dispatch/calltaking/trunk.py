"""Emergency numbers on our SIP endpoint: the trunk side of the call-taking desk (issue 8).

A call to one of the configured numbers (``settings.emergency.numbers``, default 110/119/120/122)
arriving from the operator trunk or an internal phone is answered at once with a queue tone
(the caller keeps their place and hears that the centre has the call), recorded from the first
frame, and handed to the desk through the small :class:`EmergencyDesk` interface. The trunk is
the ``emergency`` route of the node's INVITE router (``sip_gateway.sip.invite_router``): it
claims the emergency numbers only; every other dialled number goes on to the next route.

The trunk is either a registration toward the operator (digest credentials) or a static peer.
Only the configured trunk peers (:mod:`dispatch.calltaking.trunk_trust`: addresses/networks, and a
TLS identity where TLS is used) may deliver emergency calls; any other source gets 403 and an
audit entry. Their ``P-Asserted-Identity``/``From``/PIDF-LO are believed only from a peer with
``trust_identity`` (RFC 3325); otherwise the desk shows the number and location as unverified.
Trunk peers skip the per-source INVITE limit. The SIP body is read here (PIDF-LO,
:mod:`dispatch.calltaking.pidf_lo`): the desk gets the caller's location, never raw SIP.

The caller's audio (RTP leg, queue tone, recording, and later the MCU room the call-taker talks
in) is the MCU's: the trunk reaches it only through :class:`CallerMediaSource` and
:class:`CallerMedia`, which ``mcu.call_rooms`` implements; dispatch never imports mcu.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sip_gateway.aio.ports import RTP_PORT_RANGE
from sip_gateway.aio.sip_endpoint import Answer, Decision, InviteHandler, Reject, SipEndpoint
from sip_gateway.rtp.media_description import LocalMedia, MediaStream
from sip_gateway.sip import events as ev
from sip_gateway.sip.actions import Flow
from sip_gateway.sip.dialog import Call, CallState
from sip_gateway.sip.digest import Credentials
from sip_gateway.sip.errors import SipParseError
from sip_gateway.sip.invite_router import InviteRoute
from sip_gateway.sip.uri import NameAddr

from .location import CallerLocation
from .pidf_lo import location_from_invite
from .trunk_trust import LOOPBACK_PEERS, TrunkPeer, TrunkTrust

log = logging.getLogger(__name__)


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
    """What the desk needs from an INVITE: who, what number, and where the caller is."""

    call_key: str
    number: str
    name: str
    dialled: str
    location: CallerLocation | None  # from the INVITE's PIDF-LO; marked unverified unless caller_verified
    recording: Path
    received_at: datetime | None = None  # when the INVITE arrived: the queue orders by it
    caller_verified: bool = False  # number/location asserted by a trusted trunk peer (RFC 3325)
    source: str = ""  # transport:host:port the INVITE came from
    trunk_peer: str = ""  # label of the trunk peer that delivered it


class CallerMedia(Protocol):
    """One caller's audio on the centre's side (``mcu.call_rooms.CallRoom``).

    Opened when the trunk answers: an RTP leg (``local_media`` goes into the SDP answer), the
    queue tone on the call's 20 ms clock, and a recording of both directions.
    """

    @property
    def local_media(self) -> LocalMedia: ...

    def record(self, directory: Path, started: datetime) -> Path:
        """Start the call's recording in a new server-named file (OSError: not possible)."""

    def connect(self, streams: list[MediaStream]) -> None:
        """The media was negotiated (or renegotiated): send and receive RTP."""

    def start_clock(self) -> None:
        """The call is established: queue tone (until answered) and recording, every 20 ms."""

    def stop_queue_tone(self) -> None:
        """The call-taker answered: from now on the desk supplies the audio."""

    def caller_dtmf(self, digit: str) -> None:
        """A digit the caller sent by SIP INFO (RTP digits reach the media directly)."""

    def end(self) -> tuple[Path, datetime] | None:
        """The call ended: stop the clock, close the recording; (its path, start) if there was one."""

    async def release(self) -> None:
        """Give back the RTP ports."""


class CallerMediaSource(Protocol):
    """Opens a caller's audio (``mcu.call_rooms.CallRooms``)."""

    async def caller(self, host: str, port_range: tuple[int, int]) -> CallerMedia:
        """An audio-only RTP leg on ``host`` (OSError: no ports free in ``port_range``)."""


class TrunkAudit(Protocol):
    """``core.audit.AuditLog``: refused INVITEs are written to the audit log."""

    async def record(self, actor: str, action: str, target: str = "", *, outcome: str = "ok",
                     source: str = "", detail: dict[str, Any] | None = None) -> int: ...


class EmergencyDesk(Protocol):
    async def call_arrived(self, call: IncomingEmergencyCall, handle: TrunkCall) -> object: ...

    async def caller_hung_up(self, call_key: str) -> None: ...

    # Optional (called when present): the call's recording is complete and closed.
    # async def recording_finished(self, call_key: str, path: Path, started: datetime, ended: datetime) -> None


@dataclass(eq=False)
class TrunkCall:
    """One emergency caller's SIP call and audio, as the desk controls it (its ``CallHandle``)."""

    call: Call
    media: CallerMedia
    trunk: EmergencyTrunk

    def stop_queue_tone(self) -> None:
        """The call-taker answered: from now on the desk supplies the audio."""
        self.media.stop_queue_tone()

    def hangup(self) -> None:
        """End the call from the centre's side (BYE)."""
        self.trunk.endpoint.hangup(self.call)

    def send_dtmf(self, digit: str) -> None:
        """A digit toward the caller's side (SIP INFO application/dtmf-relay)."""
        self.trunk.endpoint.send_dtmf_info(self.call, digit)


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


def caller_location(call: Call, verified: bool) -> CallerLocation | None:
    """The caller's location from the INVITE (PIDF-LO body, Geolocation headers), or None.

    From a peer outside the trust domain a valid location is kept but marked unverified.
    """
    assert call.invite is not None
    headers = call.invite.headers
    location = location_from_invite(headers.get("Content-Type") or "", call.invite.body,
                                    headers.get_all("Geolocation"))
    if location is not None and not verified and location.valid:
        location = replace(location, reason="位置由未受信任的来源提供，未经核实 (unverified source)")
    return location


class EmergencyTrunk:
    """Answers emergency numbers with a queue tone and gives the calls to the desk."""

    def __init__(self, endpoint: SipEndpoint, desk: EmergencyDesk, config: TrunkConfig | None = None,
                 media_host: str = "127.0.0.1", *, media: CallerMediaSource,
                 audit: TrunkAudit | None = None) -> None:
        self.endpoint = endpoint
        self.desk = desk
        self.media = media
        self.config = config or TrunkConfig()
        self.trust = TrunkTrust(self.config.peers)
        self.audit = audit
        endpoint.ua.invite_rate_exempt = self.trust.address_allowed  # the operator's SBC carries every call
        self.media_host = media_host
        self.calls: dict[str, TrunkCall] = {}
        self.active: Callable[[], bool] | None = None  # the desk lease: a standby or fenced desk answers 503
        self._tasks: set[asyncio.Task[None]] = set()
        endpoint.listeners.append(self._on_event)

    @property
    def route(self) -> InviteRoute[InviteHandler]:
        """The ``emergency`` route of the node's INVITE router: the emergency numbers."""
        return InviteRoute("emergency", self.is_emergency, self.on_invite)

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

    def is_emergency(self, call: Call) -> bool:
        """Is ``call`` to one of the emergency numbers (the calls this route claims)?"""
        return (call.request_user or "") in self.config.numbers

    async def on_invite(self, call: Call) -> Decision:
        """An emergency number: answer with the queue tone, or refuse (not a trunk peer, no audio)."""
        received_at = datetime.now(UTC)
        if self.active is not None and not self.active():
            return Reject(503, "Standby desk")  # the proxy (Kamailio failure_route) tries the other desk
        source = call.source or call.flow
        peer = self.trust.match(source.host, source.transport, self.endpoint.peer_certificate(source))
        if peer is None:
            await self._refused(call, source)
            return Reject(403, "Not a trunk peer")
        if call.offer is not None and not any(m.kind == "audio" and m.port for m in call.offer.media):
            return Reject(488, "Audio required")
        try:
            media = await self.media.caller(self.media_host, self.config.port_range)
        except OSError as exc:  # range exhausted: the operator's switch retries or reroutes on 503
            log.error("emergency call %s: %s", call.call_id, exc)
            return Reject(503, "No media ports available")
        if call.state == CallState.TERMINATED:
            await media.release()
            await self.desk.caller_hung_up(call.key)
            return None
        try:
            recording = media.record(self.config.recordings_dir, received_at)
        except OSError as exc:  # the recordings directory is unusable: answer anyway, the call matters more
            log.error("emergency call %s: recording not possible: %s", call.call_id, exc)
            await media.release()
            return Reject(503, "Recording unavailable")
        handle = TrunkCall(call, media, self)
        self.calls[call.key] = handle
        self._spawn(self._arrived(handle, peer, source, recording, received_at))
        return Answer(media.local_media)

    async def _refused(self, call: Call, source: Flow) -> None:
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

    async def _arrived(self, handle: TrunkCall, peer: TrunkPeer, source: Flow, recording: Path,
                       received_at: datetime) -> None:
        """Tell the desk (after the answer went out): who calls, from where, and where they are."""
        call = handle.call
        try:
            number, name = caller_identity(call, peer.trust_identity)
            incoming = IncomingEmergencyCall(
                call.key, number, name, call.request_user or "", caller_location(call, peer.trust_identity),
                recording, received_at, caller_verified=peer.trust_identity,
                source=f"{source.transport}:{source.host}:{source.port}", trunk_peer=peer.label)
            await self.desk.call_arrived(incoming, handle)
        except Exception:  # noqa: BLE001 - a desk failure must not drop an emergency caller
            log.exception("desk could not take call %s", call.key)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.CallEstablished | ev.MediaUpdated):
            handle = self.calls.get(event.call.key)
            if handle is not None:
                handle.media.connect(event.call.streams)
                if isinstance(event, ev.CallEstablished):
                    handle.media.start_clock()
        elif isinstance(event, ev.DtmfReceived):
            handle = self.calls.get(event.call.key)
            if handle is not None:
                handle.media.caller_dtmf(event.digit)
        elif isinstance(event, ev.CallEnded):
            handle = self.calls.pop(event.call.key, None)
            if handle is None:
                return
            recording = handle.media.end()
            self._spawn(handle.media.release())
            self._spawn(self.desk.caller_hung_up(event.call.key))
            if recording is not None:
                self._spawn(self._recording_done(event.call.key, *recording))

    async def _recording_done(self, call_key: str, path: Path, started: datetime) -> None:
        """Hand the closed recording to the desk (it hashes it into the transparency log)."""
        finished = getattr(self.desk, "recording_finished", None)
        if finished is None:
            return
        try:
            await finished(call_key, path, started, datetime.now(UTC))
        except Exception:  # noqa: BLE001
            log.exception("recording of call %s not sealed", call_key)

    async def close(self) -> None:
        """Hang up every emergency call and release their legs."""
        for handle in list(self.calls.values()):
            handle.hangup()
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 2.0)


def _clean(text: str, limit: int = 200) -> str:
    """Header text safe for the audit log (no control characters such as NUL, bounded)."""
    return "".join(ch for ch in text if ch.isprintable())[:limit]
