"""The content token (the presentation token / floor of one conference) as a sans-I/O state machine.

One conference shows at most one content source (a shared screen, slides) at a time. Whoever holds
the token may send content; everyone else is refused. Inputs are method calls carrying ``now``
(seconds, any monotonic origin); each returns a :class:`Result` with the decision and the
:class:`TokenEvent` list the adapter publishes. Nothing reads a clock: the adapter calls
:meth:`ContentToken.tick` at :meth:`ContentToken.next_deadline`.

The token speaks in neutral terms (request, grant, release, revoke, take) so each content protocol
maps its own messages onto it:

* browser screen share (our WebRTC signalling): ``content_offer`` -> :meth:`request`, the answer or
  ``content_refused`` <- the decision, ``content_stop`` / the track ending -> :meth:`release`;
* H.239 (H.245 generic messages, H.239 §7): presentationTokenRequest -> :meth:`request`,
  presentationTokenResponse acknowledge/reject <- :attr:`Result.granted`, presentationTokenRelease
  -> :meth:`release`, and the MCU's presentationTokenIndicateOwner/the request it sends the holder
  when the chair grants another -> the ``revoked`` event;
* BFCP (RFC 8855, the MCU as floor control server): FloorRequest -> :meth:`request`,
  FloorRequestStatus Granted/Pending/Denied <- the decision (``Pending`` while ``queued``),
  FloorRelease -> :meth:`release`, Revoked <- the ``revoked`` event.

Rules:

* **One holder.** :attr:`holder` is ``None`` or one opaque id (a site id, ``chair:<user>``).
* **Policy** (per conference, changeable at any time; it does not disturb a current holder):

  - ``"free"`` (first come gets it when free): a request while nobody holds the token is granted;
  - ``"chair"`` (the chair must grant): a request is queued (:attr:`requests`, oldest first) and the
    chair grants it with :meth:`grant`.

* **A second presenter is refused.** A request while someone else holds the token is refused with
  reason ``"busy"`` (naming nobody's id to the requester beyond the holder's display, which the
  adapter adds); in the ``"chair"`` policy it is also queued so the chair can hand the token over.
  A request from the holder is granted again (idempotent: a re-sent H.239 request, a renegotiation).
* **The chair** may :meth:`grant` the token to any id (the previous holder is revoked), :meth:`revoke`
  it (nobody holds it), or :meth:`take` it for itself (``chair:<user>``, for a deck shown from the
  console); the chair's own hold never times out.
* **Release.** Only the holder releases (:meth:`release`); another id's release is refused with
  ``"not_holder"`` and changes nothing. :meth:`forget` (the site left) releases its token and drops
  its queued request.
* **Timeouts.** A participant holder must start sending content within ``start_timeout`` of the
  grant, and a content stream that stops (no :meth:`media` for ``media_timeout``) releases the
  token: event ``released`` with reason ``"timeout"``.
* Refused calls change nothing (a refused request adds nothing but its queue entry under the
  ``"chair"`` policy).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Policy = Literal["free", "chair"]
POLICIES: tuple[Policy, ...] = ("free", "chair")
CHAIR_PREFIX = "chair:"

EventKind = Literal["granted", "queued", "refused", "released", "revoked", "policy"]
Reason = Literal["", "busy", "awaiting_chair", "not_holder", "timeout", "left", "chair", "released",
                 "unknown_policy", "empty_id", "nobody", "queue_full",
                 # a lower cascade node (mcu.content.service): the root is deciding, or could not be asked
                 "asking", "too_fast", "unreachable"]


class TokenError(ValueError):
    """A call that does not fit (bad id or policy); nothing changed."""


@dataclass(frozen=True)
class TokenEvent:
    kind: EventKind
    holder: str | None  # who holds the token after this event
    subject: str | None  # whom the event is about (the requester, the revoked/released holder)
    reason: Reason = ""
    at: float = 0.0


@dataclass(frozen=True)
class Result:
    """The decision of one call: ``granted`` (the subject holds the token now) or why not."""

    granted: bool
    reason: Reason = ""
    events: tuple[TokenEvent, ...] = ()

    @property
    def queued(self) -> bool:
        return any(e.kind == "queued" for e in self.events)


@dataclass
class ContentToken:
    """The token of one conference (see the module docstring for the rules)."""

    policy: Policy = "free"
    media_timeout: float = 5.0  # seconds without a content frame: the stream stopped
    start_timeout: float = 20.0  # seconds after a grant for the first content frame
    max_requests: int = 64
    holder: str | None = None
    granted_at: float = 0.0
    last_media_at: float | None = None
    requests: list[tuple[str, float]] = field(default_factory=list)  # (id, requested at), oldest first

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise TokenError(f"unknown policy {self.policy!r}")
        if not (self.media_timeout > 0 and self.start_timeout > 0):
            raise TokenError("timeouts must be positive")

    # ---- queries -------------------------------------------------------------------------------
    @property
    def held_by_chair(self) -> bool:
        return self.holder is not None and self.holder.startswith(CHAIR_PREFIX)

    def is_holder(self, who: str) -> bool:
        return who is not None and who == self.holder

    def next_deadline(self) -> float | None:
        """When :meth:`tick` may release the token (None: no timer needed)."""
        if self.holder is None or self.held_by_chair:
            return None
        if self.last_media_at is None:
            return self.granted_at + self.start_timeout
        return self.last_media_at + self.media_timeout

    # ---- participant side ----------------------------------------------------------------------
    def request(self, who: str, now: float) -> Result:
        """``who`` asks to present (see the rules: granted, queued or refused)."""
        _check_id(who)
        if who == self.holder:
            return Result(True, events=())
        if self.holder is None and self.policy == "free":
            self._drop_request(who)
            return Result(True, events=(self._grant(who, now),))
        reason: Reason = "busy" if self.holder is not None else "awaiting_chair"
        events: list[TokenEvent] = []
        if self.policy == "chair":
            if all(r[0] != who for r in self.requests):
                if len(self.requests) >= self.max_requests:
                    return Result(False, "queue_full", (TokenEvent("refused", self.holder, who, "queue_full", now),))
                self.requests.append((who, now))
                events.append(TokenEvent("queued", self.holder, who, reason, now))
        else:
            events.append(TokenEvent("refused", self.holder, who, reason, now))
        return Result(False, reason, tuple(events))

    def media(self, who: str, now: float) -> bool:
        """A content frame from ``who`` at ``now``: True when it may be shown (it holds the token)."""
        if who != self.holder:
            return False
        self.last_media_at = now
        return True

    def release(self, who: str, now: float) -> Result:
        """The holder stops presenting; anyone else is refused with ``not_holder``."""
        _check_id(who)
        if who != self.holder:
            self._drop_request(who)  # withdrawing a queued request is allowed and quiet
            return Result(False, "not_holder")
        return Result(True, events=(self._clear(now, "released", "released"),))

    def forget(self, who: str, now: float) -> Result:
        """``who`` left the conference: its token is released and its request dropped."""
        self._drop_request(who)
        if who != self.holder:
            return Result(False, "not_holder")
        return Result(True, events=(self._clear(now, "released", "left"),))

    # ---- chair side ----------------------------------------------------------------------------
    def grant(self, who: str, now: float) -> Result:
        """The chair gives the token to ``who`` (the previous holder is revoked)."""
        _check_id(who)
        if who == self.holder:
            return Result(True)
        events: list[TokenEvent] = []
        if self.holder is not None:
            events.append(self._clear(now, "revoked", "chair"))
        self._drop_request(who)
        events.append(self._grant(who, now))
        return Result(True, events=tuple(events))

    def revoke(self, now: float) -> Result:
        """The chair takes the token away from whoever holds it (nobody holds it after)."""
        if self.holder is None:
            return Result(False, "nobody")
        return Result(True, events=(self._clear(now, "revoked", "chair"),))

    def take(self, chair: str, now: float) -> Result:
        """The chair holds the token itself (``chair:<user>``): every presenter is revoked."""
        _check_id(chair)
        return self.grant(chair if chair.startswith(CHAIR_PREFIX) else CHAIR_PREFIX + chair, now)

    def set_policy(self, policy: str, now: float) -> Result:
        """Switch between ``free`` and ``chair``; the current holder keeps the token."""
        if policy not in POLICIES:
            raise TokenError(f"unknown policy {policy!r}")
        if policy == self.policy:
            return Result(True)
        self.policy = policy
        if policy == "free":
            self.requests.clear()
        return Result(True, events=(TokenEvent("policy", self.holder, None, "", now),))

    def dismiss(self, who: str) -> bool:
        """The chair drops a queued request (True if there was one)."""
        return self._drop_request(who)

    # ---- timers --------------------------------------------------------------------------------
    def tick(self, now: float) -> Result:
        """Release the token of a holder whose content never started or stopped."""
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return Result(False)
        return Result(True, events=(self._clear(now, "released", "timeout"),))

    # ---- internals -----------------------------------------------------------------------------
    def _grant(self, who: str, now: float) -> TokenEvent:
        self.holder, self.granted_at, self.last_media_at = who, now, None
        return TokenEvent("granted", who, who, "", now)

    def _clear(self, now: float, kind: EventKind, reason: Reason) -> TokenEvent:
        previous = self.holder
        self.holder, self.last_media_at = None, None
        return TokenEvent(kind, None, previous, reason, now)

    def _drop_request(self, who: str) -> bool:
        before = len(self.requests)
        self.requests = [r for r in self.requests if r[0] != who]
        return len(self.requests) != before


def _check_id(who: str) -> None:
    if not isinstance(who, str) or not who or len(who) > 128:
        raise TokenError("presenter id must be a non-empty string of at most 128 characters")
