"""A branch's grades across years (issue 12): the page ``/branches/{code}/grades`` and the API route
``GET /api/branches/{code}/grades``. Scoped exactly like the branch page (:func:`service.auth.require_see`:
an unknown branch and one outside the person's scope answer the same); both edges over
:func:`workflow.yearover.grade_history`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, Response

from service.api import ERRORS, Token, _actor
from service.app import runtime
from service.auth import require_see
from service.web import _page_actor, render
from workflow.yearover import grade_history

router = APIRouter(include_in_schema=False)
api_router = APIRouter(prefix="/api", tags=["党支部"], responses=ERRORS)
Code = Annotated[str, Path(max_length=64, description="党支部编码")]


@router.get("/branches/{code}/grades", response_class=HTMLResponse)
def grades_page(code: Code, request: Request) -> Response:
    rt = runtime(request)
    with rt.tx() as s:
        actor = _page_actor(rt, s, request)
        require_see(s, actor, code)
        data = grade_history(s, code)
    return render(request, "grades.html", {"h": data}, actor=actor)


@api_router.get("/branches/{code}/grades", summary="党支部历年等级：每年等级、上一年度等级、晋位/持平/降位与支部沿革")
def grades_api(code: Code, request: Request, token: Token) -> dict[str, Any]:
    rt = runtime(request)
    with rt.tx() as s:
        a = _actor(rt, s, token)
        require_see(s, a, code)
        h = grade_history(s, code)
    h.pop("committee_id", None)
    return h


router.include_router(api_router)
