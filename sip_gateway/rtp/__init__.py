"""Plain RTP media for SIP and H.323 legs: the negotiated media description, and sans-I/O
sessions and codecs on aiortc's packet, codec and jitter-buffer parts. The asyncio leg that
binds the sockets is :class:`sip_gateway.aio.rtp_leg.MediaLeg`. See docs/sip.md."""
