"""A small organisation with people and a campaign, and helpers that drive a branch to any stage
through the real services (each step in its own transaction, as people would).
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, sessionmaker

from states.base import Role, Stage
from states.survey import FOCUS_POINTS
from workflow import service
from workflow.campaigns import create_campaign
from workflow.importer import OrgRow, import_rows
from workflow.people import add_person
from workflow.repository import LoadedCase, load_case

TZ = ZoneInfo("Asia/Shanghai")
YEAR = 2026
COMMITTEE = "C1"
ORG = "org@test.cn"
GB_SEC = "gb1@test.cn"
GB2_SEC = "gb2@test.cn"
MEMBERS = ["m1@test.cn", "m2@test.cn", "m3@test.cn"]
AUDITOR = "audit@test.cn"
OUTSIDER_ORG = "org2@test.cn"


def at(month: int, day: int, hour: int = 10, minute: int = 0, year: int = YEAR) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=TZ)


def org_rows() -> list[OrgRow]:
    def row(n: int, code: str, name: str, gb: str, btype: str, sec: str, members: int) -> OrgRow:
        return OrgRow(row=n, committee="测试学院党委", committee_code=COMMITTEE, general_branch=gb,
                      general_branch_code=gb, code=code, name=name, branch_type=btype, secretary_name=f"书记{code}",
                      secretary_email=sec, member_count=members, last_reelection=dt.date(2025, 1, 1),
                      last_activity=dt.date(2026, 2, 1), secretary_violation=False)

    return [
        row(2, "B1", "生物系教工党支部", "GB1", "teacher", "sec1@test.cn", 10),
        row(3, "B2", "化学系教工党支部", "GB1", "teacher", "sec2@test.cn", 9),
        row(4, "B3", "本科生第一党支部", "GB2", "undergraduate", "sec3@test.cn", 20),
        row(5, "B4", "本科生第二党支部", "GB2", "undergraduate", "m3@test.cn", 12),
    ]


class World:
    """Org: committee C1 with general branches GB1 (B1, B2) and GB2 (B3, B4); B4's secretary is member m3."""

    def __init__(self, sessions: sessionmaker[Session], *, preset: str = "haitang-2022", year: int = YEAR) -> None:
        self.sessions = sessions
        with sessions() as s, s.begin():
            import_rows(s, org_rows())
            add_person(s, ORG, "组织部 钱", [Role.org_department], COMMITTEE)
            add_person(s, GB_SEC, "总支书记 赵", [Role.general_branch_secretary], "GB1")
            add_person(s, GB2_SEC, "总支书记 孙", [Role.general_branch_secretary], "GB2")
            for i, m in enumerate(MEMBERS, 1):
                add_person(s, m, f"委员{i}", [Role.committee_member], COMMITTEE)
            add_person(s, AUDITOR, "审计 陈", [Role.auditor])
            row, _ = create_campaign(s, preset=preset, year=year, now=at(3, 1, 8))
            self.campaign = row.code

    # --- plumbing -----------------------------------------------------------------------------
    def do(self, fn: Any, branch: str, who: str, *args: Any, now: dt.datetime, **kw: Any) -> LoadedCase:
        with self.sessions() as s, s.begin():
            return fn(s, branch, service.actor_for(s, who), *args, now=now, **kw)  # type: ignore[no-any-return]

    def case(self, branch: str) -> LoadedCase:
        with self.sessions() as s:
            return load_case(s, branch)

    def stage(self, branch: str) -> Stage:
        return self.case(branch).stage

    def secretary(self, branch: str) -> str:
        return self.case(branch).branch.secretary_email

    def gb_sec(self, branch: str) -> str:
        return GB_SEC if self.case(branch).general_branch_code == "GB1" else GB2_SEC

    # --- stage data ---------------------------------------------------------------------------
    @staticmethod
    def survey_data() -> dict[str, Any]:
        return {"findings": {k: {"ok": True, "note": "正常"} for k in FOCUS_POINTS}}

    def self_data(self, branch: str, per_item: float = 0.8) -> dict[str, Any]:
        c = self.case(branch)
        rubric = c.campaign.grading.rubric_for(c.facts.branch_type)
        return {"scores": {i.id: round(i.max * per_item, 1) for i in rubric.items},
                "meeting_date": "2026-04-01", "attendance": c.facts.member_count // 2 + 1}

    @staticmethod
    def eval_data(ballots: int = 10, rating: float = 85) -> dict[str, Any]:
        return {"tally": {"ballots": ballots, "rating": rating, "satisfaction_members": 0.9,
                          "satisfaction_secretary": 0.9}}

    # --- drive --------------------------------------------------------------------------------
    def drive(self, branch: str, to: Stage, *, per_item: float = 0.8) -> None:
        """Move ``branch`` forward until it stands in ``to``, doing each stage's work properly."""
        order = list(Stage)
        while order.index(self.stage(branch)) < order.index(to):
            self.finish(branch, self.stage(branch), per_item=per_item)

    def finish(self, branch: str, stage: Stage, *, per_item: float = 0.8) -> None:
        """Do ``stage``'s work and advance; planned dates slide later when the case is already past them."""
        last = self.case(branch).last_at

        def at(month: int, day: int, hour: int = 10, minute: int = 0) -> dt.datetime:
            planned = globals()["at"](month, day, hour, minute)
            return max(planned, last + dt.timedelta(minutes=1)) if last else planned

        gb = self.gb_sec(branch)
        sec = self.secretary(branch)
        if stage is Stage.survey:
            self.do(service.record, branch, gb, self.survey_data(), now=at(3, 20))
            self.do(service.advance, branch, gb, now=at(3, 20))
        elif stage is Stage.self_assessment:
            self.do(service.record, branch, sec, self.self_data(branch, per_item), now=at(4, 2))
            self.do(service.advance, branch, sec, now=at(4, 2))
        elif stage is Stage.member_evaluation:
            self.do(service.record, branch, gb, self.eval_data(), now=at(4, 12))
            self.do(service.advance, branch, gb, now=at(4, 12))
        elif stage is Stage.committee_grading:
            self.do(service.compute_grade, branch, MEMBERS[0], now=at(4, 20))
            self.do(service.sign, branch, MEMBERS[0], now=at(4, 20))
            self.do(service.sign, branch, MEMBERS[1], now=at(4, 20))
            self.do(service.advance, branch, ORG, now=at(4, 20))
        elif stage is Stage.publicity:
            if not self.case(branch).state.get("publicity"):
                self.do(service.publish, branch, ORG, now=at(4, 20, 11))
            self.do(service.advance, branch, ORG, now=at(5, 10))
        elif stage is Stage.rectification:
            data: dict[str, Any] = {"items": [{"problem": "组织生活不规范", "measure": "每月主题党日", "due": "2026-07-31",
                                               "contact": "委员1"}], "submitted": True,
                                    "self_analysis": "对照标准查找不足。"}
            self.do(service.record, branch, sec, data, now=at(5, 20))
            self.do(service.complete_item, branch, sec, 1, "已完成，附记录。", now=at(7, 1))
            self.do(service.advance, branch, sec, now=at(7, 2))
        elif stage is Stage.acceptance:
            self.do(service.inspect, branch, gb, {"passed": True, "summary": "整改到位，验收通过。",
                                                  "inspected_on": "2026-09-01", "regrade_score": 90}, now=at(9, 1))
            self.do(service.advance, branch, gb, now=at(9, 1))
        else:  # pragma: no cover
            raise AssertionError(stage)
