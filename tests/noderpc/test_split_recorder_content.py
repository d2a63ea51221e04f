"""A conference recorded on a `--role recorder` node keeps its content stream (issue 18).

The room runs on a `--role mcu` node (it records nothing itself); the chair on a `--role web` node
starts the recording, which goes to the `--role recorder` node, and shows the slide deck (routed to
the MCU node over node RPC, web_console/deck_console.py). The recorder node pulls the room's
recording tap stream (mcu/recording_stream.py → recorder/remote_tap.py), content frames
included. The chair shows a one-page deck for about five seconds. Then, on the recorder node, as
for a local recording (tests/web_console/test_conference_replay.py): the content leaves of the
transparency log name the interval, the segments they name carry a second video stream (ffprobe:
1920x1080 H.264, as long as content showed in the segment), the others one video stream only, and
no segment is written on the hosting node.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import new_database, private_tmp_dir, run_async
from tests.mcu.mcu_helpers import source_frame
from tests.noderpc.roles import RoleProcess, role_env, start_role
from tests.noderpc.test_split_recording import DEMO, _rows

pytestmark = pytest.mark.timeout(300)
CAMERA = f"conf-{DEMO}"


def ffprobe(path: Path) -> list[dict[str, Any]]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return list(json.loads(out)["streams"])


def until(predicate: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


@pytest.mark.slow
def test_recorder_node_records_the_content_stream(pg_url: str, tmp_path: Path) -> None:
    db_url = new_database(pg_url, "splitreccontent_")
    work = private_tmp_dir("cc-splitreccontent-")
    host = start_role("mcu", role_env(db_url, work / "host", CC_DEMO__DEMO_SITES="true", CC_NODE_NAME="host-1"))
    started: list[RoleProcess] = []
    try:
        started.append(start_role("recorder", role_env(db_url, work / "rec", CC_RECORDER__SEGMENT_SECONDS="2",
                                                       CC_NODE_NAME="rec-1")))
        web = start_role("web", role_env(db_url, work / "web", CC_NODE_NAME="web-1"))
        started.append(web)
        passwords = host.passwords()
        chair = web.login("chair", passwords["chair"])
        presenter = chair  # the deck routes reach the MCU node over node RPC
        until(lambda: run_async(_rows(db_url, "SELECT 1 FROM rpc_pins WHERE kind = 'room' AND key = $1", DEMO)),
              30, "the room was never pinned")
        begun = chair.post(f"/api/conferences/{DEMO}/recording")
        assert begun.status_code == 200 and begun.json()["recording"] is True, begun.text
        until(lambda: run_async(_rows(db_url, "SELECT 1 FROM recorder_segments WHERE camera = $1", CAMERA)),
              45, "no segment written on the recorder node")
        pins = run_async(_rows(db_url, "SELECT node_id FROM rpc_pins WHERE kind = 'recording' AND key = $1", DEMO))
        assert len(pins) == 1 and pins[0]["node_id"].startswith("rec-1/recorder/"), pins

        png = tmp_path / "slide.png"
        source_frame(9, 800, 450).to_image().save(png)  # type: ignore[no-untyped-call]
        shared_at = time.time()
        shown = presenter.put(f"/api/decks/{DEMO}", params={"name": "slide.png"}, content=png.read_bytes())
        assert shown.status_code == 200, shown.text
        until(lambda: bool(presenter.get(f"/api/decks/{DEMO}").json()["live"]), 20, "content live")
        live_at = time.time()
        time.sleep(5.0)
        stopped_at = time.time()
        assert presenter.post(f"/api/decks/{DEMO}", json={"action": "stop"}).status_code == 200
        time.sleep(3.0)
        stopped = chair.delete(f"/api/conferences/{DEMO}/recording")
        assert stopped.status_code == 200 and stopped.json()["recording"] is False, stopped.text

        # The content leaves (written by the recorder node's log) name the interval, continuously.
        bodies = [json.loads(r["body"]) if isinstance(r["body"], str) else r["body"] for r in run_async(_rows(
            db_url, "SELECT body FROM recorder_log_leaves WHERE kind = 'content' ORDER BY idx"))]
        assert bodies and all(b["camera"] == CAMERA and b["codec"].startswith("avc1.") for b in bodies), bodies
        first, last = bodies[0]["start_ms"], bodies[-1]["end_ms"]
        assert shared_at * 1000 - 1000 <= first <= live_at * 1000 + 1000, (shared_at, live_at, first)
        assert abs(last - stopped_at * 1000) <= 2000, (stopped_at, last)
        for a, b in zip(bodies, bodies[1:], strict=False):
            assert b["start_ms"] - a["end_ms"] <= 200, bodies  # one continuous interval

        # Their segments have the second video stream; the others do not; all on the recorder node.
        files = {p.name: p for p in (work / "rec").rglob("*.mp4")}
        assert not list((work / "host").rglob("*.mp4"))
        keyed = {leaf["key"]: leaf for leaf in bodies}
        assert len(keyed) >= 2, bodies
        for key, leaf in keyed.items():
            streams = ffprobe(files[Path(key).name])
            videos = [s for s in streams if s["codec_type"] == "video"]
            assert len(videos) == 2 and [s["codec_type"] for s in streams].count("audio") == 1, streams
            assert (videos[1]["width"], videos[1]["height"]) == (1920, 1080) and videos[1]["codec_name"] == "h264"
            assert abs(float(videos[1]["duration"]) - (leaf["end_ms"] - leaf["start_ms"]) / 1000) <= 0.25, \
                (videos[1]["duration"], leaf)
        segments = run_async(_rows(db_url, "SELECT store_key FROM recorder_segments WHERE camera = $1", CAMERA))
        plain = [r["store_key"] for r in segments if r["store_key"] not in keyed]
        assert plain and len([s for s in ffprobe(files[Path(plain[0]).name]) if s["codec_type"] == "video"]) == 1
    finally:
        for role in reversed(started):
            role.stop()
        host.stop()
        shutil.rmtree(work, ignore_errors=True)
