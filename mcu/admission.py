"""One admission policy for every way into a conference (SIP, H.323, WebRTC, cascade links).

Each way in describes the caller with what it knows (:class:`Caller`) and the conference with
what the schedule says (:class:`ConferenceFacts`); :meth:`AdmissionPolicy.decide` answers
:class:`Admit` or :class:`Refuse`. The policy is pure: no I/O, no clock (``now`` is passed in);
its only state is the per-source back-off on wrong PINs (:class:`PinGuard`).

Rules, in order (the first that applies decides):

1. **Unknown** conference id: refused ``unknown``.
2. **Protected room**: a conference that takes no dial-in (``dial_in`` false: the room of an
   emergency call, kind ``emergency_call``) is refused ``protected`` on every dial-in path,
   whatever its PIN or guest flag. The desk puts its own people in directly, never through here.
3. **State**: ended → ``ended``; not running → ``not_started``; locked → ``locked``.
4. **Guest flag**: a conference with ``guests = false`` admits only a caller with a credential
   accepted for its protocol, otherwise ``auth_required`` (SIP answers with a digest challenge,
   H.323 with Release Complete ``securityDenied``, WebRTC asks for a console login):

   ========  ===================================================================
   protocol  accepted credential
   ========  ===================================================================
   sip       SIP digest account (``sip.accounts``)
   webrtc    console login (any role)
   cascade   the child node's digest (the link password derived from the cascade token)
   h323      a site-plan endpoint matched by alias AND signalling address; or a
             registration with our gatekeeper authenticated by H.235.1 (password,
             HMAC-SHA1-96); or the conference PIN keyed at the IVR (only when the
             conference has a PIN)
   ========  ===================================================================

5. **PIN**: when the conference has a PIN, every caller must key it, except the conference's
   hosts (a console user with a chair role, a cascade link; only with an authenticated identity). The source address is first
   checked against the **back-off** (``too_many_attempts`` with ``retry_after`` while it runs);
   no PIN yet → ``pin_required`` (the IVR asks); a wrong one → ``wrong_pin`` and one more
   failure for (conference, source): after ``max_failures`` the source waits
   ``base_delay * 2**k`` seconds (at most ``max_delay``). The right PIN clears the count.
6. Otherwise the caller is admitted; :attr:`Admit.by` says on what ground (for the audit log):
   ``guests``, ``identity``, ``site``, ``pin`` or ``host``.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Literal

__all__ = ["Admit", "AdmissionPolicy", "Caller", "ConferenceFacts", "PinGuard", "Refuse", "Verdict",
           "ConferenceKind", "CallerProtocol", "RefuseCode"]

ConferenceKind = Literal["meeting", "emergency_call"]
CallerProtocol = Literal["sip", "h323", "webrtc", "cascade"]
RefuseCode = Literal["unknown", "protected", "ended", "not_started", "locked", "auth_required",
                     "pin_required", "wrong_pin", "too_many_attempts"]

MESSAGES: dict[str, str] = {
    "unknown": "会议不存在",
    "protected": "该会议不接受呼入",
    "ended": "会议已结束",
    "not_started": "会议尚未开始",
    "locked": "会议已锁定，暂不允许加入",
    "auth_required": "该会议不接受访客，需验证身份后加入",
    "pin_required": "请输入会议密码",
    "wrong_pin": "会议密码错误",
}


@dataclass(frozen=True)
class ConferenceFacts:
    """What the schedule knows about the dialled conference."""

    id: str
    exists: bool = True
    status: str = "running"  # scheduled, running, ended
    running: bool = True  # a room is open on this node
    locked: bool = False
    guests: bool = False
    pin: str = ""
    kind: ConferenceKind = "meeting"

    @property
    def dial_in(self) -> bool:
        """Whether any dial-in path may reach this conference (not the room of an emergency call)."""
        return self.kind != "emergency_call"


@dataclass(frozen=True)
class Caller:
    """What a way in knows about the caller.

    ``identity`` is an authenticated identity (``sip:alice`` after digest, ``console:chair1``,
    ``h235:room-7`` after an H.235.1 registration, ``cascade:yunan``) or None; ``site`` is the
    site-plan meeting room matched by alias and signalling address (H.323) or None; ``pin`` the
    PIN keyed so far (None: not asked yet); ``host`` a conference host whom the PIN does not bind
    (it counts only together with an ``identity``).
    """

    protocol: CallerProtocol
    source: str
    identity: str | None = None
    site: str | None = None
    pin: str | None = None
    host: bool = False


@dataclass(frozen=True)
class Admit:
    by: Literal["guests", "identity", "site", "pin", "host"]


@dataclass(frozen=True)
class Refuse:
    code: RefuseCode
    message: str
    retry_after: float = 0.0


Verdict = Admit | Refuse


class PinGuard:
    """Wrong-PIN limiter per (conference, source): after `max_failures`, exponential back-off."""

    def __init__(self, max_failures: int = 5, base_delay: float = 30.0, max_delay: float = 900.0) -> None:
        self.max_failures = max_failures
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._failures: dict[tuple[str, str], tuple[int, float]] = {}

    def blocked_for(self, conference_id: str, source: str, now: float) -> float:
        count, until = self._failures.get((conference_id, source), (0, 0.0))
        return max(0.0, until - now)

    def failed(self, conference_id: str, source: str, now: float) -> None:
        count, _ = self._failures.get((conference_id, source), (0, 0.0))
        count += 1
        until = 0.0
        if count >= self.max_failures:
            until = now + min(self.max_delay, self.base_delay * 2 ** (count - self.max_failures))
        self._failures[(conference_id, source)] = (count, until)

    def succeeded(self, conference_id: str, source: str) -> None:
        self._failures.pop((conference_id, source), None)


def _credential(facts: ConferenceFacts, caller: Caller) -> Literal["identity", "site", "pin"] | None:
    """The caller's credential for a conference without guests (rule 4), None if it has none."""
    if caller.identity:
        return "identity"
    if caller.protocol == "h323":
        if caller.site:
            return "site"
        if facts.pin:
            return "pin"  # still to be keyed and checked by rule 5
    return None


class AdmissionPolicy:
    """The rules of the module docstring, with the back-off state they need."""

    def __init__(self, pin_guard: PinGuard | None = None) -> None:
        self.pin_guard = pin_guard or PinGuard()

    def decide(self, facts: ConferenceFacts, caller: Caller, now: float) -> Verdict:
        """Admit or refuse ``caller`` for the conference ``facts`` at time ``now`` (seconds,
        monotonic). A wrong PIN counts towards the back-off of ``caller.source``."""
        if not facts.exists:
            return Refuse("unknown", MESSAGES["unknown"])
        if not facts.dial_in:
            return Refuse("protected", MESSAGES["protected"])
        if facts.status == "ended":
            return Refuse("ended", MESSAGES["ended"])
        if not facts.running:
            return Refuse("not_started", MESSAGES["not_started"])
        if facts.locked:
            return Refuse("locked", MESSAGES["locked"])
        credential = None
        if not facts.guests:
            credential = _credential(facts, caller)
            if credential is None:
                return Refuse("auth_required", MESSAGES["auth_required"])
        host = caller.host and bool(caller.identity)  # a host is someone we know
        if facts.pin and not host:
            wait = self.pin_guard.blocked_for(facts.id, caller.source, now)
            if wait > 0:
                return Refuse("too_many_attempts", f"密码错误次数过多，请 {int(wait) + 1} 秒后再试", wait)
            if caller.pin is None:
                return Refuse("pin_required", MESSAGES["pin_required"])
            if not secrets.compare_digest(caller.pin.encode(), facts.pin.encode()):
                self.pin_guard.failed(facts.id, caller.source, now)
                return Refuse("wrong_pin", MESSAGES["wrong_pin"])
            self.pin_guard.succeeded(facts.id, caller.source)
            return Admit(credential if credential in ("identity", "site") else "pin")
        if host:
            return Admit("host")
        return Admit(credential if credential in ("identity", "site") else "guests")
