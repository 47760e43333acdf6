"""Every action in every stage, the two backward moves, refusals that change nothing, roles and sign-off —
through the real services on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from states.base import Stage
from tests.support.world import AUDITOR, GB2_SEC, GB_SEC, MEMBERS, ORG, World, at
from workflow import service
from workflow.errors import BranchflowError, Forbidden, InvalidInput, NotFound, TransitionRefused
from workflow.models import EventRow


def snapshot(world: World, branch: str) -> tuple[int, int, dict[str, Any]]:
    case = world.case(branch)
    with world.sessions() as s:
        n = s.scalar(select(func.count()).select_from(EventRow).where(EventRow.case_id == case.row.id))
    return case.version, int(n or 0), case.state


# Each action as a person would try it, with data valid for the stage where it belongs.
def actions(world: World, branch: str) -> dict[str, Callable[[dt.datetime], Any]]:
    gb, sec = world.gb_sec(branch), world.secretary(branch)
    return {
        "record_survey": lambda now: world.do(service.record, branch, gb, world.survey_data(), now=now),
        "record_self": lambda now: world.do(service.record, branch, sec, world.self_data(branch), now=now),
        "compute_grade": lambda now: world.do(service.compute_grade, branch, MEMBERS[0], now=now),
        "adjust": lambda now: world.do(service.adjust_grade, branch, MEMBERS[0], "advanced", "党委研究认为表现突出", now=now),
        "sign": lambda now: world.do(service.sign, branch, MEMBERS[1], now=now),
        "publish": lambda now: world.do(service.publish, branch, ORG, now=now),
        "object": lambda now: world.do(service.lodge_objection, branch, "sec3@test.cn", "评分与事实不符", now=now),
        "resolve": lambda now: world.do(service.resolve_objection, branch, ORG, 1, upheld=False, reason="经核实不成立", now=now),
        "complete_item": lambda now: world.do(service.complete_item, branch, sec, 1, "已完成", now=now),
        "inspect": lambda now: world.do(service.inspect, branch, gb, {"passed": True, "summary": "整改到位通过",
                                                                      "inspected_on": "2026-09-01", "regrade_score": 88}, now=now),
        "advance": lambda now: world.do(service.advance, branch, ORG if branch else gb, now=now),
    }


# Which actions a stage admits at all (the rest must be refused there and change nothing).
ADMITS = {
    Stage.survey: {"record_survey", "advance"},
    Stage.self_assessment: {"record_self", "advance"},
    Stage.member_evaluation: {"advance"},
    Stage.committee_grading: {"compute_grade", "adjust", "sign", "advance"},
    Stage.publicity: {"publish", "object", "resolve", "advance"},
    Stage.rectification: {"complete_item", "advance"},
    Stage.acceptance: {"inspect", "advance"},
    Stage.accepted: set(),
}


@pytest.mark.parametrize("stage", list(Stage), ids=lambda s: s.value)
def test_actions_out_of_their_stage_are_refused_and_change_nothing(world: World, stage: Stage) -> None:
    world.drive("B1", stage)
    acts = actions(world, "B1")
    before = snapshot(world, "B1")
    tried = 0
    for name, act in acts.items():
        if name in ADMITS[stage]:
            continue
        with pytest.raises(BranchflowError) as err:
            act(at(9, 10))
        assert isinstance(err.value, (TransitionRefused, InvalidInput, Forbidden)), (name, err.value)
        assert err.value.message, name
        assert snapshot(world, "B1") == before, f"{name} changed the case in {stage.value}"
        tried += 1
    assert tried == len(acts) - len(ADMITS[stage])


def test_refused_advance_names_unmet_criteria_and_roles(world: World) -> None:
    world.drive("B1", Stage.self_assessment)
    data = world.self_data("B1")
    data["scores"].pop("17")
    data["attendance"] = 5  # 10 members: exactly half is not more than half
    world.do(service.record, "B1", "sec1@test.cn", data, now=at(4, 1))
    before = snapshot(world, "B1")
    with pytest.raises(TransitionRefused) as err:
        world.do(service.advance, "B1", "sec1@test.cn", now=at(4, 1))
    codes = {u.code for u in err.value.unmet}
    assert codes == {"self_assessment.scores", "self_assessment.attendance"}
    assert "第 17 项" in err.value.message and "未超过党员总数 10 人的半数" in err.value.message
    assert "党支部书记" in err.value.allowed_roles and "组织部" in err.value.allowed_roles
    assert snapshot(world, "B1") == before


def test_wrong_roles_are_forbidden(world: World) -> None:
    with pytest.raises(Forbidden, match="党总支书记、组织部"):
        world.do(service.record, "B1", "sec1@test.cn", world.survey_data(), now=at(3, 5))
    with pytest.raises(Forbidden):  # the other general branch's secretary
        world.do(service.record, "B1", GB2_SEC, world.survey_data(), now=at(3, 5))
    with pytest.raises(Forbidden):  # auditors read, never act
        world.do(service.advance, "B1", AUDITOR, now=at(3, 5))
    world.drive("B1", Stage.self_assessment)
    with pytest.raises(Forbidden):  # another branch's secretary
        world.do(service.record, "B1", "sec2@test.cn", world.self_data("B1"), now=at(4, 1))
    with pytest.raises(NotFound):
        world.do(service.advance, "NOPE", ORG, now=at(4, 1))


def test_score_out_of_bounds_is_rejected_and_nothing_recorded(world: World) -> None:
    world.drive("B1", Stage.self_assessment)
    before = snapshot(world, "B1")
    data = world.self_data("B1")
    data["scores"]["17"] = 11  # item 17's maximum is 10
    data["scores"]["99"] = 1
    with pytest.raises(InvalidInput) as err:
        world.do(service.record, "B1", "sec1@test.cn", data, now=at(4, 1))
    assert "第 17 项得分 11 超出范围 0–10" in err.value.message
    assert "没有第 99 项" in err.value.message
    with pytest.raises(InvalidInput, match="到会人数：须不小于 0"):
        world.do(service.record, "B1", "sec1@test.cn", {"attendance": -1}, now=at(4, 1))
    assert snapshot(world, "B1") == before


def test_sign_off_rules(world: World) -> None:
    world.drive("B4", Stage.committee_grading)
    with pytest.raises(TransitionRefused, match="尚未计算"):
        world.do(service.sign, "B4", MEMBERS[0], now=at(4, 20))
    world.do(service.compute_grade, "B4", MEMBERS[0], now=at(4, 20))
    world.do(service.sign, "B4", MEMBERS[0], now=at(4, 20))
    with pytest.raises(InvalidInput, match="只签一次"):
        world.do(service.sign, "B4", MEMBERS[0], now=at(4, 20))
    # m3 is B4's own secretary: may not sign its grade
    with pytest.raises(Forbidden, match="不能为本支部的等级签字"):
        world.do(service.sign, "B4", MEMBERS[2], now=at(4, 20))
    with pytest.raises(TransitionRefused, match="签字 1 人，未达到法定人数 2 人"):
        world.do(service.advance, "B4", ORG, now=at(4, 20))
    with pytest.raises(InvalidInput, match="理由"):
        world.do(service.adjust_grade, "B4", MEMBERS[1], "advanced", "", now=at(4, 20))
    world.do(service.adjust_grade, "B4", MEMBERS[1], "先进", "支部品牌创建成效显著，党委研究调整", now=at(4, 20))
    assert world.case("B4").state["signatures"] == []  # the signatures were for the old grade
    world.do(service.sign, "B4", MEMBERS[0], now=at(4, 21))
    world.do(service.sign, "B4", MEMBERS[1], now=at(4, 21))
    with pytest.raises(TransitionRefused, match="已锁定"):
        world.do(service.adjust_grade, "B4", MEMBERS[1], "average", "再改一次试试看", now=at(4, 21))
    world.do(service.advance, "B4", ORG, now=at(4, 21))
    case = world.case("B4")
    assert case.state["final_grade"] == "advanced"
    assert case.row.grade == "advanced"


def test_upheld_objection_sends_case_back_to_committee_grading(world: World) -> None:
    world.drive("B1", Stage.publicity)
    world.do(service.publish, "B1", ORG, now=at(4, 21))
    pub = world.case("B1").state["publicity"]
    assert (pub["start"], pub["end"]) == ("2026-04-21", "2026-04-27")
    world.do(service.lodge_objection, "B1", "sec3@test.cn", "第18项与事实不符", now=at(4, 22))
    with pytest.raises(TransitionRefused) as err:
        world.do(service.advance, "B1", ORG, now=at(4, 28))
    assert [u.code for u in err.value.unmet] == ["publicity.objections"]
    world.do(service.resolve_objection, "B1", ORG, 1, upheld=True, reason="经核实异议成立", now=at(4, 28))
    case = world.case("B1")
    assert case.stage is Stage.committee_grading
    assert case.state["grade"] is None and case.state["signatures"] == [] and case.state["final_grade"] is None
    assert case.state["objections"][0]["status"] == "upheld"
    assert case.state["rounds"]["grading"] == 2
    world.drive("B1", Stage.rectification)
    assert world.stage("B1") is Stage.rectification


def test_dismissed_objection_is_recorded_and_publicity_waits_for_window(world: World) -> None:
    world.drive("B1", Stage.publicity)
    world.do(service.publish, "B1", ORG, now=at(4, 21))
    world.do(service.lodge_objection, "B1", "sec3@test.cn", "评分偏高", now=at(4, 22))
    world.do(service.resolve_objection, "B1", ORG, 1, upheld=False, reason="经核实评分有据", now=at(4, 23))
    with pytest.raises(TransitionRefused, match="公示期至 2026-04-27"):
        world.do(service.advance, "B1", ORG, now=at(4, 27, 18))
    with pytest.raises(TransitionRefused, match="公示期已于 2026-04-27 结束"):
        world.do(service.lodge_objection, "B1", "sec3@test.cn", "迟到的异议", now=at(4, 28))
    world.do(service.advance, "B1", ORG, now=at(4, 28))
    case = world.case("B1")
    assert case.stage is Stage.rectification
    assert case.state["objections"][0]["resolution"]["reason"] == "经核实评分有据"


def test_failed_inspection_sends_case_back_with_new_deadline(world: World) -> None:
    world.drive("B1", Stage.acceptance)
    with pytest.raises(InvalidInput, match="新截止日期"):
        world.do(service.inspect, "B1", GB_SEC, {"passed": False, "summary": "整改流于形式", "inspected_on": "2026-09-01",
                                                 "regrade_score": 60}, now=at(9, 1))
    world.do(service.inspect, "B1", GB_SEC, {"passed": False, "summary": "整改流于形式", "inspected_on": "2026-09-01",
                                             "regrade_score": 60, "new_deadline": "2026-09-20"}, now=at(9, 1))
    case = world.case("B1")
    assert case.stage is Stage.rectification
    assert case.row.deadline == dt.date(2026, 9, 20)
    assert case.state["inspections"][0]["passed"] is False
    with pytest.raises(TransitionRefused, match="整改方案尚未提交"):
        world.do(service.advance, "B1", "sec1@test.cn", now=at(9, 2))
    assert case.state["records"]["rectification"]["items"][0]["done"] is False  # the work is done again
    world.do(service.record, "B1", "sec1@test.cn", {"submitted": True}, now=at(9, 10))
    with pytest.raises(TransitionRefused, match="整改事项未完成：第 1 项"):
        world.do(service.advance, "B1", "sec1@test.cn", now=at(9, 10))
    world.do(service.complete_item, "B1", "sec1@test.cn", 1, "重新整改，补充记录", now=at(9, 11))
    world.do(service.advance, "B1", "sec1@test.cn", now=at(9, 11))
    world.finish("B1", Stage.acceptance)
    case = world.case("B1")
    assert case.stage is Stage.accepted and case.state["rounds"]["rectification"] == 2


def test_time_never_runs_backwards(world: World) -> None:
    world.do(service.record, "B1", GB_SEC, world.survey_data(), now=at(3, 20))
    with pytest.raises(InvalidInput, match="时间不能倒退"):
        world.do(service.advance, "B1", GB_SEC, now=at(3, 19))


def test_deadline_extension_is_audited_and_projected(world: World) -> None:
    world.do(service.extend_deadline, "B1", ORG, dt.date(2026, 4, 7), "书记外出培训", now=at(3, 25))
    case = world.case("B1")
    assert case.row.deadline == dt.date(2026, 4, 7)
    with pytest.raises(Forbidden):
        world.do(service.extend_deadline, "B1", GB_SEC, dt.date(2026, 4, 9), "再延", now=at(3, 26))


def test_publicity_in_a_year_the_calendar_does_not_know_says_so(world: World) -> None:
    from workflow.errors import CalendarUnknown

    world.drive("B1", Stage.publicity)
    before = snapshot(world, "B1")
    with pytest.raises(CalendarUnknown) as err:
        world.do(service.publish, "B1", ORG, start=dt.date(2030, 4, 22), now=at(4, 21))
    assert "不包含 2030 年" in err.value.message and "[calendar]" in err.value.message
    assert snapshot(world, "B1") == before
