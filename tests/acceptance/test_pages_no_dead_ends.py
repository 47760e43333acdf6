"""No dead ends (issue 16, point 2), on the pages alone in real Chromium: a branch that scores 后进 (yellow
card) walks every stage — survey, self-assessment, member evaluation, committee grading and sign-off,
publicity with an objection that is upheld (back to grading, graded, signed and published again),
rectification (the plan without the self-analysis is refused with the way out on the page), an inspection
that fails (back to rectification, and again) and the acceptance. At each step the test reads what the
person sees; then the printable record shows what was filed, and the history speaks plain Chinese with
names, the objector known only to the organisation department and the auditor."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from states.base import Stage
from tests.acceptance.conftest import PASSWORD, PEOPLE, Server, Site, shot
from tests.support.world import at

pytestmark = pytest.mark.slow


class People:
    """One logged-in desktop page per persona (each its own browser context, so its own session)."""

    def __init__(self, chromium: Any, server: Server) -> None:
        self.chromium, self.server, self.pages = chromium, server, {}  # type: dict[str, Any]

    def __call__(self, who: str, path: str) -> Any:
        page = self.pages.get(who)
        if page is None:
            ctx = self.chromium.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
            page = ctx.new_page()
            page.set_default_timeout(15_000)
            page.goto(f"{self.server.url}/login")
            page.get_by_label("邮箱").fill(PEOPLE[who])
            page.get_by_label("密码").fill(PASSWORD)
            page.get_by_role("button", name="登录").click()
            page.wait_for_url(f"{self.server.url}/")
            self.pages[who] = page
        page.goto(f"{self.server.url}{path}")
        return page

    def close(self) -> None:
        for p in self.pages.values():
            p.context.close()


@pytest.fixture
def people(live: tuple[Site, Server], chromium: Any) -> Iterator[People]:
    p = People(chromium, live[1])
    yield p
    p.close()


def notice(page: Any) -> str:
    return str(page.get_by_role("status").inner_text())


def status(page: Any) -> str:
    return str(page.locator("#status").inner_text())


def grade_sign_publish(site: Site, people: People, day: int) -> None:
    """The committee computes the grade and two members sign on /committee; the organisation department
    moves it to publicity and publishes it from the branch page."""
    site.clock.now = at(4, day, 9)
    m1 = people("m1", "/committee")
    card = m1.locator("#c-B1")
    card.get_by_role("button", name="计算得分和等级").click()
    card = m1.locator("#c-B1")
    text = card.inner_text()
    assert "计算等级 后进" in text and "支部自评" in text and "权重" in text  # what they sign: the parts …
    card.locator("summary", has_text="支部自评逐项得分").click()
    assert "支部委员会能够自觉坚持党的路线方针政策" in card.locator(".sa-items").inner_text()  # … and the items
    card.get_by_role("button", name="签字确认（生物系教工党支部）").click()
    assert "签字 1/2：委员1" in m1.locator("#c-B1").inner_text()
    m2 = people("m2", "/committee")
    m2.locator("#c-B1").get_by_role("button", name="签字确认（生物系教工党支部）").click()
    assert "签字 2/2：委员1、委员2" in m2.locator("#c-B1").inner_text()
    org = people("org", "/committee")
    org.locator("#c-B1").get_by_role("button", name="签字已达法定人数，进入公示").click()
    org = people("org", "/branches/B1")
    assert "当前环节：公示" in status(org)
    assert "尚未发布公示" in status(org) and "→ 发布公示" in status(org)  # the way out, on the page
    org.get_by_role("button", name="发布公示").click()
    assert "已发布公示" in notice(org)


def test_a_yellow_carded_branch_walks_every_stage_on_the_pages(live: tuple[Site, Server], people: People) -> None:
    site, _ = live
    w = site.world
    rubric = w.case("B1").campaign.grading.rubric_for("teacher")

    # 1. survey — the general branch secretary
    site.clock.now = at(3, 20, 9)
    gb = people("gb1", "/branches/B1")
    assert "调查要点未填写" in status(gb) and "→ 填写调查要点" in status(gb)
    for box in gb.locator("input[type=radio][value=yes]").all():
        box.check()
    gb.get_by_role("button", name="保存并提交（进入下一环节）").click()
    assert "已提交，党支部进入“支部自评”环节" in notice(gb)

    # 2. self-assessment — the branch's secretary scores half of every item: 后进
    site.clock.now = at(4, 2, 9)
    sec = people("sec1", "/branches/B1")
    unmet = status(sec)
    assert "以下评分项尚未打分" in unmet and "→ 逐项打分" in unmet and "→ 填写支部大会日期" in unmet
    for it in rubric.items:
        sec.locator(f"#s_{it.id}").fill(f"{it.max * 0.5:g}")
    sec.locator("#meeting_date").fill("2026-04-01")
    sec.locator("#attendance").fill("8")
    sec.get_by_role("button", name="保存并提交（进入下一环节）").click()
    assert "已提交，党支部进入“党员群众测评”环节" in notice(sec)
    sec = people("sec1", "/branches/B1/record#self_assessment")  # what was filed stays readable
    scores = sec.locator("#sa-scores").inner_text()
    assert "支部委员会能够自觉坚持党的路线方针政策" in scores and "未打分" not in scores and "50" in scores

    # 3. member evaluation — typed from paper ballots
    site.clock.now = at(4, 12, 9)
    gb = people("gb1", "/branches/B1")
    gb.locator("[name=ballots]").fill("10")
    gb.locator("[name=rating]").fill("50")
    gb.locator("[name=sat_members]").fill("90")
    gb.locator("[name=sat_secretary]").fill("90")
    gb.get_by_role("button", name="保存并提交（进入下一环节）").click()
    assert "已提交，党支部进入“党委评定”环节" in notice(gb)

    # 4.–5. committee grading and sign-off, publicity; an objection is lodged and upheld
    grade_sign_publish(site, people, 20)
    site.clock.now = at(4, 21, 9)
    other = people("gb2", "/publicity")
    card = other.locator("#p-B1")
    card.locator("textarea[name=text]").fill("该支部组织生活记录与实际不符。")
    card.get_by_role("button", name="提出异议").click()
    assert "已登记异议 #1" in notice(other)
    sec = people("sec1", "/branches/B1")
    history = sec.locator("#history").inner_text()
    assert "该支部组织生活记录与实际不符" in history and "有人提出异议" in history
    assert "总支书记 孙" not in sec.content() and "gb2@test.cn" not in sec.content()  # the objector stays unknown
    org = people("org", "/branches/B1")
    assert "有 1 条异议尚未处理" in status(org) and "→ 处理异议" in status(org)
    assert "总支书记 孙" in org.locator("#history").inner_text()  # … except to the organisation department
    org.locator("input[name=verdict][value=upheld]").check()
    org.locator("#objections input[name=reason]").fill("经核实，组织生活记录不全。")
    org.get_by_role("button", name="处理异议").click()
    assert "异议成立，已退回党委评定" in notice(org)
    assert "当前环节：党委评定" in status(org)
    assert "公示 → 党委评定（异议成立，退回重新评定）" in org.locator("#history").inner_text()

    grade_sign_publish(site, people, 22)
    site.clock.now = at(5, 12, 9)  # the publicity is over
    org = people("org", "/branches/B1")
    assert "本环节条件已满足" in status(org)
    org.get_by_role("button", name="推进到下一环节").click()
    assert "已推进到“整改”环节" in notice(org) or "整改" in status(org)

    # 6. rectification — yellow card: the plan without the self-analysis is refused, with the way out
    site.clock.now = at(5, 20, 9)
    sec = people("sec1", "/branches/B1")
    assert "定级结果：后进" in status(sec)
    sec.locator("#problem_1").fill("组织生活不规范")
    sec.locator("[name=measure_1]").fill("每月开展主题党日")
    sec.locator("[name=due_1]").fill("2026-07-31")
    sec.locator("[name=contact_1]").fill("委员1")
    sec.locator("#submitted").check()
    sec.get_by_role("button", name="保存", exact=True).click()
    alert = sec.get_by_role("alert").first
    assert "被亮黄牌的支部须提交自我剖析材料" in alert.inner_text()
    assert alert.get_by_role("link", name="→ 填写自我剖析").get_attribute("href") == "#self_analysis"
    assert sec.locator("#self_analysis").get_attribute("aria-invalid") == "true"
    assert sec.locator("#problem_1").input_value() == "组织生活不规范"  # the input is kept
    assert w.case("B1").state["records"].get("rectification") is None  # nothing was saved
    shot(sec, "16-rectification-self-analysis-refused")
    alert.get_by_role("link", name="→ 填写自我剖析").click()
    sec.locator("#self_analysis").fill("对照标准查找不足：组织生活不经常，党员教育管理松散。")
    sec.get_by_role("button", name="保存", exact=True).click()
    assert "已保存" in notice(sec)
    assert sec.locator("#self_analysis").is_visible()  # still there after the plan is submitted
    sec.locator("textarea[name=evidence]").first.fill("4–5 月主题党日记录两份。")
    sec.get_by_role("button", name="登记完成").first.click()
    assert "第 1 项已登记完成" in notice(sec)
    sec.get_by_role("button", name="整改完成，申请验收").click()
    assert "检查验收" in status(sec)

    # 7. the inspection fails: back to rectification, and again
    site.clock.now = at(6, 5, 9)
    gb = people("gb1", "/branches/B1/record#rectification")
    plan = gb.locator("#plan").inner_text()
    assert "每月开展主题党日" in plan and "4–5 月主题党日记录两份" in plan  # the inspector sees plan and evidence
    assert "组织生活不经常" in gb.locator("#self-analysis-text").inner_text()
    gb = people("gb1", "/branches/B1")
    assert "4–5 月主题党日记录两份" in gb.locator("#plan-to-inspect + .card").inner_text()  # beside the form
    gb.locator("input[name=passed][value=no]").check()
    gb.locator("#inspected_on").fill("2026-06-05")  # no re-grade score: a failed inspection needs none
    gb.locator("#new_deadline").fill("2026-07-15")
    gb.locator("[name=summary]").fill("主题党日记录不全，限期补齐。")
    gb.get_by_role("button", name="记录验收并完成").click()
    assert "当前环节：整改" in status(gb)
    site.clock.now = at(6, 10, 9)
    sec = people("sec1", "/branches/B1")
    assert "整改方案尚未提交" in status(sec) and "→ 勾选“提交整改方案”并保存" in status(sec)
    assert sec.locator("#self_analysis").input_value().startswith("对照标准查找不足")
    sec.locator("#submitted").check()
    sec.get_by_role("button", name="保存", exact=True).click()
    assert "已保存" in notice(sec)
    sec.locator("textarea[name=evidence]").first.fill("补齐 6 月主题党日记录及照片。")
    sec.get_by_role("button", name="登记完成").first.click()
    sec.get_by_role("button", name="整改完成，申请验收").click()
    assert "检查验收" in status(sec)

    # 8. accepted
    site.clock.now = at(6, 20, 9)
    gb = people("gb1", "/branches/B1")
    gb.locator("input[name=passed][value=yes]").check()
    gb.locator("#inspected_on").fill("2026-06-20")
    gb.locator("#regrade_score").fill("72")
    gb.locator("[name=summary]").fill("整改到位，再次定级为一般。")
    gb.get_by_role("button", name="记录验收并完成").click()
    assert "已验收" in status(gb) and "再次定级 一般" in status(gb)
    assert w.stage("B1") is Stage.accepted

    # the record, printable, for the branch's own secretary: every stage, no codes, no objector
    sec = people("sec1", "/branches/B1/record")
    page = sec.locator("#record").inner_text()
    for words in ("调查摸底", "组织设置是否合理", "支部委员会能够自觉坚持党的路线方针政策", "有效票 10 张", "支部自评",
                  "委员1", "委员2", "有人提出异议", "处理理由：经核实，组织生活记录不全。", "每月开展主题党日",
                  "第 1 次检查（2026-06-05）：未通过", "第 2 次检查（2026-06-20）：通过", "整改到位"):
        assert words in page, words
    assert "总支书记 孙" not in page and "@" not in page
    shot(sec, "17-record-printable")
    sec.emulate_media(media="print")
    assert not sec.locator("header.top").is_visible()  # the print stylesheet hides the navigation
    sec.emulate_media(media="screen")

    # the history in plain Chinese with names; the system's reminders behind a toggle kept in the URL
    sec = people("sec1", "/branches/B1")
    history = sec.locator("#history").inner_text()
    assert "填报“支部自评”：评分 18 项（合计 50 分），支部大会日期 2026-04-01，到会 8 人" in history
    assert "书记B1" in history and "总支书记 赵" in history
    assert not re.search(r"attendance|meeting_date|average|backward|system|GB1|@", history), history
    toggle = sec.locator("#system-toggle")
    assert "显示系统提醒" in toggle.inner_text()
    toggle.click()
    assert "system=1" in sec.url and "隐藏系统提醒" in sec.locator("#system-toggle").inner_text()
