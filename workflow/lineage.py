"""Branches reorganised (issue 12): split, merge, rename, dissolve, found — each in the caller's one
transaction, nothing half-applied.

Every command writes ``branch_lineage`` rows (kind, from, to, committee, campaign, time, actor, reason) and
a master-data event for every branch it touched and every lineage row (``branch:CODE``, ``lineage:ID``
subjects of workflow/masterlog.py, leaves of the Merkle log), so ``audit verify`` covers the lineage.

A branch's code is never changed in place: its cases' opening events name it, and the audit checks that.
A rename to a new code, a split and a merger into a new branch make new ``branches`` rows (facts copied
from the predecessor) and dissolve the predecessors (``dissolved_on``). In the committee's current
campaign a dissolved branch's open case is closed with the reason (a ``closed`` event: no deadline, so
no reminder, and its queued notices are cancelled in the same save), and each new branch opens a case
at the campaign's *current stage*: the stage most of its open cases are in (ties: the earlier stage),
or the one given with ``stage``; the opening event records why. A dissolved branch is not opened in a
later campaign (workflow/service.open_missing_cases).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from states.base import WORKING_STAGES, Role, Stage
from workflow import limits as _limits
from workflow.errors import Forbidden, InvalidInput, NotFound
from workflow.masterlog import record_master_changes
from workflow.models import Branch, BranchLineageRow, CampaignRow, CaseRow, Committee
from workflow.service import Actor

KIND_LABELS = {"split": "拆分", "merge": "合并", "rename": "更名", "dissolve": "撤销", "found": "新建"}


@dataclass
class Outcome:
    """What a lineage command did, for the edges to print."""

    kind: str
    lineage: list[int] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    dissolved: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    opened: list[tuple[str, str]] = field(default_factory=list)  # (branch, stage)
    campaign: str | None = None

    def lines(self) -> list[str]:
        out = [f"已{KIND_LABELS[self.kind]}：沿革记录 {len(self.lineage)} 条"]
        if self.created:
            out.append("新建支部：" + "、".join(self.created))
        if self.dissolved:
            out.append("撤销支部：" + "、".join(self.dissolved))
        if self.closed:
            out.append(f"活动 {self.campaign} 中结案：" + "、".join(self.closed))
        for code, stage in self.opened:
            out.append(f"活动 {self.campaign} 中立案：{code}（自“{Stage(stage).label}”环节开始）")
        return out


def _reason(reason: str) -> str:
    text = (reason or "").strip()
    if len(text) < 2:
        raise InvalidInput("支部沿革须写明理由（--reason）")
    _limits.require(_limits.check_text(text, "理由"))
    return text


def _branch(session: Session, code: str) -> Branch:
    b = session.scalar(select(Branch).where(Branch.code == code))
    if b is None:
        raise NotFound(f"找不到党支部 {code!r}")
    return b


def _live(session: Session, code: str) -> Branch:
    b = _branch(session, code)
    if b.dissolved_on is not None:
        raise InvalidInput(f"党支部 {code} 已于 {b.dissolved_on} 撤销")
    return b


def _committee(session: Session, committee_id: int) -> Committee:
    c = session.get(Committee, committee_id)
    assert c is not None
    return c


def _require_org(actor: Actor, committee: Committee) -> None:
    if not actor.has(Role.org_department, committee.code):
        raise Forbidden(f"{actor.name}（{actor.email}）无权调整{committee.name}的党支部设置；"
                        "可执行该操作的角色：组织部（限本党委）")


def _new_code(session: Session, code: str) -> str:
    _limits.require(_limits.check_name(code, "支部编码", "code"))
    if session.scalar(select(Branch.id).where(Branch.code == code)) is not None:
        raise InvalidInput(f"支部编码 {code} 已被使用")
    return code


def _copy(template: Branch, *, code: str, name: str, members: int | None) -> Branch:
    _limits.require(_limits.check_name(name, "支部名称", "org_name"))
    return Branch(code=code, name=name, branch_type=template.branch_type, committee_id=template.committee_id,
                  general_branch_id=template.general_branch_id, secretary_name=template.secretary_name,
                  secretary_email=template.secretary_email,
                  member_count=template.member_count if members is None else members,
                  last_reelection=template.last_reelection, last_activity=template.last_activity,
                  secretary_violation=template.secretary_violation)


def current_campaign(session: Session, committee_id: int) -> CampaignRow | None:
    """The committee's newest campaign (or a deployment-wide one made before tenancy)."""
    return session.scalar(select(CampaignRow).where(or_(CampaignRow.committee_id == committee_id,
                                                        CampaignRow.committee_id.is_(None)))
                          .order_by(CampaignRow.year.desc(), CampaignRow.id.desc()).limit(1))


def current_stage(session: Session, campaign_row: CampaignRow) -> tuple[Stage, int, int]:
    """(the stage most open cases are in — ties go to the earlier stage —, how many, of how many)."""
    counts = Counter(s for s, in session.execute(
        select(CaseRow.stage).where(CaseRow.campaign_id == campaign_row.id, CaseRow.deadline.is_not(None))))
    total = sum(counts.values())
    if not total:
        return Stage.survey, 0, 0
    best = max(WORKING_STAGES, key=lambda s: (counts.get(s.value, 0), -WORKING_STAGES.index(s)))
    return best, counts.get(best.value, 0), total


def _open_case_in(session: Session, campaign_row: CampaignRow, code: str) -> bool:
    state = session.scalar(select(CaseRow.state).join(Branch, Branch.id == CaseRow.branch_id)
                           .where(CaseRow.campaign_id == campaign_row.id, Branch.code == code))
    return state is not None and state["stage"] != Stage.accepted.value and not state.get("closed")


def close_case(session: Session, campaign_row: CampaignRow, code: str, reason: str, actor: str,
               now: dt.datetime) -> bool:
    """Close the branch's open case in the campaign (a ``closed`` event); False if none was open."""
    from workflow.repository import append, load_case, save

    if not _open_case_in(session, campaign_row, code):
        return False
    case = load_case(session, code, campaign_row.code, lock=True)
    append(session, case, kind="closed", actor=actor, at=now, payload={"reason": reason})
    save(session, case, now=now)  # deadline → none: the queued notices of the case are cancelled here
    return True


def _open_new(session: Session, campaign_row: CampaignRow, branches: list[Branch], *, stage: Stage | None,
              why: str, actor: str, now: dt.datetime) -> list[tuple[str, str]]:
    from workflow.calendar import require_known_year
    from workflow.repository import campaign_of, open_cases

    if not branches:
        return []
    require_known_year(campaign_of(campaign_row))
    if stage is None:
        stage, n, total = current_stage(session, campaign_row)
        where = (f"多数支部（{n}/{total}）处于“{stage.label}”环节，自该环节开始立案" if total
                 else "活动中尚无在办支部，自“调查摸底”环节开始立案")
    else:
        where = f"按操作人指定，自“{stage.label}”环节开始立案"
    if stage is Stage.accepted:
        raise InvalidInput("不能在“已验收”状态立案")
    start: dict[str, Any] = {"start_reason": f"活动进行中{why}：{where}"}
    if stage is not Stage.survey:
        start["start_stage"] = stage.value
    session.flush()
    open_cases(session, campaign_row, [(b.id, b.code) for b in branches], at=now, actor=actor, start=start)
    return [(b.code, stage.value) for b in branches]


def _lineage(session: Session, out: Outcome, *, kind: str, src: str | None, dst: str | None, committee_id: int,
             campaign_row: CampaignRow | None, actor: Actor, now: dt.datetime, reason: str) -> None:
    row = BranchLineageRow(kind=kind, from_code=src, to_code=dst, committee_id=committee_id,
                           campaign_id=campaign_row.id if campaign_row else None, at=now, actor=actor.email,
                           reason=reason)
    session.add(row)
    session.flush()
    out.lineage.append(row.id)


def _finish(session: Session, out: Outcome, actor: Actor, now: dt.datetime) -> Outcome:
    subjects = {f"branch:{c}" for c in (*out.created, *out.dissolved)} | {f"lineage:{i}" for i in out.lineage}
    session.flush()
    record_master_changes(session, actor=actor.email, at=now, subjects=subjects)
    return out


def _retire(session: Session, out: Outcome, branches: list[Branch], camp: CampaignRow | None, reason: str,
            actor: Actor, now: dt.datetime) -> bool:
    """Dissolve ``branches``; close their open cases; True if any was open (their successors then open)."""
    any_open = False
    for b in branches:
        b.dissolved_on = now.astimezone(dt.UTC).date() if camp is None else now.astimezone(
            _tz(camp)).date()
        out.dissolved.append(b.code)
        if camp is not None and close_case(session, camp, b.code, reason, actor.email, now):
            out.closed.append(b.code)
            any_open = True
    return any_open


def _tz(camp: CampaignRow) -> dt.tzinfo:
    from workflow.repository import campaign_of

    return campaign_of(camp).tz


def found(session: Session, actor: Actor, *, code: str, name: str, committee: str | None,
          general_branch: str | None, branch_type: str | None, secretary_name: str, secretary_email: str,
          members: int, reason: str, now: dt.datetime, stage: Stage | None = None) -> Outcome:
    """A new branch; in a running campaign it opens a case at the campaign's current stage."""
    from workflow.campaign import BRANCH_TYPES
    from workflow.models import GeneralBranch

    why = _reason(reason)
    code = _new_code(session, code)
    gb = None
    if general_branch:
        gb = session.scalar(select(GeneralBranch).where(GeneralBranch.code == general_branch))
        if gb is None:
            raise NotFound(f"找不到党总支 {general_branch!r}")
    if gb is not None:
        committee_row = _committee(session, gb.committee_id)
    elif committee:
        found_c = session.scalar(select(Committee).where(Committee.code == committee))
        if found_c is None:
            raise NotFound(f"找不到党委 {committee!r}")
        committee_row = found_c
    else:
        raise InvalidInput("请用 --general-branch 或 --committee 指明新支部的归属")
    _require_org(actor, committee_row)
    if branch_type not in BRANCH_TYPES:
        raise InvalidInput(f"未知的支部类型 {branch_type!r}；可用：{', '.join(BRANCH_TYPES)}")
    if members < 1:
        raise InvalidInput("党员人数须为正整数")
    _limits.require(_limits.check_name(name, "支部名称", "org_name")
                    or _limits.check_name(secretary_name, "支部书记姓名", "person_name")
                    or _limits.check_name(secretary_email, "支部书记邮箱", "email"))
    if "@" not in secretary_email:
        raise InvalidInput(f"支部书记邮箱 {secretary_email!r} 无效")
    b = Branch(code=code, name=name.strip(), branch_type=branch_type, committee_id=committee_row.id,
               general_branch_id=gb.id if gb else None, secretary_name=secretary_name.strip(),
               secretary_email=secretary_email.strip().lower(), member_count=members)
    session.add(b)
    session.flush()
    camp = current_campaign(session, committee_row.id)
    out = Outcome(kind="found", campaign=camp.code if camp else None)
    out.created.append(code)
    _lineage(session, out, kind="found", src=None, dst=code, committee_id=committee_row.id, campaign_row=camp,
             actor=actor, now=now, reason=why)
    if camp is not None and session.scalar(select(CaseRow.id).where(CaseRow.campaign_id == camp.id).limit(1)):
        out.opened += _open_new(session, camp, [b], stage=stage, why=f"新建支部（{why}）", actor=actor.email, now=now)
    return _finish(session, out, actor, now)


def dissolve(session: Session, actor: Actor, code: str, *, reason: str, now: dt.datetime) -> Outcome:
    why = _reason(reason)
    b = _live(session, code)
    committee = _committee(session, b.committee_id)
    _require_org(actor, committee)
    camp = current_campaign(session, b.committee_id)
    out = Outcome(kind="dissolve", campaign=camp.code if camp else None)
    _lineage(session, out, kind="dissolve", src=code, dst=None, committee_id=b.committee_id, campaign_row=camp,
             actor=actor, now=now, reason=why)
    _retire(session, out, [b], camp, f"支部撤销：{why}", actor, now)
    return _finish(session, out, actor, now)


def split(session: Session, actor: Actor, code: str, parts: list[tuple[str, str, int | None]], *, reason: str,
          now: dt.datetime, stage: Stage | None = None) -> Outcome:
    """One branch into several new ones (code, name, members); the old one is dissolved."""
    why = _reason(reason)
    if len(parts) < 2:
        raise InvalidInput("拆分须给出至少两个新支部（--into 编码:名称[:党员数]）")
    b = _live(session, code)
    committee = _committee(session, b.committee_id)
    _require_org(actor, committee)
    if len({p[0] for p in parts}) != len(parts):
        raise InvalidInput("拆分后的支部编码重复")
    new = [_copy(b, code=_new_code(session, c), name=n, members=m) for c, n, m in parts]
    session.add_all(new)
    camp = current_campaign(session, b.committee_id)
    out = Outcome(kind="split", campaign=camp.code if camp else None)
    for n in new:
        out.created.append(n.code)
        _lineage(session, out, kind="split", src=code, dst=n.code, committee_id=b.committee_id, campaign_row=camp,
                 actor=actor, now=now, reason=why)
    if _retire(session, out, [b], camp, f"支部拆分为 {'、'.join(p[0] for p in parts)}：{why}", actor, now):
        assert camp is not None
        out.opened += _open_new(session, camp, new, stage=stage, why=f"由 {code} 拆分（{why}）", actor=actor.email,
                                now=now)
    return _finish(session, out, actor, now)


def merge(session: Session, actor: Actor, codes: list[str], into: str, *, name: str | None, reason: str,
          now: dt.datetime, stage: Stage | None = None) -> Outcome:
    """Several branches into one: ``into`` an existing one of them (it stays) or a new code (``name``)."""
    why = _reason(reason)
    if not codes:
        raise InvalidInput("合并须给出被合并的支部")
    sources = [_live(session, c) for c in dict.fromkeys(codes)]
    committees = {s.committee_id for s in sources}
    if len(committees) != 1:
        raise InvalidInput("只能合并同一党委下的支部")
    committee = _committee(session, sources[0].committee_id)
    _require_org(actor, committee)
    existing = session.scalar(select(Branch).where(Branch.code == into))
    camp = current_campaign(session, committee.id)
    out = Outcome(kind="merge", campaign=camp.code if camp else None)
    if existing is not None:
        if existing.dissolved_on is not None or existing.committee_id != committee.id:
            raise InvalidInput(f"不能并入党支部 {into}：已撤销或不属于同一党委")
        target, fresh = existing, False
        if name:
            target.name = name.strip()
    else:
        if not name:
            raise InvalidInput(f"支部 {into} 不存在：合并为新支部须给出 --name")
        if len(sources) < 2:
            raise InvalidInput("合并为新支部须给出至少两个被合并的支部")
        target = _copy(sources[0], code=_new_code(session, into), name=name.strip(),
                       members=sum(s.member_count for s in sources))
        session.add(target)
        fresh = True
        out.created.append(into)
    retiring = [s for s in sources if s.code != target.code]
    if not retiring:
        raise InvalidInput("合并须至少撤销一个被并入的支部")
    if not fresh:
        target.member_count = target.member_count + sum(s.member_count for s in retiring)
        out.created.append(target.code)  # its facts changed: recorded in the master-data log
    for s in sources:
        if s.code != target.code:
            _lineage(session, out, kind="merge", src=s.code, dst=target.code, committee_id=committee.id,
                     campaign_row=camp, actor=actor, now=now, reason=why)
    any_open = _retire(session, out, retiring, camp, f"支部并入 {target.code}：{why}", actor, now)
    if fresh and any_open:
        assert camp is not None
        out.opened += _open_new(session, camp, [target], stage=stage, why=f"由 {'、'.join(codes)} 合并（{why}）",
                                actor=actor.email, now=now)
    return _finish(session, out, actor, now)


def rename(session: Session, actor: Actor, code: str, *, name: str, to: str | None = None, reason: str,
           now: dt.datetime) -> Outcome:
    """A new name (same code), or — between campaigns — a new code: a new branch row succeeding the old one."""
    why = _reason(reason)
    b = _live(session, code)
    committee = _committee(session, b.committee_id)
    _require_org(actor, committee)
    _limits.require(_limits.check_name(name, "支部名称", "org_name"))
    camp = current_campaign(session, b.committee_id)
    out = Outcome(kind="rename", campaign=camp.code if camp else None)
    if not to or to == code:
        b.name = name.strip()
        out.created.append(code)
        _lineage(session, out, kind="rename", src=code, dst=code, committee_id=b.committee_id, campaign_row=camp,
                 actor=actor, now=now, reason=why)
        return _finish(session, out, actor, now)
    if camp is not None and _open_case_in(session, camp, code):
        # a new code would start a new case without this year's records: keep the code until the year ends
        raise InvalidInput(f"党支部 {code} 在活动 {camp.code} 中尚未结束，不能更改支部编码（已填报的材料会丢失）："
                           "请只改名称（不带 --to），或在活动结束后再更改编码")
    new = _copy(b, code=_new_code(session, to), name=name.strip(), members=None)
    session.add(new)
    out.created.append(to)
    _lineage(session, out, kind="rename", src=code, dst=to, committee_id=b.committee_id, campaign_row=camp,
             actor=actor, now=now, reason=why)
    _retire(session, out, [b], camp, f"支部更名为 {to}：{why}", actor, now)
    return _finish(session, out, actor, now)


def lineage_of(session: Session, code: str) -> list[dict[str, Any]]:
    """Every lineage row that names the branch, oldest first."""
    from workflow.audit import iso

    rows = session.scalars(select(BranchLineageRow).where(
        or_(BranchLineageRow.from_code == code, BranchLineageRow.to_code == code)).order_by(BranchLineageRow.id))
    return [{"kind": r.kind, "label": KIND_LABELS.get(r.kind, r.kind), "from": r.from_code, "to": r.to_code,
             "at": iso(r.at), "actor": r.actor, "reason": r.reason} for r in rows]
