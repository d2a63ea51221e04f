"""The H.245 side of far-end camera control for H.323 (H.323 Annex Q, H.224 over RTP).

An H.323 terminal that does FECC announces, in its TerminalCapabilitySet, a
``receiveAndTransmitDataApplicationCapability`` whose ``application`` is ``h224`` with the
``hdlcFrameTunnelling`` data protocol, and opens a logical channel of ``dataType`` ``data`` with
the same application (H.245 ``DataApplicationCapability``) over RTP, in an H.225.0 session of its
own. Its frames are RFC 4573's: :mod:`sip_gateway.h224`.

This module builds and recognises those H.245 values (pure; what the capability set, the OLC
and the leg do with them is the caller's). ``maxBitRate`` is in units of 100 bit/s: H.224 runs at
4800 bit/s, so 48. :data:`H224_FORMAT` is how :class:`~.h245.H245Session` files the channel (its
own session, :data:`~.capabilities.H224_SESSION`, and a dynamic RTP payload type, sent in the OLC's
``dynamicRTPPayloadType``).
"""
from __future__ import annotations

from typing import Any

from .capabilities import Codec, MediaFormat

__all__ = ["H224_FORMAT", "H224_MAX_BITRATE", "H224_PAYLOAD_TYPE", "add_to_capability_set", "h224_capability",
           "h224_data_type", "is_h224", "remote_has_h224"]

H224_MAX_BITRATE = 48  # 100 bit/s units
H224_PAYLOAD_TYPE = 100  # dynamic; the peer's OLC says its own
H224_FORMAT = MediaFormat(Codec.H224, max_bitrate=H224_MAX_BITRATE, payload_type=H224_PAYLOAD_TYPE)


def _application() -> dict[str, Any]:
    return {"application": ("h224", ("hdlcFrameTunnelling", 0)), "maxBitRate": H224_MAX_BITRATE}


def h224_capability() -> tuple[str, Any]:
    """The capability-table entry: receive and transmit H.224."""
    return ("receiveAndTransmitDataApplicationCapability", _application())


def h224_data_type() -> tuple[str, Any]:
    """The OpenLogicalChannel ``dataType`` of an H.224 channel."""
    return ("data", _application())


def is_h224(value: Any) -> bool:
    """A capability (any data-application choice) or an OLC ``dataType`` that is H.224.

    Never raises, whatever the value: what a peer sent is not trusted to have any shape.
    """
    if not isinstance(value, tuple) or len(value) != 2:
        return False
    kind, body = value
    if kind not in ("data", "receiveDataApplicationCapability", "transmitDataApplicationCapability",
                    "receiveAndTransmitDataApplicationCapability") or not isinstance(body, dict):
        return False
    application = body.get("application")
    return isinstance(application, tuple) and len(application) == 2 and application[0] == "h224"


def add_to_capability_set(tcs: dict[str, Any]) -> dict[str, Any]:
    """Add the H.224 entry to a TerminalCapabilitySet built by ``build_terminal_capability_set``,
    as one more simultaneous capability of the first descriptor. The empty set (pause) stays empty."""
    table = tcs.get("capabilityTable")
    if not table:
        return tcs
    number = max(int(e["capabilityTableEntryNumber"]) for e in table) + 1
    table.append({"capabilityTableEntryNumber": number, "capability": h224_capability()})
    descriptors = tcs.get("capabilityDescriptors") or []
    if descriptors:
        descriptors[0].setdefault("simultaneousCapabilities", []).append([number])
    return tcs


def remote_has_h224(tcs: Any) -> bool:
    """The peer's TerminalCapabilitySet announces H.224 (any data-application direction). Never raises."""
    table = tcs.get("capabilityTable") if isinstance(tcs, dict) else None
    if not isinstance(table, list):
        return False
    return any(isinstance(entry, dict) and is_h224(entry.get("capability")) for entry in table)
