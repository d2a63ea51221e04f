"""Synthetic demo sites: the standing demo conference fills itself with moving test pictures.

Each site of a conference whose meeting room has a ``demo`` endpoint (the city hall and the
five counties in the demo plan) joins as "<name>（演示）" and sends a small moving test picture
carrying its name and the word DEMO, plus a quiet tone (below the speaker detector's threshold,
so the demo never steals the active-speaker picture from real participants).

Cost is kept small on purpose: 320x180 at 5 fps, one shared 20 ms audio task. Switch them off
with ``demo.demo_sites = false`` (``CC_DEMO__DEMO_SITES=false``).
"""
from __future__ import annotations

import asyncio
import colorsys
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from core.tasks import cancel_and_wait
from sip_gateway.rtp.media_primitives import FRAME_SAMPLES, SAMPLE_RATE

from .pacer import AUDIO_PERIOD, Pacer
from .room import RoomError
from .text import DEFAULT_FONT

if TYPE_CHECKING:
    from config.site_plan import SitePlan

    from .conferences import RunningConference
    from .participant import Participant

log = logging.getLogger(__name__)

WIDTH, HEIGHT, FPS = 320, 180, 5
TONE_AMPLITUDE = 150  # about -47 dBFS: audible as a faint hum, below the VAD's -35 dBFS


@dataclass
class DemoSite:
    site_id: str
    name: str
    background: npt.NDArray[np.uint8]  # (H, W, 3) RGB with the label drawn in
    frequency: float
    participant: Participant | None = None


def demo_site_ids(plan: SitePlan, sites: list[str]) -> list[tuple[str, str]]:
    """(site id, room name) of the conference's sites whose meeting room has a demo endpoint."""
    rooms = {r.id: r for r in plan.meeting_rooms}
    return [(s, rooms[s].name) for s in sites
            if s in rooms and any(e.protocol == "demo" for e in rooms[s].endpoints)]


def render_background(name: str, index: int, font_path: Path = DEFAULT_FONT) -> npt.NDArray[np.uint8]:
    """A coloured card with the site name and a DEMO mark (drawn once per site)."""
    r, g, b = colorsys.hsv_to_rgb((index * 0.17) % 1.0, 0.55, 0.55)
    image = Image.new("RGB", (WIDTH, HEIGHT), (int(r * 255), int(g * 255), int(b * 255)))
    draw = ImageDraw.Draw(image)
    big: ImageFont.FreeTypeFont | ImageFont.ImageFont
    small: ImageFont.FreeTypeFont | ImageFont.ImageFont
    try:
        big = ImageFont.truetype(str(font_path), 26)
        small = ImageFont.truetype(str(font_path), 16)
    except OSError:
        big = small = ImageFont.load_default()
    draw.text((12, 52), name, font=big, fill=(255, 255, 255))
    draw.text((12, 92), "演示会场 · DEMO", font=small, fill=(255, 230, 120))
    return np.asarray(image, np.uint8).copy()


def moving_frame(background: npt.NDArray[np.uint8], t: float) -> av.VideoFrame:
    """The card with a bar sweeping across and a seconds counter: visibly live."""
    rgb = background.copy()
    x = int(t * 60) % WIDTH
    rgb[118:140, max(0, x - 6):x + 6] = (255, 255, 255)  # above the compositor's name label
    seconds = int(t) % 60
    rgb[8:20, 8:8 + seconds * 4] = (255, 230, 120)
    return av.VideoFrame.from_ndarray(rgb, format="rgb24")


def tone_frame(frequency: float, tick: int) -> npt.NDArray[np.int16]:
    """The `tick`-th 20 ms frame of a quiet sine tone."""
    n = np.arange(FRAME_SAMPLES) + tick * FRAME_SAMPLES
    return (TONE_AMPLITUDE * np.sin(2 * np.pi * frequency * n / SAMPLE_RATE)).astype(np.int16)


class DemoSites:
    """Runs the demo sites of one conference until :meth:`stop`."""

    def __init__(self, conference: RunningConference, plan: SitePlan) -> None:
        self.conference = conference
        self.sites = [DemoSite(sid, name, render_background(name, i), 300.0 + 37.0 * i)
                      for i, (sid, name) in enumerate(demo_site_ids(plan, conference.record.sites))]
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for site in self.sites:
            try:
                site.participant = await self.conference.join(site.site_id, f"{site.name}（演示）", "demo")
            except RoomError as exc:
                log.warning("demo site %s not joined: %s", site.site_id, exc)
        self._tasks = [asyncio.create_task(self._video(), name="demo-video"),
                       asyncio.create_task(self._audio(), name="demo-audio")]

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks = []
        for site in self.sites:
            if site.participant is not None and not site.participant.has_left:
                await self.conference.leave(site.site_id, "left")

    def _live(self) -> list[DemoSite]:
        return [s for s in self.sites if s.participant is not None and not s.participant.has_left]

    async def _video(self) -> None:
        start = time.monotonic()
        pacer = Pacer(1 / FPS)
        while not self.conference.room.ended:
            t = time.monotonic() - start
            for site in self._live():
                assert site.participant is not None
                site.participant.push_video(moving_frame(site.background, t))
            await pacer.wait()

    async def _audio(self) -> None:
        pacer = Pacer(AUDIO_PERIOD, resync_after=50)  # 1 s behind: resynchronise instead of bursting
        tick = 0  # the tone's phase
        while not self.conference.room.ended:
            for site in self._live():
                assert site.participant is not None
                site.participant.push_audio(tone_frame(site.frequency, tick))
            tick += 1
            await pacer.wait()
