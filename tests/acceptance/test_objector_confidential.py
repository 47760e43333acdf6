"""Who objected is confidential (issue 16, point 5): the organisation department of the branch's committee
and the auditors see the objector's name (and address, in the API); the branch's own people, the general
branch, the committee's members and everyone else see “有人提出异议” with the text — in the history and the
card of the API, on the branch page, the record page, the audit page, and in the CLI's history."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from states.base import Stage
from tests.acceptance.conftest import Site
from tests.support.world import GB2_SEC, ORG, at
from workflow import service

TEXT = "该支部自评分明显偏高，与实际不符。"
OBJECTOR_NAME = "总支书记 孙"


@pytest.fixture
def objected(site: Site) -> Site:
    w = site.world
    w.drive("B1", Stage.publicity)
    w.do(service.publish, "B1", ORG, now=at(4, 20, 11))
    w.do(service.lodge_objection, "B1", GB2_SEC, TEXT, now=at(4, 21, 9))  # gb2 sees B1 only as the public
    site.clock.now = at(4, 21, 10)
    return site


@pytest.mark.parametrize("who", ["sec1", "gb1", "m1"])
def test_the_branch_and_everyone_else_see_only_that_someone_objected(objected: Site, who: str) -> None:
    site = objected
    h = site.call(who, "GET", "/api/branches/B1/history")
    assert h.status_code == 200
    lodged = [e for e in h.json()["events"] if e["kind"] == "objection_lodged"]
    assert lodged and lodged[0]["actor"] is None and lodged[0]["actor_name"] == "有人提出异议"
    assert TEXT in lodged[0]["description"]
    assert GB2_SEC not in h.text and OBJECTOR_NAME not in h.text
    card = site.call(who, "GET", "/api/branches/B1").json()
    assert card["objections"][0]["text"] == TEXT and card["objections"][0]["by"] is None
    c = site.page_client(who)
    for path in ("/branches/B1", "/branches/B1/record"):
        page = c.get(path)
        assert page.status_code == 200 and TEXT in page.text and "有人提出异议" in page.text, path
        assert GB2_SEC not in page.text and OBJECTOR_NAME not in page.text, path
    if who == "m1":  # committee members read the audit page, still without the objector
        page = c.get("/audit", params={"branch": "B1"})
        assert page.status_code == 200 and TEXT in page.text
        assert GB2_SEC not in page.text and OBJECTOR_NAME not in page.text


@pytest.mark.parametrize("who", ["org", "auditor"])
def test_the_organisation_department_and_auditors_know_who_objected(objected: Site, who: str) -> None:
    site = objected
    h = site.call(who, "GET", "/api/branches/B1/history").json()
    lodged = [e for e in h["events"] if e["kind"] == "objection_lodged"]
    assert lodged[0]["actor"] == GB2_SEC and lodged[0]["actor_name"] == OBJECTOR_NAME
    assert h["state"]["objections"][0]["by"] == GB2_SEC
    assert site.call(who, "GET", "/api/branches/B1").json()["objections"][0]["by"] == GB2_SEC
    c = site.page_client(who)
    for path in ("/branches/B1", "/branches/B1/record"):
        page = c.get(path)
        assert page.status_code == 200 and OBJECTOR_NAME in page.text, path
    page = c.get("/audit", params={"branch": "B1"})
    assert OBJECTOR_NAME in page.text


def test_the_cli_history_prints_names_and_keeps_the_objector_confidential(objected: Site) -> None:
    from service.cli import cli

    url = objected.world.sessions.kw["bind"].url.render_as_string(hide_password=False)
    r = CliRunner().invoke(cli, ["history", "B1"], env={"BRANCHFLOW_DATABASE_URL": url}, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert TEXT in r.output and "有人提出异议" in r.output and "组织部 钱" in r.output
    assert GB2_SEC not in r.output and "@" not in r.output and "system" not in r.output


def test_the_receipt_mail_in_the_outbox_names_its_recipient_only_to_those_who_may_know(site: Site) -> None:
    w = site.world
    w.drive("B1", Stage.publicity)
    w.do(service.publish, "B1", ORG, now=at(4, 20, 11))
    site.clock.now = at(4, 21, 9)
    r = site.call("gb2", "POST", "/api/branches/B1/objections", json={"text": TEXT})
    assert r.status_code == 200, r.text
    for who in ("sec1", "gb1"):
        rows = site.call(who, "GET", "/api/outbox", params={"branch": "B1"})
        assert rows.status_code == 200 and rows.json(), who
        assert GB2_SEC not in rows.text and OBJECTOR_NAME not in rows.text, who
    for who in ("org", "auditor"):
        rows = site.call(who, "GET", "/api/outbox", params={"branch": "B1"}).text
        assert GB2_SEC in rows, who
    assert GB2_SEC not in site.call("m1", "GET", "/api/outbox").text  # committee-wide, still not who objected
