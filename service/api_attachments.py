"""The attachments API (issue 16): upload files with the record they belong to, and download them.

    POST /api/branches/{code}/attachments   multipart: files + target (item | self_analysis | inspection) and
                                            that record's fields; filed as that record, in one transaction
    GET  /api/attachments/{sha}             the file, checked against its hash (404 alike for unknown and
                                            out of scope; 500 文件已损坏或被篡改 when the bytes changed)
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from service import application
from service.app import runtime
from service.auth import NotAuthenticated
from service.files import FIELD, blob_store, download, read_uploads
from workflow import attachments, service
from workflow.errors import InvalidInput
from workflow.service import Actor

router = APIRouter()
bearer = HTTPBearer(auto_error=False, description="POST /api/token 取得的令牌")


def _token(token: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> HTTPAuthorizationCredentials:
    """The bearer token, or 401 before the form is judged (a request without one is answered as such)."""
    if token is None:
        raise NotAuthenticated("请先登录：POST /api/token 取得令牌，并在请求头中使用 Authorization: Bearer <令牌>")
    return token


Token = Annotated[HTTPAuthorizationCredentials, Depends(_token)]


def _api_actor(request: Request, s: Session, token: HTTPAuthorizationCredentials | None) -> Actor:
    if token is None:
        raise NotAuthenticated("请先登录：POST /api/token 取得令牌，并在请求头中使用 Authorization: Bearer <令牌>")
    return runtime(request).signer.read(s, token.credentials, api=True)


@router.get("/api/attachments/{sha}", tags=["附件"], summary="下载附件（校验哈希值）",
            responses={200: {"content": {"application/octet-stream": {}}, "description": "文件内容"},
                       401: {"description": "未登录"}, 404: {"description": "附件不存在或无权访问"},
                       500: {"description": "文件已损坏或被篡改"}})
def api_download(sha: str, request: Request, token: Token) -> Response:
    rt = runtime(request)
    store = blob_store(request)
    with rt.tx() as s:
        return download(s, _api_actor(request, s, token), sha, store)


# --- the API's upload ---------------------------------------------------------------------------------

class Uploaded(BaseModel):
    """The case after the record was filed with its files."""

    branch: str
    stage: str
    stage_label: str
    version: int
    message: str
    attachments: list[dict[str, Any]]


Target = Literal["item", "self_analysis", "inspection"]


@router.post("/api/branches/{code}/attachments", response_model=Uploaded, tags=["附件"],
             summary="随记录上传附件（整改事项佐证、自我剖析、检查验收）",
             responses={401: {"description": "未登录"}, 403: {"description": "角色无权"},
                        404: {"description": "党支部不存在或无权访问"}, 409: {"description": "环节不符"},
                        413: {"description": "文件过大"}, 422: {"description": "文件类型或数据无效"}})
async def api_upload(code: str, request: Request, token: Token,
                     files: Annotated[list[UploadFile], File(description="一个或多个文件")],
                     target: Annotated[Target, Form(description="item：整改事项完成佐证；self_analysis：自我剖析；"
                                                             "inspection：检查验收")],
                     item: Annotated[int | None, Form(ge=1, le=1000)] = None,
                     evidence: Annotated[str | None, Form(max_length=4000)] = None,
                     self_analysis: Annotated[str | None, Form(max_length=8000)] = None,
                     data: Annotated[str | None, Form(max_length=16000, description="检查验收的 JSON 数据")] = None,
                     ) -> Uploaded:
    form = FormData([(FIELD, f) for f in files])
    rt = runtime(request)
    now = rt.clock()
    store = blob_store(request)

    def run() -> Uploaded:
        with rt.tx() as s:
            actor = _api_actor(request, s, token)
            application.guard(s, actor, code)  # scope first: out of scope answers as unknown
            ups = read_uploads(form)
            if not ups:
                raise InvalidInput("请至少选择一个文件")
            if target == "item":
                if item is None or not evidence:
                    raise InvalidInput("登记整改事项完成须给出事项编号（item）和完成情况（evidence）")
                case = service.complete_item(s, code, actor, item, evidence, now=now, files=ups)
                message = f"第 {item} 项已登记完成，附件 {len(ups)} 个"
            elif target == "self_analysis":
                rec = {"self_analysis": self_analysis} if self_analysis else {}
                case = service.record(s, code, actor, rec, now=now, files=ups)
                message = f"自我剖析材料已保存，附件 {len(ups)} 个"
            else:
                try:
                    body = json.loads(data or "{}")
                except ValueError:
                    raise InvalidInput("检查验收数据（data）不是有效的 JSON") from None
                if not isinstance(body, dict):
                    raise InvalidInput("检查验收数据（data）须为 JSON 对象")
                case = service.inspect(s, code, actor, body, now=now, files=ups)
                message = f"检查验收已记录，附件 {len(ups)} 个"
            attachments.store_all(store, ups)
            return Uploaded(branch=case.branch.code, stage=case.stage.value, stage_label=case.stage.label,
                            version=case.version, message=message, attachments=attachments.refs_json(ups))

    return await run_in_threadpool(run)
