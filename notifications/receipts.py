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

KIND = "objection_receipt"


def enqueue_receipt(session: Session, case: LoadedCase, code: str, recipient: Recipient, *, base_url: str,
                    now: dt.datetime) -> None:
    """Queue the receipt mail of the case's last objection to the person who lodged it."""
    if not recipient.email:
        return
    oid = case.state["objections"][-1]["id"]
    ctx = {"branch_name": case.branch.name, "campaign_name": case.campaign.name, "objection_id": oid,
           "code": objections.grouped(code), "link": f"{base_url.rstrip('/')}/objections/receipt"}
    enqueue(session, [Notice(key=f"{KIND}/{case.campaign.code}/{case.branch.code}/{oid}", campaign_id=case.campaign_row.id,
                             kind=KIND, rung="receipt", due_at=now, context=ctx, recipients=[recipient],
                             branch_code=case.branch.code, stage=case.stage.value)], now=now)


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
