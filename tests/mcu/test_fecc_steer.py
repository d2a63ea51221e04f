"""mcu.legs.fecc: what the console may do with a site's camera, and the refusals (nothing sent)."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from mcu.legs.fecc import FeccError, Steer, camera_state, preset_count, steer
from sip_gateway.h224 import Action, CameraSource, FeccCapabilities, FeccSession
from sip_gateway.h224.cme import ClientList, encode_cme
from sip_gateway.h224.frame import CLIENT_CME, ClientId, segment


@dataclass
class FakeCamera:
    """Records what would be sent (the real one is sip_gateway.aio.h224_channel.H224Channel)."""

    session: FeccSession = field(default_factory=FeccSession)
    packets_sent: int = 0
    calls: list[tuple[str, object]] = field(default_factory=list)

    @property
    def dropped(self) -> int:
        return self.session.dropped

    def start_action(self, action: Action) -> None:
        self.calls.append(("start", action))

    def continue_action(self, action: Action) -> None:
        self.calls.append(("continue", action))

    def stop_action(self, action: Action) -> None:
        self.calls.append(("stop", action))

    def activate_preset(self, preset: int) -> None:
        self.calls.append(("preset", preset))

    def store_preset(self, preset: int) -> None:
        self.calls.append(("store", preset))


def _refused(camera: FakeCamera | None, command: Steer, code: str, status: int) -> None:
    before = list(camera.calls) if camera else []
    with pytest.raises(FeccError) as refused:
        steer(camera, command)
    assert (refused.value.code, refused.value.status) == (code, status)
    assert (camera.calls if camera else []) == before


def test_unknown_capabilities_allow_everything() -> None:
    camera = FakeCamera()
    assert camera_state(camera)["axes"] == {"pan": True, "tilt": True, "zoom": True, "focus": True}
    assert camera_state(camera)["presets"] == 6 and camera_state(None)["available"] is False
    steer(camera, Steer("start", Action.FOCUS_IN))
    steer(camera, Steer("preset", preset=6))
    assert camera.calls == [("start", Action.FOCUS_IN), ("preset", 5)]
    _refused(None, Steer("start", Action.PAN_LEFT), "fecc_unavailable", 409)
    _refused(camera, Steer("preset", preset=7), "bad_preset", 400)
    _refused(camera, Steer("start"), "missing", 400)


def test_what_the_camera_said_limits_the_console() -> None:
    camera = FakeCamera()
    camera.session.capabilities = FeccCapabilities(2, (CameraSource(1, pan=True, tilt=True),))
    state = camera_state(camera)
    assert state["axes"] == {"pan": True, "tilt": True, "zoom": False, "focus": False} and state["presets"] == 2
    _refused(camera, Steer("continue", Action.ZOOM_IN), "fecc_unsupported", 409)
    _refused(camera, Steer("store", preset=3), "fecc_unsupported", 409)
    steer(camera, Steer("stop", Action.ZOOM_IN))  # stopping is always allowed
    steer(camera, Steer("store", preset=2))
    assert camera.calls == [("stop", Action.ZOOM_IN), ("store", 1)]


def test_a_far_end_without_h281_gets_nothing() -> None:
    camera = FakeCamera()
    camera.session.receive(segment(ClientId(CLIENT_CME), encode_cme(ClientList(((ClientId(CLIENT_CME), False),))))[0], 0)
    assert preset_count(camera.session) == 0 and not any(camera_state(camera)["axes"].values())
    _refused(camera, Steer("start", Action.PAN_LEFT), "fecc_unsupported", 409)
    _refused(camera, Steer("preset", preset=1), "fecc_unsupported", 409)
