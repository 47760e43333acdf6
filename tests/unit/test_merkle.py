"""RFC 9162 hashing, stored hash indexes and proofs: checked against a direct recursive definition."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflow import merkle
from workflow.merkle import MemoryHashes, ProofError, TreeBuilder


def mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH, written as the RFC writes it."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def tree(n: int) -> tuple[list[bytes], MemoryHashes]:
    data = [f"leaf {i}".encode() for i in range(n)]
    mem = MemoryHashes()
    for d in data:
        mem.append(merkle.leaf_hash(d))
    return data, mem


def test_known_vector() -> None:
    # RFC 6962 test vectors (certificate-transparency-go merkle tests): empty tree and one leaf of no data
    assert merkle.EMPTY.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert merkle.leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"


def test_stored_indexes_are_dense_and_in_append_order() -> None:
    _, mem = tree(100)
    assert len(mem.hashes) == merkle.stored_hash_count(100)
    for n in range(1, 101):
        assert merkle.stored_hash_index(0, n - 1) < merkle.stored_hash_count(n)
    assert merkle.stored_hash_index(0, 0) == 0 and merkle.stored_hash_index(1, 0) == 2


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 7, 8, 9, 31, 32, 33, 100])
def test_tree_hash_matches_definition_and_stream(n: int) -> None:
    data, mem = tree(n)
    b = TreeBuilder()
    for i, d in enumerate(data, 1):
        b.push(merkle.leaf_hash(d))
        assert merkle.tree_hash(i, mem) == mth(data[:i]) == b.root()
    assert merkle.tree_hash(n, mem) == mth(data)


def test_every_inclusion_and_consistency_proof_up_to_40() -> None:
    data, mem = tree(40)
    for t in range(1, 41):
        root = mth(data[:t])
        for i in range(t):
            proof = merkle.prove_inclusion(t, i, mem)
            merkle.check_inclusion(proof, t, root, i, merkle.leaf_hash(data[i]))
            with pytest.raises(ProofError):
                merkle.check_inclusion(proof, t, root, i, merkle.leaf_hash(b"other"))
        for m in range(t + 1):
            proof = merkle.prove_consistency(t, m, mem)
            merkle.check_consistency(proof, t, root, m, mth(data[:m]))
            if 0 < m < t:
                with pytest.raises(ProofError):
                    merkle.check_consistency(proof, t, root, m, mth([b"x", *data[1:m]]))
                with pytest.raises(ProofError):
                    merkle.check_consistency(proof, t, mth([*data[: t - 1], b"y"]), m, mth(data[:m]))


def test_proof_sizes_are_logarithmic() -> None:
    _, mem = tree(1000)
    assert len(merkle.prove_inclusion(1000, 517, mem)) <= 10
    assert len(merkle.prove_consistency(1000, 517, mem)) <= 20


def test_same_size_different_root_is_a_fork() -> None:
    data, _ = tree(5)
    with pytest.raises(ProofError, match="same size"):
        merkle.check_consistency([], 5, mth(data), 5, mth([b"z", *data[1:]]))


@given(st.integers(1, 300), st.data())
def test_random_proofs(t: int, data: st.DataObject) -> None:
    leaves, mem = tree(t)
    i = data.draw(st.integers(0, t - 1))
    m = data.draw(st.integers(0, t))
    root = merkle.tree_hash(t, mem)
    merkle.check_inclusion(merkle.prove_inclusion(t, i, mem), t, root, i, merkle.leaf_hash(leaves[i]))
    merkle.check_consistency(merkle.prove_consistency(t, m, mem), t, root, m, merkle.tree_hash(m, mem))
    wrong = data.draw(st.integers(0, t - 1))
    if wrong != i:
        with pytest.raises(ProofError):
            merkle.check_inclusion(merkle.prove_inclusion(t, i, mem), t, root, wrong, merkle.leaf_hash(leaves[i]))
