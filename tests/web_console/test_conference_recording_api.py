"""The chair records a running conference from the console API; segments land in the recorder's
index and transparency log like any camera's, and the page's record button drives it."""
from __future__ import annotations

import time

import asyncpg
import pytest

from tests.browser import chromium, sign_in
from tests.conftest import RunningServer, run_async

# Demo sites give the conference moving video and tones; short segments keep the test quick.
SERVER_ENV = {"CC_RECORDER__SEGMENT_SECONDS": "2"}
DEMO = "80000001"


def segments(server: RunningServer) -> list[asyncpg.Record]:
    async def fetch() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(server.db_url)
        try:
            return list(await conn.fetch(
                "SELECT camera, size FROM recorder_segments WHERE camera = $1", f"conf-{DEMO}"))
        finally:
            await conn.close()

    return run_async(fetch())


@pytest.mark.slow
def test_record_demo_conference_through_the_api(server: RunningServer) -> None:
    chair = server.login("chair")
    viewer = server.login("viewer")
    idle = chair.get(f"/api/conferences/{DEMO}/recording")
    assert idle.status_code == 404 and idle.json()["available"] is True and idle.json()["recording"] is False
    assert viewer.post(f"/api/conferences/{DEMO}/recording").status_code == 403
    assert chair.post("/api/conferences/99999999/recording").status_code == 404
    started = chair.post(f"/api/conferences/{DEMO}/recording")
    assert started.status_code == 200 and started.json()["recording"] is True, started.text
    assert chair.post(f"/api/conferences/{DEMO}/recording").status_code == 200  # idempotent
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(segments(server)) < 2:
        time.sleep(0.5)
    assert chair.get(f"/api/conferences/{DEMO}/recording").json()["recording"] is True
    stopped = chair.delete(f"/api/conferences/{DEMO}/recording")
    assert stopped.status_code == 200 and stopped.json()["recording"] is False
    # After DELETE the recording is gone: reading or deleting it again is 404 (issue 13), and audited.
    gone = chair.get(f"/api/conferences/{DEMO}/recording")
    assert gone.status_code == 404 and gone.json()["recording"] is False
    assert chair.delete(f"/api/conferences/{DEMO}/recording").status_code == 404
    rows = segments(server)
    assert len(rows) >= 2 and all(r["size"] > 0 for r in rows)
    admin = server.login("admin")
    actions = {e["action"] for e in admin.get("/api/audit", params={"action": "conference.recording"}).json()}
    assert {"conference.recording.start", "conference.recording.stop"} <= actions
    stops = admin.get("/api/audit", params={"action": "conference.recording.stop"}).json()
    assert [e["outcome"] for e in stops[:2]] == ["failed", "ok"]  # the second DELETE, then the real stop


@pytest.mark.browser
def test_record_button_on_the_console(server: RunningServer) -> None:
    with chromium() as browser:
        page = browser.new_page()
        page.goto(server.url + "/login?next=/conference%23" + DEMO)
        sign_in(page, "operator", server.passwords["operator"])
        button = page.get_by_test_id("record")
        button.wait_for(state="visible", timeout=10000)
        assert "开始录制" in button.inner_text()
        button.click()
        page.wait_for_function("document.querySelector('[data-testid=record]').classList.contains('on')",
                               timeout=10000)
        assert "停止录制" in button.inner_text()
        button.click()
        page.wait_for_function("!document.querySelector('[data-testid=record]').classList.contains('on')",
                               timeout=10000)


@pytest.mark.slow
def test_inspector_finds_and_replays_the_recorded_conference(server: RunningServer) -> None:
    """Run after the recording test in this module: the conference shows up for inspectors."""
    inspector = server.login("inspector")
    halls = inspector.get("/api/inspect/cameras").json()["halls"]
    conference_hall = next(h for h in halls if h["id"] == "conferences")
    cameras = [c for w in conference_hall["windows"] for c in w["cameras"]]
    assert any(c["id"] == f"conf-{DEMO}" and "全市视频会议" in c["label"] for c in cameras), cameras
