"""Bounded fuzzing of the SIP parser, SDP parser and transaction/dialog layer (hypothesis).

Runs in the normal suite with a fixed example budget. Inputs that once broke something are
kept in ``corpus/`` and replayed on every run. Set ``SIP_FUZZ_EXAMPLES`` for longer runs.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sip_gateway.rtp.media_description import LocalMedia, MediaPolicy
from sip_gateway.sip import events as ev
from sip_gateway.sip.errors import SipParseError
from sip_gateway.sip.message import Response, parse_message
from sip_gateway.sip.sdp import SessionDescription, answer
from sip_gateway.sip.useragent import UserAgent, UserAgentConfig
from tests.sip_gateway.sip_testlib import SDP_OFFER, Harness, request

CORPUS = Path(__file__).parent / "corpus"
EXAMPLES = int(os.environ.get("SIP_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LOCAL = LocalMedia("127.0.0.1", 40000, 40002)

SEEDS = [
    request(body=SDP_OFFER),
    request("REGISTER", uri="sip:127.0.0.1", extra="Expires: 60"),
    request("OPTIONS"),
    request("BYE", to_tag="t1", cseq=2),
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\nFrom: <sip:a@h>;tag=1\r\n"
    b"To: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
]


def _check_outputs(h: Harness) -> None:
    """Every message we send must itself parse."""
    for _, data in h.take():
        parse_message(data)


def _mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    buf = bytearray(data)
    for kind, pos, value in ops:
        if not buf:
            break
        pos %= len(buf)
        if kind == 0:
            buf[pos] = value
        elif kind == 1:
            del buf[pos : pos + value % 16]
        elif kind == 2:
            buf[pos:pos] = bytes([value]) * (value % 8 + 1)
        else:
            line_start = buf.rfind(b"\n", 0, pos) + 1
            line_end = buf.find(b"\n", pos)
            line = buf[line_start : line_end + 1 if line_end >= 0 else len(buf)]
            buf[line_start:line_start] = line  # duplicate a line
    return bytes(buf)


mutations = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10_000), st.integers(0, 255)), max_size=8)


@FUZZ
@given(st.binary(max_size=2000))
def test_parser_random_bytes(data: bytes) -> None:
    try:
        parse_message(data)
    except SipParseError:
        pass


@FUZZ
@given(st.sampled_from(SEEDS), mutations)
def test_user_agent_survives_mutated_messages(seed: bytes, ops: list[tuple[int, int, int]]) -> None:
    h = Harness(UserAgent(UserAgentConfig(rate=1e9, burst=1e9)))
    data = _mutate(seed, ops)
    h.receive(data)
    _check_outputs(h)
    for event in h.events:
        if isinstance(event, ev.IncomingCall):
            h.run(h.ua.answer(event.call, LOCAL))
    _check_outputs(h)


@FUZZ
@given(st.text(max_size=600), st.sampled_from([SDP_OFFER, ""]), mutations)
def test_sdp_parser_and_answer(text: str, seed: str, ops: list[tuple[int, int, int]]) -> None:
    body = _mutate((seed or text).encode(), ops) if seed else text.encode()
    try:
        sdp = SessionDescription.parse(body)
        answer(sdp, MediaPolicy(), LOCAL)
    except SipParseError:
        pass


# One step of a dialog-level conversation: which request, which dialog, retransmit or not.
step = st.tuples(
    st.sampled_from(["INVITE", "ACK", "CANCEL", "BYE", "UPDATE", "INFO", "OPTIONS", "answer", "reject",
                     "hangup", "wait", "reinvite"]),
    st.integers(0, 2),  # which call-id
    st.integers(1, 4),  # cseq
    st.booleans(),  # reuse the previous branch (retransmission)
    st.floats(0, 40),
)


@FUZZ
@given(st.lists(step, max_size=25))
def test_transaction_layer_random_conversations(steps: list[tuple[str, int, int, bool, float]]) -> None:
    h = Harness(UserAgent(UserAgentConfig(rate=1e9, burst=1e9, answer_timeout=30)))
    branch_n = 0
    for what, cid, cseq, retransmit, wait in steps:
        call_id = f"fz{cid}"
        calls = [c for c in h.ua.calls.values() if c.call_id == call_id]
        tag = calls[0].local_tag if calls else None
        if what == "wait":
            h.advance(wait)
        elif what in ("answer", "reject", "hangup", "reinvite"):
            for call in calls:
                if what == "answer":
                    h.run(h.ua.answer(call, LOCAL))
                elif what == "reject":
                    h.run(h.ua.reject(call, 486))
                elif what == "hangup":
                    h.run(h.ua.hangup(call))
                else:
                    h.run(h.ua.reinvite(call, "sendonly"))
        else:
            if not retransmit:
                branch_n += 1
            branch = f"z9hG4bKfz{branch_n}"
            body = SDP_OFFER if what in ("INVITE", "UPDATE") and cseq % 2 else ""
            to_tag = tag if (what != "INVITE" or cseq > 1) else None
            h.receive(request(what, call_id=call_id, cseq=cseq, branch=branch, to_tag=to_tag, body=body))
        _check_outputs(h)
    h.advance(400)
    _check_outputs(h)
    # Nothing that was not confirmed survives; every transaction has ended.
    assert h.ua.pending_transactions() == 0
    assert all(c.state.value == "confirmed" for c in h.ua.calls.values())


@FUZZ
@given(st.integers(100, 699), st.sampled_from(["INVITE", "OPTIONS", "REGISTER"]), st.binary(max_size=64))
def test_random_responses_to_our_requests(status: int, method: str, junk: bytes) -> None:
    h = Harness(UserAgent())
    if method == "INVITE":
        _, out = h.ua.invite("sip:x@127.0.0.1:5099", LOCAL)
    elif method == "REGISTER":
        _, out = h.ua.register("sip:127.0.0.1:5099", "sip:a@127.0.0.1")
    else:
        out = h.ua.options("sip:x@127.0.0.1:5099")
    h.run(out)
    sent = parse_message(h.take()[0][1])
    resp = Response(sent.headers.copy(), junk, status, "Whatever")
    resp.headers.set("To", (sent.headers.get("To") or "") + ";tag=rt")
    if 200 <= status < 300 and method == "INVITE":
        resp.headers.add("Contact", "<sip:x@127.0.0.1:5099>")
        resp.headers.add("Content-Type", "application/sdp")
    h.receive(resp.serialize())
    h.advance(400)
    _check_outputs(h)


def test_corpus_replay() -> None:
    files = sorted(CORPUS.glob("*.sip"))
    assert len(files) >= 10, "corpus is missing"
    for path in files:
        data = path.read_bytes()
        try:
            parse_message(data)
        except SipParseError:
            pass
        h = Harness(UserAgent(UserAgentConfig(rate=1e9, burst=1e9)))
        h.receive(data)
        statuses = [r.status for r in h.responses()]
        _check_outputs(h)
        expected = path.with_suffix(".status")
        if expected.exists():
            got = str(statuses[-1]) if statuses else "drop"
            assert got == expected.read_text().strip(), path.name
