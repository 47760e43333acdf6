"""Row ↔ domain: load a case with what its rules need, and append events with their chain.

Nothing here commits: the caller owns the transaction.
"""

from __future__ import annotations

import copy
import datetime as dt
import weakref
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from states.base import Role, Stage
from workflow.audit import GENESIS, canonical, chain, iso
from workflow.campaign import Campaign, parse_campaign_text
from workflow.case import BranchFacts, State, apply, current_grade, new_state
from workflow.errors import InvalidInput, NotFound
from workflow.models import (
    Branch,
    CampaignRow,
    CaseRow,
    Committee,
    EventRow,
    GeneralBranch,
    Person,
    RoleAssignment,
)


@lru_cache(maxsize=64)
def _parse_cached(code: str, config: str) -> Campaign:
    return parse_campaign_text(config, source=f"campaign:{code}")


def campaign_of(row: CampaignRow) -> Campaign:
    return _parse_cached(row.code, row.config)


def get_campaign_row(session: Session, code: str | None = None, *, committee_id: int | None = None) -> CampaignRow:
    """The campaign with ``code``; with no code, the newest of ``committee_id`` — or, with no committee
    either, the newest of all when no two committees have campaigns of their own, else
    :class:`workflow.tenancy.CampaignAmbiguous` (issue 12)."""
    if code:
        row = session.scalar(select(CampaignRow).where(CampaignRow.code == code))
        if row is None:
            raise NotFound(f"找不到活动 {code!r}")
        return row
    from workflow.tenancy import latest_campaign

    return latest_campaign(session, committee_id=committee_id)


def get_branch(session: Session, code: str) -> Branch:
    b = session.scalar(select(Branch).where(Branch.code == code))
    if b is None:
        raise NotFound(f"找不到党支部 {code!r}")
    return b


def committee_size(session: Session, committee_code: str) -> int:
    """Members of the committee; cached for the session's life (a request or a command), since the
    quorum is read on every move and membership does not change in the middle of one."""
    cache = session.info.setdefault("branchflow.committee_size", {})
    if committee_code not in cache:
        cache[committee_code] = _count_members(session, committee_code)
    return int(cache[committee_code])


_MEMBERS = (select(func.count()).select_from(RoleAssignment)
            .where(RoleAssignment.role == Role.committee_member.value, RoleAssignment.scope_code == bindparam("code")))


def _count_members(session: Session, committee_code: str) -> int:
    return int(session.scalar(_MEMBERS, {"code": committee_code}) or 0)


@dataclass(slots=True, kw_only=True)
class CaseRecord:
    """The ``cases`` row as loaded (plain values, not an ORM instance: the hot path skips the unit of work)."""

    id: int
    campaign_id: int
    branch_id: int
    stage: str
    grade: str | None
    deadline: dt.date | None
    state: dict[str, Any]
    version: int
    updated_raw: Any  # as the driver returned it (SQLite: naive UTC text); read through ``updated_at``

    @property
    def updated_at(self) -> dt.datetime:
        return _Sql.read_ts(self.updated_raw)  # type: ignore[return-value]


@dataclass(frozen=True, slots=True, kw_only=True)
class BranchRecord:
    """The ``branches`` row of a loaded case."""

    id: int
    code: str
    name: str
    branch_type: str
    committee_id: int
    general_branch_id: int | None
    secretary_name: str
    secretary_email: str
    member_count: int
    last_reelection: dt.date | None
    last_activity: dt.date | None
    secretary_violation: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignRecord:
    """The ``campaigns`` row of a loaded case."""

    id: int
    code: str
    name: str
    year: int
    config: str
    created_at: dt.datetime


@dataclass(kw_only=True)
class LoadedCase:
    """A case as the services use it: rows, parsed campaign, facts and the current (mutable) state."""

    row: CaseRecord
    campaign_row: CampaignRecord
    campaign: Campaign
    branch: BranchRecord
    committee_code: str
    general_branch_code: str | None
    facts: BranchFacts
    state: State
    last_hash: str
    last_at_raw: Any  # the chain head's ``at`` as stored (SQLite: naive UTC text), compared in that form
    sql: _Sql
    pending: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last_at(self) -> dt.datetime | None:
        """The time of the last event (chain head), or None for a case without events."""
        return _Sql.read_ts(self.last_at_raw)

    @property
    def stage(self) -> Stage:
        value = self.state["stage"]
        hit = _STAGE_BY_VALUE.get(value)
        return hit if hit is not None else Stage(value)  # an unknown value raises as Stage(...) does

    @property
    def version(self) -> int:
        return self.row.version


# a dict lookup instead of Enum.__call__ on the hot path (the stage is read several times a call)
_STAGE_BY_VALUE: dict[str, Stage] = {s.value: s for s in Stage}


def facts_of(session: Session, branch: Branch | BranchRecord, committee_code: str) -> BranchFacts:
    return BranchFacts(
        code=branch.code,
        name=branch.name,
        branch_type=branch.branch_type,
        member_count=branch.member_count,
        committee_size=committee_size(session, committee_code),
        last_reelection=branch.last_reelection,
        last_activity=branch.last_activity,
        secretary_violation=branch.secretary_violation,
    )


def scope_codes(session: Session, branch: Branch) -> tuple[str, str | None]:
    committee = session.get(Committee, branch.committee_id)
    gb = session.get(GeneralBranch, branch.general_branch_id) if branch.general_branch_id else None
    assert committee is not None
    return committee.code, gb.code if gb else None


# --- the hot path: prebuilt SQL on the DBAPI cursor of the session's own connection ---------------
# SQLAlchemy's statement machinery cost more than the statements themselves (a profile of the service
# path: 62 % of the CPU in SQLAlchemy, 6 % in sqlite3). The case is loaded in ONE round trip (case,
# branch, committee and general-branch codes, campaign, and the chain head joined on seq = version), and
# saved as one UPDATE … WHERE version = old plus one multi-row INSERT of the events, on the connection
# (and so in the transaction) the caller's session holds. The values are converted here exactly as the
# column types do (SQLite keeps dates as ISO text and UTCDateTime as naive UTC text with microseconds),
# so rows written here and rows written through SQLAlchemy are indistinguishable.

_LOAD_SELECT = (
    "SELECT c.id, c.campaign_id, c.branch_id, c.stage, c.grade, c.deadline, {state}, c.version, c.updated_at, "
    "b.id, b.code, b.name, b.branch_type, b.committee_id, b.general_branch_id, b.secretary_name, "
    "b.secretary_email, b.member_count, b.last_reelection, b.last_activity, b.secretary_violation, "
    "cm.code, gb.code, e.hash, e.at, k.code, "
    "(SELECT max(x.seq) FROM campaign_changes x WHERE x.campaign_id = k.id) "
    "FROM cases c JOIN branches b ON b.id = c.branch_id "
    "JOIN campaigns k ON k.id = c.campaign_id "
    "JOIN committees cm ON cm.id = b.committee_id "
    "LEFT JOIN general_branches gb ON gb.id = b.general_branch_id "
    "LEFT JOIN events e ON e.case_id = c.id AND e.seq = c.version "
    "WHERE b.code = {p} AND "
)
# the latest campaign of the branch's own committee (or a pre-tenancy one, which covers every committee)
_LATEST = ("c.campaign_id = (SELECT l.id FROM campaigns l WHERE l.committee_id = b.committee_id "
           "OR l.committee_id IS NULL ORDER BY l.year DESC, l.id DESC LIMIT 1)")
_EVENT_COLS = "(case_id, seq, kind, at, actor, body, prev_hash, hash)"


class _Sql:
    """The statements and value conversions of one dialect (``?`` and text dates on SQLite, ``%s`` and
    native types on PostgreSQL), built once per dialect."""

    def __init__(self, dialect: str) -> None:
        self.sqlite = dialect == "sqlite"
        p = self.p = "?" if self.sqlite else "%s"
        base = _LOAD_SELECT.format(state="c.state" if self.sqlite else "CAST(c.state AS TEXT)", p=p)
        self.load_by_code = base + f"k.code = {p}"
        self.load_latest = base + _LATEST
        state = p if self.sqlite else f"CAST({p} AS JSON)"
        # The save sets the indexed columns (stage, grade, deadline) only when they change: most calls
        # (a record, a signature) change the state alone, and an indexed column in the SET list costs
        # its index entries' rewrite even when the value is the same. One statement per combination.
        self.updates = {
            (st, gr, dl): ("UPDATE cases SET " + ", ".join(
                [f"state = {state}"] + [f"{c} = {p}" for c, on in (("stage", st), ("grade", gr), ("deadline", dl)) if on]
                + [f"updated_at = {p}", f"version = {p}"]) + f" WHERE id = {p} AND version = {p}")
            for st in (False, True) for gr in (False, True) for dl in (False, True)
        }
        self._inserts: dict[int, str] = {}
        self._ts_memo: tuple[dt.datetime | None, str] = (None, "")
        # A case that leaves its stage (or whose deadline moves) no longer needs the reminders queued for
        # the old one: they are cancelled here, in the same transaction, through the (case_id, status)
        # index — instead of a scan of every pending delivery on every sweep. Two variants, so that no
        # parameter is only ever compared with NULL (PostgreSQL could not type it).
        # Mirrors notifications.outbox.cancel_stale (which the dispatcher still runs before it claims):
        # deliveries not yet sent — pending or held — are cancelled and their claim released.
        pending = ("EXISTS (SELECT 1 FROM outbox_deliveries d WHERE d.outbox_id = outbox.id "
                   "AND d.status IN ('pending', 'held'))")
        moved = f"UPDATE outbox SET status = 'cancelled' WHERE case_id = {p} AND status = 'queued' AND {pending} AND "
        self.cancel_outbox = moved + f"(stage <> {p} OR deadline IS NULL OR deadline <> {p})"
        self.cancel_outbox_no_deadline = moved + f"({p} = {p})"
        self.cancel_deliveries = (
            "UPDATE outbox_deliveries SET status = 'cancelled', claim_owner = NULL, claim_token = NULL, "
            "claimed_until = NULL WHERE status IN ('pending', 'held') AND outbox_id IN "
            f"(SELECT id FROM outbox WHERE case_id = {p} "
            "AND status = 'cancelled')")

    def insert_events(self, n: int) -> str:
        sql = self._inserts.get(n)
        if sql is None:
            one = "(" + ", ".join([self.p] * 8) + ")"
            sql = self._inserts[n] = f"INSERT INTO events {_EVENT_COLS} VALUES " + ", ".join([one] * n)
        return sql

    # values in and out
    def ts(self, t: dt.datetime) -> Any:
        if not self.sqlite:
            return t
        memo = self._ts_memo  # a call writes the same instant several times (its events, updated_at)
        if memo[0] is t:
            return memo[1]
        text = t.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        self._ts_memo = (t, text)
        return text

    def stored_at(self, t: dt.datetime, iso_text: str) -> Any:
        """The stored value of ``t`` whose ISO text (``audit.iso``: ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, UTC) is
        at hand: on SQLite the same naive UTC text as :meth:`ts` without converting the time again."""
        if not self.sqlite:
            return t
        return iso_text[:10] + " " + iso_text[11:26]

    def before(self, t: dt.datetime, stored_t: Any, stored_other: Any) -> bool:
        """``t < other`` where ``other`` is a stored time: SQLite's fixed-width naive UTC text (26 characters,
        as :meth:`ts` writes it) compares in order as text; any other shape is parsed first."""
        if isinstance(stored_other, str):
            if len(stored_other) == 26 and stored_other[10] == " " and isinstance(stored_t, str):
                return stored_t < stored_other
            stored_other = self.read_ts(stored_other)
        return t < stored_other  # type: ignore[no-any-return]

    def day(self, d: dt.date | None) -> Any:
        return d.isoformat() if self.sqlite and d is not None else d

    @staticmethod
    def read_ts(v: Any) -> dt.datetime | None:
        if v is None:
            return None
        if isinstance(v, str):
            v = dt.datetime.fromisoformat(v)
        return v.replace(tzinfo=dt.UTC) if v.tzinfo is None else v.astimezone(dt.UTC)  # type: ignore[no-any-return]

    @staticmethod
    def read_day(v: Any) -> dt.date | None:
        return dt.date.fromisoformat(v) if isinstance(v, str) else v


_SQL: dict[str, _Sql] = {}


def _cursor(session: Session) -> tuple[_Sql, Any, Any]:
    """The dialect's statements, a DBAPI cursor on the session's connection, and the driver module.

    ``session.connection()`` costs more than the statements of a small call, so the driver connection is
    kept in ``session.info`` for as long as the session's transaction is the same one (a new transaction
    may run on another pooled connection)."""
    tx = session.get_transaction()
    hit = session.info.get("branchflow.dbapi")
    if tx is not None and hit is not None and hit[0] is tx and tx.is_active:
        return hit[1], hit[2].cursor(), hit[3]
    conn = session.connection()
    name = conn.dialect.name
    sql = _SQL.get(name)
    if sql is None:
        sql = _SQL[name] = _Sql(name)
    driver = conn.connection.driver_connection
    session.info["branchflow.dbapi"] = (session.get_transaction(), sql, driver, conn.dialect.dbapi, conn.engine)
    return sql, driver.cursor(), conn.dialect.dbapi  # type: ignore[union-attr]


def _engine(session: Session) -> Any:
    """The engine of the connection :func:`_cursor` holds for the session's transaction."""
    hit = session.info.get("branchflow.dbapi")
    return hit[4] if hit is not None else session.get_bind().engine


# Parsed campaigns by id; an entry is used only while the stored configuration is the same text.
_CAMPAIGNS: dict[int, tuple[str, Campaign]] = {}

# The hot path's campaigns, per database (engine) and campaign id, valid while the campaign's change log
# has the same last seq: every change of a configuration appends to that log in the same transaction
# (workflow/campaigns.py), so the load does not fetch and compare the configuration's text each time
# (a few KB a case). A configuration rewritten behind the log's back is what ``audit verify`` reports.
_HOT: weakref.WeakKeyDictionary[Any, dict[int, tuple[int | None, CampaignRecord, Campaign]]] = \
    weakref.WeakKeyDictionary()
_CAMPAIGN_SQL = {"sqlite": "SELECT name, year, config, created_at FROM campaigns WHERE id = ?",
                 "postgresql": "SELECT name, year, config, created_at FROM campaigns WHERE id = %s"}


def _loaded_campaign(session: Session, sql: _Sql, campaign_id: int, code: str,
                     change_seq: int | None) -> tuple[CampaignRecord, Campaign]:
    engine = _engine(session)
    per_db = _HOT.get(engine)
    if per_db is None:
        per_db = _HOT[engine] = {}
    hit = per_db.get(campaign_id)
    if hit is not None and hit[0] == change_seq and hit[1].code == code:
        return hit[1], hit[2]
    _, cur, _ = _cursor(session)
    try:
        cur.execute(_CAMPAIGN_SQL["sqlite" if sql.sqlite else "postgresql"], (campaign_id,))
        name, year, config, created_at = cur.fetchone()
    finally:
        cur.close()
    record = CampaignRecord(id=campaign_id, code=code, name=name, year=year, config=config,
                            created_at=sql.read_ts(created_at))  # type: ignore[arg-type]
    campaign = _campaign(campaign_id, code, config)
    per_db[campaign_id] = (change_seq, record, campaign)
    return record, campaign


def _campaign(campaign_id: int, code: str, config: str) -> Campaign:
    hit = _CAMPAIGNS.get(campaign_id)
    if hit is not None and hit[0] == config:
        return hit[1]
    parsed = _parse_cached(code, config)
    _CAMPAIGNS[campaign_id] = (config, parsed)
    return parsed


# The branches of recently loaded cases, per database: the row's values as loaded (the key that keeps an
# entry valid: any change to the branch's row shows as different values) with its record and codes, and
# the facts per committee size. Bounded (oldest out first), so memory stays flat however many branches.
_BRANCH_CACHE_SIZE = 4096
_BRANCHES: weakref.WeakKeyDictionary[Any, dict[int, tuple[tuple[Any, ...], BranchRecord, dict[int, BranchFacts]]]] = \
    weakref.WeakKeyDictionary()


def _branch(session: Session, sql: _Sql, values: tuple[Any, ...]) -> tuple[BranchRecord, BranchFacts]:
    """The branch record and facts of the load's branch columns (``values``: id … committee and general-branch
    codes), reused while the same branch comes back with the same values."""
    engine = _engine(session)
    per_db = _BRANCHES.get(engine)
    if per_db is None:
        per_db = _BRANCHES[engine] = {}
    hit = per_db.get(values[0])
    committee_code = values[12]
    size = committee_size(session, committee_code)
    if hit is not None and hit[0] == values:
        record, by_size = hit[1], hit[2]
        facts = by_size.get(size)
        if facts is None:
            facts = by_size[size] = facts_of(session, record, committee_code)
        return record, facts
    record = BranchRecord(id=values[0], code=values[1], name=values[2], branch_type=values[3],
                          committee_id=values[4], general_branch_id=values[5], secretary_name=values[6],
                          secretary_email=values[7], member_count=values[8],
                          last_reelection=sql.read_day(values[9]), last_activity=sql.read_day(values[10]),
                          secretary_violation=bool(values[11]))
    facts = facts_of(session, record, committee_code)
    if hit is None and len(per_db) >= _BRANCH_CACHE_SIZE:
        del per_db[next(iter(per_db))]
    per_db[values[0]] = (values, record, {size: facts})
    return record, facts


def load_case(session: Session, branch_code: str, campaign_code: str | None = None, *, lock: bool = False) -> LoadedCase:
    """Load a case with everything its rules need in one round trip; the state is decoded once."""
    session.flush()  # the raw read below must see what the caller's unit of work still holds (a no-op when clean)
    sql, cur, _ = _cursor(session)
    q, params = ((sql.load_by_code, (branch_code, campaign_code)) if campaign_code
                 else (sql.load_latest, (branch_code,)))
    if lock and not sql.sqlite:
        q += " FOR UPDATE OF c"
    cur.execute(q, params)
    r = cur.fetchone()
    cur.close()
    if r is None:
        known = get_branch(session, branch_code)  # raises NotFound naming what is missing
        camp_row = get_campaign_row(session, campaign_code, committee_id=known.committee_id)
        raise NotFound(f"党支部 {branch_code} 在活动 {camp_row.code} 中没有立案")
    # decoded once: the projection's row and the loaded case share it (nobody else holds it, so append
    # changes it in place; the row's stage and deadline stay the loaded ones, to see what the save moved)
    state = orjson.loads(r[6]) if isinstance(r[6], str | bytes) else copy.deepcopy(r[6])
    row = CaseRecord(id=r[0], campaign_id=r[1], branch_id=r[2], stage=r[3], grade=r[4], deadline=sql.read_day(r[5]),
                     state=state, version=r[7], updated_raw=r[8])
    branch, facts = _branch(session, sql, r[9:23])
    camp, campaign = _loaded_campaign(session, sql, r[1], r[25], r[26])
    return LoadedCase(
        row=row,
        campaign_row=camp,
        campaign=campaign,
        branch=branch,
        committee_code=r[21],
        general_branch_code=r[22],
        facts=facts,
        state=state,
        last_hash=r[23] if r[23] is not None else GENESIS,
        last_at_raw=r[24],
        sql=sql,
    )


def effective_deadline(campaign: Campaign, state: State) -> dt.date | None:
    stage = _STAGE_BY_VALUE.get(state["stage"]) or Stage(state["stage"])
    if stage is Stage.accepted or state.get("closed"):  # a closed case (dissolved branch) is due nothing
        return None
    override = state.get("deadlines", {}).get(stage.value)
    if override:
        return dt.date.fromisoformat(override)
    return campaign.deadline_for(stage)


_ISO_MEMO: tuple[dt.datetime | None, str] = (None, "")


def _iso(at: dt.datetime) -> str:
    """``iso(at)``, remembered for the last instant (a call appends its events at one ``now``)."""
    global _ISO_MEMO
    memo = _ISO_MEMO
    if memo[0] is at:
        return memo[1]
    text = iso(at)
    _ISO_MEMO = (at, text)
    return text


def append(session: Session, case: LoadedCase, *, kind: str, actor: str, at: dt.datetime,
           payload: dict[str, Any]) -> dict[str, Any]:
    """Apply an event to the loaded state and add its chained row; the projection is saved by :func:`save`."""
    at_text = _iso(at)
    sql = case.sql
    stored = sql.stored_at(at, at_text)
    if case.last_at_raw is not None and sql.before(at, stored, case.last_at_raw):
        raise InvalidInput(
            f"时间不能倒退：该支部最近一条记录时间为 {iso(case.last_at)}，本次操作时间为 {iso(at)}"  # type: ignore[arg-type]
        )
    event = {"kind": kind, "at": at_text, "actor": actor, "stage": case.state["stage"], "payload": payload}
    # The loaded state is this call's private copy, so it is changed in place; a refusal further on
    # raises and the whole LoadedCase is dropped with the rolled-back transaction.
    case.state = apply(case.state, event, in_place=True)
    body = canonical(event)
    seq = case.row.version + len(case.pending) + 1
    digest = chain(case.last_hash, body)
    case.rows.append({"case_id": case.row.id, "seq": seq, "kind": kind, "at": at, "stored_at": stored,
                      "actor": actor, "body": body, "prev_hash": case.last_hash, "hash": digest})
    case.last_hash = digest
    case.last_at_raw = stored
    case.pending.append(event)
    return event


def save(session: Session, case: LoadedCase, *, now: dt.datetime) -> None:
    """Write the projection under an optimistic version check, then the new events.

    Two statements on the session's connection: one UPDATE … WHERE version = old, which matches no row
    when someone else moved the case first (raised as ``StaleDataError``), and one multi-row INSERT of
    the events, whose (case_id, seq) unique key is a second line of defence (also a ``StaleDataError``).
    When the case left its stage or its deadline moved, the notices queued for the old one are cancelled.
    """
    if not case.pending:
        return
    row = case.row
    old, new = row.version, row.version + len(case.pending)
    stage = case.state["stage"]
    deadline = effective_deadline(case.campaign, case.state)
    grade = current_grade(case.state)
    sql, cur, dbapi = _cursor(session)
    try:
        moved, regraded, redated = stage != row.stage, grade != row.grade, deadline != row.deadline
        values: list[Any] = [orjson.dumps(case.state, option=orjson.OPT_NON_STR_KEYS).decode()]
        if moved:
            values.append(stage)
        if regraded:
            values.append(grade)
        if redated:
            values.append(sql.day(deadline))
        last = case.rows[-1]
        stored_now = last["stored_at"] if last["at"] is now else sql.ts(now)
        values += (stored_now, new, row.id, old)
        cur.execute(sql.updates[moved, regraded, redated], values)
        if cur.rowcount != 1:
            raise StaleDataError(f"case {row.id} is no longer at version {old}")
        params: list[Any] = []
        for e in case.rows:
            params += (e["case_id"], e["seq"], e["kind"], e["stored_at"], e["actor"], e["body"], e["prev_hash"],
                       e["hash"])
        cur.execute(sql.insert_events(len(case.rows)), params)
        if moved or redated:
            if deadline is None:
                cur.execute(sql.cancel_outbox_no_deadline, (row.id, stage, stage))
            else:
                cur.execute(sql.cancel_outbox, (row.id, stage, sql.day(deadline)))
            if cur.rowcount:
                cur.execute(sql.cancel_deliveries, (row.id,))
    except dbapi.IntegrityError as exc:
        raise StaleDataError(f"case {row.id}: event seq already taken ({exc})") from exc
    finally:
        cur.close()
    row.state, row.stage, row.grade, row.deadline = case.state, stage, grade, deadline
    row.updated_raw, row.version = stored_now, new
    case.pending = []
    case.rows = []


def open_cases(session: Session, campaign_row: CampaignRow, branches: list[tuple[int, str]], *,
               at: dt.datetime, actor: str = "system", start: dict[str, Any] | None = None) -> int:
    """Open the cases of ``branches`` (id, code) in the campaign, each with its chained ``opened`` event.

    In a campaign opened from last year's (``previous_id``) the event carries each branch's previous grade
    and where it comes from (workflow/yearover.py, lineage included); ``start`` (``start_stage``,
    ``start_reason``) opens a branch founded mid-campaign at the campaign's current stage.
    Written as two multi-row INSERTs (cases, then events) rather than a flush per case.
    """
    if not branches:
        return 0
    campaign = campaign_of(campaign_row)
    previous: dict[str, dict[str, Any]] = {}
    if campaign_row.previous_id is not None:
        from workflow.yearover import previous_grades

        previous = previous_grades(session, campaign_row, [c for _, c in branches])
    rows = []
    events = []
    for branch_id, code in branches:
        state = new_state(campaign_row.code, code)
        payload: dict[str, Any] = {"campaign": campaign_row.code, "branch": code}
        if campaign_row.previous_id is not None:
            prev = previous.get(code, {})
            payload["previous_grade"] = prev.get("grade")
            payload["previous"] = prev.get("detail", {"sources": [], "rule": "无上一年度记录（新建支部）"})
        if start:
            payload.update(start)
        event = {"kind": "opened", "at": iso(at), "actor": actor,
                 "stage": str((start or {}).get("start_stage", Stage.survey.value)), "payload": payload}
        apply(state, event, in_place=True)
        rows.append({"campaign_id": campaign_row.id, "branch_id": branch_id, "stage": state["stage"], "grade": None,
                     "deadline": effective_deadline(campaign, state), "state": state, "version": 1, "updated_at": at,
                     "previous_grade": state.get("previous_grade")})
        events.append(canonical(event))
    session.execute(insert(CaseRow), rows)
    ids = dict(session.execute(
        select(CaseRow.branch_id, CaseRow.id).where(CaseRow.campaign_id == campaign_row.id,
                                                   CaseRow.branch_id.in_([b for b, _ in branches]))
    ).tuples().all())
    session.execute(insert(EventRow), [
        {"case_id": ids[b], "seq": 1, "kind": "opened", "at": at, "actor": actor, "body": body,
         "prev_hash": GENESIS, "hash": chain(GENESIS, body)}
        for (b, _), body in zip(branches, events)
    ])
    return len(branches)


def person_by_email(session: Session, email: str) -> Person:
    p = session.scalar(select(Person).where(Person.email == email.strip().lower()))
    if p is None:
        raise NotFound(f"找不到用户 {email!r}")
    return p
