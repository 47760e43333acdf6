"""Mail of the online ballots: the voting link with its one-time code, through the outbox.

:func:`enqueue_invitations` writes one outbox notice (kind ``ballot``, or ``ballot_reminder`` for the
reminder to those who have not voted, carrying a fresh code) per voter, with no case events (the
branch's chain records the ballot once, when it closes). The code must travel in the mail, so it sits in
the outbox row's context until the mail is sent; :func:`scrub` blanks it (and the link) in every ballot
notice whose deliveries are done, and in all notices of closed ballots. The tick calls :func:`tick`:
close the ballots that are due, then scrub. Nothing here commits.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from notifications.directory import Recipient
from notifications.models import CANCELLED, DEAD, SENT, DeliveryRow, OutboxRow
from notifications.outbox import Notice, enqueue
from workflow import ballots
from workflow.models import BallotRow, CaseRow
from workflow.repository import campaign_of

TZ = ZoneInfo("Asia/Shanghai")
KINDS = ("ballot", "ballot_reminder")


def vote_link(base_url: str, code: str) -> str:
    return f"{base_url.rstrip('/')}/v/{ballots.grouped(code)}"


def enqueue_invitations(session: Session, ballot_id: int, issued: list[ballots.Issued], *, base_url: str,
                        now: dt.datetime, reminder: bool = False) -> int:
    """One mail per named voter with their link and code; returns how many were queued."""
    ballot = session.get(BallotRow, ballot_id)
    assert ballot is not None
    case = session.get(CaseRow, ballot.case_id)
    assert case is not None
    from workflow.models import Branch, CampaignRow

    camp = session.get(CampaignRow, case.campaign_id)
    branch = session.get(Branch, case.branch_id)
    assert camp is not None and branch is not None
    kind = "ballot_reminder" if reminder else "ballot"
    stamp = now.strftime("%Y%m%dT%H%M%S")
    notices = []
    for it in issued:
        if not it.email:
            continue
        ctx: dict[str, Any] = {
            "ballot_id": ballot.id, "branch_name": branch.name, "campaign_name": campaign_of(camp).name,
            "closes_at": ballot.closes_at.astimezone(TZ).strftime("%Y-%m-%d %H:%M"), "reminder": reminder,
            "code": ballots.grouped(it.code), "link": vote_link(base_url, it.code),
        }
        key = f"ballot/{ballot.id}/{it.voter_id}/{'remind-' + stamp if reminder else 'invite'}"
        notices.append(Notice(key=key, campaign_id=camp.id, kind=kind, rung="remind" if reminder else "invite",
                              due_at=now, context=ctx, recipients=[Recipient(email=it.email, name=it.name)],
                              branch_code=branch.code, stage="member_evaluation"))
    enqueue(session, notices, now=now)
    return len(notices)


def anonymous_row(row: dict[str, Any]) -> dict[str, Any]:
    """An outbox listing row (``GET /api/outbox``) without whom a ballot mail went to: the reminders go only to
    those who have not voted, so their recipients would tell staff who has. Other rows unchanged."""
    if row.get("kind") not in KINDS:
        return row
    key = str(row.get("dedup_key") or "").split("/")
    if len(key) == 4:
        key[2] = "…"  # the voter's random id
    return {**row, "dedup_key": "/".join(key), "recipient": "（网上测评邮件不显示收件人）", "recipient_name": "",
            "last_error": None if row.get("last_error") is None else "（网上测评邮件不显示投递错误详情）"}


def scrub(session: Session) -> int:
    """Blank the code and link of ballot notices that are delivered (or given up), or whose ballot closed."""
    rows = session.execute(
        select(OutboxRow.id, OutboxRow.context).where(OutboxRow.kind.in_(KINDS))
    ).all()
    if not rows:
        return 0
    finished = (SENT, DEAD, CANCELLED)  # anything else (pending, held, …) may still be sent
    pending = set(session.scalars(select(DeliveryRow.outbox_id).where(
        DeliveryRow.status.not_in(finished), DeliveryRow.outbox_id.in_([r.id for r in rows if r.context.get("code")]))))
    closed = set(session.scalars(select(BallotRow.id).where(BallotRow.status == ballots.CLOSED)))
    n = 0
    for r in rows:
        ctx = dict(r.context)
        if not ctx.get("code"):
            continue
        if r.id in pending and ctx.get("ballot_id") not in closed:
            continue
        ctx["code"], ctx["link"] = "", ""
        session.execute(update(OutboxRow).where(OutboxRow.id == r.id).values(context=ctx)
                        .execution_options(synchronize_session=False))
        n += 1
    return n


def tick(session: Session, *, now: dt.datetime) -> list[int]:
    """Close the ballots due at ``now`` (each writes its record) and blank the codes of sent mail."""
    closed = ballots.close_due(session, now=now)
    scrub(session)
    return closed
