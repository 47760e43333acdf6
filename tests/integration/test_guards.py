"""Guards against the ways a careless or hostile hand could bend the rules (found in review)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import text

from states.base import Stage
from tests.support.world import AUDITOR, MEMBERS, ORG, World, at
from workflow import audit, service
from workflow.campaigns import change_campaign, create_campaign, extend_all
from workflow.errors import Conflict, Forbidden, InvalidInput, TransitionRefused
from workflow.repository import get_campaign_row


def test_publicity_cannot_be_backdated_nor_objected_to_before_it_opens(world: World) -> None:
    world.drive("B1", Stage.publicity)
    with pytest.raises(InvalidInput, match="公示期不能倒填"):
        world.do(service.publish, "B1", ORG, start=dt.date(2026, 1, 5), now=at(4, 21))
    world.do(service.publish, "B1", ORG, start=dt.date(2026, 4, 27), now=at(4, 21))
    with pytest.raises(TransitionRefused, match="公示期自 2026-04-27 开始"):
        world.do(service.lodge_objection, "B1", "sec3@test.cn", "提前的异议", now=at(4, 22))


def test_auditors_do_not_object_and_only_committee_members_adjust(world: World) -> None:
    world.drive("B1", Stage.committee_grading)
    world.do(service.compute_grade, "B1", MEMBERS[0], now=at(4, 20))
    with pytest.raises(Forbidden, match="党委委员"):
        world.do(service.adjust_grade, "B1", ORG, "advanced", "组织部想改等级", now=at(4, 20))
    world.finish("B1", Stage.committee_grading)
    world.do(service.publish, "B1", ORG, now=at(4, 21))
    with pytest.raises(Forbidden, match="审计人员只读"):
        world.do(service.lodge_objection, "B1", AUDITOR, "审计想提异议", now=at(4, 22))


def test_deadline_extensions_only_move_later_and_only_for_work_ahead(world: World) -> None:
    world.drive("B1", Stage.self_assessment)
    with pytest.raises(InvalidInput, match="须晚于"):
        world.do(service.extend_deadline, "B1", ORG, dt.date(2026, 4, 5), "提前截止", now=at(4, 1))
    with pytest.raises(TransitionRefused, match="已经完成"):
        world.do(service.extend_deadline, "B1", ORG, dt.date(2026, 5, 5), "延长调查", now=at(4, 1),
                 stage=Stage.survey)
    world.do(service.extend_deadline, "B1", ORG, dt.date(2026, 5, 20), "延长整改前的公示", now=at(4, 1),
             stage=Stage.publicity)
    assert world.case("B1").state["deadlines"] == {"publicity": "2026-05-20"}


def test_a_history_moved_to_another_branch_is_caught(world: World) -> None:
    world.drive("B1", Stage.committee_grading)
    with world.sessions() as s, s.begin():  # swap the two branches' identities: each now owns the other's chain
        s.execute(text("UPDATE branches SET code = 'TMP' WHERE code = 'B1'"))
        s.execute(text("UPDATE branches SET code = 'B1' WHERE code = 'B3'"))
        s.execute(text("UPDATE branches SET code = 'B3' WHERE code = 'TMP'"))
    with world.sessions() as s:
        problems = audit.verify(s).problems
    chains = [p for p in problems if not p.branch.startswith("branch:")]
    assert {(p.branch, p.seq) for p in chains} == {("B1", 1), ("B3", 1)}
    assert all("挪到了别的支部" in p.problem for p in chains)
    # the master-data log sees the same edit from the other side: both branches' rows no longer match
    assert {p.branch for p in problems if p.branch.startswith("branch:")} == {"branch:B1", "branch:B3"}


def test_a_malformed_event_is_reported_not_a_crash(world: World) -> None:
    cid = world.case("B2").row.id
    with world.sessions() as s, s.begin():
        body = s.execute(text("SELECT body FROM events WHERE case_id = :c AND seq = 1"), {"c": cid}).scalar_one()
        bad = body.replace('"at":"', '"at":"yesterday').split('"at":"yesterday')[0] + '"at":"yesterday"}'
        from workflow.audit import GENESIS, chain

        s.execute(text("UPDATE events SET body = :b, hash = :h WHERE case_id = :c AND seq = 1"),
                  {"b": bad, "h": chain(GENESIS, bad), "c": cid})
    with world.sessions() as s:
        report = audit.verify(s)
    assert report.cases == 4 and [(p.branch, p.problem) for p in report.problems] == [
        ("B2", "事件内容缺少或写错了 kind/actor/at")]


def test_two_campaign_changes_from_the_same_version_one_conflicts(world: World) -> None:
    s1, s2 = world.sessions(), world.sessions()
    try:
        row2 = get_campaign_row(s2)
        cfg = row2.config
        extend_all(s1, service.actor_for(s1, ORG), Stage.survey, dt.date(2026, 4, 3), "延长调查", now=at(3, 20))
        s1.commit()
        with pytest.raises(Conflict, match="同时修改"):
            change_campaign(s2, service.actor_for(s2, ORG), cfg.replace('publicity = "04-30"', 'publicity = "05-08"'),
                            "公示顺延", now=at(3, 20, 11))
        s2.rollback()
    finally:
        s1.close()
        s2.close()
    with world.sessions() as s:
        assert 'survey = 2026-04-03' in get_campaign_row(s).config
        assert audit.verify(s).ok


def test_extend_works_on_presets_with_comments_and_survey_asks_for_veto_facts(sessions) -> None:  # type: ignore[no-untyped-def]
    from states.base import Role
    from workflow.importer import OrgRow, import_rows
    from workflow.people import add_person

    with sessions() as s, s.begin():
        import_rows(s, [OrgRow(row=2, committee="矿大党委", committee_code="K", general_branch="总支", general_branch_code="G",
                               code="K1", name="教工第一党支部", branch_type="teacher", secretary_name="王", secretary_email="w@k.cn",
                               member_count=12, last_reelection=None, last_activity=None, secretary_violation=False)])
        add_person(s, "org@k.cn", "组织部", [Role.org_department], "K")
        add_person(s, "gb@k.cn", "总支书记", [Role.general_branch_secretary], "G")
        create_campaign(s, preset="cumtb-2012", year=2026, now=at(3, 1))
    with sessions() as s, s.begin():
        r = extend_all(s, service.actor_for(s, "org@k.cn"), Stage.survey, dt.date(2026, 4, 2), "延长", now=at(3, 2))
        assert r["stages"] == ["survey"]
    findings = World.survey_data()
    with sessions() as s, s.begin():
        service.record(s, "K1", service.actor_for(s, "gb@k.cn"), findings, now=at(3, 3))
    with sessions() as s, pytest.raises(TransitionRefused) as err:
        service.advance(s, "K1", service.actor_for(s, "gb@k.cn"), now=at(3, 3))
    assert {u.code for u in err.value.unmet} == {"survey.last_reelection", "survey.last_activity"}
    with sessions() as s, s.begin():
        service.record(s, "K1", service.actor_for(s, "gb@k.cn"),
                       {"last_reelection": "2024-05-01", "last_activity": "2026-02-20"}, now=at(3, 4))
        service.advance(s, "K1", service.actor_for(s, "gb@k.cn"), now=at(3, 4))
        assert service.load_case(s, "K1").stage is Stage.self_assessment


def test_demo_never_deletes_a_folder_it_did_not_make(tmp_path: Path) -> None:
    from workflow.demo import setup

    mine = tmp_path / "prod"
    mine.mkdir()
    (mine / "notes.txt").write_text("重要", encoding="utf-8")
    with pytest.raises(InvalidInput, match="不会删除"):
        setup(mine, year=2026, n_branches=4, seed=1)
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "重要"
    demo = tmp_path / "demo"
    setup(demo, year=2026, n_branches=4, seed=1)[0].dispose()
    setup(demo, year=2026, n_branches=4, seed=1)[0].dispose()  # its own folder is rebuilt
    assert (demo / "branchflow.db").exists()
