"""SIP INFO bodies: picture_fast_update (media_control+xml) and DTMF (dtmf-relay, dtmf)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from .errors import SipParseError

MEDIA_CONTROL = "application/media_control+xml"
DTMF_RELAY = "application/dtmf-relay"
DTMF = "application/dtmf"
INFO_TYPES = (MEDIA_CONTROL, DTMF_RELAY, DTMF)
DTMF_DIGITS = "0123456789*#ABCD"

FAST_UPDATE_XML = (
    b'<?xml version="1.0" encoding="utf-8" ?>\r\n'
    b"<media_control><vc_primitive><to_encoder><picture_fast_update/></to_encoder>"
    b"</vc_primitive></media_control>\r\n"
)


def is_fast_update(body: bytes) -> bool:
    """True when a media_control document asks for a picture fast update."""
    if len(body) > 4096 or b"<!" in body:  # no DTD/entities: refuse before the XML parser
        raise SipParseError("Unacceptable media_control document", 415)
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise SipParseError("Malformed media_control XML") from exc
    return root.tag == "media_control" and root.find(".//picture_fast_update") is not None


def parse_dtmf(content_type: str, body: bytes) -> tuple[str, int]:
    """Digit and duration (ms) from an INFO DTMF body."""
    text = body.decode("ascii", "replace").strip()
    if content_type == DTMF:
        digit, duration = text[:1], 250
    else:
        fields: dict[str, str] = {}
        for line in text.splitlines():
            key, _, value = line.partition("=")
            fields[key.strip().lower()] = value.strip()
        digit = fields.get("signal", "")[:2]
        if digit == "10":
            digit = "*"
        elif digit == "11":
            digit = "#"
        duration_text = fields.get("duration", "250")
        duration = int(duration_text) if duration_text.isdigit() else 250
    digit = digit.upper()
    if len(digit) != 1 or digit not in DTMF_DIGITS:
        raise SipParseError("Bad DTMF digit")
    return digit, min(duration, 10_000)


def dtmf_relay_body(digit: str, duration_ms: int = 160) -> bytes:
    """An ``application/dtmf-relay`` body."""
    if digit.upper() not in DTMF_DIGITS or len(digit) != 1:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return f"Signal={digit.upper()}\r\nDuration={duration_ms}\r\n".encode()
