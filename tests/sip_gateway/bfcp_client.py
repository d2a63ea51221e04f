"""A small BFCP client for the tests (RFC 8855 over TCP), built on our codec; tshark judges the wire."""
from __future__ import annotations

import asyncio
import shutil
import ssl
from pathlib import Path
from typing import cast

from sip_gateway.bfcp.message import (
    HEADER_LEN,
    Attribute,
    AttributeType,
    Message,
    Primitive,
    decode,
    encode,
    message_length,
    split_request_status,
    u16,
)


class BfcpClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conference_id: int,
                 user_id: int) -> None:
        self.reader, self.writer = reader, writer
        self.conference_id, self.user_id = conference_id, user_id
        self.tid = 0
        self.local_port = int(writer.get_extra_info("sockname")[1])

    @classmethod
    async def connect(cls, host: str, port: int, conference_id: int, user_id: int,
                      tls: ssl.SSLContext | None = None) -> BfcpClient:
        reader, writer = await asyncio.open_connection(host, port, ssl=tls)
        return cls(reader, writer, conference_id, user_id)

    async def send(self, primitive: Primitive, *attributes: Attribute) -> int:
        self.tid += 1
        self.writer.write(encode(Message(primitive, self.conference_id, self.tid, self.user_id, attributes)))
        await self.writer.drain()
        return self.tid

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def receive(self) -> Message:
        async with asyncio.timeout(5.0):
            header = await self.reader.readexactly(HEADER_LEN)
            length = message_length(header)
            assert length is not None
            rest = await self.reader.readexactly(length - HEADER_LEN)
        return decode(header + rest)

    async def request(self, primitive: Primitive, *attributes: Attribute) -> Message:
        """Send and wait for the answer with our transaction id (notifications before it are skipped)."""
        tid = await self.send(primitive, *attributes)
        while True:
            message = await self.receive()
            if message.transaction_id == tid:
                return message

    async def floor_request(self, floor_id: int) -> tuple[int, int]:
        """(floor request id, request status) of the answer to a FloorRequest."""
        return request_status_of(await self.request(Primitive.FLOOR_REQUEST, u16(AttributeType.FLOOR_ID, floor_id)))

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


def request_status_of(message: Message) -> tuple[int, int]:
    info = message.first(AttributeType.FLOOR_REQUEST_INFORMATION)
    assert info is not None, message
    overall = next(a for a in info.children if a.type == AttributeType.OVERALL_REQUEST_STATUS)
    return info.header, split_request_status(overall.children[0])[0]


def error_code_of(message: Message) -> int:
    assert message.primitive == Primitive.ERROR, message
    attribute = message.first(AttributeType.ERROR_CODE)
    assert attribute is not None
    return attribute.octets[0]


class UdpBfcpClient(asyncio.DatagramProtocol):
    """A BFCP client over UDP (RFC 8855 §6.2: version 2, acknowledges what the server sends on its own
    unless told not to)."""

    def __init__(self, conference_id: int, user_id: int) -> None:
        self.conference_id, self.user_id = conference_id, user_id
        self.tid = 0
        self.queue: asyncio.Queue[Message] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None
        self.ack = True
        self.local_port = 0

    @classmethod
    async def connect(cls, host: str, port: int, conference_id: int, user_id: int) -> UdpBfcpClient:
        _, client = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: cls(conference_id, user_id), remote_addr=(host, port))
        return client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.local_port = int(transport.get_extra_info("sockname")[1])

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        message = decode(data, versions=(2,))
        if self.ack and not message.responder and message.primitive in (
                Primitive.FLOOR_STATUS, Primitive.FLOOR_REQUEST_STATUS):
            ack = (Primitive.FLOOR_STATUS_ACK if message.primitive == Primitive.FLOOR_STATUS
                   else Primitive.FLOOR_REQUEST_STATUS_ACK)
            self.send_raw(encode(Message(ack, self.conference_id, message.transaction_id, self.user_id,
                                         version=2, responder=True)))
        self.queue.put_nowait(message)

    def send(self, primitive: Primitive, *attributes: Attribute, tid: int | None = None) -> int:
        if tid is None:
            self.tid += 1
            tid = self.tid
        self.send_raw(encode(Message(primitive, self.conference_id, tid, self.user_id, attributes, version=2)))
        return tid

    def send_raw(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.sendto(data)

    async def receive(self, within: float = 5.0) -> Message:
        async with asyncio.timeout(within):
            return await self.queue.get()

    async def request(self, primitive: Primitive, *attributes: Attribute) -> Message:
        tid = self.send(primitive, *attributes)
        while True:
            message = await self.receive()
            if message.transaction_id == tid and message.responder:
                return message

    async def floor_request(self, floor_id: int) -> tuple[int, int]:
        return request_status_of(await self.request(Primitive.FLOOR_REQUEST, u16(AttributeType.FLOOR_ID, floor_id)))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Capture:
    """tshark on the loopback for one port (the BFCP listener): TCP by default, ``udp`` or ``tls``
    (TCP, decrypted with ``keylog``: the client's TLS key log)."""

    def __init__(self, port: int, path: Path, transport: str = "tcp", keylog: Path | None = None) -> None:
        self.port, self.path = port, path
        self.transport, self.keylog = transport, keylog
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Capture:
        assert shutil.which("tshark"), "tshark missing (Debian tshark, in TEST_DEBS)"
        self.proc = await asyncio.create_subprocess_exec(
            "tshark", "-i", "lo", "-f", f"{'udp' if self.transport == 'udp' else 'tcp'} port {self.port}",
            "-F", "pcap", "-w", str(self.path), "-q",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        assert self.proc.stderr is not None
        async with asyncio.timeout(20):
            while b"Capturing on" not in await self.proc.stderr.readline():
                pass
        await asyncio.sleep(1.0)  # dumpcap announces itself a moment before it really captures
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.sleep(0.5)
        if self.proc is not None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 20)

    def udp_payloads(self) -> list[tuple[int, bytes]]:
        """(source port, payload) of every UDP datagram captured (the capture is a pcap of Ethernet frames)."""
        return [(src, payload) for src, payload, _ in _udp_records(self.path.read_bytes())]

    def v1_view(self) -> Path:
        """A copy of the UDP capture with each BFCP version 2 header shown as version 1.

        Debian bookworm's tshark (Wireshark 4.0) dissects BFCP version 1 only (its heuristic and decoder
        accept a first octet of 0x20 or 0x30); RFC 8855 requires version 2 over UDP. The test checks the
        version/R/F octet itself (:meth:`udp_payloads`) and lets tshark judge everything after it in
        this copy: primitive, lengths, ids, every attribute and its padding, and the R flag (0x10)."""
        data = bytearray(self.path.read_bytes())
        for _, _, at in _udp_records(bytes(data)):
            if data[at] >> 5 == 2:
                data[at] = (1 << 5) | (data[at] & 0x1F)
        view = self.path.with_suffix(".v1.pcap")
        view.write_bytes(bytes(data))
        return view

    async def fields(self, display_filter: str, *fields: str) -> list[list[str]]:
        if self.transport == "tls":
            assert self.keylog is not None
            args = ["-r", str(self.path), "-o", f"tls.keylog_file:{self.keylog}", "-d", f"tcp.port=={self.port},tls"]
        elif self.transport == "udp":
            args = ["-r", str(self.v1_view()), "-d", f"udp.port=={self.port},bfcp"]
        else:
            args = ["-r", str(self.path), "-d", f"{self.transport}.port=={self.port},bfcp"]
        args += ["-Y", display_filter, "-T", "fields"]
        for f in fields:
            args += ["-e", f]
        proc = await asyncio.create_subprocess_exec("tshark", *args, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.DEVNULL)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        return [line.split("\t") for line in out.decode().splitlines() if line.strip()]


def _udp_records(pcap: bytes) -> list[tuple[int, bytes, int]]:
    """(source port, payload, payload offset in the file) of each IPv4/UDP frame of a pcap on Ethernet."""
    out: list[tuple[int, bytes, int]] = []
    at = 24
    while at + 16 <= len(pcap):
        caplen = int.from_bytes(pcap[at + 8:at + 12], "little")
        frame = at + 16
        if pcap[frame + 12:frame + 14] == b"\x08\x00" and pcap[frame + 23] == 17:
            ip = frame + 14
            udp = ip + (pcap[ip] & 0x0F) * 4
            length = int.from_bytes(pcap[udp + 4:udp + 6], "big") - 8
            out.append((int.from_bytes(pcap[udp:udp + 2], "big"), pcap[udp + 8:udp + 8 + length], udp + 8))
        at = frame + caplen
    return out
