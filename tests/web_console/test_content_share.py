"""Content sharing and request to speak against a running server, with real WebRTC peers.

aiortc peers join over the signalling websocket and decode what the MCU sends them: a presenter
shares a colour as content on its second peer connection, another site sees that colour in the
content pane and the sites in the speaker strip; a second presenter is refused; the chair revokes;
a stopped stream loses the token; a raised hand approved by the chair is heard in the mix. Headless
Chromium drives the join page's 共享屏幕 and 举手 buttons and the chair console.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from bench.webrtc_client import ColourCamera, ToneMicrophone, WebRtcTestClient
from mcu.layout import Rect, fit_rect
from tests.conftest import RunningServer, run_async
from tests.mcu.mcu_helpers import colour, identify, yuv_at

SERVER_ENV = {"CC_DEMO__DEMO_SITES": "false"}
CONTENT = 9  # the content's palette colour
A, B = 3, 17  # the sites' camera colours


@pytest.fixture(scope="module")
def chair(server: RunningServer) -> Iterator[httpx.Client]:
    client = server.login("chair")
    yield client
    client.close()


def ws_url(server: RunningServer, conference_id: str) -> str:
    return server.url.replace("http://", "ws://") + f"/ws/conference/{conference_id}"


def create(chair: httpx.Client, name: str) -> str:
    response = chair.post("/api/conferences", json={"name": name, "start_now": True, "guests": True})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def content_state(chair: httpx.Client, cid: str) -> dict[str, Any]:
    response = chair.get(f"/api/conferences/{cid}/content")
    assert response.status_code == 200, response.text
    return dict(response.json())


def point(frame: Any, fx: float, fy: float) -> tuple[int, int]:
    """Pixel at fractions of the 16:9 picture (a receiver moved to 352x288 gets it letterboxed)."""
    inner = fit_rect(16, 9, Rect(0, 0, frame.width, frame.height))
    return inner.x + int(fx * inner.w), inner.y + int(fy * inner.h)


def at(frame: Any, fx: float, fy: float) -> int | None:
    radius = 6 if frame.width >= 640 else 3
    return identify(yuv_at(frame, *point(frame, fx, fy), radius=radius), tolerance=20)


def shows_content(frame: Any) -> bool:
    """Content large on top (rows 0-80 %), the two sites in the strip below (centred, 20 % wide each)."""
    return (frame is not None and [at(frame, x, 0.4) for x in (0.2, 0.5, 0.8)] == [CONTENT] * 3
            and {at(frame, 0.4, 0.9), at(frame, 0.6, 0.9)} == {A, B})


def shows_people(frame: Any) -> bool:
    return frame is not None and {at(frame, 0.25, 0.5), at(frame, 0.75, 0.5)} == {A, B}


async def until(predicate: Callable[[], bool], within: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {within} s")
        await asyncio.sleep(0.1)


class Presenter:
    """A site's second peer connection sending a colour as content (what the join page does)."""

    def __init__(self, site: WebRtcTestClient) -> None:
        self.site = site
        self.camera = ColourCamera(colour(CONTENT), 1280, 720, fps=10)
        self.pc = RTCPeerConnection()
        self.pc.addTransceiver(self.camera, direction="sendonly")

    async def share(self) -> dict[str, Any]:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.site.signalling.send(json.dumps({"type": "content_offer", "sdp": self.pc.localDescription.sdp}))
        reply = await next_message(self.site, {"content_answer", "content_refused"})
        if reply["type"] == "content_answer":
            await self.pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
        return reply

    async def close(self) -> None:
        self.camera.stop()
        await self.pc.close()


async def next_message(client: WebRtcTestClient, types: set[str], within: float = 20.0) -> dict[str, Any]:
    """The next signalling message of one of `types` (others, e.g. pongs, are skipped)."""
    deadline = time.monotonic() + within
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no {types} message")
        message: dict[str, Any] = json.loads(await asyncio.wait_for(client.signalling.recv(), left))
        if message.get("type") in types:
            return message


async def join(server: RunningServer, cid: str, colour_index: int) -> WebRtcTestClient:
    client = WebRtcTestClient(ColourCamera(colour(colour_index), 320, 180, fps=10), ToneMicrophone(880.0, 6000.0))
    reply = await client.join_ws(ws_url(server, cid), message={"name": f"会场{colour_index}"})
    assert reply["type"] == "answer", reply
    return client


def test_share_refuse_revoke_timeout_and_composite(server: RunningServer, chair: httpx.Client,
                                                    artifacts_dir: Path) -> None:
    cid = create(chair, "内容共享测试")
    assert chair.post(f"/api/conferences/{cid}/ops", json={"op": "layout", "layout": "2"}).status_code == 200

    async def scenario() -> None:
        a = await join(server, cid, A)
        b = await join(server, cid, B)
        presenters: list[Presenter] = []
        try:
            await until(lambda: shows_people(b.latest), what="the 2-pane people layout")
            # a shares: b (one video stream) sees the content large and both sites in the strip.
            first = Presenter(a)
            presenters.append(first)
            assert (await first.share())["type"] == "content_answer"
            await until(lambda: shows_content(b.latest), what="content composed for b")
            assert b.latest is not None
            b.latest.to_image().save(artifacts_dir / "content-plus-speakers.png")  # type: ignore[no-untyped-call]
            st = await asyncio.to_thread(content_state, chair, cid)
            assert st["holder"] == a.participant_id and st["live"] and st["size"] == [1280, 720]
            # A second presenter is refused with the reason; nothing changes.
            second = Presenter(b)
            presenters.append(second)
            refused = await second.share()
            assert refused["type"] == "content_refused" and refused["code"] == "busy", refused
            assert "会场3" in refused["message"] and "正在共享" in refused["message"]
            await asyncio.sleep(1.0)
            assert shows_content(b.latest) and (await asyncio.to_thread(content_state, chair, cid))["holder"] \
                == a.participant_id
            # The chair picks "content only", then revokes: the presenter is told, the picture returns to people.
            r = await asyncio.to_thread(chair.post, f"/api/conferences/{cid}/content",
                                        json={"action": "layout", "layout": "content"})
            assert r.status_code == 200 and r.json()["layout"] == "content"
            await until(lambda: b.latest is not None and [at(b.latest, x, 0.9) for x in (0.1, 0.5, 0.9)]
                        == [CONTENT] * 3, what="content only")
            r = await asyncio.to_thread(chair.post, f"/api/conferences/{cid}/content", json={"action": "revoke"})
            assert r.status_code == 200 and r.json()["holder"] is None
            stopped = await next_message(a, {"content_stopped"})
            assert stopped["reason"] == "chair"
            await until(lambda: shows_people(b.latest), what="people after the revoke")
            again = await asyncio.to_thread(chair.post, f"/api/conferences/{cid}/content", json={"action": "revoke"})
            assert again.status_code == 400 and again.json()["code"] == "nobody"
            # b shares now (the token is free); its content stream stops: the token is released
            # after the media timeout (5 s) and the picture returns to people.
            await asyncio.to_thread(chair.post, f"/api/conferences/{cid}/content",
                                    json={"action": "layout", "layout": "content+speakers"})
            third = Presenter(b)
            presenters.append(third)
            assert (await third.share())["type"] == "content_answer"
            await until(lambda: shows_content(a.latest), what="b's content seen by a")
            third.camera.stop()  # the stream stops, the connection stays up
            stopped_at = time.monotonic()
            timed_out = await next_message(b, {"content_stopped"}, within=15)
            assert timed_out["reason"] == "timeout" and time.monotonic() - stopped_at >= 4.0
            assert (await asyncio.to_thread(content_state, chair, cid))["holder"] is None
            await until(lambda: shows_people(a.latest), what="people after the timeout")
        finally:
            for p in presenters:
                await p.close()
            await a.close()
            await b.close()

    run_async(scenario())
    # Audited, accepted and refused alike.
    admin = server.login("admin")
    entries = admin.get("/api/audit", params={"actor": "chair"}).json()
    actions = {(e["action"], e["outcome"]) for e in (entries if isinstance(entries, list) else entries["entries"])}
    assert {("conference.content.revoke", "ok"), ("conference.content.revoke", "failed"),
            ("conference.content.layout", "ok")} <= actions
    chair.post(f"/api/conferences/{cid}/end")


class Watcher:
    """A site's receive-only peer connection for the content as a second stream."""

    def __init__(self, site: WebRtcTestClient) -> None:
        self.site = site
        self.pc = RTCPeerConnection()
        self.pc.addTransceiver("video", direction="recvonly")
        self.frames: list[tuple[float, Any]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", lambda track: self._tasks.append(asyncio.ensure_future(self._consume(track))))

    async def _consume(self, track: Any) -> None:
        with contextlib.suppress(Exception):
            while True:
                frame = await track.recv()
                self.frames.append((time.monotonic(), frame))
                del self.frames[:-200]

    async def watch(self) -> dict[str, Any]:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.site.signalling.send(json.dumps({"type": "content_watch", "sdp": self.pc.localDescription.sdp}))
        reply = await next_message(self.site, {"content_watch_answer", "content_watch_refused"})
        if reply["type"] == "content_watch_answer":
            await self.pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
        return reply

    def fps(self, seconds: float = 3.0) -> float:
        recent = [t for t, _ in self.frames if t > time.monotonic() - seconds]
        return len(recent) / seconds

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()


def test_content_as_a_second_stream_from_one_shared_encoder(server: RunningServer, chair: httpx.Client) -> None:
    cid = create(chair, "内容双流测试")
    assert chair.post(f"/api/conferences/{cid}/ops", json={"op": "layout", "layout": "2"}).status_code == 200
    C = 11

    async def scenario() -> None:
        a = await join(server, cid, A)
        b = await join(server, cid, B)
        c = await join(server, cid, C)
        presenter, watchers = Presenter(a), [Watcher(b), Watcher(c)]
        try:
            early = await watchers[0].watch()  # nobody presents yet: refused, nothing opened
            assert early["type"] == "content_watch_refused" and early["code"] == "nobody"
            watchers[0] = Watcher(b)
            assert (await presenter.share())["type"] == "content_answer"
            live = await next_message(b, {"content_live"})
            assert live["live"] is True and live["presenter"] == "会场3"
            assert (await watchers[0].watch())["type"] == "content_watch_answer"
            # b: the content alone at 1920x1080 on its second stream, at a low frame rate...
            await until(lambda: bool(watchers[0].frames) and at(watchers[0].frames[-1][1], 0.5, 0.5) == CONTENT, 20,
                        "content on b's second stream")
            frame = watchers[0].frames[-1][1]
            assert (frame.width, frame.height) == (1920, 1080)
            assert [at(frame, x, y) for x, y in ((0.05, 0.05), (0.95, 0.95))] == [CONTENT, CONTENT]
            await asyncio.sleep(3.0)
            assert 3 <= watchers[0].fps() <= 15, watchers[0].fps()
            # ...and people on its main stream, while c (one stream) gets the composite.
            await until(lambda: shows_people(b.latest), 10, "people on b's main stream")
            await until(lambda: c.latest is not None and [at(c.latest, x, 0.4) for x in (0.2, 0.5, 0.8)]
                        == [CONTENT] * 3, 10, "the composite on c's only stream")
            # c watches too: one shared content encoder for both.
            assert (await watchers[1].watch())["type"] == "content_watch_answer"
            await until(lambda: bool(watchers[1].frames) and at(watchers[1].frames[-1][1], 0.5, 0.5) == CONTENT, 20,
                        "content on c's second stream")
            encoders = (await asyncio.to_thread(chair.get, f"/api/conferences/{cid}")).json()["encoders"]
            assert [e for e in encoders if e.startswith("content/")] == ["content/h264/1920x1080"], encoders
            # The presenter stops: every site is told; the main streams return to the broadcast.
            await a.signalling.send(json.dumps({"type": "content_stop"}))
            assert (await next_message(c, {"content_live"}))["live"] is False
            await until(lambda: shows_people(c.latest), 10, "people on c after the share")
        finally:
            await presenter.close()
            for w in watchers:
                await w.close()
            for site in (a, b, c):
                await site.close()

    run_async(scenario())
    chair.post(f"/api/conferences/{cid}/end")


def test_raised_hand_is_approved_unmuted_and_heard(server: RunningServer, chair: httpx.Client) -> None:
    cid = create(chair, "举手发言测试")

    async def scenario() -> None:
        a = await join(server, cid, A)
        b = await join(server, cid, B)
        try:
            for site in (a, b):  # the chair mutes everyone
                r = await asyncio.to_thread(chair.post, f"/api/conferences/{cid}/ops",
                                            json={"op": "mute", "site": site.participant_id})
                assert r.status_code == 200
            await asyncio.sleep(1.0)
            a.audio_peak = 0
            await asyncio.sleep(1.5)
            assert a.audio_peak < 300, a.audio_peak  # b is muted: a hears nothing
            await b.signalling.send(json.dumps({"type": "raise_hand"}))
            assert (await next_message(b, {"hand"}))["state"] == "raised"
            await b.signalling.send(json.dumps({"type": "lower_hand"}))  # at once: a client in a loop
            too_fast = await next_message(b, {"hand", "hand_refused"})
            assert too_fast["type"] == "hand_refused" and too_fast["code"] == "too_fast", too_fast
            st = await asyncio.to_thread(content_state, chair, cid)
            assert [h["site_id"] for h in st["hands"]] == [b.participant_id] and st["hands"][0]["via"] == "web"
            assert st["hands"][0]["raised_at"]
            bad = await asyncio.to_thread(chair.post, f"/api/conferences/{cid}/hands",
                                          json={"action": "approve", "site": a.participant_id})
            assert bad.status_code == 400 and bad.json()["code"] == "not_raised"
            ok = await asyncio.to_thread(chair.post, f"/api/conferences/{cid}/hands",
                                         json={"action": "approve", "site": b.participant_id})
            assert ok.status_code == 200 and ok.json()["hands"] == []
            assert (await next_message(b, {"hand"}))["state"] == "approved"
            room = (await asyncio.to_thread(chair.get, f"/api/conferences/{cid}")).json()
            site_b = next(s for s in room["sites"] if s["site_id"] == b.participant_id)
            assert not site_b["muted"] and room["broadcast"] == b.participant_id  # unmuted and broadcast
            a.audio_peak = 0
            await until(lambda: a.audio_peak > 2000, 10, "b's tone heard by a")
            await until(lambda: a.latest is not None and at(a.latest, 0.5, 0.5) == B, 10, "b broadcast")
        finally:
            await a.close()
            await b.close()

    run_async(scenario())
    chair.post(f"/api/conferences/{cid}/end")


def test_content_api_refuses_bad_input(server: RunningServer, chair: httpx.Client) -> None:
    cid = create(chair, "内容接口测试")
    base = f"/api/conferences/{cid}"
    assert chair.post(base + "/content", json={"action": "grant", "site": "nobody"}).json()["code"] == "not_site"
    assert chair.post(base + "/content", json={"action": "grant"}).status_code == 400
    assert chair.post(base + "/content", json={"action": "explode"}).status_code == 422
    assert chair.post(base + "/content", json={"action": "layout", "layout": "7x7"}).status_code == 422
    assert chair.post(base + "/hands", json={"action": "settings", "raise_keys": "*x"}).status_code == 400
    assert chair.post(base + "/hands", json={"action": "settings", "raise_keys": "*2"}).status_code == 400  # = lower
    st = content_state(chair, cid)
    assert (st["raise_keys"], st["lower_keys"], st["approve"]) == ("*1", "*2", "broadcast")  # nothing changed
    r = chair.post(base + "/hands", json={"action": "settings", "raise_keys": "#5", "approve": "pane",
                                          "mute_others": True})
    assert r.status_code == 200 and (r.json()["raise_keys"], r.json()["approve"], r.json()["mute_others"]) \
        == ("#5", "pane", True)
    assert chair.post(base + "/content", json={"action": "policy", "policy": "chair"}).json()["policy"] == "chair"
    taken = chair.post(base + "/content", json={"action": "take"}).json()
    assert taken["holder"] == "chair:chair"
    assert chair.get("/api/conferences/99999999/content").status_code == 404
    viewer = server.login("viewer")
    assert viewer.post(base + "/content", json={"action": "revoke"}).status_code == 403
    assert viewer.get(base + "/content").status_code == 403
    assert server.client().get(base + "/content").status_code == 401
    chair.post(f"{base}/end")


# -- headless Chromium: the join page's buttons and the chair console -------------------------------

def fake_screen(frame: Any, fx: float, fy: float) -> bool:
    """Chromium's fake screen (--use-fake-ui-for-media-stream + fake devices): its green ground, which
    arrives as YUV near (0, 0, 0): far from black (16, 128, 128) and from every palette colour (Y 128)."""
    y, u, v = yuv_at(frame, *point(frame, fx, fy), radius=6 if frame.width >= 640 else 3)
    return y < 100 and u < 60 and v < 60


def shows_fake_screen(frame: Any) -> bool:
    """The fake screen in the content pane (top 80 %), b's colour in the speaker strip."""
    return (frame is not None and fake_screen(frame, 0.2, 0.3) and fake_screen(frame, 0.8, 0.6)
            and B in [at(frame, x, 0.9) for x in (0.3, 0.5, 0.7)])


def test_chromium_shares_screen_second_is_refused_chair_revokes_and_approves_hand(
        server: RunningServer, chair: httpx.Client, artifacts_dir: Path) -> None:
    from tests.browser import chromium, sign_in

    cid = create(chair, "浏览器共享测试")
    assert chair.post(f"/api/conferences/{cid}/ops", json={"op": "layout", "layout": "2"}).status_code == 200
    holder: dict[str, WebRtcTestClient] = {}

    def join_page(page: Any, name: str) -> str:
        page.goto(server.url + f"/join/{cid}")
        page.wait_for_selector("[data-testid=camera] option", state="attached", timeout=10_000)
        page.fill("[data-testid=name]", name)
        page.click("[data-testid=join-button]")
        page.wait_for_selector("[data-testid=call]:not([hidden])", timeout=20_000)
        return str(page.eval_on_selector("#join", "e => e.dataset.participant"))

    def status(page: Any, contains: str, timeout: int = 20_000) -> str:
        page.wait_for_function("t => document.querySelector('[data-testid=content-status]').textContent.includes(t)",
                               arg=contains, timeout=timeout)
        return str(page.inner_text("[data-testid=content-status]"))

    def wait(predicate: Callable[[], bool], within: float, what: str) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(what)
            time.sleep(0.1)

    def drive() -> None:
        b = holder["b"]
        with chromium() as browser:
            c1, c2, c3 = browser.new_context(), browser.new_context(), browser.new_context()
            presenter, other, console = c1.new_page(), c2.new_page(), c3.new_page()
            p_id = join_page(presenter, "主讲会场")
            o_id = join_page(other, "第二会场")
            console.goto(server.url + "/login")
            sign_in(console, "chair", server.passwords["chair"])
            console.wait_for_url(server.url + "/")
            console.goto(server.url + f"/conference#{cid}")
            console.wait_for_selector("[data-testid=room]:not([hidden])", timeout=15_000)
            # 共享屏幕: getDisplayMedia (Chromium's fake screen) on a second peer connection.
            presenter.click("[data-testid=share]")
            assert "正在共享" in status(presenter, "正在共享")
            assert presenter.inner_text("[data-testid=share]") == "停止共享"
            try:
                wait(lambda: shows_fake_screen(b.latest), 25, "the shared screen in b's content pane")
            finally:
                if b.latest is not None:
                    b.latest.to_image().save(artifacts_dir / "content-chromium-screen.png")  # type: ignore[no-untyped-call]
            console.wait_for_function(
                "id => document.querySelector('[data-testid=content-holder]').dataset.holder === id",
                arg=p_id, timeout=5000)
            assert console.inner_text("[data-testid=content-holder]") == "主讲会场"
            console.wait_for_function("document.querySelector('[data-testid=content-live]').dataset.live === '1'",
                                      timeout=10_000)
            # The other browser gets the content as a second stream too (its content video plays 1080p).
            other.wait_for_function("document.querySelector('[data-testid=content-video]').videoWidth === 1920",
                                    timeout=20_000)
            # A second presenter: refused with a clear message; nothing changes.
            other.click("[data-testid=share]")
            message = status(other, "正在共享内容")
            assert "主讲会场" in message
            assert other.inner_text("[data-testid=share]") == "共享屏幕"
            time.sleep(1.0)
            assert content_state(chair, cid)["holder"] == p_id and shows_fake_screen(b.latest)
            console.screenshot(path=str(artifacts_dir / "content-chair-console.png"), full_page=True)
            # The chair revokes on the console: the presenter is told, everyone sees people again.
            console.click("[data-testid=content-revoke]")
            assert "收回" in status(presenter, "主席已收回")
            try:
                wait(lambda: b.latest is not None and not fake_screen(b.latest, 0.2, 0.3)
                     and not fake_screen(b.latest, 0.8, 0.6), 15, "people after the revoke")
            finally:
                if b.latest is not None:
                    b.latest.to_image().save(artifacts_dir / "content-after-revoke.png")  # type: ignore[no-untyped-call]
            assert presenter.inner_text("[data-testid=share]") == "共享屏幕"
            other.wait_for_selector("[data-testid=content-video]", state="hidden", timeout=5000)
            console.wait_for_function("document.querySelector('[data-testid=content-holder]').dataset.holder === ''",
                                      timeout=5000)
            # 举手: the other site raises its hand; the chair approves it on the console.
            for pid in (p_id, o_id):
                assert chair.post(f"/api/conferences/{cid}/ops", json={"op": "mute", "site": pid}).status_code == 200
            other.click("[data-testid=hand]")
            assert "等待主席" in status(other, "已举手")
            assert other.inner_text("[data-testid=hand]") == "放下手"
            console.wait_for_selector(f"[data-testid=hand-{o_id}]", timeout=5000)
            assert "第二会场" in console.inner_text(f"[data-testid=hand-{o_id}]")
            time.sleep(1.0)
            b.audio_peak = 0
            time.sleep(1.5)
            assert b.audio_peak < 300, b.audio_peak  # both browsers muted: b hears nothing
            console.click(f"[data-testid=approve-{o_id}]")
            status(other, "主席已批准")
            room = chair.get(f"/api/conferences/{cid}").json()
            assert room["broadcast"] == o_id
            assert not next(s for s in room["sites"] if s["site_id"] == o_id)["muted"]
            wait(lambda: b.audio_peak > 1000, 10, "the approved browser heard in b's mix")
            console.wait_for_selector(f"[data-testid=hand-{o_id}]", state="detached", timeout=5000)
            other.screenshot(path=str(artifacts_dir / "content-hand-approved.png"), full_page=True)

    async def scenario() -> None:
        holder["b"] = await join(server, cid, B)
        try:
            await asyncio.to_thread(drive)
        finally:
            await holder["b"].close()

    run_async(scenario())
    chair.post(f"/api/conferences/{cid}/end")
