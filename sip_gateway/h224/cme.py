"""The H.224 client management entity (CME, H.224 §6, client ID ``0x00``) and H.281's extra
capabilities (H.281 §6.2): who has which clients, and what the far end's camera can do.

CME client data starts with two octets: the message (``0x01`` Client List, ``0x02`` Extra
Capabilities) and ``0x00`` (a message/response) or ``0xFF`` (a command: "send me yours").

* Client List message: ``01 00 N id1 .. idN``; bit 8 of each ID octet says "I have extra
  capabilities for this client" (``0x81`` = H.281 with extra capabilities).
* Client List command: ``01 FF``.
* Extra Capabilities message: ``02 00 <client ID with bit 8 set> <capabilities>``. For H.281:
  one octet (bits 8-6 reserved, bit 5 "broadcast switches video sources", bits 4-1 number of
  presets), then per video source one octet (source number bits 8-5, bit 4 reserved, M V S
  bits 3-1: motion video, normal / double resolution stills), an ASCII name ending in ``0x00``
  for sources numbered 6 and above, and one octet P T Z F (bits 8-5: pan, tilt, zoom, focus).
* Extra Capabilities command: ``02 FF <client ID>``.

:func:`parse_cme` refuses what it cannot read with :class:`H224Error`; an H.281 capability list
cut short after a complete source keeps the sources read so far (a far end that sends only its
preset count still tells us that).
"""

from __future__ import annotations

from dataclasses import dataclass

from .frame import CLIENT_H281, ClientId, H224Error

__all__ = [
    "CameraSource", "ClientList", "ClientListCommand", "CmeMessage", "ExtraCapabilities",
    "ExtraCapabilitiesCommand", "FeccCapabilities", "encode_cme", "encode_fecc_capabilities",
    "parse_cme", "parse_fecc_capabilities",
]

CLIENT_LIST = 0x01
EXTRA_CAPABILITIES = 0x02
RESPONSE = 0x00
COMMAND = 0xFF
MAX_SOURCE_NAME = 16


@dataclass(frozen=True)
class CameraSource:
    """One video source of the far end and what its camera can do."""

    number: int
    pan: bool = False
    tilt: bool = False
    zoom: bool = False
    focus: bool = False
    motion_video: bool = True
    name: str = ""


@dataclass(frozen=True)
class FeccCapabilities:
    """H.281 extra capabilities: presets and video sources."""

    presets: int = 0
    sources: tuple[CameraSource, ...] = ()
    broadcast_switches: bool = False

    def can(self, axis: str) -> bool:
        """Any source can move along ``axis`` (pan, tilt, zoom, focus)."""
        return any(getattr(source, axis) for source in self.sources)


@dataclass(frozen=True)
class ClientList:
    """Client List message: (client, has extra capabilities) pairs."""

    clients: tuple[tuple[ClientId, bool], ...]


@dataclass(frozen=True)
class ClientListCommand:
    """"Send me your client list"."""


@dataclass(frozen=True)
class ExtraCapabilities:
    """Extra Capabilities message for one client (raw octets; H.281's: :func:`parse_fecc_capabilities`)."""

    client: ClientId
    data: bytes


@dataclass(frozen=True)
class ExtraCapabilitiesCommand:
    """"Send me your extra capabilities for this client"."""

    client: ClientId


CmeMessage = ClientList | ClientListCommand | ExtraCapabilities | ExtraCapabilitiesCommand


def encode_cme(message: CmeMessage) -> bytes:
    """CME client data."""
    if isinstance(message, ClientListCommand):
        return bytes((CLIENT_LIST, COMMAND))
    if isinstance(message, ClientList):
        if len(message.clients) > 255:
            raise H224Error("more than 255 clients")
        out = bytearray((CLIENT_LIST, RESPONSE, len(message.clients)))
        for client, extra in message.clients:
            octets = bytearray(client.encode())
            if extra:
                octets[0] |= 0x80
            out += octets
        return bytes(out)
    if isinstance(message, ExtraCapabilitiesCommand):
        return bytes((EXTRA_CAPABILITIES, COMMAND)) + _with_extra_bit(message.client)
    return bytes((EXTRA_CAPABILITIES, RESPONSE)) + _with_extra_bit(message.client) + message.data


def _with_extra_bit(client: ClientId) -> bytes:
    octets = bytearray(client.encode())
    octets[0] |= 0x80
    return bytes(octets)


def parse_cme(data: bytes) -> CmeMessage:
    """Parse CME client data; :class:`H224Error` for anything else."""
    if len(data) < 2:
        raise H224Error("CME message shorter than 2 octets")
    kind, answer = data[0], data[1]
    if answer not in (RESPONSE, COMMAND):
        raise H224Error(f"CME response code {answer:#04x}")
    if kind == CLIENT_LIST:
        if answer == COMMAND:
            return ClientListCommand()
        if len(data) < 3:
            raise H224Error("Client List without its count")
        clients: list[tuple[ClientId, bool]] = []
        offset = 3
        for _ in range(data[2]):
            if offset >= len(data):
                raise H224Error("Client List shorter than its count")
            extra = bool(data[offset] & 0x80)
            client, offset = ClientId.parse(data, offset)
            clients.append((client, extra))
        return ClientList(tuple(clients))
    if kind == EXTRA_CAPABILITIES:
        client, offset = ClientId.parse(data, 2)
        if answer == COMMAND:
            return ExtraCapabilitiesCommand(client)
        return ExtraCapabilities(client, bytes(data[offset:]))
    raise H224Error(f"unknown CME message {kind:#04x}")


def parse_fecc_capabilities(data: bytes) -> FeccCapabilities:
    """H.281 extra capabilities (after the client ID); :class:`H224Error` when even the preset
    octet is missing or a source name does not end within 16 octets."""
    if not data:
        raise H224Error("H.281 capabilities without the preset octet")
    presets, broadcast = data[0] & 0x0F, bool(data[0] & 0x10)
    sources: list[CameraSource] = []
    offset = 1
    while offset < len(data):
        head = data[offset]
        number, cursor = head >> 4, offset + 1
        name = ""
        if number > 5:
            end = data.find(b"\x00", cursor, cursor + MAX_SOURCE_NAME + 1)
            if end < 0:
                raise H224Error("video source name not terminated")
            name = data[cursor:end].decode("ascii", "replace")
            cursor = end + 1
        if cursor >= len(data):
            break  # cut short: keep what is complete
        caps = data[cursor]
        sources.append(CameraSource(number, bool(caps & 0x80), bool(caps & 0x40), bool(caps & 0x20),
                                    bool(caps & 0x10), bool(head & 0x04), name))
        offset = cursor + 1
    return FeccCapabilities(presets, tuple(sources), broadcast)


def encode_fecc_capabilities(caps: FeccCapabilities) -> bytes:
    """The H.281 extra-capabilities octets (what a camera sends; our test peer and seeds use it)."""
    if not 0 <= caps.presets <= 15:
        raise H224Error("presets out of range 0..15")
    out = bytearray(((0x10 if caps.broadcast_switches else 0) | caps.presets,))
    for source in caps.sources:
        if not 0 <= source.number <= 15:
            raise H224Error("video source out of range 0..15")
        out.append((source.number << 4) | (0x04 if source.motion_video else 0))
        if source.number > 5:
            out += source.name.encode("ascii", "replace")[:MAX_SOURCE_NAME] + b"\x00"
        out.append((0x80 if source.pan else 0) | (0x40 if source.tilt else 0)
                   | (0x20 if source.zoom else 0) | (0x10 if source.focus else 0))
    return bytes(out)


def h281_client() -> ClientId:
    """The H.281 client ID."""
    return ClientId(CLIENT_H281)
