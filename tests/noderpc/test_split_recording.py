"""Recording control from a `--role web` node: the room's `--role all` node (MCU and recorder in one
process) records it; segments land in the shared database's recorder index; a recording is pinned."""
from __future__ import annotations

import shutil
import time

import asyncpg
import pytest

from tests.conftest import new_database, private_tmp_dir, run_async
from tests.noderpc.roles import role_env, start_role

DEMO = "80000001"


async def _rows(db_url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(db_url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


@pytest.mark.slow
def test_web_node_starts_and_stops_a_recording_on_the_hosting_node(pg_url: str) -> None:
    db_url = new_database(pg_url, "splitrec_")
    work = private_tmp_dir("cc-splitrec-")
    host = start_role("all", role_env(db_url, work / "all", CC_RECORDER__SEGMENT_SECONDS="2",
                                      CC_DEMO__DEMO_SITES="true"))
    web = None
    try:
        web = start_role("web", role_env(db_url, work / "web"))
        chair = web.login("chair", host.passwords()["chair"])
        deadline = time.monotonic() + 20
        while chair.get(f"/api/conferences/{DEMO}/recording").status_code != 404:
            assert time.monotonic() < deadline, "the room was never pinned"
            time.sleep(0.3)
        idle = chair.get(f"/api/conferences/{DEMO}/recording")
        assert idle.json() == {**idle.json(), "available": True, "recording": False}
        started = chair.post(f"/api/conferences/{DEMO}/recording")
        assert started.status_code == 200 and started.json()["recording"] is True, started.text
        deadline = time.monotonic() + 40
        while len(run_async(_rows(db_url, "SELECT size FROM recorder_segments WHERE camera = $1",
                                  f"conf-{DEMO}"))) < 2:
            assert time.monotonic() < deadline, "no segments written on the hosting node"
            time.sleep(0.5)
        pins = run_async(_rows(db_url, "SELECT p.node_id FROM rpc_pins p WHERE kind = 'recording' AND key = $1", DEMO))
        assert len(pins) == 1 and pins[0]["node_id"].split("/")[1] == "all", pins
        assert chair.get(f"/api/conferences/{DEMO}/recording").json()["recording"] is True
        stopped = chair.delete(f"/api/conferences/{DEMO}/recording")
        assert stopped.status_code == 200 and stopped.json()["recording"] is False, stopped.text
        again = chair.delete(f"/api/conferences/{DEMO}/recording")
        assert again.status_code == 404 and "Traceback" not in again.text
        admin = web.login("admin", host.passwords()["admin"])
        actions = [(e["action"], e["outcome"]) for e in
                   admin.get("/api/audit", params={"action": "conference.recording"}).json()]
        assert ("conference.recording.start", "ok") in actions and ("conference.recording.stop", "ok") in actions
    finally:
        if web is not None:
            web.stop()
        host.stop()
        shutil.rmtree(work, ignore_errors=True)
