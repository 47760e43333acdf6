"""The ticker: one tick = one sweep (own transaction) then one dispatch; APScheduler runs ticks periodically.

``run_tick`` is what ``branchflow tick --now`` and the demo call. ``build_scheduler`` gives the
``branchflow serve`` command an APScheduler 3.x ``BackgroundScheduler`` with two periodic jobs — never
one job per branch: the sweep (only on the leader node) and the dispatcher (on every node; rows are
claimed with ``FOR UPDATE SKIP LOCKED``). Both use ``coalesce=True``, ``max_instances=1`` and
``misfire_grace_time=None`` (APScheduler's default grace of 1 s would silently drop a late run).

A graceful stop: ``scheduler.shutdown()`` (what ``serve`` calls on SIGTERM) first tells a running
dispatch to stop — it finishes the message in flight, releases its unsent claims and returns — then
waits for it; the caller then releases the leader lock.

Leadership on PostgreSQL is a session-level advisory lock held on one dedicated connection for as long
as the node lives; on SQLite there is a single node, which is always the leader. APScheduler's API does
not leave this module.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, text

from notifications.dispatch import DispatchStats, dispatch
from notifications.mailer import Transport, transport_for
from scheduler.sweep import SweepStats, sweep
from workflow.db import session_factory
from workflow.settings import Settings

log = logging.getLogger("branchflow.scheduler")
LEADER_LOCK_KEY = 0x6272616E6368  # "branch"


@dataclass(frozen=True, kw_only=True)
class TickResult:
    sweep: SweepStats
    dispatch: DispatchStats

    def text(self) -> str:
        return f"{self.sweep.text()}\n{self.dispatch.text()}"


def run_sweep(engine: Engine, settings: Settings, *, now: dt.datetime, campaign: str | None = None) -> SweepStats:
    with session_factory(engine)() as s:
        stats = sweep(s, now=now, campaign_code=campaign, org_department_email=settings.org_department_email,
                      checkpoint=s.commit)
        s.commit()
        from notifications.ballots import tick as ballots_tick  # online ballots (issue 15): close those due,
        ballots_tick(s, now=now)  # blank the codes of ballot mail already sent
        from notifications.receipts import (
            scrub as receipts_scrub,  # objection receipts (issue 16): blank sent codes
        )
        receipts_scrub(s)
        s.commit()
        return stats


def run_checkpoints(engine: Engine, settings: Settings, *, now: dt.datetime) -> int:
    """Make the signed checkpoints due now (daily, stage deadlines) and queue them to the auditors."""
    from notifications import checkpoints

    with session_factory(engine)() as s, s.begin():
        return len(checkpoints.tick(s, settings.audit_key_path, now=now))


def run_dispatch(engine: Engine, settings: Settings, *, now: dt.datetime, transport: Transport | None = None,
                 after_send: Callable[[], None] | None = None, stop: Callable[[], bool] | None = None) -> DispatchStats:
    """Drain what is due at ``now`` (``stop`` polled before each message: a graceful stop)."""
    return dispatch(session_factory(engine), transport or transport_for(settings), now=now,
                    sender=settings.smtp_sender, org_department_email=settings.org_department_email,
                    after_send=after_send, stop=stop)


def run_tick(engine: Engine, settings: Settings, *, now: dt.datetime, transport: Transport | None = None,
             campaign: str | None = None, after_send: Callable[[], None] | None = None,
             stop: Callable[[], bool] | None = None) -> TickResult:
    """One sweep and one dispatch at ``now`` (the sweep commits before anything is sent)."""
    swept = run_sweep(engine, settings, now=now, campaign=campaign)
    sent = run_dispatch(engine, settings, now=now, transport=transport, after_send=after_send, stop=stop)
    return TickResult(sweep=swept, dispatch=sent)


class LeaderLock:
    """One scheduler leader among nodes sharing PostgreSQL (advisory lock); SQLite: always the leader."""

    def __init__(self, engine: Engine, key: int = LEADER_LOCK_KEY) -> None:
        self.engine = engine
        self.key = key
        self._conn: Connection | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None or self.engine.dialect.name != "postgresql"

    def acquire(self) -> bool:
        if self.held:
            return True
        conn = self.engine.connect()
        try:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar())
            conn.commit()
        except Exception:
            conn.close()
            raise
        if got:
            self._conn = conn
        else:
            conn.close()
        return got

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                self._conn.commit()
            finally:
                self._conn.close()
                self._conn = None


def build_scheduler(engine: Engine, settings: Settings, *, clock: Callable[[], dt.datetime] | None = None,
                    sweep_seconds: int = 300, dispatch_seconds: int = 60, transport: Transport | None = None,
                    lock: LeaderLock | None = None) -> Any:
    """An APScheduler ``BackgroundScheduler`` (not started) running the sweep and the dispatcher.

    ``clock`` is read once per job run (default: the real UTC clock). The caller starts it, and on
    shutdown calls ``scheduler.shutdown()`` (which stops a dispatch in flight after its current message)
    then ``scheduler.branchflow_lock.release()``.
    """
    from apscheduler.schedulers.background import BackgroundScheduler  # type: ignore[import-untyped]

    read_clock = clock or (lambda: dt.datetime.now(dt.UTC))
    leader = lock or LeaderLock(engine)
    stopping = threading.Event()

    def sweep_job() -> None:
        if not leader.acquire():
            log.debug("not the scheduler leader; sweep skipped")
            return
        stats = run_sweep(engine, settings, now=read_clock())
        log.info(stats.text())
        run_checkpoints(engine, settings, now=read_clock())  # daily and at stage deadlines (issue 11)

    def dispatch_job() -> None:
        if stopping.is_set():
            return
        stats = run_dispatch(engine, settings, now=read_clock(), transport=transport, stop=stopping.is_set)
        if stats.messages or stats.retried or stats.dead or stats.held or stats.left:
            log.info(stats.text())
        trouble = stats.trouble()
        if trouble:
            log.error(trouble)

    class Scheduler(BackgroundScheduler):  # type: ignore[misc]
        def shutdown(self, wait: bool = True) -> None:
            stopping.set()  # a dispatch in flight finishes its current message and releases the rest
            super().shutdown(wait=wait)

    sched = Scheduler(timezone="UTC", job_defaults={
        "coalesce": True, "max_instances": 1, "misfire_grace_time": None})
    start = dt.datetime.now(dt.UTC)  # when the jobs first run is real time, whatever ``clock`` says
    sched.add_job(sweep_job, "interval", seconds=sweep_seconds, id="branchflow-sweep", next_run_time=start)
    sched.add_job(dispatch_job, "interval", seconds=dispatch_seconds, id="branchflow-dispatch",
                  next_run_time=start + dt.timedelta(seconds=1))
    sched.branchflow_lock = leader
    sched.branchflow_stop = stopping.set
    return sched
