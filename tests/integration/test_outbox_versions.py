"""The batched enqueue's version check, on SQLite and PostgreSQL (each writes it its own way): a case whose
version moved although no event seq collides still makes the whole batch write nothing; a batch of
several cases moves each case's version to its last event, and the chains verify."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from notifications.directory import Recipient
from notifications.models import DeliveryRow, OutboxRow
from notifications.outbox import Notice, enqueue, existing_keys
from tests.integration.test_mail_smtp import SEC, Org, at
from workflow import audit
from workflow.errors import Conflict
from workflow.models import CampaignRow, CaseRow, EventRow
from workflow.repository import load_case


@pytest.fixture
def org(sessions: sessionmaker[Session], tmp_path: Path) -> Org:
    return Org(sessions, tmp_path)


def notice(s: Session, code: str, *, version_offset: int = 0) -> Notice:
    case = load_case(s, code)
    camp = s.scalar(select(CampaignRow.id))
    assert camp is not None
    return Notice(key=f"haitang-2026/{code}/survey/2026-03-31/before-3", campaign_id=camp, kind="reminder",
                  rung="before-3", due_at=at(3, 28), context={"branch_name": "第一支部“测试”"},
                  recipients=[Recipient(email=SEC[code], name="书记")], case_id=case.row.id, branch_code=code,
                  stage="survey", deadline=dt.date(2026, 3, 31), version=case.version + version_offset,
                  last_hash=case.last_hash, last_at=case.last_at)


def test_a_version_ahead_of_the_case_is_a_conflict_and_nothing_is_written(sessions: sessionmaker[Session],
                                                                          org: Org) -> None:
    with sessions() as s:
        good, ahead = notice(s, "B1"), notice(s, "B2", version_offset=5)  # no seq collides: only the version check can tell
    with pytest.raises(Conflict, match="本次扫描未生效"), sessions() as s, s.begin():
        enqueue(s, [good, ahead], now=at(3, 28))
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(OutboxRow)) == 0
        assert s.scalar(select(func.count()).select_from(EventRow).where(EventRow.kind == "reminded")) == 0
        assert audit.verify(s).ok


def test_a_batch_moves_each_version_to_its_last_event(sessions: sessionmaker[Session], org: Org) -> None:
    with sessions() as s:
        notices = [notice(s, code) for code in ("B1", "B2")]
        before = {n.case_id: n.version for n in notices}
    with sessions() as s, s.begin():
        enqueue(s, notices, now=at(3, 28))
    with sessions() as s:
        for case_id, old in before.items():
            assert s.scalar(select(CaseRow.version).where(CaseRow.id == case_id)) == old + 1
            assert s.scalar(select(func.max(EventRow.seq)).where(EventRow.case_id == case_id)) == old + 1
        assert s.scalar(select(func.count()).select_from(DeliveryRow)) == 2
        assert existing_keys(s, [n.key for n in notices] + ["haitang-2026/B9/none"]) == {n.key for n in notices}
        assert audit.verify(s).ok
