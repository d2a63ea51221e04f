"""The flood scenario, end to end (issue 20), in one running system: `commandcenter up` (every
capability of the node: MCU with SIP, dispatch, SMS, warnings, monitoring) on a copy of the demo site
plan, with its managed mosquitto, Kannel + fakesmsc as the operator, two township meeting rooms that
are real SIP room systems (baresip), and headless Chromium looking at the dispatch map.

1. a gauge publishes rising levels of 罗定江 at 罗城 over MQTT past its 警戒水位 (12.0 m): the ingest
   stores and evaluates them and raises the alarm;
2. the alarm is in the API the map reads (gauge state, alarm list), and the dispatch map in Chromium
   turns the gauge's marker to "warning" and lists the alarm with its incident;
3. the demo configures the warning level to open a 三防 incident: it is there, at the gauge;
4. a dispatcher drafts a warning for 罗定市 and 连滩镇 downstream and submits it; until the leader on
   duty approves it nothing is sent (no CAP message, no delivery, no SMS at the operator, nothing in
   the feed, no banner, no call); the leader approves;
5. 连滩镇's room, in a running conference, decodes the banner in the MCU's video; 罗镜镇's room, idle,
   is called into the warning broadcast conference and hears the spoken warning (speech energy in
   the audio it decodes, spread over many frequencies: not a tone);
6. fakesmsc receives the UCS-2 parts, which reassemble to the warning's text for every recipient
   (the area's SMS groups and the people on duty), and Kannel's delivery reports turn every SMS
   delivery to "delivered";
7. the warning is updated, then cancelled (each approved by the leader): the update is shown, spoken
   and sent by SMS again; on the cancel the banner comes down and the SMS say the warning is lifted;
   the CAP Atom feed lists Cancel, Update, Alert (newest first), the Update referencing the Alert and
   the Cancel both.

Everything is driven as the users would: MQTT as a gauge, HTTP as the chair, dispatcher and leader.
Screenshots and the room's decoded frames go to test-artifacts/flood-e2e-*.
"""
from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiomqtt
import feedparser
import httpx
import pytest

from alerts.feed import CAP
from alerts.sms_channel import PREFIX
from config.site_plan import load_site_plan
from sms.kannel import FakeSmsc
from tests.alerts.room_peers import (
    RecordingBaresip,
    SnapshotBaresip,
    banner_at_peer,
    loud_seconds,
    tone_share,
)
from tests.conftest import (
    RunningServer,
    SeededTemplate,
    create_database,
    free_port,
    private_tmp_dir,
    start_server,
    stop_server,
)
from tests.sms.conftest import received_parts, require_kannel
from tests.sms.test_warning_sms import reassembled

pytestmark = [pytest.mark.slow, pytest.mark.browser]

T = TypeVar("T")
DEMO_PLAN = Path(__file__).resolve().parents[2] / "config" / "demo"
RIVER, RIVER_NAME, WARNING_LEVEL = "gauge-luoding-river", "罗定江罗城水位站", 12.0  # the demo plan's 警戒水位
IDLE_ROOM = "445381-05-room"  # 罗镜镇, in 罗定市: idle, called into the broadcast conference
BUSY_ROOM = "445322-12-room"  # 连滩镇 (郁南县, downstream): in a conference, shows the banner
COUNTY_ROOM = "luoding-room"  # 罗定市's room, a synthetic demo site of the standing demo conference
AREAS = [{"desc": "罗定市", "adcodes": ["445381"]}, {"desc": "连滩镇", "adcodes": ["445322-12"]}]
HEADLINE = "罗定江洪水橙色预警"
HEADLINE_UPDATE = "罗定江洪水红色预警"
INSTRUCTION = ("罗定江罗城站水位已超警戒水位并继续上涨，请沿江低洼地带、河滩和山洪危险区人员立即转移到安全地带，"
               "停止涉水作业和户外活动，车辆不要驶入积水路段，各镇村防汛责任人立即到岗。")  # several UCS-2 parts
# the SMS groups of the demo plan tied to 罗定市 and its townships (tests/sms/test_area_groups.py)
AREA_NUMBERS = {"13800005001", "13800005101", "13800005102", "13800005201"}
MARKER = '[data-testid=gauge-marker][data-gauge="{}"]'
CALL_CLOSED = re.compile(r"Call with \S+ terminated")  # baresip, when the MCU hangs up
FINAL = {"banner_shown", "called_answered", "cleared", "delivered", "failed", "logged"}


async def poll(check: Callable[[], Awaitable[T | None]], within: float, what: str, every: float = 0.3) -> T:
    """The first truthy value of ``check()``; AssertionError naming ``what`` after ``within`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(every)


@dataclass
class Flood:
    """The running system and the two township room systems."""

    server: RunningServer
    var: Path
    mqtt_port: int
    busy: SnapshotBaresip
    idle: RecordingBaresip

    def sms_lines(self) -> list[str]:
        """What the server's fakesmsc (the operator) has received so far."""
        return FakeSmsc(Path("fakesmsc"), 0, self.var / "sms" / "fakesmsc.log").received()

    async def user(self, username: str) -> httpx.AsyncClient:
        """An HTTP session of ``username``, signed in through the login form (CSRF header set)."""
        client = httpx.AsyncClient(base_url=self.server.url, timeout=20.0)
        page = await client.get("/login")
        token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
        assert token, "the login page has no CSRF token"
        r = await client.post("/login", data={"username": username, "password": self.server.passwords[username],
                                               "login_csrf": token.group(1), "next": "/"})
        assert r.status_code == 303, r.text
        client.headers["X-CSRF-Token"] = (await client.get("/api/me")).json()["csrf_token"]
        return client


@pytest.fixture
async def flood(pg_url: str, seeded_template: SeededTemplate, tmp_path: Path) -> AsyncIterator[Flood]:
    require_kannel()
    for tool in ("baresip", "espeak-ng", "mosquitto"):
        if shutil.which(tool, path="/usr/local/bin:/usr/bin:/usr/sbin:/bin") is None:
            pytest.fail(f"{tool} is missing (Makefile TEST_DEBS)")
    busy = SnapshotBaresip(tmp_path / "busy", tone_hz=880, auto_answer=True)
    idle = RecordingBaresip(tmp_path / "idle", tone_hz=440, auto_answer=True)
    # the demo plan, its two SIP township rooms pointing at the two baresips
    plan_dir = tmp_path / "plan"
    shutil.copytree(DEMO_PLAN, plan_dir)
    text = (plan_dir / "yunfu.toml").read_text()
    for room, peer in ((IDLE_ROOM, idle), (BUSY_ROOM, busy)):
        old = f'address = "sip:{room}@127.0.0.1"'
        assert old in text
        text = text.replace(old, f'address = "sip:baresip@127.0.0.1:{peer.sip_port}"')
    (plan_dir / "yunfu.toml").write_text(text)
    load_site_plan(plan_dir / "yunfu.toml")  # still a valid plan
    mqtt_port, sip_port = free_port(), free_port()
    env = {"CC_SITE_PLAN": str(plan_dir / "yunfu.toml"),
           "CC_MONITORING__BROKER": "managed", "CC_MONITORING__MQTT_PORT": str(mqtt_port),
           "CC_SMS__ENABLED": "true", "CC_SMS__THROUGHPUT": "50",
           "CC_SIP__UDP_PORT": str(sip_port), "CC_SIP__TCP_PORT": str(sip_port), "CC_SIP__TLS_PORT": "0",
           "CC_SIP__MAX_VIDEO_SIZE": "640x360", "CC_H323__ENABLED": "false"}
    db_url = await create_database(pg_url, "e2e_" + uuid.uuid4().hex[:12], template=seeded_template.name)
    var = private_tmp_dir("cc-flood-")
    await busy.start()
    await idle.start()
    server: RunningServer | None = None
    try:
        server = await asyncio.to_thread(start_server, db_url, var, env, 90.0)
        server.passwords.update({a.username: a.password for a in seeded_template.accounts})
        await busy.wait_log("baresip is ready")
        await idle.wait_log("baresip is ready")
        yield Flood(server, var, mqtt_port, busy, idle)
    finally:
        if server is not None:
            await asyncio.to_thread(stop_server, server)
        await busy.stop()
        await idle.stop()
        shutil.rmtree(var, ignore_errors=True)


def look_at_the_map(server: RunningServer, artifacts_dir: Path, incident_id: str) -> None:
    """The dispatcher's map in headless Chromium: the river's marker is in the warning state and the
    alarm list shows the alarm, its threshold and its incident (sync Playwright: run in a thread)."""
    from playwright.sync_api import expect

    from tests.browser import chromium, open_page

    with chromium() as browser:
        page, errors = open_page(browser, server, "dispatcher", "/dispatch", viewport={"width": 1600, "height": 1000})
        marker = page.locator(MARKER.format(RIVER))
        expect(marker).to_have_attribute("data-state", "warning", timeout=30_000)
        alarm = page.locator("[data-testid=monitoring-alarm]").filter(has_text=RIVER_NAME).first
        expect(alarm).to_contain_text("警戒水位", timeout=15_000)
        expect(alarm.locator("[data-testid=alarm-incident]")).to_contain_text(incident_id, timeout=15_000)
        page.screenshot(path=str(artifacts_dir / "flood-e2e-dispatch-map.png"), full_page=True)  # with the alarm list
        assert not errors, errors


def warning_body(headline: str, severity: str) -> dict[str, Any]:
    return {"event": "洪水", "headline": headline, "description": "受持续强降雨影响，罗定江罗城站水位超过警戒水位并继续上涨。",
            "instruction": INSTRUCTION, "severity": severity, "urgency": "Immediate", "certainty": "Observed",
            "category": "Met", "expires": (datetime.now(UTC) + timedelta(hours=6)).isoformat(), "areas": AREAS}


def sms_text(msg_type: str, headline: str) -> str:
    """What a phone shows for one CAP message of this warning (alerts/sms_channel.py's rule)."""
    return PREFIX[msg_type] + headline + "（罗定市、连滩镇）" + INSTRUCTION


async def test_the_flood_scenario_end_to_end(flood: Flood, artifacts_dir: Path) -> None:
    t0 = time.monotonic()
    marks: dict[str, float] = {}
    server, busy, idle = flood.server, flood.busy, flood.idle
    chair, dispatcher, leader = await flood.user("chair"), await flood.user("dispatcher"), await flood.user("leader")
    try:
        # -- 连滩镇's room is in a conference (the chair's flood consultation), decoding its video
        r = await chair.post("/api/conferences", json={"name": "连滩镇防汛会商", "sites": [BUSY_ROOM],
                                                       "start_now": True, "sms_notice": False})
        assert r.status_code == 201, r.text
        conf_id = r.json()["id"]
        r = await chair.post(f"/api/conferences/{conf_id}/sites/{BUSY_ROOM}/invite")
        assert r.status_code == 200, r.text

        async def busy_joined() -> bool:
            sites = (await chair.get(f"/api/conferences/{conf_id}")).json()["sites"]
            return any(s["site_id"] == BUSY_ROOM and s["status"] == "joined" for s in sites)

        await poll(busy_joined, 30, "连滩镇's room to join the consultation")
        await busy.wait_log("video: receiving with resolution", 30)
        await banner_at_peer(busy, shown=False, keep=artifacts_dir / "flood-e2e-room-before.png")
        marks["room in conference"] = time.monotonic() - t0

        # -- 1. the gauge publishes rising levels over MQTT (as a field gauge would)
        async def gauge() -> dict[str, Any]:
            r = await dispatcher.get("/api/monitoring/gauges")
            assert r.status_code == 200, r.text
            assert r.json()["mqtt"]["connected"], r.json()["mqtt"]
            g: dict[str, Any] = next(g for g in r.json()["gauges"] if g["id"] == RIVER)
            return g

        async def river_alarms() -> list[dict[str, Any]]:
            r = await dispatcher.get("/api/monitoring/alarms")
            assert r.status_code == 200, r.text
            return [a for a in r.json()["alarms"] if a["gauge_id"] == RIVER and a["key"] == "warning"]

        await gauge()  # the ingest is connected to mosquitto
        now = time.time()
        rising = [11.2, 11.6, 11.9, 12.3, 12.6]
        async with aiomqtt.Client("127.0.0.1", flood.mqtt_port, identifier="gauge-luoding-river-rtu") as mqtt:
            for i, level in enumerate(rising[:3]):
                await mqtt.publish(f"cc/gauges/{RIVER}/reading", json.dumps({"value": level, "at": now - 30 + i}), qos=1)
            await poll(lambda: _truthy(gauge(), lambda g: g["state"] == "normal" and g["value"] == 11.9), 20,
                       "the readings below 警戒水位 to be stored")
            assert await river_alarms() == []  # below the warning level: no alarm
            for i, level in enumerate(rising[3:]):
                await mqtt.publish(f"cc/gauges/{RIVER}/reading", json.dumps({"value": level, "at": now - 20 + i}), qos=1)

            # -- 2./3. the alarm, on the API the map reads, with the incident the demo configures
            alarms = await poll(lambda: _truthy(river_alarms(), lambda a: bool(a and a[0]["incident_id"])), 30,
                                "the 警戒水位 alarm and its incident")
        marks["alarm"] = time.monotonic() - t0
        assert len(alarms) == 1 and alarms[0]["value"] == 12.3 and alarms[0]["kind"] == "threshold", alarms
        assert alarms[0]["cleared_at"] is None and alarms[0]["response_error"] in (None, ""), alarms
        g = await gauge()
        assert g["state"] == "warning" and g["value"] == 12.6, g
        incident_id = alarms[0]["incident_id"]
        r = await dispatcher.get(f"/api/incidents/{incident_id}")
        assert r.status_code == 200, r.text
        incident = r.json()
        assert incident["category"] == "flood_control" and incident["location_source"] == "gauge", incident
        assert (incident["lon"], incident["lat"]) == pytest.approx(tuple(g["position"])), (incident, g["position"])
        assert RIVER_NAME in incident["description"] and "警戒水位" in incident["description"], incident

        await asyncio.to_thread(look_at_the_map, server, artifacts_dir, incident_id)
        marks["map in Chromium"] = time.monotonic() - t0

        # -- 4. the dispatcher drafts and submits the warning; nothing goes out before approval
        r = await dispatcher.post("/api/warnings", json=warning_body(HEADLINE, "Severe"))
        assert r.status_code == 201, r.text
        wid = r.json()["id"]
        assert (await dispatcher.post(f"/api/warnings/{wid}/submit")).status_code == 200
        assert (await dispatcher.post(f"/api/warnings/{wid}/approve")).status_code == 403  # the leader's rule
        await asyncio.sleep(2)  # would anything leak out, it would have by now
        detail = (await dispatcher.get(f"/api/warnings/{wid}")).json()
        assert detail["state"] == "pending" and detail["cap_messages"] == [] and detail["deliveries"] == [], detail
        assert not any(HEADLINE in p[3].decode("utf-16-be", "replace") for p in received_parts(flood.sms_lines()))
        feed = await dispatcher.get("/api/warnings/feed.atom")
        assert feed.status_code == 200 and wid not in feed.text
        assert wid not in [w["id"] for w in (await leader.get("/api/warnings/active")).json()]
        assert not any(p.name.startswith("dump-") for p in idle.home.iterdir()), "罗镜镇's room was called"
        assert not any(re.search(r"Call with|[Ii]ncoming call", line) for line in idle.log), idle.log[-20:]
        await banner_at_peer(busy, shown=False, keep=artifacts_dir / "flood-e2e-room-pending.png", within=2)

        r = await leader.post(f"/api/warnings/{wid}/approve")
        assert r.status_code == 200 and r.json()["state"] == "active", r.text
        approved = time.monotonic()

        # -- 5. the busy room sees the banner; the idle room is called and hears it
        await banner_at_peer(busy, shown=True, keep=artifacts_dir / "flood-e2e-room-banner.png", within=20)
        marks["banner seen by the room"] = time.monotonic() - t0
        alert = await settled(dispatcher, wid, "Alert", within=60)
        rooms = {d["recipient"]: d for d in alert if d["channel"] == "rooms"}
        assert rooms[BUSY_ROOM]["status"] == "banner_shown", rooms
        assert rooms[IDLE_ROOM]["status"] == "called_answered", rooms
        assert rooms[COUNTY_ROOM]["status"] == "banner_shown", rooms  # in the standing demo conference
        assert set(rooms) == {BUSY_ROOM, IDLE_ROOM, COUNTY_ROOM}, rooms
        heard = await hears_speech(idle, calls=1)

        # -- 6. the SMS: every recipient's parts at the operator reassemble to the text; all delivered
        numbers = check_sms(flood, alert, sms_text("Alert", HEADLINE))
        marks["alert delivered"] = time.monotonic() - t0
        print(f"approval → SMS delivered and rooms done: {time.monotonic() - approved:.1f} s; "
              f"{len(numbers)} SMS recipients, {heard:.1f} s of speech heard")

        # -- 7. Update, approved: the banner stays, the SMS say it is an update
        r = await dispatcher.post(f"/api/warnings/{wid}/update", json=warning_body(HEADLINE_UPDATE, "Extreme"))
        assert r.status_code == 200, r.text
        assert len((await dispatcher.get(f"/api/warnings/{wid}")).json()["cap_messages"]) == 1  # not sent unapproved
        assert (await leader.post(f"/api/warnings/{wid}/approve")).json()["state"] == "active"
        update = await settled(dispatcher, wid, "Update", within=60)
        statuses = {d["recipient"]: d["status"] for d in update if d["channel"] == "rooms"}
        assert statuses == {BUSY_ROOM: "banner_shown", COUNTY_ROOM: "banner_shown", IDLE_ROOM: "called_answered"}, \
            statuses
        assert check_sms(flood, update, sms_text("Update", HEADLINE_UPDATE)) == numbers
        await hears_speech(idle, calls=2)  # called again for the update, and hears it
        await banner_at_peer(busy, shown=True, keep=artifacts_dir / "flood-e2e-room-update.png")
        marks["update delivered"] = time.monotonic() - t0

        # -- Cancel, approved: the banner comes down, the SMS say the warning is lifted
        r = await dispatcher.post(f"/api/warnings/{wid}/cancel", json={"reason": "罗定江水位回落至警戒水位以下"})
        assert r.status_code == 200, r.text
        assert (await leader.post(f"/api/warnings/{wid}/approve")).json()["state"] == "cancelled"
        cancel = await settled(dispatcher, wid, "Cancel", within=60)
        statuses = {d["recipient"]: d["status"] for d in cancel if d["channel"] == "rooms"}
        assert statuses == {BUSY_ROOM: "cleared", COUNTY_ROOM: "cleared", IDLE_ROOM: "cleared"}, statuses
        assert check_sms(flood, cancel, PREFIX["Cancel"] + HEADLINE_UPDATE + "（罗定市、连滩镇）" + INSTRUCTION) == numbers
        await banner_at_peer(busy, shown=False, keep=artifacts_dir / "flood-e2e-room-after-cancel.png", within=20)
        assert wid not in [w["id"] for w in (await leader.get("/api/warnings/active")).json()]
        marks["cancel delivered"] = time.monotonic() - t0

        # -- the CAP feed: the three messages, newest first, references right
        msgs = (await dispatcher.get(f"/api/warnings/{wid}")).json()["cap_messages"]
        assert [m["msg_type"] for m in msgs] == ["Alert", "Update", "Cancel"]
        ids = [m["identifier"] for m in msgs]
        r = await dispatcher.get("/api/warnings/feed.atom")
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/atom+xml")
        parsed = feedparser.parse(r.text)
        assert parsed.bozo == 0, parsed.get("bozo_exception")
        mine = [e for e in parsed.entries if any(i in e.id for i in ids)]
        assert [e.id.rsplit(":", 1)[1] for e in mine] == list(reversed(ids))
        assert [e.tags[0].term for e in mine] == ["Cancel", "Update", "Alert"]
        assert HEADLINE_UPDATE in mine[0].title and HEADLINE in mine[2].title
        inlined = {a.findtext(f"{{{CAP}}}identifier"): a for a in ET.fromstring(r.content).iter(f"{{{CAP}}}alert")}
        assert set(ids) <= set(inlined)
        refs = [inlined[i].findtext(f"{{{CAP}}}references") or "" for i in ids]
        assert refs[0] == ""
        assert [x.split(",")[1] for x in refs[1].split(" ")] == ids[:1]
        assert [x.split(",")[1] for x in refs[2].split(" ")] == ids[:2]
        assert [inlined[i].findtext(f"{{{CAP}}}msgType") for i in ids] == ["Alert", "Update", "Cancel"]
        marks["total"] = time.monotonic() - t0
        print("flood scenario timeline (s):", {k: round(v, 1) for k, v in marks.items()})
    except BaseException:
        print("the server's last output lines:", *server.output[-60:], sep="\n")
        raise
    finally:
        for client in (chair, dispatcher, leader):
            await client.aclose()


async def hears_speech(idle: RecordingBaresip, calls: int) -> float:
    """Once the ``calls``-th broadcast call has been hung up by the MCU (its audio dump complete): the
    seconds of sound the room decoded in it, checked to be speech (not silence, not a tone)."""
    async def ended() -> bool:
        return sum(bool(CALL_CLOSED.search(line)) for line in idle.log) >= calls

    await poll(ended, 20, f"broadcast call {calls} to end")
    pcm, rate = idle.heard()
    heard = loud_seconds(pcm, rate)
    assert heard > 3.0, f"罗镜镇's room heard only {heard:.2f} s of sound"  # ~6.5 s: the warning spoken twice
    share = tone_share(pcm, rate)
    assert share < 0.2, f"what 罗镜镇's room heard is a tone ({share:.2f} of the power at one frequency), not speech"
    return heard


async def _truthy(value: Awaitable[T], test: Callable[[T], bool]) -> T | None:
    v = await value
    return v if test(v) else None


async def settled(client: httpx.AsyncClient, wid: str, msg_type: str, within: float) -> list[dict[str, Any]]:
    """The deliveries of the warning's ``msg_type`` message once every one is final (SMS delivered or
    failed, rooms shown/called/cleared or failed)."""
    async def check() -> list[dict[str, Any]] | None:
        detail = (await client.get(f"/api/warnings/{wid}")).json()
        ident = next((m["identifier"] for m in detail["cap_messages"] if m["msg_type"] == msg_type), None)
        rows = [d for d in detail["deliveries"] if d["identifier"] == ident]
        channels = {d["channel"] for d in rows}
        if ident is None or not {"rooms", "sms"} <= channels or any(d["status"] not in FINAL for d in rows):
            return None
        return rows
    return await poll(check, within, f"every delivery of the {msg_type} to settle", every=0.5)


def check_sms(flood: Flood, deliveries: list[dict[str, Any]], text: str) -> set[str]:
    """Every SMS recipient of one message was delivered, and its parts at fakesmsc reassemble to ``text``."""
    sms = {d["recipient"]: d for d in deliveries if d["channel"] == "sms"}
    assert {d["status"] for d in sms.values()} == {"delivered"}, sms
    assert AREA_NUMBERS <= set(sms), sms  # the area's groups, beside the people on duty
    assert len(sms) > len(AREA_NUMBERS), sms  # and the people on duty
    parts = received_parts(flood.sms_lines())
    for number in sms:
        mine = [p for p in parts if p[1] == number and p[2] is not None]
        texts = split_messages(mine)
        assert text in texts, (number, texts)
    return set(sms)


def split_messages(parts: list[tuple[str, str, bytes | None, bytes]]) -> list[str]:
    """One number's concatenated messages, reassembled (parts grouped by their UDH reference)."""
    from sms.text import parse_udh

    by_ref: dict[int, list[tuple[str, str, bytes | None, bytes]]] = {}
    for p in parts:
        assert p[2] is not None
        udh = parse_udh(p[2])
        assert udh is not None, p[2]
        by_ref.setdefault(udh[0], []).append(p)
    return [reassembled(group) for group in by_ref.values()]
