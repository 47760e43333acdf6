"""The role matrix: every endpoint × every role, including every forbidden combination.

For each action the branch is driven (through the real services) to the stage where the action makes
sense; then every persona who may not act is refused (403, or 401 without a token) and the case is left
exactly as it was; then every persona who may act succeeds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from states.base import Stage
from tests.acceptance.conftest import PEOPLE, Site
from tests.support.world import MEMBERS, ORG, World, at
from workflow import service

ALL = [*PEOPLE, None]  # None: no token at all
RECT_PLAN = {"items": [{"problem": "组织生活不规范", "measure": "每月主题党日", "due": "2026-07-31", "contact": "委员1"}],
             "submitted": True, "self_analysis": "对照标准查找不足。"}


def _graded(w: World) -> None:
    w.do(service.compute_grade, "B1", MEMBERS[0], now=at(4, 20))


def _published(w: World) -> None:
    w.do(service.publish, "B1", ORG, now=at(4, 20, 11))


def _objected(w: World) -> None:
    _published(w)
    w.do(service.lodge_objection, "B1", "sec2@test.cn", "自评分数与事实不符。", now=at(4, 21))


def _planned(w: World) -> None:
    w.do(service.record, "B1", "sec1@test.cn", RECT_PLAN, now=at(5, 20))


def _self_filled(w: World) -> None:
    w.do(service.record, "B1", "sec1@test.cn", w.self_data("B1"), now=at(4, 2))


@dataclass(frozen=True)
class Action:
    name: str
    stage: Stage
    method: str
    path: str
    body: Callable[[World], Any] | None
    allowed: tuple[str, ...]
    setup: Callable[[World], None] = lambda w: None
    when: Any = field(default_factory=lambda: at(4, 2, 9))
    exclusive: bool = False  # only the first allowed persona can succeed (the case moves on)


ACTIONS = [
    Action("record survey", Stage.survey, "POST", "/api/branches/B1/records",
           lambda w: {"data": w.survey_data()}, ("gb1", "org"), when=at(3, 20)),
    Action("record self-assessment", Stage.self_assessment, "POST", "/api/branches/B1/records",
           lambda w: {"data": w.self_data("B1")}, ("sec1",)),
    Action("record member evaluation", Stage.member_evaluation, "POST", "/api/branches/B1/records",
           lambda w: {"data": w.eval_data()}, ("gb1", "org"), when=at(4, 12)),
    Action("record rectification plan", Stage.rectification, "POST", "/api/branches/B1/records",
           lambda w: {"data": RECT_PLAN}, ("sec1",), when=at(5, 20)),
    Action("record acceptance", Stage.acceptance, "POST", "/api/branches/B1/records",
           lambda w: {"data": {"passed": True, "summary": "整改到位，验收通过。", "inspected_on": "2026-09-01",
                               "regrade_score": 90}}, ("gb1", "org"), when=at(9, 1)),
    Action("advance self-assessment", Stage.self_assessment, "POST", "/api/branches/B1/advance", None,
           ("sec1", "gb1", "org"), setup=_self_filled, when=at(4, 2, 11), exclusive=True),
    Action("compute grade", Stage.committee_grading, "POST", "/api/branches/B1/grade", None,
           ("m1", "m2", "org"), when=at(4, 20)),
    Action("adjust grade", Stage.committee_grading, "POST", "/api/branches/B1/adjust",
           lambda w: {"grade": w.case("B1").campaign.grading.scale.bands[0].code, "reason": "党委研究决定调整。"},
           ("m1", "m2"), setup=_graded, when=at(4, 20, 12)),
    Action("sign", Stage.committee_grading, "POST", "/api/branches/B1/sign", None, ("m1", "m2"),
           setup=_graded, when=at(4, 20, 12)),
    Action("publish", Stage.publicity, "POST", "/api/branches/B1/publish", None, ("org",), when=at(4, 21)),
    Action("object", Stage.publicity, "POST", "/api/branches/B1/objections", lambda w: {"text": "该支部自评分偏高。"},
           ("sec1", "sec2", "gb1", "gb2", "org", "m1", "m2"), setup=_published, when=at(4, 22)),
    Action("resolve objection", Stage.publicity, "POST", "/api/branches/B1/objections/1/resolve",
           lambda w: {"upheld": False, "reason": "经核实，异议不成立。"}, ("org",), setup=_objected, when=at(4, 23)),
    Action("complete item", Stage.rectification, "POST", "/api/branches/B1/items/1/complete",
           lambda w: {"evidence": "已完成，附会议记录。"}, ("sec1",), setup=_planned, when=at(7, 1)),
    Action("extend deadline", Stage.survey, "POST", "/api/branches/B1/extend",
           lambda w: {"deadline": "2026-05-01", "reason": "支部换届，延期办理。"}, ("org",), when=at(3, 25)),
]


@pytest.mark.parametrize("action", ACTIONS, ids=[a.name for a in ACTIONS])
def test_only_the_right_roles_may_act(site: Site, action: Action) -> None:
    w = site.world
    w.drive("B1", action.stage)
    action.setup(w)
    site.clock.now = action.when
    body = action.body(w) if action.body else None
    before = w.case("B1")
    for who in [p for p in ALL if p not in action.allowed]:
        r = site.call(who, action.method, action.path, json=body)
        # no oracle: a branch outside the person's scope answers as an unknown one would (404)
        expected = 401 if who is None else 403 if who in SEE_B1 else 404
        assert r.status_code == expected, (who, r.text)
        assert r.json()["error"] == {401: "NotAuthenticated", 403: "Forbidden", 404: "NotFound"}[expected]
        assert r.json()["message"]  # a readable Chinese reason
        after = w.case("B1")
        assert (after.version, after.stage) == (before.version, before.stage), f"{who} changed the case"
    for who in action.allowed:
        r = site.call(who, action.method, action.path, json=body)
        assert r.status_code == 200, (who, r.text)
        assert r.json()["version"] > before.version
        if action.exclusive:
            break


@pytest.mark.parametrize("who", ["gb1", "org"])
def test_every_advancer_may_advance(site: Site, who: str) -> None:
    """The matrix above advanced as the first advancer; the others may too."""
    site.world.drive("B1", Stage.self_assessment)
    _self_filled(site.world)
    site.clock.now = at(4, 2, 11)
    r = site.call(who, "POST", "/api/branches/B1/advance")
    assert r.status_code == 200 and r.json()["stage"] == "member_evaluation", r.text


READS = ["/api/branches/B1", "/api/branches/B1/unmet", "/api/branches/B1/history",
         "/api/branches/B1/history?at=2026-03-25", "/api/audit/verify?branch=B1"]
SEE_B1 = {"sec1", "gb1", "org", "m1", "m2", "auditor"}


@pytest.mark.parametrize("path", READS)
def test_only_people_responsible_for_a_branch_may_read_it(site: Site, path: str) -> None:
    site.world.drive("B1", Stage.self_assessment)
    for who in ALL:
        r = site.call(who, "GET", path)
        expected = 401 if who is None else 200 if who in SEE_B1 else 404
        assert r.status_code == expected, (who, path, r.text)
        if expected == 404:
            assert r.json()["message"] == "党支部 'B1' 不存在或无权访问"


@pytest.mark.parametrize("path", ["/api/audit/verify", "/api/outbox"])
def test_committee_wide_reads_are_for_committee_people_and_auditors(site: Site, path: str) -> None:
    for who in ALL:
        r = site.call(who, "GET", path)
        expected = 401 if who is None else 200 if who in {"org", "m1", "m2", "auditor"} else 403
        assert r.status_code == expected, (who, path, r.text)


def test_each_person_lists_only_the_branches_they_may_see(site: Site) -> None:
    seen = {who: [b["code"] for b in site.call(who, "GET", "/api/branches").json()] for who in PEOPLE}
    assert seen == {
        "sec1": ["B1"], "sec2": ["B2"], "gb1": ["B1", "B2"], "gb2": ["B3", "B4"],
        "org": ["B1", "B2", "B3", "B4"], "m1": ["B1", "B2", "B3", "B4"], "m2": ["B1", "B2", "B3", "B4"],
        "auditor": ["B1", "B2", "B3", "B4"],
    }
    assert site.call(None, "GET", "/api/branches").status_code == 401


def test_the_secretary_of_a_branch_may_not_sign_its_grade(site: Site) -> None:
    """m3 is a committee member and B4's secretary: signing B4 is refused, signing B3 is not."""
    w = site.world
    for b in ("B3", "B4"):
        w.drive(b, Stage.committee_grading)
        w.do(service.compute_grade, b, MEMBERS[0], now=at(4, 20))
    site.clock.now = at(4, 20, 12)
    r = site.call("m3@test.cn", "POST", "/api/branches/B4/sign")
    assert r.status_code == 403 and "本支部" in r.json()["message"]
    assert site.call("m3@test.cn", "POST", "/api/branches/B3/sign").status_code == 200


@pytest.mark.parametrize("path", ["/api/me", "/api/campaigns", "/api/organisations"])
def test_everyone_logged_in_may_read_who_they_are_and_the_campaigns(site: Site, path: str) -> None:
    for who in ALL:
        r = site.call(who, "GET", path)
        assert r.status_code == (401 if who is None else 200), (who, r.text)


def test_organisations_show_each_person_their_part(site: Site) -> None:
    def gbs(who: str) -> list[str]:
        return [g["code"] for c in site.call(who, "GET", "/api/organisations").json() for g in c["general_branches"]]

    assert {who: gbs(who) for who in PEOPLE} == {
        "sec1": ["GB1"], "sec2": ["GB1"], "gb1": ["GB1"], "gb2": ["GB2"], "org": ["GB1", "GB2"],
        "m1": ["GB1", "GB2"], "m2": ["GB1", "GB2"], "auditor": ["GB1", "GB2"],
    }
