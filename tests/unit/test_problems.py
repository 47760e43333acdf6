"""Errors as data (workflow/errors.py): locations with items counted from 1, keys with parameters, Chinese
words made from pydantic's ``type``/``ctx`` and the stage records' labels; parser errors with line and
column; the page's form fields read from the locations (service/pages/fields.py)."""

from __future__ import annotations

import json
import tomllib
from typing import Any

import pytest
from pydantic import ValidationError

from service.pages.fields import fields_of, form_field, form_label
from states.acceptance import Inspection
from states.labels import label_of
from states.member_evaluation import MemberEvaluationRecord
from states.publicity import Objection
from states.rectification import RectificationRecord
from workflow.errors import (
    InvalidInput,
    Problem,
    TransitionRefused,
    Unmet,
    from_json_error,
    from_toml_error,
    invalid_from_pydantic,
    problems_from_pydantic,
)


def _errors(model: Any, data: dict[str, Any]) -> list[Any]:
    with pytest.raises(ValidationError) as exc:
        model.model_validate(data)
    return list(exc.value.errors())


def test_a_plan_item_is_named_by_its_number_from_one_and_its_label() -> None:
    errs = _errors(RectificationRecord, {"items": [
        {"problem": "组织生活不规范", "measure": "每月主题党日", "due": "2026-07-31", "contact": "委员1"},
        {"problem": "组织生活不规范", "measure": "x", "due": "2026-07-31", "contact": "委员1"}]})
    [p] = problems_from_pydantic(errs)
    assert p.field == "items[2].measure" and p.item == 2 and p.loc == ("items", 1, "measure")
    assert p.key == "string_too_short" and p.params == {"min_length": 2}
    assert p.message == "第 2 项整改事项的“主要整改措施”：至少 2 个字符"


def test_messages_never_carry_pydantic_english_or_the_input() -> None:
    errs = _errors(Objection, {"text": "a"}) + _errors(MemberEvaluationRecord, {"tally": {
        "ballots": "many", "rating": 101, "satisfaction_members": 0.5, "satisfaction_secretary": 0.5}, "nope": 1})
    problems = problems_from_pydantic(errs)
    words = [p.message for p in problems]
    assert words == ["异议内容：至少 2 个字符", "测评汇总的“有效票数”：须为整数", "测评汇总的“平均评分”：须不大于 100",
                     "“nope”不是可填写的字段"]
    assert all("many" not in w and "should" not in w.lower() for w in words)
    assert all("error" not in p.params for p in problems)  # pydantic's English ctx text is dropped


def test_a_failed_inspection_needs_no_regrade_score() -> None:
    insp = Inspection.model_validate({"passed": False, "summary": "整改不到位", "inspected_on": "2026-09-01",
                                      "new_deadline": "2026-10-01"})
    assert insp.regrade_score is None
    [p] = problems_from_pydantic(_errors(Inspection, {"passed": True, "summary": "整改到位", "inspected_on": "2026-09-01",
                                                      "regrade_score": "很好"}))
    assert p.message == "再次定级得分：须为数字"


def test_labels_of_nested_and_keyed_fields() -> None:
    assert label_of(("scores", "A1")) == "第 A1 项得分"
    assert label_of(("data", "text")) == "异议内容"
    assert label_of(("regrade_score",)) == "再次定级得分"
    assert label_of(("findings", "organisation", "ok")).startswith("调查要点“")
    assert label_of(("ballots", 0, "rating")) == "第 1 张测评票的“平均评分”"


def test_the_invalid_input_lists_one_problem_a_line_and_the_api_dict_keeps_its_keys() -> None:
    err = invalid_from_pydantic(_errors(Objection, {}), "异议数据")
    assert err.message == "异议数据无效：\n  异议内容：必须填写"
    d = err.to_dict()
    assert d["error"] == "InvalidInput" and d["message"] == err.message
    assert d["problems"] == [{"field": "text", "item": None, "key": "missing", "params": {}, "message": "异议内容：必须填写"}]


def test_json_and_toml_errors_say_line_and_column_in_chinese() -> None:
    with pytest.raises(json.JSONDecodeError) as j:
        json.loads('{"a": 1,\n "b": }')
    e = from_json_error(j.value, "文件 a.json ")
    assert e.message == "文件 a.json 不是有效的 JSON：第 2 行第 7 列此处缺少值"
    assert e.problems[0].params == {"line": 2, "column": 7}
    with pytest.raises(tomllib.TOMLDecodeError) as t:
        tomllib.loads('[campaign]\ncode "x"\n')
    e = from_toml_error(t.value, "活动配置 a.toml ")
    assert e.message == "活动配置 a.toml 不是有效的 TOML：第 2 行第 6 列键后缺少“=”"


def test_the_page_marks_fields_from_locations_not_words() -> None:
    assert form_field(("items", 1, "measure")) == "measure_2"
    assert form_field(("data", "scores", "A1")) == "s_A1"
    assert form_field(("tally", "satisfaction_members")) == "sat_members"
    assert form_field(("findings", "organisation", "note")) == "n_organisation"
    err = InvalidInput("x", problems=[Problem(loc=("items", 0, "due"), message="…"), Problem(loc=("regrade_score",))])
    assert fields_of(err) == {"due_1", "regrade_score"}
    refused = TransitionRefused("不能推进", unmet=[Unmet(code="self_assessment.scores", message="…",
                                                          fields=(("scores", "3"), ("scores", "4")))])
    assert fields_of(refused) == {"s_3", "s_4"}
    assert form_label("measure_2") == "第 2 项整改事项的“主要整改措施”" and form_label("sat_members").endswith("满意率”")
