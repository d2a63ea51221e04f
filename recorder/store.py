"""Where segment bytes live: a directory tree by default, any object store later.

`SegmentStore` is the interface (an S3-compatible store implements it with multipart
upload on `commit` and `DeleteObject` on `delete`); `DirectoryStore` is the default.

Segments are written to a staging file first and committed atomically: write, fsync,
rename into place, fsync the directory. So after a crash a key either names a complete
file or does not exist; staging leftovers are the at most one open segment per camera
that an unclean stop is allowed to lose.

Keys look like `cam1/20261121/1795262158771-1795262164771.mp4`
(camera / UTC day / start_ms-end_ms), so a committed file can be re-indexed from its
name alone after a crash.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Protocol

CAMERA_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
KEY = re.compile(r"^(?P<camera>[A-Za-z0-9][A-Za-z0-9_.-]{0,63})/(?P<day>\d{8})/(?P<start>\d+)-(?P<end>\d+)\.mp4$")
STAGING = ".staging"


class StoreError(ValueError):
    """A bad key or camera id."""


@dataclass(frozen=True)
class ParsedKey:
    camera: str
    start_ms: int
    end_ms: int


def check_camera_id(camera: str) -> str:
    """Camera ids become path components: letters, digits, `_`, `-`, `.`; no leading dot."""
    if not CAMERA_ID.match(camera) or camera in (".", ".."):
        raise StoreError(f"invalid camera id {camera!r}: use letters, digits, '_', '-', '.' (max 64)")
    return camera


def segment_key(camera: str, start_ms: int, end_ms: int) -> str:
    """The store key of a segment."""
    check_camera_id(camera)
    day = datetime.fromtimestamp(start_ms / 1000, UTC).strftime("%Y%m%d")
    return f"{camera}/{day}/{start_ms}-{end_ms}.mp4"


def parse_key(key: str) -> ParsedKey:
    """Inverse of `segment_key`; StoreError if `key` is not a segment key."""
    m = KEY.match(key)
    if not m:
        raise StoreError(f"not a segment key: {key!r}")
    return ParsedKey(m["camera"], int(m["start"]), int(m["end"]))


class SegmentStore(Protocol):
    """Storage of committed segments by key."""

    def staging_path(self, camera: str, name: str) -> Path:
        """A local path to write an open segment to."""
        ...

    def commit(self, staging: Path, key: str) -> None:
        """Durably publish a fully written staging file under `key`."""
        ...

    def open(self, key: str) -> BinaryIO:
        ...

    def local_path(self, key: str) -> Path | None:
        """A local file for `key` if the store has one (lets PyAV read it directly)."""
        ...

    def delete(self, key: str) -> None:
        ...

    def exists(self, key: str) -> bool:
        ...

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Committed keys, all or under a `camera/` or `camera/day/` prefix."""
        ...

    def discard_staging(self) -> list[Path]:
        """Remove leftovers of segments that were open at a crash; return what was removed."""
        ...

    def free_bytes(self) -> int:
        ...


def staging_file(root: Path, camera: str, name: str) -> Path:
    """Where a segment of ``camera`` is written before `commit` (the folder is created)."""
    check_camera_id(camera)
    d = root / STAGING / camera
    d.mkdir(parents=True, exist_ok=True)
    return d / name


def fsync_file(path: Path) -> None:
    """Flush a finished file to disk before it is published."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirectoryStore:
    """`SegmentStore` on a local directory tree (default `var/recordings`)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        parse_key(key)  # rejects anything that could escape the root
        return self.root / key

    def staging_path(self, camera: str, name: str) -> Path:
        return staging_file(self.root, camera, name)

    def commit(self, staging: Path, key: str) -> None:
        dest = self._path(key)
        fsync_file(staging)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, dest)
        fsync_dir(dest.parent)

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def keys(self, prefix: str = "") -> Iterator[str]:
        depth = prefix.count("/")
        if prefix and (".." in prefix or depth > 2):
            raise StoreError(f"bad key prefix {prefix!r}")
        pattern = prefix + "/".join(["*"] * (3 - depth)) + ".mp4"
        for path in sorted(self.root.glob(pattern)):
            key = path.relative_to(self.root).as_posix()
            if KEY.match(key):
                yield key

    def discard_staging(self) -> list[Path]:
        staging = self.root / STAGING
        removed = sorted(p for p in staging.rglob("*") if p.is_file()) if staging.exists() else []
        for p in removed:
            p.unlink()
        return removed

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free
