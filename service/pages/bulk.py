"""Bulk actions from the list of branches (issue 16, point 4): ``POST /bulk`` with the ticked branches (or
"本页全选": every branch of the page), one of 计算得分和等级 / 发布公示 / 推进 / 催办 / 督办令; each branch in
its own transaction (workflow.bulk), and a page with one row per branch: 成功 or the reason in Chinese."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from notifications.manual import BULK_ACTIONS
from service import bulk_run
from service.app import runtime
from service.pages.common import _form, _page_actor, _safe_next, render
from workflow.errors import InvalidInput

router = APIRouter(include_in_schema=False)


@router.post("/bulk", response_class=HTMLResponse)
async def bulk_page(request: Request) -> Response:
    form = await _form(request)
    rt = runtime(request)
    now = rt.clock()
    action = str(form.get("action") or "")
    back = _safe_next(str(form.get("back") or "/branches"))
    if not back.startswith("/branches"):
        back = "/branches"
    key = "page_codes" if form.get("all_on_page") else "branch"
    codes = [v for v in form.getlist(key) if isinstance(v, str)]

    def run() -> Response:
        with rt.tx() as s:
            actor = _page_actor(rt, s, request)
        label = BULK_ACTIONS[action][0] if action in BULK_ACTIONS else ""
        try:
            label, results = bulk_run.run(rt, actor, action, codes, now=now)
        except InvalidInput as exc:
            return render(request, "bulk.html", {"label": label, "results": [], "back": back, "ok": 0,
                                                 "failed": 0, "problem": exc.message}, status=422, actor=actor)
        ok = sum(r.ok for r in results)
        return render(request, "bulk.html", {"label": label, "results": results, "back": back, "ok": ok,
                                             "failed": len(results) - ok, "problem": None}, actor=actor)

    return await run_in_threadpool(run)
