"""The summary form consolidated across committees (issue 12): what a parent committee files upwards —
seeds 001 and 004 report their forms to the provincial or municipal education work committee.

One row per committee of the subtree (its own branches, its own campaign of the year and so its own grade
scale: two committees may grade on different scales in one year, so the grades are written out per
committee), then the totals. Built from :func:`workflow.rollup.rollup` (one GROUP BY, no per-branch
loop) and written by the same writers as the per-committee forms: CSV with a BOM and inert cells, XLSX.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any, ClassVar

from sqlalchemy.orm import Session

from reports import Rendered, safe_name
from reports.forms import Column, Form, Row
from reports.writers import MEDIA_TYPES, WRITERS
from workflow.errors import InvalidInput
from workflow.rollup import rollup

FORMATS = ("xlsx", "csv")


class ConsolidatedSummary(Form):
    """分类定级汇总表（各党委汇总）: no., committee, campaign, branches, grades, accepted, overdue, conversion."""

    name = "summary-consolidated"
    label = "党支部分类定级汇总表（各党委汇总）"
    landscape: ClassVar[bool] = True
    columns = (
        Column(header="序号", width=6, number=True),
        Column(header="党委", width=26, wrap=True),
        Column(header="活动", width=22, wrap=True),
        Column(header="党支部数", width=10, number=True),
        Column(header="各等级支部数", width=34, wrap=True),
        Column(header="已验收", width=9, number=True),
        Column(header="逾期", width=8, number=True),
        Column(header="上年最低等级", width=12, number=True),
        Column(header="已晋位升级", width=12, number=True),
        Column(header="转化率", width=9),
    )

    def __init__(self, data: dict[str, Any], as_of: dt.datetime) -> None:  # no FormContext: many campaigns
        self.data = data
        self.as_of = as_of

    @property
    def title(self) -> str:
        return f"{self.data['committee_name']}{self.data['year'] or ''}年{self.label}"

    @property
    def notes(self) -> list[str]:
        when = self.as_of.strftime("%Y-%m-%d %H:%M")
        return [f"填报单位（盖章）：{self.data['committee_name']}　　填报人：__________　　联系电话：__________",
                f"各党委按本党委活动的等级标准定级（等级名称可能不同）　·　数据截至 {when}"]

    def rows(self, snapshots: Any = None) -> Iterator[Row]:
        for n, r in enumerate(self.data["rows"], 1):
            yield _line(n, "　" * max(int(r.get("depth", 0)), 0) + f"{r['name']}（{r['committee']}）", r)

    def footer(self) -> list[Row]:
        return [_line(None, "合计", self.data["total"])]


def _line(n: int | None, name: str, r: dict[str, Any]) -> Row:
    grades = "、".join(f"{g['label']} {g['count']}" for g in r["grades"]) or "尚无等级"
    rate = f"{r['conversion_rate']:.0%}" if r["conversion_rate"] is not None else "—"
    return [n, name, "、".join(r["campaigns"]) or "—", r["branches"], grades, r["accepted"], r["overdue"],
            r["lowest_last_year"], r["lowest_moved_up"], rate]


def render_consolidated(session: Session, actor: Any, fmt: str, *, now: dt.datetime, committee: str | None = None,
                        year: int | None = None) -> Rendered:
    """The consolidated summary as ``fmt`` (xlsx or csv), for the actor's committee's subtree (read only;
    refused and hidden exactly as :func:`workflow.rollup.rollup`)."""
    if fmt not in FORMATS:
        raise InvalidInput(f"不支持的格式 {fmt!r}；可用：{'、'.join(FORMATS)}")
    data = rollup(session, actor, now=now, committee=committee, year=year, each=True)
    local = now.astimezone(dt.timezone(dt.timedelta(hours=8)))
    form = ConsolidatedSummary(data, local)
    stamp = local.strftime("%Y%m%d-%H%M")
    unit = data["committee"] or "all"
    return Rendered(filename=safe_name(f"{form.label}-{unit}-{stamp}.{fmt}"),
                    ascii_filename=safe_name(f"summary-consolidated-{unit}-{stamp}.{fmt}".encode("ascii", "replace")
                                             .decode()),
                    media_type=MEDIA_TYPES[fmt], body=WRITERS[fmt](form, form.rows()))
