"""Year over year and an unknown calendar year on the `branchflow` command (issue 12), as a subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.acceptance.test_cli import CLI, ORG_CSV


@pytest.mark.slow
def test_next_year_from_last_refuses_an_unknown_calendar_then_reviews_and_reorganises(tmp_path: Path) -> None:
    cli = CLI(tmp_path)
    cli("init")
    cli("campaign", "create", "--preset", "haitang-2022", "--year", "2026", "--now", "2026-03-01T08:00")
    cli.file("org.csv", ORG_CSV)
    cli("import", "org.csv", "--now", "2026-03-01T08:00")
    cli("person", "add", "org@example.cn", "--name", "组织部钱", "--role", "org_department", "--scope", "生命学院党委")
    assert "工作日历：国务院办公厅 2026 年安排（chinesecalendar）" in cli("campaign", "show", "haitang-2026").stdout

    r = cli("campaign", "create", "--preset", "haitang-2022", "--year", "2027", code=2)
    assert "工作日历不包含 2027 年" in r.stderr and "[calendar]" in r.stderr and "weekdays_only = true" in r.stderr
    r = cli("campaign", "create", "--from", "haitang-2026", "--year", "2027", "--now", "2027-01-05T10:00", code=2)
    assert "--calendar" in r.stderr and "--weekdays-only" in r.stderr
    r = cli("campaign", "create", "--from", "haitang-2026", "--year", "2027", "--weekdays-only", code=2)
    assert "请用 --as 给出确认人" in r.stderr
    assert "haitang-2027" not in cli("campaign", "list").stdout  # nothing half-made

    out = cli("campaign", "create", "--from", "haitang-2026", "--year", "2027", "--weekdays-only",
              "--as", "org@example.cn", "--now", "2027-01-05T10:00").stdout
    assert "已从活动 haitang-2026 创建 2027 年活动 haitang-2027，为 2 个党支部立案" in out
    assert "请复核：截止日期 支部自评：2026-04-10 → 2027-04-10" in out
    line = "工作日历：仅按周一至周五（经 组织部钱（org@example.cn） 于 2027-01-05 10:00 确认）"
    assert line in out and line in cli("campaign", "show", "haitang-2027").stdout
    assert f"活动 haitang-2027：{line}" in cli("tick", "--now", "2027-03-24T10:00", "--campaign", "haitang-2027").stdout

    r = cli("branch", "dissolve", "S01", "--as", "org@example.cn", "--now", "2027-03-25T10:00", code=2)
    assert "--reason" in r.stderr
    out = cli("branch", "dissolve", "S01", "--reason", "学生毕业，支部撤销", "--as", "org@example.cn",
              "--now", "2027-03-25T10:00").stdout
    assert "撤销支部：S01" in out and "活动 haitang-2027 中结案：S01" in out
    out = cli("branch", "found", "N01", "--name", "新设研究生党支部", "--type", "graduate", "--committee", "生命学院党委",
              "--secretary-name", "周新", "--secretary-email", "zhou@example.cn", "--members", "7",
              "--reason", "研究生扩招成立", "--as", "org@example.cn", "--now", "2027-03-26T10:00").stdout
    assert "活动 haitang-2027 中立案：N01（自“调查摸底”环节开始）" in out
    out = cli("grades", "S01").stdout
    assert "（已于 2027-03-25 撤销）" in out and "2027 年 haitang-2027：未定级（已结案）" in out
    assert "沿革：撤销 S01 → —" in out
    cli("audit", "verify")
