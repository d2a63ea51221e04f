"""The chair console, the join page and WebRTC signalling against a running server.

Real peers only: aiortc clients signal over the websocket, headless Chromium joins with its fake
camera/microphone, Playwright drives the console; received pictures are decoded and checked.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from bench.webrtc_client import ColourCamera, ToneMicrophone, WebRtcTestClient
from tests.browser import sign_in
from tests.conftest import RunningServer, run_async
from tests.mcu.mcu_helpers import colour, identify, yuv_at

SERVER_ENV = {"CC_DEMO__DEMO_SITES": "true"}


def ws_url(server: RunningServer, conference_id: str) -> str:
    return server.url.replace("http://", "ws://") + f"/ws/conference/{conference_id}"


@pytest.fixture(scope="module")
def chair(server: RunningServer) -> Iterator[httpx.Client]:
    client = server.login("chair")
    yield client
    client.close()


def create(chair: httpx.Client, name: str, **kw: Any) -> dict[str, Any]:
    response = chair.post("/api/conferences", json={"name": name, "start_now": True, "guests": True, **kw})
    assert response.status_code == 201, response.text
    return dict(response.json())


def op(chair: httpx.Client, conference_id: str, name: str, **kw: Any) -> httpx.Response:
    return chair.post(f"/api/conferences/{conference_id}/ops", json={"op": name, **kw})


def state(chair: httpx.Client, conference_id: str) -> dict[str, Any]:
    return dict(chair.get(f"/api/conferences/{conference_id}").json())


def wait_until(predicate: Callable[[], bool], within: float = 15.0, step: float = 0.1) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(step)


def panes(frame: Any, fractions: list[float], row: float = 0.5) -> list[int | None]:
    return [identify(yuv_at(frame, int(f * frame.width), int(row * frame.height), radius=6), tolerance=20)
            for f in fractions]


# -- API and audit ---------------------------------------------------------------------------------

def test_chair_api_operations_are_validated_and_audited(server: RunningServer, chair: httpx.Client) -> None:
    conf = create(chair, "接口测试会议", pin="2468")
    cid = conf["id"]
    assert conf["running"] and conf["has_pin"]
    assert op(chair, cid, "layout", layout="2x2").json()["layout"] == "2x2"
    bad = op(chair, cid, "layout", layout="8x8")
    assert bad.status_code == 400 and "未知布局" in bad.json()["detail"]
    assert state(chair, cid)["layout"] == "2x2"  # refused input changed nothing
    assert op(chair, cid, "broadcast", site="nobody").status_code == 400
    assert op(chair, cid, "no_such_op").status_code == 400
    assert op(chair, cid, "banner", text="全市防汛工作会议", position="bottom").json()["banner"]["position"] == "bottom"
    assert op(chair, cid, "labels", enabled=False).json()["labels"] is False
    assert op(chair, cid, "lock").json()["locked"] is True
    assert op(chair, cid, "lock", enabled=False).json()["locked"] is False
    assert chair.post(f"/api/conferences/{cid}/extend", json={"minutes": 30}).json()["ends_at"]
    assert chair.post(f"/api/conferences/{cid}/extend", json={"minutes": 0}).status_code == 400
    # Invite/redial/hang-up: refused with 501 until a SIP/H.323 dialer registers.
    sip = create(chair, "SIP 会场测试", sites=["city-emergency"])
    site = next(s for s in state(chair, sip["id"])["sites"] if s["site_id"] == "city-emergency")
    assert site["dial"] is False
    assert chair.post(f"/api/conferences/{sip['id']}/sites/city-emergency/invite").status_code in (400, 501)
    # Roles: a viewer may not chair, anonymous gets 401, a cookie without CSRF token is refused.
    viewer = server.login("viewer")
    assert viewer.post(f"/api/conferences/{cid}/ops", json={"op": "lock"}).status_code == 403
    assert server.client().post(f"/api/conferences/{cid}/ops", json={"op": "lock"}).status_code == 401
    no_csrf = httpx.Client(base_url=server.url, cookies=chair.cookies)
    assert no_csrf.post(f"/api/conferences/{cid}/ops", json={"op": "lock"}).status_code == 403
    assert state(chair, cid)["locked"] is False
    # Every operation, accepted or refused, is in the audit log with who and from where.
    admin = server.login("admin")
    entries = admin.get("/api/audit", params={"actor": "chair"}).json()
    actions = [(e["action"], e["outcome"]) for e in (entries if isinstance(entries, list) else entries["entries"])]
    for expected in [("conference.layout", "ok"), ("conference.layout", "failed"), ("conference.banner", "ok"),
                     ("conference.lock", "ok"), ("conference.extend", "ok"), ("conference.create", "ok"),
                     ("conference.invite", "failed")]:
        assert expected in actions, expected
    assert chair.post(f"/api/conferences/{cid}/end").status_code == 200
    assert chair.post(f"/api/conferences/{sip['id']}/end").status_code == 200


def test_demo_conference_has_labelled_demo_sites(chair: httpx.Client) -> None:
    demo = state(chair, "80000001")
    sites = {s["site_id"]: s for s in demo["sites"]}
    assert {"city-main", "yuncheng-room", "luoding-room"} <= set(sites)
    demo_sites = [s for s in sites.values() if s["protocol"] == "demo"]
    assert len(demo_sites) == 6 and all(s["status"] == "joined" for s in demo_sites)


# -- WebRTC over the signalling websocket ----------------------------------------------------------

async def _client(server: RunningServer, cid: str, colour_index: int | None, **message: Any) -> WebRtcTestClient:
    camera = ColourCamera(colour(colour_index), 320, 180, fps=10) if colour_index is not None else None
    client = WebRtcTestClient(camera, ToneMicrophone())
    reply = await client.join_ws(ws_url(server, cid), message={"name": f"client-{colour_index}", **message})
    assert reply["type"] == "answer", reply
    return client


async def _until(predicate: Callable[[], bool], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.1)


def test_aiortc_clients_see_composition_and_chair_operations(server: RunningServer, chair: httpx.Client) -> None:
    cid = create(chair, "合成测试会议")["id"]
    other = create(chair, "同时进行的第二个会议")["id"]  # two conferences at once, independently

    async def scenario() -> None:
        a = await _client(server, cid, 3)
        b = await _client(server, cid, 17)
        c = await _client(server, other, 11)
        try:
            await asyncio.to_thread(op, chair, cid, "layout", layout="2")
            # Own pane (left, joined first) plus the other site (right).
            await _until(lambda: a.latest is not None and panes(a.latest, [0.25, 0.75]) == [3, 17])
            st = await asyncio.to_thread(state, chair, cid)
            assert st["encoders"] == ["broadcast/h264/640x360"]  # both share one encoder, the start tier
            # Roll call site b: everyone sees b full screen (b itself sees the chair's site, none here).
            await asyncio.to_thread(op, chair, cid, "roll_call", site=b.participant_id)
            await _until(lambda: a.latest is not None and panes(a.latest, [0.1, 0.5, 0.9]) == [17, 17, 17])
            # Select-view for a: b; cancel the broadcast: b still sees the 2-pane layout.
            await asyncio.to_thread(op, chair, cid, "broadcast", site=None)
            await asyncio.to_thread(op, chair, cid, "select_view", site=b.participant_id, target=a.participant_id)
            await _until(lambda: b.latest is not None and panes(b.latest, [0.1, 0.9]) == [3, 3])
            await _until(lambda: a.latest is not None and panes(a.latest, [0.25, 0.75]) == [3, 17])
            # Banner at the top: the band above the panes is no longer a site colour.
            await asyncio.to_thread(op, chair, cid, "banner", text="防汛会商", position="top")
            await _until(lambda: a.latest is not None and panes(a.latest, [0.25], row=0.03) == [None])
            # Remove b: its leg is told and closed, the site shows as removed/left.
            await asyncio.to_thread(op, chair, cid, "remove", site=b.participant_id)
            bye = json.loads(await asyncio.wait_for(b.signalling.recv(), 5))
            while bye.get("type") == "send_size":  # the pane sizes it was asked for (mcu.pane_size) come first
                bye = json.loads(await asyncio.wait_for(b.signalling.recv(), 5))
            assert bye == {"type": "bye", "reason": "removed"}
            # The other conference saw none of it: its only site full screen, no banner.
            assert c.latest is not None and panes(c.latest, [0.1, 0.5, 0.9]) == [11, 11, 11]
            assert panes(c.latest, [0.5], row=0.03) == [11]
            st = await asyncio.to_thread(state, chair, other)
            assert [s["site_id"] for s in st["sites"]] == [c.participant_id] and st["banner"] is None
        finally:
            await a.close()
            await b.close()
            await c.close()

    run_async(scenario())
    wait_until(lambda: state(chair, cid)["webrtc_legs"] == [] and state(chair, cid)["encoders"] == [], 10)
    chair.post(f"/api/conferences/{cid}/end")
    chair.post(f"/api/conferences/{other}/end")


def test_conference_starts_at_its_time(chair: httpx.Client) -> None:
    from datetime import UTC, datetime, timedelta

    starts = datetime.now(UTC) + timedelta(seconds=2)
    conf = create(chair, "定时会议", start_now=False, starts_at=starts.isoformat(),
                  ends_at=(starts + timedelta(minutes=30)).isoformat())
    assert conf["status"] == "scheduled" and not conf["running"]
    wait_until(lambda: state(chair, conf["id"])["running"], 6)
    listed = {c["id"]: c for c in chair.get("/api/conferences").json()}
    assert listed[conf["id"]]["status"] == "running"
    chair.post(f"/api/conferences/{conf['id']}/end")
    assert {c["id"] for c in chair.get("/api/conferences").json()}.isdisjoint({conf["id"]})


def test_wrong_pin_back_off_locked_ended_unknown(server: RunningServer, chair: httpx.Client) -> None:
    cid = create(chair, "密码会议", pin="135790")["id"]

    async def attempt(pin: str) -> dict[str, Any]:
        async with websockets.connect(ws_url(server, cid)) as ws:
            await ws.send(json.dumps({"type": "join", "sdp": "v=0 placeholder offer", "pin": pin}))
            reply: dict[str, Any] = json.loads(await ws.recv())
            return reply

    async def attempts() -> list[dict[str, Any]]:
        return [await attempt("000000") for _ in range(6)]

    replies = run_async(attempts())
    assert [r["code"] for r in replies[:4]] == ["wrong_pin"] * 4
    assert replies[-1]["code"] == "too_many_attempts" and replies[-1]["retry_after"] > 0
    assert "秒后再试" in replies[-1]["message"]
    # Even the right PIN is refused while backing off.
    assert run_async(attempt("135790"))["code"] == "too_many_attempts"
    guest = server.client()
    page = guest.get(f"/join/{cid}")
    assert page.status_code == 200 and 'data-testid="pin"' in page.text
    # A signed-in chair skips the PIN (and gets no PIN field).
    assert 'data-testid="pin"' not in chair.get(f"/join/{cid}").text
    # A signed-in user is told why; an anonymous visitor gets one answer for all (issue 13).
    op(chair, cid, "lock")
    locked = chair.get(f"/join/{cid}")
    assert locked.status_code == 423 and 'data-state="locked"' in locked.text and "会议已锁定" in locked.text
    assert guest.get(f"/join/{cid}").status_code == 404
    chair.post(f"/api/conferences/{cid}/end")
    ended = chair.get(f"/join/{cid}")
    assert ended.status_code == 410 and "会议已结束" in ended.text
    unknown = chair.get("/join/99999999")
    assert unknown.status_code == 404 and "会议不存在" in unknown.text
    en = chair.get("/join/99999999?lang=en")
    assert "No such conference" in en.text
    anonymous = guest.get("/join/99999999?lang=en")
    assert anonymous.status_code == 404 and "cannot be joined" in anonymous.text


def test_malformed_signalling_gets_error_frame_and_clean_close(server: RunningServer, chair: httpx.Client) -> None:
    cid = create(chair, "信令测试")["id"]

    async def send(first: str, then: str | None = None) -> tuple[list[dict[str, Any]], int | None]:
        frames = []
        async with websockets.connect(ws_url(server, cid)) as ws:
            await ws.send(first)
            if then is not None:
                frames.append(json.loads(await ws.recv()))
                await ws.send(then)
            try:
                while True:
                    frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            except websockets.ConnectionClosed as closed:
                return frames, closed.rcvd.code if closed.rcvd else None

    for bad in ["not json", json.dumps({"type": "join"}), json.dumps({"type": "dance", "sdp": "x" * 20}),
                json.dumps([1, 2, 3]), json.dumps({"type": "join", "sdp": "v=0\r\nthis is not sdp\r\n"})]:
        frames, code = run_async(send(bad))
        assert frames[-1]["type"] == "error" and frames[-1]["code"] == "malformed", (bad, frames)
        assert code == 1008
    assert state(chair, cid)["webrtc_legs"] == []
    assert not [s for s in state(chair, cid)["sites"] if s["status"] == "joined"]

    async def join_then_garbage() -> tuple[list[dict[str, Any]], int | None]:
        client = WebRtcTestClient(ColourCamera(colour(1)), ToneMicrophone())
        try:
            await client.join_ws(ws_url(server, cid))
            await client.signalling.send("{{{")
            frames = []
            try:
                while True:
                    frames.append(json.loads(await asyncio.wait_for(client.signalling.recv(), 10)))
            except websockets.ConnectionClosed as closed:
                return frames, closed.rcvd.code if closed.rcvd else None
        finally:
            await client.close()

    frames, code = run_async(join_then_garbage())
    assert frames[-1]["code"] == "malformed" and code == 1008
    wait_until(lambda: state(chair, cid)["webrtc_legs"] == [], 5)
    assert all(s["status"] == "left" for s in state(chair, cid)["sites"])
    chair.post(f"/api/conferences/{cid}/end")


CLIENT_SCRIPT = """
import asyncio, sys
from bench.webrtc_client import ColourCamera, ToneMicrophone, WebRtcTestClient
async def main():
    c = WebRtcTestClient(ColourCamera((128, 48, 48)), ToneMicrophone())
    reply = await c.join_ws(sys.argv[1])
    print(reply["participant_id"], flush=True)
    await c.wait_frames(3, 30)
    print("receiving", flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


def _proc_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _inet_sockets(pid: int) -> dict[str, int]:
    """UDP and TCP sockets the process holds (ICE/DTLS sockets are UDP; websockets are TCP)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    counts = {"udp": 0, "tcp": 0}
    for kind in counts:
        for table in (f"/proc/{pid}/net/{kind}", f"/proc/{pid}/net/{kind}6"):
            for line in Path(table).read_text().splitlines()[1:]:
                if line.split()[9] in inodes:
                    counts[kind] += 1
    return counts


def test_abrupt_browser_exit_leaves_within_seconds(server: RunningServer, chair: httpx.Client) -> None:
    cid = create(chair, "异常退出测试")["id"]
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", CLIENT_SCRIPT, ws_url(server, cid)], cwd=root,
                            env={**os.environ, "PYTHONPATH": str(root)}, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        pid = proc.stdout.readline().strip()
        assert pid.startswith("web-"), pid
        assert proc.stdout.readline().strip() == "receiving"
        assert next(s for s in state(chair, cid)["sites"] if s["site_id"] == pid)["status"] == "joined"
        proc.kill()  # SIGKILL: no leave, no websocket close frame, no DTLS close
        t0 = time.monotonic()
        wait_until(lambda: next(s for s in state(chair, cid)["sites"] if s["site_id"] == pid)["status"] == "left", 8)
        assert time.monotonic() - t0 < 5
        # The leg finishes tearing down (peer connection, tasks) right after the site has left.
        wait_until(lambda: state(chair, cid)["webrtc_legs"] == [] and state(chair, cid)["encoders"] == [], 3)
    finally:
        proc.kill()
        proc.wait()
    chair.post(f"/api/conferences/{cid}/end")


def test_churn_returns_server_sockets_and_memory_to_baseline(server: RunningServer, chair: httpx.Client) -> None:
    cid = create(chair, "压力测试")["id"]
    pid = server.process.pid

    async def round_(n: int) -> None:
        clients = [await _client(server, cid, i) for i in range(n)]
        await _until(lambda: all(c.frames > 0 for c in clients), 30)
        for c in clients:
            await c.close()

    def rss() -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    run_async(round_(2))  # warm-up: codec libraries, thread pools
    wait_until(lambda: state(chair, cid)["webrtc_legs"] == [], 10)
    time.sleep(1)
    fds0, rss0, sockets0 = _proc_fds(pid), rss(), _inet_sockets(pid)
    for _ in range(2):
        run_async(round_(5))
        wait_until(lambda: state(chair, cid)["webrtc_legs"] == [] and state(chair, cid)["encoders"] == [], 10)
    time.sleep(1.5)
    sockets = _inet_sockets(pid)
    assert sockets["udp"] == sockets0["udp"], (sockets0, sockets)  # every ICE socket closed
    assert sockets["tcp"] <= sockets0["tcp"] + 1, (sockets0, sockets)
    assert _proc_fds(pid) <= fds0 + 6  # the database pool may have grown by a few connections
    assert rss() < rss0 + 60_000  # kB: no per-client growth that stays (10 clients came and went)
    assert all(s["status"] == "left" for s in state(chair, cid)["sites"])
    chair.post(f"/api/conferences/{cid}/end")


# -- headless Chromium -------------------------------------------------------------------------------

STATS_JS = """async () => {
  const out = {video: 0, audio: 0, sent: 0};
  if (!window.ccPeer) return out;
  (await window.ccPeer.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') out.video = s.framesDecoded || 0;
    if (s.type === 'inbound-rtp' && s.kind === 'audio') out.audio = s.packetsReceived || 0;
    if (s.type === 'outbound-rtp' && s.kind === 'video') out.sent = s.framesEncoded || 0;
  });
  return out;
}"""


def _pane_is_live_camera(frames: list[Any], x: float) -> bool:
    """Chromium's fake camera (a moving pattern on green) in the pane at `x`: not a site colour, not
    black or the placeholder, and changing between frames."""
    import numpy as np

    crops = []
    for frame in frames:
        y = frame.reformat(format="yuv420p").to_ndarray()[: frame.height]
        cx = int(x * frame.width)
        crops.append(y[frame.height // 4: frame.height * 3 // 4, cx - frame.width // 8: cx + frame.width // 8]
                     .astype(np.int16))
    spread = float(crops[-1].std())
    moving = float(np.abs(crops[-1] - crops[0]).mean())
    return spread > 8 and moving > 1


def test_chromium_joins_and_is_seen_by_another_client(server: RunningServer, chair: httpx.Client,
                                                      artifacts_dir: Path) -> None:
    from tests.browser import chromium

    cid = create(chair, "浏览器入会测试", pin="8642")["id"]
    op(chair, cid, "layout", layout="2")
    with chromium() as browser:
        page = browser.new_page()
        page.goto(server.url + f"/join/{cid}")
        assert page.locator("[data-testid=join-form]").is_visible()
        page.wait_for_selector("[data-testid=camera] option", state="attached", timeout=10_000)
        assert page.locator("[data-testid=microphone] option").count() >= 1
        page.fill("[data-testid=name]", "浏览器会场")
        page.fill("[data-testid=pin]", "1111")
        page.click("[data-testid=join-button]")
        page.wait_for_function("document.querySelector('[data-testid=join-error]').textContent.length > 0",
                               timeout=20_000)
        assert page.locator("[data-testid=join-error]").inner_text() == "会议密码错误"
        page.screenshot(path=str(artifacts_dir / "webrtc-join-wrong-pin.png"))
        page.fill("[data-testid=pin]", "8642")
        page.click("[data-testid=join-button]")
        page.wait_for_selector("[data-testid=call]:not([hidden])", timeout=20_000)
        assert not page.locator("[data-testid=join-form]").is_visible()
        deadline = time.monotonic() + 20
        stats = page.evaluate(STATS_JS)
        while (stats["video"] == 0 or stats["audio"] == 0) and time.monotonic() < deadline:
            page.wait_for_timeout(300)
            stats = page.evaluate(STATS_JS)
        assert stats["video"] > 0 and stats["audio"] > 0, stats

        async def second_client() -> list[Any]:
            client = await _client(server, cid, 17, pin="8642")
            try:
                await _until(lambda: client.latest is not None and panes(client.latest, [0.75]) == [17], 25)
                frames = [client.latest]
                await asyncio.sleep(1.0)
                frames.append(client.latest)
                return frames
            finally:
                await client.close()

        frames = run_async(second_client())
        assert _pane_is_live_camera(frames, 0.25)  # Chromium's camera in its pane, live
        page.wait_for_timeout(1500)
        assert page.locator("[data-testid=quality]").get_attribute("data-level") in ("good", "fair")
        page.screenshot(path=str(artifacts_dir / "webrtc-join-chromium.png"), full_page=True)
        page.click("[data-testid=mute-mic]")
        page.click("[data-testid=leave]")
        assert page.locator("[data-testid=join-ended]").is_visible()
    wait_until(lambda: state(chair, cid)["webrtc_legs"] == [], 8)
    chair.post(f"/api/conferences/{cid}/end")


def _browser_login(page: Any, server: RunningServer, username: str) -> None:
    page.goto(server.url + "/login")
    sign_in(page, username, server.passwords[username])
    page.wait_for_url(server.url + "/")


def test_chair_console_drives_the_room_and_chairs_see_each_other(server: RunningServer, chair: httpx.Client,
                                                                 artifacts_dir: Path) -> None:
    from tests.browser import chromium

    cid = create(chair, "主席控制台测试")["id"]

    receivers: dict[str, WebRtcTestClient] = {}

    async def scenario() -> None:
        a = await _client(server, cid, 3)
        b = await _client(server, cid, 17)
        receivers["a"], receivers["b"] = a, b
        try:
            await _until(lambda: a.latest is not None)
            await asyncio.to_thread(drive_console)
        finally:
            await a.close()
            await b.close()

    def sees(expected: list[int | None], xs: list[float], row: float = 0.5) -> Callable[[], bool]:
        return lambda: receivers["a"].latest is not None and panes(receivers["a"].latest, xs, row) == expected

    def drive_console() -> None:
        with chromium() as browser:
            one, two = browser.new_context(), browser.new_context()
            p1, p2 = one.new_page(), two.new_page()
            _browser_login(p1, server, "chair")
            _browser_login(p2, server, "operator")
            for p in (p1, p2):
                p.goto(server.url + f"/conference#{cid}")
                p.wait_for_selector("[data-testid=room]:not([hidden])", timeout=15_000)
            b_id = receivers["b"].participant_id
            # Layout picker: 2 side by side; the aiortc receiver sees its own pane and b's.
            p1.select_option("[data-testid=layout]", "2")
            wait_until(sees([3, 17], [0.25, 0.75]), 15)
            # The other console shows the change within a second (bus events over /ws/events).
            t0 = time.monotonic()
            p2.wait_for_function("document.querySelector('[data-testid=layout]').value === '2'", timeout=3000)
            assert time.monotonic() - t0 < 1.5
            # Pane assignment: pane 1 shows b, pane 2 shows a.
            p1.select_option("[data-testid=pane-index]", "0")
            p1.select_option("[data-testid=pane-mode]", "static")
            p1.select_option("[data-testid=pane-site]", b_id)
            p1.click("[data-testid=pane-assign]")
            wait_until(sees([17, 3], [0.25, 0.75]), 15)
            # Roll call b: a sees b full screen.
            p1.click(f"[data-testid=rollcall-{b_id}]")
            wait_until(sees([17, 17, 17], [0.1, 0.5, 0.9]), 15)
            p2.wait_for_selector(f"[data-testid=site-{b_id}] >> text=◉", timeout=3000)
            # Banner at the top.
            p1.fill("[data-testid=banner-text]", "全市防汛视频会商")
            p1.click("[data-testid=banner-set]")
            wait_until(sees([None], [0.5], row=0.03), 15)
            p2.wait_for_function("document.querySelector('[data-testid=banner-text]').value.length > 0", timeout=3000)
            # Live preview plays in the console; level meters move.
            p1.wait_for_function("document.querySelector('[data-testid=preview]').videoWidth > 0", timeout=15_000)
            p1.screenshot(path=str(artifacts_dir / "webrtc-chair-console.png"), full_page=True)
            # The remaining buttons reach the room too.
            a_id = receivers["a"].participant_id
            p1.click(f"[data-testid=mute-{b_id}]")
            wait_until(lambda: next(x for x in state(chair, cid)["sites"] if x["site_id"] == b_id)["muted"], 3)
            p1.click(f"[data-testid=deaf-{a_id}]")
            wait_until(lambda: next(x for x in state(chair, cid)["sites"] if x["site_id"] == a_id)["deaf"], 3)
            p1.select_option(f"[data-testid=select-view-{a_id}]", b_id)
            wait_until(lambda: state(chair, cid)["selected"] == {a_id: b_id}, 3)
            p1.check("[data-testid=voice]")
            wait_until(lambda: state(chair, cid)["voice_activated"], 3)
            p1.select_option("[data-testid=polling-sites]", [a_id, b_id])
            p1.fill("[data-testid=polling-interval]", "5")
            p1.click("[data-testid=polling-start]")
            wait_until(lambda: (state(chair, cid)["polling"] or {}).get("interval") == 5.0, 3)
            p1.click("[data-testid=polling-stop]")
            p1.uncheck("[data-testid=labels]")
            p1.click("[data-testid=lock]")
            wait_until(lambda: state(chair, cid)["locked"] and not state(chair, cid)["labels"]
                       and state(chair, cid)["polling"] is None, 3)
            p2.wait_for_function("document.querySelector('[data-testid=lock]').classList.contains('on')",
                                 timeout=3000)
            p2.screenshot(path=str(artifacts_dir / "webrtc-chair-console-operator.png"), full_page=True)

    run_async(scenario())
    chair.post(f"/api/conferences/{cid}/end")
