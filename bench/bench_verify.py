"""`audit verify` against the raw stream-and-hash bound, single process and parallel (issue 13).

    python bench/bench_verify.py                          # N = 10,000 branches moved through the year, SQLite
    python bench/bench_verify.py --db /tmp/v10k.db        # build it there once, reuse it on the next runs
    python bench/bench_verify.py --db /tmp/v10k.db --url postgresql+psycopg://postgres@127.0.0.1:PORT/postgres

Builds (or reuses) a SQLite database of N branches moved through all seven stages by the real services
(``bench_core.setup`` / ``run_services``), then measures in the same run:

(a) the raw bound: the same event rows streamed with ``sqlite3`` (same query and order as verify), each
    one's ``sha256(prev_hash ‖ body)`` computed and compared and its body parsed with ``orjson.loads``;
(b) ``audit.verify`` in this process: events/s (wall) and CPU seconds; ``ratio`` = its CPU ÷ (a)'s CPU;
    also its CPU without the master-data chains (``verify(master=False)``: branches' chains and projections);
(c) ``audit.verify_parallel`` with ``--workers`` processes (forked where ``audit.parallel_start_method`` allows):
    events/s (wall), CPU of parent + children, each apart, and the CPU of the parent's own part alone (case
    ranges, campaigns, campaign chains, tallies, master-data chains, done while the workers run); then the
    same with spawned workers (each re-imports the project), for comparison. The 1-minute load average at the
    end of each measurement is in the JSON (the machine is shared: wall figures depend on it).

With ``--url`` (a PostgreSQL server; a database ``bf_verify_<N>`` is created there and the SQLite rows are
copied in, once) the same three figures are measured on PostgreSQL, the raw bound streaming with psycopg.
Each measurement is the best of ``--repeat`` runs (the machine is shared). Ends with one JSON line whose
``ratio`` is verify's CPU ÷ the raw bound's CPU on SQLite and ``events_per_s`` / ``parallel_events_per_s``
are wall figures on SQLite (the PostgreSQL ones are under ``"postgresql"``).

To compare with older code, run this file from a checkout of it (``git archive <commit> | tar -x -C DIR``,
copy this file into DIR/bench) against the same ``--db``: the script imports the tree it sits in.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from workflow import audit
from workflow.db import make_engine, session_factory

EVENTS_SQL = "SELECT case_id, id, seq, kind, at, actor, body, prev_hash, hash FROM events ORDER BY case_id, seq"


def build(db: Path, n: int) -> None:
    import bench_core

    t0 = time.perf_counter()
    engine, sessions = bench_core.setup(f"sqlite:///{db}", n)
    events = bench_core.run_services(sessions, n, engine)[2]
    engine.dispose()
    print(f"built {db}: {n:,} branches, {events:,} events in {time.perf_counter() - t0:.0f} s")


def raw_rows(rows: Any) -> tuple[int, int]:
    """The bound: hash and parse every streamed event row. Returns (events, mismatches)."""
    sha256, loads = hashlib.sha256, orjson.loads
    count = bad = 0
    for _cid, _rid, _seq, _kind, _at, _actor, body, prev_hash, h in rows:
        if sha256((prev_hash + body).encode()).hexdigest() != h:
            bad += 1
        loads(body)
        count += 1
    return count, bad


def raw_sqlite(db: Path) -> tuple[int, int]:
    conn = sqlite3.connect(db)
    try:
        return raw_rows(conn.execute(EVENTS_SQL))
    finally:
        conn.close()


def raw_pg(url: str) -> tuple[int, int]:
    import psycopg

    u = make_url(url)
    with psycopg.connect(host=u.host, port=u.port, user=u.username, dbname=u.database) as conn, \
            conn.cursor(name="bench_raw") as cur:
        cur.itersize = 10000
        cur.execute(EVENTS_SQL)
        return raw_rows(cur)


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, float, Any]:
    """Best wall and best CPU (own + reaped children) of ``repeat`` runs, and the last result."""
    best_wall, best_own, best_cpu, _, result = timed_split(fn, repeat)
    return best_wall, best_own, best_cpu, result


def timed_split(fn: Callable[[], Any], repeat: int) -> tuple[float, float, float, float, Any]:
    """:func:`timed` plus the best CPU of the reaped children alone."""
    best_wall = best_cpu = best_own = best_children = float("inf")
    result = None
    for _ in range(repeat):
        ch0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        wall, own = time.perf_counter() - t0, time.process_time() - c0
        ch1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        children = (ch1.ru_utime + ch1.ru_stime) - (ch0.ru_utime + ch0.ru_stime)
        best_wall, best_own, best_cpu = min(best_wall, wall), min(best_own, own), min(best_cpu, own + children)
        best_children = min(best_children, children)
    return best_wall, best_own, best_cpu, best_children, result


def copy_to_pg(db: Path, admin_url: str, n: int) -> str:
    """A PostgreSQL database with the SQLite file's rows (created and filled once; reused after)."""
    from workflow.migrate import upgrade
    from workflow.models import Base

    name = f"bf_verify_{n}"
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
        if not exists:
            conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    pg = make_engine(url)
    if exists:
        with pg.connect() as conn:
            if conn.scalar(text("SELECT count(*) FROM cases")) == n:
                pg.dispose()
                return url
    t0 = time.perf_counter()
    upgrade(pg)
    src = make_engine(f"sqlite:///{db}")
    tables = [t for t in Base.metadata.sorted_tables]
    with pg.begin() as dst:
        for t in reversed(tables):
            dst.execute(t.delete())
        with src.connect() as s:
            for t in tables:
                rows = s.execute(t.select().order_by(*t.primary_key.columns))
                while chunk := rows.fetchmany(5000):
                    dst.execute(t.insert(), [r._asdict() for r in chunk])
    with pg.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()
    src.dispose()
    pg.dispose()
    print(f"copied {db} into {name} in {time.perf_counter() - t0:.0f} s")
    return url


def measure(label: str, url: str, raw: Callable[[], tuple[int, int]], workers: int, repeat: int) -> dict[str, Any]:
    engine = make_engine(url)
    sessions = session_factory(engine)

    def single() -> audit.Report:
        with sessions() as s:
            return audit.verify(s)

    def cases_only() -> audit.Report:  # the branches' chains and projections, without the master-data chains
        with sessions() as s:
            return audit.verify(s, master=False)

    def parallel(method: str | None = None) -> audit.Report:
        with sessions() as s:
            return audit.verify_parallel(s, url, workers=workers, start_method=method)

    def parent_part() -> None:  # what verify_parallel does in the parent besides waiting: ranges, campaigns, chains
        from workflow.campaigns import verify_changes
        from workflow.masterlog import verify_master

        with sessions() as s:
            audit.case_ranges(s, workers)
            audit._deadlines(s, audit.Report(), None, None)
            verify_changes(s)
            audit._check_tallies(s, audit.Report(), None, None)
            list(verify_master(s))

    _, r_cpu, _, (events, bad) = timed(raw, repeat)
    assert bad == 0
    v_wall, v_cpu, _, rep = timed(single, repeat)
    assert rep.ok and rep.events == events, (rep.events, events, rep.problems[:3])
    _, c_cpu, _, _ = timed(cases_only, repeat)
    _, pp_cpu, _, _ = timed(parent_part, repeat)
    method = audit.parallel_start_method()
    p_wall, p_own, p_cpu, p_children, prep = timed_split(parallel, repeat)
    assert prep.ok and prep.events == events, (prep.events, events, prep.problems[:3])
    s_wall, _, s_cpu, _, srep = timed_split(lambda: parallel("spawn"), repeat)
    assert srep.ok and srep.events == events
    engine.dispose()
    out = {"events": events, "raw_cpu_s": round(r_cpu, 3), "raw_events_per_s_cpu": round(events / r_cpu),
           "verify_wall_s": round(v_wall, 3), "verify_cpu_s": round(v_cpu, 3),
           "events_per_s": round(events / v_wall), "events_per_s_cpu": round(events / v_cpu),
           "ratio": round(v_cpu / r_cpu, 2), "cases_only_cpu_s": round(c_cpu, 3),
           "cases_only_events_per_s_cpu": round(events / c_cpu), "workers": workers, "parallel_wall_s": round(p_wall, 3),
           "parallel_cpu_s": round(p_cpu, 3), "parallel_events_per_s": round(events / p_wall),
           "start_method": method, "parallel_parent_cpu_s": round(p_own, 3),
           "parallel_children_cpu_s": round(p_children, 3), "parent_part_cpu_s": round(pp_cpu, 3),
           "children_events_per_s_cpu": round(events / p_children) if p_children > 0 else None,
           "spawn_wall_s": round(s_wall, 3), "spawn_cpu_s": round(s_cpu, 3), "spawn_events_per_s": round(events / s_wall),
           "load_avg_1m": round(os.getloadavg()[0], 2)}
    print(f"{label}: {events:,} events; raw hash+parse {r_cpu:.2f} s CPU ({events / r_cpu:,.0f}/s); "
          f"verify {v_wall:.2f} s wall, {v_cpu:.2f} s CPU → {events / v_wall:,.0f} events/s "
          f"({events / v_cpu:,.0f}/CPU s, {v_cpu / r_cpu:.2f}× raw; without the master-data chains "
          f"{c_cpu:.2f} s CPU, {events / c_cpu:,.0f}/CPU s); "
          f"{workers} workers ({method}) {p_wall:.2f} s wall, {p_cpu:.2f} s CPU in all (parent {p_own:.2f} s, of which "
          f"ranges, campaigns, tallies and master-data chains {pp_cpu:.2f} s; workers {p_children:.2f} s) → "
          f"{events / p_wall:,.0f} events/s; spawned workers {s_wall:.2f} s wall, {s_cpu:.2f} s CPU → "
          f"{events / s_wall:,.0f} events/s; load average {os.getloadavg()[0]:.2f}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--db", type=Path, help="SQLite file to build (if missing) and reuse")
    ap.add_argument("--url", help="also on PostgreSQL: postgresql+psycopg://user@host:port/db (an admin database)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import tempfile

    tmp = None
    db = args.db
    if db is None:
        tmp = tempfile.TemporaryDirectory()
        db = Path(tmp.name) / "verify.db"
    if not db.exists():
        build(db, args.n)
    conn = sqlite3.connect(db)
    n = int(conn.execute("SELECT count(*) FROM cases").fetchone()[0])
    conn.close()
    result: dict[str, Any] = {"bench": "verify", "n": n}
    sq = measure("SQLite", f"sqlite:///{db}", lambda: raw_sqlite(db), args.workers, args.repeat)
    result.update(ratio=sq["ratio"], events_per_s=sq["events_per_s"], parallel_events_per_s=sq["parallel_events_per_s"],
                  sqlite=sq)
    if args.url:
        pg_url = copy_to_pg(db, args.url, n)
        result["postgresql"] = measure("PostgreSQL", pg_url, lambda: raw_pg(pg_url), args.workers, args.repeat)
    if tmp is not None:
        tmp.cleanup()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
