"""H.245: capability sets and codec choice, and the session procedures between two peers."""
from __future__ import annotations

import random
from typing import Any

import pytest

from sip_gateway.h323 import asn1
from sip_gateway.h323.capabilities import (
    DEFAULT_FORMATS,
    H264_CAPABILITY_OID,
    Codec,
    MediaFormat,
    build_terminal_capability_set,
    choose_format,
    parse_terminal_capability_set,
)
from sip_gateway.h323.events import (
    CapabilitiesReceived,
    CapabilityMismatch,
    ChannelClosed,
    ChannelOpened,
    ChannelRejected,
    Event,
    FlowControlRequested,
    H245Failed,
    MasterSlaveDetermined,
    MediaPaused,
    MediaResumed,
    ProtocolErrorLogged,
    RoundTripDelayMeasured,
    UserInputReceived,
    VideoFastUpdateRequested,
)
from sip_gateway.h323.h245 import TERMINAL_TYPE_TERMINAL, H245Config, H245Session, MsdState

H261_ONLY = (MediaFormat(Codec.PCMU), MediaFormat(Codec.H261, 3840, mpi=(("qcifMPI", 1), ("cifMPI", 1))))
H263_H261 = (MediaFormat(Codec.PCMA), MediaFormat(Codec.H261, 3840, mpi=(("cifMPI", 1),)),
             MediaFormat(Codec.H263, 3840, mpi=(("qcifMPI", 1), ("cifMPI", 2))))


def _tcs_round_trip(formats: tuple[MediaFormat, ...]) -> Any:
    tcs = build_terminal_capability_set(3, formats)
    _, (_, decoded) = asn1.decode_h245(asn1.encode_h245(("request", ("terminalCapabilitySet", tcs))))
    return parse_terminal_capability_set(decoded)


def test_tcs_carries_h264_generic_capability_by_oid() -> None:
    tcs = build_terminal_capability_set(1, DEFAULT_FORMATS)
    generic = [e["capability"][1][1] for e in tcs["capabilityTable"]
               if e["capability"][0] == "receiveVideoCapability" and e["capability"][1][0] == "genericVideoCapability"]
    assert generic[0]["capabilityIdentifier"] == ("standard", H264_CAPABILITY_OID)
    params = {p["parameterIdentifier"][1]: p["parameterValue"] for p in generic[0]["collapsing"]}
    assert params[41] == ("booleanArray", 64) and params[42] == ("unsignedMin", 71)
    remote = _tcs_round_trip(DEFAULT_FORMATS)
    assert [f.codec for f in remote.formats] == [f.codec for f in DEFAULT_FORMATS]
    assert set(remote.packetization_modes) == {0, 1}
    assert remote.user_input == {"basicString", "dtmf"}


@pytest.mark.parametrize("remote_formats, expected", [
    (DEFAULT_FORMATS, Codec.H264),
    (tuple(reversed(DEFAULT_FORMATS)), Codec.H264),  # our preference, not their order
    (H263_H261, Codec.H263),
    (H261_ONLY, Codec.H261),
])
def test_video_preference(remote_formats: tuple[MediaFormat, ...], expected: Codec) -> None:
    remote = _tcs_round_trip(remote_formats)
    chosen = choose_format(DEFAULT_FORMATS, remote.formats, video=True)
    assert chosen is not None and chosen.codec is expected


def test_h263_common_resolutions_and_slowest_mpi() -> None:
    chosen = choose_format(DEFAULT_FORMATS, _tcs_round_trip(H263_H261).formats, video=True)
    assert chosen is not None
    assert dict(chosen.mpi) == {"qcifMPI": 1, "cifMPI": 2}  # no 4CIF: they did not offer it


def test_unknown_capabilities_are_skipped() -> None:
    tcs = build_terminal_capability_set(1, [MediaFormat(Codec.PCMU)])
    tcs["capabilityTable"].append({"capabilityTableEntryNumber": 50,
                                   "capability": ("receiveAudioCapability", ("g729", 2))})
    tcs["capabilityTable"].append({"capabilityTableEntryNumber": 51, "capability": (
        "receiveVideoCapability", ("genericVideoCapability", {"capabilityIdentifier": ("standard", (0, 0, 8, 999))}))})
    _, (_, decoded) = asn1.decode_h245(asn1.encode_h245(("request", ("terminalCapabilitySet", tcs))))
    remote = parse_terminal_capability_set(decoded)
    assert [f.codec for f in remote.formats] == [Codec.PCMU] and remote.skipped == 2


def test_empty_capability_set() -> None:
    remote = _tcs_round_trip(())
    assert remote.empty and remote.formats == []


class Pair:
    """Two H.245 sessions wired back to back."""

    def __init__(self, a_formats: tuple[MediaFormat, ...] = DEFAULT_FORMATS,
                 b_formats: tuple[MediaFormat, ...] = DEFAULT_FORMATS,
                 a_rng: random.Random | None = None, b_rng: random.Random | None = None, **config: Any) -> None:
        self.a = H245Session(H245Config(a_formats, media_ports={1: 20000, 2: 20002}, **config),
                             a_rng or random.Random(1))
        b_config = {"terminal_type": TERMINAL_TYPE_TERMINAL, **config}
        self.b = H245Session(H245Config(b_formats, media_ports={1: 30000, 2: 30002}, **b_config),
                             b_rng or random.Random(2))
        self.events: dict[str, list[Event]] = {"a": [], "b": []}
        self.now = 0.0

    def pump(self, drop_to_b: bool = False) -> None:
        for _ in range(30):
            moved = False
            for src, dst in ((self.a, self.b), (self.b, self.a)):
                for pdu in src.take_outgoing():
                    moved = True
                    if not (drop_to_b and dst is self.b):
                        dst.receive_pdu(pdu, self.now)
            for key, session in (("a", self.a), ("b", self.b)):
                self.events[key].extend(session.take_events())
            if not moved:
                return

    def of(self, key: str, kind: type[Any]) -> list[Any]:
        return [e for e in self.events[key] if isinstance(e, kind)]


def test_full_exchange_opens_channels_both_ways() -> None:
    pair = Pair()
    pair.a.start(0.0)
    pair.b.start(0.0)
    pair.pump()
    assert pair.of("a", MasterSlaveDetermined) == [MasterSlaveDetermined(True)]  # MCU type 190 > terminal 50
    assert pair.of("b", MasterSlaveDetermined) == [MasterSlaveDetermined(False)]
    for key, port in (("a", 30000), ("b", 20000)):
        opened = [e.channel for e in pair.of(key, ChannelOpened)]
        outgoing = {c.session_id: c for c in opened if c.outgoing}
        assert outgoing[1].format.codec is Codec.G722 and outgoing[1].remote_rtp is not None
        assert outgoing[1].remote_rtp.port == port
        assert outgoing[2].format.codec is Codec.H264 and outgoing[2].payload_type == 109
        assert {c.session_id for c in opened if not c.outgoing} == {1, 2}
    assert not pair.a.timers.next_deadline() and not pair.b.timers.next_deadline()


class QueuedRandom(random.Random):
    """A Random whose 24-bit draws come from a list (to force identical MSD numbers)."""

    def __init__(self, values: list[int]) -> None:
        super().__init__(0)
        self.values = values

    def getrandbits(self, k: int) -> int:
        return self.values.pop(0) if self.values else super().getrandbits(k)


def test_msd_retries_on_identical_numbers_then_succeeds() -> None:
    pair = Pair(DEFAULT_FORMATS, DEFAULT_FORMATS, a_rng=QueuedRandom([5, 7]), b_rng=QueuedRandom([5, 9]),
                terminal_type=50)
    pair.a.start(0.0)
    pair.b.start(0.0)
    pair.pump()
    assert pair.a.msd_state is MsdState.DONE and pair.b.msd_state is MsdState.DONE
    assert pair.a.master is False and pair.b.master is True  # 9 > 7 on the retry
    assert not pair.of("a", H245Failed)


def test_msd_gives_up_after_n100() -> None:
    pair = Pair(DEFAULT_FORMATS, DEFAULT_FORMATS, a_rng=QueuedRandom([5] * 10), b_rng=QueuedRandom([5] * 10),
                terminal_type=50)
    pair.a.start(0.0)
    pair.b.start(0.0)
    pair.pump()
    failures = pair.of("a", H245Failed)
    assert failures and failures[0].procedure == "master-slave-determination"


def test_silent_peer_timers() -> None:
    pair = Pair()
    pair.a.start(0.0)
    pair.pump(drop_to_b=True)
    assert pair.a.next_deadline() == 10.0
    pair.a.handle_timer(10.0)
    failures = {e.procedure for e in pair.a.take_events() if isinstance(e, H245Failed)}
    assert failures == {"master-slave-determination", "capability-exchange"}
    names = {asn1.decode_h245(p)[1][0] for p in pair.a.take_outgoing()}
    assert names == {"masterSlaveDeterminationRelease", "terminalCapabilitySetRelease"}


def test_capability_mismatch_and_olc_reject() -> None:
    # b receives only G.711 A-law and H.261; a sends only what it has: G.722 and H.264.
    pair = Pair(a_formats=(MediaFormat(Codec.G722), MediaFormat(Codec.H264, 3840)),
                b_formats=(MediaFormat(Codec.PCMA), MediaFormat(Codec.H261, 3840, mpi=(("cifMPI", 1),))))
    pair.a.start(0.0)
    pair.b.start(0.0)
    pair.pump()
    assert pair.of("a", CapabilityMismatch) == [CapabilityMismatch(audio=True, video=True)]
    assert not pair.of("a", ChannelOpened)
    # Force an OLC the peer cannot take: it answers with a reject, not a crash.
    number = pair.a.open_channel(MediaFormat(Codec.G722), 1.0)
    pair.pump()
    assert pair.of("a", ChannelRejected) == [ChannelRejected(number, 1, "dataTypeNotSupported")]
    assert not pair.a.timers.running(f"t103:{number}")


def test_olc_ack_timeout_closes_channel() -> None:
    pair = Pair()
    number = pair.a.open_channel(MediaFormat(Codec.PCMU), 0.0)
    pair.a.take_outgoing()
    pair.a.handle_timer(10.0)
    assert ChannelRejected(number, 1, "timeout") in pair.a.take_events()
    assert asn1.decode_h245(pair.a.take_outgoing()[0])[1][0] == "closeLogicalChannel"


def test_pause_resume_close_and_commands() -> None:
    pair = Pair()
    pair.a.start(0.0)
    pair.b.start(0.0)
    pair.pump()
    pair.events = {"a": [], "b": []}
    pair.b.pause(1.0)  # b asks a to stop sending
    pair.pump()
    assert pair.of("a", MediaPaused) and len(pair.of("a", ChannelClosed)) == 2
    assert {e.number for e in pair.of("b", ChannelClosed)} == {1, 2}
    pair.b.resume(2.0)
    pair.pump()
    assert pair.of("a", MediaResumed)
    assert len([e for e in pair.of("a", ChannelOpened) if e.channel.outgoing]) == 2
    pair.b.request_fast_update(2)
    pair.b.flow_control(2, 384_000)
    pair.b.flow_control(None, None)
    pair.a.send_user_input("1#")
    pair.a.send_user_input("8000", signal=False)
    pair.now = 3.0
    pair.a.send_round_trip_delay(2.5)
    pair.pump()
    assert pair.of("a", VideoFastUpdateRequested) == [VideoFastUpdateRequested(2)]
    assert pair.of("a", FlowControlRequested) == [FlowControlRequested(2, 384_000), FlowControlRequested(None, None)]
    assert pair.of("b", UserInputReceived) == [UserInputReceived("1", True, 100), UserInputReceived("#", True, 100),
                                               UserInputReceived("8000", False)]
    assert pair.of("a", RoundTripDelayMeasured) == [RoundTripDelayMeasured(0.5)]
    with pytest.raises(ValueError):
        pair.a.send_user_input("x")


def test_round_trip_keepalive_timeout() -> None:
    pair = Pair(round_trip_interval=5.0)
    pair.a.start(0.0)
    pair.b.start(0.0)
    pair.pump()
    pair.a.handle_timer(5.0)  # sends a request that b never sees
    pair.a.take_outgoing()
    pair.a.handle_timer(15.0)
    assert H245Failed("round-trip-delay", "no response (T105)") in pair.a.take_events()


def test_capabilities_received_event_lists_formats() -> None:
    pair = Pair(b_formats=H261_ONLY)
    pair.a.start(0.0)
    pair.b.start(0.0)
    pair.pump()
    received = pair.of("a", CapabilitiesReceived)[0]
    assert [f.codec for f in received.formats] == [Codec.PCMU, Codec.H261]
    video = [e.channel for e in pair.of("a", ChannelOpened) if e.channel.outgoing and e.channel.session_id == 2]
    assert video[0].format.codec is Codec.H261 and video[0].payload_type == 31


def test_close_ack_timer_and_olc_while_paused() -> None:
    pair = Pair()
    pair.a.start(0.0)
    pair.b.start(0.0)
    pair.pump()
    pair.a.close_channel(1, 1.0)
    assert pair.a.timers.running("clc:1")
    pair.pump()
    assert not pair.a.timers.running("clc:1")  # acknowledged
    pair.a.close_channel(2, 2.0)
    pair.a.take_outgoing()  # lost
    pair.a.handle_timer(12.0)
    assert ProtocolErrorLogged("closeLogicalChannel 2 not acknowledged") in pair.a.take_events()
    # While b has paused (empty capability set), it refuses new channels.
    pair.b.pause(13.0)
    pair.pump()
    pair.events = {"a": [], "b": []}
    number = pair.a.open_channel(MediaFormat(Codec.PCMU), 14.0)
    pair.pump()
    assert pair.of("a", ChannelRejected) == [ChannelRejected(number, 1, "dataTypeNotAvailable")]
