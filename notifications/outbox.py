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
import json.encoder
from collections.abc import Callable
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
    native = _native(sql, cur)
    style = sql.p if native is None else "$"
    try:
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            q = _STATEMENTS.get((style, "keys", len(part)))
            if q is None:
                q = _STATEMENTS[(style, "keys", len(part))] = (
                    "SELECT dedup_key FROM outbox WHERE dedup_key IN " + _values(style, len(part), 1))
            c = cur if native is None else native
            c.execute(q, part)
            found.update(k for (k,) in c.fetchall())
    finally:
        if native is not None:
            native.close()
        cur.close()
    return found


# The string encoder json.dumps(..., ensure_ascii=False) itself uses (the C one when present), so a string
# written with it is byte-for-byte what canonical() writes for it.
_JSON_STR: Callable[[str], str] = json.encoder.encode_basestring
_LITERALS: dict[object, str] = {True: "true", False: "false", None: "null"}
_KEYS: dict[str, str] = {}  # '"key":' by key (the payloads' few keys)


def _flat_json(d: dict[str, Any]) -> str | None:
    """``canonical(d)`` for a flat dict — str keys; values str, int, bool, None or a list of str — else None.

    Written as json.dumps writes it: keys sorted, ``,`` and ``:``, each string through the same encoder
    (a str subclass too: json.dumps encodes its characters alike), an int by ``int.__repr__``, so the
    bytes are identical; anything else (a float, a nested dict, a key not a str) → None."""
    try:
        keys = sorted(d)
    except TypeError:
        return None
    enc = _JSON_STR
    parts: list[str] = []
    for k in keys:
        if type(k) is not str:
            return None
        kj = _KEYS.get(k)
        if kj is None:
            kj = enc(k) + ":"
            if len(_KEYS) < 256:
                _KEYS[k] = kj
        v = d[k]
        t = type(v)
        if t is str:
            parts.append(kj + enc(v))
        elif t is list:
            try:
                parts.append(kj + "[" + ",".join(map(enc, v)) + "]")
            except TypeError:  # an element that is not a string
                return None
        elif t is int:
            parts.append(kj + int.__repr__(v))
        elif v is None or t is bool:
            parts.append(kj + _LITERALS[v])
        else:
            return None
    return "{" + ",".join(parts) + "}"


def event_body(kind: str, at: str, actor: str, stage: str, payload: dict[str, Any]) -> str:
    """The event's hashed bytes: exactly ``canonical({"kind", "at", "actor", "stage", "payload"})``, written
    directly for the sweep's flat payloads (a fresh encoder per json.dumps call cost more than the rest),
    through canonical() itself for any other shape (tests/unit/test_event_body.py compares the two)."""
    p = _flat_json(payload) if type(payload) is dict else None
    if p is None or not (type(kind) is str and type(at) is str and type(actor) is str and type(stage) is str):
        return canonical({"kind": kind, "at": at, "actor": actor, "stage": stage, "payload": payload})
    enc = _JSON_STR  # the keys in sorted order: actor, at, kind, payload, stage
    return '{"actor":' + enc(actor) + ',"at":' + enc(at) + ',"kind":' + enc(kind) + ',"payload":' + p + ',"stage":' + enc(stage) + "}"


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


def _values(style: str, width: int, n: int, *, first: int = 1, json_at: int | None = None,
            cast: str | None = None) -> str:
    """``n`` rows of ``width`` placeholders — ``?`` (SQLite), ``%s`` (psycopg) or PostgreSQL's own
    numbered ``$1, $2, …`` from ``first`` on; cell ``json_at`` cast to JSON, every cell to ``cast``."""
    rows = []
    k = first
    for _ in range(n):
        cells = []
        for j in range(width):
            ph = f"${k}" if style == "$" else style
            k += 1
            if j == json_at:
                ph = f"CAST({ph} AS JSON)"
            elif cast:
                ph = f"CAST({ph} AS {cast})"
            cells.append(ph)
        rows.append("(" + ", ".join(cells) + ")")
    return ", ".join(rows)


def _outbox_insert(style: str, n: int) -> str:
    key = (style, "outbox", n)
    hit = _STATEMENTS.get(key)
    if hit is None:
        hit = _STATEMENTS[key] = (
            "INSERT INTO outbox (dedup_key, campaign_id, case_id, branch_code, stage, deadline, rung, kind, "
            "supervision_order, status, context, due_at, created_at) VALUES "
            + _values(style, 13, n, json_at=None if style == "?" else 10) + " RETURNING id, dedup_key")
    return hit


def _multi_insert(style: str, table: str, cols: str, width: int, n: int) -> str:
    key = (style, table, n)
    hit = _STATEMENTS.get(key)
    if hit is None:
        hit = _STATEMENTS[key] = f"INSERT INTO {table} {cols} VALUES " + _values(style, width, n)
    return hit


def _versions_update(n: int) -> str:
    """PostgreSQL: n cases' versions moved in one statement, each only from its old version (the row count
    says how many were); ``$1`` is the time."""
    key = ("$", "versions", n)
    hit = _STATEMENTS.get(key)
    if hit is None:
        hit = _STATEMENTS[key] = (
            "UPDATE cases SET version = v.new, updated_at = $1 FROM (VALUES " + _values("$", 3, n, first=2, cast="INTEGER")
            + ") AS v (id, old, new) WHERE cases.id = v.id AND cases.version = v.old")
    return hit


# prebuilt multi-row statements by (placeholder style, table, rows); a batch has at most a few sizes
_STATEMENTS: dict[tuple[str, str, int], str] = {}
_OUTBOX_BATCH, _DELIVERY_BATCH, _EVENT_BATCH = 500, 1000, 1000  # ≤ 13,000 parameters a statement
_VERSIONS_BATCH = 1000
_DELIVERY_COLS = "(outbox_id, recipient, recipient_name, status, attempts, next_attempt_at)"
_EVENT_COLS = "(case_id, seq, kind, at, actor, body, prev_hash, hash)"


def _native(sql: Any, cur: Any) -> Any:
    """On psycopg 3, a cursor on the same connection that sends ``$n`` statements as they are.

    psycopg parses a ``%s`` statement to rewrite it as ``$n`` and caches that only up to 4 KB of text: a
    500-row INSERT was parsed again by regular expressions at each execute, ≈ 60 % of a PostgreSQL
    sweep's client CPU. None on SQLite or another driver (the ``%s`` statements are used then)."""
    if sql.sqlite:
        return None
    try:
        import psycopg
    except ImportError:
        return None
    raw = getattr(psycopg, "RawCursor", None)  # psycopg ≥ 3.2
    if raw is None or not isinstance(cur, psycopg.Cursor):
        return None
    return raw(cur.connection)


def _enqueue(session: Session, notices: list[Notice], *, now: dt.datetime) -> None:
    # Prebuilt multi-row INSERTs on the DBAPI cursor of the session's connection (as workflow.repository's
    # save): SQLAlchemy's per-row parameter processing cost more than the writes. Values are converted as
    # the column types do (ISO text dates and naive-UTC text timestamps on SQLite), so these rows are
    # indistinguishable from ORM-written ones.
    if session.new or session.dirty or session.deleted:
        session.flush()  # rows the caller's unit of work still holds (a case, a campaign) come first
    sql, cur, dbapi = _cursor(session)
    native = _native(sql, cur)
    try:
        if native is not None:
            _write(sql, native, notices, now=now, style="$")
        else:
            _write(sql, cur, notices, now=now, style=sql.p)
    except dbapi.IntegrityError as exc:
        raise Conflict("提醒扫描期间有支部被同时修改（或另一节点同时扫描），本次扫描未生效，下次扫描将重做") from exc
    finally:
        if native is not None:
            native.close()
        cur.close()


def _write(sql: Any, cur: Any, notices: list[Notice], *, now: dt.datetime, style: str) -> None:
    to_ts, to_day = sql.ts, sql.day
    stamps: dict[dt.datetime, Any] = {}  # a page's notices share a handful of send times …
    days: dict[dt.date | None, Any] = {}  # … and deadlines

    def ts(t: dt.datetime) -> Any:
        v = stamps.get(t)
        if v is None:
            v = stamps[t] = to_ts(t)
        return v

    now_v = ts(now)
    dumps, non_str = orjson.dumps, orjson.OPT_NON_STR_KEYS
    ids: dict[str, int] = {}
    for i in range(0, len(notices), _OUTBOX_BATCH):
        part = notices[i:i + _OUTBOX_BATCH]
        params: list[Any] = []
        for n in part:
            d = n.deadline
            d_v = days[d] if d in days else days.setdefault(d, to_day(d))
            params += (n.key, n.campaign_id, n.case_id, n.branch_code, n.stage, d_v, n.rung, n.kind,
                       n.supervision_order, n.status, dumps(n.context, option=non_str).decode(), ts(n.due_at), now_v)
        cur.execute(_outbox_insert(style, len(part)), params)
        ids.update({k: oid for oid, k in cur.fetchall()})
    deliveries: list[Any] = []  # flat: 6 values a delivery
    for n in notices:
        if n.status == QUEUED and n.recipients:
            at = ts(min(n.due_at, now))
            oid = ids[n.key]
            for r in n.recipients:
                deliveries += (oid, r.email, r.name[:100], PENDING, 0, at)
    step = 6 * _DELIVERY_BATCH
    for i in range(0, len(deliveries), step):
        part_d = deliveries[i:i + step]
        cur.execute(_multi_insert(style, "outbox_deliveries", _DELIVERY_COLS, 6, len(part_d) // 6), part_d)
    events: list[Any] = []  # flat: 8 values an event
    versions: list[dict[str, Any]] = []
    heads: dict[int, dict[str, Any]] = {}  # a case with two notices in one batch (issue 12: up the tree) chains them
    # the event's time, its ISO text and its stored value, by the case's last event time (``now`` nearly always)
    times: dict[dt.datetime | None, tuple[dt.datetime, str, Any]] = {}
    system = SYSTEM
    for n in notices:
        if n.case_id is None or n.status != QUEUED:
            continue
        hit = times.get(n.last_at)
        if hit is None:
            at = now if n.last_at is None or now >= n.last_at else n.last_at
            hit = times[n.last_at] = (at, iso(at), ts(at))
        _, at_iso, at_v = hit
        head = heads.get(n.case_id)
        prev, seq = (head["_hash"], head["_new"]) if head is not None else (n.last_hash, n.version)
        for kind, payload in _event_payloads(n):
            seq += 1
            body = event_body(kind, at_iso, system, n.stage, payload)
            digest = chain(prev, body)
            events += (n.case_id, seq, kind, at_v, system, body, prev, digest)
            n.events.append({"kind": kind, "seq": seq})
            prev = digest
        if head is not None:
            head.update(_new=seq, _hash=prev)
            continue
        heads[n.case_id] = {"_id": n.case_id, "_old": n.version, "_new": seq, "_hash": prev}
        versions.append(heads[n.case_id])
    step = 8 * _EVENT_BATCH
    for i in range(0, len(events), step):
        part_e = events[i:i + step]
        cur.execute(_multi_insert(style, "events", _EVENT_COLS, 8, len(part_e) // 8), part_e)
    if not versions:
        return
    if style == "$":
        moved = 0
        for i in range(0, len(versions), _VERSIONS_BATCH):
            part_v = versions[i:i + _VERSIONS_BATCH]
            cur.execute(_versions_update(len(part_v)), [now_v] + [v for h in part_v for v in (h["_id"], h["_old"], h["_new"])])
            moved += cur.rowcount
    else:
        p = sql.p
        cur.executemany(f"UPDATE cases SET version = {p}, updated_at = {p} WHERE id = {p} AND version = {p}",
                        [(h["_new"], now_v, h["_id"], h["_old"]) for h in versions])
        moved = cur.rowcount  # both drivers (sqlite3, psycopg 3) report executemany's total row count
    if moved != len(versions):
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
           "Notice", "cancel_stale", "enqueue", "event_body", "existing_keys"]
