"""The forms of the seeds' appendices, as data: a title, the lines under it, columns, rows and totals.

A form turns snapshots (see :mod:`reports.snapshots`) into rows one at a time and counts its totals
while it goes, so the writers can stream any number of branches; :meth:`Form.footer` is read after
the last row. Nothing here touches the database or knows about a file format.

| name | 表 | seed |
|---|---|---|
| ``summary`` | 分类定级汇总表 | 003 附件 2, 004 附件 2 |
| ``overview`` | 分类定级情况一览表 | 001 附件 3 |
| ``rectification`` | 整改汇总表 | 004 附件 3 |
| ``tasks`` | 任务清单 | 003 附件 3 |
| ``acceptance`` | 晋位升级验收汇总表 | 001 检查验收, 003 转化率 |
| ``movement`` | 晋位升级对比表（与上一年度比较） | issue 12 |
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import ClassVar

from reports.snapshots import Scope, Snapshot
from states.base import Stage
from workflow.campaign import BRANCH_TYPE_LABELS, Campaign
from workflow.case import State
from workflow.repository import effective_deadline

Cell = str | int | float | None
Row = list[Cell]
UNGRADED = "未定级"


@dataclass(frozen=True, kw_only=True)
class Column:
    header: str
    width: float
    wrap: bool = False
    number: bool = False


@dataclass(frozen=True, kw_only=True)
class FormContext:
    """What every form needs besides the rows: the campaign, the scope and the time the data is as of."""

    campaign: Campaign
    scope: Scope
    as_of: dt.datetime
    replayed: bool = False

    @property
    def local_as_of(self) -> dt.datetime:
        return self.as_of.astimezone(self.campaign.tz)

    @property
    def unit(self) -> str:
        return self.scope.general_branch_name or self.scope.committee_name

    def grade_label(self, code: str | None) -> str:
        return self.campaign.grading.scale.by_code(code).grade if code else UNGRADED


def _score(state: State) -> float | None:
    g = state.get("grade")
    return float(g["total"]) if g else None


def _gb(s: Snapshot) -> str:
    return s.general_branch or f"{s.committee}（直属）"


class Form:
    """Base of the forms; a subclass sets ``name``/``label``/``columns`` and writes :meth:`rows`."""

    name: ClassVar[str]
    label: ClassVar[str]
    landscape: ClassVar[bool] = False
    per_branch: ClassVar[bool] = True
    columns: ClassVar[tuple[Column, ...]]

    def __init__(self, ctx: FormContext) -> None:
        self.ctx = ctx

    @property
    def title(self) -> str:
        return f"{self.ctx.unit}{self.label}"

    @property
    def notes(self) -> list[str]:
        """The lines under the title: who files it, and which data it shows."""
        when = self.ctx.local_as_of.strftime("%Y-%m-%d %H:%M")
        how = "按历史记录重放" if self.ctx.replayed else "当前数据"
        return [
            f"填报单位（盖章）：{self.ctx.unit}　　填报人：__________　　联系电话：__________",
            f"{self.ctx.campaign.name}　·　数据截至 {when}（{how}）",
        ]

    def rows(self, snapshots: Iterable[Snapshot]) -> Iterator[Row]:
        raise NotImplementedError

    def footer(self) -> list[Row]:
        """Totals, read after the last row."""
        return []

    def _pad(self, *cells: Cell) -> Row:
        return list(cells) + [None] * (len(self.columns) - len(cells))


class _GradeTotals(Form):
    """Counts the grade of every branch shown, in the scale's order, for the 合计 rows."""

    def __init__(self, ctx: FormContext) -> None:
        super().__init__(ctx)
        self.counts: Counter[str] = Counter()
        self.n = 0

    def _count(self, grade: str | None) -> None:
        self.n += 1
        self.counts[self.ctx.grade_label(grade)] += 1

    def footer(self) -> list[Row]:
        rows = [self._pad("合计", None, "党支部总数", self.n)]
        for band in self.ctx.campaign.grading.scale.bands:
            rows.append(self._pad(None, None, f"{band.grade}数", self.counts[band.grade]))
        if self.counts[UNGRADED]:
            rows.append(self._pad(None, None, f"{UNGRADED}数", self.counts[UNGRADED]))
        return rows


class Summary(_GradeTotals):
    """分类定级汇总表: no., parent committee or general branch, branch, score, grade; totals per grade."""

    name = "summary"
    label = "党支部分类定级汇总表"
    columns = (
        Column(header="序号", width=6, number=True),
        Column(header="所属党委（党总支）", width=24, wrap=True),
        Column(header="党支部名称", width=32, wrap=True),
        Column(header="评分分数", width=11, number=True),
        Column(header="分类定级结果", width=14),
    )

    def rows(self, snapshots: Iterable[Snapshot]) -> Iterator[Row]:
        for n, s in enumerate(snapshots, 1):
            final = s.state.get("final_grade")
            self._count(final)
            yield [n, _gb(s), s.name, _score(s.state) if final else None, self.ctx.grade_label(final)]


class Overview(_GradeTotals):
    """分类定级情况一览表: every branch, its stage, deadline, score, grade and any veto."""

    name = "overview"
    label = "基层党组织分类定级情况一览表"
    landscape = True
    columns = (
        Column(header="序号", width=6, number=True),
        Column(header="所属党总支", width=18, wrap=True),
        Column(header="党支部名称", width=28, wrap=True),
        Column(header="支部类型", width=10),
        Column(header="党员数", width=8, number=True),
        Column(header="支部书记", width=10),
        Column(header="当前环节", width=16),
        Column(header="截止日期", width=12),
        Column(header="是否逾期", width=9),
        Column(header="评分分数", width=10, number=True),
        Column(header="分类定级结果", width=13),
        Column(header="一票否决", width=22, wrap=True),
    )

    def rows(self, snapshots: Iterable[Snapshot]) -> Iterator[Row]:
        today = self.ctx.local_as_of.date()
        for n, s in enumerate(snapshots, 1):
            st = s.state
            final = st.get("final_grade")
            self._count(final)
            deadline = effective_deadline(self.ctx.campaign, st)
            veto = "、".join(v["label"] for v in (st.get("grade") or {}).get("veto", [])) if final else ""
            yield [
                n, _gb(s), s.name, BRANCH_TYPE_LABELS.get(s.branch_type, s.branch_type), s.member_count,
                s.secretary, Stage(st["stage"]).label, deadline.isoformat() if deadline else None,
                "逾期" if deadline and today > deadline else None,
                _score(st) if final else None, self.ctx.grade_label(final), veto or None,
            ]


class Rectification(Form):
    """整改汇总表: one row per plan item — branch, problem, measure, due date, contact person, remarks."""

    name = "rectification"
    label = "党支部整改汇总表"
    landscape = True
    columns = (
        Column(header="序号", width=6, number=True),
        Column(header="党支部名称", width=26, wrap=True),
        Column(header="存在的主要问题", width=36, wrap=True),
        Column(header="主要整改措施", width=36, wrap=True),
        Column(header="完成整改时间", width=13),
        Column(header="党支部定点联系人", width=14),
        Column(header="备注", width=20, wrap=True),
    )

    def __init__(self, ctx: FormContext) -> None:
        super().__init__(ctx)
        self.branches = self.items = self.done = self.no_plan = 0

    def rows(self, snapshots: Iterable[Snapshot]) -> Iterator[Row]:
        today = self.ctx.local_as_of.date()
        n = 0
        for s in snapshots:
            rect = s.state["records"].get("rectification") or {}
            items = rect.get("items") or []
            if not items:
                if s.state["stage"] == Stage.rectification.value:
                    self.no_plan += 1
                    n += 1
                    yield [n, s.name, "（尚未提交整改方案）", None, None, None, None]
                continue
            self.branches += 1
            final = s.state.get("final_grade")
            yellow = bool(final and self.ctx.campaign.grading.scale.by_code(final).yellow_card)
            for item in items:
                n += 1
                self.items += 1
                if item.get("done"):
                    self.done += 1
                    remark = "已完成"
                elif dt.date.fromisoformat(item["due"]) < today:
                    remark = "逾期未完成"
                else:
                    remark = "未完成"
                if not rect.get("submitted"):
                    remark += "；方案未提交"
                if yellow:
                    remark += "；亮黄牌"
                yield [n, s.name, item["problem"], item["measure"], item["due"], item["contact"], remark]

    def footer(self) -> list[Row]:
        rows = [self._pad("合计", f"{self.branches} 个党支部", f"整改事项 {self.items} 项",
                          f"已完成 {self.done} 项，未完成 {self.items - self.done} 项")]
        if self.no_plan:
            rows.append(self._pad(None, f"{self.no_plan} 个党支部尚未提交整改方案"))
        return rows


class Tasks(Form):
    """任务清单 (seed 003 附件 3): task, requirement, deadline, owner — from the campaign's ``[[tasks]]``."""

    name = "tasks"
    label = "任务清单"
    per_branch = False
    landscape = True
    columns = (
        Column(header="序号", width=6, number=True),
        Column(header="任务", width=20, wrap=True),
        Column(header="具体要求", width=60, wrap=True),
        Column(header="时间期限", width=12),
        Column(header="责任人", width=22, wrap=True),
        Column(header="备注", width=10),
    )

    @property
    def title(self) -> str:
        return f"基层组织建设年 {self.ctx.campaign.year} 年任务清单"

    @property
    def notes(self) -> list[str]:
        return [self.ctx.campaign.name]

    def rows(self, snapshots: Iterable[Snapshot]) -> Iterator[Row]:
        for n, t in enumerate(self.ctx.campaign.tasks, 1):
            yield [n, t.task, t.requirement, t.deadline or None, t.owner or None, None]


class Acceptance(Form):
    """验收汇总: first grade and re-grade per branch, moved up or not, and the conversion rate of the lowest grade."""

    name = "acceptance"
    label = "党支部晋位升级检查验收汇总表"
    landscape = True
    columns = (
        Column(header="序号", width=6, number=True),
        Column(header="所属党总支", width=18, wrap=True),
        Column(header="党支部名称", width=28, wrap=True),
        Column(header="首次定级", width=11),
        Column(header="首次得分", width=10, number=True),
        Column(header="验收结果", width=14),
        Column(header="再次定级", width=11),
        Column(header="再次得分", width=10, number=True),
        Column(header="是否晋位", width=10),
    )

    def __init__(self, ctx: FormContext) -> None:
        super().__init__(ctx)
        self.n = self.inspected = self.up = self.lowest = self.lowest_up = 0

    def rows(self, snapshots: Iterable[Snapshot]) -> Iterator[Row]:
        scale = self.ctx.campaign.grading.scale
        for n, s in enumerate(snapshots, 1):
            st = s.state
            self.n += 1
            first, regrade, insp = st.get("final_grade"), st.get("regrade"), st.get("inspection")
            if insp:
                result = "通过" if insp["passed"] else "未通过"
            elif st.get("inspections"):
                result = f"未通过，第 {st['rounds']['rectification']} 轮整改中"
            else:
                result = "未验收"
            moved = None
            if first and regrade:
                self.inspected += 1
                diff = scale.rank(first) - scale.rank(regrade)
                moved = "晋位" if diff > 0 else ("持平" if diff == 0 else "降位")
                self.up += diff > 0
            if first and scale.by_code(first) is scale.lowest:
                self.lowest += 1
                self.lowest_up += bool(regrade and scale.rank(regrade) < scale.rank(first))
            yield [
                n, _gb(s), s.name, self.ctx.grade_label(first) if first else UNGRADED,
                _score(st) if first else None, result,
                scale.by_code(regrade).grade if regrade else None,
                float(insp["regrade_score"]) if insp and regrade else None, moved,
            ]

    def footer(self) -> list[Row]:
        lowest = self.ctx.campaign.grading.scale.lowest.grade
        rate = f"{self.lowest_up / self.lowest:.1%}" if self.lowest else "—"
        return [
            self._pad("合计", None, "党支部总数", self.n),
            self._pad(None, None, "已再次定级", self.inspected),
            self._pad(None, None, "晋位", self.up),
            self._pad(None, None, f"首次定级为{lowest}", self.lowest),
            self._pad(None, None, f"{lowest}支部晋位", self.lowest_up),
            self._pad(None, None, f"{lowest}支部转化率", rate),
        ]


class Movement(Form):
    """晋位升级对比表 (issue 12): this year's grade against last year's (the ``previous_grade`` the opening
    event recorded, lineage included), per branch, with the committee's totals moved up / stayed / down."""

    name = "movement"
    label = "党支部晋位升级对比表（与上一年度比较）"
    columns = (
        Column(header="序号", width=6, number=True),
        Column(header="所属党委（党总支）", width=24, wrap=True),
        Column(header="党支部名称", width=30, wrap=True),
        Column(header="上一年度等级", width=13),
        Column(header="本年度等级", width=13),
        Column(header="与上一年度相比", width=14),
    )

    def __init__(self, ctx: FormContext) -> None:
        super().__init__(ctx)
        self.counts: Counter[str] = Counter()
        self.n = 0

    def rows(self, snapshots: Iterable[Snapshot]) -> Iterator[Row]:
        from workflow.yearover import grade_of_record, movement

        scale = self.ctx.campaign.grading.scale
        codes = {b.code: b.grade for b in scale.bands}
        for n, s in enumerate(snapshots, 1):
            self.n += 1
            prev, now = s.state.get("previous_grade"), grade_of_record(s.state)
            moved = movement(prev, now, scale) or UNGRADED
            self.counts[moved] += 1
            yield [n, _gb(s), s.name, codes.get(prev, prev) if prev else "—", codes.get(now, now) if now else UNGRADED,
                   moved]

    def footer(self) -> list[Row]:
        from workflow.yearover import MOVEMENTS

        rows = [self._pad("合计", None, "党支部总数", self.n)]
        for label in (*MOVEMENTS, UNGRADED):
            if self.counts[label] or label in MOVEMENTS[:3]:
                rows.append(self._pad(None, None, label, self.counts[label]))
        return rows


FORMS: dict[str, type[Form]] = {f.name: f for f in (Summary, Overview, Rectification, Tasks, Acceptance, Movement)}
