"""Checkpoints made by the ticker (daily, at a stage deadline) and mailed to the auditors through the outbox."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from notifications import checkpoints
from tests.support.world import AUDITOR, World, at
from workflow import checkpoint


def test_daily_and_deadline_checkpoints_go_to_the_auditors(world: World, tmp_path: Path) -> None:
    key = tmp_path / "audit.key"
    with world.sessions() as s, s.begin():
        assert checkpoints.tick(s, key, now=at(3, 31, 9)) == []  # no key file: nothing, no error
    signer = checkpoint.keygen(key, "test.example/audit")
    with world.sessions() as s, s.begin():
        made = checkpoints.tick(s, key, now=at(3, 31, 9))  # haitang-2022: the survey's deadline is 03-31
    assert sorted(r.reason for r in made) == ["daily", "deadline:survey:2026-03-31"]
    with world.sessions() as s, s.begin():
        assert checkpoints.tick(s, key, now=at(3, 31, 18)) == []  # once a day, once a deadline
        again = checkpoints.tick(s, key, now=at(4, 1, 9))
    assert [r.reason for r in again] == ["daily"]
    with world.sessions() as s:
        rows = s.execute(text("SELECT o.kind, d.recipient, o.context FROM outbox o JOIN outbox_deliveries d "
                              "ON d.outbox_id = o.id WHERE o.kind = 'checkpoint'")).all()
    assert len(rows) == 3 and {r[1] for r in rows} == {AUDITOR}
    from notifications.render import render

    ctx = rows[0][2] if isinstance(rows[0][2], dict) else __import__("json").loads(rows[0][2])
    mail = render("checkpoint", {"recipient_name": "审计 陈", "items": [ctx], "keys": ["k"]})
    assert "日志检查点" in mail.subject and ctx["note"] in mail.text
    assert checkpoint.parse_checkpoint(ctx["note"], [signer.verifier]).size == ctx["size"]
