"""Tenancy: committees in a tree, and the one place that says who may read and change what (issue 12).

A committee (党委) is the tenant. Committees form a tree (``committees.parent_id``); ``committees.path``
is the chain of ancestor ids including the committee's own (``/1/7/23/``), so a subtree is one
``path LIKE '/1/7/%'`` over the small committees table, and everything below (branches, cases, campaigns)
is reached through its indexed ``committee_id``.

Reading (每个查询都按此范围过滤):

* an auditor with scope ``''`` reads the whole deployment; an auditor scoped to committee C reads C and
  every committee below it;
* the organisation department (组织部) of C reads C and every committee below it (supervision up the
  tree: the roll-up, the children's lists and forms) — read only;
* a committee member of C reads C only;
* a general-branch secretary reads the branches of their general branch; a branch secretary their branch.

Changing: only the organisation department of a campaign's OWN committee may change that campaign
(:func:`may_change`); a case is changed only by the roles of the branch's own committee
(``workflow.service.may`` compares the exact scope), so a parent never changes a child's records.

Something outside the reader's scope answers exactly like something that does not exist
(``service.auth.hidden``): no oracle.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    bindparam,
    event,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.orm import Session, aliased

from states.base import Role
from workflow.errors import InvalidInput, NotFound
from workflow.models import Branch, CampaignRow, Committee, GeneralBranch

SUBTREE_ROLES = (Role.org_department, Role.auditor)  # read their committee and everything below it
OWN_ROLES = (Role.committee_member,)  # read their committee only


class CampaignAmbiguous(InvalidInput):
    """有多个党委各自的活动，无法确定“最新活动”：请用 --campaign 指定活动编码。"""

    def __init__(self, codes: list[str]) -> None:
        shown = "、".join(codes[:8]) + ("……" if len(codes) > 8 else "")
        super().__init__(f"有多个党委各自的活动，无法确定“最新活动”：请用 --campaign 指定活动编码（最新的有：{shown}）")
        self.codes = codes


@dataclass(frozen=True, kw_only=True)
class Scope:
    """What an actor's roles reach, as codes (turned into SQL by the functions below)."""

    everything: bool
    subtree: frozenset[str]  # committee codes read with everything below them
    committees: frozenset[str]  # committee codes read alone
    general_branches: frozenset[str]
    branches: frozenset[str]

    @property
    def empty(self) -> bool:
        return not (self.everything or self.subtree or self.committees or self.general_branches or self.branches)


def _roles(actor: Any) -> frozenset[tuple[Role, str]]:
    roles = actor.roles
    return roles if isinstance(roles, frozenset) else frozenset(roles)


# The builders below are pure functions of the actor's roles: memoised by them, so a request does not
# rebuild (and SQLAlchemy does not re-key) the same clauses for every query of every page. The clauses
# are immutable; the data they select is read when they run.
_MEMO = 4096


def scope_of(actor: Any) -> Scope:
    """The reading scope of an :class:`workflow.service.Actor` (anything with ``roles``)."""
    return _scope_of(_roles(actor))


@lru_cache(maxsize=_MEMO)
def _scope_of(roles: frozenset[tuple[Role, str]]) -> Scope:
    everything = False
    subtree: set[str] = set()
    own: set[str] = set()
    gbs: set[str] = set()
    branches: set[str] = set()
    for role, code in roles:
        if role is Role.auditor and not code:
            everything = True
        elif role in SUBTREE_ROLES and code:
            subtree.add(code)
        elif role in OWN_ROLES and code:
            own.add(code)
        elif role is Role.general_branch_secretary and code:
            gbs.add(code)
        elif role is Role.branch_secretary and code:
            branches.add(code)
    return Scope(everything=everything, subtree=frozenset(subtree), committees=frozenset(own - subtree),
                 general_branches=frozenset(gbs), branches=frozenset(branches))


# --- SQL -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Roles:
    """The roles alone, standing for the actor inside the memoised builders."""

    roles: frozenset[tuple[Role, str]]


def _subtree_of(codes: Iterable[str]) -> ColumnElement[bool]:
    """``committees.path`` starts with the path of one of the committees ``codes`` (a root with no path —
    never set — matches only itself, never everything)."""
    root = aliased(Committee)
    return exists(select(root.id).where(
        root.code.in_(sorted(codes)), root.path != "", Committee.path.startswith(root.path, autoescape=False),
    ))


def readable_committees(actor: Any) -> Select[tuple[int]] | None:
    """``SELECT id FROM committees WHERE …``: the committees whose every branch the actor reads;
    ``None`` for the whole deployment."""
    return _readable_committees(_roles(actor))


@lru_cache(maxsize=_MEMO)
def _readable_committees(roles: frozenset[tuple[Role, str]]) -> Select[tuple[int]] | None:
    actor = _Roles(roles)
    sc = scope_of(actor)
    if sc.everything:
        return None
    parts: list[ColumnElement[bool]] = []
    if sc.subtree:
        parts.append(_subtree_of(sc.subtree))
        parts.append(Committee.code.in_(sorted(sc.subtree)))
    if sc.committees:
        parts.append(Committee.code.in_(sorted(sc.committees)))
    return select(Committee.id).where(or_(*parts) if parts else false())


def home_committees(actor: Any) -> Select[tuple[int]]:
    """The committees the actor works in (not below): of their committee-level roles, general branch and
    branch. The default campaign is the latest of these when there is exactly one."""
    return _home_committees(_roles(actor))


@lru_cache(maxsize=_MEMO)
def _home_committees(roles: frozenset[tuple[Role, str]]) -> Select[tuple[int]]:
    actor = _Roles(roles)
    sc = scope_of(actor)
    parts: list[ColumnElement[bool]] = []
    if sc.subtree | sc.committees:
        parts.append(Committee.id.in_(select(Committee.id).where(Committee.code.in_(sorted(sc.subtree | sc.committees)))))
    if sc.general_branches:
        parts.append(Committee.id.in_(select(GeneralBranch.committee_id)
                                      .where(GeneralBranch.code.in_(sorted(sc.general_branches)))))
    if sc.branches:
        parts.append(Committee.id.in_(select(Branch.committee_id).where(Branch.code.in_(sorted(sc.branches)))))
    return select(Committee.id).where(or_(*parts) if parts else false())


def branch_clause(actor: Any) -> ColumnElement[bool]:
    """A condition on ``branches`` (joined in the caller's query): the branches the actor may read.
    Index-friendly: ``committee_id IN (subquery on committees)``, ``general_branch_id IN (…)``, ``code IN (…)``."""
    return _branch_clause(_roles(actor))


@lru_cache(maxsize=_MEMO)
def _branch_clause(roles: frozenset[tuple[Role, str]]) -> ColumnElement[bool]:
    actor = _Roles(roles)
    sc = scope_of(actor)
    if sc.everything:
        return true()
    parts: list[ColumnElement[bool]] = []
    committees = readable_committees(actor)
    if committees is not None and (sc.subtree or sc.committees):
        parts.append(Branch.committee_id.in_(committees))
    if sc.general_branches:
        parts.append(Branch.general_branch_id.in_(
            select(GeneralBranch.id).where(GeneralBranch.code.in_(sorted(sc.general_branches)))))
    if sc.branches:
        parts.append(Branch.code.in_(sorted(sc.branches)))
    return or_(*parts) if parts else false()


def campaign_clause(actor: Any) -> ColumnElement[bool]:
    """A condition on ``campaigns``: the campaigns the actor may read — of a committee they read or work in,
    and the pre-tenancy ones (no committee: they cover every committee, their cases are filtered as usual)."""
    return _campaign_clause(_roles(actor))


@lru_cache(maxsize=_MEMO)
def _campaign_clause(roles: frozenset[tuple[Role, str]]) -> ColumnElement[bool]:
    actor = _Roles(roles)
    sc = scope_of(actor)
    if sc.everything:
        return true()
    if sc.empty:
        return false()
    ids = home_committees(actor)
    readable = readable_committees(actor)
    parts = [CampaignRow.committee_id.is_(None), CampaignRow.committee_id.in_(ids)]
    if readable is not None:
        parts.append(CampaignRow.committee_id.in_(readable))
    return or_(*parts)


def sees_everything(session: Session, actor: Any) -> bool:
    """Deployment-wide auditors, and people whose readable committees include every committee that has
    branches (one index probe per committee, not a scan of the branches)."""
    sc = scope_of(actor)
    if sc.everything:
        return True
    readable = readable_committees(actor)
    if readable is None:
        return True
    if not (sc.subtree or sc.committees):
        return False
    return session.scalar(_other_committee(_roles(actor))) is None


@lru_cache(maxsize=_MEMO)
def _other_committee(roles: frozenset[tuple[Role, str]]) -> Select[tuple[int]]:
    """A committee with branches outside what the roles read (none: they read everything)."""
    readable = readable_committees(_Roles(roles))
    assert readable is not None
    return select(Committee.id).where(
        Committee.id.not_in(readable), exists(select(Branch.id).where(Branch.committee_id == Committee.id)),
    ).limit(1)


def reads_campaign_wholly(session: Session, actor: Any, row: CampaignRow) -> bool:
    """Whether the actor reads every branch of the campaign (its whole forms and charts): the campaign's
    committee is within their committee-level scope (a pre-tenancy campaign: every committee is)."""
    if row.committee_id is None:
        return sees_everything(session, actor)
    readable = readable_committees(actor)
    if readable is None:
        return True
    sc = scope_of(actor)
    if not (sc.subtree or sc.committees):
        return False
    return session.scalar(select(Committee.id).where(Committee.id == row.committee_id, Committee.id.in_(readable))
                          ) is not None


def lines(session: Session) -> dict[str, tuple[str, ...]]:
    """Every committee's line in the tree (codes, top first, its own last), from the small committees table."""
    rows = session.execute(select(Committee.id, Committee.code, Committee.path)).all()
    code = {i: c for i, c, _ in rows}
    return {c: tuple(code[int(i)] for i in (p or f"/{cid}/").strip("/").split("/") if i and int(i) in code)
            for cid, c, p in rows}


def may_read_committee(session: Session, actor: Any, code: str) -> bool:
    readable = readable_committees(actor)
    if readable is None:
        return session.scalar(select(Committee.id).where(Committee.code == code)) is not None
    return session.scalar(select(Committee.id).where(Committee.code == code, Committee.id.in_(readable))) is not None


def may_change(session: Session, actor: Any, row: CampaignRow) -> bool:
    """Only the organisation department of the campaign's own committee changes a campaign; a pre-tenancy
    campaign (no committee: it covers every committee) only an organisation department of a top committee."""
    orgs = sorted(code for role, code in actor.roles if role is Role.org_department and code)
    if not orgs:
        return False
    if row.committee_id is None:
        return session.scalar(select(Committee.id).where(Committee.code.in_(orgs), Committee.parent_id.is_(None))
                              .limit(1)) is not None
    return session.scalar(select(Committee.id).where(Committee.id == row.committee_id, Committee.code.in_(orgs))
                          ) is not None


def campaign_owner(session: Session, code: str | None) -> Committee | None:
    """The committee a new campaign belongs to: ``code`` (which must exist); without it the only committee,
    none while there is no committee yet (the first one adopts it), and an error naming ``--committee``
    when there are several."""
    if code:
        return get_committee(session, code)
    found = session.scalars(select(Committee).order_by(Committee.code).limit(9)).all()
    if len(found) > 1:
        shown = "、".join(c.code for c in found[:8]) + ("……" if len(found) > 8 else "")
        raise InvalidInput(f"已有多个党委，请用 --committee 指定活动所属的党委（{shown}）")
    return found[0] if found else None


def check_new_campaign(session: Session, owner: Committee | None, *, code: str, year: int) -> None:
    """One campaign per committee and year (the year's "latest campaign" must be one); codes are unique
    across the deployment."""
    taken = session.execute(select(CampaignRow.code, Committee.code).outerjoin(
        Committee, Committee.id == CampaignRow.committee_id).where(CampaignRow.code == code)).first()
    if taken is not None:
        if owner is not None and taken[1] not in (None, owner.code):
            raise InvalidInput(f"活动编码 {code} 已被党委 {taken[1]} 使用：请用 --code 另取一个编码"
                               f"（例如 {code}-{owner.code}）")
        raise InvalidInput(f"活动 {code} 已存在")
    if owner is not None:
        same = session.scalar(select(CampaignRow.code).where(CampaignRow.committee_id == owner.id,
                                                              CampaignRow.year == year))
        if same is not None:
            raise InvalidInput(f"党委 {owner.code} 已有 {year} 年的活动 {same}：同一党委每年只开展一次活动；"
                               "要修改它请用 `branchflow campaign change`")


# --- the default ("latest") campaign --------------------------------------------------------------

# built once (a page resolves its campaign on every request): the committee is a bound parameter
_LATEST = select(CampaignRow).order_by(CampaignRow.year.desc(), CampaignRow.id.desc()).limit(1)
_LATEST_OF = _LATEST.where(or_(CampaignRow.committee_id == bindparam("committee_id"), CampaignRow.committee_id.is_(None)))
_OWNERS = select(CampaignRow.committee_id).where(CampaignRow.committee_id.is_not(None)).distinct().limit(2)


def latest_campaign(session: Session, *, committee_id: int | None = None) -> CampaignRow:
    """The newest campaign of ``committee_id`` (its own, or a pre-tenancy one covering everyone); with
    no committee, the newest of all when every campaign belongs to one committee at most, else
    :class:`CampaignAmbiguous`."""
    if committee_id is not None:
        row = session.scalar(_LATEST_OF, {"committee_id": committee_id})
    else:
        if len(session.execute(_OWNERS).scalars().all()) > 1:
            raise CampaignAmbiguous(_newest_codes(session))
        row = session.scalar(_LATEST)
    if row is None:
        raise NotFound("还没有任何活动：请先用 `branchflow campaign create` 创建")
    return row


def _newest_codes(session: Session) -> list[str]:
    newest = (select(CampaignRow.committee_id, func.max(CampaignRow.year).label("y"))
              .group_by(CampaignRow.committee_id).subquery())
    return list(session.scalars(
        select(CampaignRow.code).join(newest, and_(newest.c.committee_id == CampaignRow.committee_id,
                                                   newest.c.y == CampaignRow.year))
        .order_by(CampaignRow.code)))


def default_campaign(session: Session, actor: Any) -> CampaignRow:
    """The latest campaign of the actor's own committee (when they work in exactly one), else as
    :func:`latest_campaign` without a committee."""
    ids = session.scalars(_home_two(_roles(actor))).all()
    return latest_campaign(session, committee_id=ids[0] if len(ids) == 1 else None)


@lru_cache(maxsize=_MEMO)
def _home_two(roles: frozenset[tuple[Role, str]]) -> Select[tuple[int]]:
    return home_committees(_Roles(roles)).limit(2)


def campaign_for(session: Session, actor: Any, code: str | None, *, general_branch: str | None = None) -> CampaignRow:
    """The campaign ``code`` if the actor may read it, or the actor's default campaign — with
    ``general_branch`` (one the actor reads), the latest of that general branch's committee; a campaign of
    another tenant answers like an unknown one."""
    if not code and general_branch:
        readable = readable_committees(actor)
        allowed = true() if readable is None else or_(
            GeneralBranch.code.in_(sorted(scope_of(actor).general_branches)), GeneralBranch.committee_id.in_(readable))
        gb_committee = session.scalar(select(GeneralBranch.committee_id).where(
            GeneralBranch.code == general_branch, allowed))
        if gb_committee is not None:
            return latest_campaign(session, committee_id=gb_committee)
    if not code:
        return default_campaign(session, actor)
    row = session.scalar(select(CampaignRow).where(CampaignRow.code == code, campaign_clause(actor)))
    if row is None:
        raise NotFound(f"活动 {code[:64]!r} 不存在或无权访问")
    return row


def committee_code_of(session: Session, row: CampaignRow) -> str | None:
    if row.committee_id is None:
        return None
    return session.scalar(select(Committee.code).where(Committee.id == row.committee_id))


# --- the tree --------------------------------------------------------------------------------------

def get_committee(session: Session, code: str) -> Committee:
    c = session.scalar(select(Committee).where(Committee.code == code))
    if c is None:
        raise NotFound(f"找不到党委 {code!r}")
    return c


def path_for(parent: Committee | None, committee_id: int) -> str:
    base = parent.path if parent is not None and parent.path else (f"/{parent.id}/" if parent is not None else "/")
    return f"{base}{committee_id}/"


def add_committee(session: Session, code: str, name: str, *, parent: str | None = None) -> Committee:
    """A new committee, under ``parent`` if given, with its path set. The first committee of a deployment
    adopts the campaigns made before any committee existed."""
    from workflow import limits

    code, name = code.strip(), name.strip()
    problem = limits.check_code(code, "党委编码") or limits.check_name(name, "党委名称", "org_name")
    if problem:
        raise InvalidInput(problem)
    if session.scalar(select(Committee.id).where(Committee.code == code)) is not None:
        raise InvalidInput(f"党委 {code} 已存在")
    up = get_committee(session, parent) if parent else None
    c = Committee(code=code, name=name, parent_id=up.id if up else None)
    session.add(c)
    session.flush()
    c.path = path_for(up, c.id)
    session.flush()
    adopt_campaigns(session)
    return c


def adopt_campaigns(session: Session) -> int:
    """With exactly one committee, campaigns with no committee become that committee's (as the upgrade
    does): a deployment set up with ``campaign create`` before the first import stays single-tenant."""
    ids = session.scalars(select(Committee.id).limit(2)).all()
    if len(ids) != 1:
        return 0
    res = session.execute(update(CampaignRow).where(CampaignRow.committee_id.is_(None))
                          .values(committee_id=ids[0]).execution_options(synchronize_session="fetch"))
    return int(res.rowcount or 0)  # type: ignore[attr-defined]


def fill_paths(session: Session) -> int:
    """Set the path of committees that have none (made by code that did not set it), parents first."""
    n = 0
    for _ in range(64):
        todo = session.scalars(select(Committee).where(Committee.path == "")).all()
        if not todo:
            break
        progressed = False
        for c in todo:
            up = session.get(Committee, c.parent_id) if c.parent_id else None
            if up is not None and not up.path:
                continue
            c.path = path_for(up, c.id)
            n += 1
            progressed = True
        session.flush()
        if not progressed:
            raise InvalidInput("党委的上下级关系中有环，无法计算层级路径")
    return n


def move_committee(session: Session, code: str, parent: str | None) -> Committee:
    """Re-parent a committee (``parent`` None: make it a top committee), rewriting the paths of its whole
    subtree in one UPDATE; a move under itself or its own descendant is refused."""
    c = get_committee(session, code)
    fill_paths(session)
    up = get_committee(session, parent) if parent else None
    if up is not None and (up.id == c.id or up.path.startswith(c.path)):
        raise InvalidInput(f"不能把党委 {code} 移到 {parent} 之下：{parent} 是 {code} 本身或其下级，会形成环")
    if (up.id if up else None) == c.parent_id:
        raise InvalidInput(f"党委 {code} 的上级已是 {parent or '（无）'}")
    old, new = c.path, path_for(up, c.id)
    # every path under the old prefix gets the new prefix: one statement over the (small) committees table
    session.execute(
        update(Committee).where(Committee.path.startswith(old, autoescape=False))
        .values(path=literal(new, String) + func.substr(Committee.path, len(old) + 1))
        .execution_options(synchronize_session=False))
    session.execute(update(Committee).where(Committee.id == c.id).values(parent_id=up.id if up else None)
                    .execution_options(synchronize_session=False))
    session.expire_all()
    return get_committee(session, code)


def tree(session: Session) -> list[dict[str, Any]]:
    """Every committee in tree order (by path), with its depth, parent and counts of branches."""
    fill_paths(session)
    counts = dict(session.execute(select(Branch.committee_id, func.count()).group_by(Branch.committee_id)).tuples().all())
    parent = aliased(Committee)
    rows = session.execute(select(Committee.id, Committee.code, Committee.name, Committee.path, parent.code)
                           .outerjoin(parent, parent.id == Committee.parent_id)).all()
    by_id = {r[0]: r for r in rows}

    def key(path: str) -> list[str]:
        return [by_id[int(i)][1] if int(i) in by_id else i for i in path.strip("/").split("/") if i]

    return [{"code": code, "name": name, "parent": pcode, "depth": path.strip("/").count("/"),
             "path": path, "branches": int(counts.get(cid, 0))}
            for cid, code, name, path, pcode in sorted(rows, key=lambda r: key(r[3]))]


_PATH_OF = select(Committee.path).where(Committee.id == bindparam("committee_id"))
_CODES_OF = select(Committee.id, Committee.code).where(Committee.id.in_(bindparam("ids", expanding=True)))


def ancestors(session: Session, committee_id: int, path: str | None = None) -> list[str]:
    """Codes of the committee's ancestors and its own, top first (``path``: the committee's, when the
    caller has read it already)."""
    if path is None:
        path = session.scalar(_PATH_OF, {"committee_id": committee_id}) or ""
    ids = [int(i) for i in path.strip("/").split("/") if i] or [committee_id]
    codes = dict(session.execute(_CODES_OF, {"ids": ids}).tuples().all())
    return [codes[i] for i in ids if i in codes]


def parent_id_of(session: Session, committee_id: int) -> int | None:
    return session.scalar(select(Committee.parent_id).where(Committee.id == committee_id))


@event.listens_for(Committee, "after_insert")
def _path_on_insert(_mapper: Any, connection: Any, target: Committee) -> None:
    """A committee added through the ORM without a path gets one at once (its parent's path + its id),
    so no code path can leave a committee outside every subtree."""
    if target.path:
        return
    parent_path = ""
    if target.parent_id is not None:
        parent_path = connection.execute(text("SELECT path FROM committees WHERE id = :i"),
                                         {"i": target.parent_id}).scalar() or f"/{target.parent_id}/"
    path = f"{parent_path or '/'}{target.id}/"
    connection.execute(text("UPDATE committees SET path = :p WHERE id = :i"), {"p": path, "i": target.id})
    from sqlalchemy.orm.attributes import set_committed_value

    set_committed_value(target, "path", path)


def open_latest_cases(session: Session, *, now: Any) -> int:
    """After an import: open the missing cases of every committee's latest campaign (and of the latest
    pre-tenancy one); nothing when there is no campaign yet."""
    from workflow.service import open_missing_cases

    adopt_campaigns(session)
    return sum(open_missing_cases(session, code, now=now) for code in latest_campaigns(session))


def latest_campaigns(session: Session) -> list[str]:
    """The code of every committee's latest campaign (and of the latest pre-tenancy one), by code: what a
    deployment-wide page (the public 公示 list) shows when no campaign is named."""
    latest = (select(CampaignRow.committee_id, func.max(CampaignRow.year).label("y"))
              .group_by(CampaignRow.committee_id).subquery())
    rows = session.execute(select(CampaignRow.code, CampaignRow.committee_id, CampaignRow.id).join(latest, and_(
        CampaignRow.year == latest.c.y,
        or_(CampaignRow.committee_id == latest.c.committee_id,
            and_(CampaignRow.committee_id.is_(None), latest.c.committee_id.is_(None)))))).all()
    newest: dict[int | None, tuple[int, str]] = {}
    for code, committee_id, cid in rows:
        if committee_id not in newest or cid > newest[committee_id][0]:
            newest[committee_id] = (cid, code)
    return sorted(code for _, code in newest.values())
