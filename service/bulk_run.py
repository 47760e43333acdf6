"""The bulk actions as both edges run them (issue 16, point 4): the page ``POST /bulk`` and the API
``POST /api/bulk/{action}`` call :func:`run` — the action's registry (workflow.bulk + notifications.manual),
the reading rules before anything else on each branch (a branch outside the person's scope answers exactly
as an unknown code), read-only auditors refused, then the use case in the branch's own transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy.orm import Session

from notifications.manual import BULK_ACTIONS
from service.app import Runtime
from service.application import guard
from workflow import bulk
from workflow.errors import NotFound
from workflow.service import Actor


def see(s: Session, actor: Actor, code: str) -> None:
    """The person may see the branch (else: as unknown) and is not a read-only auditor (application.guard)."""
    guard(s, actor, code)


def run(rt: Runtime, actor: Actor, action: str, codes: Iterable[str], *,
        now: dt.datetime) -> tuple[str, list[bulk.BranchResult]]:
    """(the action's Chinese label, one result per branch); :class:`NotFound` for an unknown action."""
    if action not in BULK_ACTIONS:
        raise NotFound(f"没有批量操作 {action[:32]!r}；可用：{'、'.join(BULK_ACTIONS)}")
    label, fn = BULK_ACTIONS[action]
    return label, bulk.run(rt.tx, actor, fn, codes, now=now, see=see)
