"""RTP media for H.323 calls on the shared `sip_gateway.rtp` layer.

:class:`~sip_gateway.aio.ports.RtpPortManager` (with a host) really binds the RTP/RTCP sockets
when a call is created, so the ports put into fast-start proposals and OpenLogicalChannel(Ack)s
are ours. :class:`H323MediaLeg` adopts those sockets
into a :class:`~sip_gateway.aio.rtp_leg.MediaLeg` and applies the negotiated logical channels
(``ChannelOpened`` events) as RTP streams. Key-frame requests towards the terminal go out as
H.245 videoFastUpdatePicture (H.323 terminals do not expect RTCP PLI).
"""
from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import numpy as np

from ..h323.capabilities import AUDIO_SESSION, VIDEO_SESSION, Codec, MediaFormat
from ..h323.events import LogicalChannel
from ..rtp.codecs import AudioDecoder, VideoDecoder
from ..rtp.media_description import Codec as SdpCodec
from ..rtp.media_description import MediaStream
from .ports import RtpPortManager
from .rtp_leg import MediaLeg, MediaSink, StreamStatistics, _Channel, _Socket

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

    def __init__(self, leg: MediaLeg, fast_update: Callable[[int], None] | None = None) -> None:
        self.leg = leg
        self.fast_update = fast_update  # H.245 videoFastUpdatePicture on an incoming channel
        self.channels: dict[tuple[int, bool], LogicalChannel] = {}  # (session, outgoing) → channel
        self.bitrate_cap_bps: int | None = None

    @property
    def sink(self) -> MediaSink:
        """Where decoded media, RFC 4733 digits and RTCP key-frame requests go (the site's media)."""
        return self.leg.sink

    @sink.setter
    def sink(self, sink: MediaSink) -> None:
        self.leg.sink = sink

    @classmethod
    async def adopt(cls, allocator: RtpPortManager, ports: dict[int, int], host: str,
                    fast_update: Callable[[int], None] | None = None) -> H323MediaLeg:
        """Wrap the sockets ``allocator`` bound for a call into a media leg."""
        loop = asyncio.get_running_loop()
        leg = MediaLeg(host)
        for session_id, kind in ((AUDIO_SESSION, "audio"), (VIDEO_SESSION, "video")):
            pair = allocator.take(ports.get(session_id, -1))
            if pair is None:
                continue
            channel = _Channel(leg, kind)
            _, rtp_p = await loop.create_datagram_endpoint(functools.partial(_Socket, channel, False), sock=pair[0])
            _, rtcp_p = await loop.create_datagram_endpoint(functools.partial(_Socket, channel, True), sock=pair[1])
            channel.rtp, channel.rtcp, channel.port = rtp_p, rtcp_p, ports[session_id]
            if kind == "audio":
                leg.audio = channel
            else:
                leg.video = channel
        return cls(leg, fast_update)

    def apply(self, channel: LogicalChannel) -> None:
        """A channel opened: (re)start the RTP stream of its session."""
        self.channels[(channel.session_id, channel.outgoing)] = channel
        self._restart(channel.session_id)

    def close_channel(self, number: int, outgoing: bool) -> None:
        for key, channel in list(self.channels.items()):
            if channel.number == number and channel.outgoing == outgoing:
                del self.channels[key]
                self._restart(channel.session_id)

    def _restart(self, session_id: int) -> None:
        out = self.channels.get((session_id, True))
        inc = self.channels.get((session_id, False))
        main = out or inc
        if main is None:
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
        self.leg.start([stream])
        target = self.leg.audio if kind == "audio" else self.leg.video
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

    # RtpLeg protocol for mcu.legs.site_media -----------------------------------------------------
    def send_audio(self, pcm: np.ndarray[Any, Any]) -> None:
        if (AUDIO_SESSION, True) in self.channels:
            self.leg.send_audio(pcm)

    def send_video_access_unit(self, access_unit: bytes, timestamp_90k: int) -> None:
        if (VIDEO_SESSION, True) in self.channels:
            self.leg.send_video_access_unit(access_unit, timestamp_90k)

    def request_keyframe(self) -> None:
        channel = self.incoming_video
        if channel is not None and self.fast_update is not None:
            self.fast_update(channel.number)

    def statistics(self) -> list[StreamStatistics]:
        return self.leg.statistics()

    async def close(self) -> None:
        await self.leg.close()
