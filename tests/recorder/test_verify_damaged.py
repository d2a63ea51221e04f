"""verify-export on damaged bundles (issue 14 item 2): every kind of damage gives a report that
names the file and what is wrong, exit status 1, and no traceback. Also: a verifier written
only from the documentation (docs/recorder.md, 说明.txt) verifies a real bundle."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

from recorder.export import README_ZH
from recorder.verify import verify_export
from tests.conftest import ROOT
from tests.recorder.test_export import make_bundle

SEGMENT = "segments/cam1/1795000001000-1795000002000.mp4"


def _rezip(src: bytes, change: Callable[[list[tuple[zipfile.ZipInfo, bytes]]], None],
           compress: int = zipfile.ZIP_STORED) -> bytes:
    """Rewrite a zip (valid CRCs) after `change` edits its (info, data) list."""
    with zipfile.ZipFile(io.BytesIO(src)) as zf:
        items = [(i, zf.read(i)) for i in zf.infolist()]
    change(items)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compress) as zf:
        for info, data in items:
            info.compress_type = compress
            zf.writestr(info, data)
    return out.getvalue()


def _data_offset(blob: bytes, name: str) -> int:
    """Where the stored bytes of entry `name` start in the zip file."""
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        info = zf.getinfo(name)
    name_len, extra_len = struct.unpack_from("<HH", blob, info.header_offset + 26)
    return int(info.header_offset) + 30 + int(name_len) + int(extra_len)


def flip_segment_byte(blob: bytes) -> bytes:
    """The issue's reproduction: one byte of a segment flipped inside the zip as downloaded."""
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        size = zf.getinfo(SEGMENT).compress_size
    at = _data_offset(blob, SEGMENT) + size // 2
    return blob[:at] + bytes([blob[at] ^ 0x01]) + blob[at + 1:]


def flip_manifest_byte(blob: bytes) -> bytes:
    at = _data_offset(blob, "manifest.json") + 40
    return blob[:at] + bytes([blob[at] ^ 0x04]) + blob[at + 1:]


def deflated_and_corrupted(blob: bytes) -> bytes:
    deflated = _rezip(blob, lambda items: None, zipfile.ZIP_DEFLATED)
    at = _data_offset(deflated, SEGMENT) + 20
    return deflated[:at] + bytes([deflated[at] ^ 0xFF]) + deflated[at + 1:]


def _set_header_field(blob: bytes, name: str, local_off: int, central_off: int, value: int) -> bytes:
    """Set a 16-bit field in both the local header and the central directory record of `name`."""
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        local, pos = zf.getinfo(name).header_offset, zf.start_dir
    out = bytearray(blob)
    struct.pack_into("<H", out, local + local_off, value)
    while out[pos:pos + 4] == b"PK\x01\x02":
        n_len, e_len, c_len = struct.unpack_from("<HHH", out, pos + 28)
        if out[pos + 46:pos + 46 + n_len].decode("utf-8") == name:
            struct.pack_into("<H", out, pos + central_off, value)
            return bytes(out)
        pos += 46 + n_len + e_len + c_len
    raise AssertionError(f"{name} not in the central directory")


def unsupported_method(blob: bytes) -> bytes:
    return _set_header_field(blob, SEGMENT, 8, 10, 99)  # compression method 99 (AES): not readable


def encrypted_flag(blob: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        flags = zf.getinfo(SEGMENT).flag_bits
    return _set_header_field(blob, SEGMENT, 6, 8, flags | 0x1)


def drop(name: str) -> Callable[[bytes], bytes]:
    return lambda blob: _rezip(blob, lambda items: items.__setitem__(
        slice(None), [(i, d) for i, d in items if i.filename != name]))


def add_extra(blob: bytes) -> bytes:
    return _rezip(blob, lambda items: items.append((zipfile.ZipInfo("segments/cam1/extra.mp4"), b"\x00" * 10)))


def rename_segment(blob: bytes) -> bytes:
    def change(items: list[tuple[zipfile.ZipInfo, bytes]]) -> None:
        for info, _ in items:
            if info.filename == SEGMENT:
                info.filename = SEGMENT.replace("cam1", "cam9")
    return _rezip(blob, change)


def duplicate_manifest(blob: bytes) -> bytes:
    def change(items: list[tuple[zipfile.ZipInfo, bytes]]) -> None:
        items.insert(0, (zipfile.ZipInfo("manifest.json"), b'{"format": "forged"}'))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _rezip(blob, change)


def infinite_tree_size(blob: bytes) -> bytes:
    def change(items: list[tuple[zipfile.ZipInfo, bytes]]) -> None:
        for k, (info, data) in enumerate(items):
            if info.filename == "tree_head.json":
                doc = json.loads(data)
                doc["tree_size"] = 1e999
                items[k] = (info, json.dumps(doc).encode())
    return _rezip(blob, change)


def unknown_key_algorithm(blob: bytes) -> bytes:
    """public_key.pem still valid PEM/DER, but with an algorithm OID nobody knows (1.3.101.121):
    the fuzz campaign found cryptography's UnsupportedAlgorithm escaping the verifier."""
    import base64
    der = bytes.fromhex("302a300506032b6579032100") + bytes(32)
    pem = b"-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(der) + b"\n-----END PUBLIC KEY-----\n"
    return _rezip(blob, lambda items: items.__setitem__(slice(None), [
        (i, pem if i.filename == "public_key.pem" else d) for i, d in items]))


# (damage, the file the report must name, a word of what is wrong)
DAMAGE: dict[str, tuple[Callable[[bytes], bytes], str, str]] = {
    "segment_byte_flipped": (flip_segment_byte, SEGMENT, "CRC-32"),
    "manifest_byte_flipped": (flip_manifest_byte, "manifest.json", "CRC-32"),
    "deflate_stream_corrupt": (deflated_and_corrupted, SEGMENT, "损坏"),
    "unsupported_compression": (unsupported_method, SEGMENT, "不支持"),
    "encrypted_entry": (encrypted_flag, SEGMENT, "加密"),
    "truncated_zip": (lambda b: b[: len(b) * 2 // 3], "bundle.zip", "截断"),
    "not_a_zip": (lambda b: b"PK\x03\x04 this is not a zip at all", "bundle.zip", "不是 zip"),
    "segment_missing": (drop(SEGMENT), SEGMENT, "缺失"),
    "manifest_missing": (drop("manifest.json"), "manifest.json", "缺少"),
    "readme_missing": (drop("说明.txt"), "说明.txt", "缺少"),
    "extra_entry": (add_extra, "segments/cam1/extra.mp4", "清单之外"),
    "renamed_entry": (rename_segment, SEGMENT.replace("cam1", "cam9"), "清单之外"),
    "duplicate_entry": (duplicate_manifest, "manifest.json", "多次"),
    "tree_head_overflow": (infinite_tree_size, "tree_head.json", "签名树头无效"),
    "public_key_unknown_algorithm": (unknown_key_algorithm, "public_key.pem", "not an Ed25519 key"),
}


@pytest.fixture(scope="module")
def zip_bundle(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    dest, _ = asyncio.run(make_bundle(tmp_path_factory.mktemp("export"), as_zip=True))
    data = dest.read_bytes()
    assert verify_export(dest).ok
    return data


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_zip_gives_a_report_naming_the_file(kind: str, zip_bundle: bytes, tmp_path: Path) -> None:
    damage, subject, words = DAMAGE[kind]
    path = tmp_path / "bundle.zip"
    path.write_bytes(damage(zip_bundle))
    report = verify_export(path)  # must not raise
    assert not report.ok
    text = report.format()
    named = [p for p in report.problems if subject in p.subject]
    assert named, text
    assert any(words in p.message for p in named), text
    assert "校验失败" in text


def test_cli_on_the_issue_reproduction_prints_a_report_not_a_traceback(zip_bundle: bytes, tmp_path: Path) -> None:
    """Issue 14: one byte of a segment flipped in the zip from /api/inspect/exports."""
    path = tmp_path / "export.zip"
    path.write_bytes(flip_segment_byte(zip_bundle))
    result = subprocess.run([sys.executable, "-m", "commandcenter", "verify-export", str(path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert SEGMENT in result.stdout and "CRC-32" in result.stdout and "校验失败" in result.stdout
    # The other segments are still checked and pass.
    assert result.stdout.count("[通过]") == 7
    missing_key = subprocess.run([sys.executable, "-m", "commandcenter", "verify-export", str(path), "--key",
                                  str(tmp_path / "nope.pem")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert missing_key.returncode == 2 and "Traceback" not in missing_key.stderr and "nope.pem" in missing_key.stderr


# ---------------------------------------------------------------------------- independent verifier


def independent_verify(bundle: zipfile.ZipFile) -> list[str]:
    """A verifier written from docs/recorder.md ("Verifying a bundle without our code") only:
    `cryptography` for Ed25519, hashlib for SHA-256, no import from this project."""
    problems: list[str] = []
    names = bundle.namelist()
    public_key = load_pem_public_key(bundle.read("public_key.pem"))
    assert isinstance(public_key, Ed25519PublicKey)
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_id = hashlib.sha256(raw).hexdigest()[:16]
    head = json.loads(bundle.read("tree_head.json"))
    if head["key_id"] != key_id:
        problems.append("key_id")
    body = {k: head[k] for k in ("key_id", "log_id", "root_hash", "timestamp_ms", "tree_size")}
    signed = b"commandcenter-recorder-sth-v1\n" + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    try:
        public_key.verify(bytes.fromhex(head["signature"]), signed)
    except Exception:  # noqa: BLE001 - cryptography's InvalidSignature
        problems.append("tree head signature")
    manifest_bytes = bundle.read("manifest.json")
    try:
        public_key.verify(bytes.fromhex(bundle.read("manifest.sig").decode().strip()), manifest_bytes)
    except Exception:  # noqa: BLE001
        problems.append("manifest signature")
    manifest = json.loads(manifest_bytes)
    if manifest["tree_size"] != head["tree_size"] or manifest["log_id"] != head["log_id"]:
        problems.append("manifest/head mismatch")
    root = bytes.fromhex(head["root_hash"])

    def root_from_proof(index: int, size: int, leaf: bytes, proof: list[str]) -> bytes:
        # RFC 9162 section 2.1.3.2
        fn, sn, r = index, size - 1, hashlib.sha256(b"\x00" + leaf).digest()
        for p in (bytes.fromhex(x) for x in proof):
            if sn == 0:
                return b""
            if fn & 1 or fn == sn:
                r = hashlib.sha256(b"\x01" + p + r).digest()
                if not fn & 1:
                    while fn and not fn & 1:
                        fn >>= 1
                        sn >>= 1
            else:
                r = hashlib.sha256(b"\x01" + r + p).digest()
            fn >>= 1
            sn >>= 1
        return r if sn == 0 else b""

    expected = {"manifest.json", "manifest.sig", "tree_head.json", "public_key.pem", "说明.txt"}
    for entry in [manifest["export_leaf"], *manifest["segments"], *manifest["explained"]]:
        if root_from_proof(entry["leaf_index"], head["tree_size"], entry["leaf"].encode(),
                           entry["inclusion_proof"]) != root:
            problems.append(f"inclusion {entry['leaf_index']}")
    for entry in manifest["segments"]:
        leaf = json.loads(entry["leaf"])
        name = f"segments/{leaf['camera']}/{leaf['start_ms']}-{leaf['end_ms']}.mp4"
        expected.add(name)
        data = bundle.read(name) if name in names else b""
        if hashlib.sha256(data).hexdigest() != leaf["sha256"] or len(data) != leaf["size"]:
            problems.append(name)
    if hashlib.sha256(bundle.read("说明.txt")).hexdigest() != manifest["readme_sha256"]:
        problems.append("说明.txt")
    problems += [f"extra {n}" for n in set(names) - expected]
    return problems


def test_independent_verifier_from_the_documentation(zip_bundle: bytes) -> None:
    # The documentation states what the code does: the prefix and canonical JSON are in both.
    doc = (ROOT / "docs/recorder.md").read_text(encoding="utf-8")
    for text in (doc, README_ZH):
        assert "commandcenter-recorder-sth-v1" in text and "0x0A" in text
        assert "key_id" in text and "timestamp_ms" in text and "RFC 9162" in text
    with zipfile.ZipFile(io.BytesIO(zip_bundle)) as bundle:
        assert bundle.read("说明.txt").decode() == README_ZH
        assert independent_verify(bundle) == []
    # ... and it is not a rubber stamp: a re-signed head with another root fails it.
    changed = _rezip(zip_bundle, lambda items: items.__setitem__(slice(None), [
        (i, d.replace(b'"tree_size": ', b'"tree_size": 1') if i.filename == "tree_head.json" else d)
        for i, d in items]))
    with zipfile.ZipFile(io.BytesIO(changed)) as bundle:
        assert "tree head signature" in independent_verify(bundle)
