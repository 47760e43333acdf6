"""``branchflow backup`` while the database is being written, and ``branchflow restore`` of that copy, on a real
SQLite file and a real PostgreSQL server: the copy is one consistent moment (every chain verifies), the
file is 0600, a restore refuses to overwrite a database holding data without ``--force``."""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from tests.support import pg
from tests.support.world import GB_SEC, World, at
from workflow import service
from workflow.db import make_engine, session_factory
from workflow.models import EventRow

ROOT = Path(__file__).resolve().parents[2]


def bf(tmp: Path, url: str, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHFLOW_")}
    env.update(BRANCHFLOW_DATABASE_URL=url, BRANCHFLOW_DATA_DIR=str(tmp / "data"), PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "service.cli", *args], check=False, cwd=tmp, env=env, text=True,
                       capture_output=True, timeout=300)
    assert r.returncode == code, f"{args} → {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r


def _events(url: str) -> int:
    eng = make_engine(url)
    try:
        with eng.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(EventRow)).scalar_one())
    finally:
        eng.dispose()


class Writer(threading.Thread):
    """Records the survey of B1 and B2 over and over (each a new event on the branch's chain) until stopped."""

    def __init__(self, world: World) -> None:
        super().__init__(daemon=True)
        self.world = world
        self.stop = threading.Event()
        self.writes = 0
        self.error: BaseException | None = None
        self.started_writing = threading.Event()

    def run(self) -> None:
        t = at(3, 5)
        try:
            while not self.stop.is_set():
                for branch in ("B1", "B2"):
                    t += dt.timedelta(minutes=1)
                    self.world.do(service.record, branch, GB_SEC, World.survey_data(), now=t)
                    self.writes += 1
                if self.writes >= 20:
                    self.started_writing.set()
        except BaseException as exc:  # noqa: BLE001 — surfaced by the test
            self.error = exc
            self.started_writing.set()


def test_backup_during_writes_restores_to_a_verifiable_copy(tmp_path: Path, db_url: str,
                                                           request: pytest.FixtureRequest) -> None:
    engine = make_engine(db_url)
    world = World(session_factory(engine))
    writer = Writer(world)
    writer.start()
    try:
        assert writer.started_writing.wait(120) and writer.error is None, writer.error
        before = _events(db_url)
        out = bf(tmp_path, db_url, "backup", "copy.bak").stdout
        after = _events(db_url)
        assert writer.is_alive()  # the writes went on during the backup
    finally:
        writer.stop.set()
        writer.join(60)
    assert writer.error is None, writer.error
    copy = tmp_path / "copy.bak"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert "已备份到" in out and "权限 0600" in out and "签名密钥" in out

    # a fresh, empty database gets the copy; every chain in it verifies
    if db_url.startswith("sqlite"):
        target = f"sqlite:///{tmp_path / 'restored.db'}"
    else:
        cluster = request.getfixturevalue("pg_cluster")
        assert isinstance(cluster, pg.Cluster)
        name = f"bf_restored_{os.getpid()}"
        admin = create_engine(cluster.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
            conn.execute(text(f"CREATE DATABASE {name} TEMPLATE template0"))
        admin.dispose()
        target = cluster.url_for(name)
    r = bf(tmp_path, target, "restore", "copy.bak")
    assert "恢复" in r.stdout
    copied = _events(target)
    assert before <= copied <= after, (before, copied, after)
    verify = bf(tmp_path, target, "audit", "verify")
    assert "校验通过" in verify.stdout

    # the original holds data: restoring over it is refused (nothing changed) unless --force
    total = _events(db_url)
    assert total > copied
    r = bf(tmp_path, db_url, "restore", "copy.bak", code=2)
    assert "已有数据" in r.stderr and "--force" in r.stderr
    assert _events(db_url) == total
    bf(tmp_path, db_url, "restore", "copy.bak", "--force")
    assert _events(db_url) == copied
    assert "校验通过" in bf(tmp_path, db_url, "audit", "verify").stdout

    # a second backup to the same name is refused unless --force; a non-backup file is refused on restore
    assert "已存在" in bf(tmp_path, db_url, "backup", "copy.bak", code=2).stderr
    (tmp_path / "notes.txt").write_text("不是备份", encoding="utf-8")
    assert "不是 branchflow 的备份文件" in bf(tmp_path, target, "restore", "notes.txt", "--force", code=2).stderr
    engine.dispose()
