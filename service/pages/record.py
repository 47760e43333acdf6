"""What was filed, read-only and printable (issue 16, point 3): ``/branches/{code}/record`` shows every
stage's record of a branch to everyone who may see the branch — the survey's findings, the 18 self-
assessment scores with the items' names, the member evaluation's tally, the committee's grading (each part's
score × weight, the adjustment and its reason, the signatures with names), the publicity and its objections
(the objector only for the organisation department and auditors), the rectification plan with its evidence
and the self-analysis, and the inspections. Each stage has an anchor (``#survey`` … ``#acceptance``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.app import runtime
from service.auth import require_see
from service.pages.common import _page_actor, render
from states.base import Stage
from states.survey import FOCUS_POINTS
from workflow import views
from workflow.models import Person
from workflow.repository import LoadedCase, load_case
from workflow.service import Actor

router = APIRouter(include_in_schema=False)

OBJECTION_STATUS = {"open": "待处理", "upheld": "成立", "dismissed": "不成立"}
SOURCE_WORDS = {"online": "网上测评（不记名）", "typed": "纸质选票录入"}


def person_names(s: Session, emails: set[str]) -> dict[str, str]:
    """People's names by e-mail address (addresses nobody has are left out: the page never shows them)."""
    if not emails:
        return {}
    return {r.email: r.name for r in s.execute(select(Person.email, Person.name).where(Person.email.in_(emails)))}


def self_assessment_rows(case: LoadedCase) -> list[dict[str, Any]]:
    """The rubric's items with the score filed for each (``None``: not scored)."""
    rec = case.state["records"].get(Stage.self_assessment.value, {})
    scores = rec.get("scores", {})
    rubric = case.campaign.grading.rubric_for(case.facts.branch_type)
    return [{"id": it.id, "text": it.text, "category": it.category, "max": it.max, "score": scores.get(it.id)}
            for it in rubric.items]


def grading_parts(case: LoadedCase) -> list[dict[str, Any]]:
    """The committee's grading, part by part: score × weight = weighted."""
    g = case.state.get("grade") or {}
    return [dict(v) for v in g.get("sources", {}).values()]


def record_context(s: Session, actor: Actor, case: LoadedCase, now: dt.datetime) -> dict[str, Any]:
    st = case.state
    reveal = views.may_know_objectors(actor, case)
    recs = st["records"]
    emails = {x["member"] for x in st["signatures"]}
    if st.get("adjustment"):
        emails.add(st["adjustment"]["by"])
    if reveal:
        emails.update(o["by"] for o in st["objections"] if o.get("by"))
    names = person_names(s, emails)
    bands = {b.code: b.grade for b in case.campaign.grading.scale.bands}
    sa = self_assessment_rows(case)
    filled = [r["score"] for r in sa if r["score"] is not None]
    survey = recs.get(Stage.survey.value, {})
    inspections = [*st.get("inspections", []), *([st["inspection"]] if st.get("inspection") else [])]
    return {
        "case": case, "card": views.card(case, now, reveal_objectors=reveal), "reveal": reveal, "names": names,
        "survey": survey, "focus_points": FOCUS_POINTS,
        "sa": sa, "sa_rec": recs.get(Stage.self_assessment.value, {}), "sa_total": sum(filled) if filled else None,
        "me_rec": recs.get(Stage.member_evaluation.value, {}), "source_words": SOURCE_WORDS,
        "parts": grading_parts(case), "bands": bands,
        "objections": [{**o, "status_label": OBJECTION_STATUS.get(o["status"], "")} for o in st["objections"]],
        "rect": recs.get(Stage.rectification.value, {}), "inspections": inspections,
        "reached": {x.value: x.number <= case.stage.number for x in Stage},
    }


@router.get("/branches/{code}/record", response_class=HTMLResponse)
def record_page(code: str, request: Request) -> Response:
    rt = runtime(request)
    now = rt.clock()
    with rt.tx() as s:
        actor = _page_actor(rt, s, request)
        require_see(s, actor, code)
        case = load_case(s, code)
        ctx = record_context(s, actor, case, now)
    return render(request, "record.html", ctx, actor=actor)
