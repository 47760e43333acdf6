"""Real Chromium (Debian's, via Playwright) on a phone-sized screen against uvicorn on 127.0.0.1: a
secretary files the self-assessment and the branch advances; a committee member signs; an auditor replays
a date. Screenshots of the main pages go to tests/artifacts/ (look at them: Chinese must render)."""

from __future__ import annotations

from typing import Any

import pytest

from states.base import Stage
from tests.acceptance.conftest import PASSWORD, PEOPLE, Server, Site, shot
from tests.support.world import MEMBERS, ORG, at
from workflow import service

pytestmark = pytest.mark.slow


def log_in(page: Any, server: Server, who: str) -> None:
    page.goto(f"{server.url}/login")
    page.get_by_label("邮箱").fill(PEOPLE.get(who, who))
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(f"{server.url}/")


def test_a_secretary_sees_the_deadline_files_the_scores_and_the_branch_advances(
        live: tuple[Site, Server], phone: Any) -> None:
    site, server = live
    site.world.drive("B1", Stage.self_assessment)
    site.clock.now = at(4, 7, 9)  # self-assessment due 04-10: inside the reminder window
    log_in(phone, server, "sec1")
    item = phone.locator(".todo li").first
    assert "支部自评打分" in item.inner_text()
    assert item.locator(".badge.soon").inner_text() == "还剩 3 天，请抓紧"
    shot(phone, "01-todo-secretary")

    item.get_by_role("link", name="生物系教工党支部").click()
    phone.wait_for_url(f"{server.url}/branches/B1")
    assert "以下评分项尚未打分" in phone.locator("#unmet").inner_text()
    rubric = site.world.case("B1").campaign.grading.rubric_for("teacher")
    for it in rubric.items:
        phone.locator(f"#s_{it.id}").fill(f"{it.max * 0.9:g}")
    phone.get_by_label("支部大会日期").fill("2026-04-03")
    phone.get_by_label("到会人数（党员 10 人）").fill("4")  # not more than half: refused, nothing saved
    shot(phone, "02-branch-self-assessment-form")
    phone.get_by_role("button", name="保存并提交（进入下一环节）").click()
    alert = phone.get_by_role("alert")
    assert "支部大会到会 4 人，未超过党员总数 10 人的半数" in alert.inner_text()
    assert phone.locator("#s_1").input_value() == f"{rubric.items[0].max * 0.9:g}"  # the input is kept
    assert site.world.stage("B1") is Stage.self_assessment
    shot(phone, "03-branch-error-in-place")
    phone.locator("#s_18").scroll_into_view_if_needed()
    shot(phone, "03b-branch-error-fields-kept", full_page=False)

    phone.get_by_label("到会人数（党员 10 人）").fill("8")
    phone.get_by_role("button", name="保存并提交（进入下一环节）").click()
    assert "已提交，党支部进入“党员群众测评”环节" in phone.get_by_role("status").inner_text()
    assert "当前环节：党员群众测评" in phone.locator("#status").inner_text()
    assert site.world.stage("B1") is Stage.member_evaluation
    shot(phone, "04-branch-advanced")


def test_a_committee_member_signs(live: tuple[Site, Server], phone: Any) -> None:
    site, server = live
    w = site.world
    w.drive("B1", Stage.committee_grading)
    w.do(service.compute_grade, "B1", MEMBERS[0], now=at(4, 20))
    w.do(service.sign, "B1", MEMBERS[0], now=at(4, 20))
    site.clock.now = at(4, 20, 15)
    log_in(phone, server, "m2")
    assert "签字确认等级" in phone.locator(".todo").inner_text()
    phone.locator("header").get_by_role("link", name="党委评定签字").click()
    card = phone.locator("#c-B1")
    assert "签字 1/2" in card.inner_text()
    shot(phone, "05-committee-sign-off")
    card.get_by_role("button", name="签字确认（生物系教工党支部）").click()
    card = phone.locator("#c-B1")
    assert "签字 2/2" in card.inner_text() and "您已签字" in card.inner_text()
    assert len(w.case("B1").state["signatures"]) == 2


def test_an_auditor_replays_a_date_and_verifies(live: tuple[Site, Server], phone: Any) -> None:
    site, server = live
    site.world.drive("B1", Stage.member_evaluation)
    site.clock.now = at(4, 15)
    log_in(phone, server, "auditor")
    phone.locator("header").get_by_role("link", name="审计").click()
    phone.get_by_label("党支部编码").fill("B1")
    phone.get_by_label("重放到该日（含当天）").fill("2026-03-25")
    phone.get_by_role("button", name="重放").click()
    assert "当时环节 支部自评" in " ".join(phone.locator("#replay").inner_text().split())
    phone.get_by_role("button", name="校验哈希链与当前状态").click()
    assert "校验通过" in phone.locator("#verify").inner_text()
    shot(phone, "06-audit-replay")


def test_screens_of_the_dashboard_and_the_public_publicity_page(live: tuple[Site, Server], phone: Any) -> None:
    site, server = live
    w = site.world
    w.drive("B1", Stage.publicity)
    w.do(service.publish, "B1", ORG, now=at(4, 20, 11))
    w.drive("B2", Stage.member_evaluation)
    site.clock.now = at(4, 22)
    phone.goto(f"{server.url}/publicity")
    assert "生物系教工党支部" in phone.locator("#p-B1").inner_text()
    shot(phone, "07-publicity-public")
    log_in(phone, server, "org")
    phone.locator("header").get_by_role("link", name="工作总览").click()
    assert "党支部" in phone.locator(".stats").inner_text()
    shot(phone, "08-dashboard")
    # nothing on the phone-sized page is wider than the screen
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
