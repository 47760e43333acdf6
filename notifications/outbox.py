"""The transactional outbox: a due notice is a row written in the same transaction as its audit event.

:func:`enqueue` is the batched write path the sweep uses for many cases at once: for each notice it
appends the case's ``reminded`` / ``escalated`` (and ``supervision_order``) events to the case's hash
chain — same canonical body and chaining as :func:`workflow.repository.append` — inserts the outbox row
(unique ``dedup_key``) and one delivery per recipient, and moves the projection's ``version`` to the
last ``seq`` with an optimistic check (a case changed meanwhile makes the whole sweep roll back as a
:class:`~workflow.errors.Conflict`; the next tick does it again). These event kinds do not change the
case's state, so the projection's ``state`` stays equal to the replay. Nothing here commits.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from notifications.directory import Recipient
from notifications.models import CANCELLED, DEAD, HELD, PENDING, QUEUED, SENT, SKIPPED, DeliveryRow, OutboxRow
from workflow.audit import canonical, chain, iso
from workflow.errors import Conflict
from workflow.models import CaseRow, EventRow

SYSTEM = "system"
# Every status an ``outbox_deliveries`` row can have, as stored (plain strings): for counts by status
# (``branchflow outbox``, ``/readyz``, ``branchflow status``). ``held``: a failure of ours, retried.
DELIVERY_STATUSES: tuple[str, ...] = (PENDING, HELD, SENT, DEAD, CANCELLED)
# … and of an ``outbox`` row (a notice): ``skipped`` notices have no deliveries
NOTICE_STATUSES: tuple[str, ...] = (QUEUED, SKIPPED, CANCELLED)


@dataclass(kw_only=True)
class Notice:
    """One outbox row to write; with ``case_id`` its events are appended to that case's chain."""

    key: str
    campaign_id: int
    kind: str  # reminder | escalation | monthly | dead_report
    rung: str
    due_at: dt.datetime
    context: dict[str, Any]
    recipients: list[Recipient] = field(default_factory=list)
    status: str = QUEUED
    case_id: int | None = None
    branch_code: str = ""
    stage: str = ""
    deadline: dt.date | None = None
    supervision_order: bool = False
    # the case's chain head, read with the case (for the batched append)
    version: int = 0
    last_hash: str = ""
    last_at: dt.datetime | None = None
    events: list[dict[str, Any]] = field(default_factory=list)


def existing_keys(session: Session, keys: list[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(keys), 500):
        part = keys[i:i + 500]
        found.update(session.scalars(select(OutboxRow.dedup_key).where(OutboxRow.dedup_key.in_(part))))
    return found


def _event_payloads(n: Notice) -> list[tuple[str, dict[str, Any]]]:
    to = [r.email for r in n.recipients]
    ctx = n.context
    if n.kind == "reminder":
        return [("reminded", {"rung": n.rung, "deadline": str(n.deadline), "to": to, "dedup_key": n.key})]
    out: list[tuple[str, dict[str, Any]]] = [
        ("escalated", {"rung": n.rung, "deadline": str(n.deadline), "days_overdue": ctx["days_overdue"],
                       "to": to, "dedup_key": n.key})
    ]
    if n.supervision_order:
        out.append(("supervision_order", {"deadline": str(n.deadline), "to": to, "dedup_key": n.key,
                                          "text": ctx["supervision_text"]}))
    return out


def enqueue(session: Session, notices: list[Notice], *, now: dt.datetime) -> None:
    """Write the notices (outbox rows, deliveries, and for case notices the chained events) in bulk.

    Raises :class:`Conflict` when a case moved on meanwhile (its next ``seq`` is taken, or its version
    changed) or another sweep wrote the same dedup key first; the caller rolls the batch back.
    """
    if not notices:
        return
    try:
        _enqueue(session, notices, now=now)
    except IntegrityError as exc:
        raise Conflict("提醒扫描期间有支部被同时修改（或另一节点同时扫描），本次扫描未生效，下次扫描将重做") from exc


def _enqueue(session: Session, notices: list[Notice], *, now: dt.datetime) -> None:
    rows = [{
        "dedup_key": n.key, "campaign_id": n.campaign_id, "case_id": n.case_id, "branch_code": n.branch_code,
        "stage": n.stage, "deadline": n.deadline, "rung": n.rung, "kind": n.kind,
        "supervision_order": n.supervision_order, "status": n.status, "context": n.context,
        "due_at": n.due_at, "created_at": now,
    } for n in notices]
    # Core statements on the session's connection (not the ORM's bulk path: a third of the sweep's CPU)
    conn = session.connection()
    outbox, delivery_t, events_t = OutboxRow.__table__, DeliveryRow.__table__, EventRow.__table__
    assert isinstance(outbox, Table) and isinstance(delivery_t, Table) and isinstance(events_t, Table)
    ids: dict[str, int] = {}
    for i in range(0, len(rows), 1000):
        res = conn.execute(insert(outbox).returning(outbox.c.id, outbox.c.dedup_key), rows[i:i + 1000])
        ids.update({k: oid for oid, k in res.all()})
    deliveries = [{
        "outbox_id": ids[n.key], "recipient": r.email, "recipient_name": r.name[:100], "status": PENDING,
        "attempts": 0, "next_attempt_at": min(n.due_at, now),
    } for n in notices if n.status == QUEUED for r in n.recipients]
    for i in range(0, len(deliveries), 2000):
        conn.execute(insert(delivery_t), deliveries[i:i + 2000])
    events: list[dict[str, Any]] = []
    versions: list[dict[str, Any]] = []
    heads: dict[int, dict[str, Any]] = {}  # a case with two notices in one batch (issue 12: up the tree) chains them
    for n in notices:
        if n.case_id is None or n.status != QUEUED:
            continue
        at = now if n.last_at is None or now >= n.last_at else n.last_at
        head = heads.get(n.case_id)
        prev, seq = (head["_hash"], head["_new"]) if head is not None else (n.last_hash, n.version)
        for kind, payload in _event_payloads(n):
            seq += 1
            body = canonical({"kind": kind, "at": iso(at), "actor": SYSTEM, "stage": n.stage, "payload": payload})
            digest = chain(prev, body)
            events.append({"case_id": n.case_id, "seq": seq, "kind": kind, "at": at, "actor": SYSTEM,
                           "body": body, "prev_hash": prev, "hash": digest})
            n.events.append({"kind": kind, "seq": seq})
            prev = digest
        if head is not None:
            head.update(_new=seq, _hash=prev)
            continue
        heads[n.case_id] = {"_id": n.case_id, "_old": n.version, "_new": seq, "_at": now, "_hash": prev}
        versions.append(heads[n.case_id])
    for i in range(0, len(events), 2000):
        conn.execute(insert(events_t), events[i:i + 2000])
    if versions:
        t = CaseRow.__table__
        assert isinstance(t, Table)
        versions = [{k: v for k, v in h.items() if k != "_hash"} for h in versions]
        stmt = (update(t).where(t.c.id == bindparam("_id"), t.c.version == bindparam("_old"))
                .values(version=bindparam("_new"), updated_at=bindparam("_at")))
        changed = 0
        for i in range(0, len(versions), 2000):
            part = versions[i:i + 2000]
            if conn.dialect.supports_sane_multi_rowcount:
                changed += conn.execute(stmt, part).rowcount
            else:  # pragma: no cover - both our dialects report executemany row counts
                for p in part:
                    changed += conn.execute(stmt, p).rowcount
        if changed != len(versions):
            raise Conflict("提醒扫描期间有支部被同时修改，本次扫描未生效，下次扫描将重做")


def cancel_stale(session: Session, case_ids: list[int] | None = None) -> int:
    """Cancel pending deliveries of notices whose case has moved on (other stage or other deadline)."""
    q = (select(OutboxRow.id).join(CaseRow, CaseRow.id == OutboxRow.case_id)
         .where(OutboxRow.status == QUEUED,
                (CaseRow.stage != OutboxRow.stage) | (CaseRow.deadline.is_(None)) | (CaseRow.deadline != OutboxRow.deadline))
         .where(OutboxRow.id.in_(select(DeliveryRow.outbox_id).where(DeliveryRow.status.in_((PENDING, HELD))))))
    if case_ids is not None:
        q = q.where(OutboxRow.case_id.in_(case_ids))
    stale = list(session.scalars(q))
    if not stale:
        return 0
    n = 0
    for i in range(0, len(stale), 500):
        part = stale[i:i + 500]
        n += session.execute(update(DeliveryRow).where(DeliveryRow.outbox_id.in_(part),
                                                       DeliveryRow.status.in_((PENDING, HELD)))
                             .values(status=CANCELLED, claim_owner=None, claim_token=None, claimed_until=None)
                             .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
        session.execute(update(OutboxRow).where(OutboxRow.id.in_(part)).values(status=CANCELLED)
                        .execution_options(synchronize_session=False))
    return n


__all__ = ["CANCELLED", "DEAD", "DELIVERY_STATUSES", "HELD", "NOTICE_STATUSES", "PENDING", "QUEUED", "SENT", "SKIPPED",
           "Notice", "cancel_stale", "enqueue", "existing_keys"]
