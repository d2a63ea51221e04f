"""Content through an SRTP cascade link (issue 18): city ← 罗定, two real ``--role mcu`` nodes
(`commandcenter.node.start_node`) in this process on 127.0.0.1 with ``[sip] srtp = "required"``.
The county's link call offers its slides stream as RTP/SAVP with keys of its own (SDES); the city
presents and the county decodes the city's slide from it. tshark captures the county's slides port:
every datagram the city sent there is SRTP (it authenticates with the stream's negotiated key,
and its payload is no plain H.264).
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pylibsrtp
import pytest

from sip_gateway.aio.rtp_leg import SRTP_PROFILES
from sip_gateway.bfcp.sdp import is_slides
from tests.cascade.content_nodes import (
    CITY_SLIDE,
    CONF,
    TOKEN,
    Site,
    eventually,
    media_state,
    present,
    running_nodes,
    shows,
    write_plan,
)
from tests.conftest import free_port
from tests.sip_gateway.bfcp_client import Capture

pytestmark = pytest.mark.slow

NAMES = ("city", "luoding")


def plan_of(tmp_path: Path, sip: dict[str, int], control: dict[str, int]) -> Path:
    spare = free_port()  # nothing answers there: the telecom bridge is not part of this test
    return write_plan(tmp_path, f'''
[[nodes]]
name = "city"
area = "445300"
sip = "127.0.0.1:{sip["city"]}"
control = "127.0.0.1:{control["city"]}"

[[nodes]]
name = "luoding"
parent = "city"
area = "445381"
sip = "127.0.0.1:{sip["luoding"]}"
control = "127.0.0.1:{control["luoding"]}"
backup = "sip:91{{conference}}@127.0.0.1:{spare}"

[[conferences]]
id = "{CONF}"
name = "级联内容共享测试"
guests = true
nodes = ["city", "luoding"]
''')


@pytest.fixture
async def pair(pg_url: str, tmp_path: Path) -> AsyncIterator[dict[str, Site]]:
    sip = {n: free_port() for n in NAMES}
    plan = plan_of(tmp_path, sip, {n: free_port() for n in NAMES})
    cascade = {"token": TOKEN, "rtp_timeout_seconds": 3.0, "options_interval_seconds": 0.5,
               "dial_timeout_seconds": 5.0, "control_timeout_seconds": 3.0, "retry_interval_seconds": 1.0}
    async with running_nodes(pg_url, tmp_path, plan, sip, cascade, srtp="required") as sites:
        yield sites


def linked(sites: dict[str, Site]) -> str:
    """'' once both nodes' channels, content trees and the link's slides streams are up."""
    for site in sites.values():
        control, cascade = site.node.cascade_control, site.node.cascade
        if control is None or not all(control.channels().values()) or site.tree is None:
            return f"{site.name}: channels {control.channels() if control else None}, tree {site.tree}"
        links = cascade.content.status() if cascade is not None and cascade.content is not None else []
        if len(links) != 1 or not all(link["started"] for link in links):
            return f"{site.name}: slides streams {links}; uplinks {cascade.status(CONF) if cascade else None}"
    return ""


def plain_h264(payload: bytes) -> bool:
    """An RTP payload that reads as H.264 (RFC 6184): forbidden bit clear, a NAL type 1–24 or FU-A 28
    whose fragment's own type is 1–23."""
    if not payload or payload[0] & 0x80:
        return False
    kind = payload[0] & 0x1F
    if kind == 28:
        return len(payload) > 1 and 1 <= payload[1] & 0x1F <= 23
    return 1 <= kind <= 24


async def test_the_county_decodes_the_citys_slides_over_an_srtp_link(pair: dict[str, Site], tmp_path: Path,
                                                                     artifacts_dir: Path) -> None:
    city, county = pair["city"], pair["luoding"]
    await eventually(lambda: not linked(pair), 45, "the SRTP link up with its slides stream", lambda: linked(pair))
    assert county.node.sip is not None and county.node.cascade is not None
    assert county.node.cascade.content is not None
    # the link call: every m-line SRTP, the slides one with a key of its own
    call = county.node.sip.sites[(CONF, "cascade-city")].call
    assert call.local_sdp is not None and call.remote_answer is not None
    ours = [m for m in call.local_sdp.media if m.port]
    theirs = [m for m in call.remote_answer.media if m.port]
    assert all(m.proto == "RTP/SAVP" and m.attrs("crypto") for m in ours + theirs), call.local_sdp
    offered = next(m for m in ours if is_slides(m))
    answered = next(m for m in theirs if is_slides(m))
    keys = {m.attrs("crypto")[0] for m in ours} | {m.attrs("crypto")[0] for m in theirs}
    assert len(keys) == len(ours) + len(theirs)  # no key shared between streams or directions
    link = next(iter(county.node.cascade.content.links.values()))
    assert link.leg.video is not None and offered.port == link.leg.video.port
    assert link.started and link.leg.video.session is not None  # (a re-INVITE's streams no longer list it)
    stream = link.leg.video.session.stream
    assert stream.srtp is not None and stream.remote_port == answered.port and link.leg.video.srtp_in is not None

    await city.conf.join("city-main", "云浮市主会场", "webrtc", chair=True)
    await county.conf.join("luoding-room", "罗定市会议室", "webrtc")
    frames: list[asyncio.Task[None]] = []
    try:
        async with Capture(offered.port, tmp_path / "srtp_slides.pcap", "udp") as capture:
            await present(city, "city-main", CITY_SLIDE, frames)
            await eventually(lambda: county.content.holder == "city-main", 5, "the county learnt the holder")
            assert county.content.feed == "cascade:city"
            await eventually(lambda: shows(county.content, CITY_SLIDE), 45,
                             "the city's slide decoded at the county over SRTP", lambda: media_state(pair))
            await asyncio.sleep(2.0)  # a few more frames on the wire for the checks below
    finally:
        for task in frames:
            task.cancel()
    (artifacts_dir / "srtp_slides.pcap").write_bytes(capture.path.read_bytes())

    # what the city sent to the county's slides port: SRTP and SRTCP, every one authenticated with the
    # city's key of that stream (a plain RTP packet has no valid auth tag); none is plain H.264
    policy = pylibsrtp.Policy(key=stream.srtp.remote_key, srtp_profile=SRTP_PROFILES[stream.srtp.suite],
                              ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND)
    session = pylibsrtp.Session(policy=policy)
    sent = [p for src, p in capture.udp_payloads() if src == answered.port]
    rtp = [p for p in sent if not 192 <= p[1] <= 223]
    assert len(rtp) >= 5, f"{len(sent)} datagrams from the city's slides port"
    plain = [session.unprotect(p) for p in rtp]  # raises pylibsrtp.Error on any packet that is not SRTP
    for p in sent:
        if 192 <= p[1] <= 223:
            session.unprotect_rtcp(p)
    assert all(plain_h264(p[12:]) for p in plain)  # the clear payloads are H.264 ...
    assert all(wire[12:len(clear)] != clear[12:] for wire, clear in zip(rtp, plain, strict=True))  # ... not the wire's
    # tshark reads them as RTP headers (decode-as) on the slides port: version 2, the negotiated
    # payload type; and as nothing else
    proc = await asyncio.create_subprocess_exec(
        "tshark", "-r", str(capture.path), "-d", f"udp.port=={offered.port},rtp", "-Y",
        f"udp.srcport=={answered.port} && rtp", "-T", "fields", "-e", "rtp.version", "-e", "rtp.p_type",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    rows = [line.split("\t") for line in out.decode().splitlines() if line]
    assert len(rows) >= len(rtp), rows[:5]
    assert {r[0] for r in rows} == {"2"} and str(stream.codec.payload_type) in {r[1] for r in rows}
