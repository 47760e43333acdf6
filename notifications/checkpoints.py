"""Signed checkpoints that leave the system: made daily and at each stage deadline, mailed to the auditors.

:func:`tick` (run by the scheduler's sweep job on the leader node, after the sweep) makes a checkpoint
when none was made yet on this local day (``daily``) or when a campaign's stage deadline is today and
no checkpoint was made for it (``deadline:<stage>:<date>``), stores it, and queues one mail per auditor
with the checkpoint's text (kind ``checkpoint``), so a copy lives in their mailboxes. Without a signer
key file it does nothing (``branchflow audit keygen`` creates one). Nothing here commits.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from notifications.directory import Recipient
from notifications.outbox import Notice, enqueue
from workflow import checkpoint
from workflow.errors import InvalidInput
from workflow.models import CampaignRow, CheckpointRow, Person, RoleAssignment
from workflow.repository import campaign_of

TZ = ZoneInfo("Asia/Shanghai")
KIND = "checkpoint"


def due_reasons(session: Session, now: dt.datetime) -> list[str]:
    """Why a checkpoint is due at ``now``: ``daily`` and/or the stage deadlines of today not yet covered."""
    today = now.astimezone(TZ).date()
    made = set(session.scalars(select(CheckpointRow.reason).where(
        CheckpointRow.made_at >= dt.datetime.combine(today, dt.time(0), TZ))))
    out = [] if "daily" in made else ["daily"]
    for row in session.scalars(select(CampaignRow).where(CampaignRow.year == today.year)):
        try:
            camp = campaign_of(row)
        except InvalidInput:  # a broken stored campaign is verify's to report, not the ticker's to crash on
            continue
        for stage, d in camp.deadlines.items():
            reason = f"deadline:{stage.value}:{d.isoformat()}"[:32]
            if d == today and reason not in made and reason not in out:
                out.append(reason)
    return out


def auditors(session: Session) -> list[Recipient]:
    return [Recipient(email=e, name=n) for e, n in session.execute(
        select(Person.email, Person.name).join(RoleAssignment, RoleAssignment.person_id == Person.id)
        .where(RoleAssignment.role == "auditor").order_by(Person.email).distinct())]


def make_and_mail(session: Session, signer: checkpoint.Signer, *, reason: str, now: dt.datetime) -> CheckpointRow:
    """Make a checkpoint and queue it to every auditor (no mail when there is no campaign or no auditor)."""
    row = checkpoint.make(session, signer, reason=reason, now=now)
    camp_id = session.scalar(select(CampaignRow.id).order_by(CampaignRow.id.desc()).limit(1))
    people = auditors(session)
    if camp_id is not None and people:
        ctx = {"size": row.size, "root_hash": row.root_hash, "note": row.note, "reason": reason,
               "made_at": row.made_at.astimezone(TZ).strftime("%Y-%m-%d %H:%M")}
        enqueue(session, [Notice(key=f"checkpoint/{row.id}", campaign_id=camp_id, kind=KIND, rung=reason[:16],
                                 due_at=now, context=ctx, recipients=people)], now=now)
    return row


def tick(session: Session, key_file: object, *, now: dt.datetime) -> list[CheckpointRow]:
    """The scheduler's step: the checkpoints due now, each mailed; [] without a key file."""
    from pathlib import Path

    path = Path(str(key_file))
    if not path.exists():
        return []
    reasons = due_reasons(session, now)
    if not reasons:
        return []
    signer = checkpoint.load_signer(path)
    return [make_and_mail(session, signer, reason=r, now=now) for r in reasons]
