"""RFC 6962 Merkle hash tree: tree hashes, inclusion and consistency proofs.

Hashing (RFC 6962 §2.1): leaf = SHA-256(0x00 ‖ data), node = SHA-256(0x01 ‖ left ‖ right);
a tree of n leaves splits at k, the largest power of two strictly smaller than n.

Generation follows the RFC's recursive definitions PATH (§2.1.1) and PROOF/SUBPROOF
(§2.1.2); verification follows the iterative algorithms of RFC 9162 §2.1.3.2 and
§2.1.4.2 (same tree, restated for CT 2.0), so proofs interoperate with other CT tools.

Written by hand: pymerkle (7.0) computes RFC 6962 roots, but its consistency proofs are a
different path format (rule/subset bit lists, leaf-level nodes) that standard CT
verifiers cannot check, and we want proofs an inspector can verify with any RFC tool.
Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(ValueError):
    """A proof could not be generated or did not verify; the message says why."""


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 ‖ data): the hash of one log entry."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 ‖ left ‖ right): the hash of an interior node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """An append-only tree over leaf hashes that answers for any earlier size.

    Keeps the hash of every complete (perfect, aligned) subtree, level by level, so
    an append costs O(1) amortised hashes and a root or proof for any size costs
    O(log² n) hashes instead of a pass over every leaf.
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for h in leaf_hashes:
            self.append_hash(h)

    def __len__(self) -> int:
        return len(self._levels[0])

    def append(self, data: bytes) -> int:
        """Append a leaf by its data; return its index."""
        return self.append_hash(leaf_hash(data))

    def append_hash(self, h: bytes) -> int:
        """Append a leaf by its (already computed) leaf hash; return its index."""
        if len(h) != HASH_SIZE:
            raise ValueError(f"leaf hash must be {HASH_SIZE} bytes, got {len(h)}")
        index = len(self._levels[0])
        self._levels[0].append(h)
        level, i = 0, index
        # Each time a left sibling exists, a new complete subtree is born one level up.
        while i % 2 == 1:
            parent = node_hash(self._levels[level][i - 1], self._levels[level][i])
            level += 1
            if len(self._levels) == level:
                self._levels.append([])
            self._levels[level].append(parent)
            i //= 2
        return index

    def leaf(self, index: int) -> bytes:
        """The leaf hash at index."""
        return self._levels[0][index]

    def _range_hash(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for a range the RFC recursion produces (lo aligned to the split)."""
        size = hi - lo
        if size == 1:
            return self._levels[0][lo]
        if size & (size - 1) == 0 and lo % size == 0:
            level = size.bit_length() - 1
            return self._levels[level][lo >> level]
        k = _split(size)
        return node_hash(self._range_hash(lo, lo + k), self._range_hash(lo + k, hi))

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= len(self):
            raise ProofError(f"tree size {size} out of range 0..{len(self)}")

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first `size` leaves (default: all); the empty tree hashes to SHA-256("")."""
        size = len(self) if size is None else size
        self._check_size(size)
        return EMPTY_ROOT if size == 0 else self._range_hash(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]) from RFC 6962 §2.1.1, leaf-side first."""
        size = len(self) if size is None else size
        self._check_size(size)
        if not 0 <= index < size:
            raise ProofError(f"leaf index {index} not in a tree of size {size}")
        return self._path(index, 0, size)

    def _path(self, m: int, lo: int, hi: int) -> list[bytes]:
        n = hi - lo
        if n == 1:
            return []
        k = _split(n)
        if m < k:
            return self._path(m, lo, lo + k) + [self._range_hash(lo + k, hi)]
        return self._path(m - k, lo + k, hi) + [self._range_hash(lo, lo + k)]

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[new_size]) from RFC 6962 §2.1.2."""
        new_size = len(self) if new_size is None else new_size
        self._check_size(new_size)
        if not 0 <= old_size <= new_size:
            raise ProofError(f"old size {old_size} not within 0..{new_size}")
        if old_size == 0 or old_size == new_size:
            return []
        return self._subproof(old_size, 0, new_size, True)

    def _subproof(self, m: int, lo: int, hi: int, complete: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if complete else [self._range_hash(lo, hi)]
        k = _split(n)
        if m <= k:
            return self._subproof(m, lo, lo + k, complete) + [self._range_hash(lo + k, hi)]
        return self._subproof(m - k, lo + k, hi, False) + [self._range_hash(lo, lo + k)]


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """Recompute the root implied by an inclusion proof (RFC 9162 §2.1.3.2).

    Raises ProofError when the proof has the wrong shape for (index, size).
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} not in a tree of size {size}")
    if len(leaf) != HASH_SIZE:
        raise ProofError("leaf hash has the wrong length")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if len(p) != HASH_SIZE:
            raise ProofError("proof node has the wrong length")
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Check that `leaf` (a leaf hash) is entry `index` of the tree of `size` with `root`.

    Returns None on success; raises ProofError naming the failure otherwise.
    """
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise ProofError(f"inclusion proof for leaf {index} does not lead to the tree head root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree (new_size, new_root) extends (old_size, old_root) (RFC 9162 §2.1.4.2).

    Returns None on success; raises ProofError naming the failure otherwise.
    """
    if not 0 <= old_size <= new_size:
        raise ProofError(f"sizes go backwards: {old_size} -> {new_size}")
    if old_size == new_size:
        if proof:
            raise ProofError("consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError("same tree size but different roots: the log was rewritten")
        return
    if old_size == 0:
        if proof:
            raise ProofError("consistency proof from the empty tree must be empty")
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    if any(len(p) != HASH_SIZE for p in proof):
        raise ProofError("proof node has the wrong length")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != old_root:
        raise ProofError(f"old root does not match: the first {old_size} entries were rewritten")
    if sr != new_root:
        raise ProofError("new root does not match the consistency proof")
