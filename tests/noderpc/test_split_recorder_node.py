"""Recording control from a web node for a conference hosted by an MCU node, recorded by a separate
`--role recorder` node: the recorder node pulls the MCU node's recording tap stream (node RPC
``tap.open`` + one TCP stream: mcu/recording_stream.py, recorder/remote_tap.py) and writes the
segments into its own store; the recording is pinned to the recorder node; stop commits it."""
from __future__ import annotations

import shutil
import time

import pytest

from tests.conftest import new_database, private_tmp_dir, run_async
from tests.noderpc.roles import RoleProcess, role_env, start_role
from tests.noderpc.test_split_recording import DEMO, _rows

pytestmark = pytest.mark.timeout(240)


@pytest.mark.slow
def test_web_node_records_an_mcu_conference_on_a_recorder_node(pg_url: str) -> None:
    db_url = new_database(pg_url, "splitrecnode_")
    work = private_tmp_dir("cc-splitrecnode-")
    mcu = start_role("mcu", role_env(db_url, work / "mcu", CC_DEMO__DEMO_SITES="true", CC_NODE_NAME="mcu-1"))
    started: list[RoleProcess] = []
    try:
        recorder = start_role("recorder", role_env(db_url, work / "rec", CC_RECORDER__SEGMENT_SECONDS="2",
                                                   CC_NODE_NAME="rec-1"))
        started.append(recorder)
        web = start_role("web", role_env(db_url, work / "web", CC_NODE_NAME="web-1"))
        started.append(web)
        chair = web.login("chair", mcu.passwords()["chair"])
        deadline = time.monotonic() + 20
        while not run_async(_rows(db_url, "SELECT 1 FROM rpc_pins WHERE kind = 'room' AND key = $1", DEMO)):
            assert time.monotonic() < deadline, "the room was never pinned"
            time.sleep(0.3)
        idle = chair.get(f"/api/conferences/{DEMO}/recording")
        assert idle.status_code == 200 and idle.json()["available"] is True and idle.json()["recording"] is False
        begun = chair.post(f"/api/conferences/{DEMO}/recording")
        assert begun.status_code == 200 and begun.json()["recording"] is True, begun.text
        deadline = time.monotonic() + 45
        while len(run_async(_rows(db_url, "SELECT size FROM recorder_segments WHERE camera = $1",
                                  f"conf-{DEMO}"))) < 2:
            assert time.monotonic() < deadline, "no segments written on the recorder node"
            time.sleep(0.5)
        pins = run_async(_rows(db_url, "SELECT node_id FROM rpc_pins WHERE kind = 'recording' AND key = $1", DEMO))
        assert len(pins) == 1 and pins[0]["node_id"].startswith("rec-1/recorder/"), pins
        state = chair.get(f"/api/conferences/{DEMO}/recording").json()
        assert state["recording"] is True and state["segments"] >= 2 and state["video"].startswith("H.264"), state
        written = [p for p in (work / "rec").rglob("*") if p.is_file() and p.suffix in (".mp4", ".m4s", ".seg")]
        assert written, sorted(str(p) for p in (work / "rec").rglob("*"))[:40]
        assert not [p for p in (work / "mcu").rglob("*") if p.is_file() and p.suffix in (".mp4", ".m4s")]
        stopped = chair.delete(f"/api/conferences/{DEMO}/recording")
        assert stopped.status_code == 200 and stopped.json()["recording"] is False, stopped.text
        again = chair.delete(f"/api/conferences/{DEMO}/recording")
        assert again.status_code == 404 and "Traceback" not in again.text
        admin = web.login("admin", mcu.passwords()["admin"])
        actions = [(e["action"], e["outcome"]) for e in
                   admin.get("/api/audit", params={"action": "conference.recording"}).json()]
        assert ("conference.recording.start", "ok") in actions and ("conference.recording.stop", "ok") in actions
    finally:
        for role in reversed(started):
            role.stop()
        mcu.stop()
        shutil.rmtree(work, ignore_errors=True)
