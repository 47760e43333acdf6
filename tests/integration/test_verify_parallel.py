"""`audit verify --workers N` (issue 13): the parallel verify over case-id ranges reports what the single one
does — same counts, same problems in the same order — on a clean database and after an insider's edits
falling in different ranges; forked workers and spawned ones alike. SQLite and PostgreSQL."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import text

from states.base import Stage
from tests.support.world import World
from workflow import audit


def _case_id(world: World, branch: str) -> int:
    return world.case(branch).row.id


def _tamper(world: World, sql: str, **params: object) -> None:
    with world.sessions() as s, s.begin():
        s.execute(text(sql), params)


def _single(world: World) -> audit.Report:
    with world.sessions() as s:
        return audit.verify(s)


def _parallel(world: World, url: str, workers: int, method: str) -> audit.Report:
    with world.sessions() as s:
        return audit.verify_parallel(s, url, workers=workers, start_method=method)


def _same(a: audit.Report, b: audit.Report) -> None:
    assert (a.cases, a.events) == (b.cases, b.events)
    assert a.problems == b.problems  # the same problems in the same order


@pytest.fixture
def moved(world: World) -> World:
    world.drive("B1", Stage.publicity)
    world.drive("B2", Stage.member_evaluation)
    world.drive("B3", Stage.member_evaluation)
    return world


def _range_of(ranges: list[tuple[int | None, int | None]], case_id: int) -> int:
    return next(i for i, (lo, hi) in enumerate(ranges) if (lo is None or lo <= case_id) and (hi is None or case_id < hi))


def test_ranges_cover_every_case_once_and_weigh_events(moved: World) -> None:
    with moved.sessions() as s:
        ranges = audit.case_ranges(s, 4)
        versions = dict(s.execute(text("SELECT id, version FROM cases")).tuples().all())
    assert ranges[0][0] is None and ranges[-1][1] is None  # open ends: no event left out, whatever its case id
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert len(ranges) >= 3
    with moved.sessions() as s:
        assert audit.case_ranges(s, 1) == [(None, None)]
    # B1 (moved furthest) weighs most: it is alone in its range
    b1 = _case_id(moved, "B1")
    assert [c for c in versions if _range_of(ranges, c) == _range_of(ranges, b1)] == [b1]


def test_parallel_verify_is_ok_on_a_clean_database(moved: World, db_url: str) -> None:
    one = _single(moved)
    assert one.ok and one.cases == 4
    for workers in (2, 3):
        two = _parallel(moved, db_url, workers, "fork")
        assert two.ok
        _same(one, two)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_parallel_verify_finds_the_same_problems_in_every_range(moved: World, db_url: str, method: str) -> None:
    ids = {b: _case_id(moved, b) for b in ("B1", "B2", "B3", "B4")}
    # in B1, an event's body edited; in B2, a stored hash; in B3, an event deleted; in B4, the projection
    _tamper(moved, "UPDATE events SET body = replace(body, '\"actor\":', '\"actor\": ') WHERE case_id = :c AND seq = 3",
            c=ids["B1"])
    _tamper(moved, "UPDATE events SET hash = :h WHERE case_id = :c AND seq = 2", h="f" * 64, c=ids["B2"])
    _tamper(moved, "DELETE FROM events WHERE case_id = :c AND seq = 4", c=ids["B3"])
    _tamper(moved, "UPDATE cases SET stage = 'rectification' WHERE id = :c", c=ids["B4"])
    with moved.sessions() as s:
        ranges = audit.case_ranges(s, 3)
    assert len({_range_of(ranges, c) for c in ids.values()}) >= 3  # the edits fall in different ranges
    one = _single(moved)
    assert {p.branch for p in one.problems} >= {"B1", "B2", "B3", "B4"}
    for workers in ((2, 3, 8) if method == "fork" else (3,)):  # a spawned worker imports the project first
        _same(one, _parallel(moved, db_url, workers, method))
    first = {p.branch: p for p in reversed(one.problems)}
    assert first["B1"].seq == 3 and first["B1"].problem == "哈希不符：事件内容被修改"
    assert first["B2"].seq == 2
    assert first["B3"].seq == 5 and "序号应为 4" in first["B3"].problem
    assert first["B4"].seq is None and "当前状态与事件重放结果不一致" in first["B4"].problem


def test_a_worker_that_fails_is_an_error_not_a_pass(moved: World) -> None:
    with moved.sessions() as s, pytest.raises(RuntimeError, match="工作进程出错"):  # its database cannot be opened
        audit.verify_parallel(s, "nosuchdriver://nowhere/none", workers=2, start_method="fork")


def test_fork_only_outside_a_write_transaction_on_sqlite(moved: World, db_url: str) -> None:
    with moved.sessions() as s:
        assert audit.parallel_start_method(s) == "fork"  # one thread, POSIX (the suite runs on Linux)
        s.execute(text("UPDATE cases SET updated_at = updated_at WHERE id = :c"), {"c": _case_id(moved, "B1")})
        want = "spawn" if db_url.startswith("sqlite") else "fork"  # a child's SQLite would believe it held the lock
        assert audit.parallel_start_method(s) == want
        s.rollback()
