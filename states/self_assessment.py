"""Stage 2 — 支部自评 (self-assessment): the branch secretary scores every rubric item after a branch meeting."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import Field

from states.base import Record, Role, Stage, StageSpec
from workflow.errors import Problem, Unmet


class SelfAssessmentRecord(Record):
    """Scores by rubric item id (later filings add to or replace earlier ones) and the branch meeting."""

    scores: dict[str, float] = Field(default_factory=dict)
    meeting_date: dt.date | None = None
    attendance: int | None = Field(default=None, ge=0)
    comment: str = Field(default="", max_length=4000)


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = {**old, **{k: v for k, v in new.items() if v not in (None, "") and k != "scores"}}
    out["scores"] = {**old.get("scores", {}), **new.get("scores", {})}
    return out


def validate(record: dict[str, Any], campaign: Any, facts: Any) -> list[Problem]:
    """Problems that make a filing invalid (unknown items, scores out of bounds, attendance > members)."""
    rubric = campaign.grading.rubric_for(facts.branch_type)
    problems = []
    for item_id, score in record.get("scores", {}).items():
        item = rubric.item(item_id)
        if item is None:
            problems.append(Problem(loc=("scores", item_id), key="unknown_item", params={"item": item_id},
                                    message=f"评分标准“{rubric.name}”中没有第 {item_id} 项"))
        elif not 0 <= score <= item.max:
            problems.append(Problem(loc=("scores", item_id), key="out_of_range", params={"ge": 0, "le": item.max},
                                    message=f"第 {item_id} 项得分 {score:g} 超出范围 0–{item.max:g}"))
    att = record.get("attendance")
    if att is not None and facts.member_count and att > facts.member_count:
        problems.append(Problem(loc=("attendance",), key="above_members", params={"le": facts.member_count},
                                message=f"到会人数 {att} 超过党员人数 {facts.member_count}"))
    return problems


def can_leave(state: dict[str, Any], campaign: Any, facts: Any, *, now: Any = None) -> list[Unmet]:
    rec = state["records"].get(Stage.self_assessment.value, {})
    rubric = campaign.grading.rubric_for(facts.branch_type)
    unmet = []
    scores = rec.get("scores", {})
    missing = [i.id for i in rubric.items if i.id not in scores]
    if missing:
        unmet.append(Unmet(code="self_assessment.scores", message=f"以下评分项尚未打分：第 {'、'.join(missing)} 项",
                           fields=tuple(("scores", i) for i in missing)))
    if not rec.get("meeting_date"):
        unmet.append(Unmet(code="self_assessment.meeting", message="未填写支部大会日期"))
    att = rec.get("attendance")
    if att is None:
        unmet.append(Unmet(code="self_assessment.attendance", message="未填写支部大会到会人数"))
    elif att * 2 <= facts.member_count:
        unmet.append(
            Unmet(
                code="self_assessment.attendance",
                message=f"支部大会到会 {att} 人，未超过党员总数 {facts.member_count} 人的半数",
            )
        )
    return unmet


SPEC = StageSpec(
    stage=Stage.self_assessment,
    record_model=SelfAssessmentRecord,
    recorders=frozenset({Role.branch_secretary}),
    advancers=frozenset({Role.branch_secretary, Role.general_branch_secretary, Role.org_department}),
    can_leave=can_leave,
    deadline_key="self_assessment",
    extra={"merge": merge, "validate": validate},
)
