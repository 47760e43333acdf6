"""The web application: the JSON API under ``/api`` and the pages under ``/``, in one FastAPI app.

``create_app(settings)`` (or ``create_app(engine=...)`` in tests) builds it. Each request runs in one
transaction opened by its handler (:meth:`Runtime.tx`); errors of :mod:`workflow.errors` are translated
once here: a JSON body with the status code for the API, a readable Chinese page for the pages.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.auth import Signer, secret_key
from service.security import policy_of
from workflow.db import make_engine, session_factory
from workflow.errors import BranchflowError, NotFound
from workflow.resources import template_dir
from workflow.settings import Settings

Clock = Callable[[], dt.datetime]
TEMPLATES = template_dir("web")
STATIC = TEMPLATES / "static"


def system_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(kw_only=True)
class Runtime:
    """What every handler needs: sessions, the signer and the clock (read once per request)."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    signer: Signer
    clock: Clock

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """One transaction: committed when the block ends normally, rolled back when it raises."""
        with self.sessions() as s, s.begin():
            yield s


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def create_app(settings: Settings | None = None, *, engine: Engine | None = None, clock: Clock | None = None,
               secret: str | None = None) -> FastAPI:
    """The FastAPI app; ``clock`` fixes the time for demos and tests (default: the system clock)."""
    from service import api, limits_middleware, security, web

    settings = settings or Settings()
    engine = engine or make_engine(settings.url)
    rt = Runtime(settings=settings, engine=engine, sessions=session_factory(engine),
                 signer=Signer(secret or secret_key(settings), policy_of(settings)), clock=clock or system_clock)
    app = FastAPI(
        title="branchflow",
        summary="基层党组织分类定级、晋位升级工作流程 · HTTP API",
        description=(
            "先用 `POST /api/token`（邮箱、密码）取得令牌，再以 `Authorization: Bearer <令牌>` 调用其余接口。"
            "错误统一返回 JSON：`{error, message, ...}`，状态码 401 未登录、403 角色无权、404 找不到、"
            "409 环节条件未满足或版本冲突、422 数据无效。"
        ),
        version="1",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.runtime = rt
    app.include_router(api.router, prefix="/api")
    app.include_router(web.router)
    from service import ballot_pages  # online ballots (issue 15)
    app.include_router(ballot_pages.router)
    from service import api_bulk  # bulk actions over the API (issue 16)
    app.include_router(api_bulk.router)
    from service import api_audit  # checkpoints and proofs of the Merkle log (issue 11)
    app.include_router(api_audit.router)
    from service import audit_log_pages  # the audit page's Merkle-log part (issue 11)
    app.include_router(audit_log_pages.router)
    from service import api_attachments  # attachments: upload with a record, checked download (issue 16)
    from service.pages import attachments as attachment_pages
    app.include_router(api_attachments.router)
    app.include_router(attachment_pages.router)
    from service import rollup_pages  # the parent committee's roll-up: /rollup and /api/rollup (issue 12)
    app.include_router(rollup_pages.router)
    from service import grade_history_pages  # a branch's grades across years: page and API (issue 12)
    app.include_router(grade_history_pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    limits_middleware.install(app)  # body size and JSON depth before parsing (issue 14)
    from service import health  # /healthz, /readyz and the request log (issue 9)
    health.install(app)
    security.install(app)  # CSP and the other security headers on every response (issue 14)

    @app.exception_handler(BranchflowError)
    async def _domain_error(request: Request, exc: BranchflowError) -> Response:
        if request.url.path.startswith("/api"):
            return JSONResponse(exc.to_dict(), status_code=exc.http_status)
        return web.error_page(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> Response:
        body = limits_middleware.validation_body(list(exc.errors()))  # no input echoed; Chinese from type/ctx
        if request.url.path.startswith("/api"):
            return JSONResponse(body, status_code=422)
        return RedirectResponse("/", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if not request.url.path.startswith("/api"):
            if exc.status_code == 404:
                return web.error_page(request, NotFound("页面不存在"))
            if exc.status_code == 405:
                return RedirectResponse("/", status_code=303)  # e.g. GET /logout: nothing to show there
            return web.error_page(request, BranchflowError(f"请求无效（{exc.status_code}）"))
        if exc.status_code == 400:  # a body that is not JSON at all is bad data like any other
            return JSONResponse({"error": "InvalidInput", "message": "请求体不是有效的 JSON"}, status_code=422)
        return JSONResponse({"error": "HTTPError", "message": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    return app
