"""User-agent core tests on a virtual clock: transactions, dialogs, auth, session timers."""

from __future__ import annotations

from sip_gateway.rtp.media_description import LocalMedia
from sip_gateway.sip import events as ev
from sip_gateway.sip.actions import T1, Flow
from sip_gateway.sip.dialog import CallState
from sip_gateway.sip.digest import Credentials
from sip_gateway.sip.sdp import SessionDescription
from sip_gateway.sip.useragent import UserAgent, UserAgentConfig
from tests.sip_gateway.sip_testlib import SDP_OFFER, Harness, request

LOCAL = LocalMedia("127.0.0.1", 40000, 40002)


def make(**kw: object) -> Harness:
    return Harness(UserAgent(UserAgentConfig(port=5060, **kw)))  # type: ignore[arg-type]


def incoming_call(h: Harness, **kw: object) -> ev.IncomingCall:
    h.receive(request(body=SDP_OFFER, **kw))  # type: ignore[arg-type]
    calls = h.events_of(ev.IncomingCall)
    assert calls, h.events
    return calls[-1]


def statuses(h: Harness) -> list[int]:
    return [r.status for r in h.responses()]


def test_invite_answer_retransmits_2xx_until_ack() -> None:
    h = make()
    call = incoming_call(h).call
    assert statuses(h) == [100]
    h.run(h.ua.answer(call, LOCAL))
    ok = h.last_response()
    assert ok.status == 200 and ok.to.tag == call.local_tag
    answer = SessionDescription.parse(ok.body)
    # First offered H.264 payload type wins and keeps its fmtp.
    assert answer.media[1].formats[0] == "97"
    assert "packetization-mode=0" in (answer.media[1].attr("fmtp") or "")
    h.advance(T1 * 3 + 0.01)  # retransmissions at T1 and 2*T1 after sending
    assert statuses(h).count(200) == 3
    h.receive(request("ACK", to_tag=call.local_tag, branch="z9hG4bKack1"))
    assert call.state == CallState.CONFIRMED
    assert h.events_of(ev.CallEstablished)
    count = statuses(h).count(200)
    h.advance(10)
    assert statuses(h).count(200) == count
    streams = {s.kind: s for s in call.streams}
    assert streams["audio"].codec.name == "PCMU" and streams["audio"].telephone_event_pt == 101
    assert streams["video"].codec.payload_type == 97 and streams["video"].codec.packetization_mode == 0


def test_retransmitted_invite_gets_same_response_and_no_new_call() -> None:
    h = make()
    incoming_call(h)
    h.receive(request(body=SDP_OFFER))
    assert len(h.events_of(ev.IncomingCall)) == 1
    assert statuses(h) == [100, 100]


def test_missing_ack_ends_call_with_bye() -> None:
    h = make()
    call = incoming_call(h).call
    h.run(h.ua.answer(call, LOCAL))
    h.advance(64 * T1 + 1)
    ended = h.events_of(ev.CallEnded)
    assert ended and ended[0].reason == "no ACK"
    assert any(d.startswith(b"BYE ") for _, d in h.sent)
    h.advance(60)
    assert h.ua.calls == {} and h.ua.pending_transactions() == 0


def test_cancel_before_answer() -> None:
    h = make()
    call = incoming_call(h).call
    h.receive(request("CANCEL"))
    assert sorted(statuses(h)) == [100, 200, 487]
    assert h.events_of(ev.CallEnded)[0].status == 487
    # ACK for the 487 stops timer G retransmissions.
    h.receive(request("ACK", to_tag=call.local_tag))
    before = len(h.sent)
    h.advance(40)
    assert len(h.sent) == before
    assert h.ua.calls == {} and h.ua.pending_transactions() == 0
    h.receive(request("CANCEL", call_id="nope", branch="z9hG4bKzzz"))
    assert h.last_response().status == 481


def test_reject_retransmits_until_ack_then_times_out_cleanly() -> None:
    h = make()
    call = incoming_call(h).call
    h.run(h.ua.reject(call, 486))
    h.advance(T1 * 3 + 0.01)
    assert statuses(h).count(486) == 3  # timer G
    h.advance(64 * T1)  # timer H, no ACK
    assert h.ua.pending_transactions() == 0


def test_reinvite_hold_unhold_and_glare() -> None:
    h = make()
    call = incoming_call(h).call
    h.run(h.ua.answer(call, LOCAL))
    h.receive(request("ACK", to_tag=call.local_tag, branch="z9hG4bKack1"))
    hold = SDP_OFFER.replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n")
    h.receive(request(cseq=2, to_tag=call.local_tag, body=hold, branch="z9hG4bKre1"))
    ok = h.last_response()
    assert ok.status == 200
    assert SessionDescription.parse(ok.body).media[0].direction == "recvonly"
    assert h.events_of(ev.MediaUpdated) and call.streams[0].on_hold
    # A second re-INVITE before the ACK: 491.
    h.receive(request(cseq=3, to_tag=call.local_tag, body=SDP_OFFER, branch="z9hG4bKre2"))
    assert h.last_response().status == 491
    h.receive(request("ACK", cseq=2, to_tag=call.local_tag, branch="z9hG4bKack2"))
    h.receive(request(cseq=4, to_tag=call.local_tag, body=SDP_OFFER, branch="z9hG4bKre3"))
    assert h.last_response().status == 200 and not call.streams[0].on_hold


def test_in_dialog_errors_and_unknown_methods() -> None:
    h = make()
    h.receive(request("BYE", to_tag="nosuch", call_id="x"))
    assert h.last_response().status == 481
    h.receive(request("FOOBAR", branch="z9hG4bKf1"))
    assert h.last_response().status == 501
    h.receive(request("SUBSCRIBE", branch="z9hG4bKf2"))
    assert h.last_response().status == 405 and "INVITE" in (h.last_response().headers.get("Allow") or "")
    h.receive(request(branch="z9hG4bKf3", extra="Require: 100rel"))
    assert h.last_response().status == 420
    h.receive(request(branch="z9hG4bKf4", body=SDP_OFFER, extra="Session-Expires: 30"))
    assert h.last_response().status == 422 and h.last_response().headers.get("Min-SE") == "90"
    h.receive(request(branch="z9hG4bKf5", body="hello", content_type="text/plain"))
    assert h.last_response().status == 415
    h.receive(request(branch="z9hG4bKf6", body="v=1\r\n"))
    assert h.last_response().status == 488
    h.receive(request(branch="z9hG4bKf7").replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE"))
    bad = h.last_response()
    assert bad.status == 400 and "CSeq" in bad.reason
    assert not h.events_of(ev.IncomingCall) and h.ua.calls == {}
    h.receive(request("OPTIONS", branch="z9hG4bKf8"))
    assert h.last_response().status == 200


def test_oversized_dropped_without_reply() -> None:
    h = make(max_message_size=2000)
    h.receive(request(body="x" * 3000))
    assert h.sent == [] and h.events_of(ev.MessageDropped)


def test_rate_limit_invite_flood() -> None:
    h = make(rate=2.0, burst=5.0)
    for i in range(50):
        h.receive(request(call_id=f"f{i}", branch=f"z9hG4bKfl{i}", body=SDP_OFFER))
    assert len(h.events_of(ev.IncomingCall)) == 5
    assert statuses(h).count(503) == 1  # one 503 per second, the rest dropped
    h.advance(1.0)
    h.receive(request(call_id="later", branch="z9hG4bKlater", body=SDP_OFFER))
    assert len(h.events_of(ev.IncomingCall)) == 6


def test_unanswered_call_times_out() -> None:
    h = make(answer_timeout=10.0)
    incoming_call(h)
    h.advance(11)
    assert h.last_response().status == 480
    h.advance(60)
    assert h.ua.calls == {} and h.ua.pending_transactions() == 0


def test_session_timer_peer_refresher_expiry_sends_bye() -> None:
    h = make()
    call = incoming_call(h, extra="Supported: timer\nSession-Expires: 90;refresher=uac").call
    h.run(h.ua.answer(call, LOCAL))
    ok = h.last_response()
    assert ok.headers.get("Session-Expires") == "90;refresher=uac" and ok.headers.get("Require") == "timer"
    h.receive(request("ACK", to_tag=call.local_tag, branch="z9hG4bKack1"))
    h.advance(50)
    # A refresh by UPDATE restarts the timer.
    h.receive(request("UPDATE", cseq=2, to_tag=call.local_tag, branch="z9hG4bKup1",
                      extra="Session-Expires: 90;refresher=uac"))
    assert h.last_response().status == 200
    h.advance(50)
    assert not h.events_of(ev.CallEnded)
    h.advance(20)
    assert h.events_of(ev.CallEnded)[0].reason == "session expired"


def test_info_fast_update_and_dtmf() -> None:
    h = make()
    call = incoming_call(h).call
    h.run(h.ua.answer(call, LOCAL))
    h.receive(request("ACK", to_tag=call.local_tag, branch="z9hG4bKack1"))
    xml = ('<?xml version="1.0" encoding="utf-8" ?><media_control><vc_primitive><to_encoder>'
           "<picture_fast_update/></to_encoder></vc_primitive></media_control>")
    h.receive(request("INFO", cseq=2, to_tag=call.local_tag, body=xml, branch="z9hG4bKi1",
                      content_type="application/media_control+xml"))
    assert h.last_response().status == 200 and h.events_of(ev.PictureFastUpdate)
    h.receive(request("INFO", cseq=3, to_tag=call.local_tag, body="Signal=5\r\nDuration=160\r\n",
                      branch="z9hG4bKi2", content_type="application/dtmf-relay"))
    assert [e.digit for e in h.events_of(ev.DtmfReceived)] == ["5"]
    h.receive(request("INFO", cseq=4, to_tag=call.local_tag, body='<!DOCTYPE x [<!ENTITY a "b">]><x/>',
                      branch="z9hG4bKi3", content_type="application/media_control+xml"))
    assert h.last_response().status == 415
    h.receive(request("INFO", cseq=4, to_tag=call.local_tag, body="x", branch="z9hG4bKi4"))
    assert h.last_response().status == 500  # CSeq not increasing


# --- two user agents talking to each other through the harness ---------------------


class Pair:
    def __init__(self, a: Harness, b: Harness) -> None:
        self.a, self.b = a, b
        self.wire: list[tuple[str, bytes]] = []  # everything exchanged, by sender name

    def pump(self, rounds: int = 20) -> None:
        for _ in range(rounds):
            moved = False
            for name, src, dst in (("a", self.a, self.b), ("b", self.b, self.a)):
                for _flow, data in src.take():
                    moved = True
                    self.wire.append((name, data))
                    dst.receive(data, Flow("udp", "127.0.0.1", src.ua.config.port))
            if not moved:
                return

    def advance(self, seconds: float, step: float = 0.25) -> None:
        t = 0.0
        while t < seconds:
            self.a.advance(step)
            self.b.advance(step)
            self.pump()
            t += step


def pair(**b_kw: object) -> Pair:
    a = Harness(UserAgent(UserAgentConfig(port=5070, user="caller")))
    b = Harness(UserAgent(UserAgentConfig(port=5080, **b_kw)))  # type: ignore[arg-type]
    return Pair(a, b)


def test_outgoing_call_with_digest_auth_and_bye_from_callee() -> None:
    p = pair(auth_algorithms=("SHA-256", "MD5"), accounts={"alice": "s3cret-Passw0rd"})
    b_call = None

    call, out = p.a.ua.invite("sip:80000001@127.0.0.1:5080", LOCAL, credentials=Credentials("alice", "s3cret-Passw0rd"))
    p.a.run(out)
    p.pump()
    first = p.b.events_of(ev.IncomingCall)[0].call
    p.b.run(p.b.ua.challenge(first, p.b.now))
    p.pump()
    second = p.b.events_of(ev.IncomingCall)[-1].call
    assert second is not first and second.authenticated_user == "alice"
    auth = second.invite.headers.get("Authorization") if second.invite else ""
    assert auth and "algorithm=SHA-256" in auth
    p.b.run(p.b.ua.ring(second))
    p.b.run(p.b.ua.answer(second, LocalMedia("127.0.0.1", 41000, 41002)))
    p.pump()
    assert call.state == CallState.CONFIRMED and second.state == CallState.CONFIRMED
    assert p.a.events_of(ev.CallEstablished) and p.b.events_of(ev.CallEstablished)
    assert {s.kind for s in call.streams} == {"audio", "video"}
    assert call.streams[0].remote_port == 41000
    b_call = second
    # Hold from the caller side, then unhold.
    p.a.run(p.a.ua.reinvite(call, "sendonly"))
    p.pump()
    assert b_call.streams[0].direction == "recvonly"
    p.a.run(p.a.ua.reinvite(call, "sendrecv"))
    p.pump()
    assert b_call.streams[0].direction == "sendrecv"
    # Fast update and DTMF over INFO.
    p.a.run(p.a.ua.request_fast_update(call))
    p.a.run(p.a.ua.send_dtmf_info(call, "#"))
    p.pump()
    assert p.b.events_of(ev.PictureFastUpdate)
    assert [e.digit for e in p.b.events_of(ev.DtmfReceived)] == ["#"]
    p.b.run(p.b.ua.hangup(b_call))
    p.pump()
    assert p.a.events_of(ev.CallEnded)[-1].reason == "remote hangup"
    p.advance(40)
    for h in (p.a, p.b):
        assert h.ua.calls == {} and h.ua.pending_transactions() == 0


def test_session_refresh_by_us_uses_update() -> None:
    p = pair()
    p.a.ua.config.session_expires = 90
    call, out = p.a.ua.invite("sip:x@127.0.0.1:5080", LOCAL)
    p.a.run(out)
    p.pump()
    b_call = p.b.events_of(ev.IncomingCall)[0].call
    p.b.run(p.b.ua.answer(b_call, LOCAL))
    p.pump()
    assert b_call.we_refresh is False and call.we_refresh is True
    p.advance(200)
    assert not p.a.events_of(ev.CallEnded) and not p.b.events_of(ev.CallEnded)
    assert b_call.state == CallState.CONFIRMED
    # 90 s interval refreshed every 45 s by the caller with UPDATE (the callee allows it).
    updates = [d for who, d in p.wire if who == "a" and d.startswith(b"UPDATE ")]
    assert len(updates) == 4, len(updates)
    assert b"Session-Expires: 90;refresher=uac" in updates[0]


def test_late_offer_incoming() -> None:
    p = pair()
    call, out = p.a.ua.invite("sip:x@127.0.0.1:5080", None)
    p.a.run(out)
    p.pump()
    b_call = p.b.events_of(ev.IncomingCall)[0].call
    assert b_call.offer is None and b_call.late_offer
    # The caller has no local media configured, so give it some before the offer arrives.
    call.local_media = LOCAL
    p.b.run(p.b.ua.answer(b_call, LocalMedia("127.0.0.1", 42000)))
    p.pump()
    assert b_call.state == CallState.CONFIRMED and b_call.streams
    assert b_call.streams[0].remote_port == 40000


def test_cancel_outgoing_after_ringing() -> None:
    p = pair()
    call, out = p.a.ua.invite("sip:x@127.0.0.1:5080", LOCAL)
    p.a.run(out)
    p.pump()
    b_call = p.b.events_of(ev.IncomingCall)[0].call
    p.b.run(p.b.ua.ring(b_call))
    p.pump()
    assert call.state == CallState.EARLY
    p.a.run(p.a.ua.hangup(call))
    p.pump()
    assert p.a.events_of(ev.CallEnded)[-1].status == 487
    assert p.b.events_of(ev.CallEnded)[-1].reason == "cancelled"
    p.advance(40)
    assert p.a.ua.pending_transactions() == 0 and p.b.ua.pending_transactions() == 0


def test_client_invite_timer_a_and_b() -> None:
    h = make()
    call, out = h.ua.invite("sip:nobody@127.0.0.1:5999", LOCAL)
    h.run(out)
    h.advance(64 * T1 + 0.1)
    invites = [d for _, d in h.sent if d.startswith(b"INVITE")]
    assert len(invites) == 7  # 0, .5, 1.5, 3.5, 7.5, 15.5, 31.5 s
    assert h.events_of(ev.CallEnded)[0].status == 408
    assert call.state == CallState.TERMINATED


def test_client_non_invite_timer_e_capped_at_t2() -> None:
    h = make()
    h.run(h.ua.options("sip:nobody@127.0.0.1:5999"))
    h.advance(64 * T1 + 0.1)
    sends = [d for _, d in h.sent if d.startswith(b"OPTIONS")]
    # 0, .5, 1.5, 3.5, 7.5, 11.5, ... 31.5: doubling up to T2=4 s then every 4 s.
    assert len(sends) == 11
    assert h.events_of(ev.QualifyResult)[0].ok is False


def test_registrar_with_digest_and_client_registration() -> None:
    p = pair(accounts={"alice": "correct horse battery"})
    reg, out = p.a.ua.register("sip:127.0.0.1:5080", "sip:alice@127.0.0.1",
                               Credentials("alice", "correct horse battery"), expires=120)
    p.a.run(out)
    p.pump()
    state = p.a.events_of(ev.ClientRegistrationState)[-1]
    assert state.registered
    bindings = p.b.ua.bindings.lookup("alice@127.0.0.1", p.b.now)
    assert [b.contact for b in bindings] == ["sip:caller@127.0.0.1:5070"]
    # Refreshed before expiry, so still registered after several intervals.
    p.advance(300, step=5)
    assert p.b.ua.bindings.lookup("alice@127.0.0.1", p.b.now)
    # Wrong password: 401 twice then failure; nothing registered.
    bad, out = p.a.ua.register("sip:127.0.0.1:5080", "sip:alice@127.0.0.1", Credentials("alice", "guess"))
    p.a.run(out)
    p.pump()
    assert p.a.events_of(ev.ClientRegistrationState)[-1].registered is False
    # Someone else's AOR with valid credentials for alice: 403.
    h = p.b
    h.receive(request("REGISTER", call_id="r1", branch="z9hG4bKr1", uri="sip:127.0.0.1"))
    assert h.last_response().status == 401
    p.a.run(p.a.ua.unregister(reg))
    p.pump()
    assert not p.b.ua.bindings.lookup("alice@127.0.0.1", p.b.now)


def test_credentials_never_logged(caplog) -> None:  # type: ignore[no-untyped-def]
    p = pair(accounts={"alice": "topsecret-pw"})
    _, out = p.a.ua.register("sip:127.0.0.1:5080", "sip:alice@127.0.0.1", Credentials("alice", "wrong-pw"))
    with caplog.at_level("DEBUG"):
        p.a.run(out)
        p.pump()
    assert "topsecret" not in caplog.text and "wrong-pw" not in caplog.text
    assert "wrong-pw" not in repr(Credentials("alice", "wrong-pw"))
    sample = request("REGISTER", extra='Authorization: Digest username="alice", response="deadbeef77"')
    assert "deadbeef77" not in UserAgent.loggable(sample)


def test_churn_leaves_no_state() -> None:
    h = make(rate=1e6, burst=1e6)
    for i in range(200):
        h.receive(request(call_id=f"c{i}", branch=f"z9hG4bKc{i}", body=SDP_OFFER))
        call = h.events_of(ev.IncomingCall)[-1].call
        if i % 3 == 0:
            h.receive(request("CANCEL", call_id=f"c{i}", branch=f"z9hG4bKc{i}"))
        elif i % 3 == 1:
            h.run(h.ua.answer(call, LOCAL))
            h.receive(request("ACK", call_id=f"c{i}", to_tag=call.local_tag, branch=f"z9hG4bKa{i}"))
            h.receive(request("BYE", call_id=f"c{i}", cseq=2, to_tag=call.local_tag, branch=f"z9hG4bKb{i}"))
        # else: never answered -> answer timer
    h.advance(200)
    assert h.ua.calls == {} and h.ua.pending_transactions() == 0 and h.timers == {}


def test_options_qualify_keepalive() -> None:
    p = pair()
    p.a.run(p.a.ua.options("sip:127.0.0.1:5080", interval=10.0))
    p.pump()
    p.advance(35)
    results = p.a.events_of(ev.QualifyResult)
    assert len(results) == 4 and all(r.ok and r.status == 200 for r in results)
    p.a.run(p.a.ua.stop_qualify("sip:127.0.0.1:5080"))
    p.advance(30)
    assert len(p.a.events_of(ev.QualifyResult)) == 4  # stopped: no more OPTIONS
