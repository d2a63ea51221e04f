"""SDP offer/answer and digest authentication."""

from __future__ import annotations

import base64

import pytest

from sip_gateway.rtp.media_description import LocalMedia, MediaPolicy
from sip_gateway.sip.digest import (
    Credentials,
    DigestServer,
    build_authorization,
    compute_response,
    parse_digest,
    pick_challenge,
)
from sip_gateway.sip.errors import SipParseError
from sip_gateway.sip.sdp import SdpError, SessionDescription, answer, create_offer, streams_from_answer
from tests.sip_gateway.sip_testlib import SDP_OFFER

LOCAL = LocalMedia("127.0.0.1", 40000, 40002)


def test_answer_keeps_first_h264_and_its_fmtp() -> None:
    sdp, streams = answer(SessionDescription.parse(SDP_OFFER), MediaPolicy(), LOCAL)
    video = sdp.media[1]
    assert video.formats == ["97"]
    assert video.fmtp() == {97: "profile-level-id=42801f;packetization-mode=0"}
    assert streams[1].codec.packetization_mode == 0
    assert streams[0].telephone_event_pt == 101
    # Answer is parseable and round-trips.
    assert SessionDescription.parse(sdp.serialize()).serialize() == sdp.serialize()


def test_mode_1_only_policy_skips_mode_0() -> None:
    policy = MediaPolicy(h264_modes=(1,))
    _, streams = answer(SessionDescription.parse(SDP_OFFER), policy, LOCAL)
    assert streams[1].codec.payload_type == 96 and streams[1].codec.packetization_mode == 1


def test_audio_preference_follows_offer_order_and_opus() -> None:
    offer = SDP_OFFER.replace("m=audio 6000 RTP/AVP 0 8 101", "m=audio 6000 RTP/AVP 111 9 0 101").replace(
        "a=rtpmap:101", "a=rtpmap:111 opus/48000/2\r\na=rtpmap:101"
    )
    _, streams = answer(SessionDescription.parse(offer), MediaPolicy(), LOCAL)
    assert streams[0].codec.name == "OPUS" and streams[0].codec.channels == 2
    _, streams = answer(SessionDescription.parse(offer), MediaPolicy(audio_codecs=("G722", "PCMA")), LOCAL)
    assert streams[0].codec.name == "G722"


def test_direction_and_hold() -> None:
    for offered, ours in (("sendonly", "recvonly"), ("recvonly", "sendonly"), ("inactive", "inactive")):
        offer = SDP_OFFER.replace("m=video", f"a={offered}\r\nm=video")
        sdp, streams = answer(SessionDescription.parse(offer), MediaPolicy(), LOCAL)
        assert streams[0].direction == ours and sdp.media[0].direction == ours
    old_hold = SDP_OFFER.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0")
    _, streams = answer(SessionDescription.parse(old_hold), MediaPolicy(), LOCAL)
    assert streams[0].on_hold


def test_rtcp_mux_and_separate_port() -> None:
    offer = SDP_OFFER.replace("m=video", "a=rtcp-mux\r\nm=video")
    sdp, streams = answer(SessionDescription.parse(offer), MediaPolicy(), LOCAL)
    assert streams[0].rtcp_mux and streams[0].remote_rtcp_port == 6000
    assert not streams[1].rtcp_mux and streams[1].remote_rtcp_port == 6003
    offer = SDP_OFFER.replace("m=video 6002 RTP/AVP 97 96", "m=video 6002 RTP/AVP 97 96\r\na=rtcp:7000")
    _, streams = answer(SessionDescription.parse(offer), MediaPolicy(), LOCAL)
    assert streams[1].remote_rtcp_port == 7000


def test_sdes_srtp() -> None:
    key = base64.b64encode(bytes(range(30))).decode()
    offer = SDP_OFFER.replace("RTP/AVP", "RTP/SAVP").replace(
        "m=video", f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}\r\nm=video"
    )
    sdp, streams = answer(SessionDescription.parse(offer), MediaPolicy(), LOCAL)
    assert streams[0].srtp is not None and streams[0].srtp.remote_key == bytes(range(30))
    assert sdp.media[0].proto == "RTP/SAVP" and sdp.media[0].attr("crypto")
    assert sdp.media[1].port == 0  # video offered SAVP without keys: declined
    with pytest.raises(SdpError):
        answer(SessionDescription.parse(SDP_OFFER), MediaPolicy(srtp="required"), LOCAL)
    ours = create_offer(MediaPolicy(srtp="required"), LOCAL)
    assert all(m.proto == "RTP/SAVP" and m.attr("crypto") for m in ours.media)


def test_offer_then_answer_round_trip() -> None:
    offer = create_offer(MediaPolicy(), LOCAL)
    reply, their = answer(SessionDescription.parse(offer.serialize()), MediaPolicy(), LocalMedia("10.0.0.2", 5000, 5002))
    mine = streams_from_answer(offer, reply)
    assert [s.codec for s in mine] == [s.codec for s in their]
    assert mine[1].codec.name == "H264" and mine[1].codec.packetization_mode == 1
    assert mine[0].remote_host == "10.0.0.2" and mine[0].remote_port == 5000


@pytest.mark.parametrize(
    "bad",
    ["", "v=1\r\nm=audio 1 RTP/AVP 0\r\n", "v=0\r\n", "v=0\r\nm=audio x RTP/AVP 0\r\n",
     "v=0\r\nc=IN IP4\r\nm=audio 1 RTP/AVP 0\r\n", "v=0\r\nxx\r\n",
     "v=0\r\nm=audio 1 RTP/AVP 96\r\na=rtpmap:96 opus\r\n"],
)
def test_bad_sdp_is_488(bad: str) -> None:
    with pytest.raises(SdpError) as info:
        answer(SessionDescription.parse(bad), MediaPolicy(), LOCAL)
    assert info.value.status == 488


def test_no_common_codec() -> None:
    offer = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 1 RTP/AVP 18\r\n"
    with pytest.raises(SdpError, match="No acceptable"):
        answer(SessionDescription.parse(offer), MediaPolicy(), LOCAL)


# --- digest ---------------------------------------------------------------------------


def test_rfc2617_vector() -> None:
    # RFC 2617 §3.5 example, MD5 with qop=auth.
    assert compute_response(
        "MD5", "Mufasa", "testrealm@host.com", "Circle Of Life", "GET", "/dir/index.html",
        "dcd98b7102dd2f0e8b11d0f600bfb0c093", "auth", "00000001", "0a4f113b",
    ) == "6629fae49393a05397450978507c4ef1"


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_server_verifies_client_answer(algorithm: str) -> None:
    server = DigestServer("cc", {"bob": "pw1"}.get, algorithms=(algorithm,))
    challenge = server.challenges(now=100.0)[0]
    auth = build_authorization(challenge, "REGISTER", "sip:cc", Credentials("bob", "pw1"))
    assert server.verify(auth, "REGISTER", 101.0).ok
    assert server.verify(auth, "REGISTER", 102.0).reason == "replayed nc"
    auth2 = build_authorization(challenge, "REGISTER", "sip:cc", Credentials("bob", "pw1"), nc=2)
    assert server.verify(auth2, "REGISTER", 102.0).ok
    wrong = build_authorization(challenge, "REGISTER", "sip:cc", Credentials("bob", "nope"))
    assert server.verify(wrong, "REGISTER", 101.0).reason == "wrong password"
    assert server.verify(auth2, "INVITE", 101.0).ok is False
    stale = build_authorization(challenge, "REGISTER", "sip:cc", Credentials("bob", "pw1"), nc=3)
    result = server.verify(stale, "REGISTER", 100.0 + 10_000)
    assert result.stale and not result.ok


def test_forged_nonce_and_garbage() -> None:
    server = DigestServer("cc", {"bob": "pw1"}.get)
    other = DigestServer("cc", {"bob": "pw1"}.get)
    auth = build_authorization(other.challenges(1.0)[0], "REGISTER", "sip:cc", Credentials("bob", "pw1"))
    assert server.verify(auth, "REGISTER", 2.0).reason == "bad nonce"
    assert not server.verify("Basic Ym9iOnB3MQ==", "REGISTER", 2.0).ok
    assert not server.verify('Digest username="bob", nonce=', "REGISTER", 2.0).ok
    with pytest.raises(SipParseError):
        parse_digest('Digest realm="x", ,,')


def test_pick_strongest_challenge() -> None:
    server = DigestServer("cc", lambda user: None, algorithms=("MD5", "SHA-256"))
    chosen = pick_challenge(server.challenges(1.0) + ['Digest realm="x", nonce="y", algorithm=AKAv1-MD5'])
    assert chosen is not None and "SHA-256" in chosen
