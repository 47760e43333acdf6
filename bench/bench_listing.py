"""Benchmark: the list page's query (workflow.listing.search) over N branches (default 100 000) on SQLite.

    python bench/bench_listing.py [--n 100000] [--dir /tmp/bf-bench-listing]

Builds one SQLite database: a committee with 100 general branches and N branches, a campaign (haitang
preset, which opens one case per branch), then spreads the projections over the stages,
grades, deadlines and scores with one UPDATE (the list reads only the projection). Then times, in this
process, each of the list's typical queries (first page, a deep page, a stage filter, overdue, a name
search, sorted by score, one general branch) as the median of 5 runs, prints one JSON line each, and the
SQLite query plan of the first page. Timings are for this machine in this run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, select, text

from workflow import listing
from workflow.campaigns import create_campaign
from workflow.db import make_engine, session_factory
from workflow.migrate import upgrade
from workflow.models import Branch, CampaignRow, Committee, GeneralBranch

TZ = dt.timezone(dt.timedelta(hours=8))


def build(path: Path, n: int) -> None:
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    sessions = session_factory(engine)
    now = dt.datetime(2026, 3, 1, 8, tzinfo=TZ)
    with sessions() as s, s.begin():
        s.execute(insert(Committee), [{"code": "C1", "name": "测试学院党委", "path": ""}])
        cid = s.scalar(select(Committee.id))
        s.execute(insert(GeneralBranch), [{"code": f"GB{g:03d}", "name": f"第{g}党总支", "committee_id": cid}
                                          for g in range(100)])
        gbs = list(s.scalars(select(GeneralBranch.id).order_by(GeneralBranch.id)))
        rows = [{"code": f"B{i:06d}", "name": f"第{i}党支部（{'教工' if i % 3 else '学生'}）", "branch_type": "teacher",
                 "committee_id": cid, "general_branch_id": gbs[i % 100], "secretary_name": f"书记{i}",
                 "secretary_email": f"s{i}@test.cn", "member_count": 10, "secretary_violation": False}
                for i in range(n)]
        for lo in range(0, n, 10_000):
            s.execute(insert(Branch), rows[lo:lo + 10_000])
        create_campaign(s, preset="haitang-2022", year=2026, now=now)
    with sessions() as s, s.begin():
        assert s.scalars(select(CampaignRow)).one()  # its cases were opened with it
        stages = ["survey", "self_assessment", "member_evaluation", "committee_grading", "publicity",
                  "rectification", "acceptance", "accepted"]
        s.execute(text(
            "UPDATE cases SET stage = CASE id % 8 " + " ".join(f"WHEN {i} THEN '{st}'" for i, st in enumerate(stages))
            + " END, grade = CASE WHEN id % 8 >= 4 THEN CASE id % 3 WHEN 0 THEN 'advanced' WHEN 1 THEN 'average' "
            "ELSE 'backward' END END, deadline = date('2026-03-01', '+' || (id % 200) || ' days'), "
            "state = json_set(state, '$.grade', json_object('total', (id * 37) % 100))"))
    engine.dispose()


def timed(fn: object, runs: int = 5) -> float:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dir", default="/tmp/bf-bench-listing")
    a = ap.parse_args()
    d = Path(a.dir)
    d.mkdir(parents=True, exist_ok=True)
    db = d / f"list-{a.n}.db"
    if not db.exists():
        t = time.perf_counter()
        build(db, a.n)
        print(json.dumps({"built": a.n, "seconds": round(time.perf_counter() - t, 1)}))
    engine = make_engine(f"sqlite:///{db}")
    sessions = session_factory(engine)
    now = dt.datetime(2026, 6, 1, 9, tzinfo=TZ)
    queries = {
        "first page": {},
        "page 1000": {"page": "1000"},
        "stage filter": {"stage": "rectification"},
        "overdue, by deadline": {"overdue": "1", "sort": "deadline"},
        "search name": {"q": "第4242"},
        "sorted by score": {"sort": "score", "desc": "1"},
        "one general branch": {"general_branch": "GB042"},
        "grade filter": {"grade": "backward"},
    }
    with sessions() as s:
        for name, qp in queries.items():
            q = listing.parse(qp)
            page = listing.search(s, q, now=now)
            sec = timed(lambda q=q: listing.search(s, q, now=now))
            print(json.dumps({"n": a.n, "query": name, "total": page.total, "rows": len(page.rows),
                              "ms": round(sec * 1000, 1)}, ensure_ascii=False))
        plan = s.execute(text(
            "EXPLAIN QUERY PLAN SELECT branches.code FROM cases JOIN branches ON branches.id = cases.branch_id "
            "JOIN committees ON committees.id = branches.committee_id LEFT OUTER JOIN general_branches ON "
            "general_branches.id = branches.general_branch_id WHERE cases.campaign_id = 1 AND cases.stage = "
            "'rectification' ORDER BY branches.code LIMIT 50")).all()
        print(json.dumps({"plan (stage filter)": [r[-1] for r in plan]}, ensure_ascii=False))
    engine.dispose()


if __name__ == "__main__":
    main()
