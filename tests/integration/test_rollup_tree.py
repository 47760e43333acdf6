"""The roll-up (workflow/rollup.py) on a generated tree (bench/gen_country.py: a national root, provinces,
leaf committees each running its own campaign on haitang-2022, henan-2012 or cumtb-2012 — three grade
scales side by side), SQLite and PostgreSQL: what it shows for the nation, a province, a leaf and the
consolidated forms' one-row-per-committee view equals a direct count over the cases, each case labelled
with its own campaign's scale; and the scoping stays: a parent sees its subtree, a child never sees its
parent or a sibling."""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from states.base import Role, Stage
from workflow import rollup, service, tallies
from workflow.db import session_factory
from workflow.errors import Forbidden, NotFound
from workflow.people import add_person
from workflow.repository import campaign_of, get_campaign_row

NOW = dt.datetime(2026, 5, 20, 9, tzinfo=dt.UTC)
AUDITOR = "shenji@cn.edu.cn"  # the generator's deployment-wide auditor
NATIONAL_ORG, PROVINCE_ORG = "org@cn.test", "org@p01.test"


def _generate(engine: Engine) -> None:
    path = Path(__file__).resolve().parents[2] / "bench" / "gen_country.py"
    spec = importlib.util.spec_from_file_location("gen_country", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_country", mod)
    spec.loader.exec_module(mod)
    mod.generate(engine, n_branches=180, n_committees=9, n_provinces=2, year=2026, as_of=dt.date(2026, 5, 20),
                 seed=7, echo=lambda _s: None)


def from_cases(s: Session, root_code: str | None, *, each: bool = False) -> dict[str, Any]:
    """The roll-up counted case by case (no tallies): each case in the row of the child whose subtree holds
    its campaign's committee, graded on that campaign's scale; a grade label two scales share is ordered by
    its best rank among the cases counted in the row."""
    coms = {r.id: r for r in s.execute(text("SELECT id, code, name, parent_id, path FROM committees"))}
    root = next((c for c in coms.values() if c.code == root_code), None)
    prefix = root.path if root is not None else "/"
    if each:
        kids = sorted((c for c in coms.values() if c.path.startswith(prefix)),
                      key=lambda c: [coms[int(i)].code for i in c.path.strip("/").split("/")])
    else:
        parent = root.id if root is not None else None
        kids = sorted((c for c in coms.values() if c.parent_id == parent), key=lambda c: c.code)
    heads = {c.id for c in kids}

    def row_of(committee_id: int) -> int:
        if each:
            return committee_id
        hit = [int(i) for i in coms[committee_id].path.strip("/").split("/") if int(i) in heads]
        return hit[0] if hit else (root.id if root is not None else -1)

    camps = [r for r in s.execute(text("SELECT k.id, k.code, k.name, k.year, k.committee_id FROM campaigns k "
                                       "JOIN committees m ON m.id = k.committee_id ORDER BY k.code"))
             if coms[r.committee_id].path.startswith(prefix)]
    year = max(c.year for c in camps)
    camps = [c for c in camps if c.year == year]
    today = NOW.astimezone(campaign_of(get_campaign_row(s, camps[0].code)).tz).date()
    totals: dict[int, dict[str, Any]] = {}
    for c in camps:
        scale = campaign_of(get_campaign_row(s, c.code)).grading.scale
        for stage, grade, prev, deadline in s.execute(text(
                "SELECT stage, grade, previous_grade, deadline FROM cases WHERE campaign_id = :c"), {"c": c.id}):
            t = totals.setdefault(row_of(c.committee_id), {
                "n": 0, "late": 0, "stages": Counter(), "grades": Counter(), "order": {}, "campaigns": set(),
                "lowest": 0, "up": 0, "none": 0})
            if isinstance(deadline, str):
                deadline = dt.date.fromisoformat(deadline)
            t["n"] += 1
            t["late"] += bool(deadline is not None and deadline < today and stage != Stage.accepted.value)
            t["stages"][stage] += 1
            t["campaigns"].add(c.code)
            band = next((b for b in scale.bands if b.code == grade), None)
            if band is not None:
                t["grades"][band.grade] += 1
                t["order"][band.grade] = min(t["order"].get(band.grade, 99), scale.rank(band.code))
            if prev == scale.lowest.code:
                t["lowest"] += 1
                t["up"] += band is not None and scale.rank(band.code) < scale.rank(prev)
            t["none"] += prev is None

    def row(code: str, name: str, kind: str, t: dict[str, Any] | None) -> dict[str, Any]:
        t = t or {"n": 0, "late": 0, "stages": Counter(), "grades": Counter(), "order": {}, "campaigns": set(),
                  "lowest": 0, "up": 0, "none": 0}
        return {"committee": code, "name": name, "kind": kind, "branches": t["n"], "overdue": t["late"],
                "accepted": t["stages"][Stage.accepted.value],
                "stages": [{"stage": st.value, "label": st.label, "count": t["stages"][st.value]} for st in Stage],
                "grades": [{"label": g, "count": n} for g, n in sorted(t["grades"].items(),
                                                                        key=lambda x: (t["order"][x[0]], x[0]))],
                "campaigns": sorted(t["campaigns"]), "lowest_last_year": t["lowest"], "lowest_moved_up": t["up"],
                "conversion_rate": t["up"] / t["lowest"] if t["lowest"] else None, "without_last_year": t["none"]}

    rows = [] if root is None or each else [row(root.code, root.name, "本级", totals.get(root.id))]
    for c in kids:
        r = row(c.code, c.name, "本级" if root is not None and c.id == root.id else "下级", totals.get(c.id))
        if each:
            r["depth"] = c.path.strip("/").count("/") - (root.path.strip("/").count("/") if root else 0)
        rows.append(r)
    grand: dict[str, Any] = {"n": 0, "late": 0, "stages": Counter(), "grades": Counter(), "order": {},
                             "campaigns": set(), "lowest": 0, "up": 0, "none": 0}
    for t in totals.values():
        for k in ("n", "late", "lowest", "up", "none"):
            grand[k] += t[k]
        grand["stages"].update(t["stages"])
        grand["grades"].update(t["grades"])
        grand["campaigns"] |= t["campaigns"]
        for g, r in t["order"].items():
            grand["order"][g] = min(grand["order"].get(g, 99), r)
    return {"committee": root.code if root is not None else None,
            "committee_name": root.name if root is not None else "全部党委", "year": year,
            "campaigns": [{"code": c.code, "name": c.name, "committee_id": c.committee_id} for c in camps],
            "rows": rows, "total": row(root.code if root else "", "合计", "合计", grand)}


@pytest.fixture
def tree(engine: Engine) -> Engine:
    _generate(engine)
    sessions = session_factory(engine)
    with sessions() as s, s.begin():
        add_person(s, NATIONAL_ORG, "全国组织部", [Role.org_department], "CN")
        add_person(s, PROVINCE_ORG, "省组织部", [Role.org_department], "P01")
        # last year's grades: every third case the lowest of its campaign's scale, every third another grade
        for camp_id, config_code in s.execute(text("SELECT id, code FROM campaigns")).all():
            scale = campaign_of(get_campaign_row(s, config_code)).grading.scale
            ids = [r[0] for r in s.execute(text("SELECT id FROM cases WHERE campaign_id = :c ORDER BY id"),
                                           {"c": camp_id})]
            for i, case_id in enumerate(ids):
                prev = (scale.lowest.code, scale.bands[0].code, None)[i % 3]
                s.execute(text("UPDATE cases SET previous_grade = :p WHERE id = :i"), {"p": prev, "i": case_id})
    with sessions() as s:
        assert tallies.tallies_check(s) == []  # the triggers followed
    return engine


def test_the_roll_up_equals_a_count_over_the_cases_on_every_level(tree: Engine) -> None:
    with session_factory(tree)() as s:
        scales = {campaign_of(get_campaign_row(s, c)).grading.scale.lowest.code
                  for c in s.scalars(text("SELECT code FROM campaigns"))}
        assert scales == {"backward", "poor", "D"}  # three scales in one year
        auditor, national, province = (service.actor_for(s, e) for e in (AUDITOR, NATIONAL_ORG, PROVINCE_ORG))
        leaf = service.actor_for(s, s.scalar(text("SELECT p.email FROM people p JOIN role_assignments r ON "
                                                  "r.person_id = p.id WHERE r.role = 'org_department' AND "
                                                  "r.scope_code = 'P01U001'")))
        for actor, code, each in ((auditor, None, False), (auditor, "CN", False), (auditor, "P01", False),
                                  (auditor, "P02U001", False), (auditor, "CN", True), (national, None, False),
                                  (national, "P02", False), (national, "CN", True), (province, None, False),
                                  (province, "P01", True), (province, "P01U002", False), (leaf, None, False)):
            got = rollup.rollup(s, actor, now=NOW, committee=code, year=None, each=each)
            want = from_cases(s, got["committee"], each=each)
            assert got == want, (actor.email, code, each)
        cn = rollup.rollup(s, national, now=NOW)
        assert [r["committee"] for r in cn["rows"]] == ["CN", "P01", "P02"]
        assert cn["total"]["branches"] == 180 and cn["total"]["lowest_last_year"] > 0
        assert cn["total"]["lowest_moved_up"] > 0 and cn["total"]["overdue"] > 0
        labels = [g["label"] for g in cn["total"]["grades"]]
        assert len(labels) == len(set(labels)) >= 4  # 好 of two scales is one label
        # the same year asked for explicitly; a year with no campaign is empty
        assert rollup.rollup(s, national, now=NOW, year=2026) == cn
        empty = rollup.rollup(s, national, now=NOW, year=2020)
        assert empty["campaigns"] == [] and empty["total"]["branches"] == 0


def test_a_child_never_sees_its_parent_or_a_sibling(tree: Engine) -> None:
    with session_factory(tree)() as s:
        province = service.actor_for(s, PROVINCE_ORG)
        leaf = service.actor_for(s, s.scalar(text("SELECT p.email FROM people p JOIN role_assignments r ON "
                                                  "r.person_id = p.id WHERE r.role = 'org_department' AND "
                                                  "r.scope_code = 'P01U001'")))
        member = service.actor_for(s, s.scalar(text("SELECT p.email FROM people p JOIN role_assignments r ON "
                                                    "r.person_id = p.id WHERE r.role = 'committee_member' "
                                                    "ORDER BY p.id LIMIT 1")))
        for actor, code in ((province, "CN"), (province, "P02"), (province, "P02U001"), (leaf, "P01"),
                            (leaf, "CN"), (leaf, "P01U002"), (province, "NOPE")):
            with pytest.raises(NotFound):
                rollup.rollup(s, actor, now=NOW, committee=code)
        with pytest.raises(Forbidden):
            rollup.rollup(s, member, now=NOW)
        mine = rollup.rollup(s, province, now=NOW)
        assert mine["committee"] == "P01" and {r["committee"] for r in mine["rows"]} <= {
            c for c in s.scalars(text("SELECT code FROM committees WHERE code LIKE 'P01%'"))}
        assert {c["code"] for c in mine["campaigns"]} == set(s.scalars(text(
            "SELECT k.code FROM campaigns k JOIN committees m ON m.id = k.committee_id WHERE m.code LIKE 'P01U%'")))
