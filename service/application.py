"""The application layer both edges call (the JSON API and the pages): the reading rule and the read-only
rule for the person, then one use case of :mod:`workflow.service`, inside the caller's transaction.

Neither edge calls the other: the pages never import :mod:`service.api` and the API never imports the
pages; what they share (the time zone of the pages, dates typed by people, who may download which
report) lives here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.auth import hidden, require_public_or_see, require_see, sees_everything
from states.base import Role
from workflow import tenancy
from workflow.errors import Forbidden, InvalidInput
from workflow.models import Committee, GeneralBranch
from workflow.service import Actor

TZ = ZoneInfo("Asia/Shanghai")
T = TypeVar("T")

_COMMITTEE_ROLES = (Role.org_department, Role.committee_member)


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


def read_only(actor: Actor) -> bool:
    """Auditors (and only auditors) read everything and change nothing."""
    return {r for r, _ in actor.roles} == {Role.auditor}


def guard(s: Session, actor: Actor, code: str, *, public: bool = False) -> None:
    """Before any change to a branch's case: the person may see the branch (objections to a published grade:
    the publicity is public) and is not read-only."""
    if public:
        require_public_or_see(s, actor, code)
    else:
        require_see(s, actor, code)
    if read_only(actor):
        raise Forbidden(f"{actor.name} 是审计人员，只能查看，不能修改任何数据")


def act(s: Session, actor: Actor, code: str, use_case: Callable[..., T], *args: Any, now: dt.datetime,
        public: bool = False, **kw: Any) -> T:
    """One use case as this person on this branch, after :func:`guard` (in the caller's transaction)."""
    guard(s, actor, code, public=public)
    return use_case(s, code, actor, *args, now=now, **kw)


def report_scope(s: Session, a: Actor, general_branch: str | None, *, per_branch: bool = True,
                 campaign: str | None = None) -> str | None:
    """Who may download a form, and for which general branch (the one to render; ``None``: the whole form).

    Auditors: any; the organisation department and committee members: the forms of their committee (the
    whole form when every committee with branches is theirs, else one of their general branches); a
    general-branch secretary: their own general branch only (the default); branch secretaries: none.
    """
    kinds = {r for r, _ in a.roles}
    gbs = sorted(sc for r, sc in a.roles if r is Role.general_branch_secretary)
    if not kinds & {Role.auditor, *_COMMITTEE_ROLES, Role.general_branch_secretary}:
        raise Forbidden(f"{a.name}（{a.email}）无权下载报表：报表限组织部、党委委员、审计人员和党总支书记")
    if not per_branch:  # the year's task list: no branch data, the same for everybody who may download
        return general_branch or None
    if not general_branch:
        if sees_everything(s, a) or tenancy.reads_campaign_wholly(s, a, tenancy.campaign_for(s, a, campaign)):
            return None
        if len(gbs) == 1 and not kinds & set(_COMMITTEE_ROLES):
            return gbs[0]
        raise Forbidden("请选择党总支（general_branch=）：只能下载本人负责范围内的报表")
    committees = {sc for r, sc in a.roles if r in _COMMITTEE_ROLES}
    committee = s.scalar(select(Committee.code).join(GeneralBranch, GeneralBranch.committee_id == Committee.id)
                         .where(GeneralBranch.code == general_branch))
    if committee is not None and (sees_everything(s, a) or general_branch in gbs or committee in committees
                                  or tenancy.may_read_committee(s, a, committee)):
        return general_branch
    raise hidden("党总支", general_branch)  # unknown or not theirs: the same answer, no list of codes


def may_download(s: Session, a: Actor) -> bool:
    """Whether the person may download any form (the nav link, the reports page)."""
    kinds = {r for r, _ in a.roles}
    return bool(kinds & {Role.auditor, *_COMMITTEE_ROLES, Role.general_branch_secretary})
