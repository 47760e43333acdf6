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

import orjson
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from notifications.directory import Recipient
from notifications.models import CANCELLED, DEAD, HELD, PENDING, QUEUED, SENT, SKIPPED, DeliveryRow, OutboxRow
from workflow.audit import canonical, chain, iso
from workflow.errors import Conflict
from workflow.models import CaseRow
from workflow.repository import _cursor

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
    """Which of ``keys`` the outbox already holds (one indexed IN query per 500 keys)."""
    found: set[str] = set()
    if not keys:
        return found
    if session.new or session.dirty or session.deleted:
        session.flush()
    sql, cur, _ = _cursor(session)
    try:
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            cur.execute("SELECT dedup_key FROM outbox WHERE dedup_key IN (" + ", ".join([sql.p] * len(part)) + ")",
                        part)
            found.update(k for (k,) in cur.fetchall())
    finally:
        cur.close()
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
    _enqueue(session, notices, now=now)


def _outbox_insert(sql: Any, n: int) -> str:
    key = ("outbox", n)
    hit = _STATEMENTS.get((sql.p, key))
    if hit is None:
        ctx = sql.p if sql.sqlite else f"CAST({sql.p} AS JSON)"
        one = "(" + ", ".join([sql.p] * 10 + [ctx] + [sql.p] * 2) + ")"
        hit = _STATEMENTS[(sql.p, key)] = (
            "INSERT INTO outbox (dedup_key, campaign_id, case_id, branch_code, stage, deadline, rung, kind, "
            "supervision_order, status, context, due_at, created_at) VALUES " + ", ".join([one] * n)
            + " RETURNING id, dedup_key")
    return hit


def _multi_insert(sql: Any, table: str, cols: str, width: int, n: int) -> str:
    key = (table, n)
    hit = _STATEMENTS.get((sql.p, key))
    if hit is None:
        one = "(" + ", ".join([sql.p] * width) + ")"
        hit = _STATEMENTS[(sql.p, key)] = f"INSERT INTO {table} {cols} VALUES " + ", ".join([one] * n)
    return hit


# prebuilt multi-row statements by (placeholder, (table, rows)); a batch has at most a few sizes
_STATEMENTS: dict[tuple[str, tuple[str, int]], str] = {}
_OUTBOX_BATCH, _DELIVERY_BATCH, _EVENT_BATCH = 500, 1000, 1000  # ≤ 13,000 parameters a statement
_DELIVERY_COLS = "(outbox_id, recipient, recipient_name, status, attempts, next_attempt_at)"
_EVENT_COLS = "(case_id, seq, kind, at, actor, body, prev_hash, hash)"


def _enqueue(session: Session, notices: list[Notice], *, now: dt.datetime) -> None:
    # Prebuilt multi-row INSERTs on the DBAPI cursor of the session's connection (as workflow.repository's
    # save): SQLAlchemy's per-row parameter processing cost more than the writes. Values are converted as
    # the column types do (ISO text dates and naive-UTC text timestamps on SQLite), so these rows are
    # indistinguishable from ORM-written ones.
    if session.new or session.dirty or session.deleted:
        session.flush()  # rows the caller's unit of work still holds (a case, a campaign) come first
    sql, cur, dbapi = _cursor(session)
    try:
        _write(sql, cur, notices, now=now)
    except dbapi.IntegrityError as exc:
        raise Conflict("提醒扫描期间有支部被同时修改（或另一节点同时扫描），本次扫描未生效，下次扫描将重做") from exc
    finally:
        cur.close()


def _write(sql: Any, cur: Any, notices: list[Notice], *, now: dt.datetime) -> None:
    day = sql.day
    seen: dict[dt.datetime, Any] = {}  # a page's notices share a handful of send times

    def ts(t: dt.datetime) -> Any:
        v = seen.get(t)
        if v is None:
            v = seen[t] = sql.ts(t)
        return v

    now_v = ts(now)
    ids: dict[str, int] = {}
    for i in range(0, len(notices), _OUTBOX_BATCH):
        part = notices[i:i + _OUTBOX_BATCH]
        params: list[Any] = []
        for n in part:
            params += (n.key, n.campaign_id, n.case_id, n.branch_code, n.stage, day(n.deadline), n.rung, n.kind,
                       n.supervision_order, n.status, orjson.dumps(n.context, option=orjson.OPT_NON_STR_KEYS).decode(), ts(n.due_at), now_v)
        cur.execute(_outbox_insert(sql, len(part)), params)
        ids.update({k: oid for oid, k in cur.fetchall()})
    deliveries: list[tuple[Any, ...]] = []
    for n in notices:
        if n.status == QUEUED and n.recipients:
            at = ts(min(n.due_at, now))
            oid = ids[n.key]
            deliveries += [(oid, r.email, r.name[:100], PENDING, 0, at) for r in n.recipients]
    for i in range(0, len(deliveries), _DELIVERY_BATCH):
        part_d = deliveries[i:i + _DELIVERY_BATCH]
        cur.execute(_multi_insert(sql, "outbox_deliveries", _DELIVERY_COLS, 6, len(part_d)),
                    [v for row in part_d for v in row])
    events: list[tuple[Any, ...]] = []
    versions: list[dict[str, Any]] = []
    heads: dict[int, dict[str, Any]] = {}  # a case with two notices in one batch (issue 12: up the tree) chains them
    isos: dict[dt.datetime, str] = {}  # the events' time is ``now`` for nearly every case
    for n in notices:
        if n.case_id is None or n.status != QUEUED:
            continue
        at = now if n.last_at is None or now >= n.last_at else n.last_at
        at_iso = isos.get(at)
        if at_iso is None:
            at_iso = isos[at] = iso(at)
        at_v = ts(at)
        head = heads.get(n.case_id)
        prev, seq = (head["_hash"], head["_new"]) if head is not None else (n.last_hash, n.version)
        for kind, payload in _event_payloads(n):
            seq += 1
            body = canonical({"kind": kind, "at": at_iso, "actor": SYSTEM, "stage": n.stage, "payload": payload})
            digest = chain(prev, body)
            events.append((n.case_id, seq, kind, at_v, SYSTEM, body, prev, digest))
            n.events.append({"kind": kind, "seq": seq})
            prev = digest
        if head is not None:
            head.update(_new=seq, _hash=prev)
            continue
        heads[n.case_id] = {"_id": n.case_id, "_old": n.version, "_new": seq, "_hash": prev}
        versions.append(heads[n.case_id])
    for i in range(0, len(events), _EVENT_BATCH):
        part_e = events[i:i + _EVENT_BATCH]
        cur.execute(_multi_insert(sql, "events", _EVENT_COLS, 8, len(part_e)), [v for row in part_e for v in row])
    if versions:
        p = sql.p
        cur.executemany(f"UPDATE cases SET version = {p}, updated_at = {p} WHERE id = {p} AND version = {p}",
                        [(h["_new"], now_v, h["_id"], h["_old"]) for h in versions])
        # both drivers (sqlite3, psycopg 3) report executemany's total row count
        if cur.rowcount != len(versions):
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
