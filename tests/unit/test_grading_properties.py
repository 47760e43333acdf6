"""Properties of grading that hold for every preset: more points never cost a grade; a veto means the lowest."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from workflow.campaign import BRANCH_TYPES, Campaign, load_preset, preset_names
from workflow.case import BranchFacts
from workflow.grading import grade

PRESETS: dict[str, Campaign] = {name: load_preset(name) for name in preset_names()}
AS_OF = dt.date(2012, 4, 18)

preset = st.sampled_from(sorted(PRESETS))
score = st.floats(min_value=0, max_value=100, allow_nan=False, allow_infinity=False)
rate = st.floats(min_value=0, max_value=1, allow_nan=False, allow_infinity=False)
some_date = st.one_of(st.none(), st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2030, 12, 31)))


@given(name=preset, a=score, b=score)
def test_scale_is_monotone(name: str, a: float, b: float) -> None:
    scale = PRESETS[name].grading.scale
    lo, hi = sorted((a, b))
    assert scale.rank(scale.band_for(hi).code) <= scale.rank(scale.band_for(lo).code)


@given(name=preset, s=score)
def test_every_score_has_exactly_the_first_admitting_band(name: str, s: float) -> None:
    scale = PRESETS[name].grading.scale
    band = scale.band_for(s)
    assert band.admits(s)
    better = scale.bands[: scale.rank(band.code)]
    assert not any(b.admits(s) for b in better)


@st.composite
def case(draw: st.DrawFn) -> tuple[Campaign, BranchFacts, dict[str, Any]]:
    c = PRESETS[draw(preset)]
    btype = draw(st.sampled_from(BRANCH_TYPES))
    rubric = c.grading.rubric_for(btype)
    scores = {i.id: draw(st.floats(min_value=0, max_value=i.max, allow_nan=False)) for i in rubric.items}
    facts = BranchFacts(
        code="B",
        name="支部",
        branch_type=btype,
        member_count=draw(st.integers(min_value=3, max_value=200)),
        last_reelection=draw(some_date),
        last_activity=draw(some_date),
        secretary_violation=draw(st.booleans()),
    )
    recs = {
        "survey": {},
        "self_assessment": {"scores": scores},
        "member_evaluation": {
            "tally": {
                "ballots": draw(st.integers(min_value=1, max_value=200)),
                "rating": draw(score),
                "satisfaction_members": draw(rate),
                "satisfaction_secretary": draw(rate),
            },
            "peer": draw(score),
            "superior": draw(score),
        },
    }
    return c, facts, recs


def _bump(c: Campaign, facts: BranchFacts, recs: dict[str, Any], where: str, item: int, frac: float) -> dict[str, Any]:
    """The same records with one score raised by ``frac`` of its headroom."""
    out = {
        "survey": dict(recs["survey"]),
        "self_assessment": {"scores": dict(recs["self_assessment"]["scores"])},
        "member_evaluation": {**recs["member_evaluation"], "tally": dict(recs["member_evaluation"]["tally"])},
    }
    if where == "self":
        it = c.grading.rubric_for(facts.branch_type).items[item % len(c.grading.rubric_for(facts.branch_type).items)]
        old = out["self_assessment"]["scores"][it.id]
        out["self_assessment"]["scores"][it.id] = old + (it.max - old) * frac
    elif where == "members":
        old = out["member_evaluation"]["tally"]["rating"]
        out["member_evaluation"]["tally"]["rating"] = old + (100 - old) * frac
    else:
        old = out["member_evaluation"][where]
        out["member_evaluation"][where] = old + (100 - old) * frac
    return out


@settings(max_examples=300)
@given(
    data=case(),
    where=st.sampled_from(["self", "members", "peer", "superior"]),
    item=st.integers(min_value=0, max_value=100),
    frac=st.floats(min_value=0, max_value=1, allow_nan=False),
)
def test_more_points_never_lower_the_grade(
    data: tuple[Campaign, BranchFacts, dict[str, Any]], where: str, item: int, frac: float
) -> None:
    c, facts, recs = data
    scale = c.grading.scale
    before = grade(c, facts, recs, as_of=AS_OF)
    after = grade(c, facts, _bump(c, facts, recs, where, item, frac), as_of=AS_OF)
    assert after["total"] >= before["total"] - 1e-9
    assert scale.rank(after["scale_grade"]) <= scale.rank(before["scale_grade"])
    assert scale.rank(after["grade"]) <= scale.rank(before["grade"])


@settings(max_examples=300)
@given(data=case(), as_of=st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2030, 12, 31)))
def test_any_veto_gives_the_lowest_grade(data: tuple[Campaign, BranchFacts, dict[str, Any]], as_of: dt.date) -> None:
    c, facts, recs = data
    r = grade(c, facts, recs, as_of=as_of)
    lowest = c.grading.scale.lowest
    if r["veto"]:
        assert r["grade"] == lowest.code and r["grade_label"] == lowest.grade
        assert all(v["rule"] and v["label"] and isinstance(v["facts"], dict) for v in r["veto"])
    else:
        assert r["grade"] == r["scale_grade"]


@given(data=case())
def test_cumtb_secretary_violation_always_vetoes(data: tuple[Campaign, BranchFacts, dict[str, Any]]) -> None:
    _, facts, recs = data
    c = PRESETS["cumtb-2012"]
    facts = BranchFacts(
        code=facts.code,
        name=facts.name,
        branch_type=facts.branch_type,
        member_count=facts.member_count,
        secretary_violation=True,
        last_reelection=AS_OF,
        last_activity=AS_OF,
    )
    # a rubric of another preset may have other item ids: score the cumtb rubric in full
    recs = {**recs, "self_assessment": {"scores": {i.id: i.max for i in c.grading.rubric_for(facts.branch_type).items}}}
    r = grade(c, facts, recs, as_of=AS_OF)
    assert "secretary_violation" in [v["rule"] for v in r["veto"]]
    assert r["grade"] == "D"
