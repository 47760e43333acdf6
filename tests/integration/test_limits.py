"""Limits and shapes (issue 14, point 6; issue 10, point 1 on the input side): what the database cannot hold,
codes that would reach headers and paths, control characters in names and addresses — refused at import and
in `person add` with the row, the column and a Chinese reason, nothing applied, on SQLite and PostgreSQL; the
SQLite file and the mail sink private to the service's user.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import stat
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest

from states.base import Role
from tests.support.dump import dump
from tests.support.world import World
from workflow import limits
from workflow.errors import ImportRejected, InvalidInput
from workflow.importer import import_file
from workflow.people import add_person

ROOT = Path(__file__).resolve().parents[2]
HEADER = ["党委", "党委编码", "党总支", "党总支编码", "支部编码", "支部名称", "支部类型", "书记姓名", "书记邮箱", "党员人数"]


def good(code: str, **over: str) -> list[str]:
    row = {"党委": "测试学院党委", "党委编码": "C1", "党总支": "第一党总支", "党总支编码": "GB1", "支部编码": code,
           "支部名称": f"支部{code}", "支部类型": "教工", "书记姓名": "王书记", "书记邮箱": f"{code.lower()}@test.cn",
           "党员人数": "10"}
    row.update(over)
    return [row[h] for h in HEADER]


def write_csv(tmp: Path, rows: list[list[str]]) -> Path:
    p = tmp / "org.csv"
    with open(p, "w", encoding="utf-8-sig", newline="") as f:
        csv.writer(f).writerows([HEADER, *rows])
    return p


# row → (column, words the reason must contain)
BAD: list[tuple[dict[str, str], str, str]] = [
    ({"党总支编码": '../../../../evil"; filename=x.html'}, "党总支编码", "只能包含字母、数字、点、下划线和短横线"),
    ({"支部名称": "长" * 201}, "支部名称", "过长：201 个字符，最多 200 个"),
    ({"党员人数": "3000000000"}, "党员人数", "党员人数须在 1–100000 之间"),
    ({"党员人数": "99999999999999999999"}, "党员人数", "党员人数须在 1–100000 之间"),
    ({"支部名称": "生物\x00支部"}, "支部名称", "空字符（NUL）"),
    ({"书记姓名": "Qian Weidong\nBcc: x@evil.cn"}, "书记姓名", "换行符"),
    ({"书记邮箱": "a@test.cn\r\nBcc: x@evil.cn"}, "书记邮箱", "控制字符"),
    ({"党总支": "第一\u2028党总支", "党总支编码": "GB7"}, "党总支", "行分隔符 U+2028"),
    ({"党委编码": "C 1"}, "党委编码", "只能包含"),
    ({"书记姓名": "王" * 101}, "书记姓名", "最多 100 个"),
    ({"书记邮箱": "not-an-address"}, "书记邮箱", "不是有效的电子邮箱地址"),
]


def test_import_refuses_each_value_the_database_cannot_hold_by_row_and_column(world: World, tmp_path: Path) -> None:
    """All the bad rows in one file: every one named; nothing imported (the database dump is unchanged)."""
    rows = [good(f"X{i}", **over) for i, (over, _, _) in enumerate(BAD)]
    before = dump(world.sessions)
    with world.sessions() as s, s.begin(), pytest.raises(ImportRejected) as err:
        import_file(s, write_csv(tmp_path, rows))
    got = {(p.row, p.column): p.problem for p in err.value.problems}
    for i, (_, column, words) in enumerate(BAD):
        assert words in got.get((i + 2, column), ""), (i + 2, column, got)
    assert len(got) == len(BAD), got
    assert dump(world.sessions) == before


@pytest.mark.parametrize("over", [b[0] for b in BAD[:8]], ids=[b[1] for b in BAD[:8]])
def test_one_bad_value_alone_is_a_row_error_not_a_traceback(world: World, tmp_path: Path, over: dict[str, str]) -> None:
    """Each bad value on its own, beside good rows (a 201-character name on PostgreSQL must not reach it)."""
    before = dump(world.sessions)
    with world.sessions() as s, s.begin(), pytest.raises(ImportRejected) as err:
        import_file(s, write_csv(tmp_path, [good("Y1"), good("Y2", **over), good("Y3")]))
    assert [p.row for p in err.value.problems] == [3]
    assert dump(world.sessions) == before


def test_import_size_is_limited_in_rows_and_bytes(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_csv(tmp_path, [good(f"Z{i}") for i in range(5)])
    monkeypatch.setattr(limits, "IMPORT_MAX_ROWS", 4)
    with world.sessions() as s, pytest.raises(ImportRejected, match="数据行过多：5 行，最多 4 行"):
        import_file(s, path)
    monkeypatch.setattr(limits, "IMPORT_MAX_ROWS", 100)
    monkeypatch.setattr(limits, "IMPORT_MAX_BYTES", 100)
    with world.sessions() as s, pytest.raises(ImportRejected, match="文件过大"):
        import_file(s, path)


def test_person_add_refuses_control_characters_and_bad_codes(world: World) -> None:
    before = dump(world.sessions)
    cases = [
        ("qian@test.cn", "Qian Weidong\nBcc: x@evil.cn", "C1", "换行符"),
        ("qian@test.cn", "Li\rLei", "C1", "回车符"),
        ("qian@test.cn\r\nBcc: x@evil.cn", "钱", "C1", "控制字符"),
        ("qian@test.cn", "钱", '../../x"; filename=y', "只能包含"),
        ("qian@test.cn", "钱" * 101, "C1", "最多 100 个"),
    ]
    for email, name, scope, words in cases:
        with world.sessions() as s, s.begin(), pytest.raises(InvalidInput, match=words):
            add_person(s, email, name, [Role.org_department], scope)
    assert dump(world.sessions) == before


def test_person_add_command_refuses_a_line_break_in_a_name(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHFLOW_")}
    env.update(BRANCHFLOW_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "service.cli", *args], env=env, text=True, capture_output=True,
                              timeout=120, check=False)

    assert cli("init").returncode == 0
    r = cli("person", "add", "qian@test.cn", "--name", "Qian Weidong\nBcc: x@evil.cn", "--role", "auditor")
    assert r.returncode == 2 and "姓名含有不允许的换行符" in r.stderr + r.stdout, (r.stdout, r.stderr)
    assert "qian@test.cn" not in cli("person", "list").stdout


def test_deadlines_move_only_within_the_campaign_years(world: World) -> None:
    from tests.support.world import ORG, at
    from workflow import service

    before = dump(world.sessions)
    with pytest.raises(InvalidInput, match=r"超出本活动的合理范围（2026-01-01 至 2027-12-31）"):
        world.do(service.extend_deadline, "B1", ORG, dt.date(9999, 12, 31), "支部换届，延期办理。", now=at(3, 25))
    assert dump(world.sessions) == before
    world.do(service.extend_deadline, "B1", ORG, dt.date(2027, 3, 31), "支部换届，延期办理。", now=at(3, 25))


def test_the_sqlite_file_and_the_mail_sink_are_private(tmp_path: Path) -> None:
    from sqlalchemy import text

    from notifications.mailer import EmlSink
    from workflow.db import make_engine

    data = tmp_path / "data"
    engine = make_engine(f"sqlite:///{data / 'branchflow.db'}")
    with engine.begin() as c:
        c.execute(text("CREATE TABLE t (a INTEGER)"))
        c.execute(text("INSERT INTO t VALUES (1)"))
    with engine.connect() as c:  # the WAL and its index exist while a connection is open
        c.execute(text("SELECT * FROM t")).all()
        for name in ("branchflow.db", "branchflow.db-wal", "branchflow.db-shm"):
            assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    engine.dispose()
    msg = EmailMessage()
    msg["To"] = "sec1@test.cn"
    msg["From"] = "branchflow@test.cn"
    msg["Subject"] = "提醒"
    msg["Message-ID"] = "<abc123@test.cn>"
    msg["Date"] = "Tue, 01 Dec 2026 10:00:00 +0800"
    msg.set_content("请按时填报。")
    mail = tmp_path / "mail"
    EmlSink(mail).send([msg])
    assert stat.S_IMODE(mail.stat().st_mode) == 0o700
    files = list(mail.glob("*.eml"))
    assert len(files) == 1 and stat.S_IMODE(files[0].stat().st_mode) == 0o600
