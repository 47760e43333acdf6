"""Stage 7 — 检查验收 (acceptance): an inspection with a written summary and a re-grade; pass or fail."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import Field

from states.attachment import AttachmentRef
from states.base import Record, Role, Stage, StageSpec
from workflow.errors import Unmet


class Inspection(Record):
    """The inspection's result; ``regrade_score`` (0–100) is the re-grade (再次考评定级), required when it passed
    (workflow.service.inspect): a failed inspection sends the branch back to rectification, not to a re-grade."""

    passed: bool
    summary: str = Field(min_length=4, max_length=8000)
    inspected_on: dt.date
    regrade_score: float | None = Field(default=None, ge=0, le=100)
    new_deadline: dt.date | None = None
    attachments: list[AttachmentRef] | None = None  # the inspection's files: the written summary, photos


def can_leave(state: dict[str, Any], campaign: Any, facts: Any, *, now: Any = None) -> list[Unmet]:
    insp = state.get("inspection")
    if not insp:
        return [Unmet(code="acceptance.inspection", message="尚未记录检查验收结果、书面总结和再次定级")]
    if not insp["passed"]:
        return [Unmet(code="acceptance.failed", message="检查验收未通过，须退回整改")]
    return []


SPEC = StageSpec(
    stage=Stage.acceptance,
    record_model=Inspection,
    recorders=frozenset({Role.general_branch_secretary, Role.org_department}),
    advancers=frozenset({Role.general_branch_secretary, Role.org_department}),
    can_leave=can_leave,
    deadline_key="acceptance",
)
