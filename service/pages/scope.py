"""WHERE clauses for what a person may see on the list, dashboard and reports pages."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.auth import (
    sees_everything,
)
from states.base import Role
from workflow import tenancy
from workflow.models import Committee, GeneralBranch
from workflow.service import Actor


def _scope_clause(s: Session, actor: Actor) -> Any:
    """A WHERE clause on Branch/GeneralBranch/Committee for what the actor may see (None: everything)."""
    if sees_everything(s, actor):
        return None
    return tenancy.branch_clause(actor)  # the one place for scope (issue 12)



def _general_branch_choices(s: Session, actor: Actor) -> tuple[list[dict[str, str]], bool]:
    """The general branches the person may pick on the reports page, and whether "all" is offered."""
    q = (select(GeneralBranch.code, GeneralBranch.name).join(Committee, Committee.id == GeneralBranch.committee_id)
         .order_by(Committee.code, GeneralBranch.code))
    everything = sees_everything(s, actor)
    if not everything:
        readable = tenancy.readable_committees(actor)
        gbs = {sc for r, sc in actor.roles if r is Role.general_branch_secretary}
        q = q.where(GeneralBranch.committee_id.in_(readable) | GeneralBranch.code.in_(gbs)
                    if readable is not None else GeneralBranch.code.in_(gbs))
    return [{"code": r.code, "name": r.name} for r in s.execute(q)], everything
