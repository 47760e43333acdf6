"""The hash-chained event log: canonical bytes, chaining, replay at a time and verification.

Per case, ``hash = sha256(prev_hash ‖ body)`` where ``body`` is the event's canonical JSON (sorted keys,
no spaces, UTF-8) *as stored*, and the first event's ``prev_hash`` is 64 zeros. Verifying reads the
stored bytes (no re-serialisation), checks that seq runs 1, 2, 3 … without gaps, that each event names
its predecessor's hash, that the indexed columns agree with the body, and finally that replaying the
events gives exactly the projection in ``cases``. It streams case by case, so memory stays flat.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from workflow.case import APPLIERS, UnknownEvent, apply, current_grade, new_state
from workflow.errors import InvalidInput
from workflow.models import Branch, CampaignRow, CaseRow, EventRow

GENESIS = "0" * 64


# What json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False) builds on every call,
# built once: the same encoder with the same options, so the bytes are the same (a fresh encoder per
# call cost more than encoding a small event).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def canonical(event: dict[str, Any]) -> str:
    return _CANONICAL(event)


def chain(prev_hash: str, body: str) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + body.encode("utf-8")).hexdigest()


def iso(t: dt.datetime) -> str:
    """``t`` in UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (the events' ``at``, hashed: the same text as
    ``isoformat(timespec="microseconds")`` with ``Z`` for ``+00:00``, which costs twice as much to call)."""
    u = t.astimezone(dt.UTC)
    s = u.isoformat()  # 'YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00': the fraction only when there are microseconds
    return s[:19] + (s[19:26] if u.microsecond else ".000000") + "Z"


def parse_iso(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s)


@dataclass(frozen=True, kw_only=True)
class Problem:
    campaign: str
    branch: str
    seq: int | None
    event_id: int | None
    problem: str

    def __str__(self) -> str:
        if self.branch == "(活动配置)":
            where = f"变更 #{self.seq}" if self.seq is not None else "活动配置"
        else:
            where = f"事件 #{self.seq}（id {self.event_id}）" if self.seq is not None else "当前状态表"
        return f"{self.campaign}/{self.branch} {where}：{self.problem}"


@dataclass(kw_only=True)
class Report:
    cases: int = 0
    events: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


MAX_PER_CHAIN = 20  # problems listed per chain; the rest are counted


_REPLAY_ERRORS = (UnknownEvent, KeyError, IndexError, TypeError, ValueError, AttributeError)


def _check_case(
    campaign: str, branch: str, case: Any, rows: Iterable[Any], report: Report,
    derived_deadline: Callable[[dict[str, Any]], dt.date | None] | None = None,
    at_equal: Callable[[str, Any], bool] | None = None,
) -> None:
    """Check one chain link by link. After a bad link it goes on checking (and counting) the rest of the
    chain against each event's stored predecessor, so every bad event is reported, not only the first.

    ``rows`` are ``(case_id, id, seq, kind, at, actor, body, prev_hash, hash, at_text)``: ``at_text`` is the
    stored ``at`` as the body writes it (``iso()``), or None where the database could not say. A link that
    passes every check at once (seq, predecessor, hash, a JSON object whose kind/actor/at equal the indexed
    columns, the first one the branch's opening in this campaign, a known kind, the replay still going) takes
    the fast path; any other goes through :func:`_link_problems`, which makes each check on its own and
    names every problem, exactly as before the fast path existed.
    """
    prev = GENESIS
    state: dict[str, Any] | None = new_state(campaign, branch)
    found = n = 0
    sha256, loads, appliers = hashlib.sha256, orjson.loads, APPLIERS  # orjson's errors are ValueErrors too
    equal_at = at_equal or _parsed_at_equal
    problems = report.problems
    for row in rows:
        n += 1
        _cid, rid, seq, kind, _at, actor, body, prev_hash, h, at_text = row
        if seq == n and prev_hash == prev and state is not None and at_text is not None \
                and sha256((prev_hash + body).encode("utf-8")).hexdigest() == h:  # = chain(prev_hash, body)
            try:
                ev = loads(body)  # a list, string, number or null fails the lookups below with a TypeError
                fast = ev["kind"] == kind and ev["actor"] == actor and ev["at"] == at_text
            except (KeyError, TypeError, ValueError):
                fast = False
            if fast and n == 1:  # the case's opening, in this branch and this campaign
                p = ev.get("payload")
                fast = kind == "opened" and type(p) is dict and p.get("branch") == branch \
                    and p.get("campaign") == campaign
            if fast and (fn := appliers.get(kind)) is not None:
                try:
                    fn(state, ev)  # = apply(state, ev, in_place=True)
                except _REPLAY_ERRORS as exc:
                    state = None
                    found += 1
                    if found <= MAX_PER_CHAIN:
                        problems.append(Problem(campaign=campaign, branch=branch, seq=seq, event_id=rid,
                                                problem=f"无法重放：{exc}"))
                prev = h
                continue
        bad_here = _link_problems(campaign, branch, n, prev, state, row, equal_at)
        if bad_here:
            state = None  # the replay stops at the first bad event; the links are still checked
            for msg in bad_here:
                found += 1
                if found <= MAX_PER_CHAIN:
                    problems.append(Problem(campaign=campaign, branch=branch, seq=seq, event_id=rid, problem=msg))
        prev = h
    report.events += n
    if found > MAX_PER_CHAIN:
        problems.append(Problem(campaign=campaign, branch=branch, seq=None, event_id=None,
                                problem=f"本链另有 {found - MAX_PER_CHAIN} 处问题未列出"))
    if case is None or state is None:
        return
    c_version, c_stage, c_grade, c_deadline, c_state, *rest = case
    prev_grade = state.get("previous_grade")
    c_prev = rest[0] if rest else prev_grade  # last year's grade (issue 12), a projection too
    if c_version != n:
        problems.append(
            Problem(campaign=campaign, branch=branch, seq=None, event_id=None,
                    problem=f"当前状态版本 {c_version} 与事件数 {n} 不符")
        )
        return
    want_deadline = derived_deadline(state) if derived_deadline is not None else c_deadline
    grade = current_grade(state)
    if (c_state != state or c_stage != state["stage"] or c_grade != grade
            or c_deadline != want_deadline or c_prev != prev_grade):
        diff = sorted(k for k in set(state) | set(c_state) if state.get(k) != c_state.get(k))
        if c_stage != state["stage"]:
            diff.insert(0, f"stage={c_stage}≠{state['stage']}")
        if c_grade != grade:
            diff.append(f"grade={c_grade}≠{grade}")
        if c_deadline != want_deadline:
            diff.append(f"deadline={c_deadline}≠{want_deadline}")
        if c_prev != prev_grade:
            diff.append(f"previous_grade={c_prev}≠{prev_grade}")
        problems.append(
            Problem(campaign=campaign, branch=branch, seq=None, event_id=None,
                    problem=f"当前状态与事件重放结果不一致（{', '.join(diff)}）")
        )


def _parsed_at_equal(body_at: str, stored: Any) -> bool:
    return bool(parse_iso(body_at) == stored)


def _link_problems(campaign: str, branch: str, expected_seq: int, prev: str, state: dict[str, Any] | None,
                   row: Any, equal_at: Callable[[str, Any], bool]) -> list[str]:
    """Every problem of one link, each check made on its own; replays the event into ``state`` if none."""
    _cid, _rid, seq, kind, at, actor, body, prev_hash, h, _at_text = row
    bad_here: list[str] = []
    if seq != expected_seq:
        bad_here.append(f"序号应为 {expected_seq}，实为 {seq}：事件被删除或插入")
    elif prev_hash != prev:
        bad_here.append("前一事件哈希不符：事件被删除、插入或调换了顺序")
    if hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest() != h:  # = chain(prev_hash, body)
        bad_here.append("哈希不符：事件内容被修改")
    ev: Any = None
    try:
        ev = orjson.loads(body)
    except ValueError:
        bad_here.append("事件内容不是有效的 JSON")
    if type(ev) is dict:
        try:
            same = ev["kind"] == kind and ev["actor"] == actor and equal_at(ev["at"], at)
        except (KeyError, TypeError, ValueError):
            bad_here.append("事件内容缺少或写错了 kind/actor/at")
        else:
            if not same:
                bad_here.append("索引列（kind/actor/at）与已签名的事件内容不一致")
        if expected_seq == 1 and not bad_here and (ev.get("kind") != "opened" or ev.get("payload", {}).get("branch") != branch
                                                   or ev.get("payload", {}).get("campaign") != campaign):
            bad_here.append("第一条事件不是本支部在本活动中的立案：事件链被挪到了别的支部")
    elif ev is not None:
        bad_here.append("事件内容不是对象")
    if state is not None and not bad_here:
        try:
            apply(state, ev, in_place=True)
        except _REPLAY_ERRORS as exc:
            bad_here.append(f"无法重放：{exc}")
    return bad_here


_CASES_SQL = ("SELECT c.id, cp.code, b.code, c.version, c.stage, c.grade, c.deadline, {state}, c.previous_grade FROM cases c "
              "JOIN campaigns cp ON cp.id = c.campaign_id JOIN branches b ON b.id = c.branch_id {where} ORDER BY c.id")
_EVENTS_SQL = ("SELECT e.case_id, e.id, e.seq, e.kind, e.at, e.actor, e.body, e.prev_hash, e.hash, {at_text} "
               "FROM events e {join} {where} ORDER BY e.case_id, e.seq")
# The stored instant as iso() writes it in the body, so the usual link compares two strings. SQLite holds
# SQLAlchemy's 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC); PostgreSQL renders the timestamptz in UTC. NULL where
# that is not so: the link then compares parsed instants as before.
_AT_TEXT = {
    "sqlite": "CASE WHEN typeof(e.at) = 'text' AND length(e.at) = 26 "
              "THEN substr(e.at, 1, 10) || 'T' || substr(e.at, 12) || 'Z' END",
    "postgresql": "CASE WHEN e.at >= TIMESTAMPTZ '0001-01-01 00:00:00+00' AND e.at < TIMESTAMPTZ '10000-01-01 00:00:00+00' "
                  "THEN to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') END",
}


def _sqlite_at_equal(body_at: str, stored: Any) -> bool:
    if isinstance(stored, str) and len(body_at) == 27 and body_at[-1] == "Z" and len(stored) == 26 \
            and body_at[:10] == stored[:10] and body_at[11:26] == stored[11:26]:
        return True  # the usual case, without parsing: SQLAlchemy's storage format of the same instant
    return parse_iso(body_at) == (dt.datetime.fromisoformat(stored).replace(tzinfo=dt.UTC)
                                  if isinstance(stored, str) else stored)


def _resolve_scope(session: Session, campaign_code: str | None, branch_code: str | None) -> tuple[int | None, int | None]:
    from workflow.errors import NotFound

    camp_id = branch_id = None
    if campaign_code is not None:
        camp_id = session.scalar(select(CampaignRow.id).where(CampaignRow.code == campaign_code))
        if camp_id is None:
            raise NotFound(f"找不到活动 {campaign_code!r}")
    if branch_code is not None:
        branch_id = session.scalar(select(Branch.id).where(Branch.code == branch_code))
        if branch_id is None:
            raise NotFound(f"找不到党支部 {branch_code!r}")
        q = select(CaseRow.id).where(CaseRow.branch_id == branch_id)
        if camp_id is not None:
            q = q.where(CaseRow.campaign_id == camp_id)
        if session.scalar(q.limit(1)) is None:
            raise NotFound(f"党支部 {branch_code} 在{'活动 ' + campaign_code if campaign_code else '任何活动'}中没有记录")
    return camp_id, branch_id


def verify(session: Session, *, campaign_code: str | None = None, branch_code: str | None = None,
           batch: int = 2000, case_range: tuple[int, int] | None = None, master: bool = True) -> Report:
    """Verify every chain (or one campaign's, or one branch's, or cases with ids in ``case_range`` =
    [lo, hi)) and the projection against the replay; unknown codes raise NotFound.

    Streams raw rows (two cursors: cases by id, events by case and seq), so memory stays flat.
    """
    del batch  # kept for callers; rows are streamed now
    report = Report()
    from workflow.campaigns import verify_changes

    camp_id, branch_id = _resolve_scope(session, campaign_code, branch_code)
    if branch_code is None and case_range is None:
        for camp, seq, problem in verify_changes(session):
            if campaign_code in (None, camp):
                report.problems.append(Problem(campaign=camp, branch="(活动配置)", seq=seq, event_id=None, problem=problem))
    if branch_code is None and case_range is None:
        _check_tallies(session, report, camp_id, campaign_code)
    if master and campaign_code is None and branch_code is None and case_range is None:
        from workflow.masterlog import verify_master

        for subject, seq, problem in verify_master(session):
            report.problems.append(Problem(campaign="(基础数据)", branch=subject, seq=seq, event_id=None, problem=problem))
    deadline_of = _deadlines(session, report, camp_id, branch_id)
    lo, hi = case_range if case_range is not None else (None, None)
    _verify_cases(session, report, deadline_of, camp_id=camp_id, branch_id=branch_id, lo=lo, hi=hi,
                  ranged=case_range is not None)
    return report


_Deadlines = dict[str, Callable[[dict[str, Any]], dt.date | None]]


def _deadlines(session: Session, report: Report, camp_id: int | None, branch_id: int | None) -> _Deadlines:
    """Each campaign's deadline rule, by code (only the campaigns in scope are parsed: 1,000 committees are
    1,000 configurations); a configuration that does not parse is a problem in ``report``."""
    from workflow.repository import campaign_of, effective_deadline

    deadline_of: _Deadlines = {}
    camps = select(CampaignRow)
    if camp_id is not None:
        camps = camps.where(CampaignRow.id == camp_id)
    elif branch_id is not None:
        camps = camps.where(CampaignRow.id.in_(select(CaseRow.campaign_id).where(CaseRow.branch_id == branch_id)))
    for camp_row in session.scalars(camps):
        try:
            c = campaign_of(camp_row)
        except InvalidInput as exc:
            report.problems.append(Problem(campaign=camp_row.code, branch="(活动配置)", seq=None, event_id=None,
                                           problem=f"存储的活动配置无效：{exc.message.splitlines()[-1].strip()}"))
            continue
        deadline_of[camp_row.code] = partial(effective_deadline, c)
    return deadline_of


def _verify_cases(session: Session, report: Report, deadline_of: _Deadlines, *, camp_id: int | None = None,
                  branch_id: int | None = None, lo: int | None = None, hi: int | None = None,
                  ranged: bool = False) -> None:
    """The chains and projections of the cases in scope (a campaign, a branch, and/or case ids in [lo, hi),
    either end open when None) into ``report``. With ``ranged`` the events are taken by their case id
    (lo ≤ case_id < hi) whether or not a case row has it, so ranges that cover every id also cover the
    events of cases that do not exist, as a whole-database verify does."""
    conds, params = [], {}
    if camp_id is not None:
        conds.append("c.campaign_id = :cp")
        params["cp"] = camp_id
    if branch_id is not None:
        conds.append("c.branch_id = :br")
        params["br"] = branch_id
    if lo is not None:
        conds.append("c.id >= :lo")
        params["lo"] = lo
    if hi is not None:
        conds.append("c.id < :hi")
        params["hi"] = hi
    where = ("WHERE " + " AND ".join(conds)) if conds else ""
    ev_where = where.replace("c.id", "e.case_id") if ranged and camp_id is None and branch_id is None else where
    ev_join = "JOIN cases c ON c.id = e.case_id" if (camp_id is not None or branch_id is not None) else ""
    name = session.get_bind().dialect.name
    sqlite = name == "sqlite"
    at_equal = _sqlite_at_equal if sqlite else _parsed_at_equal
    # Rows straight from the driver (SQLAlchemy's row machinery cost more than hashing them): two
    # cursors on the session's own connection, server-side on PostgreSQL so memory stays flat.
    dbapi = session.connection().connection.driver_connection
    # the state as text on PostgreSQL too, parsed by orjson as on SQLite (psycopg would parse the JSON with json)
    cases_sql = _CASES_SQL.format(where=where, state="c.state" if sqlite else "c.state::text")
    ev_sql = _EVENTS_SQL.format(join=ev_join, where=ev_where, at_text=_AT_TEXT.get(name, 'NULL'))
    if not sqlite:  # psycopg's named parameters
        for k in params:
            cases_sql, ev_sql = cases_sql.replace(f":{k}", f"%({k})s"), ev_sql.replace(f":{k}", f"%({k})s")
    cases_cur = dbapi.cursor() if sqlite else dbapi.cursor(name="bf_verify_cases")  # type: ignore[union-attr]
    ev_cur = dbapi.cursor() if sqlite else dbapi.cursor(name="bf_verify_events")  # type: ignore[union-attr]
    try:
        if not sqlite:
            cases_cur.itersize, ev_cur.itersize = 2000, 10000
        cases_cur.execute(cases_sql, params)
        ev_cur.execute(ev_sql, params)
        if sqlite:
            _stream_cases(report, cases_cur, iter(ev_cur), deadline_of, at_equal)
        else:  # psycopg's server-side cursor steps row by row in Python; its batches are plain lists
            _stream_cases(report, _rows(cases_cur, 2000), _rows(ev_cur, 10000), deadline_of, at_equal)
    finally:
        cases_cur.close()
        ev_cur.close()


def _rows(cur: Any, size: int) -> Iterator[Any]:
    """The cursor's rows, fetched ``size`` at a time and chained in C."""
    return itertools.chain.from_iterable(iter(partial(cur.fetchmany, size), []))


def _stream_cases(report: Report, cases_cur: Any, events: Iterator[Any],
                  deadline_of: dict[str, Callable[[dict[str, Any]], dt.date | None]],
                  at_equal: Callable[[str, Any], bool]) -> None:
    groups = itertools.groupby(events, itemgetter(0))  # events come by case id, then seq: one group a case
    gid, grp = next(groups, (None, ()))
    for case_id, camp, branch, version, stage, grade, deadline, state, prev_grade in cases_cur:
        while gid is not None and gid < case_id:
            for row in grp:
                _orphan(report, row)
            gid, grp = next(groups, (None, ()))
        if isinstance(state, str | bytes):
            state = orjson.loads(state)
        if isinstance(deadline, str):
            deadline = dt.date.fromisoformat(deadline)
        report.cases += 1
        _check_case(camp, branch, (version, stage, grade, deadline, state, prev_grade),
                    grp if gid == case_id else (), report, deadline_of.get(camp), at_equal)
        if gid == case_id:
            gid, grp = next(groups, (None, ()))
    while gid is not None:
        for row in grp:
            _orphan(report, row)
        gid, grp = next(groups, (None, ()))


def _orphan(report: Report, row: Any) -> None:
    report.events += 1
    if not report.problems or report.problems[-1].problem != f"事件所属的立案记录（case {row[0]}）不存在":
        report.problems.append(Problem(campaign="?", branch="?", seq=row[2], event_id=row[1],
                                       problem=f"事件所属的立案记录（case {row[0]}）不存在"))


def case_ranges(session: Session, workers: int) -> list[tuple[int | None, int | None]]:
    """Split the case ids into at most ``workers`` ranges [lo, hi) holding about equal numbers of events,
    the first open below and the last open above (None), so together they take every case and every event.

    The events of a case are weighed by ``cases.version`` (= its number of events), summed in the database
    in one pass over the cases (a window sum; no event is read)."""
    if workers <= 1:
        return [(None, None)]
    total = int(session.scalar(select(func.coalesce(func.sum(CaseRow.version), 0))) or 0)
    if total <= 0:
        return [(None, None)]
    before = func.sum(CaseRow.version).over(order_by=CaseRow.id) - CaseRow.version  # events of lower ids
    bucket = select(CaseRow.id.label("id"), (before * workers // total).label("k")).subquery()
    starts = [int(b) for b in session.scalars(select(func.min(bucket.c.id)).group_by(bucket.c.k).order_by(bucket.c.k))]
    bounds: list[int | None] = [None, *starts[1:], None]
    return list(itertools.pairwise(bounds))


_Result = tuple[int, int, list[tuple[Any, ...]]]  # cases, events, problems as field tuples (cheap to pickle)


def _result(report: Report) -> _Result:
    return report.cases, report.events, [(p.campaign, p.branch, p.seq, p.event_id, p.problem) for p in report.problems]


def _verify_range(url: str, lo: int | None, hi: int | None, deadline_of: _Deadlines | None = None) -> _Result:
    """One worker's range on an engine of its own (never one inherited from the parent)."""
    from workflow.db import make_engine, session_factory

    eng = make_engine(url)
    try:
        with session_factory(eng)() as s:
            report = Report()
            if deadline_of is None:  # a spawned worker parses the campaigns itself
                deadline_of = _deadlines(s, Report(), None, None)  # their problems are the parent's to report
            _verify_cases(s, report, deadline_of, lo=lo, hi=hi, ranged=True)
        return _result(report)
    finally:
        eng.dispose()


def _forked_worker(conn: Any, url: str, lo: int | None, hi: int | None, deadline_of: _Deadlines) -> None:
    try:
        out: Any = ("ok", _verify_range(url, lo, hi, deadline_of))
    except Exception as exc:  # noqa: BLE001 — sent to the parent, which raises it (a worker that dies shows as EOF)
        import traceback

        out = ("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
    conn.send(out)
    conn.close()


def _check_tallies(session: Session, report: Report, campaign_id: int | None, campaign_code: str | None) -> None:
    """The maintained counts (case_tallies, issue 12) against a count of the cases: a count edited, or a
    case written behind the triggers' back, shows here (``workflow.tallies.rebuild`` repairs it)."""
    from workflow.tallies import tallies_check

    for d in tallies_check(session, campaign_id=campaign_id):
        report.problems.append(Problem(campaign=campaign_code or "(汇总表)", branch=f"({d.table})", seq=None,
                                       event_id=None, problem=d.message()))


def parallel_start_method(session: Session | None = None) -> str:
    """``fork`` where it is safe, else ``spawn``. Safe: POSIX but macOS; this process has one thread (a fork
    copies only the calling thread, so a lock another thread holds would stay held in the child); and, on
    SQLite, ``session`` is not inside a write transaction — the children's copies of SQLite would believe
    they held the file locks that only this process holds."""
    import multiprocessing
    import sys
    import threading

    if sys.platform == "darwin" or "fork" not in multiprocessing.get_all_start_methods() \
            or threading.active_count() != 1:
        return "spawn"
    if session is not None and session.get_bind().dialect.name == "sqlite" \
            and session.connection().connection.driver_connection.in_transaction:  # type: ignore[union-attr]
        return "spawn"
    return "fork"


def verify_parallel(session: Session, url: str, *, workers: int, start_method: str | None = None) -> Report:
    """The whole database verified by ``workers`` processes over case-id ranges of about equal numbers of
    events, the campaign, tally and master-data checks here meanwhile; the report is :func:`verify`'s —
    same counts, same problems in the same order.

    Forked workers (see :func:`parallel_start_method`) start at once, with the modules and the parsed
    campaigns of this process; each opens an engine of its own and never touches the connections it
    inherited (SQLAlchemy's and SQLite's rule across a fork). When it forks, this process's statements
    are all finished and (on SQLite) it is in no write transaction, so it holds no SQLite lock that the
    children's copies of SQLite would believe they held.
    Spawned workers (elsewhere) re-import the project first, ≈ 0.5 s each.
    """
    import multiprocessing

    from workflow.campaigns import verify_changes
    from workflow.masterlog import verify_master

    ranges = case_ranges(session, workers)
    parsed = Report()  # campaigns whose stored configuration does not parse: verify() lists them after the chains
    deadline_of = _deadlines(session, parsed, None, None)
    method = start_method or parallel_start_method(session)  # after the reads above: their statements are done
    ctx: Any = multiprocessing.get_context(method)
    procs: list[Any] = []
    pipes: list[Any] = []
    pool: Any = None
    futures: list[Any] = []
    try:
        if method == "fork":
            for lo, hi in ranges:
                recv, send = ctx.Pipe(duplex=False)
                p = ctx.Process(target=_forked_worker, args=(send, url, lo, hi, deadline_of), daemon=True)
                p.start()
                send.close()  # the child's end: closed here, so a child that dies shows as EOF
                procs.append(p)
                pipes.append(recv)
        else:
            from concurrent.futures import ProcessPoolExecutor

            pool = ProcessPoolExecutor(len(ranges), mp_context=ctx)
            futures = [pool.submit(_verify_range, url, lo, hi) for lo, hi in ranges]
        # the campaign, tally and master-data checks here while the workers check the branches; in verify()'s order
        report = Report()
        for camp, seq, problem in verify_changes(session):
            report.problems.append(Problem(campaign=camp, branch="(活动配置)", seq=seq, event_id=None, problem=problem))
        _check_tallies(session, report, None, None)
        for subject, seq, problem in verify_master(session):
            report.problems.append(Problem(campaign="(基础数据)", branch=subject, seq=seq, event_id=None, problem=problem))
        report.problems.extend(parsed.problems)
        results: list[_Result] = []
        if method == "fork":
            for recv in pipes:
                try:
                    status, payload = recv.recv()
                except EOFError:
                    raise RuntimeError("并行校验的工作进程意外退出") from None
                if status != "ok":
                    raise RuntimeError(f"并行校验的工作进程出错：{payload}")
                results.append(payload)
        else:
            results = [fut.result() for fut in futures]
        for cases, events, problems in results:
            report.cases += cases
            report.events += events
            report.problems.extend(Problem(campaign=c, branch=b, seq=s, event_id=e, problem=m)
                                   for c, b, s, e, m in problems)
        return report
    finally:
        for recv in pipes:
            recv.close()
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def events_of(session: Session, case_id: int, *, until: dt.datetime | None = None) -> Iterator[dict[str, Any]]:
    """The case's events in order (optionally those at or before ``until``), each with its chain fields."""
    if until is None:
        rows = session.execute(_EVENTS_OF, {"case_id": case_id})
    else:
        rows = session.execute(_EVENTS_UNTIL, {"case_id": case_id, "until": until})
    for seq, eid, h, prev_hash, body in rows.tuples():
        ev = json.loads(body)  # json, not orjson: orjson reads an integer past 64 bits as a float
        ev["seq"] = seq
        ev["id"] = eid
        ev["hash"] = h
        ev["prev_hash"] = prev_hash
        yield ev


# built once (a branch page shows its history on every request); columns, not entities
_EVENTS_OF = (select(EventRow.seq, EventRow.id, EventRow.hash, EventRow.prev_hash, EventRow.body)
              .where(EventRow.case_id == bindparam("case_id")).order_by(EventRow.seq))
_EVENTS_UNTIL = _EVENTS_OF.where(EventRow.at <= bindparam("until"))



# --- the Merkle log against signed checkpoints (issue 11) ------------------------------------------

@dataclass(kw_only=True)
class LogReport:
    size: int = 0  # leaves recomputed from the entry rows
    stored_size: int = 0  # the tree size the sequencer recorded
    root: bytes = b""
    results: list[tuple[str, str | None]] = field(default_factory=list)  # (checkpoint label, problem or None)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(p is None for _, p in self.results)


def verify_log(session: Session, checkpoints: list[tuple[str, Any]]) -> LogReport:
    """Rebuild the Merkle tree from the entry rows (never trusting stored leaf hashes), streaming with
    O(log n) memory, and check that it extends every given checkpoint — ``(name, Checkpoint)`` pairs
    whose signatures the caller has already checked. A checkpoint that today's log does not extend is
    reported with, where the stored hashes allow it, the first entry that differs."""
    from workflow import merkle, sequencer

    rep = LogReport(stored_size=sequencer.tree_size(session))
    todo = sorted(checkpoints, key=lambda nc: nc[1].size)
    seen_roots: dict[int, tuple[str, bytes]] = {}
    for name, cp in todo:
        other = seen_roots.setdefault(cp.size, (name, cp.root))
        if other[1] != cp.root:
            rep.problems.append(f"分叉：{other[0]} 与 {name} 的树大小都是 {cp.size}，根哈希却不同——"
                                "两位审计员看到的是两份不同的日志")
    results: dict[str, str | None] = {}
    builder = merkle.TreeBuilder()
    k = 0
    missing_at: int | None = None

    def settle() -> None:
        nonlocal k
        while k < len(todo) and todo[k][1].size == builder.size:
            name, cp = todo[k]
            results[name] = None if builder.root() == cp.root else "differs"
            k += 1

    with closing(sequencer.recomputed_leaves(session)) as leaves:
        for idx, lh in leaves:
            settle()
            if idx != builder.size:
                missing_at = builder.size
                break
            builder.push(lh)
    if missing_at is not None:
        rep.problems.append(f"{sequencer.describe_leaf(session, missing_at)} 缺失：日志项被删除"
                            if idx > missing_at else f"第 {idx} 条日志项重复")
    settle()
    rep.size, rep.root = builder.size, builder.root()
    if missing_at is None and rep.size != rep.stored_size:
        rep.problems.append(f"日志项数 {rep.size} 与记录的树大小 {rep.stored_size} 不符：日志被截断或改动")
    stored_ok = False
    if missing_at is None and rep.size == rep.stored_size:
        try:
            stored_ok = sequencer.root_hash(session, rep.size) == rep.root
        except merkle.ProofError:
            stored_ok = False
        if not stored_ok:
            rep.problems.append("存储的默克尔哈希与日志项重算的结果不一致：证明无法由本系统给出")
    reader = sequencer.DbHashes(session)
    for name, cp in todo:
        r = results.get(name, "short")
        if r is None:
            if stored_ok and cp.size:
                try:  # the consistency proof an auditor would be served checks out as well
                    merkle.check_consistency(merkle.prove_consistency(rep.size, cp.size, reader), rep.size, rep.root,
                                             cp.size, cp.root)
                except merkle.ProofError as exc:
                    r = f"一致性证明不成立：{exc}"
            rep.results.append((name, r))
            continue
        if r == "short":
            what = (f"今天的日志只有 {rep.size} 项，比{cp.label}短：历史被截断" if missing_at is None
                    else f"日志在第 {missing_at} 项处断开，无法重建到{cp.label}")
        else:
            what = f"今天的日志不是{cp.label}的追加延续：在它之前的历史被改写、调换或分叉"
            first = _first_difference(session, cp.size)
            if first is not None:
                what += f"；第一处不同：{first}"
        rep.results.append((name, what))
    return rep


def _first_difference(session: Session, size: int) -> str | None:
    """The first leaf below ``size`` whose recomputed hash differs from the hash stored when it was logged."""
    from workflow import sequencer

    first: int | None = None
    with closing(sequencer.stored_leaf_hashes(session, size)) as stored, \
            closing(sequencer.recomputed_leaves(session)) as leaves:
        for idx, lh in leaves:
            if idx >= size:
                break
            got = next(stored, None)
            if got is None or got[0] != idx or got[1] != lh:
                first = idx
                break
    return None if first is None else sequencer.describe_leaf(session, first)
