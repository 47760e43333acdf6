"""The counts in the navigation (issue 16, point 4): what the person owes, what is overdue, the open
objections and the notices addressed to them — each one indexed count query within their reading scope.

* 待办: the cases in the stages the person's roles owe (``ix_cases_campaign_stage``), per role scope;
* 逾期: the cases past their deadline and not accepted (``ix_cases_campaign_deadline``), for those who
  chase them (the organisation department, general-branch secretaries, committee members);
* 异议: the open objections of publicity-stage cases (the stage index, then those few cases' objections),
  for the organisation department and auditors;
* 通知: reminders, escalations and 督办令 addressed to the person's e-mail (``ix_outbox_deliveries_recipient``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.orm import Session

from notifications.models import DeliveryRow, OutboxRow
from service.auth import sees_everything
from service.pages.todo import OWED
from states.base import ROLE_LABELS, Role, Stage
from workflow import objections, tenancy
from workflow.errors import BranchflowError
from workflow.models import Branch, CampaignRow, CaseRow, Committee, GeneralBranch
from workflow.repository import campaign_of, get_campaign_row
from workflow.service import Actor

CHASERS = (Role.org_department, Role.general_branch_secretary, Role.committee_member)
OBJECTION_READERS = (Role.org_department, Role.auditor)
NOTICE_KINDS = ("reminder", "escalation")
ZERO = {"todo": 0, "overdue": 0, "objections": 0, "notices": 0}


def role_clause(role: Role, scope: str) -> Any:
    """The branches one (role, scope) pair covers, as a WHERE clause (None: every branch)."""
    if role is Role.auditor:
        return None
    if role is Role.branch_secretary:
        return Branch.code == scope
    if role is Role.general_branch_secretary:
        return GeneralBranch.code == scope
    return Committee.code == scope


def _cases(camp_id: Any) -> Any:
    return (select(func.count(func.distinct(CaseRow.id))).select_from(CaseRow)
            .join(Branch, Branch.id == CaseRow.branch_id).join(Committee, Committee.id == Branch.committee_id)
            .outerjoin(GeneralBranch, GeneralBranch.id == Branch.general_branch_id)
            .where(CaseRow.campaign_id == camp_id))


def owed_clause(roles: frozenset[tuple[Role, str]]) -> Any:
    """(stage in what the role owes AND within the role's scope) OR … over the person's roles; None: nothing."""
    parts = []
    for role, scope in sorted(roles):
        stages = [s.value for s in OWED[role]]
        if not stages:
            continue
        where = role_clause(role, scope)
        parts.append(CaseRow.stage.in_(stages) if where is None else CaseRow.stage.in_(stages) & where)
    return or_(*parts) if parts else None


def campaign_row(s: Session, actor: Actor, code: str | None = None) -> CampaignRow:
    """The campaign a page shows: ``code`` if the person may read it, else their default one (the first of
    the newest when their roles span several committees' campaigns, as the to-do list does)."""
    try:
        return tenancy.campaign_for(s, actor, code)
    except tenancy.CampaignAmbiguous as exc:
        return get_campaign_row(s, exc.codes[0])


def counts(s: Session, actor: Actor, now: dt.datetime) -> dict[str, int]:
    """``todo``, ``overdue``, ``objections``, ``notices`` for the navigation (0 where the role has none)."""
    out = dict(ZERO)
    try:
        camp_row = campaign_row(s, actor)
    except BranchflowError:
        return out
    camp = campaign_of(camp_row)
    today = now.astimezone(camp.tz).date()
    roles = actor.roles
    todo = _todo(roles)
    if todo is not None:
        out["todo"] = int(s.scalar(todo, {"camp": camp_row.id}) or 0)
    if any(actor.has_role(r) for r in CHASERS):
        out["overdue"] = int(s.scalar(_overdue(roles, sees_everything(s, actor)), {"camp": camp_row.id, "today": today})
                             or 0)
    if any(actor.has_role(r) for r in OBJECTION_READERS):
        out["objections"] = objections.open_count(s, scope=objection_scope(s, actor), campaign_row=camp_row)
    out["notices"] = int(s.scalar(_NOTICES, {"email": actor.email}) or 0)
    return out


# The counts' statements, built once per set of roles (they are pure functions of the roles; the
# campaign, the day and the e-mail are bound parameters), so a page does not rebuild them per request.
_NOTICES = (select(func.count()).select_from(DeliveryRow).join(OutboxRow, OutboxRow.id == DeliveryRow.outbox_id)
            .where(DeliveryRow.recipient == bindparam("email"), OutboxRow.kind.in_(NOTICE_KINDS)))


@lru_cache(maxsize=4096)
def _todo(roles: frozenset[tuple[Role, str]]) -> Any:
    owed = owed_clause(roles)
    return None if owed is None else _cases(bindparam("camp")).where(owed)


@lru_cache(maxsize=4096)
def _overdue(roles: frozenset[tuple[Role, str]], everything: bool) -> Any:
    q = _cases(bindparam("camp")).where(CaseRow.deadline < bindparam("today"), CaseRow.stage != Stage.accepted.value)
    return q if everything else q.where(tenancy.branch_clause(_Roles(roles)))


@dataclass(frozen=True)
class _Roles:
    roles: frozenset[tuple[Role, str]]


def objection_scope(s: Session, actor: Actor) -> Any:
    """Whose objections the person may read: auditors those of everything they read; the organisation
    department its own committees' (the ones it resolves); anyone else none. A WHERE clause (None: all)."""
    auditor = actor.has_role(Role.auditor)
    return _objection_scope(actor.roles, auditor, auditor and sees_everything(s, actor))


@lru_cache(maxsize=4096)
def _objection_scope(roles: frozenset[tuple[Role, str]], auditor: bool, everything: bool) -> Any:
    """objection_scope's clause, one object per set of roles (the count's statement is memoised by it)."""
    mine = Committee.code.in_(sorted(sc for r, sc in roles if r is Role.org_department))
    if auditor:
        return None if everything else tenancy.branch_clause(_Roles(roles)) | mine
    return mine


def overdue_and_objections(s: Session, actor: Actor, now: dt.datetime) -> list[dict[str, Any]]:
    """The to-do list's items beyond the owed stages: overdue branches, for those who chase them (催办, 督办令,
    or the work itself), and open objections, for the organisation department — rows shaped like the to-do
    list's (code, name, what, stage_label, role_label, deadline, overdue, days_left, due_soon)."""
    from workflow import listing

    try:
        camp_row = campaign_row(s, actor)
    except BranchflowError:
        return []
    items: list[dict[str, Any]] = []
    for role, scope in sorted(actor.roles):
        if role not in CHASERS:
            continue
        what = {Role.org_department: "已逾期：催办或下发督办令", Role.general_branch_secretary: "已逾期：督促支部办理",
                Role.committee_member: "已逾期：请关注"}[role]
        page = listing.search(s, listing.ListQuery(overdue=True, sort="deadline", per_page=listing.MAX_PER_PAGE),
                              now=now, scope=role_clause(role, scope), campaign_row=camp_row)
        for r in page.rows:
            items.append({**r, "what": what, "role_label": ROLE_LABELS[role], "due_soon": False})
    if actor.has_role(Role.org_department):
        committees = [sc for r, sc in actor.roles if r is Role.org_department]
        today = now.astimezone(campaign_of(camp_row).tz).date()
        for o in objections.queue(s, now=now, scope=Committee.code.in_(committees), campaign_row=camp_row):
            left = (dt.date.fromisoformat(o["publicity_end"]) - today).days if o["publicity_end"] else None
            items.append({"code": o["code"], "name": o["name"], "what": f"处理异议 #{o['id']}（已提出 {o['age_days']} 天）",
                          "stage_label": Stage.publicity.label, "role_label": ROLE_LABELS[Role.org_department],
                          "deadline": o["publicity_end"], "overdue": False, "days_left": left, "due_soon": True,
                          "objection": o["id"]})
    return items
