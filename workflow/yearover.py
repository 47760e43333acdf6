"""Year over year (issue 12): next year's campaign opened from last year's, last year's grade on each case,
and the movement (晋位升级) against it.

* :func:`create_from` — a new campaign of the same committee from ``LAST_CAMPAIGN``'s stored configuration,
  text-edited so its comments stay: ``year``, ``code`` and the year in ``name`` replaced, full-date deadlines
  shifted by the number of years (``"MM-DD"`` deadlines land on the new year by themselves); a date that
  has no counterpart (29 February) is refused. The old ``[calendar]`` section is dropped — last year's
  holidays say nothing about this year — and a new one comes from ``calendar_text`` (``--calendar``) or the
  explicit ``weekdays_only`` choice; a year ``chinesecalendar`` does not know without either is refused
  (workflow/calendar.require_known_year). ``previous_id`` is set; the summary lists what to review.
* :func:`previous_grades` — what :func:`workflow.repository.open_cases` writes in each ``opened`` event:
  the branch's grade of record in the previous campaign, or, for a branch reorganised in between, its
  predecessors' (``branch_lineage``): a split's parts inherit the parent's grade; a merger takes the
  **lowest** of the merged branches' grades — 晋位升级 is about lifting the weakest, and the average or the
  best would let a merger hide a 后进 branch's conversion — and the event records every source grade.
* The grade of record of a year (:func:`grade_of_record`): the re-grade of a passed acceptance
  (再次考评定级) if there is one, else the committee's published grade: the grade the branch ended the
  year with.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from states.base import Role
from workflow.calendar import describe, for_campaign, library_knows, require_known_year
from workflow.campaign import Campaign, GradeScale, parse_campaign_text
from workflow.errors import CalendarUnknown, InvalidInput, from_toml_error
from workflow.models import Branch, BranchLineageRow, CampaignRow, CaseRow, Committee, RoleAssignment

UP, SAME, DOWN, NEW, UNCOMPARABLE = "晋位", "持平", "降位", "新建", "不可比"
MOVEMENTS = (UP, SAME, DOWN, NEW, UNCOMPARABLE)
LINEAGE_KINDS = ("split", "merge", "rename")


def grade_of_record(state: dict[str, Any]) -> str | None:
    """The grade a branch ended its year with: a passed inspection's re-grade, else the published grade."""
    insp = state.get("inspection") or {}
    if insp.get("passed") and state.get("regrade"):
        return str(state["regrade"])
    return str(state["final_grade"]) if state.get("final_grade") else None


def movement(previous: str | None, current: str | None, scale: GradeScale) -> str | None:
    """晋位 / 持平 / 降位 against last year on this year's scale; None while this year is not graded."""
    if current is None:
        return None
    if previous is None:
        return NEW
    codes = {b.code for b in scale.bands}
    if previous not in codes or current not in codes:
        return UNCOMPARABLE  # another grade scale last year (a different preset)
    diff = scale.rank(previous) - scale.rank(current)
    return UP if diff > 0 else (SAME if diff == 0 else DOWN)


# --- previous grades (used when cases are opened) ---------------------------------------------------

def _grades_in(session: Session, campaign_id: int, codes: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for i in range(0, len(codes), 900):
        for code, state in session.execute(
                select(Branch.code, CaseRow.state).join(CaseRow, CaseRow.branch_id == Branch.id)
                .where(CaseRow.campaign_id == campaign_id, Branch.code.in_(codes[i:i + 900]))):
            out[code] = grade_of_record(state)
    return out


def _predecessors(session: Session, codes: list[str]) -> dict[str, list[tuple[str, str]]]:
    """to_code → [(kind, from_code)] of split, merge and rename lineage rows."""
    out: dict[str, list[tuple[str, str]]] = {}
    for i in range(0, len(codes), 900):
        for kind, src, dst in session.execute(
                select(BranchLineageRow.kind, BranchLineageRow.from_code, BranchLineageRow.to_code)
                .where(BranchLineageRow.to_code.in_(codes[i:i + 900]), BranchLineageRow.kind.in_(LINEAGE_KINDS))
                .order_by(BranchLineageRow.id)):
            if src and dst:
                out.setdefault(dst, []).append((kind, src))
    return out


def previous_grades(session: Session, campaign_row: CampaignRow, codes: list[str]) -> dict[str, dict[str, Any]]:
    """code → {"grade", "detail": {"campaign", "sources": [{"branch", "grade", "via"}], "rule"}}."""
    prev = session.get(CampaignRow, campaign_row.previous_id) if campaign_row.previous_id else None
    if prev is None:
        return {}
    prev_scale = parse_campaign_text(prev.config, source=f"campaign:{prev.code}").grading.scale
    direct = _grades_in(session, prev.id, codes)
    out: dict[str, dict[str, Any]] = {}
    todo = [c for c in codes if c not in direct]
    for code in codes:
        if code in direct:
            out[code] = {"grade": direct[code], "detail": {
                "campaign": prev.code, "sources": [{"branch": code, "grade": direct[code], "via": "same"}],
                "rule": "上一年度本支部的等级"}}
    # lineage: walk back (a few generations at most) until branches with a case last year are found
    frontier: dict[str, list[tuple[str, str]]] = {c: [] for c in todo}  # code → [(via, ancestor)]
    for _ in range(5):
        pending = {c: anc for c, anc in frontier.items() if c not in out}
        if not pending:
            break
        heads = {a for c, anc in pending.items() for _, a in (anc or [("", c)])}
        preds = _predecessors(session, sorted(heads))
        if not preds:
            break
        next_frontier: dict[str, list[tuple[str, str]]] = {}
        for c, anc in pending.items():
            step = [(kind, src) for _, a in (anc or [("", c)]) for kind, src in preds.get(a, [])]
            if step:
                next_frontier[c] = step
        if not next_frontier:
            break
        found = _grades_in(session, prev.id, sorted({a for anc in next_frontier.values() for _, a in anc}))
        for c, anc in next_frontier.items():
            with_case = [(kind, a) for kind, a in anc if a in found]
            if not with_case:
                continue
            sources = [{"branch": a, "grade": found[a], "via": kind} for kind, a in with_case]
            graded = [s["grade"] for s in sources if s["grade"]]
            kinds = {k for k, _ in with_case}
            if len(with_case) > 1 or "merge" in kinds:
                known = [g for g in graded if g in {b.code for b in prev_scale.bands}]
                grade = max(known, key=prev_scale.rank) if known else None
                rule = "合并：取被合并支部上一年度等级中最低者（晋位升级以最弱者为起点，避免合并掩盖后进支部的转化）"
            else:
                grade = graded[0] if graded else None
                rule = {"split": "拆分：沿用原支部上一年度的等级", "rename": "更名：沿用原支部上一年度的等级"}.get(
                    with_case[0][0], "沿用前身支部上一年度的等级")
            out[c] = {"grade": grade, "detail": {"campaign": prev.code, "sources": sources, "rule": rule}}
        frontier = next_frontier
    return out


# --- next year's campaign from last year's ------------------------------------------------------------

_HEADER = re.compile(r"(?m)^\s*\[")


def _sections(text: str) -> list[tuple[str, str]]:
    """(header name or "", text) in order; the name of ``[calendar]`` is "calendar"."""
    out: list[tuple[str, str]] = []
    starts = [m.start() for m in _HEADER.finditer(text)]
    bounds = [0, *starts, len(text)]
    for a, b in itertools.pairwise(bounds):
        chunk = text[a:b]
        if not chunk:
            continue
        m = re.match(r"\s*\[\[?\s*([^\]]+?)\s*\]\]?", chunk)
        out.append((m.group(1) if m and a in starts else "", chunk))
    return out


def _shift(d: dt.date, years: int, where: str) -> dt.date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:
        raise InvalidInput(
            f"{where} 的日期 {d} 在 {d.year + years} 年没有对应的日期（闰日），不能自动顺延：请导出配置后手工填写，"
            "再用 campaign create --file 创建") from None


def shifted_config(old_text: str, old: Campaign, *, year: int, code: str, calendar_text: str) -> str:
    """The stored configuration moved to ``year``: comments kept, the old ``[calendar]`` replaced."""
    delta = year - old.year
    parts = []
    for name, chunk in _sections(old_text):
        if name == "calendar":
            continue
        if name == "":
            chunk, n = re.subn(r"(?m)^year\s*=\s*\d{4}\s*$", f"year = {year}", chunk, count=1)
            if n != 1:
                raise InvalidInput(f"活动 {old.code} 的配置缺少 year 字段，不能自动顺延")
            chunk, n = re.subn(r'(?m)^code\s*=\s*"[^"]*"', f'code = "{code}"', chunk, count=1)
            if n != 1:
                raise InvalidInput(f"活动 {old.code} 的配置缺少 code 字段，不能自动顺延")
            chunk = re.sub(r'(?m)^(name\s*=\s*"[^"]*?)' + str(old.year), lambda m: f"{m.group(1)}{year}", chunk, count=1)
        if name == "deadlines":
            def move(m: re.Match[str]) -> str:
                d = _shift(dt.date.fromisoformat(m.group(4)), delta, f"deadlines.{m.group(1)}")
                return f"{m.group(1)}{m.group(2)}{m.group(3)}{d.isoformat()}{m.group(3)}"
            chunk = re.sub(r'(?m)^(\w+)(\s*=\s*)("?)(\d{4}-\d{2}-\d{2})\3', move, chunk)
        parts.append(chunk)
    text = "".join(parts).rstrip("\n") + "\n"
    if calendar_text.strip():
        text += "\n" + calendar_text.strip() + "\n"
    return text


def calendar_section(*, year: int, calendar_file_text: str | None, weekdays_only: bool) -> str:
    """The ``[calendar]`` section of the new campaign, checked: dates must lie in ``year`` or after."""
    if calendar_file_text and weekdays_only:
        raise InvalidInput("--calendar 与 --weekdays-only 只能选一个")
    if weekdays_only:
        return "[calendar]\n# 经确认：该年仅按周一至周五计算工作日（不考虑节假日与调休）\nweekdays_only = true\n"
    if not calendar_file_text:
        return ""
    try:
        data = tomllib.loads(calendar_file_text)
    except tomllib.TOMLDecodeError as exc:
        raise from_toml_error(exc, "工作日历文件") from None
    cal = data.get("calendar", data)
    if not isinstance(cal, dict) or set(cal) - {"holidays", "workdays", "weekdays_only"}:
        raise InvalidInput("工作日历文件只能包含 [calendar] 一节：holidays、workdays（或 weekdays_only）")
    lines = ["[calendar]"]
    for key in ("holidays", "workdays"):
        days = cal.get(key, [])
        if not isinstance(days, list) or not all(isinstance(d, dt.date) and not isinstance(d, dt.datetime) for d in days):
            raise InvalidInput(f"工作日历文件 calendar.{key} 须为日期列表，如 [{year}-10-01, {year}-10-02]")
        old = [d for d in days if d.year < year]
        if old:
            raise InvalidInput(f"工作日历文件 calendar.{key} 含有 {year} 年之前的日期：{', '.join(map(str, old[:5]))}")
        lines.append(f"{key} = [{', '.join(d.isoformat() for d in sorted(days))}]")
    if cal.get("weekdays_only"):
        lines.append("weekdays_only = true")
    return "\n".join(lines) + "\n"


@dataclass
class Review:
    """What :func:`create_from` carried forward and what a person must check (printed in Chinese)."""

    code: str
    year: int
    source: str
    carried: list[str] = field(default_factory=list)
    review: list[str] = field(default_factory=list)
    opened: int = 0

    def lines(self) -> list[str]:
        out = [f"已从活动 {self.source} 创建 {self.year} 年活动 {self.code}，为 {self.opened} 个党支部立案"]
        out += ["沿用：" + c for c in self.carried]
        out += ["请复核：" + r for r in self.review]
        return out


def _default_code(old: Campaign, year: int) -> str:
    if str(old.year) in old.code:
        return old.code.replace(str(old.year), str(year))
    return f"{old.code}-{year}"


def create_from(session: Session, *, source: str, year: int, now: dt.datetime, code: str | None = None,
                calendar_file_text: str | None = None, weekdays_only: bool = False,
                actor: str = "system") -> tuple[CampaignRow, Review]:
    """Open ``year``'s campaign from ``source``'s configuration (same committee), cases opened."""
    from workflow.campaigns import _append_change, sha
    from workflow.repository import campaign_of, get_campaign_row
    from workflow.service import open_missing_cases

    src = get_campaign_row(session, source)
    old = campaign_of(src)
    if year <= old.year:
        raise InvalidInput(f"新活动年份 {year} 须晚于活动 {src.code} 的年份 {old.year}")
    new_code = code or _default_code(old, year)
    from workflow.tenancy import check_new_campaign, may_change

    owner = session.get(Committee, src.committee_id) if src.committee_id is not None else None
    if actor != "system":  # a person opens next year's campaign only for their own committee (issue 12)
        from workflow.errors import Forbidden
        from workflow.service import actor_for

        who = actor_for(session, actor)
        if not may_change(session, who, src):
            raise Forbidden(f"{who.name}（{who.email}）无权从活动 {src.code} 创建新活动；"
                            "可执行该操作的角色：组织部（限本党委）")
    if session.scalar(select(CampaignRow.id).where(CampaignRow.code == new_code)) is not None:
        raise InvalidInput(f"活动 {new_code} 已存在：请用 --code 指定新活动的编码")
    check_new_campaign(session, owner, code=new_code, year=year)  # one campaign per committee and year
    cal_text = calendar_section(year=year, calendar_file_text=calendar_file_text, weekdays_only=weekdays_only)
    text = shifted_config(src.config, old, year=year, code=new_code, calendar_text=cal_text)
    new = parse_campaign_text(text, source=f"由 {src.code} 顺延")
    try:
        require_known_year(new)
    except CalendarUnknown as exc:
        raise CalendarUnknown(
            exc.message + "\n用 --from 创建时：把上面的 [calendar] 一节写进一个文件，加 --calendar 文件名；"
            "或加 --weekdays-only 明确选择仅按周一至周五。") from None
    row = CampaignRow(code=new.code, name=new.name, year=new.year, config=text, created_at=now,
                      committee_id=src.committee_id, previous_id=src.id)
    session.add(row)
    session.flush()
    _append_change(session, row, kind="created", actor=actor, at=now,
                   payload={"source": f"from:{src.code}", "config_sha256": sha(text), "previous": src.code,
                            "weekdays_only": new.calendar.weekdays_only})
    opened = open_missing_cases(session, new.code, now=now)
    return row, _review(session, src, row, old, new, opened)


def _review(session: Session, src: CampaignRow, row: CampaignRow, old: Campaign, new: Campaign,
            opened: int) -> Review:
    r = Review(code=new.code, year=new.year, source=src.code, opened=opened)
    r.carried.append(f"评分标准 {len(new.grading.rubrics)} 套、等级 {' / '.join(b.grade for b in new.grading.scale.bands)}、"
                     f"权重、否决规则、最少票数 {new.member_evaluation.min_ballots}、公示期 {new.publicity.window_working_days} 个"
                     f"工作日、签字法定人数 {new.sign_off.quorum}、提醒与督促规则、任务清单 {len(new.tasks)} 项")
    scopes = ([c for c in [session.get(Committee, src.committee_id)] if c is not None] if src.committee_id is not None
              else list(session.scalars(select(Committee).order_by(Committee.code))))
    codes = [c.code for c in scopes]
    counts = dict(session.execute(select(RoleAssignment.role, func.count()).where(
        RoleAssignment.scope_code.in_(codes)).group_by(RoleAssignment.role)).tuples().all())
    r.carried.append(f"人员与角色按党委（{'、'.join(codes) or '—'}）保存，新活动直接沿用：组织部 "
                     f"{counts.get(Role.org_department.value, 0)} 人、党委委员 {counts.get(Role.committee_member.value, 0)} 人"
                     "（签字法定人数按现有委员计算）")
    r.carried.append(f"上一年度等级：每个党支部的立案记录写入其 {old.year} 年等级（改组的支部按沿革取前身的等级）")
    cal = for_campaign(new)
    for stage, d in new.deadlines.items():
        o = old.deadlines.get(stage)
        moved = f"{o} → {d}" if o else str(d)
        note = ""
        try:
            if not cal.is_working_day(d):
                note = "（该日不是工作日）"
        except CalendarUnknown:
            note = ""
        r.review.append(f"截止日期 {stage.label}：{moved}{note}")
    dropped = len(old.calendar.holidays) + len(old.calendar.workdays)
    if dropped:
        r.review.append(f"上一年度 [calendar] 中的 {dropped} 个日期不适用于 {new.year} 年，已去掉")
    r.review.append(calendar_in_force(session, row)
                    + ("" if library_knows(new.year) else "——国务院办公厅公布该年安排后，请用 campaign change 补上节假日与调休"))
    if any(t.deadline for t in new.tasks):
        r.review.append("任务清单中的完成时限为文字（如“4 月 18 日前”），未自动改动")
    return r


def calendar_in_force(session: Session, row: CampaignRow) -> str:
    """:func:`workflow.calendar.describe` for a stored campaign: for ``weekdays_only`` it names who chose it
    and when (the audited change that created the campaign or last changed its ``[calendar]``)."""
    import json

    from workflow.models import CampaignChangeRow, Person
    from workflow.repository import campaign_of

    c = campaign_of(row)
    confirmed = None
    if c.calendar.weekdays_only:
        for kind, actor, at, body in session.execute(
                select(CampaignChangeRow.kind, CampaignChangeRow.actor, CampaignChangeRow.at, CampaignChangeRow.body)
                .where(CampaignChangeRow.campaign_id == row.id).order_by(CampaignChangeRow.seq)):
            if kind == "created" or "calendar" in json.loads(body).get("payload", {}).get("sections", []):
                name = session.scalar(select(Person.name).where(Person.email == actor))
                confirmed = (f"{name}（{actor}）" if name else actor, at)
    return describe(c, confirmed=confirmed)


def grade_history(session: Session, code: str) -> dict[str, Any]:
    """A branch's grades across years: each campaign's grade of record, last year's grade and the movement,
    with the lineage rows that name the branch (its predecessors' and successors' codes)."""
    from workflow.lineage import lineage_of
    from workflow.repository import campaign_of, get_branch

    b = get_branch(session, code)
    years: list[dict[str, Any]] = []
    for camp, state in session.execute(
            select(CampaignRow, CaseRow.state).join(CaseRow, CaseRow.campaign_id == CampaignRow.id)
            .where(CaseRow.branch_id == b.id).order_by(CampaignRow.year, CampaignRow.id)).tuples():
        c = campaign_of(camp)
        labels = {band.code: band.grade for band in c.grading.scale.bands}
        grade, prev = grade_of_record(state), state.get("previous_grade")
        years.append({
            "campaign": camp.code, "campaign_name": camp.name, "year": camp.year, "stage": state["stage"],
            "grade": grade, "grade_label": labels.get(grade, grade) if grade else None,
            "first_grade": state.get("final_grade"), "previous_grade": prev,
            "previous_grade_label": labels.get(prev, prev) if prev else None,
            "movement": movement(prev, grade, c.grading.scale) if "previous_grade" in state else None,
            "closed": state.get("closed"),
        })
    return {"code": b.code, "name": b.name, "dissolved_on": b.dissolved_on.isoformat() if b.dissolved_on else None,
            "committee_id": b.committee_id, "years": years, "lineage": lineage_of(session, code)}
