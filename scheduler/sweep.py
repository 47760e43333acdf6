"""The sweep: what became due since the last sweep, written to the outbox with its audit events.

For each campaign: read the watermark (up to when the last sweep looked; the campaign's creation at
first), turn ``(watermark, now]`` into ranges of deadline dates (:meth:`Schedule.deadline_windows`),
fetch only the open cases whose indexed ``deadline`` lies in those ranges — page by page, with each
case's chain head joined in — decide per case (:meth:`Schedule.decide`), drop what the outbox already
holds (unique dedup key), and write the rest in bulk (:func:`notifications.outbox.enqueue`). Then the
monthly digest (月调度) if its time fell in the window, and the watermark moves to ``now``.

Idempotent: running it twice at the same ``now`` adds nothing; after downtime it catches up once.
The caller owns the transaction.
"""

from __future__ import annotations

import datetime as dt
import gc
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import orjson
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from notifications.directory import ESCALATION_ROLES, Directory, Recipient, owner_roles
from notifications.models import SKIPPED, OutboxRow, SweepStateRow
from notifications.outbox import Notice, enqueue, existing_keys
from scheduler.deadlines import ESCALATION, REMINDER, Decision, Schedule, dedup_key
from states import spec_for
from states.base import ROLE_LABELS, Role, Stage, StageSpec
from workflow.calendar import require_known_year
from workflow.campaign import Campaign
from workflow.case import BranchFacts
from workflow.errors import CalendarUnknown
from workflow.models import Branch, CampaignRow, CaseRow, Committee, GeneralBranch
from workflow.repository import _cursor, campaign_of


@dataclass
class SweepStats:
    campaigns: int = 0
    examined: int = 0
    reminders: int = 0
    escalations: int = 0
    supervision_orders: int = 0
    skipped: int = 0
    already: int = 0
    cancelled: int = 0
    monthly: int = 0
    deliveries: int = 0
    windows: list[tuple[dt.date, dt.date]] = field(default_factory=list)
    calendar_unknown: list[str] = field(default_factory=list)  # campaigns not swept: their year's calendar is unknown

    def text(self) -> str:
        out = (f"扫描 {self.examined} 个到期支部：新增提醒 {self.reminders} 条、逾期督促 {self.escalations} 条"
               f"（其中督办令 {self.supervision_orders} 条）、过期跳过 {self.skipped} 条、"
               f"月调度 {self.monthly} 份、因支部已推进而取消 {self.cancelled} 封")
        for code in self.calendar_unknown:
            out += f"\n活动 {code} 未扫描：该年工作日历未知（请在活动配置 [calendar] 中列出节假日与调休，或确认 weekdays_only = true）"
        return out


def _year_listed(campaign: Campaign) -> bool:
    try:
        require_known_year(campaign)
    except CalendarUnknown:
        return False
    return True


def cn_date(d: dt.date) -> str:
    return f"{d.year}年{d.month}月{d.day}日"


def sweep(session: Session, *, now: dt.datetime, campaign_code: str | None = None,
          org_department_email: str = "", page: int = 1000,
          checkpoint: Callable[[], None] | None = None) -> SweepStats:
    """Enqueue every reminder, escalation and digest that became due up to ``now``; returns counts.

    ``checkpoint`` (e.g. the job's ``session.commit``) is called after each page, so a deadline day with
    100,000 branches does not hold SQLite's write lock for the whole sweep. Each page's events and outbox
    rows are still written together; after a crash the next sweep redoes the window (the watermark moves
    last) and the unique dedup keys drop what is already there.
    """
    stats = SweepStats()
    directory = Directory(session, org_department_email=org_department_email)
    q = select(CampaignRow).order_by(CampaignRow.id)
    if campaign_code:
        q = q.where(CampaignRow.code == campaign_code)
    for camp_row in list(session.scalars(q)):
        stats.campaigns += 1
        try:
            with _old_objects_frozen():
                _sweep_campaign(session, camp_row, now=now, directory=directory, stats=stats, page=page,
                                checkpoint=checkpoint)
        except CalendarUnknown:
            # A rung on a day of a year nobody listed (a December deadline's escalation in January): the
            # campaign stops here, said aloud; its watermark did not move, so the next sweep redoes the
            # window once the year is listed (the dedup keys drop what this one already queued).
            stats.calendar_unknown.append(camp_row.code)
    # No scan of every pending delivery here: a case that leaves its stage cancels its queued notices
    # in the save that moves it (workflow.repository.save), and the dispatcher checks before it sends.
    session.flush()
    return stats


@contextmanager
def _old_objects_frozen() -> Iterator[None]:
    """Keep the objects that exist before a campaign's sweep out of the cyclic collector's full passes.

    A deadline-day sweep allocates millions of short-lived objects; each full collection they trigger
    walks every object of the process (the ORM's, the modules'), which was ~6 % of the sweep's CPU at
    100,000 cases. ``gc.freeze`` moves today's objects aside (they are still freed by reference
    counting) and ``gc.unfreeze`` puts them back afterwards. Not done when something else froze objects
    first (a pre-forking server keeps its own freeze; unfreezing it would undo that), nor with gc off."""
    if not gc.isenabled() or gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _sweep_campaign(session: Session, camp_row: CampaignRow, *, now: dt.datetime, directory: Directory,
                    stats: SweepStats, page: int, checkpoint: Callable[[], None] | None) -> None:
    campaign = campaign_of(camp_row)
    if not _year_listed(campaign):
        stats.calendar_unknown.append(camp_row.code)  # never guess the working days (issue 12)
        return
    sched = Schedule(campaign)
    mark = session.get(SweepStateRow, camp_row.id)
    prev = mark.swept_until if mark else camp_row.created_at
    if now <= prev:
        return
    min_deadline = session.scalar(select(func.min(CaseRow.deadline)).where(CaseRow.campaign_id == camp_row.id))
    windows = sched.deadline_windows(prev, now, min_deadline)
    stats.windows.extend(windows)
    decisions: dict[dt.date, Decision | None] = {}  # every case with the same deadline gets the same answer
    slots: dict[tuple[dt.date, str], _Slot] = {}  # … and the same send times and dates in its notice
    for lo, hi in windows:
        # keyset pagination in index order (deadline, id): each page is a range read, never a re-sort
        last_d, last_id = lo, 0
        while True:
            rows = _candidates(session, camp_row.id, hi, last_d, last_id, page)
            if not rows:
                break
            last_d, last_id = rows[-1].deadline, rows[-1].id
            stats.examined += len(rows)
            directory.prefetch_general_branches({r.general_branch_id for r in rows})
            notices: list[Notice] = []
            for r in rows:
                if r.deadline not in decisions:
                    decisions[r.deadline] = sched.decide(r.deadline, prev, now)
                decision = decisions[r.deadline]
                if decision is not None:
                    notices.extend(_notices(r, decision, camp_row, campaign, sched, directory, now, slots))
            have = existing_keys(session, [n.key for n in notices])
            stats.already += len(have)
            fresh = [n for n in notices if n.key not in have]
            for n in fresh:
                if n.status == SKIPPED:
                    stats.skipped += 1
                elif n.kind == REMINDER:
                    stats.reminders += 1
                else:
                    stats.escalations += 1
                    stats.supervision_orders += int(n.supervision_order)
                stats.deliveries += len(n.recipients) if n.status != SKIPPED else 0
            enqueue(session, fresh, now=now)
            if checkpoint is not None:
                checkpoint()
    due = sched.monthly_due(prev, now)
    if due is not None:
        stats.monthly += _monthly(session, camp_row, campaign, sched, directory, month=due[0], at=due[1], now=now)
    if mark is None:
        session.add(SweepStateRow(campaign_id=camp_row.id, swept_until=now, updated_at=now))
    else:
        mark.swept_until = now
        mark.updated_at = now
    session.flush()


class Candidate(NamedTuple):
    """An open case whose deadline is in a window, with its branch and chain head (one row of the walk)."""

    id: int
    stage: str
    deadline: dt.date
    version: int
    state: Any  # as read: JSON text (decoded by _state when the notice needs it)
    code: str
    name: str
    branch_type: str
    member_count: int
    secretary_name: str
    secretary_email: str
    general_branch_id: int | None
    committee_id: int
    last_reelection: dt.date | None
    last_activity: dt.date | None
    secretary_violation: bool
    hash: str
    at: dt.datetime | None


# The candidate walk on the DBAPI cursor with a prebuilt statement (as workflow.repository's load_case):
# the ORM's per-row type processing cost more than the reads. (deadline, id) > (last_d, last_id) as a row
# value: SQLite and PostgreSQL both seek on it in the (campaign_id, deadline, id) index; the OR form gave
# SQLite no lower bound, so every page re-walked all the earlier rows of the window.
_CANDIDATES = (
    "SELECT c.id, c.stage, c.deadline, c.version, {state}, b.code, b.name, b.branch_type, b.member_count, "
    "b.secretary_name, b.secretary_email, b.general_branch_id, b.committee_id, b.last_reelection, "
    "b.last_activity, b.secretary_violation, e.hash, e.at "
    "FROM cases c JOIN branches b ON b.id = c.branch_id "
    "JOIN events e ON e.case_id = c.id AND e.seq = c.version "
    "WHERE c.campaign_id = {p} AND c.stage <> 'accepted' AND c.deadline <= {p} AND (c.deadline, c.id) > ({p}, {p}) "
    "ORDER BY c.deadline, c.id LIMIT {p}"
)


def _candidates(session: Session, campaign_id: int, hi: dt.date, last_d: dt.date, last_id: int,
                page: int) -> list[Candidate]:
    if session.new or session.dirty or session.deleted:
        session.flush()  # the raw read must see what the unit of work still holds
    sql, cur, _ = _cursor(session)
    try:
        cur.execute(_CANDIDATES.format(state="c.state" if sql.sqlite else "CAST(c.state AS TEXT)", p=sql.p),
                    (campaign_id, sql.day(hi), sql.day(last_d), last_id, page))
        raw = cur.fetchall()
    finally:
        cur.close()
    # dates and timestamps converted once per distinct value (a page holds a handful of distinct dates);
    # the state stays as read (JSON text) until its notice is built: decoded then, one case at a time
    read_day, read_ts = sql.read_day, sql.read_ts
    days = {v: read_day(v) for v in {v for r in raw for v in (r[2], r[13], r[14])}}
    stamps = {v: read_ts(v) for v in {r[17] for r in raw}}
    return [Candidate(r[0], r[1], cast(dt.date, days[r[2]]), r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12],
                      days[r[13]], days[r[14]], bool(r[15]), r[16], stamps[r[17]])
            for r in raw]


def _state(raw: Any) -> dict[str, Any]:
    """A candidate's state: its stored JSON decoded (a driver may already hand over the dict)."""
    return orjson.loads(raw) if isinstance(raw, str | bytes) else cast(dict[str, Any], raw)


@dataclass
class _Slot:
    """What every case with the same (deadline, stage) shares under one decision: computed once per sweep."""

    stage: Stage
    skipped: list[tuple[Any, dt.datetime, str]]  # (rung, its send time, why it was not sent)
    due_at: dt.datetime | None = None  # the sent rung's time
    spec: StageSpec | None = None  # the stage's declaration (its exit check lists what is missing)
    roles: list[Role] = field(default_factory=list)
    shared: dict[str, Any] = field(default_factory=dict)  # the context's per-deadline values
    branch_secretary: bool = False  # the branch's own secretary is among the recipients (per case, not per unit)
    units: dict[tuple[int, int | None], _Unit] = field(default_factory=dict)


class _Unit(NamedTuple):
    """What the cases of one slot share within one (committee, general branch)."""

    gb_name: str
    contact: str
    committee_size: int
    recipients: list[Recipient] | None  # None when they include the branch's own secretary


def _unit(slot: _Slot, committee_id: int, gb_id: int | None, directory: Directory) -> _Unit:
    hit = slot.units.get((committee_id, gb_id))
    if hit is None:
        roles = slot.roles
        recipients = (None if slot.branch_secretary else
                      directory.resolve(roles, committee_id=committee_id, gb_id=gb_id, secretary=_NOBODY))
        hit = slot.units[(committee_id, gb_id)] = _Unit(
            directory.general_branch(gb_id)[1], directory.contact(roles, committee_id=committee_id, gb_id=gb_id),
            directory.committee_size(committee_id), recipients)
    return hit


_NOBODY = Recipient(email="", name="")  # not asked for: the roles do not include the branch's secretary


def _slot(deadline: dt.date, stage_value: str, decision: Decision, sched: Schedule, now: dt.datetime,
          memo: dict[tuple[dt.date, str], _Slot]) -> _Slot:
    hit = memo.get((deadline, stage_value))
    if hit is not None:
        return hit
    stage = Stage(stage_value)
    slot = sched.send_at(deadline, decision.send) if decision.send else None
    skipped = []
    for rung in decision.skipped:
        due_at = sched.send_at(deadline, rung)
        merged = slot is not None and due_at == slot and rung.kind == decision.send.kind  # type: ignore[union-attr]
        reason = f"与 {decision.send.id} 同一时间发出，已并入该邮件" if merged else "已过时（停机或延误后补扫），未发送"  # type: ignore[union-attr]
        skipped.append((rung, due_at, reason))
    out = _Slot(stage=stage, skipped=skipped, due_at=slot)
    sent = decision.send
    if sent is not None:
        out.roles = (owner_roles(stage) if sent.kind == REMINDER
                     else [ESCALATION_ROLES[t] for t in decision.to or sent.to])
        out.branch_secretary = Role.branch_secretary in out.roles
        out.spec = spec_for(stage)
        today = sched.local_date(now)
        out.shared = {"stage_label": stage.label, "deadline": deadline.isoformat(), "deadline_text": cn_date(deadline),
                      "days_left": max((deadline - today).days, 0), "days_overdue": max((today - deadline).days, 0),
                      "owners": [ROLE_LABELS[x] for x in out.roles]}
    memo[(deadline, stage_value)] = out
    return out


def _notices(r: Any, decision: Decision, camp_row: CampaignRow, campaign: Campaign, sched: Schedule,
             directory: Directory, now: dt.datetime,
             memo: dict[tuple[dt.date, str], _Slot] | None = None) -> list[Notice]:
    deadline: dt.date = r.deadline
    shared = _slot(deadline, r.stage, decision, sched, now, {} if memo is None else memo)
    stage = shared.stage
    out: list[Notice] = []
    base = {"campaign_id": camp_row.id, "case_id": r.id, "branch_code": r.code, "stage": r.stage, "deadline": deadline}
    for rung, due_at, reason in shared.skipped:
        out.append(Notice(key=dedup_key(camp_row.code, r.code, r.stage, deadline, rung.id), kind=rung.kind,
                          rung=rung.id, due_at=due_at, status=SKIPPED, context={"reason": reason}, **base))
    if decision.parent is not None:
        out.extend(_up_the_tree(r, decision.parent, camp_row, campaign, sched, directory, now, base))
    if decision.send is None:
        return out
    rung = decision.send
    assert shared.due_at is not None
    unit = _unit(shared, r.committee_id, r.general_branch_id, directory)
    recipients = unit.recipients
    if recipients is None:
        recipients = directory.resolve(shared.roles, committee_id=r.committee_id, gb_id=r.general_branch_id,
                                       secretary=Recipient(email=r.secretary_email, name=r.secretary_name))
    facts = BranchFacts(code=r.code, name=r.name, branch_type=r.branch_type, member_count=r.member_count,
                        committee_size=unit.committee_size, last_reelection=r.last_reelection,
                        last_activity=r.last_activity, secretary_violation=r.secretary_violation)
    state = _state(r.state)
    assert shared.spec is not None
    try:
        missing = [str(u) for u in shared.spec.can_leave(state, campaign, facts, now=now)]
    except Exception:  # noqa: BLE001 - a rule that cannot judge this case must not stop everyone's reminders
        missing = []
    v = shared.shared
    context: dict[str, Any] = {
        "campaign": campaign.name, "branch_code": r.code, "branch_name": r.name, "general_branch": unit.gb_name,
        "secretary": r.secretary_name, "stage": r.stage, "stage_label": v["stage_label"],
        "deadline": v["deadline"], "deadline_text": v["deadline_text"], "kind": rung.kind, "rung": rung.id,
        "days_left": v["days_left"], "days_overdue": v["days_overdue"],
        "missing": missing, "owners": list(v["owners"]), "contact": unit.contact,
        "supervision_order": decision.supervision_order,
    }
    if decision.supervision_order:
        context["supervision_text"] = (
            f"督办令：党支部“{r.name}”“{stage.label}”环节已逾期 {context['days_overdue']} 天（截止 {v['deadline_text']}），"
            f"请党委组织部和党委督促该支部限期完成，并将办理情况报党委。")
    key = dedup_key(camp_row.code, r.code, r.stage, deadline, rung.id)
    if not recipients:
        out.append(Notice(key=key, kind=rung.kind, rung=rung.id, due_at=shared.due_at, status=SKIPPED,
                          context={"reason": "没有收件人：请导入书记邮箱、授予相应角色，或设置 BRANCHFLOW_ORG_DEPARTMENT_EMAIL"},
                          **base))
        return out
    out.append(Notice(key=key, kind=rung.kind, rung=rung.id, due_at=shared.due_at, context=context,
                      recipients=recipients, supervision_order=decision.supervision_order, version=r.version,
                      last_hash=r.hash, last_at=r.at, **base))
    return out


def _up_the_tree(r: Any, rung: Any, camp_row: CampaignRow, campaign: Campaign, sched: Schedule,
                 directory: Directory, now: dt.datetime, base: dict[str, Any]) -> list[Notice]:
    """The report of a sub-committee's overdue branch to the PARENT committee's organisation department
    (issue 12): one notice per (campaign, branch, stage, deadline, rung); none for a top committee."""
    parent = directory.parent_of(r.committee_id)
    if parent is None:
        return []
    stage = Stage(r.stage)
    deadline: dt.date = r.deadline
    key = dedup_key(camp_row.code, r.code, r.stage, deadline, rung.id)
    due_at = sched.send_at(deadline, rung)
    people = directory.org_department(parent)
    if not people:
        return [Notice(key=key, kind=rung.kind, rung=rung.id, due_at=due_at, status=SKIPPED,
                       context={"reason": "上级党委没有组织部人员：请为上级党委授予组织部角色"}, **base)]
    today = sched.local_date(now)
    _, gb_name, _ = directory.general_branch(r.general_branch_id)
    context: dict[str, Any] = {
        "campaign": campaign.name, "branch_code": r.code, "branch_name": r.name, "general_branch": gb_name,
        "committee": directory.committee_name(r.committee_id), "committee_code": directory.committee_code(r.committee_id),
        "parent_committee": directory.committee_name(parent),
        "stage": r.stage, "stage_label": stage.label, "deadline": deadline.isoformat(),
        "deadline_text": cn_date(deadline), "kind": rung.kind, "rung": rung.id,
        "days_overdue": max((today - deadline).days, 0), "after_days": rung.days,
        "contact": directory.contact([Role.org_department], committee_id=r.committee_id, gb_id=r.general_branch_id),
        "supervision_order": False,
    }
    return [Notice(key=key, kind=rung.kind, rung=rung.id, due_at=due_at, context=context, recipients=people,
                   version=r.version, last_hash=r.hash, last_at=r.at, **base)]


def _counts(rows: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in rows}


def _monthly(session: Session, camp_row: CampaignRow, campaign: Campaign, sched: Schedule, directory: Directory,
             *, month: str, at: dt.datetime, now: dt.datetime) -> int:
    """One progress digest (月调度) per month to the organisation department: counts, not one mail per branch."""
    key = dedup_key(camp_row.code, "*", "monthly", month, "digest")
    if existing_keys(session, [key]):
        return 0
    today = sched.local_date(now)
    by_stage: dict[str, int] = _counts(session.execute(
        select(CaseRow.stage, func.count()).where(CaseRow.campaign_id == camp_row.id).group_by(CaseRow.stage)).all())
    overdue: dict[str, int] = _counts(session.execute(
        select(CaseRow.stage, func.count()).where(CaseRow.campaign_id == camp_row.id, CaseRow.deadline < today,
                                                  CaseRow.stage != Stage.accepted.value)
        .group_by(CaseRow.stage)).all())
    per_gb = session.execute(
        select(GeneralBranch.name, func.count())
        .select_from(CaseRow).join(Branch, Branch.id == CaseRow.branch_id)
        .join(GeneralBranch, GeneralBranch.id == Branch.general_branch_id, isouter=True)
        .where(CaseRow.campaign_id == camp_row.id, CaseRow.deadline < today, CaseRow.stage != Stage.accepted.value)
        .group_by(GeneralBranch.name).order_by(func.count().desc())).all()
    month_start = at - dt.timedelta(days=31)
    sent = Counter(_counts(session.execute(
        select(OutboxRow.kind, func.count()).where(OutboxRow.campaign_id == camp_row.id,
                                                   OutboxRow.due_at > month_start, OutboxRow.due_at <= now,
                                                   OutboxRow.status != SKIPPED)
        .group_by(OutboxRow.kind)).all()))
    orders = session.scalar(select(func.count()).select_from(OutboxRow).where(
        OutboxRow.campaign_id == camp_row.id, OutboxRow.supervision_order.is_(True),
        OutboxRow.due_at > month_start, OutboxRow.due_at <= now)) or 0
    total = sum(by_stage.values())
    context = {
        "campaign": campaign.name, "month": month, "as_of": cn_date(today), "total": total,
        "stages": [{"label": s.label, "count": int(by_stage.get(s.value, 0)), "overdue": int(overdue.get(s.value, 0))}
                   for s in Stage],
        "overdue_total": int(sum(overdue.values())),
        "general_branches": [{"name": n or "（直属党委）", "overdue": int(c)} for n, c in per_gb],
        "reminders": int(sent.get(REMINDER, 0)), "escalations": int(sent.get(ESCALATION, 0)),
        "supervision_orders": int(orders),
    }
    # the campaign's own committee's department (issue 12: never another tenant's); a pre-tenancy campaign
    # covers every committee, so every department
    committees = ([camp_row.committee_id] if camp_row.committee_id is not None
                  else list(session.scalars(select(Committee.id).order_by(Committee.id))))
    recipients: dict[str, Recipient] = {}
    for cid in committees:
        for p in directory.org_department(cid):
            recipients.setdefault(p.email, p)
    enqueue(session, [Notice(key=key, campaign_id=camp_row.id, kind="monthly", rung="digest", due_at=at,
                             context=context, recipients=list(recipients.values()), branch_code="*",
                             stage="monthly")], now=now)
    return 1
