"""Split roles with real processes: a `--role web` node operates the rooms of a `--role mcu` node.

One embedded PostgreSQL; the MCU node serves no HTTP at all. The chair signs in on the web node;
chair operations, the room's state and WebRTC signalling reach the MCU node over node RPC; real
WebRTC peers (aiortc, Chromium) exchange media with the MCU node directly. Then a forged node
request is refused, and a killed MCU node gives a clear 503.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from bench.webrtc_client import ColourCamera, ToneMicrophone, WebRtcTestClient
from noderpc.transport import channel_of
from tests.conftest import private_tmp_dir, run_async
from tests.mcu.mcu_helpers import colour, identify, yuv_at
from tests.noderpc.roles import RoleProcess, mcu_and_web, role_env, start_role

DEMO = "80000001"


@pytest.fixture(scope="module")
def cluster(pg_url: str) -> Iterator[tuple[RoleProcess, RoleProcess, str]]:
    with mcu_and_web(pg_url, "split") as (mcu, web, db_url, work):
        yield mcu, web, db_url


@pytest.fixture(scope="module")
def chair(cluster: tuple[RoleProcess, RoleProcess, str]) -> Iterator[httpx.Client]:
    mcu, web, _ = cluster
    client = web.login("chair", mcu.passwords()["chair"])
    yield client
    client.close()


def until(predicate: Callable[[], bool], within: float = 20.0, step: float = 0.2) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(step)


def state(chair: httpx.Client) -> dict[str, Any]:
    response = chair.get(f"/api/conferences/{DEMO}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def ws_url(web: RoleProcess) -> str:
    return web.url.replace("http://", "ws://") + f"/ws/conference/{DEMO}"


def pane(frame: Any, x: float) -> int | None:
    return identify(yuv_at(frame, int(x * frame.width), frame.height // 2, radius=6), tolerance=20)


def test_web_node_operates_the_mcu_nodes_room(cluster: tuple[RoleProcess, RoleProcess, str],
                                              chair: httpx.Client) -> None:
    mcu, web, _ = cluster
    assert any("no web console in this role" in line for line in mcu.output), "the MCU node serves no HTTP"
    until(lambda: chair.get(f"/api/conferences/{DEMO}").status_code == 200)  # pinned on the MCU's first beat
    assert state(chair)["running"] is True
    listed = chair.get("/api/conferences")
    assert listed.status_code == 200 and any(c["id"] == DEMO and c["running"] for c in listed.json())

    async def scenario() -> None:
        speaker = WebRtcTestClient(ColourCamera(colour(3), 320, 180, fps=10), ToneMicrophone(amplitude=6000))
        listener = WebRtcTestClient(ColourCamera(colour(17), 320, 180, fps=10), ToneMicrophone(amplitude=0))
        try:
            for client, label in ((speaker, "speaker"), (listener, "listener")):
                reply = await client.join_ws(ws_url(web), message={"name": label})
                assert reply["type"] == "answer", reply
            layout = await asyncio.to_thread(chair.post, f"/api/conferences/{DEMO}/ops",
                                             json={"op": "layout", "layout": "2"})
            assert layout.status_code == 200, layout.text
            assert layout.json()["layout"] == "2"
            # the MCU node composes both browsers' cameras into the view it sends them
            deadline = time.monotonic() + 30
            while not (listener.latest is not None and [pane(listener.latest, 0.25), pane(listener.latest, 0.75)]
                       == [3, 17]):
                assert time.monotonic() < deadline, "the room's video did not show both sites"
                await asyncio.sleep(0.2)
            # the listener hears the speaker's tone, until the chair mutes the speaker from the web node
            await asyncio.sleep(1.0)
            assert listener.audio_peak > 2000, listener.audio_peak
            muted = await asyncio.to_thread(chair.post, f"/api/conferences/{DEMO}/ops",
                                            json={"op": "mute", "site": speaker.participant_id})
            assert muted.status_code == 200, muted.text
            site = next(s for s in muted.json()["sites"] if s["site_id"] == speaker.participant_id)
            assert site["muted"] is True
            await asyncio.sleep(1.0)  # what was in flight drains
            listener.audio_peak = 0
            await asyncio.sleep(2.0)
            assert listener.audio_peak < 300, f"still hears the muted site: peak {listener.audio_peak}"
            # a refusal of the MCU node reaches the chair with its own message and status
            bad = await asyncio.to_thread(chair.post, f"/api/conferences/{DEMO}/ops",
                                          json={"op": "mute", "site": "no-such-site"})
            assert bad.status_code == 400 and "Traceback" not in bad.text, bad.text
            st = await asyncio.to_thread(state, chair)
            assert sorted(st["webrtc_legs"]) == sorted([speaker.participant_id, listener.participant_id])
        finally:
            await speaker.close()
            await listener.close()

    run_async(scenario())
    until(lambda: state(chair)["webrtc_legs"] == [], 15)  # the sockets closed: the legs left the MCU node
    audit = chair.get("/api/audit", params={"action": "conference.mute"})
    if audit.status_code == 200:  # the chair may not read the audit log; the admin check is elsewhere
        assert any(r.get("target") == DEMO for r in audit.json())


async def _next_send_size(client: WebRtcTestClient, predicate: Callable[[dict[str, Any]], bool],
                          within: float) -> dict[str, Any]:
    """The first `send_size` message on the client's websocket that satisfies ``predicate``."""
    import json

    assert client.signalling is not None
    deadline = time.monotonic() + within
    seen: list[dict[str, Any]] = []
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no such send_size within {within} s; seen {seen}"
        try:
            message = json.loads(await asyncio.wait_for(client.signalling.recv(), left))
        except TimeoutError:
            continue
        if message.get("type") == "send_size":
            seen.append(message)
            if predicate(message):
                return dict(message)


async def _pong(client: WebRtcTestClient) -> dict[str, Any]:
    """The leg's stats on the MCU node, through the web node's ping (send_size messages skipped)."""
    import json

    assert client.signalling is not None
    await client.signalling.send('{"type":"ping"}')
    while True:
        message = json.loads(await asyncio.wait_for(client.signalling.recv(), 15))
        if message.get("type") == "pong":
            return dict(message["stats"])


def test_a_proxied_leg_gets_its_pane_size(cluster: tuple[RoleProcess, RoleProcess, str],
                                          chair: httpx.Client) -> None:
    """Issue 16: a browser signalled through the web node is told the size it is shown at, like a
    local one: the MCU node's leg hands `send_size` to the web node (node RPC long poll), which
    forwards it on the browser's websocket; shown nowhere, it is told to stop sending."""
    _, web, _ = cluster
    until(lambda: chair.get(f"/api/conferences/{DEMO}").status_code == 200)

    def op(**kw: Any) -> None:
        response = chair.post(f"/api/conferences/{DEMO}/ops", json=kw)
        assert response.status_code == 200, response.text

    async def scenario() -> None:
        await asyncio.to_thread(op, op="layout", layout="5x5")
        first = WebRtcTestClient(ColourCamera(colour(5), 320, 180, fps=10), ToneMicrophone(amplitude=0))
        second = WebRtcTestClient(ColourCamera(colour(11), 320, 180, fps=10), ToneMicrophone(amplitude=0))
        try:
            for client, label in ((first, "甲"), (second, "乙")):
                reply = await client.join_ws(ws_url(web), message={"name": label})
                assert reply["type"] == "answer", reply
            small = await _next_send_size(first, lambda m: m.get("width") == 256, 20)
            assert small["active"] is True and small["height"] == 144 and small["max_bitrate"] == 96_000
            await asyncio.to_thread(op, op="layout", layout="1")
            await asyncio.to_thread(op, op="pane", index=0, mode="static", site=second.participant_id)
            hidden = await _next_send_size(first, lambda m: m.get("active") is False, 20)
            assert set(hidden) == {"type", "active"}
            # this client ignores send_size and keeps sending: the MCU node does not decode it
            pongs: list[dict[str, Any]] = []
            deadline = time.monotonic() + 20
            while not (pongs and pongs[-1]["video_decode"] == "off" and len(pongs) >= 2
                       and pongs[-1]["video_frames_skipped"] > pongs[0]["video_frames_skipped"] >= 0):
                assert time.monotonic() < deadline, pongs
                pongs.append(await _pong(first))
                await asyncio.sleep(1.0)
            await _next_send_size(second, lambda m: m.get("width") == 1280 and m.get("active") is True, 20)
        finally:
            await first.close()
            await second.close()

    run_async(scenario())
    until(lambda: state(chair)["webrtc_legs"] == [], 15)


def test_chromium_joins_through_the_web_node(cluster: tuple[RoleProcess, RoleProcess, str], chair: httpx.Client,
                                             artifacts_dir: Path) -> None:
    from tests.browser import chromium
    from tests.web_console.test_conference_console import STATS_JS as CONSOLE_STATS_JS

    mcu, web, _ = cluster
    until(lambda: chair.get(f"/api/conferences/{DEMO}").status_code == 200)
    with chromium() as browser:
        page = browser.new_page()
        page.goto(web.url + f"/join/{DEMO}")
        assert page.locator("[data-testid=join-form]").is_visible()
        page.fill("[data-testid=name]", "浏览器会场")
        page.click("[data-testid=join-button]")
        page.wait_for_selector("[data-testid=call]:not([hidden])", timeout=30_000)
        deadline = time.monotonic() + 30
        stats = page.evaluate(CONSOLE_STATS_JS)
        while stats["video"] == 0 and time.monotonic() < deadline:
            page.wait_for_timeout(300)
            stats = page.evaluate(CONSOLE_STATS_JS)
        assert stats["video"] > 0, f"Chromium decoded no video of the room: {stats}"
        legs = state(chair)["webrtc_legs"]
        assert len(legs) == 1, legs  # the browser's leg lives on the MCU node
        page.screenshot(path=str(artifacts_dir / "split-roles-chromium-join.png"), full_page=True)
        page.click("[data-testid=leave]")
    until(lambda: state(chair)["webrtc_legs"] == [], 15)


def test_forged_node_request_is_refused(cluster: tuple[RoleProcess, RoleProcess, str], chair: httpx.Client) -> None:
    _, _, db_url = cluster
    before = state(chair)["layout"]
    forged_layout = "1" if before != "1" else "2"

    async def forge() -> Any:
        conn = await asyncpg.connect(db_url)
        try:
            target = await conn.fetchval("SELECT node_id FROM rpc_pins WHERE kind = 'room' AND key = $1", DEMO)
            args = f'{{"conference_id": "{DEMO}", "op": {{"op": "layout", "layout": "{forged_layout}"}}}}'
            await conn.execute(
                "INSERT INTO rpc_requests (id, idempotency_key, sender, target, method, args, deadline, signature) "
                "VALUES ('forged-1', 'forged-1', 'intruder', $1, 'room.operate', $2::jsonb, $3, $4)",
                target, args, time.time() + 10, "ab" * 32)
            await conn.execute("SELECT pg_notify($1, 'req:forged-1')", channel_of(target))
            for _ in range(100):
                reply = await conn.fetchval("SELECT reply::text FROM rpc_requests WHERE id = 'forged-1'")
                if reply is not None:
                    return reply
                await asyncio.sleep(0.1)
            return None
        finally:
            await conn.close()

    reply = run_async(forge())
    assert reply is not None and '"forged"' in reply and '"ok": false' in reply, reply
    assert state(chair)["layout"] == before, "a forged request changed nothing"


def test_web_node_schedules_starts_extends_and_ends_a_conference(chair: httpx.Client) -> None:
    created = chair.post("/api/conferences", json={"name": "分角色会议", "start_now": True, "guests": True})
    assert created.status_code == 201 and created.json()["running"] is True, created.text
    cid = created.json()["id"]
    until(lambda: chair.get(f"/api/conferences/{cid}").status_code == 200
          and chair.get(f"/api/conferences/{cid}").json()["running"] is True)  # pinned on the next beat
    assert chair.post(f"/api/conferences/{cid}/extend", json={"minutes": 30}).status_code == 200
    bad = chair.post(f"/api/conferences/{cid}/extend", json={"minutes": 0})
    assert bad.status_code == 400 and "1–1440" in bad.json()["detail"]
    assert chair.post(f"/api/conferences/{cid}/end").status_code == 200
    until(lambda: chair.get(f"/api/conferences/{cid}").json().get("running") is False)
    assert chair.get(f"/api/conferences/{cid}").json()["conference"]["status"] == "ended"


def test_a_dead_web_node_leaves_no_leg_behind(cluster: tuple[RoleProcess, RoleProcess, str],
                                              chair: httpx.Client) -> None:
    """A second web node proxies a browser's join, then crashes: its leg on the MCU node ends by lease,
    and the first web node carries on operating the room."""
    mcu, _, db_url = cluster
    second = start_role("web", role_env(db_url, private_tmp_dir("cc-split-web2-")))
    try:
        async def scenario() -> float:
            client = WebRtcTestClient(ColourCamera(colour(5), 320, 180, fps=10), ToneMicrophone())
            try:
                reply = await client.join_ws(ws_url(second), message={"name": "via-second"})
                assert reply["type"] == "answer", reply
                await asyncio.to_thread(until, lambda: len(state(chair)["webrtc_legs"]) == 1, 15)
                second.kill()  # the web node dies with the browser's websocket
                started = time.monotonic()
                await asyncio.to_thread(until, lambda: state(chair)["webrtc_legs"] == [], 60)
                return time.monotonic() - started
            finally:
                await client.close()

        lasted = run_async(scenario())
        assert lasted > 20, "the leg lives on while the lease runs (the browser may retry)"
        assert chair.post(f"/api/conferences/{DEMO}/ops", json={"op": "layout", "layout": "1"}).status_code == 200
    finally:
        second.stop()


def test_dead_mcu_node_gives_a_clear_503(cluster: tuple[RoleProcess, RoleProcess, str], chair: httpx.Client) -> None:
    mcu, web, _ = cluster
    mcu.kill()
    started = time.monotonic()
    # within the deadline (4 s) while its heartbeat is fresh, then at once once it is dead (3 s without a beat)
    response = chair.post(f"/api/conferences/{DEMO}/ops", json={"op": "layout", "layout": "2"})
    assert response.status_code == 503, response.text
    assert time.monotonic() - started < 8
    time.sleep(3.5)
    started = time.monotonic()
    response = chair.post(f"/api/conferences/{DEMO}/ops", json={"op": "layout", "layout": "2"})
    assert response.status_code == 503, response.text
    assert response.json()["detail"].startswith("承载该会议的节点已停止响应"), response.text
    assert "Traceback" not in response.text
    assert time.monotonic() - started < 2, "a dead owner is refused at once"
    english = chair.get(f"/api/conferences/{DEMO}", params={"lang": "en"})
    assert english.status_code == 503 and "stopped responding" in english.json()["detail"]
    assert web.process.poll() is None, "the web node keeps running"
