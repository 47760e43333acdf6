"""The one Merkle log over every entry: leaf bytes, the sequencer, stored hashes and proofs from the database.

Entries are written as before — branch events, campaign changes and master-data events, each with its own
per-chain hash — with ``leaf_idx`` NULL. :func:`integrate` (run by the sweep, before every checkpoint and
by verify, one at a time: it first updates the single ``log_head`` row, which serialises sequencers on
both backends) gives every not-yet-sequenced entry the next leaf index, in id order per table, and
stores the Merkle hashes (O(1) amortised per leaf). The hot write paths take no lock and know nothing
of the tree.

A leaf commits to its entry: the leaf data is the canonical JSON (sorted keys, no spaces, UTF-8) of

    {"type": "event", "campaign": CODE, "branch": CODE, "seq": N, "hash": HEX}     a branch's event
    {"type": "campaign_change", "campaign": CODE, "seq": N, "hash": HEX}           a campaign change
    {"type": "master", "subject": SUBJECT, "seq": N, "hash": HEX}                  master data

and since each ``hash`` commits to its entry's body and to its predecessor, the tree commits to every
byte of every chain. The leaf hash is ``SHA-256(0x00 ‖ data)`` (RFC 9162).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, column, insert, select, table, text, update
from sqlalchemy.orm import Session

from workflow import masterlog, merkle
from workflow.errors import NotFound
from workflow.models import MerkleHashRow

_events = table("events", column("id"), column("leaf_idx"))
_changes = table("campaign_changes", column("id"), column("leaf_idx"))
_master = table("master_events", column("id"), column("leaf_idx"))
SOURCES = {"event": _events, "campaign_change": _changes, "master": _master}

BATCH = 5000
BULK_CHUNK = 50_000  # entries read, hashed and written at a time by the batched path


def _s(v: str) -> str:
    return json.dumps(v, ensure_ascii=False)


def leaf_event(campaign: str, branch: str, seq: int, h: str) -> bytes:
    return (f'{{"branch":{_s(branch)},"campaign":{_s(campaign)},"hash":{_s(h)},"seq":{int(seq)},'
            f'"type":"event"}}').encode()


def leaf_change(campaign: str, seq: int, h: str) -> bytes:
    return f'{{"campaign":{_s(campaign)},"hash":{_s(h)},"seq":{int(seq)},"type":"campaign_change"}}'.encode()


def leaf_master(subject: str, seq: int, h: str) -> bytes:
    return f'{{"hash":{_s(h)},"seq":{int(seq)},"subject":{_s(subject)},"type":"master"}}'.encode()


class DbHashes:
    """The stored hashes as a :class:`workflow.merkle.HashReader`."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def read_hashes(self, indexes: Sequence[int]) -> list[merkle.Hash]:
        want = sorted(set(indexes))
        got: dict[int, bytes] = {}
        for i in range(0, len(want), 900):
            for idx, h in self.session.execute(
                    select(MerkleHashRow.idx, MerkleHashRow.hash).where(MerkleHashRow.idx.in_(want[i:i + 900]))):
                got[idx] = h
        missing = [i for i in want if i not in got]
        if missing:
            raise merkle.ProofError(f"存储的默克尔哈希缺失（索引 {missing[0]}）：日志表被改动")
        return [bytes(got[i]) for i in indexes]


class _Overlay:
    """Reads the tree's right edge once, then serves new hashes from memory while a batch is appended."""

    def __init__(self, base: DbHashes, size: int) -> None:
        self.hashes: dict[int, bytes] = {}
        idx: list[int] = []
        lo = 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                idx.append(merkle.stored_hash_index(level, lo >> level))
                lo += 1 << level
        if idx:
            self.hashes.update(zip(idx, base.read_hashes(idx), strict=True))

    def read_hashes(self, indexes: Sequence[int]) -> list[merkle.Hash]:
        return [self.hashes[i] for i in indexes]


_UNSEQUENCED = {
    "event": text(
        "SELECT e.id, cp.code, b.code, e.seq, e.hash FROM events e JOIN cases c ON c.id = e.case_id "
        "JOIN campaigns cp ON cp.id = c.campaign_id JOIN branches b ON b.id = c.branch_id "
        "WHERE e.leaf_idx IS NULL ORDER BY e.id LIMIT :n"),
    "campaign_change": text(
        "SELECT ch.id, cp.code, ch.seq, ch.hash FROM campaign_changes ch JOIN campaigns cp ON cp.id = ch.campaign_id "
        "WHERE ch.leaf_idx IS NULL ORDER BY ch.id LIMIT :n"),
    "master": text("SELECT id, subject, seq, hash FROM master_events WHERE leaf_idx IS NULL ORDER BY id LIMIT :n"),
}


def _leaf_of(kind: str, row: Any) -> bytes:
    if kind == "event":
        return leaf_event(row[1], row[2], row[3], row[4])
    if kind == "campaign_change":
        return leaf_change(row[1], row[2], row[3])
    return leaf_master(row[1], row[2], row[3])


def lock_head(session: Session) -> int:
    """Take the sequencer's lock (the ``log_head`` row) and return the tree size."""
    session.execute(text("UPDATE log_head SET size = size WHERE id = 1"))
    size = session.scalar(text("SELECT size FROM log_head WHERE id = 1"))
    return int(size or 0)


def integrate(session: Session, *, batch: int = BATCH, bulk: bool = True, chunk: int = BULK_CHUNK,
              at: dt.datetime | None = None) -> int:
    """Give every entry not yet in the tree its leaf index and store the hashes; returns the tree size.

    Call it in its own transaction (the caller commits): it holds the sequencer lock until then. The
    batched path (the default, :func:`_integrate_bulk`) and the row-by-row one (``bulk=False``) write the
    same leaf indexes, hashes and master-data baseline (``at``: its time, now by default).
    """
    size = lock_head(session)
    masterlog.baseline_if_empty(session, at=at, bulk=bulk)
    start = size
    if bulk:
        size = _integrate_bulk(session, size, chunk)
        if size != start:
            session.execute(text("UPDATE log_head SET size = :s WHERE id = 1"), {"s": size})
        return size
    reader = _Overlay(DbHashes(session), size)
    for kind, stmt in _UNSEQUENCED.items():
        src = SOURCES[kind]
        while True:
            rows = session.execute(stmt, {"n": batch}).all()
            if not rows:
                break
            new_hashes: list[dict[str, Any]] = []
            marks: list[dict[str, Any]] = []
            for row in rows:
                hashes = merkle.stored_hashes_for_leaf(size, merkle.leaf_hash(_leaf_of(kind, row)), reader)
                base = merkle.stored_hash_index(0, size)
                for k, h in enumerate(hashes):
                    reader.hashes[base + k] = h
                    new_hashes.append({"idx": base + k, "hash": h})
                marks.append({"rid": row[0], "leaf": size})
                size += 1
            session.execute(insert(MerkleHashRow), new_hashes)
            session.execute(update(src).where(src.c.id == bindparam("rid")).values(leaf_idx=bindparam("leaf"))
                            .execution_options(synchronize_session=False), marks)
            if len(rows) < batch:
                break
    if size != start:
        session.execute(text("UPDATE log_head SET size = :s WHERE id = 1"), {"s": size})
    return size


# --- the batched path: a backlog of millions of entries (a bulk-loaded or migrated database) -----------

_TABLES = {"event": "events", "campaign_change": "campaign_changes", "master": "master_events"}
_BULK_SELECT = {
    "event": ("SELECT e.id, cp.code, b.code, e.seq, e.hash FROM events e JOIN cases c ON c.id = e.case_id "
              "JOIN campaigns cp ON cp.id = c.campaign_id JOIN branches b ON b.id = c.branch_id "
              "WHERE e.leaf_idx IS NULL AND e.id > {p} ORDER BY e.id LIMIT {p}"),
    "campaign_change": ("SELECT ch.id, cp.code, ch.seq, ch.hash FROM campaign_changes ch "
                        "JOIN campaigns cp ON cp.id = ch.campaign_id "
                        "WHERE ch.leaf_idx IS NULL AND ch.id > {p} ORDER BY ch.id LIMIT {p}"),
    "master": "SELECT id, subject, seq, hash FROM master_events WHERE leaf_idx IS NULL AND id > {p} ORDER BY id LIMIT {p}",
}


def id_runs(ids: Sequence[int], first_leaf: int) -> list[tuple[int, int, int]]:
    """``(offset, lo, hi)`` per run of consecutive ids, for ids (ascending) given leaves ``first_leaf, first_leaf + 1, …``
    in turn: ``leaf_idx = id + offset`` for the ids ``lo..hi``. A bulk-loaded table is one run."""
    runs: list[tuple[int, int, int]] = []
    if not ids:
        return runs
    lo = prev = ids[0]
    start = 0
    for i in range(1, len(ids)):
        rid = ids[i]
        if rid != prev + 1:
            runs.append((first_leaf + start - lo, lo, prev))
            lo, start = rid, i
        prev = rid
    runs.append((first_leaf + start - lo, lo, prev))
    return runs


def write_hashes(dbapi: Any, pg: bool, rows: Sequence[tuple[int, bytes]]) -> None:
    """Stored hashes ``(idx, hash)`` into ``merkle_hashes`` on the driver: binary COPY on PostgreSQL."""
    cur = dbapi.cursor()
    try:
        if pg:
            with cur.copy("COPY merkle_hashes (idx, hash) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["int8", "bytea"])
                for r in rows:
                    cp.write_row(r)
        else:
            cur.executemany("INSERT INTO merkle_hashes (idx, hash) VALUES (?, ?)", rows)
    finally:
        cur.close()


def _integrate_bulk(session: Session, size: int, chunk: int) -> int:
    """:func:`integrate`'s loop a chunk at a time on the driver: the unsequenced entries of each kind in id order
    (keyset, ``id > last``), their stored hashes from the tree's right edge in memory (:class:`merkle.RightEdge`,
    nothing read back), written by COPY, and their leaf indexes by one ``UPDATE … SET leaf_idx = id + k`` per run
    of consecutive ids. Same leaves, hashes and order as the row-by-row loop."""
    session.flush()
    conn = session.connection()
    pg = conn.dialect.name == "postgresql"
    p = "%s" if pg else "?"
    dbapi: Any = conn.connection.driver_connection
    edge = merkle.RightEdge(size, DbHashes(session))
    lh = merkle.leaf_hash
    for kind, sql_ in _BULK_SELECT.items():
        sql = sql_.format(p=p)
        mark = f"UPDATE {_TABLES[kind]} SET leaf_idx = id + {p} WHERE id BETWEEN {p} AND {p}"
        after = -(1 << 62)
        while True:
            cur = dbapi.cursor()
            try:
                cur.execute(sql, (after, chunk))
                rows = cur.fetchall()
            finally:
                cur.close()
            if not rows:
                break
            first = edge.size
            hashes: list[tuple[int, bytes]] = []
            for row in rows:
                if kind == "event":
                    data = leaf_event(row[1], row[2], row[3], row[4])
                elif kind == "campaign_change":
                    data = leaf_change(row[1], row[2], row[3])
                else:
                    data = leaf_master(row[1], row[2], row[3])
                idx, hs = edge.append(lh(data))
                hashes.extend(zip(range(idx, idx + len(hs)), hs, strict=True))
            write_hashes(dbapi, pg, hashes)
            cur = dbapi.cursor()
            try:
                cur.executemany(mark, id_runs([int(r[0]) for r in rows], first))
            finally:
                cur.close()
            after = int(rows[-1][0])
            if len(rows) < chunk:
                break
    return edge.size


def tree_size(session: Session) -> int:
    return int(session.scalar(text("SELECT size FROM log_head WHERE id = 1")) or 0)


def root_hash(session: Session, size: int) -> bytes:
    return merkle.tree_hash(size, DbHashes(session))


@dataclass(frozen=True, kw_only=True)
class Entry:
    leaf_idx: int
    kind: str
    data: bytes  # the leaf data (its hash is SHA-256(0x00 ‖ data))
    where: str  # for people: 活动/党支部 #seq …


def event_entry(session: Session, branch: str, seq: int, campaign: str | None = None) -> Entry:
    """The leaf of a branch's event (the campaign's latest by default); NotFound if unknown or not yet in the tree."""
    from workflow.repository import get_branch, get_campaign_row

    camp = get_campaign_row(session, campaign)
    b = get_branch(session, branch)
    row = session.execute(text(
        "SELECT e.leaf_idx, e.hash FROM events e JOIN cases c ON c.id = e.case_id "
        "WHERE c.campaign_id = :cp AND c.branch_id = :b AND e.seq = :seq"), {"cp": camp.id, "b": b.id, "seq": seq}).first()
    if row is None:
        raise NotFound(f"党支部 {branch} 在活动 {camp.code} 中没有第 {seq} 条事件")
    if row[0] is None:
        raise NotFound(f"党支部 {branch} 的第 {seq} 条事件尚未写入默克尔日志（请稍后再试或先生成检查点）")
    return Entry(leaf_idx=int(row[0]), kind="event", data=leaf_event(camp.code, b.code, seq, row[1]),
                 where=f"{camp.code}/{b.code} 事件 #{seq}")


def describe_leaf(session: Session, idx: int) -> str:
    """Which entry holds leaf ``idx`` today, in words (for reports naming the first entry that differs)."""
    r = session.execute(text(
        "SELECT cp.code, b.code, e.seq FROM events e JOIN cases c ON c.id = e.case_id "
        "JOIN campaigns cp ON cp.id = c.campaign_id JOIN branches b ON b.id = c.branch_id WHERE e.leaf_idx = :i"),
        {"i": idx}).first()
    if r:
        return f"第 {idx} 条日志项（{r[0]}/{r[1]} 事件 #{r[2]}）"
    r = session.execute(text("SELECT cp.code, ch.seq FROM campaign_changes ch JOIN campaigns cp ON cp.id = ch.campaign_id "
                             "WHERE ch.leaf_idx = :i"), {"i": idx}).first()
    if r:
        return f"第 {idx} 条日志项（活动 {r[0]} 配置变更 #{r[1]}）"
    r = session.execute(text("SELECT subject, seq FROM master_events WHERE leaf_idx = :i"), {"i": idx}).first()
    if r:
        return f"第 {idx} 条日志项（基础数据 {r[0]} 记录 #{r[1]}）"
    return f"第 {idx} 条日志项（现已不存在：被删除）"


_STREAM = {
    "event": ("SELECT e.leaf_idx, cp.code, b.code, e.seq, e.hash FROM events e JOIN cases c ON c.id = e.case_id "
              "JOIN campaigns cp ON cp.id = c.campaign_id JOIN branches b ON b.id = c.branch_id "
              "WHERE e.leaf_idx IS NOT NULL ORDER BY e.leaf_idx"),
    "campaign_change": ("SELECT ch.leaf_idx, cp.code, ch.seq, ch.hash FROM campaign_changes ch "
                        "JOIN campaigns cp ON cp.id = ch.campaign_id WHERE ch.leaf_idx IS NOT NULL ORDER BY ch.leaf_idx"),
    "master": "SELECT leaf_idx, subject, seq, hash FROM master_events WHERE leaf_idx IS NOT NULL ORDER BY leaf_idx",
}


def recomputed_leaves(session: Session) -> Generator[tuple[int, bytes], None, None]:
    """(leaf index, leaf hash) recomputed from the entry rows themselves, merged in leaf order.

    Streams three cursors (one per kind) and merges them, so memory stays flat.
    """
    import heapq

    conn = session.connection().execution_options(stream_results=True, yield_per=10_000)

    def one(kind: str) -> Generator[tuple[int, str, Any], None, None]:
        result = conn.exec_driver_sql(_STREAM[kind])
        try:
            for row in result:
                yield int(row[0]), kind, row
        finally:
            result.close()

    lh = merkle.leaf_hash
    streams = [one(k) for k in _STREAM]
    try:
        for idx, kind, row in heapq.merge(*streams, key=lambda t: t[0]):
            if kind == "event":
                data = leaf_event(row[1], row[2], row[3], row[4])
            elif kind == "campaign_change":
                data = leaf_change(row[1], row[2], row[3])
            else:
                data = leaf_master(row[1], row[2], row[3])
            yield idx, lh(data)
    finally:
        for st in streams:
            st.close()


def stored_leaf_hashes(session: Session, size: int) -> Generator[tuple[int, bytes], None, None]:
    """The stored level-0 hashes in leaf order (to find the first leaf that differs)."""
    conn = session.connection().execution_options(stream_results=True, yield_per=10_000)
    i, target = 0, merkle.stored_hash_index(0, 0)
    result = conn.exec_driver_sql("SELECT idx, hash FROM merkle_hashes ORDER BY idx")
    try:
        for idx, h in result:
            if i >= size:
                break
            if int(idx) == target:
                yield i, bytes(h)
                i += 1
                target = merkle.stored_hash_index(0, i)
    finally:
        result.close()
