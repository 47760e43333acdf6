"""Limits over HTTP (issue 14, points 6 and 7): body size before parsing, JSON depth, 422s that never echo the
input and speak Chinese, dates within the campaign, safe Content-Disposition, and no oracle — on SQLite and
PostgreSQL (the ``world`` fixture)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from email.message import Message
from typing import Any

import pytest
from sqlalchemy import text

from states.base import Stage
from tests.acceptance.conftest import Clock, Site
from tests.support.dump import dump
from tests.support.world import World, at
from workflow import service


def raw(site: Site, who: str, path: str, content: object) -> object:
    """A POST whose body is given as bytes or chunks (not through ``json=``)."""
    return site.client.post(path, content=content, headers={**site.headers(who), "Content-Type": "application/json"})


@pytest.fixture
def site(world: World) -> Iterator[Site]:
    s = Site(world, Clock(at(4, 2, 9)))
    with s.client:
        yield s


def test_a_huge_body_is_refused_before_it_is_read(site: Site) -> None:
    big = b'{"email": "' + b"x" * (14 * 1024 * 1024) + b'", "password": "p"}'
    r = site.client.post("/api/token", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "PayloadTooLarge" and "请求体过大" in r.json()["message"]
    assert len(r.content) < 300

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams
        yield b'{"data": {"x": "'
        for _ in range(64):
            yield b"y" * 65536
        yield b'"}}'

    before = dump(site.world.sessions)
    r: Any = raw(site, "sec1", "/api/branches/B1/records", chunks())
    assert r.status_code == 413 and len(r.content) < 300
    assert dump(site.world.sessions) == before


def test_deep_json_is_refused_before_parsing(site: Site) -> None:
    deep = '{"data": {"a": ' + "[" * 200 + "]" * 200 + "}}"
    r: Any = raw(site, "sec1", "/api/branches/B1/records", deep)
    assert r.status_code == 422 and "嵌套层数过多" in r.json()["message"]


def test_validation_errors_never_echo_the_input_and_are_in_chinese(site: Site) -> None:
    site.world.drive("B1", Stage.self_assessment)
    r: Any = raw(site, "sec1", "/api/branches/B1/records", '{"data": {}, "expected_version": 1e400}')
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "InvalidInput" and "版本号" in body["message"] and "expected_version" not in body["message"]
    assert body["problems"][0]["field"] == "expected_version" and body["problems"][0]["key"] == "finite_number"
    assert "inf" not in r.text.lower() and "1e400" not in r.text and "input" not in json.dumps(body["detail"])
    assert all(d["msg"] and not d["msg"].isascii() for d in body["detail"])
    payload = "长" * 300_000
    r = site.call("sec1", "POST", "/api/token", json={"email": payload, "password": "x"})
    assert r.status_code == 422 and len(r.content) < 2000 and "最多 254 个字符" in r.json()["message"]
    r = site.call("sec1", "POST", "/api/branches/B1/records", json={"data": {"note": "a\x00b"}, "expected_version": 3e9})
    assert r.status_code == 422 and len(r.content) < 2000


def test_control_characters_and_out_of_range_dates_are_refused_with_nothing_applied(site: Site) -> None:
    w = site.world
    site.clock.now = at(3, 25)
    before = dump(w.sessions)
    r = site.call("org", "POST", "/api/branches/B1/extend", json={"deadline": "9999-12-31", "reason": "支部换届，延期办理。"})
    assert r.status_code == 422 and "超出本活动的合理范围" in r.json()["message"], r.text
    r = site.call("org", "POST", "/api/branches/B1/extend", json={"deadline": "2026-05-01", "reason": "换届\x00延期"})
    assert r.status_code == 422 and "空字符" in r.json()["message"], r.text
    assert dump(w.sessions) == before
    w.drive("B1", Stage.publicity)
    site.clock.now = at(4, 20, 11)
    assert site.call("org", "POST", "/api/branches/B1/publish").status_code == 200
    site.clock.now = at(4, 22)
    before = dump(w.sessions)
    r = site.call("sec2", "POST", "/api/branches/B1/objections", json={"text": "分数偏高\u2028Bcc: x@evil.cn"})
    assert r.status_code == 422 and "行分隔符" in r.json()["message"], r.text
    assert dump(w.sessions) == before


def test_content_disposition_is_safe_whatever_the_code(site: Site) -> None:
    """A general-branch code planted in the database behind the importer's back still cannot break the header."""
    evil = '../ev"il;x.html'
    with site.world.sessions() as s, s.begin():
        s.execute(text("UPDATE general_branches SET code = :c WHERE code = 'GB2'"), {"c": evil})
    r = site.call("org", "GET", "/api/reports/summary", params={"format": "csv", "general_branch": evil})
    assert r.status_code == 200, r.text
    header = r.headers["content-disposition"]
    m = Message()
    m["Content-Disposition"] = header
    assert m.get_param("filename", header="content-disposition").count("/") == 0
    assert '"' not in m.get_param("filename", header="content-disposition")
    assert header.count('"') == 2 and "\r" not in header and "\n" not in header
    assert "x.html" not in header.split(";")[-1].split("''")[0]


def test_no_oracle_out_of_scope_answers_as_unknown_before_any_stage_check(site: Site) -> None:
    """gb2 is outside B1's scope: reading, objecting (B1 is not under publicity) and downloading answer exactly as
    for codes that do not exist; no message lists another scope's codes."""
    w = site.world
    w.drive("B1", Stage.self_assessment)
    before = dump(w.sessions)

    def same(path: str, method: str = "GET", **kw: object) -> None:
        real = site.call("gb2", method, path.format("B1"), **kw)
        fake = site.call("gb2", method, path.format("NOPE"), **kw)
        assert real.status_code == fake.status_code == 404, (path, real.text, fake.text)
        assert real.json()["message"].replace("B1", "X") == fake.json()["message"].replace("NOPE", "X")
        assert "生物系" not in real.text and "自评" not in real.text

    same("/api/branches/{}")
    same("/api/branches/{}/history")
    same("/api/branches/{}/objections", "POST", json={"text": "该支部自评分偏高。"})
    same("/api/branches/{}/advance", "POST")
    same("/api/audit/verify?branch={}")
    r = site.call("gb1", "GET", "/api/reports/summary", params={"general_branch": "GB2"})
    u = site.call("gb1", "GET", "/api/reports/summary", params={"general_branch": "GB9"})
    assert r.status_code == u.status_code == 404
    assert r.json()["message"].replace("GB2", "X") == u.json()["message"].replace("GB9", "X")
    assert "GB1" not in u.text and "GB2" not in u.text
    assert dump(w.sessions) == before


def test_objections_stay_open_to_everyone_during_publicity(site: Site) -> None:
    w = site.world
    w.drive("B1", Stage.publicity)
    w.do(service.publish, "B1", "org@test.cn", now=at(4, 20, 11))
    site.clock.now = at(4, 22)
    r = site.call("gb2", "POST", "/api/branches/B1/objections", json={"text": "该支部自评分偏高。"})
    assert r.status_code == 200, r.text
