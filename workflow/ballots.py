"""Online ballots for the member evaluation (党员群众测评): one code, one vote, no name on it.

Use cases (each takes a Session and ``now``, never commits): :func:`open_ballot`, :func:`issue_codes`
(anonymous codes for an on-site meeting, printed as QR codes), :func:`add_voters` (named voters, whose
codes go out by e-mail through the outbox — see ``notifications/ballots.py``), :func:`cast_vote`,
:func:`close_ballot` / :func:`close_due` (the tally), :func:`reissue_for_reminder`, and the pure
:func:`recount` of an export.

**Anonymity.** Two tables, no shared key but the ballot's id:

* ``ballot_voters`` — who may vote: a random id, the kind (党员 / 群众代表 / 现场匿名码), name and e-mail
  for named voters, the sha256 of the code, and whether it was used. Never *when* it was used.
* ``ballot_responses`` — what was answered: a random 128-bit id, the ballot id and the answers. No time,
  no code, no voter. On SQLite it is a ``WITHOUT ROWID`` table, so rows are stored in the order of the
  random key and a file dump (``.dump`` lists rows in key order) does not show voting order.

A vote is one transaction under the ballot's lock (:func:`_lock`: votes, new codes and the closing of
one ballot are serialised, so a vote accepted while the ballot closes is counted, never lost):
``UPDATE ballot_voters SET voted = true WHERE id = … AND voted = false`` (no row changed → the code was
used: refused), one INSERT of the response, and a rewrite of all the ballot's responses with fresh keys
in random order — so PostgreSQL's ``xmin`` (the writer's transaction id, on every row, readable by anyone
who may SELECT) no longer joins a response to the voter row marked used in the same transaction.

**Residual risks, stated honestly.**

* PostgreSQL keeps heap tables in insertion order. The responses are rewritten in random order at
  every vote, but the updated ``ballot_voters`` tuples (their ``ctid``, readable with SELECT) land
  in the heap in the order they were marked used: that shows the order in which voters voted (not
  what). :func:`close_ballot` rewrites both tables of the ballot at closing (voter rows in id order),
  so after closing — once VACUUM has reclaimed the dead tuples — that order is gone too. A WAL archive
  or logical replication stream records every change in order, so whoever holds one can still
  correlate each vote's transaction. Only
  a database operator watching during the vote can do this; the application stores nothing that links
  a ballot to a code, a voter or a time.
* The same operator could watch the live tables and pair each ``voted`` flip with the new response
  row; that is a live-surveillance attack no storage layout prevents.
* An e-mailed code sits in plain text in the outbox row until the mail is sent (the mail must carry
  it); ``notifications/ballots.py`` blanks it at the first sweep after the delivery is done, and at closing. The code
  lets someone vote *instead of* the voter, never see how the voter voted.
* Web server access logs record the request path ``/v/<code>`` with the client address and time; keep
  them off or short-lived on the server that serves ballots.

**Verifiability.** The closing event carries ``commitment = sha256(canonical sorted ballots)``; the export
(JSON or CSV) lists the same anonymous ballots, so anyone can recount and recompute the commitment
(:func:`recount`, ``branchflow ballot recount FILE``, the snippet in docs/ballots.md).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import ipaddress
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from states.base import Role, Stage
from states.member_evaluation import MemberEvaluationRecord, tally_of
from workflow import service
from workflow.audit import iso
from workflow.errors import (
    BranchflowError,
    Forbidden,
    InvalidInput,
    NotFound,
    TransitionRefused,
    from_json_error,
)
from workflow.models import BallotAttemptRow, BallotResponseRow, BallotRow, BallotVoterRow, CaseRow
from workflow.repository import LoadedCase, append, load_case
from workflow.service import SYSTEM, Actor

OPEN = "open"
CLOSED = "closed"
EXPORT_FORMAT = "branchflow-ballot/1"

# 32 symbols with none of 0 O 1 I: each symbol is 5 bits; 20 symbols = 100 bits, shown as 4 groups of 5.
ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
CODE_LENGTH = 20
GROUP = 5
CODE_BITS = CODE_LENGTH * 5

MAX_FAILURES = 20  # unknown or malformed codes tried per client address …
WINDOW = dt.timedelta(minutes=15)  # … per window; then every attempt is refused until the window ends
COMMENT_MAX = 500
VOTER_KINDS = {"member": "党员", "masses": "群众代表", "anonymous": "现场测评码"}


class BallotRefused(TransitionRefused):
    """测评码不能使用。"""


class UnknownCode(BallotRefused):
    """测评码格式不正确或不存在。

    The only refusal that counts towards the rate limit: it is what guessing produces. A used code, or a
    code of a closed or expired ballot, is a real code (a voter re-opening the link, pressing submit
    twice): counting those would lock out a whole meeting room behind one address."""


class Throttled(BranchflowError):
    """尝试次数过多，请稍后再试。"""

    http_status = 429
    exit_code = 1


# --- codes --------------------------------------------------------------------------------------------

def new_code(length: int = CODE_LENGTH) -> str:
    """A random code of ``length`` symbols of :data:`ALPHABET` (also the objection receipts' codes)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def grouped(code: str, group: int = GROUP) -> str:
    """``ABCDE-FGHJK-LMNPQ-RSTUV``: how a code is shown and printed."""
    return "-".join(code[i:i + group] for i in range(0, len(code), group))


def normalize(text: str, length: int = CODE_LENGTH) -> str | None:
    """The code typed or scanned, without spaces and dashes, upper-cased; None when it cannot be a code."""
    s = re.sub(r"[\s\-–—_]", "", text or "").upper()
    if len(s) != length or any(c not in ALPHABET for c in s):
        return None
    return s


def code_hash(code: str) -> str:
    return hashlib.sha256(f"branchflow-ballot-code:{code}".encode("ascii")).hexdigest()


def _rid() -> str:
    return secrets.token_hex(16)


# --- the form -----------------------------------------------------------------------------------------

def form_for(campaign: Any) -> dict[str, Any]:
    """The evaluation form (seed 001 附件2 党员群众测评表) for a campaign: the overall rating's choices are the
    campaign's grades, each scored at the middle of its band (so the average rating reads on the same
    100-point scale as the other sources); two satisfaction questions; an optional comment."""
    choices = []
    upper = 100.0
    for band in campaign.grading.scale.bands:
        choices.append({"label": band.grade, "score": round((band.min + upper) / 2, 1)})
        upper = band.min
    return {
        "rating": {"label": "对本支部工作的总体评价", "choices": choices},
        "satisfied_with_members": {"label": "您对本支部党员发挥先锋模范作用是否满意？"},
        "satisfied_with_secretary": {"label": "您对本支部书记的工作是否满意？"},
        "comment": {"label": "意见和建议（选填）", "max": COMMENT_MAX},
    }


def _answers(form: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """Validate the answers against the ballot's form; every problem named in Chinese."""
    problems = []
    scores = {float(c["score"]): c for c in form["rating"]["choices"]}
    rating: float | None = None
    raw = data.get("rating")
    try:
        rating = float(raw) if raw not in (None, "") else None
    except (TypeError, ValueError):
        rating = None
    if rating is None or rating not in scores:
        problems.append("请选择“总体评价”")
    yes_no: dict[str, bool] = {}
    for key, what in (("satisfied_with_members", "对党员发挥作用是否满意"),
                      ("satisfied_with_secretary", "对支部书记是否满意")):
        v = data.get(key)
        if v in (True, "yes", "1", "true"):
            yes_no[key] = True
        elif v in (False, "no", "0", "false"):
            yes_no[key] = False
        else:
            problems.append(f"请选择“{what}”")
    comment = str(data.get("comment") or "").strip()
    if len(comment) > COMMENT_MAX:
        problems.append(f"意见和建议最多 {COMMENT_MAX} 字（现为 {len(comment)} 字）")
    if any(ord(c) < 32 and c not in "\n\t" or ord(c) == 127 for c in comment):
        problems.append("意见和建议中含有控制字符")
    if problems:
        raise InvalidInput("；".join(problems))
    assert rating is not None
    return {"rating": rating, **yes_no, "comment": comment.replace("\r\n", "\n")}


# --- opening ------------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Voter:
    """A named voter from the roster: a member (党员) or a representative of the masses (群众代表)."""

    name: str
    email: str
    kind: str = "member"


@dataclass(frozen=True, kw_only=True)
class Issued:
    """A code handed out: the plain code exists only here, in memory, on its way to a mail or a sheet."""

    code: str
    voter_id: str
    kind: str
    name: str = ""
    email: str = ""

    @property
    def shown(self) -> str:
        return grouped(self.code)


def read_roster(text: str) -> list[Voter]:
    """A roster file: CSV ``姓名,邮箱,类别`` (类别 党员 / 群众代表; a header row is optional)."""
    voters: list[Voter] = []
    seen: set[str] = set()
    problems: list[str] = []
    kinds = {"党员": "member", "member": "member", "群众": "masses", "群众代表": "masses", "masses": "masses", "": "member"}
    for n, row in enumerate(csv.reader(io.StringIO(text.lstrip("\ufeff"))), 1):
        if not row or not any(c.strip() for c in row):
            continue
        cells = [c.strip() for c in row] + ["", ""]
        name, email, kind = cells[0], cells[1].lower(), cells[2]
        if n == 1 and email in ("邮箱", "email", "e-mail"):
            continue
        if not name or len(name) > 100 or any(ord(c) < 32 for c in name):
            problems.append(f"第 {n} 行：姓名为空、过长或含控制字符")
            continue
        if not re.fullmatch(r"[^@\s,;<>\"']+@[^@\s,;<>\"']+\.[^@\s,;<>\"']+", email) or len(email) > 254:
            problems.append(f"第 {n} 行：邮箱 {email!r} 无效")
            continue
        if kind not in kinds:
            problems.append(f"第 {n} 行：类别 {kind!r} 无效（应为 党员 或 群众代表）")
            continue
        if email in seen:
            problems.append(f"第 {n} 行：邮箱 {email} 重复")
            continue
        seen.add(email)
        voters.append(Voter(name=name, email=email, kind=kinds[kind]))
    if problems:
        raise InvalidInput("名单文件有误：\n" + "\n".join(f"  {p}" for p in problems))
    return voters


def _may_run(actor: Actor, case: LoadedCase, what: str) -> None:
    service.require(actor, [Role.general_branch_secretary, Role.org_department], case, what)


def open_ballot(session: Session, branch: str, actor: Actor, *, closes_at: dt.datetime, now: dt.datetime,
                campaign: str | None = None) -> BallotRow:
    """Open the branch's online ballot (in the member-evaluation stage, one open ballot at a time)."""
    case = load_case(session, branch, campaign)
    _may_run(actor, case, "发起网上测评")
    if case.stage is not Stage.member_evaluation:
        raise TransitionRefused(f"党支部“{case.branch.name}”当前处于“{case.stage.label}”环节，只能在“党员群众测评”环节发起网上测评")
    if closes_at <= now:
        raise InvalidInput(f"截止时间 {closes_at.astimezone(case.campaign.tz):%Y-%m-%d %H:%M} 须晚于现在")
    if closes_at - now > dt.timedelta(days=60):
        raise InvalidInput("网上测评最长开放 60 天")
    if session.scalar(select(BallotRow.id).where(BallotRow.case_id == case.row.id, BallotRow.status == OPEN)):
        raise TransitionRefused(f"党支部“{case.branch.name}”已有进行中的网上测评，请先关闭")
    row = BallotRow(case_id=case.row.id, branch_code=case.branch.code, status=OPEN, form=form_for(case.campaign),
                    opened_by=actor.email, opened_at=now, closes_at=closes_at)
    session.add(row)
    session.flush()
    return row


def get_ballot(session: Session, ballot_id: int) -> BallotRow:
    row = session.get(BallotRow, ballot_id)
    if row is None:
        raise NotFound(f"找不到编号为 {ballot_id} 的网上测评")
    return row


def latest_for(session: Session, branch: str, campaign: str | None = None) -> BallotRow | None:
    case = load_case(session, branch, campaign)
    return session.scalar(select(BallotRow).where(BallotRow.case_id == case.row.id).order_by(BallotRow.id.desc()).limit(1))


def _lock(session: Session, ballot_id: int) -> BallotRow:
    """Take the ballot's write lock and read it fresh: votes, new codes and the closing of one ballot run one
    at a time. A no-op UPDATE as the statement that starts the writing: on PostgreSQL it locks the row
    until commit (READ COMMITTED: later statements see what the previous holder committed); on SQLite it is
    the transaction's first write, so it waits for the database lock and then reads the latest data
    (rather than failing later on a stale snapshot)."""
    session.execute(update(BallotRow).where(BallotRow.id == ballot_id).values(status=BallotRow.status)
                    .execution_options(synchronize_session=False))
    row = session.get(BallotRow, ballot_id, populate_existing=True)
    if row is None:
        raise NotFound(f"找不到编号为 {ballot_id} 的网上测评")
    return row


def _case_of(session: Session, ballot: BallotRow) -> LoadedCase:
    from workflow.models import CampaignRow

    camp = session.scalar(select(CampaignRow.code).join(CaseRow, CaseRow.campaign_id == CampaignRow.id)
                          .where(CaseRow.id == ballot.case_id))
    return load_case(session, ballot.branch_code, camp)


def _open_for_changes(session: Session, ballot: BallotRow, actor: Actor, now: dt.datetime, what: str) -> LoadedCase:
    case = _case_of(session, ballot)
    _may_run(actor, case, what)
    ballot = _lock(session, ballot.id)
    if ballot.status != OPEN or now >= ballot.closes_at:
        raise TransitionRefused("该网上测评已结束，不能再发放测评码")
    return case


def _insert_voters(session: Session, ballot: BallotRow, people: Iterable[tuple[str, str, str]]) -> list[Issued]:
    issued = []
    rows = []
    for kind, name, email in people:
        code = new_code()
        vid = _rid()
        issued.append(Issued(code=code, voter_id=vid, kind=kind, name=name, email=email))
        rows.append({"id": vid, "ballot_id": ballot.id, "kind": kind, "name": name, "email": email,
                     "code_hash": code_hash(code), "voted": False})
    if rows:
        session.execute(insert(BallotVoterRow), rows)
    return issued


def issue_codes(session: Session, ballot_id: int, actor: Actor, count: int, *, now: dt.datetime) -> list[Issued]:
    """``count`` anonymous codes for an on-site meeting (printed as a QR sheet); returned once, never stored."""
    ballot = get_ballot(session, ballot_id)
    _open_for_changes(session, ballot, actor, now, "发放测评码")
    if not 1 <= count <= 2000:
        raise InvalidInput(f"测评码数量须在 1 到 2000 之间（现为 {count}）")
    return _insert_voters(session, ballot, [("anonymous", "", "")] * count)


def add_voters(session: Session, ballot_id: int, actor: Actor, voters: list[Voter], *, now: dt.datetime) -> list[Issued]:
    """Named voters (members and masses representatives); their codes are e-mailed, so returned once."""
    ballot = get_ballot(session, ballot_id)
    _open_for_changes(session, ballot, actor, now, "添加测评人")
    if not voters:
        raise InvalidInput("名单为空")
    have = set(session.scalars(select(BallotVoterRow.email).where(BallotVoterRow.ballot_id == ballot.id,
                                                                   BallotVoterRow.email != "")))
    dupes = sorted(v.email for v in voters if v.email in have)
    if dupes:
        raise InvalidInput(f"以下邮箱已在本次测评名单中：{'、'.join(dupes)}")
    return _insert_voters(session, ballot, [(v.kind, v.name, v.email) for v in voters])


def reissue_for_reminder(session: Session, ballot_id: int, actor: Actor, *, now: dt.datetime) -> list[Issued]:
    """A fresh code for every named voter who has not voted (their old code stops working), for the
    reminder mail; who has voted is not shown to anyone — only the number of reminders."""
    ballot = get_ballot(session, ballot_id)
    _open_for_changes(session, ballot, actor, now, "提醒未投票的测评人")
    rows = session.execute(select(BallotVoterRow.id, BallotVoterRow.kind, BallotVoterRow.name, BallotVoterRow.email)
                           .where(BallotVoterRow.ballot_id == ballot.id, BallotVoterRow.email != "",
                                  BallotVoterRow.voted.is_(False)).order_by(BallotVoterRow.id)).all()
    issued = []
    for r in rows:
        code = new_code()
        session.execute(update(BallotVoterRow).where(BallotVoterRow.id == r.id, BallotVoterRow.voted.is_(False))
                        .values(code_hash=code_hash(code)))
        issued.append(Issued(code=code, voter_id=r.id, kind=r.kind, name=r.name, email=r.email))
    return issued


# --- participation ------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Participation:
    eligible: int
    voted: int

    @property
    def rate(self) -> float:
        return round(self.voted / self.eligible, 4) if self.eligible else 0.0


def participation(session: Session, ballot_id: int) -> Participation:
    """How many may vote and how many have — never who."""
    row = session.execute(select(func.count(), func.count().filter(BallotVoterRow.voted.is_(True)))
                          .where(BallotVoterRow.ballot_id == ballot_id)).one()
    return Participation(eligible=int(row[0]), voted=int(row[1] or 0))


# --- voting -------------------------------------------------------------------------------------------

def client_network(client: str) -> str:
    """What the rate limit counts: an IPv4 address, or the /64 of an IPv6 address (one subscriber line or
    phone gets a whole /64, so counting single addresses would let it try 2⁶⁴ of them); an IPv4-mapped
    IPv6 address counts as its IPv4 address. Anything else (no client address) as it is."""
    try:
        ip = ipaddress.ip_address(client.strip().strip("[]"))
    except ValueError:
        return client
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _client_key(client: str) -> str:
    return hashlib.sha256(f"branchflow-ballot-client:{client_network(client)}".encode()).hexdigest()


def throttled(session: Session, client: str, *, now: dt.datetime) -> bool:
    row = session.get(BallotAttemptRow, _client_key(client))
    return bool(row and now - row.window_start < WINDOW and row.failures >= MAX_FAILURES)


def note_failure(session: Session, client: str, *, now: dt.datetime) -> None:
    """Count one refused attempt for the client address (call in its own transaction: the refusal's
    own transaction rolls back)."""
    key = _client_key(client)
    for _ in range(2):  # a concurrent first failure of the same address inserts the row first: count again
        try:
            with session.begin_nested():
                row = session.get(BallotAttemptRow, key, populate_existing=True)
                if row is None:
                    session.add(BallotAttemptRow(client=key, window_start=now, failures=1))
                elif now - row.window_start >= WINDOW:
                    row.window_start, row.failures = now, 1
                else:
                    row.failures += 1
            return
        except IntegrityError:
            continue


def _check_throttle(session: Session, client: str | None, now: dt.datetime) -> None:
    if client is not None and throttled(session, client, now=now):
        raise Throttled(f"本机尝试无效测评码的次数过多，请 {int(WINDOW.total_seconds() // 60)} 分钟后再试")


@dataclass(frozen=True, kw_only=True)
class BallotView:
    """What the voting page shows for a valid code: the branch, the form, the closing time."""

    ballot_id: int
    branch_name: str
    campaign_name: str
    form: dict[str, Any]
    closes_at: dt.datetime
    kind: str


def _voter_for(session: Session, code: str, now: dt.datetime, *,
               lock: bool = False) -> tuple[BallotVoterRow, BallotRow]:
    norm = normalize(code)
    if norm is None:
        raise UnknownCode(f"测评码格式不正确：测评码由 {CODE_LENGTH} 位字母和数字组成（不含 0、O、1、I），请核对后重新输入")
    voter = session.scalar(select(BallotVoterRow).where(BallotVoterRow.code_hash == code_hash(norm))
                           .execution_options(populate_existing=True))
    if voter is None:
        raise UnknownCode("测评码无效：没有这个测评码（如收到过提醒邮件，请使用最新一封邮件中的测评码）")
    ballot = _lock(session, voter.ballot_id) if lock else get_ballot(session, voter.ballot_id)
    if lock:  # read again under the lock: a concurrent vote, reminder or closing has committed by now
        voter = session.scalar(select(BallotVoterRow).where(BallotVoterRow.code_hash == code_hash(norm))
                               .execution_options(populate_existing=True))
        if voter is None:
            raise UnknownCode("测评码无效：没有这个测评码（如收到过提醒邮件，请使用最新一封邮件中的测评码）")
    if ballot.status != OPEN:
        raise BallotRefused("本次测评已经结束，不能再投票")
    if now >= ballot.closes_at:
        raise BallotRefused(f"本次测评已于 {ballot.closes_at.astimezone(_tz()):%Y-%m-%d %H:%M} 截止，不能再投票")
    if voter.voted:
        raise BallotRefused("此测评码已经投过票：每个测评码只能投一次")
    stage = session.scalar(select(CaseRow.stage).where(CaseRow.id == ballot.case_id))
    if stage != Stage.member_evaluation.value:  # a vote now could never be counted: refuse it, spend nothing
        raise BallotRefused("本支部已结束“党员群众测评”环节，本次网上测评不再接受投票")
    return voter, ballot


def _tz() -> dt.tzinfo:
    from zoneinfo import ZoneInfo

    return ZoneInfo("Asia/Shanghai")


def view_for_code(session: Session, code: str, *, now: dt.datetime, client: str | None = None) -> BallotView:
    """Check a code (refusing used, unknown and expired codes and closed ballots) and describe its ballot."""
    _check_throttle(session, client, now)
    voter, ballot = _voter_for(session, code, now)
    case = _case_of(session, ballot)
    return BallotView(ballot_id=ballot.id, branch_name=case.branch.name, campaign_name=case.campaign.name,
                      form=ballot.form, closes_at=ballot.closes_at, kind=voter.kind)


def cast_vote(session: Session, code: str, answers: dict[str, Any], *, now: dt.datetime,
              client: str | None = None) -> int:
    """Cast one anonymous ballot with a code; returns the ballot id. The code is spent in the same
    transaction; the response row carries no code, voter or time."""
    _check_throttle(session, client, now)
    voter, ballot = _voter_for(session, code, now, lock=True)
    data = _answers(ballot.form, answers)
    spent = session.execute(update(BallotVoterRow).where(BallotVoterRow.id == voter.id, BallotVoterRow.voted.is_(False))
                            .values(voted=True).execution_options(synchronize_session=False))
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        raise BallotRefused("此测评码已经投过票：每个测评码只能投一次")
    session.execute(insert(BallotResponseRow), [{"id": _rid(), "ballot_id": ballot.id, **data}])
    _rewrite_responses(session, ballot.id)
    return ballot.id


def _rewrite_responses(session: Session, ballot_id: int) -> None:
    """Rewrite all of the ballot's responses, with fresh random keys, in random order, in the vote's own
    transaction. Every row carries its writer's transaction id (PostgreSQL ``xmin``, readable by anyone who
    may SELECT the table): without this, the response and the voter row marked used share one ``xmin`` and
    join exactly. Afterwards all responses share the latest vote's id, and their heap order is random.
    Runs under the ballot's lock (:func:`_lock`), so concurrent votes do not rewrite the same rows."""
    rows = session.execute(select(BallotResponseRow.__table__).where(BallotResponseRow.ballot_id == ballot_id)
                           ).mappings().all()
    session.execute(delete(BallotResponseRow).where(BallotResponseRow.ballot_id == ballot_id)
                    .execution_options(synchronize_session=False))
    fresh = [{**r, "id": _rid()} for r in rows]
    secrets.SystemRandom().shuffle(fresh)
    if fresh:
        session.execute(insert(BallotResponseRow), fresh)


# --- closing, export, recount -------------------------------------------------------------------------

def canonical_ballots(ballots: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The anonymous ballots in canonical form and order (sorted by their canonical JSON)."""
    items = [{"rating": float(b["rating"]), "satisfied_with_members": bool(b["satisfied_with_members"]),
              "satisfied_with_secretary": bool(b["satisfied_with_secretary"]), "comment": str(b.get("comment") or "")}
             for b in ballots]
    return sorted(items, key=_canon)


def _canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def commitment_of(ballots: Iterable[dict[str, Any]]) -> str:
    """sha256 over the canonical JSON of the sorted canonical ballots (UTF-8)."""
    return hashlib.sha256(_canon(canonical_ballots(ballots)).encode("utf-8")).hexdigest()


def tally_for(ballots: list[dict[str, Any]]) -> dict[str, Any]:
    return tally_of(canonical_ballots(ballots))


def _reshuffle(session: Session, ballot_id: int) -> None:
    """Rewrite the ballot's rows so that their physical order (PostgreSQL heap) no longer follows voting:
    responses re-inserted in random-key order, voter rows rewritten in id order."""
    resp = session.execute(select(BallotResponseRow.__table__).where(BallotResponseRow.ballot_id == ballot_id)
                           .order_by(BallotResponseRow.id)).mappings().all()
    voters = session.execute(select(BallotVoterRow.__table__).where(BallotVoterRow.ballot_id == ballot_id)
                             .order_by(BallotVoterRow.id)).mappings().all()
    session.execute(delete(BallotResponseRow).where(BallotResponseRow.ballot_id == ballot_id))
    session.execute(delete(BallotVoterRow).where(BallotVoterRow.ballot_id == ballot_id))
    if resp:
        session.execute(insert(BallotResponseRow), [{**r, "id": _rid()} for r in sorted(resp, key=lambda r: _rid())])
    if voters:
        session.execute(insert(BallotVoterRow), [dict(v) for v in voters])


def close_ballot(session: Session, ballot_id: int, actor: Actor | None, *, now: dt.datetime) -> BallotRow:
    """Close the ballot (by hand, or by :func:`close_due` at its time with ``actor=None``) and write the
    member-evaluation record as ONE event in the branch's chain: the tally, ``source: online``, the
    participation and the commitment. The anonymous export is kept on the ballot."""
    ballot = get_ballot(session, ballot_id)
    case = _case_of(session, ballot)
    if actor is not None:
        _may_run(actor, case, "关闭网上测评")
    ballot = _lock(session, ballot.id)  # a vote in flight commits first and is counted; a second closing waits
    if ballot.status != OPEN:
        raise TransitionRefused("该网上测评已经关闭")
    if case.stage is not Stage.member_evaluation:
        raise TransitionRefused(f"党支部“{case.branch.name}”已不在“党员群众测评”环节，不能写入测评结果；请组织部处理")
    _reshuffle(session, ballot.id)
    rows = session.execute(select(BallotResponseRow.rating, BallotResponseRow.satisfied_with_members,
                                  BallotResponseRow.satisfied_with_secretary, BallotResponseRow.comment)
                           .where(BallotResponseRow.ballot_id == ballot.id)).mappings().all()
    ballots = canonical_ballots(dict(r) for r in rows)
    part = participation(session, ballot.id)
    if part.voted != len(ballots):  # pragma: no cover - one transaction spends a code and inserts its ballot
        raise BranchflowError(f"已用测评码 {part.voted} 个与选票 {len(ballots)} 张不符，请联系管理员")
    tally = tally_of(ballots)
    commitment = commitment_of(ballots)
    who = actor.email if actor is not None else SYSTEM
    export = {
        "format": EXPORT_FORMAT, "ballot_id": ballot.id, "campaign": case.campaign_row.code,
        "branch": case.branch.code, "branch_name": case.branch.name, "closes_at": iso(ballot.closes_at),
        "eligible": part.eligible, "form": ballot.form, "ballots": ballots, "tally": tally, "commitment": commitment,
    }
    text = _canon(export)
    export_sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    online = {"ballot_id": ballot.id, "eligible": part.eligible, "participation": part.rate,
              "commitment": commitment, "export_sha256": export_sha, "closed_by": who}
    data = MemberEvaluationRecord.model_validate({"tally": tally, "source": "online", "online": online})
    at = now if case.last_at is None or now >= case.last_at else case.last_at
    append(session, case, kind="recorded", actor=who, at=at,
           payload={"stage": Stage.member_evaluation.value, "data": data.model_dump(mode="json", exclude_none=True)})
    service._commit_point(session, case, at)
    ballot.status, ballot.closed_at, ballot.closed_by = CLOSED, now, who
    ballot.commitment, ballot.export = commitment, text
    session.flush()
    return ballot


def close_due(session: Session, *, now: dt.datetime) -> list[int]:
    """Close every open ballot whose time has come (the tick); returns their ids. A ballot whose case has
    left the stage is left open for the organisation department (the refusal names why)."""
    due = list(session.scalars(select(BallotRow.id).where(BallotRow.status == OPEN, BallotRow.closes_at <= now)
                               .order_by(BallotRow.id)))
    closed = []
    for bid in due:
        try:
            with session.begin_nested():
                close_ballot(session, bid, None, now=now)
            closed.append(bid)
        except TransitionRefused:
            continue
    return closed


def export_of(session: Session, ballot_id: int, actor: Actor, *, fmt: str = "json") -> str:
    """The anonymous ballots of a closed ballot as JSON (the committed export) or CSV."""
    ballot = get_ballot(session, ballot_id)
    case = _case_of(session, ballot)
    if not (service.may(actor, [Role.general_branch_secretary, Role.org_department, Role.committee_member], case)
            or actor.has_role(Role.auditor)):
        raise Forbidden("无权下载该网上测评的选票")
    if ballot.status != CLOSED or ballot.export is None:
        raise TransitionRefused("网上测评尚未关闭：关闭后才能导出选票（进行中只显示参与情况）")
    if fmt == "json":
        return ballot.export
    if fmt == "csv":
        data = json.loads(ballot.export)
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["rating", "satisfied_with_members", "satisfied_with_secretary", "comment"])
        for b in data["ballots"]:
            comment = b["comment"]
            if comment[:1] in CSV_ESCAPED:
                comment = "'" + comment  # inert in spreadsheets; recount strips it back (see recount)
            w.writerow([f"{b['rating']:g}", int(b["satisfied_with_members"]), int(b["satisfied_with_secretary"]), comment])
        return out.getvalue()
    raise InvalidInput(f"未知的导出格式 {fmt!r}（可用：json、csv）")


# CSV comments starting with these get a leading ' (a spreadsheet then shows text, not a formula); ' itself
# is escaped too, so that the recount can strip exactly one ' and get every comment back as it was.
CSV_ESCAPED = ("=", "+", "-", "@", "\t", "\r", "'")


@dataclass(frozen=True, kw_only=True)
class Recount:
    ballots: int
    tally: dict[str, Any]
    commitment: str
    claimed: str | None

    @property
    def matches(self) -> bool | None:
        return None if self.claimed is None else self.claimed == self.commitment


def recount(text: str, *, commitment: str | None = None) -> Recount:
    """Recount an export (JSON as exported, or the CSV) and recompute its commitment; pure."""
    text = text.lstrip("\ufeff")
    claimed = commitment
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
            raw = data["ballots"]
        except json.JSONDecodeError as exc:
            raise from_json_error(exc, "导出文件") from None
        except (ValueError, KeyError, TypeError):
            raise InvalidInput("导出文件不是有效的网上测评 JSON：缺少 ballots（测评票）一项") from None
        claimed = claimed or data.get("commitment")
    else:
        raw = []
        rows = list(csv.DictReader(io.StringIO(text)))
        for n, r in enumerate(rows, 2):
            try:
                comment = r["comment"] or ""
                if comment[:1] == "'":  # the export's escape: it also escapes a comment that began with '
                    comment = comment[1:]
                raw.append({"rating": float(r["rating"]), "satisfied_with_members": r["satisfied_with_members"] == "1",
                            "satisfied_with_secretary": r["satisfied_with_secretary"] == "1", "comment": comment})
            except (KeyError, TypeError, ValueError):
                raise InvalidInput(f"CSV 第 {n} 行无效") from None
    ballots = canonical_ballots(raw)
    return Recount(ballots=len(ballots), tally=tally_of(ballots), commitment=commitment_of(ballots), claimed=claimed)
