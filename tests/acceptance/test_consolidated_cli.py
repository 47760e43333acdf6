"""The consolidated forms and the campaign of ``report`` from the command line (issue 12 item 2), as a user
runs them: ``branchflow rollup --form NAME --export FILE`` (and the one-row-per-committee form as before),
who is refused (nothing written), and ``branchflow report`` when several committees run campaigns — the CLI
as a subprocess on a SQLite file holding the tree of tests/integration/test_consolidated_forms.py."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from openpyxl import load_workbook

from tests.integration.test_consolidated_forms import C1_NAME, C2_NAME, ORG2, OUTSIDER, PARENT_ORG, build_tree
from tests.support.world import ORG, World
from workflow.db import make_engine, session_factory
from workflow.migrate import upgrade

ROOT = Path(__file__).resolve().parents[2]


class CLI:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHFLOW_")}
        self.env.update(BRANCHFLOW_DATA_DIR=str(tmp / "data"), PYTHONPATH=str(ROOT))

    def __call__(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=self.tmp, env=self.env, text=True,
                           capture_output=True, timeout=120, check=False)
        assert r.returncode == code, f"{args} → {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
        return r


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> CLI:
    tmp = tmp_path_factory.mktemp("consolidated")
    engine = make_engine(f"sqlite:///{tmp / 'data' / 'branchflow.db'}")
    upgrade(engine)
    build_tree(World(session_factory(engine)))
    engine.dispose()
    return CLI(tmp)


def rows_of(path: Path) -> list[list[str]]:
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))


@pytest.mark.slow  # a dozen commands, each a fresh interpreter
def test_the_parent_exports_each_consolidated_form(cli: CLI) -> None:
    out = cli.tmp / "汇总.csv"
    r = cli("rollup", "--as", PARENT_ORG, "--form", "summary", "--export", str(out), "--now", "2026-09-10")
    assert r.stdout.startswith("已导出党支部分类定级汇总表（各党委逐支部汇总）") and "字节" in r.stdout
    rows = rows_of(out)
    assert rows[0] == ["上级党委2026年党支部分类定级汇总表（各党委逐支部汇总）"]
    branches = {r[3]: (r[1], r[5]) for r in rows[4:] if r[0].isdigit()}
    assert branches["生物系教工党支部"][0] == C1_NAME and branches["外校第一党支部"] == (C2_NAME, "好")
    assert all(not c.startswith(("=", "+", "-", "@")) for row in rows for c in row)
    assert ["合计", "各党委合计", "党支部总数", "6", "", ""] in rows
    # into a directory: the Chinese file name, the format from --format
    for name in ("rectification", "acceptance", "movement", "overview", "tasks"):
        folder = cli.tmp / name
        folder.mkdir()
        r = cli("rollup", "--as", PARENT_ORG, "--committee", "P", "--form", name, "--export", str(folder),
                "--format", "xlsx", "--now", "2026-09-10")
        files = list(folder.iterdir())
        assert len(files) == 1 and files[0].suffix == ".xlsx" and "-P-2026-" in files[0].name, files
        ws = load_workbook(files[0]).active
        assert ws is not None and ws["A4"].value == "序号" and ws["B4"].value == "所属党委"
        cells = [c for row in ws.iter_rows() for c in row if c.value is not None]
        assert all(c.data_type != "f" for c in cells)
        assert {C1_NAME, C2_NAME} <= {c.value for c in cells}
    # the form with one row per committee is what --export alone still writes
    old = cli.tmp / "各党委.csv"
    assert "已导出各党委汇总表" in cli("rollup", "--as", PARENT_ORG, "--export", str(old), "--now", "2026-09-10").stdout
    assert "党支部分类定级汇总表（各党委汇总）" in old.read_bytes().decode("utf-8-sig")
    r = cli("rollup", "--as", PARENT_ORG, "--form", "nope", code=2)
    assert "没有名为 'nope' 的汇总报表" in r.stderr and "summary（" in r.stderr and "committees（" in r.stderr


@pytest.mark.slow
def test_a_childs_people_and_an_outsider_are_refused_and_nothing_is_written(cli: CLI) -> None:
    target = cli.tmp / "refused.xlsx"
    for who in (ORG2, ORG, OUTSIDER):
        real = cli("rollup", "--as", who, "--committee", "P", "--form", "summary", "--export", str(target), code=3)
        fake = cli("rollup", "--as", who, "--committee", "NOPE9", "--form", "summary", "--export", str(target),
                   code=3)
        assert real.stderr.replace("'P'", "'X'") == fake.stderr.replace("'NOPE9'", "'X'")
        assert real.stderr.startswith("错误：党委 'P' 不存在或无权访问")
        assert not target.exists() and not list(cli.tmp.glob(".refused*"))
    r = cli("rollup", "--as", "n1@test.cn", "--committee", "P", "--form", "acceptance", "--export", str(target), code=4)
    assert "无权查看下级党委汇总" in r.stderr and not target.exists()


@pytest.mark.slow
def test_report_without_a_campaign_names_the_choices_or_takes_the_persons_own(cli: CLI) -> None:
    r = cli("report", "summary", "--format", "csv", code=2)
    assert "有多个党委各自开展活动" in r.stderr and "--campaign" in r.stderr and "--as" in r.stderr
    assert "haitang-2026（测试学院党委）" in r.stderr and "henan-2026（外校党委）" in r.stderr
    assert not list(cli.tmp.glob("党支部分类定级汇总表-*.csv"))
    # a person in one committee: that committee's latest campaign
    out = cli.tmp / "c2.csv"
    cli("report", "summary", "--format", "csv", "--as", ORG2, "-o", str(out), "--now", "2026-09-10")
    text = out.read_bytes().decode("utf-8-sig")
    assert "外校第一党支部" in text and "生物系教工党支部" not in text and "河南某学院" in text
    out = cli.tmp / "c1.csv"
    cli("report", "summary", "--format", "csv", "--as", ORG, "-o", str(out), "--now", "2026-09-10")
    assert "生物系教工党支部" in out.read_bytes().decode("utf-8-sig")
    # a general branch names its committee, so its campaign
    out = cli.tmp / "gb3.csv"
    cli("report", "summary", "--format", "csv", "--general-branch", "GB3", "-o", str(out), "--now", "2026-09-10")
    assert "外校第一党支部" in out.read_bytes().decode("utf-8-sig")
    # --as gives what that person may download, and another tenant's campaign answers as an unknown one
    r = cli("report", "summary", "--as", "b5@test.cn", "-o", str(cli.tmp / "no.csv"), code=4)
    assert "无权下载报表" in r.stderr
    r = cli("report", "summary", "--as", ORG2, "--campaign", "haitang-2026", "-o", str(cli.tmp / "no.csv"), code=3)
    assert "活动 'haitang-2026' 不存在或无权访问" in r.stderr
    # the parent's department: its own committee runs no campaign, its children's are named
    r = cli("report", "summary", "--as", PARENT_ORG, "-o", str(cli.tmp / "no.csv"), code=2)
    assert "orgp@test.cn 所在的党委本身没有活动：请用 --campaign 指定" in r.stderr
    assert "haitang-2026（测试学院党委）；henan-2026（外校党委）" in r.stderr and "rollup" in r.stderr
    cli("report", "summary", "--format", "csv", "--as", PARENT_ORG, "--campaign", "henan-2026", "-o",
        str(cli.tmp / "p.csv"))
    assert "外校第一党支部" in (cli.tmp / "p.csv").read_bytes().decode("utf-8-sig")
    assert not (cli.tmp / "no.csv").exists()
