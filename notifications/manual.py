"""Reminders and supervision orders (催办 / 督办令) sent by a person, now, through the outbox (issue 16).

:func:`remind` and :func:`supervise` load the case, check the person's role on it (deny by default: the
organisation department and the branch's general-branch secretary may remind; only the organisation
department issues a 督办令, and only once the stage is overdue), append the ``reminded`` / ``escalated``
(and ``supervision_order``) events to the branch's chain under the person's name, and write the outbox
notice with one delivery per recipient in the same transaction — the same mail templates as the sweep's
(``templates/mail/notices.*``, the 督办令 text included). One of each per branch and day: the dedup key
carries the date, so a second click the same day is refused instead of mailing people twice.
Nothing here commits.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from notifications.directory import Directory, Recipient, owner_roles
from notifications.outbox import Notice, enqueue, existing_keys
from scheduler.deadlines import ESCALATION, REMINDER, dedup_key
from states import spec_for
from states.base import ROLE_LABELS, Role, Stage
from workflow import bulk, service
from workflow.errors import TransitionRefused
from workflow.repository import LoadedCase, append, effective_deadline, load_case, save
from workflow.service import Actor, LostRace

REMINDERS = (Role.org_department, Role.general_branch_secretary)
ORDERS = (Role.org_department,)


def cn_date(d: dt.date) -> str:
    return f"{d.year}年{d.month}月{d.day}日"


def remind(session: Session, branch: str, actor: Actor, *, now: dt.datetime) -> LoadedCase:
    """Remind the people who owe the branch's current stage, now (a 逾期督促 when it is overdue)."""
    return _send(session, branch, actor, now=now, order=False)[0]


def supervise(session: Session, branch: str, actor: Actor, *, now: dt.datetime) -> LoadedCase:
    """Issue a 督办令 for an overdue stage to its owners and the general-branch secretary."""
    return _send(session, branch, actor, now=now, order=True)[0]


def _send(session: Session, branch: str, actor: Actor, *, now: dt.datetime,
          order: bool) -> tuple[LoadedCase, list[Recipient]]:
    case = load_case(session, branch)
    what = "下发督办令" if order else "催办"
    stage = case.stage
    if stage is Stage.accepted:
        raise TransitionRefused(f"党支部“{case.branch.name}”已验收，流程已结束，无需{what}")
    service.require(actor, ORDERS if order else REMINDERS, case, what)
    deadline = effective_deadline(case.campaign, case.state)
    if deadline is None:
        raise TransitionRefused(f"“{stage.label}”环节没有截止日期，不能{what}")
    today = now.astimezone(case.campaign.tz).date()
    overdue = today > deadline
    if order and not overdue:
        raise TransitionRefused(
            f"党支部“{case.branch.name}”“{stage.label}”环节截止日期为 {deadline}，尚未逾期，不能下发督办令；可先催办")
    rung = f"manual-{'order' if order else 'remind'}-{today.isoformat()}"
    key = dedup_key(case.campaign.code, case.branch.code, stage.value, deadline, rung)
    if existing_keys(session, [key]):
        raise TransitionRefused(f"今天已对党支部“{case.branch.name}”{what}过，每个支部每天{what}一次")
    directory = Directory(session)
    roles = owner_roles(stage)
    if order and Role.general_branch_secretary not in roles:
        roles.append(Role.general_branch_secretary)
    secretary = Recipient(email=case.branch.secretary_email, name=case.branch.secretary_name)
    gb_id, committee_id = case.branch.general_branch_id, case.branch.committee_id
    recipients = directory.resolve(roles, committee_id=committee_id, gb_id=gb_id, secretary=secretary)
    recipients = [r for r in recipients if r.email != actor.email] or recipients
    if not recipients:
        raise TransitionRefused(f"党支部“{case.branch.name}”没有可通知的人：请导入书记邮箱或授予相应角色")
    missing = [str(u) for u in spec_for(stage).can_leave(case.state, case.campaign, case.facts, now=now)]
    kind = ESCALATION if overdue else REMINDER
    context: dict[str, Any] = {
        "campaign": case.campaign.name, "branch_code": case.branch.code, "branch_name": case.branch.name,
        "general_branch": directory.general_branch(gb_id)[1], "secretary": case.branch.secretary_name,
        "stage": stage.value, "stage_label": stage.label, "deadline": deadline.isoformat(),
        "deadline_text": cn_date(deadline), "kind": kind, "rung": rung,
        "days_left": max((deadline - today).days, 0), "days_overdue": max((today - deadline).days, 0),
        "missing": missing, "owners": [ROLE_LABELS[r] for r in roles],
        "contact": f"{actor.name}（{actor.email}）", "supervision_order": order, "by": actor.name, "manual": True,
    }
    if order:
        context["supervision_text"] = (
            f"督办令：党支部“{case.branch.name}”“{stage.label}”环节已逾期 {context['days_overdue']} 天"
            f"（截止 {cn_date(deadline)}），请立即办理，并将办理情况报党委组织部（{actor.name}）。")
    to = [r.email for r in recipients]
    base = {"rung": rung, "deadline": deadline.isoformat(), "to": to, "dedup_key": key, "manual": True,
            "by": actor.name}
    if kind == REMINDER:
        append(session, case, kind="reminded", actor=actor.email, at=now, payload=base)
    else:
        append(session, case, kind="escalated", actor=actor.email, at=now,
               payload={**base, "days_overdue": context["days_overdue"]})
    if order:
        append(session, case, kind="supervision_order", actor=actor.email, at=now,
               payload={"deadline": deadline.isoformat(), "to": to, "dedup_key": key, "manual": True,
                        "text": context["supervision_text"]})
    try:
        save(session, case, now=now)
        session.flush()
    except (StaleDataError, IntegrityError) as exc:
        raise LostRace(f"党支部 {case.branch.code} 已被他人同时修改，本次操作未生效，请刷新后重试",
                       stage=stage) from exc
    # the events are on the chain already (under the person's name): the notice carries no case_id, so
    # enqueue writes only the outbox row and its deliveries
    enqueue(session, [Notice(key=key, campaign_id=case.campaign_row.id, kind=kind, rung=rung, due_at=now,
                             context=context, recipients=recipients, branch_code=case.branch.code,
                             stage=stage.value, deadline=deadline, supervision_order=order)], now=now)
    return case, recipients


def _remind(s: Session, code: str, actor: Actor, now: dt.datetime) -> tuple[LoadedCase, str]:
    case, to = _send(s, code, actor, now=now, order=False)
    return case, f"已催办（通知 {'、'.join(r.name or r.email for r in to)}）"


def _supervise(s: Session, code: str, actor: Actor, now: dt.datetime) -> tuple[LoadedCase, str]:
    case, to = _send(s, code, actor, now=now, order=True)
    return case, f"已下发督办令（通知 {'、'.join(r.name or r.email for r in to)}）"


BULK_ACTIONS: dict[str, tuple[str, bulk.Action]] = {
    **bulk.ACTIONS,
    "remind": ("催办", _remind),
    "supervise": ("下发督办令", _supervise),
}
