"""Stage 5 — 公示 (publicity): the grade is published for a window of working days; objections are resolved."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import Field

from states.base import Record, Role, Stage, StageSpec
from workflow.errors import Unmet


class Objection(Record):
    text: str = Field(min_length=2, max_length=4000)


class Resolution(Record):
    upheld: bool
    reason: str = Field(min_length=2, max_length=4000)


def open_objections(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in state.get("objections", []) if o["status"] == "open"]


def can_leave(state: dict[str, Any], campaign: Any, facts: Any, *, now: Any = None) -> list[Unmet]:
    pub = state.get("publicity")
    if not pub:
        return [Unmet(code="publicity.not_started", message="尚未发布公示")]
    unmet = []
    end = dt.date.fromisoformat(pub["end"])
    today = now.astimezone(campaign.tz).date() if now is not None else None
    if today is None or today <= end:
        unmet.append(Unmet(code="publicity.window", message=f"公示期至 {end.isoformat()}（含）尚未结束"))
    n = len(open_objections(state))
    if n:
        unmet.append(Unmet(code="publicity.objections", message=f"有 {n} 条异议尚未处理"))
    return unmet


SPEC = StageSpec(
    stage=Stage.publicity,
    record_model=None,
    recorders=frozenset({Role.org_department}),
    advancers=frozenset({Role.org_department}),
    can_leave=can_leave,
    deadline_key="publicity",
)
