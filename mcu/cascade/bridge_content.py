"""Content on the backup path: the telecom bridge stand-in forwards the links' slides streams.

The real telecom conference systems (Huawei SMC, Poly RMX) carry a second content stream
(H.239 / BFCP) between their participants. Our bridge stand-in does the same for the cascade
calls that meet in one of its rooms: both ends of a link on backup offer their slides stream
(``a=content:slides``, :mod:`mcu.cascade.link_content`), the bridge answers it
(:meth:`BridgeContent.answer`, SRTP as its policy and the offer say) and forwards:

* **in:** frames decoded from a caller's slides stream make that caller the room's presenter —
  its floor is taken on its behalf (``ContentFloor.floor_request``, the room's own content token,
  as a BFCP room system's would be; the first sender wins, the other's frames are dropped while it
  holds) and the frames become the room's content picture; the token's media timeout frees it when
  they stop, and the room's content tick when the caller leaves;
* **out:** every other caller with a slides stream gets the room's shared ``content`` encoder on
  its stream while the picture is live (one encode per room, as on an MCU); callers with a slides
  stream get a people-only main picture (``content_receivers``), so nobody sees the slides twice.

The bridge knows nothing of the tree: which end may present is the cascade's content token (the
root's), carried by the control channel; the bridge only carries the picture. A key frame is asked
of a caller whose stream decodes nothing for ``stall_after`` while it is the way in.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import av

from core.tasks import cancel_and_wait
from mcu.legs.sip_bfcp import ContentFloor, Contents, ContentSubscription
from mcu.legs.sip_bridge import SipBridge
from mcu.legs.site_media import size_for_h264_level
from mcu.room import CONTENT_SIZE, CONTENT_VIEW
from sip_gateway.aio.rtp_leg import MediaLeg
from sip_gateway.bfcp.sdp import mark_slides, slides_index
from sip_gateway.rtp.codecs import Pcm
from sip_gateway.rtp.media_description import ExtraMedia, LocalMedia, MediaPolicy
from sip_gateway.sip.sdp import Media, SdpError, SessionDescription
from sip_gateway.sip.sdp import answer as answer_sdp

log = logging.getLogger(__name__)


@dataclass
class BridgeSlides:
    """One bridge caller's slides stream."""

    conference_id: str
    site_id: str
    leg: MediaLeg
    sending: ContentSubscription | None = None
    frames_in: int = 0
    counted: int = 0
    checked_at: float = 0.0
    last_frame: float = -1e9


class _Sink:
    def __init__(self, owner: BridgeContent, slides: BridgeSlides) -> None:
        self.owner, self.slides = owner, slides

    def on_audio(self, leg: MediaLeg, pcm: Pcm) -> None:
        pass

    def on_video(self, leg: MediaLeg, frame: av.VideoFrame) -> None:
        self.slides.frames_in += 1
        self.owner.frame(self.slides, frame)

    def on_dtmf(self, leg: MediaLeg, digit: str) -> None:
        pass

    def on_keyframe_request(self, leg: MediaLeg) -> None:
        if self.slides.sending is not None:
            self.slides.sending.request_keyframe()


def _extra(index: int, media: Media) -> ExtraMedia:
    return ExtraMedia(index, media.kind, media.port, media.proto, tuple(media.formats), tuple(media.attributes))


@dataclass
class BridgeContent:
    """The slides streams of a bridge node's callers (see the module docstring)."""

    sip: SipBridge
    contents: Contents
    policy: MediaPolicy = field(default_factory=MediaPolicy)
    interval: float = 0.2
    stall_after: float = 1.0
    takeover_after: float = 1.0
    callers: dict[int, BridgeSlides] = field(default_factory=dict)  # by the stream's local RTP port
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="bridge-content")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task], swallow_errors=True)
            self._task = None
        for slides in list(self.callers.values()):
            await self._close(slides)

    async def answer(self, conference_id: str, site_id: str,
                     offer: SessionDescription | None) -> tuple[ExtraMedia, ...]:
        """Our answer to a bridge caller's slides m-line (empty: the offer has none)."""
        index = slides_index(offer.media) if offer is not None else None
        if offer is None or index is None:
            return ()
        refused = (_extra(index, Media("video", 0, offer.media[index].proto, offer.media[index].formats[:1])),)
        try:
            leg = await MediaLeg.allocate(self.sip.media_host, video=True, port_range=self.sip.port_range)
        except OSError:
            log.error("no RTP ports for the slides stream of bridge caller %s", site_id)
            return refused
        assert leg.audio is not None and leg.video is not None
        alone = SessionDescription(connection=offer.connection, media=[offer.media[index]])
        try:
            sdp, streams = answer_sdp(alone, self.policy, LocalMedia(self.sip.media_host, leg.audio.port, leg.video.port))
        except SdpError as exc:
            log.info("slides of bridge caller %s refused: %s", site_id, exc)
            with contextlib.suppress(Exception):
                await leg.close()
            return refused
        slides = BridgeSlides(conference_id, site_id, leg, checked_at=asyncio.get_running_loop().time())
        leg.sink = _Sink(self, slides)
        leg.start(streams)
        self.callers[leg.video.port] = slides
        return (_extra(index, mark_slides(sdp.media[0], "slides")),)

    def _floor(self, conference_id: str) -> ContentFloor | None:
        return self.contents.get(conference_id)

    def frame(self, slides: BridgeSlides, frame: av.VideoFrame) -> None:
        """A frame from a caller's slides stream: it presents (floor taken on its behalf) if nobody does,
        or if the caller holding it has sent nothing for ``takeover_after`` (the cascade's token moved
        to the other end: no need to wait for the media timeout)."""
        floor = self._floor(slides.conference_id)
        if floor is None:
            return
        now = asyncio.get_running_loop().time()
        slides.last_frame = now
        holder = floor.floor_holder
        other = next((s for s in self.callers.values() if s.conference_id == slides.conference_id
                      and s.site_id == holder), None) if holder not in (None, slides.site_id) else None
        if other is not None and now - other.last_frame >= self.takeover_after:
            floor.floor_release(other.site_id)
            holder = floor.floor_holder
        if holder is None:
            floor.floor_request(slides.site_id)
        if floor.holds(slides.site_id):
            floor.on_frame(slides.site_id, frame)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            for slides in list(self.callers.values()):
                try:
                    await self._follow(slides)
                except Exception:  # one caller must not stop the others
                    log.exception("bridge slides of %s", slides.site_id)

    async def _follow(self, slides: BridgeSlides) -> None:
        site = self.sip.sites.get((slides.conference_id, slides.site_id))
        if site is None or not site.connected:
            await self._close(slides)
            return
        floor = self._floor(slides.conference_id)
        if floor is None:
            self._send(slides, None, False)
            return
        floor.conf.room.content_receivers.add(slides.site_id)
        holder = floor.floor_holder
        self._send(slides, floor, floor.content_sample() is not None and holder != slides.site_id)
        now = asyncio.get_running_loop().time()
        if slides.frames_in != slides.counted:
            slides.counted, slides.checked_at = slides.frames_in, now
        elif holder in (None, slides.site_id) and now - slides.checked_at >= self.stall_after:
            slides.leg.request_keyframe()  # a possible way in decodes nothing: ask (the leg rate-limits)
            slides.checked_at = now

    def _send(self, slides: BridgeSlides, floor: ContentFloor | None, wanted: bool) -> None:
        video = slides.leg.video
        if wanted and slides.sending is None and floor is not None and video is not None \
                and video.session is not None:
            codec = video.session.codec
            name = "vp8" if codec.name == "VP8" else "h264"
            size = CONTENT_SIZE if name == "vp8" else size_for_h264_level(
                codec.fmtp_params.get("profile-level-id"), CONTENT_SIZE)
            leg = slides.leg
            slides.sending = floor.conf.room.subscribe_view(
                CONTENT_VIEW, lambda packet: leg.send_video_access_unit(packet.data, packet.pts), name, *size,
                single_nal=name == "h264" and codec.packetization_mode == 0)
        elif not wanted and slides.sending is not None:
            slides.sending.close()
            slides.sending = None

    async def _close(self, slides: BridgeSlides) -> None:
        if slides.leg.video is None or self.callers.pop(slides.leg.video.port, None) is None:
            return
        self._send(slides, None, False)
        floor = self._floor(slides.conference_id)
        if floor is not None:
            floor.conf.room.content_receivers.discard(slides.site_id)
        with contextlib.suppress(Exception):
            await slides.leg.close()

    def status(self) -> list[dict[str, object]]:
        """Per caller: its slides stream's state (tests, diagnostics)."""
        return [{"conference_id": s.conference_id, "site_id": s.site_id, "sending": s.sending is not None,
                 "frames_in": s.frames_in} for s in self.callers.values()]


__all__ = ["BridgeContent", "BridgeSlides"]
