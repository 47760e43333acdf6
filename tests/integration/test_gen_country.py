"""Smoke test of the scale generator (bench/gen_country.py) at 200 branches: the rows it writes are what
the service would have written — every chain verifies, the tree is a tree, stages and grades are spread.
The scale runs themselves live in bench/ (docs/scale.md)."""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from sqlalchemy import Engine, text

from workflow import audit, views
from workflow.db import session_factory

BENCH = Path(__file__).resolve().parents[2] / "bench" / "gen_country.py"


def _gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_country", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_country", mod)
    spec.loader.exec_module(mod)
    return mod


def test_generated_tree_verifies_branch_by_branch(engine: Engine) -> None:
    out = _gen().generate(engine, n_branches=200, n_committees=6, n_provinces=2, year=2026,
                          as_of=dt.date(2026, 5, 20), seed=3, echo=lambda _s: None)
    assert out["counts"]["branches"] == out["counts"]["cases"] == 200
    assert out["leaf_committees"] == 3 and out["counts"]["campaigns"] == 3
    with engine.connect() as conn:
        coms = {code: (cid, parent, path) for cid, code, parent, path in conn.execute(
            text("SELECT id, code, parent_id, path FROM committees ORDER BY id"))}
        presets = sorted(conn.execute(text("SELECT config FROM campaigns")).scalars())
        late = conn.execute(text("SELECT b.code, c.stage FROM cases c JOIN branches b ON b.id = c.branch_id "
                                 "WHERE c.deadline < '2026-05-20' ORDER BY c.id LIMIT 1")).one()
        ahead = conn.execute(text("SELECT b.code, k.code FROM cases c JOIN branches b ON b.id = c.branch_id "
                                  "JOIN campaigns k ON k.id = c.campaign_id WHERE c.stage = 'rectification' "
                                  "ORDER BY c.id LIMIT 1")).one()
        stages = set(conn.execute(text("SELECT DISTINCT stage FROM cases")).scalars())
        grades = set(conn.execute(text("SELECT DISTINCT grade FROM cases WHERE grade IS NOT NULL")).scalars())
        secretaries = conn.execute(text("SELECT COUNT(*) FROM role_assignments WHERE role = 'branch_secretary'")).scalar()
    # a tree: the root, provinces under it, leaves under a province, each path its parent's plus its id
    assert coms["CN"][1] is None and coms["CN"][2] == "/1/"
    by_id = {cid: path for cid, _, path in coms.values()}
    for cid, parent, path in coms.values():
        if parent is not None:
            assert path == f"{by_id[parent]}{cid}/"
    assert {p for p in ("haitang-2022", "henan-2012", "cumtb-2012") if any(f'preset = "{p}"' in c for c in presets)} \
        == {"haitang-2022", "henan-2012", "cumtb-2012"}
    assert len(stages) >= 3 and len(grades) >= 2 and secretaries == 200
    sessions = session_factory(engine)
    with sessions() as s:
        for code in (late[0], ahead[0]):
            report = audit.verify(s, branch_code=code)
            assert report.ok, report.problems
            assert report.events >= 1
        card = views.show(s, ahead[0], now=dt.datetime(2026, 5, 20, 12, tzinfo=dt.UTC), campaign=ahead[1])
        assert card["stage"] == "rectification" and card["grade"]
        whole = audit.verify(s, master=False)  # the generator writes no master-data log (its docstring)
        assert whole.ok, whole.problems[:3]
        assert whole.cases == 200
