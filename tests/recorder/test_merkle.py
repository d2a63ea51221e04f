"""RFC 6962 Merkle tree: published vectors, a naive reference, and tamper properties."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    ProofError,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

# Test vectors published by the Certificate Transparency project
# (transparency-dev/merkle testonly/constants.go and proof/verify_test.go).
LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f",
)]
ROOTS = [bytes.fromhex(h) for h in (
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]


def h(s: str) -> bytes:
    return bytes.fromhex(s)


# (leaf index, tree size, proof)
INCLUSION = [
    (0, 8, [h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
    (5, 8, [h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
    (2, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (1, 5, [h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]),
    (0, 1, []),
]
# (old size, new size, proof)
CONSISTENCY = [
    (1, 1, []),
    (1, 8, [h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
    (6, 8, [h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
    (2, 5, [h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]),
    (6, 7, [h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
]


def vector_tree() -> MerkleTree:
    tree = MerkleTree()
    for leaf in LEAVES:
        tree.append(leaf)
    return tree


def reference_root(hashes: list[bytes]) -> bytes:
    """MTH straight from the RFC definition, O(n) recursion: the yardstick."""
    if not hashes:
        return EMPTY_ROOT
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return node_hash(reference_root(hashes[:k]), reference_root(hashes[k:]))


def test_hash_prefixes() -> None:
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert leaf_hash(b"") == ROOTS[0]
    assert node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()


def test_empty_tree_root() -> None:
    assert MerkleTree().root() == h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


def test_roots_for_every_size() -> None:
    tree = vector_tree()
    for size in range(1, 9):
        assert tree.root(size) == ROOTS[size - 1], size


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_inclusion_vectors(index: int, size: int, proof: list[bytes]) -> None:
    tree = vector_tree()
    assert tree.inclusion_proof(index, size) == proof
    verify_inclusion(index, size, leaf_hash(LEAVES[index]), proof, ROOTS[size - 1])


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_consistency_vectors(old: int, new: int, proof: list[bytes]) -> None:
    tree = vector_tree()
    assert tree.consistency_proof(old, new) == proof
    verify_consistency(old, new, ROOTS[old - 1], ROOTS[new - 1], proof)


@pytest.mark.parametrize(("index", "size", "proof"), [v for v in INCLUSION if v[2]])
def test_corrupted_inclusion_rejected(index: int, size: int, proof: list[bytes]) -> None:
    leaf, root = leaf_hash(LEAVES[index]), ROOTS[size - 1]
    bad = [
        (index + 1, size, leaf, proof, root),
        (index, size * 2, leaf, proof, root),
        (index, size, leaf_hash(b"wrong"), proof, root),
        (index, size, leaf, proof, EMPTY_ROOT),
        (index, size, leaf, proof + [root], root),
        (index, size, leaf, [root] + proof, root),
        (index, size, leaf, proof[:-1], root),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        bad.append((index, size, leaf, flipped, root))
    for args in bad:
        with pytest.raises(ProofError):
            verify_inclusion(*args)


@pytest.mark.parametrize(("old", "new", "proof"), [v for v in CONSISTENCY if v[2]])
def test_corrupted_consistency_rejected(old: int, new: int, proof: list[bytes]) -> None:
    r1, r2 = ROOTS[old - 1], ROOTS[new - 1]
    bad = [
        (old - 1, new, r1, r2, proof),
        (old + 1, new, r1, r2, proof),
        (old, new * 2, r1, r2, proof),
        (old, new, r2, r1, proof),
        (old, new, EMPTY_ROOT, r2, proof),
        (old, new, r1, r2, []),
        (old, new, r1, r2, proof + [r1]),
        (old, new, r1, r2, [r2] + proof),
        (old, new, r1, r2, proof[:-1]),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 16]) + flipped[i][1:]
        bad.append((old, new, r1, r2, flipped))
    for args in bad:
        with pytest.raises(ProofError):
            verify_consistency(*args)


def test_bad_arguments_are_clear_errors() -> None:
    tree = vector_tree()
    with pytest.raises(ProofError):
        tree.inclusion_proof(8, 8)
    with pytest.raises(ProofError):
        tree.consistency_proof(5, 3)
    with pytest.raises(ProofError):
        tree.root(9)
    with pytest.raises(ValueError):
        tree.append_hash(b"short")
    with pytest.raises(ProofError):
        verify_consistency(3, 2, ROOTS[2], ROOTS[1], [])


leaf_lists = st.lists(st.binary(max_size=8), min_size=1, max_size=70)


@settings(max_examples=60, deadline=None)
@given(leaf_lists, st.data())
def test_every_inclusion_proof_verifies_and_tampering_fails(leaves: list[bytes], data: st.DataObject) -> None:
    tree = MerkleTree()
    for leaf in leaves:
        tree.append(leaf)
    size = data.draw(st.integers(1, len(leaves)))
    index = data.draw(st.integers(0, size - 1))
    root = tree.root(size)
    assert root == reference_root([leaf_hash(x) for x in leaves[:size]])
    proof = tree.inclusion_proof(index, size)
    verify_inclusion(index, size, leaf_hash(leaves[index]), proof, root)
    with pytest.raises(ProofError):
        verify_inclusion(index, size, leaf_hash(leaves[index] + b"!"), proof, root)
    if proof:
        pos = data.draw(st.integers(0, len(proof) - 1))
        bad = list(proof)
        bad[pos] = bytes([bad[pos][0] ^ 1]) + bad[pos][1:]
        with pytest.raises(ProofError):
            verify_inclusion(index, size, leaf_hash(leaves[index]), bad, root)


@settings(max_examples=60, deadline=None)
@given(leaf_lists, st.data())
def test_every_consistency_proof_verifies_and_rewrites_fail(leaves: list[bytes], data: st.DataObject) -> None:
    tree = MerkleTree()
    for leaf in leaves:
        tree.append(leaf)
    new = data.draw(st.integers(1, len(leaves)))
    old = data.draw(st.integers(1, new))
    proof = tree.consistency_proof(old, new)
    verify_consistency(old, new, tree.root(old), tree.root(new), proof)
    # Rewrite one of the first `old` entries: the new tree can no longer prove it extends the old head.
    pos = data.draw(st.integers(0, old - 1))
    rewritten = list(leaves)
    rewritten[pos] = rewritten[pos] + b"x"
    forged = MerkleTree()
    for leaf in rewritten:
        forged.append(leaf)
    if old < new:
        with pytest.raises(ProofError):
            verify_consistency(old, new, tree.root(old), forged.root(new), forged.consistency_proof(old, new))
    else:
        with pytest.raises(ProofError):
            verify_consistency(old, new, tree.root(old), forged.root(new), [])
