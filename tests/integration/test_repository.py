"""The repository's hot path (DBAPI cursor, one round trip, orjson state) keeps every guarantee and writes
exactly what SQLAlchemy would — SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select

from states.base import Stage
from tests.support.world import GB_SEC, ORG, World, at
from workflow import audit, service, views
from workflow.audit import GENESIS, canonical, chain
from workflow.models import CaseRow, EventRow
from workflow.repository import load_case


def test_the_hashed_canonical_bytes_are_unchanged() -> None:
    # the chain of every stored event depends on these bytes: sorted keys, no spaces, UTF-8, floats as repr
    event = {"kind": "recorded", "at": "2026-03-20T02:00:00.000000Z", "actor": "gb1@test.cn", "stage": "survey",
             "payload": {"stage": "survey", "data": {"分数": 4.0, "x": [0.9, 85, 1e-05, 1e16], "t": "“引号”\n"}}}
    body = canonical(event)
    assert body == ('{"actor":"gb1@test.cn","at":"2026-03-20T02:00:00.000000Z","kind":"recorded","payload":'
                    '{"data":{"t":"“引号”\\n","x":[0.9,85,1e-05,1e+16],"分数":4.0},"stage":"survey"},"stage":"survey"}')
    assert chain(GENESIS, body) == "b42f15d923c07658ad497bc92e03163516bea9d9f01099d4e46867a6e9566163"


def test_rows_written_by_the_hot_path_read_back_through_the_orm_as_written(world: World) -> None:
    world.do(service.record, "B1", GB_SEC, world.survey_data(), now=at(3, 20, 10, 30))
    moved = world.do(service.advance, "B1", GB_SEC, now=at(3, 21, 9, 15))
    world.do(service.extend_deadline, "B1", ORG, dt.date(2026, 4, 30), "材料补交", now=at(3, 22))
    with world.sessions() as s:
        row = s.scalars(select(CaseRow).where(CaseRow.id == moved.row.id)).one()
        assert row.stage == Stage.self_assessment.value and row.version == 4
        assert row.deadline == dt.date(2026, 4, 30)
        assert row.updated_at == at(3, 22).astimezone(dt.UTC)
        events = list(s.scalars(select(EventRow).where(EventRow.case_id == row.id).order_by(EventRow.seq)))
        assert [e.kind for e in events] == ["opened", "recorded", "moved", "deadline_extended"]
        assert events[2].at == at(3, 21, 9, 15).astimezone(dt.UTC)
        assert json.loads(events[2].body)["payload"] == {"trigger": "advance", "from": "survey", "to": "self_assessment"}
        # the ORM's JSON state and the hot path's decoded state are the same document
        case = load_case(s, "B1")
        assert case.state == row.state and case.version == 4 and case.last_hash == events[-1].hash
        assert case.last_at == events[-1].at and case.row.deadline == dt.date(2026, 4, 30)
        assert case.branch.secretary_email == "sec1@test.cn" and case.general_branch_code == "GB1"
        assert audit.verify(s).ok


def test_a_second_save_from_the_same_load_is_refused_by_the_version_check(world: World) -> None:
    world.do(service.record, "B1", GB_SEC, world.survey_data(), now=at(3, 20))
    with world.sessions() as s, s.begin():
        actor = service.actor_for(s, GB_SEC)
        assert service.actor_for(s, GB_SEC.upper()) is actor  # one query per person per session
        case = load_case(s, "B1")
        service._move(s, case, actor, "advance", at(3, 21))
        service._commit_point(s, case, at(3, 21))
    with world.sessions() as s:
        stale = load_case(s, "B1")
    with world.sessions() as s, s.begin():
        stale.row.version -= 1  # as if loaded before the move above
        stale.pending = [{}]
        stale.rows = [{"case_id": stale.row.id, "seq": 3, "kind": "deadline_extended", "at": at(3, 22),
                       "actor": ORG, "body": "{}", "prev_hash": GENESIS, "hash": GENESIS}]
        with pytest.raises(service.LostRace) as lost:
            service._commit_point(s, stale, at(3, 22))
        assert lost.value.exit_code == 6
        s.rollback()
    assert world.case("B1").version == 3


def test_listing_streams_the_same_rows_as_the_list(world: World) -> None:
    world.do(service.record, "B1", GB_SEC, world.survey_data(), now=at(3, 20))
    world.do(service.advance, "B1", GB_SEC, now=at(3, 21))
    with world.sessions() as s:
        rows = views.iter_cases(s, now=at(4, 2))
        assert not isinstance(rows, list)  # a generator: the CLI writes each row as it is read
        streamed = list(rows)
        assert streamed == views.list_cases(s, now=at(4, 2))
    assert [r["code"] for r in streamed] == ["B1", "B2", "B3", "B4"]
    assert streamed[0]["stage"] == "self_assessment" and streamed[1]["overdue"] is True


def test_a_branch_edited_between_two_loads_is_read_anew(world: World) -> None:
    # the load keeps recent branches' records; a change to the row (a rename, a new member count, a new
    # secretary, a move to another general branch) must show on the next load, in this process
    from sqlalchemy import text

    with world.sessions() as s:
        first = load_case(s, "B1")
        again = load_case(s, "B1")
        assert again.branch is first.branch and again.facts is first.facts  # reused while unchanged
    with world.sessions() as s, s.begin():
        s.execute(text("UPDATE branches SET name = '更名后的支部', member_count = 3, secretary_email = 'new@test.cn' "
                       "WHERE code = 'B1'"))
    with world.sessions() as s:
        case = load_case(s, "B1")
        assert case.branch.name == "更名后的支部" and case.branch.secretary_email == "new@test.cn"
        assert case.facts.name == "更名后的支部" and case.facts.member_count == 3
        assert case.branch is not first.branch
