"""Concurrent moves, tampering caught by `audit verify`, and replay at a past time — SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from states.base import Stage
from tests.support.world import GB_SEC, World, at
from workflow import audit, service, views
from workflow.errors import Conflict, TransitionRefused
from workflow.repository import append


def test_two_moves_from_the_same_version_one_wins_one_conflicts(world: World) -> None:
    world.do(service.record, "B1", GB_SEC, world.survey_data(), now=at(3, 20))
    s1, s2 = world.sessions(), world.sessions()
    try:
        a1, a2 = service.actor_for(s1, GB_SEC), service.actor_for(s2, GB_SEC)
        service.advance(s1, "B1", a1, now=at(3, 21))
        # s2 loaded nothing yet: load now, before s1 commits, so both start from the same version
        with pytest.raises(Conflict):
            case2 = service.load_case(s2, "B1")
            assert case2.version == 2
            s1.commit()
            service.record(s2, "B1", a2, world.survey_data(), now=at(3, 21), expected_version=case2.version)
        s2.rollback()
    finally:
        s1.close()
        s2.close()
    case = world.case("B1")
    assert case.stage is Stage.self_assessment and case.version == 3
    with world.sessions() as s:
        assert audit.verify(s).ok


def test_stale_projection_write_is_a_conflict_not_an_overwrite(world: World) -> None:
    """The last line of defence: a write built on a version someone else has moved past fails at flush."""
    world.do(service.record, "B1", GB_SEC, world.survey_data(), now=at(3, 20))
    s1, s2 = world.sessions(), world.sessions()
    try:
        stale = service.load_case(s2, "B1")
        service.advance(s1, "B1", service.actor_for(s1, GB_SEC), now=at(3, 21))
        s1.commit()
        append(s2, stale, kind="deadline_extended", actor="org@test.cn", at=at(3, 22),
               payload={"stage": "survey", "deadline": "2026-04-01", "reason": "测试并发"})
        with pytest.raises(Conflict, match="同时修改"):
            service._commit_point(s2, stale, at(3, 22))
        s2.rollback()
    finally:
        s1.close()
        s2.close()
    case = world.case("B1")
    assert case.stage is Stage.self_assessment and "survey" not in case.state["deadlines"]
    with world.sessions() as s:
        assert audit.verify(s).ok


def test_concurrent_advances_in_threads_exactly_one_wins(world: World) -> None:
    world.do(service.record, "B1", GB_SEC, world.survey_data(), now=at(3, 20))
    version = world.case("B1").version
    barrier = threading.Barrier(4)
    results: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        try:
            with world.sessions() as s, s.begin():
                service.advance(s, "B1", service.actor_for(s, GB_SEC), now=at(3, 21), expected_version=version)
            out = "won"
        except Conflict:
            out = "conflict"
        except TransitionRefused as exc:  # pragma: no cover - would mean a lost update slipped through
            out = f"refused: {exc}"
        with lock:
            results.append(out)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict", "conflict", "conflict", "won"]
    case = world.case("B1")
    assert case.stage is Stage.self_assessment and case.version == version + 1
    with world.sessions() as s:
        assert audit.verify(s).ok


def _case_id(world: World, branch: str) -> int:
    return world.case(branch).row.id


def _tamper(world: World, sql: str, **params: object) -> None:
    with world.sessions() as s, s.begin():
        s.execute(text(sql), params)


def _verify(world: World) -> audit.Report:
    with world.sessions() as s:
        return audit.verify(s)


@pytest.fixture
def graded(world: World) -> World:
    world.drive("B1", Stage.publicity)
    world.drive("B2", Stage.member_evaluation)
    assert _verify(world).ok
    return world


def test_edited_event_is_named(graded: World) -> None:
    cid = _case_id(graded, "B1")
    _tamper(graded, "UPDATE events SET body = replace(body, :old, :new) WHERE case_id = :c AND kind = 'graded'",
            old='"total":80', new='"total":95', c=cid)
    report = _verify(graded)
    assert not report.ok
    first = report.problems[0]
    assert (first.branch, first.problem) == ("B1", "哈希不符：事件内容被修改")
    assert first.seq == 8  # opened, 2× survey, 2× self, 2× evaluation, then graded
    assert all(p.branch == "B1" for p in report.problems)


def test_deleted_event_is_named(graded: World) -> None:
    cid = _case_id(graded, "B1")
    _tamper(graded, "DELETE FROM events WHERE case_id = :c AND seq = 5", c=cid)
    first = _verify(graded).problems[0]
    assert first.seq == 6 and "序号应为 5" in first.problem


def test_reordered_events_are_named(graded: World) -> None:
    cid = _case_id(graded, "B2")
    _tamper(graded, "UPDATE events SET seq = -1 WHERE case_id = :c AND seq = 3", c=cid)
    _tamper(graded, "UPDATE events SET seq = 3 WHERE case_id = :c AND seq = 4", c=cid)
    _tamper(graded, "UPDATE events SET seq = 4 WHERE case_id = :c AND seq = -1", c=cid)
    first = _verify(graded).problems[0]
    assert (first.branch, first.seq) == ("B2", 3) and "顺序" in first.problem


def test_rewritten_chain_still_disagrees_with_indexed_columns_or_projection(graded: World) -> None:
    # Someone edits the current-state table directly: the projection no longer equals the replay.
    cid = _case_id(graded, "B1")
    _tamper(graded, "UPDATE cases SET stage = 'rectification' WHERE id = :c", c=cid)
    first = _verify(graded).problems[0]
    assert first.seq is None and "当前状态与事件重放结果不一致" in first.problem and "stage=" in first.problem


def test_edited_actor_column_is_caught(graded: World) -> None:
    cid = _case_id(graded, "B1")
    _tamper(graded, "UPDATE events SET actor = 'someone@else.cn' WHERE case_id = :c AND seq = 2", c=cid)
    first = _verify(graded).problems[0]
    assert first.seq == 2 and "索引列" in first.problem


def test_history_at_a_past_time_replays_that_state(world: World) -> None:
    world.drive("B1", Stage.rectification)
    with world.sessions() as s:
        then = views.history(s, "B1", at=at(4, 10))
        now = views.history(s, "B1")
    assert then["state"]["stage"] == "member_evaluation"
    assert then["state"]["grade"] is None
    assert now["state"]["stage"] == "rectification" and now["state"]["final_grade"] == "average"
    assert [e["seq"] for e in then["events"]] == list(range(1, len(then["events"]) + 1))
    assert now["state"] == world.case("B1").state  # replay equals the projection
