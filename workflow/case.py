"""A branch's case as a fold over its events: the state, the event kinds and ``apply``.

The event log is the truth; the ``cases`` table holds ``replay(events)`` as a projection. ``apply`` is
pure and total over the kinds declared in :data:`APPLIERS`: it copies the state and returns the new
one, so replaying a branch's events up to a time gives exactly what the branch looked like then.

An event is a JSON-able dict ``{"kind", "at", "actor", "stage", "payload"}`` with ``at`` an ISO-8601
UTC timestamp and ``stage`` the stage the case was in when it happened.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from states import spec_for
from states.base import Stage

State = dict[str, Any]
Event = dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class BranchFacts:
    """What the rules need to know about the branch itself (from the organisation import)."""

    code: str
    name: str
    branch_type: str
    member_count: int
    committee_size: int = 0
    last_reelection: dt.date | None = None
    last_activity: dt.date | None = None
    secretary_violation: bool = False


EVENT_LABELS: dict[str, str] = {
    "opened": "立案",
    "recorded": "填报",
    "graded": "计算得分与等级",
    "grade_adjusted": "党委调整等级",
    "signed": "党委委员签字",
    "publicity_started": "发布公示",
    "objection_lodged": "提出异议",
    "objection_resolved": "处理异议",
    "item_completed": "完成整改事项",
    "inspected": "检查验收",
    "moved": "环节流转",
    "deadline_extended": "延长截止日期",
    "reminded": "发送提醒",
    "escalated": "逾期督促",
    "supervision_order": "下发督办令",
    "closed": "结案（支部撤销）",
}


def new_state(campaign_code: str, branch_code: str) -> State:
    return {
        "campaign": campaign_code,
        "branch": branch_code,
        "stage": Stage.survey.value,
        "stage_entered_at": None,
        "records": {},
        "grade": None,
        "adjustment": None,
        "signatures": [],
        "final_grade": None,
        "publicity": None,
        "objections": [],
        "inspection": None,
        "inspections": [],
        "regrade": None,
        "deadlines": {},
        "rounds": {"grading": 1, "rectification": 1},
    }


def _opened(s: State, e: Event) -> None:
    s["stage_entered_at"] = e["at"]
    p = e["payload"]
    if "previous_grade" in p:  # year over year (issue 12): last year's grade, carried in the audited event
        s["previous_grade"] = p["previous_grade"]
    if p.get("start_stage"):  # a branch founded mid-campaign opens at the campaign's current stage
        s["stage"] = p["start_stage"]


def _closed(s: State, e: Event) -> None:
    """The branch was dissolved: the case ends where it stands (no deadline, no reminders)."""
    s["closed"] = {"reason": e["payload"]["reason"], "by": e["actor"], "at": e["at"]}


# Stage by value without Enum.__call__ (the replay's hot path); anything else still goes through Stage(),
# so a bad value raises exactly what it raised before.
_STAGES: dict[Any, Stage] = {s.value: s for s in Stage}
_COMMITTEE_GRADING, _PUBLICITY = Stage.committee_grading, Stage.publicity


def _stage(value: Any) -> Stage:
    try:
        return _STAGES[value]
    except (KeyError, TypeError):
        return Stage(value)


def _recorded(s: State, e: Event) -> None:
    stage = e["payload"]["stage"]
    merge = spec_for(_stage(stage)).extra.get("merge")
    old = s["records"].get(stage, {})
    data = e["payload"]["data"]
    s["records"][stage] = merge(old, data) if merge else {**old, **data}


def _graded(s: State, e: Event) -> None:
    s["grade"] = e["payload"]["result"]
    s["adjustment"] = None
    s["signatures"] = []


def _grade_adjusted(s: State, e: Event) -> None:
    p = e["payload"]
    s["adjustment"] = {"grade": p["grade"], "reason": p["reason"], "by": e["actor"], "at": e["at"]}
    s["signatures"] = []


def _signed(s: State, e: Event) -> None:
    s["signatures"].append({"member": e["actor"], "at": e["at"]})


def _publicity_started(s: State, e: Event) -> None:
    s["publicity"] = dict(e["payload"])


def _objection_lodged(s: State, e: Event) -> None:
    p = e["payload"]
    s["objections"].append(
        {"id": p["id"], "text": p["text"], "by": e["actor"], "at": e["at"], "status": "open", "resolution": None}
    )


def _objection_resolved(s: State, e: Event) -> None:
    p = e["payload"]
    for o in s["objections"]:
        if o["id"] == p["id"]:
            o["status"] = "upheld" if p["upheld"] else "dismissed"
            o["resolution"] = {"reason": p["reason"], "by": e["actor"], "at": e["at"]}


def _item_completed(s: State, e: Event) -> None:
    p = e["payload"]
    item = s["records"]["rectification"]["items"][p["item"] - 1]
    item["done"] = True
    item["evidence"] = p["evidence"]
    item["done_at"] = e["at"]
    if p.get("attachments"):
        item["attachments"] = list(p["attachments"])


def _inspected(s: State, e: Event) -> None:
    s["inspection"] = dict(e["payload"])
    s["regrade"] = e["payload"]["regrade"]


def _moved(s: State, e: Event) -> None:
    p = e["payload"]
    src, dest = _stage(p["from"]), _stage(p["to"])
    s["stage"] = dest._value_
    s["stage_entered_at"] = e["at"]
    if src is _COMMITTEE_GRADING and dest is _PUBLICITY:
        s["final_grade"] = (s["adjustment"] or s["grade"])["grade"]
    if p["trigger"] == "uphold_objection":
        # The published grade is void: the committee grades and signs again.
        s["final_grade"] = None
        s["grade"] = None
        s["adjustment"] = None
        s["signatures"] = []
        s["publicity"] = None
        s["rounds"]["grading"] += 1
    if p["trigger"] == "fail_inspection":
        s["inspections"].append(s["inspection"])
        s["inspection"] = None
        s["regrade"] = None
        rect = s["records"].setdefault("rectification", {})
        rect["submitted"] = False
        for item in rect.get("items", []):  # the work is redone and re-evidenced (the old evidence stays in the log)
            item["done"] = False
            item["evidence"] = None
            item.pop("done_at", None)
            item.pop("attachments", None)
        s["rounds"]["rectification"] += 1
        if p.get("deadline"):
            s["deadlines"]["rectification"] = p["deadline"]


def _deadline_extended(s: State, e: Event) -> None:
    s["deadlines"][e["payload"]["stage"]] = e["payload"]["deadline"]


def _no_change(s: State, e: Event) -> None:
    """Reminders, escalations and supervision orders are facts about the case, not changes to it."""


APPLIERS: dict[str, Callable[[State, Event], None]] = {
    "opened": _opened,
    "recorded": _recorded,
    "graded": _graded,
    "grade_adjusted": _grade_adjusted,
    "signed": _signed,
    "publicity_started": _publicity_started,
    "objection_lodged": _objection_lodged,
    "objection_resolved": _objection_resolved,
    "item_completed": _item_completed,
    "inspected": _inspected,
    "moved": _moved,
    "deadline_extended": _deadline_extended,
    "reminded": _no_change,
    "escalated": _no_change,
    "supervision_order": _no_change,
    "closed": _closed,
}


class UnknownEvent(ValueError):
    pass


def apply(state: State, event: Event, *, in_place: bool = False) -> State:
    """The state after ``event``; the input is not modified unless ``in_place``."""
    fn = APPLIERS.get(event["kind"])
    if fn is None:
        raise UnknownEvent(f"未知的事件类型 {event['kind']!r}")
    s = state if in_place else copy.deepcopy(state)
    fn(s, event)
    return s


def replay(campaign_code: str, branch_code: str, events: Iterable[Event]) -> State:
    s = new_state(campaign_code, branch_code)
    for e in events:
        apply(s, e, in_place=True)
    return s


def current_grade(state: State) -> str | None:
    """The grade in force: the final one after sign-off, else the adjusted or computed one."""
    if state.get("final_grade"):
        return str(state["final_grade"])
    if state.get("adjustment"):
        return str(state["adjustment"]["grade"])
    if state.get("grade"):
        return str(state["grade"]["grade"])
    return None
