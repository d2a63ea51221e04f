"""The warning service: the lifecycle (``alerts.lifecycle``) stored in PostgreSQL, audited, on the bus.

Each operation loads the warning ``FOR UPDATE``, applies one pure transition, and in the same
transaction stores the new value (and, for a send, the CAP message version). Then it writes the
audit entry, publishes ``warning.<action>`` and, after a send, hands the message to every
distribution channel in a background task (deliveries are stored as the channels report them).
A refused transition raises ``Refused`` and changes nothing.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from alerts import codec
from alerts import lifecycle as lc
from alerts.channels import Channel, Delivery, Outgoing, ResumableChannel
from alerts.feed import FeedMessage
from alerts.lifecycle import Content, Refused
from core.audit import AuditLog
from core.bus import Bus
from core.db import Database
from dispatch.exchange.cap import BEIJING

log = logging.getLogger(__name__)


Outline = tuple[tuple[tuple[tuple[float, float], ...], ...], tuple[tuple[float, float, float], ...]]


class NotFound(LookupError):
    pass


def _now() -> datetime:
    return datetime.now(UTC)


def message_text(c: Content) -> str:
    """The text a banner shows and a room hears (kept under the MCU's 200-character banner limit)."""
    headline = "".join(ch for ch in " ".join(c.headline.split()) if ch.isprintable())  # a banner shows no controls
    text = "【预警】" + headline
    return text if len(text) <= 200 else text[:199] + "…"


class WarningService:
    def __init__(self, db: Database, audit: AuditLog, bus: Bus, *, sender: str, sender_name: str,
                 known_adcodes: Collection[str], channels: Sequence[Channel] = (),
                 clock: Callable[[], datetime] = _now, outlines: Mapping[str, Outline] | None = None) -> None:
        self.db = db
        self.audit = audit
        self.bus = bus
        self.sender = sender
        self.sender_name = sender_name
        self.known_adcodes = frozenset(known_adcodes)
        self.channels = list(channels)
        self.clock = clock
        self.outlines = dict(outlines or {})
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ reading

    async def get(self, warning_id: str) -> lc.Warning:
        body = await self.db.fetchval("SELECT body FROM warnings WHERE id = $1", warning_id)
        if body is None:
            raise NotFound(warning_id)
        return codec.warning_from_json(body)

    async def list_warnings(self, states: Collection[str] | None = None, limit: int = 200) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "SELECT body FROM warnings WHERE ($1::text[] IS NULL OR state = ANY($1)) "
            "ORDER BY updated_at DESC LIMIT $2", list(states) if states else None, limit)
        return [self.view(codec.warning_from_json(r["body"])) for r in rows]

    async def active(self) -> list[dict[str, Any]]:
        """Warnings in force (active, or with an Update/Cancel awaiting approval)."""
        rows = await self.db.fetch("SELECT body FROM warnings WHERE state IN ('active', 'pending', 'approved') "
                                   "ORDER BY updated_at DESC")
        out = []
        for r in rows:
            w = codec.warning_from_json(r["body"])
            if w.sent_once:
                out.append(self.view(w))
        return out

    def view(self, w: lc.Warning) -> dict[str, Any]:
        d = codec.warning_to_json(w)
        d["text"] = message_text(w.content)
        return d

    async def messages(self, warning_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            'SELECT identifier, seq, msg_type, sent, "references" FROM warning_messages WHERE warning_id = $1 '
            "ORDER BY seq", warning_id)
        return [{"identifier": r["identifier"], "seq": r["seq"], "msg_type": r["msg_type"],
                 "sent": r["sent"].isoformat(), "references": r["references"]} for r in rows]

    async def xml(self, identifier: str) -> str | None:
        xml: str | None = await self.db.fetchval("SELECT xml FROM warning_messages WHERE identifier = $1", identifier)
        return xml

    async def feed_messages(self, limit: int = 200) -> list[FeedMessage]:
        """The newest ``limit`` CAP messages sent (never a draft or an unapproved proposal: only a send
        writes ``warning_messages``), for the Atom feed (``alerts.feed``)."""
        rows = await self.db.fetch(
            'SELECT m.identifier, w.sender, m.warning_id, m.seq, m.msg_type, m.sent, m."references", m.xml '
            "FROM warning_messages m JOIN warnings w ON w.id = m.warning_id "
            "ORDER BY m.sent DESC, m.identifier DESC LIMIT $1", limit)
        return [FeedMessage(r["identifier"], r["sender"], r["warning_id"], r["seq"], r["msg_type"], r["sent"],
                            r["references"], r["xml"]) for r in rows]

    async def deliveries(self, warning_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "SELECT identifier, channel, recipient, status, detail, updated_at FROM warning_deliveries "
            "WHERE warning_id = $1 ORDER BY id", warning_id)
        return [{"identifier": r["identifier"], "channel": r["channel"], "recipient": r["recipient"],
                 "status": r["status"], "detail": r["detail"], "updated_at": r["updated_at"].isoformat()} for r in rows]

    async def plan_draft(self, activation_id: int) -> dict[str, Any]:
        """What a response-plan activation drafted (``proposals.warning``, dispatch/plans/service.py):
        the text to prefill a draft with. Read-only SQL on dispatch's ``plan_activations`` table."""
        row = await self.db.fetchrow(
            "SELECT id, plan_name, level, proposals->>'warning' AS warning FROM plan_activations WHERE id = $1",
            activation_id)
        if row is None:
            raise Refused("plan_activation", f"unknown plan activation {activation_id}")
        text = " ".join((row["warning"] or "").split())
        if not text:
            raise Refused("plan_activation", "this plan activation drafted no warning")
        return {"plan_activation": row["id"], "event": row["plan_name"][:60], "headline": text[:140],
                "description": text[:2000]}

    # ------------------------------------------------------------ transitions

    def with_outlines(self, c: Content) -> Content:
        """An area given only by administrative codes gets their outline (county boundary, township
        circle) as CAP polygons/circles, so receivers without a GB/T 2260 table can draw it."""
        areas = []
        for a in c.areas:
            if not a.polygons and not a.circles and a.adcodes and all(code in self.outlines for code in a.adcodes):
                rings = tuple(r for code in a.adcodes for r in self.outlines[code][0])
                circles = tuple(ci for code in a.adcodes for ci in self.outlines[code][1])
                a = replace(a, polygons=rings, circles=circles)
            areas.append(a)
        return replace(c, areas=tuple(areas))

    async def draft(self, content: Content, actor: str, role: str, source: str = "",
                    plan_activation: int | None = None) -> dict[str, Any]:
        if plan_activation is not None:
            await self.plan_draft(plan_activation)  # refuses an unknown activation
        now = self.clock()
        warning_id = f"W{now.astimezone(BEIJING):%Y%m%d}-{secrets.token_hex(4)}"
        try:
            w = lc.draft(warning_id, self.sender, self.with_outlines(content), actor, role, now, self.known_adcodes)
        except Refused as exc:
            await self._refused(actor, "draft", "", source, exc)
            raise
        await self.db.execute(
            "INSERT INTO warnings (id, state, proposal, sender, drafted_by, body, expires, plan_activation) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            w.id, w.state.value, w.proposal.value, w.sender, actor, codec.warning_to_json(w), w.content.expires,
            plan_activation)
        await self._after(w, actor, "draft", source, {"headline": content.headline, "plan_activation": plan_activation})
        return self.view(w)

    async def edit(self, warning_id: str, content: Content, actor: str, role: str, source: str = "") -> dict[str, Any]:
        return await self._apply(warning_id, "edit", actor, source,
                                 lambda w, now: lc.edit(w, self.with_outlines(content), actor, role, now, self.known_adcodes))

    async def submit(self, warning_id: str, actor: str, role: str, source: str = "") -> dict[str, Any]:
        return await self._apply(warning_id, "submit", actor, source, lambda w, now: lc.submit(w, actor, role, now))

    async def propose_update(self, warning_id: str, content: Content, actor: str, role: str,
                             source: str = "") -> dict[str, Any]:
        return await self._apply(warning_id, "propose_update", actor, source,
                                 lambda w, now: lc.propose_update(w, self.with_outlines(content), actor, role, now, self.known_adcodes))

    async def propose_cancel(self, warning_id: str, actor: str, role: str, reason: str = "",
                             source: str = "") -> dict[str, Any]:
        return await self._apply(warning_id, "propose_cancel", actor, source,
                                 lambda w, now: lc.propose_cancel(w, actor, role, now, reason))

    async def reject(self, warning_id: str, actor: str, role: str, reason: str, source: str = "") -> dict[str, Any]:
        return await self._apply(warning_id, "reject", actor, source,
                                 lambda w, now: lc.reject(w, actor, role, now, reason))

    async def approve(self, warning_id: str, actor: str, role: str, source: str = "") -> dict[str, Any]:
        """Approve the pending message and send it, in one transaction: the approval is recorded as
        its own step (and audit entry) before the send; a refused approval sends nothing."""
        now = self.clock()
        async with self.db.transaction() as conn:
            body = await conn.fetchval("SELECT body FROM warnings WHERE id = $1 FOR UPDATE", warning_id)
            if body is None:
                raise NotFound(warning_id)
            try:
                approved = lc.approve(codec.warning_from_json(body), actor, role, now)
            except Refused as exc:
                refused: Refused | None = exc
            else:
                refused = None
                after, msg, xml = await self._send_in(conn, approved, now)
        if refused is not None:
            await self._refused(actor, "approve", warning_id, source, refused)
            raise refused
        await self._after(approved, actor, f"approve_{approved.proposal.value.lower()}", source, {})
        await self._after(after, actor, f"send_{msg.msg_type.value.lower()}", source,
                          {"identifier": msg.identifier, "references": msg.references})
        self._distribute(after, msg, xml=xml)
        return self.view(after)

    async def expire_due(self) -> list[str]:
        """Expire every sent warning whose expiry passed; returns their ids."""
        now = self.clock()
        ids = [r["id"] for r in await self.db.fetch(
            "SELECT id FROM warnings WHERE state IN ('active', 'pending', 'approved') AND expires <= $1", now)]
        done = []
        for warning_id in ids:
            try:
                await self._apply(warning_id, "expire", "system", "", lambda w, t: lc.expire(w, t))
                done.append(warning_id)
            except Refused:
                continue
            w = await self.get(warning_id)
            self._distribute(w, w.messages[-1], expired=True)  # banners come down; no CAP message is sent
        return done

    async def resume_pending(self) -> int:
        """At start: hand each resumable channel (the HTTP push) its deliveries still ``pending`` from
        before a stop, first sent first, in a background task; returns how many."""
        count = 0
        for channel in self.channels:
            if not isinstance(channel, ResumableChannel):
                continue
            rows = await self.db.fetch(
                "SELECT d.warning_id, d.identifier, d.recipient, m.msg_type, m.xml FROM warning_deliveries d "
                "JOIN warning_messages m ON m.identifier = d.identifier "
                "WHERE d.channel = $1 AND d.status = 'pending' ORDER BY m.sent, m.identifier, d.id", channel.name)
            if not rows:
                continue
            pending = [(Outgoing(r["warning_id"], r["identifier"], r["msg_type"], "", "", (), "", cap_xml=r["xml"]),
                        r["recipient"]) for r in rows]
            log.info("resending %d %s deliveries left pending by the last stop", len(pending), channel.name)
            task = asyncio.create_task(self._resume_channel(channel, pending), name=f"warning-resume-{channel.name}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            count += len(pending)
        return count

    async def drain(self) -> None:
        """Wait for the distributions under way (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.drain()

    # ------------------------------------------------------------ internals

    async def _apply(self, warning_id: str, action: str, actor: str, source: str,
                     step: Callable[[lc.Warning, datetime], lc.Warning]) -> dict[str, Any]:
        now = self.clock()
        async with self.db.transaction() as conn:
            body = await conn.fetchval("SELECT body FROM warnings WHERE id = $1 FOR UPDATE", warning_id)
            if body is None:
                raise NotFound(warning_id)
            before = codec.warning_from_json(body)
            refused: Refused | None = None
            try:
                after = step(before, now)
            except Refused as exc:
                refused = exc
            else:
                await self._store(conn, after)
        if refused is not None:
            await self._refused(actor, action, warning_id, source, refused)
            raise refused
        await self._after(after, actor, action, source, {})
        return self.view(after)

    async def _send_in(self, conn: Any, w: lc.Warning, now: datetime) -> tuple[lc.Warning, lc.MessageRef, str]:
        stamp = now.astimezone(BEIJING).replace(microsecond=0)
        prefix = f"{w.sender}_{stamp:%Y%m%d%H%M%S}_"
        taken = await conn.fetchval("SELECT count(*) FROM warning_messages WHERE identifier LIKE $1", prefix + "%")
        if taken >= 10:
            raise Refused("identifier", "more than ten messages in one second; try again")
        after, msg = lc.send(w, f"{prefix}{taken}", stamp)
        xml = codec.cap_xml(after, msg, self.sender_name)  # CapError if it breaks a CAP rule
        await conn.execute(
            'INSERT INTO warning_messages (identifier, warning_id, seq, msg_type, sent, "references", xml) '
            "VALUES ($1, $2, $3, $4, $5, $6, $7)",
            msg.identifier, w.id, len(after.messages), msg.msg_type.value, msg.sent, msg.references, xml)
        await self._store(conn, after)
        return after, msg, xml

    async def _store(self, conn: Any, w: lc.Warning) -> None:
        expires = w.content.expires
        await conn.execute(
            "UPDATE warnings SET state = $2, proposal = $3, body = $4, expires = $5, version = version + 1, "
            "updated_at = now() WHERE id = $1",
            w.id, w.state.value, w.proposal.value, codec.warning_to_json(w), expires)

    async def _after(self, w: lc.Warning, actor: str, action: str, source: str, detail: dict[str, Any]) -> None:
        await self.audit.record(actor, f"warning.{action}", w.id, source=source,
                                detail={"state": w.state.value, **detail})
        await self.bus.publish(f"warning.{action}", {"id": w.id, "state": w.state.value,
                                                     "proposal": w.proposal.value, "headline": w.content.headline})

    async def _refused(self, actor: str, action: str, target: str, source: str, exc: Refused) -> None:
        await self.audit.record(actor, f"warning.{action}", target, outcome="denied", source=source,
                                detail={"field": exc.field, "reason": exc.reason})

    def _distribute(self, w: lc.Warning, msg: lc.MessageRef, expired: bool = False, xml: str = "") -> None:
        codes = sorted({code for a in w.content.areas for code in a.adcodes})
        out = Outgoing(w.id, msg.identifier, "Expired" if expired else msg.msg_type.value, w.content.headline,
                       message_text(w.content),
                       tuple(codes), w.content.severity, "、".join(a.desc for a in w.content.areas),
                       w.content.instruction, "" if expired else xml)
        for channel in self.channels:
            task = asyncio.create_task(self._run_channel(channel, out), name=f"warning-{channel.name}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run_channel(self, channel: Channel, out: Outgoing) -> None:
        try:
            await channel.send(out, self._report)
        except Exception:  # noqa: BLE001 - one broken channel must not stop the others
            log.exception("channel %s failed for %s", channel.name, out.identifier)

    async def _resume_channel(self, channel: ResumableChannel, pending: list[tuple[Outgoing, str]]) -> None:
        try:
            await channel.resume(pending, self._report)
        except Exception:  # noqa: BLE001 - as _run_channel
            log.exception("channel %s failed resuming %d deliveries", channel.name, len(pending))

    async def _report(self, message: Outgoing, channel: str, delivery: Delivery) -> None:
        await self.db.execute(
            "INSERT INTO warning_deliveries (warning_id, identifier, channel, recipient, status, detail) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (identifier, channel, recipient) DO UPDATE "
            "SET status = EXCLUDED.status, detail = EXCLUDED.detail, updated_at = now()",
            message.warning_id, message.identifier, channel, delivery.recipient, delivery.status.value,
            delivery.detail)
        await self.bus.publish("warning.delivery", {
            "id": message.warning_id, "identifier": message.identifier, "channel": channel,
            "recipient": delivery.recipient, "status": delivery.status.value})


__all__ = ["NotFound", "Outline", "WarningService", "message_text"]
