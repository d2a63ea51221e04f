"""Asyncio driver for a room's media: audio every 20 ms, video at the room's fps.

The audio tick is the conference's one audio clock: after each mix it calls every attached
:class:`AudioTickSink` (the RTP and WebRTC sites, :class:`mcu.legs.site_media.SiteMedia`), which
send their N-1 mix to their endpoint, so mixing and sending never drift apart.

Heavy work never runs on the event loop: mixing runs on a single audio worker thread
(the limiter keeps state, so ticks stay in order); composing and encoding run on a pool
of worker threads (PyAV and NumPy release the GIL). Per video tick:

1. loop: ``room.video_jobs()`` snapshots each active view (cheap);
2. workers: every view is rendered and scaled, views in parallel;
3. workers: encoders run, strictly after the previous tick's encoders (frame order);
4. loop: ``room.deliver()`` hands packets to subscribers.

At most ``max_in_flight`` ticks overlap (render of tick k+1 with encode of tick k);
beyond that a tick is skipped and counted, so a slow machine loses frames, not latency.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from core.tasks import cancel_and_wait
from sip_gateway.rtp.media_primitives import FRAME_MS

from .pacer import Pacer
from .room import Room, VideoJob, encode_job, render_job

log = logging.getLogger(__name__)


def deprioritise_current_thread(niceness: int = 5) -> bool:
    """Lower this thread's CPU priority (Linux: per-thread nice). Returns False where unsupported.

    Legs should call this in their decode threads: on a saturated machine a late decoded
    frame spoils one pane, a late composed/encoded frame spoils every receiver's picture.
    Measured with bench/mcu_mix.py on a loaded 2-core machine (9 sources): 8 fps without,
    25 fps with decoders at nice 5.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (AttributeError, OSError):
        return False
    return True


class AudioTickSink(Protocol):
    """What the conference clock drives every 20 ms, right after the mix."""

    participant_id: str

    def send_audio_tick(self) -> None:
        """Send this site its N-1 mix (silence when none is ready)."""

PANE_SIZE_INTERVAL = 0.2  # seconds between pane-size updates (a shown source waits at most this)


@dataclass
class RunnerStats:
    audio_ticks: int = 0
    audio_late: int = 0
    audio_errors: int = 0
    video_ticks: int = 0
    video_skipped: int = 0
    video_errors: int = 0
    pane_requests: int = 0


class MediaRunner:
    """Runs a room's audio and video ticks until :meth:`stop` (or the room ends)."""

    def __init__(self, room: Room, *, workers: int | None = None, max_in_flight: int = 2) -> None:
        self.room = room
        self.stats = RunnerStats()
        self.max_in_flight = max_in_flight
        self._pool = ThreadPoolExecutor(max_workers=workers or max(2, (os.cpu_count() or 2)),
                                        thread_name_prefix=f"mcu-video-{room.id}")
        self._audio_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"mcu-audio-{room.id}")
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._last_encode: asyncio.Future[None] | None = None
        self.audio_sinks: list[AudioTickSink] = []  # sites fed by this conference's audio clock

    def add_audio_sink(self, sink: AudioTickSink) -> None:
        """Send ``sink`` its mix on every audio tick from now on."""
        if sink not in self.audio_sinks:
            self.audio_sinks.append(sink)

    def remove_audio_sink(self, sink: AudioTickSink) -> None:
        """Stop ticking ``sink`` (idempotent)."""
        if sink in self.audio_sinks:
            self.audio_sinks.remove(sink)

    def tick_audio_sinks(self) -> None:
        """One 20 ms send to every attached site (one broken leg must not silence the others)."""
        for sink in list(self.audio_sinks):
            try:
                sink.send_audio_tick()
            except Exception:
                log.exception("site %s: sending audio failed", sink.participant_id)

    async def start(self) -> None:
        if self._tasks:
            return
        self._tasks = [asyncio.create_task(self._audio_loop()), asyncio.create_task(self._video_loop())]

    async def stop(self) -> None:
        # A last tick lets the sites see that the room removed them (their calls hang up).
        self.tick_audio_sinks()
        await cancel_and_wait(self._tasks)
        self._tasks = []
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        self._pool.shutdown(wait=True)
        self._audio_pool.shutdown(wait=True)

    async def __aenter__(self) -> MediaRunner:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _audio_loop(self) -> None:
        loop = asyncio.get_running_loop()
        pacer = Pacer(FRAME_MS / 1000)
        while not self.room.ended:
            if not await pacer.wait():  # far behind (suspended?): resynchronised, not bursting
                self.stats.audio_late += 1
            try:
                inp = self.room.gather_audio()
                out = await loop.run_in_executor(self._audio_pool, self.room.mixer.mix, inp)
                if self.room.ended:
                    break
                self.room.apply_mix(inp, out)
            except Exception:  # one bad tick must not silence the conference
                self.stats.audio_errors += 1
                log.exception("room %s: audio tick failed", self.room.id)
                self.tick_audio_sinks()  # silence (an underrun) rather than nothing
                continue
            self.stats.audio_ticks += 1
            self.tick_audio_sinks()

    async def _video_loop(self) -> None:
        loop = asyncio.get_running_loop()
        pacer = Pacer(1 / self.room.settings.fps)
        every = max(1, round(self.room.settings.fps * PANE_SIZE_INTERVAL))
        ticks = 0
        while not self.room.ended:
            await pacer.wait()
            ticks += 1
            if ticks % every == 1 or every == 1:  # what each site is asked to send (mcu.pane_size)
                try:
                    self.stats.pane_requests += len(self.room.update_pane_sizes())
                except Exception:
                    log.exception("room %s: pane sizes failed", self.room.id)
            if len(self._in_flight) >= self.max_in_flight:
                self.stats.video_skipped += 1
                continue
            try:
                jobs = self.room.video_jobs()
            except Exception:
                self.stats.video_errors += 1
                log.exception("room %s: building video jobs failed", self.room.id)
                continue
            if not jobs:
                continue
            previous = self._last_encode
            done: asyncio.Future[None] = loop.create_future()
            self._last_encode = done
            task = asyncio.create_task(self._run_tick(jobs, previous, done))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            self.stats.video_ticks += 1

    async def _run_tick(self, jobs: list[VideoJob], previous: asyncio.Future[None] | None,
                        done: asyncio.Future[None]) -> None:
        loop = asyncio.get_running_loop()
        compositor = self.room.compositor
        try:
            rendered = await asyncio.gather(*(loop.run_in_executor(self._pool, render_job, compositor, j) for j in jobs))
            if previous is not None:
                await asyncio.shield(previous)
            results = await asyncio.gather(
                *(loop.run_in_executor(self._pool, encode_job, j, r) for j, r in zip(jobs, rendered, strict=True))
            )
        except Exception:
            self.stats.video_errors += 1
            log.exception("room %s: video tick failed", self.room.id)
            return
        finally:
            if not done.done():
                done.set_result(None)
        for result in results:
            self.room.deliver(result)
