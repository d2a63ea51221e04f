"""The SMS service: a message to recipients, stored in PostgreSQL, sent through Kannel within the
SMSC's throughput, with a delivery status per recipient.

- ``send`` resolves the recipients (explicit numbers; users and SMS groups of the site plan; duty
  posts through the ``DutyDirectory`` its caller provides: whoever is on duty now), plans the text
  (``sms.text``), refuses when the queue has no room (``QueueFull``: nothing is stored), stores the
  message and one row per distinct number (status ``queued``), audits and publishes ``sms.queued``.
- A few sender tasks claim due recipients one at a time each (``FOR UPDATE SKIP LOCKED``; a claim pushes
  ``next_at`` a minute ahead, so a node that dies mid-submit loses nothing: the row is due again),
  waits for the throughput limiter (``sms.flow.Throughput``, parts per second) and submits. A
  temporary failure (Kannel down) goes back to ``queued`` with backoff; after ``retry_max`` it fails.
- Delivery reports move a recipient forward only (``sms.flow.advance``) and publish ``sms.status``.

The channel interface other packages use (the warnings' SMS channel, the plans' notifier):
``send_numbers(reference, text, numbers, actor)`` → message id, and ``statuses(message_id)`` →
number → status.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.runtime import CoreServices
from core.tasks import cancel_and_wait
from sms.dlr import NumberError, Report, normalize_number
from sms.flow import (
    FAILED,
    QUEUED,
    STATUSES,
    SUBMITTED,
    QueueFull,
    Throughput,
    advance,
    backoff,
    status_of_dlr,
)
from sms.gateway import Submitted
from sms.text import TextError, plan

log = logging.getLogger(__name__)

KINDS = ("bulletin", "meeting", "command", "plan", "warning", "other")
# Where a message came from, as the console filters them: a kind belongs to one source.
SOURCES: dict[str, tuple[str, ...]] = {"warning": ("warning",), "plan": ("plan",), "meeting": ("meeting",),
                                       "manual": ("bulletin", "command", "other")}


def source_of(kind: str) -> str:
    return next((s for s, kinds in SOURCES.items() if kind in kinds), "manual")


def _iso(t: Any) -> str | None:
    return t.isoformat() if t is not None else None

MAX_RECIPIENTS = 2000
CLAIM_SECONDS = 60
SENDERS = 4


class SmsError(ValueError):
    """Bad input; the message names the field."""


class DutyDirectory(Protocol):
    """Who holds a duty post now (the dispatch duty roster, passed in by the composition root)."""

    async def on_duty(self, post: str) -> Sequence[str]: ...


class Submitter(Protocol):
    async def submit(self, recipient_id: int, number: str, text: str, planned: Any) -> Submitted: ...


@dataclass(frozen=True)
class Recipient:
    number: str
    name: str
    via: str


class SmsService:
    def __init__(self, core: CoreServices, submitter: Submitter, duty: DutyDirectory | None = None) -> None:
        self.core = core
        self.db = core.db
        self.settings = core.settings.sms
        self.submitter = submitter
        self.duty = duty
        self.limiter = Throughput(self.settings.throughput, burst=max(1.0, min(self.settings.throughput, 10.0)))
        self.users = {u.username: u for u in core.plan.users}
        self.groups = {g.name: g.members for g in core.plan.sms_groups}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        # a few senders, so one submission's round trips do not hold the others back; they share
        # the one limiter, whose check and take happen with no await between them
        self._tasks = [asyncio.create_task(self._sender(), name=f"sms-sender-{i}") for i in range(SENDERS)]

    async def stop(self) -> None:
        if self._tasks:
            await cancel_and_wait(self._tasks)
            self._tasks = []

    # ------------------------------------------------------------------ resolving recipients

    async def resolve(self, numbers: Sequence[object] = (), users: Sequence[object] = (),
                      posts: Sequence[object] = (), groups: Sequence[object] = ()) -> list[Recipient]:
        """Distinct numbers, first mention wins; SmsError naming the field for anything unknown."""
        out: dict[str, Recipient] = {}

        def add(number: str, name: str, via: str) -> None:
            out.setdefault(number, Recipient(number, name, via))

        for i, raw in enumerate(numbers):
            add(self._number(raw, f"numbers[{i}]"), "", "number")
        for i, u in enumerate(users):
            self._user(u, f"users[{i}]", add, strict=True)
        for i, p in enumerate(posts):
            await self._post(p, f"posts[{i}]", add)
        for i, g in enumerate(groups):
            if not isinstance(g, str) or g not in self.groups:
                raise SmsError(f"groups[{i}]: 站点规划中没有短信群组 {str(g)[:64]!r}")
            for m in self.groups[g]:
                if m.startswith("post:"):
                    await self._post(m[5:], f"groups[{i}]", add, via=f"group:{g}")
                elif m in self.users:
                    self._user(m, f"groups[{i}]", add, strict=False, via=f"group:{g}")
                else:
                    add(self._number(m, f"groups[{i}]"), "", f"group:{g}")
        if len(out) > MAX_RECIPIENTS:
            raise SmsError(f"recipients: 一次最多发送给 {MAX_RECIPIENTS} 个号码（得到 {len(out)} 个）")
        return list(out.values())

    @staticmethod
    def _number(raw: object, field_name: str) -> str:
        try:
            return normalize_number(raw, field_name)
        except NumberError as e:
            raise SmsError(str(e)) from None

    def _user(self, username: object, field_name: str, add: Any, *, strict: bool, via: str = "") -> None:
        u = self.users.get(username) if isinstance(username, str) else None
        if u is None:
            raise SmsError(f"{field_name}: 未知用户 {str(username)[:64]!r}")
        if not u.phone:
            if strict:
                raise SmsError(f"{field_name}: 用户 {u.username} 没有登记手机号码")
            log.warning("sms: user %s has no phone number; skipped", u.username)
            return
        add(self._number(u.phone, field_name), u.display_name or u.username, via or f"user:{u.username}")

    async def _post(self, post: object, field_name: str, add: Any, via: str = "") -> None:
        if not isinstance(post, str) or not post:
            raise SmsError(f"{field_name}: 岗位应为文本")
        if self.duty is None:
            raise SmsError(f"{field_name}: 本节点无法查询值班表")
        people = await self.duty.on_duty(post)
        for username in people:
            self._user(username, field_name, add, strict=False, via=via or f"post:{post}")

    # ------------------------------------------------------------------ sending

    async def send(self, text: object, *, kind: str = "other", reference: str = "", actor: str, source: str = "",
                   numbers: Sequence[object] = (), users: Sequence[object] = (), posts: Sequence[object] = (),
                   groups: Sequence[object] = ()) -> dict[str, Any]:
        if kind not in KINDS:
            raise SmsError(f"kind: 未知类型 {str(kind)[:32]!r}（可用: {', '.join(KINDS)}）")
        if not isinstance(text, str):
            raise SmsError("text: 短信内容应为文本")
        if len(reference) > 200 or any(ord(c) < 0x20 for c in reference):
            raise SmsError("reference: 最多 200 字，不能包含控制字符")
        try:
            planned = plan(text, self.settings.max_parts)
        except TextError as e:
            raise SmsError(str(e)) from None
        recipients = await self.resolve(numbers, users, posts, groups)
        if not recipients:
            raise SmsError("recipients: 没有可发送的号码")
        async with self.db.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('sms-queue'))")
            waiting = await conn.fetchval("SELECT count(*) FROM sms_recipients WHERE status = 'queued'")
            if waiting + len(recipients) > self.settings.queue_limit:
                raise QueueFull(f"recipients: 短信队列已满（{waiting}/{self.settings.queue_limit}），请稍后再试")
            mid = await conn.fetchval(
                "INSERT INTO sms_messages (reference, kind, text, encoding, parts, created_by) "
                "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                reference, kind, text, planned.encoding, len(planned.parts), actor)
            await conn.executemany(
                "INSERT INTO sms_recipients (message_id, number, name, via) VALUES ($1, $2, $3, $4)",
                [(mid, r.number, r.name, r.via) for r in recipients])
        await self.core.audit.record(actor, "sms.send", str(mid), source=source, detail={
            "kind": kind, "reference": reference[:200], "recipients": len(recipients),
            "parts": len(planned.parts)})
        view = await self.message(mid)
        await self.core.bus.publish("sms.queued", {"message": view, "actor": actor})
        self._wake.set()
        return view

    async def send_numbers(self, reference: str, text: str, numbers: Sequence[str], actor: str,
                           kind: str = "other") -> int:
        """The channel interface: send ``text`` to ``numbers``; the message id."""
        view = await self.send(text, kind=kind, reference=reference, actor=actor, numbers=numbers)
        return int(view["id"])

    async def notify(self, reference: str, text: str, *, users: Sequence[str] = (), groups: Sequence[str] = (),
                     actor: str, kind: str = "plan") -> dict[str, Any]:
        """A notification list (the plans' notifier): users and SMS groups; users without a number
        are skipped (and named in ``skipped``), unknown groups are refused."""
        known = [u for u in users if u in self.users and self.users[u].phone]
        skipped = [u for u in users if u not in known]
        view = await self.send(text, kind=kind, reference=reference, actor=actor, users=known, groups=groups)
        return {**view, "skipped": skipped}

    async def statuses(self, message_id: int) -> Mapping[str, str]:
        async with self.db.pool.acquire() as conn:
            rows = await conn.fetch("SELECT number, status FROM sms_recipients WHERE message_id = $1", message_id)
        return {r["number"]: r["status"] for r in rows}

    # ------------------------------------------------------------------ views

    async def message(self, message_id: int) -> dict[str, Any]:
        async with self.db.pool.acquire() as conn:
            m = await conn.fetchrow("SELECT * FROM sms_messages WHERE id = $1", message_id)
            if m is None:
                raise LookupError(f"message_id: 短信 {message_id} 不存在")
            rows = await conn.fetch("SELECT id, number, name, via, status, attempts, error, updated_at, "
                                    "submitted_at, reported_at "
                                    "FROM sms_recipients WHERE message_id = $1 ORDER BY id", message_id)
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        return {"id": m["id"], "reference": m["reference"], "kind": m["kind"], "source": source_of(m["kind"]),
                "text": m["text"],
                "encoding": m["encoding"], "parts": m["parts"], "created_by": m["created_by"],
                "created_at": m["created_at"].isoformat(), "counts": counts,
                "recipients": [{"id": r["id"], "number": r["number"], "name": r["name"], "via": r["via"],
                                "status": r["status"], "attempts": r["attempts"], "error": r["error"],
                                "updated_at": r["updated_at"].isoformat(),
                                "submitted_at": _iso(r["submitted_at"]),
                                "reported_at": _iso(r["reported_at"])} for r in rows]}

    async def messages(self, limit: int = 50, *, status: str | None = None,
                       source: str | None = None) -> list[dict[str, Any]]:
        """The newest messages with counts per status; ``status`` keeps those with a recipient in
        that status, ``source`` those of that source (``SOURCES``: warning, plan, meeting, manual)."""
        if status is not None and status not in STATUSES:
            raise SmsError(f"status: 未知状态 {status[:32]!r}")
        if source is not None and source not in SOURCES:
            raise SmsError(f"source: 未知来源 {source[:32]!r}")
        kinds = list(SOURCES[source]) if source is not None else list(KINDS)
        async with self.db.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT m.id, m.reference, m.kind, m.text, m.parts, m.created_by, m.created_at, "
                "count(r.id) AS recipients, count(*) FILTER (WHERE r.status = 'delivered') AS delivered, "
                "count(*) FILTER (WHERE r.status = 'failed') AS failed, "
                "count(*) FILTER (WHERE r.status = 'queued') AS queued, "
                "count(*) FILTER (WHERE r.status IN ('submitted', 'buffered')) AS sent "
                "FROM sms_messages m LEFT JOIN sms_recipients r ON r.message_id = m.id "
                "WHERE m.kind = ANY($2::text[]) AND ($3::text IS NULL OR EXISTS ("
                "    SELECT 1 FROM sms_recipients x WHERE x.message_id = m.id AND x.status = $3)) "
                "GROUP BY m.id ORDER BY m.id DESC LIMIT $1", limit, kinds, status)
        return [{**dict(r), "source": source_of(r["kind"]), "created_at": r["created_at"].isoformat()} for r in rows]

    async def retry(self, message_id: int, actor: str, source: str = "") -> int:
        """Send a message's failed and waiting recipients again now (attempts start over); how many.
        Delivered and in-flight (submitted, buffered) recipients are left alone."""
        async with self.db.transaction() as conn:
            if await conn.fetchval("SELECT id FROM sms_messages WHERE id = $1", message_id) is None:
                raise LookupError(f"message_id: 短信 {message_id} 不存在")
            rows = await conn.fetch(
                "UPDATE sms_recipients SET status = 'queued', attempts = 0, error = '', next_at = now(), "
                "updated_at = now() WHERE message_id = $1 AND status IN ('queued', 'failed') RETURNING id, number",
                message_id)
        await self.core.audit.record(actor, "sms.retry", str(message_id), source=source,
                                     detail={"recipients": len(rows)})
        for r in rows:
            await self.core.bus.publish("sms.status", {"message_id": message_id, "recipient": r["id"],
                                                       "number": r["number"], "status": QUEUED, "retry": True})
        self._wake.set()
        return len(rows)

    async def queue_length(self) -> int:
        """Recipients waiting in our queue (not yet handed to Kannel)."""
        return int(await self.db.fetchval("SELECT count(*) FROM sms_recipients WHERE status = 'queued'"))

    # ------------------------------------------------------------------ delivery reports

    async def on_report(self, report: Report) -> None:
        new = status_of_dlr(report.kind)
        if new is None:
            log.warning("sms: unknown DLR type %d for recipient %d", report.kind, report.recipient_id)
            return
        async with self.db.transaction() as conn:
            row = await conn.fetchrow("SELECT message_id, number, status FROM sms_recipients WHERE id = $1 FOR UPDATE",
                                      report.recipient_id)
            if row is None:
                return
            status = advance(row["status"], new)
            if status == row["status"]:
                return
            await conn.execute("UPDATE sms_recipients SET status = $2, error = $3, updated_at = now(), "
                               "reported_at = now() WHERE id = $1",
                               report.recipient_id, status, report.answer if status == FAILED else "")
        await self.core.bus.publish("sms.status", {"message_id": row["message_id"], "recipient": report.recipient_id,
                                                   "number": row["number"], "status": status})

    # ------------------------------------------------------------------ the sender

    async def _claim(self) -> Any:
        async with self.db.transaction() as conn:
            return await conn.fetchrow(
                "WITH due AS (SELECT id FROM sms_recipients WHERE status = 'queued' AND next_at <= now() "
                "             ORDER BY next_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) "
                "UPDATE sms_recipients r SET attempts = r.attempts + 1, "
                f"    next_at = now() + interval '{CLAIM_SECONDS} seconds', updated_at = now() "
                "FROM due, sms_messages m WHERE r.id = due.id AND m.id = r.message_id "
                "RETURNING r.id, r.number, r.attempts, r.message_id, m.text")

    async def _sender(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                row = await self._claim()
            except Exception:  # noqa: BLE001 - the database is away: wait and try again
                log.exception("sms: claiming a message failed")
                await asyncio.sleep(1)
                continue
            if row is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)
                continue
            planned = plan(row["text"], 16)
            parts = len(planned.parts)
            while (delay := self.limiter.wait(loop.time(), parts)) > 0:  # noqa: ASYNC110 - a timed wait, not a flag
                await asyncio.sleep(delay)
            self.limiter.take(loop.time(), parts)  # no await since the check: the senders share it
            result = await self.submitter.submit(row["id"], row["number"], row["text"], planned)
            await self._submitted(row, result)

    async def _submitted(self, row: Any, result: Submitted) -> None:
        if result.ok:
            status, next_in, error = SUBMITTED, 0.0, ""
        elif result.temporary and row["attempts"] <= self.settings.retry_max:
            status, next_in, error = QUEUED, backoff(row["attempts"], self.settings.retry_base_seconds), result.answer
        else:
            status, next_in, error = FAILED, 0.0, result.answer
        async with self.db.transaction() as conn:
            current = await conn.fetchval("SELECT status FROM sms_recipients WHERE id = $1 FOR UPDATE", row["id"])
            # a delivery report may already have arrived (Kannel answers after queueing it)
            new = status if current == QUEUED else advance(current, status)
            await conn.execute(
                "UPDATE sms_recipients SET status = $2, error = $3, updated_at = now(), "
                "next_at = now() + make_interval(secs => $4), "
                "submitted_at = CASE WHEN $5 THEN now() ELSE submitted_at END WHERE id = $1",
                row["id"], new, error, next_in, result.ok)
        if new != QUEUED or error:
            await self.core.bus.publish("sms.status", {"message_id": row["message_id"], "recipient": row["id"],
                                                       "number": row["number"], "status": new, "error": error})


__all__ = ["DutyDirectory", "QueueFull", "SmsError", "SmsService"]
