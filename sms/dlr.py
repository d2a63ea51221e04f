"""Delivery reports from Kannel, and phone numbers.

Pure. Kannel calls the ``dlr-url`` we give with each submission; we build it as
``/dlr?r=<recipient id>&k=<tag>&t=%d&a=%A`` where ``%d`` is the DLR type (1 delivered, 2 failed,
4 buffered, 8 SMSC ACK, 16 SMSC NACK) and ``%A`` the SMSC's answer. ``tag`` is an HMAC of the
recipient id under a key only we and Kannel's config know, so another local process cannot forge a
report. ``parse_request`` reads the request head our listener received: only ``GET /dlr?...``
with those fields, bounded; anything else is a ``DlrError`` (answered 400, nothing changes).

Numbers: spaces, dashes and brackets are dropped; what remains must be ``+`` then 5–15 digits, or
5–20 digits (national numbers, short codes, landlines like 0766-8000001).
"""
from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

MAX_HEAD = 8192
_NUMBER = re.compile(r"^(\+\d{5,15}|\d{5,20})$")
_STRIP = re.compile(r"[\s\-()]")


class DlrError(ValueError):
    pass


class NumberError(ValueError):
    pass


@dataclass(frozen=True)
class Report:
    recipient_id: int
    kind: int  # Kannel DLR type
    answer: str  # the SMSC's answer, shortened


def normalize_number(raw: object, field_name: str = "numbers") -> str:
    if not isinstance(raw, str):
        raise NumberError(f"{field_name}: 号码应为文本")
    n = _STRIP.sub("", raw)
    if not _NUMBER.match(n):
        raise NumberError(f"{field_name}: 号码无效 {raw[:40]!r}（应为 5–20 位数字，可带 +）")
    return n


def tag(key: bytes, recipient_id: int) -> str:
    return hmac.new(key, f"sms-dlr:{recipient_id}".encode(), hashlib.sha256).hexdigest()[:24]


def dlr_url(base: str, key: bytes, recipient_id: int) -> str:
    """The dlr-url for one recipient (``%d`` and ``%A`` are Kannel's escapes)."""
    return f"{base}/dlr?r={recipient_id}&k={quote(tag(key, recipient_id))}&t=%d&a=%A"


def parse_request(head: bytes, key: bytes) -> Report:
    """The report in a request head (request line + headers, up to the blank line)."""
    if len(head) > MAX_HEAD:
        raise DlrError("request too large")
    line = head.split(b"\r\n", 1)[0].split(b"\n", 1)[0]
    try:
        method, target, version = line.decode("ascii").split(" ")
    except (UnicodeDecodeError, ValueError):
        raise DlrError("bad request line") from None
    if method != "GET" or not version.startswith("HTTP/1."):
        raise DlrError("only GET")
    url = urlsplit(target)
    if url.path != "/dlr":
        raise DlrError("unknown path")
    q = parse_qs(url.query, keep_blank_values=True, max_num_fields=10)
    try:
        rid = int(q["r"][0])
        kind = int(q["t"][0])
        given = q["k"][0]
    except (KeyError, IndexError, ValueError):
        raise DlrError("missing r, t or k") from None
    if not 0 < rid < 2**63 or not 0 <= kind < 256:
        raise DlrError("r or t out of range")
    if not hmac.compare_digest(given.encode(), tag(key, rid).encode()):
        raise DlrError("bad tag")
    return Report(rid, kind, q.get("a", [""])[0][:200])
