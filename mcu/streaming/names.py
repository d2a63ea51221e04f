"""What a live stream serves, and anonymous watch links: pure rules, no I/O, no clock.

File names. A stream directory holds exactly three kinds of file, and only names matching them
are ever opened (everything else is "not found" before any path is built, so ``../``, NUL, a
slash or a 10 kB name never reach the file system):

* ``index.m3u8``: the sliding playlist;
* ``<epoch>_init.mp4``: the fMP4 initialisation segment;
* ``<epoch>_<n>.m4s``: media segment ``n`` (at most 9 digits);
* ``<epoch>_<n>.<p>.m4s``: partial segment ``p`` (at most 3 digits) of segment ``n`` (LL-HLS).

``epoch`` is 8 lowercase hex digits chosen per stream start, so a restarted stream never reuses
a segment name a player or a cache saw before (that is what lets segments be cached).

Watch tokens. A trainee without an account watches through a link carrying a token that names
one conference and an expiry: ``<expires>.<mac>``, where ``expires`` is Unix seconds (decimal)
and ``mac`` the first 32 hex digits of HMAC-SHA256(secret, "watch:<conference id>:<expires>").
A token is valid for that conference only, until ``expires`` (the caller passes "now").
"""
from __future__ import annotations

import hashlib
import hmac
import re
from typing import Literal

PLAYLIST = "index.m3u8"
MAX_NAME = 64
MAX_TOKEN = 64
MAX_TTL_S = 7 * 24 * 3600
_EPOCH = re.compile(r"[0-9a-f]{8}")
_INIT = re.compile(r"([0-9a-f]{8})_init\.mp4")
_SEGMENT = re.compile(r"([0-9a-f]{8})_([0-9]{1,9})\.m4s")
_PART = re.compile(r"([0-9a-f]{8})_([0-9]{1,9})\.([0-9]{1,3})\.m4s")
_TOKEN = re.compile(r"([0-9]{1,12})\.([0-9a-f]{32})")
_CONFERENCE = re.compile(r"[0-9A-Za-z_-]{1,64}")

FileKind = Literal["playlist", "init", "segment", "part"]

CONTENT_TYPES: dict[str, str] = {
    "playlist": "application/vnd.apple.mpegurl",
    "init": "video/mp4",
    "segment": "video/iso.segment",
    "part": "video/iso.segment",
}


def check_epoch(epoch: str) -> str:
    if not _EPOCH.fullmatch(epoch):
        raise ValueError(f"bad stream epoch: {epoch!r}")
    return epoch


def file_kind(name: str, epoch: str) -> FileKind | None:
    """What ``name`` is in the stream of ``epoch``; None when the stream does not serve it."""
    parsed = parse_name(name, epoch)
    return parsed[0] if parsed else None


def parse_name(name: str, epoch: str) -> tuple[FileKind, int, int] | None:
    """(kind, segment number, part index) of ``name`` in the stream of ``epoch`` (numbers are
    0 where they do not apply); None when the stream does not serve it."""
    if len(name) > MAX_NAME:
        return None
    if name == PLAYLIST:
        return "playlist", 0, 0
    match = _INIT.fullmatch(name)
    if match and match.group(1) == epoch:
        return "init", 0, 0
    match = _SEGMENT.fullmatch(name)
    if match and match.group(1) == epoch:
        return "segment", int(match.group(2)), 0
    match = _PART.fullmatch(name)
    if match and match.group(1) == epoch:
        return "part", int(match.group(2)), int(match.group(3))
    return None


def valid_conference_id(conference_id: str) -> bool:
    return bool(_CONFERENCE.fullmatch(conference_id))


def _mac(secret: bytes, conference_id: str, expires: int) -> str:
    return hmac.new(secret, f"watch:{conference_id}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]


def make_token(secret: bytes, conference_id: str, now: float, ttl_s: float) -> str:
    """A watch token for ``conference_id`` valid ``ttl_s`` seconds after ``now`` (1 s … 7 days)."""
    if not valid_conference_id(conference_id):
        raise ValueError(f"bad conference id: {conference_id!r}")
    if not 1 <= ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl must be between 1 s and {MAX_TTL_S} s")
    expires = int(now + ttl_s)
    return f"{expires}.{_mac(secret, conference_id, expires)}"


def token_expiry(token: str) -> int | None:
    """The expiry a well-formed token states (not checked against any secret); None if malformed."""
    match = _TOKEN.fullmatch(token) if len(token) <= MAX_TOKEN else None
    return int(match.group(1)) if match else None


def check_token(secret: bytes, conference_id: str, token: str, now: float) -> bool:
    """Whether ``token`` lets its bearer watch ``conference_id`` at time ``now``."""
    if len(token) > MAX_TOKEN or not valid_conference_id(conference_id):
        return False
    match = _TOKEN.fullmatch(token)
    if match is None:
        return False
    expires = int(match.group(1))
    if now >= expires:
        return False
    return hmac.compare_digest(match.group(2), _mac(secret, conference_id, expires))
