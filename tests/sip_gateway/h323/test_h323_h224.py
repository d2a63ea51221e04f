"""The H.245 values of the H.323 H.224 data channel (far-end camera control, H.323 Annex Q):
they survive our PER codec and Wireshark's H.245 dissector reads them as h224/hdlcFrameTunnelling."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sip_gateway.h323.asn1 import decode_h245, decode_olc, encode_h245, encode_olc
from sip_gateway.h323.capabilities import DEFAULT_FORMATS, build_terminal_capability_set
from sip_gateway.h323.h224_data import h224_capability, h224_data_type, is_h224
from sip_gateway.h323.tpkt import encode_tpkt
from tests.sip_gateway.h323.h323_testkit import BAD_FILTER, TSHARK, PcapWriter, tshark_fields


def _olc() -> dict[str, Any]:
    return {"forwardLogicalChannelNumber": 7, "forwardLogicalChannelParameters": {
        "dataType": h224_data_type(),
        "multiplexParameters": ("h2250LogicalChannelParameters", {
            "sessionID": 4, "mediaControlChannel": ("unicastAddress", ("iPAddress", {
                "network": b"\x7f\x00\x00\x01", "tsapIdentifier": 20001}))})}}


def _tcs() -> dict[str, Any]:
    tcs = build_terminal_capability_set(1, DEFAULT_FORMATS)
    number = len(tcs["capabilityTable"]) + 1
    tcs["capabilityTable"].append({"capabilityTableEntryNumber": number, "capability": h224_capability()})
    tcs["capabilityDescriptors"][0]["simultaneousCapabilities"].append([number])
    return tcs


def test_h224_values_round_trip() -> None:
    olc = decode_olc(encode_olc(_olc()))
    assert is_h224(olc["forwardLogicalChannelParameters"]["dataType"])
    pdu = decode_h245(encode_h245(("request", ("terminalCapabilitySet", _tcs()))))
    assert is_h224(pdu[1][1]["capabilityTable"][-1]["capability"])
    for other in (None, 3, ("data", None), ("data", {"application": ("t120", 0)}), ("videoData", {}),
                  ("data", {"application": "h224"}), ("receiveAudioCapability", ("g711Ulaw64k", 20))):
        assert not is_h224(other)


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
def test_wireshark_reads_the_h224_capability_and_channel(tmp_path: Path) -> None:
    pcap = tmp_path / "h245-h224.pcap"
    writer = PcapWriter(pcap)
    writer.tcp_conversation([(True, encode_tpkt(encode_h245(("request", ("terminalCapabilitySet", _tcs()))))),
                             (True, encode_tpkt(encode_h245(("request", ("openLogicalChannel", _olc())))))],
                            ("10.0.0.1", 40000), ("10.0.0.2", 5000))
    writer.close()
    options = ("-d", "tcp.port==5000,h245")
    assert tshark_fields(pcap, BAD_FILTER, "frame.number", options=options) == []
    apps = tshark_fields(pcap, "h245", "h245.application", "h245.h224", "h245.maxBitRate", options=options)
    # application 6 = h224, its data protocol 3 = hdlcFrameTunnelling, 48 × 100 bit/s (last maxBitRate: ours)
    assert len(apps) == 2, apps
    for line in apps:
        application, protocol, rates = line.split("\t")
        assert (application, protocol, rates.split(",")[-1]) == ("6", "3", "48"), apps
