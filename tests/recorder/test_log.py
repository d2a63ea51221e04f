"""Signed tree heads, key rotation and the transparency log over in-memory storage."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import pytest

from recorder.leaves import AccessLeaf, LeafFormatError, SegmentLeaf, decode_leaf, encode_leaf
from recorder.merkle import leaf_hash, verify_consistency, verify_inclusion
from recorder.signing import KeyStore, SignatureError, load_public_key, public_key_pem, rotation_message
from recorder.transparency_log import LogIntegrityError, MemoryLogStorage, TransparencyLog
from recorder.tree_head import SignedTreeHead, verify_tree_head


def seg(i: int) -> SegmentLeaf:
    return SegmentLeaf("cam1", i * 6000, i * 6000 + 6000, f"{i:064x}", 1000 + i, "rec1", f"cam1/{i}.mp4")


def test_leaf_round_trip_and_rejects_bad_input() -> None:
    leaf = AccessLeaf("view", "inspector1", ("c1", "c2"), 1, 2, "投诉核查", 3)
    assert decode_leaf(encode_leaf(leaf)) == leaf
    for bad in (b"", b"[]", b'{"kind":"nope","v":1}', b'{"kind":"gap","v":1}',
                encode_leaf(leaf).replace(b'"start_ms":1', b'"start_ms":"1"'),
                encode_leaf(leaf).replace(b",", b", ")):
        with pytest.raises(LeafFormatError):
            decode_leaf(bad)


def test_key_store_creates_private_key_0600_and_rotation_destroys_old(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys")
    key = keys.current()
    priv = tmp_path / "keys" / f"recorder-log-{key.key_id}.key"
    assert stat.S_IMODE(os.stat(priv).st_mode) == 0o600
    assert keys.current().key_id == key.key_id  # reloaded, not regenerated
    rot = keys.rotate()
    assert rot.old_key_id == key.key_id and keys.current().key_id == rot.new_key.key_id
    assert not priv.exists()
    keys.public_key(key.key_id).verify(rot.endorsement, rotation_message(rot.new_key.public_key))


async def test_signed_heads_verify_offline_and_tampering_fails(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path)
    tlog = TransparencyLog(MemoryLogStorage(), keys, clock=lambda: 1000.0)
    await tlog.open()
    for i in range(5):
        assert await tlog.append(seg(i)) == i
    sth = await tlog.sign_head()
    assert sth.tree_size == 5 and sth.timestamp_ms == 1_000_000
    pub = load_public_key(public_key_pem(keys.public_key(sth.key_id)))
    verify_tree_head(SignedTreeHead.from_json(sth.to_json()), pub)
    for forged in (dataclasses.replace(sth, tree_size=4), dataclasses.replace(sth, root_hash=b"\0" * 32),
                   dataclasses.replace(sth, timestamp_ms=1)):
        with pytest.raises(SignatureError):
            verify_tree_head(forged, pub)
    with pytest.raises(ValueError):
        SignedTreeHead.from_json(b'{"log_id": 1}')
    proof = tlog.inclusion_proof(3, 5)
    verify_inclusion(3, 5, leaf_hash(encode_leaf(seg(3))), proof, sth.root_hash)


async def test_rewritten_entry_is_detected_by_consistency(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path)
    storage = MemoryLogStorage()
    tlog = TransparencyLog(storage, keys)
    await tlog.open()
    for i in range(10):
        await tlog.append(seg(i))
    kept = await tlog.sign_head()  # an inspector keeps this head
    for i in range(10, 13):
        await tlog.append(seg(i))
    later = await tlog.sign_head()
    verify_consistency(kept.tree_size, later.tree_size, kept.root_hash, later.root_hash,
                       tlog.consistency_proof(kept.tree_size, later.tree_size))
    # Someone rewrites entry 4 directly in storage (say, to change a segment's hash).
    storage.leaves["recorder"][4] = encode_leaf(dataclasses.replace(seg(4), sha256="f" * 64))
    reopened = TransparencyLog(storage, keys)
    with pytest.raises(LogIntegrityError, match="inconsistent"):
        await reopened.open()
    # Even if the attacker also drops the stored heads, the inspector's kept head catches it.
    storage.heads.clear()
    await reopened.open()
    with pytest.raises(LogIntegrityError):
        reopened.check_head(kept)
    tlog.check_head(kept)  # the honest log passes


async def test_key_rotation_is_logged_and_old_heads_still_verify(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path)
    tlog = TransparencyLog(MemoryLogStorage(), keys)
    await tlog.open()
    await tlog.append(seg(0))
    old_head = await tlog.sign_head()
    new_head = await tlog.rotate_key()
    assert new_head.key_id != old_head.key_id and new_head.tree_size == 2
    rotation = decode_leaf(await tlog.leaf_bytes(1))
    assert rotation.kind == "key_rotation"
    verify_tree_head(old_head, keys.public_key(old_head.key_id))
    verify_tree_head(new_head, keys.public_key(new_head.key_id))
    with pytest.raises(SignatureError):
        verify_tree_head(new_head, keys.public_key(old_head.key_id))
