"""The cost of BFCP signalling (issue 18): expected negligible beside media.

    PYTHONPATH=. python bench/bfcp.py [--cycles 20000] [--round-trips 2000]

* **core**: the pure floor control server (``sip_gateway.bfcp``) over a real content token, two
  clients subscribed to FloorStatus: one cycle = FloorRequest (Granted) + FloorRelease (Released),
  each decoded, decided, answered and the subscriber notified; microseconds of CPU per cycle.
* **tcp**: the asyncio listener on 127.0.0.1 and one client: FloorRequest → FloorRequestStatus →
  FloorRelease → FloorRequestStatus round trips, one after the other; round trips per second and the
  process CPU per message (client and server share the process, so this is an upper bound).
* **udp**: the same round trips over UDP (RFC 8855 §6.2: version 2, the response cache and the R
  flag on the way; no retransmission happens on loopback).

Writes bench/results/bfcp.json.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import write_result  # noqa: E402
from mcu.content.token import ContentToken  # noqa: E402
from sip_gateway.aio.bfcp_listener import BfcpListener  # noqa: E402
from sip_gateway.bfcp.message import (  # noqa: E402
    HEADER_LEN,
    AttributeType,
    Message,
    Primitive,
    decode,
    encode,
    message_length,
    u16,
)
from sip_gateway.bfcp.server import FloorControlServer  # noqa: E402

CONF = 80000001


def _request(user: int, tid: int) -> bytes:
    return encode(Message(Primitive.FLOOR_REQUEST, CONF, tid, user, (u16(AttributeType.FLOOR_ID, 1),)))


def _release(user: int, tid: int, rid: int) -> bytes:
    return encode(Message(Primitive.FLOOR_RELEASE, CONF, tid, user, (u16(AttributeType.FLOOR_REQUEST_ID, rid),)))


def _rid(data: bytes) -> int:
    info = decode(data).first(AttributeType.FLOOR_REQUEST_INFORMATION)
    assert info is not None
    return info.header


def core(cycles: int) -> dict[str, float]:
    server = FloorControlServer(CONF, 1, ContentToken())
    server.add_client(1, "a")
    server.add_client(2, "b")
    server.receive(encode(Message(Primitive.FLOOR_QUERY, CONF, 1, 2, (u16(AttributeType.FLOOR_ID, 1),))), 0.0)
    start = time.process_time()
    for n in range(cycles):
        out = server.receive(_request(1, 2 * n + 2), float(n))
        server.receive(_release(1, 2 * n + 3, _rid(out[0].data)), float(n))
    cpu = time.process_time() - start
    return {"cycles": cycles, "us_per_cycle": round(cpu / cycles * 1e6, 1),
            "us_per_message": round(cpu / cycles / 2 * 1e6, 1)}


async def _receive(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(HEADER_LEN)
    length = message_length(header)
    assert length is not None
    return header + await reader.readexactly(length - HEADER_LEN)


async def tcp(round_trips: int) -> dict[str, float]:
    listener = BfcpListener("127.0.0.1", (40000, 49999))
    await listener.start()
    server = listener.server_for(CONF, 1, ContentToken())
    server.add_client(1, "a")
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        for n in range(round_trips // 2):
            writer.write(_request(1, 2 * n + 1))
            rid = _rid(await _receive(reader))
            writer.write(_release(1, 2 * n + 2, rid))
            await _receive(reader)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        writer.close()
        await listener.close()
    return {"round_trips": round_trips, "round_trips_per_s": round(round_trips / wall),
            "cpu_us_per_round_trip": round(cpu / round_trips * 1e6, 1)}


class _Udp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)


def _v2(data: bytes) -> bytes:
    return bytes([(data[0] & 0x1F) | 0x40]) + data[1:]


async def udp(round_trips: int) -> dict[str, float]:
    listener = BfcpListener("127.0.0.1", (40000, 49999))
    await listener.start()
    server = listener.server_for(CONF, 1, ContentToken())
    server.add_client(1, "a")
    transport, client = await asyncio.get_running_loop().create_datagram_endpoint(
        _Udp, remote_addr=("127.0.0.1", listener.port))
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        for n in range(round_trips // 2):
            transport.sendto(_v2(_request(1, 2 * n + 1)))
            rid = _rid(await asyncio.wait_for(client.queue.get(), 5))
            transport.sendto(_v2(_release(1, 2 * n + 2, rid)))
            await asyncio.wait_for(client.queue.get(), 5)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        transport.close()
        await listener.close()
    return {"round_trips": round_trips, "round_trips_per_s": round(round_trips / wall),
            "cpu_us_per_round_trip": round(cpu / round_trips * 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=20000)
    parser.add_argument("--round-trips", type=int, default=2000)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    result = {"core": core(args.cycles), "tcp": asyncio.run(tcp(args.round_trips)),
              "udp": asyncio.run(udp(args.round_trips))}
    write_result("bfcp", result, load)


if __name__ == "__main__":
    main()
