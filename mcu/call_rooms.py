"""Emergency call rooms: the caller's audio on the centre's side, and the room a call-taker talks in.

One :class:`CallRoom` per emergency call, from the moment the trunk answers the INVITE
(``dispatch.calltaking.trunk``) until the call ends:

* it owns the caller's audio-only RTP leg and is that leg's sink (``sip_gateway.aio.rtp_leg.MediaSink``);
* on the call's 20 ms clock it plays the queue tone while the caller waits (and while on hold)
  and writes the recording: both directions mixed into one 48 kHz WAV from the first frame,
  in a server-named file created exclusively (:class:`CallRecorder`);
* once the desk opens the call's room (:meth:`CallRooms.open`) it is the caller's leg in a
  two- or three-party MCU audio room: the caller joins as a SIP site (``mcu.legs.site_media``, which
  sends the caller its N-1 mix through :meth:`CallRoom.send_audio`), call-takers' browsers and
  agency desks join as WebRTC participants, and dialled SIP extensions through the ``sip``
  capability; so conferencing and transfer are joins and leaves.

:class:`CallRooms` makes the call rooms and bridges them into MCU conferences. ``mcu`` never
imports ``dispatch``: the trunk and the desk reach this module only through the protocols
``dispatch.calltaking`` declares (``CallerMediaSource``/``CallerMedia`` in ``trunk.py``,
``CallBridge`` in ``service.py``), and the composition root passes a :class:`CallRooms` in.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import wave
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np

from mcu.pacer import AUDIO_PERIOD, Pacer
from sip_gateway.aio.ports import RTP_PORT_RANGE
from sip_gateway.aio.rtp_leg import MediaLeg
from sip_gateway.rtp.media_description import LocalMedia, MediaStream
from sip_gateway.rtp.media_primitives import FRAME_SAMPLES as FRAME
from sip_gateway.rtp.media_primitives import SAMPLE_RATE

log = logging.getLogger(__name__)

Pcm = np.ndarray


def _tone(freq: float, on_s: float, off_s: float) -> Pcm:
    n_on, n_off = int(SAMPLE_RATE * on_s), int(SAMPLE_RATE * off_s)
    t = np.arange(n_on) / SAMPLE_RATE
    return np.concatenate([(6000 * np.sin(2 * np.pi * freq * t)), np.zeros(n_off)]).astype(np.int16)


# Chinese ringback (GB 16833 style, 450 Hz, 1 s on / 4 s off): "the centre has your call, hold on".
QUEUE_TONE = _tone(450, 1.0, 4.0)


def new_recording_file(directory: Path, now: datetime) -> tuple[Path, int]:
    """A new, server-named recording file created exclusively (O_EXCL): never an existing file.

    The name is the UTC time plus 128 random bits; nothing the caller sends is part of it.
    Returns the path and the open descriptor (mode 0640).
    """
    directory.mkdir(parents=True, exist_ok=True)
    for _ in range(5):
        path = directory / f"{now:%Y%m%dT%H%M%S}Z-{secrets.token_hex(16)}.wav"
        try:
            return path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o640)
        except FileExistsError:  # 2^-128: only if someone planted the name; take another
            continue
    raise FileExistsError(f"cannot create a new recording file in {directory}")


class CallRecorder:
    """Both directions of an emergency call mixed into one 48 kHz mono WAV (caller + centre).

    Frames from each side are queued and written on the call's 20 ms media clock (``tick``), so
    the file has the call's real duration even while one side is silent or sends no RTP.
    """

    def __init__(self, directory: Path, now: datetime | None = None) -> None:
        self.started = now or datetime.now(UTC)
        self.path, fd = new_recording_file(directory, self.started)
        self._file = os.fdopen(fd, "wb")
        self._wav: wave.Wave_write | None = wave.open(self._file, "wb")
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(SAMPLE_RATE)
        self._caller: deque[Pcm] = deque(maxlen=10)  # a little jitter; older frames are dropped
        self._centre: deque[Pcm] = deque(maxlen=10)

    def centre(self, pcm: Pcm) -> None:
        """20 ms the centre sent (queue tone or the call-taker)."""
        self._centre.append(pcm)

    def caller(self, pcm: Pcm) -> None:
        """20 ms from the caller."""
        self._caller.append(pcm)

    def tick(self) -> None:
        """Write one 20 ms frame: the mix of what each side had queued (silence if nothing)."""
        if self._wav is None:
            return
        mixed = np.zeros(FRAME, dtype=np.int32)
        for side in (self._caller, self._centre):
            if side:
                frame = side.popleft()
                mixed[: len(frame)] += frame[:FRAME].astype(np.int32)
        self._wav.writeframes(np.clip(mixed, -32768, 32767).astype("<i2").tobytes())

    def close(self) -> None:
        if self._wav is not None:
            self._wav.close()
            self._wav = None
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    @property
    def closed(self) -> bool:
        return self._wav is None



class CallerLeg(Protocol):
    """What a call room needs from the caller's RTP leg (``sip_gateway.aio.rtp_leg.MediaLeg``)."""

    @property
    def local_media(self) -> LocalMedia: ...

    def start(self, streams: list[MediaStream]) -> None: ...

    def send_audio(self, pcm: Pcm) -> None: ...

    async def close(self) -> None: ...


class CallRoom:
    """One emergency call's audio: the caller's leg, queue tone, recording, and (once opened) its room.

    It is the sink of the caller's RTP leg (``MediaSink``: ``on_audio``, ``on_video``, ``on_dtmf``,
    ``on_keyframe_request``) and the leg the caller's ``SiteMedia`` sends to (``send_audio``,
    ``send_video_access_unit``, ``request_keyframe``), so no adapter sits between them.
    """

    leg: CallerLeg  # set by the constructor, or by CallRooms.caller once the leg exists (it needs its sink)

    def __init__(self, leg: CallerLeg | None = None) -> None:
        if leg is not None:
            self.leg = leg
        self.recorder: CallRecorder | None = None
        self.queue_tone = True  # the caller hears the queue tone (waiting, or on hold), not the room
        self.dtmf_listeners: list[Callable[[str], None]] = []
        self.conference: Any = None  # the MCU room, once the desk opens it
        self.media: Any = None  # the caller's mcu.legs.site_media.SiteMedia in that room
        self.legs: dict[str, Any] = {}  # browsers (participant id) and dialled SIP extensions ("sip-<site>")
        self._clock: asyncio.Task[None] | None = None
        self._tone_at = 0  # frames of the queue tone played so far

    # -- what the trunk uses (dispatch.calltaking.trunk.CallerMedia)

    @property
    def local_media(self) -> LocalMedia:
        """Our RTP address and port, for the SDP answer."""
        return self.leg.local_media

    def record(self, directory: Path, started: datetime) -> Path:
        """Start the recording in a new server-named file in ``directory`` (OSError: not possible)."""
        self.recorder = CallRecorder(directory, started)
        return self.recorder.path

    def connect(self, streams: list[MediaStream]) -> None:
        """The media was negotiated (or renegotiated): send and receive RTP."""
        self.leg.start(streams)

    def start_clock(self) -> None:
        """The call is established: run the call's 20 ms clock until it ends."""
        self._clock = asyncio.ensure_future(self._media_clock())

    def stop_queue_tone(self) -> None:
        """The call-taker answered: from now on the desk supplies the audio."""
        self.queue_tone = False

    def caller_dtmf(self, digit: str) -> None:
        """A digit from the caller (RFC 4733 or SIP INFO)."""
        for listener in self.dtmf_listeners:
            listener(digit)

    def end(self) -> tuple[Path, datetime] | None:
        """The call ended: stop the clock and close the recording; (its path, start) if there was one."""
        if self._clock is not None:
            self._clock.cancel()
        if self.recorder is None:
            return None
        self.recorder.close()
        return self.recorder.path, self.recorder.started

    async def release(self) -> None:
        """Give back the leg's RTP ports."""
        await self.leg.close()

    # -- the RTP leg's sink (sip_gateway.aio.rtp_leg.MediaSink)

    def on_audio(self, leg: MediaLeg, pcm: Pcm) -> None:
        """20 ms from the caller: recorded, and heard in the room unless the caller is on hold."""
        if self.recorder is not None:
            self.recorder.caller(pcm)
        if self.media is not None and not self.queue_tone:
            self.media.on_audio(leg, pcm)

    def on_video(self, leg: MediaLeg, frame: av.VideoFrame) -> None:
        """Emergency calls are audio-only."""

    def on_dtmf(self, leg: MediaLeg, digit: str) -> None:
        """An RFC 4733 digit from the caller."""
        self.caller_dtmf(digit)

    def on_keyframe_request(self, leg: MediaLeg) -> None:
        """No video."""

    # -- the leg the caller's SiteMedia sends to (mcu.legs.site_media.RtpLeg)

    def send_audio(self, pcm: Pcm) -> None:
        """The room's mix for the caller; on hold the caller hears the queue tone instead."""
        if not self.queue_tone:
            self._to_caller(pcm)

    def send_video_access_unit(self, access_unit: bytes, timestamp_90k: int) -> None:
        """Audio-only call."""

    def request_keyframe(self) -> None:
        """Audio-only call."""

    # -- the call's 20 ms clock

    def _to_caller(self, pcm: Pcm) -> None:
        """20 ms toward the caller (queue tone, or the room's mix), recorded."""
        if self.recorder is not None:
            self.recorder.centre(pcm)
        self.leg.send_audio(pcm)

    def tick(self) -> None:
        """One 20 ms frame of the call: the queue tone while it plays, and the recording."""
        if self.queue_tone:
            start = (self._tone_at * FRAME) % len(QUEUE_TONE)
            self._to_caller(QUEUE_TONE[start:start + FRAME])
            self._tone_at += 1
        if self.recorder is not None:
            self.recorder.tick()

    async def _media_clock(self) -> None:
        """Calls :meth:`tick` every 20 ms, on an absolute schedule (no drift) until cancelled."""
        pacer = Pacer(AUDIO_PERIOD)
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                self.tick()
                await pacer.wait()


class CallRooms:
    """Every emergency call's :class:`CallRoom`, and the MCU rooms the desk opens for them.

    ``mcu`` is the MCU capability (conferences + WebRTC) and ``sip`` the ``mcu.legs.sip_bridge.SipBridge``
    that dials SIP extensions (agency desks) into a room; both may be None where no MCU runs:
    callers are still answered, queued and recorded, only the browser softphone is missing.
    """

    def __init__(self, mcu: Any = None, sip: Any = None) -> None:
        self.mcu = mcu
        self.sip = sip
        self.rooms: dict[str, CallRoom] = {}  # by the desk's call id, once opened

    async def caller(self, host: str = "127.0.0.1", port_range: tuple[int, int] = RTP_PORT_RANGE) -> CallRoom:
        """A new call room with an audio-only RTP leg on ``host`` (OSError: no free ports)."""
        room = CallRoom()
        room.leg = await MediaLeg.allocate(host, video=False, sink=room, port_range=port_range)
        return room

    async def open(self, call_id: str, room: CallRoom, caller_name: str) -> CallRoom:
        """Create and start the call's MCU room with the caller in it (idempotent)."""
        if call_id in self.rooms:
            return self.rooms[call_id]
        from mcu.legs.site_media import SiteMedia

        service = self.mcu.conferences
        record = await service.create(name=f"接警 {call_id}"[:100], actor="desk", kind="emergency_call")
        conf = await service.start_conference(record.id, "desk")
        room.media = await SiteMedia.join(conf, "caller", caller_name or "报警人", "sip", room,
                                          video=None, stats_interval=0)
        room.conference = conf
        self.rooms[call_id] = room
        return room

    async def join_browser(self, call_id: str, participant_id: str, name: str, offer_sdp: str) -> str:
        """A call-taker or agency desk joins by WebRTC; returns the SDP answer."""
        room = self.rooms[call_id]
        old = room.legs.pop(participant_id, None)
        if old is not None:
            await old.close("rejoin")
        leg = self.mcu.webrtc.create(room.conference, participant_id=participant_id, name=name)
        answer = str(await leg.answer(offer_sdp))
        room.legs[participant_id] = leg
        return answer

    async def leave(self, call_id: str, participant_id: str) -> None:
        """A browser (or a dialled SIP extension) leaves: transfer completed, or its part hung up."""
        room = self.rooms.get(call_id)
        if room is None or participant_id not in room.legs:
            return
        leg = room.legs.pop(participant_id)
        if participant_id.startswith("sip-"):
            with contextlib.suppress(Exception):
                await self.sip.hangup(room.conference.id, participant_id[4:])
        else:
            await leg.close("left")

    async def dial(self, call_id: str, uri: str, name: str) -> str:
        """Call a SIP extension (an agency desk's phone) into the call's room; returns its site id."""
        room = self.rooms.get(call_id)
        if room is None:
            raise ValueError("通话尚未建立话音")
        if self.sip is None:
            raise ValueError("本节点未运行 SIP 外呼")
        try:
            site = await self.sip.invite(room.conference.id, uri=uri, name=name)
        except ValueError as exc:  # DialOutError
            raise ValueError(str(exc)) from None
        room.legs[f"sip-{site.site_id}"] = site
        return str(site.site_id)

    def hold(self, call_id: str, on_hold: bool) -> None:
        """Hold: the caller hears the queue tone and is not heard in the room; resume reverses it."""
        room = self.rooms.get(call_id)
        if room is not None:
            room.queue_tone = on_hold

    def participant_left(self, conference_id: str, participant_id: str) -> str | None:
        """A participant left some room: forget a dialled SIP extension; returns the call id if it
        was one of our rooms' extensions."""
        for call_id, room in self.rooms.items():
            if room.conference.id == conference_id and room.legs.pop(f"sip-{participant_id}", None) is not None:
                return call_id
        return None

    def participants(self, call_id: str) -> list[str]:
        room = self.rooms.get(call_id)
        return sorted(room.legs) if room else []

    async def close(self, call_id: str) -> None:
        """The call ended: close the browsers' legs, the caller's site media, end the room."""
        room = self.rooms.get(call_id)
        if room is None:
            return
        for pid in list(room.legs):
            with contextlib.suppress(Exception):
                await self.leave(call_id, pid)
        self.rooms.pop(call_id, None)
        with contextlib.suppress(Exception):
            await room.media.close("ended")
        with contextlib.suppress(Exception):
            await self.mcu.conferences.end(room.conference.id, "desk")
