"""Damaged export bundles for fuzzing `commandcenter verify-export`.

``BundleFuzzer.create()`` makes a real bundle the way the recorder does (a transparency log,
a directory store, fMP4 segments encoded by PyAV, a logged gap, ``export_bundle(as_zip=True)``
as ``/api/inspect/exports`` serves it). ``run(data)`` lets the fuzzer's bytes choose one to
three kinds of damage, writes the damaged bundle and verifies it. Properties:

- the verifier never raises (any exception is a crash);
- a bundle whose content differs from the original never verifies (``Finding``), unless the
  damage re-signed the manifest or tree head with the log's own key (an insider);
- a failed report names what is wrong (every problem has a subject and a message) and
  formats without error.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import shutil
import struct
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from security.fuzz.targets import Finding

T0 = 1_795_000_000_000
ODD_VALUES: list[Any] = [None, True, -1, 0, 2**64, 1e999, -1e999, "", "x" * 70, "ff", [], {}, [1, "a"],
                         {"a": None}, "../../etc/passwd", "segments/cam1/0-1.mp4", 3.5, "\u0000"]
EXTRA_NAMES = ["segments/cam1/extra.mp4", "manifest.json", "tree_head.json", "segments/", "../escape.mp4",
               "/abs.mp4", "说明.txt", "segments/cam1/1795000000000-1795000000300.mp4", "a" * 300, "",
               "segments\\cam1\\x.mp4", "public_key.pem"]

KINDS = ["flip", "truncate", "insert", "delete_entry", "add_entry", "rename_entry", "replace_entry",
         "resign_manifest", "tree_head", "not_a_zip", "deflate_corrupt", "header_flags", "directory"]


class _Reader:
    """The fuzzer's bytes as a stream of choices (zeros once exhausted)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def u32(self) -> int:
        return int.from_bytes(bytes(self.byte() for _ in range(4)), "big")

    def take(self, n: int) -> bytes:
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out

    def rest(self) -> bytes:
        return self.take(len(self.data))


@dataclass
class _Entry:
    name: str
    data: bytes
    compress: int = zipfile.ZIP_STORED


def make_real_bundle(work: Path) -> tuple[Path, Any]:
    """A real zip bundle (one camera, two short segments, one logged gap); returns (path, signing key)."""
    from recorder.export import ExportSegment, export_bundle
    from recorder.ingest import sha256_file
    from recorder.leaves import GapLeaf, SegmentLeaf
    from recorder.signing import KeyStore
    from recorder.store import DirectoryStore, segment_key
    from recorder.transparency_log import MemoryLogStorage, TransparencyLog
    from tests.recorder.recorder_media import write_h264_mp4

    async def build() -> tuple[Path, Any]:
        store = DirectoryStore(work / "recordings")
        tlog = TransparencyLog(MemoryLogStorage(), KeyStore(work / "keys"))
        await tlog.open()
        segments = []
        t = T0
        for i in range(2):
            key = segment_key("cam1", t, t + 300)
            staging = store.staging_path("cam1", f"{i}.part")
            write_h264_mp4(staging, seconds=0.3, fps=10, size=(64, 48), seed=i)
            store.commit(staging, key)
            final = store.local_path(key)
            assert final is not None
            index = await tlog.append(SegmentLeaf("cam1", t, t + 300, sha256_file(final), final.stat().st_size,
                                                  "rec1", key))
            segments.append(ExportSegment(index, key))
            t += 300
            if i == 0:
                gap = await tlog.append(GapLeaf("cam1", t, t + 200, "TimeoutError: connection lost", "rec1"))
                t += 200
        dest = work / "bundle.zip"
        await export_bundle(tlog, store, dest, user="inspector1", reason="核查投诉 2026-118", cameras=["cam1"],
                            start_ms=T0, end_ms=t, segments=segments, explained_leaves=[gap], as_zip=True)
        return dest, tlog.keys.current()

    return asyncio.run(build())


class BundleFuzzer:
    """Holds one real bundle and verifies damaged copies of it."""

    def __init__(self, work: Path, bundle: Path, key: Any) -> None:
        from recorder.verify import verify_export

        self.work = work
        self.key = key
        self.original = bundle.read_bytes()
        with zipfile.ZipFile(io.BytesIO(self.original)) as zf:
            self.entries = [_Entry(i.filename, zf.read(i), i.compress_type) for i in zf.infolist()]
        self.content = {e.name: e.data for e in self.entries}
        scratch = Path("/dev/shm") if Path("/dev/shm").is_dir() else work
        self.scratch = Path(tempfile.mkdtemp(prefix="fuzz-bundle-", dir=scratch))
        self.target = self.scratch / "damaged.zip"
        self.verify = verify_export
        report = verify_export(bundle)
        if not report.ok:
            raise RuntimeError("the freshly made bundle does not verify:\n" + report.format())

    @classmethod
    def create(cls) -> BundleFuzzer:
        work = Path(tempfile.mkdtemp(prefix="fuzz-export-"))
        bundle, key = make_real_bundle(work)
        return cls(work, bundle, key)

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)
        shutil.rmtree(self.work, ignore_errors=True)

    # ------------------------------------------------------------------ seeds

    def seeds(self) -> list[bytes]:
        """One input per kind of damage (then libFuzzer mixes and mutates them)."""
        out = []
        for k in range(len(KINDS)):
            out.append(bytes([0, k, 0, 0, 1, 0x40, 0x21, 3, 5, 7]) + b"x" * 16)
        out.append(bytes([2, 0, 0, 0, 0, 9, 1, 3, 0, 2, 4, 5]))
        return out

    # ------------------------------------------------------------------ damage

    @staticmethod
    def _serialize(entries: list[_Entry]) -> bytes:
        buf = io.BytesIO()
        with warnings.catch_warnings(), zipfile.ZipFile(buf, "w") as zf:
            warnings.simplefilter("ignore")  # duplicate names are part of the damage
            for e in entries:
                info = zipfile.ZipInfo(e.name or "_", date_time=(2026, 1, 1, 0, 0, 0))
                info.compress_type = e.compress
                if e.name == "":
                    info.filename = ""
                zf.writestr(info, e.data)
        return buf.getvalue()

    def _resign_manifest(self, entries: list[_Entry], r: _Reader) -> None:
        manifest = next((e for e in entries if e.name == "manifest.json"), None)
        if manifest is None:
            return
        try:
            doc = json.loads(manifest.data)
        except ValueError:  # already damaged by an earlier step
            return
        paths = list(_paths(doc))
        if not paths:
            return
        path = paths[r.byte() % len(paths)]
        value = ODD_VALUES[r.byte() % len(ODD_VALUES)]
        _set(doc, path, value)
        manifest.data = json.dumps(doc, indent=1, ensure_ascii=False).encode()
        for e in entries:
            if e.name == "manifest.sig":
                e.data = (self.key.sign(manifest.data).hex() + "\n").encode()

    def _tree_head(self, entries: list[_Entry], r: _Reader) -> bool:
        """Change one field of the tree head; re-sign it with the log key when asked."""
        from recorder.tree_head import STH_CONTEXT

        head = next((e for e in entries if e.name == "tree_head.json"), None)
        if head is None:
            return False
        try:
            doc = json.loads(head.data)
        except ValueError:
            return False
        if not isinstance(doc, dict) or not doc:
            return False
        keys = sorted(doc)
        field = keys[r.byte() % len(keys)]
        doc[field] = ODD_VALUES[r.byte() % len(ODD_VALUES)]
        resign = r.byte() % 2 == 1
        if resign and field != "signature":
            try:
                body = {k: doc[k] for k in ("key_id", "log_id", "root_hash", "timestamp_ms", "tree_size")}
                signed = STH_CONTEXT + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
                doc["signature"] = self.key.sign(signed).hex()
            except (TypeError, ValueError):
                resign = False
        head.data = json.dumps(doc, indent=2, sort_keys=True).encode()
        return resign

    def damage(self, data: bytes) -> tuple[bytes, bool, bool]:
        """(damaged zip bytes, signed by the log key after the change, verify as a directory)."""
        r = _Reader(data)
        ops = [KINDS[r.byte() % len(KINDS)] for _ in range(1 + r.byte() % 3)]
        entries = [_Entry(e.name, e.data, e.compress) for e in self.entries]
        insider = False
        as_dir = "directory" in ops
        byte_ops = [op for op in ops if op in ("flip", "truncate", "insert", "not_a_zip", "header_flags")]
        for op in ops:
            if op == "delete_entry" and entries:
                del entries[r.byte() % len(entries)]
            elif op == "add_entry":
                name = EXTRA_NAMES[r.byte() % len(EXTRA_NAMES)]
                if r.byte() % 4 == 0:
                    name = r.take(1 + r.byte() % 24).decode("latin-1")
                entries.insert(r.byte() % (len(entries) + 1), _Entry(name, r.take(r.byte() % 64)))
            elif op == "rename_entry" and entries:
                e = entries[r.byte() % len(entries)]
                how = r.byte() % 4
                if how == 0:
                    e.name = e.name + "x"
                elif how == 1:
                    e.name = e.name.upper()
                elif how == 2 and e.name:
                    i = r.byte() % len(e.name)
                    e.name = e.name[:i] + chr(0x21 + r.byte() % 90) + e.name[i + 1:]
                else:
                    e.name = "renamed/" + e.name
            elif op == "replace_entry" and entries:
                e = entries[r.byte() % len(entries)]
                if r.byte() % 2 and e.data:
                    pos = r.u32() % len(e.data)
                    e.data = e.data[:pos] + bytes([e.data[pos] ^ (r.byte() or 1)]) + e.data[pos + 1:]
                else:
                    e.data = r.take(r.byte())
            elif op == "resign_manifest":
                self._resign_manifest(entries, r)
                insider = True
            elif op == "tree_head":
                insider = self._tree_head(entries, r) or insider
            elif op == "deflate_corrupt" and entries:
                for e in entries:
                    e.compress = zipfile.ZIP_DEFLATED
        blob = self._serialize(entries) if entries != self.entries or "deflate_corrupt" in ops else self.original
        if "deflate_corrupt" in ops:
            byte_ops.append("flip")
        for op in byte_ops:
            if op == "flip" and blob:
                pos = r.u32() % len(blob)
                blob = blob[:pos] + bytes([blob[pos] ^ (r.byte() or 1)]) + blob[pos + 1:]
            elif op == "truncate" and blob:
                blob = blob[:r.u32() % len(blob)]
            elif op == "insert":
                pos = r.u32() % (len(blob) + 1)
                blob = blob[:pos] + r.take(1 + r.byte() % 16) + blob[pos:]
            elif op == "not_a_zip":
                blob = r.rest()
            elif op == "header_flags":
                blob = _poke_headers(blob, r)
        return blob, insider, as_dir

    # ------------------------------------------------------------------ the target

    def run(self, data: bytes) -> None:
        blob, insider, as_dir = self.damage(data)
        path = self.target
        self.last = (blob, insider, as_dir)
        if path.exists():
            path.unlink()
        path.write_bytes(blob)
        if as_dir:
            path = self._as_directory(blob)
        report = self.verify(path)
        text = report.format()
        if not report.ok:
            if not report.problems and not report.failing_segments:
                raise Finding("verification failed without saying why")
            for p in report.problems:
                if not p.subject or not p.message or p.subject not in text:
                    raise Finding(f"problem without a named file: {p}")
            return
        if insider:
            return
        seen = _dir_content(path) if as_dir else self._logical_content(blob)
        if seen != self.content:
            raise Finding("a damaged bundle verified as intact")

    def _as_directory(self, blob: bytes) -> Path:
        d = self.scratch / "dir"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        try:
            with zipfile.ZipFile(io.BytesIO(blob)) as zf:
                for info in zf.infolist():
                    name = info.filename
                    if not name or name.startswith("/") or ".." in name.split("/") or len(name) > 200:
                        continue
                    dest = d / name
                    if name.endswith("/"):
                        dest.mkdir(parents=True, exist_ok=True)
                        continue
                    try:
                        data = zf.read(info)
                    except Exception:  # noqa: BLE001 - damaged entry: leave it out of the directory
                        continue
                    try:
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        dest.write_bytes(data)
                    except OSError:
                        continue
        except Exception:  # noqa: BLE001 - not a zip any more: verify an empty directory
            pass
        return d

    @staticmethod
    def _logical_content(blob: bytes) -> dict[str, bytes] | None:
        """Name -> bytes of a zip as any unzip tool would see it; None if it cannot be read."""
        try:
            with zipfile.ZipFile(io.BytesIO(blob)) as zf:
                names = [n for n in zf.namelist() if not n.endswith("/")]
                if len(names) != len(set(names)):
                    return None
                return {n: zf.read(n) for n in names}
        except Exception:  # noqa: BLE001 - unreadable is "not the original"
            return None


def _dir_content(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in d.rglob("*") if p.is_file()}


def _poke_headers(blob: bytes, r: _Reader) -> bytes:
    """Change a general-purpose flag (encryption, UTF-8 name) or the compression method of one
    local or central directory header, leaving the rest intact."""
    headers = [m.start() for m in re.finditer(rb"PK\x03\x04|PK\x01\x02", blob) if m.start() + 12 <= len(blob)]
    if not headers:
        return blob
    at = headers[r.byte() % len(headers)]
    central = blob[at:at + 4] == b"PK\x01\x02"
    flags_at, method_at = (at + 8, at + 10) if central else (at + 6, at + 8)
    out = bytearray(blob)
    if r.byte() % 2:
        flag = struct.unpack_from("<H", out, flags_at)[0] ^ (1 << (r.byte() % 16))
        struct.pack_into("<H", out, flags_at, flag)
    else:
        struct.pack_into("<H", out, method_at, r.byte())
    return bytes(out)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, prefix + (i,))
    return out


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    cur = doc
    for k in path[:-1]:
        cur = cur[k]
    cur[path[-1]] = value


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
