"""SDP bandwidth (b=AS RFC 4566, b=TIAS RFC 3890), ccm tmmbr (RFC 5104) and PCMU as payload type 0."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from sip_gateway.rtp.media_description import LocalMedia, MediaPolicy
from sip_gateway.sip.sdp import SessionDescription, answer, bandwidth, create_offer, streams_from_answer
from tests.sip_gateway.pcap_writer import write_pcap
from tests.sip_gateway.sip_testlib import SDP_OFFER, request

LINE = LocalMedia("127.0.0.1", 40000, 40002, session_kbps=768, video_kbps=600)


def offer_with(session_b: str = "", video_b: str = "", fb: str = "") -> SessionDescription:
    text = SDP_OFFER.replace("t=0 0\r\n", f"{session_b}t=0 0\r\n")
    text = text.replace("m=video 6002 RTP/AVP 97 96\r\n", f"m=video 6002 RTP/AVP 97 96\r\n{video_b}{fb}")
    return SessionDescription.parse(text)


def test_pcmu_is_offered_as_payload_type_0() -> None:
    offer = create_offer(MediaPolicy(), LINE)
    audio = offer.media[0]
    assert audio.formats[0] == "0"
    assert audio.rtpmap()[0] == ("PCMU", 8000, 1)
    assert audio.attrs("rtpmap")[0] == "0 PCMU/8000"
    assert audio.rtpmap()[8][0] == "PCMA" and audio.rtpmap()[9][0] == "G722"
    # Dynamic types stay unique and in the dynamic range.
    dynamic = [int(f) for m in offer.media for f in m.formats if int(f) >= 96]
    assert len(dynamic) == len(set(dynamic)) and all(96 <= pt <= 127 for pt in dynamic)


def test_our_offer_carries_the_line_and_tmmbr() -> None:
    offer = create_offer(MediaPolicy(), LINE)
    assert offer.bandwidth == ["AS:768"]
    video = offer.media[1]
    assert video.bandwidth == ["AS:625", "TIAS:600000"]
    assert offer.media[0].bandwidth == []
    pts = [f for f in video.formats]
    for pt in pts:
        assert f"{pt} ccm tmmbr" in video.attrs("rtcp-fb")
    text = offer.serialize().decode()
    # RFC 4566 order: b= after c= and before t= at session level, after c= in a media section.
    assert text.index("c=IN IP4") < text.index("b=AS:768") < text.index("t=0 0")
    assert text.index("m=video") < text.index("b=AS:625") < text.index("b=TIAS:600000") < text.index("a=rtpmap:", text.index("m=video"))
    again = SessionDescription.parse(text)
    assert bandwidth(again.bandwidth, "AS") == 768 and bandwidth(again.media[1].bandwidth, "TIAS") == 600_000


def test_without_a_line_there_are_no_b_lines() -> None:
    offer = create_offer(MediaPolicy(), LocalMedia("127.0.0.1", 40000, 40002))
    assert offer.bandwidth == [] and all(m.bandwidth == [] for m in offer.media)
    assert b"b=" not in offer.serialize()


def test_answer_reads_the_peers_bandwidth_and_states_ours() -> None:
    offer = offer_with("b=AS:2048\r\n", "b=AS:1024\r\nb=TIAS:960000\r\n", "a=rtcp-fb:97 ccm tmmbr\r\n")
    ans, streams = answer(offer, MediaPolicy(h264_modes=(0, 1)), LINE)
    video = next(s for s in streams if s.kind == "video")
    audio = next(s for s in streams if s.kind == "audio")
    assert (video.remote_session_kbps, video.remote_as_kbps, video.remote_tias_bps) == (2048, 1024, 960_000)
    assert (audio.remote_session_kbps, audio.remote_as_kbps, audio.remote_tias_bps) == (2048, None, None)
    assert video.tmmbr and not audio.tmmbr
    assert ans.bandwidth == ["AS:768"] and ans.media[1].bandwidth == ["AS:625", "TIAS:600000"]
    assert "97 ccm tmmbr" in ans.media[1].attrs("rtcp-fb")


def test_answer_without_tmmbr_in_the_offer_does_not_add_it() -> None:
    _, streams = answer(offer_with(), MediaPolicy(h264_modes=(0, 1)), LINE)
    assert not any(s.tmmbr for s in streams)


def test_streams_from_answer_read_b_lines_and_tmmbr() -> None:
    offer = create_offer(MediaPolicy(), LINE)
    ans, _ = answer(offer_with("b=AS:512\r\n", "b=TIAS:400000\r\n", "a=rtcp-fb:* ccm tmmbr\r\n"),
                    MediaPolicy(h264_modes=(0, 1)), LocalMedia("127.0.0.1", 6000, 6002, 512, 400))
    streams = streams_from_answer(offer, ans)
    video = next(s for s in streams if s.kind == "video")
    assert video.remote_session_kbps == 512 and video.remote_tias_bps == 400_000 and video.remote_as_kbps == 417
    assert video.tmmbr


@pytest.mark.parametrize(("line", "expected"), [
    ("AS:0", 0), ("AS:-5", -5), ("AS:10000000", 10_000_000), ("AS: 768 ", 768), ("as:64", 64),
    ("AS:abc", None), ("AS:", None), ("AS", None), ("AS:7.5", None), ("AS:" + "9" * 5000, None),
    ("AS:１２", None), ("X-YZ:12", None), ("AS:-", None), ("AS:+3", 3),
])
def test_bandwidth_values_are_read_as_written_or_ignored(line: str, expected: int | None) -> None:
    assert bandwidth([line], "AS") == expected


def test_nonsensical_bandwidth_never_fails_negotiation() -> None:
    for junk in ("AS:0", "AS:-768", "AS:10000000000", "AS:" + "9" * 5000, "TIAS:nope", "AS", "TIAS:-1"):
        offer = offer_with(f"b={junk}\r\n", f"b={junk}\r\n")
        _, streams = answer(offer, MediaPolicy(h264_modes=(0, 1)), LINE)
        assert len(streams) == 2


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark missing (Debian tshark)")
def test_wireshark_reads_our_bandwidth_and_feedback(tmp_path: Path) -> None:
    offer = create_offer(MediaPolicy(), LINE).serialize().decode()
    ans, _ = answer(offer_with("", "", "a=rtcp-fb:97 ccm tmmbr\r\n"), MediaPolicy(h264_modes=(0, 1)), LINE)
    pcap = write_pcap(tmp_path / "sdp.pcap", [
        (request(body=offer), 5099, 5060),
        (request(body=ans.serialize().decode(), call_id="call-2"), 5099, 5060),
    ])
    fields = subprocess.run(
        ["tshark", "-r", str(pcap), "-Y", "sdp", "-T", "fields", "-E", "separator=|", "-E", "aggregator=;",
         "-e", "sdp.bandwidth.modifier", "-e", "sdp.bandwidth.value", "-e", "sdp.media_attr",
         "-e", "sdp.media.format"],
        capture_output=True, text=True, timeout=60, check=True).stdout.strip().splitlines()
    assert len(fields) == 2, fields
    for row in fields:
        modifiers, values, attrs, _ = row.split("|")
        assert modifiers.split(";") == ["AS", "AS", "TIAS"], row
        assert values.split(";") == ["768", "625", "600000"], row
        assert "rtcp-fb:97 ccm tmmbr" in attrs or "ccm tmmbr" in attrs, row
    formats = fields[0].split("|")[3]
    assert formats.split(";")[0] == "ITU-T G.711 PCMU", formats
    malformed = subprocess.run(["tshark", "-r", str(pcap), "-Y", "_ws.malformed || _ws.expert.severity >= error"],
                               capture_output=True, text=True, timeout=60, check=True).stdout
    assert malformed.strip() == "", malformed
