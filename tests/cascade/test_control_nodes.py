"""The cascade control channel between three real nodes on 127.0.0.1: city ← Luoding ← Luoding's
township MCU, each with its own CoreServices and database, its `cascade_control` capability
(websocket server / reconnecting client) and a running conference. The city's chair console API
sees and commands township sites two levels down."""
from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from commandcenter.node import Node
from config.settings import DEMO_DIR
from core.runtime import CoreServices
from mcu.capability import McuCapability, start_cascade_control
from mcu.cascade.control import ControlConnection, RemoteSite
from mcu.cascade.control_service import ControlService
from mcu.cascade.control_ws import ControlSession
from mcu.conferences import ConferenceService, RunningConference
from mcu.legs.webrtc import WebRtcLegs, webrtc_config
from mcu.room import RoomSettings
from tests.conftest import free_port, make_settings, with_database
from web_console.app import create_app

TOKEN = "cascade-test-token-0123456789abcdef"
CONF = "80000077"
OTHER = "80000078"


@dataclass
class FailoverProbe:
    """Records `control_state` calls as the `cascade` capability (the failover, built by the
    cascade-link branch) receives them."""

    calls: list[tuple[str, bool]] = field(default_factory=list)

    def control_state(self, node: str, up: bool) -> None:
        self.calls.append((node, up))

    async def stop(self) -> None:
        return None


@dataclass
class NodeUnderTest:
    name: str
    node: Node
    conferences: ConferenceService
    control: ControlService | None = None

    @property
    def core(self) -> CoreServices:
        return self.node.core

    @property
    def conf(self) -> RunningConference:
        conf = self.conferences.running(CONF)
        assert conf is not None
        return conf

    async def start_control(self) -> ControlService:
        started = await start_cascade_control(self.core, self.conferences, failover=self.node.cascade)
        assert started is not None
        started.reconnect_interval = 0.2  # the test should not wait the production 2 s
        self.control = started
        self.node.cascade_control = started
        return started

    async def stop_control(self) -> None:
        assert self.control is not None
        self.node.cascade_control = None
        await self.control.stop()
        self.control = None


def plan_with_nodes(tmp_path: Path, nodes_toml: str) -> Path:
    """The demo site plan (no standing conferences) with these ``[[nodes]]``, written to ``tmp_path``."""
    text = (DEMO_DIR / "yunfu.toml").read_text(encoding="utf-8").replace("standing = true", "standing = false")
    (tmp_path / "yunfu_counties.geojson").write_bytes((DEMO_DIR / "yunfu_counties.geojson").read_bytes())
    path = tmp_path / "plan.toml"
    path.write_text(text + nodes_toml, encoding="utf-8")
    return path


def write_plan(tmp_path: Path, ports: dict[str, int]) -> Path:
    return plan_with_nodes(tmp_path, f'''
[[nodes]]
name = "city"
area = "445300"
sip = "127.0.0.1:15060"
control = "127.0.0.1:{ports["city"]}"

[[nodes]]
name = "luoding"
parent = "city"
area = "445381"
sip = "127.0.0.1:15061"
control = "127.0.0.1:{ports["luoding"]}"

[[nodes]]
name = "luoding-t1"
parent = "luoding"
area = "445381-05"
sip = "127.0.0.1:15062"
''')


# node -> (conference sites from the plan, participants that join: (id, name, protocol))
LAYOUT: dict[str, tuple[list[str], list[tuple[str, str, str]]]] = {
    "city": (["city-main"], [("city-main", "云浮市主会场", "webrtc"), ("cascade-luoding", "罗定市（级联）", "cascade")]),
    "luoding": (["luoding-room"], [("luoding-room", "罗定市会议室", "sip"), ("cascade-city", "云浮市（级联）", "cascade"),
                                   ("cascade-luoding-t1", "罗定镇级（级联）", "cascade")]),
    # 445321-03-room is Xinxing's (hosted by the city): the township MCU must not announce it
    "luoding-t1": (["445381-05-room", "445321-03-room"],
                   [("445381-05-room", "罗定某镇会议室", "sip"), ("t1-extra", "素龙街道", "webrtc"),
                    ("t1-gone", "已离会会场", "webrtc"), ("cascade-luoding", "罗定市（级联）", "cascade")]),
}


async def create_databases(pg_url: str, names: list[str], prefix: str) -> dict[str, str]:
    """One fresh database per node name."""
    dbs = {n: prefix + uuid.uuid4().hex[:12] for n in names}
    admin = await asyncpg.connect(pg_url)
    try:
        for db in dbs.values():
            await admin.execute(f'CREATE DATABASE "{db}"')
    finally:
        await admin.close()
    return dbs


async def start_node(name: str, db_url: str, tmp_path: Path, plan: Path, cascade: dict[str, Any],
                     title: str, layout: tuple[list[str], list[tuple[str, str, str]]] | None = None,
                     ) -> tuple[NodeUnderTest, RunningConference]:
    """A node's core services and conference service, with CONF running and the layout's sites
    joined (LAYOUT's for this node unless given: plan sites, then joins as (id, name, protocol))."""
    settings = make_settings(db_url, tmp_path / name, node_name=name, site_plan=plan, cascade=cascade)
    core = await CoreServices.start(settings, seed=False)
    service = ConferenceService(core, RoomSettings(width=160, height=90, fps=2))
    await service.start()
    node = NodeUnderTest(name, Node(core, mcu=McuCapability(service, WebRtcLegs(webrtc_config(core)))), service)
    sites, joins = layout if layout is not None else LAYOUT[name]
    await service.create(name=title, actor="test", sites=sites, conference_id=CONF)
    conf = await service.start_conference(CONF, "test")
    for pid, label, protocol in joins:
        await conf.join(pid, label, protocol, chair=pid == "city-main")
    return node, conf


@pytest.fixture
async def nodes(pg_url: str, tmp_path: Path) -> AsyncIterator[dict[str, NodeUnderTest]]:
    names = list(LAYOUT)
    dbs = await create_databases(pg_url, names, "c_")
    plan = write_plan(tmp_path, {n: free_port() for n in names})
    started: dict[str, NodeUnderTest] = {}
    try:
        for name in names:
            started[name], conf = await start_node(name, with_database(pg_url, dbs[name]), tmp_path, plan,
                                                   {"token": TOKEN}, "级联测试会议")
            service = started[name].conferences
            if name == "luoding-t1":
                await conf.leave("t1-gone")
            if name == "luoding":  # a second conference on the same channel, not run at the city
                await service.create(name="罗定另一会议", actor="test", conference_id=OTHER)
                other = await service.start_conference(OTHER, "test")
                await other.join("luoding-2", "罗定第二会场", "webrtc")
        started["city"].node.cascade = FailoverProbe()  # type: ignore[assignment]
        for name in names:
            await started[name].start_control()
        yield started
    finally:
        await stop_nodes(started, dbs, pg_url)


async def stop_nodes(started: dict[str, NodeUnderTest], dbs: dict[str, str], pg_url: str) -> None:
    """Stop the nodes (newest first) and drop their databases."""
    for node in reversed(list(started.values())):
        if node.control is not None:
            await node.stop_control()
        await node.node.stop()
    admin = await asyncpg.connect(pg_url)
    try:
        for db in dbs.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    finally:
        await admin.close()


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while True:  # state arriving over the channel has no event of its own to await here
            if check():
                return
            await asyncio.sleep(0.02)


def remote(node: NodeUnderTest) -> dict[str, dict[str, Any]]:
    return {s["site_id"]: s for s in node.conf.remote_site_list()}


@pytest.fixture
async def chair(nodes: dict[str, NodeUnderTest]) -> AsyncIterator[httpx.AsyncClient]:
    """The city's console API as a chair (bearer token), in process."""
    core = nodes["city"].core
    await core.identity.create_user("chair-x", "Cascade-Chair-Pass-2026", "chair")
    token = await core.identity.create_api_token("chair-x", "test")
    transport = httpx.ASGITransport(app=create_app(nodes["city"].node))
    async with httpx.AsyncClient(transport=transport, base_url="http://city",
                                 headers={"Authorization": f"Bearer {token}"}, timeout=20) as client:
        yield client


async def test_city_sees_and_commands_township_sites_two_levels_down(
        nodes: dict[str, NodeUnderTest], chair: httpx.AsyncClient) -> None:
    city, county, town = nodes["city"], nodes["luoding"], nodes["luoding-t1"]
    await eventually(lambda: {"luoding-room", "445381-05-room", "t1-extra", "t1-gone"} <= set(remote(city)))
    state = (await chair.get(f"/api/conferences/{CONF}")).json()
    sites = {s["site_id"]: s for s in state["sites"]}
    assert sites["city-main"].get("remote") is None and sites["cascade-luoding"]["status"] == "joined"
    assert sites["luoding-room"]["via"] == ["luoding"] and sites["luoding-room"]["status"] == "joined"
    assert sites["445381-05-room"]["via"] == ["luoding", "luoding-t1"]
    assert sites["445381-05-room"]["via_names"] == ["罗定市", "罗镜镇"]
    assert sites["445381-05-room"]["link"] == "cascade-luoding" and sites["445381-05-room"]["status"] == "joined"
    assert sites["t1-gone"]["status"] == "left" and "445321-03-room" not in sites
    assert not any(s.startswith("cascade-") for s in sites if sites[s].get("remote"))  # links are not re-announced
    assert "luoding-2" not in sites and "luoding-2" in {s["site_id"] for s in city.control.sites(OTHER)}  # type: ignore[union-attr]

    # status changes at the township node reach the city
    town.conf.room.mute("t1-extra", True)
    await eventually(lambda: remote(city)["t1-extra"]["muted"] is True)

    # roll call of a township two levels down, from the city console
    response = await chair.post(f"/api/conferences/{CONF}/ops", json={"op": "roll_call", "site": "445381-05-room"})
    assert response.status_code == 200, response.text
    assert town.conf.room.broadcast_id == "445381-05-room"        # executed on the township MCU's room
    assert county.conf.room.broadcast_id == "cascade-luoding-t1"  # the county shows its township link
    assert city.conf.room.broadcast_id == "cascade-luoding"       # and the city shows the county's link
    assert response.json()["broadcast"] == "cascade-luoding"
    # with mute_others the city mutes its own other sites (the chair excepted), as for a local roll call
    await city.conf.join("city-2", "市应急指挥中心", "webrtc")
    response = await chair.post(f"/api/conferences/{CONF}/ops", json={"op": "roll_call", "site": "445381-05-room",
                                                                      "mute_others": True})
    assert response.status_code == 200 and city.conf.room.participants["city-2"].muted is True
    assert city.conf.room.participants["cascade-luoding"].muted is False
    assert city.conf.room.participants["city-main"].muted is False

    # unmute through two levels; the OK comes back and the status follows
    response = await chair.post(f"/api/conferences/{CONF}/ops", json={"op": "mute", "site": "t1-extra",
                                                                      "enabled": False})
    assert response.status_code == 200, response.text
    assert town.conf.room.participants["t1-extra"].muted is False
    await eventually(lambda: remote(city)["t1-extra"]["muted"] is False)
    # a county site: executed at the county, one level down
    response = await chair.post(f"/api/conferences/{CONF}/ops", json={"op": "mute", "site": "luoding-room"})
    assert response.status_code == 200 and county.conf.room.participants["luoding-room"].muted is True
    response = await chair.post(f"/api/conferences/{CONF}/ops", json={"op": "banner", "site": "t1-extra",
                                                                      "text": "请各乡镇准备汇报"})
    assert response.status_code == 200 and town.conf.room.banner is not None
    assert town.conf.room.banner.text == "请各乡镇准备汇报"
    response = await chair.post(f"/api/conferences/{CONF}/ops", json={"op": "select_view", "site": "t1-extra",
                                                                      "target": "445381-05-room"})
    assert response.status_code == 200 and town.conf.room.selected["t1-extra"] == "445381-05-room"

    # refused by the township node: the site has left there; nothing changes anywhere
    response = await chair.post(f"/api/conferences/{CONF}/ops", json={"op": "roll_call", "site": "t1-gone"})
    assert response.status_code == 409 and "会场不存在" in response.json()["detail"]
    assert town.conf.room.broadcast_id == "445381-05-room" and city.conf.room.broadcast_id == "cascade-luoding"
    # operations that have no remote form are refused at the city, clearly
    response = await chair.post(f"/api/conferences/{CONF}/ops", json={"op": "deaf", "site": "t1-extra"})
    assert response.status_code == 400 and "远端会场不支持该操作" in response.json()["detail"]
    response = await chair.post(f"/api/conferences/{CONF}/ops", json={"op": "banner", "site": "t1-extra",
                                                                      "text": "x" * 65})
    assert response.status_code == 400
    rows = await city.core.db.fetch("SELECT action, outcome, detail FROM audit_log WHERE action LIKE 'conference.%' "
                                    "ORDER BY id")
    outcomes = [(r["action"], r["outcome"], json.loads(r["detail"]).get("code") if isinstance(r["detail"], str)
                 else r["detail"].get("code")) for r in rows]
    assert ("conference.roll_call", "ok", None) in outcomes
    assert ("conference.roll_call", "failed", "refused") in outcomes

    paths = (await chair.get(f"/api/conferences/{CONF}/cascade")).json()
    assert paths["channels"] == {"luoding": True} and paths["available"] is False
    assert paths["labels"]["luoding"] == "罗定市" and paths["labels"]["city"] == "云浮市"


async def test_channel_loss_shows_unknown_and_reconnection_restores(
        nodes: dict[str, NodeUnderTest], chair: httpx.AsyncClient) -> None:
    city, county, town = nodes["city"], nodes["luoding"], nodes["luoding-t1"]
    probe = city.node.cascade
    assert isinstance(probe, FailoverProbe)
    await eventually(lambda: remote(city).get("445381-05-room", {}).get("status") == "joined")

    # the township MCU's channel to the county ends: only what is behind it becomes unknown
    await town.stop_control()
    await eventually(lambda: remote(city)["445381-05-room"]["status"] == remote(city)["t1-extra"]["status"] == "unknown")
    assert remote(city)["luoding-room"]["status"] == "joined"
    response = await chair.post(f"/api/conferences/{CONF}/ops", json={"op": "roll_call", "site": "445381-05-room"})
    assert response.status_code == 503 and "控制通道中断" in response.json()["detail"]
    assert town.conf.room.broadcast_id is None and city.conf.room.broadcast_id is None
    await town.start_control()
    await eventually(lambda: remote(city)["445381-05-room"]["status"] == "joined")

    # the county's channel to the city ends: every site behind the county is unknown, the county's
    # link stays in the city's room (picture and sound do not depend on the control channel)
    await county.stop_control()
    await eventually(lambda: all(s["status"] == "unknown" for s in remote(city).values()))
    assert city.conf.room.participants["cascade-luoding"] is not None
    state = (await chair.get(f"/api/conferences/{CONF}")).json()
    assert {s["site_id"]: s["status"] for s in state["sites"]}["cascade-luoding"] == "joined"
    response = await chair.post(f"/api/conferences/{CONF}/ops", json={"op": "mute", "site": "luoding-room"})
    assert response.status_code == 503 and "控制通道中断" in response.json()["detail"]
    assert (await chair.get(f"/api/conferences/{CONF}/cascade")).json()["channels"] == {"luoding": False}
    await county.start_control()
    await eventually(lambda: all(s["status"] in ("joined", "left") for s in remote(city).values())
                     and "445381-05-room" in remote(city), within=8)
    response = await chair.post(f"/api/conferences/{CONF}/ops", json={"op": "roll_call", "site": "445381-05-room"})
    assert response.status_code == 200, response.text
    assert town.conf.room.broadcast_id == "445381-05-room" and city.conf.room.broadcast_id == "cascade-luoding"
    assert probe.calls[:2] == [("luoding", True), ("luoding", False)] and probe.calls[-1] == ("luoding", True)
    actions = [r["action"] for r in await city.core.db.fetch(
        "SELECT action FROM audit_log WHERE action LIKE 'cascade.control.%' ORDER BY id")]
    assert actions[:3] == ["cascade.control.connect", "cascade.control.lost", "cascade.control.connect"]


async def _rogue(port: int, name: str, token: bytes) -> int | None:
    """Connect to a control port as `name` with `token`; the close code the node answers with."""
    async with connect(f"ws://127.0.0.1:{port}") as ws:
        session = ControlSession(ws, ControlConnection(name, token), lambda event: None, auth_timeout=3)
        await session.run()
        try:
            await asyncio.wait_for(ws.recv(), 2)
        except (ConnectionClosed, TimeoutError):
            pass
        return ws.close_code


async def test_wrong_token_and_unknown_node_are_refused_and_audited(nodes: dict[str, NodeUnderTest]) -> None:
    city = nodes["city"]
    port = int(city.core.plan.node("city").control.rpartition(":")[2])  # type: ignore[union-attr]
    assert await _rogue(port, "luoding", b"not-the-cascade-token-at-all!!") == 4401
    assert await _rogue(port, "yunan", TOKEN.encode()) == 4401  # right token, not a child of the city
    # (the node audits while the refused peer may already be gone: the rows' order is not the attempts')
    rows: list[Any] = []
    async with asyncio.timeout(5):
        while len(rows) < 2:
            rows = await city.core.db.fetch("SELECT actor, outcome FROM audit_log WHERE action = 'cascade.control.auth'")
            await asyncio.sleep(0.05)
    assert sorted((r["actor"], r["outcome"]) for r in rows) == [("node:?", "denied"), ("node:luoding", "denied")]
    # the real county's channel was not disturbed
    assert city.control is not None and city.control.channels() == {"luoding": True}


async def test_a_node_without_a_token_does_not_start(nodes: dict[str, NodeUnderTest]) -> None:
    county = nodes["luoding"]
    county.core.settings.cascade.token = None
    with pytest.raises(ValueError, match="CC_CASCADE__TOKEN"):
        await start_cascade_control(county.core, county.conferences)


async def test_a_child_that_never_answers_gives_a_timeout(nodes: dict[str, NodeUnderTest],
                                                          chair: httpx.AsyncClient) -> None:
    """A county that authenticates and announces a site but never answers commands: the city's
    console gets 504 with a clear reason after the command timeout, and nothing is left waiting."""
    city, county = nodes["city"], nodes["luoding"]
    await county.stop_control()
    assert city.control is not None
    await eventually(lambda: city.control.channels() == {"luoding": False})  # type: ignore[union-attr]
    city.control.command_timeout = 0.5
    port = int(city.core.plan.node("city").control.rpartition(":")[2])  # type: ignore[union-attr]
    async with connect(f"ws://127.0.0.1:{port}") as ws:
        conn = ControlConnection("luoding", TOKEN.encode(), expected_peer="city")
        session = ControlSession(ws, conn, lambda event: None)
        running = asyncio.create_task(session.run())
        await asyncio.wait_for(session.authenticated.wait(), 5)
        conn.announce_sites([RemoteSite("silent-room", "不应答的会场")], CONF)
        await session.flush()
        await eventually(lambda: "silent-room" in remote(city))
        started = asyncio.get_running_loop().time()
        response = await chair.post(f"/api/conferences/{CONF}/ops", json={"op": "roll_call", "site": "silent-room"})
        elapsed = asyncio.get_running_loop().time() - started
        assert response.status_code == 504 and "未在规定时间内答复" in response.json()["detail"]
        assert 0.4 < elapsed < 5
        assert city.control._waiting == {}
        await ws.close()
        await running
    await eventually(lambda: remote(city)["silent-room"]["status"] == "unknown")
