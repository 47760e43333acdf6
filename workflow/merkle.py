"""RFC 9162 Merkle trees as pure functions over hashes (the shape of Go's ``golang.org/x/mod/sumdb/tlog``).

Hashing (RFC 9162 §2.1.1): a leaf is ``SHA-256(0x00 ‖ data)``, an interior node ``SHA-256(0x01 ‖ left ‖
right)``; the tree over ``n`` leaves splits at the largest power of two smaller than ``n``.

Storage lives behind :class:`HashReader`: the hashes of every *complete* subtree are stored once, at a
linear "stored hash index" (:func:`stored_hash_index`: level ``L``'s ``n``-th hash comes right after
level ``L+1``'s hash ``2n+1``), so appending leaf ``n`` stores the leaf hash plus one hash per subtree it
completes (:func:`stored_hashes_for_leaf`; two hashes per leaf amortised, O(log n) reads) and any tree
hash or proof reads O(log n) stored hashes (:func:`tree_hash`, :func:`prove_inclusion`,
:func:`prove_consistency`). The checks (:func:`check_inclusion`, :func:`check_consistency`) follow the
verification algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2 and need nothing but hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Protocol

Hash = bytes  # 32 bytes
EMPTY = hashlib.sha256(b"").digest()  # the hash of the empty tree (RFC 9162 §2.1.1)


class HashReader(Protocol):
    def read_hashes(self, indexes: Sequence[int]) -> list[Hash]:
        """The stored hashes at ``indexes``, in the same order (raise if one is missing)."""
        ...


class ProofError(ValueError):
    """A proof does not verify, or a request asks for something the tree cannot prove."""


def leaf_hash(data: bytes) -> Hash:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: Hash, right: Hash) -> Hash:
    return hashlib.sha256(b"\x01" + left + right).digest()


def stored_hash_index(level: int, n: int) -> int:
    """Where the hash of the ``n``-th complete subtree of height ``level`` is stored."""
    for _ in range(level):
        n = 2 * n + 1
    i = 0
    while n > 0:
        i += n
        n >>= 1
    return i + level


def stored_hash_count(n: int) -> int:
    """How many hashes a tree of ``n`` leaves stores."""
    if n == 0:
        return 0
    count = stored_hash_index(0, n - 1) + 1
    i = n - 1
    while i & 1:
        count += 1
        i >>= 1
    return count


def stored_hashes_for_leaf(n: int, h: Hash, reader: HashReader) -> list[Hash]:
    """The hashes to store when leaf ``n`` (hash ``h``) is appended, in stored-index order from
    ``stored_hash_index(0, n)``: the leaf hash, then one hash per complete subtree the leaf closes."""
    m = _trailing_ones(n)
    old = reader.read_hashes([stored_hash_index(i, (n >> i) - 1) for i in range(m)]) if m else []
    out = [h]
    for i in range(m):
        h = node_hash(old[i], h)
        out.append(h)
    return out


def _trailing_ones(n: int) -> int:
    m = 0
    while n & 1:
        m += 1
        n >>= 1
    return m


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _subtrees(lo: int, hi: int, out: list[int]) -> None:
    """Stored indexes of the complete subtrees whose node-hash fold is the hash of leaves [lo, hi)."""
    while lo < hi:
        size = hi - lo
        if size & (size - 1) == 0:
            level = size.bit_length() - 1
            out.append(stored_hash_index(level, lo >> level))
            return
        k = _split(size)
        level = k.bit_length() - 1
        out.append(stored_hash_index(level, lo >> level))
        lo += k


def _fold(hashes: Sequence[Hash]) -> Hash:
    """Fold the subtree hashes of :func:`_subtrees` (left to right) into one range hash."""
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = node_hash(left, h)
    return h


def _range_hashes(ranges: Sequence[tuple[int, int]], reader: HashReader) -> list[Hash]:
    """The hashes of several leaf ranges, reading every stored hash they need in one batch."""
    plans: list[list[int]] = []
    for lo, hi in ranges:
        idx: list[int] = []
        _subtrees(lo, hi, idx)
        plans.append(idx)
    flat = [i for p in plans for i in p]
    got = dict(zip(flat, reader.read_hashes(flat), strict=True)) if flat else {}
    return [_fold([got[i] for i in p]) for p in plans]


def tree_hash(n: int, reader: HashReader) -> Hash:
    """The root hash of the tree of the first ``n`` leaves."""
    if n == 0:
        return EMPTY
    return _range_hashes([(0, n)], reader)[0]


def _inclusion_ranges(m: int, lo: int, hi: int) -> list[tuple[int, int]]:
    """RFC 9162 PATH(m, D[lo:hi]) as leaf ranges, leaf to root."""
    out: list[tuple[int, int]] = []
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < lo + k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
    out.reverse()
    return out


def prove_inclusion(t: int, n: int, reader: HashReader) -> list[Hash]:
    """The inclusion proof of leaf ``n`` in the tree of size ``t`` (RFC 9162 §2.1.3.1)."""
    if not 0 <= n < t:
        raise ProofError(f"leaf {n} is not in a tree of size {t}")
    return _range_hashes(_inclusion_ranges(n, 0, t), reader)


def _consistency_ranges(m: int, lo: int, hi: int, whole: bool = True) -> list[tuple[int, int]]:
    """RFC 9162 SUBPROOF(m, D[lo:hi], whole) as leaf ranges, in proof order."""
    n = hi - lo
    if m == n:
        return [] if whole else [(lo, hi)]
    k = _split(n)
    if m <= k:
        return [*_consistency_ranges(m, lo, lo + k, whole), (lo + k, hi)]
    return [*_consistency_ranges(m - k, lo + k, hi, False), (lo, lo + k)]


def prove_consistency(t: int, n: int, reader: HashReader) -> list[Hash]:
    """The consistency proof from the tree of size ``n`` to the tree of size ``t`` (RFC 9162 §2.1.4.1)."""
    if not 0 <= n <= t:
        raise ProofError(f"a tree of size {n} is not a prefix of a tree of size {t}")
    if n == 0 or n == t:
        return []
    return _range_hashes(_consistency_ranges(n, 0, t), reader)


def check_inclusion(proof: Sequence[Hash], t: int, root: Hash, n: int, leaf: Hash) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows leaf ``n`` (hash ``leaf``) in the tree (t, root)."""
    if not 0 <= n < t:
        raise ProofError(f"leaf {n} is not in a tree of size {t}")
    fn, sn, r = n, t - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof too long")
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
        raise ProofError("inclusion proof too short")
    if r != root:
        raise ProofError("inclusion proof does not lead to the root hash")


def check_consistency(proof: Sequence[Hash], t: int, root: Hash, n: int, old_root: Hash) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows the tree (n, old_root) is a prefix of (t, root)."""
    if not 0 <= n <= t:
        raise ProofError(f"a tree of size {n} is not a prefix of a tree of size {t}")
    if n == t:
        if proof:
            raise ProofError("consistency proof between equal sizes must be empty")
        if root != old_root:
            raise ProofError("two trees of the same size have different root hashes")
        return
    if n == 0:
        if proof:
            raise ProofError("consistency proof from the empty tree must be empty")
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    path = list(proof)
    if n & (n - 1) == 0:
        path.insert(0, old_root)
    fn, sn = n - 1, t - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof too long")
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
        raise ProofError("consistency proof too short")
    if fr != old_root:
        raise ProofError("consistency proof does not lead to the older root hash")
    if sr != root:
        raise ProofError("consistency proof does not lead to the newer root hash")


class TreeBuilder:
    """Streaming root computation: feed leaf hashes in order; memory is a stack of O(log n) subtrees.

    ``root(n)`` of any prefix seen so far is available when ``size == n`` (call it between pushes).
    """

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[tuple[int, Hash]] = []  # (subtree size, hash), sizes strictly decreasing

    def push(self, leaf: Hash) -> None:
        size, h = 1, leaf
        stack = self._stack
        while stack and stack[-1][0] == size:
            s, left = stack.pop()
            h = node_hash(left, h)
            size += s
        stack.append((size, h))
        self.size += 1

    def extend(self, leaves: Iterable[Hash]) -> None:
        for leaf in leaves:
            self.push(leaf)

    def root(self) -> Hash:
        if not self._stack:
            return EMPTY
        h = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            h = node_hash(left, h)
        return h


class MemoryHashes:
    """A :class:`HashReader` over a list (tests, the standalone tools, building a tree in memory)."""

    def __init__(self) -> None:
        self.hashes: list[Hash] = []
        self.size = 0

    def read_hashes(self, indexes: Sequence[int]) -> list[Hash]:
        return [self.hashes[i] for i in indexes]

    def append(self, leaf: Hash) -> None:
        self.hashes.extend(stored_hashes_for_leaf(self.size, leaf, self))
        self.size += 1


def right_edge_indexes(n: int) -> list[int]:
    """The stored indexes of the complete subtrees on the right edge of the tree of ``n`` leaves, biggest first
    (one per set bit of ``n``): every stored hash that appending leaves to that tree reads."""
    idx: list[int] = []
    lo = 0
    for level in range(n.bit_length() - 1, -1, -1):
        if n >> level & 1:
            idx.append(stored_hash_index(level, lo >> level))
            lo += 1 << level
    return idx


class RightEdge:
    """Appends leaves with O(log n) memory: keeps only the right edge's subtree hashes.

    ``append(leaf)`` returns ``(index, hashes)``: what :func:`stored_hashes_for_leaf` gives for that leaf and
    the stored index of the first of them (the others follow it; the next leaf's come right after), so a
    backlog of millions of leaves is sequenced in one pass with nothing read back from storage.
    """

    def __init__(self, size: int = 0, reader: HashReader | None = None) -> None:
        idx = right_edge_indexes(size)
        if idx and reader is None:
            raise ValueError("a non-empty tree needs a reader for its right edge")
        self._stack: list[Hash] = reader.read_hashes(idx) if idx and reader is not None else []
        self.size = size
        self.next_index = stored_hash_index(0, size)

    def append(self, leaf: Hash) -> tuple[int, list[Hash]]:
        n, h, out, stack = self.size, leaf, [leaf], self._stack
        while n & 1:
            h = node_hash(stack.pop(), h)
            out.append(h)
            n >>= 1
        stack.append(h)
        first = self.next_index
        self.size += 1
        self.next_index += len(out)
        return first, out

    def root(self) -> Hash:
        if not self._stack:
            return EMPTY
        return _fold(self._stack)
