"""Stage 1 — 调查摸底 (survey): the general branch answers the focus points and confirms the veto facts."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import Field, field_validator

from states.base import Record, Role, Stage, StageSpec
from workflow.errors import Unmet

FOCUS_POINTS: dict[str, str] = {
    "organisation": "组织设置是否合理",
    "leadership": "班子是否健全",
    "rules": "组织制度是否完善",
    "direction": "发展思路是否清晰",
    "activities": "活动开展是否正常",
    "role": "作用发挥是否充分",
    "support": "经费场地保障是否落实",
}


class Finding(Record):
    ok: bool
    note: str = Field(default="", max_length=2000)


class SurveyRecord(Record):
    """Findings on the focus points (any subset per filing; later filings add to earlier ones)."""

    findings: dict[str, Finding] = Field(default_factory=dict)
    last_reelection: dt.date | None = None
    last_activity: dt.date | None = None
    secretary_violation: bool | None = None

    @field_validator("findings")
    @classmethod
    def _known_points(cls, v: dict[str, Finding]) -> dict[str, Finding]:
        bad = [k for k in v if k not in FOCUS_POINTS]
        if bad:
            raise ValueError(f"未知的调查要点 {bad}；可用：{', '.join(FOCUS_POINTS)}")
        return v


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(old)
    out["findings"] = {**old.get("findings", {}), **new.get("findings", {})}
    for k in ("last_reelection", "last_activity", "secretary_violation"):
        if new.get(k) is not None:
            out[k] = new[k]
    return out


def can_leave(state: dict[str, Any], campaign: Any, facts: Any, *, now: Any = None) -> list[Unmet]:
    rec = state["records"].get(Stage.survey.value, {})
    answered = rec.get("findings", {})
    missing = [label for key, label in FOCUS_POINTS.items() if key not in answered]
    unmet = []
    if missing:
        unmet.append(Unmet(code="survey.findings", message=f"调查要点未填写：{'、'.join(missing)}"))
    # A veto rule reading a fact nobody knows would force the lowest grade on an unknown: the survey
    # confirms the fact first (the imported value counts when present).
    veto = campaign.grading.veto
    needs = [("last_reelection", veto.reelection_overdue_years is not None, "上次换届日期"),
             ("last_activity", veto.inactive_days is not None, "最近一次组织活动日期")]
    for key, enabled, label in needs:
        if enabled and rec.get(key) is None and getattr(facts, key, None) is None:
            unmet.append(Unmet(code=f"survey.{key}", message=f"一票否决规则需要{label}：导入数据中没有，请在调查摸底中填写"))
    return unmet


SPEC = StageSpec(
    stage=Stage.survey,
    record_model=SurveyRecord,
    recorders=frozenset({Role.general_branch_secretary, Role.org_department}),
    advancers=frozenset({Role.general_branch_secretary, Role.org_department}),
    can_leave=can_leave,
    deadline_key="survey",
    extra={"merge": merge},
)
