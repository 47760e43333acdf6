"""Real Chromium at 1280×800 (issue 16, point 4): a filtered list that keeps its state in the URL; a bulk
计算得分和等级 of several branches with one refused, the per-branch result shown; the organisation
department's to-do list with overdue work and an open objection, and the counts in the navigation.
Screenshots go to tests/artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from states.base import Stage
from tests.acceptance.conftest import Server, Site, shot
from tests.acceptance.test_browser import log_in
from tests.support.world import ORG, at
from workflow import service

pytestmark = pytest.mark.slow


@pytest.fixture
def desktop(chromium: Any) -> Iterator[Any]:
    ctx = chromium.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    page = ctx.new_page()
    page.set_default_timeout(15_000)
    yield page
    ctx.close()


def test_list_filters_bulk_grade_and_to_do_with_counts(live: tuple[Site, Server], desktop: Any) -> None:
    site, server = live
    w = site.world
    w.drive("B1", Stage.committee_grading)
    w.drive("B3", Stage.committee_grading)
    w.drive("B2", Stage.publicity)
    w.do(service.publish, "B2", ORG, now=at(4, 20, 11))
    w.do(service.lodge_objection, "B2", "sec3@test.cn", "该支部自评分偏高。", now=at(4, 21))
    site.clock.now = at(4, 22, 9)  # B4 is still in the survey, due 03-31: overdue
    page = desktop
    log_in(page, server, "org")

    # the to-do list: overdue work and the open objection, counts in the navigation
    assert "目前没有需要您办理的事项" not in page.content()
    summary = page.locator("#todo-summary").inner_text()
    assert "其中已逾期 1 项" in summary and "待处理异议 1 项" in summary
    assert "处理异议 #1" in page.locator(".todo").inner_text()
    assert "已逾期：催办或下发督办令" in page.locator(".todo").inner_text()
    nav = page.locator("header nav").inner_text()
    assert "逾期 1" in nav and "异议 1" in nav and "待办" in nav
    shot(page, "16-todo-org-overdue-objection")

    # the list: filter by stage and search, sorted by code descending; the state is in the URL
    page.get_by_role("link", name="党支部", exact=True).click()
    page.locator("select[name=stage]").select_option("committee_grading")
    page.locator("input[name=desc]").check()
    page.get_by_role("button", name="筛选").click()
    page.wait_for_url("**/branches?*")
    q = parse_qs(urlparse(page.url).query)
    assert q["stage"] == ["committee_grading"] and q["desc"] == ["1"]
    rows = page.locator("table.list tbody tr")
    assert rows.count() == 2 and "本科生第一党支部" in rows.nth(0).inner_text()
    page.reload()  # the same URL gives the same page: the form shows the filter it came from
    assert page.locator("select[name=stage]").input_value() == "committee_grading"
    assert page.locator("input[name=desc]").is_checked()
    page.get_by_role("link", name="截止日期").click()  # a column header keeps the filter
    assert parse_qs(urlparse(page.url).query)["stage"] == ["committee_grading"]
    shot(page, "16-list-filtered")

    # bulk: B1 and B3 in committee grading, B4 in the survey → two graded, one refused with its reason
    page.goto(f"{server.url}/branches")
    for code in ("B1", "B3", "B4"):
        page.locator(f"input.pick[value='{code}']").check()
    page.get_by_role("button", name="计算得分和等级").click()
    page.wait_for_url("**/bulk")
    table = page.locator("#bulk-results tbody tr")
    assert table.count() == 3
    assert "成功" in table.nth(0).inner_text() and "总分" in table.nth(0).inner_text()
    assert "成功" in table.nth(1).inner_text()
    refused = table.nth(2).inner_text()
    assert "未成功" in refused and "调查摸底" in refused
    assert "成功 2 个，未成功 1 个" in page.get_by_role("status").inner_text()
    shot(page, "16-bulk-grade-results")
    assert w.case("B1").state.get("grade") and w.case("B3").state.get("grade")
    assert w.stage("B4") is Stage.survey and not w.case("B4").state.get("grade")

    # "本页全选" picks every branch of the page (the script ticks the boxes)
    page.get_by_role("link", name="返回党支部列表").click()
    page.locator("#select-all").check()
    assert page.locator("input.pick:checked").count() == 4
