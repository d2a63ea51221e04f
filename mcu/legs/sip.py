"""A SIP site and the routing of SIP calls into rooms: dial-in (with the IVR and PIN), dial-out.

:class:`SipSite` is one SIP call of a site, start to end: its call and media leg, the IVR while
the caller is in it, then its place in a conference (site id, name, direction, its
:class:`~mcu.legs.site_media.SiteMedia`, why the call ended). It is the RTP leg's
:class:`~sip_gateway.aio.rtp_leg.MediaSink` until the room gives the leg its own (only digits
matter in the IVR), and the :class:`~mcu.legs.site_media.RtpLeg` the room sends through
(key-frame requests go out as RTCP and SIP INFO).

:class:`SipGateway` routes calls; the MCU supplies a :class:`Directory` of :class:`Room` objects
(:mod:`mcu.legs.sip_bridge`). Dial-in to
``sip:<conference-id>@host`` joins that room (after the PIN, by DTMF, when it has one);
dialling any non-numeric user (e.g. ``sip:ivr@host``) starts the IVR, which asks for the
conference id and PIN. Rooms dial out with :meth:`SipGateway.dial_out`. A joined site's media
goes to the :class:`~sip_gateway.aio.rtp_leg.MediaSink` returned by :meth:`Room.join` (or attached
by the room later); the room sends media back through the site.

Who may enter is decided by a :class:`PinPolicy` (the MCU's asks its one admission policy,
``mcu.admission``, with the per-source back-off, so a wrong PIN keyed at the IVR counts like one
typed on the join page); the default, :class:`RoomPinPolicy`, challenges for ``Room.require_auth``
and compares with ``Room.pin``. :meth:`PinPolicy.screen` is asked before a call to a conference
id is answered (401 challenge, 403 refused or locked out) and for every conference id keyed at
the IVR (a conference the caller may not enter is "invalid" there, like an unknown one).

Prompts are generated tones (no speech files needed): two 660 Hz beeps = "enter the
conference id", three 880 Hz beeps = "enter the PIN", a low 400 Hz tone = "invalid",
a rising C-E-G = "joining", a falling G-C = "goodbye", a long low 300 Hz tone = "locked out".
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal, Protocol

import av
import numpy as np

from mcu.legs.ivr import CheckPin, DigitTimer, Hangup, Ivr, IvrOutput, Join, PinVerdict, Prompt
from mcu.legs.prompts import BEEPS
from mcu.pacer import AUDIO_PERIOD, Pacer
from mcu.pane_size import rate_for
from sip_gateway.aio.h224_channel import H224Channel
from sip_gateway.aio.ports import RTP_PORT_RANGE
from sip_gateway.aio.rtp_leg import DscpMarking, MediaLeg, MediaSink, StreamStatistics
from sip_gateway.aio.sip_endpoint import Answer, Challenge, Decision, Reject, SipEndpoint
from sip_gateway.rtp.codecs import Pcm
from sip_gateway.rtp.media_description import ExtraMedia, LocalMedia, MediaStream
from sip_gateway.rtp.media_primitives import FRAME_SAMPLES as SAMPLES_PER_FRAME
from sip_gateway.rtp.rtcp_feedback import build_tmmbr
from sip_gateway.sip import events as ev
from sip_gateway.sip.dialog import Call, CallState
from sip_gateway.sip.imageattr import has_imageattr
from sip_gateway.sip.invite_router import with_default
from sip_gateway.sip.sdp import SessionDescription, offers_h224

if TYPE_CHECKING:
    from mcu.legs.audio_fec import AudioFec
    from mcu.legs.site_media import SiteMedia
    from mcu.legs.site_rate import SiteRate

log = logging.getLogger(__name__)

Direction = Literal["in", "out"]


class Room(Protocol):
    """What the gateway needs from a conference room."""

    conference_id: str
    pin: str | None
    require_auth: bool

    def join(self, site: SipSite) -> MediaSink | None:
        """Add the site as a participant; return where its media goes (None: the room sets
        ``site.leg.sink`` itself once the site is in)."""

    def leave(self, site: SipSite) -> None:
        """The site hung up or was hung up."""


class SiteLines(Protocol):
    """Our SDP for a call on its site's line (the MCU's site plan, else the SIP default)."""

    def local_media_for(self, call: Call, local: LocalMedia) -> LocalMedia:
        """``local`` with the b= values of the calling site's line."""


class Floors(Protocol):
    """BFCP for room systems (``mcu.legs.sip_bfcp.SipFloors``): answers to an offer's BFCP/slides streams."""

    async def answer(self, conference_id: str, call_key: str, offer: SessionDescription,
                     hosts: frozenset[str] = frozenset()) -> tuple[ExtraMedia, ...]: ...
    async def offer(self, conference_id: str, call_key: str, first_index: int) -> tuple[ExtraMedia, ...]: ...
    def rekey(self, old: str, new: str) -> None: ...
    async def answered(self, call_key: str, answer: SessionDescription, streams: Sequence[MediaStream],
                       hosts: frozenset[str] = frozenset()) -> None: ...
    def joined(self, call_key: str, participant_id: str) -> None: ...
    def ended(self, call_key: str) -> None: ...


class Directory(Protocol):
    """Finds rooms by conference id."""

    def find(self, conference_id: str) -> Room | None:
        """The room, or None."""


Screening = Literal["ok", "challenge", "locked", "refused"]
"""Whether a caller may go on to a conference: yes (a PIN may still be asked), only after digest
authentication, not now (back-off after wrong PINs), or not at all."""


class PinPolicy(Protocol):
    """Who may enter a conference (the MCU adds its admission policy, per-source back-off and audit)."""

    def screen(self, conference_id: str, call: Call) -> Screening:
        """Before the PIN: may the caller of ``call`` go on to this (existing) conference?"""

    async def check_pin(self, conference_id: str, pin: str, call: Call) -> PinVerdict:
        """Check a PIN keyed by the caller of ``call`` (its source is ``call.flow.host``)."""


class RoomPinPolicy:
    """The plain policy: the PIN must equal ``Room.pin``; no back-off."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    def screen(self, conference_id: str, call: Call) -> Screening:
        """"challenge" for a room that requires authentication until the caller has it."""
        room = self.directory.find(conference_id)
        if room is None:
            return "refused"
        return "challenge" if room.require_auth and call.authenticated_user is None else "ok"

    async def check_pin(self, conference_id: str, pin: str, call: Call) -> PinVerdict:
        """"ok" for the room's PIN, "wrong" otherwise, "refused" when the room is gone."""
        room = self.directory.find(conference_id)
        if room is None:
            return "refused"
        return "ok" if room.pin and pin == room.pin else "wrong"


# The default prompts are the beep patterns; the MCU passes spoken ones (mcu.legs.prompts).
PROMPTS: dict[str, Pcm] = dict(BEEPS)


@dataclass(eq=False)
class SipSite:
    """One SIP call of a site (dial-in or dial-out) with its media leg, from INVITE to hang-up."""

    call: Call
    leg: MediaLeg
    gateway: SipGateway
    room: Room | None = None
    ivr: Ivr | None = None
    prompt_queue: deque[Pcm] = field(default_factory=deque)
    _ivr_task: asyncio.Task[None] | None = None
    _digit_timer: asyncio.TimerHandle | None = None
    # Its place in a conference (set when dialled, or when a dial-in joins).
    site_id: str = ""
    name: str = ""
    conference_id: str = ""
    uri: str = ""
    direction: Direction = "in"
    media: SiteMedia | None = None
    joining: asyncio.Task[None] | None = None
    end_reason: str = ""
    end_status: int | None = None
    hung_up_by_chair: bool = False
    registered_user: str | None = None
    rate: SiteRate | None = None  # its rate budget, once in a room (the pacer and tiers read video_kbps())
    audio_fec: AudioFec | None = None  # Opus in-band FEC from its audio reports, once in a room
    # Asking for the pane size: does the peer answer imageattr (None: not known yet)?
    _imageattr: bool | None = None
    _imageattr_asked: bool = False
    _pane_wanted: tuple[int, int] | None = None
    _pane_retry: asyncio.TimerHandle | None = None
    pane_reinvites: int = 0

    @property
    def remote_uri(self) -> str:
        """Who the site is (its From/To URI)."""
        return self.call.remote_uri

    @property
    def audio_only(self) -> bool:
        """True for phones that negotiated no video (shown with a placeholder tile)."""
        return not any(s.kind == "video" for s in self.call.streams)

    @property
    def connected(self) -> bool:
        """The call is not over (calling, in the IVR or in the room)."""
        return self.call.state != CallState.TERMINATED

    @property
    def camera(self) -> H224Channel | None:
        """Far-end camera control, when the call negotiated H.224 (RFC 4573)."""
        channel = self.leg.h224
        return channel if channel is not None and channel.started and self.connected else None

    def hangup(self) -> None:
        """End the call."""
        self.gateway.endpoint.hangup(self.call)

    def statistics(self) -> list[StreamStatistics]:
        """Per-stream codec, resolution, bytes, loss, jitter."""
        return self.leg.statistics()

    # -- the RtpLeg the room sends through ------------------------------------------------
    def send_audio(self, pcm: Pcm) -> None:
        """20 ms of the site's mix."""
        self.leg.send_audio(pcm)

    def send_video_access_unit(self, access_unit: bytes, timestamp_90k: int) -> None:
        """One access unit of the shared encoder."""
        self.leg.send_video_access_unit(access_unit, timestamp_90k)

    def request_keyframe(self) -> None:
        """Ask the endpoint for a key frame by RTCP and by SIP INFO (room systems differ)."""
        self.leg.request_keyframe()
        self.gateway.endpoint.request_fast_update(self.call)

    # -- pane size (mcu.pane_size): decode what is shown, ask the peer for that size -------
    def set_video_decode(self, mode: str) -> None:
        """Decode off / fast / full (the leg's decoder)."""
        self.leg.set_video_decode(mode)

    @property
    def video_frames_skipped(self) -> int:
        """Video frames received and not decoded."""
        return self.leg.video_frames_skipped

    def ask_pane_size(self, size: tuple[int, int] | None) -> None:
        """Ask the peer to send ``size``: RFC 6236 imageattr in a re-INVITE, and TMMBR for the rate.

        A peer whose answer to our imageattr re-INVITE carries none does not support it: it gets
        no further re-INVITEs (only TMMBR). Hidden sources (None) are not asked anything: they are
        simply not decoded, and are shown again at once with the size they had.
        """
        if size is None or self.audio_only or self.call.state != CallState.CONFIRMED:
            return
        self._pane_wanted = size
        if self._imageattr is None and self._imageattr_asked and not self.call.reinvite_pending:
            self._imageattr = has_imageattr(self.call.remote_answer)  # our one try got its answer
        if self._imageattr is not False:
            self._reinvite_for(size)
        self._tmmbr_for(size)

    def _reinvite_for(self, size: tuple[int, int]) -> None:
        if self.call.reinvite_pending:  # one at a time: try the newest size again shortly
            if self._pane_retry is None:
                self._pane_retry = asyncio.get_running_loop().call_later(1.0, self._retry_pane)
            return
        if self.gateway.endpoint.ask_video_size(self.call, size):
            self._imageattr_asked = True
            self.pane_reinvites += 1

    def _retry_pane(self) -> None:
        self._pane_retry = None
        if self._pane_wanted is not None and self.connected:
            self.ask_pane_size(self._pane_wanted)

    def _tmmbr_for(self, size: tuple[int, int]) -> None:
        channel = self.leg.video
        session = channel.session if channel is not None else None
        if channel is None or session is None or not session.stream.tmmbr or session.remote_ssrc is None:
            return
        # the pane's rate, unless the line is congested now (the loss tracker's slow-down stays)
        channel.send_rtcp(build_tmmbr(session.send.ssrc, session.remote_ssrc, session.rate_request(rate_for(size))))

    # -- the leg's MediaSink until the room attaches its own: only digits matter ----------
    def on_audio(self, leg: MediaLeg, pcm: Pcm) -> None:
        """Ignored until the caller is in the room."""

    def on_video(self, leg: MediaLeg, frame: av.VideoFrame) -> None:
        """Ignored until the caller is in the room."""

    def on_dtmf(self, leg: MediaLeg, digit: str) -> None:
        """RFC 4733 digit → IVR."""
        self.gateway.ivr_digit(self, digit)

    def on_keyframe_request(self, leg: MediaLeg) -> None:
        """Nothing to refresh yet."""


class SipGateway:
    """Routes SIP calls into rooms (dial-in with IVR/PIN, dial-out)."""

    def __init__(self, endpoint: SipEndpoint, directory: Directory, media_host: str = "127.0.0.1",
                 port_range: tuple[int, int] = RTP_PORT_RANGE, pins: PinPolicy | None = None,
                 prompts: Mapping[str, Pcm] | None = None, lines: SiteLines | None = None,
                 dscp: DscpMarking | None = None) -> None:
        self.endpoint = endpoint
        self.lines = lines
        self.dscp = dscp or DscpMarking()  # settings.rtp.dscp_*: every leg's RTP/RTCP marking
        self.directory = directory
        self.prompts: Mapping[str, Pcm] = prompts or PROMPTS
        self.media_host = media_host
        self.port_range = port_range
        self.pins: PinPolicy = pins or RoomPinPolicy(directory)
        self._checks: set[asyncio.Task[None]] = set()
        self.sites: dict[str, SipSite] = {}
        self.floors: Floors | None = None  # BFCP (set by the bridge when the node has content)
        endpoint.router = with_default(endpoint.router, self.on_invite)  # conferences: the router's default
        endpoint.listeners.append(self._on_event)

    def _lookup(self, conference_id: str, call: Call) -> tuple[bool, bool]:
        """For the IVR: (the caller may go on to this conference, it needs a PIN)."""
        room = self.directory.find(conference_id)
        if room is None or self.pins.screen(conference_id, call) in ("challenge", "refused"):
            return (False, False)
        return (True, bool(room.pin))

    async def on_invite(self, call: Call) -> Decision:
        """Dial-in: numeric user = conference id, anything else = IVR."""
        user = call.request_user or ""
        room = None
        if user.isdigit():
            room = self.directory.find(user)
            if room is None:
                return Reject(404, "No such conference")
            screening = self.pins.screen(user, call)
            if screening == "challenge":
                return Challenge()
            if screening == "locked":
                return Reject(403, "Too many wrong PINs, try later")
            if screening == "refused":
                return Reject(403, "Forbidden")
        wants_video = call.offer is None or any(m.kind == "video" and m.port for m in call.offer.media)
        try:
            leg = await MediaLeg.allocate(self.media_host, video=wants_video, port_range=self.port_range,
                                          dscp=self.dscp, h224=offers_h224(call.offer))
        except OSError:
            # Every RTP port of the configured range is in use: refuse cleanly, the caller may retry.
            log.error("no free RTP ports in %s-%s for a call from %s", *self.port_range, call.remote_uri)
            return Reject(503, "No media ports available")
        if call.state == CallState.TERMINATED:  # cancelled while we were binding ports
            await leg.close()
            return None
        site = SipSite(call, leg, self, ivr=Ivr(functools.partial(self._lookup, call=call),
                                                user if user.isdigit() else None))
        self.add(site)
        local = leg.local_media if self.lines is None else self.lines.local_media_for(call, leg.local_media)
        if self.floors is not None and call.offer is not None:
            hosts = frozenset(h for h in (call.source.host if call.source else None, call.flow.host) if h)
            extra = await self.floors.answer(user if room is not None else "", call.key, call.offer, hosts)
            if _terminated(call):  # cancelled while the slides stream bound its ports
                self.floors.ended(call.key)
                return None
            local = replace(local, extra=extra) if extra else local
        return Answer(local)

    async def dial_out(self, room: Room, uri: str) -> SipSite:
        """Invite a site into ``room`` (chair console: invite/redial)."""
        leg = await MediaLeg.allocate(self.media_host, video=True, port_range=self.port_range, dscp=self.dscp,
                                      h224=True)
        local, placeholder = await self.offer_floors(room.conference_id, leg.local_media)
        call = self.endpoint.invite(uri, local)
        self.bind_floors(placeholder, call)
        site = SipSite(call, leg, self, room=room)
        self.add(site)
        return site

    async def offer_floors(self, conference_id: str, local: LocalMedia) -> tuple[LocalMedia, str]:
        """``local`` with the slides and BFCP m-lines of a dial-out offer after our own ones (the room
        system may present), and the placeholder key to :meth:`bind_floors` once the call exists."""
        if self.floors is None:
            return local, ""
        placeholder = f"offer-{secrets.token_hex(8)}"
        first = 2 + (1 if local.h224_port and self.endpoint.config.policy.srtp != "required" else 0)
        extra = await self.floors.offer(conference_id, placeholder, first)
        return (replace(local, extra=extra) if extra else local), placeholder

    def bind_floors(self, placeholder: str, call: Call) -> None:
        if self.floors is not None and placeholder:
            self.floors.rekey(placeholder, call.key)

    def add(self, site: SipSite) -> None:
        """Route ``site``'s call events here; until it is in a room its leg's media comes to it."""
        site.leg.sink = site
        self.sites[site.call.key] = site

    # ------------------------------------------------------------------ events

    def _on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.CallEstablished | ev.MediaUpdated):
            site = self.sites.get(event.call.key)
            if site is None:
                return
            local = event.call.local_media
            others = {e.index for e in local.extra} if local is not None else set()  # BFCP/slides: not ours
            # an offered extra stream (a cascade link's slides) is known by its port: its index is the offer's
            ports = {e.port for e in local.extra if e.port} if local is not None else set()
            site.leg.start([s for s in event.call.streams if s.index not in others and s.local_port not in ports])
            if isinstance(event, ev.CallEstablished):
                if self.floors is not None and event.call.remote_answer is not None:  # our offer's answer
                    self._answered(site, event.call.remote_answer)
                if site.room is not None and site.ivr is None:
                    self._join(site, site.room)  # dial-out: straight in
                elif site.ivr is not None:
                    site._ivr_task = asyncio.ensure_future(self._ivr_audio(site))
                    self._apply(site, site.ivr.start())
        elif isinstance(event, ev.DtmfReceived):
            site = self.sites.get(event.call.key)
            if site is not None:
                self.ivr_digit(site, event.digit)
        elif isinstance(event, ev.PictureFastUpdate):
            site = self.sites.get(event.call.key)
            if site is not None and site.room is not None:
                site.leg.sink.on_keyframe_request(site.leg)
        elif isinstance(event, ev.CallEnded):
            site = self.sites.pop(event.call.key, None)
            if site is not None:
                self._cleanup(site)

    def _answered(self, site: SipSite, answer: SessionDescription) -> None:
        assert self.floors is not None
        call = site.call
        hosts = frozenset(h for h in (call.source.host if call.source else None, call.flow.host) if h)
        task = asyncio.get_running_loop().create_task(self.floors.answered(call.key, answer, list(call.streams),
                                                                           hosts))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    def _cleanup(self, site: SipSite) -> None:
        if site._ivr_task is not None:
            site._ivr_task.cancel()
        if site._digit_timer is not None:
            site._digit_timer.cancel()
        if site.room is not None and site.ivr is None:
            site.room.leave(site)
        if self.floors is not None:
            self.floors.ended(site.call.key)
        asyncio.ensure_future(site.leg.close())

    # ------------------------------------------------------------------ IVR

    def ivr_digit(self, site: SipSite, digit: str) -> None:
        """A digit from RFC 4733 or SIP INFO."""
        if site.ivr is not None:
            self._apply(site, site.ivr.digit(digit))
        elif site.room is not None and site.leg.sink is not site:
            site.leg.sink.on_dtmf(site.leg, digit)  # in the room: the room decides

    def _apply(self, site: SipSite, outputs: list[IvrOutput]) -> None:
        loop = asyncio.get_running_loop()
        for out in outputs:
            if isinstance(out, Prompt):
                site.prompt_queue.append(self.prompts[out.name])
            elif isinstance(out, DigitTimer):
                if site._digit_timer is not None:
                    site._digit_timer.cancel()
                    site._digit_timer = None
                if out.seconds and site.ivr is not None:
                    site._digit_timer = loop.call_later(out.seconds, self._digit_timeout, site)
            elif isinstance(out, CheckPin):
                task = loop.create_task(self._check_pin(site, out))
                self._checks.add(task)
                task.add_done_callback(self._checks.discard)
            elif isinstance(out, Join):
                room = self.directory.find(out.conference_id)
                if room is None:
                    site.hangup()
                    return
                site.room = room
                loop.call_later(0.7, self._finish_ivr, site)  # let "joining" play
            elif isinstance(out, Hangup):
                log.info("IVR hangs up %s: %s", site.remote_uri, out.reason)
                loop.call_later(1.0, site.hangup)

    async def _check_pin(self, site: SipSite, check: CheckPin) -> None:
        try:
            verdict = await self.pins.check_pin(check.conference_id, check.pin, site.call)
        except Exception:  # noqa: BLE001 - a failing check must not leave the caller in silence
            log.exception("PIN check for %s failed", site.remote_uri)
            verdict = "refused"
        if site.call.key in self.sites and site.ivr is not None:
            self._apply(site, site.ivr.pin_result(verdict))

    def _digit_timeout(self, site: SipSite) -> None:
        site._digit_timer = None
        if site.ivr is not None:
            self._apply(site, site.ivr.timeout())

    def _finish_ivr(self, site: SipSite) -> None:
        if site.call.key not in self.sites or site.room is None:
            return
        site.ivr = None
        if site._ivr_task is not None:
            site._ivr_task.cancel()
        self._join(site, site.room)

    def _join(self, site: SipSite, room: Room) -> None:
        site.room = room
        sink = room.join(site)
        if self.floors is not None and site.site_id:
            self.floors.joined(site.call.key, site.site_id)
        if sink is not None:
            site.leg.sink = sink
            site.request_keyframe()  # a room with its own media asks at join (SiteMedia does it itself)

    async def _ivr_audio(self, site: SipSite) -> None:
        """Play queued prompts (silence in between) at 20 ms pace until the caller joins."""
        silence = np.zeros(SAMPLES_PER_FRAME, dtype=np.int16)
        pending = np.zeros(0, dtype=np.int16)
        pacer = Pacer(AUDIO_PERIOD)
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                if len(pending) < SAMPLES_PER_FRAME and site.prompt_queue:
                    pending = np.concatenate([pending, site.prompt_queue.popleft()])
                if len(pending) >= SAMPLES_PER_FRAME:
                    frame, pending = pending[:SAMPLES_PER_FRAME], pending[SAMPLES_PER_FRAME:]
                elif len(pending):
                    frame = np.concatenate([pending, silence[: SAMPLES_PER_FRAME - len(pending)]])
                    pending = np.zeros(0, dtype=np.int16)
                else:
                    frame = silence
                site.leg.send_audio(frame)
                await pacer.wait()


def _terminated(call: Call) -> bool:
    """The call ended (checked again after an await: a CANCEL may have come in meanwhile)."""
    return call.state == CallState.TERMINATED
