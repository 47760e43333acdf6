"""Organisation import from CSV (with and without BOM) and XLSX: all or nothing, idempotent."""

from __future__ import annotations

from pathlib import Path

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select

from states.base import Role
from workflow.errors import ImportRejected, InvalidInput
from workflow.importer import import_file
from workflow.models import Branch, Committee, GeneralBranch, Person, RoleAssignment

HEADER = "党委,党总支,支部编码,支部名称,支部类型,书记姓名,书记邮箱,党员人数,上次换届日期,最近活动日期,书记近两年严重违纪"
GOOD = [
    "生命学院党委,教工党总支,T01,生物系教工党支部,教工,王建国,wang@example.cn,12,2024-06-01,2026-03-01,否",
    "生命学院党委,学生党总支,S01,本科生第一党支部,本科生,李明,li@example.cn,30,2025/09/01,2026年3月10日,否",
    "生命学院党委,学生党总支,S02,研究生第一党支部,研究生,张华,zhang@example.cn,15,,,是",
]


def write_csv(path: Path, lines: list[str], *, bom: bool) -> Path:
    path.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8-sig" if bom else "utf-8")
    return path


def counts(sessions) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with sessions() as s:
        return {m.__tablename__: int(s.scalar(select(func.count()).select_from(m)) or 0)
                for m in (Committee, GeneralBranch, Branch, Person, RoleAssignment)}


@pytest.mark.parametrize("bom", [True, False], ids=["bom", "no-bom"])
def test_csv_import_and_reimport_changes_nothing(sessions, tmp_path: Path, bom: bool) -> None:  # type: ignore[no-untyped-def]
    f = write_csv(tmp_path / "org.csv", GOOD, bom=bom)
    with sessions() as s, s.begin():
        r = import_file(s, f)
    assert (r.rows, r.created, r.updated, r.unchanged, r.committees, r.general_branches) == (3, 3, 0, 0, 1, 2)
    after_first = counts(sessions)
    assert after_first == {"committees": 1, "general_branches": 2, "branches": 3, "people": 3, "role_assignments": 3}
    with sessions() as s, s.begin():
        r2 = import_file(s, f)
    assert (r2.created, r2.updated, r2.unchanged) == (0, 0, 3)
    assert counts(sessions) == after_first
    with sessions() as s:
        b = s.scalar(select(Branch).where(Branch.code == "S01"))
        assert b is not None and b.branch_type == "undergraduate" and str(b.last_activity) == "2026-03-10"
        s02 = s.scalar(select(Branch).where(Branch.code == "S02"))
        assert s02 is not None and s02.secretary_violation is True and s02.last_reelection is None


def test_bad_rows_import_nothing_and_name_row_column_problem(sessions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = GOOD + [
        "生命学院党委,教工党总支,T02,化学系教工党支部,教师,赵六,zhao@example,0,2024-13-01,,也许",
        "生命学院党委,教工党总支,T01,重复编码党支部,教工,钱七,qian@example.cn,8,,,否",
    ]
    f = write_csv(tmp_path / "bad.csv", bad, bom=True)
    with sessions() as s, s.begin(), pytest.raises(ImportRejected) as err:
        import_file(s, f)
    problems = {(p.row, p.column) for p in err.value.problems}
    assert problems == {
        (5, "支部类型"), (5, "书记邮箱"), (5, "党员人数"), (5, "上次换届日期"), (5, "书记近两年严重违纪"),
        (6, "支部编码"),
    }
    assert "第 6 行 [支部编码]: 支部编码 T01 与第 2 行重复" in err.value.message
    assert "未导入任何一行" in err.value.message
    assert counts(sessions) == dict.fromkeys(counts(sessions), 0)


def test_missing_columns_and_wrong_file_type(sessions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "cols.csv"
    f.write_text("党委,支部编码\nX,Y\n", encoding="utf-8")
    with sessions() as s, pytest.raises(ImportRejected, match="缺少必需的列"):
        import_file(s, f)
    g = tmp_path / "org.json"
    g.write_text("{}", encoding="utf-8")
    with sessions() as s, pytest.raises(InvalidInput, match="不支持的文件类型"):
        import_file(s, g)
    h = tmp_path / "gbk.csv"
    h.write_bytes((HEADER + "\n" + GOOD[0]).encode("gbk"))
    with sessions() as s, pytest.raises(ImportRejected, match="UTF-8"):
        import_file(s, h)


def test_xlsx_import_and_secretary_change(sessions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    wb = Workbook()
    ws = wb.active
    ws.append(HEADER.split(","))
    import datetime as dt

    ws.append(["生命学院党委", "教工党总支", "T01", "生物系教工党支部", "教工", "王建国", "wang@example.cn", 12,
               dt.datetime(2024, 6, 1), dt.datetime(2026, 3, 1), "否"])
    f = tmp_path / "org.xlsx"
    wb.save(f)
    with sessions() as s, s.begin():
        assert import_file(s, f).created == 1
    # the branch gets a new secretary: the role moves to the new person
    ws["F2"], ws["G2"] = "孙新", "sun@example.cn"
    wb.save(f)
    with sessions() as s, s.begin():
        assert import_file(s, f).updated == 1
    with sessions() as s:
        rows = s.execute(
            select(Person.email).join(RoleAssignment, RoleAssignment.person_id == Person.id)
            .where(RoleAssignment.role == Role.branch_secretary.value, RoleAssignment.scope_code == "T01")
        ).scalars().all()
        assert rows == ["sun@example.cn"]
