"""H.323 signalling (Q.931/H.225.0, H.245, RAS), sans-I/O (the asyncio adapters are in sip_gateway.aio).

Importing this package installs the fix for pycrate 0.8.1's ALIGNED-PER encoder (see
:mod:`sip_gateway.h323.asn1`). Start with :class:`~sip_gateway.aio.h323_endpoint.H323Endpoint` (asyncio) or :class:`Call`
(sans-I/O); docs/h323.md describes what is covered.
"""
from __future__ import annotations

from .call import Call, CallIdentity, CallState, EndpointConfig
from .capabilities import DEFAULT_FORMATS, Codec, MediaFormat
from .events import LogicalChannel, MediaAddress
from .q931 import Cause
from .ras import Gatekeeper, RasClient, RasClientConfig

__all__ = [
    "DEFAULT_FORMATS",
    "Call",
    "CallIdentity",
    "CallState",
    "Cause",
    "Codec",
    "EndpointConfig",
    "Gatekeeper",
    "LogicalChannel",
    "MediaAddress",
    "MediaFormat",
    "RasClient",
    "RasClientConfig",
]
