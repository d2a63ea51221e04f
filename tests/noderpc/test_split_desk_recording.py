"""A call recording made on a `--role desk` node, played and exported from a `--role web` node
(`emergency.remote_desk`): the web node fetches it from the desk node over node RPC in chunks.

baresip (440 Hz) calls 110 on the desk node; the call-taker answers and hangs up through the web
node, then fetches the WAV from the web node (it decodes with the caller's 440 Hz); the inspector asks
for the export; both are audited by the desk node with the user's name (and the export's reason). With the
desk node stopped, the web node answers 503 with the zh-CN message, no traceback.
"""
from __future__ import annotations

import signal
import subprocess
import time

import pytest

from recorder.verify_call import verify_call_export
from tests.conftest import run_async, wait_for
from tests.noderpc.roles import desk_and_web
from tests.noderpc.test_split_recording import _rows
from tests.sip_gateway.peers import Baresip
from tests.web_console.test_desk_softphone import read_wav, tone_db
from web_console.desk_recordings import CHUNK
from web_console.i18n import translate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_web_node_plays_and_exports_a_recording_made_on_the_desk_node(pg_url: str) -> None:
    with desk_and_web(pg_url, "splitdeskrec") as (desk, web, db_url, work, sip_port):
        caller: subprocess.Popen[bytes] | None = None
        try:
            passwords = desk.passwords()
            taker = web.login("calltaker", passwords["calltaker"])
            inspector = web.login("inspector", passwords["inspector"])
            assert taker.post("/api/desk/position", json={"state": "available"}).status_code == 200
            bs = Baresip(work / "baresip", tone_hz=440)
            bs.write_config()
            caller = subprocess.Popen(["baresip", "-f", str(bs.home), "-e", f"/dial sip:110@127.0.0.1:{sip_port}"],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      cwd=str(bs.home))
            call = wait_for(lambda: next((c for c in taker.get("/api/desk/state").json()["queue"]["calls"]
                                          if c["state"] == "offered"), None), within=30.0)
            assert taker.post(f"/api/desk/calls/{call['id']}/answer").status_code == 200
            time.sleep(5.0)  # five seconds of the caller's tone on the line
            assert taker.post(f"/api/desk/calls/{call['id']}/hangup", json={"disposition": "advice"}).status_code == 200
            caller.send_signal(signal.SIGINT)
            caller.wait(10)
            sealed = "SELECT desk_node, recording_size FROM emergency_calls WHERE id = $1 AND recording_leaf IS NOT NULL"
            row = wait_for(lambda: run_async(_rows(db_url, sealed, call["id"])), within=20.0)[0]
            assert row["desk_node"].startswith("desk-1/desk/") and row["recording_size"] > 100_000, dict(row)

            wav = taker.get(f"/api/desk/calls/{call['id']}/recording")
            assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav", wav.text[:300]
            assert len(wav.content) == row["recording_size"] > CHUNK  # two chunks or more, byte for byte
            pcm, rate = read_wav(wav.content)
            assert len(pcm) > rate * 3 and tone_db(pcm, rate, 440) > 20, tone_db(pcm, rate, 440)

            exported = inspector.post(f"/api/desk/calls/{call['id']}/recording/export", json={"reason": "投诉核查"})
            assert exported.status_code == 200 and exported.headers["content-type"] == "application/zip", exported.text
            bundle = work / "call.zip"
            bundle.write_bytes(exported.content)
            report = verify_call_export(bundle)  # the desk node's own transparency log (desk-desk-1-…) proves it
            assert report.ok and report.call_id == call["id"] and report.request["user"] == "inspector", report.format()
            assert run_async(_rows(db_url, "SELECT count(*) AS n FROM rpc_requests WHERE method = 'desk.recording_chunk'"
                                   ))[0]["n"] == 0  # the chunks' rows are gone once read

            admin = web.login("admin", passwords["admin"])
            views = admin.get("/api/audit", params={"action": "call.recording_view"}).json()
            assert any(e["actor"] == "calltaker" and e["target"] == call["id"] and e["outcome"] == "ok" for e in views)
            exports = admin.get("/api/audit", params={"action": "call.recording_export"}).json()
            assert any(e["actor"] == "inspector" and e["target"] == call["id"] and "投诉核查" in str(e["detail"])
                       for e in exports), exports

            unknown = taker.get("/api/desk/calls/NOPE/recording")  # answered by the lease holder, as a single node does
            assert unknown.status_code == 409 and "没有录音" in unknown.json()["detail"], unknown.text
            desk.stop()  # the node that holds the recording is gone: 503, the zh-CN message, no traceback
            gone = taker.get(f"/api/desk/calls/{call['id']}/recording")
            assert gone.status_code == 503 and gone.json()["detail"] == translate("zh-CN", "node.recording_gone"), gone.text
        finally:
            if caller is not None and caller.poll() is None:
                caller.kill()
                caller.wait()
