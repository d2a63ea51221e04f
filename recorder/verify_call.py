"""Offline verification of an emergency-call recording export (:mod:`recorder.call_recordings`).

`verify_call_export(path) -> CallVerificationReport`; `commandcenter verify-call-export BUNDLE`.
Checks, in order: the public key (optionally pinned), the signed tree head, the manifest
signature, the recording's leaf and inclusion proof, that recording.wav matches the leaf's
SHA-256 and size, the export's own access leaf, and that the bundle holds nothing else.
Never raises on a bad bundle: each failed check is a problem naming what is wrong.
Reuses the segment-bundle verifier's shared pieces (bundle access, leaf proof check).
"""
from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recorder.call_recordings import FIXED_FILES, FORMAT, RECORDING_FILE
from recorder.leaves import AccessLeaf, CallRecordingLeaf, LeafFormatError, decode_leaf
from recorder.merkle import ProofError
from recorder.verify import BundleReadError, Problem, _Bundle, _check_leaf, _fmt, check_signatures


@dataclass
class CallVerificationReport:
    bundle: str
    ok: bool = False
    key_id: str = ""
    tree_size: int = 0
    root_hash: str = ""
    call_id: str = ""
    recording: dict[str, Any] = field(default_factory=dict)
    request: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def add(self, code: str, subject: str, message: str) -> None:
        self.problems.append(Problem(code, subject, message))

    def format(self) -> str:
        """Human-readable report (zh-CN)."""
        lines = [f"接警录音导出包: {self.bundle}",
                 f"签名密钥: {self.key_id}  树大小: {self.tree_size}  根哈希: {self.root_hash}"]
        if self.recording:
            lines.append(f"  呼叫 {self.call_id}: {RECORDING_FILE}  {_fmt(self.recording.get('start_ms'))} — "
                         f"{_fmt(self.recording.get('end_ms'))}  SHA-256 {self.recording.get('sha256', '')}")
        if self.request:
            lines.append(f"  导出人: {self.request.get('user', '')}  原因: {self.request.get('reason', '')}")
        for p in self.problems:
            lines.append(f"  错误 {p.code}: {p.subject}: {p.message}")
        lines.append("结论: 校验通过" if self.ok else f"结论: 校验失败（{len(self.problems)} 个问题）")
        return "\n".join(lines)


def verify_call_export(path: Path | str, trusted_key: bytes | None = None) -> CallVerificationReport:
    """Verify a call-recording bundle offline; `trusted_key` (PEM) pins the expected log key."""
    path = Path(path)
    report = CallVerificationReport(bundle=str(path))
    if not path.exists():
        report.add("missing", str(path), "导出包不存在")
        return report
    try:
        bundle = _Bundle(path)
    except (zipfile.BadZipFile, OSError) as exc:
        report.add("unreadable", str(path), f"无法读取导出包: {exc}")
        return report
    try:
        _verify(bundle, report, trusted_key)
    except BundleReadError as exc:  # a damaged entry: name it
        report.add("unreadable", exc.name, f"导出包中的文件损坏: {exc.message}")
    except (OSError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:  # damaged container
        report.add("unreadable", str(path), f"导出包损坏: {exc}")
    finally:
        bundle.close()
    report.ok = not report.problems
    return report


def _verify(bundle: _Bundle, report: CallVerificationReport, trusted_key: bytes | None) -> None:
    names = bundle.names()
    checked = check_signatures(bundle, report, trusted_key, FIXED_FILES[:4])
    if checked is None:
        return
    sth, manifest_bytes = checked
    try:
        manifest = json.loads(manifest_bytes)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError(f"not a call-recording export (format {FORMAT})")
        if manifest.get("log_id") != sth.log_id or manifest.get("tree_size") != sth.tree_size:
            report.add("manifest", "manifest.json", "清单与签名树头不对应")
        request = manifest.get("request")
        recording_entry = manifest.get("recording")
        export_entry = manifest.get("export_leaf")
        if not isinstance(request, dict) or not isinstance(recording_entry, dict) or not isinstance(export_entry, dict):
            raise ValueError("request, recording and export_leaf must be objects")
    except ValueError as exc:
        report.add("manifest", "manifest.json", f"清单格式错误: {exc}")
        return
    report.request = request
    readme = manifest.get("readme_sha256")
    if "说明.txt" in names and hashlib.sha256(bundle.read("说明.txt")).hexdigest() != readme:
        report.add("readme", "说明.txt", "说明文件被改动")
    # The recording's leaf, its proof, and the bytes.
    try:
        leaf = decode_leaf(_check_leaf(recording_entry, sth))
        if not isinstance(leaf, CallRecordingLeaf):
            raise LeafFormatError("the recording's leaf is not a call-recording leaf")
    except (ProofError, LeafFormatError) as exc:
        report.add("inclusion", RECORDING_FILE, f"录音不在日志中（包含证明失败）: {exc}")
        leaf = None
    if leaf is not None:
        report.call_id = leaf.call_id
        report.recording = {"name": leaf.name, "sha256": leaf.sha256, "size": leaf.size,
                            "start_ms": leaf.start_ms, "end_ms": leaf.end_ms}
        if request.get("call_id") != leaf.call_id:
            report.add("manifest", "manifest.json", "清单中的呼叫编号与日志记录不符")
        if RECORDING_FILE not in names:
            report.add("missing_recording", RECORDING_FILE, "录音文件缺失")
        else:
            digest, size = bundle.digest(RECORDING_FILE)
            if digest != leaf.sha256 or size != leaf.size:
                report.add("hash_mismatch", RECORDING_FILE,
                           f"录音内容被改动: SHA-256 {digest[:16]}…（{size} 字节）≠ 日志 {leaf.sha256[:16]}…"
                           f"（{leaf.size} 字节）")
    # The export's own log entry.
    try:
        export_leaf = decode_leaf(_check_leaf(export_entry, sth))
        if not isinstance(export_leaf, AccessLeaf) or export_leaf.action != "export":
            raise LeafFormatError("export_leaf is not an export access leaf")
        if leaf is not None and export_leaf.cameras != (f"call:{leaf.call_id}",):
            raise LeafFormatError("export_leaf is about another call")
    except (ProofError, LeafFormatError) as exc:
        report.add("export_leaf", "manifest.json", f"导出记录未在日志中得到证明: {exc}")
    for extra in sorted(names - set(FIXED_FILES)):
        report.add("extra_file", extra, "导出包中有清单之外的文件")


def verify_call_export_cli(bundle: str, trusted_key_path: str | None = None) -> int:
    """`commandcenter verify-call-export BUNDLE [--key PEM]`: print the report; exit 0 only if it verifies."""
    trusted: bytes | None = None
    if trusted_key_path:
        try:
            trusted = Path(trusted_key_path).read_bytes()
        except OSError as exc:
            print(f"无法读取受信任公钥 {trusted_key_path}: {exc.strerror or exc}")
            return 2
    report = verify_call_export(bundle, trusted_key=trusted)
    print(report.format())
    return 0 if report.ok else 1
