"""Inputs the fuzz campaign (security/fuzz, target h245) found crashing the H.245 session."""
from __future__ import annotations

import random

from sip_gateway.h323.asn1 import decode_h245
from sip_gateway.h323.call import Call, EndpointConfig
from sip_gateway.h323.capabilities import Codec, MediaFormat
from sip_gateway.h323.events import CallReleased, ChannelOpened, ProtocolErrorLogged
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


# openLogicalChannelAck whose forwardMultiplexAckParameters is an unknown extension alternative
# (('_ext_34', b'')): "AttributeError: 'bytes' object has no attribute 'get'".
OLC_ACK_HEX = "22c00000068010a2004780000409404a004600071c00007f0000017530007f0000017531"


def test_olc_ack_with_unknown_multiplex_parameters_opens_the_channel_without_them() -> None:
    data = bytes.fromhex(OLC_ACK_HEX)
    assert decode_h245(data)[1][1]["forwardMultiplexAckParameters"][0].startswith("_ext_")
    session = H245Session(EndpointConfig().h245_config({1: 30000, 2: 30002}), random.Random(0))
    session.start(0.0)
    number = session.open_channel(MediaFormat(Codec.PCMU), 0.0)
    assert number == 1
    session.receive_pdu(data, 0.0)
    opened = [e for e in session.take_events() if isinstance(e, ChannelOpened)]
    assert len(opened) == 1 and opened[0].channel.number == 1 and opened[0].channel.remote_rtp is None


def test_a_parent_cycle_in_pycrate_objects_does_not_hang_the_decoder() -> None:
    """The campaign's h245 target hit libFuzzer timeouts (20 s per input) inside pycrate's
    ``fullname``: after some sequences of malformed PDUs the recursive MultiplexElement objects
    had a ``_parent`` cycle (seen as type.subElementList._item_.repeatCount.finite repeating),
    and wording the next out-of-constraint error looped forever. The sequence is not minimised,
    so this builds the cycle by hand, in a child process (a hang must not hang the suite)."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    script = (
        "from sip_gateway.h323.asn1 import h245_object\n"
        "el = h245_object('MultiplexElement')\n"
        "item = el._cont['type']._cont['subElementList']._cont\n"
        "finite = el._cont['repeatCount']._cont['finite']\n"
        "saved = el._parent\n"
        "el._parent = item; item._parent = el\n"  # the cycle
        "print(finite.fullname())\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("repeatCount.finite")
