"""The CAP Atom feed and the HTTP push channel (issue 20: "a CAP feed (Atom), and a push to a configured
HTTP endpoint"): on a real PostgreSQL, with real HTTP endpoints on 127.0.0.1 (the standard library's
``http.server``), the feed judged by ``feedparser`` (an independent Atom parser) and each pushed
document by the OASIS CAP 1.2 XSD."""
from __future__ import annotations

import asyncio
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import feedparser
import pytest

from alerts import cap_schema, capability
from alerts.channels import Delivery, Outgoing
from alerts.feed import CAP, FeedMeta, build_feed
from alerts.http_push_channel import HttpPushChannel, PushEndpoint, retry_delay
from alerts.lifecycle import Area, Content
from config.settings import WarningsSettings
from core.runtime import CoreServices
from tests.conftest import free_port

SQUARE = ((111.5, 22.6), (111.7, 22.6), (111.7, 22.8), (111.5, 22.8), (111.5, 22.6))
KINDS = {"Alert": "首次发布", "Update": "更新", "Cancel": "解除"}


def content(**kw: object) -> Content:
    c = Content(event="暴雨", headline="罗定市暴雨橙色预警", description="未来6小时罗定市将出现暴雨。", instruction="注意防范。",
                severity="Severe", urgency="Expected", certainty="Likely",
                areas=(Area("罗定市", polygons=(SQUARE,), adcodes=("445381",)),),
                expires=datetime.now(UTC) + timedelta(hours=6))
    return Content(**{**c.__dict__, **kw})


@dataclass
class Endpoint:
    """A CAP receiver on 127.0.0.1: records each POST; answers ``statuses`` in turn, then 200."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[str, str, str]] = field(default_factory=list)  # content type, authorization, body
    url: str = ""


def _handler(ep: Endpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            ep.received.append((self.headers.get("Content-Type", ""), self.headers.get("Authorization", ""),
                                body.decode("utf-8")))
            status = ep.statuses.pop(0) if ep.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass
    return Handler


@pytest.fixture
def endpoints() -> Iterator[dict[str, Endpoint]]:
    eps = {"national": Endpoint(), "flaky": Endpoint(statuses=[500]), "refusing": Endpoint(statuses=[400])}
    servers = []
    for ep in eps.values():
        srv = ThreadingHTTPServer(("127.0.0.1", 0), _handler(ep))
        ep.url = f"http://127.0.0.1:{srv.server_address[1]}/cap"
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(srv)
    yield eps
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def msg_type(xml: str) -> str:
    return ET.fromstring(xml).findtext(f"{{{CAP}}}msgType") or ""


async def test_alert_update_cancel_pushed_in_order_and_fed(services: CoreServices,
                                                           endpoints: dict[str, Endpoint]) -> None:
    down = f"http://127.0.0.1:{free_port()}/cap"  # nothing listens there
    services.settings.warnings = WarningsSettings.model_validate({
        "push": [{"name": "national", "url": endpoints["national"].url, "bearer_token": "s3cret",
                  "headers": {"X-Department": "yunfu"}},
                 {"name": "flaky", "url": endpoints["flaky"].url},
                 {"name": "down", "url": down}],
        "push_retries": 2, "push_retry_base_seconds": 0.05, "push_timeout_seconds": 2})
    cap = await capability.start(services, sweep_every=0)
    svc = cap.service
    try:
        w = await svc.draft(content(), "dispatcher", "dispatcher")
        await svc.submit(w["id"], "dispatcher", "dispatcher")
        await svc.drain()
        assert endpoints["national"].received == [] and await svc.feed_messages() == []  # nothing unapproved
        await svc.approve(w["id"], "leader", "leader")
        await svc.propose_update(w["id"], content(headline="罗定市暴雨红色预警", severity="Extreme"), "dispatcher", "dispatcher")
        await svc.approve(w["id"], "leader", "leader")
        await svc.propose_cancel(w["id"], "dispatcher", "dispatcher", "雨势减弱")
        assert len(await svc.feed_messages()) == 2  # the pending Cancel is not in the feed
        await svc.approve(w["id"], "leader", "leader")
        await svc.drain()
        msgs = await svc.messages(w["id"])
        ids = [m["identifier"] for m in msgs]

        # the push: three valid CAP documents, in order, with the configured headers
        got = endpoints["national"].received
        assert [msg_type(body) for _, _, body in got] == ["Alert", "Update", "Cancel"]
        for (ctype, auth, body), identifier in zip(got, ids, strict=True):
            assert ctype.startswith("application/cap+xml") and auth == "Bearer s3cret"
            cap_schema.check(body)  # the OASIS XSD
            assert body == await svc.xml(identifier)  # exactly as stored
        # 500 then 200: the Alert is tried twice; Update and Cancel wait for it, so the order holds
        assert [msg_type(b) for _, _, b in endpoints["flaky"].received] == ["Alert", "Alert", "Update", "Cancel"]
        deliveries = {(d["identifier"], d["channel"], d["recipient"]): (d["status"], d["detail"])
                      for d in await svc.deliveries(w["id"])}
        for i in ids:
            assert deliveries[(i, "http_push", "national")] == ("delivered", "HTTP 200")
            assert deliveries[(i, "http_push", "flaky")][0] == "delivered"
            status, detail = deliveries[(i, "http_push", "down")]
            assert status == "failed" and "ConnectError" in detail and "after 3 attempts" in detail, detail
            assert deliveries[(i, "log_only", "log")][0] == "logged"  # the endpoint down blocks no other channel
        assert deliveries[(ids[0], "http_push", "flaky")][1] == "HTTP 200 after 2 attempts"

        # the feed: the three messages, newest first, as an independent Atom parser reads them
        meta = FeedMeta(svc.sender, "云浮市预警信息", svc.sender_name, "http://127.0.0.1:8080/api/warnings/feed.atom")
        feed = build_feed(await svc.feed_messages(), meta, "http://127.0.0.1:8080/api/warnings/cap/{identifier}.xml",
                          datetime.now(UTC), KINDS)
        parsed = feedparser.parse(feed)
        assert parsed.bozo == 0 and parsed.version == "atom10", parsed.get("bozo_exception")
        entries = parsed.entries
        assert [e.id for e in entries] == [f"urn:cap:{svc.sender}:{i}" for i in reversed(ids)]
        assert [e.tags[0].term for e in entries] == ["Cancel", "Update", "Alert"]
        assert entries[0].title == "暴雨 解除：罗定市暴雨红色预警"
        assert entries[2].title == "暴雨 首次发布：罗定市暴雨橙色预警"  # the headline as that message had it
        assert [e.links[0].href for e in entries] == [
            f"http://127.0.0.1:8080/api/warnings/cap/{i}.xml" for i in reversed(ids)]
        assert all(e.links[0].type == "application/cap+xml" for e in entries)
        assert parsed.feed.updated == entries[0].updated
        # the inlined CAP documents carry the references: the Cancel names the Alert and the Update
        root = ET.fromstring(feed)
        inlined = root.findall("{http://www.w3.org/2005/Atom}entry/{http://www.w3.org/2005/Atom}content/"
                               f"{{{CAP}}}alert")
        assert [a.findtext(f"{{{CAP}}}msgType") for a in inlined] == ["Cancel", "Update", "Alert"]
        refs = inlined[0].findtext(f"{{{CAP}}}references") or ""
        assert [r.split(",")[1] for r in refs.split(" ")] == ids[:2]
        cap_schema.check(ET.tostring(inlined[0], encoding="unicode"))  # still a valid CAP document inline
    finally:
        await cap.stop()


def test_empty_feed_and_retry_delays() -> None:
    now = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    body = build_feed([], FeedMeta("44530000000000", "t", "a", "http://x/feed.atom"), "http://x/{identifier}.xml",
                      now, KINDS)
    parsed = feedparser.parse(body)
    assert parsed.bozo == 0 and parsed.version == "atom10" and parsed.entries == []
    assert parsed.feed.updated == now.isoformat() and parsed.feed.id == "urn:cap:44530000000000:feed"
    with pytest.raises(ValueError):
        build_feed([], FeedMeta("s", "t", "a", "u"), "{identifier}", datetime(2026, 1, 1), KINDS)
    assert [retry_delay(n, 2.0, 60.0) for n in (1, 2, 3, 6, 7)] == [2.0, 4.0, 8.0, 60.0, 60.0]



async def test_refused_document_fails_at_once(endpoints: dict[str, Endpoint]) -> None:
    """A 4xx is the receiver refusing this document: no retry, ``failed`` with the status and its body."""
    reports: list[Delivery] = []

    async def sink(message: Outgoing, channel: str, delivery: Delivery) -> None:
        reports.append(delivery)

    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    channel = HttpPushChannel([PushEndpoint("refusing", endpoints["refusing"].url)], retries=5, sleep=sleep)
    try:
        out = Outgoing("W1", "id-1", "Alert", "h", "t", ("445381",), "Severe", cap_xml="<alert/>")
        await channel.send(out, sink)
        await channel.send(Outgoing("W1", "id-0", "Expired", "h", "t", (), "Severe"), sink)  # expiry sends nothing
    finally:
        await channel.aclose()
    assert [(d.status.value, d.detail) for d in reports] == [("pending", ""), ("failed", "HTTP 400 ok")]
    assert len(endpoints["refusing"].received) == 1 and slept == []


async def test_pending_pushes_resent_after_restart(services: CoreServices) -> None:
    """The receiver is down while an Alert and its Update are sent; the node stops with both ``pending``;
    a new service on the same database resends them (receiver still down), the receiver comes up, and
    it gets each document exactly once, Alert before Update, both ``delivered``. A delivery to an
    endpoint dropped from the configuration in between is ``failed`` with the reason."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/cap"
    retry = {"push_retries": 20, "push_retry_base_seconds": 0.05, "push_retry_max_seconds": 0.3,
             "push_timeout_seconds": 2}
    services.settings.warnings = WarningsSettings.model_validate({
        "push": [{"name": "national", "url": url}, {"name": "retired", "url": f"http://127.0.0.1:{free_port()}/cap"}],
        **retry})
    cap = await capability.start(services, sweep_every=0)
    svc = cap.service
    try:
        w = await svc.draft(content(), "dispatcher", "dispatcher")
        await svc.submit(w["id"], "dispatcher", "dispatcher")
        await svc.approve(w["id"], "leader", "leader")
        await svc.propose_update(w["id"], content(headline="罗定市暴雨红色预警"), "dispatcher", "dispatcher")
        await svc.approve(w["id"], "leader", "leader")
        ids = [m["identifier"] for m in await svc.messages(w["id"])]

        async def push_rows() -> dict[tuple[str, str], tuple[str, str]]:
            return {(d["identifier"], d["recipient"]): (d["status"], d["detail"])
                    for d in await svc.deliveries(w["id"]) if d["channel"] == "http_push"}

        async def until(predicate: Any, within: float = 15.0) -> dict[tuple[str, str], tuple[str, str]]:
            deadline = asyncio.get_running_loop().time() + within
            while True:
                rows = await push_rows()
                if predicate(rows):
                    return rows
                assert asyncio.get_running_loop().time() < deadline, rows
                await asyncio.sleep(0.05)

        # the Alert is being retried; the Update waits behind it, pending too
        rows = await until(lambda r: "attempt 2:" in r.get((ids[0], "national"), ("", ""))[1])
        assert rows[(ids[1], "national")][0] == "pending"
    finally:
        await cap.stop()  # the node stops mid-retry
    rows = await push_rows()
    assert {k: v[0] for k, v in rows.items()} == {(i, e): "pending" for i in ids for e in ("national", "retired")}

    services.settings.warnings = WarningsSettings.model_validate({"push": [{"name": "national", "url": url}], **retry})
    cap = await capability.start(services, sweep_every=0)  # a new service instance, the same database
    svc = cap.service
    receiver = Endpoint()
    srv: ThreadingHTTPServer | None = None
    try:
        # resent while the receiver is still down: fresh attempts fail, the deliveries stay pending
        rows = await until(lambda r: "after a restart: ConnectError" in r[(ids[0], "national")][1])
        assert rows[(ids[0], "national")][0] == rows[(ids[1], "national")][0] == "pending"
        for i in ids:
            status, detail = rows[(i, "retired")]
            assert status == "failed" and "'retired' is no longer configured" in detail, detail
        assert receiver.received == []

        srv = ThreadingHTTPServer(("127.0.0.1", port), _handler(receiver))
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        rows = await until(lambda r: all(r[(i, "national")][0] == "delivered" for i in ids))
        await svc.drain()
        await asyncio.sleep(0.5)  # a duplicate would have time to arrive
        assert [msg_type(body) for _, _, body in receiver.received] == ["Alert", "Update"]  # once each, in order
        assert [body for _, _, body in receiver.received] == [await svc.xml(i) for i in ids]
        assert all(rows[(i, "national")][1].startswith("HTTP 200") for i in ids), rows
    finally:
        await cap.stop()
        if srv is not None:
            srv.shutdown()
            srv.server_close()
