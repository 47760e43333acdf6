"""The APScheduler ticker: two periodic jobs that really run, and one leader per PostgreSQL database."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from notifications.mailer import InMemoryTransport
from scheduler.jobs import LeaderLock, build_scheduler
from tests.integration.test_mail_smtp import GB, ORG, Org, at
from workflow.settings import Settings


def test_one_leader_per_database(engine: Engine) -> None:
    a, b = LeaderLock(engine), LeaderLock(engine)
    try:
        if engine.dialect.name == "postgresql":
            assert a.acquire() and a.held
            assert not b.acquire() and not b.held  # a second node waits
            a.release()
            assert b.acquire()  # and takes over once the first is gone
        else:
            assert a.acquire() and b.acquire()  # SQLite: a single node, always the leader
    finally:
        a.release()
        b.release()


def test_the_scheduler_runs_the_sweep_and_the_dispatcher(engine: Engine, sessions: sessionmaker[Session],
                                                          tmp_path: Path) -> None:
    Org(sessions, tmp_path)
    transport = InMemoryTransport()
    sched = build_scheduler(engine, Settings(data_dir=tmp_path), clock=lambda: at(3, 28), transport=transport,
                            sweep_seconds=3600, dispatch_seconds=1)
    sched.start()
    try:
        jobs = {j.id: j for j in sched.get_jobs()}
        assert sorted(jobs) == ["branchflow-dispatch", "branchflow-sweep"]  # never one job per branch
        assert all(j.coalesce and j.misfire_grace_time is None and j.max_instances == 1 for j in jobs.values())
        deadline = time.monotonic() + 20
        while len(transport.sent) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        sched.shutdown(wait=True)
        sched.branchflow_lock.release()
    got = sorted((str(m["To"]).rpartition("<")[2].rstrip(">") or str(m["To"]), m["X-Branchflow-Dedup-Key"])
                 for m in transport.sent)
    assert got == [(GB, "haitang-2026/B1/survey/2026-03-31/before-3"),
                   (ORG, "haitang-2026/*/monthly/2026-03/digest")]
