"""What a negotiated call's media is, independent of the signalling that negotiated it.

SIP's offer/answer (:mod:`sip_gateway.sip.sdp`) and H.323's logical channels
(:mod:`sip_gateway.aio.h323_media`) both produce these; the RTP layer consumes them.
:class:`MediaStream` (one negotiated stream with its :class:`Codec` and optional
:class:`SrtpKeys`), :class:`MediaPolicy` (what we offer and accept) and :class:`LocalMedia`
(our address and ports).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Codec", "ExtraMedia", "LocalMedia", "MediaPolicy", "MediaStream", "SrtpKeys"]


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
    tmmbr: bool = False  # the peer negotiated ``ccm tmmbr`` (RFC 5104): it may limit our rate
    # What the peer wants to receive (its SDP b= lines, RFC 4566/3890), as written: the values are
    # not checked here (0, negative, absurd); the consumer's rate budget clamps them.
    remote_session_kbps: int | None = None  # session-level b=AS (everything)
    remote_as_kbps: int | None = None  # this stream's b=AS (with IP/UDP/RTP overhead)
    remote_tias_bps: int | None = None  # this stream's b=TIAS (without overhead)

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


@dataclass(frozen=True)
class ExtraMedia:
    """An m-line of ours that the RTP layer does not carry (a BFCP stream, a refused slides stream):
    the SDP answer puts it at ``index`` as written instead of refusing that offered stream."""

    index: int
    kind: str
    port: int
    proto: str
    formats: tuple[str, ...]
    attributes: tuple[tuple[str, str | None], ...] = ()


@dataclass
class LocalMedia:
    """Our transport for one call: local address, RTP ports and the line we receive on."""

    host: str
    audio_port: int
    video_port: int | None = None
    # Our line (RFC 3890): session b=AS of the whole call and the video we want to receive
    # (b=TIAS, with b=AS for older peers); None: no b= lines.
    session_kbps: int | None = None
    video_kbps: int | None = None
    h224_port: int | None = None  # far-end camera control (RFC 4573 m=application H224/4800); None: none
    extra: tuple[ExtraMedia, ...] = ()  # answers to offered streams beside audio/video (BFCP, slides)
