"""Split roles: viewers watch a `--role mcu` node's live stream through a `--role web` node (issue 18).

Real processes on one embedded PostgreSQL; the MCU node (demo sites: moving pictures and tones)
serves no HTTP. The chair starts the stream on the web node; a viewer signed in on the web node
gets the LL-HLS playlist (blocking reload with ``_HLS_msn``/``_HLS_part`` passed through), the
preload-hinted part, init and a segment, and PyAV decodes them (H.264 + AAC); a watch link made on
the web node admits a viewer without an account; Chromium plays ``/watch`` from the web node through
hls.js; then the MCU node is killed and the stream
answers a clear 503 (no traceback) while the web node keeps running.
"""
from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator

import asyncpg
import av
import httpx
import pytest

from tests.conftest import run_async
from tests.noderpc.roles import RoleProcess, mcu_and_web

DEMO = "80000001"
PLAYLIST = f"/hls/{DEMO}/index.m3u8"
SEGMENT = re.compile(r"^[0-9a-f]{8}_\d+\.m4s$", re.M)


@pytest.fixture(scope="module")
def cluster(pg_url: str) -> Iterator[tuple[RoleProcess, RoleProcess, str]]:
    with mcu_and_web(pg_url, "splitstream", mcu_env={"CC_DEMO__DEMO_SITES": "true"}) as (mcu, web, db_url, work):
        yield mcu, web, db_url


def wait_for(client: httpx.Client, path: str, segments: int, within: float = 60.0) -> str:
    deadline = time.monotonic() + within
    text = ""
    while time.monotonic() < deadline:
        response = client.get(path)
        if response.status_code == 200:
            text = response.text
            if len(SEGMENT.findall(text)) >= segments:
                return text
        time.sleep(0.5)
    raise AssertionError(f"{path}: no playlist with {segments} segments in {within} s: {text!r}")


def test_viewer_watches_the_mcu_nodes_stream_through_the_web_node(
        cluster: tuple[RoleProcess, RoleProcess, str]) -> None:
    mcu, web, db_url = cluster
    assert any("no web console in this role" in line for line in mcu.output), "the MCU node serves no HTTP"
    passwords = mcu.passwords()
    chair = web.login("chair", passwords["chair"])
    viewer = web.login("viewer", passwords["viewer"])
    anonymous = httpx.Client(base_url=web.url, timeout=20.0)
    try:
        deadline = time.monotonic() + 30
        while chair.get(f"/api/conferences/{DEMO}").status_code != 200:  # pinned on the MCU node's first beat
            assert time.monotonic() < deadline, "the demo room was never pinned"
            time.sleep(0.3)
        assert chair.get(f"/api/conferences/{DEMO}/stream").status_code == 404  # not streaming yet
        assert viewer.post(f"/api/conferences/{DEMO}/stream").status_code == 403  # the role check stays here
        started = chair.post(f"/api/conferences/{DEMO}/stream")
        assert started.status_code == 200, started.text
        assert started.json()["live"] is True
        assert chair.post("/api/conferences/99999999/stream").status_code == 409  # no node hosts it

        text = wait_for(viewer, PLAYLIST, 2)
        assert "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES" in text
        assert viewer.get(PLAYLIST).headers["cache-control"] == "no-store"
        # blocking reload through the web node: the MCU node holds the request until the hinted part exists
        hint = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([0-9a-f]{8})_(\d+)\.(\d+)\.m4s"', text)
        assert hint, text
        epoch, msn, part = hint.group(1), int(hint.group(2)), int(hint.group(3))
        began = time.monotonic()
        blocked = viewer.get(PLAYLIST, params={"_HLS_msn": msn, "_HLS_part": part})
        assert blocked.status_code == 200, blocked.text
        assert time.monotonic() - began < 5.0
        assert f"{epoch}_{msn}.{part}.m4s" in blocked.text or f"{epoch}_{msn + 1}.0.m4s" in blocked.text
        # an impossible one is refused at once, as on the MCU node itself
        far = viewer.get(PLAYLIST, params={"_HLS_msn": msn + 1000})
        assert far.status_code == 400 and "Traceback" not in far.text
        # the part the new preload hint names: waited for, then served
        nxt = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)"', blocked.text)
        assert nxt
        hinted = viewer.get(f"/hls/{DEMO}/{nxt.group(1)}")
        assert hinted.status_code == 200 and hinted.headers["content-type"] == "video/iso.segment"
        assert abs(time.time() - float(hinted.headers["x-published"])) < 5.0

        init_name = re.search(r'#EXT-X-MAP:URI="([0-9a-f]{8}_init\.mp4)"', blocked.text)
        assert init_name
        init = viewer.get(f"/hls/{DEMO}/{init_name.group(1)}")
        segment = viewer.get(f"/hls/{DEMO}/{SEGMENT.findall(blocked.text)[-1]}")
        assert init.status_code == segment.status_code == 200
        assert "immutable" in segment.headers["cache-control"]
        with av.open(io.BytesIO(init.content + segment.content), mode="r") as container:
            assert sorted(s.codec_context.name for s in container.streams) == ["aac", "h264"]
            frames = list(container.decode(video=0))
            assert frames and frames[0].width >= 320
        with av.open(io.BytesIO(init.content + segment.content), mode="r") as container:
            assert len(list(container.decode(audio=0))) > 10
        independent = re.findall(r'URI="([0-9a-f]{8}_\d+\.0\.m4s)",INDEPENDENT=YES', blocked.text)
        assert independent
        parts = [viewer.get(f"/hls/{DEMO}/{name}") for name in independent[-2:]]
        for fetched in parts:  # a part starting a segment decodes on its own
            assert fetched.status_code == 200
            with av.open(io.BytesIO(init.content + fetched.content), mode="r") as container:
                assert list(container.decode(video=0))[0].key_frame
        assert viewer.get(f"/hls/{DEMO}/../index.m3u8").status_code == 404
        assert viewer.get(f"/hls/{DEMO}/{epoch}_999999.m4s").status_code == 404

        listed = viewer.get("/api/streams")
        assert listed.status_code == 200, listed.text
        assert [s["conference_id"] for s in listed.json()] == [DEMO]
        assert listed.json()[0]["viewers"] >= 1  # the web node's viewers reach the MCU node's count

        # the stream's bytes do not pile up in rpc_requests (each row is deleted once its reply is read)
        async def file_rows() -> int:
            conn = await asyncpg.connect(db_url)
            try:
                return int(await conn.fetchval("SELECT count(*) FROM rpc_requests WHERE method = 'stream.file'"))
            finally:
                await conn.close()

        assert run_async(file_rows()) <= 2, "stream.file rows kept"

        # a watch link made on the web node (signed by the MCU node) admits a viewer without an account
        link = chair.post(f"/api/conferences/{DEMO}/stream/link", json={"ttl_s": 600})
        assert link.status_code == 200, link.text
        token = link.json()["url"].split("?t=")[1]
        assert anonymous.get(f"/watch/{DEMO}", params={"t": token}).status_code == 200
        by_link = anonymous.get(f"/hls/{DEMO}/t/{token}/index.m3u8")
        assert by_link.status_code == 200 and "#EXTM3U" in by_link.text
        assert anonymous.get(f"/hls/{DEMO}/t/{'0' * len(token)}/index.m3u8").status_code == 403
        assert anonymous.get(PLAYLIST).status_code in (401, 403)

    finally:
        chair.close()
        viewer.close()
        anonymous.close()


@pytest.mark.browser
def test_chromium_plays_the_stream_from_the_web_node(cluster: tuple[RoleProcess, RoleProcess, str]) -> None:
    from tests.browser import chromium, sign_in

    mcu, web, _ = cluster
    chair = web.login("chair", mcu.passwords()["chair"])
    try:
        assert chair.post(f"/api/conferences/{DEMO}/stream").status_code == 200  # idempotent
    finally:
        chair.close()
    with chromium() as browser:
        page = browser.new_page()
        page.goto(web.url + "/login?next=/watch")
        sign_in(page, "viewer", mcu.passwords()["viewer"])
        button = page.get_by_test_id(f"stream-{DEMO}")
        button.wait_for(state="visible", timeout=20000)
        button.click()
        page.wait_for_function(
            "(() => { const v = document.querySelector('[data-testid=watch-video]');"
            " return v.currentTime > 2 && v.getVideoPlaybackQuality().totalVideoFrames > 10; })()",
            timeout=60000)
        start = page.evaluate("document.querySelector('[data-testid=watch-video]').currentTime")
        page.wait_for_timeout(2000)
        assert page.evaluate("document.querySelector('[data-testid=watch-video]').currentTime") > start + 1
        assert page.evaluate("window.watchPlayer.lowLatencyMode === true")
        assert page.get_by_test_id("watch-state").get_attribute("data-state") == "live"


def test_dead_mcu_node_gives_the_viewer_a_clear_503(cluster: tuple[RoleProcess, RoleProcess, str]) -> None:
    mcu, web, _ = cluster
    passwords = mcu.passwords()
    chair, viewer = web.login("chair", passwords["chair"]), web.login("viewer", passwords["viewer"])
    try:
        link = chair.post(f"/api/conferences/{DEMO}/stream/link", json={"ttl_s": 600})
        assert link.status_code == 200, link.text
        token = link.json()["url"].split("?t=")[1]
        mcu.kill()
        time.sleep(3.5)  # dead after 3 s without a heartbeat (test settings)
        began = time.monotonic()
        dead = viewer.get(PLAYLIST, params={"_HLS_msn": 3})
        assert dead.status_code == 503, dead.text
        assert dead.text.startswith("承载该会议的节点已停止响应") and "Traceback" not in dead.text
        assert time.monotonic() - began < 2.0, "a dead owner is refused at once"
        state = chair.get(f"/api/conferences/{DEMO}/stream", params={"lang": "en"})
        assert state.status_code == 503 and "stopped responding" in state.json()["detail"]
        with httpx.Client(base_url=web.url, timeout=20.0) as anonymous:
            assert anonymous.get(f"/hls/{DEMO}/t/{token}/index.m3u8").status_code in (403, 503)
        assert viewer.get("/api/streams").json() == []  # no live MCU node streams anything
        assert web.process.poll() is None, "the web node keeps running"
    finally:
        chair.close()
        viewer.close()
