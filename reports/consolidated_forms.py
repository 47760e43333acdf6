"""The per-branch forms consolidated across committees (issue 12 item 2): what a parent committee files
upwards — every branch of every committee of its subtree, each row naming its committee (所属党委).

| name | 表 |
|---|---|
| ``summary`` | 分类定级汇总表 |
| ``overview`` | 分类定级情况一览表 |
| ``rectification`` | 整改汇总表 |
| ``acceptance`` | 晋位升级检查验收汇总表 |
| ``movement`` | 晋位升级对比表 |
| ``tasks`` | 任务清单 (each committee's own) |

Each committee of the subtree is one *part*: its campaign of the year (its own grade scale: two committees
may grade on different scales in one year) and its cases, streamed by :func:`reports.snapshots.snapshots`
one batch at a time, one part after the other — memory stays flat in the number of branches. Each part is
run through the committee's own per-committee form (:mod:`reports.forms`), so its rows and grade labels are
exactly those of that committee's form; the totals come per committee (小计) and over all (合计, by grade
label). Who may export, and which committees are hidden, is decided by :func:`workflow.rollup.rollup`
(the parent's organisation department and auditors, deployment-wide auditors; a committee outside the
actor's subtree answers like an unknown one).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from reports import Rendered, safe_name
from reports.forms import (
    UNGRADED,
    Acceptance,
    Cell,
    Column,
    Form,
    FormContext,
    Movement,
    Overview,
    Rectification,
    Row,
    Summary,
    Tasks,
    _GradeTotals,
)
from reports.snapshots import Scope, Snapshot, snapshots
from reports.writers import MEDIA_TYPES, WRITERS
from workflow.campaign import Campaign
from workflow.errors import InvalidInput
from workflow.models import CampaignRow, Committee
from workflow.repository import campaign_of
from workflow.rollup import rollup

FORMATS = ("xlsx", "csv", "html")
SUFFIX = "（各党委逐支部汇总）"
CHINA = dt.timezone(dt.timedelta(hours=8))


@dataclass(frozen=True, kw_only=True)
class Part:
    """One committee of the subtree with one campaign of the year, and its branches (lazy)."""

    committee_code: str
    committee_name: str
    campaign_code: str
    campaign: Campaign
    snapshots: Iterable[Snapshot]
    shared: bool = False  # a pre-tenancy campaign (it covers every committee): no 小计 where it has no branch


Totals = list[tuple[str, Cell]]


def _columns(inner: type[Form]) -> tuple[Column, ...]:
    """The inner form's columns with 所属党委 after 序号 (the inner 所属党委（党总支） becomes 所属党总支)."""
    rest = tuple(Column(header="所属党总支", width=c.width, wrap=c.wrap, number=c.number)
                 if c.header == "所属党委（党总支）" else c for c in inner.columns[1:])
    return (inner.columns[0], Column(header="所属党委", width=22, wrap=True), *rest)


class ConsolidatedForm(Form):
    """Base: ``inner`` is the per-committee form run over each part; subclasses say how to total it."""

    inner: ClassVar[type[Form]]
    landscape: ClassVar[bool] = True

    def __init__(self, data: dict[str, Any], as_of: dt.datetime) -> None:  # no FormContext: many campaigns
        self.data = data
        self.as_of = as_of
        self.subtotals: list[tuple[str, Totals]] = []

    @property
    def title(self) -> str:
        return f"{self.data['committee_name']}{self.data['year'] or ''}年{self.label}"

    @property
    def notes(self) -> list[str]:
        when = self.as_of.astimezone(CHINA).strftime("%Y-%m-%d %H:%M")
        codes = "、".join(c["code"] for c in self.data["campaigns"]) or "无"
        return [f"填报单位（盖章）：{self.data['committee_name']}　　填报人：__________　　联系电话：__________",
                f"含下级党委；活动：{codes}；各党委按本党委活动的等级标准定级（等级名称可能不同）　·　数据截至 {when}"]

    def rows(self, snapshots: Iterable[Any]) -> Iterator[Row]:
        parts: Iterable[Part] = snapshots
        n = 0
        for part in parts:
            ctx = FormContext(campaign=part.campaign, as_of=self.as_of,
                              scope=Scope(general_branch_code=None, general_branch_name=None,
                                          committee_name=part.committee_name))
            form = self.inner(ctx)
            before = n
            for row in form.rows(part.snapshots):
                n += 1
                yield [n, part.committee_name, *row[1:]]
            if n > before or not part.shared:
                self.subtotals.append((part.committee_name, self.totals(form)))

    def totals(self, form: Any) -> Totals:
        raise NotImplementedError

    def overall(self) -> Totals:
        """合计 over every part: the numbers summed by metric name, in the order they first appear."""
        sums: dict[str, int] = {}
        for _, totals in self.subtotals:
            for metric, value in totals:
                if isinstance(value, int):
                    sums[metric] = sums.get(metric, 0) + value
        return list(sums.items())

    def footer(self) -> list[Row]:
        rows: list[Row] = []
        for name, totals in self.subtotals:
            rows += self._block("小计", name, totals)
        rows += self._block("合计", "各党委合计", self.overall())
        return rows

    def _block(self, head: str, name: str, totals: Totals) -> list[Row]:
        return [self._pad(head if i == 0 else None, name if i == 0 else None, metric, value)
                for i, (metric, value) in enumerate(totals)]


class _ByGrade(ConsolidatedForm):
    """Totals by grade label: each committee on its own scale; overall by label (best grades first)."""

    def totals(self, form: Any) -> Totals:
        g: _GradeTotals = form
        out: Totals = [("党支部总数", g.n)]
        out += [(band.grade, g.counts[band.grade]) for band in g.ctx.campaign.grading.scale.bands]
        if g.counts[UNGRADED]:
            out.append((UNGRADED, g.counts[UNGRADED]))
        return out

    def overall(self) -> Totals:
        rank: dict[str, int] = {}
        counts: Counter[str] = Counter()
        n = 0
        for _, totals in self.subtotals:
            for i, (metric, value) in enumerate(totals):
                if metric == "党支部总数":
                    n += int(value or 0)
                    continue
                counts[metric] += int(value or 0)
                rank.setdefault(metric, 99 if metric == UNGRADED else i)
        labels = sorted(counts, key=lambda g: (rank[g], g))
        return [("党支部总数", n), *((g, counts[g]) for g in labels)]


class SummaryConsolidated(_ByGrade):
    inner = Summary
    name = "summary"
    label = Summary.label + SUFFIX
    columns = _columns(Summary)


class OverviewConsolidated(_ByGrade):
    inner = Overview
    name = "overview"
    label = Overview.label + SUFFIX
    columns = _columns(Overview)


class RectificationConsolidated(ConsolidatedForm):
    inner = Rectification
    name = "rectification"
    label = Rectification.label + SUFFIX
    columns = _columns(Rectification)

    def totals(self, form: Any) -> Totals:
        r: Rectification = form
        return [("有整改方案的党支部", r.branches), ("整改事项", r.items), ("已完成", r.done),
                ("未完成", r.items - r.done), ("尚未提交整改方案的党支部", r.no_plan)]


class AcceptanceConsolidated(ConsolidatedForm):
    inner = Acceptance
    name = "acceptance"
    label = Acceptance.label + SUFFIX
    columns = _columns(Acceptance)

    def totals(self, form: Any) -> Totals:
        a: Acceptance = form
        lowest = a.ctx.campaign.grading.scale.lowest.grade
        return [("党支部总数", a.n), ("已再次定级", a.inspected), ("晋位", a.up),
                (f"首次定级为{lowest}", a.lowest), (f"{lowest}支部晋位", a.lowest_up),
                (f"{lowest}支部转化率", _rate(a.lowest_up, a.lowest))]

    def overall(self) -> Totals:
        keys = ("党支部总数", "已再次定级", "晋位", "首次定级为最低等级", "最低等级支部晋位")
        sums = dict.fromkeys(keys, 0)
        for _, totals in self.subtotals:
            for key, (_, value) in zip(keys, totals, strict=False):
                sums[key] += int(value or 0)
        return [*sums.items(), ("最低等级支部转化率", _rate(sums["最低等级支部晋位"], sums["首次定级为最低等级"]))]


class MovementConsolidated(ConsolidatedForm):
    inner = Movement
    name = "movement"
    label = Movement.label.replace("（与上一年度比较）", "") + SUFFIX
    columns = _columns(Movement)

    def totals(self, form: Any) -> Totals:
        from workflow.yearover import MOVEMENTS

        m: Movement = form
        out: Totals = [("党支部总数", m.n)]
        out += [(label, m.counts[label]) for label in (*MOVEMENTS, UNGRADED)
                if m.counts[label] or label in MOVEMENTS[:3]]
        return out


class TasksConsolidated(ConsolidatedForm):
    """Each committee's own task list, one after the other."""

    inner = Tasks
    name = "tasks"
    label = Tasks.label + "（各党委汇总）"
    columns = _columns(Tasks)

    @property
    def title(self) -> str:
        return f"{self.data['committee_name']}基层组织建设年 {self.data['year'] or ''} 年{self.label}"

    def totals(self, form: Any) -> Totals:
        return [("任务", len(form.ctx.campaign.tasks))]


def _rate(up: int, of: int) -> str:
    return f"{up / of:.1%}" if of else "—"


CONSOLIDATED_FORMS: dict[str, type[ConsolidatedForm]] = {f.name: f for f in (
    SummaryConsolidated, OverviewConsolidated, RectificationConsolidated, AcceptanceConsolidated,
    MovementConsolidated, TasksConsolidated)}


def consolidated_form_names() -> dict[str, str]:
    """name → 中文 label of every consolidated per-branch form."""
    return {name: f.label for name, f in CONSOLIDATED_FORMS.items()}


def parts(session: Session, data: dict[str, Any], *, per_branch: bool = True) -> Iterator[Part]:
    """The committees of the roll-up ``data`` (``each=True``: every committee of the subtree, in tree order),
    each with its campaign(s) of the year and its cases — read lazily, one part after the other."""
    codes = [r["committee"] for r in data["rows"]]
    ids = dict(session.execute(select(Committee.code, Committee.id).where(Committee.code.in_(codes))).tuples().all())
    camps = session.scalars(select(CampaignRow).where(
        CampaignRow.code.in_([c["code"] for c in data["campaigns"]])).order_by(CampaignRow.code)).all()
    parsed = {c.id: campaign_of(c) for c in camps}
    for r in data["rows"]:
        cid = ids.get(r["committee"])
        if cid is None:
            continue
        for camp in camps:
            if camp.committee_id not in (cid, None):
                continue
            # a committee's own campaign covers its own branches only; a pre-tenancy campaign (no committee)
            # covers every committee, so its cases are narrowed to this committee's branches
            rows: Iterable[Snapshot] = (
                snapshots(session, camp, committee_id=None if camp.committee_id == cid else cid)
                if per_branch else ())
            yield Part(committee_code=r["committee"], committee_name=r["name"], campaign_code=camp.code,
                       campaign=parsed[camp.id], snapshots=rows, shared=camp.committee_id is None)


def render_consolidated_form(session: Session, actor: Any, name: str, fmt: str, *, now: dt.datetime,
                             committee: str | None = None, year: int | None = None) -> Rendered:
    """Form ``name`` over every committee of the actor's subtree (or of ``committee`` within it) for ``year``
    as ``fmt``; refused and hidden exactly as :func:`workflow.rollup.rollup`, before anything is written.
    ``Rendered.body`` reads the database lazily: consume it while the session is open."""
    cls = CONSOLIDATED_FORMS.get(name)
    if cls is None:
        shown = "、".join(f"{k}（{v}）" for k, v in consolidated_form_names().items())
        raise InvalidInput(f"没有名为 {name[:64]!r} 的汇总报表；可用：{shown}")
    if fmt not in FORMATS:
        raise InvalidInput(f"不支持的格式 {fmt[:16]!r}；可用：{'、'.join(FORMATS)}")
    data = rollup(session, actor, now=now, committee=committee, year=year, each=True)
    form = cls(data, now)
    rows = form.rows(parts(session, data, per_branch=cls.inner.per_branch))
    stamp = now.astimezone(CHINA).strftime("%Y%m%d-%H%M")
    unit = f"{data['committee'] or 'all'}-{data['year'] or ''}"
    title = form.label.replace("（", "-").replace("）", "")  # 党支部分类定级汇总表-各党委逐支部汇总: no "_" in the name
    return Rendered(filename=safe_name(f"{title}-{unit}-{stamp}.{fmt}"),
                    ascii_filename=safe_name(f"{name}-consolidated-{unit}-{stamp}.{fmt}".encode("ascii", "replace")
                                             .decode()),
                    media_type=MEDIA_TYPES[fmt], body=WRITERS[fmt](form, rows))
