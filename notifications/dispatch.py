"""The dispatcher: claim due deliveries, render one message per recipient, send, mark.

One round, repeated until nothing is due:

1. **claim** (own transaction): cancel deliveries whose case has moved on; pick pending deliveries due
   at ``now`` whose claim lease is free (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several nodes can
   dispatch), stamp them with a token and a lease; commit.
2. **render and send** outside any transaction: deliveries are grouped per (recipient, template family),
   so someone responsible for many branches gets one digest per send time, not one mail per branch.
3. **mark** (own transaction): sent → ``sent``; temporary failure → retried later with exponential
   back-off (dead after :data:`MAX_ATTEMPTS`); permanent failure → ``dead``, a dead letter, and a
   report to the organisation department (itself an outbox notice).

A crash between 2 and 3 leaves the claim to expire; the next round sends again — at most one
duplicate, with the same Message-ID and dedup keys so the receiver can tell.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError
from sqlalchemy import Table, bindparam, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from notifications.directory import Directory, Recipient
from notifications.mailer import PERMANENT, SENT, TEMPORARY, Outcome, Transport
from notifications.models import DEAD, PENDING, DeadLetterRow, DeliveryRow, OutboxRow
from notifications.models import SENT as DELIVERED
from notifications.outbox import Notice, cancel_stale, enqueue
from notifications.render import build_message, notices_context, render
from workflow.models import Committee

MAX_ATTEMPTS = 8
LEASE = dt.timedelta(minutes=10)
FAMILY = {"reminder": "notices", "escalation": "notices", "monthly": "monthly", "dead_report": "dead_report",
          "ballot": "ballot", "ballot_reminder": "ballot"}  # ballot: online-evaluation codes (notifications/ballots.py)


def backoff(attempts: int) -> dt.timedelta:
    """5 min, 10, 20, 40 … capped at 6 hours."""
    return dt.timedelta(minutes=min(5 * 2 ** max(attempts - 1, 0), 360))


@dataclass
class DispatchStats:
    messages: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    cancelled: int = 0
    reported: int = 0

    def text(self) -> str:
        return (f"发送邮件 {self.messages} 封（含通知 {self.delivered} 条），稍后重试 {self.retried} 条，"
                f"投递失败转入死信 {self.dead} 条，因支部已推进而取消 {self.cancelled} 条")


@dataclass(kw_only=True)
class _Group:
    recipient: str
    name: str
    family: str
    ids: list[int]
    keys: list[str]
    items: list[dict[str, Any]]
    subject: str = ""


def dispatch(sessions: sessionmaker[Session], transport: Transport, *, now: dt.datetime, sender: str,
             org_department_email: str = "", batch: int = 2000, lease: dt.timedelta = LEASE,
             after_send: Callable[[], None] | None = None, max_rounds: int = 100) -> DispatchStats:
    """Send everything due at ``now``; each claim and each marking is its own transaction."""
    stats = DispatchStats()
    for _ in range(max_rounds):
        token = uuid.uuid4().hex
        with sessions() as s, s.begin():
            stats.cancelled += cancel_stale(s)
            found, groups = _claim(s, now=now, token=token, batch=batch, lease=lease)
        if not found:
            break
        if not groups:  # another node claimed them first
            continue
        messages, sendable, outcomes = [], [], {}
        for i, g in enumerate(groups):
            try:
                if g.family == "notices":
                    ctx = notices_context(g.name, g.items, g.keys)
                else:
                    ctx = {"recipient_name": g.name, "items": g.items, "keys": g.keys}
                rendered = render(g.family, ctx)
            except TemplateError as exc:
                outcomes[i] = Outcome(status=PERMANENT, error=f"邮件模板渲染失败：{exc}")
                continue
            g.subject = rendered.subject
            messages.append(build_message(sender=sender, recipient=g.recipient, recipient_name=g.name,
                                          rendered=rendered, keys=g.keys, now=now))
            sendable.append(i)
        for i, out in zip(sendable, transport.send(messages)):
            outcomes[i] = out
        if after_send is not None:
            after_send()
        with sessions() as s, s.begin():
            _mark(s, groups, outcomes, now=now, token=token, stats=stats,
                  org_department_email=org_department_email, messages={i: m for i, m in zip(sendable, messages)})
    return stats


def _claim(s: Session, *, now: dt.datetime, token: str, batch: int,
           lease: dt.timedelta) -> tuple[bool, list[_Group]]:
    """Claim up to ``batch`` due deliveries: (whether any were due, the groups this node got)."""
    free = (DeliveryRow.status == PENDING, DeliveryRow.next_attempt_at <= now,
            or_(DeliveryRow.claimed_until.is_(None), DeliveryRow.claimed_until < now))
    q = select(DeliveryRow.id).where(*free).order_by(DeliveryRow.id).limit(batch)
    if s.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    ids = list(s.scalars(q))
    if not ids:
        return False, []
    # The claim re-checks that the rows are still free: on SQLite the read above takes no lock, so
    # another node may have claimed some of them in between; only rows stamped with our token are ours.
    s.execute(update(DeliveryRow).where(DeliveryRow.id.in_(ids), *free)
              .values(claim_token=token, claimed_until=now + lease).execution_options(synchronize_session=False))
    rows = s.execute(
        select(DeliveryRow.id, DeliveryRow.recipient, DeliveryRow.recipient_name, OutboxRow.dedup_key,
               OutboxRow.kind, OutboxRow.context)
        .join(OutboxRow, OutboxRow.id == DeliveryRow.outbox_id)
        .where(DeliveryRow.id.in_(ids), DeliveryRow.claim_token == token)
        .order_by(DeliveryRow.recipient, OutboxRow.due_at, OutboxRow.id)
    ).all()
    groups: dict[tuple[str, str], _Group] = {}
    for r in rows:
        family = FAMILY[r.kind]
        g = groups.get((r.recipient, family))
        if g is None:
            g = groups[(r.recipient, family)] = _Group(recipient=r.recipient, name=r.recipient_name, family=family,
                                                       ids=[], keys=[], items=[])
        g.ids.append(r.id)
        g.keys.append(r.dedup_key)
        g.items.append(r.context)
    return True, list(groups.values())


def _mark(s: Session, groups: list[_Group], outcomes: dict[int, Outcome], *, now: dt.datetime, token: str,
          stats: DispatchStats, org_department_email: str, messages: dict[int, Any]) -> None:
    dead_reports: list[tuple[int, str, str, int | None, str, str]] = []  # delivery, recipient, subject, code, error, family
    mine = DeliveryRow.claim_token == token
    sent: list[dict[str, Any]] = []
    for i, g in enumerate(groups):
        out = outcomes[i]
        if out.status == SENT:
            mid = str(messages[i]["Message-ID"])
            sent.extend({"_id": did, "_mid": mid} for did in g.ids)
            stats.messages += 1
            stats.delivered += len(g.ids)
            continue
        rows = s.execute(select(DeliveryRow.id, DeliveryRow.attempts).where(DeliveryRow.id.in_(g.ids), mine)).all()
        for did, attempts in rows:
            n = attempts + 1
            if out.status == TEMPORARY and n < MAX_ATTEMPTS:
                s.execute(update(DeliveryRow).where(DeliveryRow.id == did)
                          .values(attempts=n, next_attempt_at=now + backoff(n), last_error=out.error,
                                  claim_token=None, claimed_until=None)
                          .execution_options(synchronize_session=False))
                stats.retried += 1
                continue
            error = out.error if out.status == PERMANENT else f"重试 {n} 次仍失败：{out.error}"
            s.execute(update(DeliveryRow).where(DeliveryRow.id == did)
                      .values(status=DEAD, attempts=n, last_error=error, claim_token=None, claimed_until=None)
                      .execution_options(synchronize_session=False))
            stats.dead += 1
            dead_reports.append((did, g.recipient, g.subject, out.code, error, g.family))
    if sent:  # one executemany for the whole batch
        t = DeliveryRow.__table__
        assert isinstance(t, Table)
        s.execute(update(t).where(t.c.id == bindparam("_id"), t.c.claim_token == token)
                  .values(status=DELIVERED, sent_at=now, attempts=t.c.attempts + 1, message_id=bindparam("_mid"),
                          claim_token=None, claimed_until=None, last_error=None), sent)
    if dead_reports:
        _report_dead(s, dead_reports, now=now, org_department_email=org_department_email, stats=stats)


def _report_dead(s: Session, dead: list[tuple[int, str, str, int | None, str, str]], *, now: dt.datetime,
                 org_department_email: str, stats: DispatchStats) -> None:
    """Record each dead letter and tell the organisation department (a report that itself dies is not re-reported)."""
    directory = Directory(s, org_department_email=org_department_email)
    org: dict[str, Recipient] = {}
    for cid in s.scalars(select(Committee.id).order_by(Committee.id)):
        for p in directory.org_department(cid):
            org.setdefault(p.email, p)
    campaign_of_delivery: dict[int, int] = {int(a): int(b) for a, b in s.execute(
        select(DeliveryRow.id, OutboxRow.campaign_id).join(OutboxRow, OutboxRow.id == DeliveryRow.outbox_id)
        .where(DeliveryRow.id.in_([d[0] for d in dead]))).all()}
    notices = []
    for did, recipient, subject, code, error, family in dead:
        dl = DeadLetterRow(delivery_id=did, recipient=recipient, code=code, error=error, at=now,
                           reported=family != "dead_report" and bool(org))
        s.add(dl)
        s.flush()
        if not dl.reported:
            continue
        notices.append(Notice(key=f"dead-letter/{dl.id}", campaign_id=campaign_of_delivery[did], kind="dead_report",
                              rung="dead-letter", due_at=now,
                              context={"recipient": recipient, "subject": subject or "（未能生成）", "error": error},
                              recipients=list(org.values())))
    enqueue(s, notices, now=now)
    stats.reported += len(notices)
