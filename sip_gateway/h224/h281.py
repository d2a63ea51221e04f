"""H.281 far-end camera control messages (ITU-T H.281 §6; the client data of client ID ``0x01``).

=====  ===========================  =========================================================
code   message                      octet 2 (and 3)
=====  ===========================  =========================================================
0x01   Start Action                 P R T U Z I F N action bits; octet 3: timeout (bits 4-1)
0x02   Continue Action              the same action bits
0x03   Stop Action                  the same action bits
0x04   Select Video Source          source number (bits 8-5), M1 M0 (bits 2-1)
0x05   Video Source Switched        the same
0x06   Store as Preset              preset number (bits 8-5)
0x07   Activate Preset              preset number (bits 8-5)
=====  ===========================  =========================================================

Action bits, per axis a pair (act, direction): pan 0x80/0x40 (direction set = right), tilt
0x20/0x10 (set = up), zoom 0x08/0x04 (set = in), focus 0x02/0x01 (set = in). So "pan left" is
``0x80`` and a Start Action "pan left" with an 800 ms timeout is ``01 80 00``.

The timeout counts 50 ms units, 1..15 → 50..750 ms; 0 means 800 ms (the longest). A Continue
Action must reach the far end before the timeout runs out, or it stops the camera itself:
that is what makes a lost Stop harmless.

:func:`parse_h281` refuses an unknown code or a message cut short with :class:`H224Error`.
Preset numbers are 0..15, video sources 0..15.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum

from .frame import H224Error

__all__ = [
    "ACTION_BITS", "DEFAULT_TIMEOUT_MS", "Action", "ActionMessage", "H281Code", "H281Message",
    "PresetMessage", "VideoSourceMessage", "encode_h281", "parse_h281", "timeout_field",
]

DEFAULT_TIMEOUT_MS = 800


class H281Code(IntEnum):
    """H.281 message codes."""

    START_ACTION = 0x01
    CONTINUE_ACTION = 0x02
    STOP_ACTION = 0x03
    SELECT_VIDEO_SOURCE = 0x04
    VIDEO_SOURCE_SWITCHED = 0x05
    STORE_PRESET = 0x06
    ACTIVATE_PRESET = 0x07


class Action(Enum):
    """One camera movement (what a console button does)."""

    PAN_LEFT = "pan_left"
    PAN_RIGHT = "pan_right"
    TILT_UP = "tilt_up"
    TILT_DOWN = "tilt_down"
    ZOOM_IN = "zoom_in"
    ZOOM_OUT = "zoom_out"
    FOCUS_IN = "focus_in"
    FOCUS_OUT = "focus_out"

    @property
    def axis(self) -> str:
        """pan, tilt, zoom or focus."""
        return self.value.split("_")[0]


ACTION_BITS: dict[Action, int] = {
    Action.PAN_LEFT: 0x80, Action.PAN_RIGHT: 0xC0,
    Action.TILT_DOWN: 0x20, Action.TILT_UP: 0x30,
    Action.ZOOM_OUT: 0x08, Action.ZOOM_IN: 0x0C,
    Action.FOCUS_OUT: 0x02, Action.FOCUS_IN: 0x03,
}
_AXES = ((0x80, 0x40, Action.PAN_RIGHT, Action.PAN_LEFT), (0x20, 0x10, Action.TILT_UP, Action.TILT_DOWN),
         (0x08, 0x04, Action.ZOOM_IN, Action.ZOOM_OUT), (0x02, 0x01, Action.FOCUS_IN, Action.FOCUS_OUT))


def timeout_field(milliseconds: int) -> int:
    """The 4-bit timeout for ``milliseconds`` (rounded down to 50 ms; ≥ 800 ms or < 50 → 0 = 800 ms)."""
    units = milliseconds // 50
    return units if 1 <= units <= 15 else 0


def actions_of(bits: int) -> frozenset[Action]:
    """The movements an action octet asks for (several axes may move at once)."""
    return frozenset(on if bits & direction else off for act, direction, on, off in _AXES if bits & act)


@dataclass(frozen=True)
class ActionMessage:
    """Start, Continue or Stop Action."""

    code: H281Code
    actions: frozenset[Action]
    timeout_ms: int = DEFAULT_TIMEOUT_MS  # Start Action only

    @property
    def bits(self) -> int:
        """The action octet."""
        value = 0
        for action in self.actions:
            value |= ACTION_BITS[action]
        return value


@dataclass(frozen=True)
class VideoSourceMessage:
    """Select Video Source / Video Source Switched."""

    code: H281Code
    source: int
    mode: int = 0  # M1 M0: 0 motion video, 1 normal-resolution still, 2 double-resolution still


@dataclass(frozen=True)
class PresetMessage:
    """Store as Preset / Activate Preset."""

    code: H281Code
    preset: int


H281Message = ActionMessage | VideoSourceMessage | PresetMessage


def encode_h281(message: H281Message) -> bytes:
    """Client data of one H.281 message."""
    if isinstance(message, ActionMessage):
        if message.code == H281Code.START_ACTION:
            return bytes((message.code, message.bits, timeout_field(message.timeout_ms)))
        return bytes((message.code, message.bits))
    if isinstance(message, VideoSourceMessage):
        if not 0 <= message.source <= 15 or not 0 <= message.mode <= 3:
            raise H224Error("video source or mode out of range")
        return bytes((message.code, (message.source << 4) | message.mode))
    if not 0 <= message.preset <= 15:
        raise H224Error(f"preset {message.preset} out of range 0..15")
    return bytes((message.code, message.preset << 4))


def parse_h281(data: bytes) -> H281Message:
    """Parse H.281 client data; :class:`H224Error` for an unknown code or too few octets."""
    if len(data) < 2:
        raise H224Error("H.281 message shorter than 2 octets")
    try:
        code = H281Code(data[0])
    except ValueError:
        raise H224Error(f"unknown H.281 code {data[0]:#04x}") from None
    if code in (H281Code.START_ACTION, H281Code.CONTINUE_ACTION, H281Code.STOP_ACTION):
        timeout = DEFAULT_TIMEOUT_MS
        if code == H281Code.START_ACTION:
            if len(data) < 3:
                raise H224Error("Start Action without its timeout octet")
            timeout = (data[2] & 0x0F) * 50 or DEFAULT_TIMEOUT_MS
        return ActionMessage(code, actions_of(data[1]), timeout)
    if code in (H281Code.SELECT_VIDEO_SOURCE, H281Code.VIDEO_SOURCE_SWITCHED):
        return VideoSourceMessage(code, data[1] >> 4, data[1] & 0x03)
    return PresetMessage(code, data[1] >> 4)
