"""The presets: each loads on its own year and on another, and grades hand-worked examples as its seed says."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from states.base import WORKING_STAGES, Stage
from workflow.calendar import for_campaign
from workflow.campaign import BRANCH_TYPES, Campaign, load_preset, preset_names
from workflow.case import BranchFacts
from workflow.errors import InvalidInput
from workflow.grading import explain, grade

AS_OF = dt.date(2012, 4, 18)

HAITANG = load_preset("haitang-2022")
HENAN = load_preset("henan-2012")
CUMTB = load_preset("cumtb-2012")


def branch(branch_type: str = "teacher", **kw: Any) -> BranchFacts:
    """A branch in good standing on AS_OF: re-elected a year ago, active last month, no violation."""
    facts: dict[str, Any] = {
        "code": "B01",
        "name": "测试党支部",
        "branch_type": branch_type,
        "member_count": 20,
        "committee_size": 7,
        "last_reelection": dt.date(2011, 4, 18),
        "last_activity": dt.date(2012, 3, 20),
        "secretary_violation": False,
    }
    facts.update(kw)
    return BranchFacts(**facts)


def fill(campaign: Campaign, total: float, branch_type: str = "teacher") -> dict[str, float]:
    """Self-assessment scores summing to ``total``: items filled to their maximum in rubric order."""
    rubric = campaign.grading.rubric_for(branch_type)
    assert 0 <= total <= 100
    scores: dict[str, float] = {}
    left = total
    for item in rubric.items:
        s = min(item.max, left)
        scores[item.id] = s
        left = round(left - s, 6)
    assert abs(sum(scores.values()) - total) < 1e-9
    return scores


def records(
    campaign: Campaign,
    self_total: float,
    *,
    branch_type: str = "teacher",
    rating: float | None = None,
    ballots: int = 12,
    sat_members: float = 0.9,
    sat_secretary: float = 0.9,
    peer: float | None = None,
    superior: float | None = None,
    survey: dict[str, Any] | None = None,
) -> dict[str, Any]:
    me: dict[str, Any] = {}
    if rating is not None:
        me["tally"] = {
            "ballots": ballots,
            "rating": rating,
            "satisfaction_members": sat_members,
            "satisfaction_secretary": sat_secretary,
        }
    if peer is not None:
        me["peer"] = peer
    if superior is not None:
        me["superior"] = superior
    return {
        "survey": survey or {},
        "self_assessment": {"scores": fill(campaign, self_total, branch_type)},
        "member_evaluation": me,
    }


# ---------------------------------------------------------------- every preset loads


@pytest.mark.parametrize("name", preset_names())
def test_preset_loads_on_its_own_year(name: str) -> None:
    c = load_preset(name)
    assert c.preset == name
    assert str(c.year) in name
    assert [s for s in WORKING_STAGES] == list(c.deadlines)
    assert all(d.year == c.year for d in c.deadlines.values())
    dates = [c.deadlines[s] for s in WORKING_STAGES]
    assert dates == sorted(dates)
    # every branch type has a rubric and every rubric sums to 100
    for t in BRANCH_TYPES:
        assert abs(sum(i.max for i in c.grading.rubric_for(t).items) - 100) < 1e-9
    # the lowest grade carries the yellow card, and the scale says how it reads its boundaries
    assert c.grading.scale.lowest.yellow_card
    assert c.grading.scale.note
    assert all(b.demands for b in c.grading.scale.bands)
    # the working calendar knows the campaign's year (chinesecalendar covers 2012 and 2022)
    cal = for_campaign(c)
    assert cal.add_working_days(c.deadlines[Stage.committee_grading], c.publicity.window_working_days)


@pytest.mark.parametrize("name", preset_names())
def test_preset_placed_on_2026(name: str) -> None:
    own = load_preset(name)
    c = load_preset(name, year=2026)
    assert c.year == 2026
    assert c.code.endswith("-2026")
    assert "2026" in c.name
    for stage in WORKING_STAGES:
        assert c.deadlines[stage] == own.deadlines[stage].replace(year=2026)
    assert c.grading == own.grading
    assert c.tasks == own.tasks


def test_there_are_three_presets() -> None:
    assert {"haitang-2022", "henan-2012", "cumtb-2012"} <= set(preset_names())


def test_unknown_preset_is_named() -> None:
    with pytest.raises(InvalidInput, match="nosuch"):
        load_preset("nosuch")


# ---------------------------------------------------------------- haitang-2022 (seed 003)


@pytest.mark.parametrize(
    ("total", "code", "label"),
    [
        (100, "advanced", "先进"),
        (85.5, "advanced", "先进"),  # > 85
        (85, "average", "一般"),  # “65至85分为一般”: 85 itself is 一般
        (65, "average", "一般"),  # and so is 65
        (64.9, "backward", "后进"),  # < 65
        (0, "backward", "后进"),
    ],
)
def test_haitang_boundaries(total: float, code: str, label: str) -> None:
    # self weight 1.0: the total is the self-assessment sum
    r = grade(HAITANG, branch(), records(HAITANG, total), as_of=AS_OF)
    assert r["total"] == total
    assert (r["grade"], r["grade_label"]) == (code, label)
    assert r["veto"] == []


def test_haitang_has_no_veto_rules() -> None:
    # seed 003 has no veto: a secretary's violation does not by itself change the grade
    b = branch(secretary_violation=True, last_activity=None, last_reelection=None)
    r = grade(HAITANG, b, records(HAITANG, 90), as_of=AS_OF)
    assert r["grade"] == "advanced" and r["veto"] == []


def test_haitang_member_evaluation_not_needed() -> None:
    assert HAITANG.grading.weights.required_sources == ["self"]


# ---------------------------------------------------------------- henan-2012 (seed 001)


@pytest.mark.parametrize(
    ("self_total", "rating", "total", "code", "label"),
    [
        # 0.5 × 92 + 0.5 × 88 = 46 + 44 = 90 → 好 (≥ 90)
        (92, 88, 90, "good", "好"),
        # 0.5 × 91 + 0.5 × 88 = 45.5 + 44 = 89.5 → 较好 (好 needs ≥ 90)
        (91, 88, 89.5, "fairly_good", "较好"),
        # 0.5 × 80 + 0.5 × 80 = 80 → 较好
        (80, 80, 80, "fairly_good", "较好"),
        # 0.5 × 79 + 0.5 × 80 = 39.5 + 40 = 79.5 → 一般
        (79, 80, 79.5, "average", "一般"),
        # 0.5 × 60 + 0.5 × 60 = 60 → 一般 (“60-79分为一般”)
        (60, 60, 60, "average", "一般"),
        # 0.5 × 59 + 0.5 × 60 = 29.5 + 30 = 59.5 → 较差
        (59, 60, 59.5, "poor", "较差"),
    ],
)
def test_henan_weighted_boundaries(self_total: float, rating: float, total: float, code: str, label: str) -> None:
    r = grade(HENAN, branch(), records(HENAN, self_total, rating=rating), as_of=AS_OF)
    assert r["sources"]["self"]["weighted"] == pytest.approx(self_total * 0.5)
    assert r["sources"]["members"]["weighted"] == pytest.approx(rating * 0.5)
    assert r["total"] == total
    assert (r["grade"], r["grade_label"]) == (code, label)


def test_henan_scale_directly() -> None:
    scale = HENAN.grading.scale
    assert [scale.band_for(s).grade for s in (100, 90, 89.99, 89.5, 89, 80, 79.5, 60, 59.99, 0)] == [
        "好", "好", "较好", "较好", "较好", "较好", "一般", "一般", "较差", "较差",
    ]


def test_henan_needs_member_evaluation() -> None:
    with pytest.raises(InvalidInput, match="党员群众测评"):
        grade(HENAN, branch(), records(HENAN, 95), as_of=AS_OF)


def test_henan_demands_follow_seed_001() -> None:
    bands = {b.grade: b for b in HENAN.grading.scale.bands}
    assert "总结" in bands["好"].demands and "宣传" in bands["好"].demands
    assert "指导" in bands["较好"].demands
    assert "领导干部联系点" in bands["一般"].demands and "目标" in bands["一般"].demands
    assert "黄牌" in bands["较差"].demands and "剖析" in bands["较差"].demands and "限期" in bands["较差"].demands
    assert [b.yellow_card for b in HENAN.grading.scale.bands] == [False, False, False, True]


def test_henan_dates_and_tasks() -> None:
    assert HENAN.deadlines[Stage.acceptance] == dt.date(2012, 9, 5)
    assert HENAN.deadlines[Stage.rectification] == dt.date(2012, 8, 31)
    plan = [t for t in HENAN.tasks if "工作方案" in t.task]
    assert plan and plan[0].deadline.startswith("4 月 27 日")
    assert len(HENAN.grading.rubrics[0].items) == 7  # the seed's “七项指标”
    assert HENAN.grading.rubrics[0].categories == ["支部班子好", "党员队伍好", "工作机制好", "工作业绩好", "群众反映好"]


def test_henan_has_no_veto_rules() -> None:
    b = branch(secretary_violation=True)
    r = grade(HENAN, b, records(HENAN, 95, rating=95, sat_members=0.1, sat_secretary=0.1), as_of=AS_OF)
    assert r["grade"] == "good" and r["veto"] == []


# ---------------------------------------------------------------- cumtb-2012 (seed 004)


def cumtb_records(**kw: Any) -> dict[str, Any]:
    """Self 95, members 92, peer 88, superior 90 (unless overridden).

    0.3 × 95 = 28.5;  0.2 × 92 = 18.4;  0.2 × 88 = 17.6;  0.3 × 90 = 27.0
    28.5 + 18.4 + 17.6 + 27.0 = 91.5 → A 好 (≥ 90)
    """
    args: dict[str, Any] = {"rating": 92, "peer": 88, "superior": 90}
    self_total = kw.pop("self_total", 95)
    args.update(kw)
    return records(CUMTB, self_total, **args)


def test_cumtb_weighted_combination_a() -> None:
    r = grade(CUMTB, branch(), cumtb_records(), as_of=AS_OF)
    assert {s: v["weighted"] for s, v in r["sources"].items()} == pytest.approx(
        {"self": 28.5, "members": 18.4, "peer": 17.6, "superior": 27.0}
    )
    assert r["total"] == 91.5
    assert (r["grade"], r["grade_label"]) == ("A", "好")
    assert r["veto"] == []


def test_cumtb_weighted_combination_b() -> None:
    # 0.3 × 90 + 0.2 × 85 + 0.2 × 80 + 0.3 × 95 = 27 + 17 + 16 + 28.5 = 88.5 → B 较好
    r = grade(CUMTB, branch(), cumtb_records(self_total=90, rating=85, peer=80, superior=95), as_of=AS_OF)
    assert r["total"] == 88.5
    assert r["grade"] == "B"


def test_cumtb_weighted_combination_c_and_d() -> None:
    # 0.3 × 70 + 0.2 × 60 + 0.2 × 50 + 0.3 × 60 = 21 + 12 + 10 + 18 = 61 → C 一般
    r = grade(CUMTB, branch(), cumtb_records(self_total=70, rating=60, peer=50, superior=60), as_of=AS_OF)
    assert r["total"] == 61 and r["grade"] == "C"
    # 0.3 × 60 + 0.2 × 60 + 0.2 × 55 + 0.3 × 55 = 18 + 12 + 11 + 16.5 = 57.5 → D 较差 (a yellow card)
    r = grade(CUMTB, branch(), cumtb_records(self_total=60, rating=60, peer=55, superior=55), as_of=AS_OF)
    assert r["total"] == 57.5 and r["grade"] == "D"
    assert CUMTB.grading.scale.by_code("D").yellow_card


def test_cumtb_boundaries_assumed_like_seed_001() -> None:
    scale = CUMTB.grading.scale
    assert [scale.band_for(s).code for s in (90, 89.5, 80, 79.9, 60, 59.9)] == ["A", "B", "B", "C", "C", "D"]


def test_cumtb_requires_every_source() -> None:
    with pytest.raises(InvalidInput, match="分类互评.*上级考评|上级考评.*分类互评"):
        grade(CUMTB, branch(), records(CUMTB, 95, rating=90), as_of=AS_OF)


# Each veto rule firing alone: the branch otherwise earns A (91.5); the veto forces D and names itself.
VETO_CASES = [
    ("secretary_violation", {"secretary_violation": True}, {}, {"secretary_violation": True}),
    (
        "reelection_overdue",
        # three years and one day since the last re-election, on AS_OF
        {"last_reelection": dt.date(2009, 4, 17)},
        {},
        {"last_reelection": "2009-04-17", "limit_years": 3},
    ),
    (
        "inactive",
        # 366 days without an activity (> 365)
        {"last_activity": AS_OF - dt.timedelta(days=366)},
        {},
        {"last_activity": "2011-04-18", "limit_days": 365},
    ),
    ("satisfaction_members", {}, {"sat_members": 0.49}, {"rate": 0.49, "floor": 0.5}),
    ("satisfaction_secretary", {}, {"sat_secretary": 0.45}, {"rate": 0.45, "floor": 0.5}),
]


@pytest.mark.parametrize(("rule", "facts", "tally", "expected_facts"), VETO_CASES, ids=[c[0] for c in VETO_CASES])
def test_cumtb_each_veto_alone(
    rule: str, facts: dict[str, Any], tally: dict[str, Any], expected_facts: dict[str, Any]
) -> None:
    r = grade(CUMTB, branch(**facts), cumtb_records(**tally), as_of=AS_OF)
    assert r["total"] == 91.5
    assert r["scale_grade"] == "A"  # what the score alone earns
    assert [v["rule"] for v in r["veto"]] == [rule]
    assert r["veto"][0]["facts"] == expected_facts
    assert (r["grade"], r["grade_label"]) == ("D", "较差")
    text = "\n".join(explain(r))
    assert r["veto"][0]["label"] in text and "一票否决" in text


@pytest.mark.parametrize(
    ("facts", "tally"),
    [
        ({"last_reelection": dt.date(2009, 4, 18)}, {}),  # exactly three years: the term ends today, not overdue
        ({"last_activity": AS_OF - dt.timedelta(days=365)}, {}),  # exactly a year: not “一年以上”
        ({}, {"sat_members": 0.5, "sat_secretary": 0.5}),  # exactly 50 %: not “低于50%”
    ],
)
def test_cumtb_veto_thresholds_not_reached(facts: dict[str, Any], tally: dict[str, Any]) -> None:
    r = grade(CUMTB, branch(**facts), cumtb_records(**tally), as_of=AS_OF)
    assert r["veto"] == [] and r["grade"] == "A"


def test_cumtb_reelection_across_leap_day() -> None:
    # re-elected on 29 Feb 2008: three years later is 28 Feb 2011; overdue from 1 Mar 2011
    b = branch(last_reelection=dt.date(2008, 2, 29))
    assert grade(CUMTB, b, cumtb_records(), as_of=dt.date(2011, 2, 28))["veto"] == []
    assert [v["rule"] for v in grade(CUMTB, b, cumtb_records(), as_of=dt.date(2011, 3, 1))["veto"]] == [
        "reelection_overdue"
    ]


def test_cumtb_survey_facts_win_over_imported_ones() -> None:
    # imported: inactive for two years; the survey confirmed an activity last month → no veto
    b = branch(last_activity=dt.date(2010, 1, 1))
    r = grade(CUMTB, b, cumtb_records(survey={"last_activity": "2012-03-01"}), as_of=AS_OF)
    assert r["veto"] == []
    # and the other way round: the survey found a violation the import did not record
    r = grade(CUMTB, branch(), cumtb_records(survey={"secretary_violation": True}), as_of=AS_OF)
    assert [v["rule"] for v in r["veto"]] == ["secretary_violation"] and r["grade"] == "D"


def test_cumtb_several_vetoes_all_named() -> None:
    b = branch(secretary_violation=True, last_activity=dt.date(2010, 1, 1))
    r = grade(CUMTB, b, cumtb_records(sat_secretary=0.3), as_of=AS_OF)
    assert {v["rule"] for v in r["veto"]} == {"secretary_violation", "inactive", "satisfaction_secretary"}
    assert r["grade"] == "D"


def test_cumtb_standards_are_reference_only() -> None:
    # 65 % and 75 % miss the standards (70 % / 80 %) but are above the veto floor (50 %)
    r = grade(CUMTB, branch(), cumtb_records(sat_members=0.65, sat_secretary=0.75), as_of=AS_OF)
    assert r["grade"] == "A" and r["veto"] == []
    assert r["standards"] == {
        "satisfaction_members": {"value": 0.65, "standard": 0.7, "met": False},
        "satisfaction_secretary": {"value": 0.75, "standard": 0.8, "met": False},
    }
    r = grade(CUMTB, branch(), cumtb_records(sat_members=0.7, sat_secretary=0.8), as_of=AS_OF)
    assert all(s["met"] for s in r["standards"].values())


@pytest.mark.parametrize(
    ("branch_type", "table"),
    [
        ("teacher", "教师"),
        ("admin", "教师"),
        ("retired", "教师"),
        ("undergraduate", "学生"),
        ("graduate", "学生"),
    ],
)
def test_cumtb_rubric_by_branch_type(branch_type: str, table: str) -> None:
    rubric = CUMTB.grading.rubric_for(branch_type)
    assert table in rubric.name
    r = grade(CUMTB, branch(branch_type), cumtb_records(), as_of=AS_OF)
    assert r["rubric"] == rubric.name


def test_cumtb_teacher_and_student_tables_differ() -> None:
    teacher = CUMTB.grading.rubric_for("teacher")
    student = CUMTB.grading.rubric_for("undergraduate")
    assert teacher is not student
    for rubric in (teacher, student):
        assert len(rubric.items) == 17
        assert sum(i.max for i in rubric.items) == 100
        assert rubric.categories == ["支部班子好", "党员队伍好", "工作机制好", "工作业绩好", "群众反映好"]
        for cat in rubric.categories:
            assert sum(i.max for i in rubric.items if i.category == cat) == 20
    assert "副高级以上专业技术职务" in teacher.item("1.3").text  # type: ignore[union-attr]
    assert "副高级" not in student.item("1.3").text  # type: ignore[union-attr]
    assert "团支部" in student.item("3.1").text  # type: ignore[union-attr]
    assert "24学时" in teacher.item("2.3").text and "16学时" in student.item("2.3").text  # type: ignore[union-attr]


def test_cumtb_student_self_score_uses_student_table() -> None:
    # the self score sums the student table's items: the student branch scores 17 items to 95
    scores = fill(CUMTB, 95, "graduate")
    recs = cumtb_records()
    recs["self_assessment"] = {"scores": scores}
    r = grade(CUMTB, branch("graduate"), recs, as_of=AS_OF)
    assert r["sources"]["self"]["score"] == 95 and r["total"] == 91.5


def test_cumtb_configuration_matches_seed_004() -> None:
    w = CUMTB.grading.weights
    assert (w.self, w.members, w.peer, w.superior) == (0.3, 0.2, 0.2, 0.3)
    v = CUMTB.grading.veto
    assert v.secretary_violation and v.reelection_overdue_years == 3 and v.inactive_days == 365
    assert (v.min_satisfaction_members, v.min_satisfaction_secretary) == (0.5, 0.5)
    s = CUMTB.grading.standards
    assert (s.satisfaction_members, s.satisfaction_secretary) == (0.7, 0.8)
    assert [b.code for b in CUMTB.grading.scale.bands] == ["A", "B", "C", "D"]
    assert [b.grade for b in CUMTB.grading.scale.bands] == ["好", "较好", "一般", "较差"]
    assert CUMTB.deadlines[Stage.member_evaluation] == dt.date(2012, 4, 18)
    assert CUMTB.deadlines[Stage.committee_grading] == dt.date(2012, 4, 18)
    forms = [t for t in CUMTB.tasks if "汇总表" in t.task]
    assert len(forms) == 2 and all(t.deadline == "4 月 18 日前" for t in forms)
