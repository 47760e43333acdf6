"""Master data that rules read, recorded as hash-chained events.

A branch's facts (the veto rules read its re-election and activity dates and the secretary-violation
flag), a person with their roles (who may act; committee membership makes the quorum), a general branch
and a committee are *subjects* (``branch:B001``, ``person:a@b.cn``, ``general_branch:GB1``,
``committee:C1``, and ``lineage:ID`` for a branch reorganised, issue 12). Every change made through branchflow (import, ``person add``) appends an event to that
subject's chain whose body is the canonical JSON snapshot of the subject after the change:

    body = canonical({"subject", "kind", "at", "actor", "data"})   hash = sha256(prev_hash ‖ body)

like a branch's events (:func:`workflow.audit.chain`). The events are leaves of the one Merkle log.
:func:`verify_master` checks each chain and that the tables today equal the last snapshot — so a fact
edited in the ``branches`` table directly, behind branchflow's back, is reported.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator
from functools import partial
from typing import Any

import orjson
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from workflow.audit import GENESIS, canonical, chain, iso
from workflow.models import (
    BranchLineageRow,
    CampaignRow,
    Committee,
    GeneralBranch,
    MasterEventRow,
    Person,
    RoleAssignment,
)

KINDS = ("committee", "general_branch", "branch", "person", "lineage")
IMPORT_ACTOR = "(导入)"
BASELINE_ACTOR = "(启用审计日志时的既有数据)"
CHUNK = 900  # under SQLite's bound-parameter limit


def _date(d: dt.date | None) -> str | None:
    return d.isoformat() if d else None


def _day(v: Any) -> str | None:
    """A date column's value as the driver gives it (ISO text on SQLite, a date on PostgreSQL) → ISO text."""
    return v if isinstance(v, str) or v is None else str(v.isoformat())


_BRANCH_ROWS = ("SELECT code, name, branch_type, committee_id, general_branch_id, secretary_name, secretary_email, "
                "member_count, last_reelection, last_activity, secretary_violation, dissolved_on FROM branches")


def snapshots(session: Session, wanted: set[str] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every subject with its current data, from the tables (plain rows, no ORM objects).

    With ``wanted``, only the tables those subjects live in are read (and people by e-mail), so recording
    one person's change costs one person's rows, not a walk over every branch."""
    session.flush()  # the branches are read on the driver's cursor, which sees only what is flushed
    kinds = None if wanted is None else {w.split(":", 1)[0] for w in wanted}
    if kinds is not None and kinds <= {"person"}:
        emails = sorted(w.split(":", 1)[1] for w in wanted or ())
        for i in range(0, len(emails), CHUNK):
            chunk = emails[i:i + CHUNK]
            people = list(session.execute(select(Person.id, Person.email, Person.name).where(Person.email.in_(chunk))))
            roles_of: dict[int, list[list[str]]] = {}
            for pid, role, scope in session.execute(
                    select(RoleAssignment.person_id, RoleAssignment.role, RoleAssignment.scope_code)
                    .where(RoleAssignment.person_id.in_([p[0] for p in people]))):
                roles_of.setdefault(pid, []).append([role, scope])
            for pid, email, name in people:
                yield f"person:{email}", {"email": email, "name": name, "roles": sorted(roles_of.get(pid, []))}
        return
    committees: dict[int, str] = {i: c for i, c in session.execute(select(Committee.id, Committee.code))}
    gbs: dict[int, str] = {i: c for i, c in session.execute(select(GeneralBranch.id, GeneralBranch.code))}
    for code, name in session.execute(select(Committee.code, Committee.name)):
        yield f"committee:{code}", {"code": code, "name": name}
    for _gid, code, name, cid in session.execute(
            select(GeneralBranch.id, GeneralBranch.code, GeneralBranch.name, GeneralBranch.committee_id)):
        yield f"general_branch:{code}", {"code": code, "name": name, "committee": committees.get(cid)}
    # the branches (the most rows by far) straight from the driver: SQLAlchemy's row machinery cost more than
    # building the snapshots; the dates come as ISO text from SQLite (its storage format is isoformat's) and
    # as dates from PostgreSQL, and are written as ISO text either way
    from workflow.repository import _cursor

    _, cur, _ = _cursor(session)
    try:
        cur.execute(_BRANCH_ROWS)
        while rows := cur.fetchmany(2000):
            for code, name, branch_type, cid, gbid, sec_name, sec_email, members, reelection, activity, violation, \
                    dissolved in rows:
                data = {
                    "code": code, "name": name, "branch_type": branch_type,
                    "committee": committees.get(cid),
                    "general_branch": gbs.get(gbid) if gbid is not None else None,
                    "secretary_name": sec_name, "secretary_email": sec_email,
                    "member_count": members, "last_reelection": _day(reelection),
                    "last_activity": _day(activity), "secretary_violation": bool(violation),
                }
                if dissolved is not None:  # only when set, so snapshots recorded before issue 12 still match
                    data["dissolved_on"] = _day(dissolved)
                yield f"branch:{code}", data
    finally:
        cur.close()
    campaigns: dict[int, str] = {i: c for i, c in session.execute(select(CampaignRow.id, CampaignRow.code))}
    for lr in session.execute(select(BranchLineageRow).order_by(BranchLineageRow.id)).scalars():
        yield f"lineage:{lr.id}", {  # a branch split, merged, renamed, dissolved or founded (workflow/lineage.py)
            "kind": lr.kind, "from": lr.from_code, "to": lr.to_code, "committee": committees.get(lr.committee_id),
            "campaign": campaigns.get(lr.campaign_id) if lr.campaign_id is not None else None,
            "at": iso(lr.at), "actor": lr.actor, "reason": lr.reason,
        }
    roles: dict[int, list[list[str]]] = {}
    for pid, role, scope in session.execute(
            select(RoleAssignment.person_id, RoleAssignment.role, RoleAssignment.scope_code)):
        roles.setdefault(pid, []).append([role, scope])
    for pid, email, name in session.execute(select(Person.id, Person.email, Person.name)):
        yield f"person:{email}", {"email": email, "name": name, "roles": sorted(roles.get(pid, []))}


def heads(session: Session, subjects: Iterable[str] | None = None) -> dict[str, tuple[int, str, dict[str, Any] | None]]:
    """Each subject's last event: (seq, hash, data) — data None if the subject was removed."""
    last = (select(MasterEventRow.subject, func.max(MasterEventRow.seq).label("seq"))
            .group_by(MasterEventRow.subject))
    out: dict[str, tuple[int, str, dict[str, Any] | None]] = {}
    wanted = None if subjects is None else list(subjects)
    chunks = [None] if wanted is None else [wanted[i:i + CHUNK] for i in range(0, len(wanted), CHUNK)]
    for chunk in chunks:
        q = last if chunk is None else last.where(MasterEventRow.subject.in_(chunk))
        sub = q.subquery()
        for subject, seq, h, body in session.execute(
                select(MasterEventRow.subject, MasterEventRow.seq, MasterEventRow.hash, MasterEventRow.body)
                .join(sub, (sub.c.subject == MasterEventRow.subject) & (sub.c.seq == MasterEventRow.seq))):
            ev = json.loads(body)
            out[subject] = (seq, h, None if ev.get("kind") == "removed" else ev.get("data"))
    return out


def record_master_changes(session: Session, *, actor: str, at: dt.datetime | None = None,
           subjects: Iterable[str] | None = None) -> int:
    """Append an event for every subject (or the given ones) whose data differ from its last snapshot,
    including subjects that disappeared. Returns how many events were written."""
    at = at or dt.datetime.now(dt.UTC)
    session.flush()
    if subjects is None:
        return _record_everything(session, actor=actor, at=at)
    wanted = set(subjects)
    current = {s: d for s, d in snapshots(session, wanted) if s in wanted}
    last = heads(session, wanted)
    rows = _changes(sorted(set(current) | set(last)), current, last, actor=actor, at=at)
    if rows:
        session.execute(insert(MasterEventRow), rows)
    return len(rows)


def _changes(subjects: Iterable[str], current: dict[str, Any], last: dict[str, tuple[int, str, dict[str, Any] | None]],
             *, actor: str, at: dt.datetime) -> list[dict[str, Any]]:
    """The events that bring each subject's chain from its last snapshot to its current data."""
    rows: list[dict[str, Any]] = []
    when = iso(at)
    for subject in subjects:
        data = current.get(subject)
        head = last.get(subject)
        if head is not None and head[2] == data:
            continue
        if head is None and data is None:
            continue
        kind = "removed" if data is None else ("recorded" if head is None else "changed")
        seq, prev = (head[0], head[1]) if head else (0, GENESIS)
        body = canonical({"subject": subject, "kind": kind, "at": when, "actor": actor, "data": data})
        rows.append({"subject": subject, "seq": seq + 1, "kind": kind, "at": at, "actor": actor, "body": body,
                     "prev_hash": prev, "hash": chain(prev, body)})
    return rows


BATCH = 2000  # subjects compared and written at a time when every subject is recorded


def _record_everything(session: Session, *, actor: str, at: dt.datetime) -> int:
    """Every subject, a batch at a time (an import of a province: memory flat in the number of subjects —
    holding every snapshot, head and event at once cost ≈ 3 KB a subject): the tables' snapshots are
    streamed, each batch's heads read by subject, its events written; then the subjects that left the
    tables (their last event not a removal) are recorded as removed."""
    seen: set[str] = set()
    written = 0
    stream = snapshots(session)
    while True:
        batch = dict(itertools.islice(stream, BATCH))
        if not batch:
            break
        seen.update(batch)
        rows = _changes(batch, batch, heads(session, list(batch)), actor=actor, at=at)
        if rows:
            session.execute(insert(MasterEventRow), rows)
            written += len(rows)
    gone = [sub for sub in session.scalars(select(MasterEventRow.subject).distinct()) if sub not in seen]
    for i in range(0, len(gone), BATCH):
        part = sorted(gone[i:i + BATCH])
        rows = _changes(part, {}, heads(session, part), actor=actor, at=at)
        if rows:
            session.execute(insert(MasterEventRow), rows)
            written += len(rows)
    return written


def baseline_if_empty(session: Session, *, at: dt.datetime | None = None, bulk: bool = True) -> int:
    """On a database upgraded with master data but no master events yet: record what is there once.

    ``bulk`` (the default) writes the same rows as :func:`record_master_changes` would (:func:`_baseline_bulk`)."""
    if session.scalar(select(MasterEventRow.id).limit(1)) is not None:
        return 0
    if not bulk:
        return record_master_changes(session, actor=BASELINE_ACTOR, at=at)
    return _baseline_bulk(session, at=at or dt.datetime.now(dt.UTC))


BASELINE_CHUNK = 20_000


def _baseline_bulk(session: Session, *, at: dt.datetime) -> int:
    """Every subject's first event into an empty log, on the driver (COPY on PostgreSQL, executemany on SQLite),
    a chunk at a time: on an empty log :func:`record_master_changes` writes exactly these rows — seq 1,
    ``recorded``, after GENESIS, in the order :func:`snapshots` gives the subjects — through the ORM, which at a
    million branches took most of the baseline's time."""
    session.flush()
    conn = session.connection()
    pg = conn.dialect.name == "postgresql"
    when = iso(at)
    # the column as UTCDateTime stores it: aware UTC on PostgreSQL, SQLAlchemy's naive ISO text on SQLite
    stored: Any = at.astimezone(dt.UTC) if pg else at.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    dbapi: Any = conn.connection.driver_connection
    cols = "subject, seq, kind, at, actor, body, prev_hash, hash"
    written = 0
    stream = snapshots(session)
    while True:
        rows = []
        for subject, data in itertools.islice(stream, BASELINE_CHUNK):
            body = canonical({"subject": subject, "kind": "recorded", "at": when, "actor": BASELINE_ACTOR, "data": data})
            rows.append((subject, 1, "recorded", stored, BASELINE_ACTOR, body, GENESIS, chain(GENESIS, body)))
        if not rows:
            break
        cur = dbapi.cursor()
        try:
            if pg:
                with cur.copy(f"COPY master_events ({cols}) FROM STDIN") as cp:
                    for r in rows:
                        cp.write_row(r)
            else:
                cur.executemany(f"INSERT INTO master_events ({cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        finally:
            cur.close()
        written += len(rows)
    return written


def _loads(body: str) -> Any:
    """``json.loads``, by orjson where it can (it rejects NaN, Infinity and lone surrogates: json then decides)."""
    try:
        return orjson.loads(body)
    except ValueError:
        return json.loads(body)


def _walk(rows: Iterable[Any], broken: set[str],
          last: dict[str, tuple[int, str, dict[str, Any] | None]]) -> Iterator[tuple[str, int | None, str]]:
    """Check the chains of ``(subject, seq, body, prev_hash, hash)`` rows ordered by subject and seq; fill
    ``broken`` and each unbroken subject's last event ``(seq, hash, data)``."""
    prev: str | None = None
    expected_seq = 0
    prev_hash = GENESIS
    sha256 = hashlib.sha256
    for subject, seq, body, ph, h in rows:
        if subject != prev:
            prev, expected_seq, prev_hash = subject, 0, GENESIS
        expected_seq += 1
        ev: Any = None
        if seq != expected_seq:
            broken.add(subject)
            yield subject, seq, f"序号应为 {expected_seq}，实为 {seq}：记录被删除或插入"
        elif ph != prev_hash:
            broken.add(subject)
            yield subject, seq, "前一记录哈希不符：记录被删除、插入或调换了顺序"
        elif sha256((ph + body).encode("utf-8")).hexdigest() != h:  # = chain(ph, body)
            broken.add(subject)
            yield subject, seq, "哈希不符：记录内容被修改"
        else:
            try:
                ev = _loads(body)
                ok = ev.get("subject") == subject
            except ValueError:
                ok = False
            if not ok:
                broken.add(subject)
                yield subject, seq, "记录内容无效或属于别的对象"
        if subject not in broken:  # a broken subject's table row is not compared, so its head is not needed
            last[subject] = (seq, h, None if ev.get("kind") == "removed" else ev.get("data"))
        expected_seq, prev_hash = seq, h


def verify_master(session: Session) -> Iterator[tuple[str, int | None, str]]:
    """(subject, seq, problem) for every broken chain and every table row that differs from its record.

    One walk over the events (by subject, then seq) checks the chains and keeps each subject's last event,
    which is what :func:`heads` would read (``(subject, seq)`` is unique, so the last is the highest seq)."""
    broken: set[str] = set()
    last: dict[str, tuple[int, str, dict[str, Any] | None]] = {}
    # Rows straight from the driver, as audit.verify reads events (server-side on PostgreSQL: memory stays flat).
    dbapi: Any = session.connection().connection.driver_connection
    sqlite = session.get_bind().dialect.name == "sqlite"
    cur = dbapi.cursor() if sqlite else dbapi.cursor(name="bf_verify_master")
    try:
        cur.execute("SELECT subject, seq, body, prev_hash, hash FROM master_events ORDER BY subject, seq")
        # psycopg's server-side cursor steps row by row in Python; its batches are plain lists
        stream = cur if sqlite else itertools.chain.from_iterable(iter(partial(cur.fetchmany, 10000), []))
        rows = list(_walk(stream, broken, last))
    finally:
        cur.close()
    yield from rows
    current = dict(snapshots(session))
    for subject in sorted(set(current) | set(last)):
        if subject in broken:
            continue
        data = current.get(subject)
        head = last.get(subject)
        if head is None:
            yield subject, None, "数据表中有此对象，但从未经 branchflow 记录：可能被直接写入数据库"
        elif data is None and head[2] is not None:
            yield subject, head[0], "数据表中此对象已不存在，但没有删除的记录：可能被直接从数据库删除"
        elif data is not None and head[2] != data:
            diff = sorted(k for k in set(data) | set(head[2] or {}) if data.get(k) != (head[2] or {}).get(k))
            yield subject, head[0], f"数据表与最后一次记录不一致（{', '.join(diff)}）：可能被直接修改了数据库"
