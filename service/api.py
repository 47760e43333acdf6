"""The JSON API (mounted under ``/api``). Every handler: one transaction, the actor from the bearer token,
the reading rules of :mod:`service.auth`, then one use case of :mod:`workflow.service` or one read model
of :mod:`workflow.views`. Errors are translated once, in :mod:`service.app`.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.app import Runtime, runtime
from service.auth import (
    TOKEN_MAX_AGE,
    NotAuthenticated,
    Where,
    authenticate,
    may_see,
    require_see,
    sees_everything,
    visible_cases,
)
from states.base import ROLE_LABELS, Role, Stage
from workflow import audit, service, views
from workflow.errors import Forbidden, InvalidInput
from workflow.models import Branch, Committee, GeneralBranch
from workflow.repository import LoadedCase
from workflow.service import Actor

TZ = ZoneInfo("Asia/Shanghai")


class ErrorBody(BaseModel):
    """Every error: the error's class name and a Chinese message; refused moves also list what is unmet."""

    model_config = ConfigDict(extra="allow")
    error: str
    message: str


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "未登录或令牌无效"},
    403: {"model": ErrorBody, "description": "角色无权执行该操作或查看该党支部"},
    404: {"model": ErrorBody, "description": "找不到党支部、活动或人员"},
    409: {"model": ErrorBody, "description": "环节条件未满足、流转不允许或版本冲突"},
    422: {"model": ErrorBody, "description": "数据无效"},
}

router = APIRouter(responses=ERRORS)
bearer = HTTPBearer(auto_error=False, description="POST /api/token 取得的令牌")
Token = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
CampaignQ = Annotated[str | None, Query(description="活动编码（默认最新的活动）", max_length=64)]
NowQ = Annotated[str | None, Query(description="按此时间计算截止与逾期（ISO；默认当前时间）", max_length=40)]


def parse_time(value: str | None, what: str = "时间") -> dt.datetime | None:
    """ISO date or datetime; naive values are Beijing time; a bare date means the end of that day."""
    if value is None or value == "":
        return None
    try:
        if len(value) == 10:
            t = dt.datetime.combine(dt.date.fromisoformat(value), dt.time(23, 59, 59), tzinfo=TZ)
        else:
            t = dt.datetime.fromisoformat(value)
            t = t if t.tzinfo else t.replace(tzinfo=TZ)
        return t.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        raise InvalidInput(f"{what} {value!r} 无效（示例：2026-04-25 或 2026-04-25T09:00+08:00）") from None


def _actor(rt: Runtime, s: Session, token: HTTPAuthorizationCredentials | None) -> Actor:
    if token is None:
        raise NotAuthenticated("请先登录：POST /api/token 取得令牌，并在请求头中使用 Authorization: Bearer <令牌>")
    return rt.signer.read(s, token.credentials, api=True)


# --- log-in -----------------------------------------------------------------------------------------

class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=200)


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


@router.post("/token", response_model=TokenResponse, tags=["登录"], summary="用邮箱和密码换取令牌")
def token(body: TokenRequest, request: Request) -> TokenResponse:
    rt = runtime(request)
    with rt.tx() as s:
        person = authenticate(s, body.email, body.password)
        if person is None:
            raise NotAuthenticated("邮箱或密码错误")
        return TokenResponse(access_token=rt.signer.issue(person, api=True), expires_in=TOKEN_MAX_AGE)


class Me(BaseModel):
    email: str
    name: str
    roles: list[dict[str, str]]


@router.get("/me", response_model=Me, tags=["登录"], summary="当前用户及其角色")
def me(request: Request, token: Token) -> Me:
    rt = runtime(request)
    with rt.tx() as s:
        a = _actor(rt, s, token)
    return Me(email=a.email, name=a.name, roles=[{"role": r.value, "label": ROLE_LABELS[r], "scope": sc}
                                                  for r, sc in sorted(a.roles)])


# --- organisation and campaigns ---------------------------------------------------------------------

@router.get("/organisations", tags=["组织"], summary="党委、党总支及支部数（限本人可见范围）")
def organisations(request: Request, token: Token) -> list[dict[str, Any]]:
    rt = runtime(request)
    with rt.tx() as s:
        a = _actor(rt, s, token)
        rows = s.execute(
            select(Committee.code, Committee.name, GeneralBranch.code.label("gb"), GeneralBranch.name.label("gb_name"),
                   func.count(Branch.id).label("n"))
            .join(Branch, Branch.committee_id == Committee.id)
            .outerjoin(GeneralBranch, GeneralBranch.id == Branch.general_branch_id)
            .group_by(Committee.code, Committee.name, GeneralBranch.code, GeneralBranch.name)
            .order_by(Committee.code, GeneralBranch.code)
        ).all()
        everything = sees_everything(s, a)
        own = {sc for r, sc in a.roles if r is Role.branch_secretary}
        out: dict[str, dict[str, Any]] = {}
        for r in rows:
            where = Where(branch="", general_branch=r.gb, committee=r.code)
            if not (everything or may_see(a, where) or _owns_branch_in(s, own, r.gb)):
                continue
            c = out.setdefault(r.code, {"code": r.code, "name": r.name, "general_branches": []})
            c["general_branches"].append({"code": r.gb, "name": r.gb_name, "branches": r.n})
    return list(out.values())


def _owns_branch_in(s: Session, own: set[str], gb: str | None) -> bool:
    if not own or gb is None:
        return False
    return bool(s.scalar(select(func.count(Branch.id)).join(GeneralBranch, GeneralBranch.id == Branch.general_branch_id)
                         .where(GeneralBranch.code == gb, Branch.code.in_(own))))


@router.get("/campaigns", tags=["组织"], summary="活动列表")
def campaigns(request: Request, token: Token) -> list[dict[str, Any]]:
    rt = runtime(request)
    with rt.tx() as s:
        _actor(rt, s, token)
        return views.campaigns(s)


# --- branches ---------------------------------------------------------------------------------------

@router.get("/branches", tags=["党支部"], summary="党支部列表（可按环节、党总支、等级、逾期筛选）")
def branches(
    request: Request, token: Token, campaign: CampaignQ = None,
    stage: Annotated[Stage | None, Query(description="环节")] = None,
    general_branch: Annotated[str | None, Query(max_length=64, description="党总支编码")] = None,
    grade: Annotated[str | None, Query(max_length=32, description="等级代码")] = None,
    overdue: Annotated[bool | None, Query(description="true 只看逾期，false 只看未逾期")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    now: NowQ = None,
) -> list[dict[str, Any]]:
    rt = runtime(request)
    with rt.tx() as s:
        a = _actor(rt, s, token)
        return visible_cases(s, a, now=parse_time(now) or rt.clock(), campaign=campaign,
                             stage=stage.value if stage else None, general_branch=general_branch, grade=grade,
                             overdue=overdue, limit=limit, offset=offset)


@router.get("/branches/{code}", tags=["党支部"], summary="一个党支部的案卷：环节、截止日期、未满足的条件、等级")
def branch(code: str, request: Request, token: Token, campaign: CampaignQ = None, now: NowQ = None) -> dict[str, Any]:
    rt = runtime(request)
    with rt.tx() as s:
        a = _actor(rt, s, token)
        require_see(s, a, code)
        return views.show(s, code, now=parse_time(now) or rt.clock(), campaign=campaign)


@router.get("/branches/{code}/unmet", tags=["党支部"], summary="当前环节尚未满足的条件与截止日期")
def branch_unmet(code: str, request: Request, token: Token, campaign: CampaignQ = None,
                 now: NowQ = None) -> dict[str, Any]:
    rt = runtime(request)
    with rt.tx() as s:
        a = _actor(rt, s, token)
        require_see(s, a, code)
        c = views.show(s, code, now=parse_time(now) or rt.clock(), campaign=campaign)
    keys = ("stage", "stage_label", "deadline", "overdue", "days_left", "unmet", "who_may_act", "version")
    return {"branch": c["branch"]["code"], **{k: c[k] for k in keys}}


@router.get("/branches/{code}/history", tags=["党支部"], summary="全部记录；at= 重放到某一时间的状态")
def branch_history(code: str, request: Request, token: Token, campaign: CampaignQ = None,
                   at: Annotated[str | None, Query(max_length=40, description="重放到该时间（ISO；日期表示当天结束）")] = None,
                   ) -> dict[str, Any]:
    rt = runtime(request)
    with rt.tx() as s:
        a = _actor(rt, s, token)
        require_see(s, a, code)
        return views.history(s, code, campaign=campaign, at=parse_time(at, "重放时间"))


# --- acting -----------------------------------------------------------------------------------------

class Acted(BaseModel):
    """The case after the action."""

    branch: str
    stage: str
    stage_label: str
    version: int
    message: str


def _acted(case: LoadedCase, message: str) -> Acted:
    return Acted(branch=case.branch.code, stage=case.stage.value, stage_label=case.stage.label,
                 version=case.version, message=message)


def _act(request: Request, token: Token, code: str, fn: Any, *, public: bool = False, **kw: Any) -> LoadedCase:
    """Run one use case as the token's person, in one transaction, after the reading rule (objections to a
    published grade are open to every logged-in person: the publicity is public)."""
    rt = runtime(request)
    now = rt.clock()
    with rt.tx() as s:
        a = _actor(rt, s, token)
        if not public:
            require_see(s, a, code)
        if {r for r, _ in a.roles} == {Role.auditor}:
            raise Forbidden(f"{a.name}（{a.email}）是审计人员，只能查看，不能修改任何数据")
        return fn(s, code, a, now=now, **kw)  # type: ignore[no-any-return]


class RecordRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data: dict[str, Any] = Field(description="当前环节的填报数据（各环节字段见文档 docs/web.md）")
    expected_version: int | None = Field(default=None, ge=0, description="乐观锁：仅当版本仍为此值时才写入")


@router.post("/branches/{code}/records", response_model=Acted, tags=["办理"], summary="填报当前环节的数据")
def record(code: str, body: RecordRequest, request: Request, token: Token, campaign: CampaignQ = None) -> Acted:
    case = _act(request, token, code, service.record, data=body.data, campaign=campaign,
                expected_version=body.expected_version)
    return _acted(case, "已填报")


class AdvanceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expected_version: int | None = Field(default=None, ge=0)


@router.post("/branches/{code}/advance", response_model=Acted, tags=["办理"], summary="推进到下一环节")
def advance(code: str, request: Request, token: Token, body: AdvanceRequest | None = None,
            campaign: CampaignQ = None) -> Acted:
    case = _act(request, token, code, service.advance, campaign=campaign,
                expected_version=body.expected_version if body else None)
    return _acted(case, "已推进")


@router.post("/branches/{code}/grade", response_model=Acted, tags=["办理"], summary="计算得分和等级（党委评定）")
def grade(code: str, request: Request, token: Token, campaign: CampaignQ = None) -> Acted:
    case = _act(request, token, code, service.compute_grade, campaign=campaign)
    return _acted(case, f"总分 {case.state['grade']['total']:g}，等级 {case.state['grade']['grade_label']}")


class AdjustRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grade: str = Field(max_length=32)
    reason: str = Field(max_length=4000)


@router.post("/branches/{code}/adjust", response_model=Acted, tags=["办理"], summary="党委调整等级（写明理由）")
def adjust(code: str, body: AdjustRequest, request: Request, token: Token, campaign: CampaignQ = None) -> Acted:
    case = _act(request, token, code, service.adjust_grade, grade=body.grade, reason=body.reason, campaign=campaign)
    return _acted(case, "等级已调整")


@router.post("/branches/{code}/sign", response_model=Acted, tags=["办理"], summary="党委委员签字确认等级")
def sign(code: str, request: Request, token: Token, campaign: CampaignQ = None) -> Acted:
    case = _act(request, token, code, service.sign, campaign=campaign)
    return _acted(case, f"已签字（{len(case.state['signatures'])}/{case.campaign.quorum_for(case.facts.committee_size)}）")


class PublishRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: dt.date | None = Field(default=None, description="公示开始日期（默认今天；遇节假日顺延）")


@router.post("/branches/{code}/publish", response_model=Acted, tags=["办理"], summary="发布公示")
def publish(code: str, request: Request, token: Token, body: PublishRequest | None = None,
            campaign: CampaignQ = None) -> Acted:
    start = body.start if body else None
    if start is not None and not dt.date(2000, 1, 1) <= start <= dt.date(2100, 12, 31):
        raise InvalidInput(f"公示开始日期 {start} 超出合理范围")
    case = _act(request, token, code, service.publish, start=start, campaign=campaign)
    p = case.state["publicity"]
    return _acted(case, f"公示 {p['start']} 至 {p['end']}")


class ObjectionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=4000)


@router.post("/branches/{code}/objections", response_model=Acted, tags=["办理"], summary="对公示结果提出异议")
def objection(code: str, body: ObjectionRequest, request: Request, token: Token, campaign: CampaignQ = None) -> Acted:
    case = _act(request, token, code, service.lodge_objection, public=True, text=body.text, campaign=campaign)
    return _acted(case, f"已登记异议 #{case.state['objections'][-1]['id']}")


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    upheld: bool
    reason: str = Field(max_length=4000)


@router.post("/branches/{code}/objections/{objection_id}/resolve", response_model=Acted, tags=["办理"],
             summary="处理异议（成立则退回党委评定）")
def resolve(code: str, objection_id: Annotated[int, Path(ge=1, le=1_000_000)], body: ResolveRequest,
            request: Request, token: Token, campaign: CampaignQ = None) -> Acted:
    case = _act(request, token, code, service.resolve_objection, objection_id=objection_id, upheld=body.upheld,
                reason=body.reason, campaign=campaign)
    return _acted(case, "异议成立，已退回党委评定" if body.upheld else "异议不成立，已记录")


class CompleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    evidence: str = Field(max_length=4000)


@router.post("/branches/{code}/items/{item}/complete", response_model=Acted, tags=["办理"], summary="登记整改事项完成")
def complete(code: str, item: Annotated[int, Path(ge=1, le=1000)], body: CompleteRequest, request: Request, token: Token,
             campaign: CampaignQ = None) -> Acted:
    case = _act(request, token, code, service.complete_item, item=item, evidence=body.evidence, campaign=campaign)
    return _acted(case, f"第 {item} 项已完成")


class ExtendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    deadline: dt.date
    reason: str = Field(max_length=4000)
    stage: Stage | None = None


@router.post("/branches/{code}/extend", response_model=Acted, tags=["办理"], summary="延长截止日期（组织部）")
def extend(code: str, body: ExtendRequest, request: Request, token: Token, campaign: CampaignQ = None) -> Acted:
    case = _act(request, token, code, service.extend_deadline, deadline=body.deadline, reason=body.reason,
                stage=body.stage, campaign=campaign)
    return _acted(case, f"截止日期延至 {body.deadline}")


# --- audit and outbox -------------------------------------------------------------------------------

@router.get("/audit/verify", tags=["审计"], summary="校验哈希链，并核对当前状态与重放结果")
def audit_verify(request: Request, token: Token, campaign: CampaignQ = None,
                 branch: Annotated[str | None, Query(max_length=64, description="只校验一个党支部")] = None,
                 ) -> dict[str, Any]:
    rt = runtime(request)
    with rt.tx() as s:
        a = _actor(rt, s, token)
        if branch:
            require_see(s, a, branch)
        elif not sees_everything(s, a):
            raise Forbidden("校验全部党支部须为审计人员或党委层面人员；其他人请用 branch= 校验本人负责的党支部")
        report = audit.verify(s, campaign_code=campaign, branch_code=branch)
    return {"ok": report.ok, "cases": report.cases, "events": report.events,
            "problems": [{**p.__dict__, "text": str(p)} for p in report.problems]}


@router.get("/outbox", tags=["审计"], summary="提醒与督办邮件（发件箱），每位收件人一行")
def outbox(request: Request, token: Token,
           status: Annotated[str | None, Query(pattern="^(pending|sent|dead|cancelled)$",
                                               description="投递状态：pending / sent / dead / cancelled")] = None,
           branch: Annotated[str | None, Query(max_length=64, description="只看一个党支部的")] = None,
           limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    rt = runtime(request)
    with rt.tx() as s:
        a = _actor(rt, s, token)
        if branch:
            require_see(s, a, branch)
        elif not sees_everything(s, a):
            raise Forbidden("发件箱全部内容仅限审计人员和党委层面人员查看；其他人请用 branch= 查看本人负责的党支部")
        return outbox_rows(s, status=status, branch=branch, limit=limit)


def outbox_rows(s: Session, *, status: str | None, branch: str | None, limit: int) -> list[dict[str, Any]]:
    """Rows of :mod:`notifications` (the outbox and its deliveries), newest first."""
    from notifications.models import DeliveryRow, OutboxRow

    q = (
        select(OutboxRow.id, OutboxRow.dedup_key, OutboxRow.kind, OutboxRow.rung, OutboxRow.branch_code,
               OutboxRow.stage, OutboxRow.deadline, OutboxRow.supervision_order, OutboxRow.status.label("notice_status"),
               OutboxRow.due_at, DeliveryRow.recipient, DeliveryRow.recipient_name, DeliveryRow.status,
               DeliveryRow.attempts, DeliveryRow.sent_at, DeliveryRow.last_error)
        .outerjoin(DeliveryRow, DeliveryRow.outbox_id == OutboxRow.id)
        .order_by(OutboxRow.id.desc(), DeliveryRow.id)
        .limit(limit)
    )
    if status:
        q = q.where(DeliveryRow.status == status)
    if branch:
        q = q.where(OutboxRow.branch_code == branch)
    return [{k: (v.isoformat() if isinstance(v, dt.datetime | dt.date) else v) for k, v in r._mapping.items()}
            for r in s.execute(q)]
