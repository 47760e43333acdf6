"""Log-in and log-out pages."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from service import sessions as web_sessions
from service.app import runtime
from service.auth import (
    SESSION_COOKIE,
    NotAuthenticated,
    Throttled,
    log_in,
)
from service.pages.common import (
    _form,
    _safe_next,
    render,
)
from service.security import cookie_secure
from workflow.errors import BranchflowError

router = APIRouter(include_in_schema=False)

# --- log-in -----------------------------------------------------------------------------------------

def client_address(request: Request) -> str:
    """The client's address as uvicorn reports it (behind a trusted proxy: the forwarded one)."""
    return request.client.host if request.client else ""


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    return render(request, "login.html", {"next": _safe_next(request.query_params.get("next")), "email": ""})


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    email = str(form.get("email", "")).strip()
    password = str(form.get("password", ""))
    nxt = _safe_next(str(form.get("next", "/")))
    rt = runtime(request)
    ip, agent = client_address(request), request.headers.get("user-agent", "")

    def check() -> tuple[str | None, BranchflowError | None]:
        with rt.tx() as s:  # committed also when refused: the record of a failure must stay
            try:
                person = log_in(s, email, password, ip=ip, via="page", now=rt.signer.wall())
            except (Throttled, NotAuthenticated) as exc:
                return None, exc
            return rt.signer.issue(s, person, ip=ip, user_agent=agent), None

    if not (email and password):
        return render(request, "login.html", {"next": nxt, "email": email, "error": "请填写邮箱和密码"}, status=401)
    token, refused = await run_in_threadpool(check)
    if token is None:
        status = refused.http_status if refused else 401
        resp = render(request, "login.html", {"next": nxt, "email": email,
                                              "error": refused.message if refused else "邮箱或密码错误"}, status=status)
        if isinstance(refused, Throttled):
            resp.headers["Retry-After"] = str(refused.retry_after)
        return resp
    ok = RedirectResponse(nxt, status_code=303)
    ok.set_cookie(SESSION_COOKIE, token, max_age=int(rt.signer.policy.absolute.total_seconds()), httponly=True,
                  samesite="lax", path="/", secure=cookie_secure(request))
    return ok


@router.post("/logout")
async def logout(request: Request) -> Response:
    await _form(request)
    rt = runtime(request)
    raw = request.cookies.get(SESSION_COOKIE)
    if raw:
        def end() -> None:
            with rt.tx() as s:
                web_sessions.end_session(s, raw, now=rt.signer.wall())

        await run_in_threadpool(end)
    resp = RedirectResponse("/login?ok=logged_out", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp
