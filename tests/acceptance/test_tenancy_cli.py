"""The tenancy commands as a user runs them (issue 12): ``committee add / list / move``, ``campaign create
--committee`` (and its refusals), ``rollup`` (text, JSON, the consolidated form) — the CLI as a subprocess on
a SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from openpyxl import load_workbook

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # about twenty commands, each a fresh interpreter
def test_committees_campaigns_and_the_roll_up_from_the_command_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHFLOW_")}
    env.update(BRANCHFLOW_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT))

    def bf(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([sys.executable, "-m", "service.cli", *args], env=env, text=True, capture_output=True,
                           timeout=120, check=False)
        assert r.returncode == code, (args, r.returncode, r.stdout, r.stderr)
        return r

    bf("init")
    bf("committee", "add", "UNI", "某大学党委")
    bf("committee", "add", "SMS", "生命科学学院党委", "--parent", "UNI")
    org = tmp_path / "org.csv"
    org.write_text("党委,党委编码,上级党委编码,党总支,支部编码,支部名称,支部类型,书记姓名,书记邮箱,党员人数\n"
                   "生命科学学院党委,SMS,UNI,教工总支,T1,生物系教工党支部,教工,书记一,t1@x.cn,10\n"
                   "化学学院党委,CHEM,UNI,,T2,化学系教工党支部,教工,书记二,t2@x.cn,9\n", encoding="utf-8-sig")
    bf("import", str(org))
    listing = bf("committee", "list").stdout.splitlines()
    assert [line.split("\t")[0] for line in listing] == ["UNI", "  CHEM", "  SMS"]
    # a campaign per committee: the committee must be named once there are several
    r = bf("campaign", "create", "--preset", "haitang-2022", "--year", "2026", code=2)
    assert "请用 --committee 指定" in r.stderr
    assert "为 1 个党支部立案" in bf("campaign", "create", "--preset", "haitang-2022", "--year", "2026",
                                     "--committee", "SMS").stdout
    r = bf("campaign", "create", "--preset", "haitang-2022", "--year", "2026", "--committee", "CHEM", code=2)
    assert "--code" in r.stderr
    bf("campaign", "create", "--preset", "henan-2012", "--year", "2026", "--committee", "CHEM")
    r = bf("list", code=2)  # which committee's "latest campaign"? refused, naming --campaign
    assert "--campaign" in r.stderr and "haitang-2026" in r.stderr and "henan-2026" in r.stderr
    assert "T1" in bf("show", "T1").stdout  # a branch's own committee's latest campaign
    # re-parenting: never under itself or below it
    r = bf("committee", "move", "UNI", "--parent", "SMS", code=2)
    assert "形成环" in r.stderr
    # the roll-up of the university's colleges, and the form consolidated across them
    top = json.loads(bf("rollup", "--json", "--now", "2026-07-01").stdout)  # the operator: the top committees
    assert {r["committee"]: r["branches"] for r in top["rows"]} == {"UNI": 2}
    data = json.loads(bf("rollup", "--committee", "UNI", "--json", "--now", "2026-07-01").stdout)
    assert {r["committee"]: r["branches"] for r in data["rows"]} == {"UNI": 0, "SMS": 1, "CHEM": 1}
    assert "生命科学学院党委（SMS）：1 个党支部" in bf("rollup", "--committee", "UNI", "--now", "2026-07-01").stdout
    out = tmp_path / "汇总.csv"
    bf("rollup", "--export", str(out), "--now", "2026-07-01")
    raw = out.read_bytes()
    assert raw.startswith("\ufeff".encode())
    text = raw.decode("utf-8-sig")
    assert "党支部分类定级汇总表（各党委汇总）" in text and "化学学院党委（CHEM）" in text and "henan-2026" in text
    xlsx = tmp_path / "汇总.xlsx"
    bf("rollup", "--export", str(xlsx), "--now", "2026-07-01")
    ws = load_workbook(xlsx).active
    assert ws is not None
    names = [ws.cell(row=r, column=2).value for r in range(5, 8)]
    assert names == ["某大学党委（UNI）", "　化学学院党委（CHEM）", "　生命科学学院党委（SMS）"]
    r = bf("rollup", "--as", "t1@x.cn", code=4)  # a branch secretary: no roll-up
    assert "无权查看下级党委汇总" in r.stderr
