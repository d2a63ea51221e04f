"""Inspector API against a running system recording the demo halls' synthetic cameras.

Real `commandcenter up`, real PostgreSQL, real GStreamer RTSP cameras, real recorder: search,
timeline, logged playback (and the refusal to serve unlogged footage), bookmarks, legal holds,
export bundles that verify offline, watermarked viewing copies, signed heads; every bad request
gets a clear 4xx and logs nothing; other roles are refused.
"""
from __future__ import annotations

import io
import json
import os
import signal
import time
import zipfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import asyncpg
import av
import httpx
import pytest

from recorder.verify import verify_export
from tests.conftest import RunningServer, run_async

pytestmark = pytest.mark.slow

SERVER_ENV = {"CC_RECORDER__DEMO_CAMERAS": "true", "CC_RECORDER__SEGMENT_SECONDS": "2"}
HALL = "hall-city"
CAM1, CAM2 = "cam-city-w01", "cam-city-w02"
HALL_CAMS = ["cam-city-w01", "cam-city-w02", "cam-city-w03", "cam-city-w04"]
OTHER_HALL_CAM = "cam-yunan-d-w01"


def db_value(server: RunningServer, sql: str, *args: Any) -> Any:
    async def query() -> Any:
        conn = await asyncpg.connect(server.db_url)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()
    return run_async(query())


def access_leaves(server: RunningServer) -> int:
    return int(db_value(server, "SELECT count(*) FROM recorder_log_leaves WHERE kind = 'access'"))


def view_audits(server: RunningServer) -> int:
    return int(db_value(server, "SELECT count(*) FROM audit_log WHERE action IN ('recorder.view', 'recorder.export')"))


@pytest.fixture(scope="module")
def inspector(server: RunningServer) -> Iterator[httpx.Client]:
    with closing(server.login("inspector")) as client:
        yield client


@pytest.fixture(scope="module")
def inspector2(server: RunningServer) -> Iterator[httpx.Client]:
    """A second inspector account (created by the admin through the API)."""
    with closing(server.login("admin")) as admin:
        response = admin.post("/api/users", json={"username": "inspector2", "password": "Insp3ctor-two!x",
                                                  "role": "inspector", "display_name": "检查员二"})
        assert response.status_code == 201, response.text
    with closing(server.login("inspector2", "Insp3ctor-two!x")) as client:
        yield client


@pytest.fixture(scope="module")
def recorded(inspector: httpx.Client) -> tuple[int, int]:
    """A range in which the first two windows of the city hall both have a few seconds of footage."""
    deadline = time.monotonic() + 60
    while True:
        now = int(time.time() * 1000)
        data = inspector.get("/api/inspect/search", params={"hall": HALL, "start_ms": now - 120_000,
                                                             "end_ms": now}).json()
        spans = {c["id"]: [s for s in c["spans"] if s["kind"] == "recorded"] for c in data["cameras"]}
        if all(spans[c] and spans[c][-1]["end_ms"] - spans[c][0]["start_ms"] >= 6000 for c in (CAM1, CAM2)):
            start = max(spans[c][0]["start_ms"] for c in (CAM1, CAM2))
            end = min(spans[c][-1]["end_ms"] for c in (CAM1, CAM2))
            return start, end
        assert time.monotonic() < deadline, f"demo cameras did not record: {data}"
        time.sleep(1.0)


def test_roles_other_than_inspector_are_refused(server: RunningServer, recorded: tuple[int, int]) -> None:
    start, end = recorded
    with server.client() as anonymous:
        assert anonymous.get("/api/inspect/cameras").status_code == 401
        page = anonymous.get("/inspect")
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
    for role in ("viewer", "dispatcher", "chair"):
        with closing(server.login(role)) as client:
            assert client.get("/inspect").status_code == 403
            assert client.get("/api/inspect/cameras").status_code == 403
            assert client.get("/api/inspect/search", params={"hall": HALL, "start_ms": start,
                                                               "end_ms": end}).status_code == 403
            before = access_leaves(server)
            response = client.post("/api/inspect/playback", json={"cameras": [CAM1], "start_ms": start,
                                                                   "end_ms": end, "reason": "curious"})
            assert response.status_code == 403
            assert access_leaves(server) == before
            assert client.post("/api/inspect/holds", json={"cameras": [CAM1], "start_ms": start, "end_ms": end,
                                                           "reason": "x"}).status_code == 403
    with closing(server.login("admin")) as admin:  # admins may open everything
        assert admin.get("/api/inspect/cameras").status_code == 200


def test_page_and_cameras(inspector: httpx.Client) -> None:
    page = inspector.get("/inspect")
    assert page.status_code == 200 and "录像检查" in page.text and "inspect.js" in page.text
    english = inspector.get("/inspect", params={"lang": "en"})
    assert "Recording review" in english.text and "Synchronised playback" in english.text
    halls = {h["id"]: h for h in inspector.get("/api/inspect/cameras").json()["halls"]}
    assert HALL in halls and halls[HALL]["name"] == "云浮市政务服务中心"
    cams = [c["id"] for w in halls[HALL]["windows"] for c in w["cameras"]]
    assert cams == HALL_CAMS


def test_search_timeline_and_gaps(inspector: httpx.Client, recorded: tuple[int, int]) -> None:
    start, end = recorded
    # a range reaching from before the recorder started into the future: both ends explained
    data = inspector.get("/api/inspect/search", params={"window": "hall-city-w01", "start_ms": start - 3_600_000,
                                                        "end_ms": end + 3_600_000}).json()
    assert [c["id"] for c in data["cameras"]] == [CAM1]
    spans = data["cameras"][0]["spans"]
    kinds = [s["kind"] for s in spans]
    assert "recorded" in kinds and not data["no_recording"]
    assert spans[0]["kind"] == "gap" and spans[0]["reason"] == "before_recording"
    assert spans[-1]["kind"] == "future"
    # the spans tile the range without overlap
    assert spans[0]["start_ms"] == start - 3_600_000 and spans[-1]["end_ms"] == end + 3_600_000
    assert all(a["end_ms"] <= b["start_ms"] for a, b in zip(spans, spans[1:], strict=False))
    by_camera = inspector.get("/api/inspect/search", params=[("camera", CAM1), ("camera", CAM2),
                                                             ("start_ms", start), ("end_ms", end)]).json()
    assert [c["id"] for c in by_camera["cameras"]] == [CAM1, CAM2]
    assert all(c["recorded_ms"] > 0 for c in by_camera["cameras"])


def test_no_recording_in_range_names_the_nearest_spans(server: RunningServer, inspector: httpx.Client,
                                                       recorded: tuple[int, int]) -> None:
    start, _ = recorded
    past = start - 86_400_000
    data = inspector.get("/api/inspect/search", params={"hall": HALL, "start_ms": past,
                                                        "end_ms": past + 600_000}).json()
    assert data["no_recording"] is True
    assert data["nearest"] and {n["camera"] for n in data["nearest"]} <= set(HALL_CAMS)
    assert all(n["start_ms"] >= past for n in data["nearest"])
    before = (access_leaves(server), view_audits(server))
    response = inspector.post("/api/inspect/playback", json={"cameras": [CAM1, CAM2], "start_ms": past,
                                                             "end_ms": past + 600_000, "reason": "投诉核查"})
    assert response.status_code == 404
    detail = response.json()["detail"]
    assert detail["code"] == "no_recording" and detail["nearest"]
    assert (access_leaves(server), view_audits(server)) == before


@pytest.mark.parametrize("body, status, code", [
    ({"cameras": [CAM1], "start_ms": 2000, "end_ms": 1000, "reason": "r"}, 400, "bad_range"),
    ({"cameras": [CAM1], "start_ms": 1000, "end_ms": 1000, "reason": "r"}, 400, "bad_range"),
    ({"cameras": [CAM1], "start_ms": -5, "end_ms": 1000, "reason": "r"}, 400, "bad_range"),
    ({"cameras": [CAM1], "start_ms": 0, "end_ms": 13 * 3600 * 1000, "reason": "r"}, 400, "range_too_long"),
    ({"cameras": ["cam-nowhere"], "start_ms": 1000, "end_ms": 2000, "reason": "r"}, 404, "unknown_camera"),
    ({"cameras": [*HALL_CAMS, "cam-yunan-d-w02"], "start_ms": 1000, "end_ms": 2000, "reason": "r"}, 400,
     "too_many_cameras"),
    ({"cameras": [CAM1, OTHER_HALL_CAM], "start_ms": 1000, "end_ms": 2000, "reason": "r"}, 400, "mixed_halls"),
    ({"cameras": [], "start_ms": 1000, "end_ms": 2000, "reason": "r"}, 400, "no_cameras"),
    ({"cameras": [CAM1], "start_ms": 1000, "end_ms": 2000}, 400, "reason_required"),
    ({"cameras": [CAM1], "start_ms": 1000, "end_ms": 2000, "reason": "   "}, 400, "reason_required"),
    ({"cameras": [CAM1], "start_ms": 1000, "end_ms": 2000, "reason": "x" * 501}, 400, "reason_too_long"),
])
def test_bad_playback_requests_are_refused_and_log_nothing(server: RunningServer, inspector: httpx.Client,
                                                           recorded: tuple[int, int], body: dict[str, Any],
                                                           status: int, code: str) -> None:
    start, end = recorded
    # shift valid-looking ranges onto real footage so only the flaw under test can cause the refusal
    if code not in ("bad_range", "range_too_long"):
        body = {**body, "start_ms": start, "end_ms": end}
    before = (access_leaves(server), view_audits(server))
    response = inspector.post("/api/inspect/playback", json=body)
    assert response.status_code == status, response.text
    assert response.json()["detail"]["code"] == code
    assert (access_leaves(server), view_audits(server)) == before


def test_malformed_requests(inspector: httpx.Client) -> None:
    assert inspector.post("/api/inspect/playback", json={"cameras": [CAM1], "start_ms": "soon", "end_ms": 2,
                                                         "reason": "r"}).status_code == 422
    assert inspector.post("/api/inspect/playback", json={"cameras": [CAM1], "start_ms": 1, "end_ms": 2,
                                                         "reason": "r", "extra": 1}).status_code == 422
    assert inspector.get("/api/inspect/search", params={"start_ms": 1, "end_ms": 2}).status_code == 400
    assert inspector.get("/api/inspect/search", params={"hall": "hall-nowhere", "start_ms": 1,
                                                        "end_ms": 2}).status_code == 404
    assert inspector.get("/api/inspect/search", params={"hall": HALL, "start_ms": 5,
                                                        "end_ms": 2}).status_code == 400
    # without the CSRF header a cookie session may not change anything
    token = inspector.headers.pop("X-CSRF-Token")
    try:
        assert inspector.post("/api/inspect/playback", json={"cameras": [CAM1], "start_ms": 1, "end_ms": 2,
                                                             "reason": "r"}).status_code == 403
    finally:
        inspector.headers["X-CSRF-Token"] = token


def test_playback_logs_the_view_and_guards_the_bytes(server: RunningServer, inspector: httpx.Client,
                                                     inspector2: httpx.Client, recorded: tuple[int, int]) -> None:
    start, end = recorded
    reason = f"核查投诉 {time.time()}"
    before = access_leaves(server)
    response = inspector.post("/api/inspect/playback", json={"cameras": [CAM1, CAM2], "start_ms": start,
                                                             "end_ms": end, "reason": reason})
    assert response.status_code == 200, response.text
    plan = response.json()
    assert [c["id"] for c in plan["cameras"]] == [CAM1, CAM2]
    assert all(c["segments"] and c["fps"] > 0 for c in plan["cameras"])
    first = plan["cameras"][0]["segments"][0]
    assert first["codecs"].startswith("avc1.") and first["start_ms"] < end
    # exactly one view leaf with user, cameras, range and reason; and its audit entry
    assert access_leaves(server) == before + 1
    leaf = json.loads(db_value(server, "SELECT body::text FROM recorder_log_leaves WHERE kind = 'access'"
                                       " ORDER BY idx DESC LIMIT 1"))
    assert (leaf["action"], leaf["user"], leaf["reason"]) == ("view", "inspector", reason)
    assert leaf["cameras"] == [CAM1, CAM2] and (leaf["start_ms"], leaf["end_ms"]) == (start, end)
    audit = json.loads(db_value(server, "SELECT detail::text FROM audit_log WHERE action = 'recorder.view'"
                                        " AND actor = 'inspector' ORDER BY id DESC LIMIT 1"))
    assert audit["reason"] == reason and audit["leaf"] == leaf_index(server, reason)

    # the bytes: served to the viewer, decodable
    got = inspector.get(first["url"])
    assert got.status_code == 200 and got.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(got.content), mode="r") as container:
        assert sum(1 for _ in container.decode(video=0)) > 0
    # another inspector without a logged view of their own: refused, and the refusal is audited
    denied = inspector2.get(first["url"])
    assert denied.status_code == 403 and denied.json()["detail"]["code"] == "view_not_logged"
    assert db_value(server, "SELECT count(*) FROM audit_log WHERE action='recorder.segment' AND actor='inspector2'"
                            " AND outcome='denied'") >= 1
    # a segment of a camera this inspector did not view, and keys that do not exist
    other = inspector.post("/api/inspect/playback", json={"cameras": ["cam-city-w03"], "start_ms": start,
                                                          "end_ms": end, "reason": "r"})
    assert other.status_code == 200
    w3_url = other.json()["cameras"][0]["segments"][0]["url"]
    assert inspector2.get(w3_url).status_code == 403
    assert inspector.get("/api/inspect/segments/" + first["key"].replace(".mp4", "9.mp4")).status_code == 404
    assert inspector.get("/api/inspect/segments/../../keys/log.pem").status_code == 404
    # once the second inspector logs a view of their own, they get the bytes
    own = inspector2.post("/api/inspect/playback", json={"cameras": [CAM1], "start_ms": first["start_ms"],
                                                         "end_ms": first["end_ms"], "reason": "复核"})
    assert own.status_code == 200
    assert inspector2.get(first["url"]).status_code == 200


def leaf_index(server: RunningServer, reason: str) -> int:
    return int(db_value(server, "SELECT idx FROM recorder_log_leaves WHERE kind='access' AND body->>'reason'=$1",
                        reason))


def test_bookmarks_are_shared(server: RunningServer, inspector: httpx.Client, inspector2: httpx.Client,
                              recorded: tuple[int, int]) -> None:
    start, end = recorded
    at = (start + end) // 2
    created = inspector.post("/api/inspect/bookmarks", json={"camera": CAM2, "at_ms": at,
                                                             "note": "办事群众情绪激动"})
    assert created.status_code == 201, created.text
    seen = inspector2.get("/api/inspect/bookmarks", params=[("camera", CAM1), ("camera", CAM2),
                                                            ("start_ms", start), ("end_ms", end)]).json()
    mine = [b for b in seen if b["id"] == created.json()["id"]]
    assert mine and mine[0]["note"] == "办事群众情绪激动" and mine[0]["created_by"] == "inspector"
    assert inspector.get("/api/inspect/search", params={"hall": HALL, "start_ms": start, "end_ms": end}
                         ).json()["bookmarks"]
    assert inspector.post("/api/inspect/bookmarks", json={"camera": "cam-nowhere", "at_ms": at}).status_code == 404
    assert inspector.post("/api/inspect/bookmarks", json={"camera": CAM1, "at_ms": -1}).status_code == 400
    assert db_value(server, "SELECT count(*) FROM audit_log WHERE action = 'recorder.bookmark'") >= 1


def test_legal_hold_place_and_lift(server: RunningServer, inspector: httpx.Client, inspector2: httpx.Client,
                                   recorded: tuple[int, int]) -> None:
    start, end = recorded

    def leaves() -> int:
        return int(db_value(server, "SELECT count(*) FROM recorder_log_leaves WHERE kind='legal_hold'"))

    before = leaves()
    assert inspector.post("/api/inspect/holds", json={"cameras": [CAM1], "start_ms": start, "end_ms": end}
                          ).json()["detail"]["code"] == "reason_required"
    assert inspector.post("/api/inspect/holds", json={"cameras": [CAM1], "start_ms": end, "end_ms": start,
                                                      "reason": "r"}).status_code == 400
    assert leaves() == before
    placed = inspector.post("/api/inspect/holds", json={"cameras": [CAM1, CAM2], "start_ms": start, "end_ms": end,
                                                        "reason": "信访件 2026-118 证据"})
    assert placed.status_code == 201, placed.text
    hold_id = placed.json()["id"]
    listed = {h["id"]: h for h in inspector2.get("/api/inspect/holds").json()}
    assert listed[hold_id]["placed_by"] == "inspector" and not listed[hold_id]["lifted"]
    search = inspector.get("/api/inspect/search", params={"hall": HALL, "start_ms": start, "end_ms": end}).json()
    assert hold_id in {h["id"] for h in search["holds"]}
    assert inspector2.post(f"/api/inspect/holds/{hold_id}/lift", json={"reason": ""}).status_code == 400
    assert inspector2.post("/api/inspect/holds/nohold/lift", json={"reason": "x"}).status_code == 404
    lifted = inspector2.post(f"/api/inspect/holds/{hold_id}/lift", json={"reason": "已结案"})
    assert lifted.status_code == 200
    again = inspector2.post(f"/api/inspect/holds/{hold_id}/lift", json={"reason": "已结案"})
    assert again.status_code == 409 and again.json()["detail"]["code"] == "hold_lifted"
    assert leaves() == before + 2
    assert db_value(server, "SELECT count(*) FROM audit_log WHERE action LIKE 'recorder.hold.%'"
                            " AND target = $1", hold_id) == 2


def test_export_bundle_verifies_offline(server: RunningServer, inspector: httpx.Client, inspector2: httpx.Client,
                                        recorded: tuple[int, int], tmp_path: Path) -> None:
    start, end = recorded
    before = access_leaves(server)
    assert inspector.post("/api/inspect/exports", json={"cameras": [CAM1], "start_ms": start, "end_ms": end}
                          ).status_code == 400
    assert access_leaves(server) == before
    made = inspector.post("/api/inspect/exports", json={"cameras": [CAM1, CAM2], "start_ms": start,
                                                        "end_ms": end, "reason": "移送案件审理室"})
    assert made.status_code == 201, made.text
    info = made.json()
    assert info["segments"] >= 2 and access_leaves(server) == before + 1
    download = inspector.get(info["url"])
    assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(download.content)
    report = verify_export(bundle)
    assert report.ok, report.format()
    with zipfile.ZipFile(bundle) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["request"]["user"] == "inspector" and manifest["request"]["reason"] == "移送案件审理室"
    # an export belongs to the inspector who made it
    assert inspector2.get(info["url"]).status_code == 404
    assert inspector.get("/api/inspect/exports/../../keys.zip").status_code == 404


def test_watermarked_viewing_copy(server: RunningServer, inspector: httpx.Client, recorded: tuple[int, int],
                                  tmp_path: Path) -> None:
    start, end = recorded
    too_long = inspector.post("/api/inspect/viewing-copies", json={"camera": CAM1, "start_ms": start,
                                                                   "end_ms": start + 11 * 60_000, "reason": "r"})
    assert too_long.status_code == 400
    made = inspector.post("/api/inspect/viewing-copies", json={"camera": CAM1, "start_ms": start,
                                                               "end_ms": min(end, start + 4000), "reason": "复核"})
    assert made.status_code == 201, made.text
    assert made.json()["frames"] > 0
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(inspector.get(made.json()["url"]).content)
    with av.open(str(copy)) as container:
        assert sum(1 for _ in container.decode(video=0)) == made.json()["frames"]


def test_signed_head_and_consistency(inspector: httpx.Client, recorded: tuple[int, int]) -> None:
    first = inspector.get("/api/inspect/head").json()
    head = first["tree_head"]
    assert head["tree_size"] >= 1 and len(head["root_hash"]) == 64 and "BEGIN PUBLIC KEY" in first["public_key"]
    with_proof = inspector.get("/api/inspect/head", params={"kept_size": max(1, head["tree_size"] // 2)}).json()
    assert isinstance(with_proof["consistency_proof"], list)
    assert inspector.get("/api/inspect/head", params={"kept_size": 0}).status_code == 400
    assert inspector.get("/api/inspect/head", params={"kept_size": head["tree_size"] + 10**6}).status_code == 400
    checked = inspector.post("/api/inspect/head/check", json={"tree_head": head}).json()
    assert checked["consistent"] is True
    forged = {**head, "root_hash": "00" * 32}
    bad = inspector.post("/api/inspect/head/check", json={"tree_head": forged}).json()
    assert bad["consistent"] is False and bad["detail"]
    assert inspector.post("/api/inspect/head/check", json={"tree_head": {"tree_size": 3}}).status_code == 400


def _descendants(pid: int) -> list[int]:
    """Child processes of `pid` and theirs (from /proc: every thread's children)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *_descendants(child)]
    return found


def test_a_camera_going_down_is_explained_on_the_timeline(server: RunningServer, inspector: httpx.Client,
                                                          recorded: tuple[int, int]) -> None:
    """Last in this module: stops the demo cameras (the server's own child process) for good."""
    cameras = [p for p in _descendants(server.process.pid)
               if "synthetic_camera.py" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]
    assert len(cameras) == 1, cameras
    os.kill(cameras[0], signal.SIGKILL)
    killed_at = int(time.time() * 1000)
    deadline = time.monotonic() + 30
    while True:
        now = int(time.time() * 1000)
        data = inspector.get("/api/inspect/search", params={"camera": CAM1, "start_ms": killed_at - 60_000,
                                                             "end_ms": now}).json()
        cam = data["cameras"][0]
        tail = cam["spans"][-1]
        if cam["state"] != "recording" and tail["kind"] == "gap" and tail["reason"] == "camera_down":
            break
        assert time.monotonic() < deadline, cam
        time.sleep(1.0)
    assert tail["cause"] and tail["end_ms"] == now
    assert any(s["kind"] == "recorded" for s in cam["spans"])
    # the health list shows it too
    halls = inspector.get("/api/inspect/cameras").json()["halls"]
    states = {c["id"]: c["state"] for h in halls for w in h["windows"] for c in w["cameras"]}
    assert states[CAM1] in ("connecting", "disconnected", "error")
