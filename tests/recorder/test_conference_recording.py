"""Conference recording: the broadcast view (stream copy of the shared encoder) and the full mix,
recorded into the recorder's store with index rows and log leaves, like a camera's segments.

Real parts: the conference service and room on the embedded PostgreSQL, the asyncio media runner,
libx264, the recorder service, PyAV decoding of the stored files and the offline verifier.
"""

from __future__ import annotations

import asyncio
import io
import re
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest

from core.runtime import CoreServices
from mcu.clock import FakeClock
from mcu.conferences import ConferenceService, RunningConference
from mcu.content.layout import content_rects
from mcu.encoder import EncoderKey
from mcu.layout import Rect
from mcu.participant import VideoSample
from mcu.recording_tap import RecordingTap
from mcu.room import CONTENT_VIEW, Room, RoomSettings, Subscription
from recorder.capability import start_conference_recording
from recorder.conference_recording import (
    HTTP_STATUS,
    ConferenceRecorder,
    ConferenceRecordingError,
    conference_camera_id,
)
from recorder.conference_writer import RecordingWriter
from recorder.index import IndexedSegment
from recorder.ingest import CommittedSegment
from recorder.replay import ReplayError, extract_track
from recorder.service import RecorderService
from recorder.store import DirectoryStore
from recorder.verify import verify_export
from sip_gateway.rtp.media_primitives import EncodedPacket
from tests.recorder.helpers import recorder_config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "mcu"))
from mcu_helpers import amplitude_at, identify, source_frame, tone, yuv_at  # noqa: E402

TONES = (400.0, 700.0, 1000.0, 1300.0)  # site i's tone; site 3 is muted
SEGMENT_S = 3.0


@dataclass
class Env:
    services: CoreServices
    conferences: ConferenceService
    recorder: RecorderService
    confrec: ConferenceRecorder
    var: Path


@pytest.fixture
async def env(services: CoreServices, tmp_path: Path) -> AsyncIterator[Env]:
    conferences = ConferenceService(services, RoomSettings(fps=15))
    await conferences.start()
    recorder = RecorderService(services.db, recorder_config(tmp_path, segment_seconds=SEGMENT_S, head_interval_s=600.0),
                               services.audit)
    await recorder.start()
    confrec = ConferenceRecorder(RecordingTap(conferences), recorder, services.bus, services.audit)
    try:
        yield Env(services, conferences, recorder, confrec, tmp_path)
    finally:
        await confrec.stop()
        await recorder.stop()
        await conferences.stop()


async def _feed(room: Room, sites: int, stop: asyncio.Event) -> None:
    """Legs: each site sends its tone every 20 ms and its colour five times a second."""
    k = 0
    while not stop.is_set():
        for i in range(sites):
            site = room.participants.get(f"s{i}")
            if site is None:
                continue
            site.push_audio(tone(TONES[i], 3000, k))
            if k % 10 == 0:
                site.push_video(source_frame(i, 320, 180))
        k += 1
        await asyncio.sleep(0.02)


async def _conference(env: Env, sites: int, name: str = "防汛会商（录制测试）") -> RunningConference:
    record = await env.conferences.create(name=name, actor="chair")
    conf = await env.conferences.start_conference(record.id, actor="chair")
    conf.room.set_labels(False)
    for i in range(sites):
        await conf.join(f"s{i}", f"会场{i}", "demo")
    return conf


def _nal_units_annexb(data: bytes) -> tuple[bytes, ...]:
    parts = re.split(b"\x00\x00\x01", data)
    return tuple(p.rstrip(b"\x00") for p in parts if p.rstrip(b"\x00"))


def _nal_units_avcc(data: bytes) -> tuple[bytes, ...]:
    out, i = [], 0
    while i + 4 <= len(data):
        n = int.from_bytes(data[i:i + 4], "big")
        out.append(data[i + 4:i + 4 + n].rstrip(b"\x00"))
        i += 4 + n
    assert i == len(data), "MP4 samples must be 4-byte length-prefixed NAL units"
    return tuple(out)


def _read_segment(path: Path) -> tuple[list[tuple[bytes, ...]], list[av.VideoFrame], np.ndarray]:
    """(NAL units of each video sample, decoded video frames, decoded mono audio as float)."""
    with av.open(str(path)) as c:
        samples = [_nal_units_avcc(bytes(p)) for p in c.demux(c.streams.video[0]) if p.size]
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
    with av.open(str(path)) as c:
        assert c.streams.audio and c.streams.audio[0].codec_context.name == "aac"
        # A segment cut just before the stop may end before the next mix tick arrived: no sound.
        audio = np.concatenate([np.zeros(0, np.float32)] + [f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    return samples, frames, audio


async def _segments(env: Env, camera: str) -> list[IndexedSegment]:
    return await env.recorder.index.segments([camera], 0, 2**62)


async def test_records_broadcast_and_full_mix_without_reencoding(env: Env) -> None:
    conf = await _conference(env, sites=4)
    room = conf.room
    room.mute("s3")  # a muted site must not be heard in the recording
    leg: list[EncodedPacket] = []
    room.subscribe_video("s0", leg.append, width=640, height=360)  # a site watching the broadcast view
    stop = asyncio.Event()
    feeder = asyncio.create_task(_feed(room, 4, stop))
    events = env.services.bus.subscribe("conference.recording_*")
    await asyncio.sleep(0.5)
    encoders_before = list(room.encoder_keys)

    handle = await env.confrec.start_recording(conf.id, "chair01", source="127.0.0.1")
    assert env.confrec.is_recording(conf.id) and env.confrec.recording(conf.id) is handle
    # The recording joined the encoder the site already uses: no people encoder was added. It also
    # listens to the content encoder, which encodes nothing while nobody presents.
    content_key = EncoderKey(CONTENT_VIEW, "h264", 1920, 1080)
    assert [k for k in room.encoder_keys if k != content_key] == encoders_before and handle.shared_encoder
    assert content_key in room.encoder_keys
    assert (handle.encoder.width, handle.encoder.height) == (640, 360)
    assert await env.confrec.start_recording(conf.id, "chair01") is handle  # idempotent
    await asyncio.sleep(9.5)
    content_encoder = room.encoder(content_key)
    assert content_encoder is not None and content_encoder.frames_in == 0
    stopped = await env.confrec.stop_recording(conf.id, "chair01", source="127.0.0.1")
    stop.set()
    await feeder
    assert stopped is handle and handle.stop_reason == "stopped" and not env.confrec.is_recording(conf.id)
    assert await env.confrec.stop_recording(conf.id, "chair01") is None  # idempotent
    assert handle.stats.last_error is None and handle.stats.dropped == 0

    camera = conference_camera_id(conf.id)
    segs = await _segments(env, camera)
    assert len(segs) >= 3, segs
    assert handle.stats.segments == len(segs)
    for a, b in zip(segs, segs[1:], strict=False):
        assert a.end_ms == b.start_ms  # contiguous
    for seg in segs[:-1]:
        assert SEGMENT_S - 0.35 <= (seg.end_ms - seg.start_ms) / 1000 <= SEGMENT_S + 1.2, seg
    assert abs(segs[0].start_ms / 1000 - handle.started_at) < 1.5
    assert all(s.codec.startswith("avc1.42") and s.codec.endswith(",mp4a.40.2") and s.has_audio for s in segs)
    assert all((s.width, s.height) == (640, 360) for s in segs)

    leg_units = [_nal_units_annexb(p.data) for p in leg]
    recorded_units: list[tuple[bytes, ...]] = []
    audio_parts = []
    for seg in segs:
        path = env.recorder.store.local_path(seg.store_key)
        assert path is not None and path.is_file()
        units, frames, audio = _read_segment(path)
        assert frames and frames[0].key_frame and (frames[0].width, frames[0].height) == (640, 360)
        # Every segment shows the 2x2 layout of the four coloured sites.
        mid = frames[len(frames) // 2]
        assert [identify(yuv_at(mid, x, y)) for x, y in ((160, 90), (480, 90), (160, 270), (480, 270))] == [0, 1, 2, 3]
        # frames fill the segment (a loaded machine may skip a few video ticks)
        assert 0.5 * 15 * (seg.end_ms - seg.start_ms) / 1000 - 1 <= len(frames) <= 15 * (seg.end_ms - seg.start_ms) / 1000 + 2
        assert abs(len(audio) / 48_000 - (seg.end_ms - seg.start_ms) / 1000) < 0.2  # sound spans the segment
        recorded_units.extend(units)
        audio_parts.append(audio)
    # No re-encode: the stored samples are, NAL unit for NAL unit, the shared encoder's output.
    first = leg_units.index(recorded_units[0])
    assert leg_units[first:first + len(recorded_units)] == recorded_units
    assert len(recorded_units) >= 9 * 15 * 0.5

    # The full mix: all three unmuted tones, not the muted one (an N-1 mix would lack one tone).
    audio = np.concatenate(audio_parts) * 32767.0
    assert len(audio) >= 8.5 * 48_000
    # Per 20 ms window (every tone is a whole number of periods in 960 samples): the legs are not
    # synchronised with the mixer, so a tick may miss a site's frame and phase jumps between frames.
    windows = audio[48_000: 48_000 * 8].reshape(-1, 960)
    level = {f: float(np.mean([amplitude_at(w, f) for w in windows])) for f in TONES}
    assert all(level[f] > 1000 for f in TONES[:3]), level  # ~2800 of 3000 measured on an idle machine
    assert level[TONES[3]] < 100, level

    # The segments are evidence like a camera's: an export bundle verifies offline.
    result = await env.recorder.export("inspector01", [camera], segs[0].start_ms, segs[-1].end_ms, "核查会议录像",
                                       env.var / "bundle")
    report = verify_export(result.path)
    assert report.ok, report.format()
    assert len(report.segments) == len(segs) and all(s.camera == camera for s in report.segments)

    topics = []
    while not events._queue.empty():
        event = await events.get()
        topics.append((event.topic, event.payload["conference_id"], event.payload.get("stop_reason")))
    assert topics == [("conference.recording_started", conf.id, None),
                      ("conference.recording_stopped", conf.id, "stopped")]
    audit = await env.services.audit.recent(action="conference.recording")
    assert [(e.action, e.actor, e.target, e.source) for e in reversed(audit)] == [
        ("conference.recording.start", "chair01", conf.id, "127.0.0.1"),
        ("conference.recording.stop", "chair01", conf.id, "127.0.0.1")]
    assert audit[0].detail["segments"] == len(segs)
    assert await env.confrec.recorded(conf.id) == [{
        "conference_id": conf.id, "name": "防汛会商（录制测试）", "camera": camera, "start_ms": segs[0].start_ms,
        "end_ms": segs[-1].end_ms, "segments": len(segs), "bytes": sum(s.size for s in segs), "recording": False}]


async def test_restart_leaves_an_explained_gap_and_conference_end_stops_recording(env: Env) -> None:
    conf = await _conference(env, sites=1, name="应急指挥会（录制测试）")
    stop = asyncio.Event()
    feeder = asyncio.create_task(_feed(conf.room, 1, stop))
    camera = conference_camera_id(conf.id)
    events = env.services.bus.subscribe("conference.recording_stopped")
    try:
        await env.confrec.start_recording(conf.id, "chair01")
        await asyncio.sleep(2.0)
        await env.confrec.stop_recording(conf.id, "chair01")
        first = await _segments(env, camera)
        assert len(first) == 1
        await asyncio.sleep(1.5)
        handle = await env.confrec.start_recording(conf.id, "chair01")
        await asyncio.sleep(2.0)
        await env.conferences.end(conf.id, actor="chair")  # ends the room: the recording stops by itself
        for _ in range(50):
            if not handle.active:
                break
            await asyncio.sleep(0.1)
        assert not env.confrec.is_recording(conf.id)
        assert handle.stop_reason == "conference_ended" and handle.stopped_by == "system"
    finally:
        stop.set()
        await feeder
    segs = await _segments(env, camera)
    assert len(segs) == 2 and segs[1].start_ms - segs[0].end_ms >= 1000
    gaps = await env.recorder.index.gaps([camera], 0, 2**62)
    assert len(gaps) == 1 and (gaps[0].start_ms, gaps[0].end_ms) == (segs[0].end_ms, segs[1].start_ms)
    assert "stopped" in gaps[0].cause and "chair01" in gaps[0].cause
    reasons = []
    while not events._queue.empty():
        reasons.append((await events.get()).payload["stop_reason"])
    assert reasons == ["stopped", "conference_ended"]
    for seg in segs:
        path = env.recorder.store.local_path(seg.store_key)
        assert path is not None
        _, frames, audio = _read_segment(path)
        assert frames and len(audio) > 48_000
    # Once ended, a conference cannot be recorded again.
    with pytest.raises(ConferenceRecordingError, match="已结束"):
        await env.confrec.start_recording(conf.id, "chair01")


async def test_bad_requests_are_refused_and_write_nothing(env: Env, services: CoreServices, tmp_path: Path) -> None:
    scheduled = await env.conferences.create(name="尚未开始的会议", actor="chair")
    ended = await env.conferences.create(name="已结束的会议", actor="chair")
    await env.conferences.start_conference(ended.id, actor="chair")
    await env.conferences.end(ended.id, actor="chair")
    running = await _conference(env, sites=1, name="进行中的会议")
    events = services.bus.subscribe("conference.recording_*")
    log_size = env.recorder.log.size
    keys_before = list(running.room.encoder_keys)

    cases = [
        ("99999999", "chair01", "unknown", "会议不存在"),
        ("../../etc", "chair01", "unknown", "会议号无效"),
        (scheduled.id, "chair01", "not_running", "未在本节点进行"),
        (ended.id, "chair01", "ended", "已结束"),
        (running.id, "  ", "bad_request", "缺少操作人"),
    ]
    for conference_id, actor, code, message in cases:
        with pytest.raises(ConferenceRecordingError, match=message) as refused:
            await env.confrec.start_recording(conference_id, actor)
        assert refused.value.code == code and code in HTTP_STATUS
    with pytest.raises(ConferenceRecordingError, match="未知原因"):
        await env.confrec.stop_recording(running.id, "chair01", reason="bored")
    # A recorder that is not running cannot take a recording.
    idle = RecorderService(services.db, recorder_config(tmp_path / "idle"), services.audit)
    with pytest.raises(ConferenceRecordingError, match="录像服务未运行") as refused:
        await ConferenceRecorder(RecordingTap(env.conferences), idle, services.bus, services.audit).start_recording(
            running.id, "chair01")
    assert HTTP_STATUS[refused.value.code] == 503

    await asyncio.sleep(0.3)
    assert env.confrec.recordings() == [] and not env.confrec.is_recording(running.id)
    assert running.room.encoder_keys == keys_before  # no subscription left behind
    assert running.room._mix_listeners == []
    assert env.recorder.log.size == log_size
    assert not [p for p in (env.var / "recordings").rglob("*") if p.is_file()]
    assert await services.audit.recent(action="conference.recording") == []
    assert await env.confrec.recorded() == []
    assert events._queue.empty()


def test_room_full_mix_hears_every_unmuted_site() -> None:
    """The hook the recording uses: the full mix, beside the unchanged N-1 mixes."""
    clock = FakeClock()
    room = Room("mix", clock=clock)
    for i in range(3):
        room.join(f"s{i}")
    room.mute("s2")
    room.deaf("s0")  # deafness is about what a site hears, not what the recording hears
    heard: list[tuple[np.ndarray, float]] = []
    assert room.audio_tick().full is None  # nobody listening: no extra work

    def listener(samples: np.ndarray, at: float) -> None:
        heard.append((samples, at))

    room.add_mix_listener(listener)
    for k in range(5):
        for i in range(3):
            room.participants[f"s{i}"].push_audio(tone(TONES[i], 3000, k))
        out = room.audio_tick()
        clock.advance(0.02)
    assert len(heard) == 5 and heard[-1][1] == pytest.approx(clock.monotonic() - 0.02)
    full = heard[-1][0]
    assert amplitude_at(full, TONES[0]) > 2900 and amplitude_at(full, TONES[1]) > 2900
    assert amplitude_at(full, TONES[2]) < 10
    s1_hears = out.mixes[out.ids.index("s1")]
    assert amplitude_at(s1_hears, TONES[1]) < 10 and amplitude_at(s1_hears, TONES[0]) > 2900  # N-1 unchanged
    room.remove_mix_listener(listener)
    room.remove_mix_listener(listener)  # idempotent
    assert room.audio_tick().full is None and len(heard) == 5


def test_writer_on_a_fake_clock_cuts_on_time_and_survives_an_overflow(tmp_path: Path) -> None:
    """The writer alone, deterministic: cuts where due, and a queue overflow becomes a gap, not corruption."""
    clock = FakeClock()
    room = Room("w", clock=clock, settings=RoomSettings(fps=25))
    room.set_labels(False)
    room.join("s0").push_video(source_frame(0, 320, 180))
    committed: list[CommittedSegment] = []
    sub: list[Subscription] = []
    writer = RecordingWriter(
        "conf-w", DirectoryStore(tmp_path / "rec"), committed.append, segment_seconds=2.0, now=clock.monotonic,
        wall_of=lambda t: 1_800_000_000.0 + t, request_keyframe=lambda: sub[0].request_keyframe(), max_queued=60)
    sub.append(room.subscribe_view("broadcast", writer.video, width=640, height=360))
    room.add_mix_listener(writer.audio)

    def run(seconds: float) -> None:
        for _ in range(int(seconds * 25)):
            for _ in range(2):
                room.participants["s0"].push_audio(tone(TONES[0], 3000, 0))
                clock.advance(0.02)
                room.audio_tick()
            room.video_tick()
            while writer.alive and writer._queue.qsize() > 10:  # keep up, as a real-time writer would
                time.sleep(0.001)

    run(1.0)  # the writer is not running yet: 75 items for a queue of 60
    assert writer.stats.dropped == 15
    writer.start()
    run(6.0)
    writer.finish()
    assert writer.stats.last_error is None and not writer.alive
    spans = [(c.start_ms - 1_800_000_000_000 - 1000 * 1000, c.end_ms - 1_800_000_000_000 - 1000 * 1000)
             for c in committed]
    # Before the loss: the 0.8 s that fitted in the queue. Then a gap, a key frame (requested;
    # rate-limited to one a second), and 2 s segments cut on the requested key frames.
    assert spans[0][0] == 40 and 700 <= spans[0][1] <= 900, spans
    assert spans[1][0] - spans[0][1] >= 200
    for a, b in zip(spans[1:], spans[2:], strict=False):
        assert a[1] == b[0]
    assert all(1700 <= end - start <= 2100 for start, end in spans[1:-1]), spans
    assert len(spans) >= 4
    for c in committed:
        path = tmp_path / "rec" / c.key
        _, frames, audio = _read_segment(path)
        assert frames[0].key_frame and len(frames) == c.video_frames and c.has_audio == (len(audio) > 0)
        assert abs(len(audio) / 48_000 - (c.end_ms - c.start_ms) / 1000) < 0.1


async def test_capability_needs_the_mcu_and_the_recorder_in_one_process(env: Env) -> None:
    core = env.services
    assert await start_conference_recording(core.bus, core.audit, None, None) is None
    # an MCU-only node has no store to record into
    assert await start_conference_recording(core.bus, core.audit, RecordingTap(env.conferences), None) is None
    role = await start_conference_recording(core.bus, core.audit, RecordingTap(env.conferences), env.recorder)
    assert role is not None and role.recorder.recorder is env.recorder
    handle = await role.recorder.start_recording("80000001", "chair01")  # the demo's standing conference
    assert role.recorder.is_recording("80000001")
    await role.stop()  # node shutdown stops every recording
    assert handle.stop_reason == "node_stopping" and not role.recorder.is_recording("80000001")


class _ContentFeed:
    """The room's content feed as the content service gives it: the newest frame while someone presents."""

    def __init__(self) -> None:
        self.frame: VideoSample | None = None

    def content_sample(self) -> VideoSample | None:
        return self.frame

    def content_rects(self, width: int, height: int, sites: int) -> tuple[Rect, list[Rect]] | None:
        return content_rects("content+speakers", width, height, sites)


CONTENT_COLOUR = 9  # palette colour of the shared content


def test_writer_records_the_content_stream_as_a_second_track(tmp_path: Path) -> None:
    """Content shared from 2.0 s to 5.0 s of a 7 s recording: the segments overlapping it carry a
    second video track, stream-copied from the shared content encoder (1920x1080), starting on a key
    frame in every segment, showing the content colour; the committed segments name the spans."""
    clock = FakeClock()
    room = Room("w", clock=clock, settings=RoomSettings(fps=25))
    room.set_labels(False)
    room.join("s0").push_video(source_frame(0, 320, 180))
    feed = _ContentFeed()
    room.content = feed
    committed: list[CommittedSegment] = []
    subs: dict[str, Subscription] = {}
    content_packets: list[EncodedPacket] = []
    wall0 = 1_800_000_000.0
    writer = RecordingWriter(
        "conf-c", DirectoryStore(tmp_path / "rec"), committed.append, segment_seconds=2.0, now=clock.monotonic,
        wall_of=lambda t: wall0 + t, request_keyframe=lambda: subs["people"].request_keyframe(),
        request_content_keyframe=lambda: subs["content"].request_keyframe())
    subs["people"] = room.subscribe_view("broadcast", writer.video, width=640, height=360)

    def on_content(packet: EncodedPacket) -> None:
        content_packets.append(packet)
        writer.content(packet)

    subs["content"] = room.subscribe_view(CONTENT_VIEW, on_content, width=1920, height=1080)
    room.add_mix_listener(writer.audio)
    writer.start()
    start = clock.monotonic()
    seq = 0
    for _ in range(7 * 25):
        for _ in range(2):
            room.participants["s0"].push_audio(tone(TONES[0], 3000, 0))
            clock.advance(0.02)
            room.audio_tick()
        if 2.0 <= clock.monotonic() - start < 5.0:
            seq += 1
            feed.frame = VideoSample(source_frame(CONTENT_COLOUR, 640, 360), seq, clock.monotonic())
        else:
            feed.frame = None
        room.video_tick()
        while writer.alive and writer._queue.qsize() > 10:
            time.sleep(0.001)
    writer.finish()
    assert writer.stats.last_error is None
    with_content = [c for c in committed if c.content_spans]
    assert len(with_content) >= 2, [(c.start_ms, c.end_ms, c.content_spans) for c in committed]
    assert all(c.content_codec.startswith("avc1.") for c in with_content)
    spans = [s for c in with_content for s in c.content_spans]
    base = int((wall0 + start) * 1000)
    # 2.0 s .. 5.0 s of conference time, within a content frame or two (the encoder's 12.5 fps).
    assert abs(spans[0][0] - base - 2000) <= 200 and abs(spans[-1][1] - base - 5000) <= 200, (base, spans)
    for a, b in zip(spans, spans[1:], strict=False):
        assert b[0] - a[1] <= 100, spans  # no hole at the segment boundaries
    stored: list[bytes] = []
    for c in committed:
        with av.open(str(tmp_path / "rec" / c.key)) as container:
            videos = container.streams.video
            assert len(videos) == (2 if c.content_spans else 1), c
            if not c.content_spans:
                continue
            assert (videos[1].codec_context.width, videos[1].codec_context.height) == (1920, 1080)
            packets = [p for p in container.demux(videos[1]) if p.size]
            assert packets[0].is_keyframe
            stored += [b"".join(_nal_units_avcc(bytes(p))) for p in packets]
        with av.open(str(tmp_path / "rec" / c.key)) as container:
            frame = next(container.decode(video=1))
            assert identify(yuv_at(frame, 960, 540)) == CONTENT_COLOUR
    # Stream copy: every stored content sample is one of the shared encoder's access units.
    sent = {b"".join(_nal_units_annexb(p.data)) for p in content_packets}
    assert stored and all(s in sent for s in stored)
    # The replay page gets each segment one track at a time (stream copy, in memory).
    seg = with_content[0]
    with av.open(io.BytesIO(extract_track(tmp_path / "rec" / seg.key, "people")), mode="r") as people:
        assert [s.type for s in people.streams] == ["video", "audio"]
        assert people.streams.video[0].codec_context.width == 640
    with av.open(io.BytesIO(extract_track(tmp_path / "rec" / seg.key, "content")), mode="r") as content:
        assert len(content.streams) == 1 and content.streams.video[0].codec_context.width == 1920
        assert identify(yuv_at(next(content.decode(video=0)), 960, 540)) == CONTENT_COLOUR
    plain = next(c for c in committed if not c.content_spans)
    with pytest.raises(ReplayError) as refused:
        extract_track(tmp_path / "rec" / plain.key, "content")
    assert refused.value.code == "no_content"
