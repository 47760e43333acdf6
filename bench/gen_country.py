"""Load a country-sized tree into a database: 1 national committee, provinces, ~1,000 committees, 1M branches.

    python bench/gen_country.py                                   # 1,000,000 branches, 1,000 committees, own PG cluster
    python bench/gen_country.py --branches 10000 --committees 50  # small, quick
    python bench/gen_country.py --url postgresql+psycopg://u@h/db --branches 1000000
    python bench/gen_country.py --url sqlite:////tmp/c.db --branches 200 --committees 5   # the smoke test
    python bench/gen_country.py --keep                            # leave the throwaway cluster running

What it writes (every row as the service would have written it):

* ``committees``: the national root (``CN``), ``--provinces`` provincial committees under it, and the
  other committees spread over the provinces (with ``parent_id`` and the materialised ``path``);
  the branches sit in those leaf committees (``--committees`` counts all of them, root included);
* per leaf committee: one campaign (the real presets haitang-2022, henan-2012, cumtb-2012 in turn, on
  ``--year``; with its ``created`` entry in the campaign-change chain), general branches (党总支, one per
  ~25 branches) with a secretary each, an organisation-department person and five committee members;
* ``branches`` with a secretary each (a person and a ``branch_secretary`` role row);
* one case per branch, its events hash-chained exactly as the service chains them: the event
  sequences are recorded once per preset and grade by driving four branches through the real services
  (``workflow.service``) on a scratch SQLite file, and every generated branch gets a prefix of one of
  them (how far depends on how late the branch is at ``--as-of``), with its own codes and e-mails put
  into the canonical JSON and the chain re-hashed (``workflow.audit.chain``). So `branchflow audit verify
  --branch CODE` passes, stages and grades are spread, and the late branches are overdue.

Rows go in with COPY (psycopg 3 ``cursor.copy``) on PostgreSQL, executemany on SQLite, committee by
committee: memory stays flat in N. Ends with one JSON line ``{"bench": "gen_country", "n": N, ...}``
(``ratio`` = rows/s of this run ÷ the 42k rows/s raw-sqlite3 batched anchor of issue 13).

The audit structures too, so a whole-database ``branchflow audit verify`` passes: each event's Merkle leaf
index (events first in the log, in id order) and the stored hashes (``merkle_hashes``, by binary COPY, from
the tree's right edge kept in memory: ``workflow.merkle.RightEdge``) are written with the events; then
``sequencer.integrate``'s batched path records the master-data baseline of every committee, general branch,
branch and person (at ``--as-of`` 23:00) and sequences the campaign changes and master events after the
events. The log is byte for byte what the row-by-row sequencer makes of the same rows
(tests/integration/test_sequencer_bulk.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
from sqlalchemy import Engine, text

from states.base import Role, Stage
from states.survey import FOCUS_POINTS
from workflow import grading as _grading  # noqa: F401  (imported for the services' side effects)
from workflow import sequencer, service, tallies
from workflow.audit import GENESIS, canonical, chain, iso
from workflow.campaign import parse_campaign_text, preset_text
from workflow.campaigns import create_campaign, sha
from workflow.case import apply, current_grade, new_state
from workflow.db import make_engine, session_factory
from workflow.errors import TransitionRefused
from workflow.importer import OrgRow, import_rows
from workflow.merkle import RightEdge, leaf_hash
from workflow.migrate import upgrade
from workflow.people import add_person
from workflow.repository import campaign_of, effective_deadline, get_campaign_row, load_case
from workflow.sequencer import leaf_event, write_hashes

TZ = ZoneInfo("Asia/Shanghai")
PRESETS = ["haitang-2022", "henan-2012", "cumtb-2012"]
QUALITIES = [0.97, 0.86, 0.74, 0.52]  # one template branch per quality: a spread of grades in every preset
VARIANT_WEIGHTS = [0.25, 0.4, 0.25, 0.1]
PROVINCES = ["北京", "天津", "河北", "山西", "内蒙古", "辽宁", "吉林", "黑龙江", "上海", "江苏", "浙江", "安徽", "福建",
             "江西", "山东", "河南", "湖北", "湖南", "广东", "广西", "海南", "重庆", "四川", "贵州", "云南", "西藏",
             "陕西", "甘肃", "青海", "宁夏", "新疆"]
BRANCH_TYPES = ["teacher", "undergraduate", "graduate", "admin", "retired"]
PER_GB = 25  # branches per general branch
# Placeholders in the recorded templates, replaced by each generated branch's own values.
T_COM, T_COM_L, T_CAMP, T_GB, T_GB_L = "QQCOMQQ", "qqcomqq", "qqcampqq", "QQGBQQ", "qqgbqq"
T_BR = [f"QQBR{i}QQ" for i in range(len(QUALITIES))]


def _at(day: dt.date, hour: int = 10) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=TZ)


# --- templates: real event sequences, recorded once per preset ---------------------------------------

@dataclass
class Prefix:
    """The case after the first ``n`` events of a template: its projection (with placeholders)."""

    n: int
    last_at: dt.datetime
    stage: str
    grade: str | None
    deadline: dt.date | None
    state_fmt: str


@dataclass
class Template:
    preset: str
    events: list[tuple[str, dt.datetime, str, str]]  # kind, at, actor (format), body (format)
    prefixes: list[Prefix]


def _fmt(s: str, branch_ph: str) -> str:
    """A str.format pattern: braces escaped, the placeholders turned into fields."""
    s = s.replace("{", "{{").replace("}", "}}")
    for ph, field in ((branch_ph, "{b}"), (branch_ph.lower(), "{bl}"), (T_COM, "{c}"), (T_COM_L, "{cl}"),
                      (T_CAMP, "{k}"), (T_GB, "{g}"), (T_GB_L, "{gl}")):
        s = s.replace(ph, field)
    if "QQ" in s or "qq" in s:
        raise AssertionError(f"a placeholder left in a template: {s[:200]}")
    return s


def _campaign_text(preset: str, year: int, code: str, name: str) -> str:
    import re

    t = preset_text(preset, year=year)
    t = re.sub(r'(?m)^code\s*=\s*"[^"]*"', f'code = "{code}"', t, count=1)
    return re.sub(r'(?m)^name\s*=\s*"[^"]*"', lambda _m: f'name = "{name}"', t, count=1)


def record_templates(year: int, workdir: Path) -> dict[str, list[Template]]:
    """Drive four branches per preset through the whole year with the real services; keep their chains."""
    return {preset: _record_preset(preset, year, workdir) for preset in PRESETS}


def _record_preset(preset: str, year: int, workdir: Path) -> list[Template]:
    engine = make_engine(f"sqlite:///{workdir / (preset + '.db')}")
    upgrade(engine)
    sessions = session_factory(engine)
    org, gbsec = f"org@{T_COM_L}.edu.cn", f"{T_GB_L}@{T_COM_L}.edu.cn"
    members = [f"m{i}@{T_COM_L}.edu.cn" for i in range(1, 6)]
    with sessions() as s, s.begin():
        import_rows(s, [OrgRow(row=i + 2, committee="模板党委", committee_code=T_COM, general_branch="模板党总支",
                               general_branch_code=T_GB, code=code, name=f"模板{i}党支部", branch_type="teacher",
                               secretary_name="模板书记", secretary_email=f"{code.lower()}@{T_COM_L}.edu.cn",
                               member_count=12, last_reelection=dt.date(year - 1, 6, 1),
                               last_activity=dt.date(year, 1, 10), secretary_violation=False)
                        for i, code in enumerate(T_BR)])
        add_person(s, org, "组织部", [Role.org_department], T_COM)
        for m in members:
            add_person(s, m, "党委委员", [Role.committee_member], T_COM)
        add_person(s, gbsec, "总支书记", [Role.general_branch_secretary], T_GB)
        text_ = _campaign_text(preset, year, f"{T_CAMP}", "模板活动")
        f = workdir / f"{preset}.toml"
        f.write_text(text_, encoding="utf-8")
        create_campaign(s, file=f, now=_at(dt.date(year, 3, 1), 8))
        camp = campaign_of(get_campaign_row(s))
    dl = {st: camp.deadline_for(st) for st in Stage if st is not Stage.accepted}

    def step(code: str, day: dt.date, fn: Callable[[Any, dt.datetime], Any], tries: int = 30) -> dt.date:
        for _ in range(tries):
            try:
                with sessions() as s, s.begin():
                    fn(s, _at(day))
                return day
            except TransitionRefused:
                day += dt.timedelta(days=1)
        raise AssertionError(f"{preset} {code}: step refused for {tries} days")

    def act(s: Any, email: str) -> service.Actor:
        return service.actor_for(s, email)

    def drive(q: float, code: str) -> None:
        sec = f"{code.lower()}@{T_COM_L}.edu.cn"

        def before(st: Stage, days: int = 3) -> dt.date:
            d = dl[st]
            assert d is not None
            return d - dt.timedelta(days=days)

        def survey(s: Any, now: dt.datetime, code: str = code) -> None:
            service.record(s, code, act(s, gbsec), {"findings": {k: {"ok": True, "note": ""} for k in FOCUS_POINTS}},
                           now=now)
            service.advance(s, code, act(s, gbsec), now=now)

        def self_assess(s: Any, now: dt.datetime, code: str = code, q: float = q, sec: str = sec) -> None:
            case = load_case(s, code)
            rubric = case.campaign.grading.rubric_for(case.facts.branch_type)
            scores = {i.id: round(i.max * q * 2) / 2 for i in rubric.items}
            service.record(s, code, act(s, sec), {"scores": scores, "attendance": 9,
                                                  "meeting_date": (now.date() - dt.timedelta(days=2)).isoformat()},
                           now=now)
            service.advance(s, code, act(s, sec), now=now)

        def evaluate(s: Any, now: dt.datetime, code: str = code, q: float = q) -> None:
            data: dict[str, Any] = {"tally": {"ballots": 12, "rating": round(q * 100, 1),
                                              "satisfaction_members": min(1.0, round(q + 0.05, 2)),
                                              "satisfaction_secretary": min(1.0, round(q + 0.08, 2)) }}
            w = camp.grading.weights
            if getattr(w, "peer", 0):
                data["peer"] = round(q * 100 - 2, 1)
            if getattr(w, "superior", 0):
                data["superior"] = round(q * 100 + 1, 1)
            service.record(s, code, act(s, gbsec), data, now=now)
            service.advance(s, code, act(s, gbsec), now=now)

        def grade(s: Any, now: dt.datetime, code: str = code) -> None:
            service.compute_grade(s, code, act(s, members[0]), now=now)
            for m in members[:3]:
                service.sign(s, code, act(s, m), now=now)
            service.advance(s, code, act(s, org), now=now)
            service.publish(s, code, act(s, org), now=now)

        def close_pub(s: Any, now: dt.datetime, code: str = code) -> None:
            service.advance(s, code, act(s, org), now=now)

        def plan(s: Any, now: dt.datetime, code: str = code, sec: str = sec) -> None:
            case = load_case(s, code)
            data: dict[str, Any] = {"submitted": True, "items": [
                {"problem": "组织生活不够规范", "measure": "每月固定主题党日并留存记录",
                 "due": dt.date(year, 7, 31).isoformat(), "contact": "党委委员"},
                {"problem": "党员发展后备力量不足", "measure": "建立入党积极分子培养台账",
                 "due": dt.date(year, 7, 31).isoformat(), "contact": "党委委员"}]}
            if case.campaign.grading.scale.by_code(case.state["final_grade"]).yellow_card:
                data["self_analysis"] = "支部班子对照标准查找不足，限期整改。"
            service.record(s, code, act(s, sec), data, now=now)

        def done(i: int) -> Callable[[Any, dt.datetime], None]:
            def f(s: Any, now: dt.datetime, code: str = code, sec: str = sec) -> None:
                service.complete_item(s, code, act(s, sec), i, f"第 {i} 项已完成，附会议记录。", now=now)
            return f

        def finish(s: Any, now: dt.datetime, code: str = code, sec: str = sec) -> None:
            service.advance(s, code, act(s, sec), now=now)

        def inspect(s: Any, now: dt.datetime, code: str = code, q: float = q) -> None:
            service.inspect(s, code, act(s, gbsec), {"passed": True, "inspected_on": now.date().isoformat(),
                                                      "regrade_score": round(min(100, q * 100 + 8), 1),
                                                      "summary": "整改事项全部完成。"}, now=now)
            service.advance(s, code, act(s, gbsec), now=now)

        d = step(code, before(Stage.survey), survey)
        d = step(code, max(d + dt.timedelta(days=1), before(Stage.self_assessment)), self_assess)
        d = step(code, max(d + dt.timedelta(days=1), before(Stage.member_evaluation)), evaluate)
        d = step(code, max(d + dt.timedelta(days=1), before(Stage.committee_grading, 5)), grade)
        d = step(code, d + dt.timedelta(days=7), close_pub)
        d = step(code, d + dt.timedelta(days=20), plan)
        d = step(code, d + dt.timedelta(days=30), done(1))
        d = step(code, d + dt.timedelta(days=10), done(2))
        d = step(code, max(d + dt.timedelta(days=1), before(Stage.rectification, 6)), finish)
        step(code, max(d + dt.timedelta(days=1), before(Stage.acceptance, 2)), inspect)

    for q, code in zip(QUALITIES, T_BR):
        drive(q, code)
    templates = []
    with engine.connect() as conn:
        for code in T_BR:
            rows = conn.execute(text(
                "SELECT e.kind, e.at, e.actor, e.body FROM events e JOIN cases c ON c.id = e.case_id "
                "JOIN branches b ON b.id = c.branch_id WHERE b.code = :b ORDER BY e.seq"), {"b": code}).all()
            events, prefixes = [], []
            state = new_state(T_CAMP, code)
            for n, (kind, at, actor, body) in enumerate(rows, 1):
                at_ = dt.datetime.fromisoformat(at).replace(tzinfo=dt.UTC)
                events.append((kind, at_, _fmt(actor, code), _fmt(body, code)))
                apply(state, json.loads(body), in_place=True)
                prefixes.append(Prefix(n=n, last_at=at_, stage=state["stage"], grade=current_grade(state),
                                       deadline=effective_deadline(camp, state),
                                       state_fmt=_fmt(orjson.dumps(state, option=orjson.OPT_NON_STR_KEYS).decode(),
                                                      code)))
            templates.append(Template(preset=preset, events=events, prefixes=prefixes))
    engine.dispose()
    return templates


# --- the tree ---------------------------------------------------------------------------------------

@dataclass
class Com:
    id: int
    code: str
    name: str
    parent_id: int | None
    path: str
    branches: int  # branches directly in it


def tree(n_committees: int, n_provinces: int, n_branches: int) -> list[Com]:
    n_provinces = max(1, min(n_provinces, n_committees - 2))
    root = Com(1, "CN", "全国教育系统党建工作指导委员会", None, "/1/", 0)
    out = [root]
    provs = []
    for i in range(n_provinces):
        cid = len(out) + 1
        p = Com(cid, f"P{i + 1:02d}", f"{PROVINCES[i % len(PROVINCES)]}{'' if i < len(PROVINCES) else i}省委教育工委",
                1, f"/1/{cid}/", 0)
        out.append(p)
        provs.append(p)
    leaves = max(1, n_committees - len(out))
    per, extra = divmod(n_branches, leaves)
    for j in range(leaves):
        p = provs[j % len(provs)]
        cid = len(out) + 1
        out.append(Com(cid, f"{p.code}U{j // len(provs) + 1:03d}", f"{p.name[:-4]}第{j // len(provs) + 1}高校党委",
                       p.id, f"{p.path}{cid}/", per + (1 if j < extra else 0)))
    return out


# --- writing ----------------------------------------------------------------------------------------

LOADED = ("committees", "general_branches", "branches", "people", "role_assignments", "campaigns", "campaign_changes",
          "cases", "events", "merkle_hashes")


def drop_constraints(conn: Any) -> list[str]:
    """Drop the indexes and constraints of the loaded tables (and foreign keys pointing at them); return the
    statements that recreate them exactly (pg_get_constraintdef / pg_get_indexdef), in a valid order.
    A bulk load then builds each index once, sorted, instead of updating it row by row."""
    cur = conn.cursor()
    cur.execute(
        "SELECT c.conname, c.conrelid::regclass::text, c.contype, pg_get_constraintdef(c.oid) FROM pg_constraint c "
        "WHERE c.contype IN ('p', 'u', 'f') AND (c.conrelid::regclass::text = ANY(%s) "
        "OR (c.contype = 'f' AND c.confrelid::regclass::text = ANY(%s)))", (list(LOADED), list(LOADED)))
    cons = cur.fetchall()
    cur.execute("SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = 'public' AND i.tablename = ANY(%s) "
                "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)", (list(LOADED),))
    idx = cur.fetchall()
    order = {"f": 0, "u": 1, "p": 2}
    for name, table, kind, _ in sorted(cons, key=lambda c: order[c[2]]):
        cur.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _ in idx:
        cur.execute(f'DROP INDEX "{name}"')
    conn.commit()
    cur.close()
    recreate = [f'ALTER TABLE {t} ADD CONSTRAINT "{n}" {d}' for n, t, k, d in sorted(cons, key=lambda c: -order[c[2]])]
    return recreate[: len([c for c in cons if c[2] != "f"])] + [d for _, d in idx] + recreate[len([c for c in cons if c[2] != "f"]):]


def tally_trigger(conn: Any, *, on: bool) -> None:
    """Switch the case tallies' insert trigger (migration 0014) on or off, and commit."""
    cur = conn.cursor()
    cur.execute(f"ALTER TABLE cases {'ENABLE' if on else 'DISABLE'} TRIGGER trg_cases_tally_insert")
    conn.commit()
    cur.close()


class Writer:
    """COPY on PostgreSQL, executemany on SQLite; values are given as the column types store them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.pg = engine.dialect.name == "postgresql"
        self.raw: Any = engine.raw_connection()
        self.dbapi_conn = self.raw.driver_connection
        self.rows = 0

    def ts(self, t: dt.datetime) -> Any:
        return t if self.pg else t.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")

    def day(self, d: dt.date | None) -> Any:
        return d if self.pg or d is None else d.isoformat()

    def put(self, table: str, cols: tuple[str, ...], rows: Iterator[tuple[Any, ...]] | list[tuple[Any, ...]]) -> int:
        n = 0
        cur = self.dbapi_conn.cursor()
        if self.pg:
            with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as cp:
                for r in rows:
                    cp.write_row(r)
                    n += 1
        else:
            batch: list[tuple[Any, ...]] = []
            sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            for r in rows:
                batch.append(r)
                if len(batch) >= 5000:
                    cur.executemany(sql, batch)
                    n += len(batch)
                    batch = []
            if batch:
                cur.executemany(sql, batch)
                n += len(batch)
        cur.close()
        self.rows += n
        return n

    def put_hashes(self, rows: list[tuple[int, bytes]]) -> None:
        """Stored Merkle hashes, as the sequencer's batched path writes them (binary COPY on PostgreSQL)."""
        write_hashes(self.dbapi_conn, self.pg, rows)
        self.rows += len(rows)

    def commit(self) -> None:
        self.dbapi_conn.commit()

    def close(self) -> None:
        self.raw.close()


def generate(engine: Engine, *, n_branches: int, n_committees: int, n_provinces: int, year: int,
             as_of: dt.date, seed: int, fast: bool = True, echo: Callable[[str], None] = print) -> dict[str, Any]:
    rng = random.Random(seed)
    t0 = time.perf_counter()
    upgrade(engine)
    with engine.connect() as conn:
        if conn.execute(text("SELECT COUNT(*) FROM branches")).scalar():
            raise SystemExit("the database already has branches: the generator loads an empty one")
    with tempfile.TemporaryDirectory() as tmp:
        templates = record_templates(year, Path(tmp))
    t_templates = time.perf_counter() - t0
    echo(f"templates: {sum(len(t) for t in templates.values())} recorded chains "
         f"({', '.join(f'{p}: {[len(t.events) for t in ts]}' for p, ts in templates.items())} events) "
         f"in {t_templates:.1f} s")
    coms = tree(n_committees, n_provinces, n_branches)
    with engine.connect() as conn:
        if conn.execute(text("SELECT COUNT(*) FROM merkle_hashes")).scalar() or \
                conn.execute(text("SELECT size FROM log_head WHERE id = 1")).scalar():
            raise SystemExit("the database already has a Merkle log: the generator loads an empty one")
    edge = RightEdge()  # the events' leaves, appended as they are generated (leaf i = event id i + 1)
    t_merkle = 0.0
    w = Writer(engine)
    recreate: list[str] = []
    if w.pg and fast:
        recreate = drop_constraints(w.dbapi_conn)
        # the case tallies' insert trigger (migration 0014) would look up each COPY's branches without their
        # primary key: off during the load, the tallies computed once from the cases after the indexes
        tally_trigger(w.dbapi_conn, on=False)
    counts = dict.fromkeys(("committees", "general_branches", "branches", "people", "role_assignments",
                            "campaigns", "campaign_changes", "cases", "events"), 0)
    created = _at(dt.date(year, 3, 1), 8)
    as_of_end = _at(as_of, 23)
    counts["committees"] = w.put("committees", ("id", "code", "name", "parent_id", "path"),
                                 [(c.id, c.code, c.name, c.parent_id, c.path) for c in coms])
    ids = {"gb": 0, "branch": 0, "person": 0, "role": 0, "case": 0, "event": 0, "campaign": 0, "change": 0}
    stages: dict[str, int] = {}
    overdue = 0
    w.put("people", ("id", "email", "name"), [(1, "shenji@cn.edu.cn", "审计")])
    w.put("role_assignments", ("id", "person_id", "role", "scope_code"), [(1, 1, Role.auditor.value, "")])
    ids["person"] = ids["role"] = 1
    cum = [sum(VARIANT_WEIGHTS[: i + 1]) for i in range(len(VARIANT_WEIGHTS))]
    leaves = [c for c in coms if c.branches]
    report_every = max(1, len(leaves) // 10)
    for li, com in enumerate(leaves):
        preset = PRESETS[li % len(PRESETS)]
        tpls = templates[preset]
        cl = com.code.lower()
        # people of the committee
        staff: list[tuple[str, str, Role, str]] = [(f"org@{cl}.edu.cn", f"{com.name}组织部", Role.org_department, com.code)]
        staff += [(f"m{i}@{cl}.edu.cn", f"{com.name}委员{i}", Role.committee_member, com.code) for i in range(1, 6)]
        n_gb = max(1, -(-com.branches // PER_GB))
        gb_rows = []
        for g in range(n_gb):
            ids["gb"] += 1
            gb_rows.append((ids["gb"], f"{com.code}G{g + 1:03d}", f"第{g + 1}党总支", com.id))
            gcode = gb_rows[-1][1]
            staff.append((f"{gcode.lower()}@{cl}.edu.cn", f"总支书记{g + 1}", Role.general_branch_secretary, gcode))
        counts["general_branches"] += w.put("general_branches", ("id", "code", "name", "committee_id"), gb_rows)
        # campaign (with its created change, as create_campaign writes it)
        ids["campaign"] += 1
        camp_id = ids["campaign"]
        camp_code = f"{cl}-{year}"
        ctext = _campaign_text(preset, year, camp_code, f"{com.name} {year} 年基层组织建设年（{preset}）")
        campaign = parse_campaign_text(ctext, source=f"gen:{camp_code}")
        counts["campaigns"] += w.put("campaigns", ("id", "code", "name", "year", "config", "created_at", "committee_id"),
                                     [(camp_id, camp_code, campaign.name, year, ctext, w.ts(created), com.id)])
        body = canonical({"kind": "created", "at": iso(created), "actor": "system",
                          "payload": {"source": f"preset:{preset}", "config_sha256": sha(ctext)}})
        ids["change"] += 1
        counts["campaign_changes"] += w.put(
            "campaign_changes", ("id", "campaign_id", "seq", "kind", "at", "actor", "body", "prev_hash", "hash"),
            [(ids["change"], camp_id, 1, "created", w.ts(created), "system", body, GENESIS, chain(GENESIS, body))])
        # branches, cases, events — streamed
        branch_rows: list[tuple[Any, ...]] = []
        case_rows: list[tuple[Any, ...]] = []
        event_rows: list[tuple[Any, ...]] = []
        merkle_rows: list[tuple[int, bytes]] = []
        first_branch = ids["branch"] + 1
        for j in range(com.branches):
            ids["branch"] += 1
            bid = ids["branch"]
            code = f"{com.code}-{j + 1:05d}"
            g = j // PER_GB
            gcode = gb_rows[min(g, n_gb - 1)][1]
            bl = code.lower()
            email = f"{bl}@{cl}.edu.cn"
            branch_rows.append((bid, code, f"第{j + 1}党支部", BRANCH_TYPES[j % len(BRANCH_TYPES)], com.id,
                                gb_rows[min(g, n_gb - 1)][0], f"书记{j + 1}", email, 12 + j % 30,
                                w.day(dt.date(year - 1, 1 + j % 12, 1 + j % 28)), w.day(dt.date(year, 1, 1 + j % 28)),
                                False))
            staff.append((email, f"书记{j + 1}", Role.branch_secretary, code))
            # which template and how far: most branches are on time at --as-of, some weeks late
            r = rng.random()
            v = next(i for i, c in enumerate(cum) if r <= c)
            t = tpls[v]
            lag = 0 if rng.random() < 0.7 else rng.randint(0, 70)
            cut = as_of_end - dt.timedelta(days=lag)
            k = 1
            while k < len(t.events) and t.events[k][1] <= cut:
                k += 1
            p = t.prefixes[k - 1]
            vals = {"b": code, "bl": bl, "c": com.code, "cl": cl, "k": camp_code, "g": gcode, "gl": gcode.lower()}
            ids["case"] += 1
            cid = ids["case"]
            stages[p.stage] = stages.get(p.stage, 0) + 1
            if p.deadline is not None and p.deadline < as_of:
                overdue += 1
            case_rows.append((cid, camp_id, bid, p.stage, p.grade, w.day(p.deadline), p.state_fmt.format(**vals), p.n,
                              w.ts(p.last_at)))
            prev = GENESIS
            for seq in range(p.n):
                kind, at, actor_f, body_f = t.events[seq]
                body = body_f.format(**vals)
                h = hashlib.sha256((prev + body).encode("utf-8")).hexdigest()  # = workflow.audit.chain(prev, body)
                ids["event"] += 1
                # its leaf: events come first in the Merkle log, in id order (as sequencer.integrate orders them)
                lidx, lhs = edge.append(leaf_hash(leaf_event(camp_code, code, seq + 1, h)))
                merkle_rows.extend(zip(range(lidx, lidx + len(lhs)), lhs, strict=True))
                event_rows.append((ids["event"], cid, seq + 1, kind, w.ts(at), actor_f.format(**vals), body, prev, h,
                                   ids["event"] - 1))
                prev = h
        assert ids["branch"] >= first_branch - 1
        counts["branches"] += w.put("branches", (
            "id", "code", "name", "branch_type", "committee_id", "general_branch_id", "secretary_name",
            "secretary_email", "member_count", "last_reelection", "last_activity", "secretary_violation"), branch_rows)
        people, roles = [], []
        for email, name, role, scope in staff:
            ids["person"] += 1
            people.append((ids["person"], email, name))
            ids["role"] += 1
            roles.append((ids["role"], ids["person"], role.value, scope))
        counts["people"] += w.put("people", ("id", "email", "name"), people)
        counts["role_assignments"] += w.put("role_assignments", ("id", "person_id", "role", "scope_code"), roles)
        counts["cases"] += w.put("cases", ("id", "campaign_id", "branch_id", "stage", "grade", "deadline", "state",
                                           "version", "updated_at"), case_rows)
        counts["events"] += w.put("events", ("id", "case_id", "seq", "kind", "at", "actor", "body", "prev_hash", "hash",
                                             "leaf_idx"), event_rows)
        t_mk = time.perf_counter()
        w.put_hashes(merkle_rows)
        t_merkle += time.perf_counter() - t_mk
        w.commit()
        if (li + 1) % report_every == 0 or li + 1 == len(leaves):
            el = time.perf_counter() - t0
            echo(f"  {li + 1}/{len(leaves)} committees, {counts['branches']:,} branches, {counts['events']:,} events, "
                 f"{w.rows:,} rows in {el:.0f} s ({w.rows / max(el - t_templates, 1e-9):,.0f} rows/s)")
    assert edge.size == ids["event"]
    cur = w.dbapi_conn.cursor()
    cur.execute(f"UPDATE log_head SET size = {edge.size} WHERE id = 1")
    cur.close()
    w.commit()
    echo(f"Merkle log: {edge.size:,} event leaves and their stored hashes (hashing and COPY {t_merkle:.1f} s of the load)")
    if w.pg:
        cur = w.dbapi_conn.cursor()
        t_ix = time.perf_counter()
        cur.execute("SET maintenance_work_mem = '512MB'")
        for stmt in recreate:
            cur.execute(stmt)
        w.commit()
        if recreate:
            echo(f"{len(recreate)} indexes and constraints rebuilt in {time.perf_counter() - t_ix:.1f} s")
        if fast:
            t_ta = time.perf_counter()
            for stmt in tallies.rebuild_statements("postgresql"):
                cur.execute(stmt)
            tally_trigger(w.dbapi_conn, on=True)
            echo(f"case tallies computed from the cases in {time.perf_counter() - t_ta:.1f} s")
        for table in ("committees", "general_branches", "branches", "people", "role_assignments", "campaigns",
                      "campaign_changes", "cases", "events"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT COALESCE(MAX(id), 1) FROM {table}))")
        w.commit()
        t_an = time.perf_counter()
        w.dbapi_conn.autocommit = True
        cur.execute("ANALYZE")
        echo(f"ANALYZE in {time.perf_counter() - t_an:.1f} s")
        cur.close()
        w.dbapi_conn.autocommit = False  # the connection goes back to the pool as it came
    w.close()
    # the master-data baseline (every committee, general branch, branch and person) and the campaign changes'
    # and master events' leaves after the events', by the sequencer's batched path: the log then is what
    # sequencer.integrate would have made of the loaded rows, and a whole-database `audit verify` passes
    t_seq = time.perf_counter()
    with session_factory(engine)() as s, s.begin():
        size = sequencer.integrate(s, at=as_of_end)
        baseline = int(s.scalar(text("SELECT COUNT(*) FROM master_events")) or 0)
    t_seq = time.perf_counter() - t_seq
    echo(f"master-data baseline ({baseline:,} subjects) and the log's other leaves sequenced in {t_seq:.1f} s: "
         f"tree size {size:,}")
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE master_events, merkle_hashes"))
    elapsed = time.perf_counter() - t0
    counts["master_events"] = baseline
    return {"elapsed_s": elapsed, "templates_s": t_templates, "rows": w.rows + baseline, "counts": counts,
            "stages": stages, "overdue": overdue, "committees": len(coms), "leaf_committees": len(leaves),
            "merkle_s": t_merkle, "sequence_s": t_seq, "tree_size": size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--branches", type=int, default=1_000_000)
    ap.add_argument("--committees", type=int, default=1_000, help="all committees, the national root included")
    ap.add_argument("--provinces", type=int, default=31)
    ap.add_argument("--year", type=int, default=2026)
    ap.add_argument("--as-of", default=None, help="where the year stands (default YEAR-05-20)")
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--url", help="database URL (default: a throwaway PostgreSQL cluster)")
    ap.add_argument("--keep-indexes", action="store_true",
                    help="PostgreSQL: load with every index and constraint in place (slower) instead of rebuilding them")
    ap.add_argument("--keep", action="store_true", help="leave the throwaway cluster running and print its URL")
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
    engine = make_engine(url)
    try:
        out = generate(engine, n_branches=args.branches, n_committees=args.committees, n_provinces=args.provinces,
                       year=args.year, as_of=as_of, seed=args.seed,
                       fast=not args.keep_indexes)
    finally:
        engine.dispose()
        if cluster is not None and not args.keep:
            cluster.stop()
    c = out["counts"]
    rate = out["rows"] / max(out["elapsed_s"] - out["templates_s"], 1e-9)
    print(f"{c['branches']:,} branches in {out['leaf_committees']:,} committees ({out['committees']:,} with the "
          f"root and provinces), {c['cases']:,} cases, {c['events']:,} events, {c['people']:,} people; "
          f"{out['rows']:,} rows in {out['elapsed_s']:.1f} s ({rate:,.0f} rows/s after the templates)")
    print("stages: " + ", ".join(f"{k} {v:,}" for k, v in sorted(out["stages"].items(), key=lambda x: Stage(x[0]).number))
          + f"; overdue at {as_of}: {out['overdue']:,}")
    if cluster is not None and args.keep:
        print(f"cluster kept: {url}  (data in {cluster.root}; stop: pg_ctl -D {cluster.root / 'data'} stop)")
    print(json.dumps({"bench": "gen_country", "n": c["branches"], "ratio": round(rate / 42_000, 3),
                      "backend": engine.dialect.name, "committees": out["committees"], "elapsed_s": round(out["elapsed_s"], 1),
                      "rows": out["rows"], "rows_per_s": round(rate), "events": c["events"], "overdue": out["overdue"]}))


if __name__ == "__main__":
    main()
