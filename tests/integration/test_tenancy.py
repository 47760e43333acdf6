"""Committees as tenants in a tree (issue 12, points 1–2), on SQLite and PostgreSQL.

The tree: parent committee P over C1 (the world's: GB1 B1 B2, GB2 B3 B4, campaign haitang-2026) and C2
(GB3: B5, B6, campaign henan-2026 — another preset in the same year); P's organisation department and a
P-scoped auditor read both children; C1's and C2's people read only their own; nobody above changes a
child's records; overdue branches are reported up to P after ``[escalation] parent_after_days``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from notifications.models import DeliveryRow, OutboxRow
from scheduler.sweep import sweep
from states.base import Role, Stage
from tests.support.dump import dump
from tests.support.world import ORG, World, at
from workflow import rollup, service, tenancy, views
from workflow.campaigns import change_campaign, create_campaign, extend_all
from workflow.errors import Forbidden, InvalidInput, NotFound
from workflow.importer import OrgRow, import_rows
from workflow.models import CampaignRow, CaseRow, Committee
from workflow.people import add_person
from workflow.repository import get_campaign_row, load_case

PARENT_ORG, PARENT_AUDITOR, ORG2, AUDITOR_C2 = "orgp@test.cn", "auditp@test.cn", "org2@test.cn", "audit2@test.cn"


def _row(n: int, code: str, name: str) -> OrgRow:
    return OrgRow(row=n, committee="外校党委", committee_code="C2", general_branch="外校党总支", general_branch_code="GB3",
                  code=code, name=name, branch_type="teacher", secretary_name=f"书记{code}",
                  secretary_email=f"{code.lower()}@test.cn", member_count=8, last_reelection=dt.date(2025, 1, 1),
                  last_activity=dt.date(2026, 2, 1), secretary_violation=False)


@pytest.fixture
def tree(world: World) -> World:
    with world.sessions() as s, s.begin():
        tenancy.add_committee(s, "P", "上级党委")
        tenancy.move_committee(s, "C1", "P")
        tenancy.add_committee(s, "C2", "外校党委", parent="P")
        import_rows(s, [_row(2, "B5", "外校第一党支部"), _row(3, "B6", "外校第二党支部")])
        add_person(s, ORG2, "外校组织部", [Role.org_department], "C2")
        add_person(s, PARENT_ORG, "上级组织部", [Role.org_department], "P")
        add_person(s, PARENT_AUDITOR, "上级审计", [Role.auditor], "P")
        add_person(s, AUDITOR_C2, "外校审计", [Role.auditor], "C2")
        row, opened = create_campaign(s, preset="henan-2012", year=2026, committee="C2", now=at(3, 2))
        assert (row.code, opened) == ("henan-2026", 2)
    return world


def actor(s: Session, email: str) -> service.Actor:
    return service.actor_for(s, email)


def test_two_committees_run_different_presets_in_one_year(tree: World) -> None:
    with tree.sessions() as s:
        assert load_case(s, "B1").campaign.code == "haitang-2026"  # the latest of the branch's own committee
        assert load_case(s, "B5").campaign.code == "henan-2026"
        assert load_case(s, "B5").campaign.preset == "henan-2012" != load_case(s, "B1").campaign.preset
        counts = dict(s.execute(select(CampaignRow.code, CaseRow.id).join(CaseRow, CaseRow.campaign_id == CampaignRow.id)
                                ).tuples().all())
        assert set(counts) == {"haitang-2026", "henan-2026"}
        with pytest.raises(NotFound):  # a committee's campaign covers its own branches only
            load_case(s, "B5", "haitang-2026")
    with tree.sessions() as s, s.begin():
        with pytest.raises(InvalidInput, match="请用 --committee 指定"):
            create_campaign(s, preset="cumtb-2012", year=2026, now=at(3, 3))
        with pytest.raises(InvalidInput, match="党委 C2 已有 2026 年的活动 henan-2026"):
            create_campaign(s, preset="cumtb-2012", year=2026, committee="C2", now=at(3, 3))
        with pytest.raises(InvalidInput, match="已被党委 C1 使用.*--code"):
            create_campaign(s, preset="haitang-2022", year=2026, committee="P", now=at(3, 3))


def test_the_latest_campaign_is_ambiguous_without_a_committee(tree: World) -> None:
    with tree.sessions() as s:
        for call in (lambda: get_campaign_row(s), lambda: views.campaign_stats(s),
                     lambda: views.list_cases(s, now=at(3, 5))):
            with pytest.raises(InvalidInput, match="--campaign"):
                call()
        # with a person, the latest of their own committee
        assert tenancy.default_campaign(s, actor(s, ORG2)).code == "henan-2026"
        assert tenancy.default_campaign(s, actor(s, ORG)).code == "haitang-2026"


def _codes(rows: list[dict[str, Any]]) -> list[str]:
    return [r["code"] for r in rows]


def test_reading_scopes_both_ways(tree: World) -> None:
    from service.auth import require_see, sees_everything, visible_cases

    with tree.sessions() as s:
        now = at(3, 5)
        org, org2, parent, aud_p, aud2 = (actor(s, e) for e in (ORG, ORG2, PARENT_ORG, PARENT_AUDITOR, AUDITOR_C2))
        assert _codes(visible_cases(s, org, now=now)) == ["B1", "B2", "B3", "B4"]
        assert _codes(visible_cases(s, org2, now=now)) == ["B5", "B6"]
        for who in (parent, aud_p):  # the parent reads both children's lists
            assert _codes(visible_cases(s, who, now=now, campaign="henan-2026")) == ["B5", "B6"]
            assert _codes(visible_cases(s, who, now=now, campaign="haitang-2026")) == ["B1", "B2", "B3", "B4"]
            require_see(s, who, "B1")
            require_see(s, who, "B5")
            assert sees_everything(s, who)  # P's subtree holds every committee with branches
        assert _codes(visible_cases(s, aud2, now=now)) == ["B5", "B6"]
        # siblings: each other's campaign and branch answer as unknown ones
        for who, campaign, branch in ((org, "henan-2026", "B5"), (org2, "haitang-2026", "B1"),
                                      (aud2, "haitang-2026", "B1")):
            with pytest.raises(NotFound) as real:
                visible_cases(s, who, now=now, campaign=campaign)
            with pytest.raises(NotFound) as fake:
                visible_cases(s, who, now=now, campaign="nope-2026")
            assert str(real.value).replace(campaign, "X") == str(fake.value).replace("nope-2026", "X")
            with pytest.raises(NotFound, match="不存在或无权访问"):
                require_see(s, who, branch)
        assert not sees_everything(s, org) and not sees_everything(s, aud2)
        assert [c["code"] for c in views.campaigns(s, where=tenancy.campaign_clause(org2))] == ["henan-2026"]
        assert sorted(c["code"] for c in views.campaigns(s, where=tenancy.campaign_clause(parent))) == [
            "haitang-2026", "henan-2026"]


def test_a_parent_changes_nothing_of_its_children(tree: World) -> None:
    before = dump(tree.sessions)
    text = _config(tree, "henan-2026")
    with tree.sessions() as s, s.begin():
        parent = actor(s, PARENT_ORG)
        with pytest.raises(Forbidden):
            service.extend_deadline(s, "B5", parent, dt.date(2026, 5, 1), "上级要求延期。", now=at(3, 5))
        with pytest.raises(Forbidden, match="本活动所属党委的组织部"):
            change_campaign(s, parent, text.replace("name = \"", "name = \"改 ", 1), "上级修改。", now=at(3, 5),
                            campaign="henan-2026")
        with pytest.raises(Forbidden, match="本活动所属党委的组织部"):
            extend_all(s, parent, Stage.survey, dt.date(2026, 4, 30), "上级统一延期。", now=at(3, 5),
                       campaign="haitang-2026")
        with pytest.raises(NotFound, match="不存在或无权访问"):  # a sibling: as an unknown campaign
            extend_all(s, actor(s, ORG), Stage.survey, dt.date(2026, 4, 30), "统一延期。", now=at(3, 5),
                       campaign="henan-2026")
    assert dump(tree.sessions) == before
    with tree.sessions() as s, s.begin():  # the campaign's own organisation department may
        r = extend_all(s, actor(s, ORG2), Stage.survey, dt.date(2026, 4, 30), "统一延期。", now=at(3, 5))
        assert r["campaign"] == "henan-2026"


def _config(w: World, code: str) -> str:
    with w.sessions() as s:
        return get_campaign_row(s, code).config


def test_committee_move_rewrites_the_subtree_and_refuses_a_cycle(tree: World) -> None:
    with tree.sessions() as s, s.begin():
        tenancy.add_committee(s, "C2A", "外校某学院党委", parent="C2")
        for bad in ("C2", "C2A"):
            with pytest.raises(InvalidInput, match="形成环"):
                tenancy.move_committee(s, "C2", bad)
        with pytest.raises(InvalidInput, match="形成环"):
            tenancy.move_committee(s, "P", "C2A")
        tenancy.move_committee(s, "C2", "C1")  # the whole subtree moves with it
    with tree.sessions() as s:
        path = {c.code: c.path for c in s.scalars(select(Committee))}
        ids = {c.code: c.id for c in s.scalars(select(Committee))}
        assert path["C2A"] == f"/{ids['P']}/{ids['C1']}/{ids['C2']}/{ids['C2A']}/"
        assert [r["code"] for r in tenancy.tree(s)] == ["P", "C1", "C2", "C2A"]
        assert tenancy.ancestors(s, ids["C2A"]) == ["P", "C1", "C2", "C2A"]
        # C1's organisation department now reads C2 below it (read only)
        assert _codes(service_visible(s, ORG, "henan-2026")) == ["B5", "B6"]


def service_visible(s: Session, email: str, campaign: str) -> list[dict[str, Any]]:
    from service.auth import visible_cases

    return visible_cases(s, actor(s, email), now=at(3, 5), campaign=campaign)


def test_import_places_committees_in_the_tree(tree: World) -> None:
    from workflow.errors import ImportRejected
    from workflow.importer import parse_rows

    header = ["党委", "党委编码", "上级党委编码", "党总支", "支部编码", "支部名称", "支部类型", "书记姓名", "书记邮箱", "党员人数"]
    ok = [header, ["新学院党委", "C3", "P", "新总支", "B7", "新学院第一党支部", "教工", "书记七", "b7@test.cn", "9"]]
    with tree.sessions() as s, s.begin():
        import_rows(s, parse_rows(ok))
    with tree.sessions() as s:
        c3 = s.scalar(select(Committee).where(Committee.code == "C3"))
        p = s.scalar(select(Committee).where(Committee.code == "P"))
        assert c3 is not None and p is not None and c3.parent_id == p.id and c3.path == f"{p.path}{c3.id}/"
    bad = [header, ["外校党委", "C2", "NOPE", "外校党总支", "B5", "外校第一党支部", "教工", "书记五", "b5@test.cn", "8"]]
    with tree.sessions() as s, s.begin(), pytest.raises(ImportRejected, match="找不到上级党委"):
        import_rows(s, parse_rows(bad))
    cycle = [header, ["上级党委", "P", "C2", "", "B8", "第八党支部", "教工", "书记八", "b8@test.cn", "8"]]
    with tree.sessions() as s, s.begin(), pytest.raises(ImportRejected, match="形成环"):
        import_rows(s, parse_rows(cycle))


def _drive_some(w: World) -> None:
    w.drive("B1", Stage.self_assessment)
    w.drive("B2", Stage.member_evaluation)


def test_the_parent_roll_up_matches_the_cases(tree: World) -> None:
    _drive_some(tree)
    with tree.sessions() as s, s.begin():  # last year's grades (T2's carry-over fills this column)
        s.execute(update(CaseRow).where(CaseRow.branch_id.in_(select_branch_ids(s, ["B3", "B4"]))).values(
            previous_grade="backward"))
        s.execute(update(CaseRow).where(CaseRow.branch_id.in_(select_branch_ids(s, ["B3"]))).values(grade="average"))
        s.execute(update(CaseRow).where(CaseRow.branch_id.in_(select_branch_ids(s, ["B5"]))).values(
            previous_grade="poor", grade="fairly_good"))
    now = at(7, 1)
    with tree.sessions() as s:
        data = rollup.rollup(s, actor(s, PARENT_ORG), now=now)
        assert data == rollup.rollup(s, actor(s, PARENT_AUDITOR), now=now)
        rows = {r["committee"]: r for r in data["rows"]}
        assert list(rows) == ["P", "C1", "C2"] and data["year"] == 2026
        for code, campaign in (("C1", "haitang-2026"), ("C2", "henan-2026")):
            cases = views.list_cases(s, now=now, campaign=campaign)
            r = rows[code]
            assert r["branches"] == len(cases)
            assert r["overdue"] == sum(c["overdue"] for c in cases)
            assert {x["stage"]: x["count"] for x in r["stages"] if x["count"]} == dict(Counter(c["stage"] for c in cases))
            assert {g["label"]: g["count"] for g in r["grades"]} == dict(Counter(c["grade_label"] for c in cases
                                                                               if c["grade_label"]))
        assert (rows["C1"]["lowest_last_year"], rows["C1"]["lowest_moved_up"], rows["C1"]["conversion_rate"]) == (2, 1, 0.5)
        assert (rows["C2"]["lowest_last_year"], rows["C2"]["lowest_moved_up"]) == (1, 1)
        assert rows["C1"]["without_last_year"] == 2 and rows["P"]["branches"] == 0
        assert data["total"]["branches"] == 6 and data["total"]["lowest_moved_up"] == 2
        # a child's department rolls up its own subtree only; a sibling's or an unknown committee: as unknown
        with pytest.raises(NotFound, match="不存在或无权访问"):
            rollup.rollup(s, actor(s, ORG2), now=now, committee="C1")
        with pytest.raises(NotFound, match="不存在或无权访问"):
            rollup.rollup(s, actor(s, ORG2), now=now, committee="NOPE")
        assert [r["committee"] for r in rollup.rollup(s, actor(s, ORG2), now=now)["rows"]] == ["C2"]
        for who in (tree.gb_sec("B1"), tree.secretary("B1"), "m1@test.cn"):
            with pytest.raises(Forbidden):
                rollup.rollup(s, actor(s, who), now=now)


def select_branch_ids(s: Session, codes: list[str]) -> list[int]:
    from workflow.models import Branch

    return list(s.scalars(select(Branch.id).where(Branch.code.in_(codes))))


def _up(s: Session) -> list[tuple[str, str, str]]:
    return sorted(s.execute(select(OutboxRow.branch_code, OutboxRow.rung, DeliveryRow.recipient)
                            .join(DeliveryRow, DeliveryRow.outbox_id == OutboxRow.id)
                            .where(OutboxRow.kind == "escalation_up")).tuples().all())


def test_overdue_branches_are_reported_to_the_parent_after_the_delay(tree: World,
                                                                     sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        survey = {c: load_case(s, c).campaign.deadline_for(Stage.survey) for c in ("B1", "B5")}
    for code, deadline in survey.items():
        assert deadline is not None
        # day 9 after the deadline: nothing up the tree yet; day 10: one report per branch to P's department
        with sessions() as s, s.begin():
            sweep(s, now=dt.datetime.combine(deadline + dt.timedelta(days=9), dt.time(12), tzinfo=at(1, 1).tzinfo))
            assert not [x for x in _up(s) if x[0] == code]
        when = dt.datetime.combine(deadline + dt.timedelta(days=12), dt.time(12), tzinfo=at(1, 1).tzinfo)
        with sessions() as s, s.begin():
            sweep(s, now=when)
            assert (code, "parent-10", PARENT_ORG) in _up(s)
        with sessions() as s, s.begin():  # idempotent
            n = len(_up(s))
            sweep(s, now=when)
            assert len(_up(s)) == n
    with sessions() as s:
        ups = _up(s)
        assert {r for _, _, r in ups} == {PARENT_ORG}  # never the children's people, never the sibling
        assert {b for b, _, _ in ups} == {"B1", "B2", "B3", "B4", "B5", "B6"}
        # the escalations inside each committee still go to that committee's own department
        esc = set(s.execute(select(OutboxRow.branch_code, DeliveryRow.recipient)
                            .join(DeliveryRow, DeliveryRow.outbox_id == OutboxRow.id)
                            .where(OutboxRow.kind == "escalation", OutboxRow.rung == "after-3")).tuples())
        assert ("B5", ORG2) in esc and ("B1", ORG) in esc
        assert ("B5", ORG) not in esc and ("B1", ORG2) not in esc and not {r for _, r in esc} & {PARENT_ORG}
        from workflow import audit

        assert audit.verify(s).problems == []  # the reports are chained events like the others


def test_the_report_up_arrives_by_smtp(tree: World, sessions: sessionmaker[Session], engine: Any,
                                      tmp_path: Any) -> None:
    from notifications.testing import SmtpServer
    from scheduler.jobs import run_tick
    from workflow.settings import Settings

    server = SmtpServer().start()
    try:
        with sessions() as s:
            deadline = load_case(s, "B5").campaign.deadline_for(Stage.survey)
        assert deadline is not None
        when = dt.datetime.combine(deadline + dt.timedelta(days=12), dt.time(12), tzinfo=at(1, 1).tzinfo)
        settings = Settings(data_dir=tmp_path, smtp_host="127.0.0.1", smtp_port=server.port, smtp_timeout=5,
                            smtp_sender="党委组织部 <zzb@test.cn>")
        run_tick(engine, settings, now=when)
        up = [m for m in server.messages if m.rcpt_tos == [PARENT_ORG]]
        assert up and all(m.subject.startswith("【下级党委逾期报告】") for m in up)  # nothing else: no child's digest
        monthly = {m.rcpt_tos[0] for m in server.messages if m.subject.startswith("【月调度】")}
        assert monthly <= {ORG, ORG2}  # each campaign's digest to its own committee's department
        assert any("外校党委" in m.text and "外校第一党支部" in m.text for m in up)
    finally:
        server.stop()
