"""Creating a campaign and changing it mid-year, each change audited in a hash-chained log per campaign.

A change replaces the stored configuration (validated as a whole) and appends a ``campaign_changes``
row with who, when, why, which sections changed and the new configuration's sha256, chained like a
branch's events. Moving deadlines is always possible (in stage order); changing the grading rules is
refused once any branch's grade is locked, since it would contradict a signed, published grade.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from states.base import Role, Stage
from workflow.audit import GENESIS, canonical, chain, iso, parse_iso
from workflow.calendar import require_known_year
from workflow.campaign import Campaign, parse_campaign_text, preset_text
from workflow.errors import Conflict, Forbidden, InvalidInput, TransitionRefused
from workflow.models import Branch, CampaignChangeRow, CampaignRow, CaseRow, Committee
from workflow.repository import campaign_of, committee_size, effective_deadline, get_campaign_row
from workflow.service import Actor, open_missing_cases

CHANGE_LABELS = {"created": "创建活动", "changed": "修改活动配置", "deadline_extended": "统一延长截止日期"}
GRADE_STAGES = [Stage.committee_grading, Stage.publicity, Stage.rectification, Stage.acceptance, Stage.accepted]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _append_change(session: Session, row: CampaignRow, *, kind: str, actor: str, at: dt.datetime,
                   payload: dict[str, Any]) -> CampaignChangeRow:
    last = session.execute(
        select(CampaignChangeRow.seq, CampaignChangeRow.hash, CampaignChangeRow.at)
        .where(CampaignChangeRow.campaign_id == row.id).order_by(CampaignChangeRow.seq.desc()).limit(1)
    ).first()
    if last and at < last.at:
        raise InvalidInput(f"时间不能倒退：该活动最近一次变更时间为 {iso(last.at)}")
    prev = last.hash if last else GENESIS
    body = canonical({"kind": kind, "at": iso(at), "actor": actor, "payload": payload})
    change = CampaignChangeRow(campaign_id=row.id, seq=(last.seq if last else 0) + 1, kind=kind, at=at, actor=actor,
                               body=body, prev_hash=prev, hash=chain(prev, body))
    session.add(change)
    return change


def create_campaign(session: Session, *, preset: str | None = None, file: str | Path | None = None,
                    year: int | None = None, now: dt.datetime, actor: str = "system", committee: str | None = None,
                    code: str | None = None) -> tuple[CampaignRow, int]:
    """Create a campaign of ``committee`` (required when several committees exist; the only one by default)
    and open a case for each of that committee's branches. One campaign per committee and year; ``code``
    replaces the configuration's code (two committees running one preset in one year need two codes)."""
    from workflow.tenancy import campaign_owner

    owner = campaign_owner(session, committee)
    if preset:
        text = preset_text(preset, year=year)
        source = f"preset:{preset}"
    elif file:
        p = Path(file)
        if not p.exists():
            raise InvalidInput(f"找不到活动配置文件 {p}")
        try:
            text = p.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidInput(f"{p} 不是 UTF-8 编码：请另存为 UTF-8 后再试") from None
        source = str(p)
    else:
        raise InvalidInput("请给出预设名或活动配置文件")
    if code:
        text = _with_code(text, code)
    c = parse_campaign_text(text, source=source)
    require_known_year(c)  # a year chinesecalendar does not know needs [calendar] or weekdays_only (issue 12)
    from workflow.tenancy import check_new_campaign

    check_new_campaign(session, owner, code=c.code, year=c.year)
    row = CampaignRow(code=c.code, name=c.name, year=c.year, config=text, created_at=now,
                      committee_id=owner.id if owner else None)
    session.add(row)
    session.flush()
    _append_change(session, row, kind="created", actor=actor, at=now,
                   payload={"source": source, "config_sha256": sha(text)})
    opened = open_missing_cases(session, c.code, now=now)
    return row, opened


def _with_code(text: str, code: str) -> str:
    import re

    from workflow import limits

    limits.require(limits.check_code(code, "活动编码"))
    out, n = re.subn(r'(?m)^code\s*=\s*"[^"\n]*"', f'code = "{code}"', text, count=1)
    if n != 1:
        raise InvalidInput("活动配置中找不到 code 字段，无法改用 --code 给出的编码")
    return out


def _require_org(actor: Actor, session: Session | None = None, row: CampaignRow | None = None) -> None:
    """Only the organisation department of the campaign's own committee changes it (issue 12): a parent
    committee's department reads its children's campaigns but never changes them."""
    from workflow.tenancy import may_change

    if row is not None and session is not None:
        if not may_change(session, actor, row):
            raise Forbidden(f"{actor.name}（{actor.email}）无权修改活动 {row.code} 的配置；"
                            "可执行该操作的角色：本活动所属党委的组织部")
        return
    if not actor.has_role(Role.org_department):
        raise Forbidden(f"{actor.name}（{actor.email}）无权修改活动配置；可执行该操作的角色：组织部")


def _sections(old: Campaign, new: Campaign) -> list[str]:
    a, b = old.model_dump(mode="json"), new.model_dump(mode="json")
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _grades_in_force(session: Session, row: CampaignRow, campaign: Campaign) -> tuple[int, int]:
    """(locked, computed-but-unlocked) grades among the campaign's cases, reading only cases at or past
    grading (the (campaign_id, stage) index). A grade is locked once its signatures reach the quorum."""
    locked = computed = 0
    q = (
        select(CaseRow.state, Committee.code)
        .join(Branch, Branch.id == CaseRow.branch_id)
        .join(Committee, Committee.id == Branch.committee_id)
        .where(CaseRow.campaign_id == row.id, CaseRow.stage.in_([s.value for s in GRADE_STAGES]))
    )
    for state, committee in session.execute(q.execution_options(yield_per=2000)):
        if state.get("final_grade"):
            locked += 1
        elif state.get("grade"):
            quorum = campaign.quorum_for(committee_size(session, committee))
            if len(state.get("signatures", [])) >= quorum:
                locked += 1
            else:
                computed += 1
    return locked, computed


def _reproject_deadlines(session: Session, row: CampaignRow, campaign: Campaign, stages: list[Stage]) -> int:
    """Recompute the indexed ``cases.deadline`` of the cases standing in ``stages`` (in batches)."""
    n = 0
    table = CaseRow.__table__
    assert isinstance(table, Table)
    stmt = update(table).where(table.c.id == bindparam("case_id")).values(
        deadline=bindparam("new_deadline"))
    q = select(CaseRow.id, CaseRow.state).where(CaseRow.campaign_id == row.id,
                                                CaseRow.stage.in_([s.value for s in stages]))
    batch: list[dict[str, Any]] = []
    for cid, state in session.execute(q.execution_options(yield_per=5000)):
        batch.append({"case_id": cid, "new_deadline": effective_deadline(campaign, state)})
        if len(batch) == 5000:
            session.execute(stmt, batch)
            n += len(batch)
            batch = []
    if batch:
        session.execute(stmt, batch)
        n += len(batch)
    return n


def change_campaign(session: Session, actor: Actor, text: str, reason: str, *, now: dt.datetime,
                    campaign: str | None = None, kind: str = "changed") -> dict[str, Any]:
    """Replace a campaign's configuration; refused if it would alter a locked grade."""
    _require_org(actor)
    if len(reason.strip()) < 2:
        raise InvalidInput("修改活动配置须写明理由")
    row = _campaign_of_actor(session, actor, campaign)
    _require_org(actor, session, row)
    old = campaign_of(row)
    new = parse_campaign_text(text, source="新配置")
    for field in ("code", "year", "timezone"):
        if getattr(new, field) != getattr(old, field):
            raise InvalidInput(f"不能修改活动的 {field}（{getattr(old, field)} → {getattr(new, field)}）；请新建活动")
    require_known_year(new)  # a change cannot take away the calendar of a year chinesecalendar does not know
    sections = _sections(old, new)
    if not sections:
        raise InvalidInput("新配置与当前配置相同，无需修改")
    if "grading" in sections:
        locked, computed = _grades_in_force(session, row, old)
        if locked:
            raise TransitionRefused(
                f"不能修改评分规则（grading）：已有 {locked} 个党支部的等级经签字锁定，修改会改变已锁定的等级",
            )
        if computed:
            raise TransitionRefused(
                f"不能修改评分规则（grading）：已有 {computed} 个党支部计算了等级，党委评定已开始；"
                "请先处理这些支部或只修改截止日期等其他设置"
            )
    old_deadlines = {s: old.deadline_for(s) for s in Stage}
    # Compare-and-set: if someone else changed the configuration since we read it, nothing is written.
    swapped = session.execute(
        update(CampaignRow).where(CampaignRow.id == row.id, CampaignRow.config == row.config)
        .values(config=text, name=new.name).execution_options(synchronize_session=False)
    )
    if swapped.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(f"活动 {row.code} 的配置已被他人同时修改，本次修改未生效，请重新读取后再改")
    set_committed_value(row, "config", text)
    set_committed_value(row, "name", new.name)
    changed_stages = [s for s in Stage if new.deadline_for(s) != old_deadlines[s]]
    reprojected = _reproject_deadlines(session, row, new, changed_stages) if changed_stages else 0
    payload = {"reason": reason.strip(), "sections": sections, "config_sha256": sha(text),
               "deadlines": {s.value: new.deadline_for(s).isoformat() for s in changed_stages}}  # type: ignore[union-attr]
    _append_change(session, row, kind=kind, actor=actor.email, at=now, payload=payload)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(f"活动 {row.code} 的配置已被他人同时修改，本次修改未生效，请重新读取后再改") from exc
    return {"campaign": row.code, "sections": sections, "stages": [s.value for s in changed_stages],
            "cases_reprojected": reprojected}


def extend_all(session: Session, actor: Actor, stage: Stage, until: dt.date, reason: str, *, now: dt.datetime,
               campaign: str | None = None) -> dict[str, Any]:
    """Move one stage's deadline for every branch (an audited campaign change)."""
    import re

    _require_org(actor)
    row = _campaign_of_actor(session, actor, campaign)
    _require_org(actor, session, row)
    old = campaign_of(row)
    if stage is Stage.accepted:
        raise InvalidInput("“accepted”是终态，没有截止日期")
    current = old.deadline_for(stage)
    from workflow import limits

    limits.require(limits.check_date(until, "新的截止日期", old.year))
    text, n = re.subn(rf'(?m)^{stage.value}\s*=\s*"?[0-9-]+"?(\s*#.*)?\s*$',
                      lambda m: f'{stage.value} = {until.isoformat()}{m.group(1) or ""}', row.config)
    if n != 1:
        raise InvalidInput(f"活动配置中找不到 {stage.value} 的截止日期")
    if until == current:
        raise InvalidInput(f"“{stage.label}”的截止日期已是 {until}")
    return change_campaign(session, actor, text, reason, now=now, campaign=row.code, kind="deadline_extended")


def _campaign_of_actor(session: Session, actor: Actor, code: str | None) -> CampaignRow:
    """The campaign named (hidden like an unknown one when outside the actor's reading scope), or the
    actor's own committee's latest."""
    from workflow.tenancy import campaign_for

    return campaign_for(session, actor, code)


def changes(session: Session, campaign: str | None = None) -> list[dict[str, Any]]:
    row = get_campaign_row(session, campaign)
    out = []
    for c in session.scalars(select(CampaignChangeRow).where(CampaignChangeRow.campaign_id == row.id)
                             .order_by(CampaignChangeRow.seq)):
        body = json.loads(c.body)
        out.append({"seq": c.seq, "kind": c.kind, "label": CHANGE_LABELS.get(c.kind, c.kind), "at": body["at"],
                    "actor": c.actor, "payload": body["payload"], "hash": c.hash})
    return out


def verify_changes(session: Session) -> list[tuple[str, int | None, str]]:
    """(campaign, seq, problem) for every broken campaign chain or configuration edited behind the log."""
    problems: list[tuple[str, int | None, str]] = []
    for row in session.scalars(select(CampaignRow).order_by(CampaignRow.id)):
        prev = GENESIS
        last_sha = None
        rows = session.scalars(select(CampaignChangeRow).where(CampaignChangeRow.campaign_id == row.id)
                               .order_by(CampaignChangeRow.seq)).all()
        bad = False
        for n, c in enumerate(rows, 1):
            if c.seq != n or c.prev_hash != prev:
                problems.append((row.code, c.seq, "活动变更记录被删除、插入或调换了顺序"))
                bad = True
                break
            if chain(prev, c.body) != c.hash:
                problems.append((row.code, c.seq, "哈希不符：活动变更记录被修改"))
                bad = True
                break
            body = json.loads(c.body)
            if body["kind"] != c.kind or body["actor"] != c.actor or parse_iso(body["at"]) != c.at:
                problems.append((row.code, c.seq, "索引列与已签名的变更内容不一致"))
                bad = True
                break
            last_sha = body["payload"].get("config_sha256", last_sha)
            prev = c.hash
        if not bad and last_sha != sha(row.config):
            problems.append((row.code, None, "活动配置与变更记录中最后一次配置的哈希不符：配置被直接修改"))
    return problems
