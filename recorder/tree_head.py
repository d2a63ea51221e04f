"""Signed tree heads: (log id, size, root, time) signed with the log's Ed25519 key."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from recorder.signing import SignatureError, SigningKey, key_id_of, verify_signature

STH_CONTEXT = b"commandcenter-recorder-sth-v1\n"


@dataclass(frozen=True)
class SignedTreeHead:
    """A tree head and its signature. `root_hash` is the RFC 6962 MTH of the first `tree_size` leaves."""

    log_id: str
    tree_size: int
    root_hash: bytes
    timestamp_ms: int
    key_id: str
    signature: bytes

    def signed_bytes(self) -> bytes:
        """The exact bytes the signature covers (domain-separated canonical JSON)."""
        return signed_bytes(self.log_id, self.tree_size, self.root_hash, self.timestamp_ms, self.key_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "log_id": self.log_id,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "timestamp_ms": self.timestamp_ms,
            "key_id": self.key_id,
            "signature": self.signature.hex(),
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True).encode()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SignedTreeHead:
        """Parse; ValueError with the field name on bad input."""
        try:
            sth = cls(
                log_id=str(d["log_id"]),
                tree_size=int(d["tree_size"]),
                root_hash=bytes.fromhex(d["root_hash"]),
                timestamp_ms=int(d["timestamp_ms"]),
                key_id=str(d["key_id"]),
                signature=bytes.fromhex(d["signature"]),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:  # int(1e999) is OverflowError
            raise ValueError(f"malformed signed tree head: {exc!r}") from exc
        if sth.tree_size < 0 or len(sth.root_hash) != 32 or len(sth.signature) != 64:
            raise ValueError("malformed signed tree head: bad size, root or signature length")
        return sth

    @classmethod
    def from_json(cls, data: bytes) -> SignedTreeHead:
        try:
            d = json.loads(data)
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
            raise ValueError(f"signed tree head is not JSON: {exc}") from exc
        if not isinstance(d, dict):
            raise ValueError("signed tree head is not a JSON object")
        return cls.from_dict(d)


def signed_bytes(log_id: str, tree_size: int, root_hash: bytes, timestamp_ms: int, key_id: str) -> bytes:
    body = {
        "key_id": key_id,
        "log_id": log_id,
        "root_hash": root_hash.hex(),
        "timestamp_ms": timestamp_ms,
        "tree_size": tree_size,
    }
    return STH_CONTEXT + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign_tree_head(key: SigningKey, log_id: str, tree_size: int, root_hash: bytes, timestamp_ms: int) -> SignedTreeHead:
    """Sign a tree head with `key`."""
    msg = signed_bytes(log_id, tree_size, root_hash, timestamp_ms, key.key_id)
    return SignedTreeHead(log_id, tree_size, root_hash, timestamp_ms, key.key_id, key.sign(msg))


def verify_tree_head(sth: SignedTreeHead, public_key: Ed25519PublicKey) -> None:
    """Raise SignatureError unless `sth` was signed by `public_key`."""
    if key_id_of(public_key) != sth.key_id:
        raise SignatureError(f"tree head names key {sth.key_id}, but the public key is {key_id_of(public_key)}")
    verify_signature(public_key, sth.signature, sth.signed_bytes())
