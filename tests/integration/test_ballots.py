"""Online ballots on SQLite and PostgreSQL: one code one vote, refusals, the closing record and its
commitment, the recount from the export, the veto from real ballots, and a dump that joins nothing."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess

import pytest
from sqlalchemy import text

from states.base import Stage
from tests.support.world import GB_SEC, MEMBERS, ORG, World, at
from workflow import audit, ballots, service, views
from workflow.errors import Forbidden, InvalidInput, TransitionRefused

CLOSES = at(4, 15, 18)


def _open(world: World, branch: str = "B1", *, codes: int = 10) -> tuple[int, list[str]]:
    world.drive(branch, Stage.member_evaluation)
    with world.sessions() as s, s.begin():
        b = ballots.open_ballot(s, branch, service.actor_for(s, world.gb_sec(branch)), closes_at=CLOSES, now=at(4, 10))
        issued = ballots.issue_codes(s, b.id, service.actor_for(s, world.gb_sec(branch)), codes, now=at(4, 10))
        return b.id, [i.code for i in issued]


def _vote(world: World, code: str, rating: float, members: bool, secretary: bool, *, now: dt.datetime | None = None,
          comment: str = "") -> int:
    with world.sessions() as s, s.begin():
        return ballots.cast_vote(s, code, {"rating": rating, "satisfied_with_members": members,
                                           "satisfied_with_secretary": secretary, "comment": comment},
                                 now=now or at(4, 11), client="10.0.0.1")


def _scores(world: World, ballot_id: int) -> list[float]:
    with world.sessions() as s:
        return [c["score"] for c in ballots.get_ballot(s, ballot_id).form["rating"]["choices"]]


def test_codes_are_long_grouped_unambiguous_and_stored_only_as_hashes(world: World) -> None:
    _bid, codes = _open(world, codes=5)
    assert len(set(codes)) == 5
    for c in codes:
        assert len(c) == 20 and not set(c) & set("01OI")
        assert ballots.CODE_BITS >= 80
        g = ballots.grouped(c)
        assert g.count("-") == 3 and ballots.normalize(g.lower().replace("-", " ")) == c
    with world.sessions() as s:
        stored = [r[0] for r in s.execute(text("SELECT code_hash FROM ballot_voters"))]
        dump = " ".join(str(v) for r in s.execute(text("SELECT * FROM ballot_voters")) for v in r)
    assert sorted(stored) == sorted(ballots.code_hash(c) for c in codes)
    assert not any(c in dump for c in codes)


def test_one_code_one_vote_and_clear_refusals(world: World) -> None:
    bid, codes = _open(world, codes=3)
    top = _scores(world, bid)[0]
    _vote(world, ballots.grouped(codes[0]).lower(), top, True, True)
    with pytest.raises(ballots.BallotRefused, match="已经投过票"):
        _vote(world, codes[0], top, True, True)
    with pytest.raises(ballots.BallotRefused, match="测评码无效"):
        _vote(world, "2" * 20, top, True, True)
    with pytest.raises(ballots.BallotRefused, match="格式不正确"):
        _vote(world, "abc", top, True, True)
    with pytest.raises(InvalidInput, match="总体评价"):
        _vote(world, codes[1], 1.0, True, True)
    with pytest.raises(ballots.BallotRefused, match="截止"):
        _vote(world, codes[1], top, True, True, now=CLOSES + dt.timedelta(minutes=1))
    with world.sessions() as s:
        p = ballots.participation(s, bid)
    assert (p.eligible, p.voted) == (3, 1)  # the refused attempts spent nothing


def test_only_the_general_branch_or_organisation_department_opens_in_the_stage(world: World) -> None:
    world.drive("B1", Stage.self_assessment)
    with world.sessions() as s, pytest.raises(TransitionRefused, match="党员群众测评"):
        ballots.open_ballot(s, "B1", service.actor_for(s, GB_SEC), closes_at=CLOSES, now=at(4, 1))
    world.drive("B1", Stage.member_evaluation)
    with world.sessions() as s, pytest.raises(Forbidden):
        ballots.open_ballot(s, "B1", service.actor_for(s, MEMBERS[0]), closes_at=CLOSES, now=at(4, 10))
    with world.sessions() as s, pytest.raises(Forbidden):
        ballots.open_ballot(s, "B1", service.actor_for(s, "sec1@test.cn"), closes_at=CLOSES, now=at(4, 10))
    with world.sessions() as s, s.begin():
        ballots.open_ballot(s, "B1", service.actor_for(s, ORG), closes_at=CLOSES, now=at(4, 10))


def test_attempts_are_rate_limited_per_client_address(world: World) -> None:
    bid, codes = _open(world, codes=1)
    for _ in range(ballots.MAX_FAILURES):
        with world.sessions() as s, s.begin():
            ballots.note_failure(s, "10.9.9.9", now=at(4, 11))
    with world.sessions() as s, pytest.raises(ballots.Throttled, match="次数过多"):
        ballots.cast_vote(s, codes[0], {}, now=at(4, 11, 10, 5), client="10.9.9.9")
    top = _scores(world, bid)[0]
    with world.sessions() as s, s.begin():  # after the window, and from another address, it works
        ballots.cast_vote(s, codes[0], {"rating": top, "satisfied_with_members": "yes",
                                        "satisfied_with_secretary": "no"}, now=at(4, 11, 10, 30), client="10.9.9.9")


def test_closing_writes_one_event_with_the_commitment_and_the_export_recounts(world: World) -> None:
    bid, codes = _open(world, codes=8)
    top, mid = _scores(world, bid)[:2]
    votes = [(top, True, True), (top, True, False), (mid, False, True), (mid, True, True), (top, True, True)]
    for code, v in zip(codes, votes):
        _vote(world, code, *v, comment="很好" if v[0] == top else "=SUM(A1)")
    before = world.case("B1").version
    with world.sessions() as s, s.begin():
        ballots.close_ballot(s, bid, service.actor_for(s, GB_SEC), now=at(4, 12))
    case = world.case("B1")
    assert case.version == before + 1  # ONE event
    rec = case.state["records"]["member_evaluation"]
    assert rec["source"] == "online"
    assert rec["tally"] == {"ballots": 5, "rating": round((3 * top + 2 * mid) / 5, 4),
                            "satisfaction_members": 0.8, "satisfaction_secretary": 0.8}
    assert rec["online"]["eligible"] == 8 and rec["online"]["participation"] == round(5 / 8, 4)
    with world.sessions() as s:
        actor = service.actor_for(s, GB_SEC)
        exported = ballots.export_of(s, bid, actor, fmt="json")
        as_csv = ballots.export_of(s, bid, actor, fmt="csv")
        events = list(audit.events_of(s, case.row.id))
        assert audit.verify(s).ok
    last = events[-1]
    assert last["kind"] == "recorded" and last["payload"]["data"]["online"]["commitment"] == rec["online"]["commitment"]
    assert views.describe(last).startswith(f"填报“党员群众测评”：网上测评（承诺值 {rec['online']['commitment'][:12]}…），5 张")
    for body in (exported, as_csv):
        rc = ballots.recount(body, commitment=rec["online"]["commitment"])
        assert rc.matches and rc.tally == rec["tally"]
    assert "'=SUM(A1)" in as_csv  # inert in a spreadsheet, and the recount still matches
    tampered = json.loads(exported)
    tampered["ballots"][0]["rating"] = 0.0
    assert ballots.recount(json.dumps(tampered)).matches is False
    with world.sessions() as s, pytest.raises(ballots.BallotRefused, match="已经结束"):
        ballots.cast_vote(s, codes[6], {"rating": top, "satisfied_with_members": True,
                                        "satisfied_with_secretary": True}, now=at(4, 12, 1))


def test_tick_closes_at_its_time_and_the_veto_fires_from_real_ballots(sessions) -> None:  # type: ignore[no-untyped-def]
    from notifications.ballots import tick

    world = World(sessions, preset="cumtb-2012")  # seed 004: veto below 50 %
    bid, codes = _open(world, codes=10)
    top = _scores(world, bid)[0]
    for i, code in enumerate(codes[:8]):
        _vote(world, code, top, i < 3, True)  # 3 of 8 satisfied with the members' role: 37.5 % < 50 %
    with world.sessions() as s, s.begin():
        assert tick(s, now=CLOSES - dt.timedelta(minutes=1)) == []
    with world.sessions() as s, s.begin():
        assert tick(s, now=CLOSES) == [bid]
    rec = world.case("B1").state["records"]["member_evaluation"]
    assert rec["tally"]["satisfaction_members"] == 0.375 and rec["online"]["closed_by"] == "system"
    world.do(service.record, "B1", GB_SEC, {"peer": 90, "superior": 90}, now=at(4, 16))  # the other sources
    assert world.case("B1").state["records"]["member_evaluation"]["source"] == "online"  # still the ballot's tally
    world.do(service.advance, "B1", GB_SEC, now=at(4, 16))
    world.do(service.compute_grade, "B1", MEMBERS[0], now=at(4, 20))
    grade = world.case("B1").state["grade"]
    assert [v["rule"] for v in grade["veto"]] == ["satisfaction_members"]
    assert grade["grade"] == world.case("B1").campaign.grading.scale.lowest.code
    assert grade["scale_grade"] != grade["grade"]  # the score alone would have given a better grade


def test_a_typed_tally_stays_possible_and_is_marked_typed(world: World) -> None:
    world.drive("B1", Stage.member_evaluation)
    world.do(service.record, "B1", GB_SEC, World.eval_data(), now=at(4, 12))
    rec = world.case("B1").state["records"]["member_evaluation"]
    assert rec.get("source", "typed") == "typed" and "online" not in rec
    with world.sessions() as s:
        last = list(audit.events_of(s, world.case("B1").row.id))[-1]
    assert "纸质选票录入，10 张" in views.describe(last)
    with pytest.raises(InvalidInput, match="只能由关闭网上测评"):
        world.do(service.record, "B1", GB_SEC, {**World.eval_data(), "source": "online",
                                                "online": {"ballot_id": 1, "eligible": 1, "participation": 1,
                                                           "commitment": "0" * 64, "export_sha256": "0" * 64}},
                 now=at(4, 12))


def test_no_ballot_can_be_joined_to_a_code_or_voter_in_a_dump(world: World, db_url: str,
                                                               request: pytest.FixtureRequest) -> None:
    bid, codes = _open(world, codes=12)
    top, mid, low = _scores(world, bid)[:3]
    for i, code in enumerate(codes[:9]):
        _vote(world, code, [top, mid, low][i % 3], i % 2 == 0, True, comment=f"意见{i}")
    with world.sessions() as s, s.begin():
        ballots.close_ballot(s, bid, service.actor_for(s, ORG), now=at(4, 12))
    with world.sessions() as s:
        voter_cols = {r[0] for r in s.execute(text(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'ballot_voters'"))} \
            if db_url.startswith("postgresql") else {r[1] for r in s.execute(text("PRAGMA table_info(ballot_voters)"))}
        resp_cols = {r[0] for r in s.execute(text(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'ballot_responses'"))} \
            if db_url.startswith("postgresql") else {r[1] for r in s.execute(text("PRAGMA table_info(ballot_responses)"))}
        voter_ids = {r[0] for r in s.execute(text("SELECT id FROM ballot_voters"))}
        resp_ids = {r[0] for r in s.execute(text("SELECT id FROM ballot_responses"))}
    assert voter_cols & resp_cols == {"id", "ballot_id"}  # the only shared column names …
    assert not voter_ids & resp_ids  # … and no id of one appears in the other
    assert not {"used_at", "voted_at", "at", "created_at"} & (voter_cols | resp_cols)
    if db_url.startswith("sqlite"):
        con = sqlite3.connect(db_url.removeprefix("sqlite:///"))
        dump = list(con.iterdump())
        con.close()
        inserts = [ln for ln in dump if ln.startswith('INSERT INTO "ballot_responses"')]
        assert len(inserts) == 9
        ids = [ln.split("VALUES('", 1)[1].split("'", 1)[0] for ln in inserts]
        assert ids == sorted(ids)  # stored in random-key order, not in voting order
        assert [f"意见{i}" for i in range(9)] != [ln.split("'")[-2] for ln in inserts]
        text_dump = "\n".join(dump)
        assert not any(c in text_dump for c in codes)
        assert "WITHOUT ROWID" in text_dump
    else:  # pg_dump lists heap order: closing rewrote the rows, so it is not the voting order
        cluster = request.getfixturevalue("pg_cluster")
        dbname = db_url.rsplit("/", 1)[1]
        out = subprocess.run([str(cluster.bindir / "pg_dump"), "-h", "127.0.0.1", "-p", str(cluster.port), "-U",
                              "postgres", "--data-only", "-t", "ballot_responses", "-t", "ballot_voters", dbname],
                             capture_output=True, text=True, check=True, timeout=60).stdout
        block = out.split("COPY public.ballot_responses", 1)[1].split("\\.", 1)[0]
        comments = [ln.split("\t")[-1] for ln in block.splitlines()[1:] if ln.strip()]
        assert sorted(comments) == sorted(f"意见{i}" for i in range(9))
        assert comments != [f"意见{i}" for i in range(9)]
        assert not any(c in out for c in codes)
