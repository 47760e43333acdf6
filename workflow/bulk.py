"""Work in bulk (issue 16, point 4): one action over several branches, each branch in its own transaction.

:func:`run` loops over the branch codes (duplicates dropped, at most :data:`MAX_BRANCHES`), opening one
transaction per branch with ``tx``, checking the reading rules with ``see`` first (a branch outside the
person's scope answers exactly as an unknown code), then running the action — a use case of
:mod:`workflow.service` (or of notifications.manual for reminders and 督办令). A refusal rolls back only
that branch's transaction and becomes that branch's row in the result, with the error's Chinese message;
the other branches go on. Nothing here decides who may act: the use cases do (deny by default).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from workflow import service
from workflow.errors import BranchflowError, InvalidInput
from workflow.repository import LoadedCase
from workflow.service import Actor

MAX_BRANCHES = 500

# An action: (session, branch code, actor, now) → the case after it and a Chinese sentence saying what was done.
Action = Callable[[Session, str, Actor, dt.datetime], tuple[LoadedCase, str]]
See = Callable[[Session, Actor, str], Any]


@dataclass(frozen=True, kw_only=True)
class BranchResult:
    """One branch's outcome: ``name`` only when it succeeded (a refused code may be outside one's scope)."""

    code: str
    ok: bool
    message: str
    name: str = ""
    error: str = ""
    unmet: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "ok": self.ok, "name": self.name, "message": self.message,
                "error": self.error, "unmet": self.unmet}


def _grade(s: Session, code: str, actor: Actor, now: dt.datetime) -> tuple[LoadedCase, str]:
    case = service.compute_grade(s, code, actor, now=now)
    g = case.state["grade"]
    return case, f"总分 {g['total']:g}，等级 {g['grade_label']}"


def _publish(s: Session, code: str, actor: Actor, now: dt.datetime) -> tuple[LoadedCase, str]:
    case = service.publish(s, code, actor, now=now)
    pub = case.state["publicity"]
    return case, f"公示 {pub['start']} 至 {pub['end']}"


def _advance(s: Session, code: str, actor: Actor, now: dt.datetime) -> tuple[LoadedCase, str]:
    case = service.advance(s, code, actor, now=now)
    return case, f"已进入“{case.stage.label}”环节"


# name → (Chinese label, action): the use cases of workflow.service; notifications.manual adds more.
ACTIONS: dict[str, tuple[str, Action]] = {
    "grade": ("计算得分和等级", _grade),
    "publish": ("发布公示", _publish),
    "advance": ("推进到下一环节", _advance),
}


def codes_of(raw: Iterable[str]) -> list[str]:
    """The branch codes asked for, stripped, without duplicates, in the order given."""
    out: list[str] = []
    for c in raw:
        c = c.strip()
        if c and c not in out:
            out.append(c)
    if not out:
        raise InvalidInput("请至少选择一个党支部")
    if len(out) > MAX_BRANCHES:
        raise InvalidInput(f"一次最多处理 {MAX_BRANCHES} 个党支部（本次选择了 {len(out)} 个）")
    return out


def run(tx: Callable[[], AbstractContextManager[Session]], actor: Actor, action: Action, codes: Iterable[str], *,
        now: dt.datetime, see: See) -> list[BranchResult]:
    """Run ``action`` on each branch in its own transaction; one result per branch, in the order given."""
    results: list[BranchResult] = []
    for code in codes_of(codes):
        try:
            with tx() as s:
                see(s, actor, code)
                case, message = action(s, code, actor, now)
                name = case.branch.name
        except BranchflowError as exc:
            lines = exc.message.split("\n")
            unmet = [u.message for u in getattr(exc, "unmet", [])]
            results.append(BranchResult(code=code[:64], ok=False, message=lines[0], error=type(exc).__name__,
                                        unmet=unmet))
            continue
        results.append(BranchResult(code=code, ok=True, message=message, name=name))
    return results
