"""Plain RTP media for SIP (and later H.323) legs: sans-I/O sessions on aiortc's packet,
codec and jitter-buffer parts, and the asyncio :class:`~.leg.MediaLeg`. See docs/sip.md."""
