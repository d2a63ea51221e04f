"""The parent's half of the backup path: join the telecom bridge while a child is on backup.

A backup path needs both ends in the bridge conference. The child dials its backup itself
(its `Uplink`'s FailoverLink); the parent cannot rely on the control channel to learn that
(it may have no route while the private line is down), so it decides from what it sees:

* the child's primary call (site ``cascade-<child>``) has been absent or silent (no RTP) for
  ``early`` seconds (half the RTP timeout, at least 1 s) → dial the child's bridge conference
  (`Node.backup_uri`) as site ``cascade-<child>-backup``, redialled every ``retry_interval``
  while it fails. The parent goes first on purpose: the child switches at the full RTP
  timeout and then finds the parent already in the bridge, which keeps failover inside the
  5 s target with a 3 s threshold; a needless bridge call costs nothing and is hung up again
  (the two calls are one link group, so the overlap never loops sound or picture back);
* silent for the full ``rtp_timeout`` → hang up the primary call (the child has given up on
  it; its BYE may never arrive over the dead line);
* the primary call is back with RTP flowing continuously for ``settle`` seconds → hang up the
  backup call (the child switched back after its own hold, so a short settle is enough).

Before the child has ever joined, the watcher waits ``startup_grace`` (nodes start in any order).
The derived state (primary / backup / down) and its history feed `CascadeService.status`.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from mcu.cascade.failover import PathEvent, PathState
from mcu.cascade.link_call import snapshot
from mcu.cascade.uplink import SlidesOffer
from mcu.legs.sip_bridge import DialOutError, SipBridge
from mcu.room import Room

log = logging.getLogger(__name__)


@dataclass
class BackupWatcher:
    """One child link of one conference, as seen from the parent."""

    sip: SipBridge
    conference_id: str
    primary_site: str
    backup_site: str
    backup_uri: str
    backup_name: str
    from_user: str
    rtp_timeout: float = 3.0
    settle: float = 3.0
    retry_interval: float = 2.0
    startup_grace: float = 8.0
    early: float = 1.5          # silence after which the bridge is joined (before the child gives up)
    on_event: Callable[[PathEvent], None] = lambda e: None
    slides: SlidesOffer | None = None  # the bridge call offers a content stream (the bridge forwards it)
    child: str = ""  # the child node's name (the slides stream's other end)
    poll_interval: float = 0.1
    media_sample: float = 0.5
    state: PathState = PathState.DOWN
    history: list[PathEvent] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _started: float = 0.0
    _seen_primary: bool = False
    _last_media: float = -1e9
    _flowing_since: float | None = None
    _packets: tuple[int, int] = (0, 0)  # (attempt, packets) of the primary call
    _next_dial: float = 0.0
    _shown: str | None = None         # the member of this link the room broadcast at the last step
    _selecting: dict[str, str] = field(default_factory=dict)  # viewer -> member of this link it selected

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._started = loop.time()
        self._task = loop.create_task(self._watch(), name=f"backup-watch-{self.conference_id}-{self.primary_site}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._hangup(self.backup_site)

    async def _hangup(self, site_id: str) -> None:
        site = self.sip.sites.get((self.conference_id, site_id))
        if site is not None and site.connected:
            with contextlib.suppress(DialOutError):
                await self.sip.hangup(self.conference_id, site_id)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        next_sample = 0.0
        while True:
            await asyncio.sleep(self.poll_interval)
            now = loop.time()
            if now >= next_sample:
                next_sample = now + self.media_sample
                self._sample_primary(now)
            try:
                await self._step(now)
            except Exception:  # a failed step must not end the watch
                log.exception("cascade backup watcher %s/%s", self.conference_id, self.primary_site)

    def _sample_primary(self, now: float) -> None:
        snap = snapshot(self.sip, self.conference_id, self.primary_site)
        if snap is None or not snap.joined:
            self._flowing_since = None
            return
        self._seen_primary = True
        attempt, packets = self._packets
        if snap.attempt != attempt:
            packets = 0
            self._last_media = now  # a call that just joined gets rtp_timeout to start its media
        if snap.packets_in > packets and snap.packets_in > 0:
            self._last_media = now
            if self._flowing_since is None:
                self._flowing_since = now
        self._packets = (snap.attempt, snap.packets_in)

    async def _step(self, now: float) -> None:
        fresh = snapshot(self.sip, self.conference_id, self.primary_site)
        if fresh is not None and not fresh.ended and fresh.attempt != self._packets[0]:
            # A new primary call (not sampled yet) gets rtp_timeout to start its media.
            self._packets, self._last_media = (fresh.attempt, 0), now
        silent_for = now - self._last_media
        primary_ok = silent_for < self.rtp_timeout
        if silent_for >= self.early:
            self._flowing_since = None
        if not primary_ok:
            await self._hangup(self.primary_site)  # the child has given up on it; its BYE may never come
        backup = snapshot(self.sip, self.conference_id, self.backup_site)
        backup_live = backup is not None and not backup.ended
        armed = self._seen_primary or now - self._started >= self.startup_grace
        if silent_for >= self.early and armed and not backup_live and now >= self._next_dial:
            self._next_dial = now + self.retry_interval
            conf = self.sip.conferences.running(self.conference_id)
            if conf is not None:
                conf.room.set_loop_free(self.backup_site, group=self.primary_site)
                try:
                    extra = await self.slides.offer(self.conference_id, self.backup_site, self.child) \
                        if self.slides is not None else ()
                    await self.sip.invite(self.conference_id, self.backup_site, uri=self.backup_uri,
                                          name=self.backup_name, from_user=self.from_user, extra=extra)
                except DialOutError as exc:
                    log.warning("conference %s: cannot dial bridge %s: %s", self.conference_id, self.backup_uri, exc)
        conf = self.sip.conferences.running(self.conference_id)
        if conf is not None:  # one copy of the child's sound: the primary while it flows, else the bridge
            active = self.primary_site if self._flowing_since is not None else self.backup_site
            conf.room.set_link_active(self.primary_site, active)
            self._keep_broadcast(conf.room, active)
            self._keep_selections(conf.room, active)
        settled = self._flowing_since is not None and now - self._flowing_since >= self.settle
        if primary_ok and settled and backup_live:
            await self._hangup(self.backup_site)
        if primary_ok:
            self._set(now, PathState.PRIMARY, "专线媒体恢复")
        elif backup is not None and backup.joined:
            self._set(now, PathState.BACKUP, "下级经电信会议系统接入")
        else:
            self._set(now, PathState.DOWN, "专线无媒体")

    def _keep_broadcast(self, room: Room, active: str) -> None:
        """A roll call / broadcast of this link (e.g. the city chair's roll call of a township
        behind it) follows the link across a path switch: it moves to the call that carries the
        child's media now, also when the old call has left (which cancels a room's broadcast).
        A broadcast the chair cancelled or moved elsewhere is left alone."""
        members = (self.primary_site, self.backup_site)
        current = room.broadcast_id
        if current in members:
            if current != active and active in room.participants:
                room.broadcast(active)
                current = active
            self._shown = current
        elif current is None and self._shown is not None and self._shown not in room.participants:
            if active in room.participants:   # the shown call left with the switch: show the new one
                room.broadcast(active)
                self._shown = active
        else:
            self._shown = None

    def _keep_selections(self, room: Room, active: str) -> None:
        """The same for select-view: a site that selected this link keeps seeing it on whichever
        call carries it; a selection the site changed or cancelled is left alone."""
        members = (self.primary_site, self.backup_site)
        now_selecting: dict[str, str] = {}
        for viewer in room.participants:
            target = room.selected.get(viewer)
            if target in members:
                if target != active and active in room.participants:
                    room.select_view(viewer, active)
                    target = active
                now_selecting[viewer] = target
            elif target is None and self._selecting.get(viewer) not in (None, *room.participants):
                # its selected call left with the switch (the room dropped the selection)
                if active in room.participants:
                    room.select_view(viewer, active)
                    now_selecting[viewer] = active
                else:
                    now_selecting[viewer] = self._selecting[viewer]
        self._selecting = now_selecting

    def _set(self, now: float, state: PathState, reason: str) -> None:
        if state is self.state:
            return
        event = PathEvent(now, state, self.state, reason)
        self.state = state
        self.history.append(event)
        del self.history[:-100]
        self.on_event(event)


__all__ = ["BackupWatcher"]
