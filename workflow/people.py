"""People and their roles."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from states.base import ROLE_LABELS, Role
from workflow import limits
from workflow.errors import InvalidInput
from workflow.importer import _ensure_person, grant
from workflow.models import Branch, Committee, GeneralBranch, Person, RoleAssignment

SCOPE_OF = {
    Role.branch_secretary: (Branch, "党支部"),
    Role.general_branch_secretary: (GeneralBranch, "党总支"),
    Role.org_department: (Committee, "党委"),
    Role.committee_member: (Committee, "党委"),
}


def add_person(session: Session, email: str, name: str, roles: list[Role], scope: str = "") -> list[str]:
    """Create or update a person and grant roles; the scope must name an existing unit of the right kind."""
    email = limits.clean_email(email)
    limits.require(limits.check_name(name.strip(), "姓名", "person_name"))
    if scope:
        limits.require(limits.check_code(scope, "范围编码（--scope）"))
    for role in roles:
        if role is Role.auditor:
            # with a scope: an auditor of that committee and everything below it (issue 12); '' is everything
            if scope and session.scalar(select(Committee).where(Committee.code == scope)) is None:
                raise InvalidInput(f"找不到编码为 {scope!r} 的党委（审计人员的范围须为党委编码，不给出则为全部）")
            continue
        model, kind = SCOPE_OF[role]
        if not scope:
            raise InvalidInput(f"角色“{ROLE_LABELS[role]}”须用 --scope 指定所在{kind}的编码")
        if session.scalar(select(model).where(model.code == scope)) is None:  # type: ignore[attr-defined]
            raise InvalidInput(f"找不到编码为 {scope!r} 的{kind}")  # the operator's command: they see every unit
    person = _ensure_person(session, email, name.strip())
    granted = []
    for role in roles:
        if grant(session, person, role, scope):
            granted.append(ROLE_LABELS[role] + (f"（{scope}）" if scope else ""))
    session.flush()
    from workflow.masterlog import record_master_changes

    record_master_changes(session, actor="(人员管理)", subjects=[f"person:{email}"])  # audit log (issue 11)
    return granted


def list_people(session: Session) -> list[dict[str, Any]]:
    out = []
    for p in session.scalars(select(Person).order_by(Person.email)):
        roles = session.execute(
            select(RoleAssignment.role, RoleAssignment.scope_code).where(RoleAssignment.person_id == p.id)
        ).all()
        out.append({"email": p.email, "name": p.name, "roles": [(r, sc) for r, sc in roles]})
    return out
