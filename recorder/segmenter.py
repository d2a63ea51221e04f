"""Cutting a camera's packet stream into fragmented-MP4 segments, without transcoding.

Segment length: cut at the first video key frame at least `TARGET_SEGMENT_S` = 6 s
after the segment began. Why 6 s, inside the 2–10 s the issue allows:
  * an unclean stop loses at most the open segment, so shorter is better for crashes;
  * each segment costs a log leaf, an index row, a file and an fsync: 6 s is 14,400
    per camera per day (~0.9 M/day for 64 cameras), which PostgreSQL and the Merkle
    tree (depth 20) handle easily, while 2 s would triple that;
  * 6 s is the target duration Apple's HLS authoring guidelines recommend, so stored
    segments can be served to the player as they are;
  * with the usual camera GOP of 1–2 s the cut lands within one GOP of the target.
A camera whose GOP is longer than the target gives longer segments (one per GOP):
we never cut between key frames, since that would need a re-encode.

Files are fragmented MP4 (`frag_keyframe+empty_moov+default_base_moof`): the muxer
never seeks back, the file is playable up to the last complete fragment, and a
Media Source Extensions player can append it as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from sip_gateway.rtp.media_primitives import VIDEO_TIME_BASE

TARGET_SEGMENT_S = 6.0
MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"
# A timestamp step larger than this (either way) is a discontinuity, not a frame interval.
MAX_STEP_S = 0.5
# A discontinuity is a real pause of the source when the wall clock moved on by this much
# more than the timestamps did; otherwise it is a re-synchronisation.
REAL_PAUSE_S = 1.0


@dataclass
class StreamClock:
    """Makes one stream's timestamps continuous across the jumps live RTSP sources produce.

    FFmpeg's RTSP demuxer re-bases timestamps when the first RTCP sender report arrives
    (seen: video jumping from 3.77 s back to 0.01 s) and again when the server re-syncs
    (e.g. a second client joins a shared stream: +3.9 s). Those are not gaps in the
    picture, so the timeline continues one frame interval after the last packet. If the
    wall clock shows the source really paused (no packets for a while), the timeline
    follows the wall clock instead, so a real pause stays visible. Pure: no clock of its own.
    """

    last_t: float | None = None
    step: float = 0.04
    offset: float = 0.0
    resyncs: int = 0

    def map(self, t_raw: float, t_by_wall: float | None) -> float:
        """Continuous stream time for a packet with raw time `t_raw` (`t_by_wall`: where the wall clock says it is)."""
        t = t_raw + self.offset
        if self.last_t is not None:
            delta = t - self.last_t
            if delta < -MAX_STEP_S or delta > max(MAX_STEP_S, 5 * self.step):
                expected = self.last_t + self.step
                target = t_by_wall if t_by_wall is not None and t_by_wall - expected > REAL_PAUSE_S else expected
                self.offset += target - t
                self.resyncs += 1
                t = target
            elif delta > 0:
                self.step = min(delta, 1.0)
        self.last_t = t if self.last_t is None else max(self.last_t, t)
        return t


@dataclass(frozen=True)
class CutPolicy:
    """Pure decision: start a new segment at this packet?"""

    target_s: float = TARGET_SEGMENT_S

    def should_cut(self, segment_start_s: float, t_s: float, is_video_key: bool) -> bool:
        # 10 ms slack: RTP clocks give key frames at e.g. 5.9999 s for a 6 s GOP multiple.
        return is_video_key and t_s - segment_start_s >= self.target_s - 0.01


def avc_codec_string(extradata: bytes | None) -> str:
    """RFC 6381 codec string (`avc1.PPCCLL`) from H.264 extradata, avcC or Annex B."""
    if extradata and extradata[0] == 1 and len(extradata) >= 4:  # avcC: version, profile, compat, level
        return "avc1." + extradata[1:4].hex()
    if extradata:
        i = extradata.find(b"\x00\x00\x01")
        while 0 <= i < len(extradata) - 6:
            if extradata[i + 3] & 0x1F == 7:  # SPS: profile_idc, constraint flags, level_idc follow
                return "avc1." + extradata[i + 4 : i + 7].hex()
            i = extradata.find(b"\x00\x00\x01", i + 3)
    return "avc1.42e01e"  # Constrained Baseline 3.0: what MSE assumes when the camera told us nothing


def codecs_string(video: Any, audio: Any | None) -> str:
    """What a Media Source Extensions player passes to addSourceBuffer for this segment."""
    name = str(video.codec_context.name)
    parts = [avc_codec_string(video.codec_context.extradata) if name == "h264" else
             ("hvc1.1.6.L93.B0" if name == "hevc" else name)]
    if audio is not None:
        parts.append("mp4a.40.2" if audio.codec_context.name == "aac" else str(audio.codec_context.name))
    return ",".join(parts)


@dataclass(frozen=True)
class SegmentFile:
    """A closed (not yet committed) segment file."""

    path: Path
    start_s: float  # stream time of the first video key frame
    end_s: float  # stream time where the next segment starts (or last frame + its duration)
    video_frames: int
    audio_packets: int
    bytes: int
    codec: str
    width: int
    height: int
    has_audio: bool


class SegmentWriter:
    """Remuxes packets of one segment into a fragmented MP4 file (stream copy)."""

    def __init__(self, path: Path, video: Any, audio: Any | None, start_s: float) -> None:
        self.path = path
        self.start_s = start_s
        self._out = av.open(str(path), mode="w", format="mp4", options={"movflags": MOVFLAGS})
        self._map: dict[int, Any] = {}
        self._offsets: dict[int, int] = {}
        self._video_index = video.index
        self._add(video)
        self.has_audio = False
        if audio is not None:
            self._add(audio)
            self.has_audio = True
        self.codec = codecs_string(video, audio)
        self.width = int(video.codec_context.width or 0)
        self.height = int(video.codec_context.height or 0)
        self.video_frames = 0
        self.audio_packets = 0
        self.last_video_end_s = start_s

    def _add(self, stream: Any) -> None:
        out_stream = self._out.add_stream_from_template(stream)
        self._map[stream.index] = out_stream
        # Rebase every stream so the segment starts at 0: each file plays on its own.
        self._offsets[stream.index] = int(round(self.start_s / stream.time_base))

    def write(self, packet: Any, t_s: float, shift_s: float, frame_s: float) -> None:
        """Write one packet at continuous time `t_s` (= its raw pts + `shift_s`, see StreamClock)."""
        in_index = packet.stream.index
        out_stream = self._map.get(in_index)
        if out_stream is None:
            return
        tb = packet.stream.time_base
        shift = int(round(shift_s / tb)) - self._offsets[in_index]
        pts = packet.pts + shift
        dts = (packet.dts if packet.dts is not None else packet.pts) + shift
        if dts < 0:
            return  # audio captured before this segment's key frame: belongs to the gap between files
        packet.pts, packet.dts = pts, dts
        packet.stream = out_stream
        self._out.mux(packet)
        if in_index == self._video_index:
            self.video_frames += 1
            self.last_video_end_s = max(self.last_video_end_s, t_s + frame_s)
        else:
            self.audio_packets += 1

    def close(self, end_s: float | None = None) -> SegmentFile:
        """Finish the file; `end_s` is the next segment's start when cutting, else the last frame's end."""
        self._out.close()
        return SegmentFile(
            path=self.path,
            start_s=self.start_s,
            end_s=self.last_video_end_s if end_s is None else end_s,
            video_frames=self.video_frames,
            audio_packets=self.audio_packets,
            bytes=self.path.stat().st_size,
            codec=self.codec,
            width=self.width,
            height=self.height,
            has_audio=self.has_audio,
        )

    def abort(self) -> None:
        """Drop a segment that cannot be finished."""
        try:
            self._out.close()
        except Exception:  # the file is being discarded anyway
            pass
        self.path.unlink(missing_ok=True)


def seconds(pts: int, time_base: Fraction | None) -> float:
    """Stream time in seconds (time base 1/90000, RTP video's, when the stream has none)."""
    return float(pts * (time_base if time_base is not None else VIDEO_TIME_BASE))
