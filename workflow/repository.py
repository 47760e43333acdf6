"""Row ↔ domain: load a case with what its rules need, and append events with their chain.

Nothing here commits: the caller owns the transaction.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
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


def get_campaign_row(session: Session, code: str | None = None) -> CampaignRow:
    """The campaign with ``code``, or the newest one when no code is given."""
    if code:
        row = session.scalar(select(CampaignRow).where(CampaignRow.code == code))
        if row is None:
            raise NotFound(f"找不到活动 {code!r}")
        return row
    row = session.scalar(select(CampaignRow).order_by(CampaignRow.year.desc(), CampaignRow.id.desc()).limit(1))
    if row is None:
        raise NotFound("还没有任何活动：请先用 `branchflow campaign create` 创建")
    return row


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


def _count_members(session: Session, committee_code: str) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(RoleAssignment)
            .where(RoleAssignment.role == Role.committee_member.value, RoleAssignment.scope_code == committee_code)
        )
        or 0
    )


@dataclass(kw_only=True)
class LoadedCase:
    """A case as the services use it: rows, parsed campaign, facts and the current (mutable) state."""

    row: CaseRow
    campaign_row: CampaignRow
    campaign: Campaign
    branch: Branch
    committee_code: str
    general_branch_code: str | None
    facts: BranchFacts
    state: State
    last_hash: str
    last_at: dt.datetime | None
    pending: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def stage(self) -> Stage:
        return Stage(self.state["stage"])

    @property
    def version(self) -> int:
        return self.row.version


def facts_of(session: Session, branch: Branch, committee_code: str) -> BranchFacts:
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


def _case_query(by_campaign_code: bool) -> Any:
    latest = select(CampaignRow.id).order_by(CampaignRow.year.desc(), CampaignRow.id.desc()).limit(1).scalar_subquery()
    return (
        select(CaseRow, Branch, CampaignRow, Committee.code, GeneralBranch.code)
        .join(Branch, Branch.id == CaseRow.branch_id)
        .join(CampaignRow, CampaignRow.id == CaseRow.campaign_id)
        .join(Committee, Committee.id == Branch.committee_id)
        .outerjoin(GeneralBranch, GeneralBranch.id == Branch.general_branch_id)
        .where(Branch.code == bindparam("branch_code"))
        .where(CampaignRow.code == bindparam("campaign_code") if by_campaign_code else CampaignRow.id == latest)
        .execution_options(populate_existing=True)
    )


# Built once: constructing and cache-keying these statements per call cost more than running them.
_CASE_BY_CODE = _case_query(True)
_CASE_LATEST = _case_query(False)
_CHAIN_HEAD = select(EventRow.hash, EventRow.at).where(
    EventRow.case_id == bindparam("case_id"), EventRow.seq == bindparam("seq")
)


def load_case(session: Session, branch_code: str, campaign_code: str | None = None, *, lock: bool = False) -> LoadedCase:
    """Load a case with everything its rules need in two round trips (the case and its chain head)."""
    q = _CASE_BY_CODE if campaign_code else _CASE_LATEST
    params = {"branch_code": branch_code, "campaign_code": campaign_code} if campaign_code else {"branch_code": branch_code}
    if lock:
        q = q.with_for_update(of=CaseRow)
    # populate_existing: a row already in this session's identity map is refreshed, so the version we
    # check against is the one in the database now, not the one this session saw earlier.
    found = session.execute(q, params).first()
    if found is None:
        camp_row = get_campaign_row(session, campaign_code)  # raises NotFound naming what is missing
        get_branch(session, branch_code)
        raise NotFound(f"党支部 {branch_code} 在活动 {camp_row.code} 中没有立案")
    row, branch, camp_row, committee_code, gb_code = found
    last = session.execute(_CHAIN_HEAD, {"case_id": row.id, "seq": row.version}).first()
    return LoadedCase(
        row=row,
        campaign_row=camp_row,
        campaign=campaign_of(camp_row),
        branch=branch,
        committee_code=committee_code,
        general_branch_code=gb_code,
        facts=facts_of(session, branch, committee_code),
        state=json.loads(json.dumps(row.state)),  # a private copy; faster than deepcopy for JSON data
        last_hash=last.hash if last else GENESIS,
        last_at=last.at if last else None,
    )


def effective_deadline(campaign: Campaign, state: State) -> dt.date | None:
    stage = Stage(state["stage"])
    if stage is Stage.accepted:
        return None
    override = state.get("deadlines", {}).get(stage.value)
    if override:
        return dt.date.fromisoformat(override)
    return campaign.deadline_for(stage)


def append(session: Session, case: LoadedCase, *, kind: str, actor: str, at: dt.datetime,
           payload: dict[str, Any]) -> dict[str, Any]:
    """Apply an event to the loaded state and add its chained row; the projection is saved by :func:`save`."""
    if case.last_at is not None and at < case.last_at:
        raise InvalidInput(
            f"时间不能倒退：该支部最近一条记录时间为 {iso(case.last_at)}，本次操作时间为 {iso(at)}"
        )
    event = {"kind": kind, "at": iso(at), "actor": actor, "stage": case.state["stage"], "payload": payload}
    # The loaded state is this call's private copy, so it is changed in place; a refusal further on
    # raises and the whole LoadedCase is dropped with the rolled-back transaction.
    case.state = apply(case.state, event, in_place=True)
    body = canonical(event)
    seq = case.row.version + len(case.pending) + 1
    digest = chain(case.last_hash, body)
    case.rows.append({"case_id": case.row.id, "seq": seq, "kind": kind, "at": at, "actor": actor, "body": body,
                      "prev_hash": case.last_hash, "hash": digest})
    case.last_hash = digest
    case.last_at = at
    case.pending.append(event)
    return event


def save(session: Session, case: LoadedCase, *, now: dt.datetime) -> None:
    """Write the projection under an optimistic version check, then the new events.

    Plain Core statements (not the unit of work): one UPDATE … WHERE version = old, which matches no
    row when someone else moved the case first (raised as ``StaleDataError``), and one INSERT of the
    events, whose (case_id, seq) unique key is a second line of defence.
    """
    if not case.pending:
        return
    row = case.row
    old, new = row.version, row.version + len(case.pending)
    values = {"state": case.state, "stage": case.state["stage"], "grade": current_grade(case.state),
              "deadline": effective_deadline(case.campaign, case.state), "updated_at": now, "version": new}
    done = session.execute(_SAVE, {"b_id": row.id, "b_old": old, **{f"b_{k}": v for k, v in values.items()}})
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleDataError(f"case {row.id} is no longer at version {old}")
    session.execute(_INSERT_EVENTS, case.rows)
    for key, value in values.items():  # keep the loaded row truthful without marking it dirty
        set_committed_value(row, key, value)
    case.pending = []
    case.rows = []


_CASES = cast(Table, CaseRow.__table__)
# Built once (building and cache-keying a statement per call cost more than running it).
_SAVE = (
    update(_CASES)
    .where(_CASES.c.id == bindparam("b_id"), _CASES.c.version == bindparam("b_old"))
    .values({c: bindparam(f"b_{c}") for c in ("state", "stage", "grade", "deadline", "updated_at", "version")})
)
_INSERT_EVENTS = insert(cast(Table, EventRow.__table__))


def open_cases(session: Session, campaign_row: CampaignRow, branches: list[tuple[int, str]], *,
               at: dt.datetime, actor: str = "system") -> int:
    """Open the cases of ``branches`` (id, code) in the campaign, each with its chained ``opened`` event.

    Written as two multi-row INSERTs (cases, then events) rather than a flush per case.
    """
    if not branches:
        return 0
    campaign = campaign_of(campaign_row)
    rows = []
    events = []
    for branch_id, code in branches:
        state = new_state(campaign_row.code, code)
        event = {"kind": "opened", "at": iso(at), "actor": actor, "stage": Stage.survey.value,
                 "payload": {"campaign": campaign_row.code, "branch": code}}
        apply(state, event, in_place=True)
        rows.append({"campaign_id": campaign_row.id, "branch_id": branch_id, "stage": state["stage"], "grade": None,
                     "deadline": effective_deadline(campaign, state), "state": state, "version": 1, "updated_at": at})
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
