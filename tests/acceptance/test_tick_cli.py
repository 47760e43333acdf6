"""`branchflow tick` and `branchflow outbox` as a subprocess: the .eml sink by default, SMTP when configured."""

from __future__ import annotations

import os
import subprocess
import sys
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from notifications.testing import SmtpServer

ROOT = Path(__file__).resolve().parents[2]
ORG_CSV = """党委,党委编码,党总支,党总支编码,支部编码,支部名称,支部类型,书记姓名,书记邮箱,党员人数
生命学院党委,C1,教工党总支,GB1,T01,生物系教工党支部,教工,王建国,wang@example.cn,12
"""


class CLI:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHFLOW_")}
        self.env["BRANCHFLOW_DATA_DIR"] = str(tmp / "data")
        self.env["PYTHONPATH"] = str(ROOT)

    def __call__(self, *args: str, code: int = 0, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([sys.executable, "-m", "service.cli", *args], check=False, cwd=self.tmp, env={**self.env, **(env or {})},
                           text=True, capture_output=True, timeout=120)
        assert r.returncode == code, f"{args} → {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
        return r


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    c = CLI(tmp_path)
    c("init")
    c("campaign", "create", "--preset", "haitang-2022", "--year", "2026", "--now", "2026-03-01T08:00")
    (tmp_path / "org.csv").write_text(ORG_CSV, encoding="utf-8")
    c("import", str(tmp_path / "org.csv"), "--now", "2026-03-01T08:30")
    c("person", "add", "gb@example.cn", "--name", "总支书记 赵", "--role", "general_branch_secretary", "--scope", "GB1")
    c("person", "add", "org@example.cn", "--name", "组织部 钱", "--role", "org_department", "--scope", "C1")
    return c


def test_tick_writes_eml_files_without_smtp_and_outbox_lists_them(cli: CLI, tmp_path: Path) -> None:
    r = cli("tick", "--now", "2026-03-24T09:00")
    assert "新增提醒 1 条" in r.stdout and "月调度 1 份" in r.stdout
    assert "发送邮件 2 封" in r.stdout
    mail_dir = tmp_path / "data" / "mail"
    assert f"未配置 SMTP：邮件已写入 {mail_dir}" in r.stdout
    files = sorted(mail_dir.glob("*.eml"))
    assert len(files) == 2
    msgs = [BytesParser(policy=policy.default).parsebytes(f.read_bytes()) for f in files]
    subjects = sorted(str(m["Subject"]) for m in msgs)
    assert subjects == ["【截止提醒】生物系教工党支部“调查摸底”环节将于2026年3月31日截止（还剩7天）",
                        "【月调度】西安海棠职业学院 2026 年基层组织建设年 2026-03 进度：1 个支部，逾期 0 个"]

    again = cli("tick", "--now", "2026-03-24T09:00")  # idempotent: nothing new, nothing resent
    assert "新增提醒 0 条" in again.stdout and "发送邮件 0 封" in again.stdout
    assert len(list(mail_dir.glob("*.eml"))) == 2

    out = cli("outbox").stdout
    assert "邮件通知：待发送 0，已发送 2，投递失败 0，已取消 0，已跳过 0" in out
    assert "[已发送] 截止提醒 haitang-2026/T01/survey/2026-03-31/before-7 → gb@example.cn" in out
    assert "(没有符合条件的通知)" not in out
    assert "（没有符合条件的通知）" in cli("outbox", "--status", "dead").stdout


def test_bad_input_is_refused_in_chinese_and_changes_nothing(cli: CLI, tmp_path: Path) -> None:
    r = cli("tick", "--now", "昨天", code=2)
    assert "时间 '昨天' 无效" in r.stderr
    r = cli("tick", "--now", "2026-03-24T09:00", "--campaign", "nope", code=3)
    assert "找不到活动 'nope'" in r.stderr
    assert not (tmp_path / "data" / "mail").exists()
    assert "已发送 0" in cli("outbox").stdout
    assert "--limit 须为正整数" in cli("outbox", "--limit", "0", code=2).stderr


def test_tick_sends_through_smtp_when_configured(cli: CLI) -> None:
    with SmtpServer() as server:
        env = {"BRANCHFLOW_SMTP_HOST": "127.0.0.1", "BRANCHFLOW_SMTP_PORT": str(server.port),
               "BRANCHFLOW_SMTP_SENDER": "党委组织部 <zzb@example.cn>"}
        r = cli("tick", "--now", "2026-04-01T09:00", env=env)
        assert "发送邮件 2 封" in r.stdout and "邮件已写入" not in r.stdout
        got = sorted((m.rcpt_tos[0], m.subject) for m in server.messages)
    assert got == [("gb@example.cn", "【逾期督促】生物系教工党支部“调查摸底”环节已逾期1天"),
                   ("org@example.cn", "【月调度】西安海棠职业学院 2026 年基层组织建设年 2026-04 进度：1 个支部，逾期 1 个")]
    # the first tick of the campaign caught up: March's reminders were stale and are listed as skipped
    out = cli("outbox", "--status", "skipped").stdout
    assert "已跳过 3" in out
    assert "haitang-2026/T01/survey/2026-03-31/before-1" in out
