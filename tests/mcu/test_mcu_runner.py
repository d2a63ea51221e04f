"""The asyncio runner: real time, media off the loop, packets and mixes delivered in order."""
from __future__ import annotations

import asyncio
import time

import numpy as np
from mcu_helpers import amplitude_at, decode_all, identify, source_frame, tone, yuv_at

from mcu import events as ev
from mcu.room import Room, RoomSettings
from mcu.runner import MediaRunner
from sip_gateway.rtp.media_primitives import EncodedPacket


async def test_runner_mixes_composes_encodes_without_blocking_the_loop(text) -> None:  # type: ignore[no-untyped-def]
    events: list[ev.RoomEvent] = []
    room = Room("rt", on_event=events.append, settings=RoomSettings(fps=15), text=text)
    room.set_labels(False)
    for i in range(4):
        room.join(f"s{i}").push_video(source_frame(i))
    packets: list[EncodedPacket] = []
    room.subscribe_video("s0", packets.append, width=640, height=360)
    heard: list[np.ndarray] = []
    lags: list[float] = []

    async def legs() -> None:
        k = 0
        while True:
            for i in range(3):  # s3 is a stalled audio source
                room.participants[f"s{i}"].push_audio(tone(400 + 300 * i, 3000, k))
            if k % 3 == 0:
                for i in range(4):
                    room.participants[f"s{i}"].push_video(source_frame(i))
            mix = room.participants["s0"].pull_audio()
            if mix is not None:
                heard.append(mix)
            k += 1
            before = time.monotonic()
            await asyncio.sleep(0.02)
            lags.append(time.monotonic() - before - 0.02)

    async with MediaRunner(room, workers=2) as runner:
        task = asyncio.create_task(legs())
        await asyncio.sleep(1.5)
        task.cancel()
    assert runner.stats.video_errors == 0 and runner.stats.audio_errors == 0
    assert runner.stats.audio_ticks >= 40
    assert len(packets) >= 8 and packets[0].keyframe
    assert all(a.pts < b.pts for a, b in zip(packets, packets[1:], strict=False))
    frames = decode_all([p.data for p in packets], "h264")
    assert [identify(yuv_at(frames[-1], x, y)) for x, y in ((160, 90), (480, 90), (160, 270), (480, 270))] == [0, 1, 2, 3]
    assert len(heard) >= 30
    # 200 ms of what s0 heard (legs are not synchronised with the mixer, so one 20 ms frame
    # may be an underrun; the spectrum over ten frames is not sensitive to that)
    late = np.concatenate(heard[-10:])
    assert amplitude_at(late, 700) > 1500 and amplitude_at(late, 1000) > 1500 and amplitude_at(late, 400) < 50
    assert any(isinstance(e, ev.AudioLevels) for e in events)
    # generous bound: the machine is shared, but codec work must not sit on the loop
    assert float(np.percentile(lags, 90)) < 0.1
    room.end()
