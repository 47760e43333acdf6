"""Pages of the online ballots (党员群众测评).

Public, no account (phone first): ``GET /v`` (type a code), ``GET /v/{code}`` (the link in the mail or
the QR code: the form), ``POST /v`` (cast). Staff (the general-branch secretary or the organisation
department): ``GET/POST /branches/{code}/ballot`` (open with a closing time, a roster file and/or a
number of on-site codes; more codes; remind those who have not voted; close), the QR sheet is the
response of issuing codes (printable, never stored), ``GET /ballots/{id}/export.{json,csv}``, and the
JSON ``GET /api/ballots/{id}`` (status and participation, never results while open).
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

import segno
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from markupsafe import Markup
from sqlalchemy.orm import Session

from notifications import ballots as ballot_mail
from service.app import runtime
from service.web import _form, _page_actor, redirect_with_notice, render
from workflow import ballots
from workflow.errors import BranchflowError, InvalidInput, NotFound
from workflow.repository import load_case
from workflow.service import Actor

from .api import TZ, Token, _actor

router = APIRouter(include_in_schema=False)
api_router = APIRouter()


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def qr_svg(data: str) -> Markup:
    """An inline SVG QR code (segno), sized for printing."""
    svg = segno.make(data, error="m").svg_inline(scale=3, border=2, dark="#000")
    return Markup(svg)  # segno's own SVG markup


def sheet_items(request: Request, issued: list[ballots.Issued]) -> list[dict[str, Any]]:
    return [{"code": it.shown, "link": ballot_mail.vote_link(_base_url(request), it.code),
             "qr": qr_svg(ballot_mail.vote_link(_base_url(request), it.code))} for it in issued]


# --- public voting --------------------------------------------------------------------------------

def _vote_page(request: Request, *, view: ballots.BallotView | None = None, code: str = "", error: str | None = None,
               values: dict[str, str] | None = None, status: int = 200) -> HTMLResponse:
    return render(request, "ballot_vote.html", {"view": view, "code": code, "vote_error": error,
                                                 "values": values or {}, "TZ": TZ}, status=status)


@router.get("/v", response_class=HTMLResponse)
def enter_code(request: Request) -> Response:
    typed = request.query_params.get("code")
    if typed is not None:
        norm = ballots.normalize(typed)
        return RedirectResponse("/v/" + (ballots.grouped(norm) if norm else quote(typed.strip() or "-", safe="")),
                                status_code=303)
    return _vote_page(request)


def _refused(request: Request, exc: BranchflowError, code: str) -> Response:
    rt = runtime(request)
    if isinstance(exc, ballots.UnknownCode):  # guessing; a used code or a closed ballot is not a guess
        with rt.tx() as s:
            ballots.note_failure(s, _client(request), now=rt.clock())
    return _vote_page(request, code=code, error=exc.message, status=exc.http_status)


@router.get("/v/{code}", response_class=HTMLResponse)
def ballot_form(code: str, request: Request) -> Response:
    rt = runtime(request)
    try:
        with rt.tx() as s:
            view = ballots.view_for_code(s, code, now=rt.clock(), client=_client(request))
    except BranchflowError as exc:
        return _refused(request, exc, code)
    return _vote_page(request, view=view, code=code)


@router.post("/v", response_class=HTMLResponse)
async def cast(request: Request) -> Response:
    rt = runtime(request)
    form = await _form(request)
    code = str(form.get("code") or "")
    values = {k: str(form.get(k) or "") for k in ("rating", "satisfied_with_members", "satisfied_with_secretary", "comment")}
    try:
        with rt.tx() as s:
            ballots.cast_vote(s, code, values, now=rt.clock(), client=_client(request))
    except InvalidInput as exc:  # answers missing: the form again, answers kept, code not spent
        with rt.tx() as s:
            try:
                view = ballots.view_for_code(s, code, now=rt.clock())
            except BranchflowError as exc2:
                return _refused(request, exc2, code)
        return _vote_page(request, view=view, code=code, error=exc.message, values=values, status=422)
    except BranchflowError as exc:
        return _refused(request, exc, code)
    return render(request, "ballot_done.html", {})


# --- staff ------------------------------------------------------------------------------------------

def _staff_ctx(s: Session, actor: Actor, code: str) -> dict[str, Any]:
    case = load_case(s, code)
    ballots._may_run(actor, case, "查看网上测评")
    b = ballots.latest_for(s, code)
    part = ballots.participation(s, b.id) if b else None
    rec = case.state["records"].get("member_evaluation", {})
    return {"case": case, "ballot": b, "part": part, "record": rec, "TZ": TZ, "staff_error": None,
            "default_close": (dt.datetime.now(TZ) + dt.timedelta(days=3)).strftime("%Y-%m-%dT18:00")}


@router.get("/branches/{code}/ballot", response_class=HTMLResponse)
def staff_page(code: str, request: Request) -> Response:
    rt = runtime(request)
    with rt.tx() as s:
        actor = _page_actor(rt, s, request)
        ctx = _staff_ctx(s, actor, code)
    return render(request, "ballot_staff.html", ctx, actor=actor)


def _closing_time(text: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput("截止时间格式无效，应为 年-月-日 时:分") from None
    return t.replace(tzinfo=TZ) if t.tzinfo is None else t


@router.post("/branches/{code}/ballot", response_class=HTMLResponse)
async def staff_act(code: str, request: Request) -> Response:
    rt = runtime(request)
    form = await _form(request)
    action = str(form.get("action") or "")
    now = rt.clock()
    sheet: list[dict[str, Any]] = []
    try:
        with rt.tx() as s:
            actor = _page_actor(rt, s, request)
            if action == "open":
                roster_file = form.get("roster")
                roster_text = ""
                if roster_file is not None and not isinstance(roster_file, str):
                    raw = await roster_file.read()
                    await roster_file.close()
                    try:
                        roster_text = raw.decode("utf-8-sig")
                    except UnicodeDecodeError:
                        raise InvalidInput("名单文件须为 UTF-8 编码的 CSV") from None
                voters = ballots.read_roster(roster_text) if roster_text.strip() else []
                count_s = str(form.get("count") or "0").strip() or "0"
                if not count_s.isdigit():
                    raise InvalidInput("现场测评码数量须为整数")
                count = int(count_s)
                if not voters and count == 0:
                    raise InvalidInput("请上传测评人名单，或填写现场测评码的数量")
                opened = ballots.open_ballot(s, code, actor, closes_at=_closing_time(str(form.get("closes_at") or "")), now=now)
                if voters:
                    issued = ballots.add_voters(s, opened.id, actor, voters, now=now)
                    ballot_mail.enqueue_invitations(s, opened.id, issued, base_url=_base_url(request), now=now)
                if count:
                    sheet = sheet_items(request, ballots.issue_codes(s, opened.id, actor, count, now=now))
                msg = f"网上测评已发起：邮件通知 {len(voters)} 人" + (f"，现场测评码 {count} 个" if count else "")
            elif action == "codes":
                b = ballots.latest_for(s, code)
                if b is None:
                    raise NotFound("该支部还没有网上测评")
                count_s = str(form.get("count") or "").strip()
                if not count_s.isdigit():
                    raise InvalidInput("测评码数量须为整数")
                sheet = sheet_items(request, ballots.issue_codes(s, b.id, actor, int(count_s), now=now))
                msg = f"已生成现场测评码 {len(sheet)} 个"
            elif action == "remind":
                b = ballots.latest_for(s, code)
                if b is None:
                    raise NotFound("该支部还没有网上测评")
                issued = ballots.reissue_for_reminder(s, b.id, actor, now=now)
                n = ballot_mail.enqueue_invitations(s, b.id, issued, base_url=_base_url(request), now=now, reminder=True)
                msg = f"已向尚未投票的 {n} 人发送提醒邮件（不显示是谁）"
            elif action == "close":
                b = ballots.latest_for(s, code)
                if b is None:
                    raise NotFound("该支部还没有网上测评")
                ballots.close_ballot(s, b.id, actor, now=now)
                ballot_mail.scrub(s)
                msg = "网上测评已关闭，测评结果已写入党员群众测评记录"
            else:
                raise InvalidInput(f"未知的操作 {action!r}")
            ctx = _staff_ctx(s, actor, code)
    except BranchflowError as exc:
        with rt.tx() as s:
            actor = _page_actor(rt, s, request)
            ctx = _staff_ctx(s, actor, code)
        return render(request, "ballot_staff.html", {**ctx, "staff_error": exc.message}, status=exc.http_status, actor=actor)
    if sheet:
        return render(request, "ballot_sheet.html", {**ctx, "sheet": sheet, "message": msg}, actor=actor)
    return redirect_with_notice(request, f"/branches/{quote(code, safe='')}/ballot", msg)  # notice kept server-side


@router.get("/ballots/{ballot_id}/export.{fmt}")
def export(ballot_id: int, fmt: str, request: Request) -> Response:
    rt = runtime(request)
    with rt.tx() as s:
        actor = _page_actor(rt, s, request)
        body = ballots.export_of(s, ballot_id, actor, fmt=fmt)
    media = "application/json" if fmt == "json" else "text/csv; charset=utf-8"
    return Response(("\ufeff" + body) if fmt == "csv" else body, media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="ballot-{ballot_id}.{fmt}"'})


@api_router.get("/api/ballots/{ballot_id}", tags=["网上测评"], summary="网上测评的状态与参与情况（进行中不显示结果）")
def ballot_status(ballot_id: int, request: Request, token: Token) -> Response:
    rt = runtime(request)
    with rt.tx() as s:
        actor = _actor(rt, s, token)
        b = ballots.get_ballot(s, ballot_id)
        case = ballots._case_of(s, b)
        ballots._may_run(actor, case, "查看网上测评")
        part = ballots.participation(s, b.id)
        body: dict[str, Any] = {"id": b.id, "branch": b.branch_code, "status": b.status,
                                "closes_at": b.closes_at.isoformat(), "eligible": part.eligible, "voted": part.voted,
                                "participation": part.rate}
        if b.status == ballots.CLOSED:
            body["commitment"] = b.commitment
    return JSONResponse(body)


router.include_router(api_router)
