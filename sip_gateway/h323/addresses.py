"""H.225.0 addresses shared by call signalling (:mod:`.call`) and RAS (:mod:`.ras`).

A ``TransportAddress`` (only its ``ipAddress`` IPv4 choice) to and from :class:`MediaAddress`,
and ``AliasAddress`` values to and from text.
"""
from __future__ import annotations

from typing import Any

from .events import MediaAddress

__all__ = ["address_from_h225", "alias_address", "alias_text", "alias_texts", "h225_transport_address"]

_TEXT_ALIASES = ("dialledDigits", "h323-ID", "url-ID", "email-ID")


def h225_transport_address(address: MediaAddress) -> tuple[str, Any]:
    """H.225.0 TransportAddress (ipAddress) of a host/port."""
    octets = bytes(int(x) for x in address.host.split("."))
    return ("ipAddress", {"ip": octets, "port": address.port})


def address_from_h225(value: Any) -> MediaAddress | None:
    """The host/port of an ipAddress TransportAddress; None for anything else or garbage."""
    try:
        if value[0] != "ipAddress":
            return None
        ip = bytes(value[1]["ip"])
        if len(ip) != 4:
            return None
        return MediaAddress(".".join(str(b) for b in ip), int(value[1]["port"]))
    except (KeyError, TypeError, IndexError, ValueError):
        return None


def alias_address(value: str) -> tuple[str, str]:
    """AliasAddress: digits become dialledDigits, anything else an h323-ID."""
    if value and all(c in "0123456789#*," for c in value):
        return ("dialledDigits", value)
    return ("h323-ID", value)


def alias_text(alias: Any) -> str | None:
    """The text of a textual AliasAddress (digits, H.323-ID, URL, e-mail); None otherwise."""
    try:
        kind, value = alias
    except (TypeError, ValueError):
        return None
    if kind in _TEXT_ALIASES:
        return str(value)
    return None


def alias_texts(aliases: Any) -> list[str]:
    """The texts of the textual aliases in a sequence of AliasAddress values (None: none)."""
    out: list[str] = []
    for alias in aliases or []:
        if isinstance(alias, tuple) and alias[0] in _TEXT_ALIASES:
            out.append(str(alias[1]))
    return out
