"""The parent committee's read-only roll-up (issue 12, 上级党委汇总): per child committee — its whole
subtree — the grade distribution, stage progress, overdue count and the conversion of the lowest grade
(晋位升级: branches whose last year's grade was the lowest and whose grade now is higher).

One GROUP BY over the case tallies of the year's campaigns (``workflow.tallies``: counts per campaign,
branch's committee, stage, grade, last year's grade and deadline, kept by database triggers — not the
cases themselves), grouped by (campaign, stage, grade, last year's grade) and, for a pre-tenancy
campaign, the branch's committee within the subtree (``path`` prefix over the small committees table).
The grouped rows (campaigns × stages × grades × grades, not branches) are then labelled in Python with
each campaign's own grade scale — two committees may grade on different scales in the same year.
"""

from __future__ import annotations

import datetime as dt
import weakref
from collections import Counter
from typing import Any

from sqlalchemy import false, func, or_, select
from sqlalchemy.orm import Session, aliased

from states.base import Role, Stage
from workflow import tallies, tenancy
from workflow.errors import Forbidden
from workflow.models import CampaignChangeRow, CampaignRow, Committee
from workflow.repository import _campaign

ROLLUP_ROLES = (Role.org_department, Role.auditor)


def _hidden(code: str) -> Exception:
    from workflow.errors import NotFound

    return NotFound(f"党委 {code[:64]!r} 不存在或无权访问")


def _root(session: Session, actor: Any, committee: str | None) -> Committee | None:
    sc = tenancy.scope_of(actor)
    if not (sc.everything or sc.subtree):
        raise Forbidden(f"{actor.name}（{actor.email}）无权查看下级党委汇总：限上级党委组织部和审计人员")
    if committee:
        c = session.scalar(select(Committee).where(Committee.code == committee))
        if c is None or not tenancy.may_read_committee(session, actor, committee) or not (
                sc.everything or _in_subtree_scope(session, sc, c)):
            raise _hidden(committee)
        return c
    if sc.everything and not sc.subtree:
        return None
    if len(sc.subtree) > 1:
        from workflow.errors import InvalidInput

        raise InvalidInput(f"你在多个党委任职，请用 --committee 指定汇总哪个党委（{'、'.join(sorted(sc.subtree))}）")
    return tenancy.get_committee(session, next(iter(sc.subtree)))


def _in_subtree_scope(session: Session, sc: tenancy.Scope, c: Committee) -> bool:
    """The committee lies in the subtree of one of the actor's org-department / auditor committees."""
    line = tenancy.ancestors(session, c.id)
    return bool(set(line) & sc.subtree)


def rollup(session: Session, actor: Any, *, now: dt.datetime, committee: str | None = None,
           year: int | None = None, each: bool = False) -> dict[str, Any]:
    """The roll-up of the children of the actor's committee (or of ``committee`` within their scope) for
    ``year`` (default: the latest year with a campaign in the subtree). Read only. With ``each``, one row
    per committee of the subtree (its own branches only, in tree order): the consolidated forms' rows."""
    root = _root(session, actor, committee)
    tenancy.fill_paths(session)
    # the rows: the root's direct children (each with its subtree) and the root itself (its own branches)
    child = aliased(Committee)
    if root is None:
        kids = select(child.id, child.code, child.name, child.path).where(child.parent_id.is_(None))
    else:
        kids = select(child.id, child.code, child.name, child.path).where(child.parent_id == root.id)
    children = session.execute(kids.order_by(child.code)).all()
    scope_ids = [root.id] if root is not None else [c.id for c in children]
    prefixes = _paths(session, scope_ids)
    if each:
        everyone = select(child.id, child.code, child.name, child.path).where(
            or_(*[child.path.startswith(p, autoescape=False) for p in prefixes]) if prefixes else false())
        codes = dict(session.execute(select(Committee.id, Committee.code)).tuples().all())  # small table
        children = sorted(session.execute(everyone).all(), key=lambda c: _tree_key(c.path, codes))
    in_tree = select(Committee.id).where(
        or_(*[Committee.path.startswith(p, autoescape=False) for p in prefixes]) if prefixes else false())
    if year is None:
        year = session.scalar(select(func.max(CampaignRow.year)).where(
            or_(CampaignRow.committee_id.in_(in_tree), CampaignRow.committee_id.is_(None))))
    last_change = (select(func.max(CampaignChangeRow.seq)).where(CampaignChangeRow.campaign_id == CampaignRow.id)
                   .scalar_subquery())
    camps = session.execute(select(CampaignRow.id, CampaignRow.code, CampaignRow.name, CampaignRow.committee_id,
                                   last_change.label("seq")).where(
        CampaignRow.year == year, or_(CampaignRow.committee_id.in_(in_tree), CampaignRow.committee_id.is_(None)))
        .order_by(CampaignRow.code)).all() if year is not None else []
    by_id = {c.id: c for c in camps}
    # each campaign's grade scale and time zone, kept per database while its change log has the same last seq
    # (a national roll-up covers 968 campaigns: their configurations' text is fetched only when one changed)
    parsed = _scales(session, camps)
    today = now.astimezone(next(iter(parsed.values()))[2]).date() if parsed else now.date()
    totals: dict[int, dict[str, Any]] = {}
    if camps:
        # group key: the child committee whose subtree holds the branch; the root's own branches as root
        own = root.id if root is not None else -1
        # grouped by the branch's own committee; each committee is then credited to the child whose subtree
        # holds it from the (small) committees table
        into = _credit(session, children, own, each)
        # read from the case tallies (workflow/tallies.py, kept by triggers): a few rows per campaign instead
        # of every case of the year
        if any(c.committee_id is None for c in camps):
            # a pre-tenancy campaign covers every committee: by the branch's committee, the subtree's only
            groups: Any = tallies.rollup_groups(session, list(by_id), today, committees=in_tree)
        else:
            # every campaign is one committee's, and its cases are that committee's: per campaign, credited
            # to the campaign's committee
            owner = {c.id: c.committee_id for c in camps}
            groups = ((owner[r[1]], *r[1:]) for r in tallies.rollup_groups(session, list(by_id), today))
        code_of = {c.id: c.code for c in camps}
        for k, camp_id, stage, grade, previous, n, n_late in groups:
            scale_of, lowest, _tz = parsed[camp_id]
            into_id = into.get(int(k), own)
            t = totals.get(into_id)
            if t is None:
                t = totals[into_id] = _empty()
            t["branches"] += n
            t["overdue"] += int(n_late or 0)
            t["stages"][stage] += n
            t["campaigns"].add(code_of[camp_id])
            band = scale_of.get(grade) if grade else None
            if band is not None:
                t["grades"][band[0]] += n
                t["order"].setdefault(band[0], band[1])
            if previous and previous == lowest and previous in scale_of:
                t["lowest_last_year"] += n
                if band is not None and band[1] < scale_of[previous][1]:
                    t["lowest_moved_up"] += n
            if previous is None:
                t["no_previous"] += n
    rows = []
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
            grand["order"].setdefault(g, r)
    return {
        "committee": root.code if root is not None else None,
        "committee_name": root.name if root is not None else "全部党委",
        "year": year,
        "campaigns": [{"code": c.code, "name": c.name, "committee_id": c.committee_id} for c in camps],
        "rows": rows,
        "total": _row(root.code if root else "", "合计", "合计", grand),
    }


# a campaign's grade code → (label, rank), its lowest grade's code, its time zone
Scale = tuple[dict[str, tuple[str, int]], str, Any]
# per database (engine): campaign id → (last change seq, code, scale)
_SCALES: weakref.WeakKeyDictionary[Any, dict[int, tuple[int | None, str, Scale]]] = weakref.WeakKeyDictionary()


def _scales(session: Session, camps: Any) -> dict[int, Scale]:
    """Each campaign's grade codes with their labels and ranks, its lowest grade and time zone. Parsed once
    per process and configuration (repository's per-id cache), and remembered per database while the
    campaign's change log has the same last seq: every change of a configuration appends to that log in the
    same transaction (as ``repository``'s hot path relies on)."""
    per_db = _SCALES.setdefault(session.get_bind().engine, {})
    out: dict[int, Scale] = {}
    missing = []
    for c in camps:
        hit = per_db.get(c.id)
        if hit is not None and hit[0] == c.seq and hit[1] == c.code:
            out[c.id] = hit[2]
        else:
            missing.append(c)
    if missing:
        seqs = {c.id: c.seq for c in missing}
        for cid, code, config in session.execute(select(CampaignRow.id, CampaignRow.code, CampaignRow.config)
                                                 .where(CampaignRow.id.in_(list(seqs)))):
            p = _campaign(cid, code, config)
            sc = p.grading.scale
            out[cid] = ({b.code: (b.grade, sc.rank(b.code)) for b in sc.bands}, sc.lowest.code, p.tz)
            per_db[cid] = (seqs[cid], code, out[cid])
    return out


def _credit(session: Session, children: Any, own: int, each: bool) -> dict[int, int]:
    """committee id → the row it counts in: itself (``each``), else the child whose subtree holds it
    (the root's own branches, and anything outside every child, count as the root's)."""
    if each:
        return {c.id: c.id for c in children}
    paths = session.execute(select(Committee.id, Committee.path)).tuples().all()
    heads = {f"/{c.id}/": c.id for c in children}
    out: dict[int, int] = {}
    for cid, path in paths:
        for part in (path or "").strip("/").split("/"):
            hit = heads.get(f"/{part}/")
            if hit is not None:
                out[cid] = hit
                break
        else:
            out[cid] = own
    return out


def _tree_key(path: str, codes: dict[int, str]) -> list[str]:
    """Tree order as ``committee list`` shows it: parents first, siblings by code."""
    return [codes.get(int(i), i) for i in path.strip("/").split("/") if i]


def _paths(session: Session, ids: list[int]) -> list[str]:
    return [p for p in session.scalars(select(Committee.path).where(Committee.id.in_(ids))) if p]


def _empty() -> dict[str, Any]:
    return {"branches": 0, "overdue": 0, "stages": Counter(), "grades": Counter(), "campaigns": set(),
            "lowest_last_year": 0, "lowest_moved_up": 0, "no_previous": 0, "order": {}}


def _row(code: str, name: str, kind: str, t: dict[str, Any]) -> dict[str, Any]:
    accepted = t["stages"].get(Stage.accepted.value, 0)
    return {
        "committee": code, "name": name, "kind": kind, "branches": t["branches"], "overdue": t["overdue"],
        "accepted": accepted,
        "stages": [{"stage": s.value, "label": s.label, "count": t["stages"].get(s.value, 0)} for s in Stage],
        "grades": [{"label": g, "count": n} for g, n in sorted(t["grades"].items(),
                                                                key=lambda x: (t["order"].get(x[0], 99), x[0]))],
        "campaigns": sorted(t["campaigns"]),
        "lowest_last_year": t["lowest_last_year"], "lowest_moved_up": t["lowest_moved_up"],
        "conversion_rate": (t["lowest_moved_up"] / t["lowest_last_year"]) if t["lowest_last_year"] else None,
        "without_last_year": t["no_previous"],
    }
