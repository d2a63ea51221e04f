"""Entries of the transparency log and their canonical byte encoding.

A leaf's bytes are canonical JSON (sorted keys, no spaces, UTF-8) with a `kind` and a
format version `v`; the Merkle leaf hash is over exactly these bytes, so anyone can
re-encode a decoded leaf and get the same hash. Times are integer milliseconds since
the Unix epoch (UTC), which avoids any time-zone or formatting ambiguity.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar, get_type_hints

FORMAT_VERSION = 1


class LeafFormatError(ValueError):
    """Bytes that are not a valid leaf of a known kind."""


@dataclass(frozen=True)
class SegmentLeaf:
    """One recorded segment: which camera, when, and the SHA-256 of its bytes."""

    kind: ClassVar[str] = "segment"
    camera: str
    start_ms: int
    end_ms: int
    sha256: str
    size: int
    recorder: str
    key: str  # the segment's name in the store, so a verifier can name a failing file


@dataclass(frozen=True)
class AccessLeaf:
    """One viewing or export of footage: who, which cameras, which range, why."""

    kind: ClassVar[str] = "access"
    action: str  # "view" or "export"
    user: str
    cameras: tuple[str, ...]
    start_ms: int
    end_ms: int
    reason: str
    time_ms: int


@dataclass(frozen=True)
class GapLeaf:
    """A span a camera did not record (disconnect, bad stream), so the gap is explained."""

    kind: ClassVar[str] = "gap"
    camera: str
    start_ms: int
    end_ms: int
    cause: str
    recorder: str


@dataclass(frozen=True)
class RetentionLeaf:
    """Retention deleted the bytes of these segment leaves (the leaves themselves stay)."""

    kind: ClassVar[str] = "retention"
    camera: str
    segment_leaves: tuple[int, ...]
    policy: str
    time_ms: int


@dataclass(frozen=True)
class LegalHoldLeaf:
    """A legal hold placed on or lifted from a time range, with who and why."""

    kind: ClassVar[str] = "legal_hold"
    action: str  # "place" or "lift"
    hold_id: str
    cameras: tuple[str, ...]
    start_ms: int
    end_ms: int
    user: str
    reason: str
    time_ms: int


@dataclass(frozen=True)
class KeyRotationLeaf:
    """The log's signing key changed; the old key endorses the new public key."""

    kind: ClassVar[str] = "key_rotation"
    old_key_id: str
    new_key_id: str
    new_public_key: str  # raw 32-byte Ed25519 key, hex
    endorsement: str  # old key's signature over signing.rotation_message(new key), hex
    time_ms: int


@dataclass(frozen=True)
class CallRecordingLeaf:
    """One finished emergency-call recording (WAV): the desk's call id, the file name and its SHA-256."""

    kind: ClassVar[str] = "call_recording"
    call_id: str
    name: str  # server-generated file name
    sha256: str
    size: int
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class ContentLeaf:
    """A conference recording's content stream (the second video track) showed content from
    `start_ms` to `end_ms` inside the segment `key` (logged right after that segment's leaf)."""

    kind: ClassVar[str] = "content"
    camera: str
    start_ms: int
    end_ms: int
    key: str  # the segment whose second video track carries it
    codec: str  # RFC 6381 codec string of that track
    recorder: str


Leaf = (SegmentLeaf | AccessLeaf | GapLeaf | RetentionLeaf | LegalHoldLeaf | KeyRotationLeaf | CallRecordingLeaf
        | ContentLeaf)
LEAF_TYPES: dict[str, type[Any]] = {
    t.kind: t for t in (SegmentLeaf, AccessLeaf, GapLeaf, RetentionLeaf, LegalHoldLeaf, KeyRotationLeaf,
                        CallRecordingLeaf, ContentLeaf)
}


def encode_leaf(leaf: Leaf) -> bytes:
    """Canonical bytes of a leaf (what the Merkle leaf hash covers)."""
    body: dict[str, Any] = {"kind": leaf.kind, "v": FORMAT_VERSION}
    for f in dataclasses.fields(leaf):
        value = getattr(leaf, f.name)
        body[f.name] = list(value) if isinstance(value, tuple) else value
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def decode_leaf(data: bytes) -> Leaf:
    """Parse leaf bytes; LeafFormatError if they are not canonical bytes of a known kind."""
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LeafFormatError(f"leaf is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise LeafFormatError("leaf is not a JSON object")
    kind = body.pop("kind", None)
    version = body.pop("v", None)
    cls = LEAF_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise LeafFormatError(f"unknown leaf kind {kind!r}")
    if version != FORMAT_VERSION:
        raise LeafFormatError(f"unsupported leaf version {version!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    if set(body) != names:
        raise LeafFormatError(f"{kind} leaf fields {sorted(body)} != {sorted(names)}")
    values: dict[str, Any] = {}
    for name in names:
        value, hint = body[name], hints[name]
        if hint is int and (not isinstance(value, int) or isinstance(value, bool)):
            raise LeafFormatError(f"{kind}.{name} must be an integer")
        if hint is str and not isinstance(value, str):
            raise LeafFormatError(f"{kind}.{name} must be a string")
        if hint in (tuple[str, ...], tuple[int, ...]):
            item = str if hint == tuple[str, ...] else int
            if not isinstance(value, list) or not all(isinstance(v, item) for v in value):
                raise LeafFormatError(f"{kind}.{name} must be a list of {item.__name__}")
            value = tuple(value)
        values[name] = value
    leaf: Leaf = cls(**values)
    if encode_leaf(leaf) != data:
        raise LeafFormatError("leaf bytes are not in canonical form")
    return leaf
