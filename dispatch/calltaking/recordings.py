"""Emergency-call recordings after the call: sealed into the transparency log, kept for the
retention period, exported with a proof.

``dispatch`` never imports ``recorder``: the desk declares :class:`CallRecordingLog` and the
composition root (``dispatch.calltaking.capability``) passes the recorder's implementation
(``recorder.call_recordings.CallRecordingLogService``) when a recorder runs in the process.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class CallRecordingLog(Protocol):
    """The recorder's RFC 6962 transparency log, as far as call recordings need it."""

    @property
    def log_id(self) -> str: ...

    async def append_call_recording(self, call_id: str, name: str, sha256: str, size: int,
                                    start_ms: int, end_ms: int) -> int:
        """Append a leaf for a finished recording; returns its leaf index."""
        ...

    async def append_call_retention(self, call_ids: tuple[str, ...], leaf_indices: tuple[int, ...],
                                    policy: str) -> int:
        """Append a leaf saying retention deleted these recordings' bytes (their leaves stay)."""
        ...

    async def export_call_recording(self, wav: Path, leaf_index: int, dest: Path, *, call_id: str,
                                    user: str, reason: str) -> None:
        """Write a zip bundle: the WAV, its leaf with an inclusion proof, and a signed tree head."""
        ...


@dataclass(frozen=True)
class RecordingDigest:
    sha256: str
    size: int


def digest_file(path: Path) -> RecordingDigest:
    """SHA-256 and size of a file (blocking: run in a thread)."""
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
    return RecordingDigest(h.hexdigest(), n)
