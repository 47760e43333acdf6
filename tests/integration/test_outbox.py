"""The sweep and the outbox on SQLite and PostgreSQL: indexed, idempotent, chained, all-or-nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from notifications.directory import Recipient
from notifications.models import SKIPPED, DeliveryRow, OutboxRow, SweepStateRow
from notifications.outbox import Notice, enqueue
from scheduler.sweep import sweep
from tests.integration.test_mail_smtp import SEC, Org, at
from workflow import audit
from workflow.errors import Conflict
from workflow.importer import OrgRow, import_rows
from workflow.models import CampaignRow, CaseRow, EventRow
from workflow.repository import load_case
from workflow.service import open_missing_cases


def run(sessions: sessionmaker[Session], now: dt.datetime):  # type: ignore[no-untyped-def]
    with sessions() as s, s.begin():
        return sweep(s, now=now)


@pytest.fixture
def org(sessions: sessionmaker[Session], tmp_path: Path) -> Org:
    return Org(sessions, tmp_path)


def test_the_sweep_reads_only_the_cases_with_something_due(sessions: sessionmaker[Session], org: Org) -> None:
    with sessions() as s, s.begin():  # 60 more branches, all in the survey stage
        import_rows(s, [OrgRow(row=i + 2, committee="测试学院党委", committee_code="C1", general_branch="第一党总支",
                               general_branch_code="GB1", code=f"X{i:02d}", name=f"第{i}党支部", branch_type="teacher",
                               secretary_name=f"书记{i}", secretary_email=f"x{i}@test.cn", member_count=10,
                               last_reelection=None, last_activity=None, secretary_violation=False)
                        for i in range(60)])
        open_missing_cases(s, None, now=at(3, 1, 8, 30))
    org.survey("B1", at(3, 20, 10))
    run(sessions, at(4, 6))
    stats = run(sessions, at(4, 7))
    # B1's self-assessment (due 04-10) has its 3-day reminder today; the 61 survey cases (due 03-31) have
    # nothing on 04-07 (their escalations were 04-01 and 04-03, the weekly one is 04-10): not even read
    assert stats.examined == 1
    assert (stats.reminders, stats.escalations) == (1, 0)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(CaseRow)) == 62


def test_sweeping_again_adds_nothing_and_time_never_goes_back(sessions: sessionmaker[Session], org: Org) -> None:
    first = run(sessions, at(3, 28))
    assert first.reminders == 2 and first.monthly == 1
    again = run(sessions, at(3, 28))
    earlier = run(sessions, at(3, 20))
    assert (again.examined, again.reminders, earlier.examined, earlier.reminders) == (0, 0, 0, 0)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(OutboxRow)) == 3
        assert s.scalar(select(func.count()).select_from(DeliveryRow)) == 3  # gb ×2 reminders, org ×1 digest
        assert s.scalar(select(SweepStateRow.swept_until)) == at(3, 28)


def test_skipped_rungs_leave_no_event_and_no_delivery(sessions: sessionmaker[Session], org: Org) -> None:
    run(sessions, at(3, 27))
    run(sessions, at(4, 2))  # downtime over 03-28 … 04-01: the 1-day escalation is what still makes sense
    with sessions() as s:
        rows = s.execute(select(OutboxRow.rung, OutboxRow.status).where(OutboxRow.branch_code == "B1")
                         .order_by(OutboxRow.due_at)).all()
        assert [tuple(r) for r in rows] == [("before-3", SKIPPED), ("before-1", SKIPPED), ("after-1", "queued")]
        skipped_ids = [o.id for o in s.scalars(select(OutboxRow).where(OutboxRow.status == SKIPPED))]
        assert s.scalar(select(func.count()).select_from(DeliveryRow)
                        .where(DeliveryRow.outbox_id.in_(skipped_ids))) == 0
        kinds = list(s.scalars(select(EventRow.kind).where(EventRow.case_id == load_case(s, "B1").row.id)
                               .order_by(EventRow.seq)))
        assert kinds == ["opened", "escalated"]
        assert audit.verify(s).ok


def test_a_case_changed_meanwhile_makes_the_batch_write_nothing(sessions: sessionmaker[Session], org: Org) -> None:
    with sessions() as s:
        case = load_case(s, "B1")
        camp = s.scalar(select(CampaignRow.id))
        assert camp is not None
        stale = Notice(key="haitang-2026/B1/survey/2026-03-31/before-3", campaign_id=camp, kind="reminder",
                       rung="before-3", due_at=at(3, 28), context={}, recipients=[Recipient(email=SEC["B1"], name="x")],
                       case_id=case.row.id, branch_code="B1", stage="survey", deadline=dt.date(2026, 3, 31),
                       version=case.version - 1 if case.version > 1 else 0, last_hash=case.last_hash,
                       last_at=case.last_at)
    with pytest.raises(Conflict, match="本次扫描未生效"), sessions() as s, s.begin():
        enqueue(s, [stale], now=at(3, 28))
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(OutboxRow)) == 0
        assert s.scalar(select(func.count()).select_from(EventRow).where(EventRow.kind == "reminded")) == 0
        assert audit.verify(s).ok


def test_two_dispatchers_at_once_send_each_message_exactly_once(sessions: sessionmaker[Session], org: Org) -> None:
    """Two nodes dispatching the same outbox concurrently (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: the
    claim is a write, so claims serialise): each claimed batch goes to one node only."""
    import threading
    import time as _time

    from notifications.dispatch import dispatch
    from notifications.mailer import NO_HOOKS, InMemoryTransport

    with sessions() as s, s.begin():
        camp = s.scalar(select(CampaignRow.id))
        assert camp is not None
        enqueue(s, [Notice(key=f"test/{i}", campaign_id=camp, kind="monthly", rung="digest", due_at=at(4, 1),
                           context={"campaign": "测试", "month": "2026-04", "as_of": "2026年4月1日", "total": 1,
                                    "stages": [], "overdue_total": 0, "general_branches": [], "reminders": 0,
                                    "escalations": 0, "supervision_orders": 0},
                           recipients=[Recipient(email=f"r{i}@test.cn", name=f"收件人{i}")]) for i in range(40)],
                now=at(4, 1))

    class Slow(InMemoryTransport):
        def send(self, messages, hooks=NO_HOOKS):  # type: ignore[no-untyped-def]
            _time.sleep(0.05)  # while one node sends, the other claims
            return super().send(messages, hooks)

    nodes = [Slow(), Slow()]
    errors: list[BaseException] = []

    def node(t: Slow) -> None:
        try:
            dispatch(sessions, t, now=at(4, 1, 9, 30), sender="组织部 <zzb@test.cn>", batch=5)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=node, args=(t,)) for t in nodes]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors, errors
    sent = [str(m["X-Branchflow-Dedup-Key"]) for t in nodes for m in t.sent]
    assert sorted(sent) == sorted(f"test/{i}" for i in range(40))  # all of them, none twice
    assert all(t.sent for t in nodes)  # both nodes did part of the work
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(DeliveryRow).where(DeliveryRow.status == "sent")) == 40
