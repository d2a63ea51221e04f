"""The append-only transparency log: leaves, signed tree heads, proofs.

Storage is behind `LogStorage` (PostgreSQL in production, see `pg_storage`; a memory
implementation for tests of the pure parts). The log recomputes every leaf hash from
the stored leaf bytes when it opens and checks the result against the last stored
signed head, so a row rewritten behind its back is caught at start-up, and
`check_head` lets an inspector who kept an older head detect rewriting at any time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from recorder.leaves import KeyRotationLeaf, Leaf, encode_leaf
from recorder.merkle import MerkleTree, ProofError, leaf_hash, verify_consistency
from recorder.signing import KeyStore, public_key_raw
from recorder.tree_head import SignedTreeHead, sign_tree_head, verify_tree_head

log = logging.getLogger(__name__)


class LogIntegrityError(RuntimeError):
    """The stored log no longer matches a signed tree head: entries were rewritten or removed."""


class LeafConflict(RuntimeError):
    """Another writer stored a leaf at this index first (the log must catch up and retry)."""


class LogStorage(Protocol):
    """Durable, append-only storage for one or more logs' leaves and heads."""

    async def load_leaves(self, log_id: str, start: int = 0) -> list[bytes]:
        """Leaf bytes of `log_id` from index `start` on, in index order."""
        ...

    async def append_leaf(self, log_id: str, index: int, data: bytes, leaf_hash: bytes) -> None:
        """Store leaf `index`; raise LeafConflict if that index already exists."""
        ...

    async def leaf(self, log_id: str, index: int) -> bytes:
        """Bytes of one leaf."""
        ...

    async def save_head(self, sth: SignedTreeHead) -> None:
        """Store a signed tree head."""
        ...

    async def latest_head(self, log_id: str) -> SignedTreeHead | None:
        """The most recent signed head, if any."""
        ...


@dataclass
class MemoryLogStorage:
    """In-process `LogStorage` (tests of the pure parts, benchmarks)."""

    leaves: dict[str, list[bytes]] = field(default_factory=dict)
    heads: dict[str, list[SignedTreeHead]] = field(default_factory=dict)

    async def load_leaves(self, log_id: str, start: int = 0) -> list[bytes]:
        return list(self.leaves.get(log_id, [])[start:])

    async def append_leaf(self, log_id: str, index: int, data: bytes, leaf_hash: bytes) -> None:
        rows = self.leaves.setdefault(log_id, [])
        if index < len(rows):
            raise LeafConflict(f"leaf {index} already exists")
        if index > len(rows):
            raise LogIntegrityError(f"leaf {index} would leave a hole after {len(rows)}")
        rows.append(data)

    async def leaf(self, log_id: str, index: int) -> bytes:
        return self.leaves[log_id][index]

    async def save_head(self, sth: SignedTreeHead) -> None:
        self.heads.setdefault(sth.log_id, []).append(sth)

    async def latest_head(self, log_id: str) -> SignedTreeHead | None:
        heads = self.heads.get(log_id)
        return heads[-1] if heads else None


class TransparencyLog:
    """One append-only Merkle log with signed heads."""

    def __init__(
        self,
        storage: LogStorage,
        keys: KeyStore,
        log_id: str = "recorder",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.storage = storage
        self.keys = keys
        self.log_id = log_id
        self.clock = clock
        self.tree = MerkleTree()
        self._lock = asyncio.Lock()
        self._latest: SignedTreeHead | None = None

    @property
    def size(self) -> int:
        return len(self.tree)

    @property
    def latest_head(self) -> SignedTreeHead | None:
        return self._latest

    async def open(self) -> None:
        """Load the leaves, rebuild the tree, and check it against the last signed head."""
        tree = MerkleTree(leaf_hash(data) for data in await self.storage.load_leaves(self.log_id))
        head = await self.storage.latest_head(self.log_id)
        if head is not None:
            self._check_head_against(tree, head)
        self.tree, self._latest = tree, head

    def _check_head_against(self, tree: MerkleTree, head: SignedTreeHead) -> None:
        verify_tree_head(head, self.keys.public_key(head.key_id))
        if head.tree_size > len(tree):
            raise LogIntegrityError(
                f"signed head covers {head.tree_size} leaves but only {len(tree)} are stored: leaves were removed"
            )
        try:
            verify_consistency(
                head.tree_size, len(tree), head.root_hash, tree.root(), tree.consistency_proof(head.tree_size)
            )
        except ProofError as exc:
            raise LogIntegrityError(f"stored log is inconsistent with the signed head of size {head.tree_size}: {exc}") from exc

    def check_head(self, head: SignedTreeHead) -> None:
        """Check that the current log extends a head an inspector kept (LogIntegrityError if not)."""
        self._check_head_against(self.tree, head)

    async def refresh(self) -> None:
        """Catch up with leaves other processes appended to the same log."""
        async with self._lock:
            await self._catch_up()

    async def _catch_up(self) -> None:
        for data in await self.storage.load_leaves(self.log_id, len(self.tree)):
            self.tree.append_hash(leaf_hash(data))

    async def append(self, leaf: Leaf) -> int:
        """Append a leaf durably; return its index."""
        data = encode_leaf(leaf)
        h = leaf_hash(data)
        async with self._lock:
            for _ in range(20):
                index = len(self.tree)
                try:
                    await self.storage.append_leaf(self.log_id, index, data, h)
                except LeafConflict:
                    await self._catch_up()  # another process appended: take its leaves, retry after them
                    continue
                self.tree.append_hash(h)
                return index
        raise LogIntegrityError("could not append: the log keeps changing under us")

    async def leaf_bytes(self, index: int) -> bytes:
        return await self.storage.leaf(self.log_id, index)

    async def sign_head(self) -> SignedTreeHead:
        """Sign and store a head over the current tree."""
        async with self._lock:
            await self._catch_up()
            key = self.keys.current()
            sth = sign_tree_head(key, self.log_id, len(self.tree), self.tree.root(), int(self.clock() * 1000))
            await self.storage.save_head(sth)
            self._latest = sth
        return sth

    async def rotate_key(self) -> SignedTreeHead:
        """Rotate the signing key; the rotation is a leaf, and the next head is signed by the new key."""
        rotation = self.keys.rotate()
        await self.append(
            KeyRotationLeaf(
                old_key_id=rotation.old_key_id,
                new_key_id=rotation.new_key.key_id,
                new_public_key=public_key_raw(rotation.new_key.public_key).hex(),
                endorsement=rotation.endorsement.hex(),
                time_ms=int(self.clock() * 1000),
            )
        )
        return await self.sign_head()

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return self.tree.inclusion_proof(index, size)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        return self.tree.consistency_proof(old_size, new_size)

    def public_key(self, key_id: str) -> Ed25519PublicKey:
        return self.keys.public_key(key_id)

    async def run_head_signer(self, interval_s: float = 120.0) -> None:
        """Sign a new head every `interval_s` while the log grew (runs until cancelled)."""
        while True:
            await asyncio.sleep(interval_s)
            if self._latest is None or self._latest.tree_size != len(self.tree):
                try:
                    await self.sign_head()
                except Exception:  # keep signing on the next tick; recording must not stop
                    log.exception("signing a tree head failed")
