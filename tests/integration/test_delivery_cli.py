"""`branchflow tick` and `branchflow outbox` say loudly when mail could not go out (subprocesses, SQLite)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import update

from notifications.models import DeliveryRow
from notifications.testing import free_port
from tests.acceptance.test_tick_cli import CLI, ORG_CSV
from workflow.db import make_engine, session_factory


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    """The organisation of the tick acceptance tests: one branch, its general-branch secretary, the department."""
    c = CLI(tmp_path)
    c("init")
    c("campaign", "create", "--preset", "haitang-2022", "--year", "2026", "--now", "2026-03-01T08:00")
    (tmp_path / "org.csv").write_text(ORG_CSV, encoding="utf-8")
    c("import", str(tmp_path / "org.csv"), "--now", "2026-03-01T08:30")
    c("person", "add", "gb@example.cn", "--name", "总支书记 赵", "--role", "general_branch_secretary", "--scope", "GB1")
    c("person", "add", "org@example.cn", "--name", "组织部 钱", "--role", "org_department", "--scope", "C1")
    return c


def test_tick_with_the_mail_server_down_ends_non_zero_with_a_chinese_line(cli: CLI) -> None:
    env = {"BRANCHFLOW_SMTP_HOST": "127.0.0.1", "BRANCHFLOW_SMTP_PORT": str(free_port()), "BRANCHFLOW_SMTP_TIMEOUT": "3"}
    r = cli("tick", "--now", "2026-03-24T09:00", env=env, code=8)
    assert "发送邮件 0 封" in r.stdout and "稍后重试 2 条" in r.stdout
    assert "错误：邮件一封也未能发出（无法连接邮件服务器" in r.stderr
    assert "邮件通知：待发送 2，已发送 0" in cli("outbox").stdout


def test_held_messages_are_shown_loudly_and_make_tick_fail_until_they_go_out(cli: CLI, tmp_path: Path) -> None:
    cli("tick", "--now", "2026-03-24T09:00")  # two mails into the .eml sink
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'branchflow.db'}")
    with session_factory(engine)() as s, s.begin():  # as a template error would leave one
        s.execute(update(DeliveryRow).where(DeliveryRow.id == 1)
                  .values(status="held", holds=1, next_attempt_at=dt.datetime(2026, 3, 24, 1, 5, tzinfo=dt.UTC),
                          last_error="邮件模板渲染失败：TemplateNotFound: notices.txt.j2"))
    engine.dispose()
    out = cli("outbox").stdout
    assert "！！注意：暂扣 1 条——因邮件模板或配置错误未能生成或发送" in out
    assert "[暂扣]" in out and "邮件模板渲染失败：TemplateNotFound: notices.txt.j2" in out
    assert "[暂扣]" in cli("outbox", "--status", "held").stdout
    r = cli("tick", "--now", "2026-03-24T09:00", code=8)
    assert "错误：有 1 条邮件通知因邮件模板或配置错误未能生成或发送，已暂扣" in r.stderr
    r = cli("tick", "--now", "2026-03-24T09:10")  # due again, the templates are fine: it goes out
    assert "发送邮件 1 封" in r.stdout
    assert "暂扣" not in cli("outbox").stdout


def test_outbox_json_counts_every_status(cli: CLI) -> None:
    import json

    counts = json.loads(cli("outbox", "--json").stdout)["counts"]
    assert counts == {"pending": 0, "held": 0, "sent": 0, "dead": 0, "cancelled": 0, "skipped": 0}
