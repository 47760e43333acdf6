"""The committee's sign-off page."""

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
    render,
)
from service.pages.record import grading_parts, person_names, self_assessment_rows
from states.base import Role, Stage
from workflow import service, views
from workflow.repository import load_case
from workflow.service import Actor

router = APIRouter(include_in_schema=False)

# --- committee sign-off -----------------------------------------------------------------------------

def _committee_ctx(s: Session, actor: Actor, now: dt.datetime) -> dict[str, Any]:
    one = Actor(email=actor.email, name=actor.name, roles=frozenset(
        (r, sc) for r, sc in actor.roles if r in (Role.committee_member, Role.org_department, Role.auditor)))
    rows = []
    for r in visible_cases(s, one, now=now, stage=Stage.committee_grading.value, limit=TODO_LIMIT) if one.roles else []:
        case = load_case(s, r["code"])
        st = case.state
        rows.append({
            **r, "score": st["grade"]["total"] if st.get("grade") else None,
            "computed": st["grade"]["grade_label"] if st.get("grade") else None,
            "adjusted": case.campaign.grading.scale.by_code(st["adjustment"]["grade"]).grade if st.get("adjustment") else None,
            "signatures": st["signatures"], "quorum": case.campaign.quorum_for(case.facts.committee_size),
            "signed": any(x["member"] == actor.email for x in st["signatures"]),
            "may_sign": service.may(actor, [Role.committee_member], case) and case.branch.secretary_email != actor.email,
            "may_grade": service.may(actor, [Role.committee_member, Role.org_department], case),
            "may_advance": service.may(actor, [Role.org_department, Role.committee_member], case),
            "explained": views.card(case, now)["grade_explained"],
            "parts": grading_parts(case), "sa": self_assessment_rows(case),  # what they sign (issue 16)
            "tally": st["records"].get(Stage.member_evaluation.value, {}).get("tally"),
            "adjust_reason": st["adjustment"]["reason"] if st.get("adjustment") else None,
        })
    names = person_names(s, {x["member"] for r in rows for x in r["signatures"]})
    return {"rows": rows, "names": names}


@router.get("/committee", response_class=HTMLResponse)
def committee_page(request: Request) -> Response:
    rt = runtime(request)
    now = rt.clock()
    with rt.tx() as s:
        actor = _page_actor(rt, s, request)
        ctx = _committee_ctx(s, actor, now)
    return render(request, "committee.html", ctx, actor=actor)
