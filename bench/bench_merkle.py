"""The Merkle log: appends with the tree on and off, checkpoints and proofs at 1M entries, verify events/s.

    python bench/bench_merkle.py                  # 5,000 branches × 20 events, a 1,000,000-leaf tree
    python bench/bench_merkle.py --branches 500 --leaves 100000

1. Appends: chained events written in transactions of 100 (one per branch, the head read back, the
   projection's version bumped) — half the branches with the tree off, the other half with the
   sequencer (``integrate``) run in each transaction as well. ratio = CPU per event on ÷ off.
2. A synthetic tree of ``--leaves`` leaves in ``merkle_hashes`` (SQLite): checkpoint time (tree hash from
   the stored hashes + Ed25519 signature), inclusion and consistency proof sizes and times (median of 200).
3. Verify: ``audit verify`` (chains + replay + projection) events/s in one process and with 2 workers, and
   the Merkle pass against a checkpoint (leaves recomputed from the rows, tree rebuilt) events/s.

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text

from workflow import audit, checkpoint, merkle, sequencer, service
from workflow.audit import canonical, chain, iso
from workflow.campaigns import create_campaign
from workflow.db import make_engine, session_factory
from workflow.importer import OrgRow, import_rows
from workflow.migrate import upgrade

TZ = ZoneInfo("Asia/Shanghai")


def org(n: int) -> list[OrgRow]:
    return [OrgRow(row=i + 2, committee="基准党委", committee_code="C", general_branch=f"总支{i % 50}",
                   general_branch_code=f"G{i % 50}", code=f"B{i:06d}", name=f"第{i}党支部", branch_type="teacher",
                   secretary_name=f"书记{i}", secretary_email=f"s{i}@bench.cn", member_count=10,
                   last_reelection=dt.date(2025, 1, 1), last_activity=dt.date(2026, 1, 1), secretary_violation=False)
            for i in range(n)]


def append_events(sessions, case_ids: list[int], per_case: int, *, tree: bool) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """CPU seconds and events for ``per_case`` chained 'reminded' events on each case, 100 cases a transaction."""
    at0 = dt.datetime(2026, 3, 2, 9, tzinfo=TZ)
    n = 0
    t0 = time.process_time()
    for k in range(0, len(case_ids), 100):
        chunk = case_ids[k:k + 100]
        with sessions() as s, s.begin():
            for cid in chunk:
                seq, prev = s.execute(text("SELECT seq, hash FROM events WHERE case_id = :c ORDER BY seq DESC LIMIT 1"),
                                      {"c": cid}).one()
                rows = []
                for j in range(per_case):
                    at = at0 + dt.timedelta(minutes=j)
                    body = canonical({"kind": "reminded", "at": iso(at), "actor": "system", "stage": "survey",
                                      "payload": {"rung": j, "deadline": "2026-03-31"}})
                    h = chain(prev, body)
                    rows.append({"c": cid, "q": seq + j + 1, "at": at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
                                 "b": body, "p": prev, "h": h})
                    prev = h
                s.execute(text("INSERT INTO events (case_id, seq, kind, at, actor, body, prev_hash, hash) "
                               "VALUES (:c, :q, 'reminded', :at, 'system', :b, :p, :h)"), rows)
                s.execute(text("UPDATE cases SET version = :v WHERE id = :c"), {"v": seq + per_case, "c": cid})
                n += per_case
            if tree:
                sequencer.integrate(s)
    return time.process_time() - t0, n


def synthetic_tree(url: str, leaves: int) -> float:
    """Store the hashes of a ``leaves``-leaf tree (synthetic leaf data); returns seconds spent building."""
    t0 = time.perf_counter()
    mem = merkle.MemoryHashes()
    for i in range(leaves):
        mem.append(merkle.leaf_hash(b"synthetic leaf %d" % i))
    eng = make_engine(url)
    upgrade(eng)
    with eng.begin() as conn:
        conn.exec_driver_sql("DELETE FROM merkle_hashes")
        conn.execute(text("INSERT INTO merkle_hashes (idx, hash) VALUES (:i, :h)"),
                     [{"i": i, "h": h} for i, h in enumerate(mem.hashes)])
        conn.execute(text("UPDATE log_head SET size = :n"), {"n": leaves})
    eng.dispose()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--branches", type=int, default=5000)
    ap.add_argument("--per-case", type=int, default=20)
    ap.add_argument("--leaves", type=int, default=1_000_000)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-merkle-"))
    url = f"sqlite:///{tmp / 'log.db'}"
    eng = make_engine(url)
    upgrade(eng)
    sessions = session_factory(eng)
    with sessions() as s, s.begin():
        create_campaign(s, preset="haitang-2022", year=2026, now=dt.datetime(2026, 3, 1, 8, tzinfo=TZ))
        import_rows(s, org(a.branches))
        service.open_missing_cases(s, None, now=dt.datetime(2026, 3, 1, 9, tzinfo=TZ))
        sequencer.integrate(s)
    with sessions() as s:
        ids = [r[0] for r in s.execute(text("SELECT id FROM cases ORDER BY id"))]
    half = len(ids) // 2
    off_cpu, off_n = append_events(sessions, ids[:half], a.per_case, tree=False)
    with sessions() as s, s.begin():
        sequencer.integrate(s)  # the first half joins the tree, outside the measurement
    on_cpu, on_n = append_events(sessions, ids[half:], a.per_case, tree=True)
    per_off, per_on = off_cpu / off_n, on_cpu / on_n
    print(f"appends: tree off {1 / per_off:,.0f}/s, tree on {1 / per_on:,.0f}/s (CPU), ratio {per_on / per_off:.2f}")

    signer = checkpoint.generate("bench.example/audit")
    with sessions() as s, s.begin():
        cp = checkpoint.parse_checkpoint(checkpoint.make(s, signer, reason="bench", now=dt.datetime.now(dt.UTC)).note,
                                         [signer.verifier])
    with sessions() as s:
        total_events = s.execute(text("SELECT count(*) FROM events")).scalar_one()
        t0, c0 = time.perf_counter(), time.process_time()
        rep = audit.verify(s)
        v1, v1_cpu = time.perf_counter() - t0, time.process_time() - c0
        assert rep.ok, rep.problems[:3]
        t0 = time.perf_counter()
        rep2 = audit.verify_parallel(s, url, workers=2)
        v2 = time.perf_counter() - t0
        assert rep2.ok and rep2.events == rep.events
        t0, c0 = time.perf_counter(), time.process_time()
        log = audit.verify_log(s, [("cp", cp)])
        vl, vl_cpu = time.perf_counter() - t0, time.process_time() - c0
        assert log.ok, log
    print(f"verify: {total_events} events, chains+replay {rep.events / v1:,.0f}/s wall ({rep.events / v1_cpu:,.0f}/s CPU) "
          f"one process, {rep2.events / v2:,.0f}/s wall with 2 workers; Merkle pass against a checkpoint "
          f"{log.size / vl:,.0f} leaves/s wall ({log.size / vl_cpu:,.0f}/s CPU)")
    eng.dispose()

    big = f"sqlite:///{tmp / 'big.db'}"
    build = synthetic_tree(big, a.leaves)
    eng = make_engine(big)
    sessions = session_factory(eng)
    times = []
    for _ in range(5):
        with sessions() as s, s.begin():
            t0 = time.perf_counter()
            row = checkpoint.make(s, signer, reason="bench", now=dt.datetime.now(dt.UTC))
            times.append(time.perf_counter() - t0)
            assert row.size == a.leaves
    cp_ms = statistics.median(times) * 1000
    rng = random.Random(1)
    inc_t, inc_n, con_t, con_n = [], [], [], []
    with sessions() as s:
        reader = sequencer.DbHashes(s)
        root = merkle.tree_hash(a.leaves, reader)
        for _ in range(200):
            i = rng.randrange(a.leaves)
            t0 = time.perf_counter()
            p = merkle.prove_inclusion(a.leaves, i, reader)
            inc_t.append(time.perf_counter() - t0)
            inc_n.append(len(p))
            merkle.check_inclusion(p, a.leaves, root, i, merkle.leaf_hash(b"synthetic leaf %d" % i))
            m = rng.randrange(1, a.leaves)
            t0 = time.perf_counter()
            c = merkle.prove_consistency(a.leaves, m, reader)
            con_t.append(time.perf_counter() - t0)
            con_n.append(len(c))
            merkle.check_consistency(c, a.leaves, root, m, merkle.tree_hash(m, reader))
    eng.dispose()
    inc_ms, con_ms = statistics.median(inc_t) * 1000, statistics.median(con_t) * 1000
    print(f"{a.leaves:,} leaves (built in {build:.1f} s): checkpoint {cp_ms:.1f} ms; inclusion proof "
          f"{statistics.median(inc_n):.0f} hashes ({32 * max(inc_n)} B max) in {inc_ms:.2f} ms; consistency proof "
          f"{statistics.median(con_n):.0f} hashes ({32 * max(con_n)} B max) in {con_ms:.2f} ms")
    print(json.dumps({
        "bench": "merkle", "n": total_events, "ratio": round(per_on / per_off, 3),
        "appends_per_s_off": round(1 / per_off), "appends_per_s_on": round(1 / per_on),
        "verify_events_per_s": round(rep.events / v1), "verify_events_per_s_cpu": round(rep.events / v1_cpu),
        "verify_log_leaves_per_s_cpu": round(log.size / vl_cpu), "verify_events_per_s_2_workers": round(rep2.events / v2),
        "verify_log_leaves_per_s": round(log.size / vl), "leaves": a.leaves, "checkpoint_ms": round(cp_ms, 2),
        "inclusion_proof_hashes": max(inc_n), "inclusion_proof_ms": round(inc_ms, 3),
        "consistency_proof_hashes": max(con_n), "consistency_proof_ms": round(con_ms, 3),
    }))


if __name__ == "__main__":
    main()
