"""BFCP for a SIP room system end to end: SIPp (a real SIP peer) dials a conference offering slides and a
BFCP stream; our answer (checked by SIPp) makes the MCU the floor control server; a BFCP client on the
answered port/confid/userid takes the conference's content token, meets the chair, is refused while the
chair holds it, releases; garbage gets an Error. tshark judges the SIP/SDP and every BFCP message.

No Debian package ships a BFCP-capable SIP endpoint (bookworm's baresip has no ``bfcp`` module; pjsua2
has none), so the BFCP side is our own small client (tests/sip_gateway/bfcp_client.py) and tshark's
dissector is the independent judge of the wire format.
"""
from __future__ import annotations

import asyncio
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc import RTCConfiguration

from config.settings import SipSettings
from core.runtime import CoreServices
from mcu.capability import start_floors
from mcu.conferences import ConferenceService
from mcu.content.service import ContentService
from mcu.legs.sip_bridge import SipBridge
from mcu.legs.sip_config import user_agent_config
from sip_gateway.aio.ports import RTP_PORT_RANGE
from sip_gateway.aio.rtp_leg import MediaLeg
from sip_gateway.aio.sip_endpoint import SipEndpoint
from sip_gateway.bfcp.message import AttributeType, ErrorCode, Primitive, RequestStatus, u16
from sip_gateway.rtp.media_description import Codec, MediaStream
from sip_gateway.sip.sdp import Media
from tests.conftest import free_port
from tests.sip_gateway.bfcp_client import BfcpClient, Capture, UdpBfcpClient, error_code_of, request_status_of
from tests.sip_gateway.conference_helpers import joined, until
from tests.sip_gateway.sip_testlib import _read_and_remove as read_and_remove
from tests.sip_gateway.sip_testlib import free_port as udp_port
from tests.sip_gateway.sip_testlib import run_sipp

CID = "80000093"


class _Collect:
    def __init__(self, frames: list[av.VideoFrame]) -> None:
        self.frames = frames

    def on_audio(self, leg: MediaLeg, pcm: object) -> None:
        pass

    def on_video(self, leg: MediaLeg, frame: av.VideoFrame) -> None:
        self.frames.append(frame)

    def on_dtmf(self, leg: MediaLeg, digit: str) -> None:
        pass

    def on_keyframe_request(self, leg: MediaLeg) -> None:
        pass


async def _slides_sender(port: int, answered: Media, frames: list[av.VideoFrame] | None = None) -> MediaLeg:
    """A room's slides stream (our RTP stack: SIPp sends no video) towards our answered slides port;
    what it receives is decoded into ``frames``."""
    pt = int(answered.formats[0])
    name, clock, _ = answered.rtpmap()[pt]
    codec = Codec(name, pt, clock, 1, answered.fmtp().get(pt, ""))
    leg = await MediaLeg.allocate("127.0.0.1", video=True, sink=_Collect(frames if frames is not None else []))
    assert leg.video is not None
    mux = answered.attr("rtcp-mux") is not None
    leg.start([MediaStream("video", 0, leg.video.port, "127.0.0.1", port, port if mux else port + 1, codec,
                           "sendrecv", mux)])
    return leg


def _slide(n: int) -> av.VideoFrame:
    """A 640x360 slide: left half red, right half blue."""
    picture = np.zeros((360, 640, 3), dtype=np.uint8)
    picture[:, :320] = (220, 20, 20)
    picture[:, 320:] = (20, 20, 220)
    frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
    frame.pts, frame.time_base = n * 9000, Fraction(1, 90000)
    return frame


async def test_sip_room_takes_the_floor_over_bfcp(services: CoreServices, conferences: ConferenceService,
                                                 tmp_path: Path, artifacts_dir: Path) -> None:
    assert shutil.which("sipp"), "sipp missing (Debian sip-tester, in TEST_DEBS)"
    content = ContentService(conferences, RTCConfiguration())
    await content.start()
    bfcp_port = free_port()
    floors = await start_floors("127.0.0.1", RTP_PORT_RANGE, content, listen_range=(bfcp_port, bfcp_port))
    assert floors is not None and floors.listener.port == bfcp_port
    sip = SipSettings(udp_port=0)
    endpoint = SipEndpoint(user_agent_config(sip))
    bridge = SipBridge(services, conferences, endpoint, sip, floors=floors)
    await endpoint.start()
    sip_port = endpoint.config.port
    await conferences.create(name="BFCP 测试", actor="test", guests=True, conference_id=CID)
    conf = await conferences.start_conference(CID, actor="test")
    state = content.of(conf)
    sipp: asyncio.Task[tuple[int, str]] | None = None
    sipp_b: asyncio.Task[tuple[int, str]] | None = None
    try:
        async with Capture(bfcp_port, tmp_path / "bfcp_sip.pcapng") as capture:
            sipp = asyncio.ensure_future(run_sipp("bfcp_call.xml", sip_port, CID, limit=40, extra=("-aa",)))
            await until(lambda: len(joined(conf)) == 1 or sipp.done(), 30, "SIPp to join")
            site_id = joined(conf)[0]
            site = next(s for s in bridge.gateway.sites.values() if s.site_id == site_id)
            # a second room (B) that only watches: it gets the content on its own slides stream
            sipp_b = asyncio.ensure_future(run_sipp("bfcp_call.xml", sip_port, CID, limit=50, extra=("-aa",)))
            await until(lambda: len(joined(conf)) == 2 or sipp_b.done(), 30, "the second SIPp to join")
            site_b = next(s for s in bridge.gateway.sites.values() if s.site_id and s.site_id != site_id)
            assert site_b.call.local_sdp is not None
            slides_b = site_b.call.local_sdp.media[2]
            watched: list[av.VideoFrame] = []
            watcher = await _slides_sender(slides_b.port, slides_b, watched)
            await watcher.send_video(_slide(0), keyframe=True)  # B's first packet: our leg answers to it
            assert site.call.local_sdp is not None
            answer = site.call.local_sdp
            kinds = [(m.kind, m.port != 0) for m in answer.media]
            assert kinds == [("audio", True), ("video", True), ("video", True), ("application", True)], kinds
            slides = answer.media[2]
            assert slides.attr("content") == "slides" and slides.attr("label") == "2"
            assert slides.port not in (answer.media[1].port, 0)
            bfcp = answer.media[3]
            assert bfcp.proto == "TCP/BFCP" and bfcp.port == bfcp_port and bfcp.attr("floorctrl") == "s-only"
            assert bfcp.attr("confid") == CID and bfcp.attr("floorid") == "1 mstrm:2"
            user_id = int(bfcp.attr("userid") or 0)

            client = await BfcpClient.connect("127.0.0.1", bfcp_port, int(CID), user_id)
            assert (await client.request(Primitive.HELLO)).primitive == Primitive.HELLO_ACK
            subscribed = await client.request(Primitive.FLOOR_QUERY, u16(AttributeType.FLOOR_ID, 1))
            assert subscribed.primitive == Primitive.FLOOR_STATUS
            rid, status = await client.floor_request(1)
            assert status == RequestStatus.GRANTED
            assert state.token.holder == site_id and state.state()["holder_name"] == site.name
            assert (await client.receive()).primitive == Primitive.FLOOR_STATUS
            # the room sends its slides on the slides stream: they become the conference's content picture
            sender = await _slides_sender(slides.port, slides)
            try:
                for n in range(40):
                    await sender.send_video(_slide(n), keyframe=n % 10 == 0)
                    if state.source.sample() is not None and n >= 5:
                        break
                    await asyncio.sleep(0.1)
                sample = state.source.sample()
                assert sample is not None and state.state()["live"], "the slides never became the content"
                picture = sample.frame.to_ndarray(format="rgb24")
                height, width, _ = picture.shape
                left = picture[height // 4: 3 * height // 4, width // 8: 3 * width // 8].mean(axis=(0, 1))
                right = picture[height // 4: 3 * height // 4, 5 * width // 8: 7 * width // 8].mean(axis=(0, 1))
                assert left[0] > 150 and left[2] < 80, left  # red half
                assert right[2] > 150 and right[0] < 80, right  # blue half
                # ... and room B receives them from the shared content encoder on its slides stream
                for n in range(40, 200):
                    if watched:
                        break
                    await sender.send_video(_slide(n), keyframe=n % 10 == 0)
                    await asyncio.sleep(0.1)
                assert watched, "room B never received the content on its slides stream"
                seen = watched[-1].to_ndarray(format="rgb24")
                h, w, _ = seen.shape
                assert (w, h) == (1280, 720)  # the content encoder at the size level 3.1 decodes
                left = seen[h // 4: 3 * h // 4, w // 8: 3 * w // 8].mean(axis=(0, 1))
                right = seen[h // 4: 3 * h // 4, 5 * w // 8: 7 * w // 8].mean(axis=(0, 1))
                assert left[0] > 150 and left[2] < 80, left
                assert right[2] > 150 and right[0] < 80, right
                assert site_b.site_id in conf.room.content_receivers
            finally:
                await sender.close()
                await watcher.close()
            # the chair takes the token for a deck: the site is told Revoked (a notification, transaction 0)
            state.take("lead")
            revoked = await client.receive()
            assert revoked.transaction_id == 0 and request_status_of(revoked) == (rid, RequestStatus.REVOKED)
            assert (await client.receive()).primitive == Primitive.FLOOR_STATUS
            # a second request while the chair presents: Denied, the chair keeps it
            _, status = await client.floor_request(1)
            assert status == RequestStatus.DENIED and state.token.holder == "chair:lead"
            # garbage: an Error, and nothing changes
            await client.send_raw(bytes.fromhex("20010001") + int(CID).to_bytes(4, "big") + b"\x00\x63"
                                  + user_id.to_bytes(2, "big") + bytes.fromhex("04ff0004"))
            assert error_code_of(await client.receive()) == ErrorCode.UNABLE_TO_PARSE
            assert state.token.holder == "chair:lead"
            state.revoke()
            assert (await client.receive()).primitive == Primitive.FLOOR_STATUS
            rid, status = await client.floor_request(1)
            assert status == RequestStatus.GRANTED and state.token.holder == site_id
            assert not sipp.done(), sipp.result()[1][-3000:]
            await client.receive()  # FloorStatus
            released = await client.request(Primitive.FLOOR_RELEASE, u16(AttributeType.FLOOR_REQUEST_ID, rid))
            assert request_status_of(released) == (rid, RequestStatus.RELEASED) and state.token.holder is None
            # the room hangs up: its BFCP client is gone and its connection closed
            code, output = await sipp
            assert code == 0, output[-3000:]
            code, output = await sipp_b
            assert code == 0, output[-3000:]
            await until(lambda: not joined(conf), 20, "the sites to leave")
            await asyncio.wait_for(client.reader.read(), 5)  # what is left (FloorStatus), then EOF
            assert client.reader.at_eof()
            assert int(CID) not in floors.listener.servers  # both rooms left: the conference's server is gone
            await client.close()
    finally:
        for task in (sipp, sipp_b):
            if task is not None and not task.done():
                task.cancel()
        await bridge.stop()
        await content.stop()
    shutil.copy(capture.path, artifacts_dir / "bfcp_sip.pcapng")
    rows = await capture.fields("bfcp", "tcp.srcport", "bfcp.primitive", "bfcp.request_status", "bfcp.error_code")
    ours = [r for r in rows if r[0] == str(bfcp_port)]
    statuses = {int(s) for r in ours for s in r[2].split(",") if s}
    assert {RequestStatus.GRANTED, RequestStatus.REVOKED, RequestStatus.DENIED, RequestStatus.RELEASED} <= statuses
    assert {int(e) for r in ours for e in r[3].split(",") if e} == {ErrorCode.UNABLE_TO_PARSE}
    bad = await capture.fields("(_ws.malformed || _ws.expert.severity >= error) && !(bfcp.transaction_id == 99)",
                               "frame.number")
    assert bad == [], bad


@pytest.mark.slow
async def test_sip_room_takes_the_floor_over_udp_bfcp(services: CoreServices, conferences: ConferenceService,
                                                     tmp_path: Path) -> None:
    """SIPp offers ``UDP/BFCP``: the answer is UDP/BFCP on the listener's port (a=bfcpver:2, no a=setup);
    a UDP client on it takes the token, is told Revoked when the chair takes it (and acknowledges), and
    is forgotten when the call ends. tshark judges the datagrams (version octet checked by the test)."""
    assert shutil.which("sipp"), "sipp missing (Debian sip-tester, in TEST_DEBS)"
    content = ContentService(conferences, RTCConfiguration())
    await content.start()
    bfcp_port = free_port()
    floors = await start_floors("127.0.0.1", RTP_PORT_RANGE, content, listen_range=(bfcp_port, bfcp_port))
    assert floors is not None
    sip = SipSettings(udp_port=0)
    endpoint = SipEndpoint(user_agent_config(sip))
    bridge = SipBridge(services, conferences, endpoint, sip, floors=floors)
    await endpoint.start()
    cid = "80000094"
    await conferences.create(name="BFCP UDP 测试", actor="test", guests=True, conference_id=cid)
    conf = await conferences.start_conference(cid, actor="test")
    state = content.of(conf)
    sipp: asyncio.Task[tuple[int, str]] | None = None
    try:
        async with Capture(bfcp_port, tmp_path / "bfcp_sip_udp.pcap", "udp") as capture:
            sipp = asyncio.ensure_future(run_sipp("bfcp_udp_call.xml", endpoint.config.port, cid, limit=30,
                                                  extra=("-aa",)))
            await until(lambda: len(joined(conf)) == 1 or sipp.done(), 30, "SIPp to join")
            assert not sipp.done(), sipp.result()[1][-3000:]
            site_id = joined(conf)[0]
            site = next(s for s in bridge.gateway.sites.values() if s.site_id == site_id)
            assert site.call.local_sdp is not None
            bfcp = site.call.local_sdp.media[3]
            assert (bfcp.proto, bfcp.port, bfcp.attr("bfcpver"), bfcp.attr("setup")) == \
                ("UDP/BFCP", bfcp_port, "2", None)
            assert bfcp.attr("floorctrl") == "s-only" and bfcp.attr("confid") == cid
            client = await UdpBfcpClient.connect("127.0.0.1", bfcp_port, int(cid), int(bfcp.attr("userid") or 0))
            assert (await client.request(Primitive.HELLO)).primitive == Primitive.HELLO_ACK
            rid, status = await client.floor_request(1)
            assert status == RequestStatus.GRANTED and state.token.holder == site_id
            state.take("lead")
            revoked = await client.receive()
            assert not revoked.responder and revoked.transaction_id != 0
            assert request_status_of(revoked) == (rid, RequestStatus.REVOKED)
            await until(lambda: not floors.listener.udp.pending, 5, "the acknowledgement")
            code, output = await sipp
            assert code == 0, output[-3000:]
            await until(lambda: not joined(conf), 20, "the site to leave")
            assert floors.listener.udp.addresses == {}
            client.close()
    finally:
        if sipp is not None and not sipp.done():
            sipp.cancel()
        await bridge.stop()
        await content.stop()
    assert {p[0] for src, p in capture.udp_payloads() if src == bfcp_port} == {0x40, 0x50}
    rows = await capture.fields("bfcp", "udp.srcport", "bfcp.primitive", "bfcp.request_status")
    statuses = {int(s) for r in rows if r[0] == str(bfcp_port) for s in r[2].split(",") if s}
    assert {RequestStatus.GRANTED, RequestStatus.REVOKED} <= statuses
    assert await capture.fields("_ws.malformed || _ws.expert.severity >= error", "frame.number") == []


async def _sipp_uas(scenario: str, port: int) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(Path(__file__).parent / "sipp" / scenario), "-i", "127.0.0.1", "-p", str(port),
        "-m", "1", "-aa", "-nostdin", "-timeout", "40s", "-timeout_error", "-trace_err",
        "-error_file", f"/tmp/sipp-{scenario}-{port}.err", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, cwd="/tmp")
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 50)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -1, "timeout"
    return proc.returncode or 0, out.decode(errors="replace") + read_and_remove(Path(f"/tmp/sipp-{scenario}-{port}.err"))


async def test_dial_out_offers_bfcp_and_slides(services: CoreServices, conferences: ConferenceService) -> None:
    """The MCU dials a room system: its offer carries the slides stream and a BFCP stream (checked by
    SIPp). A room that takes BFCP (a=setup:active) connects and takes the token; a room that answers
    BFCP with port 0 is an ordinary site whose BFCP client and slides leg are gone."""
    assert shutil.which("sipp"), "sipp missing (Debian sip-tester, in TEST_DEBS)"
    content = ContentService(conferences, RTCConfiguration())
    await content.start()
    bfcp_port = free_port()
    floors = await start_floors("127.0.0.1", RTP_PORT_RANGE, content, listen_range=(bfcp_port, bfcp_port))
    assert floors is not None
    sip = SipSettings(udp_port=0, content_on_dial_out=True)
    endpoint = SipEndpoint(user_agent_config(sip))
    bridge = SipBridge(services, conferences, endpoint, sip, floors=floors)
    await endpoint.start()
    cid = "80000095"
    await conferences.create(name="BFCP 呼出", actor="test", guests=True, conference_id=cid)
    conf = await conferences.start_conference(cid, actor="test")
    state = content.of(conf)
    room: asyncio.Future[tuple[int, str]] | None = None
    try:
        port = udp_port()
        room = first = asyncio.ensure_future(_sipp_uas("bfcp_uas.xml", port))
        await asyncio.sleep(0.5)
        await bridge.invite(cid, uri=f"sip:room@127.0.0.1:{port}")
        await until(lambda: len(joined(conf)) == 1 or first.done(), 20, "the room to answer")
        assert not room.done(), room.result()[1][-3000:]
        site_id = joined(conf)[0]
        site = next(s for s in bridge.gateway.sites.values() if s.site_id == site_id)
        offer = site.call.local_sdp
        assert offer is not None
        kinds = [(m.kind, m.proto) for m in offer.media]
        assert kinds[-2:] == [("video", "RTP/AVP"), ("application", "TCP/BFCP")], kinds
        slides, bfcp = offer.media[-2:]
        assert slides.attr("content") == "slides" and slides.attr("label") == "2" and slides.port
        assert (bfcp.port, bfcp.attr("setup"), bfcp.attr("confid"), bfcp.attr("floorid")) == \
            (bfcp_port, "actpass", cid, "1 mstrm:2")
        client = await BfcpClient.connect("127.0.0.1", bfcp_port, int(cid), int(bfcp.attr("userid") or 0))
        assert (await client.request(Primitive.HELLO)).primitive == Primitive.HELLO_ACK
        _, status = await client.floor_request(1)
        assert status == RequestStatus.GRANTED and state.token.holder == site_id
        site.hangup()
        code, output = await room
        assert code == 0, output[-3000:]
        await until(lambda: not joined(conf), 20, "the room to leave")
        assert state.token.holder is None  # its floor went with its call
        await client.close()

        port = udp_port()
        room = second = asyncio.ensure_future(_sipp_uas("plain_uas.xml", port))
        await asyncio.sleep(0.5)
        await bridge.invite(cid, uri=f"sip:plain@127.0.0.1:{port}")
        await until(lambda: len(joined(conf)) == 1 or second.done(), 20, "the plain room to answer")
        assert not room.done(), room.result()[1][-3000:]
        plain = next(s for s in bridge.gateway.sites.values() if s.site_id == joined(conf)[0])
        await until(lambda: plain.call.key not in floors._clients, 5, "the BFCP client to go")
        assert int(cid) not in floors.listener.servers or not floors.listener.servers[int(cid)].clients
        plain.hangup()
        code, output = await room
        assert code == 0, output[-3000:]
    finally:
        if room is not None and not room.done():
            room.cancel()
        await bridge.stop()
        await content.stop()
