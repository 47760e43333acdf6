"""The objection receipt by mail (issue 16, point 5): the objector's receipt code, through the outbox.

The code must travel in the mail, so it sits in the outbox row's context until the mail is sent, like a
ballot code (notifications/ballots.py); :func:`scrub` blanks it in every receipt notice whose deliveries
are done. No case events: the objection itself is on the branch's chain already. Nothing here commits.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from notifications.directory import Recipient
from notifications.models import CANCELLED, DEAD, SENT, DeliveryRow, OutboxRow
from notifications.outbox import Notice, enqueue
from workflow import objections
from workflow.repository import LoadedCase
from workflow.service import Actor

KIND = "receipt"  # outbox.kind (at most 16 characters); its mail family is "objection_receipt"


def enqueue_receipt(session: Session, case: LoadedCase, code: str, recipient: Recipient, *, base_url: str,
                    now: dt.datetime) -> None:
    """Queue the receipt mail of the case's last objection to the person who lodged it."""
    if not recipient.email:
        return
    oid = case.state["objections"][-1]["id"]
    ctx = {"branch_name": case.branch.name, "campaign_name": case.campaign.name, "objection_id": oid,
           "code": objections.grouped(code), "link": f"{base_url.rstrip('/')}/objections/receipt"}  # no base URL: the page's path
    enqueue(session, [Notice(key=f"objection-receipt/{case.campaign.code}/{case.branch.code}/{oid}", campaign_id=case.campaign_row.id,
                             kind=KIND, rung="receipt", due_at=now, context=ctx, recipients=[recipient],
                             branch_code=case.branch.code, stage=case.stage.value)], now=now)


def lodge(session: Session, branch: str, actor: Actor, text: str, *, now: dt.datetime, campaign: str | None = None,
          base_url: str = "") -> tuple[LoadedCase, str]:
    """Lodge the objection (workflow.objections.lodge) and mail its receipt code to the objector; returns
    the case and the code, which the edge shows once."""
    case, code = objections.lodge(session, branch, actor, text, now=now, campaign=campaign)
    enqueue_receipt(session, case, code, Recipient(email=actor.email, name=actor.name), base_url=base_url, now=now)
    return case, code


def shown(case: LoadedCase, code: str) -> str:
    """The sentence that shows the receipt code once, after lodging."""
    return (f"已登记异议 #{case.state['objections'][-1]['id']}，组织部将核实处理。回执码：{objections.grouped(code)}"
            "（只显示这一次，请记下；凭回执码可在“异议查询”页面查看处理结果，回执码也已发到您的邮箱）")


def scrub(session: Session) -> int:
    """Blank the code of receipt notices whose deliveries are all done (sent, dead or cancelled)."""
    rows = session.execute(select(OutboxRow.id, OutboxRow.context).where(OutboxRow.kind == KIND)).all()
    rows = [r for r in rows if r.context.get("code")]
    if not rows:
        return 0
    pending = set(session.scalars(select(DeliveryRow.outbox_id).where(
        DeliveryRow.status.not_in((SENT, DEAD, CANCELLED)), DeliveryRow.outbox_id.in_([r.id for r in rows]))))
    n = 0
    for r in rows:
        if r.id in pending:
            continue
        session.execute(update(OutboxRow).where(OutboxRow.id == r.id).values(context={**r.context, "code": ""})
                        .execution_options(synchronize_session=False))
        n += 1
    return n
