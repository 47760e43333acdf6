"""`branchflow demo`: a fresh SQLite database and three seed institutions side by side under one parent
committee — 西安海棠职业学院 on the seed-003 preset, the Henan college on seed 001's, 中国矿业大学(北京) on
seed 004's with its general branches — each its own committee, campaign and people; a simulated year in
which every branch moves through every stage — some fast, some late, one objection upheld, one failed
inspection — then the Henan college's next year opened from this one (``campaign create --from``), ending
with a readable summary: each institution's grades and the parent's read-only roll-up.

The simulation is a list of timed actions run in time order, each in its own transaction, exactly as
people would do them through the CLI; ``on_day`` hooks (the scheduler's tick) run once a day.
"""

from __future__ import annotations

import datetime as dt
import heapq
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from states.base import Role
from states.survey import FOCUS_POINTS
from workflow import audit, repository, service, views
from workflow.campaigns import create_campaign
from workflow.db import make_engine, session_factory
from workflow.errors import BranchflowError, InvalidInput, TransitionRefused
from workflow.importer import OrgRow, import_rows
from workflow.migrate import upgrade
from workflow.people import add_person

TZ = ZoneInfo("Asia/Shanghai")
DEMO_MARKER = ".branchflow-demo"
DEMO_PASSWORD = "haitang-demo-2026"  # a passphrase the password rules accept (issue 14)
COMMITTEE = "HAITANG"  # 西安海棠职业学院党委: its code (the people's scope)
PARENT = "JYGW"  # 示范省委教育工委: the parent committee over the three institutions (reads their roll-up)
PARENT_NAME = "示范省委教育工委"
PARENT_ORG = ("gongwei@demo.edu.cn", "省委教育工委组织处 何建平")
GENERAL_BRANCHES = [
    ("GB-T", "教工党总支", "teacher", ["生物系", "化学系", "物理系", "数学系", "计算机系", "外语系", "马克思主义学院", "体育部"]),
    ("GB-U", "本科生党总支", "undergraduate", ["2023级", "2024级", "2025级", "2022级", "生物2301班", "化学2302班", "物理2201班", "计算机2401班"]),
    ("GB-G", "研究生党总支", "graduate", ["博士生", "硕士生第一", "硕士生第二", "硕士生第三", "专业学位", "留学生"]),
    ("GB-A", "机关党总支", "admin", ["党政办公室", "组织人事部", "教务处", "学生工作部", "后勤保障处", "图书馆", "离退休第一", "离退休第二"]),
]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = ["建国", "海燕", "志强", "丽华", "晓明", "红梅", "伟", "静", "磊", "敏", "军", "芳", "洋", "娜", "勇", "艳", "杰", "娟", "涛", "秀英", "超", "霞", "明", "刚", "平", "桂英", "辉", "玲", "鹏", "丹"]
PINYIN = {
    "王": "wang", "李": "li", "张": "zhang", "刘": "liu", "陈": "chen", "杨": "yang", "黄": "huang", "赵": "zhao",
    "吴": "wu", "周": "zhou", "徐": "xu", "孙": "sun", "马": "ma", "朱": "zhu", "胡": "hu", "郭": "guo",
}


@dataclass(frozen=True)
class Institution:
    """One seed institution of the demo: its committee, preset, general branches and people."""

    key: str  # prefix of its branch codes ("" for 海棠, whose codes stay T001 …)
    committee: str  # code (= name) of its committee
    name: str
    preset: str
    domain: str
    general_branches: list[tuple[str, str, str, list[str]]]
    staff: list[tuple[str, str, list[Role], str]]

    @property
    def org(self) -> str:
        return next(e for e, _, roles, _ in self.staff if Role.org_department in roles)

    @property
    def members(self) -> list[str]:
        return [e for e, _, roles, _ in self.staff if Role.committee_member in roles]

    def gb_secretary(self, gb_code: str) -> str:
        return f"{gb_code.lower()}@{self.domain}"


@dataclass
class Plan:
    code: str
    speed: str  # fast | normal | late
    quality: float  # 0..1, drives scores
    objection: bool = False
    fail_inspection: bool = False
    inst: Institution | None = None
    gb_code: str = ""
    online: bool = False


def sample_org(n: int, rng: random.Random, inst: Institution | None = None) -> list[OrgRow]:
    inst = inst or INSTITUTIONS[0]
    gbs = inst.general_branches
    rows: list[OrgRow] = []
    per = [max(1, n // len(gbs))] * len(gbs)
    per[0] += n - sum(per)
    k = 0
    for (gb_code, gb_name, btype, units), count in zip(gbs, per):
        for i in range(count):
            unit = units[i % len(units)]
            suffix = "" if i < len(units) else "第" + "一二三四五六七八九十"[i // len(units)]
            kind = {"teacher": "教工", "undergraduate": "本科生", "graduate": "研究生", "admin": ""}[btype]
            btype_i = "retired" if unit.startswith("离退休") else btype
            name = f"{unit}{kind}{suffix}党支部"
            surname = SURNAMES[(k * 7) % len(SURNAMES)]
            secretary = surname + GIVEN[(k * 11) % len(GIVEN)]
            k += 1
            code = f"{inst.key}{gb_code[-1]}{k:03d}"
            email = f"{PINYIN.get(surname, 'sec')}{inst.key.lower()}{k:03d}@{inst.domain}"
            rows.append(OrgRow(
                row=k + 1, committee=inst.name, committee_code=inst.committee, general_branch=gb_name,
                general_branch_code=gb_code, code=code, name=name, branch_type=btype_i, secretary_name=secretary,
                secretary_email=email, member_count=rng.randint(8, 40),
                last_reelection=dt.date(2024, rng.randint(1, 12), rng.randint(1, 28)),
                last_activity=dt.date(2026, rng.randint(1, 2), rng.randint(1, 28)), secretary_violation=False,
            ))
    return rows


STAFF = [
    ("zuzhibu@demo.edu.cn", "组织部 钱卫东", [Role.org_department], COMMITTEE),
    ("shuji@demo.edu.cn", "党委书记 孙立新", [Role.committee_member], COMMITTEE),
    ("fushuji@demo.edu.cn", "党委副书记 周文华", [Role.committee_member], COMMITTEE),
    ("weiyuan3@demo.edu.cn", "党委委员 吴国强", [Role.committee_member], COMMITTEE),
    ("weiyuan4@demo.edu.cn", "党委委员 郑丽萍", [Role.committee_member], COMMITTEE),
    ("weiyuan5@demo.edu.cn", "党委委员 冯志远", [Role.committee_member], COMMITTEE),
    ("shenji@demo.edu.cn", "审计 陈思源", [Role.auditor], ""),
]

HN, KD = "HENAN", "CUMTB"
INSTITUTIONS = [
    Institution(key="", committee=COMMITTEE, name="西安海棠职业学院党委", preset="haitang-2022", domain="demo.edu.cn",
                general_branches=GENERAL_BRANCHES, staff=[x for x in STAFF if x[2] != [Role.auditor]]),
    Institution(key="HN", committee=HN, name="河南某学院党委", preset="henan-2012", domain="henan.demo.edu.cn",
                general_branches=[("HN-GB-T", "教工党总支", "teacher", ["文学院", "理学院", "经济管理学院", "机关"]),
                                  ("HN-GB-U", "学生党总支", "undergraduate", ["文学院", "理学院", "经济管理学院", "外国语学院"])],
                staff=[("zuzhibu@henan.demo.edu.cn", "组宣部 马红军", [Role.org_department], HN)]
                + [(f"weiyuan{i}@henan.demo.edu.cn", f"党委委员 {n}", [Role.committee_member], HN)
                   for i, n in enumerate(["郭建华", "朱晓燕", "胡志明"], 1)]),
    Institution(key="KD", committee=KD, name="中国矿业大学（北京）党委", preset="cumtb-2012", domain="cumtb.demo.edu.cn",
                general_branches=[("KD-GB-T", "教工党总支", "teacher", ["资源学院", "机电学院", "化环学院", "管理学院"]),
                                  ("KD-GB-G", "研究生党总支", "graduate", ["资源学院", "机电学院", "化环学院", "管理学院"])],
                staff=[("zuzhibu@cumtb.demo.edu.cn", "组织部 林国栋", [Role.org_department], KD)]
                + [(f"weiyuan{i}@cumtb.demo.edu.cn", f"党委委员 {n}", [Role.committee_member], KD)
                   for i, n in enumerate(["罗振华", "郑海涛", "梁文静"], 1)]),
]
OTHER_BRANCHES = 8  # branches of each of the two other institutions (the --branches option sizes 海棠)


def _at(day: dt.date, hour: int = 10, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=TZ)


class Simulation:
    """Timed actions over a year; each runs in its own transaction like a person's request would."""

    def __init__(self, engine: Engine, year: int, rng: random.Random) -> None:
        self.sessions = session_factory(engine)
        self.year = year
        self.rng = rng
        self.actions: list[tuple[dt.datetime, int, str, Callable[[Session, dt.datetime], Any], int]] = []
        self.refusals: list[str] = []
        self._n = 0

    def at(self, when: dt.datetime, label: str, fn: Callable[[Session, dt.datetime], Any], retries: int = 20) -> None:
        """Schedule ``fn``; if the system refuses it (criteria not met yet), the person tries again next day."""
        self._n += 1
        heapq.heappush(self.actions, (when, self._n, label, fn, retries))

    def run(self, on_day: Callable[[dt.datetime], None] | None = None, start: dt.date | None = None,
            end: dt.date | None = None) -> None:
        day = start or dt.date(self.year, 3, 1)
        last = end or dt.date(self.year, 9, 15)
        while day <= last:
            if on_day:
                on_day(_at(day, 9, 0))
            while self.actions and self.actions[0][0].date() <= day:
                when, _, label, fn, retries = heapq.heappop(self.actions)
                try:
                    with self.sessions() as s, s.begin():
                        fn(s, when)
                except BranchflowError as exc:
                    self.refusals.append(f"{when:%m-%d} {label}: {exc.message.splitlines()[0]}")
                    if isinstance(exc, TransitionRefused) and retries > 0:
                        self.at(when + dt.timedelta(days=1), label, fn, retries - 1)
            day += dt.timedelta(days=1)


def plan_year(sim: Simulation, plans: list[Plan], year: int) -> None:
    rng = sim.rng

    def actor(s: Session, email: str) -> service.Actor:
        return service.actor_for(s, email)

    def sec(s: Session, code: str) -> service.Actor:
        return actor(s, repository.load_case(s, code).branch.secretary_email)

    def d(month: int, day: int, jitter: int = 0) -> dt.date:
        return dt.date(year, month, day) + dt.timedelta(days=rng.randint(0, jitter) if jitter else 0)

    for p in plans:
        lag = {"fast": -5, "normal": 0, "late": 6}[p.speed]
        code = p.code
        inst = p.inst or INSTITUTIONS[0]
        org, members = inst.org, inst.members
        gbsec = inst.gb_secretary(p.gb_code or {"T": "GB-T", "U": "GB-U", "G": "GB-G", "A": "GB-A"}[code[0]])

        def survey(s: Session, now: dt.datetime, code: str = code, gbsec: str = gbsec) -> None:
            findings = {k: {"ok": True, "note": ""} for k in FOCUS_POINTS}
            service.record(s, code, actor(s, gbsec), {"findings": findings}, now=now)
            service.advance(s, code, actor(s, gbsec), now=now)

        def self_assess(s: Session, now: dt.datetime, code: str = code, q: float = p.quality) -> None:
            case = repository.load_case(s, code)
            rubric = case.campaign.grading.rubric_for(case.facts.branch_type)
            scores = {i.id: round(max(0.0, min(i.max, i.max * rng.gauss(q, 0.08))) * 2) / 2 for i in rubric.items}
            att = case.facts.member_count // 2 + 1 + rng.randint(0, case.facts.member_count // 3)
            who = sec(s, code)
            service.record(s, code, who, {"scores": scores, "meeting_date": (now.date() - dt.timedelta(days=2)).isoformat(),
                                          "attendance": min(att, case.facts.member_count)}, now=now)
            service.advance(s, code, who, now=now)

        def evaluate(s: Session, now: dt.datetime, code: str = code, gbsec: str = gbsec, q: float = p.quality,
                     vote_online: bool = p.online) -> None:
            n = rng.randint(8, 20)
            ballots = [{"rating": round(max(0, min(100, rng.gauss(q * 100, 6))), 1),
                        "satisfied_with_members": rng.random() < q + 0.1,
                        "satisfied_with_secretary": rng.random() < q + 0.15} for _ in range(n)]
            weights = repository.load_case(s, code).campaign.grading.weights
            extra = {k: round(max(0.0, min(100.0, rng.gauss(q * 100, 5))), 1)
                     for k in ("peer", "superior") if getattr(weights, k)}  # seed 004: 分类互评, 上级考评
            if vote_online:  # one branch votes online: one-time codes, anonymous ballots, a commitment
                from workflow import ballots as online

                b = online.open_ballot(s, code, actor(s, gbsec), closes_at=now + dt.timedelta(days=1), now=now)
                for issued, answers in zip(online.issue_codes(s, b.id, actor(s, gbsec), n, now=now), ballots):
                    scores = [c["score"] for c in b.form["rating"]["choices"]]
                    near = min(scores, key=lambda x: abs(x - float(answers["rating"])))
                    online.cast_vote(s, issued.code, {**answers, "rating": near}, now=now)
                online.close_ballot(s, b.id, actor(s, gbsec), now=now)
            else:
                service.record(s, code, actor(s, gbsec), {"ballots": ballots, **extra}, now=now)
            service.advance(s, code, actor(s, gbsec), now=now)

        def grade(s: Session, now: dt.datetime, code: str = code, org: str = org, members: list[str] = members) -> None:
            service.compute_grade(s, code, actor(s, members[0]), now=now)
            for m in members[:3]:
                service.sign(s, code, actor(s, m), now=now)
            service.advance(s, code, actor(s, org), now=now)
            service.publish(s, code, actor(s, org), now=now)

        base = {"survey": d(3, 20, 8), "self": d(4, 3, 5), "eval": d(4, 12, 4), "grade": d(4, 20, 2)}
        sim.at(_at(base["survey"] + dt.timedelta(days=lag)), f"{code} 调查摸底", survey)
        sim.at(_at(base["self"] + dt.timedelta(days=lag), 15), f"{code} 支部自评", self_assess)
        sim.at(_at(base["eval"] + dt.timedelta(days=lag)), f"{code} 测评", evaluate)
        grade_day = base["grade"] + dt.timedelta(days=max(lag, 0) // 2)
        sim.at(_at(grade_day, 16), f"{code} 党委评定", grade)

        pub_done = grade_day + dt.timedelta(days=10)
        if p.objection:
            def obj(s: Session, now: dt.datetime, code: str = code) -> None:
                service.lodge_objection(s, code, actor(s, "gb-g@demo.edu.cn"),
                                        "该支部上年度受到群众投诉，自评第 18 项得满分与事实不符。", now=now)

            def uphold(s: Session, now: dt.datetime, code: str = code, org: str = org,
                       members: list[str] = members) -> None:
                case = repository.load_case(s, code)
                oid = case.state["objections"][-1]["id"]
                service.resolve_objection(s, code, actor(s, org), oid, upheld=True,
                                          reason="经核实，上年度确有一次群众投诉，异议成立，退回党委重新评定。", now=now)
                service.compute_grade(s, code, actor(s, members[0]), now=now)
                service.adjust_grade(s, code, actor(s, members[0]), "backward",
                                     "上年度受到群众投诉且未整改到位，党委研究决定调整为后进。", now=now)
                for m in members[:3]:
                    service.sign(s, code, actor(s, m), now=now)
                service.advance(s, code, actor(s, org), now=now)
                service.publish(s, code, actor(s, org), now=now)

            sim.at(_at(grade_day + dt.timedelta(days=2), 11), f"{code} 提出异议", obj)
            sim.at(_at(grade_day + dt.timedelta(days=4), 11), f"{code} 异议成立", uphold)
            pub_done = grade_day + dt.timedelta(days=16)

        def close_publicity(s: Session, now: dt.datetime, code: str = code, org: str = org) -> None:
            service.advance(s, code, actor(s, org), now=now)

        sim.at(_at(pub_done, 10), f"{code} 公示结束", close_publicity)

        n_items = rng.randint(2, 4)

        def plan(s: Session, now: dt.datetime, code: str = code, n_items: int = n_items) -> None:
            case = repository.load_case(s, code)
            problems = ["组织生活不够规范", "党员发展后备力量不足", "支部特色品牌不鲜明", "群众满意度有待提高", "制度落实有空转"]
            measures = ["每月固定主题党日并留存记录", "建立入党积极分子培养台账", "开展“一支部一品牌”创建", "开展走访谈心", "逐项对照制度自查"]
            items = [{"problem": problems[i], "measure": measures[i], "due": dt.date(year, 7, 31).isoformat(),
                      "contact": "党委委员 吴国强"} for i in range(n_items)]
            data: dict[str, Any] = {"items": items, "submitted": True}
            scale = case.campaign.grading.scale
            if case.state["final_grade"] and scale.by_code(case.state["final_grade"]).yellow_card:
                data["self_analysis"] = "支部班子对照标准查找不足：组织生活不规范，书记抓党建精力投入不够。"
            service.record(s, code, sec(s, code), data, now=now)

        sim.at(_at(d(5, 20, 10) + dt.timedelta(days=lag)), f"{code} 整改方案", plan)
        for i in range(1, n_items + 1):
            def done(s: Session, now: dt.datetime, code: str = code, i: int = i) -> None:
                service.complete_item(s, code, sec(s, code), i, f"第 {i} 项已完成，附会议记录和照片。", now=now)

            sim.at(_at(d(7, 1, 40) + dt.timedelta(days=lag)), f"{code} 整改第{i}项", done)

        def finish_rect(s: Session, now: dt.datetime, code: str = code) -> None:
            service.advance(s, code, sec(s, code), now=now)

        sim.at(_at(d(8, 15, 10) + dt.timedelta(days=lag), 17), f"{code} 整改完成", finish_rect)

        def inspect(s: Session, now: dt.datetime, code: str = code, q: float = p.quality, fail: bool = p.fail_inspection,
                    gbsec: str = gbsec) -> None:
            score = round(min(100, q * 100 + rng.uniform(0, 12)), 1)
            data: dict[str, Any] = {"passed": not fail, "inspected_on": now.date().isoformat(), "regrade_score": score,
                                    "summary": "整改事项全部完成，组织生活规范，群众评价提升。" if not fail
                                    else "整改流于形式，佐证材料不足，限期重新整改。"}
            if fail:
                data["new_deadline"] = (now.date() + dt.timedelta(days=10)).isoformat()
            service.inspect(s, code, actor(s, gbsec), data, now=now)
            if not fail:
                service.advance(s, code, actor(s, gbsec), now=now)

        insp_day = d(8, 26, 6) + dt.timedelta(days=max(lag, 0) // 3)
        sim.at(_at(insp_day, 10), f"{code} 检查验收", inspect)
        if p.fail_inspection:
            def redo(s: Session, now: dt.datetime, code: str = code) -> None:
                who = sec(s, code)
                service.record(s, code, who, {"submitted": True}, now=now)
                items = repository.load_case(s, code).state["records"]["rectification"]["items"]
                for i in range(1, len(items) + 1):
                    service.complete_item(s, code, who, i, f"第 {i} 项重新整改到位，补充佐证材料。", now=now)
                service.advance(s, code, who, now=now)

            def reinspect(s: Session, now: dt.datetime, code: str = code, gbsec: str = gbsec) -> None:
                service.inspect(s, code, actor(s, gbsec), {"passed": True, "inspected_on": now.date().isoformat(),
                                                          "regrade_score": 78.0,
                                                          "summary": "重新整改到位，支部面貌明显改善。"}, now=now)
                service.advance(s, code, actor(s, gbsec), now=now)

            sim.at(_at(insp_day + dt.timedelta(days=4), 15), f"{code} 重新整改", redo)
            sim.at(_at(insp_day + dt.timedelta(days=6), 10), f"{code} 再次验收", reinspect)


def setup(target: Path, *, year: int, n_branches: int, seed: int) -> tuple[Engine, random.Random, list[Plan]]:
    if target.exists() and any(target.iterdir()):
        if not (target / DEMO_MARKER).exists():
            raise InvalidInput(f"目录 {target} 不是空的，也不是演示程序建立的：演示不会删除它，请换一个目录（--data-dir）")
        shutil.rmtree(target)
    target.mkdir(parents=True, exist_ok=True)
    (target / DEMO_MARKER).write_text("branchflow demo data: `branchflow demo` may delete and rebuild this folder\n")
    engine = make_engine(f"sqlite:///{(target / 'branchflow.db').as_posix()}")
    upgrade(engine)
    rng = random.Random(seed)
    start = _at(dt.date(year, 3, 1), 8)
    orgs = [(inst, sample_org(n_branches if i == 0 else OTHER_BRANCHES, rng, inst))
            for i, inst in enumerate(INSTITUTIONS)]
    with session_factory(engine)() as s, s.begin():
        from workflow.tenancy import add_committee

        add_committee(s, PARENT, PARENT_NAME)
        for inst, rows in orgs:
            add_committee(s, inst.committee, inst.name, parent=PARENT)
            import_rows(s, rows)
            for email, name, roles, scope in inst.staff:
                add_person(s, email, name, roles, scope)
            for gb_code, gb_name, _, _ in inst.general_branches:
                add_person(s, inst.gb_secretary(gb_code), f"{gb_name}书记", [Role.general_branch_secretary], gb_code)
            create_campaign(s, preset=inst.preset, year=year, now=start, committee=inst.committee)
        add_person(s, PARENT_ORG[0], PARENT_ORG[1], [Role.org_department], PARENT)  # reads the roll-up below it
        for email, name, roles, scope in STAFF:
            if Role.auditor in roles:
                add_person(s, email, name, roles, scope)
        # Everyone in the demo logs in to the web pages with the password DEMO_PASSWORD.
        from argon2 import PasswordHasher

        from workflow.models import Person

        demo_hash = PasswordHasher().hash(DEMO_PASSWORD)
        for person in s.scalars(select(Person)):
            person.password_hash = demo_hash
    plans = []
    for n, (inst, rows) in enumerate(orgs):
        for i, r in enumerate(rows):
            speed = ["fast", "normal", "normal", "late"][(i + n) % 4]
            quality = [0.93, 0.8, 0.7, 0.55, 0.88, 0.75][(i + 2 * n) % 6]
            plans.append(Plan(code=r.code, speed=speed, quality=quality, inst=inst, gb_code=r.general_branch_code or "",
                              online=n == 0 and i == 0))
    plans[1].objection = True
    plans[3].fail_inspection = True
    return engine, rng, plans


def _campaign_code(session: Session, inst: Institution, year: int) -> str:
    from workflow.models import CampaignRow, Committee

    code = session.scalar(select(CampaignRow.code).join(Committee, Committee.id == CampaignRow.committee_id)
                          .where(Committee.code == inst.committee, CampaignRow.year == year))
    assert code is not None
    return code


def _institution(s: Session, inst: Institution, year: int, echo: Callable[[str], None]) -> dict[str, Any]:
    st = views.campaign_stats(s, campaign=_campaign_code(s, inst, year))
    stages = {x["label"]: x["count"] for x in st["stages"] if x["count"]}
    first = {x["label"]: x["count"] for x in st["grades"]}
    echo(f"【{inst.name} · {inst.preset} 预设 · 活动 {st['campaign']}】党支部 {st['branches']} 个")
    echo("分类定级结果：" + "，".join(f"{k} {v} 个" for k, v in first.items()))
    echo("当前环节：" + "，".join(f"{k} {v} 个" for k, v in stages.items()))
    rate = f"{st['conversion_rate']:.0%}" if st["conversion_rate"] is not None else f"（无{st['lowest_grade']}支部）"
    echo(f"晋位升级：{st['moved_up']} 个支部再次定级高于首次定级；{st['lowest_grade']}支部转化率 {rate}（目标 50%）")
    return {"campaign": st["campaign"], "stages": stages, "first": first}


def _rollup(s: Session, now: dt.datetime, year: int, echo: Callable[[str], None]) -> dict[str, Any]:
    from workflow.rollup import rollup

    r = rollup(s, service.actor_for(s, PARENT_ORG[0]), now=now, committee=PARENT, year=year)
    echo(f"===== {r['committee_name']} · 下级党委汇总（只读，{PARENT_ORG[1]} 所见）=====")
    for row in [*r["rows"], r["total"]]:
        if row["kind"] == "本级" and not row["branches"]:
            continue
        grades = "，".join(f"{g['label']} {g['count']}" for g in row["grades"]) or "尚未定级"
        echo(f"  {row['name']}：党支部 {row['branches']} 个，已验收 {row['accepted']} 个，逾期 {row['overdue']} 个；"
             f"定级 {grades}")
    return {"rows": {row["committee"]: row["branches"] for row in r["rows"]}, "total": r["total"]["branches"]}


def next_year(engine: Engine, inst: Institution, year: int, echo: Callable[[str], None]) -> dict[str, Any]:
    """Open the institution's next year from this one (`campaign create --from`), as its 组织部 would."""
    from workflow import yearover
    from workflow.errors import CalendarUnknown
    from workflow.models import CaseRow

    now = _at(dt.date(year, 12, 15), 9)
    with session_factory(engine)() as s, s.begin():
        source = _campaign_code(s, inst, year)
        try:
            row, review = yearover.create_from(s, source=source, year=year + 1, now=now, actor=inst.org)
            calendar = "工作日历已知"
        except CalendarUnknown:  # the State Council's schedule for that year is not in chinesecalendar yet
            row, review = yearover.create_from(s, source=source, year=year + 1, now=now, actor=inst.org,
                                               weekdays_only=True)
            calendar = "该年节假日尚未公布：明确选择仅按周一至周五计算工作日（已记录）"
        scale = campaign_of_row(row).grading.scale
        previous = dict(s.execute(select(CaseRow.previous_grade, func.count()).where(CaseRow.campaign_id == row.id)
                                  .group_by(CaseRow.previous_grade)).tuples().all())
        code = row.code
    carried = "，".join(f"{b.grade} {previous.get(b.code, 0)} 个" for b in scale.bands)
    line = (f"下一年度：{inst.name} 由 {source} 顺延开启 {code}（campaign create --from {source} --year {year + 1}；"
            f"{calendar}），立案 {review.opened} 个党支部，带入上年等级：{carried}")
    echo(line)
    return {"code": code, "opened": review.opened, "previous": previous}


def campaign_of_row(row: Any) -> Any:
    from workflow.repository import campaign_of

    return campaign_of(row)


def summary(engine: Engine, plans: list[Plan], now: dt.datetime, echo: Callable[[str], None],
            whole_year: bool = True, after_rollup: list[str] | None = None) -> dict[str, Any]:
    year = now.year
    main = INSTITUTIONS[0]
    with session_factory(engine)() as s:
        echo("")
        span = "模拟全年汇总" if whole_year else f"模拟至 {now:%m月%d日} 的汇总"
        echo(f"===== 三所院校并行 · {year} 年基层组织建设年 · {span} =====")
        each = {}
        for inst in INSTITUTIONS:
            each[inst.committee] = _institution(s, inst, year, echo)
            echo("")
        roll = _rollup(s, now, year, echo)
        for line in after_rollup or []:
            echo(line)
        main_code = each[main.committee]["campaign"]
        rows = views.list_cases(s, now=now, campaign=main_code)
        echo("")
        echo(f"{main.name} 各支部情况：")
        for r in rows:
            echo(f"  {r['code']} {r['name']:<16} {r['stage_label']:<8} 定级 {r['grade_label'] or '-'}")
        obj = next(p for p in plans if p.objection)
        h = views.history(s, obj.code, campaign=main_code)
        echo("")
        what = "异议成立的支部" if whole_year else "年内将有异议成立的支部"
        echo(f"{what} {obj.code}（{h['branch']['name']}）的完整记录（重放）：")
        for e in h["events"]:
            if e["kind"] in ("reminded", "escalated", "supervision_order"):
                continue
            local = audit.parse_iso(e["at"]).astimezone(TZ).strftime("%m-%d %H:%M")
            echo(f"  #{e['seq']:<3} {local} {e['label']}：{e['description']}")
        report = audit.verify(s)
        echo("")
        echo(f"审计校验：{report.cases} 个支部、{report.events} 条事件，" + ("哈希链完整，当前状态与重放一致 ✓" if report.ok else f"发现 {len(report.problems)} 处问题 ✗"))
        first = each[main.committee]
        return {"stages": dict(first["stages"]), "first": dict(first["first"]), "audit_ok": report.ok,
                "events": report.events, "institutions": each, "rollup": roll}


def run_demo(target: Path, *, year: int, n_branches: int = 36, seed: int = 2026, until: dt.date | None = None,
             echo: Callable[[str], None] = print, on_day_factory: Callable[[Engine], Callable[[dt.datetime], None]] | None = None) -> dict[str, Any]:
    engine, rng, plans = setup(target, year=year, n_branches=n_branches, seed=seed)
    echo(f"演示数据库：{target / 'branchflow.db'}")
    for inst in INSTITUTIONS:
        n = sum(1 for p in plans if p.inst is inst)
        echo(f"{inst.name}（上级：{PARENT_NAME}）：已导入 {n} 个党支部（{len(inst.general_branches)} 个党总支），"
             f"人员 {len(inst.staff) + len(inst.general_branches)} 名；活动：{inst.preset} 预设放在 {year} 年")
    sim = Simulation(engine, year, rng)
    plan_year(sim, plans, year)
    if on_day_factory is None:  # the scheduler's daily tick: reminders and escalations into a .eml sink
        from notifications.demo import daily_tick

        on_day = daily_tick(engine, target / "mail")
    else:
        on_day = on_day_factory(engine)
    last = until or dt.date(year, 9, 15)
    sim.run(on_day=on_day, end=last)
    end = _at(last, 18)
    if sim.refusals:
        echo(f"模拟中被系统拒绝的操作 {len(sim.refusals)} 次（如逾期未满足条件），例如：")
        for r in sim.refusals[:5]:
            echo(f"  {r}")
    later: list[str] = []
    if until is None:  # the year is over: the Henan college opens next year's campaign from this one
        nxt = next_year(engine, INSTITUTIONS[1], year, later.append)
    out = summary(engine, plans, end, echo, whole_year=until is None, after_rollup=later)
    if until is None:
        out["next_year"] = nxt
    if on_day_factory is None:
        from notifications.demo import mail_summary

        out["mail"] = mail_summary(engine, target / "mail", echo)
    echo("")
    echo(f"查看某个支部：BRANCHFLOW_DATA_DIR={target} branchflow show {plans[1].code} --now {end.date()}")
    echo(f"网页（密码均为 haitang-demo-2026，例如组织部 zuzhibu@demo.edu.cn）：BRANCHFLOW_DATA_DIR={target} "
         f"branchflow web --now {end.isoformat(timespec='minutes')}")
    echo(f"重放历史：  BRANCHFLOW_DATA_DIR={target} branchflow history {plans[1].code} --at {year}-04-25")
    engine.dispose()
    if out.get("mail", {}).get("trouble"):
        from notifications.dispatch import MailUndeliverable

        raise MailUndeliverable(out["mail"]["trouble"])  # the CLI ends with "错误：…" and exit 8
    return out
