"""The pages, over HTTP (no browser): log-in, CSRF, the to-do list, forms that show errors in place and
change nothing, reading rules, the committee's sign-off page, the public publicity page, the audit page."""

from __future__ import annotations

import html as html_lib
import re

import pytest
from fastapi.testclient import TestClient

from states.base import Stage
from tests.acceptance.conftest import PASSWORD, PEOPLE, Site
from tests.support.world import MEMBERS, ORG, at
from workflow import service


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert m, "the page has no CSRF token"
    return m.group(1)


def browser(site: Site, who: str | None = None) -> TestClient:
    """A fresh client (its own cookies), logged in as ``who`` through the log-in form."""
    c = TestClient(site.app, base_url="http://testserver")
    if who:
        page = c.get("/login")
        r = c.post("/login", data={"csrf": csrf_of(page.text), "email": PEOPLE.get(who, who), "password": PASSWORD,
                                   "next": "/"}, follow_redirects=False)
        assert r.status_code == 303, r.text
    return c


def text_of(html: str) -> str:
    return html_lib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


def input_tag(html: str, name: str) -> str:
    m = re.search(rf'<input[^>]*\bname="{re.escape(name)}"[^>]*>', html)
    assert m, f"no input named {name}"
    return m.group(0)


def test_pages_need_a_log_in_and_say_so_in_chinese(site: Site) -> None:
    c = browser(site)
    r = c.get("/branches/B1", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/branches/B1"
    page = c.get("/login")
    r = c.post("/login", data={"csrf": csrf_of(page.text), "email": "sec1@test.cn", "password": "nope", "next": "/"})
    assert r.status_code == 401 and "邮箱或密码错误" in r.text
    assert 'value="sec1@test.cn"' in r.text  # the e-mail is kept


def test_the_session_cookie_is_httponly_and_samesite(site: Site) -> None:
    c = TestClient(site.app, base_url="http://testserver")
    page = c.get("/login")
    assert "httponly" in page.headers["set-cookie"].lower() and "samesite=lax" in page.headers["set-cookie"].lower()
    r = c.post("/login", data={"csrf": csrf_of(page.text), "email": "sec1@test.cn", "password": PASSWORD,
                               "next": "/branches/B1"}, follow_redirects=False)
    cookie = r.headers["set-cookie"].lower()
    assert r.headers["location"] == "/branches/B1"
    assert cookie.startswith("bf_session=") and "httponly" in cookie and "samesite=lax" in cookie


def test_a_form_without_the_csrf_token_is_refused_and_changes_nothing(site: Site) -> None:
    w = site.world
    w.drive("B1", Stage.self_assessment)
    w.do(service.record, "B1", "sec1@test.cn", w.self_data("B1"), now=at(4, 2))
    v = site.version("B1")
    c = browser(site, "sec1")
    for token in ("", "0" * 64):
        r = c.post("/branches/B1", data={"csrf": token, "action": "advance"})
        assert r.status_code == 403 and "CSRF" in r.text
    assert site.version("B1") == v and w.stage("B1") is Stage.self_assessment


def test_the_secretary_lands_on_a_to_do_list_with_the_deadline(site: Site) -> None:
    site.world.drive("B1", Stage.self_assessment)
    site.clock.now = at(4, 7, 9)  # the self-assessment is due 04-10: a reminder is due
    page = text_of(browser(site, "sec1").get("/").text)
    assert "支部自评打分 生物系教工党支部" in page
    assert "截止 2026-04-10 还剩 3 天，请抓紧" in page
    assert "化学系" not in page  # not theirs


def test_the_general_branch_secretary_owes_the_survey_of_both_branches(site: Site) -> None:
    site.clock.now = at(4, 2)
    page = text_of(browser(site, "gb1").get("/").text)
    assert page.count("填写调查摸底") == 2 and "已逾期 2 天" in page


def test_a_bad_self_assessment_shows_the_errors_in_place_and_changes_nothing(site: Site) -> None:
    w = site.world
    w.drive("B1", Stage.self_assessment)
    c = browser(site, "sec1")
    page = c.get("/branches/B1").text
    v = site.version("B1")
    data = {"csrf": csrf_of(page), "version": str(v), "action": "record_advance", "meeting_date": "2026-04-01",
            "attendance": "6", **{f"s_{i}": "4" for i in range(1, 19)}}
    data["s_3"] = "40"
    r = c.post("/branches/B1", data=data)
    assert r.status_code == 422
    shown = text_of(r.text)
    assert "第 3 项得分 40 超出范围 0–" in shown
    assert 'value="40"' in input_tag(r.text, "s_3") and 'value="6"' in input_tag(r.text, "attendance")  # input kept
    assert 'class="invalid"' in input_tag(r.text, "s_3")  # the wrong field is marked
    assert 'class="invalid"' not in input_tag(r.text, "s_4")
    assert site.version("B1") == v

    data["s_3"] = "4"
    data["attendance"] = "3"  # not more than half of 10 members: the record is fine, the advance is not
    r = c.post("/branches/B1", data=data)
    assert r.status_code == 409
    assert "支部大会到会 3 人，未超过党员总数 10 人的半数" in text_of(r.text)
    assert 'class="invalid"' in input_tag(r.text, "attendance")
    assert site.version("B1") == v  # the record did not half-apply without the advance

    data["attendance"] = "6"
    r = c.post("/branches/B1", data=data, follow_redirects=False)
    assert r.status_code == 303
    assert w.stage("B1") is Stage.member_evaluation
    assert "已提交，党支部进入“党员群众测评”环节" in c.get(r.headers["location"]).text


def test_people_see_only_the_branches_they_are_responsible_for(site: Site) -> None:
    r = browser(site, "sec2").get("/branches/B1")
    assert r.status_code == 404 and "党支部 &#39;B1&#39; 不存在或无权访问" in r.text  # as an unknown branch
    assert browser(site, "gb2").get("/branches/B1").status_code == 404
    listing = text_of(browser(site, "gb1").get("/branches").text)
    assert "生物系教工党支部" in listing and "本科生第一党支部" not in listing and "共 2 个" in listing


def test_auditors_read_everything_and_get_no_forms(site: Site) -> None:
    site.world.drive("B1", Stage.self_assessment)
    c = browser(site, "auditor")
    page = c.get("/branches/B1").text
    assert "生物系教工党支部" in page and "办理记录" in page
    assert 'id="stage-form"' not in page and 'name="action"' not in page
    assert "审计人员只查看、不办理" in c.get("/").text
    r = c.post("/branches/B1", data={"csrf": csrf_of(page), "action": "advance"})
    assert r.status_code == 403 and "只能查看" in r.text


def test_dashboard_counts_branches_per_stage_and_overdue(site: Site) -> None:
    site.world.drive("B1", Stage.self_assessment)
    site.clock.now = at(4, 2)
    page = text_of(browser(site, "org").get("/dashboard").text)
    assert "4 党支部" in page and "3 逾期未办" in page
    assert re.search(r"调查摸底 3 3", page) and re.search(r"支部自评 1 ", page)
    assert "GB1 2 0 1 调查摸底 1、支部自评 1" in page and "GB2 2 0 2 调查摸底 2" in page  # per general branch
    gb1 = text_of(site.page_client("gb1").get("/dashboard").text)  # a general branch sees its own only
    assert "GB2" not in gb1 and "2 党支部" in gb1


def test_committee_members_sign_on_the_sign_off_page(site: Site) -> None:
    w = site.world
    w.drive("B1", Stage.committee_grading)
    w.do(service.compute_grade, "B1", MEMBERS[0], now=at(4, 20))
    site.clock.now = at(4, 20, 15)
    c = browser(site, "m2")
    page = c.get("/committee").text
    assert "签字 0/2" in text_of(page)
    r = c.post("/branches/B1", data={"csrf": csrf_of(page), "action": "sign", "back": "/committee"})
    assert r.status_code == 200 and "已签字（1/2）" in r.text and "您已签字" in r.text
    r = c.post("/branches/B1", data={"csrf": csrf_of(page), "action": "sign", "back": "/committee"})
    assert r.status_code == 422 and "已签过字" in r.text


def test_the_publicity_page_is_public_and_objections_need_a_log_in(site: Site) -> None:
    w = site.world
    w.drive("B1", Stage.publicity)
    w.do(service.publish, "B1", ORG, now=at(4, 20, 11))
    site.clock.now = at(4, 22)
    anon = browser(site).get("/publicity")
    assert anon.status_code == 200 and "生物系教工党支部" in anon.text and "登录后提出异议" in anon.text
    c = browser(site, "gb2")  # not responsible for B1, but anyone may object to a public grade
    page = c.get("/publicity").text
    r = c.post("/branches/B1", data={"csrf": csrf_of(page), "action": "object", "back": "/publicity", "text": "x"})
    assert r.status_code == 422 and "异议数据无效" in r.text and ">x</textarea>" in r.text
    r = c.post("/branches/B1", data={"csrf": csrf_of(page), "action": "object", "back": "/publicity",
                                     "text": "该支部上年度有群众投诉。"})
    assert r.status_code == 200 and "已登记异议 #1" in r.text and "已收到异议 1 件" in r.text


def test_the_audit_page_replays_a_date_and_verifies(site: Site) -> None:
    site.world.drive("B1", Stage.member_evaluation)
    c = browser(site, "auditor")
    page = text_of(c.get("/audit", params={"branch": "B1", "at": "2026-03-25"}).text)
    assert "截至 2026-03-25： 当时环节 支部自评" in page
    page = text_of(c.get("/audit", params={"branch": "B1", "at": "2026-04-05", "verify": "1"}).text)
    assert "当时环节 党员群众测评" in page and "校验通过" in page
    r = c.get("/audit", params={"branch": "B1", "at": "tomorrow"})
    assert r.status_code == 422 and "重放日期 'tomorrow' 无效" in text_of(r.text)


@pytest.mark.parametrize("path", ["/", "/dashboard", "/branches", "/committee", "/audit"])
def test_logging_out_ends_the_session(site: Site, path: str) -> None:
    c = browser(site, "org")
    page = c.get(path)
    assert page.status_code == 200
    c.post("/logout", data={"csrf": csrf_of(page.text)})
    assert c.get(path, follow_redirects=False).status_code == 303


PAGES = ["/", "/dashboard", "/branches", "/branches/B1", "/committee", "/publicity", "/audit?branch=B1&at=2026-03-25"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_for_every_role(site: Site, path: str) -> None:
    """The page matrix: who gets each page (the publicity page is public; B1's pages are for those
    responsible for B1; everything else needs a log-in)."""
    for who in [*PEOPLE, None]:
        r = site.page_client(who).get(path, follow_redirects=False)
        if who is None:
            expected = 200 if path == "/publicity" else 303
        elif "B1" in path and who in ("sec2", "gb2"):
            expected = 404  # no oracle: as for a branch that does not exist
        else:
            expected = 200
        assert r.status_code == expected, (who, path, r.status_code)
        if expected == 200:
            assert "<html lang=\"zh-CN\">" in r.text and "分类定级" in r.text


def test_a_branch_goes_through_every_stage_by_the_web_forms(site: Site) -> None:
    """Every stage's form, filled in as people would, moves B1 from the survey to accepted."""
    w = site.world

    def submit(who: str, fields: dict[str, str], when: object) -> str:
        site.clock.now = when  # type: ignore[assignment]
        c = site.page_client(who)
        page = c.get("/branches/B1")
        assert page.status_code == 200
        r = c.post("/branches/B1", data={"csrf": csrf_of(page.text), **fields})
        assert r.status_code == 200 and "notice" in r.text, text_of(r.text)[:600]
        return text_of(r.text)

    def submit_error(who: str, fields: dict[str, str], when: object) -> str:
        site.clock.now = when  # type: ignore[assignment]
        c = site.page_client(who)
        page = c.get("/branches/B1")
        r = c.post("/branches/B1", data={"csrf": csrf_of(page.text), **fields})
        assert r.status_code == 422, text_of(r.text)[:600]
        return text_of(r.text)

    survey = {f"f_{k}": "yes" for k in ("organisation", "leadership", "rules", "direction", "activities", "role", "support")}
    bad = submit_error("gb1", {**survey, "last_activity": "2026-02-30", "action": "record_advance"}, at(3, 20))
    assert "最近一次活动日期：须为日期" in bad and "last_activity" not in bad and w.stage("B1") is Stage.survey
    assert "进入“支部自评”" in submit("gb1", {**survey, "last_activity": "2026-03-05", "secretary_violation": "no",
                                             "action": "record_advance"}, at(3, 20))
    assert w.case("B1").state["records"]["survey"]["last_activity"] == "2026-03-05"
    scores = {f"s_{i}": "4" for i in range(1, 19)}
    submit("sec1", {**scores, "meeting_date": "2026-04-01", "attendance": "7", "action": "record_advance"}, at(4, 2))
    tally = {"ballots": "12", "rating": "86", "sat_members": "90", "sat_secretary": "92", "action": "record_advance"}
    assert "进入“党委评定”" in submit("gb1", tally, at(4, 12))
    assert "已计算：总分" in submit("m1", {"action": "grade"}, at(4, 20, 9))
    submit("m1", {"action": "sign"}, at(4, 20, 10))
    submit("m2", {"action": "sign"}, at(4, 20, 11))
    assert "已推进到“公示”环节" in submit("org", {"action": "advance"}, at(4, 20, 12))
    assert "已发布公示" in submit("org", {"action": "publish"}, at(4, 20, 13))
    assert "已推进到“整改（晋位升级）”环节" in submit("org", {"action": "advance"}, at(5, 10))
    plan = {"problem_1": "组织生活不规范", "measure_1": "每月主题党日", "due_1": "2026-07-31", "contact_1": "委员1",
            "self_analysis": "对照标准查找不足。", "submitted": "1", "action": "record"}
    assert "已保存" in submit("sec1", plan, at(5, 20))
    assert "第 1 项已登记完成" in submit("sec1", {"action": "complete", "item": "1", "evidence": "已完成，附记录。"}, at(7, 1))
    assert "已推进到“检查验收”环节" in submit("sec1", {"action": "advance"}, at(7, 2))
    accept = {"passed": "yes", "inspected_on": "2026-09-01", "regrade_score": "91", "summary": "整改到位，验收通过。",
              "action": "record_advance"}
    assert "进入“已验收”" in submit("gb1", accept, at(9, 1))
    assert w.stage("B1") is Stage.accepted
    page = text_of(site.page_client("auditor").get("/audit", params={"branch": "B1", "verify": "1"}).text)
    assert "校验通过" in page and "当时环节 已验收" in page


def test_unknown_pages_say_so_in_chinese(site: Site) -> None:
    c = site.page_client("org")
    r = c.get("/no-such-page")
    assert r.status_code == 404 and "页面不存在" in r.text
    r = c.get("/branches/NOPE")
    assert r.status_code == 404 and "不存在或无权访问" in r.text
    assert c.get("/logout", follow_redirects=False).status_code == 303
