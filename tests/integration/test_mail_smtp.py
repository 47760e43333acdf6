"""Reminders and escalations through a real SMTP server (aiosmtpd on 127.0.0.1), on SQLite and PostgreSQL.

A whole year is simulated with one tick a day (what `branchflow tick --now` runs); the tests assert what
the server received: to whom, with what subject and body, each dedup key exactly once — through an
outage, 451s, a crash between sending and marking, downtime, a refused address and a branch moving on.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from notifications.models import CANCELLED, DEAD, PENDING, SENT, SKIPPED, DeliveryRow, OutboxRow
from notifications.testing import Received, SmtpServer
from scheduler.jobs import run_tick
from states.base import Role
from states.survey import FOCUS_POINTS
from workflow import audit, service
from workflow.campaign import preset_text
from workflow.campaigns import create_campaign
from workflow.importer import OrgRow, import_rows
from workflow.models import CaseRow, EventRow
from workflow.people import add_person
from workflow.repository import load_case
from workflow.settings import Settings

TZ = ZoneInfo("Asia/Shanghai")
GB, ORG, M1 = "gb1@test.cn", "org@test.cn", "m1@test.cn"
SEC = {"B1": "sec1@test.cn", "B2": "sec2@test.cn"}
NAME = {"B1": "生物系教工党支部", "B2": "化学系教工党支部"}
CAMPAIGN = "西安海棠职业学院 2026 年基层组织建设年"
# Reminders 3 and 1 days before, on the very day (no working-day shifts: those are unit-tested).
POLICY = "\n[reminders]\noffsets_days = [3, 1]\nskip_non_working_days = false\n"


def at(month: int, day: int, hour: int = 9, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=TZ)


class Org:
    """Committee C1, general branch GB1 with branches B1 and B2; a one-member committee; 2026 campaign."""

    def __init__(self, sessions: sessionmaker[Session], tmp_path: Any) -> None:
        self.sessions = sessions
        rows = [OrgRow(row=i + 2, committee="测试学院党委", committee_code="C1", general_branch="第一党总支",
                       general_branch_code="GB1", code=code, name=NAME[code], branch_type="teacher",
                       secretary_name=name, secretary_email=SEC[code], member_count=10,
                       last_reelection=dt.date(2025, 1, 1), last_activity=dt.date(2026, 2, 1), secretary_violation=False)
                for i, (code, name) in enumerate([("B1", "书记甲"), ("B2", "书记乙")])]
        path = tmp_path / "campaign.toml"
        path.write_text(preset_text("haitang-2022", year=2026) + POLICY, encoding="utf-8")
        with sessions() as s, s.begin():
            import_rows(s, rows)
            add_person(s, ORG, "组织部 钱", [Role.org_department], "C1")
            add_person(s, GB, "总支书记 赵", [Role.general_branch_secretary], "GB1")
            add_person(s, M1, "委员1", [Role.committee_member], "C1")
            create_campaign(s, file=path, now=at(3, 1, 8))

    def do(self, fn: Any, branch: str, who: str, *args: Any, now: dt.datetime, **kw: Any) -> None:
        with self.sessions() as s, s.begin():
            fn(s, branch, service.actor_for(s, who), *args, now=now, **kw)

    def survey(self, b: str, now: dt.datetime) -> None:
        self.do(service.record, b, GB, {"findings": {k: {"ok": True, "note": ""} for k in FOCUS_POINTS}}, now=now)
        self.do(service.advance, b, GB, now=now)

    def self_assess(self, b: str, now: dt.datetime) -> None:
        with self.sessions() as s:
            c = load_case(s, b)
            items = c.campaign.grading.rubric_for("teacher").items
        data = {"scores": {i.id: i.max * 0.8 for i in items}, "meeting_date": "2026-04-14", "attendance": 8}
        self.do(service.record, b, SEC[b], data, now=now)
        self.do(service.advance, b, SEC[b], now=now)

    def evaluate(self, b: str, now: dt.datetime) -> None:
        self.do(service.record, b, GB, {"tally": {"ballots": 10, "rating": 85, "satisfaction_members": 0.9,
                                                  "satisfaction_secretary": 0.9}}, now=now)
        self.do(service.advance, b, GB, now=now)

    def grade(self, b: str, now: dt.datetime) -> None:
        self.do(service.compute_grade, b, M1, now=now)
        self.do(service.sign, b, M1, now=now)
        self.do(service.advance, b, ORG, now=now)
        self.do(service.publish, b, ORG, now=now + dt.timedelta(hours=1))

    def close_publicity(self, b: str, now: dt.datetime) -> None:
        self.do(service.advance, b, ORG, now=now)

    def plan(self, b: str, now: dt.datetime) -> None:
        self.do(service.record, b, SEC[b], {"items": [{"problem": "组织生活不规范", "measure": "每月主题党日",
                                                       "due": "2026-07-31", "contact": "委员1"}],
                                            "submitted": True, "self_analysis": "对照标准查找不足。"}, now=now)

    def complete(self, b: str, now: dt.datetime) -> None:
        self.do(service.complete_item, b, SEC[b], 1, "已完成，附记录。", now=now)

    def finish_rectification(self, b: str, now: dt.datetime) -> None:
        self.do(service.advance, b, SEC[b], now=now)

    def inspect(self, b: str, now: dt.datetime) -> None:
        self.do(service.inspect, b, GB, {"passed": True, "summary": "整改到位，验收通过。", "inspected_on": "2026-09-04",
                                        "regrade_score": 90}, now=now)
        self.do(service.advance, b, GB, now=now)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def settings(smtp: SmtpServer, tmp_path: Any) -> Settings:
    return Settings(data_dir=tmp_path, smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_timeout=5,
                    smtp_sender="党委组织部 <zzb@test.cn>")


@pytest.fixture
def org(sessions: sessionmaker[Session], tmp_path: Any) -> Org:
    return Org(sessions, tmp_path)


def days(start: dt.date, end: dt.date) -> Iterator[dt.date]:
    d = start
    while d <= end:
        yield d
        d += dt.timedelta(days=1)


def tick(engine: Engine, settings: Settings, now: dt.datetime, **kw: Any) -> Any:
    return run_tick(engine, settings, now=now, **kw)


def arrived(server: SmtpServer, since: int = 0) -> list[tuple[str, str]]:
    return sorted((m.rcpt_tos[0], m.subject) for m in server.messages[since:])


def deliveries(sessions: sessionmaker[Session]) -> Counter[str]:
    with sessions() as s:
        return Counter(s.scalars(select(DeliveryRow.status)))


# --- a whole year ---------------------------------------------------------------------------------

def digest(n: int, *, due: int = 0, overdue: int = 0, orders: int = 0) -> str:
    parts = [f"{due}项即将截止"] if due else []
    if overdue:
        parts.append(f"{overdue}项已逾期")
    return f"【待办汇总】{n}项待办：" + "，".join(parts) + (f"（含督办令{orders}项）" if orders else "")


def monthly(month: str, overdue: int) -> str:
    return f"【月调度】{CAMPAIGN} {month} 进度：2 个支部，逾期 {overdue} 个"


def reminder(b: str, stage: str, deadline: str, left: int) -> str:
    return f"【截止提醒】{NAME[b]}“{stage}”环节将于{deadline}截止（还剩{left}天）"


EXPECTED_YEAR = {
    dt.date(2026, 3, 1): [(ORG, monthly("2026-03", 0))],
    dt.date(2026, 3, 28): [(GB, digest(2, due=2))],
    dt.date(2026, 3, 30): [(GB, digest(2, due=2))],
    dt.date(2026, 4, 1): [(GB, f"【逾期督促】{NAME['B2']}“调查摸底”环节已逾期1天"), (ORG, monthly("2026-04", 1))],
    dt.date(2026, 4, 3): [(M1, f"【督办令】{NAME['B2']}“调查摸底”环节已逾期3天"),
                          (ORG, f"【督办令】{NAME['B2']}“调查摸底”环节已逾期3天")],
    dt.date(2026, 4, 7): [(SEC["B1"], reminder("B1", "支部自评", "2026年4月10日", 3)),
                          (SEC["B2"], reminder("B2", "支部自评", "2026年4月10日", 3))],
    dt.date(2026, 4, 9): [(SEC["B1"], reminder("B1", "支部自评", "2026年4月10日", 1)),
                          (SEC["B2"], reminder("B2", "支部自评", "2026年4月10日", 1))],
    dt.date(2026, 4, 11): [(GB, digest(2, overdue=2))],
    dt.date(2026, 4, 13): [(M1, digest(2, overdue=2, orders=2)), (ORG, digest(2, overdue=2, orders=2))],
    # member evaluation (due 04-18) began 04-15 10:00, after that day's 3-day reminder time: only the 1-day one
    dt.date(2026, 4, 17): [(GB, digest(2, due=2))],
    dt.date(2026, 4, 22): [(M1, digest(2, due=2))],
    dt.date(2026, 4, 27): [(ORG, digest(2, due=2))],
    dt.date(2026, 4, 29): [(ORG, digest(2, due=2))],
    dt.date(2026, 5, 1): [(ORG, monthly("2026-05", 0))],
    dt.date(2026, 6, 1): [(ORG, monthly("2026-06", 0))],
    dt.date(2026, 7, 1): [(ORG, monthly("2026-07", 0))],
    dt.date(2026, 8, 1): [(ORG, monthly("2026-08", 0))],
    dt.date(2026, 8, 28): [(SEC["B1"], reminder("B1", "整改（晋位升级）", "2026年8月31日", 3)),
                           (SEC["B2"], reminder("B2", "整改（晋位升级）", "2026年8月31日", 3))],
    dt.date(2026, 8, 30): [(SEC["B1"], reminder("B1", "整改（晋位升级）", "2026年8月31日", 1)),
                           (SEC["B2"], reminder("B2", "整改（晋位升级）", "2026年8月31日", 1))],
    dt.date(2026, 9, 1): [(ORG, monthly("2026-09", 0))],
    dt.date(2026, 9, 2): [(GB, digest(2, due=2))],
    dt.date(2026, 9, 4): [(GB, digest(2, due=2))],
}


def test_a_simulated_year_delivers_exactly_the_expected_mails(engine: Engine, sessions: sessionmaker[Session],
                                                              org: Org, smtp: SmtpServer, settings: Settings) -> None:
    plan = {
        dt.date(2026, 3, 30): [(org.survey, "B1")],
        dt.date(2026, 4, 5): [(org.survey, "B2")],
        dt.date(2026, 4, 15): [(org.self_assess, "B1"), (org.self_assess, "B2")],
        dt.date(2026, 4, 17): [(org.evaluate, "B1"), (org.evaluate, "B2")],
        dt.date(2026, 4, 22): [(org.grade, "B1"), (org.grade, "B2")],
        dt.date(2026, 4, 29): [(org.close_publicity, "B1"), (org.close_publicity, "B2")],
        dt.date(2026, 5, 20): [(org.plan, "B1"), (org.plan, "B2")],
        dt.date(2026, 7, 1): [(org.complete, "B1"), (org.complete, "B2")],
        dt.date(2026, 8, 30): [(org.finish_rectification, "B1"), (org.finish_rectification, "B2")],
        dt.date(2026, 9, 4): [(org.inspect, "B1"), (org.inspect, "B2")],
    }
    got: dict[dt.date, list[tuple[str, str]]] = {}
    by_day: dict[dt.date, list[Received]] = {}
    for day in days(dt.date(2026, 3, 1), dt.date(2026, 9, 15)):
        before = len(smtp.messages)
        tick(engine, settings, at(day.month, day.day))
        if len(smtp.messages) > before:
            got[day] = arrived(smtp, before)
            by_day[day] = smtp.messages[before:]
        for action, branch in plan.get(day, []):
            action(branch, at(day.month, day.day, 10))
    expected = {d: sorted(v) for d, v in EXPECTED_YEAR.items()}
    assert got == expected

    # every (recipient, dedup key) arrived exactly once; each message has its own Message-ID
    keys = Counter((m.rcpt_tos[0], k) for m in smtp.messages for k in m.keys)
    assert keys and max(keys.values()) == 1
    assert len({m.message["Message-ID"] for m in smtp.messages}) == len(smtp.messages)

    # the supervision-order digest: both branches, what is missing, and the order's text
    order_mail = next(m for m in by_day[dt.date(2026, 4, 13)] if m.rcpt_tos == [ORG])
    text = order_mail.text
    assert "组织部 钱同志：您好！" in text
    assert f"1. {NAME['B1']}（B1，第一党总支）" in text and f"2. {NAME['B2']}（B2，第一党总支）" in text
    assert "截止日期：2026年4月10日（已逾期 3 天）" in text
    assert "   督办令：党支部“生物系教工党支部”“支部自评”环节已逾期 3 天" in text
    assert "督办令：督办令" not in text and "（2 项已逾期）" in text
    assert "尚未完成：以下评分项尚未打分" in text
    assert sorted(order_mail.keys) == ["haitang-2026/B1/self_assessment/2026-04-10/after-3",
                                       "haitang-2026/B2/self_assessment/2026-04-10/after-3"]
    assert "<strong style=\"color: #b00\">督办令：" in order_mail.html

    # the reminder to a branch secretary names whom to ask: the general-branch secretary
    rem = next(m for m in by_day[dt.date(2026, 4, 7)] if m.rcpt_tos == [SEC["B1"]])
    assert "联系人：总支书记 赵（gb1@test.cn）" in rem.text
    assert "责任人：党支部书记" in rem.text

    # the events are in each branch's hash chain, and the projection equals the replay
    with sessions() as s:
        report = audit.verify(s)
        assert report.ok, [str(p) for p in report.problems]
        kinds = Counter(s.scalars(select(EventRow.kind).where(EventRow.kind.in_(
            ["reminded", "escalated", "supervision_order"]))))
    # reminders: survey 2+2, self-assessment 2+2, evaluation 2, grading 2, publicity 4, rectification 4,
    # acceptance 4; escalations: B2's survey (2 rungs) and both self-assessments (2 rungs each)
    assert kinds == {"reminded": 24, "escalated": 6, "supervision_order": 3}
    assert deliveries(sessions) == {SENT: sum(len(m.keys) for m in smtp.messages)}


# --- failures -------------------------------------------------------------------------------------

def test_outage_then_451s_then_every_message_arrives_exactly_once(engine: Engine, sessions: sessionmaker[Session],
                                                                   org: Org, smtp: SmtpServer,
                                                                   settings: Settings) -> None:
    tick(engine, settings, at(3, 1))
    smtp.messages.clear()
    smtp.stop()  # the server is down on 03-28 …
    r = tick(engine, settings, at(3, 28))
    assert r.dispatch.messages == 0 and r.dispatch.retried == 2
    with sessions() as s:
        pending = s.scalars(select(DeliveryRow).where(DeliveryRow.status == PENDING)).all()
        assert [(d.recipient, d.attempts) for d in pending] == [(GB, 1), (GB, 1)]
        assert all("无法连接邮件服务器" in (d.last_error or "") for d in pending)
    smtp.start()
    smtp.handler.mode = "451"  # … and answers 451 on 03-29
    r = tick(engine, settings, at(3, 29))
    assert smtp.messages == [] and r.dispatch.retried == 2
    with sessions() as s:
        errors = s.scalars(select(DeliveryRow.last_error).where(DeliveryRow.status == PENDING)).all()
        assert len(errors) == 2 and all("451" in (e or "") for e in errors)
    smtp.handler.mode = "ok"
    tick(engine, settings, at(3, 30))
    # the late 3-day reminders and the on-time 1-day ones: one digest for the general-branch secretary
    assert arrived(smtp) == [(GB, digest(4, due=4))]
    keys = Counter(k for m in smtp.messages for k in m.keys)
    assert keys == {f"haitang-2026/{b}/survey/2026-03-31/{r}": 1 for b in ("B1", "B2") for r in ("before-3", "before-1")}
    tick(engine, settings, at(3, 30, 9, 30))
    assert len(smtp.messages) == 1
    assert deliveries(sessions) == {SENT: 5}  # the 4 reminders + March's monthly digest (tick of 03-01)


def test_a_crash_between_send_and_mark_gives_at_most_one_duplicate_the_receiver_can_tell(
        engine: Engine, sessions: sessionmaker[Session], org: Org, smtp: SmtpServer, settings: Settings) -> None:
    tick(engine, settings, at(3, 1))
    smtp.messages.clear()

    class Crash(Exception):
        pass

    def crash() -> None:
        raise Crash

    with pytest.raises(Crash):
        tick(engine, settings, at(3, 28), after_send=crash)
    assert len(smtp.messages) == 1
    assert deliveries(sessions)[PENDING] == 2  # sent, but not marked
    tick(engine, settings, at(3, 28, 9, 5))  # within the claim's lease: not sent again yet
    assert len(smtp.messages) == 1
    tick(engine, settings, at(3, 29))  # the lease expired: sent once more
    assert len(smtp.messages) == 2
    first, second = smtp.messages
    assert first.message["Message-ID"] == second.message["Message-ID"]
    assert first.keys == second.keys == ["haitang-2026/B1/survey/2026-03-31/before-3",
                                         "haitang-2026/B2/survey/2026-03-31/before-3"]
    tick(engine, settings, at(3, 29, 10))
    assert len(smtp.messages) == 2
    assert deliveries(sessions) == {SENT: 3}


def test_after_downtime_only_what_still_makes_sense_is_sent_and_the_rest_recorded_skipped(
        engine: Engine, sessions: sessionmaker[Session], org: Org, smtp: SmtpServer, settings: Settings) -> None:
    tick(engine, settings, at(3, 27))
    smtp.messages.clear()
    tick(engine, settings, at(4, 9))  # nothing ran from 03-27 to 04-09
    # survey was due 03-31: the 3-day and 1-day reminders and the 1-day escalation are stale; the
    # supervision order (3 days after) is what still makes sense — once per recipient, both branches in it
    assert arrived(smtp) == [(M1, digest(2, overdue=2, orders=2)), (ORG, digest(2, overdue=2, orders=2)),
                             (ORG, monthly("2026-04", 2))]
    with sessions() as s:
        skipped = sorted(s.scalars(select(OutboxRow.dedup_key).where(OutboxRow.status == SKIPPED)))
    assert skipped == [f"haitang-2026/{b}/survey/2026-03-31/{r}" for b in ("B1", "B2")
                       for r in ("after-1", "before-1", "before-3")]


def test_a_refused_address_is_dead_lettered_and_reported_to_the_organisation_department(
        engine: Engine, sessions: sessionmaker[Session], org: Org, smtp: SmtpServer, settings: Settings) -> None:
    org.survey("B1", at(3, 20, 10))
    org.survey("B2", at(3, 20, 10))
    tick(engine, settings, at(4, 1))
    smtp.messages.clear()
    smtp.handler.reject.add(SEC["B1"])
    r = tick(engine, settings, at(4, 7))
    assert r.dispatch.dead == 1 and r.dispatch.reported == 1
    assert arrived(smtp) == [(ORG, "【投递失败】1 封通知邮件无法送达"),
                             (SEC["B2"], reminder("B2", "支部自评", "2026年4月10日", 3))]
    report = next(m for m in smtp.messages if m.rcpt_tos == [ORG]).text
    assert "收件人：sec1@test.cn" in report and "550" in report
    assert reminder("B1", "支部自评", "2026年4月10日", 3) in report
    with sessions() as s:
        d = s.scalars(select(DeliveryRow).where(DeliveryRow.status == DEAD)).one()
        assert d.recipient == SEC["B1"]
    tick(engine, settings, at(4, 8))  # a dead letter is not retried
    assert len(smtp.messages) == 2


def test_moving_a_branch_on_cancels_its_pending_reminders(engine: Engine, sessions: sessionmaker[Session],
                                                          org: Org, smtp: SmtpServer, settings: Settings) -> None:
    tick(engine, settings, at(3, 1))
    smtp.messages.clear()
    smtp.stop()
    tick(engine, settings, at(3, 28))  # the survey reminders for B1 and B2 are pending
    org.survey("B1", at(3, 28, 10))
    smtp.start()
    tick(engine, settings, at(3, 28, 11))
    assert [m.keys for m in smtp.messages] == [["haitang-2026/B2/survey/2026-03-31/before-3"]]
    assert deliveries(sessions) == {SENT: 2, CANCELLED: 1}


def test_chinese_subjects_names_and_bodies_decode(engine: Engine, sessions: sessionmaker[Session], org: Org,
                                                 smtp: SmtpServer, settings: Settings) -> None:
    org.survey("B1", at(3, 20, 10))
    tick(engine, settings, at(4, 1))
    smtp.messages.clear()
    tick(engine, settings, at(4, 7))
    mail = next(m for m in smtp.messages if m.rcpt_tos == [SEC["B1"]])
    raw_headers = mail.data.split(b"\r\n\r\n", 1)[0]
    assert raw_headers.isascii()  # encoded words on the wire …
    msg = mail.message  # … decoded by the standard parser
    assert msg["Subject"] == reminder("B1", "支部自评", "2026年4月10日", 3)
    assert msg["To"].addresses[0].display_name == "书记甲"
    assert msg["To"].addresses[0].addr_spec == SEC["B1"]
    assert msg["From"].addresses[0].display_name == "党委组织部"
    assert "书记甲同志：您好！" in mail.text
    assert "党支部“生物系教工党支部”的“支部自评”环节将于2026年4月10日截止，还剩 3 天" in mail.text
    assert "<td>生物系教工党支部（B1）" in mail.html


def test_the_sweep_appends_chained_events_in_the_same_transaction_and_audit_verifies(
        engine: Engine, sessions: sessionmaker[Session], org: Org, smtp: SmtpServer, settings: Settings) -> None:
    tick(engine, settings, at(4, 3))
    with sessions() as s:
        for code in ("B1", "B2"):
            case = load_case(s, code)
            last = s.scalars(select(EventRow).where(EventRow.case_id == case.row.id)
                             .order_by(EventRow.seq.desc())).first()
            assert last is not None and case.row.version == last.seq
        events = {k: n for k, n in Counter(s.scalars(select(EventRow.kind))).items()}
        assert events["supervision_order"] == 2 and events["escalated"] == 2
        assert s.scalar(select(CaseRow.stage).where(CaseRow.version > 1)) == "survey"
        report = audit.verify(s)
    assert report.ok, [str(p) for p in report.problems]
