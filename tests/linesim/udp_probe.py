"""A UDP probe for the line tests: ``receive`` (run behind the line) and :func:`blast` (the sender).

Each datagram carries its sequence number and the sender's ``time.monotonic()`` (one clock for
every namespace of a host), so the receiver measures one-way delay, loss, order and rate. The
receiver prints ``ready`` when bound, then one JSON line when ``quiet_s`` passes without a packet
(or ``max_s`` passes).
"""
from __future__ import annotations

import json
import socket
import struct
import sys
import time

HEADER = struct.Struct("!Id")
IP_UDP_OVERHEAD = 28


def receive(host: str, port: int, quiet_s: float = 1.0, max_s: float = 30.0) -> dict[str, object]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((host, port))
    print("ready", flush=True)
    rows: list[tuple[int, float, float, int]] = []
    start = time.monotonic()
    sock.settimeout(max_s)
    while time.monotonic() - start < max_s:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        now = time.monotonic()
        seq, sent = HEADER.unpack_from(data)
        rows.append((seq, sent, now, len(data)))
        sock.settimeout(quiet_s)
    sock.close()
    seqs = [r[0] for r in rows]
    delays = sorted(r[2] - r[1] for r in rows)
    # Rate over the middle of the run (the first and last 10 % are the queue filling and draining).
    rate_kbps = 0.0
    if len(rows) > 20:
        a, b = rows[len(rows) // 10], rows[-len(rows) // 10]
        octets = sum(r[3] + IP_UDP_OVERHEAD for r in rows[len(rows) // 10 + 1: -len(rows) // 10 + 1])
        rate_kbps = octets * 8 / 1000 / (b[2] - a[2]) if b[2] > a[2] else 0.0
    return {
        "received": len(rows),
        "in_order": seqs == sorted(seqs),
        "max_seq": max(seqs) if seqs else -1,
        "min_delay_ms": round(1000 * delays[0], 2) if delays else None,
        "median_delay_ms": round(1000 * delays[len(delays) // 2], 2) if delays else None,
        "rate_kbps": round(rate_kbps, 1),
    }


def blast(host: str, port: int, kbps: float, seconds: float, size: int = 1000) -> int:
    """Send ``size``-byte datagrams at ``kbps`` (IP bytes) for ``seconds``; returns how many were sent."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    interval = (size + IP_UDP_OVERHEAD) * 8 / 1000 / kbps
    start = time.monotonic()
    seq = 0
    while True:
        due = start + seq * interval
        if due - start >= seconds:
            break
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        sock.sendto(HEADER.pack(seq, time.monotonic()).ljust(size, b"\0"), (host, port))
        seq += 1
    sock.close()
    return seq


if __name__ == "__main__":
    print(json.dumps(receive(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 1.0)),
          flush=True)
