"""The reports page and the report downloads with the page session."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

import reports
from service.app import runtime
from service.application import parse_time, report_scope
from service.pages.common import (
    _page_actor,
    _role_flags,
    render,
)
from service.pages.scope import _general_branch_choices
from workflow import tenancy
from workflow.errors import Forbidden, NotFound

router = APIRouter(include_in_schema=False)

# --- reports ----------------------------------------------------------------------------------------
@router.get("/reports", response_class=HTMLResponse)
def reports_page(request: Request) -> Response:
    rt = runtime(request)
    qp = request.query_params
    gb = (qp.get("general_branch") or "").strip()
    at_s = (qp.get("at") or "").strip()
    with rt.tx() as s:
        actor = _page_actor(rt, s, request)
        if not _role_flags(actor)["reports"]:
            raise Forbidden(f"{actor.name}（{actor.email}）无权下载报表：报表限组织部、党委委员、审计人员和党总支书记")
        choices, everything = _general_branch_choices(s, actor)
        if not gb and not everything and choices:
            gb = choices[0]["code"]
    params = {k: v for k, v in (("general_branch", gb), ("at", at_s)) if v}
    forms = []
    for name, label in reports.form_names().items():
        per_branch = reports.FORMS[name].per_branch
        p = params if per_branch else {k: v for k, v in params.items() if k != "general_branch"}
        query = ("?" + urlencode(p)) if p else ""
        forms.append({"name": name, "label": label, "per_branch": per_branch,
                      "links": [(fmt, f"/reports/{name}.{fmt}{query}") for fmt in reports.FORMATS]})
    return render(request, "reports.html", {"forms": forms, "choices": choices, "everything": everything,
                                            "general_branch": gb, "at": at_s}, actor=actor)


@router.get("/reports/{file}")
def report_file(file: str, request: Request) -> Response:
    """``/reports/summary.xlsx?general_branch=&at=``: the same file as the API, with the page session."""
    rt = runtime(request)
    now = rt.clock()
    name, _, fmt = file.rpartition(".")
    qp = request.query_params
    stack = ExitStack()
    try:
        s = stack.enter_context(rt.tx())
        actor = _page_actor(rt, s, request)
        form = reports.FORMS.get(name)
        if form is None or fmt not in reports.FORMATS:
            raise NotFound(f"没有报表 {file!r}")
        camp = tenancy.campaign_for(s, actor, (qp.get("campaign") or "").strip() or None,
                                    general_branch=(qp.get("general_branch") or "").strip() or None)
        gb = report_scope(s, actor, (qp.get("general_branch") or "").strip() or None, per_branch=form.per_branch,
                          campaign=camp.code)
        r = reports.render(s, name, fmt, general_branch=gb, at=parse_time((qp.get("at") or "").strip(), "截至日期"),
                           now=now, campaign=camp.code)
        first = next(r.body, b"")
    except BaseException:
        stack.__exit__(*sys.exc_info())
        raise

    def body() -> Iterator[bytes]:
        with stack:
            yield first
            yield from r.body

    return StreamingResponse(body(), media_type=r.media_type, headers={"Content-Disposition": r.content_disposition()})
