"""The pieces of a desk node's recording transfer (web_console/desk_recordings.py) without processes:
which live node holds a recording, and the desk node's chunked transfers (bounded, expiring)."""
from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from dispatch.calltaking.errors import DeskError
from noderpc.transport import RpcRefused
from web_console.desk_recordings import CHUNK, IDLE_S, RecordingTransfers, holder_of


def test_the_recording_is_fetched_from_its_node_or_a_later_run_of_it() -> None:
    alive = ["web-1/web/aa", "desk-b/desk/bb", "desk-a/desk/cc"]
    assert holder_of("desk-b/desk/bb", alive) == "desk-b/desk/bb"  # the standby still serves its recordings
    assert holder_of("desk-a/desk/00", alive) == "desk-a/desk/cc"  # restarted on the same var dir
    assert holder_of("desk-c/desk/dd", alive) is None  # gone: 503 node.recording_gone
    assert holder_of("desk-a/web/00", alive) is None  # another role is another var dir


class FakeRecordings:
    def __init__(self, wav: Path, export: Path) -> None:
        self.wav, self.export = wav, export

    async def recording_for(self, call_id: str, actor: str, source: str = "") -> Path:
        if call_id != "c1":
            raise DeskError(f"呼叫 {call_id} 没有录音")
        return self.wav

    async def export_recording(self, call_id: str, actor: str, reason: str, source: str = "") -> Path:
        return self.export


def test_transfers_are_chunked_refused_and_expire(tmp_path: Path) -> None:
    wav = tmp_path / "c1.wav"
    wav.write_bytes(bytes(range(256)) * (CHUNK // 100))  # a little over 2.5 chunks
    export = tmp_path / "export" / "c1.zip"
    export.parent.mkdir()
    export.write_bytes(b"zip")
    now = [0.0]
    transfers = RecordingTransfers(FakeRecordings(wav, export), clock=lambda: now[0])

    async def scenario() -> None:
        opened = await transfers.handle("recording_open", {"call_id": "c1", "actor": "calltaker"})
        assert opened["size"] == wav.stat().st_size
        got, offset = b"", 0
        while offset < opened["size"]:
            part = base64.b64decode((await transfers.handle("recording_chunk",
                                                            {"handle": opened["handle"], "offset": offset}))["data"])
            assert 0 < len(part) <= CHUNK
            got, offset = got + part, offset + len(part)
        assert got == wav.read_bytes()
        with pytest.raises(RpcRefused) as refused:
            await transfers.handle("recording_chunk", {"handle": opened["handle"], "offset": -1})
        assert refused.value.status == 400
        await transfers.handle("recording_close", {"handle": opened["handle"]})
        assert wav.exists()  # the recording itself stays
        with pytest.raises(RpcRefused) as refused:
            await transfers.handle("recording_open", {"call_id": "nope", "actor": "calltaker"})
        assert refused.value.status == 409 and refused.value.code == "desk.conflict"
        zipped = await transfers.handle("recording_export_open", {"call_id": "c1", "actor": "inspector", "reason": "r"})
        now[0] = IDLE_S + 1  # abandoned: the next request expires it and deletes the temporary zip
        with pytest.raises(RpcRefused) as refused:
            await transfers.handle("recording_chunk", {"handle": zipped["handle"], "offset": 0})
        assert refused.value.status == 410 and not export.exists() and not export.parent.exists()

    asyncio.run(scenario())
