"""Content on the cascade links: a second video stream marked ``a=content:slides`` (RFC 4796) on
each primary link call, carrying the content away from the presenter along the tree.

* The child's INVITE to its parent offers it (:meth:`LinkContent.offer`); the parent's admission
  answers it (:meth:`LinkContent.answer`). Each end binds the stream on a media leg of its own, as
  the BFCP slides stream of a SIP room system does (:mod:`mcu.legs.sip_bfcp`); the call's main leg
  leaves it alone (``LocalMedia.extra``).
* **Out:** while the conference's content tree says this node sends the content on that link
  (:meth:`mcu.cascade.content_link.CascadedContent.sends_to`: every link but the one the content
  comes in on) and the content picture is live, the room's one shared ``content`` encoder (the
  same encoder key as the BFCP/H.239 receivers', so no encode per link) feeds the link's stream.
* **In:** the stream's decoded frames become this node's content picture when the tree says the
  content comes in on that link (``link_frame``; frames on any other link are dropped). A node in
  the middle decodes once and re-encodes once with its shared encoder for its other links and its
  own receivers.
* A key frame is asked on the stream when the link becomes the content's way in and again while
  nothing decodes on it for ``stall_after``; a key-frame request from the far end goes to the shared
  encoder.
* Both calls of a link offer it: the primary (answered by the parent's admission) and the backup
  calls of both ends into the telecom bridge (answered by the bridge, which forwards the content
  between them: :mod:`mcu.cascade.bridge_content`). A stream is the link's by the far node's name,
  whichever call carries it. Over SRTP (``srtp = "required"``) it is RTP/SAVP with keys of its own.

The links are polled every ``interval`` s (a few dict lookups per link): streams start once the
call has negotiated, subscriptions follow the tree, legs close when their call ends.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field, replace
from typing import Protocol

import av

from core.tasks import cancel_and_wait
from mcu.legs.sip import SipSite
from mcu.legs.sip_bridge import SipBridge
from mcu.legs.site_media import size_for_h264_level
from mcu.room import CONTENT_SIZE, CONTENT_VIEW, Room, Subscription
from sip_gateway.aio.rtp_leg import MediaLeg
from sip_gateway.bfcp.sdp import is_slides, mark_slides, slides_index
from sip_gateway.rtp.codecs import Pcm
from sip_gateway.rtp.media_description import ExtraMedia, LocalMedia, MediaPolicy
from sip_gateway.sip import events as ev
from sip_gateway.sip.sdp import Media, SdpError, SessionDescription, create_offer, narrowed
from sip_gateway.sip.sdp import answer as answer_sdp

log = logging.getLogger(__name__)

SLIDES_LABEL = "slides"
OFFER_INDEX = 64  # an offered extra m-line goes after ours; the main leg skips it by its port


class LinkTree(Protocol):
    """A cascaded conference's content tree (``CascadedContent``)."""

    def sends_to(self, node: str) -> bool: ...

    def link_frame(self, node: str, frame: av.VideoFrame) -> None: ...

    def comes_from(self, node: str) -> bool: ...


class ContentTrees(Protocol):
    """The control service: the content tree of a running cascaded conference."""

    def content_tree(self, conference_id: str) -> LinkTree | None: ...


@dataclass
class LinkSlides:
    """The slides stream of one link call."""

    conference_id: str
    site_id: str
    node: str  # the node on the other side
    leg: MediaLeg
    started: bool = False
    sending: Subscription | None = None
    receiving: bool = False
    frames_in: int = 0
    call: SipSite | None = None  # the call whose SDP carries this stream (bound once it is registered)
    made_at: float = 0.0
    counted: int = 0  # frames_in when it last grew
    stalled_since: float = 0.0


class _Sink:
    def __init__(self, owner: LinkContent, link: LinkSlides) -> None:
        self.owner, self.link = owner, link

    def on_audio(self, leg: MediaLeg, pcm: Pcm) -> None:
        pass

    def on_video(self, leg: MediaLeg, frame: av.VideoFrame) -> None:
        self.link.frames_in += 1
        tree = self.owner.trees.content_tree(self.link.conference_id) if self.owner.trees is not None else None
        if tree is not None:
            tree.link_frame(self.link.node, frame)

    def on_dtmf(self, leg: MediaLeg, digit: str) -> None:
        pass

    def on_keyframe_request(self, leg: MediaLeg) -> None:
        if self.link.sending is not None:
            self.link.sending.request_keyframe()


@dataclass
class LinkContent:
    """The slides streams of this node's cascade link calls (see the module docstring)."""

    sip: SipBridge
    policy: MediaPolicy = field(default_factory=MediaPolicy)
    trees: ContentTrees | None = None  # set once the control channels run (composition root)
    interval: float = 0.2
    stall_after: float = 1.0  # s without a decoded frame on the way in before a key frame is asked again
    bind_within: float = 40.0  # a stream whose call never appears (the INVITE refused locally) is dropped
    links: dict[int, LinkSlides] = field(default_factory=dict)  # by the stream's local RTP port
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.sip.endpoint.listeners.append(self._on_event)
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="cascade-link-content")

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.sip.endpoint.listeners.remove(self._on_event)
        if self._task is not None:
            await cancel_and_wait([self._task], swallow_errors=True)
            self._task = None
        for link in list(self.links.values()):
            await self._close(link)

    # ---- SDP -----------------------------------------------------------------------------------
    async def offer(self, conference_id: str, site_id: str, node: str) -> tuple[ExtraMedia, ...]:
        """The slides m-line for a link call we are about to place (empty: no ports for it)."""
        link = await self._allocate(conference_id, site_id, node)
        if link is None:
            return ()
        assert link.leg.audio is not None and link.leg.video is not None
        # protected like the call's own audio and video: RTP/SAVP with keys of its own (SDES,
        # a=crypto) when the policy requires SRTP, plain RTP/AVP otherwise (as the main m-lines)
        secure = self.policy.srtp == "required"
        sdp = create_offer(self.policy, LocalMedia(self.sip.media_host, link.leg.audio.port, link.leg.video.port),
                           secure=secure)
        video = next(m for m in sdp.media if m.kind == "video")
        mark_slides(video, SLIDES_LABEL)
        return (_extra(OFFER_INDEX, video),)

    async def answer(self, conference_id: str, site_id: str, node: str,
                     offer: SessionDescription | None) -> tuple[ExtraMedia, ...]:
        """Our answer to a link call's slides m-line (empty: the offer has none)."""
        index = slides_index(offer.media) if offer is not None else None
        if offer is None or index is None:
            return ()
        link = await self._allocate(conference_id, site_id, node)
        if link is None:
            return (_extra(index, Media("video", 0, offer.media[index].proto, offer.media[index].formats[:1])),)
        assert link.leg.audio is not None and link.leg.video is not None
        alone = SessionDescription(connection=offer.connection, media=[offer.media[index]])
        try:
            sdp, streams = answer_sdp(alone, self.policy,
                                      LocalMedia(self.sip.media_host, link.leg.audio.port, link.leg.video.port))
        except SdpError as exc:
            log.info("cascade slides of %s refused: %s", site_id, exc)
            await self._close(link)
            return (_extra(index, Media("video", 0, offer.media[index].proto, offer.media[index].formats[:1])),)
        link.leg.start(streams)
        link.started = True
        return (_extra(index, mark_slides(sdp.media[0], SLIDES_LABEL)),)

    async def _allocate(self, conference_id: str, site_id: str, node: str) -> LinkSlides | None:
        try:
            leg = await MediaLeg.allocate(self.sip.media_host, video=True, port_range=self.sip.port_range)
        except OSError:
            log.error("no RTP ports for the cascade slides stream of %s", site_id)
            return None
        assert leg.video is not None
        link = LinkSlides(conference_id, site_id, node, leg, made_at=asyncio.get_running_loop().time())
        leg.sink = _Sink(self, link)
        self.links[leg.video.port] = link
        return link

    # ---- the negotiated stream ---------------------------------------------------------------------
    def _on_event(self, event: ev.Event) -> None:
        """A link call's offer/answer completed (or our re-offer's answer came): start the slides
        stream on what was negotiated, at once.

        Not left to the poll: a re-offer from the far end (its pane-size re-INVITE, a session
        refresh) is answered from our extra m-line as it stands, and the streams of such an answer
        do not list the extra stream any more; a stream not started before that would never be.
        On the offering side the m-line is cut down to the chosen payload type at the same moment
        (before any re-offer can come), so that every later SDP of ours names that one format.
        """
        if not isinstance(event, ev.CallEstablished | ev.MediaUpdated):
            return
        call, local = event.call, event.call.local_media
        if local is None or not local.extra:
            return
        extra = list(local.extra)
        for i, e in enumerate(extra):
            link = self.links.get(e.port)
            stream = next((s for s in call.streams if s.kind == "video" and s.local_port == e.port), None)
            if link is None or stream is None:
                continue  # not ours, or an answer to the far end's re-offer: the stream goes on as it was
            link.leg.start([stream])
            link.started = True
            if len(e.formats) > 1:
                extra[i] = narrowed(e, stream.codec.payload_type)
        if tuple(extra) != local.extra:
            call.local_media = replace(local, extra=tuple(extra))

    # ---- following the calls and the tree --------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            for link in list(self.links.values()):
                try:
                    await self._follow(link)
                except Exception:  # one link must not stop the others
                    log.exception("cascade slides of %s", link.site_id)

    def _carries(self, site: SipSite, link: LinkSlides) -> bool:
        """Whether ``site``'s call is the one whose SDP has this stream (its port is among our extra m-lines)."""
        local = site.call.local_media
        return local is not None and link.leg.video is not None \
            and any(e.port == link.leg.video.port for e in local.extra)

    async def _follow(self, link: LinkSlides) -> None:
        if link.call is None:
            site = self.sip.sites.get((link.conference_id, link.site_id))
            if site is not None and site.connected and self._carries(site, link):
                link.call = site
            elif asyncio.get_running_loop().time() - link.made_at > self.bind_within:
                await self._close(link)  # its call never came (refused before it was sent, or failed)
                return
            else:
                return
        site = link.call
        if not site.connected or self.sip.sites.get((link.conference_id, link.site_id)) is not site:
            await self._close(link)  # the call is over (or a newer call of the link took its place)
            return
        if not link.started:
            stream = next((s for s in site.call.streams if s.kind == "video" and link.leg.video is not None
                           and s.local_port == link.leg.video.port), None)
            if stream is None:
                return
            link.leg.start([stream])
            link.started = True
        conf = self.sip.conferences.running(link.conference_id)
        if conf is not None and link.started:
            # the far end gets the content on this stream (or is its source): the link's own picture
            # stays people-only; a link without one (the backup path) gets the content composed
            conf.room.content_receivers.add(link.site_id)
        tree = self.trees.content_tree(link.conference_id) if self.trees is not None else None
        if conf is None or tree is None:
            self._send(link, None, False)
            return
        feed = conf.room.content
        live = feed is not None and feed.content_sample() is not None
        self._send(link, conf.room, live and tree.sends_to(link.node))
        receiving = tree.comes_from(link.node)
        now = asyncio.get_running_loop().time()
        if receiving and not link.receiving:
            link.leg.request_keyframe()  # the new way in: its picture starts at once
            link.stalled_since = now
        elif receiving and link.frames_in == link.counted and now - link.stalled_since >= self.stall_after:
            # nothing decodable for a while (the far end began sending after our first request, or a
            # reference was lost): ask again (the leg rate-limits its PLI/FIR)
            link.leg.request_keyframe()
            link.stalled_since = now
        if link.frames_in != link.counted:
            link.counted, link.stalled_since = link.frames_in, now
        link.receiving = receiving

    def _send(self, link: LinkSlides, room: Room | None, wanted: bool) -> None:
        video = link.leg.video
        if wanted and link.sending is None and room is not None and video is not None \
                and video.session is not None:
            codec = video.session.codec
            name = "vp8" if codec.name == "VP8" else "h264"
            size = CONTENT_SIZE if name == "vp8" else size_for_h264_level(
                codec.fmtp_params.get("profile-level-id"), CONTENT_SIZE)
            leg = link.leg
            link.sending = room.subscribe_view(
                CONTENT_VIEW, lambda packet: leg.send_video_access_unit(packet.data, packet.pts), name, *size,
                single_nal=name == "h264" and codec.packetization_mode == 0)
        elif not wanted and link.sending is not None:
            link.sending.close()
            link.sending = None

    async def _close(self, link: LinkSlides) -> None:
        if link.leg.video is None or self.links.pop(link.leg.video.port, None) is None:
            return
        self._send(link, None, False)
        conf = self.sip.conferences.running(link.conference_id)
        if conf is not None and not any(o.site_id == link.site_id and o.conference_id == link.conference_id
                                        and o.started for o in self.links.values()):
            conf.room.content_receivers.discard(link.site_id)
        with contextlib.suppress(Exception):
            await link.leg.close()

    def status(self) -> list[dict[str, object]]:
        """Per link: the slides stream's state (tests, diagnostics)."""
        return [{"conference_id": link.conference_id, "site_id": link.site_id, "node": link.node,
                 "bound": link.call is not None, "started": link.started, "sending": link.sending is not None,
                 "receiving": link.receiving, "frames_in": link.frames_in}
                for link in self.links.values()]


def _extra(index: int, media: Media) -> ExtraMedia:
    return ExtraMedia(index, media.kind, media.port, media.proto, tuple(media.formats), tuple(media.attributes))


__all__ = ["LinkContent", "is_slides"]
