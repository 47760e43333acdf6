"""Pictures of where the campaign stands, as SVG strings rendered server-side (no JavaScript, no CDN).

Three pictures, each from an aggregate query (work proportional to the number of general branches,
grades or days, not to what is drawn):

- :func:`grade_counts` → grade distribution (the grade in force of every case, and 未定级), from the case
  tallies (``workflow.tallies``, kept by triggers: a few rows per campaign, not its cases);
- :func:`stage_burndown` → branches not yet past each stage, day by day, with that stage's deadline:
  a burn-down toward each deadline (from the ``opened`` and ``moved`` events, streamed: the tallies hold
  where the cases stand now, not their history);
- :func:`overdue_by_general_branch` → cases past their stage's deadline, per general branch, from the
  tallies per general branch.

:func:`dashboard_svgs` returns all three for the dashboard and the monthly digest. The SVGs carry
their numbers as ``<title>`` tooltips and a text alternative (``aria-label``), so they read without colour.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from html import escape

import orjson
from sqlalchemy import Date, bindparam, func, select
from sqlalchemy.orm import Session

from states.base import WORKING_STAGES, Stage
from workflow.models import CampaignRow, CaseRow, EventRow, GeneralBranch
from workflow.repository import campaign_of, get_campaign_row
from workflow.tallies import case_tallies_gb

PALETTE = ["#c0392b", "#d35400", "#b7950b", "#27ae60", "#2471a3", "#7d3c98", "#566573"]
FONT = "'WenQuanYi Micro Hei','Noto Sans CJK SC','Microsoft YaHei',sans-serif"
UNGRADED = "未定级"
MAX_BARS = 15


# --- data -------------------------------------------------------------------------------------------

# built once; the tallies hold "no grade" as '' and every case is counted once in case_tallies_gb
_T = case_tallies_gb
_GRADES = (select(_T.c.grade, func.sum(_T.c.n)).where(_T.c.campaign_id == bindparam("campaign"))
           .group_by(_T.c.grade).having(func.sum(_T.c.n) != 0))
_GB_NAME = func.coalesce(GeneralBranch.name, "（直属党支部）")
_OVERDUE = (select(_GB_NAME, func.sum(_T.c.n))
            .select_from(_T).outerjoin(GeneralBranch, GeneralBranch.id == _T.c.general_branch_id)
            .where(_T.c.campaign_id == bindparam("campaign"), _T.c.deadline < bindparam("today", type_=Date))
            .group_by(_GB_NAME).having(func.sum(_T.c.n) != 0))


def grade_counts(session: Session, campaign: CampaignRow) -> list[tuple[str, int]]:
    """(grade label, number of cases) in the scale's order, best first, then 未定级 if any."""
    scale = campaign_of(campaign).grading.scale
    counts = {grade or None: int(n) for grade, n in session.execute(_GRADES, {"campaign": campaign.id}).tuples()}
    out = [(b.grade, counts.get(b.code, 0)) for b in scale.bands]
    if counts.get(None):
        out.append((UNGRADED, counts[None]))
    return out


def overdue_by_general_branch(session: Session, campaign: CampaignRow, now: dt.datetime) -> list[tuple[str, int]]:
    """(general branch name, overdue cases), most overdue first; cases past their current stage's deadline
    (a case with no deadline is tallied at 9999-12-31: never past)."""
    today = now.astimezone(campaign_of(campaign).tz).date()
    rows = session.execute(_OVERDUE, {"campaign": campaign.id, "today": today}).tuples()
    return sorted(((str(n), int(c)) for n, c in rows), key=lambda r: (-r[1], r[0]))


_MOVES = (select(EventRow.at, EventRow.kind, EventRow.body)  # built once
          .join(CaseRow, CaseRow.id == EventRow.case_id)
          .where(CaseRow.campaign_id == bindparam("campaign"), EventRow.kind.in_(["opened", "moved"]),
                 EventRow.at <= bindparam("now", type_=EventRow.__table__.c.at.type)))


@dataclass(frozen=True, kw_only=True)
class Burndown:
    """``remaining[stage][i]``: cases not yet past ``stage`` at the end of ``days[i]``."""

    days: list[dt.date]
    remaining: dict[Stage, list[int]]
    deadlines: dict[Stage, dt.date]


def stage_burndown(session: Session, campaign: CampaignRow, now: dt.datetime, *, batch: int = 5000) -> Burndown:
    """Branches not yet past each stage, per day, from the campaign's start to ``now`` (local dates)."""
    c = campaign_of(campaign)
    tz = c.tz
    start = campaign.created_at.astimezone(tz).date()
    end = max(start, min(now.astimezone(tz).date(), start + dt.timedelta(days=400)))
    order = {s: i for i, s in enumerate(Stage)}
    working = list(WORKING_STAGES)
    delta: Counter[tuple[int, int]] = Counter()  # (day index, stage index) → change in "not yet past"
    n_days = (end - start).days + 1
    rows = session.execute(_MOVES, {"campaign": campaign.id, "now": now}, execution_options={"yield_per": batch})
    for at, kind, body in rows.tuples():
        day = min(max((at.astimezone(tz).date() - start).days, 0), n_days)
        if day >= n_days:
            continue
        if kind == "opened":
            for si in range(len(working)):
                delta[day, si] += 1
            continue
        p = orjson.loads(body)["payload"]
        a, b = order[Stage(p["from"])], order[Stage(p["to"])]
        lo, hi, sign = (a, b, -1) if a < b else (b, a, 1)
        for si in range(lo, min(hi, len(working))):
            delta[day, si] += sign
    remaining: dict[Stage, list[int]] = {}
    for si, stage in enumerate(working):
        level, series = 0, []
        for d in range(n_days):
            level += delta[d, si]
            series.append(level)
        remaining[stage] = series
    return Burndown(days=[start + dt.timedelta(days=i) for i in range(n_days)], remaining=remaining,
                    deadlines={s: c.deadlines[s] for s in working})


# --- drawing ----------------------------------------------------------------------------------------

def _svg(width: int, height: int, title: str, summary: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}：{escape(summary)}" font-family="{FONT}" font-size="12">'
        f"<title>{escape(title)}</title>"
        f'<rect width="{width}" height="{height}" fill="#fff"/>'
        f'<text x="{width / 2:g}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{escape(title)}</text>'
        + "".join(body) + "</svg>"
    )


def bar_svg(title: str, items: list[tuple[str, int]], *, unit: str = "个", color: str = "#c0392b",
            width: int = 560) -> str:
    """Horizontal bars, one per (label, value); more than MAX_BARS are folded into 其他."""
    if len(items) > MAX_BARS:
        items = items[: MAX_BARS - 1] + [("其他", sum(v for _, v in items[MAX_BARS - 1:]))]
    summary = "；".join(f"{label} {v} {unit}" for label, v in items) or "无数据"
    if not items or not any(v for _, v in items):
        body = [f'<text x="{width / 2:g}" y="60" text-anchor="middle" fill="#666">无</text>']
        return _svg(width, 90, title, summary, body)
    label_w, bar_h, gap, top = 150, 22, 8, 40
    plot_w = width - label_w - 70
    peak = max(v for _, v in items) or 1
    body = []
    for i, (label, v) in enumerate(items):
        y = top + i * (bar_h + gap)
        w = plot_w * v / peak
        short = label if len(label) <= 11 else label[:10] + "…"
        body.append(f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">{escape(short)}</text>')
        body.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}">'
                    f"<title>{escape(label)}：{v} {unit}</title></rect>")
        body.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 15}">{v}</text>')
    height = top + len(items) * (bar_h + gap) + 10
    return _svg(width, height, title, summary, body)


def burndown_svg(b: Burndown, *, title: str = "各环节未完成的党支部数（燃尽图）", width: int = 760,
                 height: int = 340) -> str:
    """One line per stage — branches not yet past it — with a dashed marker at that stage's deadline."""
    left, right, top, bottom = 50, 150, 40, 40
    pw, ph = width - left - right, height - top - bottom
    days = b.days
    n = len(days)
    first = days[0]
    span = max(max(b.deadlines.values()), days[-1]) - first
    span_days = max(span.days, 1)
    peak = max((max(s) for s in b.remaining.values() if s), default=0) or 1

    def x(d: dt.date) -> float:
        return left + pw * (d - first).days / span_days

    def y(v: int) -> float:
        return top + ph * (1 - v / peak)

    body = [
        f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#333"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#333"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{peak}</text>',
        f'<text x="{left - 6}" y="{top + ph + 4}" text-anchor="end">0</text>',
        f'<text x="{left}" y="{top + ph + 18}">{first:%m-%d}</text>',
        f'<text x="{left + pw}" y="{top + ph + 18}" text-anchor="end">{(first + dt.timedelta(days=span_days)):%m-%d}</text>',
    ]
    summary = []
    for i, (stage, series) in enumerate(b.remaining.items()):
        color = PALETTE[i % len(PALETTE)]
        deadline = b.deadlines[stage]
        dx = x(deadline)
        body.append(f'<line x1="{dx:.1f}" y1="{top}" x2="{dx:.1f}" y2="{top + ph}" stroke="{color}" '
                    f'stroke-dasharray="4 3" stroke-opacity="0.7"><title>{escape(stage.label)}截止 {deadline}</title></line>')
        pts = " ".join(f"{x(days[k]):.1f},{y(v):.1f}" for k, v in enumerate(series))
        now_v = series[-1] if series else 0
        summary.append(f"{stage.label} {now_v}")
        body.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}">'
                    f"<title>{escape(stage.label)}：尚有 {now_v} 个党支部未完成（截止 {deadline}）</title></polyline>")
        ly = top + 4 + i * 18
        body.append(f'<rect x="{left + pw + 12}" y="{ly}" width="12" height="3" fill="{color}"/>')
        body.append(f'<text x="{left + pw + 30}" y="{ly + 6}">{escape(stage.label)} {now_v}</text>')
    if n:
        tx = x(days[-1])
        body.append(f'<line x1="{tx:.1f}" y1="{top}" x2="{tx:.1f}" y2="{top + ph}" stroke="#000" stroke-width="1.5"/>')
        body.append(f'<text x="{tx:.1f}" y="{top - 4}" text-anchor="middle">今日 {days[-1]:%m-%d}</text>')
    return _svg(width, height, title, "；".join(summary), body)


def dashboard_svgs(session: Session, campaign: str | CampaignRow | None, now: dt.datetime) -> dict[str, str]:
    """The three pictures for the dashboard and the monthly digest: ``grades``, ``burndown``, ``overdue``."""
    row = campaign if isinstance(campaign, CampaignRow) else get_campaign_row(session, campaign)
    return {
        "grades": bar_svg("等级分布", grade_counts(session, row), color="#2471a3"),
        "burndown": burndown_svg(stage_burndown(session, row, now)),
        "overdue": bar_svg("逾期党支部（按党总支）", overdue_by_general_branch(session, row, now)),
    }
