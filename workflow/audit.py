"""The hash-chained event log: canonical bytes, chaining, replay at a time and verification.

Per case, ``hash = sha256(prev_hash ‖ body)`` where ``body`` is the event's canonical JSON (sorted keys,
no spaces, UTF-8) *as stored*, and the first event's ``prev_hash`` is 64 zeros. Verifying reads the
stored bytes (no re-serialisation), checks that seq runs 1, 2, 3 … without gaps, that each event names
its predecessor's hash, that the indexed columns agree with the body, and finally that replaying the
events gives exactly the projection in ``cases``. It streams case by case, so memory stays flat.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow.case import UnknownEvent, apply, current_grade, new_state
from workflow.errors import InvalidInput
from workflow.models import Branch, CampaignRow, CaseRow, EventRow

GENESIS = "0" * 64


def canonical(event: dict[str, Any]) -> str:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain(prev_hash: str, body: str) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + body.encode("utf-8")).hexdigest()


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_iso(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s)


@dataclass(frozen=True, kw_only=True)
class Problem:
    campaign: str
    branch: str
    seq: int | None
    event_id: int | None
    problem: str

    def __str__(self) -> str:
        if self.branch == "(活动配置)":
            where = f"变更 #{self.seq}" if self.seq is not None else "活动配置"
        else:
            where = f"事件 #{self.seq}（id {self.event_id}）" if self.seq is not None else "当前状态表"
        return f"{self.campaign}/{self.branch} {where}：{self.problem}"


@dataclass(kw_only=True)
class Report:
    cases: int = 0
    events: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_case(
    campaign: str, branch: str, case: CaseRow | None, rows: list[Any], report: Report,
    derived_deadline: Callable[[dict[str, Any]], dt.date | None] | None = None,
) -> None:
    prev = GENESIS
    state = new_state(campaign, branch)
    for expected_seq, row in enumerate(rows, 1):
        report.events += 1

        def bad(msg: str, row: Any = row) -> None:
            report.problems.append(Problem(campaign=campaign, branch=branch, seq=row.seq, event_id=row.id, problem=msg))

        if row.seq != expected_seq:
            return bad(f"序号应为 {expected_seq}，实为 {row.seq}：事件被删除或插入")
        if row.prev_hash != prev:
            return bad("前一事件哈希不符：事件被删除、插入或调换了顺序")
        if chain(prev, row.body) != row.hash:
            return bad("哈希不符：事件内容被修改")
        try:
            ev = json.loads(row.body)
        except ValueError:
            return bad("事件内容不是有效的 JSON")
        try:
            same = ev.get("kind") == row.kind and ev.get("actor") == row.actor and parse_iso(ev["at"]) == row.at
        except (KeyError, TypeError, ValueError):
            return bad("事件内容缺少或写错了 kind/actor/at")
        if not same:
            return bad("索引列（kind/actor/at）与已签名的事件内容不一致")
        if expected_seq == 1 and (ev["kind"] != "opened" or ev.get("payload", {}).get("branch") != branch
                                  or ev.get("payload", {}).get("campaign") != campaign):
            return bad("第一条事件不是本支部在本活动中的立案：事件链被挪到了别的支部")
        try:
            apply(state, ev, in_place=True)
        except (UnknownEvent, KeyError, IndexError, TypeError, ValueError) as exc:
            return bad(f"无法重放：{exc}")
        prev = row.hash
    if case is None:
        return
    if case.version != len(rows):
        report.problems.append(
            Problem(campaign=campaign, branch=branch, seq=None, event_id=None,
                    problem=f"当前状态版本 {case.version} 与事件数 {len(rows)} 不符")
        )
    elif (case.state != state or case.stage != state["stage"] or case.grade != current_grade(state)
          or (derived_deadline is not None and case.deadline != derived_deadline(state))):
        diff = sorted(k for k in set(state) | set(case.state) if state.get(k) != case.state.get(k))
        if case.stage != state["stage"]:
            diff.insert(0, f"stage={case.stage}≠{state['stage']}")
        if case.grade != current_grade(state):
            diff.append(f"grade={case.grade}≠{current_grade(state)}")
        if derived_deadline is not None and case.deadline != derived_deadline(state):
            diff.append(f"deadline={case.deadline}≠{derived_deadline(state)}")
        report.problems.append(
            Problem(campaign=campaign, branch=branch, seq=None, event_id=None,
                    problem=f"当前状态与事件重放结果不一致（{', '.join(diff)}）")
        )


def verify(session: Session, *, campaign_code: str | None = None, branch_code: str | None = None,
           batch: int = 2000) -> Report:
    """Verify every chain (or one campaign's, or one branch's) and the projection against the replay."""
    report = Report()
    from workflow.campaigns import verify_changes
    from workflow.repository import campaign_of, effective_deadline

    if branch_code is None:
        for camp, seq, problem in verify_changes(session):
            if campaign_code in (None, camp):
                report.problems.append(Problem(campaign=camp, branch="(活动配置)", seq=seq, event_id=None, problem=problem))
    deadline_of: dict[str, Callable[[dict[str, Any]], dt.date | None]] = {}
    for camp_row in session.scalars(select(CampaignRow)):
        try:
            c = campaign_of(camp_row)
        except InvalidInput as exc:
            report.problems.append(Problem(campaign=camp_row.code, branch="(活动配置)", seq=None, event_id=None,
                                           problem=f"存储的活动配置无效：{exc.message.splitlines()[-1].strip()}"))
            continue
        deadline_of[camp_row.code] = partial(effective_deadline, c)
    q = (
        select(CaseRow, CampaignRow.code, Branch.code)
        .join(CampaignRow, CampaignRow.id == CaseRow.campaign_id)
        .join(Branch, Branch.id == CaseRow.branch_id)
        .order_by(CaseRow.id)
    )
    if campaign_code:
        q = q.where(CampaignRow.code == campaign_code)
    if branch_code:
        q = q.where(Branch.code == branch_code)
    last_id = 0
    while True:
        page = session.execute(q.where(CaseRow.id > last_id).limit(batch)).all()
        if not page:
            break
        ids = [c.id for c, _, _ in page]
        by_case: dict[int, list[Any]] = {i: [] for i in ids}
        # Plain rows, not ORM objects: verifying reads the stored bytes and needs no identity map.
        for row in session.execute(
            select(EventRow.id, EventRow.case_id, EventRow.seq, EventRow.kind, EventRow.at, EventRow.actor,
                   EventRow.body, EventRow.prev_hash, EventRow.hash)
            .where(EventRow.case_id.in_(ids)).order_by(EventRow.case_id, EventRow.seq)
        ):
            by_case[row.case_id].append(row)
        for case, camp, branch in page:
            report.cases += 1
            _check_case(camp, branch, case, by_case[case.id], report, deadline_of.get(camp))
            session.expunge(case)  # keep memory flat; touch nothing else the caller's session holds
        last_id = ids[-1]
    return report


def events_of(session: Session, case_id: int, *, until: dt.datetime | None = None) -> Iterator[dict[str, Any]]:
    """The case's events in order (optionally those at or before ``until``), each with its chain fields."""
    q = select(EventRow).where(EventRow.case_id == case_id).order_by(EventRow.seq)
    if until is not None:
        q = q.where(EventRow.at <= until)
    for row in session.scalars(q):
        ev = json.loads(row.body)
        ev["seq"] = row.seq
        ev["id"] = row.id
        ev["hash"] = row.hash
        ev["prev_hash"] = row.prev_hash
        yield ev
