"""Sans-I/O SIP stack (RFC 3261 core) with asyncio adapters.

Entry points: :class:`~.useragent.UserAgent` (the sans-I/O core),
:class:`~.endpoint.SipEndpoint` (sockets and timers), :class:`~.gateway.SipGateway`
(conference rooms plug in here), :mod:`.sdp` (offer/answer). See docs/sip.md.
"""
