"""Stage 4 — 党委评定 (committee grading): compute the grade, adjust it with a reason, members sign."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from states.base import Record, Role, Stage, StageSpec
from workflow.errors import Unmet


class Adjustment(Record):
    """The committee's decision to change the computed grade; the reason is mandatory."""

    grade: str = Field(min_length=1)
    reason: str = Field(min_length=4, max_length=4000)


def current_grade(state: dict[str, Any]) -> str | None:
    g = state.get("grade")
    if not g:
        return None
    adj = state.get("adjustment")
    return str(adj["grade"] if adj else g["grade"])


def can_leave(state: dict[str, Any], campaign: Any, facts: Any, *, now: Any = None) -> list[Unmet]:
    if not state.get("grade"):
        return [Unmet(code="committee_grading.grade", message="尚未计算得分和等级")]
    quorum = campaign.quorum_for(facts.committee_size)
    got = len(state.get("signatures", []))
    if got < quorum:
        return [
            Unmet(
                code="committee_grading.quorum",
                message=f"党委委员签字 {got} 人，未达到法定人数 {quorum} 人（党委委员共 {facts.committee_size} 人）",
            )
        ]
    return []


SPEC = StageSpec(
    stage=Stage.committee_grading,
    record_model=None,
    recorders=frozenset({Role.committee_member, Role.org_department}),
    advancers=frozenset({Role.org_department, Role.committee_member}),
    can_leave=can_leave,
    deadline_key="committee_grading",
)
