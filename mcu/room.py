"""A conference room: sites, chair, lock, layout, views and every chair operation.

The room is plain synchronous state driven from one thread (the event loop). Each chair
operation validates its arguments first (bad input raises :class:`RoomError` and changes
nothing), applies the change and emits one or more typed events (:mod:`mcu.events`)
through ``on_event``. Time comes from an injected :class:`mcu.clock.Clock`.

Views (what a receiver is sent):

* ``broadcast`` - the conference picture everyone sees by default (layout + panes);
* ``select:<site>`` - one site full screen: select-view (选看), what the broadcast site sees
  (the chair site) and what the current speaker sees under voice activation (the previous
  speaker). Two receivers looking at the same site share the view and its encoder;
* ``preview`` - the chair console's monitor: every site in an automatic grid, labelled;
* ``content`` - the conference's content alone (``mcu.content``), for receivers with a second
  stream: composed at 1920x1080, encoded only while live and every ``CONTENT_EVERY``-th tick;
* ``people`` - the broadcast without the content: what those receivers get on their main stream
  while content is live (single-stream receivers get the content composed into ``broadcast``).

Media hooks, split so that heavy work runs off the loop (see :mod:`mcu.runner`):

* audio: :meth:`Room.gather_audio` (loop) -> :meth:`AudioMixer.mix` (worker) ->
  :meth:`Room.apply_mix` (loop); :meth:`Room.audio_tick` does all three inline;
* video: :meth:`Room.video_jobs` (loop) -> :func:`run_video_job` (worker) ->
  :meth:`Room.deliver` (loop); :meth:`Room.video_tick` does all three inline.

Size: one class of about 900 lines on purpose. Every chair operation reads and writes the same
room state (sites, views, panes, polling, voice activation, lock), and each must validate, change
and emit its event atomically; the heavy media work is already outside (mixer, compositor,
encoder, runner), and the operation vocabulary is in :mod:`mcu.chair`.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Protocol

import av

from sip_gateway.rtp.media_primitives import AudioFrame, EncodedPacket

from . import events as ev
from .clock import Clock, MonotonicClock
from .compositor import BannerSpec, ComposedFrame, Compositor, PaneSpec, ViewPlan
from .encoder import EncoderKey, EncoderSettings, VideoEncoder, scale_for_encoders
from .layout import (
    LAYOUTS,
    MAX_PANES,
    AutoPane,
    Pane,
    PollingPane,
    Rect,
    StaticPane,
    VoicePane,
    assign_panes,
    pane_count,
    pane_rects,
    resolve_auto,
)
from .mixer import AudioMixer, MixInput, MixOutput, SpeakerDetector
from .pane_size import PaneSizer, SizeRequest, largest_panes
from .participant import Participant, VideoSample
from .text import TextRenderer

log = logging.getLogger(__name__)

BROADCAST = "broadcast"
PREVIEW = "preview"
SELECT_PREFIX = "select:"
# The broadcast as seen by one loop-free site (a cascade link, a bridge caller): its own pane removed.
LOOP_FREE_PREFIX = "loopfree:"
PacketSink = Callable[[EncodedPacket], None]
# Receives the full mix of every unmuted site (int16[960]) and the room clock time of the tick.
MixListener = Callable[[AudioFrame, float], None]


class ContentFeed(Protocol):
    """The conference's content (``mcu.content``): its newest picture and where it goes in the
    broadcast view. The room asks; the content service decides (token, chair's content layout)."""

    def content_sample(self) -> VideoSample | None:
        """The newest content frame of the token holder (None: no content)."""

    def content_rects(self, width: int, height: int, sites: int) -> tuple[Rect, list[Rect]] | None:
        """(content rectangle, speaker strip) for a view of that size (None: show people only)."""


CONTENT_SOURCE_ID = "@content"  # the compositor's source id of the content picture (no site has it)
# The content alone, for receivers with a second video stream (one shared encoder, low frame rate).
CONTENT_VIEW = "content"
CONTENT_SIZE = (1920, 1080)
CONTENT_EVERY = 2  # encode the content view every 2nd video tick (12.5 fps at 25)
# The broadcast without the content composed in: what a site with a content stream sees meanwhile.
PEOPLE_VIEW = "people"


class RoomError(ValueError):
    """A chair operation or join was refused; the room is unchanged."""


@dataclass(frozen=True)
class RoomSettings:
    width: int = 1280
    height: int = 720
    fps: int = 25
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    font_path: str | None = None  # None: Debian fonts-wqy-microhei
    video_stale_after: float = 5.0  # seconds without a frame before the placeholder shows
    level_interval: float = 0.1  # audio level events at most 10 per second
    speaker_hold: float = 1.0
    max_participants: int = 200

    def __post_init__(self) -> None:
        if self.width % 2 or self.height % 2 or self.width < 64 or self.height < 64:
            raise ValueError("canvas must be even-sized and at least 64x64")
        if self.level_interval < 0.1:
            raise ValueError("level events are limited to 10 per second")


def select_view_id(participant_id: str) -> str:
    return SELECT_PREFIX + participant_id


class Subscription:
    """A receiver of one encoder's packets. ``close()`` to stop."""

    def __init__(self, room: Room, key: EncoderKey, sink: PacketSink) -> None:
        self._room = room
        self.key = key
        self.sink = sink
        self.closed = False

    def request_keyframe(self) -> None:
        """Key-frame request from this receiver (coalesced and rate-limited per encoder)."""
        entry = self._room._encoders.get(self.key)
        if entry is not None:
            entry.encoder.request_keyframe()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._room._detach(self)


class ParticipantSubscription(Subscription):
    """A site's video feed: follows the site's current view as chair operations change it."""

    def __init__(self, room: Room, participant_id: str, key: EncoderKey, sink: PacketSink) -> None:
        super().__init__(room, key, sink)
        self.participant_id = participant_id


@dataclass
class _EncoderEntry:
    encoder: VideoEncoder
    subscribers: list[Subscription] = field(default_factory=list)


@dataclass(frozen=True)
class VideoJob:
    """One view's work for one tick: render the plan, encode for each encoder."""

    plan: ViewPlan
    encoders: tuple[VideoEncoder, ...]


Rendered = tuple[ComposedFrame, dict[tuple[int, int], av.VideoFrame]]
Results = list[tuple[EncoderKey, list[EncodedPacket]]]


def render_job(compositor: Compositor, job: VideoJob) -> Rendered:
    """Worker thread: compose the view and scale it once per encoder size."""
    composed = compositor.render(job.plan)
    return composed, scale_for_encoders(composed, {(e.key.width, e.key.height) for e in job.encoders})


def encode_job(job: VideoJob, rendered: Rendered) -> Results:
    """Worker thread: run the view's encoders in sequence (they may share one frame object)."""
    composed, scaled = rendered
    return [(e.key, e.encode(composed, scaled[(e.key.width, e.key.height)])) for e in job.encoders]


def run_video_job(compositor: Compositor, job: VideoJob) -> tuple[ComposedFrame, Results]:
    """Both halves of a view's video tick in one call."""
    rendered = render_job(compositor, job)
    return rendered[0], encode_job(job, rendered)


class Room:
    """One conference. See the module docstring for views and the media hooks."""

    def __init__(
        self,
        room_id: str,
        name: str = "",
        *,
        clock: Clock | None = None,
        on_event: ev.EventSink | None = None,
        settings: RoomSettings | None = None,
        text: TextRenderer | None = None,
    ) -> None:
        self.id = room_id
        self.name = name
        self.clock: Clock = clock or MonotonicClock()
        self.settings = settings or RoomSettings()
        self._on_event = on_event
        self.text = text or TextRenderer(self.settings.font_path)
        self.compositor = Compositor(self.text)
        self.pane_sizer = PaneSizer()  # what size each site is asked to send (update_pane_sizes)
        self.mixer = AudioMixer()
        self.speaker_detector = SpeakerDetector(hold=self.settings.speaker_hold)
        self.participants: dict[str, Participant] = {}
        self._order = 0
        self.chair_id: str | None = None
        self.locked = False
        self.ended = False
        self.layout = "auto"
        self.panes: list[Pane] = []
        self.labels = True
        self.banner: BannerSpec | None = None
        self.broadcast_id: str | None = None
        self.voice_activated = False
        self.polling: PollingPane | None = None
        self.polling_pane: int | None = None  # None: full screen
        self.selected: dict[str, str] = {}  # viewer -> target (select-view)
        self.speakers: list[str] = []  # recent active speakers, newest first
        self._last_levels_at: float | None = None
        self._encoders: dict[EncoderKey, _EncoderEntry] = {}
        self._site_subs: list[ParticipantSubscription] = []
        self._mix_listeners: list[MixListener] = []
        # Sites that must never be sent their own picture (RMX AVOID_VIDEO_LOOP_BACK_IN_CASCADE):
        # cascade links, and every caller of a bridge. Ids may be added before the site joins.
        self.loop_free: set[str] = set()
        self.all_loop_free = False
        # Sites that are one cascade link (its primary and backup calls): never sent each other.
        self.link_groups: dict[str, str] = {}
        # group -> the member whose sound the others hear (while both calls overlap the far end is
        # on both: mixing the two copies, a few ms apart, would comb-filter it).
        self.link_active: dict[str, str] = {}
        # The conference's content (shared screen, slides), composed into the broadcast view.
        self.content: ContentFeed | None = None
        self.content_receivers: set[str] = set()  # sites that get the content as a second stream
        self._content_ticks = 0

    # ---- helpers -----------------------------------------------------------
    def _emit(self, event: ev.RoomEvent) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:  # a broken listener must not break the conference
            log.exception("room %s: event listener failed on %s", self.id, type(event).__name__)

    def _now(self) -> float:
        return self.clock.monotonic()

    def _require_open(self) -> None:
        if self.ended:
            raise RoomError("会议已结束")

    def _site(self, participant_id: str) -> Participant:
        site = self.participants.get(participant_id)
        if site is None:
            raise RoomError(f"会场不存在: {participant_id}")
        return site

    def _sites(self, ids: Iterable[str]) -> list[Participant]:
        return [self._site(pid) for pid in ids]

    @property
    def present(self) -> list[str]:
        """Site ids in join order."""
        return list(self.participants)

    # ---- membership ------------------------------------------------------
    def join(self, participant_id: str, name: str = "", *, chair: bool = False) -> Participant:
        """Add a site. Refused when the room is locked, ended, full or the id is taken."""
        self._require_open()
        if not participant_id or not isinstance(participant_id, str):
            raise RoomError("会场编号不能为空")
        if participant_id in self.participants:
            raise RoomError(f"会场已在会议中: {participant_id}")
        if self.locked:
            raise RoomError("会议已锁定")
        if len(self.participants) >= self.settings.max_participants:
            raise RoomError("会议人数已满")
        name = "".join(c for c in (name or participant_id) if c.isprintable())[:64] or participant_id
        self._order += 1
        site = Participant(participant_id, name, self.clock, self._order)
        self.participants[participant_id] = site
        self._emit(ev.ParticipantJoined(self.id, self._now(), participant_id, site.name, chair))
        if chair:
            self.set_chair(participant_id)
        self._refresh_subscriptions()
        return site

    def leave(self, participant_id: str, reason: str = "left") -> None:
        """Remove a site (hang-up, removal, end); nobody else is disturbed."""
        site = self._site(participant_id)
        now = self._now()
        site.has_left = True
        del self.participants[participant_id]
        site.clear_media()
        self.mixer.forget(participant_id)
        self.speaker_detector.forget(participant_id)
        self.compositor.forget(participant_id)
        if participant_id in self.speakers:
            was_current = self.speakers[0] == participant_id
            self.speakers.remove(participant_id)
            if was_current:
                self._emit(ev.SpeakerChanged(self.id, now, self.speakers[0] if self.speakers else None, participant_id))
        self.selected.pop(participant_id, None)
        for viewer in [v for v, t in self.selected.items() if t == participant_id]:
            del self.selected[viewer]
            self._emit(ev.SelectViewChanged(self.id, now, viewer, None))
        for sub in [s for s in self._site_subs if s.participant_id == participant_id]:
            sub.close()
        self._emit(ev.ParticipantLeft(self.id, now, participant_id, reason))
        if self.broadcast_id == participant_id:
            self.broadcast_id = None
            self._emit(ev.BroadcastChanged(self.id, now, None))
        if self.chair_id == participant_id:
            self.chair_id = None
            self._emit(ev.ChairChanged(self.id, now, None))
        self._refresh_subscriptions()

    def set_chair(self, participant_id: str | None) -> None:
        if participant_id is not None:
            self._site(participant_id)
        self.chair_id = participant_id
        self._emit(ev.ChairChanged(self.id, self._now(), participant_id))
        self._refresh_subscriptions()

    # ---- chair operations: picture -----------------------------------------
    def _clear_modes(self, now: float, keep: str) -> None:
        """The newest picture operation wins: cancel the other full-screen modes."""
        if keep != "broadcast" and self.broadcast_id is not None:
            self.broadcast_id = None
            self._emit(ev.BroadcastChanged(self.id, now, None))
        if keep != "voice" and self.voice_activated:
            self.voice_activated = False
            self._emit(ev.VoiceActivatedChanged(self.id, now, False))
        if keep != "polling" and self.polling is not None and self.polling_pane is None:
            self.polling = None
            self._emit(ev.PollingChanged(self.id, now, False))

    def set_layout(self, layout: str) -> None:
        """Continuous-presence layout of the broadcast view (cancels broadcast/VA/full-screen polling)."""
        self._require_open()
        if layout not in LAYOUTS:
            raise RoomError(f"未知布局: {layout}（可选: {'、'.join(LAYOUTS)}）")
        now = self._now()
        self._clear_modes(now, keep="")
        self.layout = layout
        if layout != "auto":
            self.panes = self.panes[: pane_count(layout)]
        if self.polling_pane is not None and self.polling_pane >= self._pane_capacity():
            self.polling, self.polling_pane = None, None
            self._emit(ev.PollingChanged(self.id, now, False))
        self._emit(ev.LayoutChanged(self.id, now, BROADCAST, layout))
        self._refresh_subscriptions()

    def _pane_capacity(self) -> int:
        return MAX_PANES if self.layout == "auto" else pane_count(self.layout)

    def assign_pane(self, index: int, mode: str, participant_id: str | None = None) -> None:
        """Set pane ``index`` of the broadcast layout to ``auto``, ``static`` (a site) or ``voice``."""
        self._require_open()
        if self.layout == "auto":
            raise RoomError("自动布局下不能指定分屏，请先选择固定布局")
        if not 0 <= index < pane_count(self.layout):
            raise RoomError(f"分屏序号超出范围: {index}")
        pane: Pane
        if mode == "static":
            if participant_id is None:
                raise RoomError("固定分屏需要指定会场")
            self._site(participant_id)
            pane = StaticPane(participant_id)
        elif mode == "voice":
            rank = sum(1 for p in self.panes[:index] if isinstance(p, VoicePane))
            pane = VoicePane(rank)
        elif mode == "auto":
            pane = AutoPane()
        else:
            raise RoomError(f"未知分屏模式: {mode}")
        while len(self.panes) <= index:
            self.panes.append(AutoPane())
        self.panes[index] = pane
        if self.polling_pane == index:
            self.polling, self.polling_pane = None, None
            self._emit(ev.PollingChanged(self.id, self._now(), False))
        self._emit(ev.PaneAssigned(self.id, self._now(), BROADCAST, index, mode, participant_id))

    def broadcast(self, participant_id: str | None) -> None:
        """广播会场: everyone sees the site full screen; the site itself sees the chair. None cancels."""
        self._require_open()
        if participant_id is not None:
            self._site(participant_id)
        now = self._now()
        self._clear_modes(now, keep="broadcast")
        self.broadcast_id = participant_id
        self._emit(ev.BroadcastChanged(self.id, now, participant_id))
        self._refresh_subscriptions()

    def roll_call(self, participant_id: str, *, mute_others: bool = False) -> None:
        """点名: broadcast the site and unmute it; optionally mute everyone but it and the chair."""
        self._require_open()
        self._site(participant_id)
        self.broadcast(participant_id)
        self.mute(participant_id, False)
        if mute_others:
            for pid in self.present:
                if pid not in (participant_id, self.chair_id):
                    self.mute(pid, True)
        self._emit(ev.RollCall(self.id, self._now(), participant_id, mute_others))

    def select_view(self, viewer_id: str, target_id: str | None) -> None:
        """选看: ``viewer_id`` sees ``target_id`` full screen (None: back to the broadcast view)."""
        self._require_open()
        self._site(viewer_id)
        if target_id is not None:
            self._site(target_id)
            if target_id == viewer_id:
                raise RoomError("不能选看本会场")
            self.selected[viewer_id] = target_id
        else:
            self.selected.pop(viewer_id, None)
        self._emit(ev.SelectViewChanged(self.id, self._now(), viewer_id, target_id))
        self._refresh_subscriptions()

    def set_voice_activated(self, enabled: bool) -> None:
        """声控切换: the broadcast view shows the active speaker full screen; the speaker sees the previous one."""
        self._require_open()
        now = self._now()
        if enabled:
            self._clear_modes(now, keep="voice")
        self.voice_activated = enabled
        self._emit(ev.VoiceActivatedChanged(self.id, now, enabled))
        self._refresh_subscriptions()

    def start_polling(self, participant_ids: list[str], interval: float, pane: int | None = None) -> None:
        """轮询: rotate through the sites every ``interval`` seconds, full screen or in one pane."""
        self._require_open()
        ids = tuple(participant_ids)
        if not ids:
            raise RoomError("轮询列表不能为空")
        if len(set(ids)) != len(ids):
            raise RoomError("轮询列表中有重复会场")
        self._sites(ids)
        if not interval > 0:
            raise RoomError("轮询间隔必须大于0秒")
        if pane is not None:
            if self.layout == "auto":
                raise RoomError("自动布局下不能指定轮询分屏，请先选择固定布局")
            if not 0 <= pane < pane_count(self.layout):
                raise RoomError(f"分屏序号超出范围: {pane}")
        now = self._now()
        if pane is None:
            self._clear_modes(now, keep="polling")
        self.polling = PollingPane(ids, float(interval), now)
        self.polling_pane = pane
        self._emit(ev.PollingChanged(self.id, now, True, ids, float(interval), pane))
        self._refresh_subscriptions()

    def stop_polling(self) -> None:
        self._require_open()
        if self.polling is None:
            return
        self.polling, self.polling_pane = None, None
        self._emit(ev.PollingChanged(self.id, self._now(), False))

    def set_banner(self, text: str, position: str = "top", scroll: bool = False, speed: float = 120.0) -> None:
        """会标: text on a bar at the top or bottom of every view; empty text removes it."""
        self._require_open()
        if position not in ("top", "bottom"):
            raise RoomError("会标位置只能是 top 或 bottom")
        if len(text) > 200:
            raise RoomError("会标文字过长（最多200字）")
        if not text.isprintable():
            raise RoomError("会标包含不可显示的字符")
        if speed <= 0:
            raise RoomError("滚动速度必须大于0")
        self.banner = BannerSpec(text, position, scroll, speed, self._now()) if text else None
        self._emit(ev.BannerChanged(self.id, self._now(), text, position, scroll))

    def set_labels(self, enabled: bool) -> None:
        self._require_open()
        self.labels = enabled
        self._emit(ev.LabelsChanged(self.id, self._now(), enabled))

    # ---- chair operations: audio and membership ----------------------------
    def mute(self, participant_id: str, muted: bool = True) -> None:
        """Mute (the site is not heard) or unmute."""
        self._require_open()
        site = self._site(participant_id)
        if site.muted != muted:
            site.muted = muted
            self._emit(ev.MuteChanged(self.id, self._now(), participant_id, muted))

    def deaf(self, participant_id: str, deaf: bool = True) -> None:
        """Deafen (the site hears nothing) or undeafen."""
        self._require_open()
        site = self._site(participant_id)
        if site.deaf != deaf:
            site.deaf = deaf
            self._emit(ev.DeafChanged(self.id, self._now(), participant_id, deaf))

    def set_gain(self, participant_id: str, gain: float) -> None:
        """Per-site input gain (linear, 0..4)."""
        self._require_open()
        site = self._site(participant_id)
        if not 0.0 <= gain <= 4.0:
            raise RoomError("增益必须在0到4之间")
        site.gain = float(gain)
        self._emit(ev.GainChanged(self.id, self._now(), participant_id, float(gain)))

    def mute_all_except_chair(self) -> None:
        self._require_open()
        for pid in self.present:
            self.mute(pid, pid != self.chair_id)

    def lock(self) -> None:
        self._require_open()
        self.locked = True
        self._emit(ev.LockChanged(self.id, self._now(), True))

    def unlock(self) -> None:
        self._require_open()
        self.locked = False
        self._emit(ev.LockChanged(self.id, self._now(), False))

    def remove(self, participant_id: str) -> None:
        """Hang up a site from the console."""
        self._require_open()
        self.leave(participant_id, reason="removed")

    def end(self) -> None:
        """End the conference: every site leaves, encoders close, further operations are refused."""
        if self.ended:
            return
        for pid in self.present:
            self.leave(pid, reason="ended")
        for entry in self._encoders.values():
            for sub in entry.subscribers:
                sub.closed = True
            entry.encoder.close()
        self._encoders.clear()
        self._mix_listeners.clear()
        self.compositor.forget()
        self.ended = True
        self._emit(ev.RoomEnded(self.id, self._now()))

    # ---- views -------------------------------------------------------------
    def is_loop_free(self, participant_id: str) -> bool:
        return self.all_loop_free or participant_id in self.loop_free

    def set_loop_free(self, participant_id: str, loop_free: bool = True, group: str | None = None) -> None:
        """Send ``participant_id`` views without its own pane (takes effect at once).

        ``group``: sites of one group (a cascade link's primary and backup call) are also
        never sent each other's picture or sound.
        """
        if loop_free:
            self.loop_free.add(participant_id)
            if group:
                self.link_groups[participant_id] = group
        else:
            self.loop_free.discard(participant_id)
            self.link_groups.pop(participant_id, None)
        self._refresh_subscriptions()

    def set_link_active(self, group: str, participant_id: str | None) -> None:
        """Only ``participant_id``'s sound of a link group reaches the others (None: every member's)."""
        if participant_id is None:
            self.link_active.pop(group, None)
        else:
            self.link_active[group] = participant_id

    def _excluded_from(self, participant_id: str) -> set[str]:
        """The sites whose picture ``participant_id`` must not be sent: itself and its link group."""
        group = self.link_groups.get(participant_id)
        if group is None:
            return {participant_id}
        return {participant_id} | {p for p, g in self.link_groups.items() if g == group}

    def view_for(self, participant_id: str) -> str:
        """The view a site is sent right now (a loop-free site never gets its own picture)."""
        view = self._plain_view_for(participant_id)
        if self.is_loop_free(participant_id) and (
                view == BROADCAST or view.startswith(SELECT_PREFIX)
                and view[len(SELECT_PREFIX):] in self._excluded_from(participant_id)):
            return LOOP_FREE_PREFIX + participant_id  # people-only too while it gets the content apart
        if view == BROADCAST and participant_id in self.content_receivers and self.content_live():
            return PEOPLE_VIEW  # it sees the content on its second stream
        return view

    def _plain_view_for(self, participant_id: str) -> str:
        target = self.selected.get(participant_id)
        if target is not None and target in self.participants:
            return select_view_id(target)
        chair = self.chair_id
        if self.broadcast_id == participant_id and chair is not None and chair != participant_id:
            return select_view_id(chair)
        if self.voice_activated and self.speakers and self.speakers[0] == participant_id and len(self.speakers) > 1:
            return select_view_id(self.speakers[1])
        return BROADCAST

    def _broadcast_config(self) -> tuple[str, list[Pane]]:
        if self.broadcast_id is not None:
            return "1", [StaticPane(self.broadcast_id)]
        if self.polling is not None and self.polling_pane is None:
            return "1", [self.polling]
        if self.voice_activated:
            return "1", [VoicePane(0)]
        panes = list(self.panes)
        if self.polling is not None and self.polling_pane is not None:
            while len(panes) <= self.polling_pane:
                panes.append(AutoPane())
            panes[self.polling_pane] = self.polling
        return self.layout, panes

    def view_plan(self, view_id: str, width: int | None = None, height: int | None = None) -> ViewPlan:
        """Immutable snapshot of what ``view_id`` shows now (built on the loop, rendered anywhere)."""
        now = self._now()
        if view_id == CONTENT_VIEW:  # composed at the content size, not the conference's
            return self._content_only_plan(now, width or CONTENT_SIZE[0], height or CONTENT_SIZE[1])
        width = width or self.settings.width
        height = height or self.settings.height
        labels = self.labels
        present, speakers = self.present, self.speakers
        if self.link_active:  # a county on two calls during a path switch is shown once: the call carrying it
            present = [p for p in present if not self._link_standby(p)]
            speakers = [p for p in speakers if not self._link_standby(p)]
        if view_id == BROADCAST:
            layout, panes = self._broadcast_config()
        elif view_id.startswith(LOOP_FREE_PREFIX):
            hidden = self._excluded_from(view_id[len(LOOP_FREE_PREFIX):])
            layout, panes = self._broadcast_config()
            present = [p for p in present if p not in hidden]
            speakers = [p for p in speakers if p not in hidden]
            # Its own broadcast becomes the latest other speaker (else the first other site).
            panes = [VoicePane(0) if isinstance(p, StaticPane) and p.participant_id in hidden else p for p in panes]
        elif view_id == PEOPLE_VIEW:
            layout, panes = self._broadcast_config()
        elif view_id == PREVIEW:
            layout, panes, labels = "auto", [], True
        elif view_id.startswith(SELECT_PREFIX):
            layout, panes = "1", [StaticPane(view_id[len(SELECT_PREFIX):])]
        else:
            raise RoomError(f"未知视图: {view_id}")
        content = self._content_plan(view_id, width, height, present, speakers, now, labels)
        if content is not None:
            return content
        concrete = resolve_auto(layout, len(present))
        rects = pane_rects(concrete, width, height)
        chosen = assign_panes(panes, len(rects), present, speakers, now)
        specs = []
        for rect, pid in zip(rects, chosen, strict=True):
            site = self.participants.get(pid) if pid is not None else None
            if site is None:
                specs.append(PaneSpec(rect, None))
                continue
            sample = site.video
            if sample is not None and now - sample.arrival > self.settings.video_stale_after:
                sample = None
            specs.append(PaneSpec(rect, pid, site.name, sample))
        return ViewPlan(view_id, width, height, concrete, tuple(specs), labels, self.banner, now)

    def _fresh_content(self, now: float) -> VideoSample | None:
        sample = self.content.content_sample() if self.content is not None else None
        if sample is None or now - sample.arrival > self.settings.video_stale_after:
            return None
        return sample

    def content_live(self) -> bool:
        """Whether a presenter's content picture is fresh right now."""
        return self._fresh_content(self._now()) is not None

    def _content_only_plan(self, now: float, width: int, height: int) -> ViewPlan:
        sample = self._fresh_content(now)
        rect = Rect(0, 0, width, height)
        pane = PaneSpec(rect, CONTENT_SOURCE_ID, "", sample) if sample is not None else PaneSpec(rect, None)
        return ViewPlan(CONTENT_VIEW, width, height, "1", (pane,), False, None, now)

    def _content_plan(self, view_id: str, width: int, height: int, present: list[str], speakers: list[str],
                      now: float, labels: bool) -> ViewPlan | None:
        """The broadcast view while content is live: the content pane and a strip of speakers."""
        if self.content is None or not (view_id == BROADCAST or view_id.startswith(LOOP_FREE_PREFIX)):
            return None
        if view_id.startswith(LOOP_FREE_PREFIX) and view_id[len(LOOP_FREE_PREFIX):] in self.content_receivers:
            return None  # a cascade link with a slides stream: the content goes there, not into its picture
        sample = self._fresh_content(now)
        if sample is None:
            return None
        geometry = self.content.content_rects(width, height, len(present))
        if geometry is None:
            return None
        content_rect, strip = geometry
        if self.broadcast_id in present:  # a broadcast site (roll call, an approved hand) leads the strip
            speakers = [self.broadcast_id] + [p for p in speakers if p != self.broadcast_id]
        chosen = assign_panes([VoicePane(i) for i in range(len(strip))], len(strip), present, speakers, now)
        specs = [PaneSpec(content_rect, CONTENT_SOURCE_ID, "", sample)]
        for rect, pid in zip(strip, chosen, strict=True):
            site = self.participants.get(pid) if pid is not None else None
            if site is None:
                specs.append(PaneSpec(rect, None))
                continue
            video = site.video
            if video is not None and now - video.arrival > self.settings.video_stale_after:
                video = None
            specs.append(PaneSpec(rect, pid, site.name, video))
        return ViewPlan(view_id, width, height, "content", tuple(specs), labels, self.banner, now)

    def wanted_video_size(self, participant_id: str) -> tuple[int, int] | None:
        """The largest pane (width, height) the site is shown in right now, or None if unseen.

        Legs use it to ask the endpoint for a matching resolution (H.245 flow control, SIP
        ``imageattr``/TMMBR, a WebRTC simulcast layer): decoding 25 full 720p streams only to
        shrink them to 256x144 panes is most of the cost of a big continuous-presence room.
        """
        self._site(participant_id)
        return self.shown_sizes().get(participant_id)

    def shown_sizes(self) -> dict[str, tuple[int, int]]:
        """The largest pane of every site shown in a view that has receivers (and broadcast)."""
        views = sorted({key.view_id for key in self._encoders} | {BROADCAST})
        return largest_panes([(p.participant_id, p.rect.w, p.rect.h) for p in self.view_plan(v).panes]
                             for v in views)

    def update_pane_sizes(self) -> list[SizeRequest]:
        """Loop side, a few times a second: settle what each site is asked to send (mcu.pane_size).

        Sets ``Participant.pane`` (and bumps ``pane_version``) for the sites whose wanted size
        changed; their legs follow it (decode off/fast/full, ask the endpoint for the size).
        """
        if self.ended:
            return []
        requests = self.pane_sizer.update(self.shown_sizes(), list(self.participants), self._now())
        for request in requests:
            site = self.participants.get(request.source)
            if site is not None:
                site.pane = request.size
                site.pane_version += 1
        for site in self.participants.values():  # decided, even if hidden from the start
            if site.pane_version == 0:
                site.pane_version = 1
        return requests

    def render(self, view_id: str) -> ComposedFrame:
        """Compose one frame of a view inline (tests, snapshots)."""
        return self.compositor.render(self.view_plan(view_id))

    # ---- encoded video: subscriptions ----------------------------------------
    def _attach(self, sub: Subscription) -> None:
        entry = self._encoders.get(sub.key)
        if entry is None:
            entry = _EncoderEntry(VideoEncoder(sub.key, self.encoder_settings(sub.key.view_id), self.clock))
            self._encoders[sub.key] = entry
        entry.subscribers.append(sub)
        entry.encoder.request_keyframe()  # a new receiver needs a key frame to start decoding

    def _detach(self, sub: Subscription) -> None:
        entry = self._encoders.get(sub.key)
        if entry is not None and sub in entry.subscribers:
            entry.subscribers.remove(sub)
            if not entry.subscribers:
                entry.encoder.close()
                del self._encoders[sub.key]
        if isinstance(sub, ParticipantSubscription) and sub in self._site_subs:
            self._site_subs.remove(sub)

    def subscribe_view(self, view_id: str, sink: PacketSink, codec: str = "h264",
                       width: int = 1280, height: int = 720, single_nal: bool = False) -> Subscription:
        """Receive a fixed view's encoded packets (recorder, chair preview, cascade)."""
        self._require_open()
        if view_id not in (BROADCAST, PREVIEW, CONTENT_VIEW, PEOPLE_VIEW) and not (
            view_id.startswith(SELECT_PREFIX) and view_id[len(SELECT_PREFIX):] in self.participants
        ):
            raise RoomError(f"未知视图: {view_id}")
        sub = Subscription(self, EncoderKey(view_id, codec, width, height, single_nal), sink)
        self._attach(sub)
        return sub

    def add_mix_listener(self, listener: MixListener) -> None:
        """Receive the full mix of all unmuted sites every audio tick (the conference recording)."""
        self._require_open()
        self._mix_listeners.append(listener)

    def remove_mix_listener(self, listener: MixListener) -> None:
        """Stop a mix listener (idempotent)."""
        if listener in self._mix_listeners:
            self._mix_listeners.remove(listener)

    def subscribe_video(self, participant_id: str, sink: PacketSink, codec: str = "h264",
                        width: int = 1280, height: int = 720, single_nal: bool = False,
                        intra_refresh: bool = False) -> ParticipantSubscription:
        """A site's own video feed; it follows broadcast, select-view and voice activation.
        ``intra_refresh``: an encoder with periodic intra refresh (a site on a lossy line)."""
        self._require_open()
        self._site(participant_id)
        key = EncoderKey(self.view_for(participant_id), codec, width, height, single_nal, intra_refresh)
        sub = ParticipantSubscription(self, participant_id, key, sink)
        self._site_subs.append(sub)
        self._attach(sub)
        return sub

    def _refresh_subscriptions(self) -> None:
        """Move site subscriptions whose view changed to the right shared encoder."""
        for sub in list(self._site_subs):
            if sub.participant_id not in self.participants:
                continue
            view = self.view_for(sub.participant_id)
            if view == sub.key.view_id:
                continue
            entry = self._encoders.get(sub.key)
            if entry is not None and sub in entry.subscribers:
                entry.subscribers.remove(sub)
                if not entry.subscribers:
                    entry.encoder.close()
                    del self._encoders[sub.key]
            sub.key = replace(sub.key, view_id=view)
            self._attach(sub)

    @property
    def content_fps(self) -> float:
        """The frame rate the content view is encoded at (every CONTENT_EVERY-th video tick)."""
        return self.settings.fps / CONTENT_EVERY

    def encoder_settings(self, view_id: str) -> EncoderSettings:
        """The settings of a view's shared encoders: the content view's are told the content's own
        frame rate, so its rate control (bits per frame, VBV) and key-frame interval fit the frames it
        really gets; every other view's are the room's."""
        if view_id == CONTENT_VIEW:
            return replace(self.settings.encoder, fps=self.content_fps)
        return self.settings.encoder

    def encoder(self, key: EncoderKey) -> VideoEncoder | None:
        entry = self._encoders.get(key)
        return entry.encoder if entry else None

    @property
    def encoder_keys(self) -> list[EncoderKey]:
        return list(self._encoders)

    # ---- media ticks -------------------------------------------------------------
    def video_jobs(self) -> list[VideoJob]:
        """Loop side of a video tick: one job per view that has receivers."""
        if self.ended:
            return []
        self._refresh_subscriptions()
        by_view: dict[str, list[VideoEncoder]] = {}
        for key, entry in self._encoders.items():
            by_view.setdefault(key.view_id, []).append(entry.encoder)
        if CONTENT_VIEW in by_view:  # the content stream: only while live, at a low frame rate
            self._content_ticks += 1
            if self._content_ticks % CONTENT_EVERY or not self.content_live():
                del by_view[CONTENT_VIEW]
        return [VideoJob(self.view_plan(view), tuple(encs)) for view, encs in by_view.items()]

    def deliver(self, results: list[tuple[EncoderKey, list[EncodedPacket]]]) -> None:
        """Loop side: hand packets to the current subscribers of each encoder."""
        for key, packets in results:
            entry = self._encoders.get(key)
            if entry is None:
                continue
            for sub in list(entry.subscribers):
                for packet in packets:
                    try:
                        sub.sink(packet)
                    except Exception:
                        log.exception("room %s: video sink failed", self.id)

    def video_tick(self) -> list[ComposedFrame]:
        """Render, encode and deliver every active view inline (tests)."""
        composed = []
        for job in self.video_jobs():
            frame, results = run_video_job(self.compositor, job)
            composed.append(frame)
            self.deliver(results)
        return composed

    def gather_audio(self) -> MixInput:
        """Loop side of an audio tick: take one frame from every source (None if stalled)."""
        sites = list(self.participants.values())
        return MixInput(
            ids=tuple(s.id for s in sites),
            frames=tuple(s.take_audio() for s in sites),
            gains=tuple(s.gain for s in sites),
            muted=tuple(s.muted or self._link_standby(s.id) for s in sites),
            deaf=tuple(s.deaf for s in sites),
            full_mix=bool(self._mix_listeners),
            groups=self._audio_groups(sites) if self.link_groups else (),
        )

    def _link_standby(self, participant_id: str) -> bool:
        group = self.link_groups.get(participant_id)
        active = self.link_active.get(group) if group is not None else None
        return active is not None and active != participant_id and active in self.participants

    def _audio_groups(self, sites: list[Participant]) -> tuple[int, ...]:
        numbers: dict[str, int] = {}
        return tuple(numbers.setdefault(self.link_groups[s.id], len(numbers) + 1) if s.id in self.link_groups
                     else 0 for s in sites)

    def apply_mix(self, inp: MixInput, out: MixOutput) -> None:
        """Loop side: deliver N-1 mixes, update the active speaker, emit level events."""
        now = self._now()
        levels = out.levels_dbfs.tolist()
        for i, pid in enumerate(out.ids):
            site = self.participants.get(pid)
            if site is not None:
                site.deliver_audio(out.mixes[i])
        if out.full is not None:
            for listener in list(self._mix_listeners):
                try:
                    listener(out.full, now)
                except Exception:
                    log.exception("room %s: mix listener failed", self.id)
        audible = {
            pid: levels[i]
            for i, pid in enumerate(out.ids)
            if pid in self.participants and not inp.muted[i] and inp.frames[i] is not None
        }
        new = self.speaker_detector.update(audible, now)
        if new is not None and new in self.participants and (not self.speakers or self.speakers[0] != new):
            previous = self.speakers[0] if self.speakers else None
            if new in self.speakers:
                self.speakers.remove(new)
            self.speakers.insert(0, new)
            del self.speakers[8:]
            self._emit(ev.SpeakerChanged(self.id, now, new, previous))
            if self.voice_activated:
                self._refresh_subscriptions()
        if self._last_levels_at is None or now - self._last_levels_at >= self.settings.level_interval - 1e-9:
            self._last_levels_at = now
            self._emit(ev.AudioLevels(self.id, now, {pid: round(levels[i], 1) for i, pid in enumerate(out.ids)}))

    def audio_tick(self) -> MixOutput:
        """Gather, mix and deliver one 20 ms frame inline (tests)."""
        inp = self.gather_audio()
        out = self.mixer.mix(inp)
        self.apply_mix(inp, out)
        return out

    @property
    def active_speaker(self) -> str | None:
        return self.speakers[0] if self.speakers else None
