"""Query times on a country-sized tree (bench/gen_country.py) on PostgreSQL, against issue 13's figures.

    python bench/bench_scale.py --url postgresql+psycopg://postgres@127.0.0.1:PORT/postgres   # a generated DB
    python bench/bench_scale.py --branches 100000 --committees 200   # generate into a throwaway cluster first
    python bench/bench_scale.py --url … --reps 7 --plans plans.txt   # more repetitions; the plans to a file

Times (wall clock, median of ``--reps`` runs after one warm-up; one committee picked in the middle):

* the quiet sweep of one committee's campaign (``scheduler.sweep.sweep(campaign_code=…)``), after a
  catch-up sweep at ``--as-of`` has queued that campaign's reminders and escalations;
* one committee's dashboard: the page's counts (service/pages/dashboard.py: ``workflow.tallies.dashboard_groups``
  over the case tallies, migration 0014) and, for comparison in the same run, the GROUP BY over the cases
  the page ran before; ``views.campaign_stats``;
* a province's roll-up and the national roll-up (``workflow.rollup``, which reads the case tallies, and
  the plain GROUP BY over the committee subtree written here, over the cases and over the tallies);
* a branch page (``views.show``, which is ``repository.load_case`` + the card) and ``load_case`` alone;
* a branch's history (``views.history``);
* the pages themselves, in process (``fastapi.testclient`` on the app, a session cookie each, the time
  spent in the app's whole request path — auth, queries, template): ``GET /dashboard`` as the committee's
  organisation department, ``GET /rollup?committee=`` the province and the nation as the deployment-wide
  auditor, ``GET /branches/{code}`` as the committee's organisation department, and ``GET /healthz`` for
  what the client and the middleware cost alone (``--no-pages`` skips them).

Each figure is the median wall time and the median client CPU time (``time.process_time`` of this
process, which the other users' load barely moves) of the same runs.

Goals (issue 13): the quiet sweep < 10 ms; a page within the HTTP goal of ≥ 2 × 165 req/s, i.e.
≤ 3.0 ms a request (no separate figure is set for the roll-ups: they are compared with the same page
budget). Each query's ``EXPLAIN (ANALYZE, BUFFERS)`` is printed (``--plans FILE`` writes them there),
with the indexes each plan uses. Ends with one JSON line (``ratio`` = the quiet sweep ÷ its 10 ms goal).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine, event, text

from scheduler.sweep import sweep
from workflow import repository, views
from workflow.db import make_engine, session_factory

TZ = ZoneInfo("Asia/Shanghai")
GOAL_SWEEP_MS = 10.0
GOAL_PAGE_MS = 1000.0 / (2 * 165)

ROLLUP_SQL = (
    "SELECT m.code, c.stage, c.grade, COUNT(*) AS n, "
    "SUM(CASE WHEN c.deadline < :today AND c.stage <> 'accepted' THEN 1 ELSE 0 END) AS late "
    "FROM committees m JOIN campaigns k ON k.committee_id = m.id JOIN cases c ON c.campaign_id = k.id "
    "WHERE m.path LIKE :prefix AND k.year = :year GROUP BY m.code, c.stage, c.grade")
DASHBOARD_SQL = (  # the dashboard page's query (service/pages/dashboard.py) for the organisation department
    "SELECT g.code, g.name, c.stage, c.grade, COUNT(*) AS n, "
    "SUM(CASE WHEN c.deadline < :today THEN 1 ELSE 0 END) AS late "
    "FROM cases c JOIN branches b ON b.id = c.branch_id JOIN committees m ON m.id = b.committee_id "
    "LEFT JOIN general_branches g ON g.id = b.general_branch_id WHERE c.campaign_id = :camp "
    "GROUP BY g.code, g.name, c.stage, c.grade")
ROLLUP_TALLY_SQL = (  # ROLLUP_SQL over the case tallies (migration 0014) instead of the cases
    "SELECT m.code, t.stage, t.grade, SUM(t.n) AS n, "
    "SUM(CASE WHEN t.deadline < :today AND t.stage <> 'accepted' THEN t.n ELSE 0 END) AS late "
    "FROM committees m JOIN campaigns k ON k.committee_id = m.id JOIN case_tallies t ON t.campaign_id = k.id "
    "WHERE m.path LIKE :prefix AND k.year = :year GROUP BY m.code, t.stage, t.grade HAVING SUM(t.n) <> 0")
OVERDUE_SQL = (  # the dashboard's list of the 30 most overdue branches
    "SELECT b.code, b.name, c.stage, c.deadline FROM cases c JOIN branches b ON b.id = c.branch_id "
    "WHERE c.campaign_id = :camp AND c.stage <> 'accepted' AND c.deadline < :today "
    "ORDER BY c.deadline, c.id LIMIT 30")


def median_ms(fn: Callable[[], Any], reps: int) -> tuple[float, list[float], float]:
    """Median wall ms, the runs' wall ms, median client CPU ms (after one warm-up: caches, the plan)."""
    fn()
    runs, cpu = [], []
    for _ in range(reps):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    return statistics.median(runs), runs, statistics.median(cpu)


SECRET = "bench-scale-secret"


def page_getter(engine: Engine, now: dt.datetime, emails: list[str]) -> tuple[Callable[[str, str], None], Any]:
    """``get(email, path)``: one page request in process (the app on ``engine``, the clock fixed at ``now``)
    with that person's session cookie; asserts a 200."""
    import tempfile

    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.auth import Signer
    from workflow.repository import person_by_email
    from workflow.settings import Settings

    tmp = tempfile.TemporaryDirectory(prefix="bf-scale-")
    app = create_app(Settings(data_dir=Path(tmp.name), secret_key=SECRET), engine=engine, clock=lambda: now,
                     secret=SECRET)
    cookies = {}
    with session_factory(engine)() as s:
        for email in emails:
            p = person_by_email(s, email)
            if not p.password_hash:
                p.password_hash = "bench"  # a fingerprint to sign against; nobody logs in with it
                s.commit()
            cookies[email] = Signer(SECRET).issue(s, p)
            s.commit()
    client = TestClient(app, base_url="http://127.0.0.1")
    client.__enter__()  # one event-loop thread for every request (without it, one each)

    def get(email: str, path: str) -> None:
        client.cookies.clear()
        client.cookies.set("bf_session", cookies[email])
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])

    return get, (client, tmp)


@contextmanager
def captured(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """The SELECT statements SQLAlchemy sends while the block runs (statement, DBAPI parameters)."""
    seen: list[tuple[str, Any]] = []

    def grab(_conn: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, params))

    event.listen(engine, "before_cursor_execute", grab)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", grab)


INDEX_RE = re.compile(r"(Index Only Scan|Index Scan|Bitmap Index Scan)(?: Backward)? (?:using|on) (\w+)(?: on (\w+))?")
SEQ_RE = re.compile(r"Seq Scan on (\w+)")


def uses(plan: str) -> str:
    idx = sorted({f"{m.group(2)}" + (f" ({m.group(1).lower()})" if m.group(1) != "Index Scan" else "")
                  for m in INDEX_RE.finditer(plan)})
    seq = sorted(set(SEQ_RE.findall(plan)))
    parts = []
    if idx:
        parts.append("indexes: " + ", ".join(idx))
    if seq:
        parts.append("SEQUENTIAL SCAN of " + ", ".join(seq))
    return "; ".join(parts) or "no table access"


def explain(engine: Engine, statement: str, params: Any, *, driver: bool) -> str:
    with engine.connect() as conn:
        if driver:
            rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params).all()
        else:
            rows = conn.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + statement), params).all()
        conn.rollback()
    return "\n".join(r[0] for r in rows)


def rollup_function() -> Callable[..., Any] | None:
    """T1's ``workflow.rollup.rollup(session, actor, *, now, committee, year)`` when it is there."""
    try:
        mod = importlib.import_module("workflow.rollup")
    except ImportError:
        return None
    fn = getattr(mod, "rollup", None)
    return fn if callable(fn) else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="a database generated by bench/gen_country.py")
    ap.add_argument("--branches", type=int, default=100_000, help="without --url: generate this many first")
    ap.add_argument("--committees", type=int, default=200)
    ap.add_argument("--year", type=int, default=2026)
    ap.add_argument("--as-of", default=None, help="the generator's --as-of (default YEAR-05-20)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--plans", help="write every EXPLAIN (ANALYZE, BUFFERS) to this file")
    ap.add_argument("--no-pages", action="store_true", help="skip the in-process page requests")
    args = ap.parse_args()
    as_of = dt.date.fromisoformat(args.as_of) if args.as_of else dt.date(args.year, 5, 20)
    cluster = None
    url = args.url
    if url is None:
        from tests.support.pg import start

        c = start()
        if isinstance(c, str):
            sys.exit(f"no PostgreSQL: {c}")
        cluster = c
        url = c.url
        import gen_country  # type: ignore[import-not-found]

        eng = make_engine(url)
        out = gen_country.generate(eng, n_branches=args.branches, n_committees=args.committees, n_provinces=31,
                                   year=args.year, as_of=as_of, seed=12)
        eng.dispose()
        print(f"generated {out['counts']['branches']:,} branches in {out['elapsed_s']:.1f} s")
    engine = make_engine(url)
    try:
        run(engine, args, as_of)
    finally:
        engine.dispose()
        if cluster is not None:
            cluster.stop()


def run(engine: Engine, args: argparse.Namespace, as_of: dt.date) -> None:
    sessions = session_factory(engine)
    reps = args.reps
    with engine.connect() as conn:
        n_branches = conn.execute(text("SELECT COUNT(*) FROM branches")).scalar_one()
        n_committees = conn.execute(text("SELECT COUNT(*) FROM committees")).scalar_one()
        leaves = conn.execute(text(
            "SELECT k.id, k.code, m.code, m.path FROM campaigns k JOIN committees m ON m.id = k.committee_id "
            "WHERE k.year = :y ORDER BY k.id"), {"y": args.year}).all()
        camp_id, camp_code, com_code, com_path = leaves[len(leaves) // 2]
        province_path = "/".join(com_path.split("/")[:3]) + "/"
        province = conn.execute(text("SELECT code FROM committees WHERE path = :p"), {"p": province_path}).scalar_one()
        n_camp = conn.execute(text("SELECT COUNT(*) FROM cases WHERE campaign_id = :c"), {"c": camp_id}).scalar_one()
        n_prov = conn.execute(text(
            "SELECT COUNT(*) FROM cases c JOIN campaigns k ON k.id = c.campaign_id JOIN committees m "
            "ON m.id = k.committee_id WHERE m.path LIKE :p"), {"p": province_path + "%"}).scalar_one()
        branch = conn.execute(text(
            "SELECT b.code FROM cases c JOIN branches b ON b.id = c.branch_id WHERE c.campaign_id = :c "
            "ORDER BY c.version DESC, c.id LIMIT 1"), {"c": camp_id}).scalar_one()
        n_events = conn.execute(text("SELECT reltuples::bigint FROM pg_class WHERE relname = 'events'")).scalar_one()
    print(f"database: {n_branches:,} branches, {n_committees:,} committees, ≈ {n_events:,} events; committee "
          f"{com_code} (campaign {camp_code}, {n_camp:,} branches), province {province} ({n_prov:,} branches), "
          f"branch {branch}")
    now = dt.datetime.combine(as_of, dt.time(9), tzinfo=TZ)
    today = as_of

    # the catch-up sweep: queue what became due since the campaign began (once; committed)
    t0 = time.perf_counter()
    with sessions() as s, s.begin():
        st = sweep(s, now=now, campaign_code=camp_code)
    print(f"catch-up sweep of {camp_code} at {now:%Y-%m-%d %H:%M}: {st.examined:,} examined, {st.reminders:,} "
          f"reminders, {st.escalations:,} escalations in {(time.perf_counter() - t0) * 1000:.0f} ms")

    results: dict[str, dict[str, Any]] = {}
    plans: list[str] = []
    step = [0]

    def quiet() -> None:
        step[0] += 1
        with sessions() as s, s.begin():
            q = sweep(s, now=now + dt.timedelta(minutes=step[0]), campaign_code=camp_code)
            assert q.reminders == q.escalations == 0, q

    def dash_sql() -> None:
        with engine.connect() as conn:
            conn.execute(text(DASHBOARD_SQL), {"camp": camp_id, "today": today}).all()
            conn.execute(text(OVERDUE_SQL), {"camp": camp_id, "today": today}).all()

    def dash_tallies() -> None:
        from workflow import tallies

        with sessions() as s:
            tallies.dashboard_groups(s, camp_id, today)
            s.execute(text(OVERDUE_SQL), {"camp": camp_id, "today": today}).all()

    def dash_stats() -> None:
        with sessions() as s:
            views.campaign_stats(s, campaign=camp_code)

    rollup_fn = rollup_function()
    with engine.connect() as conn:
        auditor = conn.execute(text(
            "SELECT p.email FROM people p JOIN role_assignments r ON r.person_id = p.id "
            "WHERE r.role = 'auditor' AND r.scope_code = '' ORDER BY p.id LIMIT 1")).scalar()

    def rollup(prefix: str, code: str) -> Callable[[], None]:
        def go() -> None:
            with engine.connect() as conn:
                conn.execute(text(ROLLUP_SQL), {"prefix": prefix + "%", "year": args.year, "today": today}).all()
        return go

    def rollup_tallies(prefix: str) -> Callable[[], None]:
        def go() -> None:
            with engine.connect() as conn:
                conn.execute(text(ROLLUP_TALLY_SQL), {"prefix": prefix + "%", "year": args.year, "today": today}).all()
        return go

    def rollup_t1(code: str) -> Callable[[], None]:
        def go() -> None:
            assert rollup_fn is not None
            with sessions() as s:
                from workflow.service import actor_for

                out = rollup_fn(s, actor_for(s, auditor), now=now, committee=code, year=args.year)
                assert out["total"]["branches"] > 0, out["total"]
        return go

    def show() -> None:
        with sessions() as s:
            views.show(s, branch, now=now, campaign=camp_code)

    def load() -> None:
        with sessions() as s:
            repository.load_case(s, branch, camp_code)

    def verify_one() -> None:
        from workflow import audit

        with sessions() as s:
            report = audit.verify(s, branch_code=branch, campaign_code=camp_code)
            assert report.ok, report.problems

    def hist() -> None:
        with sessions() as s:
            views.history(s, branch, campaign=camp_code)

    cases: list[tuple[str, str, Callable[[], None], float, list[tuple[str, Any, bool]]]] = []
    explain_sql: dict[str, list[tuple[str, Any, bool]]] = {}
    load_sql = repository._Sql("postgresql").load_by_code
    explain_sql["load_case"] = [(load_sql, (branch, camp_code), True)]
    explain_sql["dashboard (page GROUP BY)"] = [(DASHBOARD_SQL, {"camp": camp_id, "today": today}, False),
                                                (OVERDUE_SQL, {"camp": camp_id, "today": today}, False)]
    explain_sql[f"roll-up {province}"] = [(ROLLUP_SQL, {"prefix": province_path + "%", "year": args.year,
                                                        "today": today}, False)]
    explain_sql["roll-up national"] = [(ROLLUP_SQL, {"prefix": "/1/%", "year": args.year, "today": today}, False)]
    explain_sql[f"roll-up {province} (tallies)"] = [(ROLLUP_TALLY_SQL, {"prefix": province_path + "%",
                                                                        "year": args.year, "today": today}, False)]
    explain_sql["roll-up national (tallies)"] = [(ROLLUP_TALLY_SQL, {"prefix": "/1/%", "year": args.year,
                                                                    "today": today}, False)]
    for name, fn in (("quiet sweep", quiet), ("campaign_stats", dash_stats), ("branch page (views.show)", show),
                     ("history", hist), ("dashboard (tallies)", dash_tallies)):
        with captured(engine) as seen:
            fn()
        explain_sql[name] = [(stmt, params, True) for stmt, params in seen]
    cases = [
        ("quiet sweep", f"sweep(campaign_code={camp_code})", quiet, GOAL_SWEEP_MS, explain_sql["quiet sweep"]),
        ("dashboard (tallies)", "the page's counts from case_tallies_gb + overdue list", dash_tallies, GOAL_PAGE_MS,
         explain_sql["dashboard (tallies)"]),
        ("dashboard (page GROUP BY)", "before the tallies: GROUP BY over the cases + overdue list", dash_sql,
         GOAL_PAGE_MS, explain_sql["dashboard (page GROUP BY)"]),
        ("campaign_stats", "views.campaign_stats", dash_stats, GOAL_PAGE_MS, explain_sql["campaign_stats"]),
        (f"roll-up {province}", f"{n_prov:,} branches", rollup(province_path, province), GOAL_PAGE_MS,
         explain_sql[f"roll-up {province}"]),
        ("roll-up national", f"{n_branches:,} branches", rollup("/1/", "CN"), GOAL_PAGE_MS,
         explain_sql["roll-up national"]),
        (f"roll-up {province} (tallies)", "the plain GROUP BY over case_tallies", rollup_tallies(province_path),
         GOAL_PAGE_MS, explain_sql[f"roll-up {province} (tallies)"]),
        ("roll-up national (tallies)", "the plain GROUP BY over case_tallies", rollup_tallies("/1/"), GOAL_PAGE_MS,
         explain_sql["roll-up national (tallies)"]),
        ("branch page (views.show)", branch, show, GOAL_PAGE_MS, explain_sql["branch page (views.show)"]),
        ("load_case", branch, load, GOAL_PAGE_MS, explain_sql["load_case"]),
        ("history", branch, hist, GOAL_PAGE_MS, explain_sql["history"]),
        ("verify one branch", f"audit.verify(branch_code={branch}): chain and projection pass", verify_one,
         GOAL_PAGE_MS, []),
    ]
    if rollup_fn is not None and auditor:
        for code in (province, "CN"):
            name = f"rollup.rollup {code}"
            with captured(engine) as seen:
                rollup_t1(code)()
            explain_sql[name] = [(stmt, params, True) for stmt, params in seen]
            cases.insert(5 if code == "CN" else 4, (name, "workflow.rollup (the /rollup page and `branchflow rollup`)",
                                                    rollup_t1(code), GOAL_PAGE_MS, explain_sql[name]))
    if not args.no_pages:
        org = conn_scalar(engine, "SELECT p.email FROM people p JOIN role_assignments r ON r.person_id = p.id "
                                  "WHERE r.role = 'org_department' AND r.scope_code = :c ORDER BY p.id LIMIT 1",
                          {"c": com_code})
        get, _keep = page_getter(engine, now, [org, auditor])

        def page(email: str, path: str) -> Callable[[], None]:
            return lambda: get(email, path)

        cases += [
            ("page /healthz", "GET /healthz: the in-process client and the app's middleware alone",
             page(org, "/healthz"), GOAL_PAGE_MS, []),
            ("page /dashboard", f"GET /dashboard as {org}", page(org, "/dashboard"), GOAL_PAGE_MS, []),
            (f"page /rollup {province}", f"GET /rollup?committee={province} as the auditor",
             page(auditor, f"/rollup?committee={province}"), GOAL_PAGE_MS, []),
            ("page /rollup CN", "GET /rollup?committee=CN as the auditor", page(auditor, "/rollup?committee=CN"),
             GOAL_PAGE_MS, []),
            ("page /branches/{code}", f"GET /branches/{branch} as {org}", page(org, f"/branches/{branch}"),
             GOAL_PAGE_MS, []),
        ]
    print(f"load average before the timed runs: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"\n{'what':<28} {'median ms':>10} {'CPU ms':>8} {'goal ms':>8} {'÷ goal':>7}   runs (ms)")
    for name, what, fn, goal, sqls in cases:
        med, runs, cpu = median_ms(fn, reps)
        results[name] = {"ms": round(med, 2), "cpu_ms": round(cpu, 2), "goal_ms": round(goal, 2),
                         "ratio": round(med / goal, 2)}
        print(f"{name:<28} {med:>10.2f} {cpu:>8.2f} {goal:>8.1f} {med / goal:>7.2f}   "
              f"{', '.join(f'{r:.1f}' for r in runs)}  ({what})", flush=True)
        for stmt, params, driver in sqls:
            try:
                plan = explain(engine, stmt, params, driver=driver)
            except Exception as exc:  # noqa: BLE001 — a statement EXPLAIN cannot take is said, not fatal
                plan = f"(no plan: {type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
            results[name].setdefault("uses", []).append(uses(plan))
            plans.append(f"=== {name}\n{stmt}\n-- params: {params!r}\n{plan}\n")
    print("\nplans (index used per statement):")
    for name, r in results.items():
        for i, u in enumerate(r.get("uses", []), 1):
            print(f"  {name} #{i}: {u}")
    if args.plans:
        Path(args.plans).write_text("\n".join(plans), encoding="utf-8")
        print(f"plans written to {args.plans}")
    else:
        print("\n" + "\n".join(plans))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(json.dumps({"bench": "scale", "n": n_branches, "ratio": results["quiet sweep"]["ratio"],
                      "committees": n_committees, "load": round(os.getloadavg()[0], 2),
                      **{k.replace(" ", "_"): v["ms"] for k, v in results.items()},
                      "cpu_ms": {k.replace(" ", "_"): v["cpu_ms"] for k, v in results.items()}}, ensure_ascii=False))


def conn_scalar(engine: Engine, sql: str, params: dict[str, Any]) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


if __name__ == "__main__":
    main()
