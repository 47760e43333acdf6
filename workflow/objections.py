"""Objections as people follow them (issue 16, point 5): the organisation department's queue and the
objector's receipt code.

* :func:`lodge` lodges the objection through :func:`workflow.service.lodge_objection` and gives the
  objector a **receipt code** (12 symbols without 0/O/1/I, 60 bits), shown once; only its sha256 is
  stored (``objection_receipts``), with the case and the objection's number — nothing says who objected.
* :func:`follow` answers whoever holds a code with the objection's status, its text and the resolution's
  reason; never the objector, never who resolved it. Unknown and malformed codes count towards a rate
  limit per client address (``receipt_attempts``), as the ballot codes do (workflow.ballots).
* :func:`queue` lists the open objections of the publicity-stage cases within a reading scope, oldest
  first, with their age: what the organisation department must resolve.

Nothing here commits.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, func, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from states.base import Stage
from workflow import ballots, service
from workflow.ballots import client_network
from workflow.errors import BranchflowError, NotFound
from workflow.models import (
    Branch,
    CampaignRow,
    CaseRow,
    Committee,
    GeneralBranch,
    ObjectionReceiptRow,
    ReceiptAttemptRow,
)
from workflow.repository import LoadedCase, get_campaign_row

CODE_LENGTH = 12
GROUP = 4
MAX_FAILURES = 20  # unknown or malformed codes per client address …
WINDOW = dt.timedelta(minutes=15)  # … per window; then every look-up is refused until the window ends
STATUS_LABELS = {"open": "待处理", "upheld": "异议成立", "dismissed": "异议不成立"}


class UnknownReceipt(NotFound):
    """回执码不正确或不存在。"""


class ReceiptThrottled(BranchflowError):
    """查询回执码的尝试过多，请稍后再试。"""

    http_status = 429
    exit_code = 1


def new_code() -> str:
    return ballots.new_code(CODE_LENGTH)  # the ballot codes' alphabet and generator, shorter


def grouped(code: str) -> str:
    """``ABCD-EFGH-JKLM``: how a receipt code is shown."""
    return ballots.grouped(code, GROUP)


def normalize(text: str) -> str | None:
    return ballots.normalize(text, CODE_LENGTH)


def code_hash(code: str) -> str:
    return hashlib.sha256(f"branchflow-objection-receipt:{code}".encode("ascii")).hexdigest()


# --- lodging --------------------------------------------------------------------------------------------

def lodge(session: Session, branch: str, actor: service.Actor, text: str, *, now: dt.datetime,
          campaign: str | None = None) -> tuple[LoadedCase, str]:
    """Lodge an objection and make its receipt; returns the case and the receipt code (to show once)."""
    case = service.lodge_objection(session, branch, actor, text, now=now, campaign=campaign)
    objection_id = case.state["objections"][-1]["id"]
    for _ in range(3):  # a collision of 60 random bits will not happen; if it does, draw again
        code = new_code()
        try:
            with session.begin_nested():
                session.add(ObjectionReceiptRow(code_hash=code_hash(code), case_id=case.row.id,
                                                objection_id=objection_id, created_at=now))
            return case, code
        except IntegrityError:
            continue
    raise BranchflowError("未能生成回执码，请重试")  # pragma: no cover


# --- following by code ----------------------------------------------------------------------------------

def _client_key(client: str) -> str:
    return hashlib.sha256(f"branchflow-receipt-client:{client_network(client)}".encode()).hexdigest()


def throttled(session: Session, client: str, *, now: dt.datetime) -> bool:
    row = session.get(ReceiptAttemptRow, _client_key(client))
    return bool(row and now - row.window_start < WINDOW and row.failures >= MAX_FAILURES)


def note_failure(session: Session, client: str, *, now: dt.datetime) -> None:
    """Count one refused look-up for the client address (in its own transaction: the refusal's rolls back)."""
    key = _client_key(client)
    for _ in range(2):  # a concurrent first failure of the same address inserts the row first: count again
        try:
            with session.begin_nested():
                row = session.get(ReceiptAttemptRow, key, populate_existing=True)
                if row is None:
                    session.add(ReceiptAttemptRow(client=key, window_start=now, failures=1))
                elif now - row.window_start >= WINDOW:
                    row.window_start, row.failures = now, 1
                else:
                    row.failures += 1
            return
        except IntegrityError:
            continue


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What a receipt code shows: the objection and its outcome, nobody's identity."""

    branch_name: str
    campaign_name: str
    objection_id: int
    text: str
    lodged_on: str
    status: str
    status_label: str
    reason: str | None
    resolved_on: str | None
    stage_label: str


def follow(session: Session, code: str, *, now: dt.datetime, client: str | None = None) -> Outcome:
    """The outcome of the objection whose receipt code is ``code``; :class:`UnknownReceipt` otherwise
    (the caller counts it with :func:`note_failure`), :class:`ReceiptThrottled` when the address tried too many."""
    if client is not None and throttled(session, client, now=now):
        raise ReceiptThrottled(f"本机查询无效回执码的次数过多，请 {int(WINDOW.total_seconds() // 60)} 分钟后再试")
    norm = normalize(code)
    if norm is None:
        raise UnknownReceipt(f"回执码格式不正确：回执码由 {CODE_LENGTH} 位字母和数字组成（不含 0、O、1、I），请核对后重新输入")
    row = session.scalar(select(ObjectionReceiptRow).where(ObjectionReceiptRow.code_hash == code_hash(norm)))
    if row is None:
        raise UnknownReceipt("回执码无效：没有这个回执码，请核对后重新输入")
    from workflow.repository import campaign_of

    case = session.get(CaseRow, row.case_id)
    assert case is not None
    branch = session.get(Branch, case.branch_id)
    camp = session.get(CampaignRow, case.campaign_id)
    assert branch is not None and camp is not None
    c = campaign_of(camp)
    obj = next(o for o in case.state["objections"] if o["id"] == row.objection_id)
    res = obj.get("resolution") or {}

    def day(iso: str | None) -> str | None:
        return dt.datetime.fromisoformat(iso).astimezone(c.tz).date().isoformat() if iso else None

    return Outcome(branch_name=branch.name, campaign_name=c.name, objection_id=obj["id"], text=obj["text"],
                   lodged_on=day(obj["at"]) or "", status=obj["status"],
                   status_label=STATUS_LABELS.get(obj["status"], obj["status"]), reason=res.get("reason"),
                   resolved_on=day(res.get("at")), stage_label=Stage(case.stage).label)


# --- the organisation department's queue ----------------------------------------------------------------

def _publicity_cases(session: Session, scope: Any, campaign: str | None, campaign_row: CampaignRow | None) -> Any:
    camp = campaign_row or get_campaign_row(session, campaign)
    q = (select(CaseRow.state, Branch.code, Branch.name, GeneralBranch.name.label("gb_name"))
         .select_from(CaseRow).join(Branch, Branch.id == CaseRow.branch_id)
         .join(Committee, Committee.id == Branch.committee_id)
         .outerjoin(GeneralBranch, GeneralBranch.id == Branch.general_branch_id)
         .where(CaseRow.campaign_id == camp.id, CaseRow.stage == Stage.publicity.value)  # ix_cases_campaign_stage
         .order_by(Branch.code))
    if scope is not None:
        q = q.where(scope)
    return session.execute(q)


def queue(session: Session, *, now: dt.datetime, scope: Any = None, campaign: str | None = None,
          campaign_row: CampaignRow | None = None) -> list[dict[str, Any]]:
    """The open objections of the branches in publicity within ``scope``, oldest first (no objector)."""
    out = []
    for r in _publicity_cases(session, scope, campaign, campaign_row):
        pub = r.state.get("publicity") or {}
        for o in r.state["objections"]:
            if o["status"] != "open":
                continue
            at = dt.datetime.fromisoformat(o["at"])
            out.append({"code": r.code, "name": r.name, "general_branch_name": r.gb_name, "id": o["id"],
                        "text": o["text"], "at": o["at"], "age_days": max((now - at).days, 0),
                        "publicity_end": pub.get("end")})
    out.sort(key=lambda x: (x["at"], x["code"], x["id"]))
    return out


def _open_objections(dialect: str) -> tuple[Any, Any]:
    """(a table of the case's objections, the condition "this one is open") in the database's own JSON
    functions, so that counting reads no state into Python: SQLite's json_each, PostgreSQL's
    json_array_elements."""
    if dialect == "sqlite":
        each = func.json_each(CaseRow.state, "$.objections").table_valued("value").alias("o")
        return each, func.json_extract(each.c.value, "$.status") == "open"
    elems = func.json_array_elements(CaseRow.state["objections"]).table_valued("value").alias("o")
    return elems, elems.c.value.op("->>")("status") == "open"


def open_count(session: Session, *, scope: Any = None, campaign: str | None = None,
               campaign_row: CampaignRow | None = None) -> int:
    """How many objections are open within ``scope``: one count over the publicity-stage cases (the stage
    index) and their objections, in SQL."""
    camp = campaign_row or get_campaign_row(session, campaign)
    q = _open_count_sql(session.get_bind().dialect.name, scope)
    return int(session.scalar(q, {"campaign_id": camp.id}) or 0)


@lru_cache(maxsize=1024)
def _open_count_sql(dialect: str, scope: Any) -> Any:
    """The count's statement per dialect and scope clause (the navigation passes the same clause object for
    the same roles, so a page does not rebuild it); the campaign is a bound parameter."""
    each, is_open = _open_objections(dialect)
    q = (select(func.count()).select_from(CaseRow).join(Branch, Branch.id == CaseRow.branch_id)
         .join(Committee, Committee.id == Branch.committee_id)
         .outerjoin(GeneralBranch, GeneralBranch.id == Branch.general_branch_id)
         .join(each, true())
         .where(CaseRow.campaign_id == bindparam("campaign_id"), CaseRow.stage == Stage.publicity.value, is_open))
    return q if scope is None else q.where(scope)
