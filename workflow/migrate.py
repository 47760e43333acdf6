"""`branchflow init`: create or upgrade the database with Alembic.

Alembic is configured here, in code: the migrations are the installed ``migrations`` package (shipped in
the wheel), so no ``alembic.ini`` is read at run time (the one in the source tree is for the ``alembic``
command of developers).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine


def migrations_dir() -> Path:
    spec = importlib.util.find_spec("migrations")
    if spec is None or spec.origin is None:
        raise RuntimeError("找不到数据库迁移脚本（migrations 包）；请重新安装 branchflow")
    return Path(spec.origin).resolve().parent


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()).replace("%", "%%"))  # configparser syntax
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def require_current(engine: Engine) -> None:
    """Refuse to run a long-lived service on a database that `branchflow init` has not brought up to date."""
    from workflow.errors import InvalidInput

    have, want = current(engine), head()
    if have != want:
        state = "尚未初始化" if have is None else f"版本 {have} 落后于 {want}"
        raise InvalidInput(f"数据库{state}：请先运行 `branchflow init`")
