"""H.239 (role management and additional media channels) on top of H.245, pure values.

H.239 lets a room system send a second video stream, the *presentation* (content), next to
its camera. Three parts of H.245 carry it; this module builds and parses each as pycrate
values (the :mod:`.asn1` representation), so :mod:`.h245` and the conference leg never touch
the raw structures:

* **Capabilities** (H.239 §7.1). The terminal capability set carries a
  ``genericControlCapability`` with identifier ``0.0.8.239.1.1`` (the H.239 control
  capability: "I speak the token messages") and, per content codec, a
  ``receiveVideoCapability``/``receiveAndTransmitVideoCapability`` of kind
  ``extendedVideoCapability`` whose ``videoCapabilityExtension`` is the generic capability
  ``0.0.8.239.1.2`` with the role label parameter.
* **The role label** (H.239 §6) on the OpenLogicalChannel's ``dataType``: the same
  ``extendedVideoCapability`` with one codec, whose extension's ``collapsing`` holds parameter
  1 (roleLabel) as a ``booleanArray``. On the wire the value is a bit mask: bit value 1 is
  *presentation*, bit value 2 is *live* (H.239 role labels 1 and 0), as H323Plus and
  Wireshark read it; a channel whose mask has the presentation bit is a content channel.
* **Messages** (H.239 §7.2, Tables 9-1..9-6): ``GenericMessage`` values with
  messageIdentifier ``0.0.8.239.2`` and a subMessageIdentifier, carried as
  ``genericRequest`` (flowControlReleaseRequest, presentationTokenRequest),
  ``genericResponse`` (flowControlReleaseResponse, presentationTokenResponse),
  ``genericCommand`` (presentationTokenRelease) or ``genericIndication``
  (presentationTokenIndicateOwner). Their parameters are generic parameters with standard
  identifiers: bitRate 41, channelId 42, symmetryBreaking 43, terminalLabel 44 (all
  ``unsignedMin``), acknowledge 126 and reject 127 (``logical``, present or absent).

Parsing is strict about what it returns and lenient about what it ignores: an H.245 message
that is not an H.239 generic message yields ``None``; an H.239 message with a parameter of
the wrong type or a response that is neither acknowledge nor reject raises
:class:`H239Error` (a ``ValueError``), which the caller answers by ignoring the message.
Unknown parameter identifiers are skipped (H.239 §7.2: receivers ignore what they do not
know). Everything here is hand-written because pycrate gives only the ASN.1 types; the
mapping onto the conference's content token is in ``mcu/content/token.py``.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from .asn1 import decode_h245, encode_h245
from .capabilities import Codec, MediaFormat, data_type_from_format, format_from_data_type
from .events import Event

__all__ = [
    "CONTENT_SESSION",
    "H239MessageReceived",
    "add_to_capability_set",
    "content_format",
    "remote_content_formats",
    "H239_CONTROL_OID",
    "H239_MESSAGE_OID",
    "H239_VIDEO_OID",
    "H239Error",
    "H239Message",
    "Param",
    "Role",
    "SubMessage",
    "content_data_type",
    "control_capability",
    "decode_message",
    "encode_message",
    "extended_video_capability",
    "has_control_capability",
    "message_value",
    "parse_extended_video",
    "parse_message",
]

H239_CONTROL_OID: tuple[int, ...] = (0, 0, 8, 239, 1, 1)
H239_VIDEO_OID: tuple[int, ...] = (0, 0, 8, 239, 1, 2)
H239_MESSAGE_OID: tuple[int, ...] = (0, 0, 8, 239, 2)
# The session of the content channel. H.245 lets the master assign session IDs above 3;
# room systems (and H323Plus) use 3 for the extended video channel, and so do we.
CONTENT_SESSION = 3
_ROLE_LABEL_PARAM = 1  # H.239 §7.1.2: parameter 1 of the extended video capability
_UNSIGNED_MIN_MAX = 65535  # ParameterValue.unsignedMin is INTEGER (0..65535)


class H239Error(ValueError):
    """An H.239 message or capability is malformed (wrong parameter type, no answer)."""


class Role(IntEnum):
    """Role label bits of the booleanArray (H.239 §6: presentation = role 1, live = role 0)."""

    PRESENTATION = 1
    LIVE = 2


class SubMessage(IntEnum):
    """H.239 subMessageIdentifier values (H.239 Tables 9-1..9-6)."""

    FLOW_CONTROL_RELEASE_REQUEST = 1
    FLOW_CONTROL_RELEASE_RESPONSE = 2
    PRESENTATION_TOKEN_REQUEST = 3
    PRESENTATION_TOKEN_RESPONSE = 4
    PRESENTATION_TOKEN_RELEASE = 5
    PRESENTATION_TOKEN_INDICATE_OWNER = 6


class Param(IntEnum):
    """H.239 generic parameter identifiers (standard)."""

    BIT_RATE = 41
    CHANNEL_ID = 42
    SYMMETRY_BREAKING = 43
    TERMINAL_LABEL = 44
    ACKNOWLEDGE = 126
    REJECT = 127


# Which H.245 message class carries each submessage (H.239 §7.2).
_CARRIER: dict[SubMessage, tuple[str, str]] = {
    SubMessage.FLOW_CONTROL_RELEASE_REQUEST: ("request", "genericRequest"),
    SubMessage.FLOW_CONTROL_RELEASE_RESPONSE: ("response", "genericResponse"),
    SubMessage.PRESENTATION_TOKEN_REQUEST: ("request", "genericRequest"),
    SubMessage.PRESENTATION_TOKEN_RESPONSE: ("response", "genericResponse"),
    SubMessage.PRESENTATION_TOKEN_RELEASE: ("command", "genericCommand"),
    SubMessage.PRESENTATION_TOKEN_INDICATE_OWNER: ("indication", "genericIndication"),
}
_RESPONSES = frozenset({SubMessage.FLOW_CONTROL_RELEASE_RESPONSE, SubMessage.PRESENTATION_TOKEN_RESPONSE})
_CARRIER_NAMES = {carrier for _, carrier in _CARRIER.values()}


@dataclass(frozen=True)
class H239Message:
    """One H.239 message. ``acknowledge`` is True/False on responses (acknowledge/reject),
    None on every other kind. Integer fields absent from the message are None."""

    kind: SubMessage
    channel_id: int | None = None
    terminal_label: int | None = None
    symmetry_breaking: int | None = None
    bit_rate: int | None = None
    acknowledge: bool | None = None

    def __post_init__(self) -> None:
        if (self.kind in _RESPONSES) != (self.acknowledge is not None):
            raise H239Error(f"{self.kind.name}: acknowledge must be set exactly on responses")
        for name in ("channel_id", "terminal_label", "symmetry_breaking", "bit_rate"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= _UNSIGNED_MIN_MAX:
                raise H239Error(f"{self.kind.name}: {name} {value} out of range")

    @property
    def carrier(self) -> tuple[str, str]:
        """The H.245 message class and choice that carry this message."""
        return _CARRIER[self.kind]


# ---------------------------------------------------------------------------- capabilities


def control_capability() -> tuple[str, Any]:
    """The ``Capability`` entry announcing the H.239 control capability (H.239 §7.1.1)."""
    return ("genericControlCapability", {"capabilityIdentifier": ("standard", H239_CONTROL_OID)})


def has_control_capability(capabilities: Iterable[Any]) -> bool:
    """True when a capability table's ``capability`` values include the H.239 control one."""
    for cap in capabilities:
        if (isinstance(cap, tuple) and len(cap) == 2 and cap[0] == "genericControlCapability"
                and isinstance(cap[1], dict)
                and cap[1].get("capabilityIdentifier") == ("standard", H239_CONTROL_OID)):
            return True
    return False


def extended_video_capability(video_capabilities: Sequence[tuple[str, Any]],
                              roles: int = Role.PRESENTATION) -> tuple[str, Any]:
    """A ``VideoCapability`` of kind ``extendedVideoCapability`` for the given codecs, labelled
    with the role mask ``roles`` (H.239 §7.1.2)."""
    if not video_capabilities:
        raise H239Error("an extended video capability needs at least one codec")
    if not 0 < roles <= 0xFF:
        raise H239Error(f"role mask {roles} out of range")
    return ("extendedVideoCapability", {
        "videoCapability": list(video_capabilities),
        "videoCapabilityExtension": [{
            "capabilityIdentifier": ("standard", H239_VIDEO_OID),
            "collapsing": [{"parameterIdentifier": ("standard", _ROLE_LABEL_PARAM),
                            "parameterValue": ("booleanArray", int(roles))}],
        }],
    })


def content_data_type(video_capability: tuple[str, Any], roles: int = Role.PRESENTATION) -> tuple[str, Any]:
    """The OpenLogicalChannel ``dataType`` of a content channel carrying one codec."""
    return ("videoData", extended_video_capability([video_capability], roles))


def parse_extended_video(value: Any) -> tuple[int, list[tuple[str, Any]]] | None:
    """``(role mask, codec capabilities)`` of an ``extendedVideoCapability`` (a
    ``VideoCapability`` value or an OLC ``dataType`` ``('videoData', ...)``); None when the
    value is not an H.239 extended video capability. Unknown extension entries are ignored."""
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "videoData":
        value = value[1]
    if not (isinstance(value, tuple) and len(value) == 2 and value[0] == "extendedVideoCapability"):
        return None
    body = value[1]
    if not isinstance(body, dict):
        return None
    roles, found = 0, False
    for ext in body.get("videoCapabilityExtension", []):
        if ext.get("capabilityIdentifier") != ("standard", H239_VIDEO_OID):
            continue
        found = True
        for param in ext.get("collapsing", []):
            if param.get("parameterIdentifier") != ("standard", _ROLE_LABEL_PARAM):
                continue
            kind, raw = param.get("parameterValue", (None, None))
            if kind != "booleanArray":
                raise H239Error(f"role label is {kind}, not booleanArray")
            roles |= int(raw)
    if not found:
        return None
    return roles, list(body.get("videoCapability", []))


def _video_capability_of(fmt: MediaFormat) -> tuple[str, Any]:
    data_type = data_type_from_format(fmt)
    value: tuple[str, Any] = data_type[1]
    return value


def add_to_capability_set(tcs: dict[str, Any], content_formats: Sequence[MediaFormat]) -> dict[str, Any]:
    """Add H.239 to a TerminalCapabilitySet built by ``build_terminal_capability_set``: one
    ``receiveVideoCapability`` of kind ``extendedVideoCapability`` (presentation role) listing
    ``content_formats``, and the control capability, as one more simultaneous capability set
    of the first descriptor. The empty capability set (pause) stays empty."""
    table = tcs.get("capabilityTable")
    video = [f for f in content_formats if f.codec.is_video]
    if not table or not video:
        return tcs
    number = max(int(e["capabilityTableEntryNumber"]) for e in table) + 1
    table.append({"capabilityTableEntryNumber": number, "capability": (
        "receiveVideoCapability", extended_video_capability([_video_capability_of(f) for f in video]))})
    table.append({"capabilityTableEntryNumber": number + 1, "capability": control_capability()})
    descriptors = tcs.get("capabilityDescriptors") or []
    if descriptors:
        descriptors[0].setdefault("simultaneousCapabilities", []).extend([[number], [number + 1]])
    return tcs


def content_format(data_type: Any) -> MediaFormat | None:
    """The codec format of an OLC ``dataType`` that opens an H.239 presentation channel; None
    for anything else (a camera channel, a live-role extended channel, a codec we do not know)."""
    parsed = parse_extended_video(data_type)
    if parsed is None or not parsed[0] & Role.PRESENTATION or len(parsed[1]) != 1:
        return None
    fmt = format_from_data_type(("videoData", parsed[1][0]))
    return fmt if fmt is not None and fmt.codec in (Codec.H264, Codec.H263, Codec.H261) else None


def remote_content_formats(tcs: dict[str, Any]) -> tuple[bool, list[MediaFormat]]:
    """``(speaks H.239, presentation formats it receives)`` of a peer's TerminalCapabilitySet.
    Malformed H.239 entries are skipped like any capability we do not understand."""
    control = False
    formats: list[MediaFormat] = []
    for entry in tcs.get("capabilityTable", []):
        capability = entry.get("capability") if isinstance(entry, dict) else None
        if not isinstance(capability, tuple) or len(capability) != 2:
            continue
        if has_control_capability([capability]):
            control = True
        elif capability[0] in ("receiveVideoCapability", "receiveAndTransmitVideoCapability"):
            try:
                parsed = parse_extended_video(capability[1])
            except (H239Error, TypeError, ValueError, AttributeError):
                continue
            if parsed is None or not parsed[0] & Role.PRESENTATION:
                continue
            for codec in parsed[1]:
                fmt = format_from_data_type(("videoData", codec))
                if fmt is not None:
                    formats.append(fmt)
    return control, formats


@dataclass(frozen=True)
class H239MessageReceived(Event):
    """The peer sent an H.239 token or flow-control message."""

    message: H239Message


# ---------------------------------------------------------------------------- messages


def _integer(pid: Param, value: int) -> dict[str, Any]:
    return {"parameterIdentifier": ("standard", int(pid)), "parameterValue": ("unsignedMin", value)}


def _logical(pid: Param) -> dict[str, Any]:
    return {"parameterIdentifier": ("standard", int(pid)), "parameterValue": ("logical", 0)}


def message_value(message: H239Message) -> tuple[str, Any]:
    """The MultimediaSystemControlMessage value carrying ``message`` (for :func:`encode_h245`).

    Parameters go in the order H323Plus and the H.239 tables list them: acknowledge/reject
    first on responses, then terminalLabel, channelId, symmetryBreaking, bitRate."""
    content: list[dict[str, Any]] = []
    if message.acknowledge is not None:
        content.append(_logical(Param.ACKNOWLEDGE if message.acknowledge else Param.REJECT))
    for pid, value in ((Param.TERMINAL_LABEL, message.terminal_label),
                       (Param.CHANNEL_ID, message.channel_id),
                       (Param.SYMMETRY_BREAKING, message.symmetry_breaking),
                       (Param.BIT_RATE, message.bit_rate)):
        if value is not None:
            content.append(_integer(pid, value))
    generic: dict[str, Any] = {"messageIdentifier": ("standard", H239_MESSAGE_OID),
                               "subMessageIdentifier": int(message.kind)}
    if content:
        generic["messageContent"] = content
    family, choice = message.carrier
    return (family, (choice, generic))


def parse_message(value: tuple[str, Any]) -> H239Message | None:
    """The H.239 message in a decoded MultimediaSystemControlMessage, or None when it is
    some other message. Raises :class:`H239Error` when it is H.239 but malformed: unknown
    submessage, a submessage in the wrong carrier, a parameter of the wrong type, a
    response without acknowledge/reject or with both."""
    if not (isinstance(value, tuple) and len(value) == 2):
        return None
    family, inner = value
    if not (isinstance(inner, tuple) and len(inner) == 2 and inner[0] in _CARRIER_NAMES):
        return None
    choice, generic = inner
    if not isinstance(generic, dict) or generic.get("messageIdentifier") != ("standard", H239_MESSAGE_OID):
        return None
    raw_kind = generic.get("subMessageIdentifier")
    try:
        kind = SubMessage(int(raw_kind) if isinstance(raw_kind, int) else -1)
    except ValueError:
        raise H239Error(f"unknown H.239 subMessageIdentifier {raw_kind}") from None
    if _CARRIER[kind] != (family, choice):
        raise H239Error(f"{kind.name} carried in {family}/{choice}")
    integers: dict[Param, int] = {}
    ack = rej = False
    for param in generic.get("messageContent", []):
        pid = param.get("parameterIdentifier")
        pvalue = param.get("parameterValue")
        if not (isinstance(pid, tuple) and pid[0] == "standard" and isinstance(pvalue, tuple)):
            continue  # nonStandard/uuid identifiers: not H.239's, ignored
        try:
            known = Param(pid[1])
        except ValueError:
            continue
        if known in (Param.ACKNOWLEDGE, Param.REJECT):
            if pvalue[0] != "logical":
                raise H239Error(f"{kind.name}: {known.name} is {pvalue[0]}, not logical")
            if known is Param.ACKNOWLEDGE:
                ack = True
            else:
                rej = True
        else:
            if pvalue[0] not in ("unsignedMin", "unsignedMax", "unsigned32Min", "unsigned32Max"):
                raise H239Error(f"{kind.name}: {known.name} is {pvalue[0]}, not an integer")
            number = int(pvalue[1])
            if number > _UNSIGNED_MIN_MAX:
                raise H239Error(f"{kind.name}: {known.name} {number} out of range")
            integers[known] = number
    acknowledge: bool | None = None
    if kind in _RESPONSES:
        if ack == rej:
            raise H239Error(f"{kind.name}: needs exactly one of acknowledge/reject")
        acknowledge = ack
    return H239Message(kind, channel_id=integers.get(Param.CHANNEL_ID),
                       terminal_label=integers.get(Param.TERMINAL_LABEL),
                       symmetry_breaking=integers.get(Param.SYMMETRY_BREAKING),
                       bit_rate=integers.get(Param.BIT_RATE), acknowledge=acknowledge)


def encode_message(message: H239Message) -> bytes:
    """One H.245 PDU (ALIGNED PER) carrying ``message``."""
    return encode_h245(message_value(message))


def decode_message(data: bytes) -> H239Message | None:
    """Decode one H.245 PDU: its H.239 message, or None for any other H.245 message.
    Raises ``Asn1Error`` (undecodable bytes) or :class:`H239Error` (malformed H.239);
    both are ``ValueError``."""
    return parse_message(decode_h245(data))
