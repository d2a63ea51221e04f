"""H.235.1 baseline security profile for RAS: password-based authentication and integrity, sans-I/O.

A protected RAS message carries one ``CryptoH323Token`` (``nestedcryptoToken`` →
``cryptoHashedToken``) in its ``cryptoTokens``:

* ``tokenOID`` = OID "A" ``0.0.8.235.0.2.1`` (authentication and integrity of the whole message);
* ``hashedVals`` = a ClearToken with ``tokenOID`` "T" ``0.0.8.235.0.2.5``, ``timeStamp`` (seconds
  since 1970), ``random`` (a per-sender sequence number), ``sendersID`` (who signs: the
  terminal's account alias, or the gatekeeper identifier) and ``generalID`` (the recipient);
* ``token`` = HASHED with ``algorithmOID`` "U" ``0.0.8.235.0.2.6`` (HMAC-SHA1-96) and ``hash``:
  the first 96 bits of HMAC-SHA1 over the PER encoding of the *whole* RAS message in which
  ``hash`` is 96 zero bits, keyed with SHA-1(password).

The sender encodes the message with a zero hash, computes the MAC and encodes again with the
MAC in place (same length, same positions). The receiver zeroes the 12 MAC octets where they
sit in the datagram (they are octet-aligned in ALIGNED PER) and recomputes: it never
re-encodes, so any encoder on the other side verifies. Wireshark decodes the token
(``h235.hash``, ``h235.sendersID``).

Everything here is pure: timestamps and the wall clock are arguments.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from .asn1 import encode_ras

__all__ = ["OID_A", "OID_T", "OID_U", "HASH_BITS", "TokenCheck", "check_ras", "sign_ras", "token_info"]

OID_A: tuple[int, ...] = (0, 0, 8, 235, 0, 2, 1)
OID_T: tuple[int, ...] = (0, 0, 8, 235, 0, 2, 5)
OID_U: tuple[int, ...] = (0, 0, 8, 235, 0, 2, 6)
HASH_BITS = 96
_HASH_BYTES = HASH_BITS // 8


def _mac(password: str, data: bytes) -> bytes:
    key = hashlib.sha1(password.encode("utf-8")).digest()
    return hmac.new(key, data, hashlib.sha1).digest()[:_HASH_BYTES]


def _token(sender: str, recipient: str | None, timestamp: int, random: int, mac: bytes) -> tuple[str, Any]:
    clear: dict[str, Any] = {"tokenOID": OID_T, "timeStamp": max(1, timestamp), "random": random,
                             "sendersID": sender}
    if recipient:
        clear["generalID"] = recipient
    return ("nestedcryptoToken", ("cryptoHashedToken", {
        "tokenOID": OID_A, "hashedVals": clear,
        "token": {"algorithmOID": OID_U, "paramS": {}, "hash": (int.from_bytes(mac, "big"), HASH_BITS)}}))


def sign_ras(kind: str, body: dict[str, Any], password: str, sender: str, recipient: str | None,
             timestamp: int, random: int) -> bytes:
    """Encode the RAS message ``(kind, body)`` with an H.235.1 token (``body`` gets ``cryptoTokens``)."""
    body["cryptoTokens"] = [_token(sender, recipient, timestamp, random, bytes(_HASH_BYTES))]
    blank = encode_ras((kind, body))
    mac = _mac(password, blank)
    body["cryptoTokens"] = [_token(sender, recipient, timestamp, random, mac)]
    data = encode_ras((kind, body))
    if len(data) != len(blank):  # cannot happen with a fixed-size hash; never send a wrong MAC
        raise ValueError("H.235.1: the signed encoding changed length")
    return data


@dataclass(frozen=True)
class TokenInfo:
    """The fields of a message's H.235.1 token (before any check)."""

    sender: str
    recipient: str
    timestamp: int
    random: int
    mac: bytes


def token_info(body: dict[str, Any]) -> TokenInfo | None:
    """The H.235.1 (procedure I) token of a decoded RAS body, None when it carries none."""
    for token in body.get("cryptoTokens") or []:
        try:
            if token[0] != "nestedcryptoToken" or token[1][0] != "cryptoHashedToken":
                continue
            hashed = token[1][1]
            if tuple(hashed["tokenOID"]) != OID_A or tuple(hashed["token"]["algorithmOID"]) != OID_U:
                continue
            value, bits = hashed["token"]["hash"]
            clear = hashed["hashedVals"]
            if bits != HASH_BITS or tuple(clear["tokenOID"]) != OID_T:
                continue
            return TokenInfo(str(clear.get("sendersID", "")), str(clear.get("generalID", "")),
                             int(clear.get("timeStamp", 0)), int(clear.get("random", 0)),
                             int(value).to_bytes(_HASH_BYTES, "big"))
        except (KeyError, TypeError, IndexError, ValueError, OverflowError):
            continue
    return None


@dataclass(frozen=True)
class TokenCheck:
    """Outcome of :func:`check_ras`: ``ok`` with the token, or the reason it failed."""

    ok: bool
    reason: str = ""
    token: TokenInfo | None = None


def check_ras(data: bytes, body: dict[str, Any], password: str, wall_time: float, window: float = 300.0) -> TokenCheck:
    """Check the H.235.1 token of the received datagram ``data`` (decoded as ``body``) with
    ``password``: a MAC over the datagram with the MAC zeroed, and a timestamp within ``window``
    seconds of ``wall_time``. Replay of (timestamp, random) is the caller's to track."""
    token = token_info(body)
    if token is None:
        return TokenCheck(False, "no H.235.1 token")
    if abs(token.timestamp - wall_time) > window:
        return TokenCheck(False, "timestamp outside the window", token)
    at = data.find(token.mac)
    if at < 0 or data.find(token.mac, at + 1) >= 0:
        return TokenCheck(False, "MAC not found once in the message", token)
    blank = data[:at] + bytes(_HASH_BYTES) + data[at + _HASH_BYTES:]
    if not hmac.compare_digest(_mac(password, blank), token.mac):
        return TokenCheck(False, "wrong password or altered message", token)
    return TokenCheck(True, "", token)
