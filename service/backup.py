"""Backups and restores of the database (``branchflow backup`` / ``restore``), safe while ``serve`` runs.

SQLite: SQLite's online backup API copies the whole database in one step inside one read transaction,
so the copy is one consistent moment even while other connections write (the database is in WAL mode:
writers are not blocked). The copy is written beside the target as a hidden ``.part`` file created 0600,
checked with ``PRAGMA integrity_check`` and renamed into place — a failed backup leaves no half file.

PostgreSQL: ``pg_dump --format=custom`` (one consistent snapshot by itself), restored with
``pg_restore``. pg_dump must be at least the server's major version (it refuses older servers' newer
formats the other way round): the server's version is read, and the newest ``pg_dump`` found on PATH
or under ``/usr/lib/postgresql/*/bin`` that is new enough is used; none → a clear error naming the
version to install. The password goes to pg_dump through ``PGPASSWORD``, never its command line.

A restore refuses to overwrite a database that holds data (any campaign, branch, person or event)
without ``force``. Neither the session key (``secret.key``) nor the audit signing key is in a backup:
they are files of their own (docs/deploy.md says where they live and how to keep them).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import make_url

from workflow.errors import InvalidInput

SQLITE_MAGIC = b"SQLite format 3\x00"
PGDUMP_MAGIC = b"PGDMP"
DATA_TABLES = ("campaigns", "branches", "people", "events")


@dataclass(frozen=True, kw_only=True)
class Summary:
    """What a backup or restore holds, for the operator's line."""

    path: Path
    size: int
    revision: str | None
    branches: int
    events: int


def _private_part(dest: Path) -> Path:
    if not dest.parent.is_dir():
        raise InvalidInput(f"目录 {dest.parent} 不存在")
    part = dest.with_name(f".{dest.name}.part")
    if part.exists():
        part.unlink()
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    return part


def _check_target(dest: Path, force: bool) -> None:
    if dest.exists() and not force:
        raise InvalidInput(f"文件 {dest} 已存在；换一个文件名，或加 --force 覆盖")
    if dest.is_dir():
        raise InvalidInput(f"{dest} 是一个目录；请给出备份文件名")


def _counts_sqlite(conn: sqlite3.Connection) -> tuple[str | None, int, int]:
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def one(sql: str) -> int:
        return int(conn.execute(sql).fetchone()[0])

    rev = conn.execute("SELECT version_num FROM alembic_version").fetchone() if "alembic_version" in names else None
    return (rev[0] if rev else None, one("SELECT count(*) FROM branches") if "branches" in names else 0,
            one("SELECT count(*) FROM events") if "events" in names else 0)


def sqlite_path(engine: Engine) -> Path:
    db = make_url(str(engine.url)).database
    if not db or db == ":memory:" or db.startswith("file:"):
        raise InvalidInput("只能备份 SQLite 数据库文件（不是内存数据库）")
    return Path(db)


def backup_sqlite(source: Path, dest: Path, *, force: bool = False) -> Summary:
    """A consistent copy of ``source`` at ``dest`` (0600), taken in one step of the online backup API."""
    if not source.exists():
        raise InvalidInput(f"数据库文件 {source} 不存在")
    _check_target(dest, force)
    part = _private_part(dest)
    try:
        src = sqlite3.connect(str(source), timeout=30)
        try:
            dst = sqlite3.connect(str(part))
            try:
                src.backup(dst)  # pages=-1: the whole database in one step, one read transaction
                ok = dst.execute("PRAGMA integrity_check").fetchone()[0]
                if ok != "ok":
                    raise InvalidInput(f"备份副本的完整性检查未通过：{ok}")
                rev, branches, events = _counts_sqlite(dst)
            finally:
                dst.close()
        finally:
            src.close()
        os.replace(part, dest)
    finally:
        if part.exists():
            part.unlink()
    return Summary(path=dest, size=dest.stat().st_size, revision=rev, branches=branches, events=events)


def _has_data(engine: Engine) -> bool:
    names = set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        for t in DATA_TABLES:
            if t in names and conn.execute(text(f"SELECT 1 FROM {t} LIMIT 1")).first() is not None:
                return True
    return False


def kind_of(path: Path) -> str:
    """``sqlite`` or ``pg_dump`` by the file's first bytes."""
    if not path.is_file():
        raise InvalidInput(f"备份文件 {path} 不存在")
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if head.startswith(PGDUMP_MAGIC):
        return "pg_dump"
    raise InvalidInput(f"{path} 不是 branchflow 的备份文件（既不是 SQLite 数据库，也不是 pg_dump 自定义格式）")


def restore_sqlite(backup: Path, target: Path, engine: Engine, *, force: bool = False) -> Summary:
    """Copy ``backup`` over the database at ``target`` (through the backup API, so a reader never sees half)."""
    kind = kind_of(backup)
    if kind != "sqlite":
        raise InvalidInput("这是 PostgreSQL 的备份（pg_dump），而当前数据库是 SQLite；请设置 BRANCHFLOW_DATABASE_URL")
    src = sqlite3.connect(f"file:{backup.resolve().as_posix()}?mode=ro", uri=True)
    try:
        ok = src.execute("PRAGMA integrity_check").fetchone()[0]
        if ok != "ok":
            raise InvalidInput(f"备份文件损坏（完整性检查：{ok}），未做任何改动")
        rev, branches, events = _counts_sqlite(src)
        if rev is None:
            raise InvalidInput(f"{backup} 不是 branchflow 的数据库（没有迁移版本），未做任何改动")
        if target.exists() and _has_data(engine) and not force:
            raise InvalidInput(f"数据库 {target} 中已有数据；确认要用备份覆盖它，请加 --force（建议先备份当前数据库）")
        engine.dispose()
        from workflow.db import private_file

        private_file(target)
        dst = sqlite3.connect(str(target), timeout=30)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    return Summary(path=target, size=target.stat().st_size, revision=rev, branches=branches, events=events)


# --- PostgreSQL ------------------------------------------------------------------------------------

def server_major(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(str(conn.execute(text("SHOW server_version_num")).scalar())) // 10000


def _tool_major(path: str) -> int | None:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, check=False).stdout
    except OSError:
        return None
    m = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(m.group(1)) if m else None


def find_pg_tool(name: str, need_major: int) -> tuple[str | None, list[tuple[str, int | None]]]:
    """The newest ``name`` (pg_dump / pg_restore) whose major version ≥ ``need_major``; and what was found."""
    seen: list[tuple[str, int | None]] = []
    paths = [p for p in [shutil.which(name), *sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))] if p]
    for p in dict.fromkeys(paths):
        seen.append((p, _tool_major(p)))
    good = [(m, p) for p, m in seen if m is not None and m >= need_major]
    return (max(good)[1] if good else None), seen


def _libpq(engine: Engine) -> tuple[str, dict[str, str]]:
    """The connection URI without its password, and the environment that carries it."""
    u = make_url(str(engine.url))
    env = dict(os.environ)
    if u.password:
        env["PGPASSWORD"] = str(u.password)
    uri = u.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    return uri, env


def _need_tool(engine: Engine, name: str) -> str:
    major = server_major(engine)
    tool, seen = find_pg_tool(name, major)
    if tool is None:
        found = "、".join(f"{p}（{m}）" for p, m in seen) or "没有找到"
        raise InvalidInput(
            f"PostgreSQL 服务器是 {major} 版，需要 {major} 版或更新的 {name}（{found}）。"
            f"请安装 postgresql-client-{major}，或在数据库服务器上运行：{name} --format=custom …")
    return tool


def backup_postgres(engine: Engine, dest: Path, *, force: bool = False) -> tuple[Summary, str]:
    _check_target(dest, force)
    tool = _need_tool(engine, "pg_dump")
    uri, env = _libpq(engine)
    part = _private_part(dest)
    try:
        r = subprocess.run([tool, "--format=custom", "--no-owner", "--no-privileges", f"--file={part}",
                            f"--dbname={uri}"], env=env, capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise InvalidInput(f"pg_dump 失败：{r.stderr.strip()[:800]}")
        os.replace(part, dest)
    finally:
        if part.exists():
            part.unlink()
    with engine.connect() as conn:
        rev = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        branches = int(conn.execute(text("SELECT count(*) FROM branches")).scalar_one())
        events = int(conn.execute(text("SELECT count(*) FROM events")).scalar_one())
    return Summary(path=dest, size=dest.stat().st_size, revision=rev, branches=branches, events=events), tool


def restore_postgres(backup: Path, engine: Engine, *, force: bool = False) -> str:
    if kind_of(backup) != "pg_dump":
        raise InvalidInput("这是 SQLite 的备份，而当前数据库是 PostgreSQL；请先取消 BRANCHFLOW_DATABASE_URL")
    if _has_data(engine) and not force:
        raise InvalidInput("数据库中已有数据；确认要用备份覆盖它，请加 --force（建议先备份当前数据库）")
    tool = _need_tool(engine, "pg_restore")
    uri, env = _libpq(engine)
    engine.dispose()
    cmd = [tool, "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction", f"--dbname={uri}"]
    if inspect(engine).get_table_names():
        cmd += ["--clean", "--if-exists"]  # replace what is there (empty tables of a fresh init, or --force)
    engine.dispose()
    r = subprocess.run([*cmd, str(backup)], env=env, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise InvalidInput(f"pg_restore 失败（数据库未改动）：{r.stderr.strip()[:800]}")
    return tool
