"""Peak memory of the listing and the exports at N branches: is it flat in N?

    python bench/bench_list.py                          # N = 2,000 and 20,000, SQLite
    python bench/bench_list.py --n 2000 --n 20000 --pg  # a throwaway PostgreSQL cluster
    python bench/bench_list.py --url postgresql+psycopg://postgres@127.0.0.1:5432/postgres

For each N a fresh database (one committee, 100 general branches, N branches, one campaign with a case
opened for every branch) is built in this process; then every command below runs as its own
``branchflow`` subprocess, output to a file, and its own peak RSS and CPU time are read through
/usr/bin/time (not getrusage here: a child forked from this process inherits its high-water RSS):

* ``list --json`` and ``list`` (text), the whole campaign;
* ``report NAME --format F`` for every form and format (xlsx, csv, html);
* ``export-events`` (JSON Lines of the cases' events);
* ``--help``: the interpreter and the imports, the floor of every command.

Ends with one JSON line: ``ratio`` = peak RSS of ``list --json`` at the largest N ÷ at the smallest
(1.0 = flat); every command's figures are in ``commands``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_import import org, timed_child  # type: ignore[import-not-found]
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from workflow.campaigns import create_campaign
from workflow.db import make_engine, session_factory
from workflow.importer import import_rows
from workflow.migrate import upgrade

TZ = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 3, 20, 10, tzinfo=TZ)


def commands() -> list[tuple[str, list[str]]]:
    import reports

    out = [("--help", ["--help"]), ("list --json", ["list", "--json", "--now", NOW.isoformat()]),
           ("list", ["list", "--now", NOW.isoformat()]), ("export-events", ["export-events", "-o", "{out}"])]
    for name in reports.form_names():
        for fmt in reports.FORMATS:
            out.append((f"report {name} --format {fmt}",
                        ["report", name, "--format", fmt, "-o", "{out}", "--now", NOW.isoformat()]))
    return out


def build(url: str, n: int) -> float:
    t0 = time.perf_counter()
    engine = make_engine(url)
    upgrade(engine)
    with session_factory(engine)() as s, s.begin():
        import_rows(s, org(n))
        create_campaign(s, preset="haitang-2022", year=2026, now=NOW - dt.timedelta(days=19))
    engine.dispose()
    return time.perf_counter() - t0


def cli_command() -> list[str]:
    script = Path(sys.executable).parent / "branchflow"
    return [str(script)] if script.exists() else [sys.executable, "-m", "service.cli"]


def run(url: str, data_dir: Path, args: list[str], out: Path) -> dict[str, Any]:
    """One `branchflow` command: its own peak RSS (MB), CPU seconds, wall seconds and output bytes."""
    env = {**os.environ, "BRANCHFLOW_DATABASE_URL": url, "BRANCHFLOW_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    args = [a.replace("{out}", str(out)) for a in args]
    stdout = data_dir / "stdout"
    t0 = time.perf_counter()
    with open(stdout, "wb") as f, open(data_dir / "stderr", "wb") as e:
        rc, cpu, rss = timed_child([*cli_command(), *args], env, data_dir, f, e)
    wall = time.perf_counter() - t0
    size = out.stat().st_size if out.exists() else stdout.stat().st_size
    if rc != 0:
        err = (data_dir / "stderr").read_text(errors="replace")[-300:]
        return {"error": f"exit {rc}: {err.strip()}"}
    out.unlink(missing_ok=True)
    return {"rss_mb": rss, "cpu_s": cpu, "wall_s": wall, "bytes": size}


class Databases:
    def __init__(self, tmp: Path, admin_url: str | None) -> None:
        self.tmp, self.admin_url = tmp, admin_url
        self.admin = None if admin_url is None else create_engine(
            make_url(admin_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")

    @property
    def kind(self) -> str:
        return "sqlite" if self.admin is None else "postgresql"

    def fresh(self, n: int) -> str:
        if self.admin is None:
            return f"sqlite:///{self.tmp / f'list{n}.db'}"
        assert self.admin_url is not None
        with self.admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS bench_list_{n} WITH (FORCE)"))
            conn.execute(text(f"CREATE DATABASE bench_list_{n}"))
        return make_url(self.admin_url).set(drivername="postgresql+psycopg", database=f"bench_list_{n}").render_as_string(
            hide_password=False)

    def drop(self, url: str, n: int) -> None:
        if self.admin is None:
            for suffix in ("", "-wal", "-shm"):
                Path(str(make_url(url).database) + suffix).unlink(missing_ok=True)
            return
        with self.admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS bench_list_{n} WITH (FORCE)"))

    def close(self) -> None:
        if self.admin is not None:
            self.admin.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, action="append", help="branches (repeatable; default 2,000 and 20,000)")
    ap.add_argument("--url", help="a PostgreSQL server; the bench makes (and drops) its own databases")
    ap.add_argument("--pg", action="store_true", help="start a throwaway PostgreSQL cluster and run on it")
    ap.add_argument("--only", action="append", help="only the commands whose name starts with this (repeatable)")
    args = ap.parse_args()
    sizes = sorted(args.n or [2_000, 20_000])
    from tests.support.pg import server

    cmds = [c for c in commands() if not args.only or c[0] == "--help" or any(c[0].startswith(o) for o in args.only)]
    results: dict[str, dict[int, dict[str, Any]]] = {name: {} for name, _ in cmds}
    with server(args.url, args.pg) as url, tempfile.TemporaryDirectory(prefix="bf-list-") as d:
        tmp = Path(d)
        dbs = Databases(tmp, url)
        try:
            for n in sizes:
                db_url = dbs.fresh(n)
                print(f"{dbs.kind}, {n:,} branches: built in {build(db_url, n):.1f} s (load {os.getloadavg()[0]:.2f})",
                      flush=True)
                data_dir = tmp / f"data{n}"
                data_dir.mkdir()
                for name, argv in cmds:
                    r = results[name][n] = run(db_url, data_dir, argv, data_dir / "out.bin")
                    if "error" in r:
                        print(f"  {name:<34} {r['error']}", flush=True)
                    else:
                        print(f"  {name:<34} peak RSS {r['rss_mb']:7.1f} MB  CPU {r['cpu_s']:6.2f} s  "
                              f"wall {r['wall_s']:6.2f} s  {r['bytes']:>12,} bytes", flush=True)
                shutil.rmtree(data_dir)
                dbs.drop(db_url, n)
        finally:
            dbs.close()
    lo, hi = sizes[0], sizes[-1]
    floor = {n: results["--help"][n].get("rss_mb") for n in sizes}
    print(f"\npeak RSS (MB) at {lo:,} → {hi:,} branches; growth = RSS above `--help`'s, {hi:,} ÷ {lo:,}:")
    summary: dict[str, Any] = {}
    for name, by_n in results.items():
        a, b = by_n.get(lo, {}), by_n.get(hi, {})
        if "rss_mb" not in a or "rss_mb" not in b:
            print(f"  {name:<34} not measured at both sizes")
            continue
        above_a, above_b = a["rss_mb"] - (floor[lo] or 0), b["rss_mb"] - (floor[hi] or 0)
        growth = above_b / above_a if above_a > 0.5 else None
        print(f"  {name:<34} {a['rss_mb']:7.1f} → {b['rss_mb']:7.1f}  (×{b['rss_mb'] / a['rss_mb']:.2f}; above the "
              f"floor {above_a:.1f} → {above_b:.1f} MB)  CPU {a['cpu_s']:.2f} → {b['cpu_s']:.2f} s")
        summary[name] = {"rss_mb": [round(a["rss_mb"], 1), round(b["rss_mb"], 1)],
                         "cpu_s": [round(a["cpu_s"], 2), round(b["cpu_s"], 2)],
                         "ratio": round(b["rss_mb"] / a["rss_mb"], 2),
                         "growth_above_floor": None if growth is None else round(growth, 2)}
    ratio = summary.get("list --json", {}).get("ratio")
    print(json.dumps({"bench": "list", "n": hi, "ratio": ratio, "db": dbs.kind, "sizes": sizes,
                      "commands": summary, "load": round(os.getloadavg()[0], 2)}, ensure_ascii=False))


if __name__ == "__main__":
    main()
