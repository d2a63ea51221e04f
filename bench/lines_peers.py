"""The line benchmark's other peers (``bench/lines.py --peers chromium,h323``): one call each behind a line.

* **chromium**: headless Chromium in the line's namespace (``ip netns exec``, Playwright over a
  pipe) joins the room as a WebRTC site: its fake camera and microphone go up, the MCU's
  composite and mix come down through the product's ``WebRtcLeg`` (REMB budget, tiers, RTX within
  its byte budget). Figures from Chromium's getStats sampled every 0.2 s: first picture (first
  ``framesDecoded``), intact fps after 2 s (frames decoded from first picture + 2 s to the end:
  Chromium decodes only complete frames whose references arrived), freezes as gaps with no new
  decoded frame (0.2 s granularity; Chromium's own ``freezeCount``/``totalFreezesDuration`` beside
  them), audio loss from the audio inbound stream's ``packetsLost`` and, after repair, its
  ``concealedSamples``/``totalSamplesReceived`` (``audio_concealed_pct``; the busy site is silent,
  and Opus FEC covers speech only, so here it is concealment of silence); video sent from aiortc's
  sender (payload + 12-byte RTP header per packet), delivered from Chromium's bytes + header bytes.
* **h323**: H323Plus 1.28 (``h323peer``, H.263/H.261 CIF, built by tests/sip_gateway/h323) in the
  line's namespace calls the conference on the MCU's H.323 bridge. It prints only totals at hang-up
  (audio/video packets received, distinct video frames decoded), so the video figures come from a
  capture behind the line, as for the SIP rows (bench/line_capture.py): video delivered (RTP
  bytes), loss, intact fps after 2 s, freezes and first picture, judged per frame by
  bench/video_frames.py for the codec the leg sends (H.263 RFC 2190 with H323Plus; RFC 4629 and
  H.261 RFC 4587 too), from the call's connect to h323peer's hang-up. Beside them: video sent (the
  leg's RTP after its pacer), the shared encoder's output before pacing (``video_encoded_kbps``),
  h323peer's own first decoded frame (``first_picture_peer_s``) and its average decoded fps, and
  audio loss (the MCU's audio packets sent to it against its received count).

Every room has one busy other site (random pictures at 15 fps), so the composite is never a still.
"""
from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.line_capture import NFLOG_GROUP, capture_behind, video_rows
from bench.video_frames import analyse_video
from core.runtime import CoreServices
from mcu.conferences import ConferenceService, RunningConference
from mcu.room import RoomSettings
from tests.browser import OFFER_WHEN_GATHERED_JS
from tests.linesim.line import open_line

if TYPE_CHECKING:
    from mcu.legs.h323_bridge import H323Bridge

DEMO = "80000001"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream", "--disable-features=WebRtcHideLocalIpsWithMdns",
]
SAMPLE_S = 0.2

OFFER_JS = """async () => {
  const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: {width: 640, height: 360}});
  const pc = new RTCPeerConnection();
  window.pc = pc;
  for (const track of stream.getTracks()) pc.addTransceiver(track, {direction: 'sendrecv'});
""" + OFFER_WHEN_GATHERED_JS

STATS_JS = """async () => {
  const out = {video: {}, audio: {}};
  (await window.pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp') out[s.kind] = {framesDecoded: s.framesDecoded || 0,
      bytesReceived: s.bytesReceived || 0, headerBytesReceived: s.headerBytesReceived || 0,
      packetsReceived: s.packetsReceived || 0, packetsLost: s.packetsLost || 0, nackCount: s.nackCount || 0,
      pliCount: s.pliCount || 0, freezeCount: s.freezeCount || 0, totalFreezesDuration: s.totalFreezesDuration || 0,
      retransmittedPacketsReceived: s.retransmittedPacketsReceived || 0, frameWidth: s.frameWidth || 0,
      concealedSamples: s.concealedSamples || 0, totalSamplesReceived: s.totalSamplesReceived || 0};
  });
  return out;
}"""


class BusySite:
    """A site pushed straight into the room: random 640x360 pictures at 15 fps and silence."""

    def __init__(self, participant: Any) -> None:
        self.participant = participant
        rng = np.random.default_rng(16)
        self.frames = [rng.integers(0, 256, (360, 640, 3), dtype=np.uint8) for _ in range(8)]
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        i = 0
        while True:
            self.participant.push_video(self.frames[i % len(self.frames)])
            i += 1
            await asyncio.sleep(1 / 15)

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def busy_room(services: CoreServices) -> tuple[ConferenceService, RunningConference, BusySite]:
    conferences = ConferenceService(services, room_settings=RoomSettings())
    await conferences.start()
    conf = conferences.running(DEMO)
    assert conf is not None
    return conferences, conf, BusySite(await conf.join("busy", "忙碌会场", "demo"))


def freezes(samples: list[tuple[float, int]], first: float, end: float) -> tuple[int, float]:
    """(gaps > 1 s, longest gap) between new decoded frames from the first picture to ``end``."""
    times = [first] + [t for (t, n), (_, m) in zip(samples[1:], samples, strict=False) if n > m and t > first]
    gaps = [b - a for a, b in zip(times, [*times[1:], end], strict=True)]
    return sum(1 for g in gaps if g > 1.0), round(max(gaps), 2)


async def chromium_call(services: CoreServices, condition: str, seed: int, seconds: float,
                        work: Path) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    from mcu.legs.webrtc import WebRtcConfig, WebRtcLegs

    conferences, conf, busy = await busy_room(services)
    try:
        with open_line(condition, seed=seed) as line:
            wrapper = line.wrapper(CHROMIUM, work)
            legs = WebRtcLegs(WebRtcConfig(host_addresses=(line.mcu_address,)))
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=str(wrapper), args=CHROMIUM_ARGS, headless=True)
                try:
                    page = await browser.new_page()
                    # getUserMedia needs a secure context: a localhost page, served by Playwright itself
                    await page.route("http://localhost/site", lambda route: route.fulfill(
                        body="<html><body>site</body></html>", content_type="text/html"))
                    await page.goto("http://localhost/site")
                    leg = legs.create(conf, participant_id="chromium-site", name="浏览器会场")
                    answer = await leg.answer(await page.evaluate(OFFER_JS), codec="h264")
                    await page.evaluate("async (sdp) => { await window.pc.setRemoteDescription("
                                        "{type: 'answer', sdp}); }", answer)
                    joined_at = time.monotonic()
                    samples: list[tuple[float, int]] = []
                    stats: dict[str, Any] = {}
                    first: float | None = None
                    while (now := time.monotonic()) < joined_at + seconds:
                        stats = await page.evaluate(STATS_JS)
                        decoded = int(stats["video"].get("framesDecoded", 0))
                        samples.append((now, decoded))
                        if first is None and decoded > 0:
                            first = now
                        await asyncio.sleep(SAMPLE_S)
                    ended_at = time.monotonic()
                    sender = leg._sender
                    assert sender is not None
                    out_stats = [s for s in (await sender.getStats()).values() if s.type == "outbound-rtp"]
                    sent_bytes = sum(s.bytesSent + 12 * s.packetsSent for s in out_stats)
                    budget = leg.budget.video_kbps()
                    resent, refused = leg.retransmits.resent, leg.retransmits.refused
                    tbf = line.tbf_drops()
                finally:
                    await browser.close()
                    await legs.stop()
    finally:
        await busy.stop()
        await conferences.stop()
    video, audio = stats.get("video", {}), stats.get("audio", {})
    duration = ended_at - joined_at
    result: dict[str, Any] = {
        "video_sent_kbps": round(sent_bytes * 8 / 1000 / duration, 1),
        "video_delivered_kbps": round((video.get("bytesReceived", 0) + video.get("headerBytesReceived", 0))
                                      * 8 / 1000 / duration, 1),
        "audio_loss_pct": round(100 * audio.get("packetsLost", 0)
                                / max(1, audio.get("packetsLost", 0) + audio.get("packetsReceived", 0)), 2),
        # Loss after repair (Opus FEC, mcu/legs/audio_fec.py): the share of played samples Chromium concealed.
        "audio_concealed_pct": round(100 * audio.get("concealedSamples", 0)
                                     / max(1, audio.get("totalSamplesReceived", 0)), 2),
        "video_loss_pct": round(100 * video.get("packetsLost", 0)
                                / max(1, video.get("packetsLost", 0) + video.get("packetsReceived", 0)), 2),
        "chromium_freeze_count": video.get("freezeCount", 0),
        "chromium_total_freezes_s": round(video.get("totalFreezesDuration", 0), 2),
        "nack_count": video.get("nackCount", 0), "pli_count": video.get("pliCount", 0),
        "rtx_received": video.get("retransmittedPacketsReceived", 0), "rtx_resent": resent,
        "rtx_refused": refused, "frame_width_at_end": video.get("frameWidth", 0),
        "router_queue_drops_down": tbf["down"], "budget_video_kbps_at_end": budget,
    }
    if first is None:
        result.update(first_picture_s=-1, intact_fps_after_2s=0.0, freezes_over_1s=1,
                      longest_freeze_s=round(duration, 2))
        return result
    at_2s = next((n for t, n in samples if t >= first + 2), samples[-1][1])
    result["first_picture_s"] = round(first - joined_at, 2)
    result["intact_fps_after_2s"] = round((samples[-1][1] - at_2s) / max(1e-3, ended_at - first - 2), 1)
    result["freezes_over_1s"], result["longest_freeze_s"] = freezes(samples, first, ended_at)
    return result


def _site_figures(bridge: Any) -> dict[str, Any]:
    return next((s for s in bridge.statistics() if s.get("joined")), {})


@dataclass
class _H323Video:
    """The MCU's video towards the H.323 site, read while the call is up."""

    port: int = 0
    codec: str = ""  # RTP codec name: H263 (RFC 2190), H263-1998 (RFC 4629), H261
    packets: int = 0
    rtp_bytes: int = 0  # RTP packets (12-byte header + payload)
    pacer_frames_dropped: int = 0

    def read(self, bridge: H323Bridge) -> bool:
        from sip_gateway.aio.h323_media import sdp_codec

        site = next((s for s in bridge.sites if s.site is not None), None)
        if site is None:
            return False
        channel, outgoing = site.media.leg.video, site.media.outgoing_video
        if channel is None or channel.session is None or outgoing is None:
            return False
        self.port, self.codec = channel.port, sdp_codec(outgoing.format, 0).name
        self.packets = channel.session.send.packets
        self.rtp_bytes = channel.session.send.octets + 12 * channel.session.send.packets
        self.pacer_frames_dropped = site.media.leg.pacer.counters.frames_dropped
        return True


async def h323_call(services: CoreServices, condition: str, seed: int, seconds: float, work: Path) -> dict[str, Any]:
    from mcu.legs.h323_bridge import H323Bridge
    from mcu.legs.h323_settings import BridgeSettings
    from tests.sip_gateway.h323.h323plus_peer import H323Peer, ensure_built

    binary = await asyncio.to_thread(ensure_built)
    conferences, conf, busy = await busy_room(services)
    pcap = work / f"h323-{condition}-{seed}.pcapng"
    video = _H323Video()
    try:
        with open_line(condition, seed=seed) as line:
            async with capture_behind(line, pcap):  # what reaches h323peer, after the line's loss
                bridge = H323Bridge(conferences, BridgeSettings(host=line.mcu_address, port=0, round_trip_interval=1.0,
                                                                media_settle=2.0))
                if line.rate_kbps:
                    rate = line.rate_kbps  # the site plan's line_kbps for this room (before a drop: the rate then)
                    bridge.line_kbps = lambda site_id: rate  # type: ignore[method-assign]
                    bridge.line_known = lambda site_id: True  # type: ignore[method-assign]  # a stated line
                address = await bridge.start()
                peer = H323Peer(Path("ip"), [
                    *line.exec_args(str(binary))[1:], "-n", "-i", line.peer_address, "-x", "1720", "-u",
                    "h323plus-room", "--tone", "1000", "--duration", str(int(seconds)), "--setup-timeout", "20",
                    f"h323:{DEMO}@{line.mcu_address}:{address.port}"])
                try:
                    await peer.start()
                    await peer.wait_for("Call connected", 30)
                    joined_at, joined_wall = time.monotonic(), time.time()
                    first: float | None = None
                    hung_up: float | None = None  # wall clock: h323peer said it hangs up (its --duration)
                    site: dict[str, Any] = {}
                    at_join_figures: dict[str, Any] = {}
                    while peer.proc is not None and peer.proc.returncode is None:
                        if first is None and peer.has(r"Video: first frame received"):
                            first = time.monotonic()
                        if hung_up is None and peer.has(r"Duration \d+ s reached"):
                            hung_up = time.time()
                        if (stats := _site_figures(bridge)):
                            site = stats
                            at_join_figures = at_join_figures or stats
                        video.read(bridge)
                        await asyncio.sleep(0.1)
                        if time.monotonic() > joined_at + seconds + 30:
                            raise TimeoutError("h323peer did not hang up")
                    ended_at, ended_wall = time.monotonic(), hung_up or time.time()
                    await peer.wait(10)
                    tbf = line.tbf_drops()
                finally:
                    await peer.stop()
                    await bridge.stop()
                    (work / f"h323peer-{condition}-{seed}.log").write_text(peer.output)
    finally:
        await busy.stop()
        await conferences.stop()
    summary = peer.summary
    if summary is None:
        raise RuntimeError(f"h323peer printed no media summary: {peer.output[-2000:]}")
    if not video.port:
        raise RuntimeError("the MCU opened no video channel towards h323peer")
    duration = min(seconds, ended_at - joined_at)
    sent_audio = int(site.get("audio_frames_out", 0))
    encoded = int(site.get("video_bytes_out", 0)) - int(at_join_figures.get("video_bytes_out", 0))
    received = await video_rows(pcap, video.port)
    pcap.unlink(missing_ok=True)
    # The SIP rows' window: from the call's connect to h323peer's hang-up, wall clock (the capture's);
    # the call's release after it is not a freeze.
    figures = analyse_video(received, joined_wall, ended_wall, video.packets, video.codec)
    result: dict[str, Any] = {
        **figures,
        "video_sent_kbps": round(video.rtp_bytes * 8 / 1000 / (ended_wall - joined_wall), 1),  # RTP, after the pacer
        "video_encoded_kbps": round(encoded * 8 / 1000 / duration, 1),  # the shared encoder's output (before pacing)
        "video_codec": video.codec,
        "audio_loss_pct": round(100 * max(0, sent_audio - summary.audio_packets_received) / max(1, sent_audio), 2),
        "video_loss_pct": figures["video_loss_capture_pct"],
        "video_frames_decoded": summary.video_frames_decoded,
        "video_packets_received": summary.video_packets_received,
        "audio_packets_received": summary.audio_packets_received, "audio_frames_sent": sent_audio,
        "first_picture_peer_s": round(first - joined_at, 2) if first is not None else -1,
        "decoded_fps_average": round(summary.video_frames_decoded / max(1e-3, joined_at + duration - first), 1)
        if first is not None else 0.0,
        "router_queue_drops_down": tbf["down"],
        "pacer_frames_dropped": video.pacer_frames_dropped,
        "site_at_end": {k: site.get(k) for k in ("budget", "send_video", "flow_control_bps", "requested_video_bps",
                                                  "h323_codecs", "streams")},
    }
    return result


# ---------------------------------------------------------------------------------------------- cascade
SETTLE_S = 5.0
KEEP_LOGS = ""  # a file to write the nodes' logs to (debugging)
PG_URL = ""  # set by bench/lines.py: the embedded PostgreSQL the node processes get their databases on


def _ns_run(ns: str, *argv: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, *argv], check=True, capture_output=True, timeout=15)


def _rtp_rows(pcap: Path, src: str, dst: str) -> list[list[str]]:
    done = subprocess.run(
        ["tshark", "-r", str(pcap), "-o", "rtp.heuristic_rtp:TRUE", "-Y",
         f"rtp && ip.src=={src} && ip.dst=={dst} && !rtcp", "-T", "fields", "-e", "frame.time_epoch", "-e",
         "rtp.ssrc", "-e", "rtp.p_type", "-e", "rtp.seq", "-e", "rtp.timestamp", "-e", "rtp.marker", "-e",
         "udp.length", "-e", "rtp.payload"], capture_output=True, text=True, timeout=600)
    return [line.split("\t") for line in done.stdout.splitlines() if line.count("\t") >= 6]


def _streams(rows: list[list[str]]) -> tuple[str, str]:
    """(audio SSRC, video SSRC) of one direction: audio has a static payload type or the smallest
    packets; video is the stream with the most bytes among the others."""
    by: dict[str, list[int]] = {}
    pts: dict[str, int] = {}
    for r in rows:
        by.setdefault(r[1], []).append(int(r[6]))
        pts[r[1]] = int(r[2])
    if not by:
        return "", ""
    audio = min(by, key=lambda s: (pts[s] >= 96, statistics.median(by[s])))
    rest = [s for s in by if s != audio]
    video = max(rest, key=lambda s: sum(by[s])) if rest else ""
    return audio, video


def cascade_sync(condition: str, seed: int, seconds: float, work: Path) -> dict[str, Any]:
    """City ← county A as real node processes (tests/cascade/cluster.py), their private line shaped
    like ``condition``; a busy SIP endpoint in the city's room; the city→county link video judged
    by captures on both ends of the line (sent: before the city's queue; delivered: after the loss
    stage at the county)."""
    from tests.cascade.cluster import CONFERENCE, one_county, path_events, wait_for
    from tests.conftest import new_database
    from tests.linesim.line import PROFILES, STAGE, _tbf_args

    profile = PROFILES[condition]
    run_dir = work / f"cascade-{condition}-{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    cluster = one_county(run_dir, lambda node: new_database(PG_URL, f"l_{node.replace('-', '_')}_"),
                         rtp_timeout_seconds=3.0, options_interval_seconds=1.0)
    city_ns, county_ns = cluster.ns("city"), cluster.ns("county-a")
    city_if, county_if = "l1a", "l1b"
    city, county = cluster.node("city").address, cluster.node("county-a").address
    stage: subprocess.Popen[str] | None = None
    captures: list[subprocess.Popen[bytes]] = []
    timer: threading.Timer | None = None
    write_plan = cluster.write_plan

    def plan_with_line() -> Path:
        path = write_plan()
        if profile.rate_kbps:  # the site plan's line_kbps for the link (before a drop: the rate then)
            text = path.read_text(encoding="utf-8").replace(
                'name = "county-a"\n', f'name = "county-a"\nline_kbps = {profile.rate_kbps}\n')
            path.write_text(text, encoding="utf-8")
        return path

    cluster.write_plan = plan_with_line  # type: ignore[method-assign]
    pcaps = {"sent": run_dir / "sent.pcapng", "delivered": run_dir / "delivered.pcapng"}
    try:
        cluster.create_network()
        if profile.rate_kbps:
            for ns, iface in ((city_ns, city_if), (county_ns, county_if)):
                _ns_run(ns, "tc", "qdisc", "add", "dev", iface, "root", *_tbf_args(profile.rate_kbps, profile.queue_ms))
        if profile.needs_stage:
            down, up = 20000 + seed * 2, 20001 + seed * 2
            for rule in (["-A", "PREROUTING", "-i", county_if, "-j", "NFQUEUE", "--queue-num", str(down)],
                         ["-A", "POSTROUTING", "-o", county_if, "-j", "NFQUEUE", "--queue-num", str(up)]):
                _ns_run(county_ns, "iptables", "-w", "5", "-t", "mangle", *rule, "--queue-bypass")
            stage = subprocess.Popen(
                ["ip", "netns", "exec", county_ns, sys.executable, str(STAGE), "--queue", str(down), "--queue", str(up),
                 "--loss", str(profile.loss), "--delay-ms", str(profile.delay_ms), "--jitter-ms",
                 str(profile.jitter_ms), "--seed", str(seed)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True)
            assert stage.stdout is not None
            if stage.stdout.readline().strip() != "ready":
                raise RuntimeError("the NFQUEUE stage did not start")
        _ns_run(city_ns, "iptables", "-t", "mangle", "-A", "POSTROUTING", "-o", city_if, "-p", "udp", "-j", "NFLOG",
                "--nflog-group", str(NFLOG_GROUP))
        _ns_run(county_ns, "iptables", "-A", "INPUT", "-i", county_if, "-p", "udp", "-j", "NFLOG", "--nflog-group",
                str(NFLOG_GROUP + 1))
        for ns, group, pcap in ((city_ns, NFLOG_GROUP, pcaps["sent"]), (county_ns, NFLOG_GROUP + 1, pcaps["delivered"])):
            captures.append(subprocess.Popen(["ip", "netns", "exec", ns, "tshark", "-B", "32", "-i", f"nflog:{group}",
                                              "-w", str(pcap), "-q"], stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL))
        time.sleep(2.0)
        cluster.start_nodes(timeout=180)
        endpoint = cluster.start_endpoint("city-ep", "city", CONFERENCE, "city", "city", [], [], extra=("--busy",))
        deadline = time.monotonic() + 90
        while not any(e["role"] == "up" and e["state"] == "primary" for e in path_events(cluster.db_urls["county-a"])):
            if time.monotonic() > deadline:
                raise RuntimeError("the cascade link did not come up on the primary path")
            time.sleep(0.3)
        wait_for(endpoint, lambda sample: sample["up"], 60, "the busy endpoint's call in the city's room")
        time.sleep(SETTLE_S)  # the busy site is in the city's composite before the window opens
        joined_at = time.time()
        if profile.then_kbps and profile.change_after_s is not None:
            then = profile.then_kbps

            def drop() -> None:
                for ns, iface in ((city_ns, city_if), (county_ns, county_if)):
                    _ns_run(ns, "tc", "qdisc", "change", "dev", iface, "root", *_tbf_args(then, profile.queue_ms))

            timer = threading.Timer(min(profile.change_after_s, seconds * 0.6), drop)
            timer.start()
        time.sleep(seconds)
        ended_at = time.time()
        events = path_events(cluster.db_urls["county-a"])
        lost_primary = [e["state"] for e in events if e["role"] == "up"]
    except BaseException:
        (work / f"cascade-{condition}-{seed}.log").write_text(cluster.logs())
        raise
    finally:
        if KEEP_LOGS:
            Path(KEEP_LOGS).write_text(cluster.logs())
        if timer is not None:
            timer.cancel()
        for capture in captures:
            capture.terminate()
            capture.wait(20)
        cluster.stop()
        if stage is not None and stage.poll() is None:
            stage.terminate()
            stage.wait(10)
    sent_rows, got_rows = _rtp_rows(pcaps["sent"], city, county), _rtp_rows(pcaps["delivered"], city, county)
    in_window = [r for r in sent_rows if joined_at <= float(r[0]) <= ended_at]
    audio, video = _streams(in_window)  # the link call of the window (an earlier attempt has other SSRCs)
    video_sent = [r for r in in_window if r[1] == video]
    first_video = min((float(r[0]) for r in sent_rows if r[1] == video), default=joined_at)
    rows = [(float(r[0]), int(r[3]), int(r[4]), r[5] in ("1", "True"), int(r[6]) - 8,
             bytes.fromhex(r[7].replace(":", "")) if len(r) > 7 else b"") for r in got_rows if r[1] == video]
    figures = analyse_video(rows, first_video, ended_at, len({int(r[3]) for r in sent_rows if r[1] == video}))
    audio_sent = {int(r[3]) for r in in_window if r[1] == audio}
    audio_got = {int(r[3]) for r in got_rows if r[1] == audio and joined_at <= float(r[0]) <= ended_at + 1}
    duration = ended_at - joined_at
    return {
        **figures,
        "video_sent_kbps": round(sum(int(r[6]) - 8 for r in video_sent) * 8 / 1000 / duration, 1),
        "video_delivered_kbps": round(sum(r[4] for r in rows if joined_at <= r[0] <= ended_at) * 8 / 1000 / duration, 1),
        "audio_loss_pct": round(100 * len(audio_sent - audio_got) / max(1, len(audio_sent)), 2),
        "video_loss_pct": figures.get("video_loss_capture_pct", -1),
        "first_picture_from": "the link's first video packet",
        "streams_city_to_county": {ssrc: {"pt": int(next(r[2] for r in in_window if r[1] == ssrc)),
                                          "packets": sum(1 for r in in_window if r[1] == ssrc),
                                          "kbps": round(sum(int(r[6]) - 8 for r in in_window if r[1] == ssrc)
                                                        * 8 / 1000 / duration, 1)}
                                   for ssrc in {r[1] for r in in_window}},
        "link_path_states": lost_primary,
    }


async def cascade_call(services: CoreServices, condition: str, seed: int, seconds: float, work: Path) -> dict[str, Any]:
    return await asyncio.to_thread(cascade_sync, condition, seed, seconds, work)


__all__ = ["cascade_call", "chromium_call", "h323_call"]
