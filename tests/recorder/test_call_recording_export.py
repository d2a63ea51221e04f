"""Exported emergency-call recordings verify offline, and every tampering is named (issue 13).

The bundle is made by the recorder's log service (`recorder.call_recordings`) and checked by
`commandcenter verify-call-export` as an inspector would run it: a separate process, exit status
and report, never a traceback.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import wave
import zipfile
from pathlib import Path

import numpy as np
import pytest

from recorder.call_recordings import CallRecordingLogService
from recorder.signing import KeyStore, public_key_pem
from recorder.transparency_log import MemoryLogStorage, TransparencyLog
from recorder.verify_call import verify_call_export

ROOT = Path(__file__).resolve().parents[2]


def make_wav(path: Path, seconds: float = 1.0) -> Path:
    t = np.arange(int(48000 * seconds)) / 48000
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes((6000 * np.sin(2 * np.pi * 450 * t)).astype("<i2").tobytes())
    return path


@pytest.fixture
async def bundle(tmp_path: Path) -> tuple[Path, TransparencyLog]:
    log = TransparencyLog(MemoryLogStorage(), KeyStore(tmp_path / "keys"))
    await log.open()
    service = CallRecordingLogService(log)
    wav = make_wav(tmp_path / "20261207T010000Z-abc.wav")
    data = wav.read_bytes()
    index = await service.append_call_recording("CALL20261207-abcdef", wav.name, hashlib.sha256(data).hexdigest(),
                                                len(data), 1_796_000_000_000, 1_796_000_001_000)
    dest = tmp_path / "export.zip"
    await service.export_call_recording(wav, index, dest, call_id="CALL20261207-abcdef", user="inspector1",
                                        reason="投诉核查")
    return dest, log


def rewrite(src: Path, dest: Path, change: dict[str, bytes | None]) -> Path:
    """A copy of the zip with some members replaced (bytes), removed (None) or added."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        for name in zin.namelist():
            if name in change:
                if change[name] is not None:
                    zout.writestr(name, change[name])  # type: ignore[arg-type]
            else:
                zout.writestr(name, zin.read(name))
        for name, data in change.items():
            if name not in zin.namelist() and data is not None:
                zout.writestr(name, data)
    return dest


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "commandcenter", "verify-call-export", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def codes(path: Path, key: bytes | None = None) -> list[tuple[str, str]]:
    return [(p.code, p.subject) for p in verify_call_export(path, key).problems]


async def test_export_verifies_offline_and_names_its_contents(bundle: tuple[Path, TransparencyLog]) -> None:
    dest, log = bundle
    report = verify_call_export(dest, public_key_pem(log.public_key(log.keys.current().key_id)))
    assert report.ok, report.format()
    assert report.call_id == "CALL20261207-abcdef" and report.request["reason"] == "投诉核查"
    assert report.tree_size == 2  # the recording's leaf and the export's own access leaf
    done = cli(str(dest))
    assert done.returncode == 0 and "校验通过" in done.stdout and "CALL20261207-abcdef" in done.stdout, done


async def test_tampering_is_named_without_traceback(bundle: tuple[Path, TransparencyLog], tmp_path: Path) -> None:
    dest, log = bundle
    with zipfile.ZipFile(dest) as z:
        wav = z.read("recording.wav")
        manifest = z.read("manifest.json")
        head = z.read("tree_head.json")
    cut = bytearray(wav)
    cut[5000] ^= 0x01  # one bit of audio changed
    assert codes(rewrite(dest, tmp_path / "a.zip", {"recording.wav": bytes(cut)})) == [
        ("hash_mismatch", "recording.wav")]
    assert codes(rewrite(dest, tmp_path / "b.zip", {"recording.wav": None})) == [
        ("missing_recording", "recording.wav")]
    edited = manifest.replace("投诉核查".encode(), "其他原因".encode())
    assert codes(rewrite(dest, tmp_path / "c.zip", {"manifest.json": edited})) == [
        ("manifest_signature", "manifest.json")]
    sth = json.loads(head)
    sth["tree_size"] = 1
    assert codes(rewrite(dest, tmp_path / "d.zip", {"tree_head.json": json.dumps(sth).encode()}))[0] == (
        "tree_head", "tree_head.json")
    assert codes(rewrite(dest, tmp_path / "e.zip", {"extra.wav": b"x"})) == [("extra_file", "extra.wav")]
    other = KeyStore(tmp_path / "other-keys").current()
    assert codes(dest, public_key_pem(other.public_key)) == [("untrusted_key", "public_key.pem")]
    (tmp_path / "junk.zip").write_bytes(b"not a zip at all")
    assert codes(tmp_path / "junk.zip")[0][0] == "unreadable"
    # The CLI, as the inspector runs it: non-zero exit, the problem named, no traceback.
    for path, words in ((tmp_path / "a.zip", "录音内容被改动"), (tmp_path / "junk.zip", "无法读取导出包"),
                        (tmp_path / "nothing.zip", "导出包不存在")):
        done = cli(str(path))
        assert done.returncode == 1 and words in done.stdout and "Traceback" not in done.stdout + done.stderr, done
    done = cli(str(dest), "--key", str(tmp_path / "no-such-key.pem"))
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr and "no-such-key.pem" in done.stdout
