"""Case tallies (issue 12, point 6): how many cases per key, kept by database triggers (migration 0014).

Two tables, both maintained in the transaction of every write to ``cases`` and of a branch moving
committee or general branch, whoever writes (the services' raw statements, importer, year-over, lineage,
bulk loads):

* ``case_tallies`` (campaign, the branch's committee, stage, grade, last year's grade, signed grade,
  re-grade, deadline → n): the roll-up and :func:`workflow.views.campaign_stats`;
* ``case_tallies_gb`` (campaign, committee, general branch, stage, grade, deadline → n): the dashboard.

Keys are NOT NULL (the primary key is the triggers' upsert target): "none" is ``''`` for a grade, ``0`` for
a committee or general branch, :data:`NO_DEADLINE` for a deadline (never before today, as NULL never is).
A row may hold ``n = 0`` after its last case moved on; readers sum and drop those.

This module reads the tallies (:func:`rollup_by_group`, :func:`rollup_by_committee`, :func:`dashboard_groups`, :func:`stats_groups`),
recomputes them from the cases (:func:`expected`, :func:`rebuild`) and compares (:func:`tallies_check`,
for ``audit verify``).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Date,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    false,
    func,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.orm import Session

from states.base import Stage
from workflow.models import Branch, CaseRow, Committee, GeneralBranch

NO_DEADLINE = dt.date(9999, 12, 31)
TRIGGERS = (("cases", "trg_cases_tally_insert"), ("cases", "trg_cases_tally_update"),
            ("cases", "trg_cases_tally_delete"), ("branches", "trg_branches_tally_move"))

_meta = MetaData()
case_tallies = Table(
    "case_tallies", _meta,
    Column("campaign_id", Integer, primary_key=True), Column("committee_id", Integer, primary_key=True),
    Column("stage", String(32), primary_key=True), Column("grade", String(32), primary_key=True),
    Column("previous_grade", String(32), primary_key=True), Column("final_grade", String(32), primary_key=True),
    Column("regrade", String(32), primary_key=True), Column("deadline", Date, primary_key=True),
    Column("n", Integer, nullable=False),
)
case_tallies_gb = Table(
    "case_tallies_gb", _meta,
    Column("campaign_id", Integer, primary_key=True), Column("committee_id", Integer, primary_key=True),
    Column("general_branch_id", Integer, primary_key=True), Column("stage", String(32), primary_key=True),
    Column("grade", String(32), primary_key=True), Column("deadline", Date, primary_key=True),
    Column("n", Integer, nullable=False),
)
CT_KEY = ("campaign_id", "committee_id", "stage", "grade", "previous_grade", "final_grade", "regrade", "deadline")
GB_KEY = ("campaign_id", "committee_id", "general_branch_id", "stage", "grade", "deadline")


def _none(v: str) -> str | None:
    return v or None


# --- reading ------------------------------------------------------------------------------------------

def _late(t: Any) -> Any:
    """Overdue cases of a tally row: deadline before ``:today`` and not accepted."""
    return func.sum(case((and_(t.c.deadline < bindparam("today", type_=Date), t.c.stage != Stage.accepted.value),
                          t.c.n), else_=0))


def _by_group(dialect: str) -> Any:
    """The roll-up's sums per (group, stage, grade, last year's grade), each campaign in the group the JSON
    object ``:groups`` (campaign id → group number) gives it; campaigns not named are left out."""
    t = case_tallies
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import JSONB

        g = func.jsonb_each_text(cast(bindparam("groups", type_=String), JSONB)).table_valued("key", "value", name="g")
    else:
        g = func.json_each(bindparam("groups", type_=String)).table_valued("key", "value", name="g")
    grp = cast(g.c.value, Integer)
    return (select(grp, t.c.stage, t.c.grade, t.c.previous_grade, func.sum(t.c.n), _late(t))
            .select_from(t.join(g, t.c.campaign_id == cast(g.c.key, Integer)))
            .group_by(grp, t.c.stage, t.c.grade, t.c.previous_grade)
            .having(func.sum(t.c.n) != 0))


_BY_GROUP = {d: _by_group(d) for d in ("postgresql", "sqlite")}  # built once per dialect


def rollup_by_group(session: Session, groups: str, today: dt.date) -> list[tuple[int, str, str | None, str | None,
                                                                                int, int]]:
    """(group, stage, grade, last year's grade, n, overdue) summed over the campaigns of each group;
    ``groups`` is a JSON object campaign id → group number (the roll-up's row and grade scale): the
    tallies are summed in the server per group, not per campaign."""
    rows = session.execute(_BY_GROUP[_dialect(session)], {"groups": groups, "today": today}).tuples()
    return [(int(no), stage, grade or None, prev or None, int(n), int(late or 0))
            for no, stage, grade, prev, n, late in rows]


_BY_COMMITTEE = (
    select(Committee.id, Committee.path, case_tallies.c.campaign_id, case_tallies.c.stage, case_tallies.c.grade,
           case_tallies.c.previous_grade, func.sum(case_tallies.c.n), _late(case_tallies))
    .select_from(case_tallies.join(Committee, Committee.id == case_tallies.c.committee_id))
    .where(case_tallies.c.campaign_id.in_(bindparam("ids", expanding=True)),
           Committee.path.startswith(bindparam("prefix"), autoescape=False))
    .group_by(Committee.id, Committee.path, case_tallies.c.campaign_id, case_tallies.c.stage, case_tallies.c.grade,
              case_tallies.c.previous_grade)
    .having(func.sum(case_tallies.c.n) != 0))


def rollup_by_committee(session: Session, campaign_ids: Sequence[int], today: dt.date, *, prefix: str
                        ) -> list[tuple[int, str, int, str, str | None, str | None, int, int]]:
    """(branch's committee, its path, campaign, stage, grade, last year's grade, n, overdue) over the
    campaigns, for the branches of the committees whose path starts with ``prefix`` (a pre-tenancy campaign
    covers every committee: the roll-up credits each committee's branches)."""
    rows = session.execute(_BY_COMMITTEE, {"ids": list(campaign_ids), "prefix": prefix, "today": today}).tuples()
    return [(int(cid), path, int(camp), stage, grade or None, prev or None, int(n), int(late or 0))
            for cid, path, camp, stage, grade, prev, n, late in rows]


def stats_groups(session: Session, campaign_id: int) -> list[tuple[str, str | None, str | None, int]]:
    """(stage, signed grade, re-grade, n) of one campaign."""
    t = case_tallies
    q = (select(t.c.stage, t.c.final_grade, t.c.regrade, func.sum(t.c.n))
         .where(t.c.campaign_id == campaign_id)
         .group_by(t.c.stage, t.c.final_grade, t.c.regrade).having(func.sum(t.c.n) != 0))
    return [(stage, _none(fin), _none(reg), int(n)) for stage, fin, reg, n in session.execute(q).all()]


def scope_condition(actor: Any) -> Any:
    """The reader's scope as a condition on ``case_tallies_gb`` — :func:`workflow.tenancy.branch_clause`
    (committees read, general branches worked in) on the tally's columns; ``None`` when the scope names
    single branches, which no tally row can tell apart (the caller groups the cases then). Memoised by the
    actor's roles (one clause object per scope: :func:`dashboard_groups` keeps its statement per clause)."""
    roles = actor.roles
    return _scope_condition(roles if isinstance(roles, frozenset) else frozenset(roles))


@lru_cache(maxsize=4096)
def _scope_condition(roles: frozenset[Any]) -> Any:
    from workflow import tenancy

    actor = _Roles(roles)
    sc = tenancy.scope_of(actor)
    t = case_tallies_gb
    if sc.everything:
        return true()
    if sc.branches:
        return None
    parts: list[Any] = []
    committees = tenancy.readable_committees(actor)
    if committees is not None and (sc.subtree or sc.committees):
        parts.append(t.c.committee_id.in_(committees))
    if sc.general_branches:
        parts.append(t.c.general_branch_id.in_(
            select(GeneralBranch.id).where(GeneralBranch.code.in_(sorted(sc.general_branches)))))
    return or_(*parts) if parts else false()


@dataclass(frozen=True)
class _Roles:
    """The roles alone, standing for the actor inside the memoised builders."""

    roles: frozenset[Any]


_DASHBOARD = (select(GeneralBranch.code, GeneralBranch.name, case_tallies_gb.c.stage, case_tallies_gb.c.grade,
                     func.sum(case_tallies_gb.c.n),
                     func.sum(case((case_tallies_gb.c.deadline < bindparam("today", type_=Date),
                                    case_tallies_gb.c.n), else_=0)))
              .select_from(case_tallies_gb)
              .outerjoin(GeneralBranch, GeneralBranch.id == case_tallies_gb.c.general_branch_id)
              .where(case_tallies_gb.c.campaign_id == bindparam("campaign"))
              .group_by(GeneralBranch.code, GeneralBranch.name, case_tallies_gb.c.stage, case_tallies_gb.c.grade)
              .having(func.sum(case_tallies_gb.c.n) != 0))


_BY_SCOPE: dict[int, tuple[Any, Any]] = {}  # id(scope clause) → (the clause, kept alive; its statement)


def _dashboard(where: Any) -> Any:
    """The dashboard's statement with the reader's scope (one per memoised scope clause; keyed by identity:
    a clause's ``==`` builds SQL)."""
    if where is None:
        return _DASHBOARD
    hit = _BY_SCOPE.get(id(where))
    if hit is None or hit[0] is not where:
        if len(_BY_SCOPE) > 4096:
            _BY_SCOPE.clear()
        hit = _BY_SCOPE[id(where)] = (where, _DASHBOARD.where(where))
    return hit[1]


def dashboard_groups(session: Session, campaign_id: int, today: dt.date,
                     where: Any = None) -> list[tuple[str | None, str | None, str, str | None, int, int]]:
    """(general branch code, its name, stage, grade, n, overdue = deadline before ``today``) of one campaign,
    as the dashboard's GROUP BY over the cases gave them (a branch outside any general branch: code and name
    None); ``where`` from :func:`scope_condition`. (The cases' query joined the branch's committee: every
    branch has one — ``branches.committee_id`` is a NOT NULL foreign key — so no join is needed here.)"""
    rows = session.execute(_dashboard(where), {"campaign": campaign_id, "today": today}).tuples()
    return [(gb, name, stage, grade or None, int(n), int(late or 0)) for gb, name, stage, grade, n, late in rows]


# --- recomputing and checking -------------------------------------------------------------------------

def _dialect(conn: Connection | Session) -> str:
    return conn.dialect.name if isinstance(conn, Connection) else conn.get_bind().dialect.name


def _state_field(conn: Connection | Session, column: Any, key: str) -> Any:
    if _dialect(conn) == "postgresql":
        return column.op("->>")(key)
    return func.json_extract(column, f"$.{key}")


def expected(session: Session, campaign_id: int | None = None) -> tuple[Counter[tuple[Any, ...]],
                                                                        Counter[tuple[Any, ...]]]:
    """Both tallies as a GROUP BY over the cases would give them now (keys as stored); one campaign's with
    ``campaign_id``."""
    c, b = CaseRow, Branch
    com = func.coalesce(b.committee_id, 0)
    gb = func.coalesce(b.general_branch_id, 0)
    grade, prev = func.coalesce(c.grade, ""), func.coalesce(c.previous_grade, "")
    fin = func.coalesce(_state_field(session, c.state, "final_grade"), "")
    reg = func.coalesce(_state_field(session, c.state, "regrade"), "")
    day = func.coalesce(c.deadline, NO_DEADLINE)
    ct_q = (select(c.campaign_id, com, c.stage, grade, prev, fin, reg, day, func.count())
            .select_from(c).outerjoin(b, b.id == c.branch_id)
            .group_by(c.campaign_id, com, c.stage, grade, prev, fin, reg, day))
    gb_q = (select(c.campaign_id, com, gb, c.stage, grade, day, func.count())
            .select_from(c).outerjoin(b, b.id == c.branch_id)
            .group_by(c.campaign_id, com, gb, c.stage, grade, day))
    if campaign_id is not None:
        ct_q, gb_q = ct_q.where(c.campaign_id == campaign_id), gb_q.where(c.campaign_id == campaign_id)
    return (Counter({_key(r[:-1]): int(r[-1]) for r in session.execute(ct_q)}),
            Counter({_key(r[:-1]): int(r[-1]) for r in session.execute(gb_q)}))


def stored(session: Session, campaign_id: int | None = None) -> tuple[Counter[tuple[Any, ...]],
                                                                      Counter[tuple[Any, ...]]]:
    """Both tallies as the tables hold them (rows of n = 0 left out); one campaign's with ``campaign_id``."""
    out: list[Counter[tuple[Any, ...]]] = []
    for table, key in ((case_tallies, CT_KEY), (case_tallies_gb, GB_KEY)):
        q = select(*[table.c[k] for k in key], table.c.n).where(table.c.n != 0)
        if campaign_id is not None:
            q = q.where(table.c.campaign_id == campaign_id)
        out.append(Counter({_key(r[:-1]): int(r[-1]) for r in session.execute(q)}))
    return out[0], out[1]


def _key(r: Iterable[Any]) -> tuple[Any, ...]:
    # SQLite hands a date back as text from a COALESCE; compare ISO strings everywhere
    return tuple(v.isoformat() if isinstance(v, dt.date) else v for v in r)


@dataclass(frozen=True)
class TallyDifference:
    """One key where a tally disagrees with the cases: ``table``, the key as named columns, counts."""

    table: str
    key: dict[str, Any]
    stored: int
    expected: int

    def message(self) -> str:
        shown = "，".join(f"{k}={v!r}" for k, v in self.key.items())
        return f"汇总表 {self.table}（{shown}）记为 {self.stored}，按案件统计应为 {self.expected}"


def tallies_check(session: Session, *, campaign_id: int | None = None) -> list[TallyDifference]:
    """Every key where ``case_tallies`` / ``case_tallies_gb`` disagree with a GROUP BY over the cases (empty:
    they agree); one campaign's keys only with ``campaign_id``. Reads every case (of the campaign) once —
    for ``audit verify``, not for a page."""
    want_ct, want_gb = expected(session, campaign_id)
    have_ct, have_gb = stored(session, campaign_id)
    out: list[TallyDifference] = []
    for name, key, have, want in (("case_tallies", CT_KEY, have_ct, want_ct),
                                  ("case_tallies_gb", GB_KEY, have_gb, want_gb)):
        for k in sorted(set(have) | set(want), key=lambda x: tuple(str(v) for v in x)):
            if have.get(k, 0) != want.get(k, 0):
                out.append(TallyDifference(name, dict(zip(key, k, strict=True)), have.get(k, 0), want.get(k, 0)))
    return out


def rebuild_statements(dialect: str) -> list[str]:
    """The SQL that recomputes both tallies from the cases (empties them first)."""
    pg = dialect == "postgresql"
    fin, reg = (("c.state->>'final_grade'", "c.state->>'regrade'") if pg else
                ("json_extract(c.state, '$.final_grade')", "json_extract(c.state, '$.regrade')"))
    day = "DATE '9999-12-31'" if pg else "'9999-12-31'"
    return [
        "DELETE FROM case_tallies",
        "DELETE FROM case_tallies_gb",
        (f"INSERT INTO case_tallies ({', '.join(CT_KEY)}, n) SELECT c.campaign_id, COALESCE(b.committee_id, 0), "
        f"c.stage, COALESCE(c.grade, ''), COALESCE(c.previous_grade, ''), COALESCE({fin}, ''), COALESCE({reg}, ''), "
        f"COALESCE(c.deadline, {day}), COUNT(*) FROM cases c LEFT JOIN branches b ON b.id = c.branch_id "
        "GROUP BY 1, 2, 3, 4, 5, 6, 7, 8"),
        (f"INSERT INTO case_tallies_gb ({', '.join(GB_KEY)}, n) SELECT c.campaign_id, COALESCE(b.committee_id, 0), "
        f"COALESCE(b.general_branch_id, 0), c.stage, COALESCE(c.grade, ''), COALESCE(c.deadline, {day}), COUNT(*) "
        "FROM cases c LEFT JOIN branches b ON b.id = c.branch_id GROUP BY 1, 2, 3, 4, 5, 6"),
    ]


def rebuild(conn: Connection | Session) -> None:
    """Recompute both tallies from the cases (a bulk load with the triggers off, or a repair after
    :func:`tallies_check` found differences), in the caller's transaction."""
    for stmt in rebuild_statements(_dialect(conn)):
        conn.execute(text(stmt))
