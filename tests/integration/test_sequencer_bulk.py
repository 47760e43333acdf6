"""The sequencer's batched path (a bulk-loaded or migrated backlog) against the row-by-row one, on a real
SQLite file and a real PostgreSQL database: the same backlog sequenced both ways (each in a transaction
rolled back afterwards) gives the same leaf indexes, stored hashes, tree size and root, and the same
master-data baseline, byte for byte; and the generator's audit structures are what the row-by-row
sequencer makes of its rows, and pass a whole-database verify."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from states.base import Stage
from tests.support.world import World
from workflow import audit, masterlog, merkle, sequencer
from workflow.db import session_factory

AT = dt.datetime(2026, 5, 20, 23, 0, tzinfo=dt.UTC)
BENCH = Path(__file__).resolve().parents[2] / "bench" / "gen_country.py"


def _state(s: Session) -> dict[str, Any]:
    """Everything the sequencer writes (master events without their ids: PostgreSQL's sequence is not rolled back)."""
    size = sequencer.tree_size(s)
    return {
        "events": [tuple(r) for r in s.execute(text("SELECT id, leaf_idx FROM events ORDER BY id"))],
        "changes": [tuple(r) for r in s.execute(text("SELECT id, leaf_idx FROM campaign_changes ORDER BY id"))],
        "master": [tuple(r) for r in s.execute(text(
            "SELECT leaf_idx, subject, seq, kind, at, actor, body, prev_hash, hash FROM master_events "
            "ORDER BY leaf_idx"))],
        "hashes": [(int(i), bytes(h)) for i, h in s.execute(text("SELECT idx, hash FROM merkle_hashes ORDER BY idx"))],
        "size": size,
        "root": sequencer.root_hash(s, size),
    }


def _both_ways(sessions: sessionmaker[Session], **bulk_kw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    out = []
    for kw in ({"bulk": False}, {"bulk": True, **bulk_kw}):
        s = sessions()
        tx = s.begin()
        try:
            sequencer.integrate(s, at=AT, **kw)
            out.append(_state(s))
        finally:
            tx.rollback()
            s.close()
    return out[0], out[1]


def _check_tree(st: dict[str, Any]) -> None:
    """The stored hashes are those of the leaves recomputed from the rows (independent of the sequencer)."""
    mem = merkle.MemoryHashes()
    with_leaves = sorted([*((leaf, "e") for _, leaf in st["events"]), *((leaf, "c") for _, leaf in st["changes"]),
                          *((m[0], "m") for m in st["master"])])
    assert [leaf for leaf, _ in with_leaves] == list(range(st["size"]))
    return_hashes = dict(st["hashes"])
    for i in range(st["size"]):
        mem.append(return_hashes[merkle.stored_hash_index(0, i)])
    assert [h for _, h in st["hashes"]] == mem.hashes
    assert merkle.tree_hash(st["size"], mem) == st["root"]


def _forget_log(s: Session) -> None:
    """A database upgraded to the log: entries unsequenced, no stored hash, no master-data log."""
    for t in ("events", "campaign_changes"):
        s.execute(text(f"UPDATE {t} SET leaf_idx = NULL"))
    s.execute(text("DELETE FROM master_events"))
    s.execute(text("DELETE FROM merkle_hashes"))
    s.execute(text("UPDATE log_head SET size = 0 WHERE id = 1"))


@pytest.mark.parametrize("chunk", [7, sequencer.BULK_CHUNK])
def test_backlog_and_baseline_same_both_ways(world: World, chunk: int) -> None:
    world.drive("B1", Stage.publicity)
    world.drive("B2", Stage.member_evaluation)
    world.drive("B3", Stage.self_assessment)
    with world.sessions() as s, s.begin():
        _forget_log(s)
    rows, bulk = _both_ways(world.sessions, chunk=chunk)
    assert rows == bulk
    assert rows["size"] == len(rows["events"]) + len(rows["changes"]) + len(rows["master"]) > 20
    assert {m[3] for m in rows["master"]} == {"recorded"} and len(rows["master"]) > 5
    _check_tree(bulk)


def test_partial_tree_with_gaps_same_both_ways(world: World) -> None:
    """A tree already holding an odd number of leaves (its right edge read back), then a backlog whose ids
    have gaps (rows deleted): several runs of ids, each its own UPDATE."""
    world.drive("B1", Stage.self_assessment)
    with world.sessions() as s, s.begin():
        size = sequencer.integrate(s, bulk=False)
        if size % 2 == 0:  # make it odd: one more master-data event sequenced
            s.execute(text("INSERT INTO master_events (subject, seq, kind, at, actor, body, prev_hash, hash) "
                           "VALUES ('person:x@y.cn', 1, 'recorded', :at, 't', '{}', :g, :h)"),
                      {"at": AT.replace(tzinfo=None), "g": audit.GENESIS, "h": hashlib.sha256(b"x").hexdigest()})
            size = sequencer.integrate(s, bulk=False)
    assert size % 2 == 1
    world.drive("B2", Stage.publicity)
    world.drive("B3", Stage.self_assessment)
    with world.sessions() as s, s.begin():
        ids = [int(i) for i in s.scalars(text("SELECT id FROM events WHERE leaf_idx IS NULL ORDER BY id"))]
        assert len(ids) > 6
        s.execute(text("DELETE FROM events WHERE id IN (:a, :b)"), {"a": ids[2], "b": ids[5]})
        assert len(sequencer.id_runs([i for i in ids if i not in (ids[2], ids[5])], 0)) == 3
    rows, bulk = _both_ways(world.sessions, chunk=4)
    assert rows == bulk and rows["size"] > size
    assert [h for i, h in bulk["hashes"] if i < merkle.stored_hash_count(size)] == \
        [h for i, h in rows["hashes"] if i < merkle.stored_hash_count(size)]


def test_bulk_nothing_to_do(world: World) -> None:
    world.drive("B1", Stage.survey)
    with world.sessions() as s, s.begin():
        size = sequencer.integrate(s)
    with world.sessions() as s, s.begin():
        assert sequencer.integrate(s) == size
        assert masterlog.baseline_if_empty(s) == 0


def _gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_country", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_country", mod)
    spec.loader.exec_module(mod)
    return mod


def test_generated_database_is_auditable(engine: Engine) -> None:
    out = _gen().generate(engine, n_branches=120, n_committees=6, n_provinces=2, year=2026,
                          as_of=dt.date(2026, 5, 20), seed=5, echo=lambda _s: None)
    sessions = session_factory(engine)
    with sessions() as s:
        generated = _state(s)
        report = audit.verify(s)  # the whole database, master data included
        assert report.ok, [str(p) for p in report.problems[:3]]
        assert report.cases == 120
        assert audit.verify_log(s, []).ok
    assert generated["size"] == out["tree_size"] == out["counts"]["events"] + out["counts"]["campaigns"] \
        + out["counts"]["master_events"]
    _check_tree(generated)
    # the same rows sequenced from scratch, row by row, with the baseline at the generator's time
    as_of_end = dt.datetime.combine(dt.date(2026, 5, 20), dt.time(23), tzinfo=_gen().TZ)
    s = sessions()
    tx = s.begin()
    try:
        _forget_log(s)
        sequencer.integrate(s, bulk=False, at=as_of_end)
        assert _state(s) == generated
    finally:
        tx.rollback()
        s.close()
