"""Issue 16, points 4 and 5 over HTTP: the bulk API both ways of scope, the list page's state in the URL,
the to-do list with overdue work and open objections, the notices addressed to me, the objection queue and
the receipt code (right code → the outcome without identity; wrong codes rate-limited)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from states.base import Stage
from tests.acceptance.conftest import Site
from tests.acceptance.test_access_both_ways import two_committees as _two_committees
from tests.support.dump import dump
from tests.support.world import ORG, at
from workflow import objections, service


@pytest.fixture
def outside(site: Site) -> Site:
    """The world plus committee C2 (GB3: B5) and its organisation department (as in the access tests)."""
    return _two_committees.__wrapped__(site)  # type: ignore[attr-defined, no-any-return]


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert m, html[:500]
    return m.group(1)


def test_bulk_api_grades_each_branch_and_answers_out_of_scope_as_unknown(outside: Site) -> None:
    site = outside
    w = site.world
    w.drive("B1", Stage.committee_grading)
    w.drive("B2", Stage.committee_grading)
    site.clock.now = at(4, 20, 12)
    # out of scope (B5 is committee C2's) and unknown: the same answer, and nothing changed
    before = dump(w.sessions)
    r = site.call("m1", "POST", "/api/bulk/grade", json={"branches": ["B5", "NOPE9"]})
    assert r.status_code == 200, r.text
    out, unknown = r.json()["results"]
    assert not out["ok"] and not unknown["ok"] and out["error"] == unknown["error"] == "NotFound"
    assert out["message"].replace("B5", "X") == unknown["message"].replace("NOPE9", "X")
    assert "外校" not in r.text and out["name"] == ""
    assert dump(w.sessions) == before
    # the other direction: org2 of C2 may reach B5 but not C1's branches
    r = site.call("org2@test.cn", "POST", "/api/bulk/advance", json={"branches": ["B1"]})
    assert r.json()["results"][0]["message"] == "党支部 'B1' 不存在或无权访问"
    assert dump(w.sessions) == before
    # in scope: two graded, one refused with the reason in Chinese
    r = site.call("m1", "POST", "/api/bulk/grade", json={"branches": ["B1", "B2", "B3"]})
    body = r.json()
    assert (body["ok"], body["failed"]) == (2, 1)
    assert [x["ok"] for x in body["results"]] == [True, True, False]
    assert "总分" in body["results"][0]["message"] and body["results"][0]["name"] == "生物系教工党支部"
    assert "调查摸底" in body["results"][2]["message"]
    assert w.case("B1").state.get("grade") and w.case("B2").state.get("grade")
    # a branch secretary may do none of it; an unknown action is 404; an empty list is refused in Chinese
    r = site.call("sec1", "POST", "/api/bulk/grade", json={"branches": ["B1"]})
    assert r.json()["results"][0]["error"] == "Forbidden"
    assert site.call("m1", "POST", "/api/bulk/nope", json={"branches": ["B1"]}).status_code == 404
    assert site.call("m1", "POST", "/api/bulk/grade", json={"branches": []}).status_code == 422


def test_bulk_remind_and_supervision_order_reach_the_notices_page(site: Site) -> None:
    site.clock.now = at(4, 2, 9)  # the survey (due 03-31) is overdue for every branch
    r = site.call("org", "POST", "/api/bulk/supervise", json={"branches": ["B1", "B2"]})
    assert [x["ok"] for x in r.json()["results"]] == [True, True], r.text
    again = site.call("org", "POST", "/api/bulk/supervise", json={"branches": ["B1"]}).json()["results"][0]
    assert not again["ok"] and "每天" in again["message"]
    r = site.call("gb2", "POST", "/api/bulk/remind", json={"branches": ["B3", "B1"]})
    assert [x["ok"] for x in r.json()["results"]] == [True, False]
    page = site.page_client("gb1").get("/notices")
    assert page.status_code == 200
    assert page.text.count("督办令") >= 2 and "生物系教工党支部" in page.text and 'href="/branches/B1"' in page.text
    assert "通知 <span class=\"badge\">2</span>" in page.text  # the count in the navigation
    assert "化学系" not in site.page_client("gb2").get("/notices").text


def test_the_list_keeps_its_state_in_the_url(site: Site) -> None:
    c = site.page_client("org")
    r = c.get("/branches", params={"q": "本科", "sort": "code", "desc": "1", "stage": "survey"})
    assert r.status_code == 200
    names = re.findall(r'<a href="/branches/(B\d)">', r.text)
    assert names == ["B4", "B3"]
    assert 'value="本科"' in r.text and 'name="desc" value="1" checked' in r.text
    # the column headers keep the filter and flip the direction of the column sorted by
    assert "/branches?q=%E6%9C%AC%E7%A7%91&amp;stage=survey&amp;page" not in r.text
    assert 'href="/branches?q=%E6%9C%AC%E7%A7%91&amp;stage=survey"' in r.text  # code, ascending again
    assert "共 2 个党支部" in r.text
    r = c.get("/branches", params={"stage": "nope", "page": "x", "sort": "'; drop"})
    assert r.status_code == 200 and "共 4 个党支部" in r.text


def test_the_to_do_list_has_overdue_work_and_open_objections_with_counts(site: Site) -> None:
    w = site.world
    w.drive("B1", Stage.publicity)
    w.do(service.publish, "B1", ORG, now=at(4, 20, 11))
    site.clock.now = at(4, 22, 9)
    c = site.page_client("sec3@test.cn")
    page = c.get("/publicity")
    r = c.post("/branches/B1", data={"csrf": csrf_of(page.text), "action": "object", "back": "/publicity",
                                     "text": "该支部自评分偏高，请核实。"})
    assert r.status_code == 200, r.text[:300]
    m = re.search(r"回执码：([2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4})", r.text)
    assert m, r.text[:2000]
    todo = site.page_client("org").get("/")
    assert "目前没有需要您办理的事项" not in todo.text
    assert "处理异议 #1" in todo.text
    # B2, B3, B4 are still in the survey, due 03-31: three overdue branches
    assert todo.text.count("已逾期：催办或下发督办令") == 3
    assert "其中已逾期 3 项" in todo.text and "待处理异议 1 项" in todo.text
    assert '逾期 <span class="badge late">3</span>' in todo.text
    assert re.search(r'异议 <span class="badge late">1</span>', todo.text)
    dash = site.page_client("org").get("/dashboard").text
    assert 'id="stat-objections"><b>1</b><a href="/objections">待处理异议</a>' in dash
    assert 'href="/branches?overdue=1&amp;sort=deadline"' in dash
    # the queue: the organisation department and auditors only; nobody sees who objected
    q = site.page_client("org").get("/objections")
    assert q.status_code == 200 and "该支部自评分偏高" in q.text and "sec3" not in q.text
    assert 'name="verdict"' in q.text
    a = site.page_client("auditor").get("/objections")
    assert a.status_code == 200 and "该支部自评分偏高" in a.text and 'name="verdict"' not in a.text
    for who in ("sec1", "gb1", "m1"):
        assert site.page_client(who).get("/objections").status_code == 403, who


def test_a_receipt_code_follows_the_outcome_and_wrong_codes_are_limited(site: Site) -> None:
    w = site.world
    w.drive("B1", Stage.publicity)
    w.do(service.publish, "B1", ORG, now=at(4, 20, 11))
    site.clock.now = at(4, 22, 9)
    r = site.call("sec3@test.cn", "POST", "/api/branches/B1/objections", json={"text": "该支部自评分偏高，请核实。"})
    assert r.status_code == 200, r.text
    code = re.search(r"回执码：([0-9A-Z-]{14})", r.json()["message"]).group(1)  # type: ignore[union-attr]
    with w.sessions() as s:
        from notifications.models import OutboxRow

        ctx = s.scalar(select(OutboxRow.context).where(OutboxRow.kind == "receipt"))
        assert ctx is not None and ctx["code"] == code  # mailed to the objector, through the outbox
        assert code not in repr(dump(w.sessions)["objection_receipts"])
    anon = site.page_client(None)
    form = anon.get("/objections/receipt")
    ok = anon.post("/objections/receipt", data={"csrf": csrf_of(form.text), "code": code.lower().replace("-", " ")})
    assert ok.status_code == 200 and "待处理" in ok.text and "该支部自评分偏高" in ok.text
    assert "sec3" not in ok.text and "书记B3" not in ok.text
    w.do(service.resolve_objection, "B1", ORG, 1, upheld=True, reason="经核实，自评材料不实。", now=at(4, 23))
    ok = anon.post("/objections/receipt", data={"csrf": csrf_of(form.text), "code": code})
    assert "异议成立" in ok.text and "经核实，自评材料不实。" in ok.text and "org@test.cn" not in ok.text
    before = dump(w.sessions, ignore=frozenset({"web_sessions", "api_tokens", "login_attempts", "login_locks",
                                               "receipt_attempts"}))
    for i in range(objections.MAX_FAILURES):
        bad = anon.post("/objections/receipt", data={"csrf": csrf_of(form.text), "code": f"ABCD-EFGH-J{i % 9 + 2}KM"[:14]})
        assert bad.status_code == 404 and "回执码" in bad.text
    held = anon.post("/objections/receipt", data={"csrf": csrf_of(form.text), "code": code})
    assert held.status_code == 429 and "次数过多" in held.text and "经核实" not in held.text
    assert dump(w.sessions, ignore=frozenset({"web_sessions", "api_tokens", "login_attempts", "login_locks",
                                             "receipt_attempts"})) == before


def test_the_bulk_form_needs_its_csrf_token_and_takes_the_whole_page(site: Site) -> None:
    w = site.world
    w.drive("B1", Stage.committee_grading)
    w.drive("B2", Stage.committee_grading)
    site.clock.now = at(4, 20, 12)
    c = site.page_client("m1")
    page = c.get("/branches", params={"stage": "committee_grading"})
    before = dump(w.sessions)
    r = c.post("/bulk", data={"csrf": "0" * 64, "action": "grade", "branch": ["B1"]})
    assert r.status_code == 403 and "CSRF" in r.text and dump(w.sessions) == before
    # 本页全选 without the script: the box alone takes every branch of the page
    r = c.post("/bulk", data={"csrf": csrf_of(page.text), "action": "grade", "all_on_page": "1",
                              "page_codes": ["B1", "B2"], "back": "/branches?stage=committee_grading"})
    assert r.status_code == 200 and "成功 2 个" in r.text
    assert 'href="/branches?stage=committee_grading"' in r.text  # back to the same filtered list
    r = c.post("/bulk", data={"csrf": csrf_of(page.text), "action": "grade"})
    assert r.status_code == 422 and "请至少选择一个党支部" in r.text
