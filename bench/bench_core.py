"""Move N branches through all seven stages on SQLite or PostgreSQL, then verify the audit log.

    python bench/bench_core.py            # N = 10,000, a SQLite file in a temporary folder
    python bench/bench_core.py --n 100000
    python bench/bench_core.py --pg       # a throwaway PostgreSQL cluster (tests/support/pg.py)
    python bench/bench_core.py --url postgresql+psycopg://postgres@127.0.0.1:5432/postgres

Prints branches/s and events/s through the real services (load → check → append chained events → save
with a version check), the same rows written by a raw-SQL baseline in the same transactions in the same
run (the ratio is the price of the domain layer), `audit verify` events/s, and resident memory after
each tenth of the branches (flat in N: each move runs on a transient carrier, never one Machine holding
every branch).

The baseline is the driver itself: sqlite3 on SQLite, psycopg on PostgreSQL, executing per event the same
SELECT of the case, INSERT of the event and UPDATE … WHERE version = old, BATCH branches a transaction.
On PostgreSQL (``--url`` gets a fresh database ``bench_core`` on that server, dropped at the end) the
server's CPU is measured too when its backends are local processes (/proc/PID/stat of each backend of the
bench's databases): ``ratio`` stays the client's CPU ratio, ``total_ratio`` adds the server's CPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from states.base import Role
from states.survey import FOCUS_POINTS
from workflow import audit, service
from workflow.campaign import parse_campaign_text
from workflow.campaigns import create_campaign
from workflow.case import apply, current_grade, new_state
from workflow.db import make_engine, session_factory
from workflow.importer import OrgRow, import_rows
from workflow.migrate import upgrade
from workflow.people import add_person
from workflow.repository import effective_deadline

TZ = ZoneInfo("Asia/Shanghai")
BATCH = 250  # branches per transaction, for both the services and the baseline


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def t(month: int, day: int, hour: int = 10) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, tzinfo=TZ)


def org(n: int) -> list[OrgRow]:
    return [
        OrgRow(row=i + 2, committee="基准党委", committee_code="C", general_branch=f"总支{i % 50}",
               general_branch_code=f"G{i % 50}", code=f"B{i:06d}", name=f"第{i}党支部", branch_type="teacher",
               secretary_name=f"书记{i}", secretary_email=f"s{i}@bench.cn", member_count=10,
               last_reelection=dt.date(2025, 1, 1), last_activity=dt.date(2026, 1, 1), secretary_violation=False)
        for i in range(n)
    ]


def setup(url: str, n: int):  # type: ignore[no-untyped-def]
    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    with sessions() as s, s.begin():
        import_rows(s, org(n))
        add_person(s, "org@bench.cn", "组织部", [Role.org_department], "C")
        for i in range(3):
            add_person(s, f"m{i}@bench.cn", f"委员{i}", [Role.committee_member], "C")
        create_campaign(s, preset="haitang-2022", year=2026, now=t(3, 1, 8))
    return engine, sessions


def steps(code: str, sec: str, gb: str):  # type: ignore[no-untyped-def]
    """The whole year of one branch as (now, person, use case, args)."""
    scores = {str(i): (4.0 if i < 17 else 8.0) for i in range(1, 19)}
    return [
        (t(3, 20), gb, service.record, ({"findings": {k: {"ok": True} for k in FOCUS_POINTS}},)),
        (t(3, 20), gb, service.advance, ()),
        (t(4, 1), sec, service.record, ({"scores": scores, "meeting_date": "2026-03-30", "attendance": 8},)),
        (t(4, 1), sec, service.advance, ()),
        (t(4, 10), gb, service.record, ({"tally": {"ballots": 10, "rating": 85, "satisfaction_members": 0.9,
                                                   "satisfaction_secretary": 0.9}},)),
        (t(4, 10), gb, service.advance, ()),
        (t(4, 20), "m0@bench.cn", service.compute_grade, ()),
        (t(4, 20), "m0@bench.cn", service.sign, ()),
        (t(4, 20), "m1@bench.cn", service.sign, ()),
        (t(4, 20), "org@bench.cn", service.advance, ()),
        (t(4, 20), "org@bench.cn", service.publish, ()),
        (t(5, 10), "org@bench.cn", service.advance, ()),
        (t(5, 20), sec, service.record, ({"items": [{"problem": "组织生活不规范", "measure": "主题党日", "due": "2026-07-31",
                                                     "contact": "委员"}], "submitted": True},)),
        (t(7, 1), sec, service.complete_item, (1, "已完成")),
        (t(7, 2), sec, service.advance, ()),
        (t(9, 1), gb, service.inspect, ({"passed": True, "summary": "整改到位", "inspected_on": "2026-09-01",
                                         "regrade_score": 90},)),
        (t(9, 1), gb, service.advance, ()),
    ]


def proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a local process in seconds, or None when /proc does not show it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backends_cpu(engine: Engine) -> dict[int, float] | None:
    """CPU seconds so far of every PostgreSQL backend connected to the engine's database (None: not local)."""
    if engine.dialect.name != "postgresql":
        return None
    import psycopg

    url = engine.url.render_as_string(hide_password=False)
    with psycopg.connect(libpq(url), autocommit=True) as conn:  # its own connection, not one of the pool's
        pids = [r[0] for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]
    out = {}
    for pid in pids:
        c = proc_cpu_s(pid)
        if c is None:
            return None
        out[pid] = c
    return out


def cpu_since(before: dict[int, float] | None, after: dict[int, float] | None) -> float | None:
    if before is None or after is None:
        return None
    return sum(c - before.get(pid, 0.0) for pid, c in after.items())


def run_services(sessions, n: int, engine: Engine):  # type: ignore[no-untyped-def]
    actors: dict[str, service.Actor] = {}
    memory = []
    server0 = backends_cpu(engine)
    start, cpu0 = time.perf_counter(), time.process_time()
    for lo in range(0, n, BATCH):
        with sessions() as s, s.begin():
            for i in range(lo, min(n, lo + BATCH)):
                code = f"B{i:06d}"
                for now, who, fn, args in steps(code, f"s{i}@bench.cn", "org@bench.cn"):
                    actor = actors.get(who) or service.actor_for(s, who)
                    if who.startswith(("org", "m")):
                        actors[who] = actor
                    fn(s, code, actor, *args, now=now)
            s.expunge_all()
        if (lo // BATCH) % max(1, n // BATCH // 10) == 0:
            memory.append((lo + BATCH, rss_mb()))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
    server = cpu_since(server0, backends_cpu(engine))
    with sessions() as s:
        events = s.scalar(text("SELECT count(*) FROM events"))
    return elapsed, cpu, int(events), memory, server


class Writes:
    """What the services wrote for each event, replayed outside the timed part: the event row and the
    projection after it (state JSON as ``repository.save`` encodes it, stage, grade, deadline), so the
    baseline performs the same writes — the growing state, the stage moves that fire the case-tally
    triggers, the deadline and grade changes — not a version check that matches nothing."""

    def __init__(self, campaign_config: str, campaign_code: str, sqlite: bool) -> None:
        self.campaign = parse_campaign_text(campaign_config, source="bench")
        self.code = campaign_code
        self.sqlite = sqlite
        p = "?" if sqlite else "%s"
        state = p if sqlite else f"CAST({p} AS JSON)"
        self.updates = {
            (st, gr, dl): ("UPDATE cases SET " + ", ".join(
                [f"state = {state}"] + [f"{c} = {p}" for c, on in (("stage", st), ("grade", gr), ("deadline", dl)) if on]
                + [f"updated_at = {p}", f"version = {p}"]) + f" WHERE id = {p} AND version = {p}")
            for st in (False, True) for gr in (False, True) for dl in (False, True)
        }
        self.reset = (f"UPDATE cases SET state = {state}, stage = {p}, grade = {p}, deadline = {p}, version = 1, "
                      f"updated_at = {p} WHERE id = {p}")

    def _day(self, d: dt.date | None) -> Any:
        return d.isoformat() if self.sqlite and d is not None else d

    def plan(self, branch_of: dict[int, str], rows: list[Any]) -> tuple[list[tuple[Any, ...]], list[tuple[str, list[Any]]]]:
        """(the opened projection of each case, to reset to), [(UPDATE text, its values) per event > 1]."""
        resets: list[tuple[Any, ...]] = []
        updates: list[tuple[str, list[Any]]] = []
        prev: tuple[str, str | None, dt.date | None] = ("", None, None)
        state: dict[str, Any] = {}
        for r in rows:
            cid, seq, at, body = r[0], r[1], r[3], r[5]
            if seq == 1:
                state = new_state(self.code, branch_of[cid])
            apply(state, orjson.loads(body), in_place=True)
            cur = (state["stage"], current_grade(state), effective_deadline(self.campaign, state))
            text_ = orjson.dumps(state, option=orjson.OPT_NON_STR_KEYS).decode()
            if seq == 1:
                resets.append((text_, cur[0], cur[1], self._day(cur[2]), at, cid))
            else:
                moved, regraded, redated = cur[0] != prev[0], cur[1] != prev[1], cur[2] != prev[2]
                values: list[Any] = [text_]
                if moved:
                    values.append(cur[0])
                if regraded:
                    values.append(cur[1])
                if redated:
                    values.append(self._day(cur[2]))
                values += (at, seq, cid, seq - 1)
                updates.append((self.updates[moved, regraded, redated], values))
            prev = cur
        return resets, updates


def run_baseline(db: Path, source: Path) -> tuple[float, float]:
    """Raw SQL: the same event rows and case updates, in the same transactions (BATCH branches each).
    Reads the rows to write from the services' database batch by batch, outside the timed part, resets
    each case to its opened projection, and checks at the end that the cases equal the services' ones."""
    src = sqlite3.connect(source)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")  # as workflow.db sets it on every connection
    conn.execute("DELETE FROM events WHERE seq > 1")
    writes = Writes(*src.execute("SELECT config, code FROM campaigns").fetchone(), sqlite=True)
    ids = [r[0] for r in src.execute("SELECT id FROM cases ORDER BY id")]
    branch_of = dict(src.execute("SELECT c.id, b.code FROM cases c JOIN branches b ON b.id = c.branch_id"))
    wall = cpu = 0.0
    for lo in range(0, len(ids), BATCH):
        part = ids[lo: lo + BATCH]
        marks = ",".join("?" * len(part))
        rows = src.execute(f"SELECT case_id, seq, kind, at, actor, body, prev_hash, hash FROM events "
                           f"WHERE case_id IN ({marks}) ORDER BY case_id, seq", part).fetchall()
        resets, updates = writes.plan(branch_of, rows)
        conn.execute("BEGIN")
        conn.executemany(writes.reset, resets)
        conn.execute("COMMIT")
        events = [r for r in rows if r[1] > 1]
        t0, c0 = time.perf_counter(), time.process_time()
        conn.execute("BEGIN")
        for r, (update, values) in zip(events, updates, strict=True):
            # per event, as the services do: read the case, append the event, update the projection
            conn.execute("SELECT version, state FROM cases WHERE id = ?", (r[0],)).fetchone()
            conn.execute("INSERT INTO events (case_id, seq, kind, at, actor, body, prev_hash, hash) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", r)
            if conn.execute(update, values).rowcount != 1:
                raise SystemExit(f"baseline: case {r[0]} not at version {r[1] - 1}")
        conn.execute("COMMIT")
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
    same_cases(src, conn, "SELECT id, version, stage, grade, deadline, state FROM cases ORDER BY id")
    conn.close()
    src.close()
    return wall, cpu


def same_cases(src: Any, conn: Any, query: str) -> None:
    """The baseline's cases equal the services' (the same writes, checked, not assumed)."""
    a, b = src.execute(query).fetchall(), conn.execute(query).fetchall()
    if [r[:5] + (orjson.loads(r[5]) if isinstance(r[5], str) else r[5],) for r in a] != \
            [r[:5] + (orjson.loads(r[5]) if isinstance(r[5], str) else r[5],) for r in b]:
        raise SystemExit("baseline: its cases differ from the services' — it did not write the same rows")


def libpq(url: str) -> str:
    """The psycopg conninfo of a SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def run_baseline_pg(url: str, source_url: str) -> tuple[float, float, float | None]:
    """The same as run_baseline on PostgreSQL with psycopg: per event the same SELECT, INSERT and UPDATE
    … WHERE version = old, BATCH branches a transaction. Also the backend's CPU over the timed parts."""
    import psycopg

    src = psycopg.connect(libpq(source_url), autocommit=True)
    conn = psycopg.connect(libpq(url))
    with conn.cursor() as cur:
        cur.execute("DELETE FROM events WHERE seq > 1")
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]  # type: ignore[index]
    conn.commit()
    writes = Writes(*src.execute("SELECT config, code FROM campaigns").fetchone(), sqlite=False)  # type: ignore[misc]
    ids = [r[0] for r in src.execute("SELECT id FROM cases ORDER BY id")]
    branch_of = dict(src.execute("SELECT c.id, b.code FROM cases c JOIN branches b ON b.id = c.branch_id"))  # type: ignore[arg-type]
    wall = cpu = server = 0.0
    local = proc_cpu_s(backend) is not None
    cur = conn.cursor()
    for lo in range(0, len(ids), BATCH):
        part = ids[lo: lo + BATCH]
        rows = src.execute("SELECT case_id, seq, kind, at, actor, body, prev_hash, hash FROM events "
                           "WHERE case_id = ANY(%s) ORDER BY case_id, seq", (part,)).fetchall()
        resets, updates = writes.plan(branch_of, rows)
        cur.executemany(writes.reset, resets)
        conn.commit()
        events = [r for r in rows if r[1] > 1]
        s0 = proc_cpu_s(backend) if local else None
        t0, c0 = time.perf_counter(), time.process_time()
        for r, (update, values) in zip(events, updates, strict=True):
            # per event, as the services do: read the case, append the event, update the projection
            cur.execute("SELECT version, CAST(state AS TEXT) FROM cases WHERE id = %s", (r[0],))
            cur.fetchone()
            cur.execute("INSERT INTO events (case_id, seq, kind, at, actor, body, prev_hash, hash) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", r)
            cur.execute(update, values)
            if cur.rowcount != 1:
                raise SystemExit(f"baseline: case {r[0]} not at version {r[1] - 1}")
        conn.commit()
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        if s0 is not None:
            server += (proc_cpu_s(backend) or 0.0) - s0
    cur.close()
    same_cases(src, conn, "SELECT id, version, stage, grade, deadline, state FROM cases ORDER BY id")
    conn.close()
    src.close()
    return wall, cpu, server if local else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--url", help="a PostgreSQL server (postgresql+psycopg://…); the bench makes its own databases")
    ap.add_argument("--pg", action="store_true", help="start a throwaway PostgreSQL cluster and run on it")
    args = ap.parse_args()
    from tests.support.pg import server

    with server(args.url, args.pg) as url:
        if url is None:
            run_sqlite(args.n)
        else:
            run_pg(url, args.n)


def run_pg(admin_url: str, n: int) -> None:
    from sqlalchemy import create_engine

    admin = create_engine(make_url(admin_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    svc_db, base_db = "bench_core", "bench_core_base"
    with admin.connect() as conn:
        version = conn.execute(text("SHOW server_version")).scalar_one()
        for db in (svc_db, base_db):
            conn.execute(text(f"DROP DATABASE IF EXISTS {db}"))
        conn.execute(text(f"CREATE DATABASE {svc_db}"))
    svc_url = make_url(admin_url).set(database=svc_db).render_as_string(hide_password=False)
    base_url = make_url(admin_url).set(database=base_db).render_as_string(hide_password=False)
    try:
        t0 = time.perf_counter()
        engine, sessions = setup(svc_url, n)
        print(f"PostgreSQL {version}; setup: imported and opened {n:,} branches in {time.perf_counter() - t0:.1f} s")
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
        elapsed, cpu, events, memory, server = run_services(sessions, n, engine)
        report_services(n, elapsed, cpu, events, memory, server)
        verify_s, report = run_verify(sessions)
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {base_db} TEMPLATE {svc_db}"))
        base_s, base_cpu, base_server = run_baseline_pg(base_url, svc_url)
        print(f"raw-SQL baseline (psycopg), same rows and transactions: {base_s:.1f} s wall ({base_cpu:.1f} s CPU"
              + (f", server {base_server:.1f} s CPU" if base_server is not None else "") + ") → "
              f"{(events - n) / base_s:,.0f} events/s")
        final(n, "postgresql", elapsed, cpu, events, server, verify_s, report, base_s, base_cpu, base_server)
    finally:
        with admin.connect() as conn:
            for db in (svc_db, base_db):
                conn.execute(text(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        admin.dispose()


def report_services(n: int, elapsed: float, cpu: float, events: int, memory: list[tuple[int, float]],
                    server: float | None) -> None:
    print(f"services: {n:,} branches × 7 stages in {elapsed:.1f} s wall ({cpu:.1f} s CPU"
          + (f", server {server:.1f} s CPU" if server is not None else "") + ") → "
          f"{n / elapsed:,.0f} branches/s, {(events - n) / elapsed:,.0f} events/s "
          f"({n / cpu:,.0f} branches/s, {(events - n) / cpu:,.0f} events/s per CPU second; {events:,} events in all)")
    print("resident memory (MB) after branches: " + ", ".join(f"{k:,}: {v:.0f}" for k, v in memory))


def run_verify(sessions):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    with sessions() as s:
        report = audit.verify(s)
    verify_s = time.perf_counter() - t0
    assert report.ok, report.problems[:3]
    print(f"audit verify: {report.events:,} events in {verify_s:.1f} s → {report.events / verify_s:,.0f} events/s "
          f"(chains and projections: OK)")
    return verify_s, report


def final(n: int, db: str, elapsed: float, cpu: float, events: int, server: float | None, verify_s: float,
          report: audit.Report, base_s: float, base_cpu: float, base_server: float | None) -> None:
    print(f"ratio services / baseline: {elapsed / base_s:.1f}× the wall time, {cpu / base_cpu:.1f}× the CPU time"
          + (f", {(cpu + server) / (base_cpu + base_server):.1f}× client + server CPU"
             if server is not None and base_server is not None else ""))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of the whole run: {peak:.0f} MB")
    out = {"bench": "core", "n": n, "ratio": round(cpu / base_cpu, 2), "db": db,
           "wall_ratio": round(elapsed / base_s, 2), "cpu_s": round(cpu, 2), "baseline_cpu_s": round(base_cpu, 2),
           "us_per_call_cpu": round(cpu / (events - n) * 1e6, 1),
           "verify_events_per_s": round(report.events / verify_s), "peak_rss_mb": round(peak)}
    if server is not None and base_server is not None:
        out |= {"server_cpu_s": round(server, 2), "baseline_server_cpu_s": round(base_server, 2),
                "total_ratio": round((cpu + server) / (base_cpu + base_server), 2)}
    out["load"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


def run_sqlite(n: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "bench.db"
        t0 = time.perf_counter()
        engine, sessions = setup(f"sqlite:///{db}", n)
        print(f"setup: imported and opened {n:,} branches in {time.perf_counter() - t0:.1f} s")
        elapsed, cpu, events, memory, server = run_services(sessions, n, engine)
        report_services(n, elapsed, cpu, events, memory, server)
        verify_s, report = run_verify(sessions)
        engine.dispose()
        base_db = Path(d) / "baseline.db"
        shutil.copy(db, base_db)
        base_s, base_cpu = run_baseline(base_db, db)
        print(f"raw-SQL baseline, same rows and transactions: {base_s:.1f} s wall ({base_cpu:.1f} s CPU) → "
              f"{(events - n) / base_s:,.0f} events/s")
        final(n, "sqlite", elapsed, cpu, events, None, verify_s, report, base_s, base_cpu, None)


if __name__ == "__main__":
    main()
