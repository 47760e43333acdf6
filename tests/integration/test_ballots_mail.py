"""Ballot mail through a real SMTP server (aiosmtpd on 127.0.0.1), on SQLite and PostgreSQL: the voting
links go out by the tick's dispatcher, the codes leave the outbox once sent, the reminder reaches only
those who have not voted (with a fresh code; the old one stops working), and the tick closes the ballot
at its time and writes the record."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from notifications.ballots import enqueue_invitations
from notifications.models import OutboxRow
from notifications.testing import Received, SmtpServer
from scheduler.jobs import run_tick
from states.base import Stage
from tests.support.world import GB_SEC, World, at
from workflow import ballots, service
from workflow.settings import Settings

CLOSES = at(4, 15, 18)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


def _ballot_mail(smtp: SmtpServer) -> list[Received]:
    """The ballot mail the server received (the sweep sends the campaign's usual reminders too)."""
    return [m for m in smtp.messages if m.keys and all(k.strip().startswith("ballot/") for k in m.keys)]


def _code(text: str) -> str:
    m = re.search(r"测评码：([2-9A-Z-]{23})", text)
    assert m, text
    return m.group(1)


def test_links_by_mail_reminders_to_non_voters_and_closing_by_the_tick(world: World, smtp: SmtpServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = world.sessions.kw["bind"]
    settings = Settings(smtp_host="127.0.0.1", smtp_port=smtp.port, data_dir=tmp_path)
    world.drive("B1", Stage.member_evaluation)
    people = [ballots.Voter(name=f"测评人{i}", email=f"v{i}@test.cn", kind="member" if i else "masses") for i in range(3)]
    with world.sessions() as s, s.begin():
        gb = service.actor_for(s, GB_SEC)
        b = ballots.open_ballot(s, "B1", gb, closes_at=CLOSES, now=at(4, 10, 9))
        issued = ballots.add_voters(s, b.id, gb, people, now=at(4, 10, 9))
        assert enqueue_invitations(s, b.id, issued, base_url="https://vote.example.cn", now=at(4, 10, 9)) == 3
        bid = b.id
        top = b.form["rating"]["choices"][0]["score"]
    run_tick(engine, settings, now=at(4, 10, 9, 5))
    mails = {m.rcpt_tos[0]: m for m in _ballot_mail(smtp)}
    assert sorted(mails) == ["v0@test.cn", "v1@test.cn", "v2@test.cn"]
    first = {who: _code(m.text) for who, m in mails.items()}
    assert f"https://vote.example.cn/v/{first['v1@test.cn']}" in mails["v1@test.cn"].html
    assert "不记名" in mails["v1@test.cn"].text and "2026-04-15 18:00" in mails["v1@test.cn"].text
    run_tick(engine, settings, now=at(4, 10, 9, 10))  # the next sweep blanks the codes of sent mail
    with world.sessions() as s:
        contexts = [r.context for r in s.query(OutboxRow).filter(OutboxRow.kind == "ballot")]
    assert len(contexts) == 3 and all(c["code"] == "" and c["link"] == "" for c in contexts)

    with world.sessions() as s, s.begin():
        ballots.cast_vote(s, first["v0@test.cn"], {"rating": top, "satisfied_with_members": True,
                                                    "satisfied_with_secretary": True}, now=at(4, 11))
    with world.sessions() as s, s.begin():
        issued = ballots.reissue_for_reminder(s, bid, service.actor_for(s, GB_SEC), now=at(4, 13))
        assert enqueue_invitations(s, bid, issued, base_url="https://vote.example.cn", now=at(4, 13), reminder=True) == 2
    before = len(_ballot_mail(smtp))
    run_tick(engine, settings, now=at(4, 13, 10, 5))
    reminders = _ballot_mail(smtp)[before:]
    assert sorted(m.rcpt_tos[0] for m in reminders) == ["v1@test.cn", "v2@test.cn"]  # not the one who voted
    assert all(m.subject.startswith("【提醒】") and "v0@test.cn" not in m.text for m in reminders)
    with world.sessions() as s, pytest.raises(ballots.BallotRefused, match="测评码无效"):
        ballots.cast_vote(s, first["v1@test.cn"], {}, now=at(4, 14))
    fresh = _code(next(m for m in reminders if m.rcpt_tos[0] == "v1@test.cn").text)
    with world.sessions() as s, s.begin():
        ballots.cast_vote(s, fresh, {"rating": top, "satisfied_with_members": False,
                                     "satisfied_with_secretary": True}, now=at(4, 14))

    run_tick(engine, settings, now=CLOSES)
    rec = world.case("B1").state["records"]["member_evaluation"]
    assert rec["source"] == "online" and rec["tally"]["ballots"] == 2 and rec["tally"]["satisfaction_members"] == 0.5
    assert rec["online"]["eligible"] == 3 and rec["online"]["participation"] == round(2 / 3, 4)
