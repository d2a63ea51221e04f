"""Helpers for the H.323 tests: a pcap writer with real IPv4/TCP/UDP headers, tshark
runners, and a pump that connects two sans-I/O calls in memory."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from sip_gateway.h323.call import Call
from sip_gateway.h323.events import Event

TSHARK = shutil.which("tshark")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv4(src: str, dst: str, proto: int, payload: bytes, ident: int) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident & 0xFFFF, 0x4000, 64, proto, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + payload


def _tcp(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes) -> bytes:
    header = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags,
                         65535, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(header) + len(payload))
    csum = _checksum(pseudo + header + payload)
    return header[:16] + struct.pack("!H", csum) + header[18:] + payload


def _udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    header = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 17, 8 + len(payload))
    csum = _checksum(pseudo + header + payload) or 0xFFFF
    return header[:6] + struct.pack("!H", csum) + payload


class PcapWriter:
    """Classic pcap, Ethernet link type, microsecond timestamps."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("wb")
        self._file.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        self._time = 1_700_000_000.0
        self._ident = 1

    def _frame(self, ip_packet: bytes) -> None:
        frame = b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + b"\x08\x00" + ip_packet
        self._time += 0.001
        sec = int(self._time)
        usec = int((self._time - sec) * 1e6)
        self._file.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)

    def tcp_conversation(self, segments: Iterable[tuple[bool, bytes]], client: tuple[str, int],
                         server: tuple[str, int]) -> None:
        """Handshake, one segment per payload (True = client to server), then FIN/ACK both ways."""
        seq = {True: 1000, False: 5000}
        ends = {True: client, False: server}

        def send(from_client: bool, flags: int, payload: bytes = b"", syn_fin: int = 0) -> None:
            (src, sport), (dst, dport) = ends[from_client], ends[not from_client]
            ack = seq[not from_client] if flags & 0x10 else 0
            self._ident += 1
            self._frame(_ipv4(src, dst, 6, _tcp(src, dst, sport, dport, seq[from_client], ack, flags, payload),
                              self._ident))
            seq[from_client] += len(payload) + syn_fin

        send(True, 0x02, syn_fin=1)
        send(False, 0x12, syn_fin=1)
        send(True, 0x10)
        for from_client, payload in segments:
            send(from_client, 0x18, payload)
        send(True, 0x11, syn_fin=1)
        send(False, 0x11, syn_fin=1)
        send(True, 0x10)

    def udp(self, src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> None:
        self._ident += 1
        self._frame(_ipv4(src[0], dst[0], 17, _udp(src[0], dst[0], src[1], dst[1], payload), self._ident))

    def close(self) -> None:
        self._file.close()


def tshark_fields(path: Path, display_filter: str, *fields: str, options: Sequence[str] = ()) -> list[str]:
    """Lines of ``tshark -r path -Y filter`` (with -T fields when fields are given; ``options``
    e.g. ``("-d", "udp.port==5000,h225")``)."""
    assert TSHARK is not None
    cmd = [TSHARK, "-r", str(path), *options, "-Y", display_filter]
    if fields:
        cmd += ["-T", "fields", *sum((["-e", f] for f in fields), [])]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    return [line for line in result.stdout.splitlines() if line.strip()]


BAD_FILTER = '_ws.malformed or _ws.expert.severity >= "warning"'


class LoopbackCapture:
    """``tshark -i lo -f FILTER -w FILE`` for the duration of a ``with`` block (we are root)."""

    def __init__(self, path: Path, capture_filter: str) -> None:
        self.path = path
        self.filter = capture_filter
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LoopbackCapture:
        assert TSHARK is not None
        self._proc = subprocess.Popen([TSHARK, "-i", "lo", "-f", self.filter, "-w", str(self.path)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert self._proc.stderr is not None
        deadline = time.monotonic() + 20
        seen = b""
        os.set_blocking(self._proc.stderr.fileno(), False)
        while b"Capturing on" not in seen:
            if time.monotonic() > deadline or self._proc.poll() is not None:
                raise RuntimeError(f"tshark did not start: {seen!r}")
            chunk = self._proc.stderr.read()
            if chunk:
                seen += chunk
            time.sleep(0.05)
        time.sleep(0.3)  # dumpcap reports before the filter is fully attached on some kernels
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        time.sleep(0.5)
        self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def pump(a: Call, b: Call, now: float, events: dict[str, list[Event]], max_rounds: int = 50) -> None:
    """Move bytes between two calls (both connections) until both are quiet."""
    for _ in range(max_rounds):
        moved = False
        for src, dst, key in ((a, b, "b"), (b, a, "a")):
            data = src.data_to_send()
            if data:
                events[key].extend(dst.receive_data(data, now))
                moved = True
            data = src.h245_data_to_send()
            if data:
                events[key].extend(dst.receive_h245_data(data, now))
                moved = True
        if not moved:
            return
    raise AssertionError("calls kept talking")


PI_SEQUENCE = 0x02000000  # Wireshark expert group of TCP sequence analysis (retransmission, D-SACK, ...)


def wire_problems(path: Path, tolerate_tcp_sequence: bool = False, options: Sequence[str] = ()) -> list[str]:
    """Frames matching ``BAD_FILTER``.

    In a live loopback capture the kernel sometimes retransmits a FIN or sends a D-SACK
    (tail-loss probe racing a delayed ACK). Those are TCP's business, not our protocol's:
    with ``tolerate_tcp_sequence`` a frame is ignored when every expert item in it is of
    the TCP sequence group and nothing is malformed. Synthetic pcaps use the strict form.
    """
    lines = tshark_fields(path, BAD_FILTER, "frame.number", "_ws.expert.group", "_ws.malformed", "tcp.len",
                          options=options)
    problems = []
    for line in lines:
        number, groups, malformed, *_ = (line.split("\t") + ["", "", ""])[:4]
        only_sequence = bool(groups) and all(int(g or 0) == PI_SEQUENCE for g in groups.split(","))
        if tolerate_tcp_sequence and only_sequence and not malformed:
            continue
        problems.append(line)
    return problems
