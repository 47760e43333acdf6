"""Who gets a notice: the people who owe a stage's work, and the rungs of the escalation ladder.

Per stage the owners are the roles in ``states/<stage>.py`` ``SPEC.recorders`` — without the
organisation department when someone else records too (it runs the campaign and hears about every
branch through escalations and the monthly digest instead). A branch secretary is the branch's
``secretary_email``; general-branch secretaries, the organisation department and committee members are
people with a role assignment scoped to the general branch or committee code. Each unit is looked up
once per sweep, so the cost does not grow with the number of branches.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from states import spec_for
from states.base import Role, Stage
from workflow.models import Committee, GeneralBranch, Person, RoleAssignment

ESCALATION_ROLES = {
    "general_branch_secretary": Role.general_branch_secretary,
    "org_department": Role.org_department,
    "committee": Role.committee_member,
}


@dataclass(frozen=True, kw_only=True)
class Recipient:
    email: str
    name: str

    def as_dict(self) -> dict[str, str]:
        return {"email": self.email, "name": self.name}


def owner_roles(stage: Stage) -> list[Role]:
    return list(_owner_roles(stage))


@lru_cache(maxsize=16)
def _owner_roles(stage: Stage) -> tuple[Role, ...]:
    roles = set(spec_for(stage).recorders)
    if len(roles) > 1:
        roles.discard(Role.org_department)
    return tuple(r for r in Role if r in roles)


class Directory:
    """Cached lookups of people by (role, unit) for one sweep."""

    def __init__(self, session: Session, *, org_department_email: str = "") -> None:
        self.session = session
        self.fallback = org_department_email.strip().lower()
        self._gb: dict[int, tuple[str, str, list[Recipient]]] = {}
        self._committee: dict[tuple[int, Role], list[Recipient]] = {}
        self._committee_code: dict[int, str] = {}
        self._size: dict[int, int] = {}
        self._contact: dict[tuple[tuple[Role, ...], int, int | None], str] = {}
        self._resolved: dict[tuple[tuple[Role, ...], int, int | None], list[Recipient]] = {}

    def _people(self, role: Role, scope: str) -> list[Recipient]:
        rows = self.session.execute(
            select(Person.email, Person.name)
            .join(RoleAssignment, RoleAssignment.person_id == Person.id)
            .where(RoleAssignment.role == role.value, RoleAssignment.scope_code == scope)
            .order_by(Person.email)
        ).all()
        return [Recipient(email=e, name=n) for e, n in rows]

    def parent_of(self, committee_id: int) -> int | None:
        """The parent committee's id (issue 12: escalation up the tree), cached."""
        cache: dict[int, int | None] = self.__dict__.setdefault("_parent", {})
        if committee_id not in cache:
            cache[committee_id] = self.session.scalar(select(Committee.parent_id).where(Committee.id == committee_id))
        return cache[committee_id]

    def committee_name(self, committee_id: int) -> str:
        cache: dict[int, str] = self.__dict__.setdefault("_committee_name", {})
        if committee_id not in cache:
            cache[committee_id] = self.session.scalar(select(Committee.name).where(Committee.id == committee_id)) or ""
        return cache[committee_id]

    def committee_code(self, committee_id: int) -> str:
        if committee_id not in self._committee_code:
            self._committee_code[committee_id] = self.session.scalar(
                select(Committee.code).where(Committee.id == committee_id)) or ""
        return self._committee_code[committee_id]

    def general_branch(self, gb_id: int | None) -> tuple[str, str, list[Recipient]]:
        """(code, name, secretaries) of a general branch; empty for a branch directly under the committee."""
        if gb_id is None:
            return "", "", []
        if gb_id not in self._gb:
            gb = self.session.execute(
                select(GeneralBranch.code, GeneralBranch.name).where(GeneralBranch.id == gb_id)).first()
            code, name = (gb[0], gb[1]) if gb else ("", "")
            self._gb[gb_id] = (code, name, self._people(Role.general_branch_secretary, code) if code else [])
        return self._gb[gb_id]

    def prefetch_general_branches(self, gb_ids: set[int | None]) -> None:
        """Look up the general branches of a page of cases (and their secretaries) in two queries, not two
        per unit; what :meth:`general_branch` then answers is the same."""
        missing = sorted(i for i in gb_ids if i is not None and i not in self._gb)
        for k in range(0, len(missing), 500):
            part = missing[k:k + 500]
            units = self.session.execute(
                select(GeneralBranch.id, GeneralBranch.code, GeneralBranch.name).where(GeneralBranch.id.in_(part))).all()
            codes = [c for _, c, _ in units if c]
            people: dict[str, list[Recipient]] = {}
            if codes:
                for scope, email, name in self.session.execute(
                        select(RoleAssignment.scope_code, Person.email, Person.name)
                        .join(RoleAssignment, RoleAssignment.person_id == Person.id)
                        .where(RoleAssignment.role == Role.general_branch_secretary.value,
                               RoleAssignment.scope_code.in_(codes))
                        .order_by(Person.email)).all():
                    people.setdefault(scope, []).append(Recipient(email=email, name=name))
            found = set()
            for gid, code, name in units:
                found.add(gid)
                self._gb[gid] = (code, name, people.get(code, []) if code else [])
            for gid in part:
                if gid not in found:
                    self._gb[gid] = ("", "", [])

    def committee_people(self, committee_id: int, role: Role) -> list[Recipient]:
        key = (committee_id, role)
        if key not in self._committee:
            people = self._people(role, self.committee_code(committee_id))
            if role is Role.org_department and not people and self.fallback:
                people = [Recipient(email=self.fallback, name="组织部")]
            self._committee[key] = people
        return self._committee[key]

    def committee_size(self, committee_id: int) -> int:
        if committee_id not in self._size:
            self._size[committee_id] = int(self.session.scalar(
                select(func.count()).select_from(RoleAssignment).where(
                    RoleAssignment.role == Role.committee_member.value,
                    RoleAssignment.scope_code == self.committee_code(committee_id))) or 0)
        return self._size[committee_id]

    def org_department(self, committee_id: int) -> list[Recipient]:
        return self.committee_people(committee_id, Role.org_department)

    def for_role(self, role: Role, *, committee_id: int, gb_id: int | None, secretary: Recipient) -> list[Recipient]:
        if role is Role.branch_secretary:
            return [secretary] if secretary.email else []
        if role is Role.general_branch_secretary:
            return self.general_branch(gb_id)[2]
        return self.committee_people(committee_id, role)

    def resolve(self, roles: list[Role], *, committee_id: int, gb_id: int | None,
                secretary: Recipient) -> list[Recipient]:
        """The people in ``roles`` for this branch; the organisation department when nobody is found."""
        if Role.branch_secretary not in roles:  # the same for every branch of the unit: look up once
            key = (tuple(roles), committee_id, gb_id)
            if key not in self._resolved:
                self._resolved[key] = self._resolve(roles, committee_id=committee_id, gb_id=gb_id, secretary=secretary)
            return self._resolved[key]
        return self._resolve(roles, committee_id=committee_id, gb_id=gb_id, secretary=secretary)

    def _resolve(self, roles: list[Role], *, committee_id: int, gb_id: int | None,
                 secretary: Recipient) -> list[Recipient]:
        out: dict[str, Recipient] = {}
        for role in roles:
            for p in self.for_role(role, committee_id=committee_id, gb_id=gb_id, secretary=secretary):
                out.setdefault(p.email, p)
        if not out:
            for p in self.org_department(committee_id):
                out.setdefault(p.email, p)
        return list(out.values())

    def contact(self, roles: list[Role], *, committee_id: int, gb_id: int | None) -> str:
        """Whom the recipients may ask: their general-branch secretary, else the organisation department."""
        key = (tuple(roles), committee_id, gb_id)
        if key not in self._contact:
            self._contact[key] = self._contact_text(roles, committee_id=committee_id, gb_id=gb_id)
        return self._contact[key]

    def _contact_text(self, roles: list[Role], *, committee_id: int, gb_id: int | None) -> str:
        people: list[Recipient] = []
        if Role.branch_secretary in roles:
            people = self.general_branch(gb_id)[2]
        if not people:
            people = self.org_department(committee_id)
        if not people:
            return "党委组织部"
        return "、".join(f"{p.name}（{p.email}）" for p in people[:3])
