"""H.239 presentation token of one H.323 site, mapped onto the conference's content token (sans-I/O).

:class:`H239Floor` sits between one H.323 call's H.245 session and the conference's content token
(:class:`mcu.content.token.ContentToken`, or anything with the same ``request``/``release`` shape,
declared here as :class:`ContentFloor`). It takes the H.239 messages the site sent
(``H239MessageReceived`` events) and the token's events, and returns the H.239 messages to send
back; the H.323 leg sends them with ``H245Session.send_h239``. Rules (H.239 §8, the MCU as the
token manager; the mapping is the one ``mcu/content/token.py`` describes):

* presentationTokenRequest -> ``floor.request(site)``; answered with presentationTokenResponse
  *acknowledge* when granted, *reject* otherwise (busy, awaiting the chair, ...). The refusal's
  token reason is kept in :attr:`H239Floor.last_refusal` for the log. The response echoes the
  request's channelId and terminalLabel.
* a request the token cannot decide at once (reason ``asking``: on a lower node of a cascade the
  root decides, :mod:`mcu.cascade.content_tree`) gets no response yet: H.239 has no "pending". The
  response follows the token event that decides it: ``granted`` for this site -> *acknowledge*,
  ``refused`` for this site -> *reject* (its reason in :attr:`H239Floor.last_refusal`), echoing the
  request's channelId and terminalLabel. A re-sent request meanwhile is still waiting (one
  response, to the latest request).
* presentationTokenRelease from the site -> ``floor.release(site)`` (a release by a non-holder
  changes nothing, as the token rules say).
* the token is taken from the site (event ``revoked`` about this site: the chair revoked it or
  granted another; or ``released`` with reason ``timeout``: its stream stopped) ->
  presentationTokenRelease to the site for its content channel, so it closes that channel.
* flowControlReleaseRequest -> flowControlReleaseResponse acknowledge (the content channel is not
  rate-limited beyond what the capability exchange allows; :class:`ContentRatePolice` below holds a
  presenter to its channel's ``maxBitRate``).
* the token changes owner (event ``granted``: a site, the chair's deck, another protocol) ->
  presentationTokenIndicateOwner (H.239 §7, a genericIndication) to every H.323 site, the new owner
  included, with the owner's ``terminalLabel`` and ``channelId`` the content channel the MCU sends
  this site (0 while none is open). Labels follow H.243: MCU number 1 in the high octet, the
  terminal number in the low one, given per conference in the order participants first own the
  token (:class:`TerminalLabels`); the MCU itself (the chair's deck) is terminal 0. The same owner
  is not indicated twice in a row; a token that ends up with nobody is not indicated (H.239 has no
  "no owner" value: the former owner's presentationTokenRelease, or its channel closing, says it).
* responses and owner indications from the site need no answer (ignored).

Nothing here reads a clock or does I/O; ``now`` comes in with every call.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sip_gateway.h323.h239 import H239Message, SubMessage


class FloorResult(Protocol):
    """The decision of a token call (``mcu.content.token.Result``)."""

    @property
    def granted(self) -> bool: ...

    @property
    def reason(self) -> str: ...


class FloorEvent(Protocol):
    """A token event (``mcu.content.token.TokenEvent``)."""

    @property
    def kind(self) -> str: ...

    @property
    def subject(self) -> str | None: ...

    @property
    def reason(self) -> str: ...


class ContentFloor(Protocol):
    """The conference's content token as this module needs it."""

    def request(self, who: str, now: float) -> FloorResult: ...

    def release(self, who: str, now: float) -> FloorResult: ...


MCU_NUMBER = 1
ASKING = "asking"  # the token's reason for a request decided later (a lower cascade node asks the root)
CHAIR_PREFIX = "chair:"


@dataclass
class TerminalLabels:
    """H.243-style terminal labels of one conference for H.239: ``MCU_NUMBER << 8 | terminal``."""

    numbers: dict[str, int] = field(default_factory=dict)

    def label(self, participant: str) -> int:
        if participant.startswith(CHAIR_PREFIX):
            return MCU_NUMBER << 8  # the MCU's own content (the chair's deck): terminal 0
        number = self.numbers.get(participant)
        if number is None:
            number = len(self.numbers) % 255 + 1
            self.numbers[participant] = number
        return (MCU_NUMBER << 8) | number


@dataclass
class H239Floor:
    """The H.239 token dialogue of one site (``site`` is its participant id in the room)."""

    site: str
    floor: ContentFloor
    content_channel: int | None = None  # the site's incoming content OLC, once opened
    last_refusal: str = ""
    labels: TerminalLabels = field(default_factory=TerminalLabels)
    outgoing_channel: Callable[[], int | None] = lambda: None  # our content OLC to the site
    told_owner: str | None = None  # the owner last indicated to this site
    waiting: H239Message | None = None  # a request whose decision comes later (reason ``asking``)

    def on_message(self, message: H239Message, now: float) -> list[H239Message]:
        """The site sent ``message``; returns what to send back."""
        if message.kind is SubMessage.PRESENTATION_TOKEN_REQUEST:
            result = self.floor.request(self.site, now)
            if not result.granted and result.reason == ASKING:
                self.waiting = message
                return []
            self.waiting = None
            self.last_refusal = "" if result.granted else (result.reason or "busy")
            return [H239Message(SubMessage.PRESENTATION_TOKEN_RESPONSE, channel_id=message.channel_id,
                                terminal_label=message.terminal_label, acknowledge=result.granted)]
        if message.kind is SubMessage.PRESENTATION_TOKEN_RELEASE:
            self.floor.release(self.site, now)
            return []
        if message.kind is SubMessage.FLOW_CONTROL_RELEASE_REQUEST:
            return [H239Message(SubMessage.FLOW_CONTROL_RELEASE_RESPONSE, channel_id=message.channel_id,
                                terminal_label=message.terminal_label, acknowledge=True)]
        return []

    def on_token_event(self, event: FloorEvent) -> list[H239Message]:
        """A token event of the conference: the response to a request decided later; presentationTokenRelease
        when the site loses the token it did not give up; presentationTokenIndicateOwner when the token
        has a new owner."""
        out: list[H239Message] = []
        if self.waiting is not None and event.subject == self.site and event.kind in ("granted", "refused"):
            request, self.waiting = self.waiting, None
            granted = event.kind == "granted"
            self.last_refusal = "" if granted else (event.reason or "busy")
            out.append(H239Message(SubMessage.PRESENTATION_TOKEN_RESPONSE, channel_id=request.channel_id,
                                   terminal_label=request.terminal_label, acknowledge=granted))
        lost = event.subject == self.site and event.kind in ("revoked", "released") and not (
            event.kind == "released" and event.reason in ("released", "left"))  # not its own release
        if lost:
            out.append(H239Message(SubMessage.PRESENTATION_TOKEN_RELEASE, channel_id=self.content_channel,
                                   terminal_label=0))
        if event.kind == "granted" and event.subject and event.subject != self.told_owner:
            self.told_owner = event.subject
            out.append(H239Message(SubMessage.PRESENTATION_TOKEN_INDICATE_OWNER,
                                   channel_id=self.outgoing_channel() or 0,
                                   terminal_label=self.labels.label(event.subject)))
        elif event.kind in ("revoked", "released") and event.subject == self.told_owner:
            self.told_owner = None  # the next grant to the same owner is a change again
        return out


# ---------------------------------------------------------------------- presenter rate policing
OVER_FACTOR = 1.5  # a second above this multiple of the channel's maxBitRate is "over"
SUSTAIN_S = 2.0  # over for this long in a row: flowControlCommand
GRACE_S = 2.0  # still over this long after the command: the excess is dropped
RETELL_S = 10.0  # the command is repeated at most this often while the presenter stays over
WINDOW_S = 1.0


@dataclass(frozen=True)
class PoliceVerdict:
    """What to do with the presenter now: ``tell`` = send flowControlCommand(maxBitRate) on its
    content channel; ``drop`` = do not pass on the content frame that arrived now."""

    tell: bool = False
    drop: bool = False


@dataclass
class ContentRatePolice:
    """Rate policing of one presenter's content channel against its ``maxBitRate`` (sans-I/O).

    Fed with the channel's cumulative received octet count (RTP payload) and ``now``, on every
    content frame and every check. Rules:

    * the octets are judged per window of :data:`WINDOW_S` (1 s, closed by the first sample at or
      after its end); a window whose rate is above :data:`OVER_FACTOR` (1.5) × ``max_bps`` is over;
      a window at or under it ends the run (and the dropping);
    * a run of over windows that has lasted :data:`SUSTAIN_S` (2 s) -> ``tell``: flowControlCommand
      with ``maxBitRate`` = the channel's own maxBitRate (H.245 flowControlCommand: the receiver
      restricts the transmitter of a logical channel), repeated at most every :data:`RETELL_S` while
      the run lasts (a new run is told again);
    * a run still going :data:`GRACE_S` (2 s) after the command -> ``drop``: in each window, once the
      window's octets exceed what ``max_bps`` allows for a whole window, the rest of that window's
      frames are not passed on (the presenter gets its channel's rate, no more);
    * a counter that goes backwards (a restarted stream) starts a new window; ``max_bps`` <= 0 polices
      nothing.
    """

    max_bps: int
    window_start: float | None = None
    window_base: int = 0
    over_since: float | None = None
    told_at: float | None = None
    told: int = 0  # flowControlCommands sent
    dropped: int = 0  # frames not passed on

    def sample(self, octets: int, now: float, frame: bool = False) -> PoliceVerdict:
        """The channel has received ``octets`` so far; ``frame``: a decoded frame arrives now
        (counted in :attr:`dropped` when the verdict drops it)."""
        if self.max_bps <= 0:
            return PoliceVerdict()
        if self.window_start is None or octets < self.window_base:
            self.window_start, self.window_base = now, octets
            return PoliceVerdict()
        if now - self.window_start >= WINDOW_S:
            rate = (octets - self.window_base) * 8 / (now - self.window_start)
            if rate > OVER_FACTOR * self.max_bps:
                if self.over_since is None:
                    self.over_since = self.window_start
            else:
                self.over_since = None
            self.window_start, self.window_base = now, octets
        tell = False
        if self.over_since is not None and now - self.over_since >= SUSTAIN_S and (
                self.told_at is None or self.told_at < self.over_since or now - self.told_at >= RETELL_S):
            self.told_at = now
            self.told += 1
            tell = True
        persisting = (self.over_since is not None and self.told_at is not None
                      and now - self.told_at >= GRACE_S and self.told_at >= self.over_since)
        drop = persisting and (octets - self.window_base) * 8 > self.max_bps * WINDOW_S
        if drop and frame:
            self.dropped += 1
        return PoliceVerdict(tell, drop)
