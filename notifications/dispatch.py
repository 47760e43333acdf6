"""The dispatcher: claim due deliveries, build one message per recipient, send, mark each as it goes.

One round, repeated until nothing is due (a tick drains everything; :attr:`DispatchStats.left` says what
is still waiting when it stops early):

1. **claim** (own transaction): cancel deliveries whose case has moved on; pick pending (and held, once
   their retry time came) deliveries due at ``now`` whose claim is free (``FOR UPDATE SKIP LOCKED`` on
   PostgreSQL), stamp them with this dispatcher's ``claim_owner``, a fresh ``claim_token`` and an expiry.
   Deliveries are grouped per (recipient, template family) into one digest each, and each digest's
   **plan** — its Message-ID (from the recipient and the sorted dedup keys) and its Date — is written on
   its deliveries in the same transaction. Rows left planned by a dispatcher that crashed are claimed
   with the rest of their digest and rebuilt from the plan: same Message-ID, same dedup headers, same
   Date, same bytes.
2. **send**, outside any transaction, through the transport's :class:`~notifications.mailer.Hooks`:
   right before each message the dispatcher checks in the database (one indexed read) that every
   delivery in it is still its own and still to be sent — not taken over after the claim's expiry
   (renewed once a third of the lease has passed), not cancelled because its case moved on — then
   builds it (straight to bytes, :mod:`notifications.wire`); right after the server answered it marks
   that message in its own transaction, fenced by ``WHERE claim_owner = me AND claim_token = …`` — a
   dispatcher whose claim was taken over can neither send nor mark what it no longer owns. A delivery
   cancelled in the instant between that check and the server's answer is marked ``sent`` all the same
   (nobody sends a cancelled delivery again): the record never says cancelled for a message that went out.
3. **outcomes**, per message only: sent → ``sent``; temporary (4xx, outage) → retried later with
   exponential back-off (dead after :data:`MAX_ATTEMPTS`); a recipient's 5xx or a bad address →
   ``dead``, a dead letter and a report to the organisation department; a failure of ours (a template
   that cannot render, a configuration the server refuses, any unexpected error while building) →
   ``held``, retried automatically with a growing back-off (:func:`hold_backoff`) so it goes out once
   the fix is deployed, and an alert built in code (no template) to the organisation department.
   Neither a dead-letter report nor an alert ever reports on itself.

A crash between the server's acceptance and the marking leaves that one message planned and claimed
until the claim expires; the next dispatcher sends it once more, identical — at most one extra copy
per crash, which the receiver can drop by its Message-ID. A graceful stop (``stop()`` true) finishes
the message in flight, releases the unsent claims and returns.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from jinja2 import TemplateError
from sqlalchemy import Table, and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from notifications.directory import Directory, Recipient
from notifications.mailer import HELD as HELD_OUTCOME
from notifications.mailer import PERMANENT, SENT, TEMPORARY, UNSENT, Hooks, Outcome, Transport
from notifications.models import CANCELLED, DEAD, HELD, PENDING, DeadLetterRow, DeliveryRow, OutboxRow
from notifications.models import SENT as DELIVERED
from notifications.outbox import Notice, cancel_stale, enqueue
from notifications.render import (
    BadAddress,
    alert_rendered,
    build_message,
    dead_report_plain,
    message_id,
    notices_context,
    render,
)
from notifications.wire import Mail
from workflow.errors import BranchflowError
from workflow.models import Committee

log = logging.getLogger("branchflow.mail")

MAX_ATTEMPTS = 8
LEASE = dt.timedelta(minutes=10)
BATCH = 500
FAMILY = {"reminder": "notices", "escalation": "notices", "monthly": "monthly", "dead_report": "dead_report",
          "held_report": "alert",
          "ballot": "ballot", "ballot_reminder": "ballot"}  # ballot: online-evaluation codes (notifications/ballots.py)
FAMILY["checkpoint"] = "checkpoint"  # signed checkpoints to the auditors (notifications/checkpoints.py, issue 11)
FAMILY["escalation_up"] = "escalation_up"  # to the parent committee's organisation department (issue 12)
FAMILY["receipt"] = "objection_receipt"  # receipt codes of objections (notifications/receipts.py, issue 16)
REPORTS = ("dead_report", "alert")  # families whose own failure is never reported (no report on itself)
UNFINISHED = (PENDING, HELD)


class MailUndeliverable(BranchflowError):
    """邮件未能生成或发送。"""

    exit_code = 8
    http_status = 503


def backoff(attempts: int) -> dt.timedelta:
    """5 min, 10, 20, 40 … capped at 6 hours."""
    return dt.timedelta(minutes=min(5 * 2 ** max(attempts - 1, 0), 360))


def hold_backoff(holds: int) -> dt.timedelta:
    """A held message is tried again after 1 min, 2, 4 … capped at 1 hour: soon after a fix is deployed."""
    return dt.timedelta(minutes=min(2 ** max(holds - 1, 0), 60))


def new_owner() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class DispatchStats:
    messages: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    cancelled: int = 0
    reported: int = 0
    held: int = 0
    alerts: int = 0
    lost: int = 0  # messages not sent: their claim was taken over, or (part of) them cancelled meanwhile
    stopped: bool = False
    left: int = 0  # due deliveries still waiting when the dispatch ended
    held_total: int = 0  # held deliveries in the outbox when the dispatch ended
    errors: list[str] = field(default_factory=list)

    def text(self) -> str:
        out = (f"发送邮件 {self.messages} 封（含通知 {self.delivered} 条），稍后重试 {self.retried} 条，"
               f"投递失败转入死信 {self.dead} 条，因支部已推进而取消 {self.cancelled} 条")
        if self.held:
            out += f"，因模板或配置错误暂扣 {self.held} 条（已告警组织部，修复后自动重发）"
        if self.stopped:
            out += "；发信进程收到停止信号，未发送的已释放"
        if self.left:
            out += f"；尚有 {self.left} 条到期通知待发送（下次发信继续）"
        return out

    def trouble(self) -> str | None:
        """A clear line when mail could not be rendered or sent at all in this dispatch, else None."""
        reason = f"（{self.errors[0]}）" if self.errors else ""
        if self.held or self.held_total:
            n = max(self.held, self.held_total)
            return (f"有 {n} 条邮件通知因邮件模板或配置错误未能生成或发送，已暂扣{reason}；"
                    "请修复后再次运行（暂扣的通知会自动重发），详情见 branchflow outbox --status held")
        if self.messages == 0 and (self.retried or self.dead):
            return f"邮件一封也未能发出{reason}；请检查邮件服务器设置（BRANCHFLOW_SMTP_*），稍后会自动重试"
        return None


@dataclass(kw_only=True)
class _Group:
    recipient: str
    name: str
    family: str
    ids: list[int]
    keys: list[str]
    items: list[dict[str, Any]]
    holds: list[int]
    mid: str = ""
    at: dt.datetime | None = None
    fresh: bool = True  # planned in this round (else: rebuilt from the plan of a crashed dispatcher)
    subject: str = ""


class _Built(Sequence[Mail]):
    """The messages of a round, built one by one right before each is sent (see ``before``)."""

    def __init__(self, n: int) -> None:
        self.items: list[Mail | None] = [None] * n

    def __len__(self) -> int:
        return len(self.items)

    @overload
    def __getitem__(self, i: int) -> Mail: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Mail]: ...
    def __getitem__(self, i: int | slice) -> Mail | Sequence[Mail]:
        if isinstance(i, slice):
            return [m for m in self.items[i] if m is not None]
        m = self.items[i]
        assert m is not None, "a message is read only after before(i) built it"
        return m

    def __iter__(self) -> Iterator[Mail]:
        return iter(m for m in self.items if m is not None)


def dispatch(sessions: sessionmaker[Session], transport: Transport, *, now: dt.datetime, sender: str,
             org_department_email: str = "", batch: int = BATCH, lease: dt.timedelta = LEASE,
             after_send: Callable[[], None] | None = None, stop: Callable[[], bool] | None = None,
             owner: str | None = None) -> DispatchStats:
    """Send everything due at ``now``; each claim and each marking is its own transaction.

    ``now`` is read once at the edge; the claims' times advance with the real time spent here. ``stop``
    is polled before each message (a graceful stop); ``after_send`` runs right after each message the
    server answered and before it is marked (tests use it to simulate a crash there).
    """
    stats = DispatchStats()
    me = owner or new_owner()
    t0 = time.monotonic()

    def clock() -> dt.datetime:
        return now + dt.timedelta(seconds=time.monotonic() - t0)

    stopping = stop or (lambda: False)
    while True:
        if stopping():
            stats.stopped = True
            break
        token = uuid.uuid4().hex
        with sessions() as s, s.begin():
            stats.cancelled += cancel_stale(s)
            claimed = time.monotonic()  # the claim's expiry is counted from here (``at`` below)
            found, groups = _claim(s, at=clock(), owner=me, token=token, batch=batch, lease=lease, sender=sender)
        if not found:
            break
        if groups:
            _round(sessions, transport, groups, owner=me, token=token, clock=clock, lease=lease, claimed=claimed,
                   sender=sender, org_department_email=org_department_email, stats=stats, after_send=after_send,
                   stop=stopping)
    with sessions() as s:
        at = clock()
        stats.left = int(s.scalar(select(func.count()).select_from(DeliveryRow).where(
            DeliveryRow.status == PENDING, DeliveryRow.next_attempt_at <= at)) or 0)
        stats.held_total = int(s.scalar(select(func.count()).select_from(DeliveryRow)
                                        .where(DeliveryRow.status == HELD)) or 0)
    if stats.held_total:
        log.error("邮件暂扣 %d 条（模板或配置错误，修复后自动重发）：%s", stats.held_total,
                  stats.errors[0] if stats.errors else "见 branchflow outbox --status held")
    return stats


def _round(sessions: sessionmaker[Session], transport: Transport, groups: list[_Group], *, owner: str, token: str,
           clock: Callable[[], dt.datetime], lease: dt.timedelta, claimed: float, sender: str,
           org_department_email: str, stats: DispatchStats, after_send: Callable[[], None] | None, stop: Callable[[], bool]) -> None:
    built = _Built(len(groups))
    engine = sessions.kw["bind"]
    table = DeliveryRow.__table__
    assert isinstance(table, Table)
    settled: set[int] = set()  # groups already marked (sent, failed, held) or released
    renewed = [claimed]  # when the claim's expiry was last computed (the claim itself, or a renewal)
    conn = engine.connect()  # one connection for the round's hot path; each statement its own transaction
    mine = _mine_core(owner, token)
    # Sent wins over a cancellation that came between the check before sending and the server's answer
    # (whoever cancelled it, nobody sends a cancelled delivery again): the record says what happened.
    sent_fence = or_(and_(*mine), table.c.status == CANCELLED)
    mark_sent = update(table).where(table.c.id.in_(bindparam("ids", expanding=True)), sent_fence).values(
        status=DELIVERED, sent_at=bindparam("at"), attempts=table.c.attempts + 1, message_id=bindparam("mid"),
        last_error=None, claim_owner=None, claim_token=None, claimed_until=None)
    renew = update(table).where(*mine).values(claimed_until=bindparam("until"))
    owned_q = select(func.count()).select_from(table).where(table.c.id.in_(bindparam("ids", expanding=True)), *mine)

    def mark(i: int, out: Outcome) -> None:
        g = groups[i]
        if out.status == SENT:  # the common case, on Core: marked the moment the server accepted it
            with conn.begin():
                n = conn.execute(mark_sent, {"ids": g.ids, "at": clock(), "mid": g.mid}).rowcount
            if n != len(g.ids):
                log.warning("message %s: %d of %d deliveries were no longer ours to mark", g.mid, len(g.ids) - n,
                            len(g.ids))
            stats.messages += 1
            stats.delivered += n
        else:
            with sessions() as s, s.begin():
                _mark(s, g, out, at=clock(), owner=owner, token=token, stats=stats,
                      org_department_email=org_department_email)
        settled.add(i)

    def ours(i: int) -> bool:
        """Whether message ``i``'s deliveries are all still this dispatcher's and still to be sent.

        Asked in the database right before each message (one indexed read on the round's connection):
        a claim taken over after its expiry, or a delivery cancelled meanwhile because its case moved on,
        is not sent. The claim is renewed once a third of the lease has passed, so that nobody can take it
        over while this dispatcher works.
        """
        g = groups[i]
        if time.monotonic() - renewed[0] > lease.total_seconds() / 3:  # renew while working
            start = time.monotonic()
            with conn.begin():
                conn.execute(renew, {"until": clock() + lease})
            renewed[0] = start
        with conn.begin():
            return bool(conn.execute(owned_q, {"ids": g.ids}).scalar() == len(g.ids))

    def before(i: int) -> bool:
        g = groups[i]
        if not ours(i):  # taken over, or (part of it) cancelled meanwhile: not sent, released, re-claimed
            stats.lost += 1
            return False
        try:
            built.items[i] = _build(g, sender=sender)
        except BadAddress as exc:
            mark(i, Outcome(status=PERMANENT, error=str(exc)))
            return False
        except TemplateError as exc:
            mark(i, Outcome(status=HELD_OUTCOME, error=f"邮件模板渲染失败：{type(exc).__name__}: {exc}"))
            return False
        except Exception as exc:  # our bug in one message must not stop the others
            log.exception("building a message failed")
            mark(i, Outcome(status=HELD_OUTCOME, error=f"生成邮件出错：{type(exc).__name__}: {exc}"))
            return False
        return True

    def after(i: int, out: Outcome) -> None:
        if out.status == UNSENT:
            return
        if after_send is not None:
            after_send()
        mark(i, out)

    try:
        outcomes = transport.send(built, Hooks(before=before, after=after, stop=stop))
    finally:
        conn.close()
    if stop():
        stats.stopped = True
    unsent = [g for i, g in enumerate(groups) if i not in settled and outcomes[i].status != SENT]
    if unsent:
        with sessions() as s, s.begin():
            _release(s, unsent, owner=owner, token=token)


def _mine_core(owner: str, token: str) -> tuple[Any, ...]:
    t = DeliveryRow.__table__
    assert isinstance(t, Table)
    return (t.c.claim_owner == owner, t.c.claim_token == token, t.c.status.in_(UNFINISHED))


def _mine(owner: str, token: str) -> tuple[Any, ...]:
    return (DeliveryRow.claim_owner == owner, DeliveryRow.claim_token == token, DeliveryRow.status.in_(UNFINISHED))


def _claim(s: Session, *, at: dt.datetime, owner: str, token: str, batch: int, lease: dt.timedelta,
           sender: str) -> tuple[bool, list[_Group]]:
    """Claim up to ``batch`` due deliveries: (whether any were due, the digests this dispatcher got)."""
    free = (DeliveryRow.status.in_(UNFINISHED), DeliveryRow.next_attempt_at <= at,
            or_(DeliveryRow.claimed_until.is_(None), DeliveryRow.claimed_until < at))
    pg = s.get_bind().dialect.name == "postgresql"
    q = select(DeliveryRow.id).where(*free).order_by(DeliveryRow.id).limit(batch)
    if pg:
        q = q.with_for_update(skip_locked=True)
    ids = list(s.scalars(q))
    if not ids:
        return False, []
    # a digest planned by a dispatcher that crashed comes whole, so that it is rebuilt identically
    planned = list(s.scalars(select(DeliveryRow.message_id).distinct()
                             .where(DeliveryRow.id.in_(ids), DeliveryRow.message_id.is_not(None))))
    if planned:
        more = select(DeliveryRow.id).where(*free, DeliveryRow.message_id.in_(planned))
        if pg:
            more = more.with_for_update(skip_locked=True)
        ids = sorted(set(ids) | set(s.scalars(more)))
    # The claim re-checks that the rows are still free: on SQLite the read above takes no lock, so
    # another dispatcher may have claimed some of them in between; only rows stamped with our token are ours.
    for i in range(0, len(ids), 500):
        s.execute(update(DeliveryRow).where(DeliveryRow.id.in_(ids[i:i + 500]), *free)
                  .values(claim_owner=owner, claim_token=token, claimed_until=at + lease)
                  .execution_options(synchronize_session=False))
    rows: list[Any] = []
    for i in range(0, len(ids), 500):
        rows.extend(s.execute(
            select(DeliveryRow.id, DeliveryRow.recipient, DeliveryRow.recipient_name, DeliveryRow.message_id,
                   DeliveryRow.message_at, DeliveryRow.holds, OutboxRow.dedup_key, OutboxRow.kind, OutboxRow.context,
                   OutboxRow.due_at, OutboxRow.id.label("oid"))
            .join(OutboxRow, OutboxRow.id == DeliveryRow.outbox_id)
            .where(DeliveryRow.id.in_(ids[i:i + 500]), DeliveryRow.claim_token == token)).all())
    rows.sort(key=lambda r: (r.recipient, r.due_at, r.oid))
    groups: dict[tuple[str, str, str], _Group] = {}
    for r in rows:
        family = FAMILY.get(r.kind, r.kind)
        key = (r.recipient, family, r.message_id or "")
        g = groups.get(key)
        if g is None:
            g = groups[key] = _Group(recipient=r.recipient, name=r.recipient_name, family=family, ids=[], keys=[],
                                     items=[], holds=[])
            if r.message_id:
                g.mid, g.at, g.fresh = r.message_id, r.message_at or at, False
        g.ids.append(r.id)
        g.keys.append(r.dedup_key)
        g.items.append(r.context)
        g.holds.append(r.holds or 0)
    plans: list[dict[str, Any]] = []
    for g in groups.values():
        if g.fresh:
            g.mid, g.at = message_id(g.recipient, g.keys, sender), at
            plans.extend({"_id": did, "_mid": g.mid, "_at": at} for did in g.ids)
    if plans:
        t = DeliveryRow.__table__
        assert isinstance(t, Table)
        s.execute(update(t).where(t.c.id == bindparam("_id"), t.c.claim_token == token)
                  .values(message_id=bindparam("_mid"), message_at=bindparam("_at")), plans)
    return True, list(groups.values())


def _rendered(g: _Group) -> Any:
    if g.family == "alert":
        return alert_rendered(g.name, g.items, g.keys)
    if g.family == "notices":
        return render("notices", notices_context(g.name, g.items, g.keys))
    ctx = {"recipient_name": g.name, "items": g.items, "keys": g.keys}
    if g.family == "dead_report":
        try:
            return render("dead_report", ctx)
        except Exception:  # the report must not depend on the templates that may have failed
            log.exception("the dead-letter report's template failed; sending it as plain text")
            return dead_report_plain(g.name, g.items, g.keys)
    return render(g.family, ctx)


def _build(g: _Group, *, sender: str) -> Mail:
    rendered = _rendered(g)
    g.subject = rendered.subject
    assert g.at is not None
    return build_message(sender=sender, recipient=g.recipient, recipient_name=g.name, rendered=rendered,
                         keys=g.keys, now=g.at, mid=g.mid)


def _release(s: Session, groups: list[_Group], *, owner: str, token: str) -> None:
    """Give back claims not sent (a stop, a lost claim); a plan made in this round goes with them."""
    for g in groups:
        values: dict[str, Any] = {"claim_owner": None, "claim_token": None, "claimed_until": None}
        if g.fresh:
            values.update(message_id=None, message_at=None)
        s.execute(update(DeliveryRow).where(DeliveryRow.id.in_(g.ids), *_mine(owner, token)).values(**values)
                  .execution_options(synchronize_session=False))


def _mark(s: Session, g: _Group, out: Outcome, *, at: dt.datetime, owner: str, token: str,
          stats: DispatchStats, org_department_email: str) -> None:
    """Mark one message's deliveries, fenced by this dispatcher's claim."""
    mine = _mine(owner, token)
    free: dict[str, Any] = {"claim_owner": None, "claim_token": None, "claimed_until": None}
    if out.status == SENT:
        n = s.execute(update(DeliveryRow).where(DeliveryRow.id.in_(g.ids), *mine)
                      .values(status=DELIVERED, sent_at=at, attempts=DeliveryRow.attempts + 1, message_id=g.mid,
                              last_error=None, **free)
                      .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
        if n != len(g.ids):
            log.warning("message %s: %d of %d deliveries were no longer ours to mark", g.mid, len(g.ids) - n, len(g.ids))
        stats.messages += 1
        stats.delivered += n
        return
    replan: dict[str, Any] = {"message_id": None, "message_at": None} if g.fresh else {}
    if out.status == HELD_OUTCOME:
        first: list[tuple[int, str]] = []
        for did, holds in zip(g.ids, g.holds, strict=True):
            n = s.execute(update(DeliveryRow).where(DeliveryRow.id == did, *mine)
                          .values(status=HELD, holds=holds + 1, next_attempt_at=at + hold_backoff(holds + 1),
                                  last_error=out.error, **free, **replan)
                          .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
            if n:
                stats.held += 1
                if holds == 0:
                    first.append((did, g.recipient))
        if out.error not in stats.errors:
            stats.errors.append(out.error)
        log.error("message to %s held (%d notices): %s", g.recipient, len(g.ids), out.error)
        if first and g.family not in REPORTS:
            _alert(s, first, g, out.error, at=at, org_department_email=org_department_email, stats=stats)
        return
    dead: list[tuple[int, str]] = []
    rows = s.execute(select(DeliveryRow.id, DeliveryRow.attempts).where(DeliveryRow.id.in_(g.ids), *mine)).all()
    for did, attempts in rows:
        n = attempts + 1
        if out.status == TEMPORARY and n < MAX_ATTEMPTS:
            s.execute(update(DeliveryRow).where(DeliveryRow.id == did, *mine)
                      .values(attempts=n, next_attempt_at=at + backoff(n), last_error=out.error, **free, **replan)
                      .execution_options(synchronize_session=False))
            stats.retried += 1
            continue
        error = out.error if out.status == PERMANENT else f"重试 {n} 次仍失败：{out.error}"
        s.execute(update(DeliveryRow).where(DeliveryRow.id == did, *mine)
                  .values(status=DEAD, attempts=n, last_error=error, **free)
                  .execution_options(synchronize_session=False))
        stats.dead += 1
        dead.append((did, error))
    if out.error and out.error not in stats.errors:
        stats.errors.append(out.error)
    if dead:
        _report_dead(s, [(did, g.recipient, g.subject, out.code, error, g.family) for did, error in dead], now=at,
                     org_department_email=org_department_email, stats=stats)


def _org_people(s: Session, org_department_email: str) -> dict[str, Recipient]:
    directory = Directory(s, org_department_email=org_department_email)
    org: dict[str, Recipient] = {}
    for cid in s.scalars(select(Committee.id).order_by(Committee.id)):
        for p in directory.org_department(cid):
            org.setdefault(p.email, p)
    if not org and org_department_email.strip():
        org[org_department_email.strip().lower()] = Recipient(email=org_department_email.strip().lower(), name="组织部")
    return org


def _campaign_of(s: Session, ids: list[int]) -> dict[int, int]:
    return {int(a): int(b) for a, b in s.execute(
        select(DeliveryRow.id, OutboxRow.campaign_id).join(OutboxRow, OutboxRow.id == DeliveryRow.outbox_id)
        .where(DeliveryRow.id.in_(ids))).all()}


def _alert(s: Session, held: list[tuple[int, str]], g: _Group, error: str, *, at: dt.datetime,
           org_department_email: str, stats: DispatchStats) -> None:
    """Tell the organisation department once per held delivery, by a message built in code (no template)."""
    org = _org_people(s, org_department_email)
    if not org:
        return
    campaign = _campaign_of(s, [did for did, _ in held])
    notice = "、".join(sorted(set(g.keys)))[:300]
    notices = [Notice(key=f"held/{did}", campaign_id=campaign[did], kind="held_report", rung="held", due_at=at,
                      context={"recipient": recipient, "notice": notice, "error": error[:500]},
                      recipients=list(org.values())) for did, recipient in held]
    if notices:
        enqueue(s, notices, now=at)
        stats.alerts += len(notices)


def _report_dead(s: Session, dead: list[tuple[int, str, str, int | None, str, str]], *, now: dt.datetime,
                 org_department_email: str, stats: DispatchStats) -> None:
    """Record each dead letter and tell the organisation department (a report that itself dies is not re-reported)."""
    org = _org_people(s, org_department_email)
    campaign_of_delivery = _campaign_of(s, [d[0] for d in dead])
    notices = []
    for did, recipient, subject, code, error, family in dead:
        dl = DeadLetterRow(delivery_id=did, recipient=recipient, code=code, error=error, at=now,
                           reported=family not in REPORTS and bool(org))
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
