"""RFC 6236 image attributes: ask a SIP peer to send video at a given size (pure).

We only *write* ``a=imageattr`` (one fixed size we want to receive) and check whether the
peer's SDP carries the attribute at all (a peer that never answers with one does not
support it, and is then asked by TMMBR alone). We never parse a peer's size sets, so there
is no parser to attack here.
"""
from __future__ import annotations

from .sdp import SessionDescription

MAX_SIDE = 4096


def recv_imageattr(payload_type: int | str, width: int, height: int) -> str:
    """The value of ``a=imageattr`` asking the peer to send ``width`` x ``height``.

    ``send *``: we accept any size the peer wants from us (our encoder tiers decide that);
    ``recv [x=W,y=H]``: the one size we want to receive.
    """
    if not (2 <= width <= MAX_SIDE and 2 <= height <= MAX_SIDE):
        raise ValueError(f"image size {width}x{height} out of range")
    pt = str(payload_type)
    if not (pt == "*" or pt.isdigit() and int(pt) < 128):
        raise ValueError(f"bad payload type {payload_type!r}")
    return f"{pt} send * recv [x={width},y={height}]"


def has_imageattr(sdp: SessionDescription | None) -> bool:
    """True if ``sdp`` has a video section carrying ``a=imageattr``."""
    if sdp is None:
        return False
    return any(m.kind == "video" and m.port and m.attr("imageattr") is not None for m in sdp.media)
