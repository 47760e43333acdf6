"""An on-site meeting: every phone in the room reaches the server from one address (the campus Wi-Fi's
NAT). Voters who re-open a used link or press submit twice must not lock the room out; guessing still
does (TestClient, SQLite and PostgreSQL)."""

from __future__ import annotations

import re

from states.base import Stage
from tests.acceptance.conftest import Site
from tests.support.world import GB_SEC, at
from workflow import ballots, service


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


def test_used_codes_resubmitted_in_one_room_do_not_lock_it_but_guesses_do(site: Site) -> None:
    site.world.drive("B1", Stage.member_evaluation)
    site.clock.now = at(4, 10, 9)
    with site.world.sessions() as s, s.begin():
        gb = service.actor_for(s, GB_SEC)
        b = ballots.open_ballot(s, "B1", gb, closes_at=at(4, 10, 18), now=at(4, 10, 9))
        codes = [i.shown for i in ballots.issue_codes(s, b.id, gb, 3, now=at(4, 10, 9))]
        top = str(b.form["rating"]["choices"][0]["score"])
    room = site.page_client(None)
    form = room.get(f"/v/{codes[0]}").text
    vote = {"csrf": _csrf(form), "code": codes[0], "rating": top, "satisfied_with_members": "yes",
            "satisfied_with_secretary": "yes"}
    r = room.post("/v", data=vote)
    assert r.status_code == 200 and "投票成功" in r.text
    for _ in range(ballots.MAX_FAILURES + 5):  # the link opened again, submit pressed again, by many people
        r = room.post("/v", data=vote)
        assert r.status_code == 409 and "已经投过票" in r.text
        assert room.get(f"/v/{codes[0]}").status_code == 409
    r = room.get(f"/v/{codes[1]}")  # the next voter in the room still gets the form
    assert r.status_code == 200 and "提交选票" in r.text
    for i in range(ballots.MAX_FAILURES):
        assert room.get(f"/v/{'23456789ABCDEFGHJKLM'[i] * 20}").status_code == 409
    r = room.get(f"/v/{codes[2]}")  # guessing from this address is what locks it
    assert r.status_code == 429 and "次数过多" in r.text
    with site.world.sessions() as s:
        assert ballots.participation(s, b.id).voted == 1
