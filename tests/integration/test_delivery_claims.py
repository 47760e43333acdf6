"""At most once while nothing crashes, at most one identical extra copy per crash, a clean stop, no cap per tick.

Real aiosmtpd on 127.0.0.1 (a slow one where it matters) counting what it received per (recipient,
dedup key); SQLite files and PostgreSQL. Dispatchers run as threads, as subprocesses killed with
SIGKILL, and as ``branchflow serve`` stopped with SIGTERM.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from notifications.directory import Recipient
from notifications.dispatch import dispatch
from notifications.mailer import SmtpTransport
from notifications.models import PENDING, SENT, DeliveryRow
from notifications.outbox import Notice, enqueue
from notifications.testing import SmtpServer
from workflow.campaigns import create_campaign
from workflow.models import CampaignRow

ROOT = Path(__file__).resolve().parents[2]
SENDER = "党委组织部 <zzb@test.cn>"
SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
T0 = dt.datetime(2026, 4, 7, 1, 0, tzinfo=dt.UTC)


def item(i: int, n: int) -> dict[str, Any]:
    return {"campaign": "测试 2026 年基层组织建设年", "branch_code": f"B{i:05d}", "branch_name": f"第{i}党支部",
            "general_branch": "第一党总支", "secretary": f"书记{i}", "stage": "self_assessment",
            "stage_label": "支部自评", "deadline": "2026-04-10", "deadline_text": "2026年4月10日", "kind": "reminder",
            "rung": "before-3", "days_left": 3, "days_overdue": 0, "missing": ["未填写支部大会日期"],
            "owners": ["党支部书记"], "contact": "总支书记 赵（gb1@test.cn）", "supervision_order": False}


def fill(sessions: sessionmaker[Session], *, recipients: int, per_recipient: int = 1,
         due: dt.datetime = T0) -> list[str]:
    """``recipients`` × ``per_recipient`` reminders (a digest per recipient); returns the dedup keys."""
    with sessions() as s, s.begin():
        if s.scalar(select(CampaignRow.id)) is None:
            create_campaign(s, preset="haitang-2022", year=2026, now=due - dt.timedelta(days=30))
        camp = s.scalar(select(CampaignRow.id))
        assert camp is not None
        notices = [Notice(key=f"t/B{i:05d}/self_assessment/2026-04-10/before-3", campaign_id=camp, kind="reminder",
                          rung="before-3", due_at=due, context=item(i, 1),
                          recipients=[Recipient(email=f"s{i // per_recipient}@test.cn",
                                                name=f"书记{i // per_recipient}")])
                   for i in range(recipients * per_recipient)]
        enqueue(s, notices, now=due)
    return [n.key for n in notices]


def statuses(sessions: sessionmaker[Session]) -> Counter[str]:
    with sessions() as s:
        return Counter(s.scalars(select(DeliveryRow.status)))


def assert_identical_copies(server: SmtpServer) -> None:
    """Every message that arrived more than once arrived byte for byte the same (same Message-ID, keys, Date)."""
    by_mid: dict[str, list[bytes]] = defaultdict(list)
    for m in server.messages:
        by_mid[str(m.message["Message-ID"])].append(m.data)
    for copies in by_mid.values():
        assert len(set(copies)) == 1
    by_key: dict[str, set[str]] = defaultdict(set)
    for m in server.messages:
        for k in m.keys:
            by_key[k].add(str(m.message["Message-ID"]))
    assert all(len(mids) == 1 for mids in by_key.values())  # a repeated notice is in the same message


# --- two dispatchers, a slow server ---------------------------------------------------------------

def test_two_dispatchers_and_a_slow_server_deliver_each_notice_once(sessions: sessionmaker[Session]) -> None:
    """Two nodes (or overlapping cron ticks) dispatching while each message takes 0.1 s and the claim lasts
    1 s: the owner renews its claim while it works, so the other never re-sends what it holds."""
    keys = fill(sessions, recipients=36, due=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    server = SmtpServer().start()
    server.handler.delay = 0.1
    errors: list[BaseException] = []
    done = threading.Event()

    def node() -> None:
        transport = SmtpTransport(host="127.0.0.1", port=server.port, timeout=10, concurrency=2)
        try:
            while not done.is_set():  # a tick every 0.2 s, like cron ticks that overlap
                dispatch(sessions, transport, now=dt.datetime.now(dt.UTC), sender=SENDER, batch=12,
                         lease=dt.timedelta(seconds=1))
                if statuses(sessions)[SENT] >= len(keys):
                    done.set()
                time.sleep(0.2)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            done.set()

    threads = [threading.Thread(target=node) for _ in range(2)]
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
    finally:
        done.set()
        server.stop()
    assert not errors, errors
    got = server.per_key()
    assert sorted(k for _, k in got) == sorted(keys)  # every notice …
    assert max(got.values()) == 1  # … exactly once
    assert statuses(sessions) == {SENT: len(keys)}


# --- kill -9 mid-batch ----------------------------------------------------------------------------

DISPATCHER = textwrap.dedent("""
    import datetime as dt, sys
    from notifications.dispatch import dispatch
    from notifications.mailer import SmtpTransport
    from workflow.db import make_engine, session_factory
    url, port, now = sys.argv[1], int(sys.argv[2]), dt.datetime.fromisoformat(sys.argv[3])
    sessions = session_factory(make_engine(url))
    dispatch(sessions, SmtpTransport(host="127.0.0.1", port=port, timeout=10, concurrency=2), now=now,
             sender="党委组织部 <zzb@test.cn>", batch=20)
    print("finished", flush=True)
""")


def test_kill_9_mid_batch_gives_at_most_one_identical_extra_copy_per_notice(db_url: str,
                                                                            sessions: sessionmaker[Session]) -> None:
    keys = fill(sessions, recipients=30, per_recipient=3)  # 30 digests of 3 notices, 20 deliveries a claim
    server = SmtpServer().start()
    server.handler.delay = 0.05
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", DISPATCHER, db_url, str(server.port), T0.isoformat()],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(server.messages) < 10 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL, err
        first = len(server.messages)
        assert 10 <= first < 30  # killed mid-way
        with sessions() as s:  # what the killed dispatcher had claimed is still claimed, until it expires
            assert s.scalar(select(func.count()).select_from(DeliveryRow)
                            .where(DeliveryRow.status == PENDING, DeliveryRow.claim_owner.is_not(None))) > 0
        # before the claim expires, another dispatcher leaves the dead one's claims alone …
        dispatch(sessions, SmtpTransport(host="127.0.0.1", port=server.port, timeout=10), now=T0 + dt.timedelta(minutes=1),
                 sender=SENDER)
        # … and after it, sends them: the message in flight at the kill once more, identical
        dispatch(sessions, SmtpTransport(host="127.0.0.1", port=server.port, timeout=10),
                 now=T0 + dt.timedelta(minutes=11), sender=SENDER)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        server.stop()
    got = server.per_key()
    assert sorted(k for _, k in got) == sorted(keys)
    assert max(got.values()) <= 2  # at most one extra copy per notice
    assert sum(n - 1 for n in got.values()) <= 3 * 2  # only the messages in flight (2 connections) repeated
    assert_identical_copies(server)
    assert statuses(sessions) == {SENT: len(keys)}


# --- SIGTERM to `branchflow serve` ----------------------------------------------------------------

@SQLITE
@pytest.mark.parametrize("web", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["no-web", "web"])
def test_sigterm_to_serve_mid_batch_stops_cleanly_and_nothing_is_lost(db_url: str, sessions: sessionmaker[Session],
                                                                     tmp_path: Path, web: bool) -> None:
    """``serve --no-web`` (our own SIGTERM handler) and ``serve`` with the web (uvicorn takes the signal,
    shuts the web down, then hands it on): the dispatch in flight stops after its message, well within 60 s."""
    import urllib.error
    import urllib.request

    from notifications.testing import free_port

    keys = fill(sessions, recipients=120, due=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    server = SmtpServer().start()
    server.handler.delay = 0.3 if web else 0.1  # the web takes a few seconds to start: mail is still going out
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHFLOW_")}
    env.update(PYTHONPATH=str(ROOT), BRANCHFLOW_DATA_DIR=str(tmp_path / "data"), BRANCHFLOW_DATABASE_URL=db_url,
               BRANCHFLOW_SMTP_HOST="127.0.0.1", BRANCHFLOW_SMTP_PORT=str(server.port),
               BRANCHFLOW_SMTP_SENDER=SENDER)
    port = free_port()
    mode = ["--port", str(port)] if web else ["--no-web"]
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", *mode, "--dispatch-seconds", "1",
                             "--sweep-seconds", "3600"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while web and time.monotonic() < deadline and proc.poll() is None:  # the web answers while mail goes out
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                    assert r.status == 200
                    break
            except urllib.error.URLError:
                time.sleep(0.1)
        while len(server.messages) < 8 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()
        assert len(server.messages) < len(keys)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)  # in practice a few seconds: the message in flight, then out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "已停止" in out
    sent_before = len(server.messages)
    assert sent_before < len(keys)  # it was stopped mid-way
    with sessions() as s:  # every claim given back, every message the server accepted marked sent
        assert s.scalar(select(func.count()).select_from(DeliveryRow).where(DeliveryRow.claim_owner.is_not(None))) == 0
        assert s.scalar(select(func.count()).select_from(DeliveryRow).where(DeliveryRow.status == SENT)) == sent_before
    server.handler.delay = 0
    try:  # after a restart, right away (nothing waits for a claim to expire), the rest goes out once
        dispatch(sessions, SmtpTransport(host="127.0.0.1", port=server.port, timeout=10),
                 now=dt.datetime.now(dt.UTC), sender=SENDER)
    finally:
        server.stop()
    got = server.per_key()
    assert sorted(k for _, k in got) == sorted(keys) and max(got.values()) == 1
    assert statuses(sessions) == {SENT: len(keys)}


# --- no cap per tick ------------------------------------------------------------------------------

@SQLITE
def test_5000_notices_in_one_tick_are_all_delivered(sessions: sessionmaker[Session]) -> None:
    keys = fill(sessions, recipients=250, per_recipient=20)
    with SmtpServer() as server:
        stats = dispatch(sessions, SmtpTransport(host="127.0.0.1", port=server.port, timeout=10), now=T0,
                         sender=SENDER, batch=40)  # 125 claims of 40: more rounds than the old cap of 100
        got = server.per_key()
    assert stats.delivered == 5000 and stats.messages == 250 and stats.left == 0
    assert sorted(k for _, k in got) == sorted(keys) and max(got.values()) == 1
    assert statuses(sessions) == {SENT: 5000}


# --- a claim taken over ---------------------------------------------------------------------------

def test_a_dispatcher_whose_claim_was_taken_over_can_neither_send_nor_mark_what_it_lost(
        sessions: sessionmaker[Session]) -> None:
    """A stalls after its first message (as a paused VM would) past its claim's expiry; B takes the claims
    over and sends everything; when A wakes up it marks nothing and sends nothing more."""
    keys = fill(sessions, recipients=6)
    server = SmtpServer().start()
    stalled: list[Any] = []

    def node_b() -> None:
        stalled.append(dispatch(sessions, SmtpTransport(host="127.0.0.1", port=server.port, timeout=10),
                                now=T0 + dt.timedelta(minutes=11), sender=SENDER, owner="node-b"))

    def stall() -> None:  # runs in A right after the server accepted A's first message: A stands still …
        if not stalled:
            b = threading.Thread(target=node_b)  # … while B, another node, runs to the end
            b.start()
            b.join(60)

    try:
        a = dispatch(sessions, SmtpTransport(host="127.0.0.1", port=server.port, timeout=10, concurrency=1), now=T0,
                     sender=SENDER, owner="node-a", after_send=stall)
    finally:
        server.stop()
    b = stalled[0]
    assert b.messages == 6  # B sent all six, A's first one again (it was not marked yet: like a crash)
    assert a.messages == 1 and a.delivered == 0 and a.lost == 5  # A's marking was fenced off, the rest not sent
    got = server.per_key()
    assert sorted(k for _, k in got) == sorted(keys)
    assert sorted(got.values()) == [1, 1, 1, 1, 1, 2]
    assert_identical_copies(server)
    with sessions() as s:
        rows = s.execute(select(DeliveryRow.status, DeliveryRow.claim_owner)).all()
    assert sorted(tuple(r) for r in rows) == [(SENT, None)] * 6


# --- a delivery cancelled while its round is under way ---------------------------------------------

@SQLITE
def test_a_delivery_cancelled_mid_round_is_not_sent_and_one_cancelled_while_sending_is_recorded_sent(
        sessions: sessionmaker[Session]) -> None:
    """The case moved on (the save cancels its pending deliveries, claim released, as workflow/repository.py
    does) right after the server accepted the round's first message: that one is recorded sent — it went
    out — and none of the others, claimed in the same round, is sent."""
    from sqlalchemy import update

    from notifications.models import CANCELLED

    keys = fill(sessions, recipients=5)

    def case_moved_on() -> None:
        if not cancelled:
            with sessions() as s, s.begin():
                s.execute(update(DeliveryRow).where(DeliveryRow.status == PENDING)
                          .values(status=CANCELLED, claim_owner=None, claim_token=None, claimed_until=None))
            cancelled.append(True)

    cancelled: list[bool] = []
    with SmtpServer() as server:
        stats = dispatch(sessions, SmtpTransport(host="127.0.0.1", port=server.port, timeout=10, concurrency=1),
                         now=T0, sender=SENDER, after_send=case_moved_on)
        again = dispatch(sessions, SmtpTransport(host="127.0.0.1", port=server.port, timeout=10),
                         now=T0 + dt.timedelta(minutes=30), sender=SENDER)
        got = server.per_key()
    assert len(got) == 1 and max(got.values()) == 1 and next(iter(got))[1] in keys
    assert stats.messages == 1 and stats.delivered == 1 and stats.lost == 4 and again.messages == 0
    assert statuses(sessions) == {SENT: 1, CANCELLED: 4}
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(DeliveryRow).where(DeliveryRow.claim_owner.is_not(None))) == 0
