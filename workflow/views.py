"""Read models shared by the CLI, the API and the pages: a branch's card, lists, history and replay."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from states import spec_for
from states.base import ROLE_LABELS, Stage
from states.survey import FOCUS_POINTS
from workflow import grading
from workflow.audit import events_of, iso
from workflow.campaign import BRANCH_TYPE_LABELS
from workflow.case import EVENT_LABELS, replay
from workflow.models import Branch, CampaignRow, CaseRow, GeneralBranch
from workflow.repository import LoadedCase, effective_deadline, get_campaign_row, load_case
from workflow.service import SYSTEM, unmet


def card(case: LoadedCase, now: dt.datetime, *, reveal_objectors: bool = False) -> dict[str, Any]:
    """Everything a person needs to know about one branch's case now (JSON-able); who lodged an objection
    only with ``reveal_objectors`` (see :func:`may_know_objectors`)."""
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
        "objections": s["objections"] if reveal_objectors else hide_objectors(s)["objections"],
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


def show(session: Session, branch: str, *, now: dt.datetime, campaign: str | None = None,
         actor: Any = None) -> dict[str, Any]:
    """The card as ``actor`` may read it (objectors only for those of :func:`may_know_objectors`)."""
    case = load_case(session, branch, campaign)
    return card(case, now, reveal_objectors=may_know_objectors(actor, case))


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


SYSTEM_NAME = "系统"
CONFIDENTIAL_OBJECTOR = "有人提出异议"
SYSTEM_KINDS = frozenset({"reminded", "escalated"})  # automatic reminders (hidden behind a toggle on pages)
def _short(text: Any, n: int = 60) -> str:
    t = str(text or "").replace("\n", " ").strip()
    return t if len(t) <= n else t[:n] + "…"


def _recorded(stage: str, data: dict[str, Any]) -> str:
    """What a ``recorded`` event filed, in the words of the form (never the record's keys)."""
    parts: list[str] = []
    other = 0
    order = ("findings", "last_reelection", "last_activity", "secretary_violation", "scores", "meeting_date",
             "attendance", "comment", "peer", "superior", "items", "self_analysis", "submitted", "attachments")
    for k, v in sorted(data.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)):
        if k == "findings" and isinstance(v, dict):
            no = [FOCUS_POINTS.get(x, "其他要点") for x, f in v.items() if isinstance(f, dict) and not f.get("ok")]
            parts.append(f"调查要点 {len(v)} 项" + (f"（“否”：{'、'.join(no)}）" if no else "（均为“是”）"))
        elif k == "last_reelection":
            parts.append(f"上次换届日期 {v}")
        elif k == "last_activity":
            parts.append(f"最近一次组织生活日期 {v}")
        elif k == "secretary_violation":
            parts.append("支部书记近两年" + ("有" if v else "无") + "严重违纪")
        elif k == "scores" and isinstance(v, dict):
            total = sum(float(x) for x in v.values())
            parts.append(f"评分 {len(v)} 项（合计 {total:g} 分）")
        elif k == "meeting_date":
            parts.append(f"支部大会日期 {v}")
        elif k == "attendance":
            parts.append(f"到会 {v} 人")
        elif k == "comment":
            if v:
                parts.append(f"说明：{_short(v)}")
        elif k == "peer":
            parts.append(f"分类互评得分 {float(v):g}")
        elif k == "superior":
            parts.append(f"上级考评得分 {float(v):g}")
        elif k == "items" and isinstance(v, list):
            parts.append(f"整改方案 {len(v)} 项")
        elif k == "self_analysis":
            if v:
                parts.append("自我剖析材料")
        elif k == "submitted":
            if v:
                parts.append("提交整改方案")
        elif k == "attachments" and isinstance(v, list):
            parts.append(f"附件 {len(v)} 个")
        elif k in ("source", "online"):
            continue
        else:
            other += 1
    if other:
        parts.append(f"其他 {other} 项")
    return f"填报“{Stage(stage).label}”：" + ("，".join(parts) if parts else "（无内容）")


def describe(event: dict[str, Any], labels: dict[str, str] | None = None,
             names: dict[str, str] | None = None) -> str:
    """One readable Chinese line for an event: ``labels`` turns grade codes into the scale's words,
    ``names`` e-mail addresses and codes into names (unknown addresses are left out, never shown)."""
    p = event.get("payload", {})
    k = event["kind"]
    lab = labels or {}
    nm = names or {}

    def who(xs: Any) -> str:
        people = [nm[x] for x in (xs or []) if x in nm]
        rest = len(list(xs or [])) - len(people)
        return "、".join(people + ([f"另 {rest} 人"] if rest else [])) or "（无）"

    def grade(code: Any, label: Any = None) -> str:
        return str(label or lab.get(str(code), "") or "（等级）")

    if k == "moved":
        why = {"uphold_objection": "（异议成立，退回重新评定）", "fail_inspection": "（验收未通过，限期整改）"}.get(
            p.get("trigger", ""), "")
        return (f"{Stage(p['from']).label} → {Stage(p['to']).label}{why}"
                + (f"（新截止日期 {p['deadline']}）" if p.get("deadline") else ""))
    if k == "recorded":
        if p["stage"] == Stage.member_evaluation.value and p["data"].get("tally"):  # online or typed (issue 15)
            t, src = p["data"]["tally"], p["data"].get("source")
            how = f"网上测评（承诺值 {p['data']['online']['commitment'][:12]}…）" if src == "online" else "纸质选票录入"
            return (f"填报“党员群众测评”：{how}，{t['ballots']} 张，平均 {t['rating']:g} 分，群众对党员满意率 "
                    f"{t['satisfaction_members']:.0%}，党员对书记满意率 {t['satisfaction_secretary']:.0%}")
        return _recorded(p["stage"], p["data"])
    if k == "graded":
        r = p["result"]
        veto = f"；一票否决：{'、'.join(v['label'] for v in r['veto'])}" if r["veto"] else ""
        return f"总分 {r['total']:g}，等级 {grade(r.get('grade'), r.get('grade_label'))}{veto}"
    if k == "grade_adjusted":
        return f"等级调整为 {grade(p['grade'], p.get('grade_label'))}，理由：{p['reason']}"
    if k == "signed":
        return f"{p.get('name') or nm.get(event['actor'], '党委委员')} 签字"
    if k == "publicity_started":
        return f"公示 {p['start']} 至 {p['end']}（{p['working_days']} 个工作日）"
    if k == "objection_lodged":
        return f"异议 #{p['id']}：{p['text']}"
    if k == "objection_resolved":
        return f"异议 #{p['id']} {'成立' if p['upheld'] else '不成立'}：{p['reason']}"
    if k == "item_completed":
        return f"整改事项第 {p['item']} 项完成：{p['evidence']}"
    if k == "inspected":
        if p.get("regrade_score") is None:  # a failed inspection needs no re-grade (issue 16)
            return f"验收{'通过' if p['passed'] else '未通过'}：{p['summary']}"
        regrade = (f"，再次定级 {grade(p.get('regrade'), p.get('regrade_label'))}（{p['regrade_score']:g} 分）"
                   if p.get("regrade_score") is not None else "")
        return f"验收{'通过' if p['passed'] else '未通过'}{regrade}：{p['summary']}"
    if k == "deadline_extended":
        return f"{Stage(p['stage']).label}截止日期延至 {p['deadline']}：{p['reason']}"
    if k in ("reminded", "escalated") and p.get("manual"):  # 催办 by a person (issue 16; notifications.manual)
        by = nm.get(str(p.get("by") or event["actor"]), "组织部")
        return f"{by} 催办（截止 {p['deadline']}）：{who(p.get('to'))}"
    if k == "reminded":
        days = str(p["rung"]).removeprefix("before-")
        return f"截止 {p['deadline']} 前 {days} 天提醒：{who(p.get('to'))}"
    if k == "escalated":
        return f"逾期 {p.get('days_overdue', '?')} 天（截止 {p['deadline']}），督促：{who(p.get('to'))}"
    if k == "supervision_order":
        return str(p.get("text") or f"督办令（截止 {p['deadline']}）：{who(p.get('to'))}")
    if k == "opened":
        return f"在活动“{nm.get(p['campaign'], p['campaign'])}”中立案"
    return ""


def may_know_objectors(actor: Any, case: LoadedCase) -> bool:
    """Who objected is confidential (a 公示 protects the complainant): only auditors and the organisation
    department of the branch's committee may know it."""
    if actor is None:
        return False
    from states.base import Role
    from workflow.service import may

    return bool(actor.has_role(Role.auditor) or may(actor, [Role.org_department], case))


def hide_objectors(state: dict[str, Any]) -> dict[str, Any]:
    """The state with every objection's author removed (the text and the outcome stay)."""
    return {**state, "objections": [{**o, "by": None} for o in state.get("objections", [])]}


def _names(session: Session, case: LoadedCase, events: list[dict[str, Any]]) -> dict[str, str]:
    """Display names for the addresses and codes the events mention (one query per kind)."""
    from workflow.models import Committee, Person

    emails: set[str] = set()
    for e in events:
        emails.add(e["actor"])
        p = e.get("payload", {})
        emails.update(str(x) for x in (p.get("to") or []) if isinstance(x, str))
        if isinstance(p.get("by"), str):
            emails.add(p["by"])
    emails.discard(SYSTEM)
    out = {r.email: r.name for r in session.execute(select(Person.email, Person.name).where(Person.email.in_(emails)))}
    out[SYSTEM] = SYSTEM_NAME
    out[case.campaign.code] = case.campaign.name
    for code, name in session.execute(select(Committee.code, Committee.name).where(Committee.code == case.committee_code)):
        out[code] = name
    if case.general_branch_code:
        for code, name in session.execute(select(GeneralBranch.code, GeneralBranch.name)
                                          .where(GeneralBranch.code == case.general_branch_code)):
            out[code] = name
    return out


def history(session: Session, branch: str, *, campaign: str | None = None, at: dt.datetime | None = None,
            actor: Any = None) -> dict[str, Any]:
    """The branch's events (up to ``at``) and the state replayed from them, each event with its actor's name
    (``actor_name``; 系统 for the system) and a plain Chinese description. Unless ``actor`` may know it
    (:func:`may_know_objectors`), who lodged an objection is removed from the events and the state."""
    case = load_case(session, branch, campaign)
    reveal_objectors = may_know_objectors(actor, case)
    events = list(events_of(session, case.row.id, until=at))
    state = replay(case.campaign.code, case.branch.code, events)
    labels = {b.code: b.grade for b in case.campaign.grading.scale.bands}
    names = _names(session, case, events)
    shown = []
    for e in events:
        row = {**e, "label": EVENT_LABELS.get(e["kind"], e["kind"]), "description": describe(e, labels, names),
               "actor_name": names.get(e["actor"], "（未知人员）"), "system": e["kind"] in SYSTEM_KINDS
               and not e.get("payload", {}).get("manual")}
        if e["kind"] == "objection_lodged" and not reveal_objectors:
            row.update(actor=None, actor_name=CONFIDENTIAL_OBJECTOR)
        shown.append(row)
    return {
        "campaign": case.campaign.code,
        "branch": {"code": case.branch.code, "name": case.branch.name},
        "at": iso(at) if at else None,
        "events": shown,
        "state": state if reveal_objectors else hide_objectors(state),
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
    Reads the case tallies (``workflow.tallies``: per stage, signed grade and re-grade, kept by triggers),
    a few rows per campaign whatever its number of branches."""
    from workflow import tallies
    from workflow.repository import campaign_of

    camp = get_campaign_row(session, campaign)
    c = campaign_of(camp)
    scale = c.grading.scale
    stages = {s.value: 0 for s in Stage}
    grades = {b.code: 0 for b in scale.bands}
    regraded = moved_up = moved_down = lowest = lowest_up = 0
    for stage, first, second, n in tallies.stats_groups(session, camp.id):
        stages[stage] += n
        if first:
            grades[first] += n
        if first and second:
            regraded += n
            moved_up += n * (scale.rank(second) < scale.rank(first))
            moved_down += n * (scale.rank(second) > scale.rank(first))
        if first == scale.lowest.code:
            lowest += n
            lowest_up += n * bool(second and scale.rank(second) < scale.rank(first))
    return {
        "campaign": c.code, "name": c.name, "branches": sum(stages.values()),
        "stages": [{"stage": k, "label": Stage(k).label, "count": v} for k, v in stages.items()],
        "grades": [{"grade": b.code, "label": b.grade, "count": grades[b.code]} for b in scale.bands],
        "regraded": regraded, "moved_up": moved_up, "moved_down": moved_down,
        "lowest_grade": scale.lowest.grade, "lowest": lowest, "lowest_moved_up": lowest_up,
        "conversion_rate": (lowest_up / lowest) if lowest else None,
    }
