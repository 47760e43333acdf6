"""A database made by the previous release (schema 0003) upgrades with ``branchflow init`` and keeps every chain
verifiable, on SQLite and PostgreSQL.

The fixture ``tests/fixtures/db_0003.sql`` is that release's own demo database (commit 90ac25c), dumped. On
SQLite it is loaded as it is; on PostgreSQL the current code's migrations are run up to 0003 (they are
the release's, unchanged) and the fixture's rows copied onto that schema.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import JSON, Boolean, MetaData, create_engine, func, select, text

from tests.support import pg
from workflow.db import make_engine
from workflow.migrate import current, head, upgrade

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "db_0003.sql"
PREVIOUS = "0003"


def bf(tmp: Path, url: str, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHFLOW_")}
    env.update(BRANCHFLOW_DATABASE_URL=url, BRANCHFLOW_DATA_DIR=str(tmp / "data"), PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "service.cli", *args], check=False, cwd=tmp, env=env, text=True,
                       capture_output=True, timeout=300)
    assert r.returncode == code, f"{args} → {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r


def _fixture_db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path))
    conn.executescript(FIXTURE.read_text(encoding="utf-8"))
    return conn


def _sqlite_previous(tmp: Path) -> str:
    _fixture_db(tmp / "branchflow.db").close()
    return f"sqlite:///{tmp / 'branchflow.db'}"


def _postgres_previous(tmp: Path, cluster: pg.Cluster) -> str:
    name = f"bf_upgrade_{os.getpid()}"
    admin = create_engine(cluster.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name} TEMPLATE template0"))
    admin.dispose()
    url = cluster.url_for(name)
    engine = make_engine(url)
    upgrade(engine, PREVIOUS)
    src = _fixture_db(tmp / "previous.db")
    meta = MetaData()
    meta.reflect(engine)
    with engine.begin() as conn:
        for table in meta.sorted_tables:  # parents before children
            if table.name == "alembic_version":
                continue
            cols = [c.name for c in table.columns]
            rows = src.execute(f'SELECT {", ".join(cols)} FROM "{table.name}"').fetchall()
            booleans = {c.name for c in table.columns if isinstance(c.type, Boolean)}
            # SQLite keeps JSON as its text: decoded here, or the JSON column would store it as one string
            documents = {c.name for c in table.columns if isinstance(c.type, JSON)}
            if rows:
                conn.execute(table.insert(), [{k: (bool(v) if k in booleans and v is not None else
                                                   json.loads(v) if k in documents and isinstance(v, str) else v)
                                               for k, v in zip(cols, r, strict=True)} for r in rows])
            if "id" in cols:  # ids were given: move the sequence past them
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                  f"(SELECT coalesce(max(id), 0) + 1 FROM {table.name}), false)"))
    src.close()
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def previous(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return _sqlite_previous(tmp_path)
    cluster = request.getfixturevalue("pg_cluster")
    if not isinstance(cluster, pg.Cluster):
        pytest.skip(f"PostgreSQL tests skipped: {cluster}")
    return _postgres_previous(tmp_path, cluster)


def _count(url: str, table: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(text(table))).scalar_one())
    finally:
        engine.dispose()


def test_the_previous_releases_database_upgrades_with_init_and_every_chain_verifies(tmp_path: Path,
                                                                                    previous: str) -> None:
    engine = make_engine(previous)
    assert current(engine) == PREVIOUS
    engine.dispose()
    events, deliveries = _count(previous, "events"), _count(previous, "outbox_deliveries")
    assert events > 100 and deliveries > 10

    # a service refuses the old schema and says what to do
    r = bf(tmp_path, previous, "status", code=9)
    assert f"落后于 {head()}" in r.stdout and "branchflow init" in r.stdout

    bf(tmp_path, previous, "init")
    engine = make_engine(previous)
    assert current(engine) == head()
    engine.dispose()
    assert _count(previous, "events") == events and _count(previous, "outbox_deliveries") == deliveries
    assert "校验通过" in bf(tmp_path, previous, "audit", "verify").stdout
    assert f"数据库版本：{head()}（最新）" in bf(tmp_path, previous, "status").stdout

    # the upgraded database is worked on as before: a branch's replayed history, the outbox, a tick
    history = bf(tmp_path, previous, "history", "U002").stdout
    assert "环节流转" in history
    assert "已发送" in bf(tmp_path, previous, "outbox").stdout
    bf(tmp_path, previous, "tick", "--now", "2026-10-08T09:30")
    assert "校验通过" in bf(tmp_path, previous, "audit", "verify").stdout
