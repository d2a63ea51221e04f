"""The ingest's MQTT 3.1.1 client core (monitoring/mqtt_protocol.py), sans-I/O: packets in pieces,
acknowledgements after the hand-over, QoS 2, keep-alive, and malformed packets refused. The wire
format against a real broker is covered by test_ingest/test_backpressure (mosquitto, aiomqtt and
paho publishers) and bench/monitoring.py."""
from __future__ import annotations

import pytest

from monitoring.mqtt_protocol import (
    ClientConnection,
    ConnAck,
    PingResp,
    ProtocolError,
    PubAck,
    Publish,
    SubAck,
    encode_publish,
)

CONNACK_OK = bytes((0x20, 2, 0, 0))


def connected(**kw: object) -> ClientConnection:
    c = ClientConnection("ingest-1", keepalive=10, clean_session=False, **kw)  # type: ignore[arg-type]
    c.connect(0.0)
    assert c.receive_data(CONNACK_OK, 0.0) == [ConnAck(False, 0)] and c.connected
    c.data_to_send()
    return c


def test_connect_packet_is_mqtt_311_with_persistent_session_and_credentials() -> None:
    c = ClientConnection("id", keepalive=30, clean_session=False, username="u", password="p")
    c.connect(0.0)
    assert c.data_to_send() == (b"\x10\x14\x00\x04MQTT\x04\xc0\x00\x1e\x00\x02id" b"\x00\x01u\x00\x01p")


def test_publishes_in_pieces_are_delivered_in_order_and_acknowledged_in_one_write() -> None:
    c = connected()
    stream = b"".join(encode_publish(f"cc/gauges/g{i}/reading", b'{"value": %d}' % i, 1, i + 1) for i in range(50))
    events = []
    for k in range(0, len(stream), 7):  # arbitrary chunking, even inside the remaining length
        events += c.receive_data(stream[k:k + 7], 1.0)
    assert [e.topic for e in events if isinstance(e, Publish)] == [f"cc/gauges/g{i}/reading" for i in range(50)]
    assert events[3] == Publish("cc/gauges/g3/reading", b'{"value": 3}', 1, 4)
    acks = c.data_to_send()
    assert acks == b"".join(bytes((0x40, 2, 0, i + 1)) for i in range(50))


def test_no_acknowledgement_before_the_whole_packet_is_there() -> None:
    c = connected()
    p = encode_publish("cc/gauges/a/reading", b"x" * 300, 1, 9)  # a two-byte remaining length
    assert c.receive_data(p[:2]) == [] and c.receive_data(p[2:-1]) == [] and c.data_to_send() == b""
    assert c.receive_data(p[-1:]) == [Publish("cc/gauges/a/reading", b"x" * 300, 1, 9)]
    assert c.data_to_send() == b"\x40\x02\x00\x09"


def test_qos2_is_delivered_once_and_completed() -> None:
    c = connected()
    p = encode_publish("t/a", b"1", 2, 5)
    assert len(c.receive_data(p)) == 1 and c.data_to_send() == b"\x50\x02\x00\x05"  # PUBREC
    assert c.receive_data(encode_publish("t/a", b"1", 2, 5, dup=True)) == []  # redelivered before PUBREL
    c.data_to_send()
    assert c.receive_data(b"\x62\x02\x00\x05") == [] and c.data_to_send() == b"\x70\x02\x00\x05"  # PUBCOMP


def test_subscribe_suback_puback_and_refusals_are_events() -> None:
    c = ClientConnection("x")
    c.connect(0.0)
    c.data_to_send()
    assert c.receive_data(bytes((0x20, 2, 1, 5))) == [ConnAck(True, 5)] and not c.connected
    assert ConnAck(True, 5).reason == "not authorized"
    c = connected()
    pid = c.subscribe([("cc/gauges/+/reading", 1), ("cc/gauges/batch", 1)])
    assert c.data_to_send() == (b"\x82\x2a" + pid.to_bytes(2, "big") + b"\x00\x13cc/gauges/+/reading\x01"
                                b"\x00\x0fcc/gauges/batch\x01")
    assert c.receive_data(b"\x90\x04" + pid.to_bytes(2, "big") + b"\x01\x80") == [SubAck(pid, (1, 0x80))]
    assert c.receive_data(b"\x40\x02\x00\x07\xd0\x00") == [PubAck(7), PingResp()]


def test_keepalive_pings_when_idle_and_gives_up_on_a_silent_broker() -> None:
    c = connected()
    assert c.poll(4.0) and c.data_to_send(4.0) == b""
    assert c.poll(5.0) and c.data_to_send(5.0) == b"\xc0\x00"
    c.receive_data(b"\xd0\x00", 6.0)
    assert c.poll(20.9) and not c.poll(21.1)


@pytest.mark.parametrize("bad", [
    b"\xf0\x00",  # reserved type 15
    b"\x10\x00",  # CONNECT from a server
    b"\x20\x02\x00\x00",  # a second CONNACK
    b"\x36\x05\x00\x01a\x00\x01",  # QoS 3
    b"\x32\x05\x00\x01a\x00\x00",  # packet id 0
    b"\x30\x03\x00\x02\xff",  # topic cut short
    b"\x30\x04\x00\x02\xff\xfe",  # topic not UTF-8
    b"\x30\x04\x00\x02a#",  # wildcard in a topic name
    b"\x30\xff\xff\xff\xff\x01",  # remaining length of 5 bytes
    b"\x41\x02\x00\x01",  # PUBACK with flags
    b"\x90\x03\x00\x01\x03",  # SUBACK code 3
])
def test_malformed_packets_raise_protocol_error(bad: bytes) -> None:
    with pytest.raises(ProtocolError):
        connected().receive_data(bad)


def test_a_packet_over_the_limit_is_refused_before_it_is_buffered() -> None:
    c = connected(max_packet=1000)
    with pytest.raises(ProtocolError, match="limit 1000"):
        c.receive_data(b"\x30\xe9\x07")  # announces 1001 bytes


def test_encode_publish_refuses_what_mqtt_forbids() -> None:
    for args in (("a/+", b"", 0, 0), ("", b"", 0, 0), ("a", b"", 1, 0), ("a", b"", 3, 1)):
        with pytest.raises(ValueError):
            encode_publish(*args)
