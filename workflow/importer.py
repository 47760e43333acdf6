"""Organisation import: committees, general branches, branches and their secretaries from CSV or XLSX.

All or nothing: every row is validated first; one bad row raises :class:`ImportRejected` naming each
bad row, column and problem, and nothing is written. Rows are upserted by branch code, so importing
the same file twice changes nothing the second time.

Memory does not grow with the file (issue 13, item 5): :func:`import_file` reads the file as a stream,
validates each row as it comes and spools the valid ones, in batches, to an anonymous temporary file;
only when the whole file is valid does it write, a batch at a time, from the spool. What it keeps across
rows is small: the committees and general branches named (a few), the parents asked for, and — to name
a repeated branch code with the row that first used it — every code with its row (O(rows), about
100 bytes a row).
"""

from __future__ import annotations

import csv
import datetime as dt
import marshal
import re
import struct
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from states.base import Role
from workflow import limits
from workflow.campaign import BRANCH_TYPE_LABELS, BRANCH_TYPES
from workflow.errors import ImportRejected, InvalidInput, RowProblem
from workflow.models import Branch, Committee, GeneralBranch, Person, RoleAssignment

# Canonical column → accepted headers (Chinese first).
COLUMNS: dict[str, tuple[str, ...]] = {
    "committee": ("党委", "所属党委", "committee"),
    "committee_code": ("党委编码", "committee_code"),
    "parent_committee_code": ("上级党委编码", "parent_committee_code"),  # optional: the tree (issue 12)
    "general_branch": ("党总支", "所属党总支", "general_branch"),
    "general_branch_code": ("党总支编码", "general_branch_code"),
    "code": ("支部编码", "支部代码", "code", "branch_code"),
    "name": ("支部名称", "党支部名称", "name", "branch_name"),
    "branch_type": ("支部类型", "类型", "type", "branch_type"),
    "secretary_name": ("书记姓名", "支部书记", "secretary_name"),
    "secretary_email": ("书记邮箱", "支部书记邮箱", "secretary_email"),
    "member_count": ("党员人数", "member_count"),
    "last_reelection": ("上次换届日期", "换届日期", "last_reelection"),
    "last_activity": ("最近活动日期", "last_activity"),
    "secretary_violation": ("书记近两年严重违纪", "书记严重违纪", "secretary_violation"),
}
REQUIRED = ("committee", "code", "name", "branch_type", "secretary_name", "secretary_email", "member_count")
LABEL = {k: v[0] for k, v in COLUMNS.items()}
TYPE_BY_LABEL = {label: key for key, label in BRANCH_TYPE_LABELS.items()}
TRUE = {"是", "有", "true", "yes", "y", "1"}
FALSE = {"否", "无", "false", "no", "n", "0", ""}
NAMES = {"committee": "org_name", "general_branch": "org_name", "name": "org_name", "secretary_name": "person_name"}


@dataclass(frozen=True, kw_only=True)
class OrgRow:
    row: int
    committee: str
    committee_code: str
    general_branch: str | None
    general_branch_code: str | None
    code: str
    name: str
    branch_type: str
    secretary_name: str
    secretary_email: str
    member_count: int
    last_reelection: dt.date | None
    last_activity: dt.date | None
    secretary_violation: bool
    parent_committee_code: str | None = None


@dataclass(frozen=True, kw_only=True)
class ImportResult:
    rows: int
    created: int
    updated: int
    unchanged: int
    committees: int
    general_branches: int


_NOT_UTF8 = "不是 UTF-8 编码的 CSV（请另存为“CSV UTF-8”）"


def _rows_csv(path: Path) -> Iterator[list[str]]:
    """The CSV's rows as they are read (the file is decoded a block at a time, never held whole)."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        try:
            yield from csv.reader(f)
        except UnicodeDecodeError:
            raise ImportRejected([RowProblem(row=1, column="(文件)", problem=_NOT_UTF8)]) from None


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, dt.datetime):
        return v.date().isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _rows_xlsx(path: Path) -> Iterator[list[str]]:
    """The first sheet's rows as openpyxl's read-only mode streams them."""
    from openpyxl import load_workbook

    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception:  # noqa: BLE001 — openpyxl raises several unrelated types for a broken file (its words are English)
        raise ImportRejected([RowProblem(row=1, column="(文件)", problem="无法读取 XLSX 文件：文件已损坏，或不是 Excel 工作簿（.xlsx）")]) from None
    try:
        ws = wb.worksheets[0]
        for r in ws.iter_rows(values_only=True):
            yield [_cell(v) for v in r]
    finally:
        wb.close()


def open_table(path: str | Path) -> Iterator[list[str]]:
    """The file's rows, read as they are consumed; the file's existence, size and type are checked now."""
    p = Path(path)
    if not p.exists():
        raise InvalidInput(f"找不到文件 {p}")
    size = p.stat().st_size
    if size > limits.IMPORT_MAX_BYTES:
        raise ImportRejected([RowProblem(row=1, column="(文件)", problem=(
            f"文件过大：{size / 1048576:.1f} MB，最多 {limits.IMPORT_MAX_BYTES // 1048576} MB；请分批导入"))])
    if p.suffix.lower() in (".xlsx", ".xlsm"):
        rows = _rows_xlsx(p)
    elif p.suffix.lower() in (".csv", ".txt"):
        rows = _rows_csv(p)
    else:
        raise InvalidInput(f"不支持的文件类型 {p.suffix[:16]!r}：请使用 .csv（UTF-8）或 .xlsx")
    return rows


def read_table(path: str | Path) -> list[list[str]]:
    """The whole table at once (small files, tests); :func:`import_file` streams :func:`open_table`."""
    return list(open_table(path))


def _date(v: str) -> dt.date:
    s = v.strip().replace("/", "-").replace(".", "-")
    m = re.fullmatch(r"(\d{4})年(\d{1,2})月(\d{1,2})日", v.strip())
    if m:
        s = f"{m.group(1)}-{int(m.group(2)):02d}-{int(m.group(3)):02d}"
    parts = s.split("-")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        return dt.date(int(parts[0]), int(parts[1]), int(parts[2]))
    raise ValueError


def parse_rows(table: Iterable[list[str]]) -> list[OrgRow]:
    """Validate a whole table; raise :class:`ImportRejected` with every problem found."""
    return list(validated(table))


def validated(table: Iterable[list[str]]) -> Iterator[OrgRow]:
    """The table's valid rows as they are read; at the end, :class:`ImportRejected` with every problem
    found (so a consumer must not act on what it got before the iteration ends without an error).

    Blank rows are skipped and not counted (row numbers count the rows that are not blank); too many
    rows is said alone (the rows past the limit are only counted), then missing columns alone."""
    rows = (r for r in table if any(c.strip() for c in r))
    first = next(rows, None)
    if first is None:
        raise ImportRejected([RowProblem(row=1, column="(文件)", problem="文件为空")])
    header = [h.strip().lstrip("\ufeff") for h in first]
    index: dict[str, int] = {}
    problems: list[RowProblem] = []
    for col, names in COLUMNS.items():
        for i, h in enumerate(header):
            if h in names or h.lower() in names:
                index[col] = i
                break
    for col in REQUIRED:
        if col not in index:
            problems.append(RowProblem(row=1, column=LABEL[col], problem=f"缺少必需的列（可用列名：{'、'.join(COLUMNS[col])}）"))
    header_problems = bool(problems)
    n = 1
    seen_codes: dict[str, int] = {}
    for raw in rows:
        n += 1
        if header_problems or n - 1 > limits.IMPORT_MAX_ROWS:
            continue  # counted only: the file is refused for its columns or its length

        def get(col: str) -> str:  # the closures below are used only within this iteration
            i = index.get(col)
            return raw[i].strip() if i is not None and i < len(raw) else ""  # noqa: B023

        def bad(col: str, msg: str) -> None:
            problems.append(RowProblem(row=n, column=LABEL[col], problem=msg))  # noqa: B023

        before = len(problems)
        for col in REQUIRED:
            if not get(col):
                bad(col, "不能为空")
        for col, kind in NAMES.items():
            if get(col) and (problem := limits.check_name(get(col), "", kind)):
                bad(col, problem)
        committee_code = get("committee_code") or get("committee")
        gb_code = (get("general_branch_code") or get("general_branch")) if get("general_branch") else ""
        if get("parent_committee_code") and (problem := limits.check_code(get("parent_committee_code"), "编码")):
            bad("parent_committee_code", problem)
        elif get("parent_committee_code") and get("parent_committee_code") == committee_code:
            bad("parent_committee_code", "上级党委不能是本党委自己")
        for col, value in (("committee_code", committee_code), ("general_branch_code", gb_code), ("code", get("code"))):
            if value and (problem := limits.check_code(value, "编码")):
                # a code named after its name: say so, the name itself may be fine elsewhere
                shown = col if get(col) or col == "code" else {"committee_code": "committee"}.get(col, "general_branch")
                bad(shown, problem + ("" if get(col) else f"（未给出“{LABEL[col]}”列时以名称作编码）"))
        code = get("code")
        if code in seen_codes:
            bad("code", f"支部编码 {code} 与第 {seen_codes[code]} 行重复")
        elif code:
            seen_codes[code] = n
        btype_raw = get("branch_type")
        btype = TYPE_BY_LABEL.get(btype_raw, btype_raw if btype_raw in BRANCH_TYPES else "")
        if btype_raw and not btype:
            bad("branch_type", f"未知的支部类型 {btype_raw[:40]!r}；可用：{'、'.join(BRANCH_TYPE_LABELS.values())}")
        email = get("secretary_email").lower()
        if email and (problem := limits.check_email(email, "")):
            bad("secretary_email", f"{email[:60]!r} {problem}")
        members = 0
        if get("member_count"):
            parsed, problem = limits.parse_int(get("member_count"), "党员人数", "member_count")
            if problem:
                bad("member_count", problem)
            members = parsed or 0
        dates: dict[str, dt.date | None] = {}
        for col in ("last_reelection", "last_activity"):
            v = get(col)
            dates[col] = None
            if v:
                try:
                    d = _date(v)
                    if not dt.date(1900, 1, 1) <= d <= dt.date(2100, 12, 31):
                        raise ValueError
                    dates[col] = d
                except (ValueError, OverflowError):
                    bad(col, f"{v[:40]!r} 不是合理的日期（格式：2026-03-01）")
        viol = get("secretary_violation").lower()
        if viol not in TRUE | FALSE:
            bad("secretary_violation", f"{get('secretary_violation')[:40]!r} 应为“是”或“否”")
        if len(problems) > before:
            continue
        committee = get("committee")
        gb = get("general_branch") or None
        yield OrgRow(
            row=n, committee=committee, committee_code=get("committee_code") or committee,
            general_branch=gb, general_branch_code=(get("general_branch_code") or gb) if gb else None,
            code=code, name=get("name"), branch_type=btype, secretary_name=get("secretary_name"),
            secretary_email=email, member_count=members, last_reelection=dates["last_reelection"],
            last_activity=dates["last_activity"], secretary_violation=viol in TRUE,
            parent_committee_code=get("parent_committee_code") or None,
        )
    if n - 1 > limits.IMPORT_MAX_ROWS:
        raise ImportRejected([RowProblem(row=limits.IMPORT_MAX_ROWS + 2, column="(文件)", problem=(
            f"数据行过多：{n - 1} 行，最多 {limits.IMPORT_MAX_ROWS} 行；请分批导入"))])
    if header_problems:
        raise ImportRejected(problems)
    if n == 1:
        problems.append(RowProblem(row=2, column="(文件)", problem="没有数据行"))
    if problems:
        raise ImportRejected(problems)


def _ensure_person(session: Session, email: str, name: str) -> Person:
    p = session.scalar(select(Person).where(Person.email == email))
    if p is None:
        p = Person(email=email, name=name)
        session.add(p)
        session.flush()
    elif p.name != name:
        p.name = name
    return p


def grant(session: Session, person: Person, role: Role, scope: str = "") -> bool:
    """Give ``person`` the role in ``scope`` (a branch, general-branch or committee code); True if new."""
    exists = session.scalar(
        select(RoleAssignment).where(
            RoleAssignment.person_id == person.id, RoleAssignment.role == role.value, RoleAssignment.scope_code == scope
        )
    )
    if exists:
        return False
    session.add(RoleAssignment(person_id=person.id, role=role.value, scope_code=scope))
    session.info.pop("branchflow.committee_size", None)  # the quorum may change
    return True


IMPORT_BATCH = 5000  # rows per round of statements (one SELECT of the existing codes per batch)
_BRANCH_FIELDS = ("name", "branch_type", "committee_id", "general_branch_id", "secretary_name", "secretary_email",
                  "member_count", "last_reelection", "last_activity", "secretary_violation")


class _Org:
    """What one pass over the rows gathers for the writes: the committees and general branches the rows
    name (a few), the parents they ask for and the number of rows — not the rows themselves."""

    def __init__(self) -> None:
        self.rows = 0
        self.committees: dict[str, list[str]] = {}  # code → [first name, last name], in the order first named
        self.gbs: dict[str, list[str]] = {}  # code → [first name, its committee's code, last name, its committee's]
        self.wanted: dict[str, tuple[int, str]] = {}  # committee code → (first row naming a parent, that parent)
        self.conflicts: list[RowProblem] = []  # a committee given two parents

    def add(self, r: OrgRow) -> None:
        self.rows += 1
        c = self.committees.get(r.committee_code)
        if c is None:
            self.committees[r.committee_code] = [r.committee, r.committee]
        else:
            c[1] = r.committee
        if r.general_branch_code:
            name = r.general_branch or ""
            g = self.gbs.get(r.general_branch_code)
            if g is None:
                self.gbs[r.general_branch_code] = [name, r.committee_code, name, r.committee_code]
            else:
                g[2], g[3] = name, r.committee_code
        if r.parent_committee_code:
            seen = self.wanted.get(r.committee_code)
            if seen is not None and seen[1] != r.parent_committee_code:
                self.conflicts.append(RowProblem(row=r.row, column=LABEL["parent_committee_code"], problem=(
                    f"党委 {r.committee_code} 的上级与第 {seen[0]} 行不一致（{seen[1]}）")))
            self.wanted.setdefault(r.committee_code, (r.row, r.parent_committee_code))


def import_rows(session: Session, rows: Sequence[OrgRow]) -> ImportResult:
    """Upsert validated rows in the caller's transaction.

    Committees and general branches (a few) go through the ORM; branches, their secretaries and the
    secretaries' roles (up to a province's 100,000) are written with Core statements in batches: per batch
    one SELECT of the existing branch codes, people and roles, then multi-row INSERTs and executemany
    UPDATEs of only what changed.
    """
    org = _Org()
    for r in rows:
        org.add(r)
    return _import(session, org, (rows[lo:lo + IMPORT_BATCH] for lo in range(0, len(rows), IMPORT_BATCH)))


def _import(session: Session, org: _Org, batches: Iterable[Sequence[OrgRow]]) -> ImportResult:
    """The writes of :func:`import_rows` from what :class:`_Org` gathered and the rows' batches, in order.

    The committees and general branches end as the rows' last mention of them says (their name, a general
    branch's committee); new ones are created in the order first named, with what that row said."""
    committees = {c.code: c for c in session.scalars(select(Committee))}
    gbs = {g.code: g for g in session.scalars(select(GeneralBranch))}
    new_committees = new_gbs = 0
    for code, (first, last) in org.committees.items():
        c = committees.get(code)
        if c is None:
            c = committees[code] = Committee(code=code, name=first)
            session.add(c)
            session.flush()
            new_committees += 1
        if c.name != last:
            c.name = last
    for code, (first, first_committee, last, last_committee) in org.gbs.items():
        g = gbs.get(code)
        if g is None:
            g = gbs[code] = GeneralBranch(code=code, name=first, committee_id=committees[first_committee].id)
            session.add(g)
            session.flush()
            new_gbs += 1
        cid = committees[last_committee].id
        if g.name != last or g.committee_id != cid:
            g.name, g.committee_id = last, cid
    session.flush()
    _place_committees(session, org, committees)
    committee_ids = {code: c.id for code, c in committees.items()}
    gb_ids = {code: g.id for code, g in gbs.items()}
    created = updated = unchanged = 0
    for batch in batches:
        n_new, n_changed, n_same = _write_batch(session, batch, committee_ids, gb_ids)
        created, updated, unchanged = created + n_new, updated + n_changed, unchanged + n_same
    # Core statements bypass the unit of work: what this session holds of the rows written is refreshed
    # on next access, and the per-session caches of roles and quorums start again.
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Branch | Person | RoleAssignment):
            session.expire(obj)
    session.info.pop("branchflow.committee_size", None)
    session.info.pop("branchflow.actors", None)
    from workflow.masterlog import IMPORT_ACTOR, record_master_changes

    record_master_changes(session, actor=IMPORT_ACTOR)  # the audit log of master data (issue 11)
    from workflow.tenancy import adopt_campaigns

    adopt_campaigns(session)  # the first committee takes the campaigns made before it (issue 12)
    return ImportResult(rows=org.rows, created=created, updated=updated, unchanged=unchanged,
                        committees=new_committees, general_branches=new_gbs)


def _place_committees(session: Session, org: _Org, committees: dict[str, Committee]) -> None:
    """Put committees under the parent the file names (上级党委编码): a committee already in the database or
    in the file; a move that would make a cycle, or an unknown parent, rejects the whole file (issue 12)."""
    from workflow import tenancy

    tenancy.fill_paths(session)
    wanted = org.wanted
    problems: list[RowProblem] = list(org.conflicts)
    for code, (row, parent) in wanted.items():
        if parent not in committees and session.scalar(select(Committee.id).where(Committee.code == parent)) is None:
            problems.append(RowProblem(row=row, column=LABEL["parent_committee_code"], problem=(
                f"找不到上级党委 {parent[:64]!r}：请先用 `branchflow committee add` 添加，或在本文件中导入")))
    if problems:
        raise ImportRejected(problems)
    for code, (row, parent) in sorted(wanted.items()):
        c = committees[code]
        up = session.scalar(select(Committee.id).where(Committee.code == parent))
        if c.parent_id == up:
            continue
        try:
            tenancy.move_committee(session, code, parent)
        except InvalidInput as exc:
            raise ImportRejected([RowProblem(row=row, column=LABEL["parent_committee_code"], problem=str(exc))]) from None
    for code in list(committees):
        committees[code] = tenancy.get_committee(session, code)


def _write_batch(session: Session, rows: Sequence[OrgRow], committee_ids: dict[str, int],
                 gb_ids: dict[str, int]) -> tuple[int, int, int]:
    branches, people, roles = Branch.__table__, Person.__table__, RoleAssignment.__table__
    assert isinstance(branches, Table) and isinstance(people, Table) and isinstance(roles, Table)
    by_code = {r.code: r for r in rows}
    conn = session.connection()  # Core on the session's connection: no ORM layer per statement
    existing = {row[0]: row for row in conn.execute(
        select(branches.c.code, branches.c.id, *(branches.c[f] for f in _BRANCH_FIELDS))
        .where(branches.c.code.in_(list(by_code))))}
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    created = changed = same = 0
    for r in by_code.values():  # parse_rows refuses a repeated code; a direct caller's later row wins
        values = _values_of(r, committee_ids, gb_ids)
        old = existing.get(r.code)
        if old is None:
            inserts.append({"code": r.code, **values})
            created += 1
        elif any(old[2 + i] != values[f] for i, f in enumerate(_BRANCH_FIELDS)):
            updates.append({"b_id": old[1], **{f"b_{k}": v for k, v in values.items()}})
            changed += 1
        else:
            same += 1
    if inserts:
        conn.execute(insert(branches), inserts)
    if updates:
        conn.execute(update(branches).where(branches.c.id == bindparam("b_id"))
                        .values({f: bindparam(f"b_{f}") for f in _BRANCH_FIELDS}), updates)
    # the secretaries: one person per e-mail (the last name given wins), then the branch_secretary roles
    names: dict[str, str] = {}
    for r in by_code.values():
        names[r.secretary_email] = r.secretary_name
    known = {e: (i, n) for e, i, n in conn.execute(
        select(people.c.email, people.c.id, people.c.name).where(people.c.email.in_(list(names))))}
    fresh = [{"email": e, "name": n} for e, n in names.items() if e not in known]
    if fresh:
        conn.execute(insert(people), fresh)
    renamed = [{"p_id": known[e][0], "p_name": n} for e, n in names.items() if e in known and known[e][1] != n]
    if renamed:
        conn.execute(update(people).where(people.c.id == bindparam("p_id")).values(name=bindparam("p_name")),
                        renamed)
    if fresh:
        known.update({e: (i, n) for e, i, n in conn.execute(
            select(people.c.email, people.c.id, people.c.name).where(people.c.email.in_([f["email"] for f in fresh])))})
    role = Role.branch_secretary.value
    held = conn.execute(select(roles.c.id, roles.c.person_id, roles.c.scope_code)
                           .where(roles.c.role == role, roles.c.scope_code.in_(list(by_code)))).all()
    want = {code: known[r.secretary_email][0] for code, r in by_code.items()}
    gone = [rid for rid, pid, scope in held if want.get(scope) != pid]
    have = {(pid, scope) for _, pid, scope in held}
    grants = [{"person_id": pid, "role": role, "scope_code": code} for code, pid in want.items()
              if (pid, code) not in have]
    if gone:
        conn.execute(delete(roles).where(roles.c.id.in_(gone)))
    if grants:
        conn.execute(insert(roles), grants)
    return created, changed, same


def _values_of(r: OrgRow, committee_ids: dict[str, int], gb_ids: dict[str, int]) -> dict[str, Any]:
    return {
        "name": r.name, "branch_type": r.branch_type, "committee_id": committee_ids[r.committee_code],
        "general_branch_id": gb_ids[r.general_branch_code] if r.general_branch_code else None,
        "secretary_name": r.secretary_name, "secretary_email": r.secretary_email,
        "member_count": r.member_count, "last_reelection": r.last_reelection, "last_activity": r.last_activity,
        "secretary_violation": r.secretary_violation,
    }


_FIELDS = tuple(OrgRow.__dataclass_fields__)
_LEN = struct.Struct("<Q")


class _Spool:
    """Valid rows on disk, a batch at a time, in the order read: an anonymous temporary file (gone when
    closed, or when the process ends) holding each batch as one length-prefixed ``marshal`` blob of plain
    tuples — what this process wrote itself, read back once by it."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.batch: list[tuple[Any, ...]] = []

    def add(self, r: OrgRow) -> None:
        t = tuple(getattr(r, f) for f in _FIELDS)
        self.batch.append(tuple(v.toordinal() if isinstance(v, dt.date) else v for v in t))
        if len(self.batch) == IMPORT_BATCH:
            self._write()

    def _write(self) -> None:
        blob = marshal.dumps(self.batch)
        self.file.write(_LEN.pack(len(blob)) + blob)
        self.batch = []

    def batches(self) -> Iterator[list[OrgRow]]:
        if self.batch:
            self._write()
        self.file.seek(0)
        dates = {_FIELDS.index("last_reelection"), _FIELDS.index("last_activity")}
        while head := self.file.read(_LEN.size):
            rows: list[OrgRow] = []
            for t in marshal.loads(self.file.read(_LEN.unpack(head)[0])):  # this process's own spool
                r = object.__new__(OrgRow)  # the fields as validated, without the frozen dataclass's __init__
                r.__dict__.update(zip(_FIELDS, (dt.date.fromordinal(v) if i in dates and v is not None else v
                                                for i, v in enumerate(t)), strict=True))
                rows.append(r)
            yield rows


def import_file(session: Session, path: str | Path) -> ImportResult:
    """Validate the whole file, streaming it, then write it in batches (see the module's docstring)."""
    table = open_table(path)
    org = _Org()
    with tempfile.TemporaryFile(prefix="branchflow-import-") as f:
        spool = _Spool(f)
        for r in validated(table):  # raises ImportRejected at the end, before anything is written
            org.add(r)
            spool.add(r)
        return _import(session, org, spool.batches())
