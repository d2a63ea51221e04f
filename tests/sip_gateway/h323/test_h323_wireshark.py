"""Wireshark, an independent decoder, reads back the values our call put on the wire."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from sip_gateway.h323.call import Call, EndpointConfig
from sip_gateway.h323.events import MediaAddress
from sip_gateway.h323.q931 import Cause
from tests.sip_gateway.h323.h323_testkit import TSHARK, PcapWriter, tshark_fields, wire_problems


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
def test_wireshark_reads_our_values(tmp_path: Path) -> None:
    caller = Call.outgoing_call(EndpointConfig(is_mcu=False, e164="8001", h323_id="会议室-101"), "80000001",
                                MediaAddress("127.0.0.1", 1720), {1: 20000, 2: 20002}, 0.0, random.Random(1))
    callee = Call.incoming_call(EndpointConfig(), {1: 30000, 2: 30002}, random.Random(2))
    segments: list[tuple[bool, bytes]] = []

    def move() -> None:
        for src, dst, from_client in ((caller, callee, True), (callee, caller, False)):
            data = src.data_to_send()
            if data:
                segments.append((from_client, data))
                dst.receive_data(data, 0.0)

    for action in (lambda: None, lambda: callee.alert(0.0), lambda: callee.answer(0.0),
                   lambda: caller.send_user_input("5", 0.0), lambda: caller.request_fast_update(2, 0.0),
                   lambda: caller.release(Cause.NORMAL_CALL_CLEARING, 0.0)):
        action()
        for _ in range(5):
            move()
    pcap = tmp_path / "call.pcap"
    writer = PcapWriter(pcap)
    writer.tcp_conversation(segments, ("10.0.0.1", 40000), ("10.0.0.2", 1720))
    writer.close()

    assert wire_problems(pcap) == []
    guid = caller.call_id.hex()
    expected_guid = f"{guid[:8]}-{guid[8:12]}-{guid[12:16]}-{guid[16:20]}-{guid[20:]}"
    guids = {g for line in tshark_fields(pcap, "h225.guid", "h225.guid") for g in line.split(",")}
    assert guids == {expected_guid}  # every message carries the same callIdentifier
    setup = tshark_fields(pcap, "q931.message_type == 0x05", "q931.called_party_number.digits",
                          "q931.calling_party_number.digits", "h225.fastStart", "h225.h323_ID")
    assert setup == ["80000001\t8001\t12\t会议室-101"]  # 3 audio + 3 video formats, both directions
    assert tshark_fields(pcap, "q931.message_type == 0x01", "h225.fastStart") == ["4"]  # one per session/direction
    assert tshark_fields(pcap, "q931.message_type == 0x5a", "q931.cause_value") == ["16"]
    assert tshark_fields(pcap, "h245.signalType", "h245.signalType") == ["5"]
    assert tshark_fields(pcap, "h245.videoFastUpdatePicture_element", "h245.logicalChannelNumber") == ["2"]
    assert tshark_fields(pcap, "h245.endSessionCommand", "frame.number")
