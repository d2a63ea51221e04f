"""MCU media benchmark through real SIP legs: N sites asked for their pane size (issue 16).

    python -m bench.mcu_mix_legs                  # N = 25, 49, 64; 1 run of 8 s each
    python -m bench.mcu_mix_legs --runs 3 --sizes 25 49 64 --seconds 8

``bench/mcu_mix --panes`` pushes decoded frames into a room from threads. Here the path is the
product's: N SIP sites dial the standing conference of a real :class:`~mcu.conferences.ConferenceService`
through its SIP bridge (:mod:`mcu.legs.sip_bridge`, every site on a stated 2 Mbit/s line so all
receive the 720p tier), and the MCU process does socket → RTP depacketize → jitter buffer →
decode (the legs' own decoders, following the pane size) → compose → encode → send to every leg.

The N sites are ONE light process (``--sources``, :func:`run_sources`): our own SIP stack
(:class:`~sip_gateway.aio.sip_endpoint.SipEndpoint`) as a user agent placing N calls, each
offering H.264 level 3.1 (720p) and playing PRE-ENCODED H.264 as RTP (mcu_mix's clips: 720p25
1.5 Mbit/s, and 256x144 150 kbit/s), packetized once at start (STAP-A/FU-A). It never decodes or
encodes, and never reads what the MCU sends it. When the MCU re-INVITEs a site with
``a=imageattr ... recv [x=W,y=H]`` (mcu/legs/sip.py, once the layout settles), the site answers
with an imageattr of its own (``send [x=W,y=H] recv *``: what a site must answer to be asked
again, see ``SipSite.ask_pane_size``) and switches, on a key frame, to the smallest clip at
least that big (the 720p clip for anything above 256x144). A key-frame request (SIP INFO
picture_fast_update, which the MCU sends with every RTCP PLI) makes it jump to the next key frame.

Measured, per run, over ``--seconds`` after the layout settled (every shown site decoded at the
asked size, or ``--settle`` seconds):

* output fps: packets of the broadcast 1280x720 encoder (the one the sites are sent) per second;
* latency p50/p95: from the moment the MCU's event loop read a source frame's LAST RTP packet
  from the leg's socket (``datagram_received``: the closest point to the socket we can stamp;
  a frame waiting in the kernel's buffer while the loop is busy is not counted) to the first
  encoded packet of the broadcast encoder containing that frame. The frame is matched to its
  packets by RTP timestamp (the legs' H.264 decoder stamps frames with it); frames decoded
  without it (``fast`` mode, only before a source switched) use the newest complete frame's
  read time and are counted (``unmatched_frames``);
* "sent" latency p50/p95: from the moment the sources' process handed the frame's last RTP packet
  to the kernel (loopback: when it is in the MCU leg's socket buffer; CLOCK_MONOTONIC is shared
  by both processes) to the same first encoded packet. It adds what the first one leaves out:
  the time a frame waits in the socket while the MCU's event loop is busy;
* MCU process CPU (cores = CPU-seconds / wall second; the sources' process is measured
  apart, ``sources_cores``; embedded PostgreSQL is not counted);
* frames decoded/s and skipped/s by the legs (hidden sites are not decoded);
* pane re-INVITEs sent, and how many sites the sources switched to the small clip.

Writes bench/results/mcu_mix_legs.json (every run and median/min/max per N) and prints a table.
Figures depend on machine load: each run records the load average before and after.
"""
from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import heapq
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import av

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # allow `python bench/mcu_mix_legs.py`
    sys.path.insert(0, str(ROOT))

from bench.mcu_mix import FPS, INPUTS, PANE_SIZE, SOURCES, BroadcastTap, cpu_seconds, load_clip, make_clip  # noqa: E402
from sip_gateway.rtp.codecs import packetize_h264  # noqa: E402
from sip_gateway.rtp.media_description import LocalMedia, MediaPolicy  # noqa: E402
from sip_gateway.sip import events as ev  # noqa: E402
from sip_gateway.sip.dialog import Call, CallState  # noqa: E402
from sip_gateway.sip.sdp import SessionDescription  # noqa: E402
from sip_gateway.sip.uri import NameAddr  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "mcu_mix_legs.json"
DEMO = "80000001"  # the standing conference
LINE_KBPS = 2000  # every site's stated line: all of them get the 720p tier, as in mcu_mix
RTP_CLOCK = 90_000
SENT_LOG = 25 * 30  # frames whose send time a source keeps (30 s)
SOURCE_PORTS = (40000, 59999)  # the sources' RTP ports (the MCU's are settings.rtp, 20000-29999)
CONFIGS: dict[int, str | None] = {25: None, 49: None, 64: "5x5"}  # N -> layout (None: auto; 64: 25 shown)
_IMAGEATTR_RECV = re.compile(r"recv\s+\[x=(\d+),y=(\d+)")


# ---- pure helpers --------------------------------------------------------------------------------
def parameter_sets(extradata: bytes) -> list[bytes]:
    """SPS and PPS NAL units of an ``avcC`` record (ISO 14496-15), in order."""
    if len(extradata) < 7 or extradata[0] != 1:
        raise ValueError("not an avcC record")
    out: list[bytes] = []
    pos = 5
    for count_mask in (0x1F, 0xFF):  # numOfSequenceParameterSets (5 bits), numOfPictureParameterSets
        count = extradata[pos] & count_mask
        pos += 1
        for _ in range(count):
            size = int.from_bytes(extradata[pos:pos + 2], "big")
            out.append(extradata[pos + 2:pos + 2 + size])
            pos += 2 + size
    return out


def annexb_access_unit(avcc: bytes, prefix: Sequence[bytes] = ()) -> bytes:
    """An mp4 (4-byte length-prefixed) access unit as Annex B, after the ``prefix`` NAL units."""
    nals = list(prefix)
    pos = 0
    while pos + 4 <= len(avcc):
        size = int.from_bytes(avcc[pos:pos + 4], "big")
        nals.append(avcc[pos + 4:pos + 4 + size])
        pos += 4 + size
    return b"".join(b"\x00\x00\x00\x01" + nal for nal in nals if nal)


def rtp_packet(payload: bytes, pt: int, seq: int, ts: int, ssrc: int, marker: bool) -> bytes:
    """One RTP packet (version 2, no CSRC, no extension)."""
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def asked_size(offer: SessionDescription) -> tuple[int, int] | None:
    """The size an offer's video ``a=imageattr`` asks us to send (RFC 6236 ``recv [x=W,y=H]``), or None."""
    for media in offer.media:
        if media.kind == "video" and media.port:
            for value in media.attrs("imageattr"):
                if m := _IMAGEATTR_RECV.search(value):
                    return int(m.group(1)), int(m.group(2))
    return None


def with_imageattr_answer(answer: SessionDescription, size: tuple[int, int]) -> SessionDescription:
    """``answer`` with ``a=imageattr:<pt> send [x=W,y=H] recv *`` on its video: we send the asked size."""
    for media in answer.media:
        if media.kind == "video" and media.port and media.formats:
            media.attributes.append(("imageattr", f"{media.formats[0]} send [x={size[0]},y={size[1]}] recv *"))
    return answer


@dataclass
class RtpClip:
    """A clip ready to send: per frame, its RTP payloads (packetization-mode 1); key frame indices."""

    size: tuple[int, int]
    frames: list[list[bytes]]
    keyframes: list[int]

    def next_key(self, pos: int) -> int:
        """The first key frame at or after ``pos`` (wrapping to the clip's start)."""
        pos %= len(self.frames)
        i = bisect.bisect_left(self.keyframes, pos)
        return self.keyframes[i] if i < len(self.keyframes) else self.keyframes[0]


def rtp_clip(path: Path) -> RtpClip:
    """Load an mp4 (mcu_mix's clips) and packetize every access unit once; SPS/PPS before each IDR."""
    clip = load_clip(path)
    assert clip.extradata is not None
    sets = parameter_sets(clip.extradata)
    keys = set(clip.keyframes)
    frames = [packetize_h264(annexb_access_unit(p, sets if i in keys else []), 1) for i, p in enumerate(clip.packets)]
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        size = (stream.codec_context.width, stream.codec_context.height)
    return RtpClip(size, frames, sorted(keys))


def clip_for(size: tuple[int, int] | None, clips: list[RtpClip]) -> RtpClip:
    """The smallest clip at least ``size`` in both directions; the biggest when none is (or no size)."""
    by_area = sorted(clips, key=lambda c: c.size[0] * c.size[1])
    if size is not None:
        for clip in by_area:
            if clip.size[0] >= size[0] and clip.size[1] >= size[1]:
                return clip
    return by_area[-1]


def summarize(values: list[float]) -> dict[str, float]:
    """median/min/max of the runs that produced the figure."""
    return {"median": round(statistics.median(values), 3), "min": min(values), "max": max(values)}


# ---- the sources' process ------------------------------------------------------------------------
@dataclass(eq=False)
class SourceSite:
    """One simulated room system: its call, its RTP sockets and where it is in its clip."""

    index: int
    video: socket.socket
    keep: list[socket.socket]  # its other bound sockets (audio, RTCP), never read
    clip: RtpClip
    pos: int
    call: Call | None = None
    pt: int = 0
    remote: tuple[str, int] | None = None
    ssrc: int = field(default_factory=lambda: secrets.randbits(32))
    seq: int = field(default_factory=lambda: secrets.randbits(16))
    ts: int = field(default_factory=lambda: secrets.randbits(32))
    asked: tuple[int, int] | None = None
    asks: int = 0
    switches: int = 0
    key_requests: int = 0
    frames_sent: int = 0
    bytes_sent: int = 0
    key_wanted: bool = False
    sent: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=SENT_LOG))  # (RTP ts, sent at)

    def stats(self) -> dict[str, Any]:
        return {"site": f"site{self.index:02d}", "connected": self.remote is not None,
                "asked": list(self.asked) if self.asked else None, "asks": self.asks,
                "sending": f"{self.clip.size[0]}x{self.clip.size[1]}", "switches": self.switches,
                "key_requests": self.key_requests, "frames_sent": self.frames_sent, "bytes_sent": self.bytes_sent}


def _bind_pair(host: str) -> tuple[socket.socket, socket.socket]:
    from sip_gateway.aio.ports import bind_pair, candidate_ports
    for port in candidate_ports(SOURCE_PORTS):
        pair = bind_pair(host, port)
        if pair is not None:
            return pair
    raise OSError("no free RTP port pair for a source")


def send_frame(site: SourceSite) -> None:
    """Send the site's next frame (switching clip or jumping to a key frame first when due)."""
    if site.key_wanted:
        site.key_wanted = False
        site.pos = site.clip.next_key(site.pos)
    payloads = site.clip.frames[site.pos % len(site.clip.frames)]
    site.pos = (site.pos + 1) % len(site.clip.frames)
    assert site.remote is not None
    for i, payload in enumerate(payloads):
        packet = rtp_packet(payload, site.pt, site.seq, site.ts, site.ssrc, i == len(payloads) - 1)
        site.seq += 1
        with contextlib.suppress(BlockingIOError):
            site.video.sendto(packet, site.remote)
            site.bytes_sent += len(packet)
    site.sent.append((site.ts & 0xFFFFFFFF, time.monotonic()))  # the frame's last packet is in the MCU's socket
    site.ts += RTP_CLOCK // FPS
    site.frames_sent += 1


def follow_ask(site: SourceSite, size: tuple[int, int], clips: list[RtpClip]) -> None:
    """The MCU asked for ``size``: switch to the clip for it, starting on a key frame."""
    site.asked, site.asks = size, site.asks + 1
    clip = clip_for(size, clips)
    if clip is not site.clip:
        site.pos = clip.next_key(round(site.pos * len(clip.frames) / len(site.clip.frames)))
        site.clip = clip
        site.switches += 1


async def run_sources(target: str, n: int, clip_paths: list[Path], dial_gap: float = 0.05) -> None:
    """N SIP sites in this process; stats as JSON lines on stdout ("stats" on stdin asks; EOF ends)."""
    import sip_gateway.sip.uas as uas
    from sip_gateway.aio.sip_endpoint import SipEndpoint
    from sip_gateway.sip.ua_core import UserAgentConfig

    clips = [rtp_clip(p) for p in clip_paths]
    big = clip_for(None, clips)
    host = "127.0.0.1"
    sites: list[SourceSite] = []
    for i in range(n):
        video, video_rtcp = _bind_pair(host)
        audio, audio_rtcp = _bind_pair(host)
        sites.append(SourceSite(i, video, [video_rtcp, audio, audio_rtcp], big,
                                pos=big.keyframes[i % len(big.keyframes)]))
    by_port = {s.video.getsockname()[1]: s for s in sites}
    by_call: dict[str, SourceSite] = {}

    # Our UA answers re-offers itself (sans-I/O); as a room system that supports RFC 6236 it must
    # answer an imageattr ask with its own imageattr, and send what was asked.
    plain_answer = vars(uas)["answer"]

    def answer(offer: SessionDescription, policy: MediaPolicy, local: LocalMedia, *args: Any) -> Any:
        sdp, streams = plain_answer(offer, policy, local, *args)
        size = asked_size(offer)
        site = by_port.get(local.video_port or -1)
        if size is not None and site is not None:
            with_imageattr_answer(sdp, size)
            follow_ask(site, size, clips)
        return sdp, streams

    vars(uas)["answer"] = answer  # this process only: the bench's room systems

    config = UserAgentConfig(host=host, port=0, rate=10_000.0, burst=10_000.0,
                             policy=MediaPolicy(audio_codecs=("PCMU",), video_codecs=("H264",), h264_modes=(1,),
                                                srtp="off"))
    endpoint = SipEndpoint(config)

    def on_event(event: ev.Event) -> None:
        site = by_call.get(event.call.key) if hasattr(event, "call") else None
        if site is None:
            return
        if isinstance(event, ev.CallEstablished | ev.MediaUpdated):
            video = next((s for s in event.call.streams if s.kind == "video" and s.remote_port), None)
            if video is not None:
                site.pt = video.codec.payload_type
                site.remote = (video.remote_host or host, video.remote_port)
        elif isinstance(event, ev.PictureFastUpdate):
            site.key_requests += 1
            site.key_wanted = True
        elif isinstance(event, ev.CallEnded):
            site.remote = None

    endpoint.listeners.append(on_event)
    await endpoint.start(tcp=False)
    loop = asyncio.get_running_loop()
    out = sys.stdout

    def report(kind: str) -> None:
        out.write(json.dumps({"event": kind, "sites": [s.stats() for s in sites]}) + "\n")
        out.flush()

    async def play() -> None:
        start = loop.time() + 0.1
        due = [(start + (i * 0.37 % 1.0) / FPS, i) for i in range(n)]  # not frame-aligned with each other
        heapq.heapify(due)
        while True:
            when, i = heapq.heappop(due)
            delay = when - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            site = sites[i]
            if site.remote is not None:
                send_frame(site)
            heapq.heappush(due, (when + 1 / FPS, i))

    player = loop.create_task(play())
    for site in sites:
        local = LocalMedia(host, site.keep[1].getsockname()[1], site.video.getsockname()[1])
        site.call = endpoint.invite(target, local, from_user=f"site{site.index:02d}")
        by_call[site.call.key] = site
        await asyncio.sleep(dial_gap)
    report("dialled")
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line.strip() == b"stats":
            report("stats")
        elif line.strip() == b"sent":
            out.write(json.dumps({"event": "sent", "sites": {f"site{s.index:02d}": list(s.sent) for s in sites}}) + "\n")
            out.flush()
    for site in sites:
        if site.call is not None and site.call.state != CallState.TERMINATED:
            endpoint.hangup(site.call)
    await asyncio.sleep(0.5)  # let the BYEs go out
    player.cancel()
    report("final")
    await endpoint.close()


class Sources:
    """The sources' process, seen from the MCU's side."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.final: dict[str, Any] | None = None

    @classmethod
    async def start(cls, target: str, n: int, clips: list[Path]) -> Sources:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.mcu_mix_legs", "--sources", target, "--n", str(n),
            *[a for p in clips for a in ("--clip", str(p))], cwd=str(ROOT),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=64 * 1024 * 1024)
        return cls(proc)

    async def _line(self, within: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), within)
        if not raw:
            raise RuntimeError(f"the sources' process ended ({await self.proc.wait()})")
        doc: dict[str, Any] = json.loads(raw)
        return doc

    async def _ask(self, what: str, within: float) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(what.encode() + b"\n")
        await self.proc.stdin.drain()
        while True:
            doc = await self._line(within)
            if doc["event"] == what:
                return doc["sites"]

    async def stats(self, within: float = 10.0) -> list[dict[str, Any]]:
        """Each site's figures now."""
        return list(await self._ask("stats", within))

    async def sent(self, within: float = 10.0) -> dict[str, dict[int, float]]:
        """Per site (``siteNN``), when each recent frame (by RTP timestamp) was sent: its last packet."""
        return {site: {int(ts): float(at) for ts, at in log} for site, log in (await self._ask("sent", within)).items()}

    def cpu_seconds(self) -> float:
        """CPU-seconds the process has used (user + system, from /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def stop(self, within: float = 20.0) -> list[dict[str, Any]]:
        """Hang up every site and end the process; its final figures."""
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            while self.final is None:
                doc = await self._line(within)
                if doc["event"] == "final":
                    self.final = doc
                    break
            await asyncio.wait_for(self.proc.wait(), within)
        except (TimeoutError, RuntimeError):
            pass
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
        return list(self.final["sites"]) if self.final else []


# ---- the MCU's side ------------------------------------------------------------------------------
class SocketStamps:
    """Stamps each source frame with when the MCU's loop read its last RTP packet from the leg's socket.

    Wraps the leg's video channel (``on_datagram``: record the time per RTP timestamp) and the
    participant's ``push_video`` (pass that time as the frame's arrival, found by the frame's pts,
    which the legs' H.264 decoder sets to the RTP timestamp).
    """

    def __init__(self, channel: Any, participant: Any) -> None:
        self.read_at: dict[int, float] = {}
        self.order: deque[int] = deque()
        self.last = 0.0
        self.unmatched = 0
        self.matched = 0
        self.ts_of_seq: dict[int, int] = {}  # the room's frame sequence number -> the frame's RTP timestamp
        received = channel.on_datagram
        push = participant.push_video

        def on_datagram(data: bytes, addr: tuple[str, int], from_rtcp_port: bool) -> None:
            if len(data) >= 12 and not 192 <= data[1] <= 223:
                ts = int.from_bytes(data[4:8], "big")
                now = time.monotonic()
                if ts not in self.read_at:
                    self.order.append(ts)
                    if len(self.order) > 128:
                        self.read_at.pop(self.order.popleft(), None)
                self.read_at[ts] = now
                if data[1] & 0x80:  # the marker: the frame's last packet
                    self.last = now
            received(data, addr, from_rtcp_port)

        def push_video(frame: Any, arrival: float | None = None) -> int:
            pts = getattr(frame, "pts", None)
            ts = pts & 0xFFFFFFFF if isinstance(pts, int) else None
            at = self.read_at.get(ts) if ts is not None else None
            if at is None:
                self.unmatched += 1
                at = self.last or time.monotonic()
            else:
                self.matched += 1
            seq: int = push(frame, arrival=at)
            if ts is not None:
                self.ts_of_seq[seq] = ts
            return seq

        channel.on_datagram = on_datagram
        participant.push_video = push_video


async def start_mcu_bridge(services: Any, conferences: Any, kbps: int = LINE_KBPS) -> Any:
    """The MCU's SIP bridge (settings' defaults; a free port; INVITE limits high enough for N sites
    from one address), each site on a stated ``kbps`` line as a site plan would state it."""
    from config.settings import SipSettings
    from mcu.legs.sip_bridge import SipBridge
    from mcu.legs.sip_config import user_agent_config
    from mcu.legs.site_rate import SiteRate
    from sip_gateway.aio.ports import RTP_PORT_RANGE
    from sip_gateway.aio.sip_endpoint import SipEndpoint

    sip = SipSettings(udp_port=0, tls_port=0, invite_rate_per_source=1000, invite_burst_per_source=1000)
    endpoint = SipEndpoint(user_agent_config(sip))
    bridge = SipBridge(services, conferences, endpoint, sip, port_range=RTP_PORT_RANGE)

    def site_rate(site_id: str, line_kbps: int | None = None) -> SiteRate:
        return SiteRate(line_kbps or kbps, name=site_id, line_known=True)

    bridge.site_rate = site_rate  # type: ignore[method-assign]
    await endpoint.start()
    return bridge


def joined_sites(bridge: Any) -> list[Any]:
    """The bridge's SIP sites that are in the room with their media."""
    return [s for s in bridge.sites.values() if s.media is not None and s.connected]


async def wait_for(predicate: Callable[[], object], within: float, what: str) -> float:
    """Seconds until ``predicate()`` held (TimeoutError naming ``what``)."""
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > within:
            raise TimeoutError(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(0.1)
    return time.monotonic() - t0


def expected_size(asked: tuple[int, int]) -> tuple[int, int]:
    """What our sources send when asked for ``asked`` (the small clip when it is big enough)."""
    small = tuple(int(v) for v in PANE_SIZE.split("x"))
    return (small[0], small[1]) if asked[0] <= small[0] and asked[1] <= small[1] else (1280, 720)


def settled(conf: Any, sites: list[Any]) -> bool:
    """Every shown site was asked for its pane's size and is decoded at what its source sends for
    it (hidden sites are not decoded and not asked)."""
    shown = conf.room.shown_sizes()
    for site in sites:
        participant = conf.room.participants.get(site.site_id)
        if participant is None:
            return False
        if site.site_id not in shown:
            continue
        channel = site.leg.video
        if participant.pane is None or site._pane_wanted != participant.pane or site.call.reinvite_pending \
                or channel is None:
            return False
        if channel.resolution != expected_size(participant.pane):
            return False
    return True


class LegsTap(BroadcastTap):
    """mcu_mix's tap, also keeping (source, frame seq, when) of each frame's first encoded packet."""

    def __init__(self) -> None:
        super().__init__()
        self.firsts: list[tuple[str, int, float]] = []

    def __call__(self, packet: Any) -> None:
        now = time.monotonic()
        if self.measuring:
            self.firsts += [(pid, seq, now) for pid, (seq, _) in packet.sources.items() if seq != self.seen.get(pid)]
        super().__call__(packet)


def sent_latencies(tap: LegsTap, stamps: dict[str, SocketStamps], users: dict[str, str],
                   sent: dict[str, dict[int, float]]) -> tuple[list[float], int]:
    """Seconds from each frame's send (its last packet handed to the MCU's socket by the source
    process; loopback, so its arrival there) to its first encoded packet; and how many frames had
    no known send time."""
    out: list[float] = []
    missing = 0
    for pid, seq, at in tap.firsts:
        stamp = stamps.get(pid)
        ts = stamp.ts_of_seq.get(seq) if stamp is not None else None
        when = sent.get(users.get(pid, ""), {}).get(ts) if ts is not None else None
        if when is None:
            missing += 1
        else:
            out.append(at - when)
    return out, missing


def thread_cpu() -> dict[str, float]:
    """CPU-seconds of this process's live threads by kind (Python thread names without their
    numbers; threads Python did not start, e.g. x264's, are "native")."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in os.listdir("/proc/self/task"):
        try:
            fields = Path(f"/proc/self/task/{task}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        kind = re.sub(r"[\d_ ]+(\(.*\))?$", "", names.get(int(task), "native")) or "native"
        out[kind] = out.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


@dataclass
class LegsResult:
    n: int
    layout: str
    shown: int
    seconds: float
    settle_s: float
    output_fps: float
    latency_p50_ms: float
    latency_p95_ms: float
    sent_latency_p50_ms: float
    sent_latency_p95_ms: float
    mcu_cores: float
    sources_cores: float
    frames_decoded_per_s: float
    frames_skipped_per_s: float
    pane_reinvites: int
    sources_switched_small: int
    encoders: int
    unmatched_frames: int
    sent_unmatched_frames: int
    load_before: float
    load_after: float
    thread_cores: dict[str, float] = field(default_factory=dict)  # the MCU process's cores by thread kind


async def run_once(services: Any, n: int, layout: str | None, seconds: float, settle: float,
                   clips: list[Path]) -> LegsResult:
    """One conference, N sites through the SIP bridge, measured once the layout settled."""
    import numpy as np

    from mcu.conferences import ConferenceService
    from mcu.room import BROADCAST, RoomSettings

    load_before = os.getloadavg()[0]
    conferences = ConferenceService(services, room_settings=RoomSettings())
    await conferences.start()
    bridge = None
    sources = None
    try:
        bridge = await start_mcu_bridge(services, conferences)
        conf = conferences.running(DEMO)
        assert conf is not None, "the standing conference is not running"
        if layout:
            conf.room.set_layout(layout)
        tap = LegsTap()
        conf.room.subscribe_view(BROADCAST, tap)
        target = f"sip:{DEMO}@127.0.0.1:{bridge.endpoint.config.port}"
        sources = await Sources.start(target, n, clips)
        stamps: dict[str, SocketStamps] = {}

        def instrument() -> bool:
            for site in joined_sites(bridge):
                if site.site_id not in stamps and site.leg.video is not None:
                    stamps[site.site_id] = SocketStamps(site.leg.video, conf.room.participants[site.site_id])
            return len(stamps) >= n

        t0 = time.monotonic()
        await wait_for(instrument, 30 + 1.5 * n, f"{n} sites to join")
        try:
            await wait_for(lambda: settled(conf, joined_sites(bridge)), settle, "the layout to settle")
        except TimeoutError as exc:
            print(f"  ({exc}; measuring anyway)", flush=True)
        settle_s = time.monotonic() - t0
        await asyncio.sleep(1.0)
        sites = joined_sites(bridge)
        decoded0 = sum(s.leg.frames_decoded for s in sites)
        skipped0 = sum(s.leg.video_frames_skipped for s in sites)
        src0 = sources.cpu_seconds()
        tap.measuring = True
        threads0 = thread_cpu()
        cpu0, w0 = cpu_seconds(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, w1 = cpu_seconds(), time.monotonic()
        threads1 = thread_cpu()
        tap.measuring = False
        src1 = sources.cpu_seconds()
        decoded = sum(s.leg.frames_decoded for s in sites) - decoded0
        skipped = sum(s.leg.video_frames_skipped for s in sites) - skipped0
        reinvites = sum(s.pane_reinvites for s in sites)
        shown = sum(1 for p in conf.room.participants.values() if p.pane is not None)
        encoders = len(conf.room._encoders)
        from mcu.layout import resolve_auto
        layout_now = resolve_auto(conf.room.layout, len(conf.room.participants))
        source_stats = await sources.stats()
        users = {s.site_id: NameAddr.parse(s.remote_uri).uri.user or "" for s in sites}
        by_send, sent_missing = sent_latencies(tap, stamps, users, await sources.sent())
    finally:
        if sources is not None:
            await sources.stop()
        if bridge is not None:
            await bridge.stop()
        await conferences.stop()
    elapsed = w1 - w0
    lat = tap.latency_ms()
    sent_ms = np.asarray(by_send) * 1000 if by_send else np.asarray([float("nan")])
    return LegsResult(
        n=n, layout=layout_now, shown=shown, seconds=round(elapsed, 2), settle_s=round(settle_s, 1),
        output_fps=round(len(tap.delivered) / elapsed, 2),
        latency_p50_ms=round(float(np.percentile(lat, 50)), 1), latency_p95_ms=round(float(np.percentile(lat, 95)), 1),
        sent_latency_p50_ms=round(float(np.percentile(sent_ms, 50)), 1),
        sent_latency_p95_ms=round(float(np.percentile(sent_ms, 95)), 1),
        mcu_cores=round((cpu1 - cpu0) / elapsed, 3), sources_cores=round((src1 - src0) / elapsed, 3),
        frames_decoded_per_s=round(decoded / elapsed, 1), frames_skipped_per_s=round(skipped / elapsed, 1),
        pane_reinvites=reinvites,
        sources_switched_small=sum(1 for s in source_stats if s["sending"] == PANE_SIZE),
        encoders=encoders, unmatched_frames=sum(s.unmatched for s in stamps.values()),
        sent_unmatched_frames=sent_missing,
        load_before=round(load_before, 2), load_after=round(os.getloadavg()[0], 2),
        thread_cores={k: round((v - threads0.get(k, 0.0)) / elapsed, 3) for k, v in sorted(threads1.items())})


FIGURES = ("output_fps", "latency_p50_ms", "latency_p95_ms", "sent_latency_p50_ms", "sent_latency_p95_ms", "mcu_cores", "sources_cores", "frames_decoded_per_s",
           "frames_skipped_per_s", "settle_s")


def bench_clips() -> list[Path]:
    """mcu_mix's first source (same cache): 720p25 at 1.5 Mbit/s and 256x144 at 150 kbit/s, 10 s."""
    return [make_clip(INPUTS / f"src0_{size}_10s.mp4", SOURCES[0].replace("1280x720", size), 10.0, kbps)
            for size, kbps in (("1280x720", 1500), (PANE_SIZE, 150))]


async def run(sizes: list[int], runs: int, seconds: float, settle: float) -> dict[str, Any]:
    from config.settings import Settings
    from core.db import EmbeddedPostgres
    from core.runtime import CoreServices

    clips = bench_clips()
    work = Path(tempfile.mkdtemp(prefix="mcu-mix-legs-"))
    pg = EmbeddedPostgres(work / "pg")
    url = pg.start()
    services = await CoreServices.start(Settings(var_dir=work / "var", database={"url": url}))
    rows: list[dict[str, Any]] = []
    try:
        for n in sizes:
            results: list[dict[str, Any]] = []
            for k in range(runs):
                print(f"N={n} run {k + 1}/{runs} ...", flush=True)
                try:
                    r: dict[str, Any] = asdict(await run_once(services, n, CONFIGS.get(n), seconds, settle, clips))
                except Exception as exc:  # a failed run is reported, not hidden
                    r = {"n": n, "error": f"{type(exc).__name__}: {exc}", "load_after": round(os.getloadavg()[0], 2)}
                print(f"  {r}", flush=True)
                results.append(r)
            good = [r for r in results if "error" not in r]
            row: dict[str, Any] = {"n": n, "layout": good[0]["layout"] if good else CONFIGS.get(n) or "auto",
                                   "shown": good[0]["shown"] if good else None, "runs": results,
                                   "failed_runs": len(results) - len(good)}
            for figure in FIGURES:
                if good:
                    row[figure] = summarize([float(r[figure]) for r in good])
            rows.append(row)
    finally:
        await services.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {
        "benchmark": "mcu_mix_legs",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg()},
        "settings": {"fps": FPS, "seconds": seconds, "runs": runs, "line_kbps": LINE_KBPS, "settle_timeout_s": settle,
                     "room": "ConferenceService defaults (1280x720@25, tier encoders, labels on)",
                     "sources": "one process, our SIP UA: N calls offering H.264 level 3.1, pre-encoded 720p25 "
                                "1.5 Mbit/s clip, switched to a 256x144 150 kbit/s clip on an imageattr re-INVITE",
                     "latency": "MCU loop read the frame's last RTP packet -> first broadcast-encoder packet with it",
                     "sent_latency": "sources' process sent the frame's last RTP packet (loopback) -> the same packet"},
        "rows": rows,
        "goals": {"n25_fps": 25, "p95_ms": 100},
    }


def fmt(figure: Any) -> str:
    if not isinstance(figure, dict):
        return "-"
    med, lo, hi = figure["median"], figure["min"], figure["max"]
    digits = 2 if max(abs(med), abs(hi)) < 10 else 0
    return f"{med:.{digits}f} [{lo:.{digits}f}-{hi:.{digits}f}]"


def table(result: dict[str, Any]) -> str:
    lines = ["| N | layout | shown | fps | p50 ms | p95 ms | p50 / p95 ms from send | MCU cores | sources cores "
             "| decoded/s | skipped/s | runs (failed) | load before→after |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        loads = ", ".join(f"{r.get('load_before', '?')}→{r.get('load_after', '?')}" for r in row["runs"])
        lines.append(f"| {row['n']} | {row['layout']} | {row['shown']} | {fmt(row.get('output_fps'))} "
                     f"| {fmt(row.get('latency_p50_ms'))} | {fmt(row.get('latency_p95_ms'))} "
                     f"| {fmt(row.get('sent_latency_p50_ms'))} / {fmt(row.get('sent_latency_p95_ms'))} "
                     f"| {fmt(row.get('mcu_cores'))} "
                     f"| {fmt(row.get('sources_cores'))} | {fmt(row.get('frames_decoded_per_s'))} "
                     f"| {fmt(row.get('frames_skipped_per_s'))} | {len(row['runs'])} ({row['failed_runs']}) | {loads} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="*", default=[25, 49, 64], help="the N values")
    parser.add_argument("--runs", type=int, default=1, help="runs per N (median/min/max)")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--settle", type=float, default=40.0, help="longest wait for the layout to settle")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--sources", metavar="TARGET", help=argparse.SUPPRESS)  # the sources' process
    parser.add_argument("--n", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--clip", type=Path, action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sources:
        asyncio.run(run_sources(args.sources, args.n, args.clip))
        return 0
    if shutil.which("ffmpeg") is None:
        print("ffmpeg is required (Debian package ffmpeg)", file=sys.stderr)
        return 2
    result = asyncio.run(run(args.sizes, args.runs, args.seconds, args.settle))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print()
    print(table(result))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
