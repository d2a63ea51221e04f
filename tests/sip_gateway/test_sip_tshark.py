"""Wireshark's SIP dissector decodes a captured call (SIPp caller, our server) with no malformed packets."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from tests.sip_gateway.sip_testlib import run_sipp, start_test_endpoint

pytestmark = pytest.mark.skipif(
    shutil.which("tshark") is None or shutil.which("sipp") is None, reason="tshark/sipp missing"
)


async def _tshark(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "tshark", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return out.decode()


async def test_captured_call_has_no_malformed_sip(tmp_path: Path, artifacts_dir: Path) -> None:
    endpoint, _ = await start_test_endpoint(auth_algorithms=("MD5",))
    port = endpoint.config.port
    cap = tmp_path / "call.pcapng"
    capture = await asyncio.create_subprocess_exec(
        "tshark", "-i", "lo", "-f", f"port {port}", "-w", str(cap), "-q",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert capture.stderr is not None
        async with asyncio.timeout(20):
            while b"Capturing on" not in await capture.stderr.readline():
                pass
        await asyncio.sleep(1.0)  # dumpcap announces itself a moment before it really captures
        for scenario, service in (("auth_challenge.xml", "auth-1"), ("reinvite_hold.xml", "80000001"),
                                  ("session_timer_uac_refresh.xml", "80000001")):
            code, output = await run_sipp(scenario, port, service)
            assert code == 0, output[-2000:]
        await asyncio.sleep(0.5)
    finally:
        capture.terminate()
        await asyncio.wait_for(capture.wait(), 20)
        await endpoint.close()
    shutil.copy(cap, artifacts_dir / "sip_call.pcapng")
    decode = ("-d", f"udp.port=={port},sip")
    methods = await _tshark("-r", str(cap), *decode, "-Y", "sip", "-T", "fields", "-e", "sip.Method",
                            "-e", "sip.Status-Code")
    seen = {tok for line in methods.splitlines() for tok in line.split("\t") if tok}
    assert {"INVITE", "ACK", "BYE", "UPDATE", "401", "200"} <= seen, seen
    malformed = await _tshark("-r", str(cap), *decode, "-Y", "_ws.malformed || _ws.expert.severity >= error")
    assert malformed.strip() == "", malformed


@pytest.mark.slow
@pytest.mark.parametrize("mode", [0, 1])
@pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip missing")
async def test_captured_baresip_video_call(tmp_path: Path, artifacts_dir: Path, mode: int) -> None:
    """Full call with audio, H.264 video and RTCP: Wireshark finds nothing malformed in what we send,
    and our H.264 packets follow the negotiated packetization-mode."""
    from sip_gateway.rtp.media_description import MediaPolicy
    from sip_gateway.sip import events as ev
    from tests.sip_gateway.peers import Baresip, MediaUas

    uas = MediaUas(MediaPolicy(h264_modes=(mode,), video_codecs=("H264",)))
    await uas.start()
    cap = tmp_path / "video_call.pcapng"
    capture = await asyncio.create_subprocess_exec(
        "tshark", "-i", "lo", "-f", "udp", "-w", str(cap), "-q",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    bs = Baresip(tmp_path / "baresip")
    try:
        assert capture.stderr is not None
        async with asyncio.timeout(20):
            while b"Capturing on" not in await capture.stderr.readline():
                pass
        await asyncio.sleep(1.0)  # dumpcap announces itself a moment before it really captures
        await bs.start(f"/dial sip:80000001@127.0.0.1:{uas.endpoint.config.port}")
        await uas.endpoint.wait_for(ev.CallEstablished, 15)
        leg = next(iter(uas.legs.values()))
        assert leg.audio is not None and leg.video is not None
        ours = [uas.endpoint.config.port, leg.audio.port, leg.audio.port + 1, leg.video.port, leg.video.port + 1]
        call = next(iter(uas.endpoint.ua.calls.values()))
        video_pt = next(st.codec.payload_type for st in call.streams if st.kind == "video")
        await bs.wait_log(r"video: receiving with resolution", 15)
        await asyncio.sleep(4)  # long enough for RTCP reports
    finally:
        await bs.stop()
        await asyncio.sleep(0.5)
        capture.terminate()
        await asyncio.wait_for(capture.wait(), 20)
        await uas.close()
    shutil.copy(cap, artifacts_dir / f"sip_video_call_mode{mode}.pcapng")
    decode = ("-d", f"udp.port=={ours[0]},sip", "-d", f"udp.port=={ours[1]},rtp", "-d", f"udp.port=={ours[3]},rtp",
              "-d", f"rtp.pt=={video_pt},h264")
    sent_by_us = " || ".join(f"udp.srcport=={p}" for p in ours)
    sip_both_ways = f"udp.port=={ours[0]}"
    malformed = await _tshark("-r", str(cap), *decode, "-Y", f"_ws.malformed && ({sent_by_us} || {sip_both_ways})")
    assert malformed.strip() == "", malformed
    protocols = await _tshark("-r", str(cap), *decode, "-Y", sent_by_us, "-T", "fields", "-e", "frame.protocols")
    seen = sorted(set(protocols.split()))
    assert any(p.endswith("sip:sdp") for p in seen), seen
    assert any(p.endswith(":rtp:h264") for p in seen), seen
    assert any(":rtcp" in p for p in seen), seen
    nal_types = await _tshark("-r", str(cap), *decode, "-Y", f"udp.srcport=={ours[3]} && rtp",
                              "-T", "fields", "-e", "h264.nal_unit_hdr")
    kinds = {int(v) for line in nal_types.split() for v in line.split(",") if v}
    if mode == 0:
        assert kinds and not kinds & {24, 28}, kinds  # single NAL unit packets only
    else:
        assert 24 in kinds, kinds  # SPS+PPS aggregated in STAP-A
