"""The ballot pages and API over HTTP (TestClient, SQLite and PostgreSQL): refusals in Chinese, the rate
limit per client address, answers missing keep the code unspent, staff-only pages and the status API."""

from __future__ import annotations

import re

from states.base import Stage
from tests.acceptance.conftest import Site
from tests.support.world import GB_SEC, at
from workflow import ballots, service


def _open(site: Site, codes: int = 3) -> tuple[int, list[str]]:
    site.world.drive("B1", Stage.member_evaluation)
    site.clock.now = at(4, 10, 9)
    with site.world.sessions() as s, s.begin():
        gb = service.actor_for(s, GB_SEC)
        b = ballots.open_ballot(s, "B1", gb, closes_at=at(4, 15, 18), now=at(4, 10, 9))
        return b.id, [i.shown for i in ballots.issue_codes(s, b.id, gb, codes, now=at(4, 10, 9))]


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


def test_guessing_is_rate_limited_and_missing_answers_spend_nothing(site: Site) -> None:
    bid, codes = _open(site)
    public = site.page_client(None)
    r = public.get(f"/v/{codes[0]}")
    assert r.status_code == 200 and "对本支部工作的总体评价" in r.text and "<fieldset>" in r.text
    r = public.post("/v", data={"csrf": _csrf(r.text), "code": codes[0], "satisfied_with_members": "yes"})
    assert r.status_code == 422 and "请选择“总体评价”" in r.text and "请选择“对支部书记是否满意”" in r.text
    with site.world.sessions() as s:
        assert ballots.participation(s, bid).voted == 0
    for i in range(ballots.MAX_FAILURES):
        r = public.get(f"/v/{'23456789ABCDEFGHJKLM'[i % 20] * 20}")
        assert r.status_code == 409 and "测评码无效" in r.text
    r = public.get(f"/v/{codes[1]}")  # a valid code, but this address has guessed too often
    assert r.status_code == 429 and "次数过多" in r.text
    site.clock.now = at(4, 10, 9, 20)  # the window has passed
    assert public.get(f"/v/{codes[1]}").status_code == 200


def test_staff_pages_and_the_status_api_show_participation_not_results(site: Site) -> None:
    bid, codes = _open(site)
    with site.world.sessions() as s, s.begin():
        top = ballots.get_ballot(s, bid).form["rating"]["choices"][0]["score"]
        ballots.cast_vote(s, codes[0], {"rating": top, "satisfied_with_members": True,
                                        "satisfied_with_secretary": False}, now=at(4, 10, 9))
    body = site.call("gb1", "GET", f"/api/ballots/{bid}").json()
    assert body == {"id": bid, "branch": "B1", "status": "open", "closes_at": body["closes_at"], "eligible": 3,
                    "voted": 1, "participation": 0.3333}
    assert site.call("sec1", "GET", f"/api/ballots/{bid}").status_code == 403
    assert 'href="/branches/B1/ballot"' in site.page_client("gb1").get("/branches/B1").text  # from the branch page
    page = site.page_client("gb1").get("/branches/B1/ballot")
    assert "已投票 1 / 可投票 3" in re.sub(r"<[^>]+>", "", page.text) and 'id="result"' not in page.text
    r = site.page_client("sec1").get("/branches/B1/ballot")
    assert r.status_code == 403 and "无权" in r.text
    r = site.page_client("gb1").get(f"/ballots/{bid}/export.json")
    assert r.status_code == 409 and "尚未关闭" in r.text
