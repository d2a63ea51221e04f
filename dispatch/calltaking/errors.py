"""The desk's one error type: an action that cannot be done, with a message for the call-taker."""
from __future__ import annotations


class DeskError(ValueError):
    """A desk action that cannot be done (shown to the call-taker)."""


__all__ = ["DeskError"]
