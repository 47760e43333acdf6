"""Campaign validation: a bad file is refused with a message that names the problem and where it is."""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Callable
from typing import Any

import pytest

from states.base import Stage
from workflow.campaign import load_campaign, parse_campaign, parse_campaign_text, preset_names, preset_text
from workflow.errors import InvalidInput

BASE: dict[str, Any] = tomllib.loads(preset_text("haitang-2022"))


def refused(change: Callable[[dict[str, Any]], None], preset: str = "haitang-2022") -> str:
    """The error message for the preset's data after ``change``; fails if the data is accepted."""
    data = copy.deepcopy(BASE if preset == "haitang-2022" else tomllib.loads(preset_text(preset)))
    change(data)
    with pytest.raises(InvalidInput) as exc:
        parse_campaign(data, source="test.toml")
    msg = str(exc.value)
    assert msg.startswith("活动配置 test.toml 无效")
    return msg


def test_base_is_valid() -> None:
    c = parse_campaign(copy.deepcopy(BASE))
    assert c.code == "haitang-2022"


# ---------------------------------------------------------------- rubric maxima


def test_maxima_not_summing_to_100() -> None:
    def change(d: dict[str, Any]) -> None:
        d["grading"]["rubrics"][0]["items"][0]["max"] = 6

    msg = refused(change)
    assert "grading.rubrics[1]" in msg  # the first [[grading.rubrics]] table, counted from 1
    assert "党支部分类定级评分参考标准" in msg  # the rubric's name
    assert "101" in msg and "应为 100" in msg


def test_maxima_short_of_100_names_the_table() -> None:
    def change(d: dict[str, Any]) -> None:
        d["grading"]["rubrics"][1]["items"].pop()  # drop the student table's last item (10 points)

    msg = refused(change, "cumtb-2012")
    assert "grading.rubrics[2]" in msg and "学生党支部" in msg and "90" in msg and "应为 100" in msg


def test_duplicate_item_ids() -> None:
    def change(d: dict[str, Any]) -> None:
        items = d["grading"]["rubrics"][0]["items"]
        items[1]["id"] = items[0]["id"]

    assert "条目编号重复" in refused(change)


# ---------------------------------------------------------------- deadlines


def test_deadlines_out_of_stage_order() -> None:
    def change(d: dict[str, Any]) -> None:
        d["deadlines"]["publicity"] = "04-20"  # before committee_grading (04-25)

    msg = refused(change)
    assert "截止日期须按环节顺序" in msg
    assert "publicity（2022-04-20）" in msg and "committee_grading（2022-04-25）" in msg


def test_equal_deadlines_are_allowed() -> None:
    d = copy.deepcopy(BASE)
    d["deadlines"]["member_evaluation"] = d["deadlines"]["committee_grading"]
    c = parse_campaign(d)
    assert c.deadlines[Stage.member_evaluation] == c.deadlines[Stage.committee_grading]


def test_missing_deadline() -> None:
    def change(d: dict[str, Any]) -> None:
        del d["deadlines"]["rectification"]

    msg = refused(change)
    assert "缺少以下环节的截止日期" in msg and "rectification" in msg


def test_unknown_stage_in_deadlines() -> None:
    def change(d: dict[str, Any]) -> None:
        d["deadlines"]["publicty"] = d["deadlines"].pop("publicity")

    msg = refused(change)
    assert "deadlines.publicty" in msg


@pytest.mark.parametrize(
    ("value", "why"),
    [("02-30", "day is out of range"), ("13-01", "month must be in 1..12"), ("00-10", "month must be in 1..12")],
)
def test_bad_mm_dd(value: str, why: str) -> None:
    def change(d: dict[str, Any]) -> None:
        d["deadlines"]["acceptance"] = value

    msg = refused(change)
    assert f"deadlines.acceptance：“{value}”不是" in msg and "年的有效日期（月-日，如 04-18）" in msg
    assert why not in msg  # the date library's English stays out


def test_badly_written_date() -> None:
    def change(d: dict[str, Any]) -> None:
        d["deadlines"]["acceptance"] = "9-5"

    msg = refused(change)
    assert "deadlines.acceptance" in msg


def test_mm_dd_lands_on_the_campaign_year_and_full_dates_are_kept() -> None:
    d = copy.deepcopy(BASE)
    d["year"] = 2024
    d["deadlines"]["survey"] = "02-29"  # a leap day exists in 2024
    c = parse_campaign(d)
    assert c.deadlines[Stage.survey].isoformat() == "2024-02-29"

    def change(data: dict[str, Any]) -> None:
        data["year"] = 2023  # not a leap year
        data["deadlines"]["survey"] = "02-29"

    assert "deadlines.survey：“02-29”不是 2023 年的有效日期" in refused(change)


# ---------------------------------------------------------------- grade scale


def test_scale_bands_out_of_order() -> None:
    def change(d: dict[str, Any]) -> None:
        d["grading"]["scale"]["bands"].reverse()

    msg = refused(change)
    assert "grading.scale" in msg and "从高到低" in msg
    assert "后进 0、一般 65、先进 85" in msg  # the order as written


def test_scale_bands_with_equal_minima() -> None:
    def change(d: dict[str, Any]) -> None:
        d["grading"]["scale"]["bands"][1]["min"] = 85

    assert "下限严格递减" in refused(change)


def test_scale_must_reach_zero() -> None:
    def change(d: dict[str, Any]) -> None:
        d["grading"]["scale"]["bands"][-1]["min"] = 10

    msg = refused(change)
    assert "最低等级的下限须为 0" in msg


def test_scale_duplicate_codes() -> None:
    def change(d: dict[str, Any]) -> None:
        d["grading"]["scale"]["bands"][1]["code"] = "advanced"

    assert "等级代码重复" in refused(change)


# ---------------------------------------------------------------- unknown keys and other values


@pytest.mark.parametrize(
    ("path", "key"),
    [((), "colour"), (("grading",), "wieghts"), (("grading", "scale"), "notes"), (("publicity",), "window_days")],
)
def test_unknown_keys_are_named(path: tuple[str, ...], key: str) -> None:
    def change(d: dict[str, Any]) -> None:
        target = d
        for p in path:
            target = target[p]
        target[key] = 1

    msg = refused(change)
    loc = ".".join((*path, key))
    assert f"  {loc}：未知的配置项“{key}”" in msg


def test_unknown_key_in_a_rubric_item() -> None:
    def change(d: dict[str, Any]) -> None:
        d["grading"]["rubrics"][0]["items"][2]["maximum"] = 5

    msg = refused(change)
    assert "grading.rubrics[1].items[3].maximum" in msg and "未知的配置项" in msg


def test_unknown_branch_type() -> None:
    def change(d: dict[str, Any]) -> None:
        d["grading"]["rubrics"][0]["branch_types"] = ["teachers"]

    msg = refused(change, "cumtb-2012")
    assert "未知的支部类型" in msg and "teachers" in msg


def test_weights_must_sum_to_one() -> None:
    def change(d: dict[str, Any]) -> None:
        d["grading"]["weights"]["superior"] = 0.4

    msg = refused(change, "cumtb-2012")
    assert "grading.weights" in msg and "1.1" in msg and "应为 1" in msg


def test_branch_types_without_a_rubric() -> None:
    def change(d: dict[str, Any]) -> None:
        d["grading"]["rubrics"][0]["branch_types"] = ["teacher"]  # admin, retired now uncovered

    msg = refused(change, "cumtb-2012")
    assert "没有适用于支部类型" in msg and "admin" in msg and "retired" in msg


def test_several_problems_reported_together() -> None:
    def change(d: dict[str, Any]) -> None:
        d["colour"] = "red"
        d["grading"]["rubrics"][0]["items"][0]["max"] = 6

    msg = refused(change)
    assert "colour" in msg and "应为 100" in msg


def test_bad_toml_is_named() -> None:
    with pytest.raises(InvalidInput, match="不是有效的 TOML"):
        parse_campaign_text("year = ", source="x.toml")


def test_missing_file_is_named(tmp_path: Any) -> None:
    with pytest.raises(InvalidInput, match="找不到活动配置文件"):
        load_campaign(tmp_path / "nope.toml")


@pytest.mark.parametrize("name", preset_names())
def test_presets_round_trip_through_a_file(name: str, tmp_path: Any) -> None:
    f = tmp_path / f"{name}.toml"
    f.write_text(preset_text(name), encoding="utf-8")
    assert load_campaign(f).code == name
