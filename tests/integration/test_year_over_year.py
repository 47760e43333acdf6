"""Year over year (issue 12): next year's campaign from last year's, last year's grade on each case with
lineage (split, merge), the movement form and grade history, a branch founded mid-campaign, a dissolved
branch closing with no more reminders, and a year the working-day calendar does not know."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import reports
from scheduler.sweep import sweep
from states.base import Stage
from tests.support.world import GB_SEC, MEMBERS, ORG, World, at
from workflow import lineage, service
from workflow.audit import verify
from workflow.campaigns import create_campaign
from workflow.db import make_engine, session_factory
from workflow.errors import CalendarUnknown, Forbidden, InvalidInput
from workflow.masterlog import verify_master
from workflow.migrate import upgrade
from workflow.models import Branch, BranchLineageRow, CampaignRow, CaseRow
from workflow.repository import load_case
from workflow.yearover import create_from, grade_history

Y2 = 2027


def t2(month: int, day: int, hour: int = 10) -> dt.datetime:
    return at(month, day, hour, year=Y2)


@pytest.fixture
def sqlite_sessions(tmp_path) -> sessionmaker[Session]:  # type: ignore[no-untyped-def]
    eng = make_engine(f"sqlite:///{tmp_path / 'y.db'}")
    upgrade(eng)
    return session_factory(eng)


def grade_to(w: World, branch: str, per_item: float, campaign: str | None = None) -> None:
    """Drive a branch through committee grading (its grade is published) in whatever year it is."""
    w.drive(branch, Stage.committee_grading, per_item=per_item)
    last = w.case(branch).last_at
    assert last is not None
    t = last + dt.timedelta(minutes=1)
    w.do(service.compute_grade, branch, MEMBERS[0], now=t)
    w.do(service.sign, branch, MEMBERS[0], now=t)
    w.do(service.sign, branch, MEMBERS[1], now=t)
    w.do(service.advance, branch, ORG, now=t)
    assert w.stage(branch) is Stage.publicity


def accept_with(w: World, branch: str, per_item: float, regrade_score: float) -> None:
    w.drive(branch, Stage.acceptance, per_item=per_item)
    last = w.case(branch).last_at
    assert last is not None
    t = max(last + dt.timedelta(minutes=1), at(9, 1))
    w.do(service.inspect, branch, w.gb_sec(branch), {"passed": True, "summary": "整改到位。", "inspected_on": "2026-09-01",
                                                   "regrade_score": regrade_score}, now=t)
    w.do(service.advance, branch, w.gb_sec(branch), now=t)
    assert w.stage(branch) is Stage.accepted


def audit_ok(w: World) -> None:
    with w.sessions() as s:
        report = verify(s)
        assert report.ok, [str(p) for p in report.problems]
        assert list(verify_master(s)) == []


def next_year(w: World, **kw: Any) -> Any:
    with w.sessions() as s, s.begin():
        row, review = create_from(s, source=w.campaign, year=Y2, now=t2(1, 5), actor=ORG, **kw)
        return row.code, review


def movement_csv(w: World, campaign: str) -> str:
    with w.sessions() as s:
        r = reports.render(s, "movement", "csv", campaign=campaign, now=t2(6, 1))
        return b"".join(r.body).decode("utf-8-sig")


def test_movement_against_last_year_in_the_report_and_the_grade_history(world: World) -> None:
    grade_to(world, "B1", 0.9)  # 90 → 先进
    grade_to(world, "B2", 0.7)  # 70 → 一般
    grade_to(world, "B3", 0.5)  # 50 → 后进
    code, review = next_year(world, weekdays_only=True)
    assert code == "haitang-2027"
    text = "\n".join(review.lines())
    assert "请复核：截止日期 调查摸底：2026-03-31 → 2027-03-31" in text
    assert "请复核：工作日历：仅按周一至周五（经 组织部 钱（org@test.cn） 于 2027-01-05 10:00 确认）" in text
    assert "沿用：人员与角色按党委（C1）保存" in text
    with world.sessions() as s:
        row = s.scalar(select(CampaignRow).where(CampaignRow.code == code))
        assert row is not None
        first = s.scalar(select(CampaignRow.id).where(CampaignRow.code == world.campaign))
        assert row.previous_id == first and "weekdays_only = true" in row.config
        prev = dict(s.execute(select(Branch.code, CaseRow.previous_grade).join(CaseRow, CaseRow.branch_id == Branch.id)
                              .where(CaseRow.campaign_id == row.id)).tuples().all())
    assert prev == {"B1": "advanced", "B2": "average", "B3": "backward", "B4": None}
    opened = load_case_event(world, "B3", code)
    assert opened["payload"]["previous_grade"] == "backward"
    assert opened["payload"]["previous"]["campaign"] == world.campaign

    world.campaign = code
    grade_to(world, "B1", 0.7)  # 先进 → 一般: down
    grade_to(world, "B2", 0.7)  # 一般 → 一般: same
    grade_to(world, "B3", 0.7)  # 后进 → 一般: up
    csv = movement_csv(world, code)
    assert "生物系教工党支部,先进,一般,降位" in csv
    assert "化学系教工党支部,一般,一般,持平" in csv
    assert "本科生第一党支部,后进,一般,晋位" in csv
    assert "本科生第二党支部,—,未定级,未定级" in csv
    assert ",,晋位,1" in csv and ",,持平,1" in csv and ",,降位,1" in csv
    with world.sessions() as s:
        h = grade_history(s, "B3")
    assert [(y["year"], y["grade_label"], y["movement"]) for y in h["years"]] == [(2026, "后进", None), (2027, "一般", "晋位")]
    audit_ok(world)
    # last year's grade edited behind the log's back (a 后进 made 一般 to hide it): the audit names it
    from sqlalchemy import update

    with world.sessions() as s, s.begin():
        case_id = load_case(s, "B3", code).row.id
        s.execute(update(CaseRow).where(CaseRow.id == case_id).values(previous_grade="average"))
    with world.sessions() as s:
        problems = [str(p) for p in verify(s).problems]
    assert len(problems) == 1 and "previous_grade=average≠backward" in problems[0]


def load_case_event(w: World, branch: str, campaign: str) -> dict[str, Any]:
    import json

    from workflow.models import EventRow

    with w.sessions() as s:
        case = load_case(s, branch, campaign)
        body = s.scalar(select(EventRow.body).where(EventRow.case_id == case.row.id, EventRow.seq == 1))
        assert body is not None
        return json.loads(body)  # type: ignore[no-any-return]


def test_a_year_the_calendar_does_not_know_is_refused_until_it_is_listed_or_weekdays_only_is_chosen(
        sqlite_sessions: sessionmaker[Session]) -> None:
    w = World(sqlite_sessions)
    with w.sessions() as s, s.begin(), pytest.raises(CalendarUnknown) as exc:
        create_campaign(s, preset="haitang-2022", year=Y2, now=t2(1, 2))
    assert "2027" in exc.value.message and "[calendar]" in exc.value.message and "weekdays_only = true" in exc.value.message
    with pytest.raises(Forbidden), w.sessions() as s, s.begin():  # only the committee's organisation department
        create_from(s, source=w.campaign, year=Y2, now=t2(1, 5), actor=GB_SEC, weekdays_only=True)
    with pytest.raises(CalendarUnknown) as exc:
        next_year(w)
    assert "--calendar" in exc.value.message and "--weekdays-only" in exc.value.message
    with w.sessions() as s:  # nothing half-made
        assert s.scalar(select(CampaignRow.id).where(CampaignRow.year == Y2)) is None
    cal = "[calendar]\nholidays = [2027-05-01, 2027-05-03, 2027-05-04, 2027-05-05]\nworkdays = [2027-04-25]\n"
    code, review = next_year(w, calendar_file_text=cal)
    assert "请复核：工作日历：活动配置的 2027 年节假日与调休（5 天）" in "\n".join(review.lines())
    with w.sessions() as s:
        from workflow.yearover import calendar_in_force

        row = s.scalar(select(CampaignRow).where(CampaignRow.code == code))
        assert row is not None
        assert calendar_in_force(s, row) == "工作日历：活动配置的 2027 年节假日与调休（5 天）"
        assert s.scalar(select(CaseRow.id).where(CaseRow.campaign_id == row.id).limit(1)) is not None
    audit_ok(w)


def test_from_shifts_full_dates_drops_last_years_calendar_and_refuses_a_leap_day(
        sqlite_sessions: sessionmaker[Session], tmp_path) -> None:  # type: ignore[no-untyped-def]
    from workflow.campaign import preset_text

    text = preset_text("haitang-2022", year=2024).replace('committee_grading = "04-25"', "committee_grading = 2024-02-29")
    text = text.replace('survey = "03-31"', 'survey = "02-20"').replace('self_assessment = "04-10"', 'self_assessment = "02-25"')
    text = text.replace('member_evaluation = "04-18"', 'member_evaluation = "02-27"')
    text += "\n[calendar]\nholidays = [2024-02-12]\n"
    leap = tmp_path / "leap.toml"
    leap.write_text(text.replace('code = "haitang-2024"', 'code = "leap-2024"'), encoding="utf-8")
    plain = tmp_path / "plain.toml"
    plain.write_text(text.replace("committee_grading = 2024-02-29", "committee_grading = 2024-03-01"), encoding="utf-8")
    with sqlite_sessions() as s, s.begin():
        create_campaign(s, file=leap, now=at(1, 2, year=2024))
        create_campaign(s, file=plain, now=at(1, 2, year=2024))
    with sqlite_sessions() as s, s.begin(), pytest.raises(InvalidInput, match="2024-02-29 在 2025 年没有对应的日期"):
        create_from(s, source="leap-2024", year=2025, now=at(1, 2, year=2025))
    with sqlite_sessions() as s, s.begin():
        new, review = create_from(s, source="haitang-2024", year=2025, now=at(1, 2, year=2025))
        assert new.code == "haitang-2025" and new.year == 2025
        assert "committee_grading = 2025-03-01" in new.config and 'survey = "02-20"' in new.config
        assert "2024-02-12" not in new.config and "[calendar]" not in new.config
        assert any("上一年度 [calendar] 中的 1 个日期不适用于 2025 年" in r for r in review.review)


def test_split_merge_dissolve_and_a_branch_founded_mid_campaign(sessions: sessionmaker[Session]) -> None:
    from notifications.models import OutboxRow

    w = World(sessions)
    # B4's reminder is queued, then B4 is dissolved: its case closes and the reminder is cancelled
    with w.sessions() as s, s.begin():
        sweep(s, now=at(3, 24, 10))
    with w.sessions() as s:
        b4 = load_case(s, "B4").row.id
        assert s.scalar(select(OutboxRow.status).where(OutboxRow.case_id == b4)) == "queued"
    with w.sessions() as s, s.begin(), pytest.raises(Forbidden):
        lineage.dissolve(s, service.actor_for(s, GB_SEC), "B4", reason="支部撤销", now=at(3, 25))
    with w.sessions() as s, s.begin():
        out = lineage.dissolve(s, service.actor_for(s, ORG), "B4", reason="该系并入学院，支部撤销", now=at(3, 25))
        assert out.closed == ["B4"]
    with w.sessions() as s:
        case = load_case(s, "B4")
        assert case.state["closed"]["reason"] == "支部撤销：该系并入学院，支部撤销" and case.row.deadline is None
        assert set(s.scalars(select(OutboxRow.status).where(OutboxRow.case_id == b4))) == {"cancelled"}
    with w.sessions() as s, s.begin():
        sweep(s, now=at(4, 2, 10))  # B4's survey deadline passed: no escalation for a closed case
    with w.sessions() as s:
        assert set(s.scalars(select(OutboxRow.status).where(OutboxRow.case_id == b4))) == {"cancelled"}

    accept_with(w, "B1", 0.9, 90)  # year ends 先进
    accept_with(w, "B2", 0.7, 70)  # 一般
    accept_with(w, "B3", 0.5, 50)  # 后进
    with w.sessions() as s, s.begin():
        who = service.actor_for(s, ORG)
        out = lineage.split(s, who, "B1", [("B1a", "生物系教工第一党支部", 6), ("B1b", "生物系教工第二党支部", 4)],
                            reason="教工人数增加，按教研室拆分", now=at(10, 8))
        assert out.created == ["B1a", "B1b"] and out.opened == []  # the year is over: nothing to open
        lineage.merge(s, who, ["B2", "B3"], "B23", name="化学与本科生联合党支部", reason="人数过少，合并", now=at(10, 9))
    with pytest.raises(InvalidInput, match="支部沿革须写明理由"), w.sessions() as s, s.begin():
        lineage.dissolve(s, service.actor_for(s, ORG), "B1a", reason=" ", now=at(10, 10))
    code, _ = next_year(w, weekdays_only=True)
    w.campaign = code
    with w.sessions() as s:
        cases = dict(s.execute(select(Branch.code, CaseRow.state).join(CaseRow, CaseRow.branch_id == Branch.id)
                               .join(CampaignRow, CampaignRow.id == CaseRow.campaign_id)
                               .where(CampaignRow.code == code)).tuples().all())
        kinds = sorted((r.kind, r.from_code, r.to_code) for r in s.scalars(select(BranchLineageRow)))
    assert sorted(cases) == ["B1a", "B1b", "B23"]  # dissolved branches are not opened again
    assert cases["B1a"]["previous_grade"] == cases["B1b"]["previous_grade"] == "advanced"
    assert cases["B23"]["previous_grade"] == "backward"  # a merger starts from the lowest of its parts
    assert ("dissolve", "B4", None) in kinds and ("merge", "B3", "B23") in kinds and ("split", "B1", "B1b") in kinds
    ev = load_case_event(w, "B23", code)["payload"]
    assert sorted((x["branch"], x["grade"]) for x in ev["previous"]["sources"]) == [("B2", "average"), ("B3", "backward")]
    assert "最低" in ev["previous"]["rule"]

    # mid-campaign: most cases are in self-assessment, so a founded branch opens there, saying why
    for b in ("B1a", "B1b"):
        w.do(service.record, b, GB_SEC, w.survey_data(), now=t2(3, 20))
        w.do(service.advance, b, GB_SEC, now=t2(3, 20))
    with w.sessions() as s, s.begin():
        out = lineage.found(s, service.actor_for(s, ORG), code="B5", name="新设研究生党支部", committee=None,
                            general_branch="GB2", branch_type="graduate", secretary_name="书记B5",
                            secretary_email="sec5@test.cn", members=8, reason="新招研究生成立支部", now=t2(3, 22))
        assert out.opened == [("B5", "self_assessment")]
    with w.sessions() as s:
        b5 = load_case(s, "B5", code)
    assert b5.stage is Stage.self_assessment and b5.state.get("previous_grade") is None
    ev = load_case_event(w, "B5", code)["payload"]
    assert ev["start_reason"] == "活动进行中新建支部（新招研究生成立支部）：多数支部（2/3）处于“支部自评”环节，自该环节开始立案"
    with w.sessions() as s:
        h = grade_history(s, "B23")
    assert [r["label"] for r in h["lineage"]] == ["合并", "合并"]
    audit_ok(w)


def test_the_sweep_never_guesses_a_year_nobody_listed(sqlite_sessions: sessionmaker[Session]) -> None:
    """A campaign stored before issue 12 on a year the calendar does not know: the sweep says so, sends nothing."""
    from workflow.campaign import preset_text

    text = preset_text("haitang-2022", year=2031)
    with sqlite_sessions() as s, s.begin():
        s.add(CampaignRow(code="haitang-2031", name="旧活动", year=2031, config=text, created_at=at(1, 2, year=2031)))
    with sqlite_sessions() as s, s.begin():
        stats = sweep(s, now=at(3, 24, 10, year=2031))
    assert stats.calendar_unknown == ["haitang-2031"] and stats.reminders == 0
    assert "活动 haitang-2031 未扫描：该年工作日历未知" in stats.text()


def test_a_change_cannot_take_away_the_calendar_of_an_unknown_year(sqlite_sessions: sessionmaker[Session]) -> None:
    from workflow.campaigns import change_campaign

    w = World(sqlite_sessions)
    code, _ = next_year(w, weekdays_only=True)
    with w.sessions() as s:
        row = s.scalar(select(CampaignRow).where(CampaignRow.code == code))
        assert row is not None
        text = row.config.replace("weekdays_only = true", "")
    with w.sessions() as s, s.begin(), pytest.raises(CalendarUnknown, match="2027"):
        change_campaign(s, service.actor_for(s, ORG), text, "去掉工作日历", now=t2(1, 6), campaign=code)
    with w.sessions() as s:
        row = s.scalar(select(CampaignRow).where(CampaignRow.code == code))
        assert row is not None and "weekdays_only = true" in row.config


def test_a_refused_reorganisation_changes_nothing(sqlite_sessions: sessionmaker[Session]) -> None:
    w = World(sqlite_sessions)
    with w.sessions() as s, s.begin(), pytest.raises(InvalidInput, match="支部编码 B2 已被使用"):
        lineage.split(s, service.actor_for(s, ORG), "B1", [("B1a", "甲", 5), ("B2", "乙", 5)], reason="拆分", now=at(3, 25))
    with w.sessions() as s, s.begin(), pytest.raises(InvalidInput, match="合并为新支部须给出至少两个被合并的支部"):
        lineage.merge(s, service.actor_for(s, ORG), ["B1"], "B9", name="新支部", reason="合并", now=at(3, 25))
    with w.sessions() as s, s.begin(), pytest.raises(InvalidInput, match="尚未结束，不能更改支部编码"):
        lineage.rename(s, service.actor_for(s, ORG), "B1", name="新名", to="B1x", reason="更名", now=at(3, 25))
    with w.sessions() as s:
        assert s.scalar(select(BranchLineageRow.id).limit(1)) is None
        assert s.scalar(select(Branch.dissolved_on).where(Branch.code == "B1")) is None
        assert sorted(s.scalars(select(Branch.code))) == ["B1", "B2", "B3", "B4"]
    with w.sessions() as s, s.begin():  # a name only: same code, same case, lineage recorded
        out = lineage.rename(s, service.actor_for(s, ORG), "B1", name="生物与医学教工党支部", reason="学科调整", now=at(3, 25))
        assert out.lineage and not out.closed
    assert w.case("B1").branch.name == "生物与医学教工党支部"
    audit_ok(w)
