"""SDP (RFC 4566) model and offer/answer (RFC 3264) for our SIP legs.

Audio: PCMU, PCMA, G.722, Opus (+ telephone-event). Video: H.264 (answer with the first offered
H.264 payload type and keep its fmtp; packetization-mode 0 and 1) and VP8. Direction/hold,
rtcp-mux or a separate RTCP port, SDES-SRTP ``a=crypto`` (RFC 4568). Bandwidth (RFC 4566 ``b=AS``,
RFC 3890 ``b=TIAS``): the peer's values are read into each stream as written (the MCU's rate budget
clamps them); ours come from :class:`LocalMedia` (session ``b=AS``, video ``b=AS`` + ``b=TIAS``).
Video offers ``ccm tmmbr`` (RFC 5104) besides NACK/PLI/FIR; the answer keeps what the offer had.
Far-end camera control (RFC 4573): with :attr:`LocalMedia.h224_port` we offer, and accept an
offered, ``m=application <port> RTP/AVP <pt>`` with ``a=rtpmap:<pt> H224/4800`` (plain RTP only:
under SRTP the line is not offered and an offered one is refused with port 0); its stream has kind
``application`` and codec ``H224``.
The negotiated result is a list of :class:`~sip_gateway.rtp.media_description.MediaStream` that the
RTP layer consumes (the media description types live in :mod:`sip_gateway.rtp.media_description`).
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field, replace

from ..rtp.media_description import Codec, ExtraMedia, LocalMedia, MediaPolicy, MediaStream, SrtpKeys
from .errors import SipParseError

STATIC_PAYLOADS: dict[int, tuple[str, int, int]] = {
    0: ("PCMU", 8000, 1),
    8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1),
}
AUDIO_CODECS = ("OPUS", "G722", "PCMU", "PCMA")
VIDEO_CODECS = ("H264", "VP8")
SRTP_SUITES = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_REVERSE = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}


class SdpError(SipParseError):
    """SDP that cannot be parsed or negotiated (answer 488 Not Acceptable Here)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, 488)


@dataclass
class Media:
    """One ``m=`` section."""

    kind: str
    port: int
    proto: str
    formats: list[str]
    connection: str | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    bandwidth: list[str] = field(default_factory=list)

    def attr(self, name: str) -> str | None:
        """First value of attribute ``name`` (``""`` for a flag attribute)."""
        for key, value in self.attributes:
            if key == name:
                return value if value is not None else ""
        return None

    def attrs(self, name: str) -> list[str]:
        """All values of attribute ``name``."""
        return [v or "" for k, v in self.attributes if k == name]

    @property
    def direction(self) -> str:
        """sendrecv/sendonly/recvonly/inactive (media-level, default sendrecv)."""
        for key, _ in self.attributes:
            if key in DIRECTIONS:
                return key
        return "sendrecv"

    def rtpmap(self) -> dict[int, tuple[str, int, int]]:
        """Payload type → (encoding upper-case, clock rate, channels), static types included."""
        result: dict[int, tuple[str, int, int]] = {}
        for fmt in self.formats:
            if fmt.isdigit() and int(fmt) in STATIC_PAYLOADS:
                result[int(fmt)] = STATIC_PAYLOADS[int(fmt)]
        for value in self.attrs("rtpmap"):
            pt_text, _, enc = value.partition(" ")
            pieces = enc.strip().split("/")
            if not pt_text.isdigit() or len(pieces) < 2 or not pieces[1].isdigit():
                raise SdpError("Bad a=rtpmap")
            channels = int(pieces[2]) if len(pieces) > 2 and pieces[2].isdigit() else 1
            result[int(pt_text)] = (pieces[0].upper(), int(pieces[1]), channels)
        return result

    def fmtp(self) -> dict[int, str]:
        """Payload type → fmtp parameter string."""
        result: dict[int, str] = {}
        for value in self.attrs("fmtp"):
            pt_text, _, params = value.partition(" ")
            if pt_text.isdigit():
                result[int(pt_text)] = params.strip()
        return result


@dataclass
class SessionDescription:
    """A parsed SDP body."""

    origin: str = "- 0 0 IN IP4 127.0.0.1"
    name: str = "-"
    connection: str | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    media: list[Media] = field(default_factory=list)
    timing: str = "0 0"
    bandwidth: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        """Parse SDP text. Raises :class:`SdpError` (488) on malformed input."""
        if isinstance(data, bytes):
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SdpError("SDP is not UTF-8") from exc
        sdp = cls()
        current: Media | None = None
        seen_v = False
        for raw in data.replace("\r\n", "\n").split("\n"):
            line = raw.strip()
            if not line:
                continue
            if len(line) < 2 or line[1] != "=":
                raise SdpError(f"Bad SDP line {line[:30]!r}")
            kind, value = line[0], line[2:]
            if kind == "v":
                if value.strip() != "0":
                    raise SdpError("Unsupported SDP version")
                seen_v = True
            elif kind == "o":
                sdp.origin = value
            elif kind == "s":
                sdp.name = value
            elif kind == "t":
                sdp.timing = value
            elif kind == "c":
                address = _parse_connection(value)
                if current is None:
                    sdp.connection = address
                else:
                    current.connection = address
            elif kind == "b":
                (sdp.bandwidth if current is None else current.bandwidth).append(value)
            elif kind == "m":
                current = _parse_media_line(value)
                sdp.media.append(current)
            elif kind == "a":
                name, sep, aval = value.partition(":")
                target = sdp.attributes if current is None else current.attributes
                target.append((name.strip(), aval if sep else None))
        if not seen_v:
            raise SdpError("SDP without v= line")
        if not sdp.media:
            raise SdpError("SDP without media")
        return sdp

    def serialize(self) -> bytes:
        """Wire form (CRLF line ends)."""
        lines = ["v=0", f"o={self.origin}", f"s={self.name}"]
        if self.connection:
            lines.append(f"c=IN IP4 {self.connection}")
        lines += [f"b={b}" for b in self.bandwidth]
        lines.append(f"t={self.timing}")
        lines += [f"a={k}" if v is None else f"a={k}:{v}" for k, v in self.attributes]
        for m in self.media:
            lines.append(f"m={m.kind} {m.port} {m.proto} {' '.join(m.formats)}")
            if m.connection:
                lines.append(f"c=IN IP4 {m.connection}")
            lines += [f"b={b}" for b in m.bandwidth]
            lines += [f"a={k}" if v is None else f"a={k}:{v}" for k, v in m.attributes]
        return ("\r\n".join(lines) + "\r\n").encode()

    @property
    def session_direction(self) -> str | None:
        """Session-level direction attribute, if any."""
        for key, _ in self.attributes:
            if key in DIRECTIONS:
                return key
        return None


def _parse_connection(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError("Bad c= line")
    return parts[2].split("/")[0]


def _parse_media_line(value: str) -> Media:
    parts = value.split()
    if len(parts) < 3:
        raise SdpError("Bad m= line")
    port_text = parts[1].split("/")[0]
    if not port_text.isdigit() or int(port_text) > 65535:
        raise SdpError("Bad m= port")
    return Media(parts[0], int(port_text), parts[2], parts[3:])


# --- negotiation ---------------------------------------------------------------------


_DEFAULT_PT = {"PCMU": 0, "PCMA": 8, "G722": 9}
_CLOCK = {"PCMU": 8000, "PCMA": 8000, "G722": 8000, "OPUS": 48000, "H264": 90000, "VP8": 90000}
H224_CLOCK = 4800  # RFC 4573
_SDP_NAME = {"OPUS": "opus", "H264": "H264", "VP8": "VP8", "PCMU": "PCMU", "PCMA": "PCMA", "G722": "G722"}


def _crypto_line(tag: int, suite: str, key: bytes) -> str:
    return f"{tag} {suite} inline:{base64.b64encode(key).decode()}"


def _parse_crypto(value: str) -> tuple[int, str, bytes] | None:
    parts = value.split()
    if len(parts) < 3 or not parts[0].isdigit() or not parts[2].startswith("inline:"):
        return None
    key_text = parts[2][len("inline:") :].split("|")[0]
    try:
        key = base64.b64decode(key_text, validate=True)
    except ValueError:
        return None
    if len(key) != 30:
        return None
    return int(parts[0]), parts[1], key


def _rtcp_port(media: Media) -> tuple[bool, int]:
    mux = media.attr("rtcp-mux") is not None
    rtcp = media.attr("rtcp")
    if rtcp:
        first = rtcp.split()[0]
        if first.isdigit():
            return mux, int(first)
    return mux, media.port + 1


MAX_BANDWIDTH_DIGITS = 15  # longer numbers are not bandwidths (and int() of thousands of digits is slow)
HEADER_SHARE = 0.04  # RTP/UDP/IP headers of ~1 kB video packets: b=AS = b=TIAS / (1 - share)


def bandwidth(lines: list[str], modifier: str) -> int | None:
    """The value of ``b=<modifier>:<value>`` among ``lines`` (RFC 4566 §5.8, RFC 3890), or None.

    Values are returned as written (negative or absurd ones included: the rate budget clamps
    them); a value that is not an integer, or has more than :data:`MAX_BANDWIDTH_DIGITS` digits,
    is ignored (a bandwidth hint never fails a call). The last line of a modifier wins.
    """
    found: int | None = None
    for line in lines:
        name, sep, value = line.partition(":")
        value = value.strip()
        digits = value[1:] if value[:1] in "+-" else value
        if not sep or name.strip().upper() != modifier.upper() or not digits.isdigit() \
                or not digits.isascii() or len(digits) > MAX_BANDWIDTH_DIGITS:
            continue
        found = int(value)
    return found


def _bandwidth_lines(kbps: int | None, tias: bool) -> list[str]:
    if kbps is None or kbps <= 0:
        return []
    if not tias:
        return [f"AS:{kbps}"]
    return [f"AS:{-(-kbps * 100 // round(100 * (1 - HEADER_SHARE)))}", f"TIAS:{kbps * 1000}"]


def _with_bandwidth(stream: MediaStream, session: SessionDescription, media: Media) -> MediaStream:
    """``stream`` with the peer's b= values (session b=AS, the stream's b=AS and b=TIAS)."""
    return replace(stream, remote_session_kbps=bandwidth(session.bandwidth, "AS"),
                   remote_as_kbps=bandwidth(media.bandwidth, "AS"),
                   remote_tias_bps=bandwidth(media.bandwidth, "TIAS"))


def _feedback(media: Media, pt: int) -> tuple[bool, bool, bool, bool]:
    nack = pli = fir = tmmbr = False
    for value in media.attrs("rtcp-fb"):
        parts = value.split()
        if len(parts) < 2 or parts[0] not in (str(pt), "*"):
            continue
        if parts[1] == "nack":
            if len(parts) == 2:
                nack = True
            elif parts[2] == "pli":
                pli = True
        elif parts[1] == "ccm" and len(parts) > 2 and parts[2] == "fir":
            fir = True
        elif parts[1] == "ccm" and len(parts) > 2 and parts[2] == "tmmbr":
            tmmbr = True
    return nack, pli, fir, tmmbr


def _choose_codec(media: Media, policy: MediaPolicy) -> tuple[Codec, int | None] | None:
    rtpmap = media.rtpmap()
    fmtp = media.fmtp()
    allowed = policy.audio_codecs if media.kind == "audio" else policy.video_codecs
    dtmf: int | None = None
    for fmt in media.formats:
        if fmt.isdigit() and int(fmt) in rtpmap and rtpmap[int(fmt)][0] == "TELEPHONE-EVENT":
            if rtpmap[int(fmt)][1] == 8000 or dtmf is None:
                dtmf = int(fmt)
    for fmt in media.formats:
        if not fmt.isdigit() or int(fmt) not in rtpmap:
            continue
        pt = int(fmt)
        name, clock, channels = rtpmap[pt]
        if name not in allowed:
            continue
        codec = Codec(name, pt, clock, channels, fmtp.get(pt, ""))
        if name == "H264" and codec.packetization_mode not in policy.h264_modes:
            continue
        # The first acceptable H.264 payload type wins, fmtp kept verbatim (DESIGN.md).
        return codec, (dtmf if policy.telephone_event and media.kind == "audio" else None)
    return None


def answer(
    offer: SessionDescription, policy: MediaPolicy, local: LocalMedia, session_id: int = 1,
    version: int = 1,
) -> tuple[SessionDescription, list[MediaStream]]:
    """Build an SDP answer to ``offer``. Raises :class:`SdpError` when nothing is acceptable."""
    answer_sdp = SessionDescription(
        origin=f"commandcenter {session_id} {version} IN IP4 {local.host}", connection=local.host,
        bandwidth=_bandwidth_lines(local.session_kbps, tias=False),
    )
    streams: list[MediaStream] = []
    extra = {e.index: e for e in local.extra}
    for index, media in enumerate(offer.media):
        if index in extra:  # a stream the RTP layer does not carry, answered by its owner (BFCP)
            e = extra[index]
            answer_sdp.media.append(Media(e.kind, e.port, e.proto, list(e.formats), attributes=list(e.attributes)))
            continue
        if media.kind == "application":
            h224 = _answer_h224(offer, media, index, local) if policy.srtp != "required" else None
            if h224 is not None:
                streams.append(h224[0])
                answer_sdp.media.append(h224[1])
            else:
                answer_sdp.media.append(Media(media.kind, 0, media.proto, media.formats[:1] or ["0"]))
            continue
        port = local.audio_port if media.kind == "audio" else local.video_port
        chosen = _choose_codec(media, policy) if media.port and port else None
        secure = "SAVP" in media.proto
        if chosen is not None and media.kind in ("audio", "video"):
            keys = None
            if secure or policy.srtp == "required":
                keys = _negotiate_crypto(media, policy)
            if keys is None and (secure or policy.srtp == "required"):
                chosen = None
            if chosen is not None:
                codec, dtmf = chosen
                assert port is not None
                stream, m = _answer_media(offer, media, index, codec, dtmf, keys, policy, local, port)
                streams.append(stream)
                answer_sdp.media.append(m)
                continue
        answer_sdp.media.append(Media(media.kind, 0, media.proto, media.formats[:1] or ["0"]))
    if not any(s.kind != "application" for s in streams):
        raise SdpError("No acceptable media")
    return answer_sdp, streams



def h224_payload_type(media: Media) -> int | None:
    """The payload type of ``H224/4800`` on an RTP/AVP application m-line (RFC 4573), or None."""
    if media.kind != "application" or media.proto != "RTP/AVP" or not media.port:
        return None
    try:
        rtpmap = media.rtpmap()
    except SdpError:
        return None
    for fmt in media.formats:
        if fmt.isdigit() and rtpmap.get(int(fmt), ("", 0, 0))[:2] == ("H224", H224_CLOCK):
            return int(fmt)
    return None


def offers_h224(offer: SessionDescription | None) -> bool:
    """The offer has an H.224 (far-end camera control) line we could accept."""
    return offer is not None and any(h224_payload_type(m) is not None for m in offer.media)


def _answer_h224(offer: SessionDescription, media: Media, index: int,
                 local: LocalMedia) -> tuple[MediaStream, Media] | None:
    pt = h224_payload_type(media)
    if pt is None or not local.h224_port:
        return None
    direction = media.direction
    if media.direction == "sendrecv" and offer.session_direction:
        direction = offer.session_direction
    ours = _REVERSE[direction]
    mux, rtcp_port = _rtcp_port(media)
    m = Media("application", local.h224_port, "RTP/AVP", [str(pt)],
              attributes=[("rtpmap", f"{pt} H224/{H224_CLOCK}")])
    m.attributes.append(("rtcp-mux", None) if mux else ("rtcp", str(local.h224_port + 1)))
    m.attributes.append((ours, None))
    stream = MediaStream("application", index, local.h224_port, media.connection or offer.connection or "",
                         media.port, media.port if mux else rtcp_port, Codec("H224", pt, H224_CLOCK), ours, mux)
    return stream, m


def _negotiate_crypto(media: Media, policy: MediaPolicy) -> SrtpKeys | None:
    if policy.srtp == "off":
        return None
    for value in media.attrs("crypto"):
        parsed = _parse_crypto(value)
        if parsed and parsed[1] in SRTP_SUITES:
            tag, suite, remote_key = parsed
            return SrtpKeys(suite, tag, secrets.token_bytes(30), remote_key)
    return None


def _answer_media(
    offer: SessionDescription, media: Media, index: int, codec: Codec, dtmf: int | None,
    keys: SrtpKeys | None, policy: MediaPolicy, local: LocalMedia, port: int,
) -> tuple[MediaStream, Media]:
    remote_host = media.connection or offer.connection or ""
    direction = media.direction
    if media.direction == "sendrecv" and offer.session_direction:
        direction = offer.session_direction
    our_direction = _REVERSE[direction]
    mux, rtcp_port = _rtcp_port(media)
    use_mux = mux and policy.rtcp_mux
    nack, pli, fir, tmmbr = _feedback(media, codec.payload_type)
    formats = [str(codec.payload_type)] + ([str(dtmf)] if dtmf is not None else [])
    m = Media(media.kind, port, media.proto, formats)
    if media.kind == "video":
        m.bandwidth = _bandwidth_lines(local.video_kbps, tias=True)
    m.attributes.append(
        ("rtpmap", f"{codec.payload_type} {_SDP_NAME.get(codec.name, codec.name)}/{codec.clock_rate}"
         + (f"/{codec.channels}" if codec.channels > 1 else ""))
    )
    if codec.fmtp:
        m.attributes.append(("fmtp", f"{codec.payload_type} {codec.fmtp}"))
    if dtmf is not None:
        m.attributes += [("rtpmap", f"{dtmf} telephone-event/8000"), ("fmtp", f"{dtmf} 0-16")]
    for flag, fb in ((nack, "nack"), (pli, "nack pli"), (fir, "ccm fir"), (tmmbr, "ccm tmmbr")):
        if flag:
            m.attributes.append(("rtcp-fb", f"{codec.payload_type} {fb}"))
    if use_mux:
        m.attributes.append(("rtcp-mux", None))
    else:
        m.attributes.append(("rtcp", str(port + 1)))
    if keys is not None:
        m.proto = "RTP/SAVP"
        m.attributes.append(("crypto", _crypto_line(keys.tag, keys.suite, keys.local_key)))
    m.attributes.append((our_direction, None))
    stream = MediaStream(
        media.kind, index, port, remote_host, media.port, media.port if use_mux else rtcp_port,
        codec, our_direction, use_mux, dtmf, keys, nack, pli, fir, tmmbr,
    )
    return _with_bandwidth(stream, offer, media), m


def create_offer(
    policy: MediaPolicy, local: LocalMedia, session_id: int = 1, version: int = 1,
    direction: str = "sendrecv", secure: bool | None = None,
) -> SessionDescription:
    """Build an offer with every codec the policy allows (audio, and video if a port is given)."""
    sdp = SessionDescription(
        origin=f"commandcenter {session_id} {version} IN IP4 {local.host}", connection=local.host,
        bandwidth=_bandwidth_lines(local.session_kbps, tias=False),
    )
    secure = policy.srtp == "required" if secure is None else secure
    proto = "RTP/SAVP" if secure else "RTP/AVP"
    dynamic = iter(range(96, 128))
    audio = Media("audio", local.audio_port, proto, [])
    for name in policy.audio_codecs:
        pt = _DEFAULT_PT[name] if name in _DEFAULT_PT else next(dynamic)  # PCMU is 0, which is falsy
        audio.formats.append(str(pt))
        channels = "/2" if name == "OPUS" else ""
        audio.attributes.append(("rtpmap", f"{pt} {_SDP_NAME[name]}/{48000 if name == 'OPUS' else _CLOCK[name]}{channels}"))
    if policy.telephone_event:
        pt = next(dynamic)
        audio.formats.append(str(pt))
        audio.attributes += [("rtpmap", f"{pt} telephone-event/8000"), ("fmtp", f"{pt} 0-16")]
    sdp.media.append(audio)
    if local.video_port:
        video = Media("video", local.video_port, proto, [], bandwidth=_bandwidth_lines(local.video_kbps, tias=True))
        for name in policy.video_codecs:
            modes = policy.h264_modes if name == "H264" else (None,)
            for mode in modes:
                pt = next(dynamic)
                video.formats.append(str(pt))
                video.attributes.append(("rtpmap", f"{pt} {_SDP_NAME[name]}/90000"))
                if name == "H264":
                    video.attributes.append(
                        ("fmtp", f"{pt} profile-level-id={policy.h264_profile_level_id};packetization-mode={mode}")
                    )
                video.attributes += [("rtcp-fb", f"{pt} nack"), ("rtcp-fb", f"{pt} nack pli"),
                                     ("rtcp-fb", f"{pt} ccm fir"), ("rtcp-fb", f"{pt} ccm tmmbr")]
        sdp.media.append(video)
    if local.h224_port and not secure:
        pt = next(dynamic)
        sdp.media.append(Media("application", local.h224_port, proto, [str(pt)],
                               attributes=[("rtpmap", f"{pt} H224/{H224_CLOCK}")]))
    for m in sdp.media:
        if policy.rtcp_mux:
            m.attributes.append(("rtcp-mux", None))
        m.attributes.append(("rtcp", str(m.port + 1)))
        if secure:
            m.attributes.append(("crypto", _crypto_line(1, SRTP_SUITES[0], secrets.token_bytes(30))))
        m.attributes.append((direction, None))
    for e in sorted(local.extra, key=lambda e: e.index):  # a re-offer keeps every m-line (RFC 3264 §8)
        sdp.media.append(Media(e.kind, e.port, e.proto, list(e.formats), attributes=list(e.attributes)))
    return sdp


def placed_extra(policy: MediaPolicy, local: LocalMedia) -> LocalMedia:
    """``local`` with its extra m-lines numbered where :func:`create_offer` writes them: after our
    own audio, video and H.224 lines, in their order.

    An offered extra stream (a cascade link's slides) must carry the index it has in the SDP: a
    re-offer from the peer keeps every m-line in place (RFC 3264 §8), and :func:`answer` knows the
    stream only by that index; under a placeholder index it would answer the peer's slides m-line
    as a second video stream on our own video port (and the peer would send the slides there).
    """
    secure = policy.srtp == "required"
    first = 1 + (1 if local.video_port else 0) + (1 if local.h224_port and not secure else 0)
    ordered = sorted(local.extra, key=lambda e: e.index)
    return replace(local, extra=tuple(replace(e, index=first + i) for i, e in enumerate(ordered)))


def narrowed(media: ExtraMedia, payload_type: int) -> ExtraMedia:
    """An offered RTP m-line of ours cut down to the one payload type the answer chose, so that
    every later offer or answer of ours carries the negotiated format only (RFC 3264 §6.1: an
    answer to the peer's re-offer may list only payload types that offer has)."""
    pt = str(payload_type)
    per_format = ("rtpmap", "fmtp", "rtcp-fb")
    attributes = tuple((k, v) for k, v in media.attributes
                       if k not in per_format or (v or "").split(" ", 1)[0] == pt)
    return replace(media, formats=(pt,), attributes=attributes)


def streams_from_answer(
    offer: SessionDescription, answer_sdp: SessionDescription
) -> list[MediaStream]:
    """Negotiated streams for an offer we sent and the answer we got (outgoing or late offer)."""
    streams: list[MediaStream] = []
    for index, (ours, theirs) in enumerate(zip(offer.media, answer_sdp.media, strict=False)):
        if theirs.port == 0:
            continue
        rtpmap = theirs.rtpmap()
        fmtp = theirs.fmtp()
        codec: Codec | None = None
        dtmf: int | None = None
        for fmt in theirs.formats:
            if not fmt.isdigit() or int(fmt) not in rtpmap:
                continue
            name, clock, channels = rtpmap[int(fmt)]
            if name == "TELEPHONE-EVENT":
                dtmf = dtmf or int(fmt)
            elif codec is None and (name in AUDIO_CODECS + VIDEO_CODECS
                                    or (name == "H224" and theirs.kind == "application")):
                codec = Codec(name, int(fmt), clock, channels, fmtp.get(int(fmt), ""))
        if codec is None:
            continue
        keys = None
        our_crypto = [_parse_crypto(v) for v in ours.attrs("crypto")]
        for value in theirs.attrs("crypto"):
            parsed = _parse_crypto(value)
            if parsed:
                for mine in our_crypto:
                    if mine and mine[0] == parsed[0]:
                        keys = SrtpKeys(parsed[1], parsed[0], mine[2], parsed[2])
        mux, rtcp_port = _rtcp_port(theirs)
        nack, pli, fir, tmmbr = _feedback(theirs, codec.payload_type)
        direction = theirs.direction
        if direction == "sendrecv" and answer_sdp.session_direction:
            direction = answer_sdp.session_direction
        streams.append(_with_bandwidth(
            MediaStream(
                theirs.kind, index, ours.port, theirs.connection or answer_sdp.connection or "",
                theirs.port, theirs.port if mux else rtcp_port, codec, _REVERSE[direction], mux,
                dtmf, keys, nack, pli, fir, tmmbr,
            ), answer_sdp, theirs))
    return streams
