"""``POST /api/bulk/{action}`` (issue 16, point 4): the list page's bulk actions over the API — the same
loop (workflow.bulk: one transaction per branch, the reading rules first, then the use case) and the same
per-branch results. A branch outside the caller's scope answers exactly as an unknown code."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from service import bulk_run
from service.api import ERRORS, Token, _actor
from service.app import runtime
from workflow import bulk

router = APIRouter(responses=ERRORS)


class BulkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    branches: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=bulk.MAX_BRANCHES, description="党支部编码")


class BranchOutcome(BaseModel):
    code: str
    ok: bool
    name: str = Field(description="成功时为党支部名称；未成功时为空（范围外的支部与不存在的编码回答相同）")
    message: str
    error: str = Field(description="未成功时的错误类别（NotFound、Forbidden、TransitionRefused …）")
    unmet: list[str]


class BulkResponse(BaseModel):
    action: str
    label: str
    ok: int
    failed: int
    results: list[BranchOutcome]


@router.post("/api/bulk/{action}", response_model=BulkResponse, tags=["办理"],
             summary="批量办理：grade 计算得分和等级、publish 发布公示、advance 推进、remind 催办、supervise 督办令；逐个支部办理并返回结果")
def bulk_action(action: Annotated[str, Path(max_length=32)], body: BulkRequest, request: Request,
                token: Token) -> Any:
    rt = runtime(request)
    now = rt.clock()
    with rt.tx() as s:
        actor = _actor(rt, s, token)
    label, results = bulk_run.run(rt, actor, action, body.branches, now=now)
    ok = sum(r.ok for r in results)
    return BulkResponse(action=action, label=label, ok=ok, failed=len(results) - ok,
                        results=[BranchOutcome(**r.as_dict()) for r in results])
