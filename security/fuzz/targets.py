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
                                              tunnelling=tunnel), "80000001", MediaAddress("127.0.0.1", 1720),
                               {1: 20000, 2: 20002}, 0.0, random.Random(1))
        b = Call.incoming_call(EndpointConfig(h323_id="mcu", fast_start=fast, tunnelling=tunnel),
                               {1: 30000, 2: 30002}, random.Random(2))
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

    h245_config = EndpointConfig(h323_id="mcu").h245_config({1: 30000, 2: 30002})

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
    ]
    return Target("rtp", run, (), [s for s in seeds if s], 1500, "sip_gateway.rtp.session.RtpSession.receive")


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


BUILDERS: dict[str, Callable[[], Target]] = {
    "sip": sip,
    "sdp": sdp,
    "h225": h225,
    "h245": h245,
    "ras": ras,
    "rtp": rtp,
    "pidf_lo": pidf_lo,
    "aml": aml,
    "eido": eido,
    "settings": settings,
    "site_plan": site_plan,
    "verify_export": verify_export,
}

NAMES = list(BUILDERS)


def build(name: str) -> Target:
    """Build one target (imports its parser)."""
    return BUILDERS[name]()
