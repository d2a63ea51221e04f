"""Incoming SIP calls that are cascade links or bridge callers (before the gateway's IVR).

`CascadeAdmission` is the ``cascade`` route of the node's INVITE router
(``sip_gateway.sip.invite_router``: after emergency numbers, before the conference gateway):

* a call whose From user is one of this node's **children** (or a node listing this one among
  its ``standby_parents``) must authenticate by SIP digest
  (user = the child's node name, password = `naming.sip_password(token, child)`); it then joins
  the dialled conference as site ``cascade-<child>`` straight away (no IVR, the plan PIN does
  not apply), provided the plan cascades that conference over the child. A second call from the
  same child replaces the first (its old call may be a zombie of a line that went down).
* on a **bridge** node (the telecom stand-in) any call to ``sip:<digits>@bridge`` joins the
  room of that number, creating it on demand; no PIN, no IVR.

Both still ask the one admission policy (``mcu.admission``): a link is ``Caller("cascade", …,
identity="cascade:<child>", host=True)``, a bridge caller an ordinary SIP caller of a guest room;
so the room of an emergency call or a locked room refuses them too (403).
* anything else is not claimed: the router gives it to the gateway unchanged.
"""
from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from config.site_plan import Node, SitePlan
from mcu.admission import Caller
from mcu.cascade.naming import link_name, link_site_id, sip_password
from mcu.conferences import ConferenceError, JoinRefused
from mcu.legs.sip_bridge import ConferencePins, SipBridge
from sip_gateway.aio.sip_endpoint import Challenge, Decision, InviteHandler, Reject
from sip_gateway.rtp.media_description import ExtraMedia
from sip_gateway.sip.dialog import Call
from sip_gateway.sip.errors import SipParseError
from sip_gateway.sip.invite_router import InviteRoute
from sip_gateway.sip.sdp import SessionDescription
from sip_gateway.sip.uri import NameAddr

log = logging.getLogger(__name__)

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def caller_user(call: Call) -> str:
    """The user part of the caller's From URI ('' when unparsable)."""
    with contextlib.suppress(SipParseError, ValueError):
        return NameAddr.parse(call.remote_uri).uri.user or ""
    return ""


class SlidesAnswer(Protocol):
    """The links' content streams (``mcu.cascade.link_content.LinkContent``)."""

    def answer(self, conference_id: str, site_id: str, node: str,
               offer: SessionDescription | None) -> Awaitable[tuple[ExtraMedia, ...]]: ...


class BridgeSlidesAnswer(Protocol):
    """A bridge node's slides streams (``mcu.cascade.bridge_content.BridgeContent``)."""

    def answer(self, conference_id: str, site_id: str,
               offer: SessionDescription | None) -> Awaitable[tuple[ExtraMedia, ...]]: ...


@dataclass
class CascadeAdmission:
    """The node's INVITE route for cascade and bridge calls (:attr:`route`); it claims no others."""

    sip: SipBridge
    plan: SitePlan
    node: Node
    token: str
    on_link_call: Callable[[str, str], None] = lambda conference_id, child: None
    slides: SlidesAnswer | None = None  # a child's link call offers a content stream (a=content:slides)
    bridge_slides: BridgeSlidesAnswer | None = None  # on a bridge: its callers' slides streams
    children: dict[str, Node] = field(init=False)

    def __post_init__(self) -> None:
        # children, and nodes that list this one as a standby parent (a standby city node)
        self.children = {n.name: n for n in self.plan.link_children(self.node.name)}
        accounts = self.sip.endpoint.ua.config.accounts  # the digest server looks names up here
        for name in self.children:
            accounts[name] = sip_password(self.token, name)

    @property
    def route(self) -> InviteRoute[InviteHandler]:
        """The ``cascade`` route: calls from a child node, and on a bridge node every call."""
        return InviteRoute("cascade", self.claims, self.on_invite)

    def claims(self, call: Call) -> bool:
        """Is ``call`` a cascade link (From user = a child node) or a bridge node's caller?"""
        return caller_user(call) in self.children or self.node.kind == "bridge"

    async def on_invite(self, call: Call) -> Decision:
        """A call this route claimed: a child's link, or a bridge caller."""
        user = caller_user(call)
        number = call.request_user or ""
        if user in self.children:
            return await self._child_call(call, self.children[user], number)
        if self.node.kind == "bridge":
            return await self._bridge_call(call, user, number)
        return Reject(404, "Not a cascade call")  # not claimed: the router never sends these here

    async def _child_call(self, call: Call, child: Node, number: str) -> Decision:
        if call.authenticated_user is None:
            return Challenge()
        if call.authenticated_user != child.name:
            log.warning("cascade call as %s authenticated as %s: refused", child.name, call.authenticated_user)
            return Reject(403, "Forbidden")
        plan_conf = next((c for c in self.plan.conferences if c.id == number), None)
        if plan_conf is None or child.name not in plan_conf.nodes or self.node.name not in plan_conf.nodes:
            return Reject(404, "Conference not cascaded")
        conf = self.sip.conferences.running(number)
        if conf is None or conf.room.ended:
            return Reject(404, "No such conference")
        refused = await self._policy(number, Caller("cascade", call.flow.host, identity=f"cascade:{child.name}",
                                                    host=True))
        if refused is not None:
            return refused
        site_id = link_site_id(child.name)
        old = self.sip.sites.get((number, site_id))
        if old is not None and old.connected:
            log.info("conference %s: %s calls again, replacing its old call", number, child.name)
            await self.sip.hangup(number, site_id)
            await self.sip._wait_gone(number, site_id, within=2.0)
        conf.room.set_loop_free(site_id, group=site_id)
        self.on_link_call(number, child.name)
        extra = await self.slides.answer(number, site_id, child.name, call.offer) if self.slides is not None else ()
        return await self.sip.admit(conf, call, site_id, link_name(self.plan, child),
                                    line_kbps=self.plan.line_kbps("cascade", node=child.name), extra=extra)

    async def _policy(self, conference_id: str, caller: Caller) -> Reject | None:
        """The admission policy's refusal as a SIP answer (None: admitted)."""
        try:
            await self.sip.conferences.admit(conference_id, caller)
        except JoinRefused as exc:
            log.warning("cascade/bridge call from %s to %s refused: %s", caller.identity or caller.source,
                        conference_id, exc.code)
            return Reject(404, "No such conference") if exc.code in ("unknown", "not_started", "ended") \
                else Reject(403, "Forbidden")
        return None

    async def _bridge_call(self, call: Call, user: str, number: str) -> Decision:
        try:
            conf = await self.sip.conferences.open_bridge_room(number)
        except ConferenceError:
            return Reject(404, "No such conference")
        refused = await self._policy(conf.id, ConferencePins.caller(call))
        if refused is not None:
            return refused
        base = "bridge-" + (_SAFE.sub("_", user)[:40] or "anon")
        site_id, n = base, 1
        while site_id in conf.room.participants or (
                (conf.id, site_id) in self.sip.sites and self.sip.sites[(conf.id, site_id)].connected):
            n += 1
            site_id = f"{base}-{n}"
        extra = await self.bridge_slides.answer(conf.id, site_id, call.offer) if self.bridge_slides is not None else ()
        return await self.sip.admit(conf, call, site_id, user or site_id, extra=extra)


__all__ = ["CascadeAdmission", "caller_user"]
