"""The asyncio side of the gateway: sockets, tasks, subprocesses and files around the sans-I/O
cores in :mod:`sip_gateway.sip`, :mod:`sip_gateway.h323` and :mod:`sip_gateway.rtp`."""
