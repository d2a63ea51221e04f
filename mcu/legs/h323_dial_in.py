"""H.323 dial-in: which conference an incoming call is for, and whether it may enter.

* **By number or alias**: a Setup whose called party number or a destination alias is the id
  of a conference asks the admission policy before answering: admitted, the call joins at
  once; refused, it gets Release Complete without being answered; a PIN wanted, it is
  answered and the IVR asks for the PIN.
* **By IP** (no known number): the call is answered and the IVR collects the conference id,
  then the PIN if the conference has one.
* **The IVR** is the pure :class:`mcu.legs.ivr.Ivr` with the H.323 habits (:func:`ivr_rules`);
  its keys are H.245 userInputIndication characters, its prompts go out on the call's audio
  channel (:meth:`H323Site.prompt`), and its two questions are answered by
  :meth:`ConferenceService.admit`.
* **Who may enter** is the one admission policy's (:mod:`mcu.admission`): a conference without
  guests takes a site-plan endpoint (``alias@host`` matched by alias and source address), a
  terminal whose call our gatekeeper admitted after an H.235.1-authenticated registration, or
  the PIN keyed at the IVR; others, and every caller of an emergency-call room, get Release
  Complete ``securityDenied``. Every admission and refusal is audited as ``conference.join``.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from typing import Any, Protocol

from mcu.admission import Caller
from mcu.conferences import ConferenceService, JoinRefused, RunningConference
from mcu.legs.h323 import H323Site
from mcu.legs.h323_settings import BridgeSettings, parse_target
from mcu.legs.ivr import (
    NO_ENTRY,
    CheckConference,
    CheckPin,
    ConferenceVerdict,
    DigitTimer,
    Hangup,
    Ivr,
    IvrRules,
    Join,
    PinVerdict,
    Prompt,
)
from mcu.room import RoomError
from sip_gateway.aio.h323_endpoint import CallHandle
from sip_gateway.aio.h323_gatekeeping import LocalGatekeeper
from sip_gateway.h323.events import CallIncoming
from sip_gateway.h323.q931 import Cause

__all__ = ["DialIn", "SECURITY_REFUSALS", "ivr_rules"]

log = logging.getLogger(__name__)

# Refusals of the admission policy that are about who calls (not about the conference's state):
# Release Complete with reason securityDenied.
SECURITY_REFUSALS = frozenset({"auth_required", "protected", "wrong_pin", "too_many_attempts"})


def ivr_rules(settings: BridgeSettings) -> IvrRules:
    """The H.323 IVR's habits: ``ivr_digit_timeout`` for each whole entry (then the call is
    released), one budget of attempts for ids and PINs together, an empty PIN is checked (a
    wrong one), and every refusal says goodbye."""
    return IvrRules(digit_timeout=settings.ivr_digit_timeout, timer="per_entry", shared_attempts=True,
                    check_empty_pin=True, say_why=False)


class DialInBridge(Protocol):
    """What dial-in needs from the bridge (read at each call: a test may swap the settings)."""

    conferences: ConferenceService
    settings: BridgeSettings
    local_gatekeeper: LocalGatekeeper | None  # gatekeeper = "server"

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` as a task the bridge waits for when it stops."""

    async def new_site(self, handle: CallHandle, dial_out: bool) -> H323Site:
        """A site for ``handle`` with its media bound, following the call's events."""


@dataclass
class _Checks:
    """What the admission policy said while the IVR ran."""

    admitted: RunningConference | None = None
    refusal: JoinRefused | None = None  # the last one: it decides the release cause


class DialIn:
    """Turns incoming H.323 calls into conference sites (the endpoint's ``on_incoming``)."""

    def __init__(self, bridge: DialInBridge) -> None:
        self.bridge = bridge

    def on_incoming(self, handle: CallHandle) -> None:
        """A new incoming call (its Setup follows as the call's first event)."""
        self.bridge.spawn(self._incoming(handle))

    async def _incoming(self, handle: CallHandle) -> None:
        site = await self.bridge.new_site(handle, dial_out=False)
        try:
            async with asyncio.timeout(10):
                await site.seen_setup.wait()
            if site.incoming is None:
                return
            await self._admit(site, site.incoming)
        except (TimeoutError, ConnectionError) as exc:
            log.info("H.323 call %s not admitted: %s", handle.call.call_id.hex(), exc)
            handle.release(Cause.RECOVERY_ON_TIMER_EXPIRY if isinstance(exc, TimeoutError)
                           else Cause.NORMAL_CALL_CLEARING)
        except RoomError as exc:
            log.info("H.323 call refused by the room: %s", exc)
            handle.release(Cause.CALL_REJECTED)
        except Exception:  # a bug or the database: log it, release the call, keep serving others
            log.exception("H.323 call %s failed while joining", handle.call.call_id.hex())
            handle.release(Cause.TEMPORARY_FAILURE)

    async def _admit(self, site: H323Site, incoming: CallIncoming) -> None:
        """Admit the call by its number, or answer and let the IVR find out; then join."""
        handle = site.handle
        source = handle.call.config.signalling_host
        peer = handle._writer.get_extra_info("peername")
        if peer:
            source = str(peer[0])
        caller = Caller("h323", source, identity=self._gatekeeper_identity(incoming, source),
                        site=self._plan_site_of(incoming, source))
        conferences = self.bridge.conferences
        candidates = [x for x in (incoming.called_number, *incoming.destination_aliases) if x]
        conference_id = None
        for candidate in candidates:
            if (await conferences.facts(candidate)).exists:
                conference_id = candidate
                break
        handle.alert()
        conf: RunningConference | None = None
        if conference_id is not None:
            try:
                conf = await conferences.admit(conference_id, caller)
            except JoinRefused as exc:
                if exc.code != "pin_required":
                    await self._refused(caller, incoming, conference_id, exc)
                    handle.release(*self._refusal(exc))
                    return
        await handle.answer()
        async with asyncio.timeout(10):
            await site.settled.wait()
        if site.released.done():
            return
        if conf is None:
            settings = self.bridge.settings
            ivr = Ivr(None, conference_id, max_attempts=settings.ivr_attempts, rules=ivr_rules(settings))
            conf = await self._converse(site, ivr, caller, incoming)
            if conf is None:
                return
        else:
            await self._audit(caller, incoming, conf.id, "ok", "admitted")
        # The h323-ID (BMPString: Chinese survives) names the site; the Q.931 Display IE is IA5.
        h323_id = next((a for a in incoming.source_aliases if not a.isdigit()), "")
        display = incoming.display if incoming.display and "?" not in incoming.display else ""
        name = h323_id or display or incoming.calling_number or source
        base = "h323-" + re.sub(r"[^0-9A-Za-z_.-]", "_", h323_id or incoming.calling_number or source)
        site_id, n = base, 2
        while site_id in conf.room.participants:
            site_id, n = f"{base}-{n}", n + 1
        await site.join(conf, site_id, name)

    # ------------------------------------------------------------------ the IVR
    async def _converse(self, site: H323Site, ivr: Ivr, caller: Caller,
                        incoming: CallIncoming) -> RunningConference | None:
        """Run the IVR over the call: its prompts out, the terminal's userInput keys in, the
        admission policy's answers to its checks. The admitted conference once the "joining"
        prompt is played; None when the IVR gave up (the call is released). TimeoutError when
        an entry was not complete in time."""
        loop = asyncio.get_running_loop()
        outputs = collections.deque(ivr.start())
        checks = _Checks()
        deadline: float | None = None
        while True:
            while outputs:
                out = outputs.popleft()
                if isinstance(out, Prompt):
                    site.prompt(out.name)
                elif isinstance(out, DigitTimer):
                    deadline = loop.time() + out.seconds if out.seconds else None
                elif isinstance(out, CheckConference):
                    outputs.extend(ivr.conference_result(
                        await self._check_conference(out.conference_id, caller, incoming, checks)))
                elif isinstance(out, CheckPin):
                    outputs.extend(ivr.pin_result(await self._check_pin(out, caller, incoming, checks)))
                elif isinstance(out, Join):
                    assert checks.admitted is not None and checks.admitted.id == out.conference_id
                    await self._audit(caller, incoming, out.conference_id, "ok", "admitted")
                    await site.finish_prompts()
                    return checks.admitted
                elif isinstance(out, Hangup):
                    await self._hang_up(site, out, checks)
                    return None
            try:
                async with asyncio.timeout_at(deadline):
                    key = await site.digits.get()
            except TimeoutError:
                outputs.extend(ivr.timeout())
            else:
                outputs.extend(ivr.digit(key))

    async def _check_conference(self, conference_id: str, caller: Caller, incoming: CallIncoming,
                                checks: _Checks) -> ConferenceVerdict:
        """The IVR's CheckConference: does it exist, and does it take this caller (without a PIN)?"""
        conferences = self.bridge.conferences
        if not (await conferences.facts(conference_id)).exists:
            return "unknown"
        try:
            checks.admitted = await conferences.admit(conference_id, caller)
        except JoinRefused as exc:
            if exc.code == "pin_required":
                return "pin"
            checks.refusal = exc
            await self._refused(caller, incoming, conference_id, exc)
            return "locked" if exc.code == "too_many_attempts" else "refused"
        return "open"

    async def _check_pin(self, check: CheckPin, caller: Caller, incoming: CallIncoming,
                         checks: _Checks) -> PinVerdict:
        """The IVR's CheckPin: admission with the keyed PIN (a wrong one counts for the source)."""
        try:
            checks.admitted = await self.bridge.conferences.admit(check.conference_id, replace(caller, pin=check.pin))
        except JoinRefused as exc:
            checks.refusal = exc
            await self._audit(caller, incoming, check.conference_id, "denied", exc.code)
            if exc.code == "wrong_pin":
                return "wrong"
            return "locked" if exc.code == "too_many_attempts" else "refused"
        return "ok"

    async def _hang_up(self, site: H323Site, hangup: Hangup, checks: _Checks) -> None:
        """The IVR gave up: let its goodbye play, then release with the cause of the last refusal
        (no such conference when there was none)."""
        if hangup.reason == NO_ENTRY:
            raise TimeoutError("no IVR entry in time")  # released like any call that timed out
        await site.finish_prompts()
        if checks.refusal is not None:
            log.info("H.323 dial-in from %s gave up at the IVR: %s", site.handle.call.call_id.hex(),
                     checks.refusal.code)
            site.handle.release(*self._refusal(checks.refusal))
        else:
            site.handle.release(Cause.NO_ROUTE_TO_DESTINATION)

    # ------------------------------------------------------------------ who calls
    def _plan_site_of(self, incoming: CallIncoming, source: str) -> str | None:
        """The site-plan meeting room whose H.323 endpoint is this caller: the plan gives it as
        ``alias@host[:port]``, the Setup names that alias (h323-ID or E.164) and the call comes
        from that host. An endpoint given only by address or only by alias identifies nobody."""
        aliases = {a for a in (*incoming.source_aliases, incoming.calling_number or "") if a}
        plan = getattr(self.bridge.conferences.core, "plan", None)
        for room in getattr(plan, "meeting_rooms", ()):
            for ep in room.endpoints:
                if ep.protocol != "h323" or not ep.address:
                    continue
                with contextlib.suppress(ValueError):
                    alias, target = parse_target(ep.address)
                    if alias and target is not None and alias in aliases and target.host == source:
                        return str(room.id)
        return None

    def _gatekeeper_identity(self, incoming: CallIncoming, source: str) -> str | None:
        """``h235:<alias>`` when our gatekeeper admitted this call (ARQ, same callIdentifier) for a
        registration authenticated by H.235.1 from this host; None otherwise."""
        local_gatekeeper = self.bridge.local_gatekeeper
        if local_gatekeeper is None:
            return None
        account = local_gatekeeper.gatekeeper.authenticated_call(
            incoming.call_id, source, asyncio.get_running_loop().time())
        return f"h235:{account}" if account else None

    async def _refused(self, caller: Caller, incoming: CallIncoming, conference_id: str, exc: JoinRefused) -> None:
        log.info("H.323 dial-in from %s to %s refused: %s", caller.source, conference_id, exc.code)
        await self._audit(caller, incoming, conference_id, "denied", exc.code)

    async def _audit(self, caller: Caller, incoming: CallIncoming, conference_id: str, outcome: str,
                     code: str) -> None:
        """``conference.join`` with ``protocol: h323`` for every admission and refusal."""
        audit = getattr(self.bridge.conferences.core, "audit", None)
        if audit is None:
            return
        claimed = next(iter(incoming.source_aliases), "") or incoming.calling_number or "anonymous"
        actor = caller.identity or (f"site:{caller.site}" if caller.site else
                                    "h323:" + re.sub(r"[^0-9A-Za-z_.@-]", "_", claimed)[:64])
        with contextlib.suppress(Exception):  # the audit database must not decide a call
            await audit.record(actor, "conference.join", conference_id, outcome=outcome, source=caller.source,
                               detail={"protocol": "h323", "code": code})

    @staticmethod
    def _refusal(exc: JoinRefused) -> tuple[int, str | None]:
        """(Q.850 cause, H.225.0 ReleaseCompleteReason) for a refused caller: who may not come in
        gets ``securityDenied``; a conference that cannot take anybody, the usual rejection."""
        if exc.code in SECURITY_REFUSALS:
            return Cause.CALL_REJECTED, "securityDenied"
        return Cause.CALL_REJECTED, None
