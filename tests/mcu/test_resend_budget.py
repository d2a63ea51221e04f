"""The byte budget on resends to browsers (mcu.legs.resend_budget) and its hook on aiortc's sender.

The hook on a real aiortc sender with Chromium's NACKs is in test_webrtc_rtx_chromium.py.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from mcu.legs.resend_budget import ResendBudget
from mcu.legs.webrtc_aiortc import RTP_OVERHEAD, RetransmitGuard


def test_budget_is_a_share_of_the_video_rate() -> None:
    budget = ResendBudget()  # 20 % of 1000 kbit/s = 25 000 bytes/s, burst 0.5 s = 12 500 bytes
    allowed = sum(budget.allow(seq, 1250, 0.0, 1000) for seq in range(20))
    assert allowed == 10  # the burst
    assert not budget.allow(100, 1250, 0.0, 1000)
    assert budget.allow(101, 1250, 0.05, 1000)  # 50 ms refill 1250 bytes
    assert not budget.allow(102, 1250, 0.05, 1000)
    assert sum(budget.allow(200 + i, 1250, 10.0, 1000) for i in range(20)) == 10  # never above the burst


def test_one_packet_is_resent_at_most_twice_and_nonsense_is_bounded() -> None:
    budget = ResendBudget()
    assert [budget.allow(7, 100, t, 2000) for t in (0.0, 1.0, 2.0, 3.0)] == [True, True, False, False]
    assert budget.allow(7 + 65536, 100, 4.0, 2000) is False  # modulo 2^16: the same packet
    idle = ResendBudget()
    assert idle.allow(1, 1400, 0.0, 0)  # nothing sent lately: one full packet
    assert not idle.allow(2, 1400, 1.0, 0)
    assert not idle.allow(3, 1400, 0.0, -5)  # negative rate: nothing, and no crash
    huge = ResendBudget()
    assert huge.allow(1, 1200, 0.0, 10_000_000_000) and huge.allow(2, 1200, 0.0, 1e12)  # 10 Gbit/s: no overflow
    with pytest.raises(ValueError):
        ResendBudget(share=0)


@dataclass
class _Packet:
    sequence_number: int
    payload: bytes


class _Sender:
    def __init__(self) -> None:
        self._RTCRtpSender__rtp_history = {seq % 128: _Packet(seq, b"x" * 1000) for seq in range(1000, 1128)}
        self.sent: list[int] = []

    async def _retransmit(self, sequence_number: int) -> None:
        self.sent.append(sequence_number)


def test_guard_resends_within_budget_and_counts() -> None:
    sender = _Sender()
    guard = RetransmitGuard(lambda: 400, clock=lambda: 0.0)  # 10 000 bytes/s: a 5 000 byte burst
    guard.install(sender)

    async def nack(*seqs: int) -> None:
        for seq in seqs:
            await sender._retransmit(seq)

    asyncio.run(nack(1000, 1000, 1000, 999, 5))  # a repeated NACK; 999 and 5 were never (or no longer) kept
    assert sender.sent == [1000, 1000] and guard.resent == 2 and guard.unknown == 2 and guard.refused == 1
    asyncio.run(nack(*range(1001, 1011)))  # a burst beyond the bytes left
    per_packet = 1000 + RTP_OVERHEAD
    assert guard.resent == 2 + (5000 - 2 * per_packet) // per_packet
    assert guard.requested == 15 and guard.requested == guard.resent + guard.refused + guard.unknown
    with pytest.raises(RuntimeError, match="aiortc internals changed"):
        RetransmitGuard(lambda: 0).install(object())
