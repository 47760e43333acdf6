"""Fixtures shared by every test folder.

``backend`` runs a test on a real SQLite file and on a real PostgreSQL server (a throwaway cluster
started once per session; each test gets a fresh database copied from a migrated template). The
PostgreSQL variants skip, saying why, only where no server can be started.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text

from tests.support import pg
from workflow.db import make_engine, session_factory
from workflow.migrate import upgrade


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from BRANCHFLOW_*: tests start from none of the developer's."""
    for k in list(os.environ):
        if k.startswith("BRANCHFLOW_") and k not in ("BRANCHFLOW_PG_BIN",):
            monkeypatch.delenv(k)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[pg.Cluster | str]:
    c = pg.start()
    yield c
    if isinstance(c, pg.Cluster):
        c.stop()


_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_template(pg_cluster: pg.Cluster | str) -> str | None:
    """Create and migrate a template database once; per-test databases are copied from it."""
    if not isinstance(pg_cluster, pg.Cluster):
        return None
    admin = create_engine(pg_cluster.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CREATE DATABASE bf_template"))
    admin.dispose()
    eng = make_engine(pg_cluster.url_for("bf_template"))
    upgrade(eng)
    eng.dispose()
    return "bf_template"


@pytest.fixture
def pg_url(pg_cluster: pg.Cluster | str, pg_template: str | None) -> Iterator[str]:
    if not isinstance(pg_cluster, pg.Cluster):
        pytest.skip(f"PostgreSQL tests skipped: {pg_cluster}")
    name = f"bf_test_{os.getpid()}_{next(_counter)}"
    admin = create_engine(pg_cluster.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name} TEMPLATE {pg_template}"))
    yield pg_cluster.url_for(name)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    """A migrated, empty database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'branchflow.db'}"
        eng = make_engine(url)
        upgrade(eng)
        eng.dispose()
        return url
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def sessions(engine: Engine):  # type: ignore[no-untyped-def]
    return session_factory(engine)


@pytest.fixture
def world(sessions):  # type: ignore[no-untyped-def]
    from tests.support.world import World

    return World(sessions)
