"""Read models shared by the CLI, the API and the pages: a branch's card, lists, history and replay."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from states import spec_for
from states.base import ROLE_LABELS, Stage
from workflow import grading
from workflow.audit import events_of, iso
from workflow.campaign import BRANCH_TYPE_LABELS
from workflow.case import EVENT_LABELS, replay
from workflow.models import Branch, CampaignRow, CaseRow, GeneralBranch
from workflow.repository import LoadedCase, effective_deadline, get_campaign_row, load_case
from workflow.service import unmet


def card(case: LoadedCase, now: dt.datetime) -> dict[str, Any]:
    """Everything a person needs to know about one branch's case now (JSON-able)."""
    s = case.state
    stage = case.stage
    deadline = effective_deadline(case.campaign, s)
    today = now.astimezone(case.campaign.tz).date()
    quorum = case.campaign.quorum_for(case.facts.committee_size)
    spec = spec_for(stage) if stage is not Stage.accepted else None
    return {
        "campaign": case.campaign.code,
        "branch": {
            "code": case.branch.code,
            "name": case.branch.name,
            "type": case.branch.branch_type,
            "type_label": BRANCH_TYPE_LABELS.get(case.branch.branch_type, case.branch.branch_type),
            "committee": case.committee_code,
            "general_branch": case.general_branch_code,
            "secretary": case.branch.secretary_name,
            "secretary_email": case.branch.secretary_email,
            "member_count": case.branch.member_count,
        },
        "version": case.version,
        "stage": stage.value,
        "stage_label": stage.label,
        "stage_number": stage.number,
        "stage_entered_at": s.get("stage_entered_at"),
        "deadline": deadline.isoformat() if deadline else None,
        "overdue": bool(deadline and today > deadline),
        "days_left": (deadline - today).days if deadline else None,
        "unmet": [{"code": u.code, "message": u.message} for u in unmet(case, now)],
        "who_may_act": [ROLE_LABELS[r] for r in sorted(spec.advancers, key=list(ROLE_LABELS).index)] if spec else [],
        "records": s["records"],
        "grade": s.get("grade"),
        "grade_explained": grading.explain(s["grade"]) if s.get("grade") else [],
        "adjustment": s.get("adjustment"),
        "final_grade": s.get("final_grade"),
        "final_grade_label": _label(case, s.get("final_grade")),
        "signatures": s["signatures"],
        "quorum": quorum,
        "committee_size": case.facts.committee_size,
        "publicity": s.get("publicity"),
        "objections": s["objections"],
        "inspection": s.get("inspection"),
        "inspections": s.get("inspections", []),
        "regrade": s.get("regrade"),
        "regrade_label": _label(case, s.get("regrade")),
        "rounds": s.get("rounds"),
    }


def _label(case: LoadedCase, code: str | None) -> str | None:
    if not code:
        return None
    return case.campaign.grading.scale.by_code(code).grade


def show(session: Session, branch: str, *, now: dt.datetime, campaign: str | None = None) -> dict[str, Any]:
    return card(load_case(session, branch, campaign), now)


def list_cases(session: Session, *, now: dt.datetime, campaign: str | None = None, stage: str | None = None,
               general_branch: str | None = None, grade: str | None = None, overdue: bool | None = None,
               limit: int | None = None, offset: int = 0, where: Any = None) -> list[dict[str, Any]]:
    return list(iter_cases(session, now=now, campaign=campaign, stage=stage, general_branch=general_branch,
                           grade=grade, overdue=overdue, limit=limit, offset=offset, where=where))


def iter_cases(session: Session, *, now: dt.datetime, campaign: str | None = None, stage: str | None = None,
               general_branch: str | None = None, grade: str | None = None, overdue: bool | None = None,
               limit: int | None = None, offset: int = 0, where: Any = None) -> Iterator[dict[str, Any]]:
    """The rows of :func:`list_cases` one by one, streamed from the database (a server-side cursor on
    PostgreSQL), so a caller that writes as it goes holds one page of rows, whatever the number of branches.
    ``where`` is a condition on ``branches`` (the reader's scope, :func:`workflow.tenancy.branch_clause`)."""
    camp = get_campaign_row(session, campaign)
    from workflow.repository import campaign_of

    c = campaign_of(camp)
    today = now.astimezone(c.tz).date()
    q = (
        select(CaseRow.stage, CaseRow.grade, CaseRow.deadline, CaseRow.version, Branch.code, Branch.name,
               Branch.secretary_name, GeneralBranch.code.label("gb_code"), GeneralBranch.name.label("gb_name"))
        .join(Branch, Branch.id == CaseRow.branch_id)
        .outerjoin(GeneralBranch, GeneralBranch.id == Branch.general_branch_id)
        .where(CaseRow.campaign_id == camp.id)
        .order_by(Branch.code)
    )
    if where is not None:
        q = q.where(where)
    if stage:
        q = q.where(CaseRow.stage == Stage(stage).value)
    if general_branch:
        q = q.where(GeneralBranch.code == general_branch)
    if grade:
        q = q.where(CaseRow.grade == grade)
    if overdue is True:
        q = q.where(CaseRow.deadline < today)
    elif overdue is False:
        q = q.where((CaseRow.deadline >= today) | CaseRow.deadline.is_(None))
    if limit is not None:
        q = q.limit(limit).offset(offset)
    for r in session.execute(q.execution_options(yield_per=2000)):
        yield {
            "code": r.code, "name": r.name, "secretary": r.secretary_name,
            "general_branch": r.gb_code, "general_branch_name": r.gb_name,
            "stage": r.stage, "stage_label": Stage(r.stage).label,
            "grade": r.grade, "grade_label": c.grading.scale.by_code(r.grade).grade if r.grade else None,
            "deadline": r.deadline.isoformat() if r.deadline else None,
            "overdue": bool(r.deadline and today > r.deadline), "version": r.version,
        }


def describe(event: dict[str, Any], labels: dict[str, str] | None = None) -> str:
    """One readable Chinese line for an event."""
    p = event.get("payload", {})
    k = event["kind"]
    if k == "moved":
        return f"{Stage(p['from']).label} → {Stage(p['to']).label}" + (f"（新截止日期 {p['deadline']}）" if p.get("deadline") else "")
    if k == "recorded":
        if p["stage"] == Stage.member_evaluation.value and p["data"].get("tally"):  # online or typed (issue 15)
            t, src = p["data"]["tally"], p["data"].get("source")
            how = f"网上测评（承诺值 {p['data']['online']['commitment'][:12]}…）" if src == "online" else "纸质选票录入"
            return (f"填报“党员群众测评”：{how}，{t['ballots']} 张，平均 {t['rating']:g} 分，群众对党员满意率 "
                    f"{t['satisfaction_members']:.0%}，党员对书记满意率 {t['satisfaction_secretary']:.0%}")
        return f"填报“{Stage(p['stage']).label}”：" + ", ".join(sorted(p["data"].keys()))
    if k == "graded":
        r = p["result"]
        veto = f"；一票否决：{'、'.join(v['label'] for v in r['veto'])}" if r["veto"] else ""
        return f"总分 {r['total']:g}，等级 {r['grade_label']}{veto}"
    if k == "grade_adjusted":
        return f"等级调整为 {p.get('grade_label', p['grade'])}，理由：{p['reason']}"
    if k == "signed":
        return f"{p.get('name', event['actor'])} 签字"
    if k == "publicity_started":
        return f"公示 {p['start']} 至 {p['end']}（{p['working_days']} 个工作日）"
    if k == "objection_lodged":
        return f"异议 #{p['id']}：{p['text']}"
    if k == "objection_resolved":
        return f"异议 #{p['id']} {'成立' if p['upheld'] else '不成立'}：{p['reason']}"
    if k == "item_completed":
        return f"整改事项第 {p['item']} 项完成：{p['evidence']}"
    if k == "inspected":
        return f"验收{'通过' if p['passed'] else '未通过'}，再次定级 {p.get('regrade_label', p['regrade'])}（{p['regrade_score']:g} 分）：{p['summary']}"
    if k == "deadline_extended":
        return f"{Stage(p['stage']).label}截止日期延至 {p['deadline']}：{p['reason']}"
    if k in ("reminded", "escalated") and p.get("manual"):  # 催办 by a person (issue 16; notifications.manual)
        return f"{p.get('by', event['actor'])} 催办（截止 {p['deadline']}）：{'、'.join(p.get('to', []))}"
    if k == "reminded":
        days = p["rung"].removeprefix("before-")
        return f"截止 {p['deadline']} 前 {days} 天提醒：{'、'.join(p.get('to', []))}"
    if k == "escalated":
        return f"逾期 {p.get('days_overdue', '?')} 天（截止 {p['deadline']}），督促：{'、'.join(p.get('to', []))}"
    if k == "supervision_order":
        return str(p.get("text") or f"督办令（截止 {p['deadline']}）：{'、'.join(p.get('to', []))}")
    if k == "opened":
        return f"在活动 {p['campaign']} 中立案"
    return ""


def history(session: Session, branch: str, *, campaign: str | None = None, at: dt.datetime | None = None) -> dict[str, Any]:
    """The branch's events (up to ``at``) and the state replayed from them."""
    case = load_case(session, branch, campaign)
    events = list(events_of(session, case.row.id, until=at))
    state = replay(case.campaign.code, case.branch.code, events)
    return {
        "campaign": case.campaign.code,
        "branch": {"code": case.branch.code, "name": case.branch.name},
        "at": iso(at) if at else None,
        "events": [
            {**e, "label": EVENT_LABELS.get(e["kind"], e["kind"]), "description": describe(e)} for e in events
        ],
        "state": state,
        "stage_label": Stage(state["stage"]).label,
        "final_grade_label": (case.campaign.grading.scale.by_code(state["final_grade"]).grade
                              if state.get("final_grade") else None),
    }


def campaigns(session: Session, *, where: Any = None) -> list[dict[str, Any]]:
    """Campaigns newest first, each with its committee (``None``: a pre-tenancy one covering all);
    ``where`` narrows them (the reader's scope, :func:`workflow.tenancy.campaign_clause`)."""
    from workflow.models import Committee

    q = (select(CampaignRow, Committee.code).outerjoin(Committee, Committee.id == CampaignRow.committee_id)
         .order_by(CampaignRow.year.desc(), CampaignRow.id.desc()))
    if where is not None:
        q = q.where(where)
    return [
        {"code": r.code, "name": r.name, "year": r.year, "created_at": iso(r.created_at), "committee": committee}
        for r, committee in session.execute(q).tuples()
    ]


def campaign_stats(session: Session, *, campaign: str | None = None) -> dict[str, Any]:
    """Where the campaign stands: branches per stage and per signed grade, how many moved up a grade at
    the re-grade (晋位升级), and the conversion rate of the lowest grade (seed 003's 50 % goal).
    Streams the projections, so memory stays flat in the number of branches."""
    from workflow.repository import campaign_of

    camp = get_campaign_row(session, campaign)
    c = campaign_of(camp)
    scale = c.grading.scale
    stages = {s.value: 0 for s in Stage}
    grades = {b.code: 0 for b in scale.bands}
    regraded = moved_up = moved_down = lowest = lowest_up = 0
    q = select(CaseRow.stage, CaseRow.state).where(CaseRow.campaign_id == camp.id)
    for stage, state in session.execute(q.execution_options(yield_per=2000)):
        stages[stage] += 1
        first, second = state.get("final_grade"), state.get("regrade")
        if first:
            grades[first] += 1
        if first and second:
            regraded += 1
            moved_up += scale.rank(second) < scale.rank(first)
            moved_down += scale.rank(second) > scale.rank(first)
        if first == scale.lowest.code:
            lowest += 1
            lowest_up += bool(second and scale.rank(second) < scale.rank(first))
    return {
        "campaign": c.code, "name": c.name, "branches": sum(stages.values()),
        "stages": [{"stage": k, "label": Stage(k).label, "count": v} for k, v in stages.items()],
        "grades": [{"grade": b.code, "label": b.grade, "count": grades[b.code]} for b in scale.bands],
        "regraded": regraded, "moved_up": moved_up, "moved_down": moved_down,
        "lowest_grade": scale.lowest.grade, "lowest": lowest, "lowest_moved_up": lowest_up,
        "conversion_rate": (lowest_up / lowest) if lowest else None,
    }
