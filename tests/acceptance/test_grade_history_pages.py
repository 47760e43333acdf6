"""The grade-history page and API (issue 12): a branch's grades across years with the movement against
last year, and the calendar in force on the dashboard; scoped like the branch page, both directions."""

from __future__ import annotations

import datetime as dt

from tests.acceptance.conftest import Site
from tests.acceptance.test_web import text_of
from tests.integration.test_year_over_year import grade_to, next_year


def test_grade_history_page_and_api_show_the_movement_to_those_who_may_see_the_branch(site: Site) -> None:
    w = site.world
    grade_to(w, "B3", 0.5)  # 2026: 后进
    code, _ = next_year(w, weekdays_only=True)
    w.campaign = code
    grade_to(w, "B3", 0.7)  # 2027: 一般 — moved up
    site.clock.now = dt.datetime(2027, 5, 1, 9, tzinfo=dt.UTC)
    page = site.page_client("gb2").get("/branches/B3/grades")  # GB2's general-branch secretary: B3 is theirs
    assert page.status_code == 200
    text = text_of(page.text)
    assert "本科生第一党支部 · 历年等级" in text
    assert "2026 西安海棠职业学院 2026 年基层组织建设年 后进 — —" in text
    assert "2027 西安海棠职业学院 2027 年基层组织建设年 一般 后进 晋位" in text
    api = site.call("org", "GET", "/api/branches/B3/grades")
    assert api.status_code == 200
    assert [(y["year"], y["grade"], y["previous_grade"], y["movement"]) for y in api.json()["years"]] == [
        (2026, "backward", None, None), (2027, "average", "backward", "晋位")]
    # the other way: B3 is not GB1's; the answer is the unknown branch's, word for word
    outside = site.page_client("gb1").get("/branches/B3/grades")
    unknown = site.page_client("gb1").get("/branches/NOPE/grades")
    assert outside.status_code == unknown.status_code == 404
    assert text_of(outside.text).replace("B3", "X") == text_of(unknown.text).replace("NOPE", "X")
    assert site.call("sec1", "GET", "/api/branches/B3/grades").status_code == 404
    dash = site.page_client("org").get("/dashboard")
    assert "工作日历：仅按周一至周五（经 组织部 钱（org@test.cn） 于 2027-01-05 10:00 确认）" in text_of(dash.text)
