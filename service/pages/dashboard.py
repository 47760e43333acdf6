"""The dashboard and the list of branches."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import case as sql_case
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reports import charts as reports_charts
from service.app import runtime
from service.auth import (
    sees_everything,
    visible_cases,
)
from service.pages.common import (
    _page_actor,
    render,
)
from service.pages.scope import _scope_clause
from states.base import Stage
from workflow import tallies, tenancy
from workflow.errors import NotFound
from workflow.models import Branch, CaseRow, Committee, GeneralBranch
from workflow.repository import campaign_of
from workflow.service import Actor
from workflow.yearover import calendar_in_force

router = APIRouter(include_in_schema=False)

# The list of branches (/branches) is in service/pages/lists.py (issue 16).

# --- dashboard --------------------------------------------------------------------------------------
def _case_groups(s: Session, actor: Actor, campaign_id: int,
                 today: dt.date) -> list[tuple[str | None, str | None, str, str | None, int, int]]:
    """The dashboard's counts grouped over the cases themselves (for a reader scoped to single branches)."""
    q = (
        select(GeneralBranch.code.label("gb"), GeneralBranch.name.label("gb_name"), CaseRow.stage, CaseRow.grade,
               func.count().label("n"), func.sum(sql_case((CaseRow.deadline < today, 1), else_=0)).label("late"))
        .join(Branch, Branch.id == CaseRow.branch_id)
        .join(Committee, Committee.id == Branch.committee_id)
        .outerjoin(GeneralBranch, GeneralBranch.id == Branch.general_branch_id)
        .where(CaseRow.campaign_id == campaign_id)
        .group_by(GeneralBranch.code, GeneralBranch.name, CaseRow.stage, CaseRow.grade)
    )
    clause = _scope_clause(s, actor)
    if clause is not None:
        q = q.where(clause)
    return [(r.gb, r.gb_name, r.stage, r.grade, int(r.n), int(r.late or 0)) for r in s.execute(q)]


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(request: Request) -> Response:
    rt = runtime(request)
    now = rt.clock()
    with rt.tx() as s:
        actor = _page_actor(rt, s, request)
        try:
            camp_row = tenancy.campaign_for(s, actor, request.query_params.get("campaign") or None)
        except (NotFound, tenancy.CampaignAmbiguous):
            # a parent committee that runs no campaign of its own supervises its children, and a deployment-
            # wide auditor has no one campaign: their overview is the roll-up
            sc = tenancy.scope_of(actor)
            if not request.query_params.get("campaign") and (sc.subtree or sc.everything):
                return RedirectResponse("/rollup", status_code=303)
            raise
        camp = campaign_of(camp_row)
        today = now.astimezone(camp.tz).date()
        # the counts per general branch, stage and grade come from the case tallies (workflow/tallies.py,
        # kept by triggers): a few hundred rows for the campaign instead of a GROUP BY over its cases; a
        # reader whose scope names single branches (which no tally row tells apart) gets the cases grouped
        everything = sees_everything(s, actor)
        where = None if everything else tallies.scope_condition(actor)
        if everything or where is not None:
            groups = tallies.dashboard_groups(s, camp_row.id, today, where)
        else:
            groups = _case_groups(s, actor, camp_row.id, today)
        stages: Counter[str] = Counter()
        grades: Counter[str] = Counter()
        late: Counter[str] = Counter()
        per_gb: dict[str, dict[str, Any]] = {}
        for gb, gb_name, stage, grade, n, n_late in groups:
            stages[stage] += n
            if grade:
                grades[grade] += n
            late[stage] += n_late
            g = per_gb.setdefault(gb or "", {"name": gb_name or "（不属党总支）", "total": 0, "accepted": 0,
                                              "late": 0, "stages": Counter()})
            g["total"] += n
            g["late"] += n_late
            g["stages"][stage] += n
            if stage == Stage.accepted.value:
                g["accepted"] += n
        overdue = visible_cases(s, actor, now=now, campaign=camp_row.code, overdue=True, limit=30)
        charts = reports_charts.dashboard_svgs(s, camp_row, now) if everything else {}
        calendar_line = calendar_in_force(s, camp_row)  # which working-day calendar is in force (issue 12)
    total = sum(stages.values())
    stage_rows: list[dict[str, Any]] = [{"stage": st, "label": st.label, "n": stages.get(st.value, 0), "late": late.get(st.value, 0)}
                  for st in Stage]
    grade_rows: list[dict[str, Any]] = [{"code": b.code, "label": b.grade, "n": grades.get(b.code, 0)} for b in camp.grading.scale.bands]
    return render(request, "dashboard.html", {
        "campaign": camp, "calendar_line": calendar_line, "total": total, "stage_rows": stage_rows, "grade_rows": grade_rows,
        "max_stage": max([r["n"] for r in stage_rows] + [1]), "max_grade": max([r["n"] for r in grade_rows] + [1]),
        "overdue_total": sum(late.values()), "overdue": overdue, "charts": list(charts.values()),
        "gb_rows": [{"code": k, **v, "where": "、".join(f"{Stage(st).label} {n}" for st, n in sorted(
            v["stages"].items(), key=lambda x: Stage(x[0]).number))} for k, v in sorted(per_gb.items())],
    }, actor=actor)
