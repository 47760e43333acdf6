"""Reminders enqueued per second on a deadline day with N branches due (default 100,000), on SQLite or PostgreSQL.

    python bench/bench_reminders.py               # N = 100,000, a temporary SQLite file
    python bench/bench_reminders.py --n 10000
    python bench/bench_reminders.py --url postgresql+psycopg://postgres@127.0.0.1:PORT/DB   # an EMPTY database

Every branch is in the survey stage (due 03-31), so the 7-day reminder of 03-24 09:00 is due for all of
them at once. Prints, measured in one run:

* the sweep (batched path: one indexed query per page, chained ``reminded`` events, outbox rows and
  deliveries written in bulk, versions moved with an optimistic check) — reminders/s;
* the per-case ORM path for a sample of the same work (``load_case`` → ``append`` → ``save`` and one
  ORM outbox row per case, the 3-day reminder) — reminders/s, and the ratio between the two (the final JSON line's ``ratio``: CPU per reminder of the sweep ÷ that of the
  per-case path, measured in the same run);
* a sweep on a day with nothing due (it must not scan the branches), the query plan of the sweep's
  candidate query, ``audit verify`` over the result, and resident memory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select, text

from notifications.directory import Recipient
from notifications.models import DeliveryRow, OutboxRow
from scheduler.sweep import sweep
from states.base import Role
from workflow import audit
from workflow.campaigns import create_campaign
from workflow.db import make_engine, session_factory
from workflow.importer import OrgRow, import_rows
from workflow.migrate import upgrade
from workflow.models import Branch, CaseRow
from workflow.people import add_person
from workflow.repository import append, load_case, save

TZ = ZoneInfo("Asia/Shanghai")


def t(month: int, day: int, hour: int = 9) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, tzinfo=TZ)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def org(n: int) -> list[OrgRow]:
    return [
        OrgRow(row=i + 2, committee="基准党委", committee_code="C", general_branch=f"总支{i % 200}",
               general_branch_code=f"G{i % 200}", code=f"B{i:06d}", name=f"第{i}党支部", branch_type="teacher",
               secretary_name=f"书记{i}", secretary_email=f"s{i}@bench.cn", member_count=10,
               last_reelection=dt.date(2025, 1, 1), last_activity=dt.date(2026, 1, 1), secretary_violation=False)
        for i in range(n)
    ]


def per_case_path(sessions, codes: list[str], now: dt.datetime) -> float:  # type: ignore[no-untyped-def]
    """The straightforward path: one load_case/append/save and one ORM outbox row per case."""
    started = time.perf_counter()
    with sessions() as s, s.begin():
        for code in codes:
            case = load_case(s, code)
            key = f"{case.campaign_row.code}/{code}/survey/2026-03-31/before-3"
            append(s, case, kind="reminded", actor="system", at=now,
                   payload={"rung": "before-3", "deadline": "2026-03-31", "to": [f"gb@{code}"], "dedup_key": key})
            save(s, case, now=now)
            row = OutboxRow(dedup_key=key, campaign_id=case.campaign_row.id, case_id=case.row.id, branch_code=code,
                            stage="survey", deadline=dt.date(2026, 3, 31), rung="before-3", kind="reminder",
                            supervision_order=False, status="queued", context={"branch_name": case.branch.name},
                            due_at=now, created_at=now)
            s.add(row)
            s.flush()
            r = Recipient(email=f"gb@{code}", name="")
            s.add(DeliveryRow(outbox_id=row.id, recipient=r.email, recipient_name=r.name, status="pending",
                              attempts=0, next_attempt_at=now))
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--sample", type=int, default=2_000, help="cases for the per-case ORM comparison")
    ap.add_argument("--url", help="an empty database to run in (its schema is created there and left); "
                                  "default: a temporary SQLite file")
    args = ap.parse_args()
    n = args.n
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(args.url or f"sqlite:///{Path(tmp) / 'bench.db'}")
        dialect = engine.dialect.name
        upgrade(engine)
        sessions = session_factory(engine)
        t0 = time.perf_counter()
        with sessions() as s, s.begin():
            import_rows(s, org(n))
            add_person(s, "org@bench.cn", "组织部", [Role.org_department], "C")
            for g in range(200):
                add_person(s, f"g{g}@bench.cn", f"总支书记{g}", [Role.general_branch_secretary], f"G{g}")
            create_campaign(s, preset="haitang-2022", year=2026, now=t(3, 1, 8))
        print(f"setup: {n:,} branches with open cases in {time.perf_counter() - t0:.1f} s")

        with sessions() as s, s.begin():  # the watermark: the day before (only March's digest is due)
            sweep(s, now=t(3, 23))

        with sessions() as s:
            plan = s.execute(text(
                ("EXPLAIN QUERY PLAN " if dialect == "sqlite" else "EXPLAIN ")
                + "SELECT cases.id FROM cases JOIN branches ON branches.id = cases.branch_id "
                "JOIN events ON events.case_id = cases.id AND events.seq = cases.version "
                "WHERE cases.campaign_id = 1 AND cases.stage != 'accepted' "
                "AND cases.deadline <= '2026-03-31' AND (cases.deadline, cases.id) > ('2026-03-31', 0) "
                "ORDER BY cases.deadline, cases.id LIMIT 1000")).all()
        print(f"candidate query plan ({dialect}):")
        for row in plan:
            print(f"    {row[-1]}")

        rss0 = rss_mb()
        t1, c1 = time.perf_counter(), time.process_time()
        with sessions() as s:  # as the job runs it: a commit after each page of 1,000 cases
            stats = sweep(s, now=t(3, 24), checkpoint=s.commit)
            s.commit()
        batched, batched_cpu = time.perf_counter() - t1, time.process_time() - c1
        assert stats.reminders == n, stats
        print(f"deadline day, batched sweep: {stats.reminders:,} reminders ({stats.deliveries:,} deliveries) "
              f"in {batched:.2f} s → {stats.reminders / batched:,.0f} reminders/s; "
              f"RSS {rss0:.0f} → {rss_mb():.0f} MB")

        t2 = time.perf_counter()
        with sessions() as s, s.begin():
            quiet = sweep(s, now=t(3, 25))
        quiet_s = time.perf_counter() - t2
        print(f"a day with nothing due (the deadline-day reminders all pending): examined {quiet.examined} of "
              f"{n:,} branches in {quiet_s * 1000:.1f} ms")

        sample = min(args.sample, n)
        with sessions() as s:
            codes = list(s.scalars(select(Branch.code).order_by(Branch.id).limit(sample)))
        c3 = time.process_time()
        per_case = per_case_path(sessions, codes, t(3, 27))
        per_case_cpu = time.process_time() - c3
        rate_pc = sample / per_case
        rate_b = stats.reminders / batched
        print(f"per-case ORM path (load_case → append → save, ORM outbox rows): {sample:,} reminders in "
              f"{per_case:.2f} s → {rate_pc:,.0f} reminders/s")
        print(f"ratio batched / per-case: {rate_b / rate_pc:.1f}×")
        ratio = (batched_cpu / stats.reminders) / (per_case_cpu / sample)

        t3 = time.perf_counter()
        with sessions() as s:
            report = audit.verify(s)
            versions_ok = s.scalar(text(
                "SELECT COUNT(*) FROM cases c WHERE c.version = (SELECT MAX(seq) FROM events e WHERE e.case_id = c.id)"))
        print(f"audit verify: {report.cases:,} cases, {report.events:,} events, ok={report.ok} "
              f"in {time.perf_counter() - t3:.1f} s; projection version = last seq for {versions_ok:,} cases")
        assert report.ok, report.problems[:3]
        print(json.dumps({"bench": "reminders", "n": n, "db": dialect, "ratio": round(ratio, 3),
                          "deadline_day_s": round(batched, 2), "deadline_day_cpu_s": round(batched_cpu, 2),
                          "reminders_per_s": round(stats.reminders / batched), "quiet_sweep_ms": round(quiet_s * 1000, 1),
                          "per_case_reminders_per_s": round(rate_pc)}))
        with sessions() as s:
            assert s.scalar(select(CaseRow.version).where(CaseRow.id == 1)) == 3
        engine.dispose()


if __name__ == "__main__":
    main()
