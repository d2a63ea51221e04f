"""Real SIP peers for tests: baresip (Debian) driven by its config and -e commands, and a
media-capable test UAS built on our stack (no conference: decodes what arrives, sends a pattern)."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import re
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from sip_gateway.aio.rtp_leg import MediaLeg, tone
from sip_gateway.aio.sip_endpoint import Answer, Challenge, Decision, SipEndpoint
from sip_gateway.rtp.media_description import MediaPolicy
from sip_gateway.rtp.media_primitives import FRAME_SAMPLES as SAMPLES_PER_FRAME
from sip_gateway.sip import events as ev
from sip_gateway.sip.dialog import Call
from sip_gateway.sip.useragent import UserAgentConfig
from tests.sip_gateway.sip_testlib import free_port

BARESIP_MODULES = ("g711", "g722", "opus", "ausine", "aubridge", "avcodec", "fakevideo", "snapshot", "account",
                   "menu")


@dataclass
class Baresip:
    """One baresip process with its own config directory."""

    home: Path
    sip_port: int = field(default_factory=free_port)
    video_size: str = "320x240"
    tone_hz: int = 440
    auto_answer: bool = False
    mediaenc: str | None = None  # "srtp-mand" for SDES-SRTP
    audio_codecs: str = "PCMU,PCMA"
    proc: asyncio.subprocess.Process | None = None
    log: list[str] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    def write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        lines = [
            "poll_method epoll",
            f"sip_listen 127.0.0.1:{self.sip_port}",
            "call_local_timeout 30",
            f"audio_source ausine,{self.tone_hz}",
            "audio_player aubridge,nil",
            "ausrc_srate 48000",
            "auplay_srate 48000",
            "ausrc_channels 2",
            "audio_alert aubridge,nil",
            "video_source fakevideo,nil",
            "video_display fakevideo,nil",
            f"video_size {self.video_size}",
            "video_bitrate 500000",
            "video_fps 15",
            "rtp_stats yes",
            "rtcp_mux no",
            "avcodec_h264enc libx264",
            "avcodec_h264dec h264",
            "module_path /usr/lib/baresip/modules",
            *[f"module {m}.so" for m in BARESIP_MODULES if m not in ("account", "menu")],
            *(["module srtp.so"] if self.mediaenc else []),
            "module_tmp account.so",
            "module_app menu.so",
            "snapshot_path " + str(self.home),
        ]
        (self.home / "config").write_text("\n".join(lines) + "\n")
        params = ";answermode=auto" if self.auto_answer else ""
        if self.mediaenc:
            params += f";mediaenc={self.mediaenc}"
        (self.home / "accounts").write_text(
            f"<sip:baresip@127.0.0.1:{self.sip_port}>;regint=0;audio_codecs={self.audio_codecs}{params}\n"
        )
        (self.home / "contacts").write_text("")

    async def start(self, *commands: str) -> None:
        """Start baresip; when its SIP port was taken between :func:`free_port` and its bind
        (an outgoing connection of another process got it), start again on another port."""
        for attempt in range(3):
            self.write_config()
            args = ["baresip", "-f", str(self.home)]
            for command in commands:
                args += ["-e", command]
            self.proc = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, cwd=str(self.home),
            )
            self._reader = asyncio.ensure_future(self._read())
            if attempt == 2 or not await self._bind_failed():
                return
            await self.stop()
            self.log.clear()
            self.sip_port = free_port()

    async def _bind_failed(self) -> bool:
        """True when baresip said its SIP transport could not bind (it then runs on, useless)."""
        regex = re.compile(r"baresip is ready|ua: init failed|Address already in use")
        with contextlib.suppress(TimeoutError):
            match = await self._wait_log(regex, 10.0)
            return match.group(0) != "baresip is ready"
        return False

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                return
            self.log.append(line.decode(errors="replace").rstrip())

    async def wait_log(self, pattern: str, within: float = 20.0) -> re.Match[str]:
        """The first log line matching ``pattern``; on timeout the peer's first 60 and last 60 lines
        go to stderr (pytest shows them), so a failure says what baresip saw."""
        regex = re.compile(pattern)
        try:
            return await self._wait_log(regex, within)
        except TimeoutError:
            shown = self.log if len(self.log) <= 120 else [*self.log[:60], "...", *self.log[-60:]]
            print(f"baresip's log ({self.home}):", *shown, sep="\n", file=sys.stderr)
            raise

    async def _wait_log(self, regex: re.Pattern[str], within: float) -> re.Match[str]:
        async with asyncio.timeout(within):
            while True:
                for line in self.log:
                    if m := regex.search(line):
                        return m
                await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 2)

    @property
    def text(self) -> str:
        return "\n".join(self.log)


class RecordingSink:
    """Keeps what a leg receives."""

    def __init__(self) -> None:
        self.audio: list[np.ndarray] = []
        self.video: list[av.VideoFrame] = []
        self.digits: list[str] = []
        self.keyframe_requests = 0

    def on_audio(self, leg: MediaLeg, pcm: np.ndarray) -> None:
        self.audio.append(pcm)
        del self.audio[:-500]

    def on_video(self, leg: MediaLeg, frame: av.VideoFrame) -> None:
        self.video.append(frame)
        del self.video[:-30]

    def on_dtmf(self, leg: MediaLeg, digit: str) -> None:
        self.digits.append(digit)

    def on_keyframe_request(self, leg: MediaLeg) -> None:
        self.keyframe_requests += 1


def test_pattern(i: int, width: int = 320, height: int = 240) -> av.VideoFrame:
    """Red left half, blue right half, a moving white line."""
    img = np.zeros((height, width, 3), dtype=np.uint8)
    img[:, : width // 2] = (220, 30, 30)
    img[:, width // 2 :] = (30, 30, 220)
    img[(i * 4) % height, :] = 255
    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
    frame.pts = i
    frame.time_base = fractions.Fraction(1, 15)
    return frame


class MediaUas:
    """Our endpoint plus per-call media legs: answers everything, streams a tone and a pattern."""

    def __init__(self, policy: MediaPolicy | None = None, tone_hz: int = 1000,
                 accounts: dict[str, str] | None = None, require_auth: bool = False) -> None:
        self.policy = policy or MediaPolicy()
        self.tone_hz = tone_hz
        self.require_auth = require_auth
        config = UserAgentConfig(host="127.0.0.1", port=0, policy=self.policy, accounts=accounts or {})
        self.endpoint = SipEndpoint(config, self.on_invite)
        self.legs: dict[str, MediaLeg] = {}
        self.sinks: dict[str, RecordingSink] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.endpoint.listeners.append(self._on_event)

    async def start(self) -> None:
        await self.endpoint.start()

    async def new_leg(self, call: Call) -> MediaLeg:
        sink = RecordingSink()
        leg = await MediaLeg.allocate("127.0.0.1", video=True, sink=sink)
        self.legs[call.key] = leg
        self.sinks[call.key] = sink
        return leg

    async def on_invite(self, call: Call) -> Decision:
        if self.require_auth and call.authenticated_user is None:
            return Challenge()
        leg = await self.new_leg(call)
        return Answer(leg.local_media)

    def _on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.CallEstablished | ev.MediaUpdated):
            leg = self.legs.get(event.call.key)
            if leg is not None:
                leg.start(event.call.streams)
                if isinstance(event, ev.CallEstablished):
                    self._tasks.append(asyncio.ensure_future(self._stream(leg)))
        elif isinstance(event, ev.PictureFastUpdate):
            pass
        elif isinstance(event, ev.CallEnded):
            leg = self.legs.pop(event.call.key, None)
            if leg is not None:
                self._tasks.append(asyncio.ensure_future(leg.close()))

    async def _stream(self, leg: MediaLeg) -> None:
        """20 ms audio ticks; a video frame every third tick (~16 fps)."""
        i = 0
        with contextlib.suppress(asyncio.CancelledError):
            while not leg._closed:
                leg.send_audio(tone(self.tone_hz, i * SAMPLES_PER_FRAME), marker=i == 0)
                if i % 3 == 0:
                    await leg.send_video(test_pattern(i // 3), keyframe=i % 150 == 0)
                i += 1
                await asyncio.sleep(0.02)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for leg in list(self.legs.values()):
            await leg.close()
        await self.endpoint.close()


async def dial(uas: MediaUas, target: str) -> Call:
    """Our endpoint calls ``target`` with a fresh media leg."""
    leg = await MediaLeg.allocate("127.0.0.1", video=True, sink=RecordingSink())
    call = uas.endpoint.invite(target, leg.local_media)
    uas.legs[call.key] = leg
    assert isinstance(leg.sink, RecordingSink)
    uas.sinks[call.key] = leg.sink
    return call


async def dial_registered(uas: MediaUas, user: str) -> Call | None:
    """Our endpoint calls a user registered with our registrar."""
    leg = await MediaLeg.allocate("127.0.0.1", video=False, sink=RecordingSink())
    call = uas.endpoint.invite_registered(user, leg.local_media)
    if call is None:
        await leg.close()
        return None
    uas.legs[call.key] = leg
    assert isinstance(leg.sink, RecordingSink)
    uas.sinks[call.key] = leg.sink
    return call


class FakeRoom:
    """Stand-in for an MCU room (the real one is built elsewhere): records what each site sends
    and plays a tone (and a test pattern to video sites) back, like a mixer would."""

    def __init__(self, conference_id: str, pin: str | None = None, require_auth: bool = False,
                 tone_hz: int = 1000) -> None:
        self.conference_id = conference_id
        self.pin = pin
        self.require_auth = require_auth
        self.tone_hz = tone_hz
        self.sinks: dict[int, RecordingSink] = {}
        self.joined: list[object] = []
        self.left: list[object] = []
        self._tasks: dict[int, asyncio.Task[None]] = {}

    def join(self, site: object) -> RecordingSink:
        sink = RecordingSink()
        self.sinks[id(site)] = sink
        self.joined.append(site)
        leg = site.leg  # type: ignore[attr-defined]
        self._tasks[id(site)] = asyncio.ensure_future(self._play(leg))
        return sink

    def leave(self, site: object) -> None:
        self.left.append(site)
        task = self._tasks.pop(id(site), None)
        if task is not None:
            task.cancel()

    async def _play(self, leg: MediaLeg) -> None:
        i = 0
        with contextlib.suppress(asyncio.CancelledError):
            while not leg._closed:
                leg.send_audio(tone(self.tone_hz, i * SAMPLES_PER_FRAME))
                if leg.video is not None and i % 3 == 0:
                    await leg.send_video(test_pattern(i // 3), keyframe=i % 150 == 0)
                i += 1
                await asyncio.sleep(0.02)


class FakeDirectory:
    def __init__(self, *rooms: FakeRoom) -> None:
        self.rooms = {r.conference_id: r for r in rooms}

    def find(self, conference_id: str) -> FakeRoom | None:
        return self.rooms.get(conference_id)
