"""The yellow card's dead end, at the rule (issue 16, point 2): a 后进 branch cannot submit its plan without
the self-analysis (refused, the criterion named, nothing recorded); without the card the same plan is
accepted; the self-analysis can still be filed after the plan is submitted; and the history of every stage
reads as plain Chinese with names: no record keys, grade codes, e-mail addresses or organisation codes."""

from __future__ import annotations

import re

import pytest

from states.base import Stage
from tests.support.world import ORG, World, at
from workflow import service, views
from workflow.errors import TransitionRefused

PLAN = {"items": [{"problem": "组织生活不规范", "measure": "每月主题党日", "due": "2026-07-31", "contact": "委员1"}],
        "submitted": True}


def to_rectification(world: World, per_item: float) -> None:
    world.drive("B1", Stage.publicity, per_item=per_item)
    world.do(service.publish, "B1", ORG, now=at(4, 20, 11))
    world.do(service.advance, "B1", ORG, now=at(5, 10))
    assert world.stage("B1") is Stage.rectification


def test_a_yellow_carded_plan_needs_its_self_analysis_before_it_is_submitted(world: World) -> None:
    to_rectification(world, per_item=0.5)  # 50 points: 后进, yellow card
    before = world.case("B1").version
    with pytest.raises(TransitionRefused) as refused:
        world.do(service.record, "B1", "sec1@test.cn", PLAN, now=at(5, 20))
    assert [u.code for u in refused.value.unmet] == ["rectification.self_analysis"]
    assert "被亮黄牌的支部须提交自我剖析材料" in refused.value.message
    assert world.case("B1").version == before and "rectification" not in world.case("B1").state["records"]

    world.do(service.record, "B1", "sec1@test.cn", {**PLAN, "submitted": False}, now=at(5, 20))  # a draft is fine
    world.do(service.record, "B1", "sec1@test.cn", {"self_analysis": "对照标准查找不足。", "submitted": True},
             now=at(5, 20, 11))
    rec = world.case("B1").state["records"]["rectification"]
    assert rec["submitted"] and rec["self_analysis"] == "对照标准查找不足。"
    world.do(service.record, "B1", "sec1@test.cn", {"self_analysis": "补充：党员教育管理松散。"}, now=at(5, 21))
    assert world.case("B1").state["records"]["rectification"]["self_analysis"] == "补充：党员教育管理松散。"


def test_without_a_yellow_card_the_plan_alone_is_submitted(world: World) -> None:
    to_rectification(world, per_item=0.8)  # 80 points: 一般
    world.do(service.record, "B1", "sec1@test.cn", PLAN, now=at(5, 20))
    assert world.case("B1").state["records"]["rectification"]["submitted"] is True


def test_the_history_is_plain_chinese_with_names(world: World) -> None:
    to_rectification(world, per_item=0.5)
    with world.sessions() as s:
        h = views.history(s, "B1")
    lines = [f"{e['actor_name']} {e['description']}" for e in h["events"]]
    text = "\n".join(lines)
    assert "填报“支部自评”：评分 18 项（合计 50 分），支部大会日期 2026-04-01，到会 6 人" in text
    assert "总分 50，等级 后进" in text and "委员1 签字" in text and "组织部 钱" in text and "系统" in text
    assert not re.search(r"[A-Za-z_]{3,}|@", text.replace("B1", "")), text
