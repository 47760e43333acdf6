"""What every page shares: templates, rendering, notices after a redirect, the page actor, CSRF-checked
forms and the form-field readers (checked against workflow.limits)."""

from __future__ import annotations

import math
import secrets
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from service import sessions as web_sessions
from service.app import TEMPLATES, Runtime, runtime
from service.application import TZ
from service.auth import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    NotAuthenticated,
    csrf_binding,
)
from service.pages.fields import form_label
from service.security import cookie_secure
from states.base import ROLE_LABELS, Role
from workflow import limits
from workflow.errors import BranchflowError, Forbidden, InvalidInput
from workflow.service import Actor

router = APIRouter(include_in_schema=False)
_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates = Jinja2Templates(env=_env)

TODO_LIMIT = 200

# --- plumbing ---------------------------------------------------------------------------------------

def _csrf_nonce(request: Request) -> tuple[str, bool]:
    nonce = request.cookies.get(CSRF_COOKIE)
    if nonce and 16 <= len(nonce) <= 128:
        return nonce, False
    return secrets.token_urlsafe(24), True


# ``?ok=KEY`` shows a site notice only from this fixed set; ``done`` shows the result of the person's last
# form, kept in their server-side session (never text from the URL).
NOTICES = {"logged_out": "您已退出登录", "done": "",
           "kept": "登录已失效，您刚才填写的内容已保留：重新登录后会回到原页面并填好（不会自动提交）。"}


def _notice(request: Request) -> str | None:
    key = request.query_params.get("ok")
    if key == "done":
        return getattr(request.state, "bf_notice", None)
    return NOTICES.get(key or "") or None


def render(request: Request, name: str, ctx: dict[str, Any], status: int = 200,
           actor: Actor | None = None) -> HTMLResponse:
    rt = runtime(request)
    nonce, new = _csrf_nonce(request)
    binding = csrf_binding(request.cookies.get(SESSION_COOKIE), nonce)  # as _form will compute it
    base = {"request": request, "me": actor, "csrf": rt.signer.csrf_for(binding or ""), "roles": _role_flags(actor),
            "now_local": rt.clock().astimezone(TZ), "error": None, "notice": _notice(request),
            "ROLE_LABELS": ROLE_LABELS, "nav": _nav(request, actor)}
    resp = templates.TemplateResponse(request, name, {**base, **ctx}, status_code=status)
    if new:
        resp.set_cookie(CSRF_COOKIE, nonce, httponly=True, samesite="lax", path="/", secure=cookie_secure(request))
    return resp


def _nav(request: Request, actor: Actor | None) -> dict[str, int]:
    """The navigation's counts (service/pages/nav.py), read in a transaction of their own."""
    from service.pages import nav

    if actor is None:
        return dict(nav.ZERO)
    rt = runtime(request)
    try:
        with rt.tx() as s:
            return nav.counts(s, actor, rt.clock())
    except BranchflowError:
        return dict(nav.ZERO)


def redirect_with_notice(request: Request, target: str, text: str) -> Response:
    """Redirect after a successful form; the message waits in the person's session for the next page."""
    rt = runtime(request)
    raw = request.cookies.get(SESSION_COOKIE) or ""
    with rt.tx() as s:
        row = web_sessions._live(s, raw)
        if row is not None and row.ended_at is None:
            web_sessions.set_notice(row, text)
    base, _, frag = target.partition("#")
    sep = "&" if "?" in base else "?"
    return RedirectResponse(f"{base}{sep}ok=done" + (f"#{frag}" if frag else ""), status_code=303)


def _role_flags(actor: Actor | None) -> dict[str, bool]:
    kinds = {r for r, _ in actor.roles} if actor else set()
    return {
        "reports": bool(kinds & {Role.auditor, Role.committee_member, Role.org_department,
                                 Role.general_branch_secretary}),
        "committee": bool(kinds & {Role.committee_member, Role.org_department}),
        "audit": bool(kinds & {Role.auditor, Role.committee_member, Role.org_department}),
        "auditor_only": kinds == {Role.auditor},
        "objections": bool(kinds & {Role.org_department, Role.auditor}),  # the objection queue (issue 16)
        "bulk": bool(kinds & {Role.org_department, Role.committee_member, Role.general_branch_secretary}),
        "rollup": bool(kinds & {Role.org_department, Role.auditor}),  # the sub-committees' roll-up (issue 12)
    }


def error_page(request: Request, exc: BranchflowError) -> Response:
    if isinstance(exc, NotAuthenticated):
        email = None
        with runtime(request).tx() as s:
            if exc.ended is not None:
                web_sessions.settle(s, exc)
            if request.method == "POST":  # a form sent after its session ended: keep what was typed
                email = web_sessions.email_of(s, request.cookies.get(SESSION_COOKIE) or "")
        back = RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
        if email is not None:
            from service.pages import kept

            form = getattr(request, "_form", None)  # Starlette keeps the parsed form on the request
            if kept.keep(back, request, email, request.url.path, form if isinstance(form, FormData) else None):
                back.headers["location"] += "&ok=kept"
        return back
    return render(request, "error.html", {"title": "无法完成", "message": exc.message}, status=exc.http_status)


def _page_actor(rt: Runtime, s: Session, request: Request) -> Actor:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise NotAuthenticated("请先登录")
    actor, row = web_sessions.read_session(s, token, now=rt.signer.wall(), policy=rt.signer.policy)
    if request.query_params.get("ok") == "done" and row.notice is not None:
        request.state.bf_notice = web_sessions.pop_notice(s, row)
    return actor


def _optional_actor(rt: Runtime, s: Session, request: Request) -> Actor | None:
    try:
        return _page_actor(rt, s, request)
    except NotAuthenticated:
        return None


async def _form(request: Request) -> FormData:
    form = await request.form()
    binding = csrf_binding(request.cookies.get(SESSION_COOKIE), request.cookies.get(CSRF_COOKIE))
    token = form.get("csrf")
    if not runtime(request).signer.csrf_ok(binding, token if isinstance(token, str) else None):
        raise Forbidden("表单已失效（CSRF 校验失败）：请刷新页面后重新提交")
    return form


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def _reminder_days(campaign: Any) -> int:
    """How many days before a deadline the campaign starts reminding: the page flags the same window."""
    return int(max(campaign.reminders.offsets_days or [7]))


# --- form fields ----------------------------------------------------------------------------------

def _f(form: FormData, name: str) -> str:
    """A form field's text, checked against workflow.limits (no control characters, at most 4000 characters)."""
    v = form.get(name)
    if not isinstance(v, str):
        return ""
    limits.require(limits.check_text(v, f"表单字段“{FIELD_LABELS.get(name) or form_label(name)}”"), name)
    return v.strip()


FIELD_LABELS = {"text": "异议内容", "reason": "理由", "evidence": "佐证", "summary": "验收情况", "grade": "等级",
                "deadline": "截止日期", "start": "公示开始日期", "version": "版本"}


def _number(form: FormData, name: str, what: str, *, integer: bool = False) -> float | int | None:
    raw = _f(form, name)
    if raw == "":
        return None
    if integer:
        n, problem = limits.parse_int(raw, what, "int4")
        if problem:
            raise InvalidInput.about(name, f"{what}“{raw[:40]}”不是合理的整数", key="int_parsing")
        return n
    try:
        x = float(raw)
    except ValueError:
        raise InvalidInput.about(name, f"{what}“{raw[:40]}”不是数字", key="float_parsing") from None
    if not math.isfinite(x) or abs(x) > 1e9:
        raise InvalidInput.about(name, f"{what}“{raw[:40]}”不是合理的数字", key="finite_number")
    return x
