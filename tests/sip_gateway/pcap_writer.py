"""Write datagrams into a pcap file, so tshark can judge a wire format we build without a network.

IPv4/UDP in LINKTYPE_RAW (101); the IPv4 header checksum is computed, the UDP checksum left 0
(allowed for IPv4, RFC 768).
"""
from __future__ import annotations

import struct
from pathlib import Path


def _ipv4_checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_packet(payload: bytes, sport: int, dport: int, src: str = "127.0.0.1", dst: str = "127.0.0.1") -> bytes:
    """One IPv4/UDP datagram carrying ``payload``."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    addresses = bytes(int(p) for p in src.split(".")) + bytes(int(p) for p in dst.split("."))
    header = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0) + addresses
    header = header[:10] + struct.pack("!H", _ipv4_checksum(header)) + header[12:]
    return header + udp


def write_pcap(path: Path, datagrams: list[tuple[bytes, int, int]]) -> Path:
    """Write ``(payload, source port, destination port)`` datagrams, one per 20 ms."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
    for i, (payload, sport, dport) in enumerate(datagrams):
        packet = udp_packet(payload, sport, dport)
        out += struct.pack("<IIII", 1_800_000_000, i * 20_000, len(packet), len(packet)) + packet
    path.write_bytes(bytes(out))
    return path
