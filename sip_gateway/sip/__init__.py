"""Sans-I/O SIP stack (RFC 3261 core); its asyncio adapter is :mod:`sip_gateway.aio.sip_endpoint`.

Entry points: :class:`~.useragent.UserAgent` (the sans-I/O core, composed of :mod:`.uas`,
:mod:`.uac`, :mod:`.registrar`, :mod:`.registration` and :mod:`.qualify`),
:class:`~sip_gateway.aio.sip_endpoint.SipEndpoint` (sockets and timers), :class:`~.gateway.SipGateway`
(conference rooms plug in here), :mod:`.sdp` (offer/answer). See docs/sip.md.
"""
