"""Campaigns: one year's configuration (基层组织建设年), read from a TOML file and validated.

A campaign fixes its year and time zone, the rubric(s) and grade scale, evaluation weights and veto
rules, each stage's deadline, the publicity window, the sign-off quorum and the reminder policy. The
presets in ``workflow/presets/`` express the source institutions' rules; a department copies one and
edits it. Deadlines may be written as ``"MM-DD"`` (placed on the campaign's year) or as full dates.
"""

from __future__ import annotations

import datetime as dt
import itertools
import tomllib
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from states.base import WORKING_STAGES, Stage
from workflow.errors import InvalidInput, Problem, from_toml_error, problems_from_pydantic

PRESETS_PACKAGE = "workflow.presets"
BRANCH_TYPES = ("teacher", "undergraduate", "graduate", "admin", "retired")
BRANCH_TYPE_LABELS = {
    "teacher": "教工",
    "undergraduate": "本科生",
    "graduate": "研究生",
    "admin": "管理服务",
    "retired": "离退休",
}
SOURCES = ("self", "members", "peer", "superior")
SOURCE_LABELS = {"self": "支部自评", "members": "党员群众测评", "peer": "分类互评", "superior": "上级考评"}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RubricItem(_Frozen):
    """One line of a rubric: an id unique in its rubric, a category (e.g. 支部班子好), a text and a maximum."""

    id: str = Field(min_length=1)
    category: str = Field(min_length=1)
    text: str = Field(min_length=1)
    max: float = Field(gt=0)


class Rubric(_Frozen):
    """A list of items whose maxima sum to 100; ``branch_types`` limits it to some kinds of branch."""

    name: str = Field(min_length=1)
    branch_types: list[str] = Field(default_factory=list)
    items: list[RubricItem] = Field(min_length=1)

    @field_validator("branch_types")
    @classmethod
    def _known_types(cls, v: list[str]) -> list[str]:
        bad = [t for t in v if t not in BRANCH_TYPES]
        if bad:
            raise ValueError(f"未知的支部类型 {bad}；可用：{', '.join(BRANCH_TYPES)}")
        return v

    @model_validator(mode="after")
    def _sums_to_100(self) -> Rubric:
        total = sum(i.max for i in self.items)
        if abs(total - 100) > 1e-9:
            raise ValueError(f"评分标准“{self.name}”各项满分之和为 {total:g}，应为 100")
        ids = [i.id for i in self.items]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"评分标准“{self.name}”中条目编号重复：{dupes}")
        return self

    def item(self, item_id: str) -> RubricItem | None:
        return self.items_by_id.get(item_id)

    @cached_property
    def items_by_id(self) -> dict[str, RubricItem]:
        """The items by id (the model is frozen, so this is computed once; a self-assessment looks up each)."""
        return {i.id: i for i in self.items}

    @property
    def categories(self) -> list[str]:
        seen: list[str] = []
        for i in self.items:
            if i.category not in seen:
                seen.append(i.category)
        return seen


class GradeBand(_Frozen):
    """A grade and the lowest score that earns it; ``inclusive`` says whether a score equal to ``min`` does.

    Bands are listed best first; the last band must start at 0 inclusive so every score has a grade.
    ``demands`` is what the grade asks of the branch during rectification (seed 001).
    """

    grade: str = Field(min_length=1)
    code: str = Field(min_length=1)
    min: float = Field(ge=0, le=100)
    inclusive: bool = True
    demands: str = ""
    yellow_card: bool = False

    def admits(self, score: float) -> bool:
        return score >= self.min if self.inclusive else score > self.min

    @property
    def boundary(self) -> str:
        return f"{'≥' if self.inclusive else '>'} {self.min:g}"


class GradeScale(_Frozen):
    bands: list[GradeBand] = Field(min_length=2)
    note: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> GradeScale:
        mins = [b.min for b in self.bands]
        if any(a <= b for a, b in itertools.pairwise(mins)):
            order = "、".join(f"{b.grade} {b.min:g}" for b in self.bands)
            raise ValueError(f"等级须按分数从高到低排列，且下限严格递减（现为：{order}）")
        last = self.bands[-1]
        if last.min != 0 or not last.inclusive:
            raise ValueError("最低等级的下限须为 0（含 0），否则有的分数没有等级")
        codes = [b.code for b in self.bands]
        if len(set(codes)) != len(codes):
            raise ValueError("等级代码重复")
        return self

    def band_for(self, score: float) -> GradeBand:
        for band in self.bands:
            if band.admits(score):
                return band
        return self.bands[-1]

    def rank(self, code: str) -> int:
        """0 for the best grade, higher for worse ones."""
        for i, b in enumerate(self.bands):
            if b.code == code:
                return i
        raise InvalidInput(f"未知的等级代码 {code!r}")

    def by_code(self, code: str) -> GradeBand:
        return self.bands[self.rank(code)]

    @property
    def lowest(self) -> GradeBand:
        return self.bands[-1]


class Weights(_Frozen):
    """Weights of the evaluation sources; those above zero are required before grading."""

    self: float = Field(default=1.0, ge=0, le=1)
    members: float = Field(default=0.0, ge=0, le=1)
    peer: float = Field(default=0.0, ge=0, le=1)
    superior: float = Field(default=0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _sum_one(self) -> Weights:
        total = self.self + self.members + self.peer + self.superior
        if abs(total - 1) > 1e-9:
            raise ValueError(f"各来源权重之和为 {total:g}，应为 1")
        return self

    def as_dict(self) -> dict[str, float]:
        return {s: getattr(self, s) for s in SOURCES}

    @property
    def required_sources(self) -> list[str]:
        return [s for s in SOURCES if getattr(self, s) > 0]


class VetoRules(_Frozen):
    """Rules that force the lowest grade whatever the score (seed 004). A rule set to null is off."""

    secretary_violation: bool = False
    reelection_overdue_years: float | None = Field(default=None, gt=0)
    inactive_days: int | None = Field(default=None, gt=0)
    min_satisfaction_members: float | None = Field(default=None, ge=0, le=1)
    min_satisfaction_secretary: float | None = Field(default=None, ge=0, le=1)


class Standards(_Frozen):
    """Satisfaction standards shown as reference (seed 004: 70 % / 80 %)."""

    satisfaction_members: float | None = Field(default=None, ge=0, le=1)
    satisfaction_secretary: float | None = Field(default=None, ge=0, le=1)


class Grading(_Frozen):
    scale: GradeScale
    weights: Weights = Weights()
    veto: VetoRules = VetoRules()
    standards: Standards = Standards()
    rubrics: list[Rubric] = Field(min_length=1)
    adjustment_needs_reason: bool = True

    @model_validator(mode="after")
    def _rubric_cover(self) -> Grading:
        defaults = [r for r in self.rubrics if not r.branch_types]
        if len(defaults) > 1:
            raise ValueError("只能有一个不限支部类型的默认评分标准")
        claimed: dict[str, str] = {}
        for r in self.rubrics:
            for t in r.branch_types:
                if t in claimed:
                    raise ValueError(f"支部类型 {t} 同时属于评分标准“{claimed[t]}”和“{r.name}”")
                claimed[t] = r.name
        if not defaults:
            missing = [t for t in BRANCH_TYPES if t not in claimed]
            if missing:
                raise ValueError(f"没有适用于支部类型 {missing} 的评分标准（可增加一个不限类型的默认标准）")
        return self

    def rubric_for(self, branch_type: str) -> Rubric:
        for r in self.rubrics:
            if branch_type in r.branch_types:
                return r
        return next(r for r in self.rubrics if not r.branch_types)


class MemberEvaluation(_Frozen):
    min_ballots: int = Field(default=5, ge=1)
    min_ballot_ratio: float = Field(default=0.0, ge=0, le=1)


class Publicity(_Frozen):
    window_working_days: int = Field(default=5, ge=1, le=60)


class SignOff(_Frozen):
    """``quorum`` is "majority" (more than half of the committee's members) or a number of signatures."""

    quorum: Literal["majority"] | Annotated[int, Field(ge=1)] = "majority"


class Calendar(_Frozen):
    """Extra holidays and make-up workdays (调休) for years ``chinesecalendar`` does not know or gets wrong;
    ``weekdays_only`` is the explicit, recorded choice of Monday–Friday for a year nobody lists."""

    holidays: list[dt.date] = Field(default_factory=list)
    workdays: list[dt.date] = Field(default_factory=list)
    weekdays_only: bool = False

    @model_validator(mode="after")
    def _disjoint(self) -> Calendar:
        both = set(self.holidays) & set(self.workdays)
        if both:
            raise ValueError(f"日期不能既是节假日又是调休工作日：{sorted(both)}")
        return self


class Escalation(_Frozen):
    after_days: int = Field(ge=0)
    to: list[Literal["general_branch_secretary", "org_department", "committee"]] = Field(min_length=1)
    supervision_order: bool = False


def _default_ladder() -> list[Escalation]:
    return [
        Escalation(after_days=1, to=["general_branch_secretary"]),
        Escalation(after_days=3, to=["org_department", "committee"], supervision_order=True),
    ]


class UpTheTree(_Frozen):
    """``[escalation]``: a sub-committee's branch still overdue ``parent_after_days`` after its deadline is
    reported to the PARENT committee's organisation department (once per deadline; 0 turns it off)."""

    parent_after_days: int = Field(default=10, ge=0, le=365)


class Reminders(_Frozen):
    offsets_days: list[int] = Field(default_factory=lambda: [7, 3, 1])
    send_hour: int = Field(default=9, ge=0, le=23)
    skip_non_working_days: bool = True
    escalation: list[Escalation] = Field(default_factory=_default_ladder)
    repeat_weekly: bool = True
    monthly_digest_day: int = Field(default=1, ge=1, le=28)

    @field_validator("offsets_days")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(d <= 0 for d in v):
            raise ValueError("提醒提前天数须为正整数")
        return sorted(set(v), reverse=True)


class Task(_Frozen):
    """A line of the year's task list (任务清单, seed 003)."""

    task: str
    requirement: str = ""
    deadline: str = ""
    owner: str = ""


class Campaign(_Frozen):
    """A validated campaign; build it with :func:`parse_campaign` or :func:`load_campaign`."""

    code: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1)
    year: int = Field(ge=2000, le=2100)
    timezone: str = "Asia/Shanghai"
    preset: str = ""
    description: str = ""
    grading: Grading
    member_evaluation: MemberEvaluation = MemberEvaluation()
    publicity: Publicity = Publicity()
    sign_off: SignOff = SignOff()
    calendar: Calendar = Calendar()
    reminders: Reminders = Reminders()
    escalation: UpTheTree = UpTheTree()  # to the parent committee (issue 12)
    deadlines: dict[Stage, dt.date]
    tasks: list[Task] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"未知的时区 {v!r}") from None
        return v

    @model_validator(mode="before")
    @classmethod
    def _place_dates(cls, data: Any) -> Any:
        """Place ``"MM-DD"`` deadlines on the campaign's year before validation."""
        if not isinstance(data, dict):
            return data
        year = data.get("year")
        raw = data.get("deadlines")
        if isinstance(raw, dict) and isinstance(year, int):
            placed: dict[str, Any] = {}
            for key, value in raw.items():
                if isinstance(value, str) and len(value) == 5 and value[2] == "-":
                    try:
                        value = dt.date(year, int(value[:2]), int(value[3:]))
                    except ValueError:
                        raise ValueError(f"deadlines.{key}：“{value}”不是 {year} 年的有效日期（月-日，如 04-18）") from None
                placed[key] = value
            data = {**data, "deadlines": placed}
        return data

    @field_validator("deadlines")
    @classmethod
    def _deadlines_in_order(cls, deadlines: dict[Stage, dt.date]) -> dict[Stage, dt.date]:
        # A field validator (not a model one) so that its message comes together with the others.
        missing = [s.value for s in WORKING_STAGES if s not in deadlines]
        if missing:
            raise ValueError(f"缺少以下环节的截止日期：{', '.join(missing)}")
        if Stage.accepted in deadlines:
            raise ValueError("“accepted”是终态，没有截止日期")
        dates = [deadlines[s] for s in WORKING_STAGES]
        for (s1, d1), (s2, d2) in zip(zip(WORKING_STAGES, dates), zip(WORKING_STAGES[1:], dates[1:])):
            if d2 < d1:
                raise ValueError(
                    f"截止日期须按环节顺序：{s2.value}（{d2}）早于前一环节 {s1.value}（{d1}）"
                )
        return deadlines

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def deadline_for(self, stage: Stage) -> dt.date | None:
        return self.deadlines.get(stage)

    def deadline_at(self, stage: Stage) -> dt.datetime | None:
        """The end of the deadline day in the campaign's time zone (as an aware datetime)."""
        d = self.deadlines.get(stage)
        if d is None:
            return None
        return dt.datetime.combine(d, dt.time(23, 59, 59), tzinfo=self.tz)

    def quorum_for(self, committee_size: int) -> int:
        if self.sign_off.quorum == "majority":
            return committee_size // 2 + 1
        return int(self.sign_off.quorum)


# The campaign file's sections and keys, named for people beside the key as the file spells it.
CAMPAIGN_KEYS: dict[str, str] = {
    "code": "活动编码", "name": "活动名称", "year": "年份", "timezone": "时区", "preset": "预设", "description": "说明",
    "grading": "评分与等级", "member_evaluation": "党员群众测评", "publicity": "公示", "sign_off": "签字确认",
    "calendar": "工作日历", "reminders": "提醒", "escalation": "逐级督促", "deadlines": "各环节截止日期",
    "tasks": "任务清单", "rubrics": "评分标准", "scale": "等级", "weights": "权重", "veto": "否决规则",
    "items": "评分项", "bands": "等级档次", "max": "满分", "holidays": "节假日", "workdays": "调休工作日",
}


def _key_label(loc: tuple[str | int, ...]) -> str:
    """``grading.rubrics[1].items[3].max（满分）``: the path as the file has it, then its Chinese name."""
    last = next((p for p in reversed(loc) if isinstance(p, str)), None)
    path = Problem(loc=loc).field or "(顶层)"
    return f"{path}（{CAMPAIGN_KEYS[last]}）" if last in CAMPAIGN_KEYS else path


def _invalid(exc: ValidationError, source: str) -> InvalidInput:
    """Every problem of a campaign file in Chinese (workflow.errors), each at the key path as the file has it."""
    problems = []
    for p in problems_from_pydantic(exc.errors(), labels=_key_label):
        if p.key == "extra_forbidden":
            p = Problem(loc=p.loc, key=p.key, message=f"{Problem(loc=p.loc).field}：未知的配置项“{p.loc[-1]}”"
                                                      "（拼写有误，或不属于这一节）")
        problems.append(p)
    lines = "\n".join(f"  {p.message}" for p in problems)
    return InvalidInput(f"活动配置 {source} 无效：\n{lines}", problems=problems)


def parse_campaign(data: dict[str, Any], *, source: str = "<data>") -> Campaign:
    """Validate a campaign from a TOML-shaped dict; raise :class:`InvalidInput` naming every problem."""
    flat = dict(data.get("campaign", {})) if "campaign" in data else {}
    rest = {k: v for k, v in data.items() if k != "campaign"}
    try:
        return Campaign.model_validate({**flat, **rest})
    except ValidationError as exc:
        raise _invalid(exc, source) from None


def parse_campaign_text(text: str, *, source: str = "<text>") -> Campaign:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise from_toml_error(exc, f"活动配置 {source} ") from None
    return parse_campaign(data, source=source)


def load_campaign(path: str | Path) -> Campaign:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidInput(f"找不到活动配置文件 {p}") from None
    return parse_campaign_text(text, source=str(p))


def preset_names() -> list[str]:
    return sorted(
        f.name.removesuffix(".toml")
        for f in resources.files(PRESETS_PACKAGE).iterdir()
        if f.name.endswith(".toml")
    )


def preset_text(name: str, *, year: int | None = None) -> str:
    """A preset's TOML text; with ``year`` its year is replaced so the seeds' dates land on that year."""
    if name not in preset_names():
        raise InvalidInput(f"没有名为 {name!r} 的预设；可用：{', '.join(preset_names())}")
    text = resources.files(PRESETS_PACKAGE).joinpath(f"{name}.toml").read_text(encoding="utf-8")
    if year is not None:
        import re

        text, n = re.subn(r"(?m)^year\s*=\s*\d{4}\s*$", f"year = {year}", text, count=1)
        text = re.sub(r'(?m)^code\s*=\s*"([^"]*?)-\d{4}"', lambda m: f'code = "{m.group(1)}-{year}"', text, count=1)
        text = re.sub(r"(?m)^(name\s*=\s*\"[^\"]*?)\d{4}( ?年)", lambda m: f"{m.group(1)}{year}{m.group(2)}", text, count=1)
        if n != 1:
            raise InvalidInput(f"预设 {name} 缺少 year 字段")
    return text


def load_preset(name: str, *, year: int | None = None) -> Campaign:
    return parse_campaign_text(preset_text(name, year=year), source=f"preset:{name}")
