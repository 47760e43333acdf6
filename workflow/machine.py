"""The case's state machine, declared once as data and run per request on a transient carrier.

Nobody assigns a stage: :func:`fire` asks ``transitions`` to move a carrier holding the current stage,
and the move happens only if it is declared and its guard passes. A guard that fails raises
:class:`TransitionRefused` naming the unmet criteria (``transitions`` alone would return ``False``).
A fresh carrier per call keeps the cost flat in the number of branches: attaching every branch to one
``Machine`` (``add_model``) grows faster than linearly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from transitions import EventData, Machine, MachineError

from states.base import WORKING_STAGES, Stage
from workflow.errors import TransitionRefused, Unmet

TRIGGER_LABELS = {
    "advance": "进入下一环节",
    "uphold_objection": "异议成立，退回党委评定",
    "fail_inspection": "验收未通过，退回整改",
}

TRANSITIONS: list[dict[str, Any]] = [
    *(
        {"trigger": "advance", "source": a, "dest": b, "conditions": "_guard"}
        for a, b in zip(WORKING_STAGES, [*WORKING_STAGES[1:], Stage.accepted])
    ),
    {"trigger": "uphold_objection", "source": Stage.publicity, "dest": Stage.committee_grading, "conditions": "_guard"},
    {"trigger": "fail_inspection", "source": Stage.acceptance, "dest": Stage.rectification, "conditions": "_guard"},
]


def legal_triggers(stage: Stage) -> list[str]:
    return [t["trigger"] for t in TRANSITIONS if t["source"] == stage]


def destination(stage: Stage, trigger: str) -> Stage | None:
    for t in TRANSITIONS:
        if t["source"] == stage and t["trigger"] == trigger:
            return Stage(t["dest"])
    return None


class _Carrier:
    """A throwaway model: holds one case's stage for the length of one move."""

    state: Stage

    def __init__(self, check: Callable[[], list[Unmet]]) -> None:
        self._check = check

    def _guard(self, event: EventData) -> bool:
        unmet = self._check()
        if unmet:
            raise TransitionRefused(
                f"不能从“{Stage(event.transition.source).label if event.transition else ''}”"
                f"{TRIGGER_LABELS.get(event.event.name, event.event.name)}",
                unmet=unmet,
            )
        return True


def fire(stage: Stage, trigger: str, check: Callable[[], list[Unmet]] = list) -> Stage:
    """Move from ``stage`` by ``trigger`` if declared and ``check()`` returns nothing unmet; return the new stage."""
    if trigger not in TRIGGER_LABELS:
        raise TransitionRefused(f"未知的操作 {trigger!r}；可用：{', '.join(TRIGGER_LABELS)}")
    carrier = _Carrier(check)
    try:
        with _LOCK:
            _MACHINE.add_model(carrier, initial=stage)
        carrier.trigger(trigger)  # type: ignore[attr-defined]  # added by transitions
    except MachineError:
        allowed = "、".join(TRIGGER_LABELS[t] for t in legal_triggers(stage)) or "无（已是终态）"
        raise TransitionRefused(
            f"当前环节“{stage.label}”不能执行“{TRIGGER_LABELS[trigger]}”；当前环节可执行：{allowed}"
        ) from None
    finally:
        with _LOCK:
            _MACHINE.remove_model(carrier)
    return Stage(carrier.state)


# One machine, declared once; carriers join it for one move and leave, so it never holds more than the
# moves in flight. The lock makes joining and leaving safe under a threaded web server.
_MACHINE = Machine(
    model=None,
    states=Stage,
    transitions=TRANSITIONS,
    initial=Stage.survey,
    auto_transitions=False,
    send_event=True,
    ignore_invalid_triggers=False,
    model_attribute="state",
)
_LOCK = threading.Lock()
