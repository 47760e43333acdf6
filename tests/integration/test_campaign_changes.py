"""Changing a campaign mid-year: audited, deadlines re-projected, grading rules frozen once grades lock."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text

from states.base import Stage
from tests.support.world import GB_SEC, MEMBERS, ORG, World, at
from workflow import audit, service, views
from workflow.campaigns import change_campaign, changes, extend_all
from workflow.errors import Forbidden, InvalidInput, TransitionRefused
from workflow.repository import get_campaign_row


def _do(world: World, fn, *args, who: str = ORG, **kw):  # type: ignore[no-untyped-def]
    with world.sessions() as s, s.begin():
        return fn(s, service.actor_for(s, who), *args, **kw)


def _config(world: World) -> str:
    with world.sessions() as s:
        return get_campaign_row(s).config


def test_extending_a_stage_for_everyone_is_audited_and_reprojected(world: World) -> None:
    world.drive("B2", Stage.self_assessment)
    r = _do(world, extend_all, Stage.survey, dt.date(2026, 4, 8), "清明假期，统一延长调查摸底", now=at(3, 25))
    assert r["stages"] == ["survey"] and r["cases_reprojected"] == 3  # B1, B3, B4 are still in the survey
    with world.sessions() as s:
        rows = {x["code"]: x for x in views.list_cases(s, now=at(3, 25))}
        assert rows["B1"]["deadline"] == "2026-04-08" and rows["B2"]["deadline"] == "2026-04-10"
        log = changes(s)
        assert [c["kind"] for c in log] == ["created", "deadline_extended"]
        assert log[1]["actor"] == ORG and log[1]["payload"]["reason"] == "清明假期，统一延长调查摸底"
        assert log[1]["payload"]["deadlines"] == {"survey": "2026-04-08"}
        assert audit.verify(s).ok
    with pytest.raises(InvalidInput, match="截止日期须按环节顺序"):
        _do(world, extend_all, Stage.survey, dt.date(2026, 4, 20), "太晚了", now=at(3, 26))
    with pytest.raises(Forbidden, match="组织部"):
        _do(world, extend_all, Stage.survey, dt.date(2026, 4, 9), "总支想延长", who=GB_SEC, now=at(3, 26))


def test_rubric_correction_before_grading_then_refused_once_a_grade_is_locked(world: World) -> None:
    corrected = _config(world).replace("党支部文化建设是否有特色。", "党支部文化建设是否有特色（含一支部一品牌）。")
    r = _do(world, change_campaign, corrected, "更正第 15 项表述", now=at(3, 10))
    assert r["sections"] == ["grading"]
    world.drive("B1", Stage.committee_grading)
    world.do(service.compute_grade, "B1", MEMBERS[0], now=at(4, 20))
    again = corrected.replace("min = 85", "min = 80")
    with pytest.raises(TransitionRefused, match="已有 1 个党支部计算了等级"):
        _do(world, change_campaign, again, "调整先进线", now=at(4, 20, 12))
    world.do(service.sign, "B1", MEMBERS[0], now=at(4, 20, 13))
    world.do(service.sign, "B1", MEMBERS[1], now=at(4, 20, 13))
    with pytest.raises(TransitionRefused, match="1 个党支部的等级经签字锁定"):
        _do(world, change_campaign, again, "调整先进线", now=at(4, 20, 14))
    # deadlines may still move
    later = corrected.replace('publicity = "04-30"', 'publicity = "05-08"')
    assert _do(world, change_campaign, later, "五一假期顺延公示", now=at(4, 21))["stages"] == ["publicity"]
    assert _config(world) == later
    with world.sessions() as s:
        assert [c["kind"] for c in changes(s)] == ["created", "changed", "changed"]
        assert audit.verify(s).ok


def test_identity_fields_and_no_op_changes_are_refused(world: World) -> None:
    cfg = _config(world)
    with pytest.raises(InvalidInput, match="不能修改活动的 year"):
        _do(world, change_campaign, cfg.replace("year = 2026", "year = 2027"), "改年份", now=at(3, 10))
    with pytest.raises(InvalidInput, match="无需修改"):
        _do(world, change_campaign, cfg, "没有变化", now=at(3, 10))


def test_config_edited_behind_the_log_is_caught(world: World) -> None:
    with world.sessions() as s, s.begin():
        s.execute(text("UPDATE campaigns SET config = replace(config, 'min = 85', 'min = 80')"))
    with world.sessions() as s:
        report = audit.verify(s)
    assert not report.ok
    assert report.problems[0].branch == "(活动配置)" and "配置被直接修改" in report.problems[0].problem
    with world.sessions() as s, s.begin():  # an edit that does not even parse is reported, not a crash
        s.execute(text("UPDATE campaigns SET config = replace(config, 'min = 80', 'min = 60')"))
    with world.sessions() as s:
        problems = [str(p) for p in audit.verify(s).problems]
    assert any("存储的活动配置无效" in p for p in problems)
