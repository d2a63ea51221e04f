"""RTP media for H.323 calls on the shared `sip_gateway.rtp` layer.

:class:`~sip_gateway.aio.ports.RtpPortManager` (with a host) really binds the RTP/RTCP sockets
when a call is created, so the ports put into fast-start proposals and OpenLogicalChannel(Ack)s
are ours. :class:`H323MediaLeg` adopts those sockets
into a :class:`~sip_gateway.aio.rtp_leg.MediaLeg` and applies the negotiated logical channels
(``ChannelOpened`` events) as RTP streams. Key-frame requests towards the terminal go out as
H.245 videoFastUpdatePicture (H.323 terminals do not expect RTCP PLI).

The H.239 content channel (session 3, when the port manager bound a pair for it) is a media leg of
its own (:attr:`H323MediaLeg.content`, video only): its decoded frames go to
:attr:`H323MediaLeg.content_sink`, and :meth:`H323MediaLeg.send_content_access_unit` sends on our
outgoing content channel. A channel is a content channel by its role label (``channel.content``),
whatever session number the terminal gave it.

Far-end camera control (H.323 Annex Q): when the port manager bound a pair for
:data:`~sip_gateway.h323.capabilities.H224_SESSION`, :attr:`H323MediaLeg.h224` is an
:class:`~sip_gateway.aio.h224_channel.H224Channel` on it; our H.224 OLC's ack starts it (the far
end's address and our payload type), the far end's OLC adds the payload type it sends with;
:attr:`H323MediaLeg.camera` is what the chair console steers.
"""
from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import numpy as np

from ..h323.capabilities import AUDIO_SESSION, H224_SESSION, VIDEO_SESSION, Codec, MediaFormat
from ..h323.events import LogicalChannel
from ..h323.h239 import CONTENT_SESSION
from ..rtp.codecs import AudioDecoder, VideoDecoder
from ..rtp.media_description import Codec as SdpCodec
from ..rtp.media_description import MediaStream
from .h224_channel import H224Channel
from .ports import RtpPortManager
from .rtp_leg import DscpMarking, MediaLeg, MediaSink, StreamStatistics, _Channel, _Socket

__all__ = ["H323MediaLeg", "sdp_codec", "sent_formats", "site_video_codec"]

_CLOCK = {Codec.PCMU: 8000, Codec.PCMA: 8000, Codec.G722: 8000}


def sdp_codec(fmt: MediaFormat, payload_type: int) -> SdpCodec:
    """The RTP layer's codec description of a negotiated H.245 format."""
    fmtp = f"packetization-mode={fmt.packetization_modes[0]}" if fmt.codec is Codec.H264 else ""
    name = "H263-1998" if fmt.codec is Codec.H263 and fmt.h263_rfc4629 else fmt.codec.value
    return SdpCodec(name, payload_type, _CLOCK.get(fmt.codec, 90000), fmtp=fmtp)


def site_video_codec(fmt: MediaFormat) -> tuple[str, tuple[int, int], bool]:
    """Shared-encoder codec name, size and single-NAL flag for what we send to the terminal."""
    if fmt.codec is Codec.H264:
        return "h264", (352, 288) if fmt.h264_level < 71 else (640, 360), fmt.packetization_modes[0] == 0
    return fmt.codec.value.lower(), (352, 288), False


_SENT_SIZES = frozenset({"sqcifMPI", "qcifMPI", "cifMPI"})  # H.263/H.261 go out at CIF (site_video_codec)


def sent_formats(formats: Iterable[MediaFormat]) -> tuple[MediaFormat, ...]:
    """``formats`` as the MCU sends them: H.263 and H.261 without the picture sizes above CIF.

    What we propose to transmit (fast start, OpenLogicalChannel) describes what we will send, and
    the shared H.263/H.261 encoders send CIF: a terminal should not prepare a 4CIF receiver for it.
    What we receive (``EndpointConfig.formats``) keeps 4CIF: we decode it.
    """
    out = []
    for fmt in formats:
        if fmt.codec in (Codec.H263, Codec.H261) and fmt.mpi:
            mpi = tuple((size, value) for size, value in fmt.mpi if size in _SENT_SIZES)
            if not mpi:
                continue
            fmt = replace(fmt, mpi=mpi)
        out.append(fmt)
    return tuple(out)




class H323MediaLeg:
    """One H.323 call's media: the RTP leg plus the logical channels that feed it."""

    def __init__(self, leg: MediaLeg, fast_update: Callable[[int], None] | None = None,
                 content: MediaLeg | None = None, h224: H224Channel | None = None) -> None:
        self.leg = leg
        self.content = content  # the H.239 content channel's own leg (None: no session-3 port)
        self.h224 = h224  # far-end camera control on the H.224 session's port (None: no such port)
        self.fast_update = fast_update  # H.245 videoFastUpdatePicture on an incoming channel
        # (session, outgoing) → channel; content channels are filed under CONTENT_SESSION
        self.channels: dict[tuple[int, bool], LogicalChannel] = {}
        self.bitrate_cap_bps: int | None = None

    @property
    def content_sink(self) -> MediaSink | None:
        """Where the content channel's decoded frames (and its decoder's key-frame requests) go."""
        return self.content.sink if self.content is not None else None

    @content_sink.setter
    def content_sink(self, sink: MediaSink) -> None:
        if self.content is not None:
            self.content.sink = sink

    @property
    def sink(self) -> MediaSink:
        """Where decoded media, RFC 4733 digits and RTCP key-frame requests go (the site's media)."""
        return self.leg.sink

    @sink.setter
    def sink(self, sink: MediaSink) -> None:
        self.leg.sink = sink

    @classmethod
    async def adopt(cls, allocator: RtpPortManager, ports: dict[int, int], host: str,
                    fast_update: Callable[[int], None] | None = None, dscp: DscpMarking | None = None) -> H323MediaLeg:
        """Wrap the sockets ``allocator`` bound for a call into a media leg (marked with ``dscp``)."""
        loop = asyncio.get_running_loop()
        leg = MediaLeg(host, dscp=dscp)
        content: MediaLeg | None = None
        for session_id, kind in ((AUDIO_SESSION, "audio"), (VIDEO_SESSION, "video"), (CONTENT_SESSION, "video")):
            pair = allocator.take(ports.get(session_id, -1))
            if pair is None:
                continue
            owner = leg
            if session_id == CONTENT_SESSION:
                owner = content = MediaLeg(host, dscp=dscp)
            channel = _Channel(owner, kind)
            _, rtp_p = await loop.create_datagram_endpoint(functools.partial(_Socket, channel, False), sock=pair[0])
            _, rtcp_p = await loop.create_datagram_endpoint(functools.partial(_Socket, channel, True), sock=pair[1])
            channel.rtp, channel.rtcp, channel.port = rtp_p, rtcp_p, ports[session_id]
            if kind == "audio":
                owner.audio = channel
            else:
                owner.video = channel
        h224: H224Channel | None = None
        h224_pair = allocator.take(ports.get(H224_SESSION, -1))
        if h224_pair is not None:
            h224 = await H224Channel.adopt(h224_pair, ports[H224_SESSION])
        return cls(leg, fast_update, content, h224)

    @staticmethod
    def _key(channel: LogicalChannel) -> tuple[int, bool]:
        if channel.format.codec is Codec.H224:
            return (H224_SESSION, channel.outgoing)  # whatever session number the terminal gave it
        return (CONTENT_SESSION if channel.content else channel.session_id, channel.outgoing)

    def apply(self, channel: LogicalChannel) -> None:
        """A channel opened: (re)start the RTP stream of its session (H.224: start FECC once ours is open)."""
        key = self._key(channel)
        self.channels[key] = channel
        if channel.format.codec is Codec.H224:
            self._start_h224(channel)
            return
        self._restart(key[0])

    def _start_h224(self, channel: LogicalChannel) -> None:
        if self.h224 is None:
            return
        if not channel.outgoing:
            self.h224.receive_payload_type = channel.payload_type
        elif channel.remote_rtp is not None:
            self.h224.start(channel.remote_rtp.host, channel.remote_rtp.port, channel.payload_type)

    @property
    def camera(self) -> H224Channel | None:
        """Far-end camera control, once our H.224 channel is open (the far end's address known)."""
        if self.h224 is None or not self.h224.started or (H224_SESSION, True) not in self.channels:
            return None
        return self.h224

    def close_channel(self, number: int, outgoing: bool) -> None:
        for key, channel in list(self.channels.items()):
            if channel.number == number and channel.outgoing == outgoing:
                del self.channels[key]
                if channel.format.codec is not Codec.H224:
                    self._restart(key[0])

    def _restart(self, session_id: int) -> None:
        out = self.channels.get((session_id, True))
        inc = self.channels.get((session_id, False))
        main = out or inc
        leg = self.content if session_id == CONTENT_SESSION else self.leg
        if main is None or leg is None:
            return
        kind = "audio" if session_id == AUDIO_SESSION else "video"
        remote = out.remote_rtp if out is not None and out.remote_rtp is not None else None
        rtcp = (out.remote_rtcp if out is not None and out.remote_rtcp else None) or (inc.remote_rtcp if inc else None)
        direction = "sendrecv" if out and inc else ("sendonly" if out else "recvonly")
        # The payload type we send is the outgoing channel's; we accept any on receive.
        stream = MediaStream(
            kind=kind, index=0 if kind == "audio" else 1,
            local_port=(main.local_rtp.port if main.local_rtp else 0),
            remote_host=remote.host if remote else "0.0.0.0", remote_port=remote.port if remote else 0,
            remote_rtcp_port=(rtcp.port if rtcp else (remote.port + 1 if remote else 0)),
            codec=sdp_codec(main.format, main.payload_type), direction=direction, rtcp_mux=False)
        leg.start([stream])
        target = leg.audio if kind == "audio" else leg.video
        if target is not None and rtcp is not None:
            target.remote_rtcp = (rtcp.host, rtcp.port)
        if target is not None and inc is not None and out is not None:
            self._receive_with(target, sdp_codec(inc.format, inc.payload_type))

    @staticmethod
    def _receive_with(channel: _Channel, codec: SdpCodec) -> None:
        """Depacketise and decode by the incoming channel's codec: a terminal may send another
        codec than the one it receives (H.263 out, H.261 in), each direction has its own OLC."""
        session = channel.session
        if session is None or session.receive_codec == codec:
            return
        session.receive_codec = codec
        if channel.kind == "audio":
            channel.audio_decoder = AudioDecoder(codec)
        else:
            channel.video_decoder = VideoDecoder(codec)

    @property
    def incoming_video(self) -> LogicalChannel | None:
        return self.channels.get((VIDEO_SESSION, False))

    @property
    def outgoing_video(self) -> LogicalChannel | None:
        return self.channels.get((VIDEO_SESSION, True))

    @property
    def incoming_content(self) -> LogicalChannel | None:
        return self.channels.get((CONTENT_SESSION, False))

    @property
    def outgoing_content(self) -> LogicalChannel | None:
        return self.channels.get((CONTENT_SESSION, True))

    def send_content_access_unit(self, access_unit: bytes, timestamp_90k: int) -> None:
        """One encoded content frame on our open content channel (dropped while none is open)."""
        if self.content is not None and (CONTENT_SESSION, True) in self.channels:
            self.content.send_video_access_unit(access_unit, timestamp_90k)

    @property
    def content_octets_received(self) -> int:
        """RTP payload octets received on the content leg so far (its rate policing)."""
        channel = self.content.video if self.content is not None else None
        return channel.session.stats.octets if channel is not None and channel.session is not None else 0

    def request_content_keyframe(self) -> None:
        """videoFastUpdatePicture on the terminal's content channel."""
        channel = self.incoming_content
        if channel is not None and self.fast_update is not None:
            self.fast_update(channel.number)

    # RtpLeg protocol for mcu.legs.site_media -----------------------------------------------------
    def send_audio(self, pcm: np.ndarray[Any, Any]) -> None:
        if (AUDIO_SESSION, True) in self.channels:
            self.leg.send_audio(pcm)

    def send_video_access_unit(self, access_unit: bytes, timestamp_90k: int) -> None:
        if (VIDEO_SESSION, True) in self.channels:
            self.leg.send_video_access_unit(access_unit, timestamp_90k)

    def set_video_decode(self, mode: str) -> None:
        """Decode off / fast / full (see MediaLeg.set_video_decode)."""
        self.leg.set_video_decode(mode)

    @property
    def video_frames_skipped(self) -> int:
        """Video frames received and not decoded."""
        return self.leg.video_frames_skipped

    def request_keyframe(self) -> None:
        channel = self.incoming_video
        if channel is not None and self.fast_update is not None:
            self.fast_update(channel.number)

    def statistics(self) -> list[StreamStatistics]:
        return self.leg.statistics()

    async def close(self) -> None:
        await self.leg.close()
        if self.content is not None:
            await self.content.close()
        if self.h224 is not None:
            self.h224.close()
