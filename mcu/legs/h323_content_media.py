"""H.239 content of one H.323 site in a live call: the token dialogue, the content it sends, the content it gets.

:class:`H323ContentLink` is the asyncio side of :class:`mcu.legs.h323_content.H239Floor` for one
joined :class:`mcu.legs.h323.H323Site`:

* **The token.** H.239 messages from the terminal go through the site's ``H239Floor`` onto the
  conference's content token (:class:`ConferenceContentPort`, i.e.
  :class:`mcu.content.service.ConferenceContent`, so the chair console, the other sites and the
  content picture follow); the answers (presentationTokenResponse acknowledge/reject) go back on
  H.245. A token event that takes the token from this site (the chair revoked or granted another,
  its stream stopped for the token's media timeout) sends presentationTokenRelease.
* **Content in.** The terminal's extended video channel (role presentation) arrives on the
  session-3 port the port manager bound for the call (:attr:`H323MediaLeg.content`); its decoded
  frames are pushed to ``ConferenceContent.on_frame`` under the site's id (shown only while it holds
  the token; the token's media timeout releases a stream that stops). A decoder that needs a key
  frame asks for one with videoFastUpdatePicture on the content channel.
* **Content out.** While a conference's content is live and someone else presents, a terminal
  that announced H.239 and a presentation codec we encode (H.264, H.263, H.261 at CIF) gets our extended video
  channel, fed by the room's one shared ``content`` encoder per codec and size (``Room.subscribe_view``
  of ``CONTENT_VIEW``); meanwhile its main stream is the people view (``room.content_receivers``).
  When the content stops (``close_after`` seconds without it) the channel is closed. A terminal
  that refuses the channel is not asked again in this call.
* **Rate.** What we send is paced within our content channel's ``maxBitRate`` (and a flowControlCommand
  on it: :func:`content_budget`, the leg's pacer); the presenter's channel is policed against its own
  (:class:`mcu.legs.h323_content.ContentRatePolice`: flowControlCommand, then its excess dropped).

Checked every ``interval`` seconds and on each event; nothing here decodes or encodes itself.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol

import av

from mcu.conferences import RunningConference
from mcu.encoder import ENCODER_BITRATE
from mcu.legs.h323_content import ContentRatePolice, FloorEvent, FloorResult, H239Floor, TerminalLabels
from mcu.legs.rate_budget import MAX_KBPS, RateBudget, Signal
from mcu.room import CONTENT_VIEW, RoomError, Subscription
from sip_gateway.aio.h323_media import H323MediaLeg
from sip_gateway.aio.rtp_leg import MediaLeg
from sip_gateway.h323.capabilities import Codec, MediaFormat
from sip_gateway.h323.events import LogicalChannel
from sip_gateway.h323.h239 import H239Message
from sip_gateway.rtp.codecs import Pcm
from sip_gateway.rtp.media_primitives import EncodedPacket

__all__ = ["ConferenceContentPort", "ContentHub", "H239Call", "H323ContentLink", "content_send_format"]

log = logging.getLogger(__name__)


class TokenHolder(Protocol):
    @property
    def holder(self) -> str | None: ...


class ConferenceContentPort(Protocol):
    """One conference's content as a site's H.239 link needs it (``mcu.content.service.ConferenceContent``)."""

    token_listeners: list[Callable[[Any], None]]

    @property
    def token(self) -> TokenHolder: ...

    @property
    def holder(self) -> str | None:
        """Who presents (on a lower cascade node: the tree's holder, not the local token's)."""

    def request_floor(self, who: str) -> FloorResult: ...

    def holds(self, who: str) -> bool:
        """Whether site ``who`` of this node presents now (on a lower cascade node too)."""

    def stop(self, who: str) -> None: ...

    def on_frame(self, who: str, frame: av.VideoFrame) -> None: ...


class ContentHub(Protocol):
    """The node's content service (``mcu.content.service.ContentService``)."""

    def of(self, conf: RunningConference) -> Any: ...


class H239Call(Protocol):
    """The call's H.245 commands the link uses (``sip_gateway.aio.h323_endpoint.CallHandle``)."""

    def send_h239(self, message: H239Message) -> None: ...

    def open_content_channel(self, fmt: MediaFormat) -> None: ...

    def close_channel(self, number: int) -> None: ...

    def request_fast_update(self, channel: int) -> None: ...

    def flow_control(self, channel: int | None, bitrate_bps: int | None) -> None: ...


# The content picture's size by what the terminal's presentation codec allows (H.241 level codes:
# 85 = level 4, 71 = level 3.1, 64 = level 3); H.263 and H.261 are sent at CIF.
_H264_SIZES: tuple[tuple[int, tuple[int, int]], ...] = ((85, (1920, 1080)), (71, (1280, 720)), (64, (640, 360)))


def content_send_format(formats: list[MediaFormat]) -> tuple[MediaFormat, str, tuple[int, int], bool] | None:
    """What we send on a terminal's content channel, from the presentation formats it receives:
    ``(format to open, shared-encoder codec, size, single-NAL)``; H.264 preferred, then H.263, then
    H.261 (at CIF); None when it takes none of them (or H.261 at QCIF only)."""
    for fmt in formats:
        if fmt.codec is Codec.H264:
            size = next((s for level, s in _H264_SIZES if fmt.h264_level >= level), (352, 288))
            single_nal = fmt.packetization_modes[0] == 0 if fmt.packetization_modes else False
            return fmt, "h264", size, single_nal
    for fmt in formats:
        if fmt.codec is Codec.H263:  # the shared H.263 encoder codes CIF only (mcu.encoder)
            sizes = {name for name, _ in fmt.mpi}
            if sizes and not sizes & {"cifMPI", "cif4MPI", "cif16MPI"}:
                continue
            mpi = dict(fmt.mpi).get("cifMPI", 1)
            return MediaFormat(Codec.H263, max_bitrate=fmt.max_bitrate, mpi=(("cifMPI", mpi),),
                               h263_rfc4629=fmt.h263_rfc4629), "h263", (352, 288), False
    for fmt in formats:
        if fmt.codec is Codec.H261:  # H.261 codes QCIF and CIF; the shared H.261 encoder codes CIF
            cif_mpi = dict(fmt.mpi).get("cifMPI")
            if cif_mpi is None:
                continue  # a QCIF-only terminal: no shared QCIF encoder
            return MediaFormat(Codec.H261, max_bitrate=fmt.max_bitrate, mpi=(("cifMPI", cif_mpi),)), \
                "h261", (352, 288), False
    return None


def content_size(codec: str, ceiling: tuple[int, int], video_kbps: int) -> tuple[int, int]:
    """The content encoder size for a channel whose budget is ``video_kbps``: H.263/H.261 at CIF; H.264
    at the largest size up to ``ceiling`` (what its level allows) whose shared encoder's rate fits,
    else the smallest (the leg's pacer keeps it within the budget, dropping frames if need be)."""
    if codec != "h264":
        return ceiling
    area = ceiling[0] * ceiling[1]
    allowed = [s for _, s in _H264_SIZES if s[0] * s[1] <= area] + [(352, 288)]
    fitting = [s for s in allowed if ENCODER_BITRATE[s] <= video_kbps * 1000]
    return fitting[0] if fitting else allowed[-1]


def content_budget(fmt: MediaFormat) -> RateBudget:
    """The rate budget of our content channel: its OLC ``maxBitRate`` (no audio beside it); the
    terminal's flowControlCommand on the channel goes in as ``Signal.H245_FLOW_CONTROL``."""
    budget = RateBudget(MAX_KBPS, audio_kbps=0)
    if fmt.bitrate_bps > 0:
        budget.on_h245_max_bitrate(fmt.bitrate_bps / 1000)
    return budget


class _Floor:
    """``ContentFloor`` for :class:`H239Floor` on the conference's content (its events, its picture)."""

    def __init__(self, content: ConferenceContentPort) -> None:
        self.content = content

    def request(self, who: str, now: float) -> FloorResult:
        return self.content.request_floor(who)

    def release(self, who: str, now: float) -> FloorResult:
        self.content.stop(who)
        return _Released()


class _Released:
    granted = True
    reason = ""


_LABELS: weakref.WeakKeyDictionary[Any, TerminalLabels] = weakref.WeakKeyDictionary()


def _labels_of(content: Any) -> TerminalLabels:
    """The conference's H.239 terminal labels (one table per conference content, shared by its sites)."""
    labels = _LABELS.get(content)
    if labels is None:
        labels = _LABELS[content] = TerminalLabels()
    return labels


class H323ContentLink:
    """H.239 of one joined H.323 site (see the module docstring)."""

    def __init__(self, site_id: str, conf: RunningConference, content: ConferenceContentPort, call: H239Call,
                 media: H323MediaLeg, *, remote_formats: Callable[[], list[MediaFormat]],
                 interval: float = 0.25, close_after: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.site_id = site_id
        self.conf = conf
        self.content = content
        self.call = call
        self.media = media
        self.floor = H239Floor(site_id, _Floor(content), labels=_labels_of(content),
                               outgoing_channel=self._outgoing_number)
        self._remote_formats = remote_formats
        self.interval = interval
        self.close_after = close_after
        self._clock = clock
        self.subscription: Subscription | None = None
        self.send_rate: RateBudget | None = None  # our content channel's budget (its pacer's rate)
        self.police: ContentRatePolice | None = None  # the presenter's content channel against its maxBitRate
        self._opening = False  # our content OLC is out, not yet acknowledged
        self._refused = False  # the terminal rejected our content channel: not asked again
        self._idle_since: float | None = None
        self._task: asyncio.Task[None] | None = None
        self.frames_in = 0
        self.frames_out = 0
        self.closed = False
        self._answering = False  # inside on_message: token news waits until the answer is sent
        self._deferred: list[H239Message] = []

    def _outgoing_number(self) -> int | None:
        channel = self.media.outgoing_content
        return channel.number if channel is not None else None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.content.token_listeners.append(self._on_token)
        self.media.content_sink = self
        self._task = asyncio.get_running_loop().create_task(self._watch(), name=f"h239-{self.site_id}")

    async def close(self) -> None:
        """The site left: stop sending, give the token back if it held it (idempotent)."""
        if self.closed:
            return
        self.closed = True
        if self._on_token in self.content.token_listeners:
            self.content.token_listeners.remove(self._on_token)
        self._unsubscribe()
        if self.content.holds(self.site_id):
            self.content.stop(self.site_id)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # ------------------------------------------------------------------ H.245 events
    def on_message(self, message: H239Message) -> None:
        """An H.239 message from the terminal."""
        if self.closed:
            return
        self._answering = True
        try:
            replies = self.floor.on_message(message, self._clock())
        finally:
            self._answering = False
        deferred, self._deferred = self._deferred, []
        for reply in replies + deferred:  # the response first, then the owner indication it caused
            self.call.send_h239(reply)
        if self.floor.last_refusal:
            log.info("H.239: %s refused the token (%s)", self.site_id, self.floor.last_refusal)

    def on_channel_opened(self, channel: LogicalChannel) -> None:
        if not channel.content or self.closed:
            return
        if channel.outgoing:
            self._opening = False
            self._subscribe()
        else:
            self.floor.content_channel = channel.number
            self.police = ContentRatePolice(channel.format.bitrate_bps)
            self.media.request_content_keyframe()

    def on_channel_closed(self, number: int, outgoing: bool) -> None:
        if outgoing and self.subscription is not None and self.media.outgoing_content is None:
            self._unsubscribe()

    def on_channel_rejected(self, session_id: int) -> None:
        if session_id == 3 and self._opening:
            self._opening = False
            self._refused = True

    def _on_token(self, event: FloorEvent) -> None:
        if self.closed:
            return
        messages = self.floor.on_token_event(event)
        if self._answering:
            self._deferred += messages
            return
        for message in messages:
            self.call.send_h239(message)

    # ------------------------------------------------------------------ content in (MediaSink)
    def on_video(self, leg: MediaLeg, frame: av.VideoFrame) -> None:
        self.frames_in += 1
        if self._police(frame=True):
            return  # above its channel's rate after being told: not passed on
        self.content.on_frame(self.site_id, frame)

    def _police(self, frame: bool) -> bool:
        """Rate policing of the presenter's channel; True: drop the frame arriving now."""
        channel = self.media.incoming_content
        if self.police is None or channel is None:
            return False
        verdict = self.police.sample(self.media.content_octets_received, self._clock(), frame)
        if verdict.tell:
            log.info("H.239: %s sends content far above its channel's %d bit/s: flowControlCommand",
                     self.site_id, self.police.max_bps)
            self.call.flow_control(channel.number, self.police.max_bps)
        return verdict.drop

    def on_keyframe_request(self, leg: MediaLeg) -> None:
        """The content decoder needs a key frame (ask the terminal), or our pacer dropped frames
        to stay within the channel's budget (the shared encoder owes us one)."""
        if self.subscription is not None:
            self.subscription.request_keyframe()
        if self.media.incoming_content is not None:
            self.media.request_content_keyframe()

    def on_audio(self, leg: MediaLeg, pcm: Pcm) -> None:
        return

    def on_dtmf(self, leg: MediaLeg, digit: str) -> None:
        return

    # ------------------------------------------------------------------ content out
    def wants_content(self) -> bool:
        """Someone else's content is live in the room."""
        holder = self.content.holder
        return holder is not None and not self.content.holds(self.site_id) and self.conf.room.content_live()

    async def _watch(self) -> None:
        while not self.closed:
            try:
                self.check()
            except Exception:
                log.exception("H.239: content check of %s failed", self.site_id)
            await asyncio.sleep(self.interval)

    def check(self) -> None:
        """Open our content channel when content is live, close it when it has stopped; police the
        presenter's rate."""
        self._police(frame=False)
        now = self._clock()
        outgoing = self.media.outgoing_content
        if self.wants_content():
            self._idle_since = None
            if outgoing is None and not self._opening and not self._refused and self.media.content is not None:
                chosen = content_send_format(self._remote_formats())
                if chosen is not None:
                    self._opening = True
                    self.call.open_content_channel(chosen[0])
            return
        if outgoing is None:
            return
        if self._idle_since is None:
            self._idle_since = now
        elif now - self._idle_since >= self.close_after:
            self._unsubscribe()
            self.call.close_channel(outgoing.number)
            self._idle_since = None

    def _subscribe(self) -> None:
        channel = self.media.outgoing_content
        if channel is None or self.subscription is not None:
            return
        chosen = content_send_format([channel.format])
        if chosen is None:
            return
        _, codec, ceiling, single_nal = chosen
        if self.send_rate is None:
            self.send_rate = content_budget(channel.format)
        if self.media.content is not None:
            self.media.content.send_budget = self.send_rate  # paced within the channel's maxBitRate
        width, height = content_size(codec, ceiling, self.send_rate.video_kbps())
        try:
            self.subscription = self.conf.room.subscribe_view(CONTENT_VIEW, self._offer, codec, width, height,
                                                              single_nal)
        except RoomError as exc:
            log.info("H.239: no content encoder for %s: %s", self.site_id, exc)
            return
        self.conf.room.content_receivers.add(self.site_id)
        self.subscription.request_keyframe()

    def _unsubscribe(self) -> None:
        if self.subscription is not None:
            self.subscription.close()
            self.subscription = None
        self.send_rate = None  # the next channel has its own maxBitRate
        if self.media.content is not None:
            self.media.content.send_budget = None
        self.conf.room.content_receivers.discard(self.site_id)

    def on_flow_control(self, bitrate_bps: int | None) -> None:
        """flowControlCommand from the terminal on our content channel (None: no restriction): the
        pacer follows at once; an H.264 channel moves to the encoder size the new budget carries."""
        budget = self.send_rate
        if budget is None:
            return
        if bitrate_bps is None:
            budget.clear(Signal.H245_FLOW_CONTROL)
        else:
            budget.on_h245_flow_control(bitrate_bps / 1000)
        sub, channel = self.subscription, self.media.outgoing_content
        if sub is None or channel is None:
            return
        chosen = content_send_format([channel.format])
        if chosen is None:
            return
        size = content_size(chosen[1], chosen[2], budget.video_kbps())
        if size != (sub.key.width, sub.key.height):
            sub.close()
            self.subscription = None
            self._subscribe()

    def _offer(self, packet: EncodedPacket) -> None:
        if self.closed:
            return
        self.frames_out += 1
        self.media.send_content_access_unit(packet.data, packet.pts)

    def on_fast_update(self) -> None:
        """videoFastUpdatePicture from the terminal on our content channel."""
        if self.subscription is not None:
            self.subscription.request_keyframe()
