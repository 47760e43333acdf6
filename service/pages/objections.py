"""Objections (issue 16, point 5): the organisation department's queue and the objector's receipt page.

* ``/objections``: the open objections of the publicity-stage branches of the person's committee (all of
  them for auditors), oldest first, with their age, the branch, the text and — for the organisation
  department — the forms to resolve them (成立 / 不成立, through the branch page's ``resolve`` action and
  so :func:`workflow.service.resolve_objection`). Nobody else may open it. The objector is never shown.
* ``/objections/receipt``: whoever holds a receipt code (given once when the objection was lodged) sees
  the outcome — status and the resolution's reason, never who objected or who resolved it. Wrong codes
  count per client address and are refused for a while after too many (workflow.objections).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from service.app import runtime
from service.pages.common import _form, _optional_actor, _page_actor, _role_flags, render
from service.pages.login import client_address
from service.pages.nav import campaign_row, objection_scope
from states.base import Role
from workflow import objections
from workflow.errors import BranchflowError, Forbidden

router = APIRouter(include_in_schema=False)


@router.get("/objections", response_class=HTMLResponse)
def queue_page(request: Request) -> Response:
    rt = runtime(request)
    now = rt.clock()
    with rt.tx() as s:
        actor = _page_actor(rt, s, request)
        if not _role_flags(actor)["objections"]:
            raise Forbidden(f"{actor.name} 无权查看异议处理：异议处理限组织部和审计人员")
        rows = objections.queue(s, now=now, scope=objection_scope(s, actor),
                                campaign_row=campaign_row(s, actor))
    return render(request, "objections.html", {"rows": rows, "may_resolve": actor.has_role(Role.org_department)},
                  actor=actor)


@router.get("/objections/receipt", response_class=HTMLResponse)
def receipt_form(request: Request) -> Response:
    rt = runtime(request)
    with rt.tx() as s:
        actor = _optional_actor(rt, s, request)
    return render(request, "objection_receipt.html", {"outcome": None, "code": "", "problem": None}, actor=actor)


@router.post("/objections/receipt", response_class=HTMLResponse)
async def receipt_lookup(request: Request) -> Response:
    form = await _form(request)
    code = str(form.get("code") or "")[:64]
    rt = runtime(request)
    client = client_address(request)

    def run() -> Response:
        now = rt.clock()
        refused: BranchflowError | None = None
        with rt.tx() as s:
            actor = _optional_actor(rt, s, request)
            try:
                outcome = objections.follow(s, code, now=now, client=client)
            except BranchflowError as exc:
                refused = exc
        if refused is None:
            return render(request, "objection_receipt.html", {"outcome": outcome, "code": "", "problem": None},
                          actor=actor)
        if isinstance(refused, objections.UnknownReceipt):  # a guess: counted in a transaction of its own
            with rt.tx() as s:
                objections.note_failure(s, client, now=now)
        return render(request, "objection_receipt.html", {"outcome": None, "code": code, "problem": refused.message},
                      status=refused.http_status, actor=actor)

    return await run_in_threadpool(run)
