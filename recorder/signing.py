"""Ed25519 signing keys for the transparency log, kept under a keys directory.

Layout of `keys_dir` (default `var/keys`):
    recorder-log-<key_id>.key   private key, PKCS#8 PEM, mode 0600 (only the current key)
    recorder-log-<key_id>.pub   public key, SubjectPublicKeyInfo PEM (kept for every key ever used)
    recorder-log-current        the current key id

A rotation creates a new key, has the old key endorse the new public key (that
endorsement becomes a log leaf, see `leaves.KeyRotationLeaf`), then deletes the old
private key so it can never sign another head. Public keys are kept so old heads
still verify offline.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PREFIX = "recorder-log-"


class SignatureError(ValueError):
    """A signature did not verify, or a key could not be read."""


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """Short stable id: first 16 hex digits of SHA-256 of the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_pem(public_key: Ed25519PublicKey) -> bytes:
    """PEM (SubjectPublicKeyInfo) of a public key: what goes into export bundles."""
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_raw(public_key: Ed25519PublicKey) -> bytes:
    """The raw 32-byte public key."""
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """Parse a PEM public key; SignatureError if it is not an Ed25519 key."""
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise SignatureError(f"public key is not valid PEM: {exc}") from exc
    except UnsupportedAlgorithm as exc:  # valid PEM, but an algorithm (OID) the library does not know
        raise SignatureError(f"public key is not an Ed25519 key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError("public key is not an Ed25519 key")
    return key


def verify_signature(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> None:
    """Raise SignatureError unless `signature` is the key's signature over `message`."""
    try:
        public_key.verify(signature, message)
    except InvalidSignature as exc:
        raise SignatureError("signature does not verify") from exc


@dataclass(frozen=True)
class SigningKey:
    """A private Ed25519 key with its id."""

    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def key_id(self) -> str:
        return key_id_of(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """Ed25519 signature over message."""
        return self.private_key.sign(message)


@dataclass(frozen=True)
class Rotation:
    """Result of a key rotation: the new key and the old key's endorsement of it."""

    old_key_id: str
    new_key: SigningKey
    endorsement: bytes  # old key's signature over rotation_message(new public key)


def rotation_message(new_public_key: Ed25519PublicKey) -> bytes:
    """What the old key signs to hand over to the new key."""
    return b"commandcenter-recorder-key-rotation-v1\n" + public_key_raw(new_public_key)


class KeyStore:
    """Loads, creates and rotates the log signing key under a directory."""

    def __init__(self, keys_dir: Path | str) -> None:
        self.keys_dir = Path(keys_dir)

    def _private_path(self, key_id: str) -> Path:
        return self.keys_dir / f"{PREFIX}{key_id}.key"

    def _public_path(self, key_id: str) -> Path:
        return self.keys_dir / f"{PREFIX}{key_id}.pub"

    def _current_path(self) -> Path:
        return self.keys_dir / f"{PREFIX}current"

    def current(self) -> SigningKey:
        """The current signing key, created on first use."""
        current = self._current_path()
        if not current.exists():
            key = SigningKey(Ed25519PrivateKey.generate())
            self._write_key(key)
            self._write_atomic(current, key.key_id.encode(), 0o644)
            return key
        key_id = current.read_text().strip()
        pem = self._private_path(key_id).read_bytes()
        private = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise SignatureError(f"{self._private_path(key_id)} is not an Ed25519 key")
        return SigningKey(private)

    def public_key(self, key_id: str) -> Ed25519PublicKey:
        """Public key of any key this store ever used."""
        path = self._public_path(key_id)
        if not path.exists():
            raise SignatureError(f"unknown key id {key_id}")
        return load_public_key(path.read_bytes())

    def rotate(self) -> Rotation:
        """Create a new key, endorse it with the old one, and destroy the old private key."""
        old = self.current()
        new = SigningKey(Ed25519PrivateKey.generate())
        endorsement = old.sign(rotation_message(new.public_key))
        self._write_key(new)
        self._write_atomic(self._current_path(), new.key_id.encode(), 0o644)
        self._private_path(old.key_id).unlink()
        return Rotation(old_key_id=old.key_id, new_key=new, endorsement=endorsement)

    def _write_key(self, key: SigningKey) -> None:
        self.keys_dir.mkdir(parents=True, exist_ok=True)
        pem = key.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        self._write_atomic(self._private_path(key.key_id), pem, 0o600)
        self._write_atomic(self._public_path(key.key_id), public_key_pem(key.public_key), 0o644)

    def _write_atomic(self, path: Path, data: bytes, mode: int) -> None:
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
