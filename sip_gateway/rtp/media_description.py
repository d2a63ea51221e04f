"""What a negotiated call's media is, independent of the signalling that negotiated it.

SIP's offer/answer (:mod:`sip_gateway.sip.sdp`) and H.323's logical channels
(:mod:`sip_gateway.aio.h323_media`) both produce these; the RTP layer consumes them.
:class:`MediaStream` (one negotiated stream with its :class:`Codec` and optional
:class:`SrtpKeys`), :class:`MediaPolicy` (what we offer and accept) and :class:`LocalMedia`
(our address and ports).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Codec", "LocalMedia", "MediaPolicy", "MediaStream", "SrtpKeys"]


@dataclass(frozen=True)
class Codec:
    """A negotiated codec."""

    name: str  # upper case: PCMU, PCMA, G722, OPUS, H264, VP8
    payload_type: int
    clock_rate: int
    channels: int = 1
    fmtp: str = ""

    @property
    def fmtp_params(self) -> dict[str, str]:
        """fmtp as a dict."""
        result = {}
        for item in self.fmtp.split(";"):
            key, sep, value = item.strip().partition("=")
            if sep:
                result[key.strip().lower()] = value.strip()
        return result

    @property
    def packetization_mode(self) -> int:
        """H.264 packetization-mode (0 when absent, RFC 6184)."""
        value = self.fmtp_params.get("packetization-mode", "0")
        return int(value) if value.isdigit() else 0


@dataclass(frozen=True)
class SrtpKeys:
    """SDES keying for one stream: suite and raw 30-byte master key+salt for each side."""

    suite: str
    tag: int
    local_key: bytes
    remote_key: bytes


@dataclass(frozen=True)
class MediaStream:
    """One negotiated stream: everything the RTP layer needs."""

    kind: str
    index: int
    local_port: int
    remote_host: str
    remote_port: int
    remote_rtcp_port: int
    codec: Codec
    direction: str  # our perspective
    rtcp_mux: bool
    telephone_event_pt: int | None = None
    srtp: SrtpKeys | None = None
    nack: bool = False
    pli: bool = False
    fir: bool = False

    @property
    def on_hold(self) -> bool:
        """The peer does not want to receive (hold) or the stream is disabled."""
        return self.direction in ("recvonly", "inactive") or self.remote_host in ("0.0.0.0", "")


@dataclass
class MediaPolicy:
    """What we offer/accept. Order in the codec tuples is our preference when we offer."""

    audio_codecs: tuple[str, ...] = ("PCMU", "PCMA", "G722", "OPUS")
    video_codecs: tuple[str, ...] = ("H264", "VP8")
    h264_modes: tuple[int, ...] = (1, 0)
    h264_profile_level_id: str = "42e01f"
    srtp: str = "optional"  # "off", "optional" (accept when offered) or "required"
    rtcp_mux: bool = True
    telephone_event: bool = True


@dataclass
class LocalMedia:
    """Our transport for one media kind: local address and RTP port."""

    host: str
    audio_port: int
    video_port: int | None = None
