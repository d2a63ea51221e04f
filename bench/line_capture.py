"""A capture of what reaches a site behind an emulated line (bench/lines.py, bench/lines_peers.py).

An NFLOG rule on the peer's INPUT chain, inside the line's namespace, sees each packet after the
line's loss stage (which runs in mangle PREROUTING, tests/linesim/line.py); tshark in the namespace
writes them to a pcapng file. Read back per UDP source port (the MCU's media port of the stream).
"""
from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

from bench.video_frames import RtpRow
from tests.linesim.line import Line

__all__ = ["NFLOG_GROUP", "capture_behind", "tshark_rows", "video_rows"]

NFLOG_GROUP = 7
READY_TIMEOUT_S = 30.0


@contextlib.asynccontextmanager
async def capture_behind(line: Line, pcap: Path) -> AsyncIterator[None]:
    """Capture the UDP the peer behind ``line`` receives into ``pcap`` while the block runs."""
    await asyncio.to_thread(
        subprocess.run, line.exec_args("iptables", "-A", "INPUT", "-i", line.peer_iface, "-p", "udp", "-j",
                                       "NFLOG", "--nflog-group", str(NFLOG_GROUP), "-m", "comment",
                                       "--comment", "linesim"),
        check=True, capture_output=True, timeout=10)
    capture = await asyncio.create_subprocess_exec(
        *line.exec_args("tshark", "-B", "32", "-i", f"nflog:{NFLOG_GROUP}", "-w", str(pcap), "-q"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        assert capture.stderr is not None
        async with asyncio.timeout(READY_TIMEOUT_S):
            while b"Capturing on" not in await capture.stderr.readline():
                pass
        await asyncio.sleep(1.0)
        yield
    finally:
        if capture.returncode is None:
            capture.terminate()
        await asyncio.wait_for(capture.wait(), 20)


async def tshark_rows(pcap: Path, port: int) -> list[list[str]]:
    """(time, seq, timestamp, marker, udp length, payload hex) of the RTP sent from ``port``."""
    proc = await asyncio.create_subprocess_exec(
        "tshark", "-r", str(pcap), "-d", f"udp.port=={port},rtp", "-Y", f"udp.srcport=={port} && rtp",
        "-T", "fields", "-e", "frame.time_epoch", "-e", "rtp.seq", "-e", "rtp.timestamp", "-e", "rtp.marker",
        "-e", "udp.length", "-e", "rtp.payload",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await asyncio.wait_for(proc.communicate(), 300)
    return [line.split("\t") for line in out.decode().splitlines() if line.count("\t") >= 4]


async def video_rows(pcap: Path, port: int) -> list[RtpRow]:
    """The video sent from ``port`` as bench.video_frames rows (RTP bytes = UDP length - 8)."""
    return [(float(r[0]), int(r[1]), int(r[2]), r[3] in ("1", "True"), int(r[4]) - 8,
             bytes.fromhex(r[5].replace(":", "")) if len(r) > 5 else b"")
            for r in await tshark_rows(pcap, port)]
