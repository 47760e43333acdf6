"""HTTP load figure: requests/s and latency percentiles for the branch page and for an advance, with the
server (uvicorn, one worker, its own process) on 127.0.0.1 and a SQLite (or PostgreSQL) database of N branches.

    python bench/bench_http.py [--branches 1000] [--clients 8] [--seconds 10]
    python bench/bench_http.py --pg        # the same on a throwaway PostgreSQL cluster (tests/support/pg.py)
    python bench/bench_http.py --url postgresql+psycopg://postgres@127.0.0.1:5432/postgres  # a fresh database
                                           # bench_http is made on that server, dropped at the end

It prints the numbers measured in this run only (no thresholds: timing goals live here, not in tests).
Besides the rates (wall clock, noisy on a shared machine) it prints the server process's CPU time per
request (utime + stime from /proc/PID/stat over each phase), which the other users' load barely moves.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TZ = ZoneInfo("Asia/Shanghai")
SECRET = "bench-secret-key"
NOW = dt.datetime(2026, 3, 20, 10, 0, tzinfo=TZ)


def app_factory():  # type: ignore[no-untyped-def]
    """Used by uvicorn in the server process: the app on the bench database with a fixed clock."""
    from service.app import create_app
    from workflow.db import make_engine
    from workflow.settings import Settings

    settings = Settings(data_dir=Path(os.environ["BENCH_DIR"]), secret_key=SECRET)  # BRANCHFLOW_DATABASE_URL too
    return create_app(settings, engine=make_engine(settings.url), clock=lambda: NOW)


def build(url: str, n: int) -> list[str]:
    """N branches in 10 general branches, every one with its survey filed (so one advance each succeeds)."""
    from states.base import Role
    from states.survey import FOCUS_POINTS
    from workflow import service
    from workflow.campaigns import create_campaign
    from workflow.db import make_engine, session_factory
    from workflow.importer import OrgRow, import_rows
    from workflow.migrate import upgrade
    from workflow.people import add_person

    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    codes = [f"B{i:05d}" for i in range(n)]
    rows = [OrgRow(row=i + 2, committee="基准党委", committee_code="C", general_branch=f"第{i % 10}党总支",
                   general_branch_code=f"G{i % 10}", code=c, name=f"第{i}党支部", branch_type="teacher",
                   secretary_name=f"书记{i}", secretary_email=f"s{i}@bench.cn", member_count=20,
                   last_reelection=dt.date(2025, 1, 1), last_activity=dt.date(2026, 2, 1), secretary_violation=False)
            for i, c in enumerate(codes)]
    with sessions() as s, s.begin():
        import_rows(s, rows)
        add_person(s, "org@bench.cn", "组织部", [Role.org_department], "C")
        create_campaign(s, preset="haitang-2022", year=2026, now=NOW - dt.timedelta(days=19))
    findings = {"findings": {k: {"ok": True, "note": ""} for k in FOCUS_POINTS}}
    with sessions() as s, s.begin():
        org = service.actor_for(s, "org@bench.cn")
        for c in codes:
            service.record(s, c, org, findings, now=NOW - dt.timedelta(hours=1))
    engine.dispose()
    return codes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def credentials(url: str) -> tuple[str, str]:
    """A page session cookie and an API token for the organisation department (signed with the secret)."""
    from service.auth import Signer
    from workflow.db import make_engine, session_factory
    from workflow.repository import person_by_email

    engine = make_engine(url)
    with session_factory(engine)() as s:
        p = person_by_email(s, "org@bench.cn")
        p.password_hash = "bench"  # a fingerprint to sign against; nobody logs in with a password here
        s.commit()
        signer = Signer(SECRET)
        out = signer.issue(s, p), signer.issue(s, p, api=True)  # server-side rows (issue 14)
        s.commit()
    engine.dispose()
    return out


def load(url: str, clients: int, seconds: float | None, jobs: list[tuple[str, str, dict]] | None,
         make: callable, headers: dict, cookies: dict) -> tuple[list[float], int, float]:
    """Run requests from ``clients`` threads: for ``seconds`` (make(i) gives the i-th request) or over
    ``jobs`` (each once). Returns latencies, errors and the wall time."""
    import httpx

    lat: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(10**9))
    stop = time.perf_counter() + seconds if seconds else None

    def worker() -> None:
        nonlocal errors
        with httpx.Client(base_url=url, headers=headers, cookies=cookies, timeout=30) as c:
            while True:
                with lock:
                    i = next(counter)
                if stop is not None and time.perf_counter() >= stop:
                    return
                if jobs is not None and i >= len(jobs):
                    return
                method, path, kw = jobs[i] if jobs is not None else make(i)
                t0 = time.perf_counter()
                r = c.request(method, path, **kw)
                dt_ = time.perf_counter() - t0
                with lock:
                    lat.append(dt_)
                    if r.status_code != 200:
                        errors += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, errors, time.perf_counter() - t0


def server_cpu_s(pid: int) -> float:
    """utime + stime of a process (and of its waited-for children), in seconds, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def report(name: str, lat: list[float], errors: int, wall: float, cpu_s: float) -> dict[str, float]:
    rps = len(lat) / wall
    p50, p99 = pct(lat, 50) * 1000, pct(lat, 99) * 1000
    cpu_ms = cpu_s / len(lat) * 1000
    print(f"{name:<34} {len(lat):>6} 次  {rps:>8.1f} 次/秒  p50 {p50:>7.1f} ms  p99 {p99:>7.1f} ms  "
          f"平均 {statistics.mean(lat) * 1000:>7.1f} ms  服务端 CPU {cpu_ms:>5.2f} ms/次  错误 {errors}")
    return {"rps": rps, "p50": p50, "p99": p99, "cpu_ms": cpu_ms}


def measured(pid: int, run: Callable[[], tuple[list[float], int, float]]) -> tuple[list[float], int, float, float]:
    """``run()``'s latencies, errors and wall time, plus the server's CPU seconds spent meanwhile."""
    c0 = server_cpu_s(pid)
    lat, errors, wall = run()
    return lat, errors, wall, server_cpu_s(pid) - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--branches", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--url", help="a PostgreSQL server; the bench makes (and drops) its own database there")
    ap.add_argument("--pg", action="store_true", help="start a throwaway PostgreSQL cluster and run on it")
    args = ap.parse_args()
    from tests.support.pg import server

    with server(args.url, args.pg) as admin_url:
        if admin_url is None:
            run(args, None)
        else:
            from sqlalchemy import create_engine, text
            from sqlalchemy.engine import make_url

            admin = create_engine(make_url(admin_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text("DROP DATABASE IF EXISTS bench_http WITH (FORCE)"))
                conn.execute(text("CREATE DATABASE bench_http"))
            try:
                run(args, make_url(admin_url).set(drivername="postgresql+psycopg", database="bench_http")
                    .render_as_string(hide_password=False))
            finally:
                with admin.connect() as conn:
                    conn.execute(text("DROP DATABASE IF EXISTS bench_http WITH (FORCE)"))
                admin.dispose()


def run(args: argparse.Namespace, pg_url: str | None) -> None:
    with tempfile.TemporaryDirectory(prefix="bf-bench-") as tmp:
        data_dir = Path(tmp)
        url = pg_url or f"sqlite:///{data_dir / 'branchflow.db'}"
        db = "postgresql" if pg_url else "sqlite"
        t0 = time.perf_counter()
        codes = build(url, args.branches)
        print(f"准备：{len(codes)} 个党支部（{'PostgreSQL' if pg_url else 'SQLite'}，调查摸底均已填报）"
              f"用时 {time.perf_counter() - t0:.1f} 秒")
        cookie, token = credentials(url)
        port = free_port()
        env = {**os.environ, "BENCH_DIR": str(data_dir), "PYTHONPATH": str(ROOT), "BRANCHFLOW_DATABASE_URL": url}
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bench.bench_http:app_factory", "--factory", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning", "--no-access-log"], cwd=ROOT, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            import httpx

            for _ in range(200):
                try:
                    httpx.get(url + "/openapi.json", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            load(url, 2, None, [("GET", f"/branches/{c}", {}) for c in codes[:20]], None, {},
                 {"bf_session": cookie})  # warm-up: templates compiled, caches filled
            print(f"服务：uvicorn 单进程，{url}；客户端并发 {args.clients}；每项 {args.seconds:g} 秒")
            pid = server.pid
            page = report("GET /branches/{code}（网页）", *measured(pid, lambda: load(
                url, args.clients, args.seconds, None, lambda i: ("GET", f"/branches/{codes[i % len(codes)]}", {}),
                {}, {"bf_session": cookie})))
            api = report("GET /api/branches/{code}（JSON）", *measured(pid, lambda: load(
                url, args.clients, args.seconds, None, lambda i: ("GET", f"/api/branches/{codes[i % len(codes)]}", {}),
                {"Authorization": f"Bearer {token}"}, {})))
            jobs = [("POST", f"/api/branches/{c}/advance", {}) for c in codes]
            adv = report("POST /api/branches/{code}/advance", *measured(pid, lambda: load(
                url, args.clients, None, jobs, None, {"Authorization": f"Bearer {token}"}, {})))
            print(f"比值：网页/JSON 吞吐 {page['rps'] / api['rps']:.2f}；推进/网页 吞吐 {adv['rps'] / page['rps']:.2f}；"
                  f"网页 p99/p50 {page['p99'] / page['p50']:.1f}；推进 p99/p50 {adv['p99'] / adv['p50']:.1f}")
            # the baseline in the same run is the JSON read; ratio = its rate ÷ the page's rate
            print(json.dumps({"bench": "http", "n": args.clients, "ratio": round(api["rps"] / page["rps"], 2), "db": db,
                              "page_rps": round(page["rps"], 1), "api_rps": round(api["rps"], 1),
                              "advance_rps": round(adv["rps"], 1), "page_p99_ms": round(page["p99"], 1),
                              "page_cpu_ms": round(page["cpu_ms"], 2), "api_cpu_ms": round(api["cpu_ms"], 2),
                              "advance_cpu_ms": round(adv["cpu_ms"], 2), "load": os.getloadavg()[0]}))
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
