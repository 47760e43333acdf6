"""The HTTP API end to end: log-in, a branch through its stages, and how each kind of error reaches the
client (status code and a JSON body naming the problem)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import update

from service.auth import set_password
from states.base import Stage
from tests.acceptance.conftest import PASSWORD, Site
from tests.support.world import at
from workflow.models import EventRow


def test_log_in_with_the_password_and_use_the_token(site: Site) -> None:
    r = site.client.post("/api/token", json={"email": "SEC1@test.cn ", "password": PASSWORD})
    assert r.status_code == 200
    tok = r.json()["access_token"]
    me = site.client.get("/api/me", headers={"Authorization": f"Bearer {tok}"}).json()
    assert me["email"] == "sec1@test.cn"
    assert me["roles"] == [{"role": "branch_secretary", "label": "党支部书记", "scope": "B1"}]


@pytest.mark.parametrize("email,password", [("sec1@test.cn", "wrong-one"), ("nobody@test.cn", PASSWORD)])
def test_a_wrong_password_or_unknown_email_gets_401_and_the_same_message(site: Site, email: str, password: str) -> None:
    r = site.client.post("/api/token", json={"email": email, "password": password})
    assert r.status_code == 401
    assert r.json() == {"error": "NotAuthenticated", "message": "邮箱或密码错误"}


def test_a_forged_or_page_session_token_is_not_an_api_token(site: Site) -> None:
    from workflow.repository import person_by_email

    with site.world.sessions() as s, s.begin():
        cookie = site.app.state.runtime.signer.issue(s, person_by_email(s, "org@test.cn"))  # a page session
    for bad in (cookie, site.token("org") + "x", "garbage"):
        r = site.client.get("/api/me", headers={"Authorization": f"Bearer {bad}"})
        assert r.status_code == 401 and r.json()["error"] == "NotAuthenticated"


def test_an_expired_long_lived_token_is_refused(site: Site) -> None:
    from workflow.repository import person_by_email

    signer = site.app.state.runtime.signer
    with site.world.sessions() as s, s.begin():
        person = person_by_email(s, "org@test.cn")
        good = signer.issue(s, person, api=True, days=90)
    assert site.client.get("/api/me", headers={"Authorization": f"Bearer {good}"}).status_code == 200
    real = signer.wall
    signer.wall = lambda: real() + dt.timedelta(days=91)  # the token's 90 days have passed
    try:
        r = site.client.get("/api/me", headers={"Authorization": f"Bearer {good}"})
    finally:
        signer.wall = real
    assert r.status_code == 401 and "令牌已过期" in r.json()["message"]


def test_changing_the_password_revokes_earlier_tokens(site: Site) -> None:
    assert site.call("sec1", "GET", "/api/me").status_code == 200
    with site.world.sessions() as s, s.begin():
        set_password(s, "sec1@test.cn", "another-secret-2026")
    r = site.call("sec1", "GET", "/api/me")
    assert r.status_code == 401 and "密码已更改" in r.json()["message"]


def test_a_branch_through_its_first_stages_over_http(site: Site) -> None:
    w = site.world
    site.clock.now = at(3, 20)
    r = site.call("gb1", "GET", "/api/branches/B1/unmet")
    assert r.json()["stage"] == "survey" and r.json()["unmet"][0]["code"] == "survey.findings"
    assert site.call("gb1", "POST", "/api/branches/B1/records", json={"data": w.survey_data()}).status_code == 200
    r = site.call("gb1", "POST", "/api/branches/B1/advance", json={"expected_version": 2})
    assert r.status_code == 200 and r.json()["stage"] == "self_assessment"

    site.clock.now = at(4, 2)
    assert site.call("sec1", "POST", "/api/branches/B1/records", json={"data": w.self_data("B1")}).status_code == 200
    assert site.call("sec1", "POST", "/api/branches/B1/advance").json()["stage_label"] == "党员群众测评"

    card = site.call("auditor", "GET", "/api/branches/B1").json()
    assert card["stage"] == "member_evaluation" and card["deadline"]
    past = site.call("auditor", "GET", "/api/branches/B1/history", params={"at": "2026-03-25"}).json()
    assert past["stage_label"] == "支部自评" and [e["kind"] for e in past["events"]] == ["opened", "recorded", "moved"]
    assert site.call("auditor", "GET", "/api/audit/verify").json() == {"ok": True, "cases": 4, "events": 8, "problems": []}


def test_filters_on_the_branch_list(site: Site) -> None:
    w = site.world
    w.drive("B1", Stage.self_assessment)
    w.drive("B3", Stage.member_evaluation)
    site.clock.now = at(4, 15)  # survey (3-31) and self-assessment (4-10) deadlines have passed
    codes = lambda **q: [b["code"] for b in site.call("org", "GET", "/api/branches", params=q).json()]
    assert codes(stage="survey") == ["B2", "B4"]
    assert codes(general_branch="GB2") == ["B3", "B4"]
    assert codes(overdue="true") == ["B1", "B2", "B4"]
    assert codes(overdue="false") == ["B3"]
    assert codes(limit=2, offset=1) == ["B2", "B3"]
    assert site.call("gb1", "GET", "/api/branches", params={"general_branch": "GB2"}).json() == []


def test_unknown_branch_is_404(site: Site) -> None:
    r = site.call("org", "GET", "/api/branches/NOPE")
    assert r.status_code == 404 and r.json()["error"] == "NotFound" and "NOPE" in r.json()["message"]


def test_advancing_with_unmet_criteria_is_409_naming_them(site: Site) -> None:
    site.world.drive("B1", Stage.self_assessment)
    before = site.version("B1")
    r = site.call("sec1", "POST", "/api/branches/B1/advance")
    assert r.status_code == 409
    body = r.json()
    assert body["error"] == "TransitionRefused"
    assert {u["code"] for u in body["unmet"]} == {"self_assessment.scores", "self_assessment.meeting",
                                                   "self_assessment.attendance"}
    assert "党支部书记" in body["allowed_roles"]
    assert site.version("B1") == before


def test_a_stale_version_is_409_conflict_and_changes_nothing(site: Site) -> None:
    w = site.world
    w.drive("B1", Stage.self_assessment)
    v = site.version("B1")
    r = site.call("sec1", "POST", "/api/branches/B1/records", json={"data": w.self_data("B1"), "expected_version": v - 1})
    assert r.status_code == 409 and r.json()["error"] == "Conflict"
    assert site.version("B1") == v


def test_bad_stage_data_is_422_in_chinese_and_changes_nothing(site: Site) -> None:
    site.world.drive("B1", Stage.self_assessment)
    v = site.version("B1")
    r = site.call("sec1", "POST", "/api/branches/B1/records", json={"data": {"scores": {"1": 99}, "attendance": 1000}})
    assert r.status_code == 422
    msg = r.json()["message"]
    assert "第 1 项得分 99 超出范围" in msg and "到会人数 1000 超过党员人数 10" in msg
    r = site.call("sec1", "POST", "/api/branches/B1/records", json={"data": {"bogus": 1}})
    assert r.status_code == 422 and r.json()["error"] == "InvalidInput"
    r = site.call("sec1", "POST", "/api/branches/B1/records", json={"nodata": 1})
    assert r.status_code == 422 and r.json()["error"] == "InvalidInput" and "data" in r.json()["message"]
    assert site.call("auditor", "GET", "/api/branches/B1/history", params={"at": "yesterday"}).status_code == 422
    assert site.version("B1") == v


def test_auditors_change_nothing_not_even_an_objection(site: Site) -> None:
    w = site.world
    w.drive("B1", Stage.publicity)
    from tests.support.world import ORG
    from workflow import service

    w.do(service.publish, "B1", ORG, now=at(4, 20, 11))
    site.clock.now = at(4, 21)
    r = site.call("auditor", "POST", "/api/branches/B1/objections", json={"text": "我有异议。"})
    assert r.status_code == 403 and "只能查看" in r.json()["message"]


def test_verify_reports_a_tampered_event(site: Site) -> None:
    site.world.drive("B1", Stage.self_assessment)
    with site.world.sessions() as s, s.begin():
        s.execute(update(EventRow).where(EventRow.seq == 2).values(body=EventRow.body + " "))
    r = site.call("auditor", "GET", "/api/audit/verify").json()
    assert r["ok"] is False and "B1" in r["problems"][0]["text"]


def test_the_openapi_schema_lists_every_endpoint(site: Site) -> None:
    paths = site.client.get("/openapi.json").json()["paths"]
    assert set(paths) == {
        "/api/token", "/api/me", "/api/organisations", "/api/campaigns", "/api/branches", "/api/branches/{code}",
        "/api/branches/{code}/unmet", "/api/branches/{code}/history", "/api/branches/{code}/records",
        "/api/branches/{code}/advance", "/api/branches/{code}/grade", "/api/branches/{code}/adjust",
        "/api/branches/{code}/sign", "/api/branches/{code}/publish", "/api/branches/{code}/objections",
        "/api/branches/{code}/objections/{objection_id}/resolve", "/api/branches/{code}/items/{item}/complete",
        "/api/branches/{code}/extend", "/api/audit/verify", "/api/outbox",
        "/api/reports", "/api/reports/{name}", "/api/charts/{name}.svg",
        "/api/audit/checkpoint", "/api/audit/checkpoints", "/api/audit/proof/{branch}/{seq}",
        "/api/audit/consistency",
        "/api/bulk/{action}",  # issue 16: bulk actions
        "/api/branches/{code}/attachments", "/api/attachments/{sha}",  # issue 16: files
    }


def test_organisations_and_campaigns(site: Site) -> None:
    orgs = site.call("gb2", "GET", "/api/organisations").json()
    assert orgs == [{"code": "C1", "name": "测试学院党委", "general_branches": [{"code": "GB2", "name": "GB2", "branches": 2}]}]
    assert [c["year"] for c in site.call("sec1", "GET", "/api/campaigns").json()] == [2026]


def test_the_outbox_shows_the_reminders_the_sweep_wrote(site: Site) -> None:
    from scheduler.sweep import sweep

    site.world.drive("B1", Stage.self_assessment)
    with site.world.sessions() as s, s.begin():
        sweep(s, now=at(4, 7, 9))  # self-assessment due 04-10: the 3-day reminder is due
    rows = site.call("auditor", "GET", "/api/outbox", params={"branch": "B1"}).json()
    assert rows and {r["branch_code"] for r in rows} == {"B1"}
    assert any(r["recipient"] == "sec1@test.cn" and r["kind"] == "reminder" and r["status"] == "pending" for r in rows)
    assert site.call("sec1", "GET", "/api/outbox", params={"branch": "B1"}).status_code == 200
    assert site.call("sec2", "GET", "/api/outbox", params={"branch": "B1"}).status_code == 404
    assert site.call("auditor", "GET", "/api/outbox", params={"status": "sent"}).json() == []
