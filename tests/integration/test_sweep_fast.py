"""The sweep proportional to what is due: keyset pages that seek, and a case that moves on cancels its
queued reminders in the save that moves it (no scan of every pending delivery) — SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from notifications.models import CANCELLED, PENDING, DeliveryRow, OutboxRow
from scheduler.sweep import sweep
from tests.support.world import GB_SEC, World, at
from workflow import audit, service


def _deliveries(world: World) -> dict[str, str]:
    with world.sessions() as s:
        return dict(s.execute(select(OutboxRow.branch_code, DeliveryRow.status)
                              .join(OutboxRow, OutboxRow.id == DeliveryRow.outbox_id)
                              .where(OutboxRow.kind == "reminder")).tuples().all())


def test_pages_of_one_case_find_every_due_case_once(world: World) -> None:
    with world.sessions() as s, s.begin():
        sweep(s, now=at(3, 23))
    with world.sessions() as s, s.begin():
        stats = sweep(s, now=at(3, 24, 10), page=1)  # a page per case: the keyset moves (deadline, id)
    assert stats.reminders == 4 and stats.examined == 4
    with world.sessions() as s:
        keys = list(s.scalars(select(OutboxRow.dedup_key).where(OutboxRow.kind == "reminder")
                              .order_by(OutboxRow.dedup_key)))
        assert keys == [f"{world.campaign}/B{i}/survey/2026-03-31/before-7" for i in range(1, 5)]
        assert audit.verify(s).ok


def test_a_branch_that_moves_on_cancels_its_queued_reminders_at_once(world: World) -> None:
    with world.sessions() as s, s.begin():
        sweep(s, now=at(3, 23))
    with world.sessions() as s, s.begin():
        sweep(s, now=at(3, 24, 10))
    assert set(_deliveries(world).values()) == {PENDING}
    world.do(service.record, "B1", GB_SEC, world.survey_data(), now=at(3, 24, 11))
    assert _deliveries(world)["B1"] == PENDING  # recording alone does not leave the stage
    world.do(service.advance, "B1", GB_SEC, now=at(3, 24, 12))
    got = _deliveries(world)
    assert got["B1"] == CANCELLED and {got[b] for b in ("B2", "B3", "B4")} == {PENDING}
    with world.sessions() as s:
        assert s.scalar(select(OutboxRow.status).where(OutboxRow.branch_code == "B1",
                                                       OutboxRow.kind == "reminder")) == CANCELLED
        assert s.scalar(select(func.count()).select_from(OutboxRow).where(OutboxRow.status == CANCELLED)) == 1


def test_the_candidate_query_seeks_the_index_on_sqlite(world: World) -> None:
    with world.sessions() as s:
        if s.bind.dialect.name != "sqlite":  # type: ignore[union-attr]
            pytest.skip("the plan text checked here is SQLite's")
        plan = " ".join(r[-1] for r in s.execute(text(
            "EXPLAIN QUERY PLAN SELECT id FROM cases WHERE campaign_id = 1 AND deadline <= '2026-04-30' "
            "AND (deadline, id) > ('2026-03-01', 5) ORDER BY deadline, id LIMIT 10")))
    # a range with a lower bound (the old OR form had only the upper one, so every page re-walked the window)
    assert "INDEX ix_cases_campaign_deadline" in plan and "deadline>?" in plan and "SCAN" not in plan, plan
