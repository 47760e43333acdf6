"""The parent committee's roll-up (issue 12): the page ``/rollup`` and the API route ``GET /api/rollup``.
Read only, for the organisation department and auditors of a committee (their subtree), both edges over
:func:`workflow.rollup.rollup`."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from service.api import ERRORS, Token, _actor
from service.app import runtime
from service.web import _page_actor, render
from workflow import rollup as rollups
from workflow.errors import BranchflowError, InvalidInput

FORMATS = ("xlsx", "csv")  # the links on the page (the routes also give html, printable)

router = APIRouter(include_in_schema=False)
api_router = APIRouter(prefix="/api", tags=["汇总"], responses=ERRORS)


def _year(raw: str | None) -> int | None:
    raw = (raw or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 2000 <= int(raw) <= 2100:
        raise InvalidInput("年份须为 2000 至 2100 之间的整数")
    return int(raw)


@router.get("/rollup", response_class=HTMLResponse)
def rollup_page(request: Request) -> Response:
    rt = runtime(request)
    qp = request.query_params
    with rt.tx() as s:
        actor = _page_actor(rt, s, request)
        error = None
        status = 200
        data: dict[str, Any] | None = None
        try:
            data = rollups.rollup(s, actor, now=rt.clock(), committee=(qp.get("committee") or "").strip() or None,
                                  year=_year(qp.get("year")))
        except BranchflowError as exc:
            error = {"message": exc.message, "unmet": [], "lines": [], "action": "rollup"}
            status = exc.http_status
    return render(request, "rollup.html", {"data": data, "error": error, "downloads": _links(data)},
                  status=status, actor=actor)


def _links(data: dict[str, Any] | None) -> dict[str, Any]:
    """The download links of the roll-up shown: the one-row-per-committee form and each consolidated
    per-branch form, for the same committee and year as the page."""
    from reports.consolidated_forms import consolidated_form_names

    if data is None:
        return {"summary": [], "forms": []}
    params = {k: v for k, v in (("committee", data["committee"]), ("year", data["year"])) if v}
    query = ("?" + urlencode(params)) if params else ""
    return {"summary": [(fmt.upper(), f"/rollup/summary.{fmt}{query}") for fmt in FORMATS],
            "forms": [{"name": name, "label": label,
                       "links": [(fmt.upper(), f"/rollup/forms/{name}.{fmt}{query}") for fmt in FORMATS]}
                      for name, label in consolidated_form_names().items()]}


@api_router.get("/rollup", summary="上级党委汇总：各下级党委的等级分布、环节进度、逾期与后进转化（只读）")
def rollup_api(request: Request, token: Token,
               committee: Annotated[str | None, Query(max_length=64, description="汇总哪个党委的下级（默认本人的党委）")] = None,
               year: Annotated[int | None, Query(ge=2000, le=2100, description="年份（默认最近有活动的一年）")] = None,
               ) -> dict[str, Any]:
    rt = runtime(request)
    with rt.tx() as s:
        a = _actor(rt, s, token)
        return rollups.rollup(s, a, now=rt.clock(), committee=committee, year=year)


def _download(rt: Any, s: Any, actor: Any, fmt: str, committee: str | None, year: int | None) -> Response:
    from reports.consolidated import render_consolidated

    r = render_consolidated(s, actor, fmt, now=rt.clock(), committee=committee, year=year)
    return Response(r.read(), media_type=r.media_type, headers={"Content-Disposition": r.content_disposition()})


@router.get("/rollup/summary.{fmt}")
def rollup_summary_page(fmt: str, request: Request) -> Response:
    """The consolidated 分类定级汇总表 (XLSX or CSV) of the roll-up shown on /rollup."""
    rt = runtime(request)
    qp = request.query_params
    with rt.tx() as s:
        actor = _page_actor(rt, s, request)
        return _download(rt, s, actor, fmt, (qp.get("committee") or "").strip() or None, _year(qp.get("year")))


@api_router.get("/rollup/summary", summary="各党委汇总的分类定级汇总表（xlsx / csv）", response_class=Response)
def rollup_summary_api(request: Request, token: Token,
                       format: Annotated[str, Query(pattern="^(xlsx|csv)$", description="xlsx 或 csv")] = "xlsx",
                       committee: Annotated[str | None, Query(max_length=64)] = None,
                       year: Annotated[int | None, Query(ge=2000, le=2100)] = None) -> Response:
    rt = runtime(request)
    with rt.tx() as s:
        return _download(rt, s, _actor(rt, s, token), format, committee, year)


def _form_download(rt: Any, s: Any, actor: Any, name: str, fmt: str, committee: str | None,
                   year: int | None, stack: ExitStack) -> StreamingResponse:
    """A consolidated per-branch form, streamed: errors (refused, hidden, bad name) surface before the first
    byte; the session stays open until the last one."""
    from reports.consolidated_forms import render_consolidated_form

    r = render_consolidated_form(s, actor, name, fmt, now=rt.clock(), committee=committee, year=year)
    first = next(r.body, b"")

    def body() -> Iterator[bytes]:
        with stack:
            yield first
            yield from r.body

    return StreamingResponse(body(), media_type=r.media_type, headers={"Content-Disposition": r.content_disposition()})


@router.get("/rollup/forms/{file}")
def rollup_form_page(file: str, request: Request) -> Response:
    """``/rollup/forms/summary.xlsx?committee=&year=``: a per-branch form over every committee of the subtree
    (the links on /rollup); a refusal is the roll-up page with the reason and the way back."""
    rt = runtime(request)
    qp = request.query_params
    name, _, fmt = file.rpartition(".")
    stack = ExitStack()
    try:
        s = stack.enter_context(rt.tx())
        actor = _page_actor(rt, s, request)
    except BaseException:
        stack.__exit__(*sys.exc_info())
        raise
    try:
        return _form_download(rt, s, actor, name, fmt, (qp.get("committee") or "").strip() or None,
                              _year(qp.get("year")), stack)
    except BranchflowError as exc:
        stack.__exit__(*sys.exc_info())
        error = {"message": exc.message, "unmet": [], "lines": [], "action": "rollup"}
        return render(request, "rollup.html", {"data": None, "error": error, "downloads": _links(None)},
                      status=exc.http_status, actor=actor)
    except BaseException:
        stack.__exit__(*sys.exc_info())
        raise


FILE_TYPES = {
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {"schema": {"type": "string", "format": "binary"}},
    "text/csv": {"schema": {"type": "string"}},
    "text/html": {"schema": {"type": "string"}},
}


@api_router.get("/rollup/forms/{name}", summary="各党委逐支部汇总的报表（xlsx / csv / html；每行注明所属党委）",
                response_class=StreamingResponse, responses={200: {"description": "报表文件", "content": FILE_TYPES}})
def rollup_form_api(request: Request, token: Token,
                    name: Annotated[str, Path(max_length=64, description="summary、overview、rectification、"
                                                                         "acceptance、movement 或 tasks")],
                    format: Annotated[str, Query(pattern="^(xlsx|csv|html)$", description="xlsx、csv 或 html")] = "xlsx",
                    committee: Annotated[str | None, Query(max_length=64)] = None,
                    year: Annotated[int | None, Query(ge=2000, le=2100)] = None) -> StreamingResponse:
    rt = runtime(request)
    stack = ExitStack()
    try:
        s = stack.enter_context(rt.tx())
        return _form_download(rt, s, _actor(rt, s, token), name, format, committee, year, stack)
    except BaseException:
        stack.__exit__(*sys.exc_info())
        raise


router.include_router(api_router)
