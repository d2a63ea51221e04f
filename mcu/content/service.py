"""Content and request to speak for the running conferences of this node (the asyncio glue).

`ContentService` gives each running conference one :class:`ConferenceContent`: its content token
(:mod:`mcu.content.token`), its content picture (:mod:`mcu.content.source`), the chair's content
layout (:mod:`mcu.content.layout`), its raised hands and DTMF key sequences
(:mod:`mcu.content.hands`). The pure machines decide; this module carries their decisions out:

* token events switch the content picture, close a revoked presenter's share, tell the presenter
  (its signalling channel) and publish ``conference.content`` on the bus (the chair consoles);
* ``ConferenceContent`` is the room's :class:`mcu.room.ContentFeed`: the broadcast view shows the
  content with the chosen layout while the holder's frames are fresh, so every single-stream
  receiver and the conference recording (which records the broadcast view) carry it;
* a raised hand (the join page's button, or a SIP/H.323 room's DTMF sequence, default ``*1``) is
  queued and published as ``conference.hands``; the chair approves (the site is unmuted and, as
  configured, broadcast or put in pane 1, optionally with every other site but the chair muted) or
  dismisses it;
* a site may also take the content as a second stream (:mod:`mcu.content.webrtc_view`, the room's
  shared ``content`` encoder); every site is told when content goes live or stops;
* a timer (every ``tick`` seconds) releases a stopped content stream after the token's timeout
  and forgets presenters, requests and hands of sites that left.

Refusals are :class:`ContentError` with a stable ``code`` and a zh-CN message; nothing changes.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import av
from aiortc import RTCConfiguration

from core.tasks import cancel_and_wait
from mcu.conferences import ConferenceService, RunningConference
from mcu.layout import Rect
from mcu.participant import VideoSample
from mcu.room import RoomError

from .hands import DtmfSequences, HandAction, HandError, HandQueue, check_sequences
from .layout import CONTENT_LAYOUTS, DEFAULT_CONTENT_LAYOUT, content_rects
from .source import ContentSource
from .token import CHAIR_PREFIX, POLICIES, ContentToken, Reason, Result, TokenError, TokenEvent
from .webrtc_share import ContentShareLeg
from .webrtc_view import ContentViewLeg

log = logging.getLogger(__name__)

ApproveAction = Literal["broadcast", "pane", "unmute"]
APPROVE_ACTIONS: tuple[ApproveAction, ...] = ("broadcast", "pane", "unmute")
Channel = Callable[[dict[str, Any]], None]  # a participant's signalling channel (a JSON message out)

MESSAGES = {
    "busy": "{name} 正在共享内容，请稍后再试或请主席授权",
    "awaiting_chair": "已申请共享，等待主席授权",
    "queue_full": "申请共享的人数已满",
    "not_holder": "您未持有共享令牌",
    "not_site": "会场不在会议中：{name}",
    "nobody": "当前没有人共享内容",
    "bad_offer": "无法使用的共享屏幕请求",
    "too_fast": "操作过于频繁，请稍后再试",
    "cascade_root": "级联会议的共享令牌由最上级会场的主席管理",
    "unreachable": "与上级节点的控制通道中断，无法申请共享",
    "timeout": "上级节点未在规定时间内答复共享申请",
}
MIN_INTERVAL = 1.0  # seconds between two share requests, or two hand changes, of one site
LINK_FEED = "cascade:"  # a lower cascade node's content from a link (mcu.cascade.content_link.link_feed)
ASK_GRANT_WAIT = 5.0  # s a granted floor request waits for the tree's holder state before it is refused


def _reason(reason: str) -> Reason:
    """The tree's refusal reason as a token reason (an unknown one reads ``busy``)."""
    known: tuple[Reason, ...] = ("busy", "awaiting_chair", "timeout", "queue_full", "unreachable")
    return next((r for r in known if r == reason), "busy")


class ContentError(ValueError):
    """Refused with nothing changed: `code` is stable (pages, tests), `message` zh-CN."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class CascadeGate(Protocol):
    """The content token of a cascaded conference across the tree (mcu.cascade.content_link).

    On the root (``is_root``) the conference's own token is the tree's: everything runs here as
    before and the gate is told after each change (``token_changed``) so the lower nodes learn it.
    On a lower node the token lives at the root: a local presenter's request is asked of the tree
    (``ask``, answered when the root's decision comes back down) and its stop is ``release``d."""

    @property
    def is_root(self) -> bool: ...

    async def ask(self, site: str) -> tuple[bool, str]: ...

    def release(self, site: str) -> None: ...

    def token_changed(self) -> None: ...


class DeckFeed(Protocol):
    """The chair's deck shown as content (:class:`mcu.content.deck.ConferenceDeck`)."""

    def state(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


@dataclass
class HandSettings:
    approve: ApproveAction = "broadcast"
    mute_others: bool = False


class ConferenceContent:
    """One running conference's content token, content picture, content layout and raised hands."""

    def __init__(self, conf: RunningConference, *, configuration: RTCConfiguration,
                 publish: Callable[[str, dict[str, Any]], None], clock: Callable[[], float]) -> None:
        self.conf = conf
        self.token = ContentToken()
        self.source = ContentSource()
        self.hands = HandQueue()
        self.keys = DtmfSequences()
        self.layout = DEFAULT_CONTENT_LAYOUT
        self.hand_settings = HandSettings()
        self.channels: dict[str, Channel] = {}
        self.shares: dict[str, ContentShareLeg] = {}
        self.views: dict[str, ContentViewLeg] = {}  # sites that get the content as a second stream
        self.deck: DeckFeed | None = None  # the chair's uploaded slide deck (mcu.content.deck)
        self._configuration = configuration
        self._publish = publish
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_action: dict[tuple[str, str], float] = {}
        # Legs that carry the token in their own protocol (H.239) hear every token event.
        self.token_listeners: list[Callable[[TokenEvent], None]] = []
        self.floor_listeners: list[Callable[[], None]] = []  # told once after each token change (BFCP floor status)
        # A cascaded conference: the token across the tree (None: this node alone decides).
        self.cascade: CascadeGate | None = None
        # On a lower node of a cascade: who presents in the tree (qualified id) and whose frames are
        # the content here (a local site, or ``cascade:<node>`` for a link's slides stream).
        self.tree_holder: str | None = None
        self.feed: str | None = None
        self._left: str | None = None  # a presenter that left, whose release went to the root
        # A lower cascade node: room systems' floor requests (H.239, BFCP) the root is deciding,
        # by site: (asked at, or granted at once the root granted it and the tree's holder state is awaited).
        self._asking: dict[str, tuple[float, bool]] = {}
        # BFCP requests among them (they can wait: Pending), and those the root queued for its chair
        # (``awaiting_chair``): they stay asking until the root's queue lets them go (tree_dequeued)
        self._waits: set[str] = set()
        self._queued_at_root: set[str] = set()
        self._releasing: set[str] = set()  # local presenters that gave the token back themselves
        conf.room.content = self

    # ---- the room's ContentFeed --------------------------------------------------------------
    def content_sample(self) -> VideoSample | None:
        return self.source.sample()

    def content_rects(self, width: int, height: int, sites: int) -> tuple[Rect, list[Rect]] | None:
        return None if self.layout == "people" else content_rects(self.layout, width, height, sites)

    # ---- participants: share and stop --------------------------------------------------------
    def _name(self, who: str | None) -> str:
        if who is None:
            return ""
        if who.startswith(CHAIR_PREFIX):
            return "主席"
        site = self.conf.room.participants.get(who)
        return site.name if site is not None else who

    @property
    def holder_name(self) -> str:
        return self._name(self.holder)

    @property
    def holder(self) -> str | None:
        """Who presents: the token's holder, or on a lower cascade node the tree's holder."""
        return self.tree_holder if self._lower() else self.token.holder

    def _lower(self) -> bool:
        return self.cascade is not None and not self.cascade.is_root

    def _refuse_lower(self) -> None:
        if self._lower():
            raise ContentError("cascade_root", MESSAGES["cascade_root"])

    def _throttle(self, who: str, kind: str) -> None:
        """A site's share requests and hand changes, at most one per MIN_INTERVAL each (every one of
        them is a bus event, persisted): a client in a loop is refused, not amplified."""
        now = self._clock()
        last = self._last_action.get((who, kind))
        if last is not None and now - last < MIN_INTERVAL:
            raise ContentError("too_fast", MESSAGES["too_fast"])
        self._last_action[(who, kind)] = now

    def _require_site(self, who: str) -> None:
        if who not in self.conf.room.participants:
            raise ContentError("not_site", MESSAGES["not_site"].format(name=who))

    async def share(self, who: str, offer_sdp: str) -> str:
        """``who`` offers its screen: the answer SDP when it holds (or now gets) the token.

        ContentError ``busy`` / ``awaiting_chair`` (queued for the chair) / ``bad_offer``: refused,
        the current presenter is untouched.
        """
        self._require_site(who)
        self._throttle(who, "share")
        await self.present(who)
        old = self.shares.pop(who, None)
        if old is not None:
            await old.close()
        leg = ContentShareLeg(who, self._configuration, lambda frame: self.on_frame(who, frame), self._share_ended)
        try:
            answer = await leg.answer(offer_sdp)
        except ValueError as exc:
            self.stop(who)
            raise ContentError("bad_offer", str(exc)) from None
        if not self.holds(who):  # revoked while negotiating
            await leg.close()
            raise ContentError("busy", MESSAGES["busy"].format(name=self._name(self.holder)))
        self.shares[who] = leg
        return answer

    async def present(self, who: str) -> None:
        """``who`` (a site here) takes the token, through the cascade's root when this conference is
        cascaded below it; its frames then go to :meth:`on_frame`. ContentError: refused, nothing changed."""
        if self._lower():
            assert self.cascade is not None
            granted, reason = await self.cascade.ask(who)
            if not granted:
                code = reason or "busy"
                raise ContentError(code, MESSAGES.get(code, code).format(name=self._name(self.holder)))
            return
        result = self.token.request(who, self._clock())
        self._apply(result)
        if not result.granted:
            code = result.reason or "busy"
            raise ContentError(code, MESSAGES.get(code, code).format(name=self._name(self.token.holder)))

    def holds(self, who: str) -> bool:
        """Whether site ``who`` of this node presents now."""
        return self.feed == who if self._lower() else self.token.holder == who

    def request_floor(self, who: str) -> Result:
        """``who`` asks for the token in its own protocol (an H.239 presentationTokenRequest); its
        content then arrives through :meth:`on_frame`. The decision; refusals change nothing.

        On a lower cascade node the root decides: the answer is ``asking`` (reason; a ``queued``
        event) and the decision comes later to :attr:`token_listeners` as a ``granted`` event (once
        the tree's holder state names the site) or a ``refused`` one (see :meth:`_ask_tree`)."""
        if who not in self.conf.room.participants:
            return Result(False, "nobody")
        if self._lower():
            return self._ask_floor(who)
        if who != self.token.holder:  # a holder's re-sent request is answered again, not throttled
            try:
                self._throttle(who, "share")
            except ContentError:
                return Result(False, "busy")
        result = self.token.request(who, self._clock())
        self._apply(result)
        return result

    def stop(self, who: str) -> None:
        """The presenter stops sharing (or withdraws its queued request); otherwise nothing happens."""
        if self._lower():
            assert self.cascade is not None
            self._forget_ask(who)
            if self.feed == who:
                self._releasing.add(who)
            self.cascade.release(who)
            return
        had_request = any(r[0] == who for r in self.token.requests)
        result = self.token.release(who, self._clock())
        self._apply(result)
        if not result.granted and had_request:
            self._publish_state("request_withdrawn")

    def floor_request(self, who: str) -> Result:
        """A room system's own floor protocol (BFCP) asks for the token: the token's decision, carried out.
        On a lower cascade node: pending (``queued``) while the root decides, as :meth:`request_floor`."""
        if self._lower():
            if who not in self.conf.room.participants:
                return Result(False, "nobody")
            return self._ask_floor(who, waits=True)
        result = self.token.request(who, self._clock())
        self._apply(result)
        return result

    def floor_release(self, who: str) -> Result:
        """A room system's floor protocol releases the token (or withdraws its queued request)."""
        if self._lower():
            asked = self._asking.pop(who, None) is not None
            self._waits.discard(who)
            self._queued_at_root.discard(who)
            if self.feed != who and not asked:
                return Result(False, "not_holder")
            self.stop(who)
            return Result(self.feed == who, "" if self.feed == who else "not_holder")
        result = self.token.release(who, self._clock())
        self._apply(result)
        return result

    # ---- a lower cascade node: room systems' floor requests go to the root ------------------------
    @property
    def floor_holder(self) -> str | None:
        """Who holds the floor as a room system's floor protocol shows it: a site of this node by its
        own id, anyone else by their id (on a lower cascade node a remote presenter's qualified id)."""
        if not self._lower():
            return self.token.holder
        if self.feed is not None and not self.feed.startswith(LINK_FEED):
            return self.feed
        return self.tree_holder

    @property
    def floor_requests(self) -> list[tuple[str, float]]:
        """Requests not decided yet, oldest first: the chair's queue, or on a lower cascade node the
        requests the root is deciding."""
        if not self._lower():
            return list(self.token.requests)
        return sorted(((who, at) for who, (at, _) in self._asking.items()), key=lambda r: r[1])

    def _ask_floor(self, who: str, waits: bool = False) -> Result:
        now = self._clock()
        if self.feed == who:
            return Result(True)
        if who in self._asking:  # a re-sent request: still with the root
            return Result(False, "asking", (TokenEvent("queued", self.holder, who, "asking", now),))
        try:
            self._throttle(who, "share")
        except ContentError:
            return Result(False, "too_fast", (TokenEvent("refused", self.holder, who, "too_fast", now),))
        self._asking[who] = (now, False)
        if waits:
            self._waits.add(who)
        self._releasing.discard(who)
        self._spawn(self._ask_tree(who))
        return Result(False, "asking", (TokenEvent("queued", self.holder, who, "asking", now),))

    async def _ask_tree(self, who: str) -> None:
        """The root's answer to a room system's request: a refusal is told at once (``refused`` to the
        token listeners: H.239 reject; the floor listeners: BFCP Denied); a grant waits for the tree's
        holder state naming the site (:meth:`tree_changed` tells ``granted``), bounded by :meth:`tick`."""
        assert self.cascade is not None
        granted, reason = await self.cascade.ask(who)
        asked = self._asking.get(who)
        if asked is None:
            return  # withdrawn, or the holder state came first
        if granted and self.feed != who:
            self._asking[who] = (self._clock(), True)  # from now on, ASK_GRANT_WAIT for the holder state
            return
        if not granted and who in self._queued_at_root:
            self._publish_state("queued")  # Pending in the city's queue until its chair decides
            return
        self._forget_ask(who)
        if granted:
            return
        self._refuse_asking(who, _reason(reason))

    def _forget_ask(self, who: str) -> None:
        self._asking.pop(who, None)
        self._waits.discard(who)
        self._queued_at_root.discard(who)

    def _refuse_asking(self, who: str, reason: Reason) -> None:
        self._listen(TokenEvent("refused", self.holder, who, reason, self._clock()))
        self._publish_state("refused")
        for listener in list(self.floor_listeners):
            listener()

    def tree_awaiting(self, site: str) -> None:
        """The root refused ``site``'s request for now but queued it for its chair (``awaiting_chair``,
        or ``busy`` under the chair policy): a BFCP request stays Pending (an H.239 one is refused:
        that protocol has no waiting)."""
        if site in self._waits and site in self._asking:
            self._queued_at_root.add(site)

    def tree_dequeued(self, site: str) -> None:
        """``site``'s request left the root's queue without the token (dismissed, the policy switched to
        ``free``, the link lost): its Pending ends Denied."""
        if site not in self._queued_at_root:
            return
        self._forget_ask(site)
        self._refuse_asking(site, "busy")

    def _listen(self, event: TokenEvent) -> None:
        for listener in list(self.token_listeners):
            try:
                listener(event)
            except Exception:
                log.exception("content: token listener failed")

    def on_frame(self, who: str, frame: av.VideoFrame) -> None:
        now = self._clock()
        if (self.feed == who) if self._lower() else self.token.media(who, now):
            first = self.source.sample() is None
            if self.source.push(who, frame, now) and first:
                self._publish_state("live")  # the consoles show the picture has arrived
                self._tell_all({"type": "content_live", "live": True, "presenter": self._name(who)})

    async def watch(self, who: str, offer_sdp: str) -> str:
        """``who`` asks for the content as a second stream (its own peer connection): the answer."""
        self._require_site(who)
        if self.source.sample() is None:
            raise ContentError("nobody", MESSAGES["nobody"])
        old = self.views.pop(who, None)
        if old is not None:
            await old.close()
        leg = ContentViewLeg(self.conf.room, who, self._configuration)
        try:
            answer = await leg.answer(offer_sdp)
        except ValueError as exc:
            raise ContentError("bad_offer", str(exc)) from None
        self.views[who] = leg
        return answer

    async def unwatch(self, who: str) -> None:
        leg = self.views.pop(who, None)
        if leg is not None:
            await leg.close()

    def _share_ended(self, leg: ContentShareLeg) -> None:
        if self.shares.get(leg.presenter) is leg:
            del self.shares[leg.presenter]
        # The token stays until its media timeout: a presenter whose connection failed gets it back
        # by sharing again; one that is gone loses it after the timeout.

    # ---- the chair -----------------------------------------------------------------------------
    def grant(self, who: str) -> None:
        """The chair gives the token to a site here or, on a cascade's root, to a presenter elsewhere in
        the tree whose request is queued here (``<node>/<site>``, the ``chair`` policy)."""
        self._refuse_lower()
        remote = self.cascade is not None and "/" in who and any(r[0] == who for r in self.token.requests)
        if not remote:
            self._require_site(who)
        self._apply(self.token.grant(who, self._clock()))
        self._tell(who, {"type": "content_granted"})

    def revoke(self) -> None:
        self._refuse_lower()
        result = self.token.revoke(self._clock())
        if not result.granted:
            raise ContentError("nobody", MESSAGES["nobody"])
        self._apply(result)

    def take(self, chair: str) -> None:
        self._refuse_lower()
        self._apply(self.token.take(chair, self._clock()))

    def set_policy(self, policy: str) -> None:
        self._refuse_lower()
        try:
            self._apply(self.token.set_policy(policy, self._clock()))
        except TokenError:
            raise ContentError("bad_policy", f"未知共享策略：{policy}（可选：{'、'.join(POLICIES)}）") from None

    def set_layout(self, layout: str) -> None:
        if layout not in CONTENT_LAYOUTS:
            raise ContentError("bad_layout", f"未知内容布局：{layout}（可选：{'、'.join(CONTENT_LAYOUTS)}）")
        self.layout = layout
        self._publish_state("layout")

    def dismiss_request(self, who: str) -> None:
        if not self.token.dismiss(who):
            raise ContentError("not_requested", f"该会场未申请共享：{who}")
        self._tell(who, {"type": "content_stopped", "reason": "dismissed"})
        self._publish_state("request_dismissed")
        for listener in list(self.floor_listeners):
            listener()
        if self.cascade is not None and self.cascade.is_root:
            try:
                self.cascade.token_changed()  # the queue goes down the tree: a remote request ends there
            except Exception:
                log.exception("content: telling the cascade failed")

    # ---- request to speak ------------------------------------------------------------------------
    def raise_hand(self, who: str, via: str = "web") -> bool:
        self._require_site(who)
        if who in self.hands:
            return False
        self._throttle(who, "hand")
        try:
            raised = self.hands.raise_hand(who, self._clock(), via)
        except HandError as exc:
            raise ContentError("queue_full", str(exc)) from None
        if raised:
            self._publish_hands("raised", who)
            self._tell(who, {"type": "hand", "state": "raised"})
        return raised

    def lower_hand(self, who: str) -> bool:
        if who not in self.hands:
            return False
        self._throttle(who, "hand")
        lowered = self.hands.lower(who)
        if lowered:
            self._publish_hands("lowered", who)
            self._tell(who, {"type": "hand", "state": "lowered"})
        return lowered

    def approve(self, who: str) -> None:
        """Approve a raised hand: unmute, then broadcast / pane 1 / nothing more, as configured."""
        self._require_site(who)
        if who not in self.hands:
            raise ContentError("not_raised", f"该会场未举手：{self._name(who)}")
        room = self.conf.room
        try:
            room.mute(who, False)
            if self.hand_settings.approve == "broadcast":
                room.broadcast(who)
            elif self.hand_settings.approve == "pane" and room.layout != "auto":
                room.assign_pane(0, "static", who)  # "auto" already shows every site
            if self.hand_settings.mute_others:
                for pid in room.present:
                    if pid not in (who, room.chair_id):
                        room.mute(pid, True)
        except RoomError as exc:
            raise ContentError("refused", str(exc)) from None
        self.hands.approve(who)
        self._publish_hands("approved", who)
        self._tell(who, {"type": "hand", "state": "approved"})

    def dismiss(self, who: str) -> None:
        if who not in self.hands:
            raise ContentError("not_raised", f"该会场未举手：{self._name(who)}")
        self.hands.dismiss(who)
        self._publish_hands("dismissed", who)
        self._tell(who, {"type": "hand", "state": "dismissed"})

    def configure_hands(self, approve: str | None = None, mute_others: bool | None = None,
                        raise_keys: str | None = None, lower_keys: str | None = None) -> None:
        """Change what approving does and the DTMF sequences (all validated before any change)."""
        if approve is not None and approve not in APPROVE_ACTIONS:
            raise ContentError("bad_setting", f"未知的批准方式：{approve}（可选：{'、'.join(APPROVE_ACTIONS)}）")
        sequences: dict[str, HandAction] | None = None
        if raise_keys is not None or lower_keys is not None:
            current = {action: seq for seq, action in self.keys.sequences.items()}
            wanted: dict[HandAction, str] = {"raise": raise_keys or current.get("raise", ""),
                                             "lower": lower_keys or current.get("lower", "")}
            try:
                sequences = check_sequences({seq: action for action, seq in wanted.items() if seq})
            except ValueError as exc:
                raise ContentError("bad_setting", f"按键序列无效：{exc}") from None
            if len(sequences) != len([s for s in wanted.values() if s]):
                raise ContentError("bad_setting", "举手与放下的按键序列不能相同")
        if approve is not None:
            self.hand_settings.approve = approve
        if mute_others is not None:
            self.hand_settings.mute_others = mute_others
        if sequences is not None:
            self.keys = DtmfSequences(sequences, self.keys.inter_digit)
        self._publish_hands("settings", None)

    def on_dtmf(self, who: str, digit: str) -> None:
        action = self.keys.feed(who, digit, self._clock())
        if action is None or who not in self.conf.room.participants:
            return
        with contextlib.suppress(ContentError):
            if action == "raise":
                self.raise_hand(who, via="dtmf")
            else:
                self.lower_hand(who)

    # ---- timers and departures -------------------------------------------------------------------
    def tick(self) -> None:
        now = self._clock()
        present = self.conf.room.participants
        if self._lower() and self.cascade is not None and self.feed is not None and self.feed != self._left \
                and not self.feed.startswith(LINK_FEED) and self.feed not in present:
            self._left = self.feed
            self.cascade.release(self.feed)  # our presenter left: the root frees the token at once
        for who, (at, granted) in list(self._asking.items()):
            if who not in present or (granted and now - at > ASK_GRANT_WAIT):
                # left while asking, or granted but the tree's holder state never named it (another
                # decision overtook it): withdrawn at the root, refused here
                self._forget_ask(who)
                if self.cascade is not None and not self.cascade.is_root:
                    self.cascade.release(who)
                self._listen(TokenEvent("refused", self.holder, who, "timeout", now))
                for listener in list(self.floor_listeners):
                    listener()
        holder = self.token.holder
        if holder is not None and not holder.startswith(CHAIR_PREFIX) and "/" not in holder \
                and holder not in present:
            self._apply(self.token.forget(holder, now))
        for who, _ in list(self.token.requests):
            if who not in present and "/" not in who:  # a remote presenter ("<node>/<site>") is not a site here
                self.token.forget(who, now)
                self._publish_state("request_withdrawn")
        for key in [k for k in self._last_action if k[0] not in present]:
            del self._last_action[key]
        for who in [w for w in self.views if w not in present]:
            self._spawn(self.views.pop(who).close())
        for hand in self.hands.entries:
            if hand.participant_id not in present:
                self.hands.forget(hand.participant_id)
                self.keys.forget(hand.participant_id)
                self._publish_hands("left", hand.participant_id)
        self._apply(self.token.tick(now))

    def deck_changed(self, change: str) -> None:
        """The deck turned a page, started or stopped showing: tell the consoles."""
        self._publish_state(change)

    async def close(self) -> None:
        if self.deck is not None:
            deck, self.deck = self.deck, None
            await deck.close()  # its page images are deleted with the conference
        for leg in list(self.shares.values()):
            await leg.close()
        self.shares.clear()
        for view in list(self.views.values()):
            await view.close()
        self.views.clear()
        await cancel_and_wait(list(self._tasks), swallow_errors=True)
        if self.conf.room.content is self:
            self.conf.room.content = None

    # ---- carrying out the token's decisions -----------------------------------------------------
    def _apply(self, result: Result) -> None:
        for event in result.events:
            self._carry_out(event)
        if result.events:
            self._publish_state(result.events[-1].kind, result.events[-1])
            for listener in list(self.floor_listeners):
                listener()
            if self.cascade is not None and self.cascade.is_root:
                try:
                    self.cascade.token_changed()
                except Exception:
                    log.exception("content: telling the cascade failed")

    def apply_result(self, result: Result) -> None:
        """The root's token changed through the cascade (a remote presenter, a lost link): carried out here."""
        self._apply(result)

    def tree_changed(self, presenter: str | None, feed: str | None) -> None:
        """A lower cascade node learnt who presents in the tree and where its content picture comes
        from (``feed``: a local site, ``cascade:<node>`` for a link, None: nobody)."""
        old_feed, old_holder = self.feed, self.tree_holder
        self.tree_holder, self.feed = presenter, feed
        now = self._clock()
        if presenter != old_holder:
            # the room systems' own token dialogue (H.239): who lost it, who has it now
            if old_feed is not None and old_feed != feed and old_feed in self.conf.room.participants:
                gave_up = old_feed in self._releasing
                self._releasing.discard(old_feed)
                self._listen(TokenEvent("released" if gave_up else "revoked", presenter, old_feed,
                                        "released" if gave_up else "chair", now))
            if presenter is not None:
                subject = feed if feed is not None and feed in self.conf.room.participants else presenter
                self._forget_ask(subject)
                self._listen(TokenEvent("granted", subject, subject, "", now))
        if feed == old_feed:
            self._publish_state("tree")
            for listener in list(self.floor_listeners):
                listener()
            return
        if self.source.sample() is not None:
            self._tell_all({"type": "content_live", "live": False, "presenter": ""})
        self.source.switch(feed)
        if old_feed is not None and old_feed in self.conf.room.participants:  # a local presenter lost it
            leg = self.shares.pop(old_feed, None)
            if leg is not None:
                self._spawn(leg.close())
            self._tell(old_feed, {"type": "content_stopped", "reason": "released"})
        if feed is not None and feed in self.conf.room.participants:
            self._tell(feed, {"type": "content_state", "presenting": True})
        self._publish_state("granted" if presenter is not None else "released")
        for listener in list(self.floor_listeners):
            listener()

    def _carry_out(self, event: TokenEvent) -> None:
        for listener in list(self.token_listeners):
            try:
                listener(event)
            except Exception:
                log.exception("content: token listener failed")
        if event.kind == "granted":
            self.source.switch(event.holder)
            if event.subject is not None:
                self._tell(event.subject, {"type": "content_state", "presenting": True})
        elif event.kind in ("released", "revoked"):
            if self.source.sample() is not None:
                self._tell_all({"type": "content_live", "live": False, "presenter": ""})
            self.source.switch(None)
            subject = event.subject
            if subject is not None:
                leg = self.shares.pop(subject, None)
                if leg is not None:
                    self._spawn(leg.close())
                self._tell(subject, {"type": "content_stopped", "reason": event.reason or event.kind})

    def _tell(self, who: str, message: dict[str, Any]) -> None:
        channel = self.channels.get(who)
        if channel is not None:
            try:
                channel(message)
            except Exception:
                log.exception("content: telling %s failed", who)

    def _tell_all(self, message: dict[str, Any]) -> None:
        for who in list(self.channels):
            self._tell(who, message)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _wall(self, monotonic_at: float) -> str:
        return datetime.fromtimestamp(time.time() - (self._clock() - monotonic_at), UTC).isoformat()

    def state(self) -> dict[str, Any]:
        """What the chair console shows (JSON-ready)."""
        holder = self.holder
        seqs = {action: seq for seq, action in self.keys.sequences.items()}
        return {
            "conference_id": self.conf.id, "policy": self.token.policy, "holder": holder,
            "holder_name": self._name(holder), "layout": self.layout, "layouts": list(CONTENT_LAYOUTS),
            "live": self.source.sample() is not None, "size": list(self.source.size) if self.source.size else None,
            "requests": [{"site_id": who, "name": self._name(who), "at": self._wall(at)}
                         for who, at in self.token.requests],
            "hands": [{"site_id": h.participant_id, "name": self._name(h.participant_id),
                       "raised_at": self._wall(h.raised_at), "via": h.via} for h in self.hands.entries],
            "approve": self.hand_settings.approve, "mute_others": self.hand_settings.mute_others,
            "raise_keys": seqs.get("raise", ""), "lower_keys": seqs.get("lower", ""),
            "deck": self.deck.state() if self.deck is not None else None,
        }

    def _publish_state(self, change: str, event: TokenEvent | None = None) -> None:
        payload = self.state() | {"change": change}
        if event is not None:
            payload |= {"subject": event.subject, "reason": event.reason}
        self._publish("conference.content", payload)

    def _publish_hands(self, change: str, who: str | None) -> None:
        self._publish("conference.hands", self.state() | {"change": change, "subject": who})


class ContentService:
    """Every running conference's :class:`ConferenceContent` on this node, and their timer."""

    def __init__(self, conferences: ConferenceService, configuration: RTCConfiguration, *,
                 tick: float = 0.25, clock: Callable[[], float] = time.monotonic) -> None:
        self.conferences = conferences
        self.configuration = configuration
        self.tick_interval = tick
        self.clock = clock
        self._by_id: dict[str, ConferenceContent] = {}
        self._task: asyncio.Task[None] | None = None
        self._publishing: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self.conferences.dtmf_listeners.append(self._on_dtmf)
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="content-ticks")

    async def stop(self) -> None:
        if self._on_dtmf in self.conferences.dtmf_listeners:
            self.conferences.dtmf_listeners.remove(self._on_dtmf)
        if self._task is not None:
            await cancel_and_wait([self._task], swallow_errors=True)
        for content in list(self._by_id.values()):
            await content.close()
        self._by_id.clear()
        if self._publishing:
            await asyncio.gather(*self._publishing, return_exceptions=True)

    def of(self, conf: RunningConference) -> ConferenceContent:
        """The conference's content state (made on first use)."""
        content = self._by_id.get(conf.id)
        if content is None or content.conf is not conf:
            content = ConferenceContent(conf, configuration=self.configuration, publish=self._publish,
                                        clock=self.clock)
            self._by_id[conf.id] = content
        return content

    def get(self, conference_id: str) -> ConferenceContent | None:
        """The content of a conference running here (None: not running on this node)."""
        conf = self.conferences.running(conference_id)
        return self.of(conf) if conf is not None else None

    def _on_dtmf(self, conf: RunningConference, participant_id: str, digit: str) -> None:
        self.of(conf).on_dtmf(participant_id, digit)

    def _publish(self, topic: str, payload: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self.conferences.core.bus.publish(topic, payload))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            for cid, content in list(self._by_id.items()):
                try:
                    if self.conferences.running(cid) is not content.conf or content.conf.room.ended:
                        del self._by_id[cid]
                        await content.close()
                        continue
                    content.tick()
                except Exception:
                    log.exception("content: tick of %s failed", cid)
