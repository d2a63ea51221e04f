"""Evidence export: a self-contained bundle that verifies offline.

Bundle layout (a directory, or the same tree in a .zip):
    manifest.json      what was exported and why; for every segment its leaf and inclusion proof
    manifest.sig       Ed25519 signature (hex) over the exact bytes of manifest.json
    tree_head.json     the signed tree head all proofs lead to
    public_key.pem     the log's public key (inspectors should compare its fingerprint
                       with the one they hold; `verify_export(..., trusted_key=...)` does)
    segments/<camera>/<start_ms>-<end_ms>.mp4   the evidence copies, byte for byte
    说明.txt            how to verify (zh-CN)

The export itself is first appended to the log (an `AccessLeaf` with user, cameras,
range and reason), then a head is signed, so the bundle proves its own export was logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recorder.leaves import AccessLeaf
from recorder.signing import public_key_pem
from recorder.store import SegmentStore, parse_key
from recorder.transparency_log import TransparencyLog

FORMAT = "commandcenter-recorder-export/1"
README_ZH = """本目录是录像证据导出包。
- segments/ 下为原始录像文件（未经任何处理的证据副本）。
- manifest.json 记录导出人、原因、时间范围，以及每个录像片段在透明日志中的叶子与包含证明。
- tree_head.json 为日志的签名树头，public_key.pem 为日志公钥（请与监察部门保存的公钥指纹核对）。
校验命令：commandcenter verify-export <本目录或zip文件>
任何文件被修改、删除或替换，校验都会失败并指出出问题的片段。

不使用本系统也可以独立校验（任何 Ed25519 与 SHA-256 实现均可）：
1. 公钥：public_key.pem 为 Ed25519 公钥（SubjectPublicKeyInfo，PEM）。
   key_id = SHA-256(32 字节原始公钥) 的十六进制小写前 16 位。
2. 签名树头：tree_head.json 中 signature 为 64 字节 Ed25519 签名（RFC 8032，纯 Ed25519，
   十六进制小写）。被签名的字节 = 前缀 + 规范 JSON：
   前缀为 ASCII 字符串 "commandcenter-recorder-sth-v1" 后接一个换行符（0x0A），共 30 字节；
   规范 JSON 为仅含 key_id、log_id、root_hash、timestamp_ms、tree_size 五个字段的对象，
   键按字母顺序排列，无任何空白（分隔符为 "," 与 ":"），root_hash 为 64 位小写十六进制，
   timestamp_ms 与 tree_size 为十进制整数，非 ASCII 字符写作 \\uXXXX，编码为 UTF-8。
   例：commandcenter-recorder-sth-v1\\n{"key_id":"…","log_id":"recorder","root_hash":"…","timestamp_ms":1795000000000,"tree_size":4}
   tree_head.json 的 key_id 须等于公钥的 key_id。
3. 清单签名：manifest.sig 为对 manifest.json 全部原始字节（不做任何规范化）的 Ed25519 签名，
   十六进制小写，末尾一个换行符。manifest.json 的 log_id、tree_size 须与树头一致。
4. 包含证明：manifest.json 中 export_leaf、segments、explained 的每一项含 leaf（日志叶子，
   即规范 JSON 字符串）、leaf_index 与 inclusion_proof（十六进制哈希列表）。
   叶子哈希 = SHA-256(0x00 ‖ leaf 的 UTF-8 字节)，内部节点 = SHA-256(0x01 ‖ 左 ‖ 右)，
   按 RFC 9162 第 2.1.3.2 节由 leaf_index、tree_size 与证明算出根，须等于 root_hash。
5. 录像片段：segments 各项的文件 segments/<camera>/<start_ms>-<end_ms>.mp4（取自叶子），
   其 SHA-256（十六进制小写）与字节数须等于叶子中的 sha256 与 size。
6. 说明.txt 的 SHA-256 须等于 manifest.json 的 readme_sha256；包中不得有清单之外的文件。
"""


class ExportError(ValueError):
    """The export request cannot be fulfilled (bad range, nothing recorded, ...)."""


@dataclass(frozen=True)
class ExportSegment:
    """A segment to export: its log leaf and store key."""

    leaf_index: int
    key: str


@dataclass(frozen=True)
class ExportResult:
    path: Path
    tree_size: int
    segments: int
    bytes: int
    export_leaf_index: int


def _proof_hex(proof: Sequence[bytes]) -> list[str]:
    return [p.hex() for p in proof]


async def export_bundle(
    log: TransparencyLog,
    store: SegmentStore,
    dest: Path,
    *,
    user: str,
    reason: str,
    cameras: Sequence[str],
    start_ms: int,
    end_ms: int,
    segments: Sequence[ExportSegment],
    explained_leaves: Sequence[int] = (),
    as_zip: bool = False,
    clock: Callable[[], float] = time.time,
) -> ExportResult:
    """Write an export bundle for `segments` to `dest` (a new directory, or a .zip when as_zip).

    `explained_leaves` are gap/retention/legal-hold leaves that explain holes in the range;
    they travel with their proofs so the inspector sees why footage is missing.
    """
    if not reason.strip():
        raise ExportError("导出必须填写原因 (a reason is required)")
    if end_ms <= start_ms:
        raise ExportError("end must be after start")
    if await asyncio.to_thread(dest.exists):
        raise ExportError(f"{dest} already exists")
    now_ms = int(clock() * 1000)
    access = AccessLeaf("export", user, tuple(cameras), start_ms, end_ms, reason, now_ms)
    export_index = await log.append(access)
    sth = await log.sign_head()
    key = log.keys.current()

    async def entry(index: int) -> dict[str, Any]:
        return {
            "leaf_index": index,
            "leaf": (await log.leaf_bytes(index)).decode(),
            "inclusion_proof": _proof_hex(log.inclusion_proof(index, sth.tree_size)),
        }

    files: list[tuple[str, str]] = []  # (store key, bundle path)
    entries: list[dict[str, Any]] = []
    for seg in sorted(segments, key=lambda s: (parse_key(s.key).camera, parse_key(s.key).start_ms)):
        parsed = parse_key(seg.key)
        rel = f"segments/{parsed.camera}/{parsed.start_ms}-{parsed.end_ms}.mp4"
        files.append((seg.key, rel))
        entries.append({"file": rel, **await entry(seg.leaf_index)})
    manifest = {
        "format": FORMAT,
        "log_id": log.log_id,
        "tree_size": sth.tree_size,
        "created_ms": now_ms,
        "request": {"user": user, "reason": reason, "cameras": list(cameras), "start_ms": start_ms, "end_ms": end_ms},
        "readme_sha256": hashlib.sha256(README_ZH.encode()).hexdigest(),
        "export_leaf": await entry(export_index),
        "segments": entries,
        "explained": [await entry(i) for i in sorted(set(explained_leaves))],
    }
    manifest_bytes = json.dumps(manifest, indent=1, ensure_ascii=False).encode()
    fixed = {
        "manifest.json": manifest_bytes,
        "manifest.sig": (key.sign(manifest_bytes).hex() + "\n").encode(),
        "tree_head.json": sth.to_json(),
        "public_key.pem": public_key_pem(log.public_key(sth.key_id)),
        "说明.txt": README_ZH.encode(),
    }
    total = await asyncio.to_thread(_write_bundle, store, dest, files, fixed, as_zip)
    return ExportResult(dest, sth.tree_size, len(entries), total, export_index)


def _write_bundle(
    store: SegmentStore, dest: Path, files: list[tuple[str, str]], fixed: dict[str, bytes], as_zip: bool
) -> int:
    """Copy the segment bytes and write the fixed files (blocking; runs in a thread)."""
    if dest.exists():
        raise ExportError(f"{dest} already exists")
    total = 0
    if as_zip:
        with zipfile.ZipFile(dest, "x", zipfile.ZIP_STORED) as zf:
            for key, rel in files:
                with store.open(key) as src, zf.open(rel, "w") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                total += zf.getinfo(rel).file_size
            for name, data in fixed.items():
                zf.writestr(name, data)
        return total
    dest.mkdir(parents=True)
    for key, rel in files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        with store.open(key) as src, open(dest / rel, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        total += (dest / rel).stat().st_size
    for name, data in fixed.items():
        (dest / name).write_bytes(data)
    return total
