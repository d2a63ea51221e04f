"""Inputs the fuzz campaign (security/fuzz, target h245) found crashing the H.245 session."""
from __future__ import annotations

import random

from sip_gateway.h323.asn1 import decode_h245
from sip_gateway.h323.call import Call, EndpointConfig
from sip_gateway.h323.events import CallReleased, ProtocolErrorLogged
from sip_gateway.h323.h245 import H245Session
from sip_gateway.h323.tpkt import encode_tpkt

# A MultimediaSystemControlMessage whose top-level CHOICE is an extension alternative this
# H.245 version does not know (pycrate decodes it as ('_ext_0', b'')). It used to raise
# "ValueError: not enough values to unpack" out of receive_pdu.
UNKNOWN_TOP_LEVEL = bytes.fromhex("800000001b0000010680101c02007f0000017532007f0000017533")


def test_unknown_top_level_extension_is_ignored_not_a_crash() -> None:
    assert decode_h245(UNKNOWN_TOP_LEVEL)[0].startswith("_ext_")
    session = H245Session(EndpointConfig().h245_config({1: 30000, 2: 30002}), random.Random(0))
    session.start(0.0)
    session.receive_pdu(UNKNOWN_TOP_LEVEL, 0.0)
    assert isinstance(session._events[-1], ProtocolErrorLogged)
    assert "unknown extension" in session._events[-1].detail


def test_unknown_extension_on_a_separate_h245_connection_keeps_the_call() -> None:
    call = Call.incoming_call(EndpointConfig(tunnelling=False), {1: 30000, 2: 30002}, random.Random(0))
    events = call.receive_h245_data(encode_tpkt(UNKNOWN_TOP_LEVEL), 0.0)
    assert not any(isinstance(e, CallReleased) for e in events)
