"""Case tallies (issue 12, point 6; migration 0014, workflow/tallies.py), on a real SQLite file and a real
PostgreSQL server: after every kind of write to the cases — imports, moves through the stages, grading and
re-grading, the sweep, a split and a merge, the next year's campaign, a branch moving committee and general
branch, deletes — the tallies the triggers keep equal a GROUP BY over the cases, and what the roll-up, the
dashboard and the campaign statistics show from them is what the cases say."""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from scheduler.sweep import sweep
from service.pages.dashboard import _case_groups
from states.base import Role, Stage
from tests.support.world import AUDITOR, GB2_SEC, GB_SEC, MEMBERS, ORG, World, at
from workflow import audit, lineage, rollup, service, tallies, tenancy, views
from workflow.campaigns import create_campaign
from workflow.importer import OrgRow, import_rows
from workflow.models import Branch, CampaignRow, CaseRow
from workflow.people import add_person
from workflow.repository import get_campaign_row, load_case
from workflow.yearover import create_from

PARENT_ORG = "orgp@test.cn"


def agree(w: World) -> None:
    """The tallies equal the cases, and every reader built on them says what the cases say."""
    with w.sessions() as s:
        assert tallies.tallies_check(s) == []
        for code in s.scalars(select(CampaignRow.code)):
            assert views.campaign_stats(s, campaign=code) == stats_from_cases(s, code)
            row = get_campaign_row(s, code)
            today = at(5, 20).date()
            for who in (ORG, GB_SEC, GB2_SEC, AUDITOR, "sec2@test.cn"):
                actor = service.actor_for(s, who)
                where = tallies.scope_condition(actor)
                if where is None:  # a branch secretary: the page groups the cases
                    assert tenancy.scope_of(actor).branches
                    continue
                via_tallies = tallies.dashboard_groups(s, row.id, today, where)
                assert sorted(via_tallies, key=str) == sorted(_case_groups(s, actor, row.id, today), key=str), who


def stats_from_cases(s: Session, code: str) -> dict[str, Any]:
    """``views.campaign_stats`` as it was computed before the tallies: every case's state."""
    from workflow.repository import campaign_of

    camp = get_campaign_row(s, code)
    scale = campaign_of(camp).grading.scale
    stages = {st.value: 0 for st in Stage}
    grades = {b.code: 0 for b in scale.bands}
    regraded = up = down = lowest = lowest_up = 0
    for stage, state in s.execute(select(CaseRow.stage, CaseRow.state).where(CaseRow.campaign_id == camp.id)):
        stages[stage] += 1
        first, second = state.get("final_grade"), state.get("regrade")
        if first:
            grades[first] += 1
        if first and second:
            regraded += 1
            up += scale.rank(second) < scale.rank(first)
            down += scale.rank(second) > scale.rank(first)
        if first == scale.lowest.code:
            lowest += 1
            lowest_up += bool(second and scale.rank(second) < scale.rank(first))
    out = views.campaign_stats(s, campaign=code)
    return {**out, "branches": sum(stages.values()),
            "stages": [{"stage": k, "label": Stage(k).label, "count": v} for k, v in stages.items()],
            "grades": [{"grade": b.code, "label": b.grade, "count": grades[b.code]} for b in scale.bands],
            "regraded": regraded, "moved_up": up, "moved_down": down, "lowest": lowest,
            "lowest_moved_up": lowest_up, "conversion_rate": (lowest_up / lowest) if lowest else None}


def rollup_from_cases(s: Session, now: dt.datetime) -> dict[str, Any]:
    """The parent's roll-up with the tallies recomputed from the cases (in a transaction rolled back)."""
    with s.begin_nested():
        tallies.rebuild(s)
        out = rollup.rollup(s, service.actor_for(s, PARENT_ORG), now=now)
        s.rollback()
    return out


def grade_and_accept(w: World, branch: str, per_item: float, regrade: float | None) -> None:
    w.drive(branch, Stage.committee_grading, per_item=per_item)
    last = w.case(branch).last_at
    assert last is not None
    t = last + dt.timedelta(minutes=1)
    w.do(service.compute_grade, branch, MEMBERS[0], now=t)
    w.do(service.sign, branch, MEMBERS[0], now=t)
    w.do(service.sign, branch, MEMBERS[1], now=t)
    w.do(service.advance, branch, ORG, now=t)
    if regrade is None:
        return
    w.drive(branch, Stage.acceptance, per_item=per_item)
    last = w.case(branch).last_at
    assert last is not None
    t = max(last + dt.timedelta(minutes=1), at(9, 1))
    w.do(service.inspect, branch, w.gb_sec(branch), {"passed": True, "summary": "整改到位。", "inspected_on": "2026-09-01",
                                                    "regrade_score": regrade}, now=t)
    w.do(service.advance, branch, w.gb_sec(branch), now=t)
    assert w.stage(branch) is Stage.accepted


def _c2_row(n: int, code: str, gb: str = "GB3") -> OrgRow:
    return OrgRow(row=n, committee="外校党委", committee_code="C2", general_branch="外校党总支", general_branch_code=gb,
                  code=code, name=f"外校{code}党支部", branch_type="teacher", secretary_name=f"书记{code}",
                  secretary_email=f"{code.lower()}@test.cn", member_count=8, last_reelection=dt.date(2025, 1, 1),
                  last_activity=dt.date(2026, 2, 1), secretary_violation=False)


def test_the_tallies_follow_every_write_to_the_cases(world: World) -> None:
    w = world
    with w.sessions() as s, s.begin():
        tenancy.add_committee(s, "P", "上级党委")
        tenancy.move_committee(s, "C1", "P")
        tenancy.add_committee(s, "C2", "外校党委", parent="P")
        import_rows(s, [_c2_row(2, "B5"), _c2_row(3, "B6")])
        add_person(s, PARENT_ORG, "上级组织部", [Role.org_department], "P")
        create_campaign(s, preset="henan-2012", year=2026, committee="C2", now=at(3, 2))
    agree(w)  # the import and two campaigns opened (a multi-row insert of cases each)
    with w.sessions() as s:
        counts = Counter({r[0]: r[1] for r in s.execute(
            select(tallies.case_tallies.c.stage, func.sum(tallies.case_tallies.c.n))
            .group_by(tallies.case_tallies.c.stage))})
    assert counts == {Stage.survey.value: 6}

    grade_and_accept(w, "B1", 0.9, 70)  # 先进, re-graded down at acceptance
    grade_and_accept(w, "B2", 0.5, 80)  # 后进 → 一般 at acceptance: the lowest moved up
    grade_and_accept(w, "B3", 0.7, None)  # 一般, in publicity
    w.drive("B4", Stage.self_assessment)
    agree(w)
    with w.sessions() as s:
        stats = views.campaign_stats(s, campaign=w.campaign)
    assert (stats["regraded"], stats["moved_up"], stats["moved_down"], stats["lowest"], stats["lowest_moved_up"]) \
        == (2, 1, 1, 1, 1)

    with w.sessions() as s, s.begin():  # the sweep: reminders, versions only
        sweep(s, now=at(5, 20, 9))
    agree(w)
    now = at(5, 20, 9)
    with w.sessions() as s:
        data = rollup.rollup(s, service.actor_for(s, PARENT_ORG), now=now)
        assert data == rollup_from_cases(s, now)
    rows = {r["committee"]: r for r in data["rows"]}
    assert (rows["C1"]["branches"], rows["C2"]["branches"], data["total"]["branches"]) == (4, 2, 6)
    assert rows["C2"]["overdue"] == 2 and rows["C1"]["accepted"] == 2

    # a split and a merge at the year's end, then next year opened from this one (last year's grades)
    with w.sessions() as s, s.begin():
        who = service.actor_for(s, ORG)
        lineage.split(s, who, "B1", [("B1a", "生物系教工第一党支部", 6), ("B1b", "生物系教工第二党支部", 4)],
                      reason="教工人数增加，按教研室拆分", now=at(10, 8))
        lineage.merge(s, who, ["B2", "B3"], "B23", name="化学与本科生联合党支部", reason="人数过少，合并", now=at(10, 9))
    agree(w)
    with w.sessions() as s, s.begin():
        create_from(s, source=w.campaign, year=2027, now=at(1, 5, year=2027), actor=ORG, weekdays_only=True)
    agree(w)
    with w.sessions() as s:
        prev = Counter(s.scalars(select(tallies.case_tallies.c.previous_grade).where(tallies.case_tallies.c.n > 0)
                                 .join(CampaignRow, CampaignRow.id == tallies.case_tallies.c.campaign_id)
                                 .where(CampaignRow.year == 2027)))
    assert set(prev) == {"", "average"}  # B1a, B1b from B1 and B23 from B2, B3 (re-graded 一般); B4 none

    # a branch moves committee and general branch (a re-import naming C2 and GB3): its cases move with it
    with w.sessions() as s, s.begin():
        import_rows(s, [_c2_row(2, "B4")])
        assert s.scalar(select(Branch.committee_id).where(Branch.code == "B4")) == \
            s.scalar(text("SELECT id FROM committees WHERE code = 'C2'"))
    agree(w)
    with w.sessions() as s, s.begin():  # only the general branch changes
        s.execute(text("INSERT INTO general_branches (code, name, committee_id) "
                       "SELECT 'GB4', '外校第二党总支', id FROM committees WHERE code = 'C2'"))
        import_rows(s, [_c2_row(2, "B4", gb="GB4")])
    agree(w)

    # deletes: one case, then several in one statement (the statement-level trigger on PostgreSQL)
    with w.sessions() as s, s.begin():
        ids = list(s.scalars(select(CaseRow.id).join(CampaignRow, CampaignRow.id == CaseRow.campaign_id)
                             .where(CampaignRow.year == 2027).order_by(CaseRow.id)))
        assert len(ids) >= 3
        for table in ("events", "outbox", "attachments", "ballots", "objection_receipts"):
            s.execute(text(f"DELETE FROM {table} WHERE case_id IN ({', '.join(map(str, ids))})"))
        s.execute(text(f"DELETE FROM cases WHERE id = {ids[0]}"))
        s.execute(text(f"DELETE FROM cases WHERE id IN ({', '.join(map(str, ids[1:]))})"))
    agree(w)
    with w.sessions() as s:
        assert s.scalar(select(func.sum(tallies.case_tallies.c.n))) == s.scalar(select(func.count()).select_from(CaseRow))


def test_the_check_names_a_tally_that_disagrees_and_a_rebuild_repairs_it(world: World) -> None:
    w = world
    w.drive("B1", Stage.self_assessment)
    with w.sessions() as s:
        assert tallies.tallies_check(s) == []
    with w.sessions() as s, s.begin():  # a tally edited behind the triggers' back
        s.execute(text("UPDATE case_tallies SET n = n + 2 WHERE stage = 'survey'"))
        s.execute(text("DELETE FROM case_tallies_gb WHERE stage = 'self_assessment'"))
    with w.sessions() as s:
        diffs = tallies.tallies_check(s)
    assert [(d.table, d.key["stage"], d.stored, d.expected) for d in diffs] == [
        ("case_tallies", "survey", 5, 3), ("case_tallies_gb", "self_assessment", 0, 1)]
    assert "汇总表 case_tallies（" in diffs[0].message() and "记为 5，按案件统计应为 3" in diffs[0].message()
    with w.sessions() as s:  # audit verify says so, for the whole database and for the campaign
        for report in (audit.verify(s), audit.verify(s, campaign_code=w.campaign)):
            shown = [str(p) for p in report.problems]
            assert not report.ok and any("记为 5，按案件统计应为 3" in p for p in shown), shown
            assert sum("汇总表" in p for p in shown) == 2, shown
    with w.sessions() as s:
        camp = get_campaign_row(s, w.campaign).id
        assert len(tallies.tallies_check(s, campaign_id=camp)) == 2
        assert tallies.tallies_check(s, campaign_id=camp + 1000) == []
    with w.sessions() as s, s.begin():
        tallies.rebuild(s)
    with w.sessions() as s:
        assert tallies.tallies_check(s) == [] and audit.verify(s).ok
    # a transaction that fails leaves the tallies as they were
    try:
        with w.sessions() as s, s.begin():
            w2 = load_case(s, "B2")
            s.execute(text("UPDATE cases SET stage = 'publicity' WHERE id = :i"), {"i": w2.row.id})
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    with w.sessions() as s:
        assert tallies.tallies_check(s) == []


def test_the_generator_leaves_the_tallies_equal_to_the_cases(engine: Engine) -> None:
    path = Path(__file__).resolve().parents[2] / "bench" / "gen_country.py"
    spec = importlib.util.spec_from_file_location("gen_country", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_country", mod)
    spec.loader.exec_module(mod)
    mod.generate(engine, n_branches=120, n_committees=5, n_provinces=2, year=2026, as_of=dt.date(2026, 5, 20),
                 seed=5, echo=lambda _s: None)
    from workflow.db import session_factory

    with session_factory(engine)() as s:
        assert tallies.tallies_check(s) == []
        assert s.scalar(select(func.sum(tallies.case_tallies.c.n))) == 120
