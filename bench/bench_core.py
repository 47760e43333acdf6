"""Move N branches through all seven stages on SQLite, then verify the audit log.

    python bench/bench_core.py            # N = 10,000
    python bench/bench_core.py --n 100000

Prints branches/s and events/s through the real services (load → check → append chained events → save
with a version check), the same rows written by a raw-SQL baseline in the same transactions in the same
run (the ratio is the price of the domain layer), `audit verify` events/s, and resident memory after
each tenth of the branches (flat in N: each move runs on a transient carrier, never one Machine holding
every branch).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text

from states.base import Role
from states.survey import FOCUS_POINTS
from workflow import audit, service
from workflow.campaigns import create_campaign
from workflow.db import make_engine, session_factory
from workflow.importer import OrgRow, import_rows
from workflow.migrate import upgrade
from workflow.people import add_person

TZ = ZoneInfo("Asia/Shanghai")
BATCH = 250  # branches per transaction, for both the services and the baseline


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def t(month: int, day: int, hour: int = 10) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, tzinfo=TZ)


def org(n: int) -> list[OrgRow]:
    return [
        OrgRow(row=i + 2, committee="基准党委", committee_code="C", general_branch=f"总支{i % 50}",
               general_branch_code=f"G{i % 50}", code=f"B{i:06d}", name=f"第{i}党支部", branch_type="teacher",
               secretary_name=f"书记{i}", secretary_email=f"s{i}@bench.cn", member_count=10,
               last_reelection=dt.date(2025, 1, 1), last_activity=dt.date(2026, 1, 1), secretary_violation=False)
        for i in range(n)
    ]


def setup(db: Path, n: int):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    sessions = session_factory(engine)
    with sessions() as s, s.begin():
        import_rows(s, org(n))
        add_person(s, "org@bench.cn", "组织部", [Role.org_department], "C")
        for i in range(3):
            add_person(s, f"m{i}@bench.cn", f"委员{i}", [Role.committee_member], "C")
        create_campaign(s, preset="haitang-2022", year=2026, now=t(3, 1, 8))
    return engine, sessions


def steps(code: str, sec: str, gb: str):  # type: ignore[no-untyped-def]
    """The whole year of one branch as (now, person, use case, args)."""
    scores = {str(i): (4.0 if i < 17 else 8.0) for i in range(1, 19)}
    return [
        (t(3, 20), gb, service.record, ({"findings": {k: {"ok": True} for k in FOCUS_POINTS}},)),
        (t(3, 20), gb, service.advance, ()),
        (t(4, 1), sec, service.record, ({"scores": scores, "meeting_date": "2026-03-30", "attendance": 8},)),
        (t(4, 1), sec, service.advance, ()),
        (t(4, 10), gb, service.record, ({"tally": {"ballots": 10, "rating": 85, "satisfaction_members": 0.9,
                                                   "satisfaction_secretary": 0.9}},)),
        (t(4, 10), gb, service.advance, ()),
        (t(4, 20), "m0@bench.cn", service.compute_grade, ()),
        (t(4, 20), "m0@bench.cn", service.sign, ()),
        (t(4, 20), "m1@bench.cn", service.sign, ()),
        (t(4, 20), "org@bench.cn", service.advance, ()),
        (t(4, 20), "org@bench.cn", service.publish, ()),
        (t(5, 10), "org@bench.cn", service.advance, ()),
        (t(5, 20), sec, service.record, ({"items": [{"problem": "组织生活不规范", "measure": "主题党日", "due": "2026-07-31",
                                                     "contact": "委员"}], "submitted": True},)),
        (t(7, 1), sec, service.complete_item, (1, "已完成")),
        (t(7, 2), sec, service.advance, ()),
        (t(9, 1), gb, service.inspect, ({"passed": True, "summary": "整改到位", "inspected_on": "2026-09-01",
                                         "regrade_score": 90},)),
        (t(9, 1), gb, service.advance, ()),
    ]


def run_services(sessions, n: int) -> tuple[float, float, int, list[tuple[int, float]]]:  # type: ignore[no-untyped-def]
    actors: dict[str, service.Actor] = {}
    memory = []
    start, cpu0 = time.perf_counter(), time.process_time()
    for lo in range(0, n, BATCH):
        with sessions() as s, s.begin():
            for i in range(lo, min(n, lo + BATCH)):
                code = f"B{i:06d}"
                for now, who, fn, args in steps(code, f"s{i}@bench.cn", "org@bench.cn"):
                    actor = actors.get(who) or service.actor_for(s, who)
                    if who.startswith(("org", "m")):
                        actors[who] = actor
                    fn(s, code, actor, *args, now=now)
            s.expunge_all()
        if (lo // BATCH) % max(1, n // BATCH // 10) == 0:
            memory.append((lo + BATCH, rss_mb()))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
    with sessions() as s:
        events = s.scalar(text("SELECT count(*) FROM events"))
    return elapsed, cpu, int(events), memory


def run_baseline(db: Path, source: Path) -> tuple[float, float]:
    """Raw SQL: the same event rows and case updates, in the same transactions (BATCH branches each).
    Reads the rows to write from the services' database batch by batch, outside the timed part."""
    src = sqlite3.connect(source)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("DELETE FROM events WHERE seq > 1")
    ids = [r[0] for r in src.execute("SELECT id FROM cases ORDER BY id")]
    wall = cpu = 0.0
    for lo in range(0, len(ids), BATCH):
        part = ids[lo: lo + BATCH]
        marks = ",".join("?" * len(part))
        rows = src.execute(f"SELECT case_id, seq, kind, at, actor, body, prev_hash, hash FROM events "
                           f"WHERE seq > 1 AND case_id IN ({marks}) ORDER BY case_id, seq", part).fetchall()
        finals = dict(src.execute(f"SELECT id, state FROM cases WHERE id IN ({marks})", part).fetchall())
        t0, c0 = time.perf_counter(), time.process_time()
        conn.execute("BEGIN")
        for r in rows:
            cid = r[0]
            # per event, as the services do: read the case, append the event, update the projection
            conn.execute("SELECT version, state FROM cases WHERE id = ?", (cid,)).fetchone()
            conn.execute("INSERT INTO events (case_id, seq, kind, at, actor, body, prev_hash, hash) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", r)
            conn.execute("UPDATE cases SET version = ?, state = ?, stage = ? WHERE id = ? AND version = ?",
                         (r[1], finals[cid], json.loads(finals[cid])["stage"], cid, r[1] - 1))
        conn.execute("COMMIT")
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
    conn.close()
    src.close()
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    args = ap.parse_args()
    n = args.n
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "bench.db"
        t0 = time.perf_counter()
        engine, sessions = setup(db, n)
        setup_s = time.perf_counter() - t0
        print(f"setup: imported and opened {n:,} branches in {setup_s:.1f} s")
        elapsed, cpu, events, memory = run_services(sessions, n)
        print(f"services: {n:,} branches × 7 stages in {elapsed:.1f} s wall ({cpu:.1f} s CPU) → "
              f"{n / elapsed:,.0f} branches/s, {(events - n) / elapsed:,.0f} events/s "
              f"({n / cpu:,.0f} branches/s, {(events - n) / cpu:,.0f} events/s per CPU second; {events:,} events in all)")
        print("resident memory (MB) after branches: " + ", ".join(f"{k:,}: {v:.0f}" for k, v in memory))
        t0 = time.perf_counter()
        with sessions() as s:
            report = audit.verify(s)
        verify_s = time.perf_counter() - t0
        assert report.ok, report.problems[:3]
        print(f"audit verify: {report.events:,} events in {verify_s:.1f} s → {report.events / verify_s:,.0f} events/s "
              f"(chains and projections: OK)")
        engine.dispose()
        base_db = Path(d) / "baseline.db"
        import shutil

        shutil.copy(db, base_db)
        base_s, base_cpu = run_baseline(base_db, db)
        print(f"raw-SQL baseline, same rows and transactions: {base_s:.1f} s wall ({base_cpu:.1f} s CPU) → "
              f"{(events - n) / base_s:,.0f} events/s")
        print(f"ratio services / baseline: {elapsed / base_s:.1f}× the wall time, {cpu / base_cpu:.1f}× the CPU time")
        print(f"peak resident memory of the whole run: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
        print(json.dumps({"bench": "core", "n": n, "ratio": round(cpu / base_cpu, 2),
                          "wall_ratio": round(elapsed / base_s, 2), "cpu_s": round(cpu, 2), "baseline_cpu_s": round(base_cpu, 2),
                          "us_per_call_cpu": round(cpu / (events - n) * 1e6, 1),
                          "verify_events_per_s": round(report.events / verify_s),
                          "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))


if __name__ == "__main__":
    main()
