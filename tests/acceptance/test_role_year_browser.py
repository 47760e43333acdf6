"""Every role's year on the pages alone, in real Chromium, at desktop (1280×800) and phone (390×844) size
(issue 16, point 7): the general-branch secretary files the survey, the branch secretary the 18 scores of
the self-assessment, the general branch the tally; committee members compute and sign; the organisation
department moves the branch to publicity and publishes it, dismisses an objection from its queue, reminds
two overdue branches in bulk and reads the dashboard; the secretary files the rectification plan and its
evidence, the general branch accepts it; the auditor reads the history, the printable record and replays
and verifies on the audit page. The test reads the Chinese a person sees; at phone size nothing on any
page is wider than the screen; the print stylesheet hides the navigation.

Screenshots (one per step and size, ``<size>-NN-<what>.png``) go to the folder named by the environment
variable ``BRANCHFLOW_SCREENSHOTS`` when it is set (CI keeps them as artefacts when it points at a kept
folder), else to pytest's ``tmp_path / "screenshots"`` (thrown away with the run)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from states.base import Stage
from tests.acceptance.conftest import PASSWORD, PEOPLE, Server, Site
from tests.support.world import at

pytestmark = pytest.mark.slow

# Read at import: tests/conftest.py clears every BRANCHFLOW_* variable before each test.
SHOTS = os.environ.get("BRANCHFLOW_SCREENSHOTS")
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


class Year:
    """One logged-in page per persona at one screen size, and the screenshots of the walk."""

    def __init__(self, chromium: Any, server: Server, size: str, folder: Path) -> None:
        self.chromium, self.server, self.size, self.folder = chromium, server, size, folder
        self.pages: dict[str, Any] = {}
        self.n = 0
        self.label = size  # the screenshots' prefix

    def __call__(self, who: str, path: str) -> Any:
        page = self.pages.get(who)
        if page is None:
            phone = self.size == "phone"
            ctx = self.chromium.new_context(viewport=SIZES[self.size], locale="zh-CN", is_mobile=phone,
                                            has_touch=phone, device_scale_factor=2 if phone else 1)
            page = ctx.new_page()
            page.set_default_timeout(15_000)
            page.goto(f"{self.server.url}/login")
            page.get_by_label("邮箱").fill(PEOPLE[who])
            page.get_by_label("密码").fill(PASSWORD)
            page.get_by_role("button", name="登录").click()
            page.wait_for_url(f"{self.server.url}/")
            self.pages[who] = page
        page.goto(f"{self.server.url}{path}")
        self.fits(page)
        return page

    def fits(self, page: Any) -> None:
        """Nothing on the page is wider than the screen (at phone size the page never scrolls sideways)."""
        width, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width <= inner, f"{page.url}: {width}px wide on a {inner}px screen"

    def shot(self, page: Any, what: str) -> None:
        self.fits(page)
        self.n += 1
        self.folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(self.folder / f"{self.label}-{self.n:02d}-{what}.png"), full_page=True)

    def close(self) -> None:
        for p in self.pages.values():
            p.context.close()


@pytest.fixture(params=list(SIZES))
def year(request: pytest.FixtureRequest, live: tuple[Site, Server], chromium: Any, tmp_path: Path) -> Iterator[Year]:
    folder = Path(SHOTS) if SHOTS else tmp_path / "screenshots"
    y = Year(chromium, live[1], request.param, folder)
    yield y
    y.close()


def notice(page: Any) -> str:
    return str(page.get_by_role("status").first.inner_text())


def status(page: Any) -> str:
    return " ".join(str(page.locator("#status").inner_text()).split())


def test_every_role_does_its_year_on_the_pages(live: tuple[Site, Server], year: Year) -> None:
    site, _ = live
    w = site.world
    submit = "保存并提交（进入下一环节）"

    # general-branch secretary: the survey (focus points grouped under a legend)
    site.clock.now = at(3, 20, 9)
    gb = year("gb1", "/branches/B1")
    assert "当前环节：调查摸底" in status(gb) and "→ 填写调查要点" in status(gb)
    assert gb.locator("fieldset legend", has_text="调查要点").count() >= 1
    for box in gb.locator("input[type=radio][value=yes]").all():
        box.check()
    year.shot(gb, "survey")
    gb.get_by_role("button", name=submit).click()
    assert "已提交，党支部进入“支部自评”环节" in notice(gb)

    # branch secretary: the self-assessment, 18 scores grouped by the rubric's parts
    site.clock.now = at(4, 2, 9)
    sec = year("sec1", "/branches/B1")
    assert "以下评分项尚未打分" in status(sec)
    rubric = w.case("B1").campaign.grading.rubric_for("teacher")
    assert len(rubric.items) == 18 and sec.locator("input[id^=s_]").count() == 18
    assert sec.locator("fieldset legend").count() >= 2  # one legend per part of the rubric
    for it in rubric.items:
        sec.locator(f"#s_{it.id}").fill(f"{it.max * 0.9:g}")
    sec.locator("#meeting_date").fill("2026-04-01")
    sec.locator("#attendance").fill("4")  # not more than half of 10: refused, the focus on the first error
    sec.get_by_role("button", name=submit).click()
    assert "未超过党员总数 10 人的半数" in sec.get_by_role("alert").first.inner_text()
    assert sec.evaluate("document.activeElement && document.activeElement.id") == "attendance"
    assert sec.locator(f"#s_{rubric.items[0].id}").input_value() == f"{rubric.items[0].max * 0.9:g}"
    year.shot(sec, "self-assessment-refused")
    sec.locator("#attendance").fill("8")
    sec.get_by_role("button", name=submit).click()
    assert "已提交，党支部进入“党员群众测评”环节" in notice(sec)

    # general-branch secretary: the tally of the member evaluation
    site.clock.now = at(4, 12, 9)
    gb = year("gb1", "/branches/B1")
    assert "当前环节：党员群众测评" in status(gb)
    gb.locator("[name=ballots]").fill("10")
    gb.locator("[name=rating]").fill("90")
    gb.locator("[name=sat_members]").fill("95")
    gb.locator("[name=sat_secretary]").fill("95")
    year.shot(gb, "tally")
    gb.get_by_role("button", name=submit).click()
    assert "已提交，党支部进入“党委评定”环节" in notice(gb)

    # committee members: compute and sign; the organisation department moves it on and publishes
    site.clock.now = at(4, 20, 9)
    m1 = year("m1", "/committee")
    m1.locator("#c-B1").get_by_role("button", name="计算得分和等级").click()
    card = m1.locator("#c-B1")
    assert "计算等级" in card.inner_text() and "权重" in card.inner_text()
    card.get_by_role("button", name="签字确认（生物系教工党支部）").click()
    assert "签字 1/2：委员1" in m1.locator("#c-B1").inner_text()
    year.shot(m1, "committee-signed")
    m2 = year("m2", "/committee")
    m2.locator("#c-B1").get_by_role("button", name="签字确认（生物系教工党支部）").click()
    assert "签字 2/2：委员1、委员2" in m2.locator("#c-B1").inner_text()
    org = year("org", "/committee")
    org.locator("#c-B1").get_by_role("button", name="签字已达法定人数，进入公示").click()
    org = year("org", "/branches/B1")
    assert "当前环节：公示" in status(org)
    org.get_by_role("button", name="发布公示").click()
    assert "已发布公示" in notice(org)

    # an objection (from another general branch), dismissed from the organisation department's queue
    site.clock.now = at(4, 21, 9)
    other = year("gb2", "/publicity")
    card = other.locator("#p-B1")
    card.locator("textarea[name=text]").fill("该支部自评分偏高。")
    card.get_by_role("button", name="提出异议").click()
    assert "已登记异议 #1" in notice(other)
    org = year("org", "/objections")
    queue = org.locator("#objection-queue")
    assert "生物系教工党支部" in queue.inner_text() and "该支部自评分偏高" in queue.inner_text()
    assert "总支书记 孙" not in queue.inner_text()  # the queue keeps the objector out of sight
    year.shot(org, "objection-queue")
    queue.locator("input[name=reason]").fill("经核实，自评分有会议记录为据。")
    queue.get_by_role("button", name="处理").click()
    org = year("org", "/objections")
    assert "目前没有待处理的异议" in org.locator("main").inner_text()

    # bulk: of the three overdue branches (B2 in the self-assessment, B3 and B4 in the survey), remind two
    site.clock.now = at(4, 22, 9)
    org = year("org", "/branches?overdue=1")
    rows = org.locator("table.list tbody tr")
    assert rows.count() == 3 and all("逾期" in rows.nth(i).inner_text() for i in range(3))
    year.shot(org, "list-overdue")
    for code in ("B3", "B4"):
        org.locator(f"input.pick[value='{code}']").check()
    org.get_by_role("button", name="催办", exact=True).click()
    org.wait_for_url("**/bulk")
    assert "成功 2 个" in org.get_by_role("status").first.inner_text()
    year.shot(org, "bulk-reminded")
    org = year("org", "/dashboard")
    assert "党支部" in org.locator(".stats").inner_text()
    year.shot(org, "dashboard")

    # after the publicity: advanced to rectification; the secretary's plan and evidence
    site.clock.now = at(5, 12, 9)
    org = year("org", "/branches/B1")
    org.get_by_role("button", name="推进到下一环节").click()
    assert "整改" in status(org)
    site.clock.now = at(5, 20, 9)
    sec = year("sec1", "/branches/B1")
    sec.locator("#problem_1").fill("组织生活记录不够完整")
    sec.locator("[name=measure_1]").fill("每次组织生活当场记录")
    sec.locator("[name=due_1]").fill("2026-06-30")
    sec.locator("[name=contact_1]").fill("书记B1")
    sec.locator("#submitted").check()
    sec.get_by_role("button", name="保存", exact=True).click()
    assert "已保存" in notice(sec)
    sec.locator("textarea[name=evidence]").first.fill("5 月组织生活记录一份。")
    sec.get_by_role("button", name="登记完成").first.click()
    assert "第 1 项已登记完成" in notice(sec)
    year.shot(sec, "rectification")
    sec.get_by_role("button", name="整改完成，申请验收").click()
    assert "检查验收" in status(sec)

    # the general branch accepts
    site.clock.now = at(6, 20, 9)
    gb = year("gb1", "/branches/B1")
    assert "每次组织生活当场记录" in gb.locator("main").inner_text()
    gb.locator("input[name=passed][value=yes]").check()
    gb.locator("#inspected_on").fill("2026-06-20")
    gb.locator("#regrade_score").fill("90")
    gb.locator("[name=summary]").fill("整改到位，验收通过。")
    gb.get_by_role("button", name="记录验收并完成").click()
    assert "已验收" in status(gb)
    assert w.stage("B1") is Stage.accepted

    # the auditor: history with names, the printable record, the audit page
    site.clock.now = at(6, 21, 9)
    aud = year("auditor", "/branches/B1")
    history = aud.locator("#history").inner_text()
    assert "书记B1" in history and "总支书记 赵" in history and "委员1" in history
    assert not re.search(r"attendance|meeting_date|system|@", history), history
    aud = year("auditor", "/branches/B1/record")
    record = aud.locator("#record").inner_text()
    for words in ("调查摸底", "支部自评", "有效票 10 张", "委员2", "每次组织生活当场记录", "整改到位"):
        assert words in record, words
    year.shot(aud, "record")
    aud.emulate_media(media="print")
    assert not aud.locator("header.top").is_visible()  # the print stylesheet hides the navigation
    assert not aud.locator("main button").first.is_visible() if aud.locator("main button").count() else True
    year.folder.mkdir(parents=True, exist_ok=True)
    pdf = year.folder / f"{year.label}-record-A4.pdf"
    aud.pdf(path=str(pdf), format="A4")  # the record on paper: one stage per page (seven stages)
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf.read_bytes()))
    assert pages >= 7, pages
    aud.emulate_media(media="screen")
    aud = year("auditor", "/audit")
    aud.get_by_label("党支部编码").fill("B1")
    aud.get_by_label("重放到该日（含当天）").fill("2026-04-05")
    aud.get_by_role("button", name="重放").click()
    assert "当时环节 党员群众测评" in " ".join(aud.locator("#replay").inner_text().split())
    aud.get_by_role("button", name="校验哈希链与当前状态").click()
    assert "校验通过" in aud.locator("#verify").inner_text()
    year.shot(aud, "audit")


def test_a_form_sent_after_the_session_ended_is_kept_through_the_log_in(live: tuple[Site, Server],
                                                                         chromium: Any, tmp_path: Path) -> None:
    """The secretary types the 18 scores, the session ends (idle), 保存并提交 lands on the log-in page that says
    the input is kept; another person logging in on that browser does not get it; the secretary does, on the
    branch page, filled in and not submitted."""
    import datetime as dt

    from sqlalchemy import select

    from workflow.models import WebSessionRow

    site, server = live
    w = site.world
    w.drive("B1", Stage.self_assessment)
    site.clock.now = at(4, 2, 9)
    year = Year(chromium, server, "phone", Path(SHOTS) if SHOTS else tmp_path / "screenshots")
    year.label = "phone-session"
    try:
        sec = year("sec1", "/branches/B1")
        rubric = w.case("B1").campaign.grading.rubric_for("teacher")
        for it in rubric.items:
            sec.locator(f"#s_{it.id}").fill(f"{it.max * 0.8:g}")
        sec.locator("#meeting_date").fill("2026-04-01")
        sec.locator("#attendance").fill("8")
        with w.sessions() as s, s.begin():  # idle for two hours
            for row in s.scalars(select(WebSessionRow)):
                row.last_seen_at = row.last_seen_at - dt.timedelta(hours=2)
        sec.get_by_role("button", name="保存并提交（进入下一环节）").click()
        sec.wait_for_url("**/login?**")
        assert "您刚才填写的内容已保留" in notice(sec)
        assert "csrf" not in sec.url and "s_1" not in sec.url  # nothing of the form in the URL
        year.shot(sec, "session-ended-input-kept")
        assert w.stage("B1") is Stage.self_assessment and not w.case("B1").state["records"].get("self_assessment")

        sec.get_by_label("邮箱").fill(PEOPLE["gb1"])  # somebody else on this browser: not theirs to see
        sec.get_by_label("密码").fill(PASSWORD)
        sec.get_by_role("button", name="登录").click()
        sec.wait_for_url(f"{server.url}/branches/B1")
        assert sec.locator(f"#s_{rubric.items[0].id}").count() == 0 or sec.locator(f"#s_{rubric.items[0].id}").input_value() == ""
        sec.locator("header").get_by_role("button", name="退出").click()

        sec.goto(f"{server.url}/login?next=/branches/B1")
        sec.get_by_label("邮箱").fill(PEOPLE["sec1"])
        sec.get_by_label("密码").fill(PASSWORD)
        sec.get_by_role("button", name="登录").click()
        sec.wait_for_url(f"{server.url}/branches/B1")
        assert "您在登录失效前填写的内容已恢复到表单中（尚未提交）" in notice(sec)
        for it in rubric.items:
            assert sec.locator(f"#s_{it.id}").input_value() == f"{it.max * 0.8:g}"
        assert sec.locator("#attendance").input_value() == "8"
        assert w.stage("B1") is Stage.self_assessment  # shown again, not submitted
        year.shot(sec, "session-ended-input-restored")
        sec.reload()  # taken once: a reload shows the page as stored
        assert sec.locator(f"#s_{rubric.items[0].id}").input_value() == ""
        sec.get_by_role("button", name="保存并提交（进入下一环节）").click()
        assert "已提交，党支部进入“党员群众测评”环节" not in sec.content()  # an empty form is refused as before
    finally:
        year.close()
