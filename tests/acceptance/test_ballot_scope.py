"""A general-branch secretary sees and runs only their own general branch's ballots, in both directions:
the staff page, opening, closing, new codes, the export and the status API (TestClient, SQLite and
PostgreSQL)."""

from __future__ import annotations

import re

from states.base import Stage
from tests.acceptance.conftest import Site
from tests.support.world import GB2_SEC, GB_SEC, at
from workflow import ballots, service


def _open(site: Site, branch: str, secretary: str) -> int:
    site.world.drive(branch, Stage.member_evaluation)
    site.clock.now = at(4, 10, 9)
    with site.world.sessions() as s, s.begin():
        gb = service.actor_for(s, secretary)
        b = ballots.open_ballot(s, branch, gb, closes_at=at(4, 15, 18), now=at(4, 10, 9))
        ballots.issue_codes(s, b.id, gb, 2, now=at(4, 10, 9))
        return b.id


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


def test_a_general_branch_secretary_cannot_reach_another_general_branchs_ballot(site: Site) -> None:
    mine = {"gb1": ("B1", _open(site, "B1", GB_SEC)), "gb2": ("B3", _open(site, "B3", GB2_SEC))}
    for who, other in (("gb1", "gb2"), ("gb2", "gb1")):
        branch, bid = mine[other]
        own_branch, _own = mine[who]
        client = site.page_client(who)
        csrf = _csrf(client.get(f"/branches/{own_branch}/ballot").text)  # their own page works
        r = client.get(f"/branches/{branch}/ballot")
        assert r.status_code == 403 and "无权" in r.text and "可投票" not in r.text
        for action in ("close", "codes", "remind", "open"):
            r = client.post(f"/branches/{branch}/ballot", data={"csrf": csrf, "action": action, "count": "3",
                                                                 "closes_at": "2026-04-15T18:00"})
            assert r.status_code == 403 and "无权" in r.text, (who, action)
            assert "<svg" not in r.text
        assert site.call(who, "GET", f"/api/ballots/{bid}").status_code == 403
        with site.world.sessions() as s:
            assert ballots.get_ballot(s, bid).status == "open"
            assert ballots.participation(s, bid).eligible == 2  # no codes were added
    with site.world.sessions() as s, s.begin():  # closed by its own secretary, then the export is theirs only
        ballots.close_ballot(s, mine["gb1"][1], service.actor_for(s, GB_SEC), now=at(4, 10, 10))
        ballots.close_ballot(s, mine["gb2"][1], service.actor_for(s, GB2_SEC), now=at(4, 10, 10))
    for who, other in (("gb1", "gb2"), ("gb2", "gb1")):
        for fmt in ("json", "csv"):
            assert site.page_client(who).get(f"/ballots/{mine[who][1]}/export.{fmt}").status_code == 200
            r = site.page_client(who).get(f"/ballots/{mine[other][1]}/export.{fmt}")
            assert r.status_code == 403 and "无权" in r.text and "commitment" not in r.text


def test_the_outbox_listing_does_not_tell_staff_who_was_reminded(site: Site) -> None:
    from notifications import ballots as ballot_mail

    site.world.drive("B1", Stage.member_evaluation)
    site.clock.now = at(4, 10, 9)
    with site.world.sessions() as s, s.begin():
        gb = service.actor_for(s, GB_SEC)
        b = ballots.open_ballot(s, "B1", gb, closes_at=at(4, 15, 18), now=at(4, 10, 9))
        issued = ballots.add_voters(s, b.id, gb, [ballots.Voter(name="甲同志", email="jia@test.cn"),
                                                  ballots.Voter(name="乙同志", email="yi@test.cn")], now=at(4, 10, 9))
        ballot_mail.enqueue_invitations(s, b.id, issued, base_url="http://x", now=at(4, 10, 9))
        top = b.form["rating"]["choices"][0]["score"]
    with site.world.sessions() as s, s.begin():  # 甲 votes; the reminder then goes to 乙 only
        ballots.cast_vote(s, issued[0].code, {"rating": top, "satisfied_with_members": True,
                                              "satisfied_with_secretary": True}, now=at(4, 10, 9))
    with site.world.sessions() as s, s.begin():
        again = ballots.reissue_for_reminder(s, b.id, service.actor_for(s, GB_SEC), now=at(4, 10, 10))
        assert ballot_mail.enqueue_invitations(s, b.id, again, base_url="http://x", now=at(4, 10, 10), reminder=True) == 1
    r = site.call("gb1", "GET", "/api/outbox?branch=B1")
    assert r.status_code == 200
    rows = [row for row in r.json() if row["kind"] in ("ballot", "ballot_reminder")]
    assert sorted(row["kind"] for row in rows) == ["ballot", "ballot", "ballot_reminder"]  # how many, yes
    for row in rows:  # to whom, no
        assert row["recipient"] == "（网上测评邮件不显示收件人）" and row["recipient_name"] == ""
        assert all(v.voter_id not in row["dedup_key"] for v in issued)
    assert not any(who in r.text for who in ("甲同志", "乙同志", "jia@test.cn", "yi@test.cn"))
