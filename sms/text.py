"""The text of an SMS: GSM-7 or UCS-2, and how a long message splits into concatenated parts.

Pure. Rules (3GPP TS 23.038 / 23.040):
- a text made only of GSM 03.38 characters (basic table, plus the extension table at two septets
  each) goes as GSM-7: 160 septets in one part, 153 per part when concatenated (the 6-octet UDH
  ``05 00 03 ref total seq`` takes 7 septets); an escape pair is never split;
- anything else goes as UCS-2: 70 characters in one part, 67 per part when concatenated;
  characters outside the Basic Multilingual Plane (emoji) cannot be carried by UCS-2 and are refused;
- a message may take at most ``max_parts`` parts; longer is refused naming the field and the limit.

Kannel does the split on the wire (it writes the UDH); ``plan`` predicts exactly what it sends so we
account throughput and show parts, and the tests check the prediction against what fakesmsc receives.
"""
from __future__ import annotations

from dataclasses import dataclass

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

GSM7 = "gsm7"
UCS2 = "ucs2"
SINGLE = {GSM7: 160, UCS2: 70}
PER_PART = {GSM7: 153, UCS2: 67}
MAX_TEXT_CHARS = 16 * 153  # no message of any encoding fits beyond this; a quick bound before work


class TextError(ValueError):
    """The text cannot be sent; the message names the field (``text: ...``)."""


@dataclass(frozen=True)
class Planned:
    encoding: str  # gsm7 | ucs2
    parts: tuple[str, ...]  # the text of each part, in order; "".join(parts) == text

    @property
    def coding(self) -> int:
        """Kannel's ``coding`` parameter: 0 = GSM-7, 2 = UCS-2."""
        return 0 if self.encoding == GSM7 else 2


def encoding_of(text: str) -> str:
    return GSM7 if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text) else UCS2


def _weight(c: str, encoding: str) -> int:
    return 2 if encoding == GSM7 and c in GSM7_EXTENSION else 1


def plan(text: str, max_parts: int = 10) -> Planned:
    """The encoding and the parts of ``text``; TextError when it is empty, too long or unsendable."""
    if not isinstance(text, str) or not text.strip():
        raise TextError("text: 短信内容不能为空")
    if len(text) > MAX_TEXT_CHARS:
        raise TextError(f"text: 短信过长（{len(text)} 字，最多 {max_parts} 条短信）")
    bad = next((c for c in text if ord(c) > 0xFFFF or (0xD800 <= ord(c) <= 0xDFFF)), None)
    if bad is not None:
        raise TextError(f"text: 短信不支持字符 U+{ord(bad):04X}（表情符号等）")
    if any(ord(c) < 0x20 and c not in "\n\r" for c in text):
        raise TextError("text: 短信不能包含控制字符")
    enc = encoding_of(text)
    total = sum(_weight(c, enc) for c in text)
    if total <= SINGLE[enc]:
        return Planned(enc, (text,))
    size = PER_PART[enc]
    parts: list[str] = []
    cur: list[str] = []
    used = 0
    for c in text:
        w = _weight(c, enc)
        if used + w > size:
            parts.append("".join(cur))
            cur, used = [], 0
        cur.append(c)
        used += w
    parts.append("".join(cur))
    if len(parts) > max_parts:
        limit = max_parts * size
        raise TextError(f"text: 短信过长（{len(parts)} 条，最多 {max_parts} 条，约 {limit} 字）")
    return Planned(enc, tuple(parts))


def udh(ref: int, total: int, seq: int) -> bytes:
    """The concatenation UDH of part ``seq`` (1-based) of ``total`` (8-bit reference)."""
    if not (0 <= ref <= 255 and 1 <= seq <= total <= 255):
        raise ValueError("udh: reference 0–255, 1 ≤ seq ≤ total ≤ 255")
    return bytes((5, 0, 3, ref, total, seq))


def parse_udh(data: bytes) -> tuple[int, int, int] | None:
    """(reference, total, seq) of a concatenation UDH (8- or 16-bit reference), None otherwise."""
    if len(data) < 1 or len(data) != data[0] + 1:
        return None
    i = 1
    while i + 1 < len(data):
        iei, length = data[i], data[i + 1]
        body = data[i + 2:i + 2 + length]
        if len(body) != length:
            return None
        if iei == 0 and length == 3:
            return body[0], body[1], body[2]
        if iei == 8 and length == 4:
            return (body[0] << 8) | body[1], body[2], body[3]
        i += 2 + length
    return None
