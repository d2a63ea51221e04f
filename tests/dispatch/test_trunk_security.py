"""The emergency trunk's trust model and the call recordings' protection (issue 13), with real SIPp and
real PostgreSQL.

* A spoofed trunk: SIPp bound to 127.0.0.2 (not a trunk peer) sends an INVITE to 110 with a
  P-Asserted-Identity: refused 403, audited with who/what/from where, nothing queued. Once
  127.0.0.2 is a trunk peer, the same INVITE goes through and the desk's number is the PAI one,
  marked verified. From a peer whose identity is not trusted, the PAI is ignored and the number is
  shown unverified.
* Two calls with the same SIP Call-ID get two recordings (server-generated names, created
  exclusively), each sealed as a leaf in the recorder's transparency log; retention deletes them
  later, audited, and the leaves stay.
"""
from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from dispatch.calltaking.errors import DeskError
from dispatch.calltaking.trunk_trust import TrunkPeer
from recorder.leaves import CallRecordingLeaf, RetentionLeaf, decode_leaf
from tests.dispatch.calltaking_samples import finish, sipp
from tests.dispatch.desk_kit import Desk, running_desk, wait_until

pytestmark = pytest.mark.timeout(120)

LOOPBACK = TrunkPeer("127.0.0.1/32", name="loopback")
STRANGER = "127.0.0.2"


@pytest.fixture
async def desk(fresh_db_url: str, tmp_path: Path) -> AsyncIterator[Desk]:
    async with running_desk(fresh_db_url, tmp_path, retention_days=30, with_log=True, peers=(LOOPBACK,),
                            audited=True) as running:
        yield running


async def test_spoofed_trunk_is_refused_and_audited_then_accepted_with_trusted_pai_once_configured(desk: Desk) -> None:
    port = desk.endpoint.config.port
    # 1. 127.0.0.2 is not a trunk peer: 403, audited, nothing queued, no recording.
    out = await finish(await sipp("emergency_pai_403.xml", port, local_ip=STRANGER))
    assert "Successful call" in out
    assert desk.desk.live == {} and desk.trunk.calls == {}
    rows = await desk.core.db.fetch("SELECT * FROM audit_log WHERE action = 'emergency.invite_refused'")
    assert len(rows) == 1, rows
    entry = rows[0]
    assert entry["outcome"] == "denied" and entry["target"] == "110"
    assert entry["source"].startswith(f"udp:{STRANGER}:")  # from where: the packet's real source
    assert entry["actor"] == "sip:13712345678"  # who it claimed to be
    assert entry["detail"]["reason"] == "source address is not a trunk peer"
    assert "13712345678" in entry["detail"]["p_asserted_identity"] and "13900000001" in entry["detail"]["from"]
    assert await desk.core.db.fetchval("SELECT count(*) FROM emergency_calls") == 0
    assert not list((desk.core.settings.var_dir / "calls").glob("*.wav"))

    # 2. The operator's SBC at 127.0.0.2 is configured as a trunk peer: the same INVITE goes through and
    #    the desk shows the network-asserted number (PAI), verified; not the From's 13900000001.
    desk.trunk.set_peers((LOOPBACK, TrunkPeer(STRANGER, name="operator-sbc")))
    with desk.core.bus.subscribe("call.*") as events:
        proc = await sipp("emergency_pai.xml", port, local_ip=STRANGER)
        await wait_until(lambda: len(desk.desk.live) == 1)
        queued = await asyncio.wait_for(events.get(), 5)
    call_id = next(iter(desk.desk.live))
    assert queued.payload["call"]["number"] == "13712345678"
    assert queued.payload["call"]["number_verified"] is True
    row = await desk.core.db.fetchrow("SELECT * FROM emergency_calls WHERE id = $1", call_id)
    assert row is not None
    assert row["number"] == "13712345678" and row["caller_verified"] is True
    assert row["trunk_peer"] == "operator-sbc" and row["caller_source"].startswith(f"udp:{STRANGER}:")
    await desk.desk.end_call(call_id, "calltaker1", "advice")
    await finish(proc)

    # 3. A peer that may deliver calls but is outside the trust domain (trust_identity = false): PAI
    #    ignored, the From number shown unverified.
    desk.trunk.set_peers((LOOPBACK, TrunkPeer(STRANGER, trust_identity=False, name="pbx")))
    proc = await sipp("emergency_pai.xml", port, local_ip=STRANGER)
    await wait_until(lambda: len(desk.desk.live) == 1)
    call_id = next(iter(desk.desk.live))
    view = await desk.desk.call_view(call_id)
    assert view["number"] == "13900000001" and view["number_verified"] is False
    await desk.desk.end_call(call_id, "calltaker1", "advice")
    await finish(proc)
    assert await desk.core.db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'emergency.invite_refused'") == 1


async def test_no_trunk_peers_refuses_every_emergency_call_even_from_loopback(desk: Desk) -> None:
    desk.trunk.set_peers(())
    out = await finish(await sipp("emergency_pai_403.xml", desk.endpoint.config.port))
    assert "Successful call" in out and desk.desk.live == {}
    detail = await desk.core.db.fetchval("SELECT detail FROM audit_log WHERE action = 'emergency.invite_refused'")
    assert detail["reason"] == "no trunk peers configured"


async def test_same_call_id_twice_gives_two_sealed_recordings_then_retention_deletes_them(desk: Desk) -> None:
    port = desk.endpoint.config.port
    call_ids: list[str] = []
    for _ in range(2):  # the same SIP Call-ID both times (a caller controls it)
        proc = await sipp("emergency_wait.xml", port, extra=("-cid_str", "same-call-id@attacker.example"))
        await wait_until(lambda: len(desk.desk.live) == 1)
        call_id = next(iter(desk.desk.live))
        await asyncio.sleep(0.5)  # some audio in the recording
        await desk.desk.end_call(call_id, "calltaker1", "advice")
        await finish(proc)
        call_ids.append(call_id)
    await wait_until(lambda: desk.sealed_log.size == 2)  # sealed when each call ended
    rows = await desk.core.db.fetch("SELECT * FROM emergency_calls ORDER BY offered_at")
    assert [r["id"] for r in rows] == call_ids
    assert rows[0]["sip_key"].split("|")[0] == rows[1]["sip_key"].split("|")[0] == "same-call-id@attacker.example"
    paths = [Path(r["recording_path"]) for r in rows]
    assert paths[0] != paths[1] and all(p.is_file() for p in paths)
    assert all("attacker" not in p.name and "same" not in p.name for p in paths)  # server-generated names
    for row, path in zip(rows, paths, strict=True):  # neither was overwritten: each file still has its logged hash
        leaf = decode_leaf(await desk.sealed_log.leaf_bytes(int(row["recording_leaf"])))
        assert isinstance(leaf, CallRecordingLeaf)
        assert leaf.call_id == row["id"] and leaf.name == path.name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == leaf.sha256 == row["recording_sha256"]
        assert leaf.size == path.stat().st_size > 48000  # half a second and more of 48 kHz audio

    # Retention (30 days here): nothing is due now; 31 days later both recordings go, audited.
    assert await desk.desk.recordings.apply_recording_retention() == []
    later = desk.desk.clock() + timedelta(days=31)
    assert await desk.desk.recordings.apply_recording_retention(later) == call_ids
    assert not any(p.exists() for p in paths)
    audits = await desk.core.db.fetch(
        "SELECT * FROM audit_log WHERE action = 'call.recording_delete' ORDER BY id")
    assert [a["target"] for a in audits] == call_ids and all(a["actor"] == "retention" for a in audits)
    with pytest.raises(DeskError):
        await desk.desk.recordings.recording_for(call_ids[0], "dispatcher1")
    # The leaves stay (they prove the recordings existed), and a retention leaf explains the deletion.
    assert desk.sealed_log.size == 3
    retention = decode_leaf(await desk.sealed_log.leaf_bytes(2))
    assert isinstance(retention, RetentionLeaf) and retention.segment_leaves == (0, 1)
    assert all(c in retention.policy for c in call_ids)
    assert await desk.desk.recordings.apply_recording_retention(later) == []  # once only


async def test_recording_left_unsealed_is_sealed_by_the_next_run(desk: Desk) -> None:
    """A recording that ended while no log was reachable (or the process stopped first) is sealed later."""
    service_log = desk.desk.recording_log
    desk.desk.recording_log = None
    proc = await sipp("emergency_wait.xml", desk.endpoint.config.port)
    await wait_until(lambda: len(desk.desk.live) == 1)
    call_id = next(iter(desk.desk.live))
    await desk.desk.end_call(call_id, "calltaker1", "advice")
    await finish(proc)

    async def hashed() -> bool:
        return bool(await desk.core.db.fetchval("SELECT recording_sha256 FROM emergency_calls WHERE id = $1", call_id))
    for _ in range(100):
        if await hashed():
            break
        await asyncio.sleep(0.05)
    assert desk.sealed_log.size == 0
    desk.desk.recording_log = service_log
    assert await desk.desk.recordings.seal_pending_recordings(desk.desk.clock()) == [call_id]
    row = await desk.core.db.fetchrow("SELECT * FROM emergency_calls WHERE id = $1", call_id)
    assert row is not None and row["recording_leaf"] == 0
    leaf = decode_leaf(await desk.sealed_log.leaf_bytes(0))
    assert isinstance(leaf, CallRecordingLeaf) and leaf.call_id == call_id
    data = await asyncio.to_thread(Path(row["recording_path"]).read_bytes)
    assert leaf.sha256 == hashlib.sha256(data).hexdigest()
    assert await desk.desk.recordings.seal_pending_recordings(desk.desk.clock()) == []  # once only
