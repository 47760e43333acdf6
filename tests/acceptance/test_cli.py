"""The `branchflow` command as a subprocess, as an organisation department would use it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from states.survey import FOCUS_POINTS

ROOT = Path(__file__).resolve().parents[2]
ORG_CSV = """党委,党总支,支部编码,支部名称,支部类型,书记姓名,书记邮箱,党员人数,上次换届日期,最近活动日期,书记近两年严重违纪
生命学院党委,教工党总支,T01,生物系教工党支部,教工,王建国,wang@example.cn,12,2024-06-01,2026-03-01,否
生命学院党委,学生党总支,S01,本科生第一党支部,本科生,李明,li@example.cn,30,2025-09-01,2026-03-10,否
"""


class CLI:
    def __init__(self, tmp: Path, db_url: str | None = None) -> None:
        self.tmp = tmp
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHFLOW_")}
        self.env["BRANCHFLOW_DATA_DIR"] = str(tmp / "data")
        self.env["PYTHONPATH"] = str(ROOT)
        if db_url:
            self.env["BRANCHFLOW_DATABASE_URL"] = db_url

    def __call__(self, *args: str, code: int = 0, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=self.tmp, env=self.env, text=True,
                           capture_output=True, input=stdin, timeout=120, check=False)
        assert r.returncode == code, f"{args} → {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
        return r

    def file(self, name: str, data: object) -> str:
        p = self.tmp / name
        p.write_text(json.dumps(data, ensure_ascii=False) if not isinstance(data, str) else data, encoding="utf-8")
        return str(p)


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    return CLI(tmp_path)


def test_every_command_has_chinese_help(cli: CLI) -> None:
    top = cli("--help").stdout
    assert "基层党组织分类定级" in top
    commands = ["init", "import", "list", "show", "record", "grade", "adjust", "sign", "publish", "object",
                "resolve", "complete", "advance", "extend", "history", "demo", "campaign", "person", "audit"]
    for c in commands:
        assert c in top
        out = cli(c, "--help").stdout
        assert "用法：" in out and "选项：" in out and any("\u4e00" <= ch <= "\u9fff" for ch in out), c
        assert "Usage" not in out and "Options" not in out and "[required]" not in out, c
    assert "--now" in cli("advance", "--help").stdout
    assert "--at" in cli("history", "--help").stdout


def _setup(cli: CLI) -> None:
    assert "数据库已就绪" in cli("init").stdout
    cli("campaign", "create", "--preset", "haitang-2022", "--year", "2026", "--now", "2026-03-01T08:00")
    cli.file("org.csv", ORG_CSV)
    assert "新立案 2" in cli("import", "org.csv", "--now", "2026-03-01T08:00").stdout
    cli("person", "add", "zong@example.cn", "--name", "赵总支", "--role", "general_branch_secretary", "--scope", "教工党总支")
    cli("person", "add", "org@example.cn", "--name", "组织部钱", "--role", "org_department", "--scope", "生命学院党委")
    for i in (1, 2, 3):
        cli("person", "add", f"m{i}@example.cn", "--name", f"委员{i}", "--role", "committee_member", "--scope", "生命学院党委")


def _walk(cli: CLI) -> None:
    """Take T01 through the whole year by the CLI, checking what people see on the way."""
    now = ["--now"]
    r = cli("advance", "T01", "--as", "zong@example.cn", *now, "2026-03-05T10:00", code=5)
    assert "不能离开“调查摸底”环节" in r.stderr and "调查要点未填写" in r.stderr and "党总支书记、组织部" in r.stderr
    r = cli("advance", "T01", "--as", "wang@example.cn", *now, "2026-03-05T10:00", code=4)
    assert "无权" in r.stderr
    survey = cli.file("survey.json", {"findings": {k: {"ok": True} for k in FOCUS_POINTS}})
    cli("record", "T01", survey, "--as", "zong@example.cn", *now, "2026-03-05T10:00")
    cli("advance", "T01", "--as", "zong@example.cn", *now, "2026-03-05T10:05", "--expect-version", "2")
    scores = {str(i): (4.5 if i < 17 else 9) for i in range(1, 19)}
    sa = cli.file("sa.json", {"scores": scores, "meeting_date": "2026-04-01", "attendance": 7})
    cli("record", "T01", "-", "--as", "wang@example.cn", *now, "2026-04-01T10:00", stdin=Path(sa).read_text())
    cli("advance", "T01", "--as", "wang@example.cn", *now, "2026-04-01T10:05")
    bad = cli.file("bad.json", "{not json")
    assert "不是有效的 JSON" in cli("record", "T01", bad, "--as", "zong@example.cn", *now, "2026-04-02", code=2).stderr
    me = cli.file("me.json", {"tally": {"ballots": 10, "rating": 88, "satisfaction_members": 0.9, "satisfaction_secretary": 0.95}})
    cli("record", "T01", me, "--as", "zong@example.cn", *now, "2026-04-10T10:00")
    cli("advance", "T01", "--as", "zong@example.cn", *now, "2026-04-10T10:05")
    assert "总分 90，等级 先进" in cli("grade", "T01", "--as", "m1@example.cn", *now, "2026-04-20T10:00").stdout
    cli("sign", "T01", "--as", "m1@example.cn", *now, "2026-04-20T10:01")
    shown = cli("show", "T01", *now, "2026-04-20T11:00").stdout
    assert "签字：1/2" in shown and "总分：90 → 按分数等级：先进（> 85）" in shown
    cli("sign", "T01", "--as", "m2@example.cn", *now, "2026-04-20T10:02")
    cli("advance", "T01", "--as", "org@example.cn", *now, "2026-04-20T10:03")
    assert "公示 2026-04-21 至 2026-04-27" in cli("publish", "T01", "--as", "org@example.cn", "--start", "2026-04-21",
                                                  *now, "2026-04-20T10:04").stdout
    cli("object", "T01", "--text", "第 18 项与事实不符", "--as", "m3@example.cn", *now, "2026-04-22T09:00")
    cli("resolve", "T01", "1", "--upheld", "--reason", "经核实异议成立", "--as", "org@example.cn", *now, "2026-04-23T09:00")
    assert "当前环节：4. 党委评定" in cli("show", "T01", *now, "2026-04-23T10:00").stdout
    cli("grade", "T01", "--as", "m1@example.cn", *now, "2026-04-23T10:00")
    cli("adjust", "T01", "--grade", "一般", "--reason", "上年度受到群众投诉", "--as", "m1@example.cn", *now, "2026-04-23T10:01")
    cli("sign", "T01", "--as", "m1@example.cn", *now, "2026-04-23T10:02")
    cli("sign", "T01", "--as", "m3@example.cn", *now, "2026-04-23T10:03")
    cli("advance", "T01", "--as", "org@example.cn", *now, "2026-04-23T10:04")
    cli("publish", "T01", "--as", "org@example.cn", *now, "2026-04-23T10:05")
    cli("advance", "T01", "--as", "org@example.cn", *now, "2026-05-10T10:00")
    plan = cli.file("plan.json", {"items": [{"problem": "组织生活不规范", "measure": "每月主题党日", "due": "2026-07-31",
                                             "contact": "委员1"}], "submitted": True})
    cli("record", "T01", plan, "--as", "wang@example.cn", *now, "2026-05-20T10:00")
    cli("complete", "T01", "1", "--evidence", "会议记录 6 份", "--as", "wang@example.cn", *now, "2026-07-01T10:00")
    cli("advance", "T01", "--as", "wang@example.cn", *now, "2026-07-02T10:00")
    fail = cli.file("fail.json", {"passed": False, "summary": "佐证不足", "inspected_on": "2026-09-01",
                                  "regrade_score": 70, "new_deadline": "2026-09-15"})
    cli("record", "T01", fail, "--as", "zong@example.cn", *now, "2026-09-01T10:00")
    out = cli("show", "T01", *now, "2026-09-02T10:00").stdout
    assert "当前环节：6. 整改（晋位升级）" in out and "截止日期：2026-09-15" in out
    cli("record", "T01", cli.file("resubmit.json", {"submitted": True}), "--as", "wang@example.cn", *now, "2026-09-10T10:00")
    r = cli("advance", "T01", "--as", "wang@example.cn", *now, "2026-09-10T10:01", code=5)
    assert "整改事项未完成：第 1 项" in r.stderr
    cli("complete", "T01", "1", "--evidence", "重新整改，补充会议记录", "--as", "wang@example.cn", *now, "2026-09-10T10:02")
    cli("advance", "T01", "--as", "wang@example.cn", *now, "2026-09-10T10:03")
    ok = cli.file("ok.json", {"passed": True, "summary": "整改到位", "inspected_on": "2026-09-12", "regrade_score": 91})
    cli("record", "T01", ok, "--as", "zong@example.cn", *now, "2026-09-12T10:00")
    cli("advance", "T01", "--as", "zong@example.cn", *now, "2026-09-12T10:01")
    out = cli("show", "T01", *now, "2026-09-12T11:00").stdout
    assert "当前环节：8. 已验收" in out and "定级结果：一般" in out and "再次定级：先进" in out


def test_a_whole_year_by_cli_with_history_and_audit(cli: CLI) -> None:
    _setup(cli)
    _walk(cli)
    listing = cli("list", "--now", "2026-09-12T11:00").stdout
    assert "T01\t生物系教工党支部\t已验收\t一般" in listing
    assert "S01\t本科生第一党支部\t调查摸底\t-\t截止 2026-03-31 【逾期】" in listing
    assert json.loads(cli("list", "--overdue", "--json", "--now", "2026-09-12").stdout)[0]["code"] == "S01"

    hist = cli("history", "T01").stdout
    assert "异议 #1 成立：经核实异议成立" in hist and "公示 → 党委评定" in hist and "检查验收 → 整改（晋位升级）" in hist
    then = json.loads(cli("history", "T01", "--at", "2026-04-22T12:00", "--json").stdout)
    assert then["state"]["stage"] == "publicity" and then["state"]["final_grade"] == "advanced"
    assert "当时环节：党员群众测评" in cli("history", "T01", "--at", "2026-04-05").stdout

    assert "校验通过" in cli("audit", "verify").stdout
    db = cli.tmp / "data" / "branchflow.db"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE events SET body = replace(body, '经核实异议成立', '异议不成立') "
                     "WHERE kind = 'objection_resolved'")
    r = cli("audit", "verify", code=7)
    assert "校验失败" in r.stdout and "生命学院党委" not in r.stdout
    assert "T01 事件 #" in r.stdout and "哈希不符：事件内容被修改" in r.stdout


def test_bad_import_exit_code_and_nothing_imported(cli: CLI) -> None:
    cli("init")
    cli.file("bad.csv", ORG_CSV + "生命学院党委,教工党总支,T02,化学系党支部,教工,赵六,not-an-email,9,,,否\n")
    r = cli("import", "bad.csv", code=2)
    assert "第 4 行 [书记邮箱]: 'not-an-email' 不是有效的电子邮箱" in r.stderr and "未导入任何一行" in r.stderr
    assert "共 0 个" not in cli("campaign", "list").stdout  # no campaign: nothing to list either
    cli.file("good.csv", ORG_CSV)
    assert "新增 2" in cli("import", "good.csv").stdout
    (cli.tmp / "gbk.json").write_bytes('{"findings": {"organisation": {"ok": true, "note": "正常"}}}'.encode("gbk"))
    r = cli("record", "T01", "gbk.json", "--as", "wang@example.cn", code=2)
    assert "不是 UTF-8 编码" in r.stderr and "Traceback" not in r.stderr
    assert "新增 0，更新 0，未变 2" in cli("import", "good.csv").stdout


def test_bad_campaign_file_is_explained(cli: CLI) -> None:
    cli("init")
    text = cli("campaign", "export", "haitang-2022", "--year", "2026").stdout
    assert 'code = "haitang-2026"' in text and "year = 2026" in text
    broken = text.replace('publicity = "04-30"', 'publicity = "04-02"').replace("max = 10,", "max = 12,", 1)
    cli.file("broken.toml", broken)
    r = cli("campaign", "create", "--file", "broken.toml", code=2)
    assert "各项满分之和为 102，应为 100" in r.stderr
    assert "截止日期须按环节顺序" in r.stderr


@pytest.mark.postgres
def test_the_same_year_by_cli_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    cli = CLI(tmp_path, pg_url)
    _setup(cli)
    _walk(cli)
    assert "校验通过" in cli("audit", "verify").stdout


def test_demo_runs_a_year_and_ends_with_a_passing_audit(cli: CLI) -> None:
    r = cli("demo", "--year", "2026", "--branches", "16")
    out = r.stdout
    assert "模拟全年汇总" in out and "分类定级结果：先进" in out
    assert "当前环节：已验收 16 个" in out
    assert "异议 #1 成立" in out and "公示 → 党委评定" in out
    assert "哈希链完整，当前状态与重放一致 ✓" in out


def test_serve_refuses_an_uninitialised_database(cli: CLI) -> None:
    r = cli("serve", "--port", "1", code=2)
    assert "请先运行 `branchflow init`" in r.stderr


def test_serve_runs_pages_api_and_scheduler_until_sigterm(cli: CLI) -> None:
    import signal
    import socket
    import time
    import urllib.request

    cli("init")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port)], cwd=cli.tmp,
                            env=cli.env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and status is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=2) as resp:
                    status = resp.status
                    schema = json.loads(resp.read())
            except OSError:
                time.sleep(0.3)
        assert status == 200 and "/api/token" in schema["paths"]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "定时任务已启动" in out and "已停止" in out
