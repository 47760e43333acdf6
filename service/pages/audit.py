"""The audit page: a branch's history replayed at a date, and the hash-chain check."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from service.app import runtime
from service.application import TZ, parse_time
from service.auth import (
    require_see,
    sees_everything,
)
from service.pages.common import (
    _page_actor,
    render,
)
from states.base import Stage
from workflow import audit, views
from workflow.errors import BranchflowError, Forbidden

router = APIRouter(include_in_schema=False)

# --- audit ------------------------------------------------------------------------------------------

@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request) -> Response:
    rt = runtime(request)
    qp = request.query_params
    code = (qp.get("branch") or "").strip()
    at_s = (qp.get("at") or "").strip()
    ctx: dict[str, Any] = {"branch": code, "at": at_s, "history": None, "report": None, "events": []}
    with rt.tx() as s:
        actor = _page_actor(rt, s, request)
        error = None
        try:
            if code:
                require_see(s, actor, code)
                at = parse_time(at_s, "重放日期")
                h = views.history(s, code, at=at, actor=actor)
                ctx["history"] = h
                ctx["events"] = [{**e, "local": audit.parse_iso(e["at"]).astimezone(TZ).strftime("%Y-%m-%d %H:%M"),
                                  "stage_label": Stage(e["stage"]).label} for e in h["events"]]
            if qp.get("verify"):
                if code:
                    report = audit.verify(s, branch_code=code)
                elif sees_everything(s, actor):
                    report = audit.verify(s)
                else:
                    raise Forbidden("校验全部党支部须为审计人员或党委层面人员；请填写本人负责的党支部编码")
                ctx["report"] = report
        except BranchflowError as exc:
            error = {"message": exc.message, "unmet": [], "lines": [], "action": "audit"}
            status = exc.http_status
        else:
            status = 200
    return render(request, "audit.html", {**ctx, "error": error}, status=status, actor=actor)
