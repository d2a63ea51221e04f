"""Public warnings in meeting rooms: the MCU's side of ``alerts.channels.WarningRooms``.

* ``show_banner``: every running conference in which the meeting room is ``joined`` shows the
  warning as its banner (会标, bottom bar, over every view the room receives); the conference's
  own banner is kept and put back by ``clear_banner``.
* ``broadcast_call``: for an idle room, a warning broadcast conference (预警广播) is created with
  that room as its one site, the room is called through the conference's dialer (SIP/H.323 as its
  plan endpoint says), and once it has joined, a synthetic announcer participant speaks the
  warning (espeak-ng, offline, Mandarin voice) ``repeats`` times, one second apart; then the
  conference ends. The banner shows the text too, so a room without loudspeakers sees it.

mcu does not import ``alerts``: the Protocol is satisfied structurally, the root passes this in.
"""
from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sip_gateway.rtp.media_primitives import FRAME_SAMPLES, SAMPLE_RATE

from .compositor import BannerSpec
from .conferences import ConferenceError, ConferenceService, RunningConference
from .legs.prompts import VOICES, read_wav_mono, resample_to_48k
from .pacer import AUDIO_PERIOD, Pacer
from .room import RoomError

log = logging.getLogger(__name__)

ANNOUNCER_ID = "warning-announcer"
ACTOR = "warnings"
ANSWER_TIMEOUT = 40.0
SPEAK_TIMEOUT = 30.0


def speak(text: str, language: str = "zh-CN", espeak: str | None = None) -> np.ndarray:
    """``text`` spoken by espeak-ng as 48 kHz mono int16; RuntimeError when espeak-ng is missing."""
    exe = espeak or shutil.which("espeak-ng")
    if not exe:
        raise RuntimeError("espeak-ng is not installed: the spoken warning cannot be rendered")
    with tempfile.TemporaryDirectory(prefix="cc-warning-") as tmp:
        target = Path(tmp) / "warning.wav"
        subprocess.run([exe, "-v", VOICES.get(language, "cmn"), "-s", "150", "-w", str(target), text],
                       check=True, capture_output=True, timeout=SPEAK_TIMEOUT)
        samples, rate = read_wav_mono(target)
    pcm = resample_to_48k(samples, rate)
    peak = int(np.abs(pcm.astype(np.int32)).max()) if pcm.size else 0
    if peak:
        pcm = (pcm.astype(np.float32) * (20000.0 / peak)).astype(np.int16)
    return pcm


@dataclass
class _Shown:
    conference: RunningConference
    previous: BannerSpec | None
    text: str


class McuWarningRooms:
    """Banners and broadcast calls for warnings, on this node's running conferences."""

    def __init__(self, conferences: ConferenceService, answer_timeout: float = ANSWER_TIMEOUT) -> None:
        self.conferences = conferences
        self.answer_timeout = answer_timeout
        self._shown: dict[tuple[str, str], _Shown] = {}  # (key, conference id) -> what we replaced
        self._broadcast_ids: set[str] = set()

    def _joined_in(self, room_id: str) -> list[RunningConference]:
        return [c for c in self.conferences.running_conferences()
                if c.id not in self._broadcast_ids and not c.room.ended
                and (s := c.sites.get(room_id)) is not None and s.status == "joined"]

    async def show_banner(self, room_id: str, key: str, text: str) -> bool:
        confs = self._joined_in(room_id)
        for conf in confs:
            shown = self._shown.get((key, conf.id))
            previous = shown.previous if shown else conf.room.banner
            try:
                conf.room.set_banner(text, position="bottom")
            except RoomError as exc:
                raise ValueError(str(exc)) from exc
            self._shown[(key, conf.id)] = _Shown(conf, previous, text)
        return bool(confs)

    async def clear_banner(self, room_id: str, key: str) -> bool:
        cleared = False
        for (k, conf_id), shown in list(self._shown.items()):
            if k != key or shown.conference.room.ended:
                if shown.conference.room.ended:
                    self._shown.pop((k, conf_id), None)
                continue
            if room_id not in shown.conference.sites:
                continue
            banner = shown.conference.room.banner
            if banner is not None and banner.text == shown.text:  # nobody replaced it since
                prev = shown.previous
                shown.conference.room.set_banner(prev.text if prev else "", prev.position if prev else "top",
                                                 prev.scroll if prev else False, prev.speed if prev else 120.0)
            self._shown.pop((k, conf_id), None)
            cleared = True
        return cleared

    async def broadcast_call(self, room_id: str, text: str, repeats: int) -> str:
        pcm = await asyncio.to_thread(speak, text)
        try:
            record = await self.conferences.create(name=f"预警广播 {room_id}"[:100], actor=ACTOR, sites=[room_id])
            conf = await self.conferences.start_conference(record.id, ACTOR)
        except ConferenceError as exc:
            raise RuntimeError(str(exc)) from exc
        self._broadcast_ids.add(conf.id)
        try:
            conf.room.set_banner(text, position="bottom")
            announcer = await conf.join(ANNOUNCER_ID, "预警广播", "demo")
            await self.conferences.dial(conf.id, room_id, "invite", ACTOR)
            await self._wait_joined(conf, room_id)
            pacer = Pacer(AUDIO_PERIOD, resync_after=50)
            silence = np.zeros(SAMPLE_RATE, np.int16)
            stream = np.concatenate([np.concatenate([pcm, silence]) for _ in range(max(1, repeats))])
            stream = np.concatenate([stream, np.zeros((-len(stream)) % FRAME_SAMPLES, np.int16)])
            for start in range(0, len(stream), FRAME_SAMPLES):
                if conf.room.ended or conf.sites[room_id].status != "joined":
                    raise RuntimeError("the room hung up during the broadcast")
                announcer.push_audio(stream[start:start + FRAME_SAMPLES])
                await pacer.wait()
            return "answered"
        except ConferenceError as exc:
            raise RuntimeError(str(exc)) from exc
        finally:
            try:
                await self.conferences.end(conf.id, ACTOR)
            except ConferenceError:
                log.warning("warning broadcast conference %s did not end cleanly", conf.id)
            self._broadcast_ids.discard(conf.id)

    async def _wait_joined(self, conf: RunningConference, room_id: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.answer_timeout
        while True:
            state = conf.sites.get(room_id)
            if state is not None and state.status == "joined":
                return
            if state is not None and state.status == "failed":
                raise RuntimeError(f"call failed: {state.detail or 'no answer'}")
            if loop.time() > deadline:
                raise RuntimeError("no answer")
            await asyncio.sleep(0.2)
