"""Each branch's case as it stands now, or as it stood at a past time, streamed in form order.

Now: the ``cases`` projection. At ``T``: every case's events with ``at <= T`` replayed with
:func:`workflow.case.replay` — the same fold that built the projection, so a form rendered at ``T``
equals the form that was rendered at ``T``. Rows come from one ordered query read ``batch`` rows at a time
(a server-side cursor on PostgreSQL); for each batch the events are read ordered by ``(case_id, seq)``.
Nothing holds more than one batch, so memory stays flat at any number of branches.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from workflow.case import State, replay
from workflow.errors import NotFound
from workflow.models import Branch, CampaignRow, CaseRow, Committee, EventRow, GeneralBranch

BATCH = 250


@dataclass(frozen=True, kw_only=True, slots=True)
class Snapshot:
    """One branch and its case state (now, or replayed to a time)."""

    committee: str
    general_branch_code: str | None
    general_branch: str | None
    code: str
    name: str
    branch_type: str
    member_count: int
    secretary: str
    state: State


@dataclass(frozen=True, kw_only=True)
class Scope:
    """What a form covers: the whole campaign, or one general branch."""

    general_branch_code: str | None
    general_branch_name: str | None
    committee_name: str


def scope_of(session: Session, general_branch: str | None) -> Scope:
    """The scope for ``--general-branch`` (a code); raises :class:`NotFound` for an unknown one."""
    if general_branch:
        row = session.execute(
            select(GeneralBranch.code, GeneralBranch.name, Committee.name.label("committee"))
            .join(Committee, Committee.id == GeneralBranch.committee_id)
            .where(GeneralBranch.code == general_branch)
        ).first()
        if row is None:  # no list of the codes there are: they may belong to other committees
            raise NotFound(f"党总支 {general_branch[:64]!r} 不存在或无权访问")
        return Scope(general_branch_code=row.code, general_branch_name=row.name, committee_name=row.committee)
    names = session.scalars(select(Committee.name).order_by(Committee.code).limit(2)).all()
    return Scope(general_branch_code=None, general_branch_name=None,
                 committee_name=names[0] if len(names) == 1 else "各党委")


def snapshots(session: Session, campaign: CampaignRow, *, general_branch: str | None = None,
              at: dt.datetime | None = None, batch: int = BATCH,
              committee_id: int | None = None) -> Iterator[Snapshot]:
    """Every case of the campaign (or of one general branch, or of the branches of one committee — a
    pre-tenancy campaign covers every committee), ordered by committee, general branch, branch."""
    cols = [
        CaseRow.id, Committee.name.label("committee"), GeneralBranch.code.label("gb_code"),
        GeneralBranch.name.label("gb_name"), Branch.code, Branch.name, Branch.branch_type, Branch.member_count,
        Branch.secretary_name,
    ]
    if at is None:
        cols.append(CaseRow.state)
    q = (
        select(*cols)
        .join(Branch, Branch.id == CaseRow.branch_id)
        .join(Committee, Committee.id == Branch.committee_id)
        .outerjoin(GeneralBranch, GeneralBranch.id == Branch.general_branch_id)
        .where(CaseRow.campaign_id == campaign.id)
        .order_by(Committee.code, func.coalesce(GeneralBranch.code, ""), Branch.code)
    )
    if general_branch:
        q = q.where(GeneralBranch.code == general_branch)
    if committee_id is not None:
        q = q.where(Branch.committee_id == committee_id)
    result = session.execute(q, execution_options={"yield_per": batch})
    for part in result.partitions():
        states: dict[int, State]
        if at is None:
            states = {r.id: r.state for r in part}
        else:
            states = _replayed(session, campaign.code, {r.id: r.code for r in part}, at)
        for r in part:
            if r.id not in states:  # the case was opened after ``at``: it was not on the form then
                continue
            yield Snapshot(
                committee=r.committee, general_branch_code=r.gb_code, general_branch=r.gb_name, code=r.code,
                name=r.name, branch_type=r.branch_type, member_count=r.member_count, secretary=r.secretary_name,
                state=states[r.id],
            )


def _replayed(session: Session, campaign_code: str, codes: dict[int, str], at: dt.datetime) -> dict[int, State]:
    events: dict[int, list[dict[str, Any]]] = {i: [] for i in codes}
    q = (
        select(EventRow.case_id, EventRow.body)
        .where(EventRow.case_id.in_(list(codes)), EventRow.at <= at)
        .order_by(EventRow.case_id, EventRow.seq)
    )
    for case_id, body in session.execute(q):
        events[case_id].append(json.loads(body))
    return {i: replay(campaign_code, codes[i], evs) for i, evs in events.items() if evs}
