"""Media formats, H.245 capability sets and codec choice for H.323 calls.

A :class:`MediaFormat` is our model of one audio or video capability. This module converts
it to and from H.245 values (TerminalCapabilitySet entries and OpenLogicalChannel
``dataType``), and picks the format to use from what the peer offers: audio by our
preference order, video H.264 > H.263 > H.261. Capabilities we do not understand are
skipped, never fatal.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from .asn1 import H245_PROTOCOL_ID

__all__ = [
    "AUDIO_SESSION",
    "Codec",
    "H224_SESSION",
    "DEFAULT_FORMATS",
    "H264_CAPABILITY_OID",
    "MediaFormat",
    "build_terminal_capability_set",
    "choose_format",
    "data_type_from_format",
    "format_from_data_type",
    "parse_terminal_capability_set",
]

AUDIO_SESSION = 1
VIDEO_SESSION = 2
H224_SESSION = 4  # far-end camera control's H.224 data channel (3 is H.239 content; OPAL's default H.224 session)

# H.241 8.3: H.264 generic capability and its parameters.
H264_CAPABILITY_OID: tuple[int, ...] = (0, 0, 8, 241, 0, 0, 1)
H264_PARAM_PROFILE = 41
H264_PARAM_LEVEL = 42
# H.241 8.3.x: RTP packetization of H.264, signalled as mediaPacketization payloadDescriptor.
H264_PACKETIZATION_OIDS: dict[int, tuple[int, ...]] = {
    0: (0, 0, 8, 241, 0, 0, 0, 0),  # single NAL unit mode
    1: (0, 0, 8, 241, 0, 0, 0, 1),  # non-interleaved mode
}
H264_PROFILE_BASELINE = 64  # booleanArray bit for Baseline (H.241 table 8-2)
H264_LEVEL_3_1 = 71  # H.241 table 8-3 level code for level 3.1


class Codec(StrEnum):
    """Codecs the MCU can bridge to H.323 terminals."""

    PCMU = "PCMU"
    PCMA = "PCMA"
    G722 = "G722"
    H264 = "H264"
    H263 = "H263"
    H261 = "H261"
    H224 = "H224"  # the H.224 data channel of far-end camera control (never in a format list)

    @property
    def is_video(self) -> bool:
        return self in (Codec.H264, Codec.H263, Codec.H261)


# RTP payload types: static ones from RFC 3551; H.264 is dynamic.
STATIC_PAYLOAD_TYPES: dict[Codec, int] = {
    Codec.PCMU: 0, Codec.PCMA: 8, Codec.G722: 9, Codec.H261: 31, Codec.H263: 34,
}
DEFAULT_H264_PAYLOAD_TYPE = 109
DEFAULT_H263_1998_PAYLOAD_TYPE = 96
H263_1998_RFC_NUMBERS = (2429, 4629)  # the H263-1998 payload format: RFC 2429, obsoleted by RFC 4629

_AUDIO_CHOICES: dict[Codec, str] = {
    Codec.PCMU: "g711Ulaw64k", Codec.PCMA: "g711Alaw64k", Codec.G722: "g722-64k",
}
_AUDIO_BY_CHOICE = {v: k for k, v in _AUDIO_CHOICES.items()}
# H.263/H.261 picture formats by H.245 field, smallest first.
H263_SIZES = ("sqcifMPI", "qcifMPI", "cifMPI", "cif4MPI", "cif16MPI")
H261_SIZES = ("qcifMPI", "cifMPI")


@dataclass(frozen=True)
class MediaFormat:
    """One capability: a codec plus the parameters H.245 carries for it.

    ``max_bitrate`` is in units of 100 bit/s (H.245's unit); ``frames`` is the audio packet
    size in frames (milliseconds for G.711/G.722); ``mpi`` maps picture-size field names to
    minimum picture intervals (units of 1/29.97 s) for H.263/H.261; H.264 carries profile
    (booleanArray), level (H.241 code) and the packetization modes.
    """

    codec: Codec
    max_bitrate: int = 0
    frames: int = 20
    mpi: tuple[tuple[str, int], ...] = ()
    h264_profile: int = H264_PROFILE_BASELINE
    h264_level: int = H264_LEVEL_3_1
    packetization_modes: tuple[int, ...] = (1, 0)
    payload_type: int = -1
    # H.263 in the H263-1998 payload format (RFC 4629, ex 2429; dynamic payload type) instead
    # of RFC 2190: a channel's mediaPacketization says so (rfc-number 2429 or 4629).
    h263_rfc4629: bool = False

    @property
    def session_id(self) -> int:
        if self.codec is Codec.H224:
            return H224_SESSION
        return VIDEO_SESSION if self.codec.is_video else AUDIO_SESSION

    @property
    def rtp_payload_type(self) -> int:
        """RTP payload type: the static one, or the negotiated dynamic one for H.264."""
        if self.payload_type >= 0:
            return self.payload_type
        if self.h263_rfc4629:
            return DEFAULT_H263_1998_PAYLOAD_TYPE
        return STATIC_PAYLOAD_TYPES.get(self.codec, DEFAULT_H264_PAYLOAD_TYPE)

    @property
    def bitrate_bps(self) -> int:
        return self.max_bitrate * 100


DEFAULT_FORMATS: tuple[MediaFormat, ...] = (
    MediaFormat(Codec.G722, frames=20),
    MediaFormat(Codec.PCMU, frames=20),
    MediaFormat(Codec.PCMA, frames=20),
    MediaFormat(Codec.H264, max_bitrate=19200),
    MediaFormat(Codec.H263, max_bitrate=19200, mpi=(("qcifMPI", 1), ("cifMPI", 1), ("cif4MPI", 2))),
    MediaFormat(Codec.H261, max_bitrate=19200, mpi=(("qcifMPI", 1), ("cifMPI", 1))),
)

VIDEO_PREFERENCE = (Codec.H264, Codec.H263, Codec.H261)


# ---------------------------------------------------------------------------------------
# MediaFormat <-> H.245 AudioCapability / VideoCapability (also OLC dataType)


def _video_capability(fmt: MediaFormat) -> tuple[str, Any]:
    if fmt.codec is Codec.H264:
        collapsing = [
            {"parameterIdentifier": ("standard", H264_PARAM_PROFILE),
             "parameterValue": ("booleanArray", fmt.h264_profile)},
            {"parameterIdentifier": ("standard", H264_PARAM_LEVEL),
             "parameterValue": ("unsignedMin", fmt.h264_level)},
        ]
        return ("genericVideoCapability", {
            "capabilityIdentifier": ("standard", H264_CAPABILITY_OID),
            "maxBitRate": fmt.max_bitrate,
            "collapsing": collapsing,
        })
    if fmt.codec is Codec.H263:
        h263: dict[str, Any] = {name: mpi for name, mpi in fmt.mpi if name in H263_SIZES}
        h263.update(maxBitRate=fmt.max_bitrate, unrestrictedVector=False, arithmeticCoding=False,
                    advancedPrediction=False, pbFrames=False, temporalSpatialTradeOffCapability=False)
        return ("h263VideoCapability", h263)
    if fmt.codec is Codec.H261:
        h261: dict[str, Any] = {name: mpi for name, mpi in fmt.mpi if name in H261_SIZES}
        h261.update(temporalSpatialTradeOffCapability=False, maxBitRate=fmt.max_bitrate,
                    stillImageTransmission=False)
        return ("h261VideoCapability", h261)
    raise ValueError(f"{fmt.codec} is not a video codec")


def data_type_from_format(fmt: MediaFormat) -> tuple[str, Any]:
    """H.245 DataType (``audioData``/``videoData``) for an OpenLogicalChannel."""
    if fmt.codec.is_video:
        return ("videoData", _video_capability(fmt))
    return ("audioData", (_AUDIO_CHOICES[fmt.codec], fmt.frames))


def _format_from_audio(value: tuple[str, Any]) -> MediaFormat | None:
    codec = _AUDIO_BY_CHOICE.get(value[0])
    if codec is None:
        return None
    return MediaFormat(codec, frames=int(value[1]))


def _format_from_video(value: tuple[str, Any]) -> MediaFormat | None:
    name, body = value
    if name == "h261VideoCapability":
        mpi = tuple((k, int(body[k])) for k in H261_SIZES if k in body)
        return MediaFormat(Codec.H261, max_bitrate=int(body["maxBitRate"]), mpi=mpi) if mpi else None
    if name == "h263VideoCapability":
        mpi = tuple((k, int(body[k])) for k in H263_SIZES if k in body)
        return MediaFormat(Codec.H263, max_bitrate=int(body["maxBitRate"]), mpi=mpi) if mpi else None
    if name == "genericVideoCapability":
        ident = body.get("capabilityIdentifier")
        if ident != ("standard", H264_CAPABILITY_OID):
            return None
        profile, level = 0, 0
        for param in body.get("collapsing", []):
            pid, pval = param["parameterIdentifier"], param["parameterValue"]
            if pid == ("standard", H264_PARAM_PROFILE) and pval[0] == "booleanArray":
                profile = int(pval[1])
            elif pid == ("standard", H264_PARAM_LEVEL) and pval[0] == "unsignedMin":
                level = int(pval[1])
        if not profile & H264_PROFILE_BASELINE or not level:
            return None  # we only encode Constrained Baseline; other profiles are skipped
        return MediaFormat(Codec.H264, max_bitrate=int(body.get("maxBitRate", 0)),
                           h264_profile=profile, h264_level=level)
    return None


def format_from_data_type(data_type: tuple[str, Any]) -> MediaFormat | None:
    """Our model of an OLC dataType, or None when it is not a format we handle."""
    try:
        if data_type[0] == "audioData":
            return _format_from_audio(data_type[1])
        if data_type[0] == "videoData":
            return _format_from_video(data_type[1])
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    return None


def media_packetization(fmt: MediaFormat) -> tuple[str, Any] | None:
    """``mediaPacketization`` of H2250LogicalChannelParameters: the H.264 mode OID, or the
    RFC number of H.263's H263-1998 payload format; None for static payload formats."""
    if fmt.codec is Codec.H263 and fmt.h263_rfc4629:
        return ("rtpPayloadType", {"payloadDescriptor": ("rfc-number", H263_1998_RFC_NUMBERS[0]),
                                   "payloadType": fmt.rtp_payload_type})
    if fmt.codec is not Codec.H264:
        return None
    mode = fmt.packetization_modes[0] if fmt.packetization_modes else 0
    return ("rtpPayloadType", {
        "payloadDescriptor": ("oid", H264_PACKETIZATION_OIDS[mode]),
        "payloadType": fmt.rtp_payload_type,
    })


def uses_h263_1998(value: Any) -> bool:
    """True when a ``mediaPacketization`` value names RFC 2429/4629 (H263-1998)."""
    try:
        descriptor = value[1]["payloadDescriptor"]
        return bool(value[0] == "rtpPayloadType" and descriptor[0] == "rfc-number"
                    and int(descriptor[1]) in H263_1998_RFC_NUMBERS)
    except (KeyError, TypeError, IndexError, ValueError):
        return False


def with_channel_parameters(fmt: MediaFormat, params: dict[str, Any]) -> MediaFormat:
    """``fmt`` (from an OLC's dataType) with what its H2250LogicalChannelParameters add: the
    dynamic payload type, the H.264 packetization mode, H.263's payload format."""
    packetization = params.get("mediaPacketization")
    if "dynamicRTPPayloadType" in params:
        fmt = replace(fmt, payload_type=int(params["dynamicRTPPayloadType"]))
    mode = packetization_mode_from(packetization)
    if mode is not None and fmt.codec is Codec.H264:
        fmt = replace(fmt, packetization_modes=(mode,))
    if fmt.codec is Codec.H263 and uses_h263_1998(packetization):
        fmt = replace(fmt, h263_rfc4629=True)
    return fmt


def packetization_mode_from(value: Any) -> int | None:
    """Packetization mode from a ``mediaPacketization`` value, None when absent/unknown."""
    try:
        if value[0] != "rtpPayloadType":
            return None
        descriptor = value[1]["payloadDescriptor"]
        if descriptor[0] != "oid":
            return None
        for mode, oid in H264_PACKETIZATION_OIDS.items():
            if tuple(descriptor[1]) == oid:
                return mode
    except (KeyError, TypeError, IndexError):
        return None
    return None


# ---------------------------------------------------------------------------------------
# TerminalCapabilitySet


def _h2250_capability(formats: Sequence[MediaFormat]) -> dict[str, Any]:
    multipoint = {"multicastCapability": False, "multiUniCastConference": False,
                  "mediaDistributionCapability": [{
                      "centralizedControl": True, "distributedControl": False,
                      "centralizedAudio": True, "distributedAudio": False,
                      "centralizedVideo": True, "distributedVideo": False}]}
    packetization: dict[str, Any] = {"h261aVideoPacketization": False}
    if any(f.codec is Codec.H264 for f in formats):
        packetization["rtpPayloadType"] = [
            {"payloadDescriptor": ("oid", oid)} for _, oid in sorted(H264_PACKETIZATION_OIDS.items())]
    return {
        "maximumAudioDelayJitter": 60,
        "receiveMultipointCapability": multipoint,
        "transmitMultipointCapability": multipoint,
        "receiveAndTransmitMultipointCapability": multipoint,
        "mcCapability": {"centralizedConferenceMC": False, "decentralizedConferenceMC": False},
        "rtcpVideoControlCapability": False,
        "mediaPacketizationCapability": packetization,
    }


def build_terminal_capability_set(sequence_number: int, formats: Sequence[MediaFormat]) -> dict[str, Any]:
    """TerminalCapabilitySet for our receive formats; an empty ``formats`` builds the empty
    capability set (H.323 8.4.6: asks the peer to close its channels, i.e. pause)."""
    tcs: dict[str, Any] = {"sequenceNumber": sequence_number & 0xFF, "protocolIdentifier": H245_PROTOCOL_ID}
    if not formats:
        return tcs
    table: list[dict[str, Any]] = []
    audio: list[int] = []
    video: list[int] = []
    for fmt in formats:
        number = len(table) + 1
        if fmt.codec.is_video:
            table.append({"capabilityTableEntryNumber": number,
                          "capability": ("receiveVideoCapability", _video_capability(fmt))})
            video.append(number)
        else:
            table.append({"capabilityTableEntryNumber": number,
                          "capability": ("receiveAudioCapability", (_AUDIO_CHOICES[fmt.codec], fmt.frames))})
            audio.append(number)
    uii: list[int] = []
    for choice in ("basicString", "dtmf"):
        number = len(table) + 1
        table.append({"capabilityTableEntryNumber": number,
                      "capability": ("receiveAndTransmitUserInputCapability", (choice, 0))})
        uii.append(number)
    simultaneous = [alt for alt in (audio, video, uii) if alt]
    tcs["multiplexCapability"] = ("h2250Capability", _h2250_capability(formats))
    tcs["capabilityTable"] = table
    tcs["capabilityDescriptors"] = [{"capabilityDescriptorNumber": 0, "simultaneousCapabilities": simultaneous}]
    return tcs


@dataclass
class RemoteCapabilities:
    """What a peer's TerminalCapabilitySet says it can receive."""

    sequence_number: int
    formats: list[MediaFormat] = field(default_factory=list)
    packetization_modes: tuple[int, ...] = (0,)
    user_input: set[str] = field(default_factory=set)
    skipped: int = 0

    @property
    def empty(self) -> bool:
        """True for the empty capability set (no table at all): the peer pauses media."""
        return not self.formats and not self.user_input and self.skipped == 0


def parse_terminal_capability_set(tcs: dict[str, Any]) -> RemoteCapabilities:
    """Extract the formats we understand; unknown capabilities are counted and skipped."""
    remote = RemoteCapabilities(int(tcs.get("sequenceNumber", 0)))
    modes: set[int] = set()
    mux = tcs.get("multiplexCapability")
    if isinstance(mux, tuple) and mux[0] == "h2250Capability":
        for rtp in mux[1].get("mediaPacketizationCapability", {}).get("rtpPayloadType", []):
            mode = packetization_mode_from(("rtpPayloadType", rtp))
            if mode is not None:
                modes.add(mode)
    remote.packetization_modes = tuple(sorted(modes, reverse=True)) or (0,)
    for entry in tcs.get("capabilityTable", []):
        capability = entry.get("capability")
        if not isinstance(capability, tuple):
            remote.skipped += 1
            continue
        kind, body = capability
        fmt: MediaFormat | None = None
        if kind in ("receiveAudioCapability", "receiveAndTransmitAudioCapability"):
            fmt = _format_from_audio(body)
        elif kind in ("receiveVideoCapability", "receiveAndTransmitVideoCapability"):
            try:
                fmt = _format_from_video(body)
            except (KeyError, TypeError, ValueError):
                fmt = None
            if fmt is not None and fmt.codec is Codec.H264:
                fmt = replace(fmt, packetization_modes=remote.packetization_modes)
        elif kind in ("receiveUserInputCapability", "receiveAndTransmitUserInputCapability"):
            remote.user_input.add(str(body[0]))
            continue
        if fmt is None:
            remote.skipped += 1
        else:
            remote.formats.append(fmt)
    return remote


# ---------------------------------------------------------------------------------------
# Choosing formats


def _merge(local: MediaFormat, remote: MediaFormat) -> MediaFormat | None:
    """The format both sides support, with the stricter of each parameter; None if none."""
    if local.codec is not remote.codec:
        return None
    rate = min(x for x in (local.max_bitrate, remote.max_bitrate) if x) if (
        local.max_bitrate or remote.max_bitrate) else 0
    if local.codec is Codec.H264:
        modes = tuple(m for m in local.packetization_modes if m in remote.packetization_modes)
        if not remote.h264_profile & local.h264_profile:
            return None
        return replace(local, max_bitrate=rate, h264_level=min(local.h264_level, remote.h264_level),
                       packetization_modes=modes or (0,), payload_type=remote.payload_type
                       if remote.payload_type >= 0 else local.payload_type)
    if local.codec in (Codec.H263, Codec.H261):
        theirs = dict(remote.mpi)
        common = tuple((name, max(mpi, theirs[name])) for name, mpi in local.mpi if name in theirs)
        if not common:
            return None
        return replace(local, max_bitrate=rate, mpi=common)
    return replace(local, frames=min(local.frames, remote.frames))


def choose_format(local: Iterable[MediaFormat], remote: Iterable[MediaFormat], video: bool) -> MediaFormat | None:
    """Best common format of one media kind.

    Video prefers H.264, then H.263, then H.261 whatever order either side lists them in;
    audio follows our own order (the MCU lists G.722 first for wideband).
    """
    local_list = [f for f in local if f.codec.is_video == video]
    remote_list = [f for f in remote if f.codec.is_video == video]
    if video:
        local_list.sort(key=lambda f: VIDEO_PREFERENCE.index(f.codec))
    for mine in local_list:
        for theirs in remote_list:
            merged = _merge(mine, theirs)
            if merged is not None:
                return merged
    return None
