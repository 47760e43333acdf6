"""The JSON API (mounted under ``/api``). Every handler: one transaction, the actor from the bearer token,
the reading rules of :mod:`service.auth`, then one use case of :mod:`workflow.service` or one read model
of :mod:`workflow.views`. Errors are translated once, in :mod:`service.app`.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service import application
from service.app import Runtime, runtime
from service.application import may_download, parse_time, report_scope
from service.auth import (
    TOKEN_MAX_AGE,
    NotAuthenticated,
    Throttled,
    Where,
    log_in,
    may_see,
    require_see,
    sees_everything,
    visible_cases,
)
from states.base import ROLE_LABELS, Role, Stage
from workflow import audit, limits, service, tenancy, views
from workflow.errors import BranchflowError, Forbidden, InvalidInput, NotFound
from workflow.models import Branch, Committee, GeneralBranch
from workflow.repository import LoadedCase, load_case
from workflow.service import Actor

TZ = application.TZ  # the pages' time zone (kept here for service/ballot_pages.py)


class ProblemBody(BaseModel):
    """One thing wrong with the input: the field (list items counted from 1: ``items[2].measure``), the item
    number, a stable key with its parameters and the Chinese message that names the field."""

    model_config = ConfigDict(extra="allow")
    field: str
    item: int | None = None
    key: str
    params: dict[str, Any] = Field(default_factory=dict)
    message: str


class ErrorBody(BaseModel):
    """Every error: the error's class name and a Chinese message; refused moves also list what is unmet; bad
    input lists its ``problems`` field by field."""

    model_config = ConfigDict(extra="allow")
    error: str
    message: str
    problems: list[ProblemBody] | None = None


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


@router.post("/token", response_model=TokenResponse, tags=["登录"], summary="用邮箱和密码换取令牌",
             responses={429: {"model": ErrorBody, "description": "登录尝试过于频繁或账号临时锁定（见 Retry-After）"}})
def token(body: TokenRequest, request: Request) -> Any:
    rt = runtime(request)
    ip = request.client.host if request.client else ""
    with rt.tx() as s:  # committed also when refused: the record of a failure must stay (service.throttle)
        try:
            person = log_in(s, body.email, body.password, ip=ip, via="api", now=rt.signer.wall())
        except Throttled as exc:
            refused: BranchflowError = exc
            retry = {"Retry-After": str(exc.retry_after)}
        except NotAuthenticated as exc:
            refused, retry = exc, {}
        else:
            return TokenResponse(access_token=rt.signer.issue(s, person, api=True), expires_in=TOKEN_MAX_AGE)
    return JSONResponse(refused.to_dict(), status_code=refused.http_status, headers=retry)


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
        lines = {} if everything else tenancy.lines(s)
        own = {sc for r, sc in a.roles if r is Role.branch_secretary}
        out: dict[str, dict[str, Any]] = {}
        for r in rows:
            where = Where(branch="", general_branch=r.gb, committee=r.code, committees=lines.get(r.code, ()))
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
        a = _actor(rt, s, token)
        return views.campaigns(s, where=tenancy.campaign_clause(a))


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
        return views.show(s, code, now=parse_time(now) or rt.clock(), campaign=campaign, actor=a)


@router.get("/branches/{code}/unmet", tags=["党支部"], summary="当前环节尚未满足的条件与截止日期")
def branch_unmet(code: str, request: Request, token: Token, campaign: CampaignQ = None,
                 now: NowQ = None) -> dict[str, Any]:
    rt = runtime(request)
    with rt.tx() as s:
        a = _actor(rt, s, token)
        require_see(s, a, code)
        c = views.show(s, code, now=parse_time(now) or rt.clock(), campaign=campaign, actor=a)
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
        return views.history(s, code, campaign=campaign, at=parse_time(at, "重放时间"), actor=a)


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
    """Run one use case as the token's person, in one transaction, through the application layer (the
    reading rule, read-only auditors; objections to a published grade are open to every logged-in person)."""
    rt = runtime(request)
    now = rt.clock()
    with rt.tx() as s:
        a = _actor(rt, s, token)
        return application.act(s, a, code, fn, now=now, public=public, **kw)  # type: ignore[no-any-return]


# The request models carry only what the schema can say (lengths, ranges), so that a request the schema
# allows is answered 401 before it is judged; characters and the rest of workflow.limits are checked by the
# use cases after the log-in, the same for the API, the pages and the CLI.
class RecordRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data: dict[str, Any] = Field(description="当前环节的填报数据（各环节字段见文档 docs/web.md）")
    expected_version: int | None = Field(default=None, ge=0, le=limits.INT4_MAX,
                                         description="乐观锁：仅当版本仍为此值时才写入")


@router.post("/branches/{code}/records", response_model=Acted, tags=["办理"], summary="填报当前环节的数据")
def record(code: str, body: RecordRequest, request: Request, token: Token, campaign: CampaignQ = None) -> Acted:
    case = _act(request, token, code, service.record, data=body.data, campaign=campaign,
                expected_version=body.expected_version)
    return _acted(case, "已填报")


class AdvanceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expected_version: int | None = Field(default=None, ge=0, le=limits.INT4_MAX)


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
    from notifications import receipts  # the objector's receipt code, shown once (issue 16, point 5)

    got: list[str] = []

    def lodge(s: Session, branch: str, actor: Actor, *, now: dt.datetime, text: str, campaign: str | None) -> LoadedCase:
        case, receipt = receipts.lodge(s, branch, actor, text, now=now, campaign=campaign,
                                       base_url=str(request.base_url))
        got.append(receipt)
        return case

    case = _act(request, token, code, lodge, public=True, text=body.text, campaign=campaign)
    return _acted(case, receipts.shown(case, got[0]))


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
        rows = outbox_rows(s, status=status, branch=branch, limit=limit)
        return rows if _may_know_objectors(s, a, branch) else [_without_objector(r) for r in rows]


def _may_know_objectors(s: Session, a: Actor, branch: str | None) -> bool:
    """An objection's receipt mail goes to the objector: its recipient only for those who may know who
    objected (the branch's organisation department and auditors, workflow.views.may_know_objectors)."""
    if a.has_role(Role.auditor):
        return True
    if branch:
        return views.may_know_objectors(a, load_case(s, branch))
    return False


def _without_objector(row: dict[str, Any]) -> dict[str, Any]:
    from notifications.receipts import KIND

    if row.get("kind") != KIND:
        return row
    return {**row, "recipient": "（异议回执不显示收件人）", "recipient_name": "",
            "last_error": None if row.get("last_error") is None else "（异议回执不显示投递错误详情）"}


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
    from notifications.ballots import anonymous_row  # ballot mail: not who was reminded (issue 15)

    return [anonymous_row({k: (v.isoformat() if isinstance(v, dt.datetime | dt.date) else v)
                           for k, v in r._mapping.items()}) for r in s.execute(q)]


# --- reports and charts -----------------------------------------------------------------------------

# Not yet in /openapi.json: tests/acceptance/test_api.py pins the exact list of paths there. Set True (and add
# the three paths to that test) to publish them; their responses are already declared for schemathesis.
REPORTS_IN_SCHEMA = True


def require_charts(s: Session, a: Actor, campaign: str | None = None) -> str:
    """The charts count every branch of the campaign: for those who may read all of it; the campaign's code."""
    camp = tenancy.campaign_for(s, a, campaign)
    if not (sees_everything(s, a) or tenancy.reads_campaign_wholly(s, a, camp)):
        raise Forbidden(f"{a.name}（{a.email}）无权查看全部党支部的统计图：图表限审计人员和党委层面人员")
    return camp.code


class ReportForm(BaseModel):
    name: str
    label: str
    formats: list[str]
    per_general_branch: bool


@router.get("/reports", response_model=list[ReportForm], tags=["报表"], include_in_schema=REPORTS_IN_SCHEMA, summary="可下载的报表及其格式")
def report_list(request: Request, token: Token) -> list[ReportForm]:
    import reports

    rt = runtime(request)
    with rt.tx() as s:
        a = _actor(rt, s, token)
        if not may_download(s, a):
            raise Forbidden(f"{a.name}（{a.email}）无权下载报表：报表限组织部、党委委员、审计人员和党总支书记")
    return [ReportForm(name=n, label=label, formats=list(reports.FORMATS),
                       per_general_branch=reports.FORMS[n].per_branch) for n, label in reports.form_names().items()]


_FILE_TYPES = {
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {"schema": {"type": "string", "format": "binary"}},
    "text/csv": {"schema": {"type": "string"}},
    "text/html": {"schema": {"type": "string"}},
}


@router.get("/reports/{name}", tags=["报表"], include_in_schema=REPORTS_IN_SCHEMA, summary="下载报表（xlsx / csv / html；at= 为当时的样子）",
            response_class=StreamingResponse, responses={200: {"description": "报表文件", "content": _FILE_TYPES}})
def report_download(
    name: Annotated[str, Path(max_length=64, description="报表名，见 GET /api/reports")],
    request: Request, token: Token, campaign: CampaignQ = None,
    format: Annotated[str, Query(pattern="^(xlsx|csv|html)$", description="xlsx、csv 或 html")] = "xlsx",
    general_branch: Annotated[str | None, Query(max_length=64, description="党总支编码（党总支书记默认本人的）")] = None,
    at: Annotated[str | None, Query(max_length=40, description="重放到该时间（ISO；日期表示当天结束）")] = None,
) -> StreamingResponse:
    import reports

    rt = runtime(request)
    now = rt.clock()
    stack = ExitStack()
    try:
        s = stack.enter_context(rt.tx())
        a = _actor(rt, s, token)
        form = reports.FORMS.get(name)
        if form is None:
            raise NotFound(f"没有名为 {name!r} 的报表；可用：{'、'.join(reports.form_names())}")
        camp = tenancy.campaign_for(s, a, campaign, general_branch=general_branch)  # another tenant's: as unknown
        gb = report_scope(s, a, general_branch or None, per_branch=form.per_branch, campaign=camp.code)
        r = reports.render(s, name, format, general_branch=gb, at=parse_time(at, "截至时间"), campaign=camp.code, now=now)
        first = next(r.body, b"")  # errors surface here, before any byte is sent
    except BaseException:
        stack.__exit__(*sys.exc_info())
        raise

    def body() -> Iterator[bytes]:
        with stack:
            yield first
            yield from r.body

    return StreamingResponse(body(), media_type=r.media_type,
                             headers={"Content-Disposition": r.content_disposition()})


_SVG = {"image/svg+xml": {"schema": {"type": "string"}}}


@router.get("/charts/{name}.svg", tags=["报表"], include_in_schema=REPORTS_IN_SCHEMA, summary="活动进展图（grades、burndown、overdue），SVG",
            response_class=Response, responses={200: {"description": "SVG 图", "content": _SVG}})
def chart(name: Annotated[str, Path(max_length=32, description="grades、burndown 或 overdue")],
          request: Request, token: Token, campaign: CampaignQ = None) -> Response:
    from reports import charts

    rt = runtime(request)
    with rt.tx() as s:
        a = _actor(rt, s, token)
        code = require_charts(s, a, campaign)
        svgs = charts.dashboard_svgs(s, code, rt.clock())
    if name not in svgs:
        raise NotFound(f"没有名为 {name!r} 的图；可用：{'、'.join(svgs)}")
    return Response(svgs[name], media_type="image/svg+xml")
