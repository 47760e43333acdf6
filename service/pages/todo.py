"""The to-do list: what each role owes, stage by stage."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from service.app import runtime
from service.auth import (
    visible_cases,
)
from service.pages.common import (
    TODO_LIMIT,
    _page_actor,
    _reminder_days,
    render,
)
from states.base import ROLE_LABELS, Role, Stage
from workflow import tenancy
from workflow.repository import campaign_of, get_campaign_row, load_case
from workflow.service import Actor

router = APIRouter(include_in_schema=False)

OWED: dict[Role, tuple[Stage, ...]] = {
    Role.branch_secretary: (Stage.self_assessment, Stage.rectification),
    Role.general_branch_secretary: (Stage.survey, Stage.member_evaluation, Stage.acceptance),
    Role.committee_member: (Stage.committee_grading,),
    Role.org_department: (Stage.committee_grading, Stage.publicity),
    Role.auditor: (),
}

# --- to-do list -------------------------------------------------------------------------------------

def _todo(s: Session, actor: Actor, now: dt.datetime) -> list[dict[str, Any]]:
    try:
        camp = campaign_of(tenancy.default_campaign(s, actor))
    except tenancy.CampaignAmbiguous as exc:  # roles in several committees: each role's list uses its own
        camp = campaign_of(get_campaign_row(s, exc.codes[0]))
    soon = _reminder_days(camp)
    today = now.astimezone(camp.tz).date()
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for role, scope in sorted(actor.roles):
        one = Actor(email=actor.email, name=actor.name, roles=frozenset({(role, scope)}))
        for stage in OWED[role]:
            for r in visible_cases(s, one, now=now, stage=stage.value, limit=TODO_LIMIT):
                what = _what_is_owed(s, actor, role, stage, r)
                if what is None:
                    continue
                deadline = dt.date.fromisoformat(r["deadline"]) if r["deadline"] else None
                days = (deadline - today).days if deadline else None
                out[(r["code"], what)] = {**r, "what": what, "role_label": ROLE_LABELS[role], "days_left": days,
                                          "due_soon": days is not None and 0 <= days <= soon}
    from service.pages.nav import overdue_and_objections  # overdue work and open objections (issue 16)

    for t in overdue_and_objections(s, actor, now):
        out.setdefault((t["code"], t["what"]), t)
    return sorted(out.values(), key=lambda t: (not t.get("objection"), t["deadline"] or "9999", t["code"]))


def _what_is_owed(s: Session, actor: Actor, role: Role, stage: Stage, row: dict[str, Any]) -> str | None:
    if stage is Stage.committee_grading:
        case = load_case(s, row["code"])
        st = case.state
        if role is Role.committee_member:
            if not st.get("grade"):
                return "计算得分和等级"
            if any(x["member"] == actor.email for x in st["signatures"]) or case.branch.secretary_email == actor.email:
                return None
            return "签字确认等级"
        quorum = case.campaign.quorum_for(case.facts.committee_size)
        return "推进到公示" if len(st["signatures"]) >= quorum else None
    if stage is Stage.publicity:
        return "发布公示 / 处理异议 / 公示期满后推进"
    return {
        Stage.survey: "填写调查摸底",
        Stage.self_assessment: "支部自评打分",
        Stage.member_evaluation: "录入党员群众测评",
        Stage.rectification: "制定并完成整改方案",
        Stage.acceptance: "检查验收",
    }.get(stage, stage.label)


@router.get("/", response_class=HTMLResponse)
def todo_page(request: Request) -> Response:
    rt = runtime(request)
    now = rt.clock()
    with rt.tx() as s:
        actor = _page_actor(rt, s, request)
        items = _todo(s, actor, now)
    return render(request, "todo.html", {"items": items}, actor=actor)
