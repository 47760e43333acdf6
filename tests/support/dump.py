"""A dump of every table (each row as a tuple, in primary-key order), to compare a database before and after
something that must change nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import MetaData, select
from sqlalchemy.orm import Session, sessionmaker

# Who is logged in (sessions, tokens, log-in attempts) changes with every request that authenticates; the
# domain data does not. Compare those tables in the tests of authentication, not here.
LOGIN_TABLES = frozenset({"web_sessions", "api_tokens", "login_attempts", "login_locks"})


def dump(sessions: sessionmaker[Session], *, ignore: frozenset[str] = LOGIN_TABLES) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    with sessions() as s:
        meta = MetaData()
        meta.reflect(bind=s.connection())
        for t in meta.sorted_tables:
            if t.name == "alembic_version" or t.name in ignore:
                continue
            order = list(t.primary_key.columns) or list(t.columns)
            out[t.name] = [tuple(r) for r in s.execute(select(t).order_by(*order))]
    return out
