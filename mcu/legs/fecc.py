"""Far-end camera control of a site, whatever way it came in: what the chair console steers.

A leg that negotiated H.224 (a SIP site by RFC 4573, :mod:`mcu.legs.sip_bridge`) offers a
:class:`Camera` for a (conference, site); the bridges are :class:`CameraProvider` s. The chair
console (:mod:`web_console.camera_console`) asks :func:`camera_state` and :func:`steer`; a site
without FECC answers :class:`FeccError` ``fecc_unavailable`` (HTTP 409), a movement the far end
said it cannot do (an axis, or a preset beyond the number it announced) ``fecc_unsupported``
(409), a preset outside 1..:data:`MAX_PRESET`
``bad_preset`` (400). Presets are numbered 1..6 on the console and 0..5 in H.281.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sip_gateway.h224 import Action, FeccSession

__all__ = ["MAX_PRESET", "Camera", "CameraProvider", "FeccError", "Steer", "camera_state", "find_camera",
           "preset_count", "steer"]

MAX_PRESET = 6  # the console's preset buttons (H.281 allows 16)

SteerKind = Literal["start", "continue", "stop", "preset", "store"]


class Camera(Protocol):
    """One site's H.224 channel (:class:`sip_gateway.aio.h224_channel.H224Channel`)."""

    session: FeccSession
    packets_sent: int

    @property
    def dropped(self) -> int:
        """Garbage dropped from the far end."""

    def start_action(self, action: Action) -> None:
        """Start Action."""

    def continue_action(self, action: Action) -> None:
        """Continue Action."""

    def stop_action(self, action: Action) -> None:
        """Stop Action."""

    def activate_preset(self, preset: int) -> None:
        """Activate Preset (H.281 number)."""

    def store_preset(self, preset: int) -> None:
        """Store as Preset (H.281 number)."""


class CameraProvider(Protocol):
    """A bridge that knows its sites' cameras."""

    def camera(self, conference_id: str, site_id: str) -> Camera | None:
        """The site's camera control, or None (no FECC, not connected, not ours)."""


class FeccError(Exception):
    """A refused camera command: ``code``, a zh-CN ``message`` and the HTTP ``status``."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass(frozen=True)
class Steer:
    """One console command."""

    kind: SteerKind
    action: Action | None = None  # start/continue/stop
    preset: int | None = None  # preset/store: 1..MAX_PRESET


def find_camera(providers: Iterable[CameraProvider | None], conference_id: str, site_id: str) -> Camera | None:
    """The first provider's camera for the site."""
    for provider in providers:
        camera = provider.camera(conference_id, site_id) if provider is not None else None
        if camera is not None:
            return camera
    return None


def camera_state(camera: Camera | None) -> dict[str, Any]:
    """What the console shows: available, which axes, how many presets, counters."""
    if camera is None:
        return {"available": False, "axes": {a: False for a in ("pan", "tilt", "zoom", "focus")}, "presets": 0}
    session = camera.session
    caps = session.capabilities
    axes = {axis: session.supports(next(a for a in Action if a.axis == axis)) for axis in ("pan", "tilt", "zoom", "focus")}
    presets = preset_count(session)
    return {"available": True, "axes": axes, "presets": presets, "capabilities_known": caps is not None,
            "far_end_has_h281": session.far_has_h281, "sent": camera.packets_sent, "dropped": camera.dropped}


def preset_count(session: FeccSession) -> int:
    """Presets the console offers: what the far end announced (at most :data:`MAX_PRESET`), all of
    them while it has not said, none when it has no H.281."""
    if session.far_has_h281 is False:
        return 0
    announced = session.preset_count()
    return MAX_PRESET if announced is None else min(announced, MAX_PRESET)


def steer(camera: Camera | None, command: Steer) -> None:
    """Carry out ``command`` on ``camera``; :class:`FeccError` when it cannot be done (nothing sent)."""
    if camera is None:
        raise FeccError("fecc_unavailable", "该会场未协商远端摄像机控制（FECC）", 409)
    if command.kind in ("preset", "store"):
        if command.preset is None or not 1 <= command.preset <= MAX_PRESET:
            raise FeccError("bad_preset", f"预置位须为 1–{MAX_PRESET}", 400)
        if command.preset > preset_count(camera.session):
            raise FeccError("fecc_unsupported", "该会场的摄像机不支持此操作", 409)
        if command.kind == "preset":
            camera.activate_preset(command.preset - 1)
        else:
            camera.store_preset(command.preset - 1)
        return
    action = command.action
    if action is None:
        raise FeccError("missing", "缺少参数: move", 400)
    if command.kind != "stop" and not camera.session.supports(action):
        raise FeccError("fecc_unsupported", "该会场的摄像机不支持此操作", 409)
    if command.kind == "start":
        camera.start_action(action)
    elif command.kind == "continue":
        camera.continue_action(action)
    else:
        camera.stop_action(action)
