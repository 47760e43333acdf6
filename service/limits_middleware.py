"""Request limits, checked before anything is parsed, and request-validation errors that never echo input.

* **Body size**: ``Content-Length`` over the limit is refused at once (413) without reading a byte; a body
  without a length (chunked) is counted while it streams and refused the moment it passes the limit.
  JSON and form posts: :data:`MAX_BODY`; multipart uploads (an import file): :data:`MAX_UPLOAD`; multipart
  posts to the routes that take attachments (:data:`ATTACHMENT_ROUTES`): :data:`MAX_ATTACHMENTS`.
* **JSON depth**: a JSON body nested deeper than :data:`MAX_JSON_DEPTH` is refused (422) before the
  application's parser sees it.
* :func:`validation_body`: FastAPI's 422 lists every error with its ``input`` (a 14 MB body came back as
  37 MB); here each error keeps only its location and type, gets a Chinese message made from its
  ``type`` and ``ctx`` (:func:`workflow.limits.describe`), and at most :data:`MAX_ERRORS` are listed.

``install(app)`` adds the middleware (one line in :mod:`service.app`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI

from workflow import limits as _limits
from workflow.errors import problems_from_pydantic
from workflow.limits import describe

MAX_BODY = 1024 * 1024                 # JSON and form posts: 1 MiB
MAX_UPLOAD = 32 * 1024 * 1024          # multipart uploads: an import file (workflow.limits.IMPORT_MAX_BYTES)
# Multipart posts to the routes that take attachments (issue 16: the branch page's forms, the attachments
# API): one form's files and its fields.
MAX_ATTACHMENTS = _limits.ATTACHMENT_MAX_PER_RECORD_BYTES + 1024 * 1024
ATTACHMENT_ROUTES = re.compile(r"/branches/[^/]+|/api/branches/[^/]+/attachments")
MAX_JSON_DEPTH = 32
MAX_ERRORS = 20

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class TooLarge(Exception):
    pass


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether the brackets of a JSON text nest deeper than ``limit`` (strings skipped; no parsing)."""
    depth = 0
    in_string = escaped = False
    for b in body:
        if in_string:
            if escaped:
                escaped = False
            elif b == 0x5C:  # backslash
                escaped = True
            elif b == 0x22:
                in_string = False
        elif b == 0x22:
            in_string = True
        elif b in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif b in (0x5D, 0x7D):
            depth -= 1
    return False


def _error_response(status: int, error: str, message: str, api: bool) -> tuple[int, bytes, bytes]:
    if api:
        return status, json.dumps({"error": error, "message": message}, ensure_ascii=False).encode(), \
            b"application/json"
    page = (f"<!doctype html><html lang=\"zh-CN\"><meta charset=\"utf-8\"><title>请求被拒绝</title>"
            f"<p>{message}</p><p><a href=\"/\">返回首页</a></p></html>")
    return status, page.encode(), b"text/html; charset=utf-8"


class BodyLimits:
    """ASGI middleware: body size (header and streamed count) and JSON depth, before the app parses."""

    def __init__(self, app: ASGIApp, *, max_body: int = MAX_BODY, max_upload: int = MAX_UPLOAD,
                 max_depth: int = MAX_JSON_DEPTH) -> None:
        self.app = app
        self.max_body = max_body
        self.max_upload = max_upload
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        ctype = headers.get("content-type", "").lower()
        multipart = ctype.startswith("multipart/form-data")
        files = multipart and ATTACHMENT_ROUTES.fullmatch(str(scope.get("path", ""))) is not None
        limit = MAX_ATTACHMENTS if files else self.max_upload if multipart else self.max_body
        api = str(scope.get("path", "")).startswith("/api")

        async def refuse(status: int, error: str, message: str) -> None:
            code, body, media = _error_response(status, error, message, api)
            await send({"type": "http.response.start", "status": code,
                        "headers": [(b"content-type", media), (b"content-length", str(len(body)).encode()),
                                    (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})

        too_large = f"请求体过大：最多 {limit // 1024} KB" + ("（导入文件最多 32 MB）" if limit == self.max_upload else "")
        if files:
            too_large = (f"上传的附件过大：一次合计最多 {_limits.ATTACHMENT_MAX_PER_RECORD_BYTES // (1024 * 1024)} MB，"
                         f"每个文件最多 {_limits.ATTACHMENT_MAX_BYTES // (1024 * 1024)} MB；未保存任何内容")
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                await refuse(400 if not api else 422, "InvalidInput", "请求头 Content-Length 无效")
                return
            if int(length) > limit:
                await refuse(413, "PayloadTooLarge", too_large)
                return
        # Read the whole body (bounded by the limit) so that its size and depth are known before parsing.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await refuse(413, "PayloadTooLarge", too_large)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        if "json" in ctype and json_depth_exceeds(body, self.max_depth):
            await refuse(422, "InvalidInput", f"请求数据嵌套层数过多（最多 {self.max_depth} 层）")
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def validation_body(errors: list[Any]) -> dict[str, Any]:
    """The 422 body for pydantic/FastAPI errors: each with its location and type, and ``problems`` (field path
    with items counted from 1, item number, key, Chinese message naming the field); never the input."""
    shown = errors[:MAX_ERRORS]
    problems = problems_from_pydantic(shown)
    detail = [{"loc": [str(p)[:64] for p in err.get("loc", ())][:12], "type": str(err.get("type", ""))[:64],
               "msg": describe(err)} for err in shown]
    more = f"；另有 {len(errors) - MAX_ERRORS} 处错误" if len(errors) > MAX_ERRORS else ""
    return {"error": "InvalidInput", "message": "请求数据无效：" + "；".join(p.message for p in problems) + more,
            "detail": detail, "problems": [p.to_dict() for p in problems]}


def install(app: FastAPI) -> None:
    """Add the body limits to ``app`` (outermost, so nothing reads a body before they are checked)."""
    app.add_middleware(BodyLimits)
