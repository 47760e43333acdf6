"""The organisation import of N branches on SQLite or PostgreSQL, against raw executemany INSERTs.

    python bench/bench_import.py                       # N = 10,000 and 100,000, a SQLite file each
    python bench/bench_import.py --n 10000 --pg        # a throwaway PostgreSQL cluster (tests/support/pg.py)
    python bench/bench_import.py --url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
    python bench/bench_import.py --no-cli              # only the in-process import

For each N, each on a fresh database at the current schema (one committee, 100 general branches, N
branches with a secretary each):

* ``workflow.importer.import_rows`` in one transaction (what ``branchflow import`` calls after parsing),
  CPU time of this process; the master-data log (``workflow.masterlog.record_master_changes``, called by
  the import) is timed on its own by wrapping it here;
* ``branchflow import FILE.csv`` as a subprocess (read the CSV, validate every row, ``import_rows``,
  ``open_latest_cases``): its CPU time and peak RSS (through /usr/bin/time), and the CPU of
  ``branchflow --help`` (the interpreter and the imports) measured in the same run;
* the baseline: the driver (sqlite3 or psycopg) writing the same rows of ``branches``, ``people`` and
  ``role_assignments`` with ``executemany`` in one transaction (plus the SELECT of the people's ids);
  the committee and general branches are inserted before, untimed.

On PostgreSQL the server's CPU (its backends' utime + stime from /proc, when the cluster is local) is
printed too. Ends with one JSON line: ``ratio`` = CPU of ``import_rows`` ÷ CPU of the baseline at the
largest N; every N's figures are in ``runs``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_core import backends_cpu, cpu_since, libpq, proc_cpu_s  # type: ignore[import-not-found]
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from workflow import masterlog
from workflow.db import make_engine, session_factory
from workflow.importer import LABEL, OrgRow, import_rows
from workflow.migrate import upgrade

GENERAL_BRANCHES = 100
COLS = ("committee", "committee_code", "general_branch", "general_branch_code", "code", "name", "branch_type",
        "secretary_name", "secretary_email", "member_count", "last_reelection", "last_activity",
        "secretary_violation")


def org(n: int) -> list[OrgRow]:
    return [
        OrgRow(row=i + 2, committee="基准党委", committee_code="C", general_branch=f"第{i % GENERAL_BRANCHES}党总支",
               general_branch_code=f"G{i % GENERAL_BRANCHES:03d}", code=f"B{i:06d}", name=f"第{i}党支部",
               branch_type="teacher", secretary_name=f"书记{i}", secretary_email=f"s{i}@bench.cn", member_count=10 + i % 40,
               last_reelection=dt.date(2025, 1, 1), last_activity=dt.date(2026, 1, 1), secretary_violation=False)
        for i in range(n)
    ]


def write_csv(path: Path, rows: list[OrgRow]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow([LABEL[c] for c in COLS])
        for r in rows:
            w.writerow([r.committee, r.committee_code, r.general_branch, r.general_branch_code, r.code, r.name,
                        r.branch_type, r.secretary_name, r.secretary_email, r.member_count,
                        r.last_reelection.isoformat() if r.last_reelection else "",
                        r.last_activity.isoformat() if r.last_activity else "", "否"])


class Databases:
    """Fresh databases at the current schema: copies of one migrated SQLite file, or PostgreSQL databases
    made from one migrated template."""

    def __init__(self, tmp: Path, admin_url: str | None) -> None:
        self.tmp, self.admin_url, self.made = tmp, admin_url, 0
        if admin_url is None:
            self.template = tmp / "template.db"
            eng = make_engine(f"sqlite:///{self.template}")
            upgrade(eng)
            eng.dispose()
            self.admin = None
        else:
            self.admin = create_engine(make_url(admin_url).set(drivername="postgresql+psycopg"),
                                       isolation_level="AUTOCOMMIT")
            self._sql("DROP DATABASE IF EXISTS bench_import_tpl WITH (FORCE)")
            self._sql("CREATE DATABASE bench_import_tpl")
            eng = make_engine(self._url("bench_import_tpl"))
            upgrade(eng)
            eng.dispose()

    @property
    def kind(self) -> str:
        return "sqlite" if self.admin is None else "postgresql"

    def _sql(self, statement: str) -> None:
        assert self.admin is not None
        with self.admin.connect() as conn:
            conn.execute(text(statement))

    def _url(self, db: str) -> str:
        assert self.admin_url is not None
        return make_url(self.admin_url).set(drivername="postgresql+psycopg", database=db).render_as_string(
            hide_password=False)

    def fresh(self) -> str:
        self.made += 1
        if self.admin is None:
            path = self.tmp / f"db{self.made}.db"
            shutil.copy(self.template, path)
            return f"sqlite:///{path}"
        name = f"bench_import_{self.made}"
        self._sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self._sql(f"CREATE DATABASE {name} TEMPLATE bench_import_tpl")
        return self._url(name)

    def drop(self, url: str) -> None:
        u = make_url(url)
        if self.admin is None:
            for suffix in ("", "-wal", "-shm"):
                Path(str(u.database) + suffix).unlink(missing_ok=True)
        else:
            self._sql(f"DROP DATABASE IF EXISTS {u.database} WITH (FORCE)")

    def close(self) -> None:
        if self.admin is not None:
            self._sql("DROP DATABASE IF EXISTS bench_import_tpl WITH (FORCE)")
            self.admin.dispose()


def run_import_rows(url: str, rows: list[OrgRow]) -> dict[str, Any]:
    engine = make_engine(url)
    sessions = session_factory(engine)
    masterlog_cpu = 0.0
    original = masterlog.record_master_changes

    def timed(*a: Any, **kw: Any) -> int:
        nonlocal masterlog_cpu
        c0 = time.process_time()
        try:
            return original(*a, **kw)
        finally:
            masterlog_cpu += time.process_time() - c0

    with engine.connect() as conn:  # open the pool's connection first, so its backend is counted
        conn.execute(text("SELECT 1"))
    server0 = backends_cpu(engine)
    masterlog.record_master_changes = timed  # type: ignore[assignment]  # import_rows imports it at call time
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        with sessions() as s, s.begin():
            r = import_rows(s, rows)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        masterlog.record_master_changes = original  # type: ignore[assignment]
    server = cpu_since(server0, backends_cpu(engine))
    with engine.connect() as conn:
        counts = {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one()
                  for t in ("branches", "people", "role_assignments", "master_events")}
    engine.dispose()
    assert r.created == len(rows) and counts["branches"] == len(rows), (r, counts)
    return {"wall_s": wall, "cpu_s": cpu, "masterlog_cpu_s": masterlog_cpu, "server_cpu_s": server, "counts": counts}


def timed_child(argv: list[str], env: dict[str, str], cwd: Path, stdout: Any, stderr: Any) -> tuple[int, float, float]:
    """Run a command; its exit code, its own CPU seconds (user + system) and its own peak RSS (MB).

    Through /usr/bin/time: a child forked from this (large) process starts with this process's high-water
    RSS, and keeps it across exec in its rusage, so wait4's ru_maxrss would never be below ours."""
    time_bin = Path("/usr/bin/time")
    if not time_bin.exists():
        p = subprocess.Popen(argv, env=env, cwd=cwd, stdout=stdout, stderr=stderr)
        _, status, ru = os.wait4(p.pid, 0)
        return os.waitstatus_to_exitcode(status), ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024
    with tempfile.NamedTemporaryFile("r", suffix=".time") as f:
        rc = subprocess.run([str(time_bin), "-q", "-f", "%M %U %S", "-o", f.name, *argv], env=env, cwd=cwd,
                            stdout=stdout, stderr=stderr, check=False).returncode
        rss_kb, user, system = f.read().split()[-3:]
    return rc, float(user) + float(system), int(rss_kb) / 1024


def cli_command() -> list[str]:
    script = Path(sys.executable).parent / "branchflow"
    return [str(script)] if script.exists() else [sys.executable, "-m", "service.cli"]


def run_cli(url: str, csv_path: Path, data_dir: Path, args: list[str]) -> tuple[float, float, float]:
    """CPU seconds, wall seconds and peak RSS (MB) of one `branchflow` command."""
    env = {**os.environ, "BRANCHFLOW_DATABASE_URL": url, "BRANCHFLOW_DATA_DIR": str(data_dir),
           "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    with open(data_dir / "stdout", "w+") as out, open(data_dir / "stderr", "w+") as err:
        rc, cpu, rss = timed_child([*cli_command(), *args], env, ROOT, out, err)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    wall = time.perf_counter() - t0
    if rc != 0:
        sys.exit(f"branchflow {' '.join(args)} failed ({rc}): {stderr[-800:]}")
    if args[0] == "import":
        print(f"  branchflow import: {stdout.strip()}")
    return cpu, wall, rss


def run_baseline(url: str, rows: list[OrgRow]) -> dict[str, Any]:
    """The same branches, people and roles with the driver's executemany in one transaction."""
    pg = not url.startswith("sqlite")
    gbs = sorted({(r.general_branch_code, r.general_branch) for r in rows})
    if pg:
        import psycopg

        conn: Any = psycopg.connect(libpq(url))
        p = "%s"
        cur = conn.cursor()
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    else:
        conn = sqlite3.connect(make_url(url).database, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        p = "?"
        cur = conn.cursor()
        cur.execute("BEGIN")
        backend = None
    # untimed: the committee and its general branches (the import writes these few through the ORM)
    cur.execute(f"INSERT INTO committees (code, name, path) VALUES ({p}, {p}, {p})", ("C", "基准党委", ""))
    cur.execute(f"SELECT id FROM committees WHERE code = {p}", ("C",))
    cid = cur.fetchone()[0]
    cur.executemany(f"INSERT INTO general_branches (code, name, committee_id) VALUES ({p}, {p}, {p})",
                    [(code, name, cid) for code, name in gbs])
    cur.execute("SELECT code, id FROM general_branches")
    gb_ids = dict(cur.fetchall())
    conn.commit() if pg else cur.execute("COMMIT")

    def day(d: dt.date | None) -> Any:
        return d if pg or d is None else d.isoformat()

    s0 = proc_cpu_s(backend) if backend else None
    t0, c0 = time.perf_counter(), time.process_time()
    if not pg:
        cur.execute("BEGIN")
    cur.executemany(
        "INSERT INTO branches (code, name, branch_type, committee_id, general_branch_id, secretary_name, "
        "secretary_email, member_count, last_reelection, last_activity, secretary_violation) VALUES "
        f"({', '.join([p] * 11)})",
        [(r.code, r.name, r.branch_type, cid, gb_ids[r.general_branch_code], r.secretary_name, r.secretary_email,
          r.member_count, day(r.last_reelection), day(r.last_activity), r.secretary_violation if pg else 0)
         for r in rows])
    cur.executemany(f"INSERT INTO people (email, name) VALUES ({p}, {p})",
                    [(r.secretary_email, r.secretary_name) for r in rows])
    cur.execute("SELECT email, id FROM people")
    ids = dict(cur.fetchall())
    cur.executemany(f"INSERT INTO role_assignments (person_id, role, scope_code) VALUES ({p}, {p}, {p})",
                    [(ids[r.secretary_email], "branch_secretary", r.code) for r in rows])
    conn.commit() if pg else cur.execute("COMMIT")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    server = (proc_cpu_s(backend) or 0.0) - s0 if s0 is not None else None
    conn.close()
    return {"wall_s": wall, "cpu_s": cpu, "server_cpu_s": server}


def fmt_server(x: float | None) -> str:
    return f", server {x:.2f} s CPU" if x is not None else ""


def bench(dbs: Databases, n: int, tmp: Path, cli: bool, log: Callable[[str], None]) -> dict[str, Any]:
    rows = org(n)
    out: dict[str, Any] = {"n": n}
    url = dbs.fresh()
    r = run_import_rows(url, rows)
    dbs.drop(url)
    log(f"import_rows, {n:,} branches: {r['cpu_s']:.2f} s CPU, {r['wall_s']:.2f} s wall{fmt_server(r['server_cpu_s'])}; "
        f"of which record_master_changes {r['masterlog_cpu_s']:.2f} s CPU "
        f"({r['masterlog_cpu_s'] / r['cpu_s']:.0%}); rows: {r['counts']}")
    out["import_rows"] = r
    if cli:
        csv_path = tmp / f"org{n}.csv"
        write_csv(csv_path, rows)
        url = dbs.fresh()
        start_cpu, _, _ = run_cli(url, csv_path, tmp, ["--help"])
        cpu, wall, rss = run_cli(url, csv_path, tmp, ["import", str(csv_path)])
        dbs.drop(url)
        csv_path.unlink()
        log(f"branchflow import FILE.csv, {n:,} rows: {cpu:.2f} s CPU ({cpu - start_cpu:.2f} s without the "
            f"{start_cpu:.2f} s of `branchflow --help`), {wall:.2f} s wall, peak RSS {rss:.0f} MB")
        out["cli"] = {"cpu_s": cpu, "startup_cpu_s": start_cpu, "wall_s": wall, "peak_rss_mb": rss}
    url = dbs.fresh()
    b = run_baseline(url, rows)
    dbs.drop(url)
    log(f"baseline executemany ({'psycopg' if dbs.kind == 'postgresql' else 'sqlite3'}): {b['cpu_s']:.2f} s CPU, "
        f"{b['wall_s']:.2f} s wall{fmt_server(b['server_cpu_s'])}")
    out["baseline"] = b
    out["ratio"] = r["cpu_s"] / b["cpu_s"]
    if r["server_cpu_s"] is not None and b["server_cpu_s"] is not None:
        out["total_ratio"] = (r["cpu_s"] + r["server_cpu_s"]) / (b["cpu_s"] + b["server_cpu_s"])
    log(f"ratio import_rows / baseline at {n:,}: {out['ratio']:.1f}× CPU"
        + (f", {out['total_ratio']:.1f}× client + server CPU" if "total_ratio" in out else "")
        + f" (load {os.getloadavg()[0]:.2f})")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, action="append", help="branches (repeatable; default 10,000 and 100,000)")
    ap.add_argument("--url", help="a PostgreSQL server; the bench makes (and drops) its own databases")
    ap.add_argument("--pg", action="store_true", help="start a throwaway PostgreSQL cluster and run on it")
    ap.add_argument("--no-cli", action="store_true", help="skip the `branchflow import` subprocess")
    args = ap.parse_args()
    sizes = args.n or [10_000, 100_000]
    from tests.support.pg import server

    with server(args.url, args.pg) as url, tempfile.TemporaryDirectory(prefix="bf-import-") as d:
        dbs = Databases(Path(d), url)
        try:
            print(f"database: {dbs.kind}; load {os.getloadavg()[0]:.2f}")
            runs = [bench(dbs, n, Path(d), not args.no_cli, lambda m: print(m, flush=True)) for n in sizes]
        finally:
            dbs.close()
    last = runs[-1]
    summary = [{"n": r["n"], "cpu_s": round(r["import_rows"]["cpu_s"], 2),
                "masterlog_cpu_s": round(r["import_rows"]["masterlog_cpu_s"], 2),
                "server_cpu_s": None if r["import_rows"]["server_cpu_s"] is None else round(r["import_rows"]["server_cpu_s"], 2),
                "baseline_cpu_s": round(r["baseline"]["cpu_s"], 2),
                "baseline_server_cpu_s": None if r["baseline"]["server_cpu_s"] is None else round(r["baseline"]["server_cpu_s"], 2),
                "cli_cpu_s": round(r["cli"]["cpu_s"], 2) if "cli" in r else None,
                "cli_startup_cpu_s": round(r["cli"]["startup_cpu_s"], 2) if "cli" in r else None,
                "ratio": round(r["ratio"], 2)} | ({"total_ratio": round(r["total_ratio"], 2)} if "total_ratio" in r else {})
               for r in runs]
    print(json.dumps({"bench": "import", "n": last["n"], "ratio": round(last["ratio"], 2), "db": dbs.kind,
                      "runs": summary, "load": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
