"""The NACK retransmission store: history bounds, byte budget, per-packet resend limit."""

from __future__ import annotations

import pytest

from sip_gateway.rtp.retransmission import UDP_IP_OVERHEAD, RetransmissionStore
from sip_gateway.rtp.session import NackRequest, RtpSession
from tests.sip_gateway.test_rtp_leg import _stream


def _packet(seq: int, size: int = 1172) -> bytes:
    return seq.to_bytes(2, "big") + bytes(size - 2)


def test_history_is_bounded_by_count_and_age() -> None:
    store = RetransmissionStore(max_packets=4, max_age_s=1.0)
    for seq in range(6):
        store.remember(seq, _packet(seq), now=0.1 * seq)
    assert len(store) == 4
    assert store.resend([0, 1], 0.6, None) == [] and store.counters.unknown == 2
    assert store.resend([2], 0.6, None) == [_packet(2)]
    # 1.15 s after seq 3 was sent it is too old to help; seq 5 (sent at 0.5) is not.
    assert store.resend([3, 5], 1.45, None) == [_packet(5)]
    assert store.counters.unknown == 3


def test_byte_budget_is_a_share_of_the_video_rate() -> None:
    """600 kbit/s video, 20 %: 15 000 B/s; a 0.5 s burst holds 7 500 B = 6 packets of 1 200 B on the wire."""
    store = RetransmissionStore(share=0.2, burst_s=0.5)
    for seq in range(40):
        store.remember(seq, _packet(seq), now=0.0)
    first = store.resend(list(range(20)), 0.0, 600)
    assert len(first) == 6
    assert store.counters.refused == 14
    assert store.counters.resent_bytes == 6 * (1172 + UDP_IP_OVERHEAD)
    # 0.4 s later the bucket has 6 000 B more: five packets.
    assert len(store.resend(list(range(20, 40)), 0.4, 600)) == 5
    # Without a budget (unpaced leg) everything known is resent.
    free = RetransmissionStore()
    for seq in range(20):
        free.remember(seq, _packet(seq), 0.0)
    assert len(free.resend(list(range(20)), 0.0, None)) == 20


def test_a_packet_is_resent_at_most_max_resends_and_duplicates_count_once() -> None:
    store = RetransmissionStore(max_resends=2)
    store.remember(7, _packet(7), 0.0)
    assert store.resend([7, 7, 7], 0.0, None) == [_packet(7)]
    assert store.resend([7], 0.1, None) == [_packet(7)]
    assert store.resend([7], 0.2, None) == []
    assert store.counters.resent == 2 and store.counters.refused == 1


def test_wraparound_sequence_numbers() -> None:
    store = RetransmissionStore()
    for seq in (65534, 65535, 0, 1):
        store.remember(seq, _packet(seq), 0.0)
    assert store.resend([65535, 0, 65536 + 1], 0.0, None) == [_packet(65535), _packet(0), _packet(1)]


@pytest.mark.parametrize("kwargs", [{"max_packets": 0}, {"max_age_s": 0}, {"share": 0}, {"share": 1.5},
                                    {"burst_s": -1}, {"max_resends": 0}])
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetransmissionStore(**kwargs)  # type: ignore[arg-type]


def test_session_answers_nack_only_when_negotiated() -> None:
    sender, receiver = RtpSession(_stream()), RtpSession(_stream())
    packets = sender.packetize([b"\x65" + bytes([i]) * 50 for i in range(3)], 3000, now=10.0)
    seq = int.from_bytes(packets[1][2:4], "big")
    events = sender.receive(receiver.nack([seq]), 10.05)
    assert isinstance(events[0], NackRequest)
    assert sender.retransmit(events[0].sequence_numbers, 10.05, 600) == [packets[1]]
    assert sender.retransmit(events[0].sequence_numbers, 11.5, 600) == []  # too old by now
    sender.stream = sender.stream.__class__(**{**sender.stream.__dict__, "nack": False})
    assert not [e for e in sender.receive(receiver.nack([seq]), 10.1) if isinstance(e, NackRequest)]
