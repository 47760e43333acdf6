"""The event log for auditors: one JSON object per line, with the chain hashes and the exact hashed bytes.

Each line is ``{"campaign", "branch", "seq", "at", "kind", "actor", "prev_hash", "hash", "body"}`` where
``body`` is the event's canonical JSON *as stored and hashed*, so that outside branchflow

    sha256(prev_hash.encode("ascii") + body.encode("utf-8")).hexdigest() == hash

and each branch's first event has ``prev_hash`` = 64 zeros and every later one names its predecessor's
hash (docs/reports.md has the few lines of Python that check a whole file). Lines come branch by branch,
each branch's events in order; cases are paged by id as :func:`workflow.audit.verify` does, so memory
stays flat.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow.audit import iso
from workflow.models import Branch, CaseRow, EventRow
from workflow.repository import get_branch, get_campaign_row

BATCH = 500


def export_events(session: Session, *, campaign: str | None = None, branch: str | None = None,
                  batch: int = BATCH) -> Iterator[bytes]:
    """The campaign's (or one branch's) events as JSON Lines, UTF-8; raises NotFound for unknown codes."""
    camp = get_campaign_row(session, campaign)
    q = (
        select(CaseRow.id, Branch.code)
        .join(Branch, Branch.id == CaseRow.branch_id)
        .where(CaseRow.campaign_id == camp.id)
        .order_by(CaseRow.id)
    )
    if branch:
        b = get_branch(session, branch)
        q = q.where(CaseRow.branch_id == b.id)
    return _lines(session, camp.code, q, batch)


def _lines(session: Session, campaign: str, q: object, batch: int) -> Iterator[bytes]:
    last_id = 0
    while True:
        page = session.execute(q.where(CaseRow.id > last_id).limit(batch)).all()  # type: ignore[attr-defined]
        if not page:
            return
        codes = {case_id: code for case_id, code in page}
        out: list[str] = []
        for row in session.execute(
            select(EventRow.case_id, EventRow.seq, EventRow.at, EventRow.kind, EventRow.actor, EventRow.prev_hash,
                   EventRow.hash, EventRow.body)
            .where(EventRow.case_id.in_(list(codes)))
            .order_by(EventRow.case_id, EventRow.seq)
        ):
            out.append(json.dumps({
                "campaign": campaign, "branch": codes[row.case_id], "seq": row.seq, "at": iso(row.at),
                "kind": row.kind, "actor": row.actor, "prev_hash": row.prev_hash, "hash": row.hash,
                "body": row.body,
            }, ensure_ascii=False, separators=(",", ":")))
            if len(out) >= 1000:
                yield ("\n".join(out) + "\n").encode("utf-8")
                out = []
        if out:
            yield ("\n".join(out) + "\n").encode("utf-8")
        last_id = page[-1][0]
