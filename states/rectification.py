"""Stage 6 — 整改 / 晋位升级 (rectification): a plan of items, each completed with evidence."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import Field

from states.attachment import AttachmentRef
from states.base import Record, Role, Stage, StageSpec
from workflow.errors import Unmet


class PlanItem(Record):
    problem: str = Field(min_length=2, max_length=2000)
    measure: str = Field(min_length=2, max_length=2000)
    due: dt.date
    contact: str = Field(min_length=1, max_length=100)


class RectificationRecord(Record):
    """The plan (its items replace the earlier draft), the self-analysis, and whether it is submitted."""

    items: list[PlanItem] | None = None
    self_analysis: str | None = Field(default=None, max_length=8000)
    submitted: bool | None = None
    attachments: list[AttachmentRef] | None = None  # the self-analysis's files (added to the earlier ones)


class Completion(Record):
    item: int = Field(ge=1)
    evidence: str = Field(min_length=2, max_length=4000)
    attachments: list[AttachmentRef] | None = None  # scans, photos, documents of the evidence


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(old)
    if new.get("items") is not None:
        out["items"] = [{**i, "done": False, "evidence": None} for i in new["items"]]
    if new.get("self_analysis") is not None:
        out["self_analysis"] = new["self_analysis"]
    if new.get("submitted") is not None:
        out["submitted"] = new["submitted"]
    if new.get("attachments"):
        have = {a["sha256"] for a in out.get("attachments", [])}
        out["attachments"] = [*out.get("attachments", []), *(a for a in new["attachments"] if a["sha256"] not in have)]
    return out


def can_leave(state: dict[str, Any], campaign: Any, facts: Any, *, now: Any = None) -> list[Unmet]:
    rec = state["records"].get(Stage.rectification.value, {})
    items = rec.get("items", [])
    unmet = []
    if not items:
        unmet.append(Unmet(code="rectification.plan", message="整改方案没有任何整改事项"))
    if not rec.get("submitted"):
        unmet.append(Unmet(code="rectification.submitted", message="整改方案尚未提交"))
    open_items = [str(n) for n, i in enumerate(items, 1) if not i.get("done")]
    if open_items:
        unmet.append(Unmet(code="rectification.items", message=f"整改事项未完成：第 {'、'.join(open_items)} 项"))
    grade = state.get("final_grade")
    if grade and campaign.grading.scale.by_code(grade).yellow_card and not rec.get("self_analysis"):
        unmet.append(Unmet(code="rectification.self_analysis", message="被亮黄牌的支部须提交自我剖析材料"))
    return unmet


def refuse_submission(state: dict[str, Any], new: dict[str, Any], campaign: Any) -> list[Unmet]:
    """What keeps a plan from being submitted by this record (checked when it is filed, so that a yellow-
    carded branch cannot submit a plan without its self-analysis and then find no way to add it)."""
    rec = merge(state["records"].get(Stage.rectification.value, {}), new)
    if not rec.get("submitted") or state["records"].get(Stage.rectification.value, {}).get("submitted"):
        return []
    grade = state.get("final_grade")
    if grade and campaign.grading.scale.by_code(grade).yellow_card and not rec.get("self_analysis"):
        return [Unmet(code="rectification.self_analysis",
                      message="被亮黄牌的支部须提交自我剖析材料：请填写“自我剖析”后再提交整改方案")]
    return []


SPEC = StageSpec(
    stage=Stage.rectification,
    record_model=RectificationRecord,
    recorders=frozenset({Role.branch_secretary}),
    advancers=frozenset({Role.branch_secretary, Role.general_branch_secretary, Role.org_department}),
    can_leave=can_leave,
    deadline_key="rectification",
    extra={"merge": merge, "refuse_submission": refuse_submission},
)
