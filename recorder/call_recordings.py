"""Emergency-call recordings in the recorder's transparency log (the desk's ``CallRecordingLog``).

The desk (``dispatch.calltaking``) declares the protocol; the composition root passes this
service, built on the running recorder's :class:`~recorder.transparency_log.TransparencyLog`.

Export bundle (a .zip):
    recording.wav      the call recording, byte for byte
    manifest.json      call id, who exported it and why, the recording's leaf and inclusion proof,
                       and the export's own access leaf and proof
    manifest.sig       Ed25519 signature (hex) over the exact bytes of manifest.json
    tree_head.json     the signed tree head all proofs lead to
    public_key.pem     the log's public key
    说明.txt            how to verify (zh-CN)
Verified offline by ``commandcenter verify-call-export`` (:mod:`recorder.verify_call`).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recorder.leaves import AccessLeaf, CallRecordingLeaf, RetentionLeaf
from recorder.signing import public_key_pem
from recorder.transparency_log import TransparencyLog

FORMAT = "commandcenter-call-recording-export/1"
RECORDING_FILE = "recording.wav"
FIXED_FILES = ("manifest.json", "manifest.sig", "tree_head.json", "public_key.pem", RECORDING_FILE, "说明.txt")
RETENTION_SUBJECT = "call-recordings"
README_ZH = """本压缩包是接警录音证据导出包。
- recording.wav 为原始通话录音（未经任何处理的证据副本）。
- manifest.json 记录呼叫编号、导出人、原因，以及录音在透明日志中的叶子与包含证明。
- tree_head.json 为日志的签名树头，public_key.pem 为日志公钥（请与监察部门保存的公钥指纹核对）。
校验命令：commandcenter verify-call-export <本zip文件> [--key 受信任公钥.pem]
任何文件被修改、删除或替换，校验都会失败并指出问题所在。
"""


class CallRecordingLogService:
    """Appends call-recording and retention leaves and writes export bundles with proofs."""

    def __init__(self, log: TransparencyLog, clock: Callable[[], float] = time.time) -> None:
        self.log = log
        self.clock = clock

    @property
    def log_id(self) -> str:
        return self.log.log_id

    async def append_call_recording(self, call_id: str, name: str, sha256: str, size: int,
                                    start_ms: int, end_ms: int) -> int:
        return await self.log.append(CallRecordingLeaf(call_id, name, sha256, size, start_ms, end_ms))

    async def append_call_retention(self, call_ids: tuple[str, ...], leaf_indices: tuple[int, ...],
                                    policy: str) -> int:
        why = f"{policy}; calls={','.join(call_ids)}"
        return await self.log.append(RetentionLeaf(RETENTION_SUBJECT, leaf_indices, why, int(self.clock() * 1000)))

    async def export_call_recording(self, wav: Path, leaf_index: int, dest: Path, *, call_id: str,
                                    user: str, reason: str) -> None:
        """Log the export (an access leaf), sign a head, and write the zip to ``dest`` (must not exist)."""
        if not reason.strip():
            raise ValueError("导出必须填写原因 (a reason is required)")
        recording = await self.log.leaf_bytes(leaf_index)
        leaf = json.loads(recording)
        if leaf.get("kind") != CallRecordingLeaf.kind:
            raise ValueError(f"leaf {leaf_index} is not a call recording")
        now_ms = int(self.clock() * 1000)
        access = AccessLeaf("export", user, (f"call:{call_id}",), int(leaf["start_ms"]), int(leaf["end_ms"]),
                            reason, now_ms)
        export_index = await self.log.append(access)
        sth = await self.log.sign_head()
        key = self.log.keys.current()

        async def entry(index: int) -> dict[str, Any]:
            return {"leaf_index": index, "leaf": (await self.log.leaf_bytes(index)).decode(),
                    "inclusion_proof": [p.hex() for p in self.log.inclusion_proof(index, sth.tree_size)]}

        manifest = {
            "format": FORMAT,
            "log_id": self.log.log_id,
            "tree_size": sth.tree_size,
            "created_ms": now_ms,
            "request": {"user": user, "reason": reason, "call_id": call_id},
            "readme_sha256": hashlib.sha256(README_ZH.encode()).hexdigest(),
            "recording": {"file": RECORDING_FILE, **await entry(leaf_index)},
            "export_leaf": await entry(export_index),
        }
        manifest_bytes = json.dumps(manifest, indent=1, ensure_ascii=False).encode()
        fixed = {
            "manifest.json": manifest_bytes,
            "manifest.sig": (key.sign(manifest_bytes).hex() + "\n").encode(),
            "tree_head.json": sth.to_json(),
            "public_key.pem": public_key_pem(self.log.public_key(sth.key_id)),
            "说明.txt": README_ZH.encode(),
        }
        await asyncio.to_thread(_write_zip, wav, dest, fixed)


def _write_zip(wav: Path, dest: Path, fixed: dict[str, bytes]) -> None:
    with zipfile.ZipFile(dest, "x", zipfile.ZIP_STORED) as zf:
        with open(wav, "rb") as src, zf.open(RECORDING_FILE, "w") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        for name, data in fixed.items():
            zf.writestr(name, data)
