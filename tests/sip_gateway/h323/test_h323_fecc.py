"""Far-end camera control of an H.323 room system (H.281 over the H.224 data channel, H.323 Annex Q)
through the chair console's API, against `commandcenter up` with H.323 on a free port.

The room system is our own H.323 terminal with a camera (tests/sip_gateway/h323/h323_conference_kit.py
``CameraTerminal``: it announces H.224, opens its channel, says pan/tilt/zoom without focus, 6 presets,
and keeps the H.281 messages it receives); H323Plus as packaged for us is built without H.224
(docs/h323.md). The room systems dial the demo conference's number; checked: the MCU learns the camera's capabilities, the
chair's press/hold/release of "pan left" arrives as Start/Continue/Continue/Stop, a preset arrives,
focus is refused (409, the camera cannot), an H.323 site without H.224 gets 409 `fecc_unavailable`,
and tshark reads the H.245 (tunnelled in H.225.0) of the call: both H.224 OpenLogicalChannels with
application h224 / hdlcFrameTunnelling, nothing malformed. (tshark 4.0 has no H.224 dissector: the
H.224 frames themselves are judged in tests/sip_gateway/test_fecc_sip.py where it is built.)
"""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from sip_gateway.h224 import Action
from sip_gateway.h224.h281 import ActionMessage, H281Code, PresetMessage
from sip_gateway.h323.events import MediaAddress
from tests.conftest import RunningServer, free_port
from tests.sip_gateway.h323.h323_conference_kit import CameraTerminal, Terminal
from tests.sip_gateway.h323.h323_testkit import TSHARK, LoopbackCapture, tshark_fields, wire_problems

H323_PORT = free_port()
SERVER_ENV = {"CC_H323__SIGNALLING_PORT": str(H323_PORT), "CC_H323__RAS_PORT": "0",
              "CC_SIP__UDP_PORT": str(free_port())}
DEMO = "80000001"


async def call(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    return await asyncio.to_thread(client.request, method, url, **kwargs)


async def wait_for(check: Any, what: str, within: float = 30.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last: Any = None
    while loop.time() < deadline:
        last = await check()
        if last and not isinstance(last, tuple):
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"never: {what} (last: {last!r})")


def _drain(server: RunningServer) -> list[str]:
    """Keep reading the server's output (a full pipe would block its logging) into a list."""
    lines: list[str] = []
    stdout = server.process.stdout
    assert stdout is not None

    def run() -> None:
        for line in stdout:
            lines.append(line.rstrip("\n"))

    threading.Thread(target=run, daemon=True).start()
    return lines


async def _dial_in(chair: httpx.Client, terminal: Terminal) -> str:
    """Dial the demo conference from ``terminal``; its site id once the conference lists it."""
    before = {r["site_id"] for r in (await call(chair, "GET", f"/api/conferences/{DEMO}")).json()["sites"]}
    await terminal.dial(MediaAddress("127.0.0.1", H323_PORT), DEMO)

    async def listed() -> str | tuple[Any, ...]:
        rows = (await call(chair, "GET", f"/api/conferences/{DEMO}")).json()["sites"]
        new = [r["site_id"] for r in rows if r["site_id"] not in before and r.get("status") == "joined"]
        return new[0] if new else ([type(e).__name__ for e in terminal.events],)

    site: str = await wait_for(listed, f"{terminal.alias} joins the conference")
    return site


@pytest.mark.slow
async def test_chair_steers_an_h323_room_camera(server: RunningServer, tmp_path: Path) -> None:
    if TSHARK is None:
        pytest.fail("tshark is missing (Debian package tshark, in the Makefile's TEST_DEBS)")
    log = _drain(server)
    room = CameraTerminal(alias="room-cam", name="罗定摄像机会议室")
    plain = Terminal(alias="room-plain", name="云安会议室")
    chair, operator = server.login("chair"), server.login("operator")
    cameras = f"/api/conferences/{DEMO}/cameras"
    pcap = tmp_path / "h323-fecc.pcap"
    try:
        with LoopbackCapture(pcap, f"tcp port {H323_PORT}"):
            # the room systems dial the conference's number (dial-in, as a room would)
            cam_site = await _dial_in(chair, room)
            plain_site = await _dial_in(chair, plain)
            camera_url = f"{cameras}/{cam_site}"

            async def learnt() -> dict[str, Any] | tuple[Any, ...]:
                response = await call(chair, "GET", camera_url)
                state = response.json() if response.status_code == 200 else {}
                if state.get("capabilities_known"):
                    return state
                return (response.status_code, state, [line for line in log if "323" in line][-10:])

            state = await wait_for(learnt, "the MCU learns the H.323 room's camera")
            assert state["available"] and state["presets"] == 6 and state["far_end_has_h281"] is True
            assert state["axes"] == {"pan": True, "tilt": True, "zoom": True, "focus": False}

            # press and hold "pan left" (the console: a start, continues every 400 ms), release; a preset
            before = len(room.h281())
            r = await call(chair, "POST", camera_url, json={"action": "start", "move": "pan_left"})
            assert r.status_code == 200, r.text
            for _ in range(2):
                await asyncio.sleep(0.4)
                r = await call(chair, "POST", camera_url, json={"action": "continue", "move": "pan_left"})
                assert r.status_code == 200, r.text
            assert (await call(operator, "POST", camera_url, json={"action": "stop", "move": "pan_left"})).status_code == 200
            assert (await call(chair, "POST", camera_url, json={"action": "preset", "preset": 2})).status_code == 200

            async def arrived() -> list[Any] | tuple[Any, ...]:
                got = room.h281()[before:]
                return got if len(got) >= 5 else (got,)

            got = await wait_for(arrived, "the room system receives the commands", 10)
            pan_left = frozenset({Action.PAN_LEFT})
            assert got[0] == ActionMessage(H281Code.START_ACTION, pan_left, 800)
            assert [m.code for m in got] == [H281Code.START_ACTION, H281Code.CONTINUE_ACTION,
                                             H281Code.CONTINUE_ACTION, H281Code.STOP_ACTION, H281Code.ACTIVATE_PRESET]
            assert all(m.actions == pan_left for m in got[:4] if isinstance(m, ActionMessage))
            assert got[4] == PresetMessage(H281Code.ACTIVATE_PRESET, 1)

            r = await call(chair, "POST", camera_url, json={"action": "start", "move": "focus_in"})
            assert r.status_code == 409 and r.json()["code"] == "fecc_unsupported", r.text

            # the H.323 site without H.224: in the conference, no camera control
            async def plain_in() -> dict[str, Any] | tuple[Any, ...]:
                response = await call(chair, "GET", f"{cameras}/{plain_site}")
                return response.json() if response.status_code == 200 else (response.status_code, response.text)

            assert (await wait_for(plain_in, "the plain H.323 room joins"))["available"] is False
            assert plain.media is not None and plain.media.h224 is None
            r = await call(chair, "POST", f"{cameras}/{plain_site}", json={"action": "start", "move": "pan_left"})
            assert r.status_code == 409 and r.json()["code"] == "fecc_unavailable", r.text
            await asyncio.sleep(0.3)
            assert len(room.h281()) == before + 5  # nothing refused was sent
            assert room.media is not None and room.media.h224 is not None and room.media.h224.dropped == 0
    finally:
        for terminal in (room, plain):
            await terminal.close()

    # Wireshark reads the call's H.245 (tunnelled in H.225.0): both H.224 channels, nothing malformed.
    assert wire_problems(pcap, tolerate_tcp_sequence=True) == []
    olcs = tshark_fields(pcap, "h245.openLogicalChannel_element && h245.application", "h245.application",
                         "h245.h224", "h245.sessionID", "h245.dynamicRTPPayloadType")
    assert len(olcs) == 2, olcs  # the MCU's and the room's
    for line in olcs:
        application, protocol, sessions, payload_type = line.split("\t")
        # (a frame may carry the other side's OLC ack too: its sessionID 4 as well)
        assert (application, protocol, set(sessions.split(",")), payload_type) == ("6", "3", {"4"}, "100"), olcs
