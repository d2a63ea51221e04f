"""Offline verification of an export bundle: `verify_export(path) -> VerificationReport`.

Needs nothing but the bundle (and, ideally, the log's public key fingerprint the
inspector already trusts). Checks, in order: the public key, the signed tree head,
the manifest signature, then for every segment that the file exists, its SHA-256 and
size match its log leaf, and the leaf's inclusion proof leads to the signed root.
Every failure names the segment file (camera and time range); extra or missing
files are failures too, so any byte change anywhere in the bundle is caught.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from recorder.leaves import AccessLeaf, LeafFormatError, SegmentLeaf, decode_leaf
from recorder.merkle import ProofError, leaf_hash, verify_inclusion
from recorder.signing import SignatureError, key_id_of, load_public_key, public_key_pem, verify_signature
from recorder.tree_head import SignedTreeHead, verify_tree_head

FIXED_FILES = ("manifest.json", "manifest.sig", "tree_head.json", "public_key.pem", "说明.txt")


@dataclass(frozen=True)
class Problem:
    """One failed check. `subject` names the file (segment) or part of the bundle."""

    code: str
    subject: str
    message: str


@dataclass
class SegmentCheck:
    file: str
    camera: str = ""
    start_ms: int = 0
    end_ms: int = 0
    ok: bool = False


@dataclass
class VerificationReport:
    """Result of `verify_export`. `ok` is True only when every check passed."""

    bundle: str
    ok: bool = False
    key_id: str = ""
    tree_size: int = 0
    root_hash: str = ""
    segments: list[SegmentCheck] = field(default_factory=list)
    explained: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    request: dict[str, Any] = field(default_factory=dict)

    @property
    def failing_segments(self) -> list[str]:
        return [s.file for s in self.segments if not s.ok]

    def add(self, code: str, subject: str, message: str) -> None:
        self.problems.append(Problem(code, subject or "（空文件名）", message))

    def format(self) -> str:
        """Human-readable report (zh-CN, the inspectors' language)."""
        lines = [f"导出包: {self.bundle}", f"签名密钥: {self.key_id}  树大小: {self.tree_size}  根哈希: {self.root_hash}"]
        for s in self.segments:
            mark = "通过" if s.ok else "失败"
            lines.append(f"  [{mark}] {s.file}  {_fmt(s.start_ms)} — {_fmt(s.end_ms)}")
        for e in self.explained:
            lines.append(f"  [说明] {e.get('kind')}: {e.get('camera', '')} {_fmt(e.get('start_ms'))} — "
                         f"{_fmt(e.get('end_ms'))} {e.get('cause', e.get('policy', e.get('reason', '')))}")
        for p in self.problems:
            lines.append(f"  错误 {p.code}: {p.subject}: {p.message}")
        lines.append("结论: 校验通过" if self.ok else f"结论: 校验失败（{len(self.problems)} 个问题）")
        return "\n".join(lines)


def _fmt(ms: Any) -> str:
    if not isinstance(ms, int):
        return "?"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


class BundleReadError(Exception):
    """A file of the bundle cannot be read (damaged zip entry, unreadable file)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


# What zipfile and the file system raise on damaged or odd input: a bad CRC-32 or header
# (BadZipFile), corrupt deflate data (zlib.error), truncated data (EOFError), an unsupported
# compression method (NotImplementedError), an encrypted entry (RuntimeError), a name that is
# not valid UTF-8 (UnicodeDecodeError, a ValueError), an entry that is a directory (OSError).
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, KeyError, NotImplementedError,
                RuntimeError, ValueError, struct.error)
MAX_FIXED_FILE = 256 << 20  # manifest, head, key, signature, readme: never this large


def _describe(exc: BaseException) -> str:
    """What is wrong, in the inspector's language, with the library's own words after it."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, zipfile.BadZipFile) and "CRC" in text:
        return f"内容与压缩包记录的 CRC-32 不符（文件被改动或损坏）: {text}"
    if isinstance(exc, zipfile.BadZipFile | zlib.error | EOFError | struct.error):
        return f"压缩包中的文件已损坏: {text}"
    if isinstance(exc, NotImplementedError | RuntimeError):
        return f"不支持的压缩方式或加密条目: {text}"
    return f"无法读取: {text}"


class _Bundle:
    """Read access to a bundle directory or zip file. Reading a damaged entry raises
    :class:`BundleReadError` naming it, never a zipfile/zlib/OS exception."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip = zipfile.ZipFile(path) if path.is_file() else None

    def entry_names(self) -> list[str]:
        """Every file entry, duplicates included (a zip may hold one name twice)."""
        if self._zip is not None:
            return [n for n in self._zip.namelist() if not n.endswith("/")]
        return sorted(p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file())

    def names(self) -> set[str]:
        return set(self.entry_names())

    def read(self, name: str) -> bytes:
        try:
            if self._zip is not None:
                if self._zip.getinfo(name).file_size > MAX_FIXED_FILE:
                    raise ValueError(f"larger than {MAX_FIXED_FILE >> 20} MiB")
                return self._zip.read(name)
            if (self.path / name).stat().st_size > MAX_FIXED_FILE:
                raise ValueError(f"larger than {MAX_FIXED_FILE >> 20} MiB")
            return (self.path / name).read_bytes()
        except _READ_ERRORS as exc:
            raise BundleReadError(name, _describe(exc)) from exc

    def digest(self, name: str) -> tuple[str, int]:
        """SHA-256 and size of a file, streamed (segments can be large)."""
        try:
            if self._zip is not None:
                with self._zip.open(name) as f:
                    return _sha256(f)  # zipfile checks the CRC-32 at the end of the stream
            with open(self.path / name, "rb") as g:
                return _sha256(g)
        except _READ_ERRORS as exc:
            raise BundleReadError(name, _describe(exc)) from exc

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def _sha256(f: IO[bytes]) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    while chunk := f.read(1 << 20):
        h.update(chunk)
        n += len(chunk)
    return h.hexdigest(), n


def _proof(entry: dict[str, Any]) -> list[bytes]:
    proof = entry.get("inclusion_proof")
    if not isinstance(proof, list) or not all(isinstance(p, str) for p in proof):
        raise ProofError("inclusion_proof must be a list of hex strings")
    try:
        return [bytes.fromhex(p) for p in proof]
    except ValueError as exc:
        raise ProofError(f"inclusion_proof is not hex: {exc}") from exc


def _check_leaf(entry: dict[str, Any], sth: SignedTreeHead) -> bytes:
    """Verify an entry's leaf and proof against the head; return the leaf bytes."""
    if not isinstance(entry, dict):
        raise ProofError("entry is not an object")
    leaf = entry.get("leaf")
    index = entry.get("leaf_index")
    if not isinstance(leaf, str) or not isinstance(index, int):
        raise ProofError("entry lacks leaf or leaf_index")
    data = leaf.encode()
    verify_inclusion(index, sth.tree_size, leaf_hash(data), _proof(entry), sth.root_hash)
    return data


def _iter_entries(manifest: dict[str, Any], name: str) -> Iterator[dict[str, Any]]:
    entries = manifest.get(name, [])
    if not isinstance(entries, list):
        raise ValueError(f"manifest.{name} must be a list")
    for e in entries:
        if not isinstance(e, dict):
            raise ValueError(f"manifest.{name} entries must be objects")
        yield e


def verify_export(path: Path | str, trusted_key: bytes | None = None) -> VerificationReport:
    """Verify an export bundle offline. `trusted_key` (PEM) pins the expected log key.

    Never raises on bad bundles: every problem is in `report.problems`, and
    `report.failing_segments` names the segment files that failed.
    """
    path = Path(path)
    report = VerificationReport(bundle=str(path))
    if not path.exists():
        report.add("missing", str(path), "导出包不存在")
        return report
    try:
        bundle = _Bundle(path)
        bundle.entry_names()
    except _READ_ERRORS as exc:
        report.add("unreadable", str(path), f"无法读取导出包（不是 zip 文件、zip 已损坏或被截断）: {exc}")
        return report
    try:
        _verify(bundle, report, trusted_key)
    except BundleReadError as exc:  # a file every later check needs (manifest, head, key)
        report.add("unreadable", exc.name, exc.message)
    finally:
        bundle.close()
    report.ok = not report.problems and all(s.ok for s in report.segments)
    return report


class SignedReport(Protocol):
    """What the shared checks fill in: the report of a segment bundle or of a call-recording bundle."""

    key_id: str
    tree_size: int
    root_hash: str
    problems: list[Problem]

    def add(self, code: str, subject: str, message: str) -> None: ...


def check_signatures(bundle: _Bundle, report: SignedReport, trusted_key: bytes | None,
                     fixed_files: tuple[str, ...]) -> tuple[SignedTreeHead, bytes] | None:
    """The checks every export bundle shares, in order: no entry twice, the fixed files present, the
    log's public key (canonical, and the trusted one when `trusted_key` pins it), the signed tree
    head, and the manifest's signature over every byte of the manifest. Returns the tree head and
    the manifest bytes, or None once a check failed (each failure is added to `report`)."""
    entries = bundle.entry_names()
    names = set(entries)
    for twice in sorted({n for n in entries if entries.count(n) > 1}):
        report.add("duplicate_entry", twice, "导出包中同名文件出现多次（可能被替换）")
    for required in fixed_files:
        if required not in names:
            report.add("missing", required, "缺少文件")
    if report.problems:
        return None
    # 1. Public key and signed tree head.
    try:
        pem = bundle.read("public_key.pem")
        public_key = load_public_key(pem)
        if public_key_pem(public_key) != pem:
            raise SignatureError("public_key.pem is not in canonical form (changed)")
    except (SignatureError, ValueError) as exc:
        report.add("public_key", "public_key.pem", f"日志公钥无效: {exc}")
        return None
    report.key_id = key_id_of(public_key)
    if trusted_key is not None:
        try:
            trusted_id: str | None = key_id_of(load_public_key(trusted_key))
        except SignatureError as exc:
            report.add("untrusted_key", "--key", f"受信任的公钥文件无效: {exc}")
            trusted_id = None
        if trusted_id is not None and trusted_id != report.key_id:
            report.add("untrusted_key", "public_key.pem", "公钥与受信任的日志公钥不一致")
    try:
        sth_bytes = bundle.read("tree_head.json")
        sth = SignedTreeHead.from_json(sth_bytes)
        if sth.to_json() != sth_bytes:
            raise ValueError("tree_head.json is not in canonical form (changed)")
        verify_tree_head(sth, public_key)
    except (SignatureError, ValueError) as exc:
        report.add("tree_head", "tree_head.json", f"签名树头无效: {exc}")
        return None
    report.tree_size, report.root_hash = sth.tree_size, sth.root_hash.hex()
    # 2. Manifest signature: covers every byte of the manifest.
    manifest_bytes = bundle.read("manifest.json")
    try:
        sig_text = bundle.read("manifest.sig").decode()
        signature = bytes.fromhex(sig_text.strip())
        if sig_text != signature.hex() + "\n":
            raise ValueError("manifest.sig is not in canonical form (changed)")
        verify_signature(public_key, signature, manifest_bytes)
    except (SignatureError, ValueError, UnicodeDecodeError) as exc:
        report.add("manifest_signature", "manifest.json", f"清单签名无效（清单被改动）: {exc}")
        return None
    return sth, manifest_bytes


def _verify(bundle: _Bundle, report: VerificationReport, trusted_key: bytes | None) -> None:
    names = bundle.names()
    checked = check_signatures(bundle, report, trusted_key, FIXED_FILES[:4])
    if checked is None:
        return
    sth, manifest_bytes = checked
    try:
        manifest = json.loads(manifest_bytes)
        if not isinstance(manifest, dict):
            raise ValueError("manifest is not an object")
        if manifest.get("log_id") != sth.log_id or manifest.get("tree_size") != sth.tree_size:
            report.add("manifest", "manifest.json", "清单与签名树头不对应")
        report.request = manifest.get("request", {})
        readme = manifest.get("readme_sha256")
        if "说明.txt" in names:
            try:
                if hashlib.sha256(bundle.read("说明.txt")).hexdigest() != readme:
                    report.add("readme", "说明.txt", "说明文件被改动")
            except BundleReadError as exc:
                report.add("unreadable", exc.name, exc.message)
        elif readme is not None:  # the manifest says the bundle has one
            report.add("missing", "说明.txt", "缺少文件")
        segment_entries = list(_iter_entries(manifest, "segments"))
        explained_entries = list(_iter_entries(manifest, "explained"))
    except (ValueError, RecursionError) as exc:
        report.add("manifest", "manifest.json", f"清单格式错误: {exc}")
        return
    # 3. The export's own log entry.
    try:
        export_leaf = decode_leaf(_check_leaf(manifest.get("export_leaf") or {}, sth))
        if not isinstance(export_leaf, AccessLeaf) or export_leaf.action != "export":
            raise LeafFormatError("export_leaf is not an export access leaf")
    except (ProofError, LeafFormatError) as exc:
        report.add("export_leaf", "manifest.json", f"导出记录未在日志中得到证明: {exc}")
    # 4. Every segment.
    expected = set(FIXED_FILES)
    for entry in segment_entries:
        rel = str(entry.get("file", ""))
        check = SegmentCheck(file=rel)
        report.segments.append(check)
        expected.add(rel)
        try:
            leaf = decode_leaf(_check_leaf(entry, sth))
        except (ProofError, LeafFormatError) as exc:
            report.add("inclusion", rel, f"片段不在日志中（包含证明失败）: {exc}")
            continue
        if not isinstance(leaf, SegmentLeaf):
            report.add("inclusion", rel, "叶子不是录像片段")
            continue
        check.camera, check.start_ms, check.end_ms = leaf.camera, leaf.start_ms, leaf.end_ms
        if rel != f"segments/{leaf.camera}/{leaf.start_ms}-{leaf.end_ms}.mp4":
            report.add("file_name", rel, "文件名与日志记录不符")
            continue
        if rel not in names:
            report.add("missing_segment", rel, f"片段文件缺失（{leaf.camera} {_fmt(leaf.start_ms)}）")
            continue
        try:
            digest, size = bundle.digest(rel)
        except BundleReadError as exc:
            report.add("unreadable", rel, f"片段文件无法读取（{leaf.camera} {_fmt(leaf.start_ms)}）: {exc.message}")
            continue
        if digest != leaf.sha256 or size != leaf.size:
            report.add("hash_mismatch", rel,
                       f"片段内容被改动（{leaf.camera} {_fmt(leaf.start_ms)} — {_fmt(leaf.end_ms)}）: "
                       f"SHA-256 {digest[:16]}… ≠ 日志 {leaf.sha256[:16]}…")
            continue
        check.ok = True
    # 5. Explanations of gaps (gap / retention / hold leaves).
    for entry in explained_entries:
        try:
            leaf_obj = decode_leaf(_check_leaf(entry, sth))
        except (ProofError, LeafFormatError) as exc:
            report.add("explained", f"leaf {entry.get('leaf_index')}", f"说明记录未得到证明: {exc}")
            continue
        report.explained.append({"kind": leaf_obj.kind, **{k: getattr(leaf_obj, k) for k in leaf_obj.__dataclass_fields__}})
    # 6. Nothing else in the bundle.
    for extra in sorted(names - expected):
        report.add("extra_file", extra, "导出包中有清单之外的文件")


def verify_export_cli(bundle: str, trusted_key_path: str | None = None) -> int:
    """`commandcenter verify-export BUNDLE [--key PEM]`: print the report, exit 0 only if it verifies."""
    try:
        trusted = Path(trusted_key_path).read_bytes() if trusted_key_path else None
    except OSError as exc:
        print(f"无法读取受信任的公钥文件 {trusted_key_path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    report = verify_export(bundle, trusted_key=trusted)
    print(report.format())
    return 0 if report.ok else 1
