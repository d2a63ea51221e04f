"""Export bundles and offline verification, including tamper tests."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from recorder.export import ExportError, ExportSegment, export_bundle
from recorder.ingest import sha256_file
from recorder.leaves import GapLeaf, SegmentLeaf
from recorder.signing import KeyStore, public_key_pem
from recorder.store import DirectoryStore, segment_key
from recorder.transparency_log import MemoryLogStorage, TransparencyLog
from recorder.verify import verify_export
from tests.recorder.recorder_media import decoded_frames, write_h264_mp4

T0 = 1_795_000_000_000


async def recorded_log(tmp_path: Path) -> tuple[TransparencyLog, DirectoryStore, list[ExportSegment], int]:
    """Two cameras, 4 one-second segments each; cam2 has a 2 s gap (logged) after its 2nd segment."""
    store = DirectoryStore(tmp_path / "recordings")
    tlog = TransparencyLog(MemoryLogStorage(), KeyStore(tmp_path / "keys"))
    await tlog.open()
    segments: list[ExportSegment] = []
    gap_index = -1
    for cam in ("cam1", "cam2"):
        t = T0
        for i in range(4):
            if cam == "cam2" and i == 2:
                gap_index = await tlog.append(GapLeaf(cam, t, t + 2000, "TimeoutError: connection lost", "rec1"))
                t += 2000
            key = segment_key(cam, t, t + 1000)
            staging = store.staging_path(cam, f"{i}.part")
            write_h264_mp4(staging, seed=i + (10 if cam == "cam2" else 0))
            digest, size = sha256_file(staging), staging.stat().st_size
            store.commit(staging, key)
            index = await tlog.append(SegmentLeaf(cam, t, t + 1000, digest, size, "rec1", key))
            segments.append(ExportSegment(index, key))
            t += 1000
    return tlog, store, segments, gap_index


async def make_bundle(tmp_path: Path, as_zip: bool = False) -> tuple[Path, TransparencyLog]:
    tlog, store, segments, gap_index = await recorded_log(tmp_path)
    dest = tmp_path / ("bundle.zip" if as_zip else "bundle")
    result = await export_bundle(
        tlog, store, dest, user="inspector1", reason="核查投诉 2026-118", cameras=["cam1", "cam2"],
        start_ms=T0, end_ms=T0 + 6000, segments=segments, explained_leaves=[gap_index], as_zip=as_zip,
    )
    assert result.segments == 8 and result.bytes > 0
    return dest, tlog


async def test_export_spanning_a_gap_verifies(tmp_path: Path) -> None:
    dest, tlog = await make_bundle(tmp_path)
    report = verify_export(dest, trusted_key=public_key_pem(tlog.public_key(tlog.keys.current().key_id)))
    assert report.ok, report.format()
    assert len(report.segments) == 8 and not report.failing_segments
    assert [e["kind"] for e in report.explained] == ["gap"]
    assert report.request["reason"] == "核查投诉 2026-118"
    assert "校验通过" in report.format()
    # The evidence copies are the original bytes, still decodable.
    assert decoded_frames(dest / "segments/cam2/1795000004000-1795000005000.mp4") == 10
    # The export itself is the last log entry.
    assert json.loads(await tlog.leaf_bytes(tlog.size - 1))["action"] == "export"


async def test_flipping_one_byte_of_a_segment_names_it(tmp_path: Path) -> None:
    dest, _ = await make_bundle(tmp_path)
    target = dest / "segments/cam1/1795000001000-1795000002000.mp4"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    report = verify_export(dest)
    assert not report.ok
    assert report.failing_segments == ["segments/cam1/1795000001000-1795000002000.mp4"]
    assert report.problems[0].code == "hash_mismatch"
    assert "segments/cam1/1795000001000-1795000002000.mp4" in report.format()


async def test_deleted_segment_is_detected(tmp_path: Path) -> None:
    dest, _ = await make_bundle(tmp_path)
    (dest / "segments/cam2/1795000000000-1795000001000.mp4").unlink()
    report = verify_export(dest)
    assert not report.ok
    assert report.failing_segments == ["segments/cam2/1795000000000-1795000001000.mp4"]
    assert report.problems[0].code == "missing_segment"


async def test_any_byte_change_anywhere_fails(tmp_path: Path) -> None:
    dest, _ = await make_bundle(tmp_path)
    assert verify_export(dest).ok
    files = sorted(p for p in dest.rglob("*") if p.is_file())
    for path in files:
        original = path.read_bytes()
        for pos in {0, len(original) // 3, len(original) - 1}:
            changed = bytearray(original)
            changed[pos] ^= 0x20
            path.write_bytes(bytes(changed))
            assert not verify_export(dest).ok, f"{path.relative_to(dest)} byte {pos} changed, still verified"
        path.write_bytes(original)
    assert verify_export(dest).ok
    (dest / "segments/cam1/extra.mp4").write_bytes(b"x")
    report = verify_export(dest)
    assert not report.ok and report.problems[0].code == "extra_file"


async def test_forged_bundle_with_other_key_fails_when_key_is_pinned(tmp_path: Path) -> None:
    dest, tlog = await make_bundle(tmp_path)
    other = KeyStore(tmp_path / "other").current()
    report = verify_export(dest, trusted_key=public_key_pem(other.public_key))
    assert not report.ok and report.problems[0].code == "untrusted_key"


async def test_zip_bundle_verifies_and_tampering_fails(tmp_path: Path) -> None:
    dest, _ = await make_bundle(tmp_path, as_zip=True)
    assert verify_export(dest).ok
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(dest) as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("1795000002000-1795000003000.mp4") and "cam1" in info.filename:
                data = data[:-1] + bytes([data[-1] ^ 1])
            dst.writestr(info, data)
    report = verify_export(tampered)
    assert report.failing_segments == ["segments/cam1/1795000002000-1795000003000.mp4"]


async def test_bad_requests_change_nothing(tmp_path: Path) -> None:
    tlog, store, segments, _ = await recorded_log(tmp_path)
    size = tlog.size
    for kwargs in ({"reason": "  "}, {"start_ms": T0 + 10, "end_ms": T0}):
        args = {"user": "u", "reason": "r", "cameras": ["cam1"], "start_ms": T0, "end_ms": T0 + 1, **kwargs}
        with pytest.raises(ExportError):
            await export_bundle(tlog, store, tmp_path / "b", segments=segments, **args)  # type: ignore[arg-type]
    (tmp_path / "exists").mkdir()
    with pytest.raises(ExportError):
        await export_bundle(tlog, store, tmp_path / "exists", user="u", reason="r", cameras=["cam1"],
                            start_ms=T0, end_ms=T0 + 1, segments=segments)
    assert tlog.size == size


def test_verify_garbage_paths(tmp_path: Path) -> None:
    assert verify_export(tmp_path / "nope").problems[0].code == "missing"
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    assert verify_export(tmp_path / "junk.zip").problems[0].code == "unreadable"
    (tmp_path / "empty").mkdir()
    assert not verify_export(tmp_path / "empty").ok
    shutil.rmtree(tmp_path / "empty")


async def test_commandcenter_verify_export_cli(tmp_path: Path) -> None:
    """The offline check an inspector runs: exit 0 on an intact bundle, 1 naming the bad segment."""
    import asyncio
    import subprocess
    import sys

    from tests.conftest import ROOT

    dest, _ = await make_bundle(tmp_path)

    def verify() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "commandcenter", "verify-export", str(dest)], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    ok = await asyncio.to_thread(verify)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "校验通过" in ok.stdout
    target = dest / "segments/cam1/1795000003000-1795000004000.mp4"
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF
    target.write_bytes(bytes(data))
    bad = await asyncio.to_thread(verify)
    assert bad.returncode == 1
    assert "segments/cam1/1795000003000-1795000004000.mp4" in bad.stdout
