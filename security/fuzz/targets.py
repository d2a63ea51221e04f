"""Fuzz targets: one per parser of outside input.

A target is a function taking the fuzzer's bytes, the exception types that parser documents
as its way of refusing input, and a seed corpus built from real messages (the test suite's
samples, or messages our own encoders produce). Any other exception is a crash.

Targets are built lazily (``build(name)``) so the worker can import the parsers inside
atheris' instrumentation block.
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Target:
    """A parser under test."""

    name: str
    run: Callable[[bytes], object]
    expected: tuple[type[BaseException], ...]
    seeds: list[bytes]
    max_len: int = 4096
    description: str = ""
    cleanup: list[Callable[[], None]] = field(default_factory=list)


class Finding(Exception):
    """Raised by a target when the parser returned but broke a documented property
    (e.g. the verifier accepted a damaged bundle). Always counted as a crash."""


# ---------------------------------------------------------------------------- SIP / SDP


def _sip_seeds() -> list[bytes]:
    from tests.sip_gateway.sip_testlib import SDP_OFFER, request

    seeds = [p.read_bytes() for p in sorted((ROOT / "tests/sip_gateway/corpus").glob("*.sip"))]
    seeds += [
        request(body=SDP_OFFER),
        request("REGISTER", uri="sip:127.0.0.1", extra="Expires: 60"),
        request("OPTIONS"),
        request("BYE", to_tag="t1", cseq=2),
        request("INFO", to_tag="t1", cseq=3, content_type="application/media_control+xml",
                body='<?xml version="1.0"?><media_control><vc_primitive><to_encoder><picture_fast_update/>'
                     "</to_encoder></vc_primitive></media_control>"),
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\nFrom: <sip:a@h>;tag=1\r\n"
        b"To: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\nFrom: <sip:a@h>;tag=1\r\n"
        b"To: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n"
        b'WWW-Authenticate: Digest realm="cc", nonce="abc", algorithm=SHA-256, qop="auth"\r\n'
        b"Content-Length: 0\r\n\r\n",
    ]
    return seeds


def sip() -> Target:
    """The SIP message parser, then the user agent (transactions, dialogs) on what parsed."""
    from sip_gateway.sip.actions import Flow
    from sip_gateway.sip.errors import SipParseError
    from sip_gateway.sip.message import parse_message
    from sip_gateway.sip.useragent import UserAgent, UserAgentConfig

    flow = Flow("udp", "127.0.0.1", 5099)
    uas = [UserAgent(UserAgentConfig(rate=1e9, burst=1e9))]
    count = [0]

    def run(data: bytes) -> None:
        try:
            message = parse_message(data)
        except SipParseError:
            message = None
        if message is not None:
            try:
                parse_message(message.serialize())  # what we re-serialise must parse again
            except SipParseError as exc:
                raise Finding(f"re-serialised message does not parse: {exc}") from exc
        count[0] += 1
        if count[0] % 2000 == 0:  # a fresh UA now and then keeps memory bounded
            uas[0] = UserAgent(UserAgentConfig(rate=1e9, burst=1e9))
        uas[0].receive(data, flow, count[0] * 0.01)  # documented: never raises

    return Target("sip", run, (), _sip_seeds(), 4096,
                  "sip_gateway.sip.message.parse_message + UserAgent.receive")


def sdp() -> Target:
    """The SDP parser and the offer/answer negotiation on what parsed."""
    from sip_gateway.rtp.media_description import LocalMedia, MediaPolicy
    from sip_gateway.sip.errors import SipParseError
    from sip_gateway.sip.sdp import SessionDescription, answer, create_offer
    from tests.sip_gateway.sip_testlib import SDP_OFFER

    local = LocalMedia("127.0.0.1", 40000, 40002)

    def run(data: bytes) -> None:
        offer = SessionDescription.parse(data)
        answer(offer, MediaPolicy(), local)

    seeds = [SDP_OFFER.encode(), create_offer(MediaPolicy(h264_modes=(0, 1)), local).serialize()]
    for p in sorted((ROOT / "tests/sip_gateway/corpus").glob("*.sip")):
        body = p.read_bytes().partition(b"\r\n\r\n")[2]
        if body.startswith(b"v=0"):
            seeds.append(body)
    return Target("sdp", run, (SipParseError,), seeds, 4096,
                  "sip_gateway.sip.sdp.SessionDescription.parse + answer")


# ---------------------------------------------------------------------------- H.323


def _h323_conversation() -> tuple[list[bytes], list[bytes], list[bytes]]:
    """Q.931 messages, H.245 PDUs and RAS datagrams of real calls between two of our endpoints
    (fast start + tunnelling, and slow start with a separate H.245 connection)."""
    from sip_gateway.h323.asn1 import decode_uuie, encode_h245
    from sip_gateway.h323.call import Call, EndpointConfig
    from sip_gateway.h323.events import MediaAddress
    from sip_gateway.h323.q931 import Q931Message
    from sip_gateway.h323.ras import RasClient, RasClientConfig
    from sip_gateway.h323.tpkt import TpktFramer

    q931: list[bytes] = []
    h245: list[bytes] = []
    for fast, tunnel in ((True, True), (False, False)):
        a = Call.outgoing_call(EndpointConfig(h323_id="room-101", e164="8001", is_mcu=False, fast_start=fast,
                                              tunnelling=tunnel, h224=True), "80000001",
                               MediaAddress("127.0.0.1", 1720), {1: 20000, 2: 20002, 4: 20004}, 0.0, random.Random(1))
        b = Call.incoming_call(EndpointConfig(h323_id="mcu", fast_start=fast, tunnelling=tunnel, h224=True),
                               {1: 30000, 2: 30002, 4: 30004}, random.Random(2))
        framers = {id(a): (TpktFramer(), TpktFramer()), id(b): (TpktFramer(), TpktFramer())}

        def pump(a: Call = a, b: Call = b, framers: dict[int, tuple[TpktFramer, TpktFramer]] = framers) -> None:
            for _ in range(50):
                moved = False
                for src, dst in ((a, b), (b, a)):
                    data = src.data_to_send()
                    if data:
                        q931.extend(framers[id(src)][0].feed(data))
                        dst.receive_data(data, 0.0)
                        moved = True
                    data = src.h245_data_to_send()
                    if data:
                        h245.extend(framers[id(src)][1].feed(data))
                        dst.receive_h245_data(data, 0.0)
                        moved = True
                if not moved:
                    return

        pump()
        b.alert(0.0)
        pump()
        b.answer(0.0, MediaAddress("127.0.0.1", 40000))
        pump()
        if not tunnel:
            a.h245_connected(0.0)
            b.h245_connected(0.0)
            pump()
        a.send_user_input("123#", 0.0)
        pump()
        b.release(16, 0.0)
        pump()
    for message in list(q931):  # tunnelled H.245 travels inside the UUIE
        try:
            uu = Q931Message.decode(message).user_user
            value = decode_uuie(uu) if uu else {}
        except ValueError:
            continue
        body = value.get("h323-uu-pdu", {})
        h245.extend(bytes(x) for x in body.get("h245Control", []))
    h245.append(encode_h245(("request", ("roundTripDelayRequest", {"sequenceNumber": 1}))))
    client = RasClient(RasClientConfig(("room-101", "8001"), MediaAddress("127.0.0.1", 1719),
                                       MediaAddress("127.0.0.1", 1720), is_mcu=False))
    client.discover(0.0)
    ras = list(client.datagrams_to_send())
    client.register(0.0)
    ras += client.datagrams_to_send()
    return q931, h245, ras


def h225() -> Target:
    """H.225.0 call signalling: TPKT framing, Q.931 and the H323-UserInformation (PER) in a
    call's state machine, which must never raise (it releases the call instead)."""
    from sip_gateway.h323.asn1 import Asn1Error, decode_uuie
    from sip_gateway.h323.call import Call, EndpointConfig
    from sip_gateway.h323.q931 import Q931Error, Q931Message
    from sip_gateway.h323.tpkt import encode_tpkt

    config = EndpointConfig(h323_id="mcu")

    def run(data: bytes) -> None:
        call = Call.incoming_call(config, {1: 30000, 2: 30002}, random.Random(0))
        call.receive_data(encode_tpkt(data[:60000]), 0.0)
        call.receive_data(data, 0.0)  # the raw bytes as a stream, header included
        try:
            uu = Q931Message.decode(data).user_user
            if uu:
                decode_uuie(uu)
        except (Q931Error, Asn1Error):
            pass

    q931, _, _ = _h323_conversation()
    return Target("h225", run, (), q931, 4096, "sip_gateway.h323 Call.receive_data (TPKT, Q.931, UUIE)")


def h245() -> Target:
    """H.245 PDUs into a started H.245 session (what both tunnelled and separate H.245 reach)."""
    from sip_gateway.h323.asn1 import Asn1Error
    from sip_gateway.h323.call import EndpointConfig
    from sip_gateway.h323.h245 import H245Session

    h245_config = EndpointConfig(h323_id="mcu", h224=True).h245_config({1: 30000, 2: 30002, 4: 30004})

    sessions: list[H245Session] = []
    count = [0]

    def run(data: bytes) -> None:
        # One started session takes 200 inputs in a row (starting one encodes a capability
        # set, the slow part); inputs then also meet the states earlier inputs left behind.
        count[0] += 1
        if not sessions or count[0] % 200 == 0 or sessions[0].ended:
            sessions[:] = [H245Session(h245_config, random.Random(0))]
            sessions[0].start(0.0)
        session = sessions[0]
        session.receive_pdu(data, count[0] * 0.01)
        session.handle_timer(count[0] * 0.01)
        session.take_outgoing()
        session.take_events()

    _, pdus, _ = _h323_conversation()
    return Target("h245", run, (Asn1Error,), pdus, 4096, "sip_gateway.h323.h245.H245Session.receive_pdu")


def h239() -> Target:
    """H.239 token messages (an H.245 PDU) and the role label of a content OLC (a fastStart
    OpenLogicalChannel); what parses as H.239 must re-encode to the same message."""
    from sip_gateway.h323.asn1 import Asn1Error, decode_h245, decode_olc, encode_olc
    from sip_gateway.h323.capabilities import Codec, MediaFormat, data_type_from_format
    from sip_gateway.h323.h239 import (
        H239Error,
        H239Message,
        SubMessage,
        content_data_type,
        encode_message,
        parse_extended_video,
        parse_message,
    )

    def run(data: bytes) -> None:
        try:
            message = parse_message(decode_h245(data))
        except (Asn1Error, H239Error):
            message = None
        if message is not None and parse_message(decode_h245(encode_message(message))) != message:
            raise Finding(f"H.239 message does not survive a round trip: {message}")
        olc = decode_olc(data)  # documented: Asn1Error
        params = olc.get("forwardLogicalChannelParameters", {})
        parse_extended_video(params.get("dataType"))  # documented: H239Error

    seeds = [encode_message(H239Message(kind, channel_id=7, terminal_label=0, symmetry_breaking=9,
                                        acknowledge=True if kind.name.endswith("RESPONSE") else None))
             for kind in SubMessage]
    h264 = data_type_from_format(MediaFormat(Codec.H264, max_bitrate=20000, h264_profile=64, h264_level=71))
    seeds.append(encode_olc({"forwardLogicalChannelNumber": 5, "forwardLogicalChannelParameters": {
        "dataType": content_data_type(h264[1]),
        "multiplexParameters": ("h2250LogicalChannelParameters", {"sessionID": 3})}}))
    return Target("h239", run, (Asn1Error, H239Error), seeds, 2048,
                  "sip_gateway.h323.h239.parse_message / parse_extended_video")


def bfcp() -> Target:
    """BFCP (RFC 8855): ``decode`` (what decodes must re-encode to the same bytes), then the same
    bytes as a TCP stream into a floor control server whose floor a client already holds: every
    refusal is an Error message, and no input from another user changes the holder (issue 18)."""
    from mcu.content.token import ContentToken
    from sip_gateway.bfcp.datagram import DatagramEndpoint
    from sip_gateway.bfcp.message import AttributeType, BfcpError, Message, Primitive, decode, encode, u16
    from sip_gateway.bfcp.server import FloorControlServer
    from sip_gateway.bfcp.stream import StreamConnection

    def run(data: bytes) -> None:
        try:
            message = decode(data)
        except BfcpError:
            message = None
        if message is not None and decode(encode(message)) != message:
            raise Finding(f"BFCP message does not survive a round trip: {message}")
        token = ContentToken()
        server = FloorControlServer(1, 1, token)
        server.add_client(1, "holder")
        server.add_client(2, "other")
        server.receive(encode(Message(Primitive.FLOOR_REQUEST, 1, 1, 1, (u16(AttributeType.FLOOR_ID, 1),))), 0.0)
        conn = StreamConnection({1: server}.get)
        conn.data_received(encode(Message(Primitive.HELLO, 1, 1, 2)), 0.0)
        for _, out in conn.data_received(data, 1.0):
            decode(out.data)  # what we send must decode
        if token.holder != "holder":
            raise Finding("input from another client changed the floor holder")
        # the same bytes as a UDP datagram (version 2) from the other client's bound address
        udp = DatagramEndpoint({1: server}.get)
        udp.datagram_received(encode(Message(Primitive.HELLO, 1, 1, 2, version=2)), ("127.0.0.1", 2), 0.0)
        v2 = bytes([(data[0] & 0x1F) | 0x40]) + data[1:] if data else data
        for datagram in udp.datagram_received(v2, ("127.0.0.1", 2), 2.0).datagrams + udp.on_timer(3.0):
            decode(datagram.data)
        if token.holder != "holder":
            raise Finding("a datagram from another client changed the floor holder")

    seeds = [encode(Message(p, 1, 7, 2, attrs)) for p, attrs in (
        (Primitive.FLOOR_REQUEST, (u16(AttributeType.FLOOR_ID, 1),)),
        (Primitive.FLOOR_RELEASE, (u16(AttributeType.FLOOR_REQUEST_ID, 1),)),
        (Primitive.FLOOR_REQUEST_QUERY, (u16(AttributeType.FLOOR_REQUEST_ID, 1),)),
        (Primitive.FLOOR_QUERY, (u16(AttributeType.FLOOR_ID, 1),)),
        (Primitive.HELLO, ()), (Primitive.GOODBYE, ()))]
    token = ContentToken()
    server = FloorControlServer(1, 1, token)
    server.add_client(2, "other")
    server.add_client(3, "third")
    seeds += [o.data for o in server.receive(seeds[0], 0.0) + server.receive(seeds[3], 0.0)
              + server.receive(encode(Message(Primitive.HELLO, 1, 8, 3)), 0.0)]
    return Target("bfcp", run, (BfcpError,), seeds, 2048,
                  "sip_gateway.bfcp.message.decode, FloorControlServer via StreamConnection and DatagramEndpoint")


def ras() -> Target:
    """RAS datagrams into our gatekeeper and into a registering client."""
    from sip_gateway.h323.events import MediaAddress
    from sip_gateway.h323.ras import Gatekeeper, RasClient, RasClientConfig

    source = MediaAddress("127.0.0.1", 1719)

    def run(data: bytes) -> None:
        gk = Gatekeeper()
        gk.receive_datagram(data, source, 0.0)  # documented: garbage gets no answer, never raises
        client = RasClient(RasClientConfig(("room-101",), source, MediaAddress("127.0.0.1", 1720)))
        client.discover(0.0)
        client.receive_datagram(data, 0.0)

    _, _, datagrams = _h323_conversation()
    return Target("ras", run, (), datagrams, 2048, "sip_gateway.h323.ras Gatekeeper/RasClient.receive_datagram")


def h224() -> Target:
    """H.224 frames from a far end (far-end camera control, issue 18): the frame, CME and H.281
    parsers and the session that must drop garbage (counted) and never raise; what parses as a
    frame must re-encode to the same frame."""
    from sip_gateway.h224 import Action, CameraSource, FeccCapabilities, FeccRules, FeccSession
    from sip_gateway.h224.cme import parse_cme, parse_fecc_capabilities
    from sip_gateway.h224.frame import H224Error, encode_frame, parse_frame
    from sip_gateway.h224.h281 import parse_h281

    def run(data: bytes) -> None:
        session = FeccSession()
        before = session.dropped + session.received
        session.receive(data, 0.0)  # documented: never raises
        if session.dropped + session.received < before:
            raise Finding("FECC session counters went backwards")
        try:
            frame = parse_frame(data)
        except H224Error:
            return
        if parse_frame(encode_frame(frame)) != frame:  # (C/R, FECN, BECN, DE and reserved bits are not kept)
            raise Finding(f"H.224 frame does not survive a round trip: {data.hex()}")
        for parser in (parse_cme, parse_h281, parse_fecc_capabilities):
            try:
                parser(frame.data)
            except H224Error:
                pass

    camera = FeccSession(FeccRules(camera=FeccCapabilities(6, (CameraSource(1, pan=True, tilt=True),
                                                               CameraSource(7, zoom=True, name="doc")))))
    mcu = FeccSession()
    seeds = camera.start(0.0) + mcu.start(0.0) + mcu.start_action(Action.PAN_LEFT, 0.0)
    seeds += mcu.continue_action(Action.PAN_LEFT, 0.1) + mcu.stop_action(Action.PAN_LEFT, 0.2)
    seeds += mcu.activate_preset(3, 0.3) + mcu.store_preset(1, 0.3) + mcu.select_video_source(2, 0.3)
    return Target("h224", run, (), seeds, 512, "sip_gateway.h224 parse_frame/parse_cme/parse_h281, FeccSession.receive")


# ---------------------------------------------------------------------------- RTP / RTCP


def rtp() -> Target:
    """RTP and RTCP datagrams into a video session (H.264, NACK) and an audio session (DTMF)."""
    from aiortc.rtp import (
        RtcpByePacket,
        RtcpPsfbPacket,
        RtcpRrPacket,
        RtcpRtpfbPacket,
        RtcpSdesPacket,
        RtpPacket,
    )

    from sip_gateway.rtp.media_description import LocalMedia, MediaPolicy
    from sip_gateway.rtp.rtcp_feedback import build_remb, build_tmmbr
    from sip_gateway.rtp.session import RtpSession
    from sip_gateway.sip.sdp import answer, create_offer

    offer = create_offer(MediaPolicy(h264_modes=(0, 1)), LocalMedia("127.0.0.1", 4000, 4002))
    _, streams = answer(offer, MediaPolicy(), LocalMedia("127.0.0.1", 5000, 5002))
    video = next(s for s in streams if s.kind == "video")
    audio = next(s for s in streams if s.kind == "audio")
    sessions = [RtpSession(video), RtpSession(audio)]
    count = [0]

    def run(data: bytes) -> None:
        count[0] += 1
        if count[0] % 5000 == 0:  # fresh sessions now and then keep the jitter buffers small
            sessions[:] = [RtpSession(video), RtpSession(audio)]
        for session in sessions:
            session.receive(data, count[0] * 0.02)  # documented: malformed input is counted and dropped

    sender = RtpSession(video)
    seeds = sender.packetize([bytes([0x65]) + bytes(range(200)), bytes([0x67, 0x42, 0, 0x1F])], 0)
    seeds += [RtpPacket(payload_type=video.codec.payload_type, sequence_number=7, timestamp=9, ssrc=5,
                        payload=bytes([0x7C, 0x85]) + bytes(100)).serialize(),  # FU-A start
              RtpPacket(payload_type=video.codec.payload_type, sequence_number=8, timestamp=9, ssrc=5,
                        payload=bytes([0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xCE])).serialize()]  # STAP-A
    if audio.telephone_event_pt is not None:
        seeds.append(RtpPacket(payload_type=audio.telephone_event_pt, sequence_number=1, timestamp=160,
                               ssrc=9, payload=bytes([5, 0x8A, 0, 160])).serialize())
    seeds += [
        bytes(RtcpRrPacket(ssrc=1)),
        bytes(RtcpSdesPacket()),
        bytes(RtcpByePacket(sources=[1, 2])),
        bytes(RtcpPsfbPacket(fmt=1, ssrc=1, media_ssrc=2)),
        bytes(RtcpRtpfbPacket(fmt=1, ssrc=1, media_ssrc=2, lost=[3, 4, 20])),
        sender.report(1_800_000_000.0, 0.0),
        sender.bye(),
        sender.keyframe_request(),
        sender.nack([1, 2, 3, 40]),
        sender.report(1_800_000_000.0, 0.0) + sender.keyframe_request(),  # compound
        sender.report(1_800_000_000.0, 0.0) + build_tmmbr(7, sender.send.ssrc, 500_000, 40),
        build_remb(7, 300_000, (sender.send.ssrc,)),
    ]
    return Target("rtp", run, (), [s for s in seeds if s], 1500, "sip_gateway.rtp.session.RtpSession.receive")


def rtcp_feedback() -> Target:
    """TMMBR/TMMBN/REMB in compound RTCP (the rate budget's inputs), built back from what parsed."""
    from sip_gateway.rtp.rtcp_feedback import (
        RtcpFeedbackError,
        TmmbEntry,
        Tmmbn,
        Tmmbr,
        build_remb,
        build_tmmbn,
        build_tmmbr,
        parse_feedback,
    )

    def run(data: bytes) -> None:
        for item in parse_feedback(data):
            if isinstance(item, Tmmbr | Tmmbn):
                again = parse_feedback(build_tmmbn(1, item.entries))
            else:
                again = parse_feedback(build_remb(1, item.bitrate_bps, item.ssrcs))
            if len(again) != 1:
                raise Finding(f"{item} did not survive building it again")

    seeds = [build_tmmbr(1, 2, 768_000, 40), build_tmmbn(2, (TmmbEntry(1, 768_000, 40),)),
             build_remb(1, 1_500_000, (2, 3)), build_tmmbr(1, 2, 0) + build_remb(1, 10**10, ()),
             build_tmmbn(2, ())]
    return Target("rtcp_feedback", run, (RtcpFeedbackError,), seeds, 1500,
                  "sip_gateway.rtp.rtcp_feedback.parse_feedback + build_*")


def ulpfec() -> Target:
    """ULPFEC payloads (RFC 5109) from a browser or a lossy line, and RED around them: a parsed FEC
    packet is used for recovery against the set it claims (never raises), and a set our encoder
    protects must come back bit-exact for whichever packet is dropped."""
    import struct

    from sip_gateway.rtp.ulpfec import FecError, encode_fec, parse_fec, recover, red_unwrap

    def run(data: bytes) -> None:
        try:
            _pt, inner = red_unwrap(data)
        except FecError:
            inner = data
        fec = parse_fec(inner)
        held = {seq: struct.pack("!BBHII", 0x80, 96, seq, 0, 1) + data[:seq % 64] for seq in fec.protected[1:]}
        recover(fec, held, 1)
        packets = [struct.pack("!BBHII", 0x80, 96, (fec.sn_base + i) & 0xFFFF, i, 1) + data[i:i + 40]
                   for i in range(min(len(fec.protected), 8))]
        again = parse_fec(encode_fec(packets))
        lost = len(data) % len(packets)
        rebuilt = recover(again, {(fec.sn_base + i) & 0xFFFF: p for i, p in enumerate(packets) if i != lost}, 1)
        if rebuilt != packets[lost]:
            raise Finding("a packet protected by our own FEC did not come back")

    def rtp(seq: int, payload: bytes) -> bytes:
        return struct.pack("!BBHII", 0x80, 96, seq & 0xFFFF, seq * 3000, 1) + payload

    seeds = [encode_fec([rtp(1, b"a" * 50), rtp(2, b"b" * 20)]),
             bytes([117]) + encode_fec([rtp(65535, b"x"), rtp(3, b"yz"), rtp(30, b"w" * 300)]),
             bytes([0x80 | 96, 0, 0, 2, 117]) + b"zz" + encode_fec([rtp(7, b"")])]
    return Target("ulpfec", run, (FecError,), seeds, 1500,
                  "sip_gateway.rtp.ulpfec.parse_fec/recover/red_unwrap + encode_fec round trip")


# ---------------------------------------------------------------------------- dispatch


def pidf_lo() -> Target:
    """PIDF-LO in the call-taking path (never raises: flags the location instead), the
    multipart INVITE body it arrives in, and the exchange's PIDF parser (PidfError)."""
    from dispatch.calltaking.pidf_lo import location_from_invite, parse_pidf_lo
    from dispatch.exchange import pidf
    from tests.dispatch import calltaking_samples as samples
    from tests.sip_gateway.sip_testlib import SDP_OFFER

    def run(data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        parse_pidf_lo(text)
        try:
            pidf.parse(text)
        except pidf.PidfError:
            pass
        ctype, _ = samples.multipart_body("", "")
        location_from_invite(ctype, data, ["<cid:loc-1@caller.example.cn>"])

    docs = [samples.circle(), samples.POINT, samples.ELLIPSE, samples.POLYGON, samples.CIVIC,
            pidf.build(111.57, 22.769, 30.0, "罗定市", "pres:13800000000@example.cn")]
    seeds = [d.encode() for d in docs]
    seeds.append(samples.multipart_body(samples.circle(), SDP_OFFER)[1].encode())
    return Target("pidf_lo", run, (), seeds, 4096,
                  "dispatch.calltaking.pidf_lo.parse_pidf_lo/location_from_invite + dispatch.exchange.pidf.parse")


def aml() -> Target:
    """Advanced Mobile Location: SMS and HTTPS forms."""
    from datetime import UTC, datetime

    from dispatch.calltaking.aml import AmlFormatError, build_sms, parse_https, parse_sms

    def run(data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        try:
            parse_sms(text, "13800000000")
        except AmlFormatError:
            pass
        try:
            parse_https(text)
        except AmlFormatError:
            pass

    at = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
    seeds = [build_sms(22.769, 111.57, 20, at).encode(), build_sms(-33.9, 151.2, 5000, at, "N", 95).encode(),
             b"v=3&emergency_number=120&device_number=%2B8613800000001&location_latitude=22.769"
             b"&location_longitude=111.57&location_time=1795000000000&location_accuracy=12.5"
             b"&location_source=gps&location_certainty=68"]
    return Target("aml", run, (), seeds, 2048, "dispatch.calltaking.aml.parse_sms/parse_https")


def eido() -> Target:
    """EIDO import (the JSON body of POST /api/eido): EidoError or an incident."""
    from datetime import UTC, datetime

    from dispatch.exchange.eido import EidoError, export_incident, import_incident
    from dispatch.model import Location, new_incident

    def run(data: bytes) -> None:
        try:
            doc = json.loads(data)
        except ValueError:  # the web layer answers 422 before the importer runs
            return
        import_incident(doc)

    t = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
    seeds = []
    for i, (cat, sub) in enumerate((("fire", "residential"), ("medical", "cardiac"), ("police", "theft"))):
        inc = new_incident(f"F-{i}", cat, sub, 1 + i, Location(111.5, 22.7, 10.0, "x", "某地"), t, "t", "d",
                           call_id=f"C{i}")
        seeds.append(json.dumps(export_incident(inc, now=t), ensure_ascii=False).encode())
    return Target("eido", run, (EidoError,), seeds, 8192, "dispatch.exchange.eido.import_incident")


# ---------------------------------------------------------------------------- monitoring


def gauge_reading() -> Target:
    """Gauge readings over MQTT (one reading, and the batch topic): a Reading or a Rejected with a
    known reason, never an exception; an accepted value is finite and inside the gauge's range, and
    it goes through the gauge's alarm machine without raising."""
    from config.site_plan import load_site_plan
    from monitoring.alarms import GaugeMachine
    from monitoring.gauges import load_gauges
    from monitoring.payload import REASONS, Reading, Rejected, parse_batch, parse_mqtt

    gauges = load_gauges(load_site_plan(ROOT / "config/demo/yunfu.toml"))
    machines = {g.id: GaugeMachine(g, 1_800_000_000.0) for g in gauges}
    now = 1_800_000_100.0

    def judge(result: Reading | Rejected) -> None:
        if isinstance(result, Rejected):
            if result.reason not in REASONS:
                raise Finding(f"unknown rejection reason {result.reason!r}")
            return
        gauge = gauges.get(result.gauge_id)
        if gauge is None or not gauge.valid_range[0] <= result.value <= gauge.valid_range[1]:
            raise Finding(f"accepted an impossible reading {result}")
        machines[result.gauge_id].reading(result.value, result.at)
        machines[result.gauge_id].tick(result.at + 1.0)

    def run(data: bytes) -> None:
        if data[:1] == b"B":
            for r in parse_batch(data[1:], gauges, now):
                judge(r)
        else:
            judge(parse_mqtt("cc/gauges/gauge-luoding-river/reading", data, gauges, now))

    seeds = [b'{"value": 12.5}', b'{"value": 3, "at": "2027-01-15T08:00:00Z"}', b'{"value": 1, "at": 1800000000}',
             b'B{"readings": [{"gauge": "rain-luoding-luocheng", "value": 2.5}, {"gauge": "x", "value": 1}]}',
             b'{"value": NaN}', b'[1]']
    return Target("gauge_reading", run, (), seeds, 4096, "monitoring.payload.parse_mqtt / parse_batch")
def mqtt_client() -> Target:
    """What an MQTT broker sends the ingest (monitoring.mqtt_protocol.ClientConnection after its
    CONNECT): events or ProtocolError; fed in two pieces, it must give what it gives whole, and a
    PUBLISH it delivers has a topic without wildcards."""
    from monitoring.mqtt_protocol import ClientConnection, ProtocolError, Publish, encode_publish

    def fresh() -> ClientConnection:
        c = ClientConnection("fuzz", keepalive=30, max_packet=65536)
        c.connect(0.0)
        c.data_to_send()
        return c

    def run(data: bytes) -> None:
        whole = fresh()
        events = whole.receive_data(data)  # ProtocolError: refused
        cut = len(data) // 2
        split = fresh()
        try:
            pieces = split.receive_data(data[:cut]) + split.receive_data(data[cut:])
        except ProtocolError as exc:
            raise Finding(f"refused in two pieces what it took whole: {exc}") from None
        if pieces != events:
            raise Finding("a packet cut in two parsed differently")
        for e in events:
            if isinstance(e, Publish) and ("+" in e.topic or "#" in e.topic):
                raise Finding(f"delivered a PUBLISH to a wildcard topic {e.topic!r}")
        whole.data_to_send()

    seeds = [b"\x20\x02\x00\x00" + encode_publish("cc/gauges/a/reading", b'{"value": 1}', 1, 1),
             encode_publish("cc/gauges/batch", b'{"readings": []}', 2, 7) + b"\x62\x02\x00\x07",
             b"\x90\x04\x00\x01\x01\x80\xd0\x00\x40\x02\x00\x03"]
    return Target("mqtt_client", run, (ProtocolError,), seeds, 4096, "monitoring.mqtt_protocol.ClientConnection")


# ---------------------------------------------------------------------------- content and request to speak


def content() -> Target:
    """The content token, the raise-hand queue and the DTMF sequences (mcu.content) driven by what
    participants and room systems send: each byte is one request/release/grant/revoke/take/policy/
    media/tick/hand/digit from one of four sites; the rules of the token must hold after each."""
    import contextlib

    from mcu.content.hands import DtmfSequences, HandError, HandQueue
    from mcu.content.token import ContentToken, TokenError

    def run(data: bytes) -> None:
        token, hands, keys = ContentToken(policy="chair" if data[:1] == b"c" else "free"), HandQueue(8), DtmfSequences()
        now = 0.0
        for byte in data:
            who = "" if byte == 0xFF else ("s0", "s1", "s2", "s3")[byte >> 6]
            op = byte & 0x0F
            now += ((byte >> 4) & 3) * 0.7
            before = token.holder
            if op == 0:
                result = token.request(who, now)
                if not result.granted and token.holder != before:
                    raise Finding("a refused request changed the holder")
            elif op == 1:
                if token.release(who, now).reason == "not_holder" and token.holder != before:
                    raise Finding("a release by someone else changed the holder")
            elif op == 2:
                token.grant(who, now)
            elif op == 3:
                token.revoke(now)
            elif op == 4:
                token.take(who or "chair:x", now)
            elif op == 5:
                token.set_policy("chair" if byte & 0x10 else "free", now)
            elif op == 6:
                token.media(who, now)
            elif op == 7:
                token.tick(now)
                deadline = token.next_deadline()
                if deadline is not None and deadline <= now:
                    raise Finding("the token outlived its deadline")
            elif op == 8:
                token.forget(who, now)
            elif op == 9:
                hands.raise_hand(who, now)
            elif op == 10:
                with contextlib.suppress(HandError):  # approving a hand that is not up: refused
                    hands.approve(who)
            elif op == 11:
                hands.lower(who)
            else:
                keys.feed(who or "s3", chr(byte), now)
            ids = [r[0] for r in token.requests]
            if len(ids) != len(set(ids)) or (token.holder is not None and token.holder in ids):
                raise Finding(f"the request queue is inconsistent: {ids} holder {token.holder}")
            if [h.raised_at for h in hands.entries] != sorted(h.raised_at for h in hands.entries):
                raise Finding("raised hands out of order")

    seeds = [b"c\x00\x40\x82\x13\x46", b"\x00\x40\x01\x41\x07\x37\x37", b"*1*2#5*1", b"\x09\x49\x0a\x8a"]
    return Target("content", run, (TokenError, HandError), seeds, 512, "mcu.content token/hands/DTMF")


def cascade_content() -> Target:
    """The cascade's content-token messages (issue 18, mcu.cascade.content_tree) as a neighbour node
    sends them on the control channel: the JSON body is parsed, then fed to a county (between the
    city and a township) from its parent and from its child; only the root may change who holds the
    token, and a refused body is a TreeError, nothing else."""
    from mcu.cascade.content_tree import Holder, Request, TreeContent, TreeError, parse

    def run(data: bytes) -> None:
        try:
            body = json.loads(data)
        except (ValueError, RecursionError):
            return
        message = parse(body)
        county = TreeContent("county", "city", frozenset({"township"}))
        county.from_parent(Holder("township/site-7", ("city", "county", "township")), 0.0)
        city = TreeContent("city", None, frozenset({"county"}))
        city.from_child("county", Request("county/a", ("county",)), 0.0)
        county.from_parent(message, 1.0)
        county.from_child("township", message, 1.0)
        county.tick(20.0)
        city.from_child("county", message, 1.0)
        if city.holder not in ("county/a", None) or (city.holder is None and city.token.holder is not None):
            raise Finding(f"the root's view and its token disagree: {city.holder} / {city.token.holder}")

    bodies: list[dict[str, object]] = [
        {"kind": "request", "presenter": "township/site-7", "route": ["township"]},
        {"kind": "release", "presenter": "county/a", "route": ["county"]},
        {"kind": "decision", "presenter": "county/x", "granted": True, "reason": "", "route": ["county"]},
        {"kind": "holder", "presenter": "chair:zhang", "path": ["city"]},
        {"kind": "holder", "presenter": None, "path": []},
        {"kind": "holder", "presenter": None, "path": [], "queue": ["county/x", "township/site-7"]},
        {"kind": "decision", "presenter": "county/x", "granted": False, "reason": "awaiting_chair",
         "route": ["county"], "queued": True},
    ]
    seeds = [json.dumps(body).encode() for body in bodies]
    return Target("cascade_content", run, (TreeError,), seeds, 1024,
                  "mcu.cascade.content_tree.parse and the tree token's message handling")


def deck() -> Target:
    """The chair's slide deck (mcu.content.deck*): the magic-byte check of an upload, the display name
    taken from the client, and the pager driven by page actions; the PDF itself is poppler's, in a
    limited process (tests/mcu/test_content_deck.py)."""
    from mcu.content.deck import PAGE_ACTIONS, DeckPager, _display_name
    from mcu.content.deck_render import sniff

    def run(data: bytes) -> None:
        kind = sniff(data[:16])
        if kind is not None and not data.startswith((b"%PDF-", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")):
            raise Finding(f"sniff took {data[:8]!r} for {kind}")
        name = _display_name(data.decode("utf-8", "replace"))
        if not name or len(name) > 120 or any(not c.isprintable() for c in name):
            raise Finding(f"display name {name!r}")
        pager = DeckPager(1 + data[0] % 300 if data else 1)
        for byte in data[1:]:
            action = PAGE_ACTIONS[byte % len(PAGE_ACTIONS)]
            try:
                pager.move(action, byte >> 1)
            except ValueError:
                pass
            if not 0 <= pager.index < pager.pages:
                raise Finding(f"page {pager.index} of {pager.pages}")

    seeds = [b"%PDF-1.7\n%\xe2\xe3", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"\xff\xd8\xff\xe0\x00\x10JFIF",
             "汇报材料.pdf".encode(), b"\x02\x04\x09\x0e\x13"]
    return Target("deck", run, (), seeds, 512, "mcu.content.deck_render.sniff, deck pager and name")


# ---------------------------------------------------------------------------- config


def _config_dir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="fuzz-config-"))
    return d


def settings() -> Target:
    """The settings file loader (TOML + validation): ConfigError naming file/line/field."""
    import os
    import shutil

    from config.errors import ConfigError
    from config.settings import load_settings

    for key in [k for k in os.environ if k.startswith("CC_")]:
        del os.environ[key]
    d = _config_dir()
    path = d / "cc.toml"

    def run(data: bytes) -> None:
        path.write_bytes(data)
        load_settings(path)

    seeds = [
        b'node_name = "county-luoding"\n[http]\nport = 8443\n[emergency]\nnumbers = ["110", "119"]\n',
        b'[http]\nhost = "127.0.0.1"\nport = 8080\n[rtp]\nport_min = 20000\nport_max = 30000\n',
        b'[database]\npool_size = 10\n[sip]\nport = 5062\n[h323]\nport = 1720\n',
        b'[emergency.trunk]\nregistrar = "sip:operator.example:5060"\naor = "sip:110@operator.example"\n'
        b'password = "pa55-word-secret"\n[dispatch]\ntraining = false\n',
        b'[recorder]\nenabled = true\nretention_days = 30\n[recorder.s3]\nendpoint = "http://127.0.0.1:9000"\n'
        b'bucket = "rec"\n[cascade]\n[webrtc]\n',
    ]
    target = Target("settings", run, (ConfigError,), seeds, 4096, "config.settings.load_settings")
    target.cleanup.append(lambda: shutil.rmtree(d, ignore_errors=True))
    return target


def site_plan() -> Target:
    """The site plan loader (TOML + cross-checked validation): ConfigError naming the item."""
    import shutil

    from config.errors import ConfigError
    from config.settings import DEMO_DIR
    from config.site_plan import load_site_plan

    d = _config_dir()
    shutil.copy(DEMO_DIR / "yunfu_counties.geojson", d / "yunfu_counties.geojson")
    path = d / "plan.toml"

    def run(data: bytes) -> None:
        path.write_bytes(data)
        load_site_plan(path)

    text = (DEMO_DIR / "yunfu.toml").read_bytes()
    seeds = [text]
    # Smaller plans: the demo plan cut after each top-level table, so mutations reach every part.
    lines = text.split(b"\n")
    for n in range(40, len(lines), max(1, len(lines) // 12)):
        seeds.append(b"\n".join(lines[:n]))
    target = Target("site_plan", run, (ConfigError,), seeds, 32768, "config.site_plan.load_site_plan")
    target.cleanup.append(lambda: shutil.rmtree(d, ignore_errors=True))
    return target


# ---------------------------------------------------------------------------- recorder


def verify_export() -> Target:
    """`commandcenter verify-export` on damaged copies of a real export bundle (zip, as
    downloaded from /api/inspect/exports). The input bytes choose the damage; see bundle.py."""
    from security.fuzz.bundle import BundleFuzzer

    fuzzer = BundleFuzzer.create()
    target = Target("verify_export", fuzzer.run, (), fuzzer.seeds(), 512,
                    "recorder.verify.verify_export on damaged bundles")
    target.cleanup.append(fuzzer.close)
    return target


def node_rpc() -> Target:
    """A node RPC request row and reply as another node (or anyone who can write rows) stores them
    (noderpc.envelope): EnvelopeError or a checked message; a forged one must never verify."""
    from noderpc.envelope import EnvelopeError, check_reply, check_request, parse_reply, parse_request

    secret = b"fuzz-node-secret-0123456789abcdef"

    def run(data: bytes) -> None:
        try:
            value = json.loads(data.decode("utf-8", "replace"))
        except ValueError:
            return
        row = value if isinstance(value, dict) else {"args": value}
        try:
            request = parse_request(row)
            check_request(secret, request, str(row.get("signature", "")), "mcu/1", 1000.0)
            raise Finding("a request without a valid signature verified")
        except EnvelopeError:
            pass
        try:
            reply = parse_reply(str(row.get("id", "")), row.get("reply", value))
            check_reply(secret, reply, row.get("reply_signature") if isinstance(row.get("reply_signature"), str)
                        else None)
            raise Finding("a reply without a valid signature verified")
        except EnvelopeError:
            pass

    seeds = [json.dumps({"id": "r1", "idempotency_key": "k1", "sender": "web/1", "target": "mcu/1",
                         "method": "room.operate", "args": {"conference_id": "80000001",
                                                            "op": {"op": "mute", "site": "a"}},
                         "deadline": 1005.0, "signature": "00" * 32}).encode(),
             json.dumps({"id": "r1", "reply": {"ok": True, "result": {"layout": "2"}, "error": "", "message": "",
                                               "status": 200}, "reply_signature": "ab" * 32}).encode()]
    return Target("node_rpc", run, (), seeds, 4096, "noderpc.envelope.parse_request/check_request/parse_reply")


def hls_names() -> Target:
    """What /hls/<conference>/<name> and watch links accept (mcu.streaming.names): a file name is
    one of the three forms or nothing (never a path), a token never verifies without the secret."""
    from mcu.streaming.names import check_token, file_kind, token_expiry

    secret = b"fuzz-watch-secret-0123456789abcdef"

    def run(data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        name, _, token = text.partition("|")
        kind = file_kind(name, "0123abcd")
        if kind is not None and ("/" in name or "\\" in name or ".." in name or "\0" in name or len(name) > 64):
            raise Finding(f"file_kind accepted {name!r} as {kind}")
        token_expiry(token)
        if check_token(secret, "80000001", token, 1000.0):
            raise Finding("a token made without the secret verified")

    seeds = [b"index.m3u8|2000.0123456789abcdef0123456789abcdef", b"0123abcd_init.mp4|", b"0123abcd_17.m4s|1.a",
             b"../0123abcd_1.m4s|", b"0123abcd_1.m4s\x00|99999999999.ff"]
    return Target("hls_names", run, (), seeds, 256, "mcu.streaming.names.file_kind/check_token")


def llhls_query() -> Target:
    """The LL-HLS blocking-reload query of a playlist request (``_HLS_msn``/``_HLS_part``/``_HLS_skip``,
    mcu.streaming.llhls.parse_query) and the part names (names.parse_name), against a live playlist:
    a request either parses or raises BadRequest; what parsed is ready, wait or bad, never an
    exception; one more than two segments past the live edge is always bad (never a wait)."""
    from urllib.parse import parse_qsl

    from mcu.streaming.llhls import BadRequest, LivePlaylist, parse_query
    from mcu.streaming.names import parse_name

    playlist = LivePlaylist("0123abcd", target_duration=3, part_target=0.4, window=3)
    for i in range(20):
        playlist.add_part(b"x", 0.3, independent=i % 7 == 0, starts_segment=i % 7 == 0, date=1000.0 + 0.3 * i,
                          now=1000.0 + 0.3 * i)
    current = playlist.segments[-1].msn

    def run(data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        query, _, name = text.partition("#")
        parsed = parse_name(name, "0123abcd")
        if parsed is not None and parsed[0] == "part":
            playlist.part(parsed[1], parsed[2])
        request = parse_query(parse_qsl(query, keep_blank_values=True))
        if request is None:
            return
        state = playlist.check(request)
        if request.msn > current + 2 and state != "bad":
            raise Finding(f"{request} past the live edge answered {state}")
        playlist.render()

    seeds = [b"_HLS_msn=2&_HLS_part=1#0123abcd_2.1.m4s", b"_HLS_msn=99&_HLS_part=0", b"_HLS_part=3",
             b"_HLS_msn=-1", b"_HLS_msn=1e3", b"_HLS_msn=1&_HLS_msn=2", b"_HLS_msn=1&_HLS_skip=YES",
             b"_HLS_msn=%EF%BC%91", b"_HLS_msn=0&_HLS_part=999999999999999"]
    return Target("llhls_query", run, (BadRequest,), seeds, 256, "mcu.streaming.llhls.parse_query/check")


# ---------------------------------------------------------------------------- SMS (issue 20)


def sms_dlr() -> Target:
    """Kannel's delivery-report request head (sms/dlr.py parse_request) and the SMS text planner:
    DlrError / TextError, or a report / a plan whose parts join back to the text."""
    from sms.dlr import DlrError, dlr_url, parse_request
    from sms.gateway_status import StatusError, parse_status
    from sms.text import TextError, plan

    key = b"fuzz-key" * 4

    def run(data: bytes) -> object:
        if data[:1] == b"S":  # Kannel's status.xml as the SMS console reads it
            try:
                return parse_status(data[1:].decode("utf-8", "replace"))
            except StatusError:
                return None
        if data[:1] == b"T":
            try:
                p = plan(data[1:].decode("utf-8", "replace"))
            except TextError:
                return None
            if "".join(p.parts) != data[1:].decode("utf-8", "replace"):
                raise Finding("parts do not join back to the text")
            return p
        return parse_request(data, key)

    url = dlr_url("", key, 42).replace("%d", "1").replace("%A", "ACK%2F")
    seeds = [f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode(),
             b"GET /dlr?r=1&t=8&k=00 HTTP/1.0\r\n\r\n", "T各县区三防指挥部：请立即启动应急响应".encode(),
             b"T" + b"a" * 200 + "€".encode(),
             b"S<gateway><status>running, uptime 0d</status><sms><sent><queued>3</queued></sent>"
             b"<storesize>1</storesize></sms><smscs><smsc><status>online 1s</status><queued>2</queued></smsc>"
             b"</smscs></gateway>"]
    return Target("sms_dlr", run, (DlrError,), seeds, 8192,
                  "sms.dlr.parse_request, sms.text.plan, sms.gateway_status.parse_status")


# ---------------------------------------------------------------------------- CAP received (issue 20, warnperf)


def cap_received() -> Target:
    """CAP from elsewhere (alerts.cap_schema.check_received): the OASIS CAP 1.2 XSD with lxml, then the
    structural rules; CapError, or the document is valid."""
    from alerts.cap_schema import check_received
    from dispatch.exchange.cap import CapError
    from tests.alerts.test_cap_schema import sent_xml

    seeds = [x.encode() for x in sent_xml()]
    seeds.append(seeds[0].replace(b"<status>Actual</status>", b"<status>Real</status>"))
    return Target("cap_received", check_received, (CapError,), seeds, 16384, "alerts.cap_schema.check_received")


BUILDERS: dict[str, Callable[[], Target]] = {
    "sip": sip,
    "sdp": sdp,
    "h225": h225,
    "h245": h245,
    "h239": h239,
    "bfcp": bfcp,  # BFCP for SIP room systems (issue 18)
    "ras": ras,
    "h224": h224,  # far-end camera control (issue 18)
    "rtp": rtp,
    "rtcp_feedback": rtcp_feedback,
    "ulpfec": ulpfec,  # FEC towards lossy lines (issue 16)
    "pidf_lo": pidf_lo,
    "aml": aml,
    "eido": eido,
    "gauge_reading": gauge_reading,
    "mqtt_client": mqtt_client,  # the ingest's own MQTT client (issue 20)
    "content": content,
    "deck": deck,  # the chair's slide deck (issue 18)
    "cascade_content": cascade_content,  # the content token across the cascade (issue 18)
    "settings": settings,
    "site_plan": site_plan,
    "verify_export": verify_export,
    "node_rpc": node_rpc,
    "hls_names": hls_names,  # live streaming (issue 18)
    "llhls_query": llhls_query,  # LL-HLS blocking reload (issue 18)
    "sms_dlr": sms_dlr,
    "cap_received": cap_received,  # CAP 1.2 XSD (issue 20)
}

NAMES = list(BUILDERS)


def build(name: str) -> Target:
    """Build one target (imports its parser)."""
    return BUILDERS[name]()
