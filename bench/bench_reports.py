"""Benchmark: the committee-wide forms for 10 000 and N (default 100 000) branches — seconds and peak memory.

    python bench/bench_reports.py [--n 100000] [--small 10000] [--dir /tmp/bf-bench]

Builds two SQLite databases with the campaign's real event fold (every case surveyed, assessed, evaluated,
graded, signed and published; three quarters in rectification with a two-item plan, half of them inspected
and re-graded, a quarter accepted: 9–20 events a branch, hash-chained), then renders each form in a child
process of its own and reports wall time and peak memory growth (``VmHWM`` after rendering minus ``VmRSS`` before).
Flat memory means the growth for N is about the growth for the small size: the ratios are printed.
Timings are for this machine in this run; compare the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert

from workflow.audit import GENESIS, canonical, chain, iso
from workflow.campaign import preset_text
from workflow.case import apply, current_grade, new_state
from workflow.db import make_engine, session_factory
from workflow.migrate import upgrade
from workflow.models import Branch, CampaignRow, CaseRow, Committee, EventRow, GeneralBranch
from workflow.repository import campaign_of, effective_deadline

YEAR = 2026
TZ8 = dt.timezone(dt.timedelta(hours=8))
AT = dt.datetime(YEAR, 6, 1, 12, tzinfo=TZ8)  # --at: after grading, during rectification
NOW = dt.datetime(YEAR, 9, 10, 10, tzinfo=TZ8)
SCORES = [92.0, 88.5, 80.0, 72.5, 66.0, 60.0, 50.5]
RUNS = [
    ("summary", "xlsx", False), ("summary", "csv", False), ("summary", "html", False),
    ("overview", "xlsx", False), ("rectification", "xlsx", False), ("acceptance", "csv", False),
    ("summary", "xlsx", True), ("overview", "csv", True),
    ("export-events", "jsonl", False), ("charts", "svg", False),
]


def _t(month: int, day: int, hour: int = 10) -> dt.datetime:
    return dt.datetime(YEAR, month, day, hour, tzinfo=TZ8)


def profile(campaign: Any, score: float, path: int) -> list[dict[str, Any]]:
    """The events of one kind of case (without the opened event), valid for workflow.case.apply."""
    scale = campaign.grading.scale
    band = scale.band_for(score)
    ev: list[dict[str, Any]] = []
    stage = "survey"

    def add(kind: str, when: dt.datetime, payload: dict[str, Any], actor: str = "gb@bench.cn") -> None:
        nonlocal stage
        ev.append({"kind": kind, "at": iso(when), "actor": actor, "stage": stage, "payload": payload})
        if kind == "moved":
            stage = payload["to"]

    def move(to: str, when: dt.datetime) -> None:
        add("moved", when, {"from": stage, "to": to, "trigger": "advance"})

    add("recorded", _t(3, 20), {"stage": "survey", "data": {"findings": {"组织设置": {"ok": True, "note": "正常"}}}})
    move("self_assessment", _t(3, 20))
    rubric = campaign.grading.rubrics[0]
    add("recorded", _t(4, 2), {"stage": "self_assessment", "data": {
        "scores": {i.id: round(i.max * score / 100, 2) for i in rubric.items}, "meeting_date": f"{YEAR}-04-01",
        "attendance": 8}}, actor="sec@bench.cn")
    move("member_evaluation", _t(4, 2))
    add("recorded", _t(4, 12), {"stage": "member_evaluation", "data": {"tally": {
        "ballots": 12, "rating": score, "satisfaction_members": 0.9, "satisfaction_secretary": 0.9}}})
    move("committee_grading", _t(4, 12))
    add("graded", _t(4, 20), {"result": {
        "rubric": rubric.name, "sources": {"self": {"label": "支部自评", "score": score, "weight": 1.0, "weighted": score}},
        "total": score, "scale_grade": band.code, "scale_grade_label": band.grade, "boundary": band.boundary,
        "veto": [], "grade": band.code, "grade_label": band.grade, "standards": {}, "as_of": f"{YEAR}-04-20"}},
        actor="m1@bench.cn")
    add("signed", _t(4, 20), {"name": "委员1"}, actor="m1@bench.cn")
    add("signed", _t(4, 20), {"name": "委员2"}, actor="m2@bench.cn")
    move("publicity", _t(4, 20))
    add("publicity_started", _t(4, 20, 11), {"start": f"{YEAR}-04-21", "end": f"{YEAR}-04-27", "working_days": 5})
    if path == 0:
        return ev
    move("rectification", _t(5, 10))
    add("recorded", _t(5, 20), {"stage": "rectification", "data": {"items": [
        {"problem": "组织生活不够规范，“三会一课”记录不全", "measure": "每月固定主题党日，专人记录并公示", "due": f"{YEAR}-07-31",
         "contact": "委员1"},
        {"problem": "党员发挥作用不充分", "measure": "设立党员先锋岗，开展结对帮扶", "due": f"{YEAR}-08-15", "contact": "委员2"},
    ], "submitted": True, "self_analysis": "对照标准逐项查找不足，明确整改责任人和时限。"}}, actor="sec@bench.cn")
    if path == 1:
        return ev
    add("item_completed", _t(7, 1), {"item": 1, "evidence": "主题党日记录 6 份"}, actor="sec@bench.cn")
    add("item_completed", _t(7, 20), {"item": 2, "evidence": "先锋岗名单及活动照片"}, actor="sec@bench.cn")
    move("acceptance", _t(7, 21))
    regrade = min(100.0, score + 12)
    rb = scale.band_for(regrade)
    add("inspected", _t(9, 1), {"passed": True, "summary": "整改到位，验收通过。", "inspected_on": f"{YEAR}-09-01",
                                "regrade_score": regrade, "regrade": rb.code, "regrade_label": rb.grade})
    if path == 2:
        return ev
    move("accepted", _t(9, 1))
    return ev


def build(path: Path, n: int) -> None:
    if path.exists():
        return
    t0 = time.perf_counter()
    tmp = path.with_suffix(".building")
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{tmp}")
    upgrade(engine)
    text = preset_text("haitang-2022", year=YEAR)
    with session_factory(engine)() as s, s.begin():
        s.add(Committee(id=1, code="C", name="基准学院党委"))
        n_gb = max(1, n // 100)
        s.execute(insert(GeneralBranch), [{"id": g + 1, "code": f"G{g + 1:04d}", "name": f"第{g + 1}党总支",
                                           "committee_id": 1} for g in range(n_gb)])
        camp = CampaignRow(id=1, code=f"haitang-{YEAR}", name=f"基准 {YEAR} 年基层组织建设年", year=YEAR, config=text,
                           created_at=_t(3, 1, 8))
        s.add(camp)
        s.flush()
        c = campaign_of(camp)
        profiles: dict[tuple[int, int], tuple[list[dict[str, Any]], list[str]]] = {}
        for k in range(0, n, 5000):
            branches, cases, events = [], [], []
            for i in range(k, min(n, k + 5000)):
                code = f"B{i + 1:06d}"
                branches.append({"id": i + 1, "code": code, "name": f"第{i + 1}党支部", "branch_type": "teacher",
                                 "committee_id": 1, "general_branch_id": i % n_gb + 1, "secretary_name": "书记",
                                 "secretary_email": f"s{i}@bench.cn", "member_count": 12, "secretary_violation": False})
                key = (i % len(SCORES), i % 4)
                if key not in profiles:
                    evs = profile(c, SCORES[key[0]], key[1])
                    profiles[key] = (evs, [canonical(e) for e in evs])
                evs, bodies = profiles[key]
                opened = {"kind": "opened", "at": iso(_t(3, 1, 8)), "actor": "system", "stage": "survey",
                          "payload": {"campaign": camp.code, "branch": code}}
                state = apply(new_state(camp.code, code), opened)
                for e in evs:
                    apply(state, e, in_place=True)
                prev = GENESIS
                for seq, (e, body) in enumerate([(opened, canonical(opened)), *zip(evs, bodies)], 1):
                    h = chain(prev, body)
                    events.append({"case_id": i + 1, "seq": seq, "kind": e["kind"], "actor": e["actor"], "body": body,
                                   "at": dt.datetime.fromisoformat(e["at"]), "prev_hash": prev,
                                   "hash": h})
                    prev = h
                cases.append({"id": i + 1, "campaign_id": 1, "branch_id": i + 1, "stage": state["stage"],
                              "grade": current_grade(state), "deadline": effective_deadline(c, state),
                              "state": copy.deepcopy(state), "version": len(evs) + 1, "updated_at": _t(9, 1)})
            s.execute(insert(Branch), branches)
            s.execute(insert(CaseRow), cases)
            s.execute(insert(EventRow), events)
    engine.dispose()
    os.replace(tmp, path)
    print(f"  built {path.name}: {n} branches in {time.perf_counter() - t0:.1f} s", flush=True)


def _vm(key: str) -> float:
    """VmRSS / VmHWM of this process in MB. Not ru_maxrss: Linux carries it across execve, so a child would
    report the parent's peak (the database build); VmHWM belongs to the new address space."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def child(db: Path, name: str, fmt: str, replay: bool) -> None:
    """One measurement, in its own process so that the peak memory is its own."""
    import reports
    from reports import charts
    from reports.export import export_events

    engine = make_engine(f"sqlite:///{db}")
    out = Path(os.devnull)
    with session_factory(engine)() as s:
        base = _vm("VmRSS")
        t0, c0 = time.perf_counter(), time.process_time()
        size = 0
        if name == "export-events":
            chunks: Any = export_events(s)
        elif name == "charts":
            chunks = [v.encode() for v in charts.dashboard_svgs(s, None, NOW).values()]
        else:
            chunks = reports.render(s, name, fmt, at=AT if replay else None, now=NOW).body
        with open(out, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
                size += len(chunk)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        peak = _vm("VmHWM")
    print(json.dumps({"seconds": seconds, "cpu": cpu, "growth_mb": peak - base, "peak_mb": peak, "bytes": size}))


def measure(db: Path, name: str, fmt: str, replay: bool) -> dict[str, float]:
    r = subprocess.run([sys.executable, __file__, "--child", str(db), name, fmt, "1" if replay else "0"],
                       capture_output=True, text=True, check=True)
    return dict(json.loads(r.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--small", type=int, default=10_000)
    ap.add_argument("--dir", default="/tmp/bf-bench")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        db, name, fmt, replay = a.child
        return child(Path(db), name, fmt, replay == "1")
    d = Path(a.dir)
    d.mkdir(parents=True, exist_ok=True)
    print(f"building databases in {d} (kept for the next run) …", flush=True)
    small, big = d / f"bench-{a.small}.db", d / f"bench-{a.n}.db"
    build(small, a.small)
    build(big, a.n)
    print(f"\n{'report':<24}{'wall ' + f'{a.small:,}':>12}{'wall ' + f'{a.n:,}':>13}{'CPU ' + f'{a.small:,}':>11}"
          f"{'CPU ' + f'{a.n:,}':>12}{'CPU ×':>7}{'peak RSS MB':>19}{'growth MB':>16}{'br./CPU s':>11}")
    growth: dict[str, float] = {}
    for name, fmt, replay in RUNS:
        m1 = measure(small, name, fmt, replay)
        m2 = measure(big, name, fmt, replay)
        growth[f"{name} {fmt}" + (" --at" if replay else "")] = round(m2["cpu"] / max(m1["cpu"], 1e-9), 1)
        label = f"{name} {fmt}" + (" --at" if replay else "")
        print(f"{label:<24}{m1['seconds']:>11.1f}s{m2['seconds']:>12.1f}s{m1['cpu']:>10.1f}s{m2['cpu']:>11.1f}s"
              f"{m2['cpu'] / max(m1['cpu'], 1e-9):>7.1f}{m1['peak_mb']:>11.0f} → {m2['peak_mb']:>4.0f}"
              f"{m1['growth_mb']:>9.1f} → {m2['growth_mb']:>4.1f}{a.n / max(m2['cpu'], 1e-9):>11,.0f}", flush=True)
    print(f"\n× = value at {a.n:,} ÷ value at {a.small:,} ({a.n // a.small}× the branches). CPU time grows about "
          "linearly (wall time also depends on what else runs on the machine); the peak RSS of the rendering "
          "process and its growth over the RSS before rendering stay flat.")
    # ratio: CPU at N ÷ CPU at the small size, over the ratio of sizes (1 = linear)
    print(json.dumps({"bench": "reports", "n": a.n, "ratio": round(max(growth.values()) / (a.n / a.small), 2),
                      "cpu_growth": growth}))


if __name__ == "__main__":
    main()
