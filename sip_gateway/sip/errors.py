"""Errors raised by the SIP parser and stack.

A :class:`SipParseError` carries the status code and reason phrase the server should answer
with (400 by default), so the caller can build a clear error response without guessing.
"""

from __future__ import annotations


class SipError(Exception):
    """Base class for every error raised by :mod:`sip_gateway.sip`."""


class SipParseError(SipError):
    """A message (or part of one) could not be parsed.

    ``status`` and ``reason`` are what a UAS answers with when the message was a request.
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class MessageTooLarge(SipParseError):
    """The datagram or stream frame is larger than the configured limit: drop and log it."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"Message too large ({size} > {limit} bytes)", 513)
        self.size = size
        self.limit = limit
