"""Case tallies (issue 12, point 6): counts of the cases kept by database triggers, so the roll-up, the
dashboard and the campaign statistics read a few hundred rows instead of grouping up to 1M cases.

* ``case_tallies``: cases per (campaign, the branch's committee, stage, grade, last year's grade, signed
  grade, re-grade, deadline) — the roll-up (grades, stages, overdue = deadline before today and not
  accepted, conversion of the lowest grade) and ``views.campaign_stats`` (signed grade and re-grade, which
  live in the state JSON).
* ``case_tallies_gb``: cases per (campaign, committee, general branch, stage, grade, deadline) — the
  dashboard's table per general branch.

Keys are NOT NULL so that the primary key is the upsert's conflict target on both databases (NULLs are
distinct in a unique index): "none" is stored as ``''`` (grades), ``0`` (committee, general branch) and
``9999-12-31`` (deadline; never before today, as NULL never is). ``n`` may reach 0 (rows are not deleted
by the triggers); readers keep ``SUM(n) <> 0``.

Maintained by triggers in the transaction of every write to ``cases`` (whoever writes: the services' raw
DBAPI statements, the importer, year-over, lineage, bulk loads) and of a branch moving committee or
general branch (``branches.committee_id`` / ``general_branch_id``). On PostgreSQL inserts and deletes are
statement-level triggers over the transition table (one grouped upsert per statement, so a multi-row
insert or COPY costs one statement), updates row-level with a WHEN clause (the sweep's version-only
updates do nothing). SQLite has row-level triggers only. Then the tallies are filled from the cases.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

CT_KEY = "campaign_id, committee_id, stage, grade, previous_grade, final_grade, regrade, deadline"
GB_KEY = "campaign_id, committee_id, general_branch_id, stage, grade, deadline"

TABLES = [
    ("CREATE TABLE case_tallies (campaign_id INTEGER NOT NULL, committee_id INTEGER NOT NULL, "
    "stage VARCHAR(32) NOT NULL, grade VARCHAR(32) NOT NULL, previous_grade VARCHAR(32) NOT NULL, "
    "final_grade VARCHAR(32) NOT NULL, regrade VARCHAR(32) NOT NULL, deadline DATE NOT NULL, n INTEGER NOT NULL, "
    f"CONSTRAINT pk_case_tallies PRIMARY KEY ({CT_KEY}))"),
    ("CREATE TABLE case_tallies_gb (campaign_id INTEGER NOT NULL, committee_id INTEGER NOT NULL, "
    "general_branch_id INTEGER NOT NULL, stage VARCHAR(32) NOT NULL, grade VARCHAR(32) NOT NULL, "
    f"deadline DATE NOT NULL, n INTEGER NOT NULL, CONSTRAINT pk_case_tallies_gb PRIMARY KEY ({GB_KEY}))"),
]

# --- SQLite: row-level triggers; NEW/OLD and a sub-select of the branch ---------------------------------

def _sqlite_case(r: str, sign: str) -> str:
    com = f"COALESCE((SELECT b.committee_id FROM branches b WHERE b.id = {r}.branch_id), 0)"
    gb = f"COALESCE((SELECT b.general_branch_id FROM branches b WHERE b.id = {r}.branch_id), 0)"
    return (
        f"INSERT INTO case_tallies ({CT_KEY}, n) SELECT {r}.campaign_id, {com}, {r}.stage, COALESCE({r}.grade, ''), "
        f"COALESCE({r}.previous_grade, ''), COALESCE(json_extract({r}.state, '$.final_grade'), ''), "
        f"COALESCE(json_extract({r}.state, '$.regrade'), ''), COALESCE({r}.deadline, '9999-12-31'), {sign} WHERE true "
        f"ON CONFLICT ({CT_KEY}) DO UPDATE SET n = n + excluded.n;\n"
        f"INSERT INTO case_tallies_gb ({GB_KEY}, n) SELECT {r}.campaign_id, {com}, {gb}, {r}.stage, "
        f"COALESCE({r}.grade, ''), COALESCE({r}.deadline, '9999-12-31'), {sign} WHERE true "
        f"ON CONFLICT ({GB_KEY}) DO UPDATE SET n = n + excluded.n;\n")


def _sqlite_branch(r: str, sign: str) -> str:
    """All the cases of a branch counted under its OLD or NEW committee and general branch."""
    com, gb = f"COALESCE({r}.committee_id, 0)", f"COALESCE({r}.general_branch_id, 0)"
    return (
        f"INSERT INTO case_tallies ({CT_KEY}, n) SELECT c.campaign_id, {com}, c.stage, COALESCE(c.grade, ''), "
        f"COALESCE(c.previous_grade, ''), COALESCE(json_extract(c.state, '$.final_grade'), ''), "
        f"COALESCE(json_extract(c.state, '$.regrade'), ''), COALESCE(c.deadline, '9999-12-31'), {sign} * COUNT(*) "
        f"FROM cases c WHERE c.branch_id = {r}.id GROUP BY 1, 2, 3, 4, 5, 6, 7, 8 "
        f"ON CONFLICT ({CT_KEY}) DO UPDATE SET n = n + excluded.n;\n"
        f"INSERT INTO case_tallies_gb ({GB_KEY}, n) SELECT c.campaign_id, {com}, {gb}, c.stage, COALESCE(c.grade, ''), "
        f"COALESCE(c.deadline, '9999-12-31'), {sign} * COUNT(*) FROM cases c WHERE c.branch_id = {r}.id "
        f"GROUP BY 1, 2, 3, 4, 5, 6 ON CONFLICT ({GB_KEY}) DO UPDATE SET n = n + excluded.n;\n")


# When an update can move a tally: a key column changed, or — the two keys read from the state — the signed
# grade, which the replay sets and clears only when the stage moves (workflow/case.py, _moved: caught by the
# stage), and the re-grade, which an inspection records within the acceptance stage. So the state's JSON is
# parsed only for a save in that stage, not for every save (a record, a signature: most of them). A state
# rewritten behind these rules' back leaves the tallies behind: audit verify reports it (tallies_check).
_CASE_CHANGED_SQLITE = (
    "OLD.campaign_id IS NOT NEW.campaign_id OR OLD.branch_id IS NOT NEW.branch_id OR OLD.stage IS NOT NEW.stage "
    "OR OLD.grade IS NOT NEW.grade OR OLD.previous_grade IS NOT NEW.previous_grade OR OLD.deadline IS NOT NEW.deadline "
    "OR (NEW.stage = 'acceptance' AND json_extract(OLD.state, '$.regrade') IS NOT json_extract(NEW.state, '$.regrade'))")

SQLITE = [
    f"CREATE TRIGGER trg_cases_tally_insert AFTER INSERT ON cases BEGIN\n{_sqlite_case('NEW', '1')}END",
    f"CREATE TRIGGER trg_cases_tally_delete AFTER DELETE ON cases BEGIN\n{_sqlite_case('OLD', '-1')}END",
    ("CREATE TRIGGER trg_cases_tally_update AFTER UPDATE OF campaign_id, branch_id, stage, grade, previous_grade, "
    f"deadline, state ON cases WHEN {_CASE_CHANGED_SQLITE} BEGIN\n{_sqlite_case('OLD', '-1')}{_sqlite_case('NEW', '1')}END"),
    ("CREATE TRIGGER trg_branches_tally_move AFTER UPDATE OF committee_id, general_branch_id ON branches "
    "WHEN OLD.committee_id IS NOT NEW.committee_id OR OLD.general_branch_id IS NOT NEW.general_branch_id BEGIN\n"
    f"{_sqlite_branch('OLD', '-1')}{_sqlite_branch('NEW', '1')}END"),
]

# --- PostgreSQL: plpgsql; statement-level for INSERT/DELETE (transition tables), row-level for UPDATE ---

def _pg_rows(table: str, sign: str) -> str:
    """Grouped upserts of a transition table (the branch of each row by primary key: one probe a row, whatever
    the planner guesses of the transition table's size)."""
    com = "COALESCE((SELECT b.committee_id FROM branches b WHERE b.id = r.branch_id), 0)"
    gb = "COALESCE((SELECT b.general_branch_id FROM branches b WHERE b.id = r.branch_id), 0)"
    return (
        f"INSERT INTO case_tallies ({CT_KEY}, n) SELECT r.campaign_id, {com}, r.stage, COALESCE(r.grade, ''), "
        "COALESCE(r.previous_grade, ''), COALESCE(r.state->>'final_grade', ''), COALESCE(r.state->>'regrade', ''), "
        f"COALESCE(r.deadline, DATE '9999-12-31'), {sign} * COUNT(*) FROM {table} r "
        f"GROUP BY 1, 2, 3, 4, 5, 6, 7, 8 ORDER BY 1, 2, 3, 4, 5, 6, 7, 8 "
        f"ON CONFLICT ({CT_KEY}) DO UPDATE SET n = case_tallies.n + EXCLUDED.n;\n"
        f"  INSERT INTO case_tallies_gb ({GB_KEY}, n) SELECT r.campaign_id, {com}, {gb}, r.stage, "
        f"COALESCE(r.grade, ''), COALESCE(r.deadline, DATE '9999-12-31'), {sign} * COUNT(*) FROM {table} r "
        f"GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6 "
        f"ON CONFLICT ({GB_KEY}) DO UPDATE SET n = case_tallies_gb.n + EXCLUDED.n;\n")


def _pg_ct(camp: str, com: str, stage: str, vals: str, sign: str) -> str:
    return (f"    INSERT INTO case_tallies ({CT_KEY}, n) VALUES ({camp}, {com}, {stage}, {vals}, {sign}) "
            f"ON CONFLICT ({CT_KEY}) DO UPDATE SET n = case_tallies.n + EXCLUDED.n;\n")


def _pg_gb(camp: str, com: str, gb: str, stage: str, vals: str, sign: str) -> str:
    return (f"    INSERT INTO case_tallies_gb ({GB_KEY}, n) VALUES ({camp}, {com}, {gb}, {stage}, {vals}, {sign}) "
            f"ON CONFLICT ({GB_KEY}) DO UPDATE SET n = case_tallies_gb.n + EXCLUDED.n;\n")


_OLD_CT = ("OLD.campaign_id", "oc", "OLD.stage", "og1, op1, of1, or1, od")
_NEW_CT = ("NEW.campaign_id", "nc", "NEW.stage", "ng1, np1, nf1, nr1, nd")
_OLD_GB = ("OLD.campaign_id", "oc", "og", "OLD.stage", "og1, od")
_NEW_GB = ("NEW.campaign_id", "nc", "ng", "NEW.stage", "ng1, nd")

PG = [
    # a case whose key changed: -1 under the old key, +1 under the new one, as plain statements (plpgsql keeps
    # their plans); the two rows of each table are taken in key order, so two cases moving in opposite
    # directions between the same keys cannot deadlock
    ("CREATE FUNCTION bf_tally_case_update() RETURNS trigger LANGUAGE plpgsql AS $$\n"
     "DECLARE oc integer; og integer; nc integer; ng integer;\n"
     "  og1 text := COALESCE(OLD.grade, ''); ng1 text := COALESCE(NEW.grade, '');\n"
     "  op1 text := COALESCE(OLD.previous_grade, ''); np1 text := COALESCE(NEW.previous_grade, '');\n"
     "  of1 text := COALESCE(OLD.state->>'final_grade', ''); nf1 text := COALESCE(NEW.state->>'final_grade', '');\n"
     "  or1 text := COALESCE(OLD.state->>'regrade', ''); nr1 text := COALESCE(NEW.state->>'regrade', '');\n"
     "  od date := COALESCE(OLD.deadline, DATE '9999-12-31'); nd date := COALESCE(NEW.deadline, DATE '9999-12-31');\n"
     "BEGIN\n"
     "  SELECT b.committee_id, b.general_branch_id INTO oc, og FROM branches b WHERE b.id = OLD.branch_id;\n"
     "  IF NEW.branch_id = OLD.branch_id THEN nc := oc; ng := og;\n"
     "  ELSE SELECT b.committee_id, b.general_branch_id INTO nc, ng FROM branches b WHERE b.id = NEW.branch_id;\n"
     "  END IF;\n"
     "  oc := COALESCE(oc, 0); og := COALESCE(og, 0); nc := COALESCE(nc, 0); ng := COALESCE(ng, 0);\n"
     "  IF (OLD.campaign_id, oc, OLD.stage, og1, op1, of1, or1, od) < (NEW.campaign_id, nc, NEW.stage, ng1, np1, nf1, nr1, nd) "
     "THEN\n" + _pg_ct(*_OLD_CT, "-1") + _pg_ct(*_NEW_CT, "1")
     + "  ELSIF (OLD.campaign_id, oc, OLD.stage, og1, op1, of1, or1, od) > "
     "(NEW.campaign_id, nc, NEW.stage, ng1, np1, nf1, nr1, nd) THEN\n" + _pg_ct(*_NEW_CT, "1") + _pg_ct(*_OLD_CT, "-1")
     + "  END IF;\n"
     "  IF (OLD.campaign_id, oc, og, OLD.stage, og1, od) < (NEW.campaign_id, nc, ng, NEW.stage, ng1, nd) THEN\n"
     + _pg_gb(*_OLD_GB, "-1") + _pg_gb(*_NEW_GB, "1")
     + "  ELSIF (OLD.campaign_id, oc, og, OLD.stage, og1, od) > (NEW.campaign_id, nc, ng, NEW.stage, ng1, nd) THEN\n"
     + _pg_gb(*_NEW_GB, "1") + _pg_gb(*_OLD_GB, "-1")
     + "  END IF;\n"
     "  RETURN NULL;\n"
     "END $$"),
    "CREATE FUNCTION bf_tally_cases_inserted() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n  "
    + _pg_rows("new_cases", "1") + "  RETURN NULL;\nEND $$",
    "CREATE FUNCTION bf_tally_cases_deleted() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n  "
    + _pg_rows("old_cases", "-1") + "  RETURN NULL;\nEND $$",
    # a branch moving committee or general branch: its cases (one per campaign) move with it
    ("CREATE FUNCTION bf_tally_branch_moved() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n"
    f"  INSERT INTO case_tallies ({CT_KEY}, n) SELECT c.campaign_id, m.com, c.stage, COALESCE(c.grade, ''), "
    "COALESCE(c.previous_grade, ''), COALESCE(c.state->>'final_grade', ''), COALESCE(c.state->>'regrade', ''), "
    "COALESCE(c.deadline, DATE '9999-12-31'), SUM(m.sign) FROM cases c CROSS JOIN (VALUES "
    "(COALESCE(OLD.committee_id, 0), -1), (COALESCE(NEW.committee_id, 0), 1)) AS m(com, sign) "
    "WHERE c.branch_id = NEW.id GROUP BY 1, 2, 3, 4, 5, 6, 7, 8 HAVING SUM(m.sign) <> 0 ORDER BY 1, 2, 3, 4, 5, 6, 7, 8 "
    f"ON CONFLICT ({CT_KEY}) DO UPDATE SET n = case_tallies.n + EXCLUDED.n;\n"
    f"  INSERT INTO case_tallies_gb ({GB_KEY}, n) SELECT c.campaign_id, m.com, m.gb, c.stage, COALESCE(c.grade, ''), "
    "COALESCE(c.deadline, DATE '9999-12-31'), SUM(m.sign) FROM cases c CROSS JOIN (VALUES "
    "(COALESCE(OLD.committee_id, 0), COALESCE(OLD.general_branch_id, 0), -1), "
    "(COALESCE(NEW.committee_id, 0), COALESCE(NEW.general_branch_id, 0), 1)) AS m(com, gb, sign) "
    "WHERE c.branch_id = NEW.id GROUP BY 1, 2, 3, 4, 5, 6 HAVING SUM(m.sign) <> 0 ORDER BY 1, 2, 3, 4, 5, 6 "
    f"ON CONFLICT ({GB_KEY}) DO UPDATE SET n = case_tallies_gb.n + EXCLUDED.n;\n"
    "  RETURN NULL;\nEND $$"),
    ("CREATE TRIGGER trg_cases_tally_insert AFTER INSERT ON cases REFERENCING NEW TABLE AS new_cases "
    "FOR EACH STATEMENT EXECUTE FUNCTION bf_tally_cases_inserted()"),
    ("CREATE TRIGGER trg_cases_tally_delete AFTER DELETE ON cases REFERENCING OLD TABLE AS old_cases "
    "FOR EACH STATEMENT EXECUTE FUNCTION bf_tally_cases_deleted()"),
    ("CREATE TRIGGER trg_cases_tally_update AFTER UPDATE OF campaign_id, branch_id, stage, grade, previous_grade, "
    "deadline, state ON cases FOR EACH ROW WHEN (OLD.campaign_id IS DISTINCT FROM NEW.campaign_id "
    "OR OLD.branch_id IS DISTINCT FROM NEW.branch_id OR OLD.stage IS DISTINCT FROM NEW.stage "
    "OR OLD.grade IS DISTINCT FROM NEW.grade OR OLD.previous_grade IS DISTINCT FROM NEW.previous_grade "
    "OR OLD.deadline IS DISTINCT FROM NEW.deadline "  # the state's keys: as _CASE_CHANGED_SQLITE says
    "OR (NEW.stage = 'acceptance' AND (OLD.state->>'regrade') IS DISTINCT FROM (NEW.state->>'regrade'))) "
    "EXECUTE FUNCTION bf_tally_case_update()"),
    ("CREATE TRIGGER trg_branches_tally_move AFTER UPDATE OF committee_id, general_branch_id ON branches "
    "FOR EACH ROW WHEN (OLD.committee_id IS DISTINCT FROM NEW.committee_id "
    "OR OLD.general_branch_id IS DISTINCT FROM NEW.general_branch_id) EXECUTE FUNCTION bf_tally_branch_moved()"),
]


def _backfill(pg: bool) -> list[str]:
    fin, reg = (("c.state->>'final_grade'", "c.state->>'regrade'") if pg else
                ("json_extract(c.state, '$.final_grade')", "json_extract(c.state, '$.regrade')"))
    none_day = "DATE '9999-12-31'" if pg else "'9999-12-31'"
    return [
        (f"INSERT INTO case_tallies ({CT_KEY}, n) SELECT c.campaign_id, COALESCE(b.committee_id, 0), c.stage, "
        f"COALESCE(c.grade, ''), COALESCE(c.previous_grade, ''), COALESCE({fin}, ''), COALESCE({reg}, ''), "
        f"COALESCE(c.deadline, {none_day}), COUNT(*) FROM cases c LEFT JOIN branches b ON b.id = c.branch_id "
        "GROUP BY 1, 2, 3, 4, 5, 6, 7, 8"),
        (f"INSERT INTO case_tallies_gb ({GB_KEY}, n) SELECT c.campaign_id, COALESCE(b.committee_id, 0), "
        f"COALESCE(b.general_branch_id, 0), c.stage, COALESCE(c.grade, ''), COALESCE(c.deadline, {none_day}), "
        "COUNT(*) FROM cases c LEFT JOIN branches b ON b.id = c.branch_id GROUP BY 1, 2, 3, 4, 5, 6"),
    ]


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    for stmt in TABLES + (PG if pg else SQLITE) + _backfill(pg):
        op.execute(stmt)


def downgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    for name, table in (("trg_cases_tally_insert", "cases"), ("trg_cases_tally_delete", "cases"),
                        ("trg_cases_tally_update", "cases"), ("trg_branches_tally_move", "branches")):
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}" if pg else f"DROP TRIGGER IF EXISTS {name}")
    if pg:
        for fn in ("bf_tally_case_update()", "bf_tally_cases_inserted()", "bf_tally_cases_deleted()",
                   "bf_tally_branch_moved()"):
            op.execute(f"DROP FUNCTION IF EXISTS {fn}")
    op.execute("DROP TABLE case_tallies_gb")
    op.execute("DROP TABLE case_tallies")
