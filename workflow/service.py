"""Use cases: load → check role → domain call → append events → save. The caller owns the transaction.

Every function takes a ``Session`` and an explicit ``now`` (an aware datetime read once at the edge),
never commits, and either appends all its events or raises before anything is written: a refused move
changes nothing. A lost race surfaces as :class:`Conflict` when the projection's version check fails.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from states import spec_for
from states.acceptance import Inspection
from states.base import ROLE_LABELS, Role, Stage
from states.committee_grading import Adjustment
from states.publicity import Objection, Resolution, open_objections
from states.rectification import Completion
from workflow import attachments as _files
from workflow import grading, machine
from workflow import limits as _limits
from workflow.calendar import for_campaign
from workflow.case import current_grade
from workflow.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Problem,
    TransitionRefused,
    invalid_from_pydantic,
)
from workflow.models import Person, RoleAssignment
from workflow.repository import _STAGE_BY_VALUE, LoadedCase, _cursor, append, load_case, save

SYSTEM = "system"


@dataclass(frozen=True, kw_only=True)
class Actor:
    """Who acts: a person's e-mail and name and their (role, scope code) pairs."""

    email: str
    name: str
    roles: frozenset[tuple[Role, str]]

    def has(self, role: Role, scope: str | None = "") -> bool:
        return (role, scope or "") in self.roles

    def has_role(self, role: Role) -> bool:
        return any(r is role for r, _ in self.roles)


_ACTORS = "branchflow.actors"
_ACTOR_RAW = {sqlite: ("SELECT p.email, p.name, r.role, r.scope_code FROM people p "
                       "LEFT JOIN role_assignments r ON r.person_id = p.id WHERE p.email = " + ("?" if sqlite else "%s"))
              for sqlite in (True, False)}


def actor_for(session: Session, email: str) -> Actor:
    """The person and their roles, in one query, cached for the session's life (a request or a command);
    the cache is dropped when the session flushes a change to people or roles."""
    key = email.strip().lower()
    cache: dict[str, Actor] = session.info.setdefault(_ACTORS, {})
    hit = cache.get(key)
    if hit is not None:
        return hit
    sql, cur, _ = _cursor(session)  # the DBAPI cursor: a request looks its person up once, a command per person
    try:
        cur.execute(_ACTOR_RAW[sql.sqlite], (key,))
        rows = cur.fetchall()
    finally:
        cur.close()
    if not rows:
        raise NotFound(f"找不到用户 {email!r}：请先用 `branchflow person add` 添加")
    actor = Actor(email=rows[0][0], name=rows[0][1],
                  roles=frozenset((Role(r), sc) for _, _, r, sc in rows if r is not None))
    cache[key] = actor
    return actor


@event.listens_for(Session, "before_flush")
def _forget_actors(session: Session, _ctx: Any, _instances: Any) -> None:
    if _ACTORS in session.info and any(
            isinstance(o, Person | RoleAssignment) for o in (*session.new, *session.dirty, *session.deleted)):
        del session.info[_ACTORS]


def _scope(role: Role, case: LoadedCase) -> str | None:
    """The scope code a role must hold to act on the case (its branch, general branch or committee)."""
    if role is Role.branch_secretary:
        return case.branch.code
    if role is Role.general_branch_secretary:
        return case.general_branch_code
    if role is Role.org_department or role is Role.committee_member:
        return case.committee_code
    if role is Role.auditor:
        return ""
    raise KeyError(role)


def may(actor: Actor, roles: Iterable[Role], case: LoadedCase) -> bool:
    return any(actor.has(r, _scope(r, case)) for r in roles if r is not Role.auditor)


def _roles_text(roles: Iterable[Role]) -> list[str]:
    order = list(Role)
    return [ROLE_LABELS[r] for r in sorted(roles, key=order.index)]


def require(actor: Actor, roles: Iterable[Role], case: LoadedCase, what: str) -> None:
    roles = list(roles)
    if not may(actor, roles, case):
        raise Forbidden(
            f"{actor.name}（{actor.email}）无权对党支部“{case.branch.name}”{what}；"
            f"可执行该操作的角色：{'、'.join(_roles_text(roles))}（限本单位）"
        )


def _validate(model: type[BaseModel], data: Any, what: str) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:  # Chinese, field by field (workflow.errors); never the input
        raise invalid_from_pydantic(exc.errors(), f"{what}数据") from None


def _json(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=True)


def _load(session: Session, branch: str, campaign: str | None, expected_version: int | None) -> LoadedCase:
    case = load_case(session, branch, campaign)
    if expected_version is not None and expected_version != case.version:
        raise Conflict(
            f"党支部 {branch} 已被他人修改（当前版本 {case.version}，你看到的是版本 {expected_version}），请刷新后重试"
        )
    return case


class LostRace(Conflict):
    """该支部已被他人同时修改，本次操作未生效，请刷新后重试。

    ``stage`` is the stage the case was in when this call loaded it: a caller that retries an ``advance``
    passes it back as ``from_stage``, so that a retry finding the branch already moved on reports the
    lost race (exit 6) instead of the unmet criteria of a stage the caller never meant to leave."""

    def __init__(self, message: str, *, stage: Stage) -> None:
        super().__init__(message)
        self.stage = stage


def _commit_point(session: Session, case: LoadedCase, now: dt.datetime) -> LoadedCase:
    code = case.branch.code
    loaded_stage = _STAGE_BY_VALUE[case.row.stage]  # the row keeps the loaded stage until the save succeeds
    try:
        save(session, case, now=now)
        session.flush()
    except (StaleDataError, IntegrityError) as exc:
        raise LostRace(f"党支部 {code} 已被他人同时修改，本次操作未生效，请刷新后重试", stage=loaded_stage) from exc
    return case


def _in_stage(case: LoadedCase, stages: Iterable[Stage], what: str) -> None:
    stages = list(stages)
    if case.stage not in stages:
        raise TransitionRefused(
            f"党支部“{case.branch.name}”当前处于“{case.stage.label}”环节，不能{what}"
            f"（仅限：{'、'.join(s.label for s in stages)}）"
        )


def _local_date(case: LoadedCase, now: dt.datetime) -> dt.date:
    return now.astimezone(case.campaign.tz).date()


# --- recording stage data --------------------------------------------------------------------------

def _with_files(session: Session, case: LoadedCase, files: Sequence[_files.Upload], data: dict[str, Any]) -> list[Any]:
    """The uploads checked against the per-record and per-case limits (issue 16). A reference may only come
    from bytes uploaded with the form: ``attachments`` in the submitted data itself is refused."""
    if "attachments" in data:
        raise InvalidInput("附件须随表单上传文件，不能在数据中直接引用（attachments）")
    return _files.check_batch(files, _files.refs_in(case.state)) if files else []


def _index_files(session: Session, case: LoadedCase, files: Sequence[_files.Upload], at: dt.datetime) -> None:
    if files:  # the event just appended is the last pending one
        _files.index(session, case.row.id, case.row.version + len(case.pending), at, _files.refs_json(files))


def record(session: Session, branch: str, actor: Actor, data: dict[str, Any], *, now: dt.datetime,
           campaign: str | None = None, expected_version: int | None = None,
           files: Sequence[_files.Upload] = ()) -> LoadedCase:
    """File the current stage's data (survey, self-assessment, member evaluation, rectification, acceptance).

    ``files``: checked uploads (:func:`workflow.attachments.check_file`) for the self-analysis or the
    inspection; their references go into the event, the caller puts the bytes into the blob store."""
    case = _load(session, branch, campaign, expected_version)
    if case.stage is Stage.acceptance:
        return inspect(session, branch, actor, data, now=now, campaign=campaign, files=files)
    if case.stage is Stage.accepted:
        raise TransitionRefused(f"党支部“{case.branch.name}”已验收，不能再填报")
    spec = spec_for(case.stage)
    if spec.record_model is None:
        raise TransitionRefused(
            f"“{case.stage.label}”环节没有填报表单：请使用 "
            + ("grade / adjust / sign" if case.stage is Stage.committee_grading else "publish / object / resolve")
        )
    require(actor, spec.recorders, case, f"填报“{case.stage.label}”")
    _limits.require(_limits.check_data(data, "填报数据"))  # every text and number within workflow.limits
    files = _with_files(session, case, files, data)
    if files and case.stage is not Stage.rectification:
        raise InvalidInput(f"“{case.stage.label}”环节的表单不接受附件")
    rec = _validate(spec.record_model, data, f"“{case.stage.label}”")
    payload = _json(rec)
    if files:
        payload["attachments"] = _files.refs_json(files)
    validate: Callable[..., list[Any]] | None = spec.extra.get("validate")  # Problems (or plain sentences)
    if validate:
        found = [p if isinstance(p, Problem) else Problem(message=str(p)) for p in validate(payload, case.campaign,
                                                                                             case.facts)]
        if found:
            raise InvalidInput(f"“{case.stage.label}”数据无效：\n" + "\n".join(f"  {p}" for p in found),
                               problems=found)
    refuse_submission: Callable[..., list[Any]] | None = spec.extra.get("refuse_submission")
    if refuse_submission:
        refused = refuse_submission(case.state, payload, case.campaign)
        if refused:
            raise TransitionRefused("整改方案未提交", unmet=refused)
    if (case.stage is Stage.rectification and case.state["records"].get("rectification", {}).get("submitted")
            and payload.get("items") is not None):
        raise TransitionRefused("整改方案已提交，不能再修改整改事项；请逐项完成并上传佐证")
    append(session, case, kind="recorded", actor=actor.email, at=now, payload={"stage": case.stage.value, "data": payload})
    _index_files(session, case, files, now)
    return _commit_point(session, case, now)


def complete_item(session: Session, branch: str, actor: Actor, item: int, evidence: str, *,
                  now: dt.datetime, campaign: str | None = None, files: Sequence[_files.Upload] = ()) -> LoadedCase:
    case = _load(session, branch, campaign, None)
    _in_stage(case, [Stage.rectification], "完成整改事项")
    require(actor, [Role.branch_secretary], case, "完成整改事项")
    _limits.require(_limits.check_text(evidence, "佐证"), "evidence")
    c = _validate(Completion, {"item": item, "evidence": evidence}, "整改完成情况")
    rect = case.state["records"].get("rectification", {})
    items = rect.get("items", [])
    if not rect.get("submitted"):
        raise TransitionRefused("整改方案尚未提交，不能登记完成情况")
    if not 1 <= item <= len(items):
        raise InvalidInput(f"整改方案中没有第 {item} 项（共 {len(items)} 项）")
    if items[item - 1].get("done"):
        raise InvalidInput(f"第 {item} 项已登记完成")
    files = _with_files(session, case, files, {})
    payload = _json(c)
    if files:
        payload["attachments"] = _files.refs_json(files)
    append(session, case, kind="item_completed", actor=actor.email, at=now, payload=payload)
    _index_files(session, case, files, now)
    return _commit_point(session, case, now)


def inspect(session: Session, branch: str, actor: Actor, data: dict[str, Any], *, now: dt.datetime,
            campaign: str | None = None, files: Sequence[_files.Upload] = ()) -> LoadedCase:
    """Record the acceptance inspection and its re-grade; a failed one sends the case back to rectification."""
    case = _load(session, branch, campaign, None)
    _in_stage(case, [Stage.acceptance], "记录检查验收")
    require(actor, spec_for(Stage.acceptance).recorders, case, "记录检查验收")
    files = _with_files(session, case, files, data)
    insp = _validate(Inspection, data, "检查验收")
    assert isinstance(insp, Inspection)
    today = _local_date(case, now)
    if not insp.passed:
        if insp.new_deadline is None:
            raise InvalidInput.about("new_deadline", "验收未通过时须给出限期完成整改的新截止日期", key="missing")
        if insp.new_deadline <= today:
            raise InvalidInput.about("new_deadline", f"新截止日期 {insp.new_deadline} 须晚于今天 {today}",
                                     key="after_today", today=today.isoformat())
        _limits.require(_limits.check_date(insp.new_deadline, "新截止日期", case.campaign.year), "new_deadline")
    elif insp.regrade_score is None:  # a failed inspection needs no re-grade: the branch rectifies again first
        raise InvalidInput.about("regrade_score", "验收通过时须填写再次定级得分（0–100）", key="missing")
    band = grading.band_of(case.campaign, insp.regrade_score) if insp.regrade_score is not None else None
    payload = {**_json(insp), "regrade": band.code if band else None, "regrade_label": band.grade if band else None,
               "first_grade": case.state["final_grade"]}
    if files:
        payload["attachments"] = _files.refs_json(files)
    append(session, case, kind="inspected", actor=actor.email, at=now, payload=payload)
    _index_files(session, case, files, now)
    if not insp.passed:
        _move(session, case, actor, "fail_inspection", now, extra={"deadline": insp.new_deadline.isoformat()})  # type: ignore[union-attr]
    return _commit_point(session, case, now)


# --- committee grading ------------------------------------------------------------------------------

def _grade_locked(case: LoadedCase) -> bool:
    quorum = case.campaign.quorum_for(case.facts.committee_size)
    return bool(case.state.get("grade")) and len(case.state["signatures"]) >= quorum


def compute_grade(session: Session, branch: str, actor: Actor, *, now: dt.datetime,
                  campaign: str | None = None) -> LoadedCase:
    case = _load(session, branch, campaign, None)
    _in_stage(case, [Stage.committee_grading], "计算等级")
    require(actor, [Role.committee_member, Role.org_department], case, "计算等级")
    if _grade_locked(case):
        raise TransitionRefused("签字已达法定人数，等级已锁定，不能重新计算")
    result = grading.grade(case.campaign, case.facts, case.state["records"], as_of=_local_date(case, now))
    append(session, case, kind="graded", actor=actor.email, at=now, payload={"result": result})
    return _commit_point(session, case, now)


def adjust_grade(session: Session, branch: str, actor: Actor, grade: str, reason: str, *,
                 now: dt.datetime, campaign: str | None = None) -> LoadedCase:
    case = _load(session, branch, campaign, None)
    _in_stage(case, [Stage.committee_grading], "调整等级")
    require(actor, [Role.committee_member], case, "调整等级")
    _limits.require(_limits.check_name(grade, "等级", "grade") or _limits.check_text(reason, "理由"))
    adj = _validate(Adjustment, {"grade": grade, "reason": reason}, "等级调整")
    if not case.state.get("grade"):
        raise TransitionRefused("尚未计算得分和等级，不能调整")
    if _grade_locked(case):
        raise TransitionRefused("签字已达法定人数，等级已锁定，不能调整")
    scale = case.campaign.grading.scale
    codes = {b.code: b for b in scale.bands}
    by_label = {b.grade: b for b in scale.bands}
    band = codes.get(grade) or by_label.get(grade)
    if band is None:
        raise InvalidInput.about("grade", f"本活动没有等级“{grade}”；可用：{'、'.join(b.grade for b in scale.bands)}",
                                 key="unknown_grade")
    append(session, case, kind="grade_adjusted", actor=actor.email, at=now,
           payload={"grade": band.code, "grade_label": band.grade, "reason": _json(adj)["reason"],
                    "computed": case.state["grade"]["grade"]})
    return _commit_point(session, case, now)


def sign(session: Session, branch: str, actor: Actor, *, now: dt.datetime, campaign: str | None = None) -> LoadedCase:
    case = _load(session, branch, campaign, None)
    _in_stage(case, [Stage.committee_grading], "签字")
    require(actor, [Role.committee_member], case, "签字确认等级")
    if actor.has(Role.branch_secretary, case.branch.code) or actor.email == case.branch.secretary_email:
        raise Forbidden(f"{actor.name} 是该支部的书记，不能为本支部的等级签字")
    if not case.state.get("grade"):
        raise TransitionRefused("尚未计算得分和等级，不能签字")
    if any(s["member"] == actor.email for s in case.state["signatures"]):
        raise InvalidInput(f"{actor.name} 已签过字，每位委员只签一次")
    append(session, case, kind="signed", actor=actor.email, at=now,
           payload={"grade": current_grade(case.state), "name": actor.name})
    return _commit_point(session, case, now)


# --- publicity --------------------------------------------------------------------------------------

def publish(session: Session, branch: str, actor: Actor, *, now: dt.datetime, start: dt.date | None = None,
            campaign: str | None = None) -> LoadedCase:
    """Publish the grade; the window is the campaign's number of working days from ``start`` (default today)."""
    case = _load(session, branch, campaign, None)
    _in_stage(case, [Stage.publicity], "发布公示")
    require(actor, [Role.org_department], case, "发布公示")
    if case.state.get("publicity"):
        raise InvalidInput("该支部已发布公示")
    today = _local_date(case, now)
    if start is not None and start < today:
        raise InvalidInput(f"公示开始日期 {start} 早于今天 {today}：公示期不能倒填")
    cal = for_campaign(case.campaign)
    first = cal.next_working_day(start or today)
    n = case.campaign.publicity.window_working_days
    end = cal.add_working_days(first, n)
    append(session, case, kind="publicity_started", actor=actor.email, at=now,
           payload={"start": first.isoformat(), "end": end.isoformat(), "working_days": n,
                    "grade": case.state["final_grade"]})
    return _commit_point(session, case, now)


def lodge_objection(session: Session, branch: str, actor: Actor, text: str, *, now: dt.datetime,
                    campaign: str | None = None) -> LoadedCase:
    """Any logged-in person but a (read-only) auditor may object while the publicity window is open."""
    case = _load(session, branch, campaign, None)
    _in_stage(case, [Stage.publicity], "提出异议")
    pub = case.state.get("publicity")
    if not pub:
        raise TransitionRefused("该支部尚未发布公示，不能提出异议")
    if actor.roles and all(r is Role.auditor for r, _ in actor.roles):
        raise Forbidden("审计人员只读，不能提出异议")
    today = _local_date(case, now)
    if today < dt.date.fromisoformat(pub["start"]):
        raise TransitionRefused(f"公示期自 {pub['start']} 开始，尚不能提出异议")
    if today > dt.date.fromisoformat(pub["end"]):
        raise TransitionRefused(f"公示期已于 {pub['end']} 结束，不能再提出异议")
    _limits.require(_limits.check_text(text, "异议内容"), "text")
    obj = _validate(Objection, {"text": text}, "异议")
    next_id = len(case.state["objections"]) + 1
    append(session, case, kind="objection_lodged", actor=actor.email, at=now,
           payload={"id": next_id, "text": _json(obj)["text"]})
    return _commit_point(session, case, now)


def resolve_objection(session: Session, branch: str, actor: Actor, objection_id: int, *, upheld: bool,
                      reason: str, now: dt.datetime, campaign: str | None = None) -> LoadedCase:
    """Upheld → the case goes back to committee grading; dismissed → recorded with its reason."""
    case = _load(session, branch, campaign, None)
    _in_stage(case, [Stage.publicity], "处理异议")
    require(actor, [Role.org_department], case, "处理异议")
    _limits.require(_limits.check_text(reason, "理由"), "reason")
    res = _validate(Resolution, {"upheld": upheld, "reason": reason}, "异议处理")
    if not any(o["id"] == objection_id for o in open_objections(case.state)):
        raise NotFound(f"没有编号为 {objection_id} 的待处理异议")
    append(session, case, kind="objection_resolved", actor=actor.email, at=now,
           payload={"id": objection_id, **_json(res)})
    if upheld:
        _move(session, case, actor, "uphold_objection", now)
    return _commit_point(session, case, now)


# --- moves ------------------------------------------------------------------------------------------

def _move(session: Session, case: LoadedCase, actor: Actor, trigger: str, now: dt.datetime,
          check: Callable[[], list[Any]] = list, extra: dict[str, Any] | None = None) -> None:
    src = case.stage
    dest = machine.fire(src, trigger, check)
    append(session, case, kind="moved", actor=actor.email, at=now,
           payload={"trigger": trigger, "from": src.value, "to": dest.value, **(extra or {})})


def unmet(case: LoadedCase, now: dt.datetime) -> list[Any]:
    if case.stage is Stage.accepted:
        return []
    return spec_for(case.stage).can_leave(case.state, case.campaign, case.facts, now=now)


def advance(session: Session, branch: str, actor: Actor, *, now: dt.datetime, campaign: str | None = None,
            expected_version: int | None = None, from_stage: Stage | None = None) -> LoadedCase:
    """Move the case to the next stage once the current stage's exit criteria hold.

    ``from_stage``: the stage the caller means to leave (a retry after a :class:`LostRace` passes the
    stage it saw first); when the branch is no longer there, someone else moved it first — a conflict."""
    case = _load(session, branch, campaign, expected_version)
    if from_stage is not None and case.stage is not from_stage:
        raise Conflict(
            f"党支部 {branch} 已被他人先一步推进：你要推进的是“{from_stage.label}”环节，"
            f"该支部现处于“{case.stage.label}”环节；本次操作未生效，请刷新后查看"
        )
    if case.stage is Stage.accepted:
        raise TransitionRefused(f"党支部“{case.branch.name}”已验收，流程已结束")
    spec = spec_for(case.stage)
    require(actor, spec.advancers, case, f"推进“{case.stage.label}”环节")
    try:
        _move(session, case, actor, "advance", now, check=lambda: unmet(case, now))
    except TransitionRefused as exc:
        raise TransitionRefused(
            f"党支部“{case.branch.name}”不能离开“{case.stage.label}”环节",
            unmet=exc.unmet, allowed_roles=_roles_text(spec.advancers),
        ) from None
    return _commit_point(session, case, now)


def extend_deadline(session: Session, branch: str, actor: Actor, deadline: dt.date, reason: str, *,
                    now: dt.datetime, campaign: str | None = None, stage: Stage | None = None) -> LoadedCase:
    case = _load(session, branch, campaign, None)
    require(actor, [Role.org_department], case, "延长截止日期")
    target = stage or case.stage
    if target is Stage.accepted:
        raise TransitionRefused("已验收的支部没有截止日期")
    order = list(Stage)
    if order.index(target) < order.index(case.stage):
        raise TransitionRefused(f"“{target.label}”环节已经完成，延长它的截止日期没有意义")
    current = case.state["deadlines"].get(target.value) or case.campaign.deadline_for(target)
    current_date = dt.date.fromisoformat(current) if isinstance(current, str) else current
    today = _local_date(case, now)
    if deadline <= today or (current_date is not None and deadline <= current_date):
        raise InvalidInput(f"新的截止日期 {deadline} 须晚于今天 {today} 和原截止日期 {current_date}")
    if len(reason.strip()) < 2:
        raise InvalidInput("延长截止日期须写明理由")
    _limits.require(_limits.check_date(deadline, "新的截止日期", case.campaign.year))
    _limits.require(_limits.check_text(reason, "理由"))
    append(session, case, kind="deadline_extended", actor=actor.email, at=now,
           payload={"stage": target.value, "deadline": deadline.isoformat(), "reason": reason.strip()})
    return _commit_point(session, case, now)


def open_missing_cases(session: Session, campaign_code: str | None, *, now: dt.datetime) -> int:
    """Open a case for every branch that has none in the campaign; returns how many were opened."""
    from workflow.models import Branch, CaseRow
    from workflow.repository import get_campaign_row, open_cases

    camp = get_campaign_row(session, campaign_code)
    from workflow.calendar import require_known_year
    from workflow.repository import campaign_of

    require_known_year(campaign_of(camp))  # never open a campaign on a guessed calendar (issue 12)
    session.flush()
    have = select(CaseRow.branch_id).where(CaseRow.campaign_id == camp.id)
    q = select(Branch.id, Branch.code).where(Branch.id.not_in(have), Branch.dissolved_on.is_(None))
    if camp.committee_id is not None:  # a committee's campaign covers that committee's branches only (issue 12)
        q = q.where(Branch.committee_id == camp.committee_id)
    todo = session.execute(q.order_by(Branch.code)).tuples().all()
    n = 0
    for lo in range(0, len(todo), 5000):
        n += open_cases(session, camp, list(todo[lo: lo + 5000]), at=now)
    return n
