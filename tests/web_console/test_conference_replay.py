"""Replaying a recorded conference with its content stream (issue 18), against a running server.

The chair records the demo conference (demo sites: moving people video and tones) and shows a
one-page deck (a PNG of one palette colour) as content for about five seconds in the middle. Then:

* the recording's segments overlapping that interval carry a second video stream (ffprobe: two
  video streams, the content one 1920x1080 and as long as the content showed in the segment), and
  the content leaves of the transparency log name the interval;
* a viewer without a grant gets 403 on the API and on a segment, each with an audit row;
* the chair grants the viewer; the viewer's headless Chromium opens ``/replay/<id>``, seeks into the
  interval and finds the deck's colour in the content element (pixel check) and moving people video
  beside it; the view is logged (access leaf + ``recorder.view`` audit row);
* the chair revokes the grant: the viewer is refused again.
"""
from __future__ import annotations

import io
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg
import av
import pytest

from tests.browser import chromium, sign_in
from tests.conftest import RunningServer, run_async
from tests.mcu.mcu_helpers import source_frame
from tests.web_console.test_content_deck import var_dir, wait

SERVER_ENV = {"CC_RECORDER__SEGMENT_SECONDS": "2"}
DEMO = "80000001"
CAMERA = f"conf-{DEMO}"
COLOUR = 9  # the deck's palette colour
PALETTE_SIZE = 25


def rgb(i: int) -> tuple[int, int, int]:
    image = source_frame(i, 64, 36).to_image()  # type: ignore[no-untyped-call]
    return tuple(image.getpixel((32, 18)))


def nearest_palette(pixel: list[int]) -> int:
    return min(range(PALETTE_SIZE), key=lambda i: sum((a - b) ** 2 for a, b in zip(rgb(i), pixel, strict=True)))


def fetch(server: RunningServer, query: str, *args: object) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(server.db_url)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return run_async(run())


def audit(server: RunningServer, action: str, after_id: int = 0) -> list[dict[str, Any]]:
    """The audit rows of one action written after row ``after_id`` (a rerun shares the server)."""
    return [dict(r) for r in fetch(server, "SELECT actor, action, target, outcome FROM audit_log"
                                            " WHERE action = $1 AND id > $2 ORDER BY id", action, after_id)]


def ffprobe(path: Path) -> list[dict[str, Any]]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return list(json.loads(out)["streams"])


# The content element's centre pixel, once it shows the picture at the replay clock's time.
CONTENT_PIXEL = """() => {
  const v = document.getElementById('content-video');
  const s = window.replayPlayer.state();
  if (!s || v.readyState < 2 || Math.abs(v.currentTime - s.t) > 0.15 || v.seeking) return null;
  if (!document.getElementById('content-overlay').hidden) return null;
  const c = document.createElement('canvas'); c.width = 192; c.height = 108;
  const g = c.getContext('2d'); g.drawImage(v, 0, 0, 192, 108);
  return Array.from(g.getImageData(96, 54, 1, 1).data.slice(0, 3));
}"""
PEOPLE_STATE = """() => {
  const v = document.getElementById('people-video');
  if (v.readyState < 2) return null;
  const c = document.createElement('canvas'); c.width = 160; c.height = 90;
  const g = c.getContext('2d'); g.drawImage(v, 0, 0, 160, 90);
  const d = g.getImageData(0, 0, 160, 90).data; let lit = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 60) lit++;
  return {t: v.currentTime, w: v.videoWidth, lit: lit / (160 * 90)};
}"""


@pytest.mark.slow
@pytest.mark.browser
def test_replay_with_content_stream_grants_and_audit(server: RunningServer, tmp_path: Path,
                                                     artifacts_dir: Path) -> None:
    chair = server.login("chair")
    viewer = server.login("viewer")
    chair.delete(f"/api/replay/{DEMO}/grants/viewer")  # a rerun shares the server: start ungranted
    since = int(fetch(server, "SELECT coalesce(max(id), 0) AS id FROM audit_log")[0]["id"])
    assert chair.post(f"/api/conferences/{DEMO}/recording").status_code == 200
    time.sleep(3.0)
    png = tmp_path / "slide.png"
    source_frame(COLOUR, 800, 450).to_image().save(png)  # type: ignore[no-untyped-call]
    shared_at = time.time()
    r = chair.put(f"/api/decks/{DEMO}", params={"name": "slide.png"}, content=png.read_bytes())
    assert r.status_code == 200, r.text
    wait(lambda: bool(chair.get(f"/api/conferences/{DEMO}/content").json()["live"]), 20, "content live")
    live_at = time.time()
    time.sleep(5.0)
    stopped_at = time.time()
    assert chair.post(f"/api/decks/{DEMO}", json={"action": "stop"}).status_code == 200
    time.sleep(3.0)
    assert chair.delete(f"/api/conferences/{DEMO}/recording").status_code == 200

    # The recording: content leaves name the interval; those segments have two video streams.
    bodies = [json.loads(r["body"]) if isinstance(r["body"], str) else r["body"] for r in fetch(
        server, "SELECT body FROM recorder_log_leaves WHERE kind = 'content' ORDER BY idx")]
    leaves = [b for b in bodies if b["end_ms"] > shared_at * 1000 - 1000]  # this run's (a rerun shares the server)
    assert leaves and all(b["camera"] == CAMERA and b["codec"].startswith("avc1.") for b in leaves), leaves
    first, last = leaves[0]["start_ms"], leaves[-1]["end_ms"]
    assert shared_at * 1000 - 500 <= first <= live_at * 1000 + 500, (shared_at, live_at, first)
    assert abs(last - stopped_at * 1000) <= 1500, (stopped_at, last)
    for a, b in zip(leaves, leaves[1:], strict=False):
        assert b["start_ms"] - a["end_ms"] <= 200, leaves  # one continuous interval
    files = {p.name: p for p in var_dir(server).rglob("*.mp4")}
    keyed = {leaf["key"]: leaf for leaf in leaves}
    probed = 0
    for key, leaf in keyed.items():
        streams = ffprobe(files[Path(key).name])
        videos = [s for s in streams if s["codec_type"] == "video"]
        assert len(videos) == 2 and [s["codec_type"] for s in streams].count("audio") == 1, streams
        assert (videos[1]["width"], videos[1]["height"]) == (1920, 1080) and videos[1]["codec_name"] == "h264"
        shown = (leaf["end_ms"] - leaf["start_ms"]) / 1000
        assert abs(float(videos[1]["duration"]) - shown) <= 0.25, (videos[1]["duration"], shown)
        probed += 1
    assert probed >= 2
    all_segments = fetch(server, "SELECT store_key FROM recorder_segments WHERE camera = $1", CAMERA)
    plain = [r["store_key"] for r in all_segments if r["store_key"] not in keyed]
    assert plain and len([s for s in ffprobe(files[Path(plain[0]).name]) if s["codec_type"] == "video"]) == 1

    # The inspector's player (one SourceBuffer) gets those segments without the content track.
    inspector = server.login("inspector")
    plan = inspector.post("/api/inspect/playback", json={
        "cameras": [CAMERA], "start_ms": leaves[0]["start_ms"], "end_ms": leaves[-1]["end_ms"], "reason": "核查"})
    assert plan.status_code == 200, plan.text
    url = next(s["url"] for s in plan.json()["cameras"][0]["segments"] if s["key"] in keyed)
    with av.open(io.BytesIO(inspector.get(url).content)) as served:
        assert [st.type for st in served.streams] == ["video", "audio"]

    # No grant: 403 (API and segment bytes), each audited.
    denied = viewer.get(f"/api/replay/{DEMO}")
    assert denied.status_code == 403 and denied.json()["code"] == "not_granted"
    assert viewer.post(f"/api/replay/{DEMO}/playback", json={}).status_code == 403
    assert viewer.get(f"/api/replay/{DEMO}/segments/{next(iter(keyed))}?track=content").status_code == 403
    assert viewer.get("/api/replay").json()["conferences"] == []
    refusals = [a for a in audit(server, "conference.replay", since) if a["actor"] == "viewer"]
    assert len(refusals) == 3 and {a["outcome"] for a in refusals} == {"denied"}
    # Bad grants change nothing: an unknown user, a non-viewer; the viewer cannot grant.
    assert chair.post(f"/api/replay/{DEMO}/grants", json={"username": "nobody"}).status_code == 400
    assert chair.post(f"/api/replay/{DEMO}/grants", json={"username": "inspector"}).status_code == 400
    assert viewer.post(f"/api/replay/{DEMO}/grants", json={"username": "viewer"}).status_code == 403
    granted = chair.post(f"/api/replay/{DEMO}/grants", json={"username": "viewer"})
    assert granted.status_code == 200 and [g["username"] for g in granted.json()["grants"]] == ["viewer"]
    info = viewer.get(f"/api/replay/{DEMO}").json()
    assert len(info["content"]) == 1 and "grants" not in info

    with chromium() as browser:
        page = browser.new_context(locale="zh-CN").new_page()
        page.goto(server.url + f"/login?next=/replay/{DEMO}")
        sign_in(page, "viewer", server.passwords["viewer"])
        page.wait_for_selector("[data-testid=replay-stage][data-ready='1']", timeout=20_000)
        assert "全市视频会议" in page.inner_text("[data-testid=replay-name]")
        assert "内容共享时段" in page.inner_text("[data-testid=replay-content-info]")
        middle = (leaves[0]["start_ms"] + leaves[-1]["end_ms"]) // 2
        page.evaluate(f"window.replayPlayer.seekWall({middle})")
        pixel = page.wait_for_function(CONTENT_PIXEL, timeout=30_000).json_value()
        assert nearest_palette(pixel) == COLOUR, (pixel, rgb(COLOUR))
        people = page.wait_for_function(PEOPLE_STATE, timeout=20_000).json_value()
        assert people["w"] > 0 and people["lit"] > 0.3, people
        page.screenshot(path=str(artifacts_dir / "conference-replay.png"), full_page=True)
        # Outside the interval the content element says so; the people video plays on.
        page.evaluate(f"window.replayPlayer.seekWall({leaves[0]['start_ms'] - 2000})")
        page.wait_for_function("!document.getElementById('content-overlay').hidden", timeout=10_000)
        page.evaluate("window.replayPlayer.play(true)")
        page.wait_for_function(f"document.getElementById('people-video').currentTime > {people['t']} + 1",
                               timeout=20_000)
        assert page.get_by_test_id("replay-grants").is_hidden()  # viewers do not manage grants

    views = fetch(server, "SELECT body FROM recorder_log_leaves WHERE kind = 'access' AND body->>'user' = 'viewer'")
    assert views and all(CAMERA in (json.loads(v["body"]) if isinstance(v["body"], str) else v["body"])["cameras"]
                         for v in views)
    assert any(a["actor"] == "viewer" and a["target"] == CAMERA for a in audit(server, "recorder.view", since))
    assert [a["outcome"] for a in audit(server, "conference.replay.grant", since)] == ["failed", "failed", "ok"]

    revoked = chair.delete(f"/api/replay/{DEMO}/grants/viewer")
    assert revoked.status_code == 200 and revoked.json()["grants"] == []
    assert viewer.get(f"/api/replay/{DEMO}").status_code == 403
    assert chair.delete(f"/api/replay/{DEMO}/grants/viewer").status_code == 404
    assert [a["outcome"] for a in audit(server, "conference.replay.revoke", since)] == ["ok", "failed"]
    # The chair replays without a grant, and sees the grants.
    assert "grants" in chair.get(f"/api/replay/{DEMO}").json()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_replay_api_fuzzed_by_viewer_and_chair(server: RunningServer) -> None:
    """schemathesis on /api/replay with a viewer's and a chair's session: no 5xx, no answer the role
    matrix forbids (a viewer's grant and revoke are refused). Bounded: a few examples per operation."""
    from security.api_fuzz import describe, run_role, summary

    admin = server.login("admin")
    schema = admin.get("/openapi.json").json()
    assert schema["paths"]["/api/replay/{conference_id}/grants"]["post"]["x-roles"] == ["admin", "chair", "operator"]
    runs = []
    for role in ("viewer", "chair"):
        client = server.login(role)
        headers = {"Cookie": f"cc_session={client.cookies['cc_session']}",
                   "X-CSRF-Token": client.headers["X-CSRF-Token"]}
        runs.append(run_role(schema, server.url, role, headers, 4, only=("/api/replay",)))
    totals = summary(runs)
    assert totals["run_errors"] == 0 and totals["server_errors"] == 0 and totals["violations"] == 0, describe(runs)
    assert totals["requests"] >= 6 * 2, describe(runs)
