"""Q.931 messages as profiled by H.225.0 (section 7): header, information elements, causes.

Written by hand: the format is a few octets of binary framing, and H.225.0 changes Q.931
in ways general ISDN codecs get wrong (two-octet call reference, two-octet length of the
User-user IE). Every length is checked against the buffer; anything malformed raises
:class:`Q931Error`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

__all__ = [
    "Cause",
    "IE",
    "MessageType",
    "Q931Error",
    "Q931Message",
    "decode_cause",
    "decode_number",
    "encode_bearer_capability",
    "encode_cause",
    "encode_number",
]

PROTOCOL_DISCRIMINATOR = 0x08
CALL_REFERENCE_LEN = 2  # H.225.0 7.2.2.2: always two octets
UUIE_PROTOCOL_DISCRIMINATOR = 0x05  # X.208/X.209 coded user information


class Q931Error(ValueError):
    """A Q.931 message is malformed."""


class MessageType(IntEnum):
    """Q.931 message types used by H.225.0."""

    ALERTING = 0x01
    CALL_PROCEEDING = 0x02
    PROGRESS = 0x03
    SETUP = 0x05
    CONNECT = 0x07
    SETUP_ACKNOWLEDGE = 0x0D
    RELEASE_COMPLETE = 0x5A
    FACILITY = 0x62
    NOTIFY = 0x6E
    STATUS_INQUIRY = 0x75
    INFORMATION = 0x7B
    STATUS = 0x7D


class IE(IntEnum):
    """Information element identifiers (codeset 0)."""

    BEARER_CAPABILITY = 0x04
    CAUSE = 0x08
    CALL_STATE = 0x14
    FACILITY = 0x1C
    PROGRESS_INDICATOR = 0x1E
    NOTIFICATION_INDICATOR = 0x27
    DISPLAY = 0x28
    KEYPAD = 0x2C
    SIGNAL = 0x34
    CALLING_PARTY_NUMBER = 0x6C
    CALLED_PARTY_NUMBER = 0x70
    USER_USER = 0x7E


class Cause(IntEnum):
    """Q.850 cause values used when releasing H.323 calls."""

    UNALLOCATED_NUMBER = 1
    NO_ROUTE_TO_DESTINATION = 3
    NORMAL_CALL_CLEARING = 16
    USER_BUSY = 17
    NO_USER_RESPONDING = 18
    NO_ANSWER = 19
    CALL_REJECTED = 21
    DESTINATION_OUT_OF_ORDER = 27
    INVALID_NUMBER_FORMAT = 28
    NORMAL_UNSPECIFIED = 31
    NO_CIRCUIT_AVAILABLE = 34
    TEMPORARY_FAILURE = 41
    RESOURCE_UNAVAILABLE = 47
    BEARER_CAPABILITY_NOT_AVAILABLE = 58
    SERVICE_NOT_AVAILABLE = 63
    BEARER_CAPABILITY_NOT_IMPLEMENTED = 65
    INCOMPATIBLE_DESTINATION = 88
    INVALID_MESSAGE = 95
    MANDATORY_IE_MISSING = 96
    MESSAGE_TYPE_NOT_IMPLEMENTED = 97
    MESSAGE_NOT_COMPATIBLE_WITH_STATE = 101
    RECOVERY_ON_TIMER_EXPIRY = 102
    PROTOCOL_ERROR = 111
    INTERWORKING = 127


# IEs whose length field is two octets in H.225.0 (7.2.2.17: User-user).
_TWO_OCTET_LENGTH = frozenset({IE.USER_USER})


@dataclass
class Q931Message:
    """One Q.931 message: type, call reference and its information elements in order.

    ``from_destination`` is the call reference flag: False in messages sent by the side
    that originated the call reference, True in messages sent to it.
    """

    message_type: int
    call_reference: int
    from_destination: bool = False
    ies: list[tuple[int, bytes]] = field(default_factory=list)

    def get(self, ie: int) -> bytes | None:
        """Content of the first IE with this identifier, or None."""
        for ident, content in self.ies:
            if ident == ie:
                return content
        return None

    @property
    def user_user(self) -> bytes | None:
        """The H.225.0 user-user payload (H323-UserInformation PER), without its discriminator."""
        content = self.get(IE.USER_USER)
        if content is None:
            return None
        if not content or content[0] != UUIE_PROTOCOL_DISCRIMINATOR:
            raise Q931Error("User-user IE without X.208 protocol discriminator")
        return content[1:]

    def encode(self) -> bytes:
        """Serialise the message (without TPKT)."""
        if not 0 <= self.call_reference < 0x8000:
            raise Q931Error(f"call reference {self.call_reference} out of range")
        if not 0 <= self.message_type < 0x80:
            raise Q931Error(f"message type {self.message_type} out of range")
        crv = self.call_reference | (0x8000 if self.from_destination else 0)
        out = bytearray((PROTOCOL_DISCRIMINATOR, CALL_REFERENCE_LEN, crv >> 8, crv & 0xFF, self.message_type))
        for ident, content in self.ies:
            if ident & 0x80:  # single-octet IE: identifier and content share the octet
                out.append(ident)
                continue
            if ident in _TWO_OCTET_LENGTH:
                if len(content) > 0xFFFF:
                    raise Q931Error("user-user IE too long")
                out += bytes((ident, len(content) >> 8, len(content) & 0xFF))
            else:
                if len(content) > 0xFF:
                    raise Q931Error(f"IE 0x{ident:02x} too long ({len(content)} octets)")
                out += bytes((ident, len(content)))
            out += content
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> Q931Message:
        """Parse one message; raises :class:`Q931Error` on any inconsistency."""
        if len(data) < 5:
            raise Q931Error(f"message too short ({len(data)} octets)")
        if data[0] != PROTOCOL_DISCRIMINATOR:
            raise Q931Error(f"protocol discriminator 0x{data[0]:02x} is not Q.931")
        crl = data[1] & 0x0F
        if data[1] & 0xF0 or crl != CALL_REFERENCE_LEN:
            raise Q931Error(f"call reference length {data[1]} (H.225.0 requires 2)")
        crv = (data[2] << 8) | data[3]
        message_type = data[4]
        if message_type & 0x80:
            raise Q931Error(f"message type octet 0x{message_type:02x} has bit 8 set")
        ies: list[tuple[int, bytes]] = []
        pos = 5
        while pos < len(data):
            ident = data[pos]
            pos += 1
            if ident & 0x80:
                ies.append((ident, b""))
                continue
            if ident in _TWO_OCTET_LENGTH:
                if pos + 2 > len(data):
                    raise Q931Error("truncated user-user length")
                length = (data[pos] << 8) | data[pos + 1]
                pos += 2
            else:
                if pos + 1 > len(data):
                    raise Q931Error(f"truncated length of IE 0x{ident:02x}")
                length = data[pos]
                pos += 1
            if pos + length > len(data):
                raise Q931Error(f"IE 0x{ident:02x} length {length} overruns the message")
            ies.append((ident, bytes(data[pos:pos + length])))
            pos += length
        return cls(message_type, crv & 0x7FFF, bool(crv & 0x8000), ies)


def user_user_ie(uuie_per: bytes) -> tuple[int, bytes]:
    """The User-user IE carrying an encoded H323-UserInformation."""
    return (IE.USER_USER, bytes((UUIE_PROTOCOL_DISCRIMINATOR,)) + uuie_per)


def encode_bearer_capability() -> tuple[int, bytes]:
    """Bearer capability for H.323 calls: ITU-T coding, unrestricted digital information,
    circuit mode 64 kbit/s, layer 1 = H.221/H.242 (what H.225.0 7.2.2.1 examples use)."""
    return (IE.BEARER_CAPABILITY, bytes((0x88, 0x90, 0xA5)))


def encode_cause(cause: int, location: int = 0) -> tuple[int, bytes]:
    """Cause IE (Q.850): ITU-T coding standard, location (0 = user), cause value."""
    if not 0 <= cause < 0x80:
        raise Q931Error(f"cause {cause} out of range")
    return (IE.CAUSE, bytes((0x80 | (location & 0x0F), 0x80 | cause)))


def decode_cause(content: bytes) -> int:
    """The cause value of a Cause IE."""
    if len(content) < 2:
        raise Q931Error("cause IE too short")
    # Octet 3 may be followed by 3a (recommendation) when its extension bit is 0.
    index = 1 if content[0] & 0x80 else 2
    if index >= len(content):
        raise Q931Error("cause IE too short")
    return content[index] & 0x7F


def encode_number(ie: int, digits: str) -> tuple[int, bytes]:
    """Calling/called party number: unknown type, ISDN/telephony numbering plan, IA5 digits."""
    if not digits or any(c not in "0123456789*#" for c in digits):
        raise Q931Error(f"party number {digits!r} is not a digit string")
    if len(digits) > 32:
        raise Q931Error("party number longer than 32 digits")
    return (ie, bytes((0x81,)) + digits.encode("ascii"))


def decode_number(content: bytes) -> str:
    """Digits of a calling/called party number IE."""
    if not content:
        raise Q931Error("party number IE is empty")
    index = 1 if content[0] & 0x80 else 2  # skip octet 3a when present
    digits = content[index:]
    if any(c not in b"0123456789*#" for c in digits):
        raise Q931Error("party number contains non-digits")
    return digits.decode("ascii")


def encode_display(text: str) -> tuple[int, bytes]:
    """Display IE; Q.931 allows IA5 only, so other characters are replaced by '?'."""
    data = text.encode("ascii", "replace")[:82]
    return (IE.DISPLAY, data)


def encode_call_state(state: int) -> tuple[int, bytes]:
    """Call state IE (mandatory in STATUS)."""
    return (IE.CALL_STATE, bytes((state & 0x3F,)))


def encode_progress_indicator(description: int = 8, location: int = 0) -> tuple[int, bytes]:
    """Progress indicator IE; description 8 = in-band information is now available."""
    return (IE.PROGRESS_INDICATOR, bytes((0x80 | (location & 0x0F), 0x80 | (description & 0x7F))))
