"""The parent committee's read-only roll-up (issue 12, 上级党委汇总): per child committee — its whole
subtree — the grade distribution, stage progress, overdue count and the conversion of the lowest grade
(晋位升级: branches whose last year's grade was the lowest and whose grade now is higher).

Read from the case tallies (``workflow.tallies``: counts per campaign, branch's committee, stage, grade,
last year's grade and deadline, kept by database triggers — not the cases themselves). Each campaign is
one committee's, so it counts in one row of the roll-up (the child whose subtree holds its committee), and
it grades on its preset's scale — two committees may grade on different scales in the same year. The
campaigns are read first (a few columns each); each is given the group (row, grade scale) it counts in,
and the tallies are summed in SQL per (group, stage, grade, last year's grade): rows × scales × stages ×
grades × grades, not campaigns (31 × 3 groups for the national roll-up of 968 campaigns). A pre-tenancy
campaign (no committee: it covers every committee's branches) is summed by the branch's committee within
the subtree instead. The grouped rows are labelled in Python with each group's scale.

Every statement is built once (Core columns, no ORM entities).
"""

from __future__ import annotations

import datetime as dt
import json
import weakref
from collections import Counter
from typing import Any

from sqlalchemy import bindparam, exists, func, or_, select
from sqlalchemy.orm import Session

from states.base import Role, Stage
from workflow import tallies, tenancy
from workflow.errors import Forbidden
from workflow.models import CampaignChangeRow, CampaignRow, Committee
from workflow.repository import _campaign

ROLLUP_ROLES = (Role.org_department, Role.auditor)


def _hidden(code: str) -> Exception:
    from workflow.errors import NotFound

    return NotFound(f"党委 {code[:64]!r} 不存在或无权访问")


# --- statements (built once) ------------------------------------------------------------------------

_COMMITTEE = select(Committee.id, Committee.code, Committee.name, Committee.path).where(
    Committee.code == bindparam("code"))
_CHILDREN = (select(Committee.id, Committee.code, Committee.name, Committee.path)
             .where(Committee.parent_id == bindparam("parent")).order_by(Committee.code))
_TOPS = (select(Committee.id, Committee.code, Committee.name, Committee.path)
         .where(Committee.parent_id.is_(None)).order_by(Committee.code))
_SUBTREE = select(Committee.id, Committee.code, Committee.name, Committee.path).where(
    Committee.path.startswith(bindparam("prefix"), autoescape=False))
_CODES = select(Committee.id, Committee.code)
_NOWHERE = "-"  # a path prefix no committee has (paths are /id/…/)
_NO_PATH = select(Committee.id).where(Committee.path == "").limit(1)
# the campaigns of the subtree (their committee's path under the prefix) and the pre-tenancy ones
_IN_TREE = or_(CampaignRow.committee_id.is_(None), Committee.path.startswith(bindparam("prefix"), autoescape=False))
_YEAR = (select(func.max(CampaignRow.year)).select_from(CampaignRow)
         .outerjoin(Committee, Committee.id == CampaignRow.committee_id).where(_IN_TREE))
_LAST_CHANGE = (select(func.max(CampaignChangeRow.seq)).where(CampaignChangeRow.campaign_id == CampaignRow.id)
                .scalar_subquery())
_LIVE = exists().where(tallies.case_tallies.c.campaign_id == CampaignRow.id, tallies.case_tallies.c.n != 0)
_CAMPAIGNS = (select(CampaignRow.id, CampaignRow.code, CampaignRow.name, CampaignRow.committee_id, Committee.path,
                     _LAST_CHANGE.label("seq"), _LIVE.label("live"))
              .select_from(CampaignRow).outerjoin(Committee, Committee.id == CampaignRow.committee_id)
              .where(CampaignRow.year == bindparam("year"), _IN_TREE).order_by(CampaignRow.code))
_CONFIGS = select(CampaignRow.id, CampaignRow.code, CampaignRow.config).where(
    CampaignRow.id.in_(bindparam("ids", expanding=True)))


def _root(session: Session, actor: Any, committee: str | None) -> Any:
    sc = tenancy.scope_of(actor)
    if not (sc.everything or sc.subtree):
        raise Forbidden(f"{actor.name}（{actor.email}）无权查看下级党委汇总：限上级党委组织部和审计人员")
    if committee:
        c = session.execute(_COMMITTEE, {"code": committee}).first()
        if c is None or not tenancy.may_read_committee(session, actor, committee) or not (
                sc.everything or _in_subtree_scope(session, sc, c)):
            raise _hidden(committee)
        return c
    if sc.everything and not sc.subtree:
        return None
    if len(sc.subtree) > 1:
        from workflow.errors import InvalidInput

        raise InvalidInput(f"你在多个党委任职，请用 --committee 指定汇总哪个党委（{'、'.join(sorted(sc.subtree))}）")
    code = next(iter(sc.subtree))
    c = session.execute(_COMMITTEE, {"code": code}).first()
    if c is None:
        from workflow.errors import NotFound

        raise NotFound(f"找不到党委 {code!r}")  # as tenancy.get_committee says it
    return c


def _in_subtree_scope(session: Session, sc: tenancy.Scope, c: Any) -> bool:
    """The committee lies in the subtree of one of the actor's org-department / auditor committees."""
    line = tenancy.ancestors(session, c.id, c.path or None)
    return bool(set(line) & sc.subtree)


def rollup(session: Session, actor: Any, *, now: dt.datetime, committee: str | None = None,
           year: int | None = None, each: bool = False) -> dict[str, Any]:
    """The roll-up of the children of the actor's committee (or of ``committee`` within their scope) for
    ``year`` (default: the latest year with a campaign in the subtree). Read only. With ``each``, one row
    per committee of the subtree (its own branches only, in tree order): the consolidated forms' rows."""
    root = _root(session, actor, committee)
    if session.execute(_NO_PATH).first() is not None:
        tenancy.fill_paths(session)
        if root is not None:  # its path may just have been set
            root = session.execute(_COMMITTEE, {"code": root.code}).one()
    # the rows: the root's direct children (each with its subtree) and the root itself (its own branches)
    if root is None:
        children = session.execute(_TOPS).all()
        prefix: str | None = "/"  # every path starts with its top committee's
    else:
        children = session.execute(_CHILDREN, {"parent": root.id}).all()
        prefix = root.path or None  # a root without a path holds nothing (as before)
    if each:
        codes = dict(session.execute(_CODES).tuples().all())  # small table
        everyone = session.execute(_SUBTREE, {"prefix": prefix}).all() if prefix else []
        children = sorted(everyone, key=lambda c: _tree_key(c.path, codes))
    if year is None:
        year = session.scalar(_YEAR, {"prefix": prefix or _NOWHERE})
    camps = session.execute(_CAMPAIGNS, {"year": year, "prefix": prefix or _NOWHERE}).all() if year is not None else []
    own = root.id if root is not None else -1
    totals: dict[int, dict[str, Any]] = {}
    if camps:
        # each campaign's grade scale (kept per database while its change log has the same last seq: a
        # national roll-up covers 968 campaigns, their configurations' text is fetched only when one changed)
        parsed = _scales(session, camps)
        today = now.astimezone(parsed[camps[0].id][2]).date()
        heads: dict[str, int] = {str(c.id): int(c.id) for c in children}

        def credit(cid: int | None, path: str | None) -> int:
            """The row a committee counts in: itself (``each``), else the child whose subtree holds it (the
            root's own branches, and anything outside every child, count as the root's)."""
            if each:
                return int(cid) if cid is not None else own
            for part in (path or "").strip("/").split("/"):
                hit = heads.get(part)
                if hit is not None:
                    return hit
            return own

        if any(c.committee_id is None for c in camps):
            # a pre-tenancy campaign covers every committee: by the branch's committee, the subtree's only
            code_of = {c.id: c.code for c in camps}
            for cid, path, camp_id, stage, grade, previous, n, n_late in tallies.rollup_by_committee(
                    session, list(code_of), today, prefix=prefix or _NOWHERE):
                sc = parsed[camp_id]
                t = totals.get(into := credit(cid, path)) or totals.setdefault(into, _empty())
                t["campaigns"].add(code_of[camp_id])
                _add(t, sc, stage, grade, previous, n, n_late)
        else:
            # every campaign is one committee's, and its cases are that committee's: each campaign counts
            # in its committee's row; the tallies are summed per (row, scale)
            groups: dict[tuple[int, int], int] = {}  # (row, id(scale)) → group number
            of_group: list[tuple[int, Scale]] = []
            member: dict[str, int] = {}  # campaign id → its group
            for c in camps:
                into = credit(c.committee_id, c.path)
                sc = parsed[c.id]
                no = groups.get((into, id(sc)))
                if no is None:
                    no = groups[into, id(sc)] = len(of_group)
                    of_group.append((into, sc))
                member[str(c.id)] = no
                if c.live:
                    t = totals.get(into) or totals.setdefault(into, _empty())
                    t["campaigns"].add(c.code)
            for no, stage, grade, previous, n, n_late in tallies.rollup_by_group(
                    session, json.dumps(member, separators=(",", ":")), today):
                into, sc = of_group[no]
                t = totals.get(into) or totals.setdefault(into, _empty())
                _add(t, sc, stage, grade, previous, n, n_late)
    rows: list[dict[str, Any]] = []
    if root is not None and not each:
        rows.append(_row(root.code, root.name, "本级", totals.get(root.id, _empty())))
    for c in children:
        kind = "本级" if root is not None and c.id == root.id else "下级"
        row = _row(c.code, c.name, kind, totals.get(c.id, _empty()))
        if each:
            row["depth"] = c.path.strip("/").count("/") - (root.path.strip("/").count("/") if root else 0)
        rows.append(row)
    grand = _empty()
    for t in totals.values():
        for key in ("branches", "overdue", "lowest_last_year", "lowest_moved_up", "no_previous"):
            grand[key] += t[key]
        grand["stages"].update(t["stages"])
        grand["grades"].update(t["grades"])
        grand["campaigns"] |= t["campaigns"]
        for g, r in t["order"].items():
            if g not in grand["order"] or r < grand["order"][g]:
                grand["order"][g] = r
    return {
        "committee": root.code if root is not None else None,
        "committee_name": root.name if root is not None else "全部党委",
        "year": year,
        "campaigns": [{"code": c.code, "name": c.name, "committee_id": c.committee_id} for c in camps],
        "rows": rows,
        "total": _row(root.code if root else "", "合计", "合计", grand),
    }


def _add(t: dict[str, Any], sc: Scale, stage: str, grade: str | None, previous: str | None, n: int,
         n_late: int) -> None:
    """Count ``n`` cases of one (stage, grade, last year's grade) on the scale ``sc`` in ``t``."""
    scale_of, lowest, _tz = sc
    t["branches"] += n
    t["overdue"] += n_late
    t["stages"][stage] += n
    band = scale_of.get(grade) if grade else None
    if band is not None:
        t["grades"][band[0]] += n
        # a label two scales share (一般: 2nd of three, 3rd of four) is ordered by its best rank counted here
        had = t["order"].get(band[0])
        if had is None or band[1] < had:
            t["order"][band[0]] = band[1]
    if previous and previous == lowest and previous in scale_of:
        t["lowest_last_year"] += n
        if band is not None and band[1] < scale_of[previous][1]:
            t["lowest_moved_up"] += n
    if previous is None:
        t["no_previous"] += n


# a campaign's grade code → (label, rank), its lowest grade's code, its time zone
Scale = tuple[dict[str, tuple[str, int]], str, Any]
# per database (engine): campaign id → (last change seq, code, scale)
_SCALES: weakref.WeakKeyDictionary[Any, dict[int, tuple[int | None, str, Scale]]] = weakref.WeakKeyDictionary()
# one object per distinct scale (campaigns on the same preset share it): the roll-up groups by it
_INTERNED: dict[tuple[Any, ...], Scale] = {}


def _scales(session: Session, camps: Any) -> dict[int, Scale]:
    """Each campaign's grade codes with their labels and ranks, its lowest grade and time zone (equal scales
    are one object). Parsed once per process and configuration (repository's per-id cache), and remembered
    per database while the campaign's change log has the same last seq: every change of a configuration
    appends to that log in the same transaction (as ``repository``'s hot path relies on)."""
    per_db = _SCALES.setdefault(session.get_bind().engine, {})
    out: dict[int, Scale] = {}
    missing = {}
    for c in camps:
        hit = per_db.get(c.id)
        if hit is not None and hit[0] == c.seq and hit[1] == c.code:
            out[c.id] = hit[2]
        else:
            missing[c.id] = c.seq
    if missing:
        for cid, code, config in session.execute(_CONFIGS, {"ids": list(missing)}).tuples():
            p = _campaign(cid, code, config)
            sc = p.grading.scale
            bands = {b.code: (b.grade, sc.rank(b.code)) for b in sc.bands}
            key = (tuple(sorted(bands.items())), sc.lowest.code, str(p.tz))
            scale = _INTERNED.setdefault(key, (bands, sc.lowest.code, p.tz))
            out[cid] = scale
            per_db[cid] = (missing[cid], code, scale)
    return out


def _tree_key(path: str, codes: dict[int, str]) -> list[str]:
    """Tree order as ``committee list`` shows it: parents first, siblings by code."""
    return [codes.get(int(i), i) for i in path.strip("/").split("/") if i]


def _empty() -> dict[str, Any]:
    return {"branches": 0, "overdue": 0, "stages": Counter(), "grades": Counter(), "campaigns": set(),
            "lowest_last_year": 0, "lowest_moved_up": 0, "no_previous": 0, "order": {}}


def _row(code: str, name: str, kind: str, t: dict[str, Any]) -> dict[str, Any]:
    accepted = t["stages"].get(Stage.accepted.value, 0)
    order = t["order"]
    return {
        "committee": code, "name": name, "kind": kind, "branches": t["branches"], "overdue": t["overdue"],
        "accepted": accepted,
        "stages": [{"stage": s.value, "label": s.label, "count": t["stages"].get(s.value, 0)} for s in Stage],
        "grades": [{"label": g, "count": n} for g, n in sorted(t["grades"].items(),
                                                                key=lambda x: (order.get(x[0], 99), x[0]))],
        "campaigns": sorted(t["campaigns"]),
        "lowest_last_year": t["lowest_last_year"], "lowest_moved_up": t["lowest_moved_up"],
        "conversion_rate": (t["lowest_moved_up"] / t["lowest_last_year"]) if t["lowest_last_year"] else None,
        "without_last_year": t["no_previous"],
    }
