"""Access control both ways (issue 14, point 5): for every role, every API endpoint, page and form post —
found by walking the app's routes, so a new route cannot be forgotten — and the main CLI commands:

* a branch, a general branch and a committee outside the person's scope are refused exactly as codes
  that do not exist (404, 不存在或无权访问), before any stage check, and nothing changes (a dump of every
  table before and after);
* every action of a higher role on the person's own branch is refused with nothing changed;
* the allowed direction succeeds.

The world: committee C1 (GB1: B1, B2; GB2: B3, B4) and a second committee C2 (GB3: B5) with its own
organisation department; the personas of tests/acceptance/conftest.py.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from states.base import Role
from tests.acceptance.conftest import Site
from tests.support.dump import dump
from tests.support.world import World, at
from workflow.importer import OrgRow, import_rows
from workflow.people import add_person
from workflow.service import open_missing_cases

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE_NAME = "外校第一党支部"
NAMES = {"B1": "生物系教工党支部", "B2": "化学系教工党支部", "B3": "本科生第一党支部", "B5": OUTSIDE_NAME}

# persona → (branches outside their scope, general branches outside, committees outside)
OUTSIDE: dict[str, tuple[list[str], list[str]]] = {
    "sec1": (["B2", "B3", "B5"], ["GB1", "GB2", "GB3"]),
    "gb1": (["B3", "B5"], ["GB2", "GB3"]),
    "org": (["B5"], ["GB3"]),
    "m1": (["B5"], ["GB3"]),
    "org2@test.cn": (["B1", "B3"], ["GB1", "GB2"]),  # the sibling committee C2's department (issue 12)
}
ROLES = {"sec1": "branch_secretary", "gb1": "general_branch_secretary", "org": "org_department",
         "m1": "committee_member", "auditor": "auditor"}


def walk(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path) of every route, through included routers."""

    def go(routes: Any, prefix: str) -> Iterator[tuple[str, str]]:
        for r in routes:
            ctx = getattr(r, "include_context", None)
            if ctx is not None:
                yield from go(ctx.included_router.routes, prefix + ctx.prefix)
            elif hasattr(r, "path"):
                for m in sorted(getattr(r, "methods", None) or {"MOUNT"}):
                    if m != "HEAD":
                        yield m, prefix + r.path

    yield from go(app.routes, "")


@dataclass(frozen=True)
class Probe:
    """How to try a route on something outside the caller's scope: ``{b}`` is a branch code, ``{g}`` a
    general-branch code; ``body`` is JSON (API) or form fields (pages)."""

    url: str
    body: dict[str, Any] | None = None
    form: bool = False


_REC = {"data": {"answers": {}}}
# Every route that names a branch or a general branch, with how to reach it.
SCOPED: dict[tuple[str, str], Probe] = {
    ("GET", "/api/branches/{code}"): Probe("/api/branches/{b}"),
    ("GET", "/api/branches/{code}/unmet"): Probe("/api/branches/{b}/unmet"),
    ("GET", "/api/branches/{code}/history"): Probe("/api/branches/{b}/history?at=2026-03-25"),
    ("POST", "/api/branches/{code}/records"): Probe("/api/branches/{b}/records", _REC),
    ("POST", "/api/branches/{code}/advance"): Probe("/api/branches/{b}/advance", {}),
    ("POST", "/api/branches/{code}/grade"): Probe("/api/branches/{b}/grade"),
    ("POST", "/api/branches/{code}/adjust"): Probe("/api/branches/{b}/adjust", {"grade": "good", "reason": "党委研究决定。"}),
    ("POST", "/api/branches/{code}/sign"): Probe("/api/branches/{b}/sign"),
    ("POST", "/api/branches/{code}/publish"): Probe("/api/branches/{b}/publish"),
    ("POST", "/api/branches/{code}/objections"): Probe("/api/branches/{b}/objections", {"text": "该支部自评分偏高。"}),
    ("POST", "/api/branches/{code}/objections/{objection_id}/resolve"):
        Probe("/api/branches/{b}/objections/1/resolve", {"upheld": False, "reason": "经核实，异议不成立。"}),
    ("POST", "/api/branches/{code}/items/{item}/complete"):
        Probe("/api/branches/{b}/items/1/complete", {"evidence": "已完成，附会议记录。"}),
    ("POST", "/api/branches/{code}/extend"):
        Probe("/api/branches/{b}/extend", {"deadline": "2026-05-01", "reason": "支部换届，延期办理。"}),
    ("GET", "/api/audit/verify"): Probe("/api/audit/verify?branch={b}"),
    ("GET", "/api/outbox"): Probe("/api/outbox?branch={b}"),
    ("GET", "/api/reports/{name}"): Probe("/api/reports/summary?format=csv&general_branch={g}"),
    ("GET", "/branches/{code}"): Probe("/branches/{b}"),
    ("GET", "/branches/{code}/record"): Probe("/branches/{b}/record"),  # what was filed (issue 16)
    ("GET", "/branches/{code}/grades"): Probe("/branches/{b}/grades"),  # grade history (issue 12)
    ("GET", "/api/branches/{code}/grades"): Probe("/api/branches/{b}/grades"),
    ("POST", "/branches/{code}"): Probe("/branches/{b}", {"action": "extend", "deadline": "2026-05-01",
                                                          "reason": "支部换届，延期办理。"}, form=True),
    ("GET", "/reports/{file}"): Probe("/reports/summary.csv?general_branch={g}"),
    # the Merkle log's proofs (issue 11): for those who read every branch; refused alike otherwise
    ("GET", "/api/audit/proof/{branch}/{seq}"): Probe("/api/audit/proof/{b}/1"),
    ("GET", "/audit/proof"): Probe("/audit/proof?branch={b}&seq=1"),
}
# Routes that name no branch or general branch: what each role gets is in the tests below or elsewhere.
UNSCOPED = {
    ("GET", "/openapi.json"), ("GET", "/api/docs"), ("GET", "/docs/oauth2-redirect"), ("POST", "/api/token"),
    ("GET", "/api/me"), ("GET", "/api/organisations"), ("GET", "/api/campaigns"), ("GET", "/api/branches"),
    ("GET", "/api/reports"), ("GET", "/api/charts/{name}.svg"), ("GET", "/login"), ("POST", "/login"),
    ("POST", "/logout"), ("GET", "/"), ("GET", "/dashboard"), ("GET", "/branches"), ("GET", "/committee"),
    ("GET", "/publicity"), ("GET", "/audit"), ("GET", "/reports"), ("MOUNT", "/static"),
    ("GET", "/healthz"), ("GET", "/readyz"),
    # the Merkle log (issue 11): whole-log reads for auditors and committee-level people (WIDE below)
    ("GET", "/api/audit/checkpoint"), ("GET", "/api/audit/checkpoints"), ("GET", "/api/audit/consistency"),
    ("GET", "/audit/log"),
    # online ballots (issue 15): voters by code; staff pages per branch; ballots by id (their own tests)
    ("GET", "/v"), ("GET", "/v/{code}"), ("POST", "/v"), ("GET", "/branches/{code}/ballot"),
    ("POST", "/branches/{code}/ballot"), ("GET", "/ballots/{ballot_id}/export.{fmt}"),
    ("GET", "/api/ballots/{ballot_id}"),
    # attachments (issue 16): files by sha256 and the multipart upload; both ways (the same 404 for out of
    # scope and unknown, nothing stored) in tests/acceptance/test_attachments_http.py
    ("GET", "/attachments/{sha}"), ("GET", "/api/attachments/{sha}"), ("POST", "/api/branches/{code}/attachments"),
    # the parent's roll-up (issue 12): tests/integration/test_tenancy.py and the parent tests below
    ("GET", "/rollup"), ("GET", "/api/rollup"), ("GET", "/rollup/summary.{fmt}"), ("GET", "/api/rollup/summary"),
    ("GET", "/rollup/forms/{file}"), ("GET", "/api/rollup/forms/{name}"),  # tests/acceptance/test_consolidated_pages.py
    # issue 16 (points 4, 5): branches in the body, answered per branch (out of scope as unknown: their
    # own tests in tests/acceptance/test_pages_work.py); the person's own notices; the objection queue
    # (organisation department and auditors); the receipt look-up (by code, rate-limited)
    ("POST", "/bulk"), ("POST", "/api/bulk/{action}"), ("GET", "/notices"), ("GET", "/objections"),
    ("GET", "/objections/receipt"), ("POST", "/objections/receipt"),
}


def test_every_route_is_classified(site: Site) -> None:
    """A new route fails here until it is added to SCOPED (and so probed) or to UNSCOPED."""
    routes = set(walk(site.app))
    assert routes, "no routes found"
    unknown = sorted(routes - set(SCOPED) - UNSCOPED)
    assert not unknown, f"classify these routes in tests/acceptance/test_access_both_ways.py: {unknown}"


PARENT_ORG = "orgp@test.cn"  # organisation department of the parent committee P (issue 12)
PARENT_AUDITOR = "auditp@test.cn"  # an auditor scoped to P


@pytest.fixture
def two_committees(site: Site) -> Site:
    """The world's C1 and a sibling committee C2 (GB3: B5, its own preset henan-2012 in the same year, its
    own organisation department), both under a parent committee P with its organisation department and
    a P-scoped auditor (issue 12: tenants in a tree)."""
    from workflow import tenancy
    from workflow.campaigns import create_campaign

    w: World = site.world
    with w.sessions() as s, s.begin():
        tenancy.add_committee(s, "P", "上级党委")
        tenancy.move_committee(s, "C1", "P")
        tenancy.add_committee(s, "C2", "外校党委", parent="P")
        import_rows(s, [OrgRow(row=2, committee="外校党委", committee_code="C2", general_branch="外校党总支",
                               general_branch_code="GB3", code="B5", name=OUTSIDE_NAME, branch_type="teacher",
                               secretary_name="书记五", secretary_email="sec5@test.cn", member_count=8,
                               last_reelection=dt.date(2025, 1, 1), last_activity=dt.date(2026, 2, 1),
                               secretary_violation=False)])
        add_person(s, "org2@test.cn", "外校组织部", [Role.org_department], "C2")
        add_person(s, PARENT_ORG, "上级组织部", [Role.org_department], "P")
        add_person(s, PARENT_AUDITOR, "上级审计", [Role.auditor], "P")
        create_campaign(s, preset="henan-2012", year=2026, committee="C2", now=at(3, 2))
        open_missing_cases(s, w.campaign, now=at(3, 2))
    with w.sessions() as s, s.begin():
        from tests.acceptance.conftest import _password_hash
        from workflow.models import Person

        for p in s.query(Person).filter(Person.password_hash.is_(None)):
            p.password_hash = _password_hash()
    site.clock.now = at(3, 25)
    return site


def _call(site: Site, who: str, method: str, probe: Probe, b: str, g: str) -> Any:
    url = probe.url.format(b=b, g=g)
    if probe.form:
        c = site.page_client(who)
        page = c.get("/branches/B1")
        m = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
        if m is None:  # a person outside C1 (issue 12: the sibling committee's): the token of any page of theirs
            m = re.search(r'name="csrf" value="([0-9a-f]+)"', c.get("/branches/B5").text)
        return c.post(url, data={**(probe.body or {}), "csrf": m.group(1) if m else ""}, follow_redirects=False)
    if url.startswith("/api"):
        return site.call(who, method, url, json=probe.body) if method == "POST" else site.call(who, method, url)
    return site.page_client(who).request(method, url, follow_redirects=False)


@pytest.mark.parametrize("who", list(OUTSIDE))
def test_outside_ones_scope_is_refused_as_unknown_with_nothing_changed(two_committees: Site, who: str) -> None:
    site = two_committees
    branches, gbs = OUTSIDE[who]
    routes = set(walk(site.app))
    before = dump(site.world.sessions)
    tried = 0
    for (method, path), probe in SCOPED.items():
        if (method, path) not in routes:
            continue
        targets = [(b, "GB1") for b in branches] if "{b}" in probe.url else [("B1", g) for g in gbs]
        for b, g in targets:
            real = _call(site, who, method, probe, b, g)
            fake = _call(site, who, method, probe, "NOPE9", "NOGB9")
            where = (who, method, probe.url, b, g)
            # the same answer for what exists outside one's scope and for what does not exist: 404, or 403
            # where the route is refused to the role as a whole (downloads for branch secretaries, the log)
            assert real.status_code == fake.status_code, (where, real.status_code, fake.status_code, real.text[:300])
            assert real.status_code in (403, 404), (where, real.status_code, real.text[:300])
            if real.status_code == 404:
                assert "不存在或无权访问" in real.text, where
            else:
                assert ROLE_WIDE.get(path, set()) >= {who}, (where, real.text[:300])
            if "{b}" in probe.url:
                assert NAMES[b] not in real.text, where
            if real.headers.get("content-type", "").startswith("application/json"):
                mine, unknown = (b, "NOPE9") if "{b}" in probe.url else (g, "NOGB9")
                norm = real.json()["message"].replace(f"'{mine}'", "'X'")
                assert norm == fake.json()["message"].replace(f"'{unknown}'", "'X'"), where
            tried += 1
    assert tried >= 15  # every scoped route at least once
    assert dump(site.world.sessions) == before


# Routes refused to a role as a whole (whatever the branch): path → those roles.
ROLE_WIDE = {
    "/reports/{file}": {"sec1"}, "/api/reports/{name}": {"sec1"},
    "/api/audit/proof/{branch}/{seq}": {"sec1", "gb1", "org", "m1", "org2@test.cn"},
    "/audit/proof": {"sec1", "gb1", "org", "m1", "org2@test.cn"},
}


# Actions of a higher role, tried by each persona on a branch in their own scope (B1, in the survey).
HIGHER: dict[str, list[tuple[str, dict[str, Any] | None]]] = {
    "/api/branches/B1/grade": [("POST", None)],
    "/api/branches/B1/adjust": [("POST", {"grade": "good", "reason": "党委研究决定。"})],
    "/api/branches/B1/sign": [("POST", None)],
    "/api/branches/B1/publish": [("POST", None)],
    "/api/branches/B1/objections/1/resolve": [("POST", {"upheld": False, "reason": "经核实，异议不成立。"})],
    "/api/branches/B1/extend": [("POST", {"deadline": "2026-05-01", "reason": "支部换届，延期办理。"})],
    "/api/branches/B1/records": [("POST", {"data": {"answers": {}}})],
    "/api/branches/B1/advance": [("POST", {})],
}
MAY = {  # which of those each role may do at all (anywhere in the campaign)
    "sec1": set(),  # the survey is not the branch secretary's; everything else above is a higher role's
    "gb1": {"/api/branches/B1/records", "/api/branches/B1/advance"},
    "m1": {"/api/branches/B1/grade", "/api/branches/B1/adjust", "/api/branches/B1/sign"},
    "auditor": set(),
}
WIDE = ["/api/outbox", "/api/audit/verify", "/api/charts/grades.svg", "/api/audit/checkpoints"]


@pytest.mark.parametrize("who", list(MAY))
def test_actions_of_a_higher_role_are_refused_with_nothing_changed(two_committees: Site, who: str) -> None:
    site = two_committees
    before = dump(site.world.sessions)
    for path, calls in HIGHER.items():
        if path in MAY[who]:
            continue
        for method, body in calls:
            r = site.call(who, method, path, json=body)
            assert r.status_code in (403, 409), (who, path, r.status_code, r.text[:300])
            assert r.json()["message"], (who, path)
    if who in ("sec1", "gb1"):
        for path in WIDE:
            assert site.call(who, "GET", path).status_code == 403, (who, path)
        assert site.call(who, "GET", "/api/branches", params={"general_branch": "GB3"}).json() == []
    assert dump(site.world.sessions) == before


@pytest.mark.parametrize("who", list(ROLES))
def test_the_allowed_direction_succeeds(two_committees: Site, who: str) -> None:
    site = two_committees
    for path in ("/api/branches/B1", "/api/branches/B1/history", "/api/audit/verify?branch=B1"):
        assert site.call(who, "GET", path).status_code == 200, (who, path)
    assert site.page_client(who).get("/branches/B1").status_code == 200
    act = {
        "gb1": ("/api/branches/B1/records", {"data": site.world.survey_data()}),
        "org": ("/api/branches/B1/extend", {"deadline": "2026-05-01", "reason": "支部换届，延期办理。"}),
    }.get(who)
    if act:
        r = site.call(who, "POST", act[0], json=act[1])
        assert r.status_code == 200, r.text
    if who in ("org", "m1", "auditor"):
        assert site.call(who, "GET", "/api/reports/summary", params={"format": "csv", "general_branch": "GB2"}).status_code == 200
    org2 = site.call("org2@test.cn", "GET", "/api/branches/B5")
    assert org2.status_code == 200 and org2.json()["branch"]["name"] == OUTSIDE_NAME


def test_cli_refuses_outside_ones_scope_as_unknown_with_nothing_changed(tmp_path: Path) -> None:
    """The main acting commands with --as someone outside the branch's scope: exit 3 (as for an unknown
    branch), the same message, nothing changed; the same command as the responsible person succeeds."""
    from workflow.db import make_engine, session_factory
    from workflow.migrate import upgrade

    data = tmp_path / "data"
    engine = make_engine(f"sqlite:///{data / 'branchflow.db'}")
    upgrade(engine)
    world = World(session_factory(engine))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHFLOW_")}
    env.update(BRANCHFLOW_DATA_DIR=str(data), PYTHONPATH=str(ROOT))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "service.cli", *args, "--now", "2026-03-25"], env=env, text=True,
                              capture_output=True, timeout=120, check=False)

    survey = tmp_path / "survey.json"
    import json

    survey.write_text(json.dumps(world.survey_data(), ensure_ascii=False), encoding="utf-8")
    commands = [
        ["record", "{b}", str(survey), "--as", "gb2@test.cn"],
        ["advance", "{b}", "--as", "gb2@test.cn"],
        ["grade", "{b}", "--as", "sec3@test.cn"],
        ["sign", "{b}", "--as", "sec2@test.cn"],
        ["object", "{b}", "--text", "该支部自评分偏高。", "--as", "sec2@test.cn"],
        ["extend", "{b}", "--until", "2026-05-01", "--reason", "支部换届，延期办理。", "--as", "gb2@test.cn"],
    ]
    before = dump(world.sessions)
    for cmd in commands:
        real = cli(*[c.format(b="B1") for c in cmd])
        fake = cli(*[c.format(b="NOPE9") for c in cmd])
        assert real.returncode == fake.returncode == 3, (cmd, real.stderr, fake.stderr)
        assert real.stderr.replace("B1", "X") == fake.stderr.replace("NOPE9", "X"), (cmd, real.stderr, fake.stderr)
        assert "生物系" not in real.stderr + real.stdout
    assert dump(world.sessions) == before
    ok = cli("record", "B1", str(survey), "--as", "gb1@test.cn")
    assert ok.returncode == 0, ok.stderr
    engine.dispose()



@pytest.mark.parametrize("who", [PARENT_ORG, PARENT_AUDITOR])
def test_the_parent_reads_its_children_and_changes_nothing(two_committees: Site, who: str) -> None:
    """Issue 12: the parent committee's organisation department and a P-scoped auditor read both children
    (branches, pages, the roll-up) and every write on a child's branch is refused with nothing changed."""
    site = two_committees
    before = dump(site.world.sessions)
    for b, name in (("B1", NAMES["B1"]), ("B5", OUTSIDE_NAME)):
        r = site.call(who, "GET", f"/api/branches/{b}")
        assert r.status_code == 200 and r.json()["branch"]["name"] == name, (who, b, r.text[:200])
        page = site.page_client(who).get(f"/branches/{b}")
        assert page.status_code == 200 and name in page.text
    assert [r["code"] for r in site.call(who, "GET", "/api/branches", params={"campaign": "henan-2026"}).json()] == ["B5"]
    up = site.call(who, "GET", "/api/rollup")
    assert up.status_code == 200, up.text
    rows = {r["committee"]: r["branches"] for r in up.json()["rows"]}
    assert rows == {"P": 0, "C1": 4, "C2": 1}
    page = site.page_client(who).get("/rollup")
    assert page.status_code == 200 and "外校党委" in page.text and "测试学院党委" in page.text
    assert 'href="/rollup"' in page.text  # in the navigation
    # P runs no campaign of its own: its dashboard is the roll-up of its children
    home = site.page_client(who).get("/dashboard", follow_redirects=False)
    assert home.status_code == 303 and home.headers["location"] == "/rollup"
    # a deployment-wide auditor has no one campaign either (two committees run theirs): the same landing
    wide = site.page_client("auditor").get("/dashboard", follow_redirects=False)
    assert wide.status_code == 303 and wide.headers["location"] == "/rollup"
    assert site.page_client("auditor").get("/dashboard", params={"campaign": "henan-2026"}).status_code == 200
    csv = site.page_client(who).get("/rollup/summary.csv")
    assert csv.status_code == 200 and csv.content.startswith("\ufeff".encode())
    assert "外校党委（C2）" in csv.content.decode("utf-8-sig") and "测试学院党委（C1）" in csv.content.decode("utf-8-sig")
    assert site.call(who, "GET", "/api/rollup/summary", params={"format": "xlsx"}).content[:2] == b"PK"
    routes = set(walk(site.app))
    tried = 0
    for (method, path), probe in SCOPED.items():
        if method != "POST" or (method, path) not in routes:
            continue
        for b in ("B1", "B5"):
            r = _call(site, who, method, probe, b, "GB1")
            assert r.status_code in (403, 409), (who, path, b, r.status_code, r.text[:300])
            tried += 1
    assert tried >= 20
    for campaign in ("haitang-2026", "henan-2026"):
        r = site.call(who, "POST", "/api/branches/B1/extend", json={"deadline": "2026-05-01", "reason": "上级要求延期。"},
                      params={"campaign": campaign})
        assert r.status_code in (403, 404)
    assert dump(site.world.sessions) == before


@pytest.mark.parametrize("who", ["org", "org2@test.cn", "m1", "gb1", "sec1"])
def test_the_roll_up_is_the_parents_only(two_committees: Site, who: str) -> None:
    """A child's department rolls up its own subtree (no children: its own row); a sibling's committee and an
    unknown one answer alike; branch and general-branch secretaries and committee members are refused."""
    site = two_committees
    r = site.call(who, "GET", "/api/rollup")
    if who in ("org", "org2@test.cn"):
        assert r.status_code == 200 and [x["committee"] for x in r.json()["rows"]] == ["C1" if who == "org" else "C2"]
        real = site.call(who, "GET", "/api/rollup", params={"committee": "C2" if who == "org" else "C1"})
        fake = site.call(who, "GET", "/api/rollup", params={"committee": "NOPE9"})
        assert real.status_code == fake.status_code == 404
        assert real.json()["message"].replace("'C2'", "'X'").replace("'C1'", "'X'") == \
            fake.json()["message"].replace("'NOPE9'", "'X'")
        summary = site.call(who, "GET", "/api/rollup/summary", params={"format": "csv"}).content.decode("utf-8-sig")
        assert ("外校党委" in summary) is (who != "org") and ("测试学院党委" in summary) is (who == "org")
    else:
        assert r.status_code == 403, r.text
        assert site.call(who, "GET", "/api/rollup/summary").status_code == 403
        assert site.page_client(who).get("/rollup/summary.xlsx").status_code == 403
