"""`branchflow report`, `charts` and `export-events` as a subprocess, and a printable form in a real Chromium."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from openpyxl import load_workbook

from states.base import Stage
from tests.support.world import World
from workflow.db import make_engine, session_factory
from workflow.migrate import upgrade

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


class CLI:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHFLOW_")}
        self.env["BRANCHFLOW_DATA_DIR"] = str(tmp / "data")
        self.env["PYTHONPATH"] = str(ROOT)

    def __call__(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=self.tmp, env=self.env, text=True,
                           capture_output=True, timeout=120, check=False)
        assert r.returncode == code, f"{args} → {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
        return r


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[CLI, Path]:
    """A SQLite database with the known data set of tests/integration/test_reports.py, built once."""
    tmp = tmp_path_factory.mktemp("reports")
    engine = make_engine(f"sqlite:///{tmp / 'data' / 'branchflow.db'}")
    upgrade(engine)
    w = World(session_factory(engine))
    w.drive("B1", Stage.rectification, per_item=0.9)
    w.drive("B2", Stage.acceptance, per_item=0.8)
    w.drive("B3", Stage.accepted, per_item=0.5)
    w.drive("B4", Stage.member_evaluation)
    engine.dispose()
    return CLI(tmp), tmp


def test_report_commands_have_chinese_help(setup: tuple[CLI, Path]) -> None:
    cli, _ = setup
    top = cli("--help").stdout
    assert "report" in top and "export-events" in top and "charts" in top
    h = cli("report", "--help").stdout
    assert "分类定级汇总表" in h and "--at" in h and "--general-branch" in h and "--now" in h
    assert "JSON Lines" in cli("export-events", "--help").stdout


def test_report_xlsx_for_a_general_branch(setup: tuple[CLI, Path]) -> None:
    cli, tmp = setup
    out = tmp / "out"
    out.mkdir(exist_ok=True)
    r = cli("report", "summary", "--format", "xlsx", "--general-branch", "GB1", "--now", "2026-09-10T10:00",
            "--output", str(out))
    path = out / "党支部分类定级汇总表-GB1-20260910-1000.xlsx"
    assert r.stdout.startswith(f"已生成 {path}（")
    ws = load_workbook(path).active
    rows = [list(x) for x in ws.iter_rows(values_only=True)]
    assert rows[0][0] == "GB1党支部分类定级汇总表"
    assert rows[4:6] == [[1, "GB1", "生物系教工党支部", 90, "先进"], [2, "GB1", "化学系教工党支部", 80, "一般"]]
    assert rows[6][:4] == ["合计", None, "党支部总数", 2]


def test_report_csv_at_a_past_time(setup: tuple[CLI, Path]) -> None:
    cli, tmp = setup
    cli("report", "overview", "--format", "csv", "--at", "2026-04-12T12:00", "-o", "then.csv")
    data = (tmp / "then.csv").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert "数据截至 2026-04-12 12:00（按历史记录重放）" in rows[2][0]
    # On 04-12 noon every branch had been evaluated by its members and none graded yet.
    assert [(r[2], r[6], r[10]) for r in rows[4:8]] == [
        ("生物系教工党支部", "党委评定", "未定级"), ("化学系教工党支部", "党委评定", "未定级"),
        ("本科生第一党支部", "党委评定", "未定级"), ("本科生第二党支部", "党员群众测评", "未定级"),
    ]


def test_bad_input_gives_a_chinese_error_and_writes_nothing(setup: tuple[CLI, Path]) -> None:
    cli, tmp = setup
    bad = tmp / "bad"
    bad.mkdir()
    r = cli("report", "nope", "-o", str(bad), code=2)
    assert r.stderr.startswith("错误：没有名为 'nope' 的报表；可用：summary（党支部分类定级汇总表）")
    r = cli("report", "summary", "--general-branch", "GB9", "-o", str(bad), code=3)
    assert r.stderr.startswith("错误：党总支 'GB9' 不存在或无权访问")  # no list of the codes there are
    r = cli("report", "summary", "--at", "昨天", "-o", str(bad), code=2)
    assert "时间 '昨天' 无效" in r.stderr
    r = cli("report", "summary", "--format", "docx", "-o", str(bad), code=2)
    assert "不支持的格式 'docx'" in r.stderr
    r = cli("report", "summary", "-o", str(tmp / "no-such-dir" / "x.xlsx"), code=2)
    assert "输出目录" in r.stderr and "不存在" in r.stderr
    assert list(bad.iterdir()) == []


def test_export_events_and_charts(setup: tuple[CLI, Path]) -> None:
    cli, tmp = setup
    r = cli("export-events", "--branch", "B3", "--output", "b3.jsonl")
    lines = [json.loads(x) for x in (tmp / "b3.jsonl").read_text(encoding="utf-8").splitlines()]
    assert r.stdout.startswith(f"已导出 {len(lines)} 条事件到 b3.jsonl")
    assert lines[-1]["kind"] == "moved" and json.loads(lines[-1]["body"])["payload"]["to"] == "accepted"
    charts = tmp / "charts"
    charts.mkdir()
    r = cli("charts", "--output-dir", str(charts), "--now", "2026-09-10")
    assert sorted(p.name for p in charts.iterdir()) == ["burndown.svg", "grades.svg", "overdue.svg"]
    assert "<title>先进：1 个</title>" in (charts / "grades.svg").read_text(encoding="utf-8")


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (apt install chromium)")
def test_printable_form_in_chromium_with_a_screenshot(setup: tuple[CLI, Path]) -> None:
    from playwright.sync_api import sync_playwright

    cli, tmp = setup
    cli("report", "acceptance", "--format", "html", "--now", "2026-09-10T10:00", "-o", "form.html")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report-acceptance.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.goto((tmp / "form.html").as_uri())
            assert page.inner_text("h1") == "测试学院党委党支部晋位升级检查验收汇总表"
            assert page.locator("tbody tr").count() == 4
            row = page.locator("tbody tr").nth(2).inner_text()
            assert "本科生第一党支部" in row and "晋位" in row
            assert "后进支部转化率" in page.locator("tfoot").inner_text()
            # The table fits the page: no horizontal scrolling.
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            page.screenshot(path=str(shot), full_page=True)
            page.emulate_media(media="print")
            assert not page.locator(".toolbar").is_visible()  # the print button is not printed
            pdf = page.pdf(format="A4", landscape=True)
            assert pdf.startswith(b"%PDF")
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
