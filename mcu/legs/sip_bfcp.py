"""BFCP for SIP room systems: the MCU as floor control server of each conference's content token.

The gateway (:class:`mcu.legs.sip.SipGateway`) asks :class:`SipFloors` for the answer to an offer's
BFCP stream (RFC 8856) when a room system dials a conference; this module gives the site a BFCP User
ID, answers ``m=application <port> TCP/BFCP *`` (or ``UDP/BFCP`` on the same port number, or
``TCP/TLS/BFCP`` on the TLS port with our certificate's ``a=fingerprint``) with ``a=floorctrl:s-only``, ``a=confid``, ``a=userid``,
``a=floorid:1 mstrm:<label>``, ``a=setup:passive``, ``a=connection:new`` on the node's one BFCP
listener (:class:`sip_gateway.aio.bfcp_listener.BfcpListener`), and refuses the offered
``a=content:slides`` video stream (port 0: the slides media path is not built yet, see
docs/sip-conference.md). When the site joins, its User ID is bound to its participant id; the floor is
the conference's :class:`mcu.content.service.ConferenceContent` (FloorRequest takes the token as any
presenter does; the chair's grant/revoke/take reach the site as FloorRequestStatus/FloorStatus through
``floor_listeners``). On a lower node of a cascade the token is the root's: a FloorRequest is Pending
while the root decides, then Granted (the tree's holder names the site) or Denied; FloorStatus shows
the tree's holder. When the call ends, the site's floor request ends with it.

The BFCP Conference ID is the conference's numeric id (``80000001``), so a room's ``a=confid`` reads
like the number it dialled.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import av

from mcu.legs.site_media import size_for_h264_level
from mcu.room import CONTENT_SIZE, CONTENT_VIEW, PacketSink
from sip_gateway.aio.bfcp_listener import BfcpListener
from sip_gateway.aio.ports import RTP_PORT_RANGE
from sip_gateway.aio.rtp_leg import MediaLeg
from sip_gateway.bfcp.sdp import (
    SUPPORTED_PROTO,
    TLS_PROTO,
    UDP_PROTO,
    BfcpAnswer,
    acceptable,
    bfcp_media,
    find_bfcp,
    is_bfcp,
    mark_slides,
    rejected,
    slides_index,
)
from sip_gateway.bfcp.server import FloorControlServer, FloorVerdict
from sip_gateway.rtp.codecs import Pcm
from sip_gateway.rtp.media_description import ExtraMedia, LocalMedia, MediaPolicy, MediaStream
from sip_gateway.sip.sdp import Media, SdpError, SessionDescription, create_offer
from sip_gateway.sip.sdp import answer as answer_sdp

log = logging.getLogger(__name__)

FLOOR_ID = 1
SLIDES_LABEL = "2"


class ContentSubscription(Protocol):
    def request_keyframe(self) -> None: ...
    def close(self) -> None: ...


class ContentRoom(Protocol):
    @property
    def content_receivers(self) -> set[str]: ...

    def subscribe_view(self, view_id: str, sink: PacketSink, codec: str = "h264", width: int = 1280,
                       height: int = 720, single_nal: bool = False) -> ContentSubscription: ...


class ContentConference(Protocol):
    @property
    def room(self) -> ContentRoom: ...


class ContentFloor(Protocol):
    """What BFCP needs of a conference's content (``mcu.content.service.ConferenceContent`` is one)."""

    @property
    def floor_holder(self) -> str | None:
        """Who holds the floor (a site of this node by its id; on a lower cascade node, the tree's holder)."""
    @property
    def floor_requests(self) -> Sequence[tuple[str, float]]:
        """Requests not decided yet (the chair's queue; on a lower cascade node, those the root decides)."""
    @property
    def floor_listeners(self) -> list[Callable[[], None]]: ...

    def floor_request(self, who: str) -> FloorVerdict: ...
    def floor_release(self, who: str) -> FloorVerdict: ...
    def holds(self, who: str) -> bool: ...
    def on_frame(self, who: str, frame: av.VideoFrame) -> None: ...
    def content_sample(self) -> object | None: ...
    @property
    def conf(self) -> ContentConference: ...
    @property
    def channels(self) -> dict[str, Callable[[dict[str, Any]], None]]: ...


class Contents(Protocol):
    """The node's content service: a running conference's content (None: not running here)."""

    def get(self, conference_id: str) -> ContentFloor | None: ...


class _Floor:
    """A conference's content as the floor control server's :class:`~sip_gateway.bfcp.server.Floor`."""

    def __init__(self, content: ContentFloor) -> None:
        self.content = content

    @property
    def holder(self) -> str | None:
        return self.content.floor_holder

    @property
    def requests(self) -> Sequence[tuple[str, float]]:
        return self.content.floor_requests

    def request(self, who: str, now: float) -> FloorVerdict:
        return self.content.floor_request(who)

    def release(self, who: str, now: float) -> FloorVerdict:
        return self.content.floor_release(who)


@dataclass
class _Client:
    conference_id: int
    user_id: int
    content: ContentFloor
    participant: str = ""
    slides: MediaLeg | None = None  # the site's slides stream (a=content:slides): its content picture
    offered: tuple[int, int] | None = None  # dial-out: (slides index, BFCP index) of our offer
    sending: ContentSubscription | None = None  # the room's content encoder onto the slides stream


class _SlidesSink:
    """The slides leg's MediaSink: decoded frames become the conference's content while the site holds
    the token (``ConferenceContent.on_frame`` drops them otherwise)."""

    def __init__(self, client: _Client) -> None:
        self.client = client

    def on_audio(self, leg: MediaLeg, pcm: Pcm) -> None:
        pass

    def on_video(self, leg: MediaLeg, frame: av.VideoFrame) -> None:
        if self.client.participant:
            self.client.content.on_frame(self.client.participant, frame)

    def on_dtmf(self, leg: MediaLeg, digit: str) -> None:
        pass

    def on_keyframe_request(self, leg: MediaLeg) -> None:
        pass


@dataclass
class SipFloors:
    """BFCP (and the slides stream it controls) for every SIP site of this node's conferences."""

    listener: BfcpListener
    contents: Contents
    media_host: str = "127.0.0.1"
    port_range: tuple[int, int] = RTP_PORT_RANGE
    policy: MediaPolicy = field(default_factory=MediaPolicy)
    _clients: dict[str, _Client] = field(default_factory=dict)  # by call key
    _floors: dict[int, _Floor] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def answer(self, conference_id: str, call_key: str, offer: SessionDescription,
                     hosts: frozenset[str] = frozenset()) -> tuple[ExtraMedia, ...]:
        """Our answers to the offer's BFCP and slides streams (empty: nothing to answer)."""
        found = find_bfcp(offer.media)
        slides = slides_index(offer.media)
        reason = acceptable(found, self.transports()) if found is not None else "no BFCP stream"
        content = self.contents.get(conference_id) if conference_id.isdigit() else None
        if reason is None and content is None:
            reason = "the conference has no content here"
        if reason is None and not self.listener.port:
            reason = "no BFCP listener"
        if found is None or reason is not None or content is None:
            if found is not None:
                log.info("BFCP stream of %s refused: %s", call_key, reason)
            return tuple(_extra(i, rejected(offer.media[i])) for i in sorted(
                {x for x in (slides, found.index if found else None) if x is not None}))
        bfcp_conference = int(conference_id) & 0xFFFFFFFF
        server = self._server(bfcp_conference, content)
        old = self._clients.pop(call_key, None)
        if old is not None:
            self._close_slides(old)
        user_id = old.user_id if old is not None else self._new_user(bfcp_conference, server.clients)
        # the participant id once the site joins (joined()); the connection must come from the call's host
        server.add_client(user_id, call_key, hosts)
        client = _Client(bfcp_conference, user_id, content)
        self._clients[call_key] = client
        out = [_extra(found.index, bfcp_media(self._ours(found.proto, bfcp_conference, user_id)))]
        if slides is not None:
            out.append(await self._slides(client, offer, slides))
        return tuple(sorted(out, key=lambda e: e.index))

    def _server(self, bfcp_conference: int, content: ContentFloor) -> FloorControlServer:
        floor = self._floors.get(bfcp_conference)
        if floor is None or floor.content is not content:
            floor = _Floor(content)
            self._floors[bfcp_conference] = floor
            content.floor_listeners.append(lambda: self._floor_changed(bfcp_conference))
        return self.listener.server_for(bfcp_conference, FLOOR_ID, floor)

    # ---- dial-out: our offer carries the slides and BFCP streams ---------------------------------
    async def offer(self, conference_id: str, call_key: str, first_index: int) -> tuple[ExtraMedia, ...]:
        """The m-lines a dial-out offer adds after our own (``first_index``: the position of the first):
        a slides video stream (``a=content:slides``, ``a=label:2``) on a media leg of its own, then
        ``m=application <port> TCP/BFCP *`` with ``a=floorctrl:s-only``, ``a=confid``, ``a=userid``,
        ``a=floorid:1 mstrm:2``, ``a=setup:actpass``, ``a=connection:new``. Empty when the conference has
        no content here or no port is free: the offer is then a plain one. :meth:`rekey` moves the
        client to the call's key once the INVITE exists; :meth:`answered` reads the site's answer."""
        content = self.contents.get(conference_id) if conference_id.isdigit() else None
        if content is None or not self.listener.port:
            return ()
        bfcp_conference = int(conference_id) & 0xFFFFFFFF
        server = self._server(bfcp_conference, content)
        try:
            leg = await MediaLeg.allocate(self.media_host, video=True, port_range=self.port_range)
        except OSError:
            log.error("no RTP ports for a slides stream in %s-%s: offering without content", *self.port_range)
            return ()
        assert leg.audio is not None and leg.video is not None
        user_id = self._new_user(bfcp_conference, server.clients)
        server.add_client(user_id, call_key)
        client = _Client(bfcp_conference, user_id, content, slides=leg, offered=(first_index, first_index + 1))
        leg.sink = _SlidesSink(client)
        self._clients[call_key] = client
        video = create_offer(self.policy, LocalMedia(self.media_host, leg.audio.port, leg.video.port)).media[1]
        bfcp = bfcp_media(self._ours(SUPPORTED_PROTO, bfcp_conference, user_id, setup="actpass"))
        return (_extra(first_index, mark_slides(video, SLIDES_LABEL)), _extra(first_index + 1, bfcp))

    def rekey(self, old: str, new: str) -> None:
        """The offer's placeholder key becomes the call's key."""
        client = self._clients.pop(old, None)
        if client is not None:
            self._clients[new] = client
            server = self.listener.servers.get(client.conference_id)
            if server is not None and client.user_id in server.clients:
                server.clients[client.user_id].participant = new

    async def answered(self, call_key: str, answer: SessionDescription, streams: Sequence[MediaStream],
                       hosts: frozenset[str] = frozenset()) -> None:
        """The site's answer to our offer: BFCP accepted (a port, a BFCP proto): its client may now speak
        from ``hosts`` (and over TCP with ``a=setup:passive`` we connect to it); the slides stream starts
        when accepted, else its leg closes. BFCP refused (port 0, or no such m-line): the site is an
        ordinary one and its BFCP client and slides leg go."""
        client = self._clients.get(call_key)
        if client is None or client.offered is None:
            return
        slides_index, bfcp_index = client.offered
        theirs = answer.media[bfcp_index] if bfcp_index < len(answer.media) else None
        if theirs is None or not theirs.port or not is_bfcp(theirs) or theirs.proto.upper() != SUPPORTED_PROTO:
            log.info("%s answered without BFCP: no content over BFCP for it", call_key)
            self.ended(call_key)
            return
        server = self.listener.servers.get(client.conference_id)
        if server is not None and client.user_id in server.clients:
            remote = theirs.connection or answer.connection
            server.clients[client.user_id].hosts = hosts | ({remote} if remote else set())
        slides = next((s for s in streams if s.index == slides_index and s.kind == "video"), None)
        if slides is not None and client.slides is not None:
            client.slides.start([slides])
        elif client.slides is not None:
            self._close_slides(client)
        if (theirs.attr("setup") or "").strip().lower() == "passive":
            host = theirs.connection or answer.connection
            if host:
                try:
                    await self.listener.connect(host, theirs.port)
                except OSError as exc:
                    log.warning("BFCP connection to %s:%s failed: %s", host, theirs.port, exc)

    def transports(self) -> tuple[str, ...]:
        """The BFCP transports this node runs (TCP and UDP share a port; TLS when a certificate is set)."""
        return (SUPPORTED_PROTO, UDP_PROTO) + ((TLS_PROTO,) if self.listener.tls_port else ())

    def _ours(self, proto: str, conference_id: int, user_id: int, setup: str = "passive") -> BfcpAnswer:
        port = self.listener.tls_port if proto == TLS_PROTO else self.listener.port
        return BfcpAnswer(port, conference_id, user_id, FLOOR_ID, SLIDES_LABEL, proto,
                          self.listener.fingerprint if proto == TLS_PROTO else "", setup)

    async def _slides(self, client: _Client, offer: SessionDescription, index: int) -> ExtraMedia:
        """Answer the slides stream on a media leg of its own (port 0 when no codec or port fits)."""
        try:
            leg = await MediaLeg.allocate(self.media_host, video=True, sink=_SlidesSink(client),
                                          port_range=self.port_range)
        except OSError:
            log.error("no RTP ports for a slides stream in %s-%s", *self.port_range)
            return _extra(index, rejected(offer.media[index]))
        assert leg.audio is not None and leg.video is not None
        alone = SessionDescription(connection=offer.connection, media=[offer.media[index]])
        try:
            sdp, streams = answer_sdp(alone, self.policy, LocalMedia(self.media_host, leg.audio.port, leg.video.port))
        except SdpError:
            await leg.close()
            return _extra(index, rejected(offer.media[index]))
        client.slides = leg
        leg.start(streams)
        return _extra(index, mark_slides(sdp.media[0], SLIDES_LABEL))

    def joined(self, call_key: str, participant_id: str) -> None:
        client = self._clients.get(call_key)
        server = self.listener.servers.get(client.conference_id) if client is not None else None
        if client is not None and server is not None and client.user_id in server.clients:
            client.participant = participant_id
            server.clients[client.user_id].participant = participant_id
            if client.slides is not None:
                client.content.channels[participant_id] = lambda message: self._told(client, message)
                self._send_content(client, client.content.content_sample() is not None)

    def _told(self, client: _Client, message: dict[str, Any]) -> None:
        """The content service's news for this site: content went live or stopped."""
        if message.get("type") == "content_live":
            self._send_content(client, bool(message.get("live")))

    def _send_content(self, client: _Client, live: bool) -> None:
        """While content is live, the room's shared content encoder feeds the site's slides stream
        (not the presenter's own: it knows its slides); the site's main stream shows the people."""
        leg = client.slides
        room = client.content.conf.room
        presenting = client.content.holds(client.participant)
        if live and not presenting and leg is not None and client.sending is None and leg.video is not None \
                and leg.video.session is not None:
            codec = leg.video.session.codec
            name = "vp8" if codec.name == "VP8" else "h264"
            size = CONTENT_SIZE if name == "vp8" else size_for_h264_level(
                codec.fmtp_params.get("profile-level-id"), CONTENT_SIZE)
            client.sending = room.subscribe_view(
                CONTENT_VIEW, lambda packet: leg.send_video_access_unit(packet.data, packet.pts), name, *size,
                single_nal=name == "h264" and codec.packetization_mode == 0)
            room.content_receivers.add(client.participant)
        elif not (live and not presenting) and client.sending is not None:
            client.sending.close()
            client.sending = None
            room.content_receivers.discard(client.participant)

    def ended(self, call_key: str) -> None:
        client = self._clients.pop(call_key, None)
        if client is not None:
            self.listener.remove_client(client.conference_id, client.user_id)
            self._close_slides(client)
            server = self.listener.servers.get(client.conference_id)
            if server is not None and not server.clients:  # the conference's last BFCP site left
                self.listener.drop(client.conference_id)

    def _floor_changed(self, conference_id: int) -> None:
        self.listener.floor_changed(conference_id)
        floor = self._floors.get(conference_id)
        holder = floor.holder if floor is not None else None
        for client in self._clients.values():
            if client.conference_id == conference_id and client.participant == holder and client.slides is not None:
                client.slides.request_keyframe()  # the new presenter's picture starts at once
            if client.conference_id == conference_id and client.participant and client.slides is not None:
                self._send_content(client, client.content.content_sample() is not None)

    def _close_slides(self, client: _Client) -> None:
        self._send_content(client, False)
        if client.content.channels.get(client.participant) is not None and client.participant:
            client.content.channels.pop(client.participant, None)
        if client.slides is not None:
            task = asyncio.get_running_loop().create_task(client.slides.close())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            client.slides = None

    async def close(self) -> None:
        for client in list(self._clients.values()):
            self._close_slides(client)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.listener.close()

    def _new_user(self, conference_id: int, taken: Mapping[int, object]) -> int:
        """A random free User ID (not guessable from the order sites joined in)."""
        for _ in range(64):
            user = secrets.randbelow(0xFFFF) + 1
            if user not in taken:
                return user
        return next(u for u in range(1, 0x10000) if u not in taken)


def _extra(index: int, media: Media) -> ExtraMedia:
    return ExtraMedia(index, media.kind, media.port, media.proto, tuple(media.formats), tuple(media.attributes))
