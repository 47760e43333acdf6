"""The public publicity page with the objection form."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from service.app import runtime
from service.pages.common import (
    TODO_LIMIT,
    _optional_actor,
    render,
)
from states.base import Stage
from workflow import tenancy, views
from workflow.repository import load_case

router = APIRouter(include_in_schema=False)

# --- public publicity page --------------------------------------------------------------------------

def _publicity_ctx(s: Session, now: dt.datetime) -> dict[str, Any]:
    rows = []
    published = [r for code in tenancy.latest_campaigns(s)  # every committee's own campaign (issue 12)
                 for r in views.list_cases(s, now=now, campaign=code, stage=Stage.publicity.value, limit=TODO_LIMIT)]
    for r in published[:TODO_LIMIT]:
        case = load_case(s, r["code"])
        pub = case.state.get("publicity")
        if not pub:
            continue
        today = now.astimezone(case.campaign.tz).date()
        rows.append({**r, "publicity": pub, "open": today <= dt.date.fromisoformat(pub["end"]),
                     "final_grade_label": views.card(case, now)["final_grade_label"],
                     "objections": len(case.state["objections"])})
    return {"rows": rows, "err_code": None, "text": ""}


@router.get("/publicity", response_class=HTMLResponse)
def publicity_page(request: Request) -> Response:
    rt = runtime(request)
    now = rt.clock()
    with rt.tx() as s:
        actor = _optional_actor(rt, s, request)
        ctx = _publicity_ctx(s, now)
    return render(request, "publicity.html", ctx, actor=actor)
