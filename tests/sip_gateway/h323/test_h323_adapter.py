"""The asyncio adapter against raw TCP peers: silence and garbage on a real socket."""
from __future__ import annotations

import asyncio

from sip_gateway.aio.h323_endpoint import CallHandle, H323Endpoint
from sip_gateway.h323.call import Call, EndpointConfig
from sip_gateway.h323.events import CallIncoming, CallReleased, MediaAddress, ProtocolErrorLogged
from sip_gateway.h323.q931 import IE, Cause, MessageType, Q931Message, decode_cause
from sip_gateway.h323.tpkt import TpktFramer


async def test_silent_peer_releases_after_t303() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await reader.read()  # read the Setup (and then EOF), never answer

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    room = H323Endpoint(EndpointConfig(is_mcu=False, t303_setup=0.3))
    try:
        handle = await room.dial(MediaAddress("127.0.0.1", port), "80000001")
        released = await handle.wait_for(CallReleased, 5)
        assert released.cause == Cause.RECOVERY_ON_TIMER_EXPIRY and not released.by_remote
        await handle.wait_closed(5)
    finally:
        await room.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_garbage_on_listener_gets_release_complete_and_close() -> None:
    handles: list[CallHandle] = []
    mcu = H323Endpoint(EndpointConfig(), on_incoming=handles.append)
    address = await mcu.listen("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(address.host, address.port)
    try:
        # A valid Setup first so the call has a reference, then a broken TPKT header.
        caller = H323Endpoint(EndpointConfig(is_mcu=False))
        setup_call = Call.outgoing_call(caller.config, "80000001", address, {1: 20000, 2: 20002}, 0.0)
        writer.write(setup_call.data_to_send())
        await writer.drain()
        frames: list[bytes] = []
        framer = TpktFramer()
        while not frames:
            frames += framer.feed(await asyncio.wait_for(reader.read(4096), 5))
        assert Q931Message.decode(frames[0]).message_type == MessageType.CALL_PROCEEDING
        handle = handles[0]
        assert isinstance(await handle.wait_for(CallIncoming, 5), CallIncoming)
        writer.write(b"\x07\x00\x00\x10garbage-garbage")
        await writer.drain()
        rest = b""
        while True:
            chunk = await asyncio.wait_for(reader.read(4096), 5)
            if not chunk:
                break  # the MCU closed the connection after releasing
            rest += chunk
        release = Q931Message.decode(framer.feed(rest)[-1])
        assert release.message_type == MessageType.RELEASE_COMPLETE
        assert decode_cause(release.get(IE.CAUSE) or b"") == Cause.PROTOCOL_ERROR
        logged = await handle.wait_for(ProtocolErrorLogged, 5)
        assert "TPKT" in logged.detail
        released = await handle.wait_for(CallReleased, 5)
        assert released.cause == Cause.PROTOCOL_ERROR
    finally:
        writer.close()
        await mcu.close()
