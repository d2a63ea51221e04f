"""A call recording on a running `commandcenter up` (issue 13): a SIPp call to 110 is recorded, sealed
into the recorder's transparency log when it ends, exported by an inspector (audited; other roles
refused) and verified offline with `commandcenter verify-call-export`."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from recorder.verify_call import verify_call_export
from tests.conftest import RunningServer, wait_for
from tests.dispatch.calltaking_samples import SIPP_DIR, free_port

SIP_PORT = free_port()
SERVER_ENV = {"CC_SIP__UDP_PORT": str(SIP_PORT), "CC_SIP__TCP_PORT": str(SIP_PORT)}
ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(180)


def test_inspector_exports_a_sealed_call_recording_that_verifies_offline(server: RunningServer,
                                                                         tmp_path: Path) -> None:
    taker = server.login("calltaker")
    inspector = server.login("inspector")
    dispatcher = server.login("dispatcher")
    caller = subprocess.Popen(
        ["sipp", "-sf", str(SIPP_DIR / "emergency_wait.xml"), f"127.0.0.1:{SIP_PORT}", "-i", "127.0.0.1",
         "-p", str(free_port()), "-s", "110", "-m", "1", "-l", "1", "-t", "u1", "-nostdin", "-timeout", "60s",
         "-timeout_error", "-mp", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd="/tmp")
    try:
        assert taker.post("/api/desk/position", json={"state": "available"}).status_code == 200
        call = wait_for(lambda: next((c for c in taker.get("/api/desk/state").json()["queue"]["calls"]
                                      if c["state"] == "offered"), None))
        assert call["number"] == "13900000001" and call["number_verified"] is True  # loopback is a trunk peer
        assert taker.post(f"/api/desk/calls/{call['id']}/answer").status_code == 200
        time.sleep(1.0)
        assert taker.post(f"/api/desk/calls/{call['id']}/hangup", json={"disposition": "advice"}).status_code == 200
        out, _ = caller.communicate(timeout=30)
        assert caller.returncode == 0, out[-2000:]
    finally:
        if caller.poll() is None:
            caller.kill()
    url = f"/api/desk/calls/{call['id']}/recording/export"
    assert dispatcher.post(url, json={"reason": "查看"}).status_code == 403
    assert taker.post(url, json={"reason": "查看"}).status_code == 403
    assert inspector.post(url, json={"reason": ""}).status_code == 422
    # Sealed into the log when the call ended (asynchronously): poll until the export has a proof.
    exported = wait_for(lambda: (r := inspector.post(url, json={"reason": "投诉核查"})).status_code == 200 and r)
    assert exported.headers["content-type"] == "application/zip"
    bundle = tmp_path / "call.zip"
    bundle.write_bytes(exported.content)
    report = verify_call_export(bundle)
    assert report.ok and report.call_id == call["id"] and report.request["user"] == "inspector", report.format()
    done = subprocess.run([sys.executable, "-m", "commandcenter", "verify-call-export", str(bundle)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "校验通过" in done.stdout, done
    admin = server.login("admin")
    audit = admin.get("/api/audit", params={"action": "call.recording_export"}).json()
    assert any(e["actor"] == "inspector" and e["target"] == call["id"] and e["outcome"] == "ok" for e in audit)
    for c in (taker, inspector, dispatcher, admin):
        c.close()
