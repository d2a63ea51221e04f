"""Replay of a conference recorded on a `--role recorder` node, served by a `--role web` node (issues 17, 18).

The room runs on a `--role mcu` node; the chair on the `--role web` node starts its recording (which the
`--role recorder` node makes, content stream included) and shows a one-page deck for a few seconds.
Then, on the web node, which runs no recorder: a viewer without a grant is refused (403, audited by the
web node), an unknown id gets a clear 404, the chair grants the viewer, and headless Chromium signed in
as the viewer on the web node plays ``/replay/<id>``: the content element shows the slide's colour in
the shared interval, the people video decodes frames and advances. The view was logged once (one
access leaf in the recorder node's log, one ``recorder.view`` row) and no segment file is on the web
node. The segments crossed the node RPC in chunks whose rows are not kept. With the recorder node
stopped, the replay routes answer 503 with a clear message.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.browser import chromium, sign_in
from tests.conftest import new_database, private_tmp_dir, run_async
from tests.mcu.mcu_helpers import source_frame
from tests.noderpc.roles import RoleProcess, role_env, start_role
from tests.noderpc.test_split_recorder_content import until
from tests.noderpc.test_split_recording import DEMO, _rows
from tests.web_console.test_conference_replay import COLOUR, CONTENT_PIXEL, PEOPLE_STATE, nearest_palette

pytestmark = pytest.mark.timeout(300)  # ~50 s on a quiet machine; 115-155 s measured at load average 16-19
CAMERA = f"conf-{DEMO}"


def _body(value: object) -> dict[str, object]:
    return dict(json.loads(value) if isinstance(value, str) else value)  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.browser
def test_web_node_replays_a_recorder_nodes_conference(pg_url: str, tmp_path: Path, artifacts_dir: Path) -> None:
    db_url = new_database(pg_url, "splitreplay_")
    work = private_tmp_dir("cc-splitreplay-")
    host = start_role("mcu", role_env(db_url, work / "host", CC_DEMO__DEMO_SITES="true", CC_NODE_NAME="host-1"))
    started: list[RoleProcess] = []
    try:
        with ThreadPoolExecutor(2) as pool:  # the MCU node made the schema: these two start side by side
            starting = [pool.submit(start_role, "recorder", role_env(db_url, work / "rec", CC_NODE_NAME="rec-1",
                                                                     CC_RECORDER__SEGMENT_SECONDS="2")),
                        pool.submit(start_role, "web", role_env(db_url, work / "web", CC_NODE_NAME="web-1"))]
            for future in starting:
                with contextlib.suppress(Exception):
                    started.append(future.result())
            for future in starting:
                future.result()  # a node that did not start fails the test (the others are stopped below)
        web = started[1]
        passwords = host.passwords()
        chair = web.login("chair", passwords["chair"])
        viewer = web.login("viewer", passwords["viewer"])
        until(lambda: run_async(_rows(db_url, "SELECT 1 FROM rpc_pins WHERE kind = 'room' AND key = $1", DEMO)),
              30, "the room was never pinned")
        begun = chair.post(f"/api/conferences/{DEMO}/recording")
        assert begun.status_code == 200 and begun.json()["recording"] is True, begun.text
        until(lambda: run_async(_rows(db_url, "SELECT 1 FROM recorder_segments WHERE camera = $1", CAMERA)),
              45, "no segment written on the recorder node")
        png = tmp_path / "slide.png"
        source_frame(COLOUR, 800, 450).to_image().save(png)  # type: ignore[no-untyped-call]
        assert chair.put(f"/api/decks/{DEMO}", params={"name": "slide.png"}, content=png.read_bytes()).status_code == 200
        until(lambda: bool(chair.get(f"/api/decks/{DEMO}").json()["live"]), 20, "content live")
        time.sleep(3.0)
        assert chair.post(f"/api/decks/{DEMO}", json={"action": "stop"}).status_code == 200
        time.sleep(2.0)
        stopped = chair.delete(f"/api/conferences/{DEMO}/recording")
        assert stopped.status_code == 200 and stopped.json()["recording"] is False, stopped.text
        leaves = [_body(r["body"]) for r in run_async(_rows(
            db_url, "SELECT body FROM recorder_log_leaves WHERE kind = 'content' ORDER BY idx"))]
        assert leaves, "no content leaf"

        # The list and the info come from the recorder node; the chair sees the content span.
        listed = chair.get("/api/replay")
        assert listed.status_code == 200 and [c["conference_id"] for c in listed.json()["conferences"]] == [DEMO], \
            listed.text
        info = chair.get(f"/api/replay/{DEMO}")
        assert info.status_code == 200 and len(info.json()["content"]) == 1 and info.json()["grants"] == [], info.text

        # Refusals, judged and audited on the web node: no grant (403), an unknown or malformed id (404).
        denied = viewer.get(f"/api/replay/{DEMO}")
        assert denied.status_code == 403 and denied.json()["code"] == "not_granted", denied.text
        assert "授权" in denied.json()["detail"]
        assert viewer.post(f"/api/replay/{DEMO}/playback", json={}).status_code == 403
        refusals = run_async(_rows(db_url, "SELECT actor, outcome FROM audit_log WHERE action = 'conference.replay'"))
        assert [(r["actor"], r["outcome"]) for r in refusals] == [("viewer", "denied")] * 2, refusals
        for bad in ("99999999", "bad%20id"):
            missing = chair.get(f"/api/replay/{bad}")
            assert missing.status_code == 404 and missing.json()["code"] == "unknown", missing.text
            assert missing.json()["detail"].startswith("没有该会议的录像"), missing.text
        english = chair.get("/api/replay/99999999", params={"lang": "en"})
        assert english.status_code == 404 and "No recording" in english.json()["detail"], english.text
        assert chair.get(f"/api/replay/{DEMO}/segments/nonsense", params={"track": "people"}).status_code == 404

        granted = chair.post(f"/api/replay/{DEMO}/grants", json={"username": "viewer"})
        assert granted.status_code == 200, granted.text

        with chromium() as browser:
            page = browser.new_context(locale="zh-CN").new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(web.url + f"/login?next=/replay/{DEMO}")
            sign_in(page, "viewer", passwords["viewer"])
            page.wait_for_selector("[data-testid=replay-stage][data-ready='1']", timeout=30_000)
            assert "内容共享时段" in page.inner_text("[data-testid=replay-content-info]")
            middle = (int(leaves[0]["start_ms"]) + int(leaves[-1]["end_ms"])) // 2  # type: ignore[call-overload]
            page.evaluate(f"window.replayPlayer.seekWall({middle})")
            pixel = page.wait_for_function(CONTENT_PIXEL, timeout=30_000).json_value()
            assert nearest_palette(pixel) == COLOUR, pixel
            people = page.wait_for_function(PEOPLE_STATE, timeout=20_000).json_value()
            assert people["w"] > 0 and people["lit"] > 0.3, people
            page.evaluate(f"window.replayPlayer.seekWall({int(leaves[0]['start_ms']) - 3000})")  # type: ignore[call-overload]
            page.evaluate("window.replayPlayer.play(true)")
            start = page.evaluate("document.getElementById('people-video').currentTime")
            page.wait_for_function(f"document.getElementById('people-video').currentTime > {start} + 1",
                                   timeout=20_000)
            decoded = page.evaluate("document.getElementById('people-video').getVideoPlaybackQuality()"
                                    ".totalVideoFrames")
            assert decoded > 10, decoded
            page.screenshot(path=str(artifacts_dir / "split-replay.png"), full_page=True)
            assert errors == [], errors

        # One logged view: one access leaf in the recorder node's log, one recorder.view row.
        views = [_body(r["body"]) for r in run_async(_rows(
            db_url, "SELECT body FROM recorder_log_leaves WHERE kind = 'access' AND body->>'user' = 'viewer'"))]
        assert len(views) == 1 and views[0]["cameras"] == [CAMERA], views
        audited = run_async(_rows(db_url, "SELECT actor FROM audit_log WHERE action = 'recorder.view' AND target = $1",
                                  CAMERA))
        assert [r["actor"] for r in audited] == ["viewer"], audited
        assert not list((work / "web").rglob("*.mp4")), "segment files on the web node"
        # The segment bytes travelled as reads: their request rows are gone (the playback's is kept).
        after = run_async(_rows(db_url, "SELECT method FROM rpc_requests WHERE method LIKE 'replay.%'"))
        assert [r["method"] for r in after] == ["replay.playback"], after

        # The recorder node stopped: a clear 503, in the user's language.
        started[0].stop()
        gone = chair.get(f"/api/replay/{DEMO}")
        assert gone.status_code == 503 and gone.json()["code"] == "node_gone", gone.text
        assert gone.json()["detail"].startswith("保存该会议录像的录像节点未在运行"), gone.text
        assert chair.get("/api/replay", params={"lang": "en"}).json()["detail"].startswith("The recorder node")
    except BaseException:
        time.sleep(1.0)  # a server error is logged after its response was sent
        for role in [host, *started]:
            print(f"---- {role.role} node ----", *role.output[-60:], sep="\n")
        raise
    finally:
        for role in reversed(started):
            role.stop()
        host.stop()
        shutil.rmtree(work, ignore_errors=True)
