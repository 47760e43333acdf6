"""CLI of year over year (issue 12): `campaign create --from` (called from service.cli), `grades BRANCH`,
`branch split|merge|rename|dissolve|found`, and the "which calendar is in force" lines of `tick`/`serve`
(registered by service.cli)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from states.base import Stage
from workflow.errors import InvalidInput


def _ctx() -> Any:
    return click.get_current_context().find_root().obj


def calendar_lines(session: Session, campaign: str | None = None) -> list[str]:
    """One line per campaign (or the given one): which working-day calendar is in force."""
    from workflow.models import CampaignRow
    from workflow.yearover import calendar_in_force

    q = select(CampaignRow).order_by(CampaignRow.year.desc(), CampaignRow.id.desc())
    if campaign:
        q = q.where(CampaignRow.code == campaign)
    return [f"活动 {row.code}：{calendar_in_force(session, row)}" for row in session.scalars(q)]


def create_from_command(ctx: Any, *, preset: str | None, file_: str | None, year: int | None, now: dt.datetime,
                        from_: str, code: str | None, calendar_file: str | None, weekdays_only: bool,
                        as_email: str | None) -> None:
    """`campaign create --from LAST --year Y`: the new campaign and the review summary (请复核：…)."""
    from workflow import service
    from workflow.yearover import create_from

    if preset or file_:
        raise InvalidInput("--from 不能与 --preset 或 --file 同时使用")
    if year is None:
        raise InvalidInput("--from 须与 --year 一起使用：新活动的年份")
    cal_text = None
    if calendar_file:
        try:
            cal_text = Path(calendar_file).read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidInput(f"{calendar_file} 不是 UTF-8 编码") from None
    with ctx.tx() as s:
        actor = "system"
        if as_email:
            actor = service.actor_for(s, as_email).email
        elif weekdays_only:
            raise InvalidInput("--weekdays-only 是须记录的选择：请用 --as 给出确认人的邮箱")
        _row, review = create_from(s, source=from_, year=year, now=now, code=code, calendar_file_text=cal_text,
                                   weekdays_only=weekdays_only, actor=actor)
    for line in review.lines():
        click.echo(line)


def _parts(values: tuple[str, ...]) -> list[tuple[str, str, int | None]]:
    out: list[tuple[str, str, int | None]] = []
    for v in values:
        bits = v.split(":")
        if len(bits) not in (2, 3) or not bits[0].strip() or not bits[1].strip():
            raise InvalidInput(f"--into {v!r} 的格式应为 编码:名称 或 编码:名称:党员数")
        members = None
        if len(bits) == 3:
            try:
                members = int(bits[2])
            except ValueError:
                raise InvalidInput(f"--into {v!r}：党员数须为整数") from None
            if members < 1:
                raise InvalidInput(f"--into {v!r}：党员数须为正整数")
        out.append((bits[0].strip(), bits[1].strip(), members))
    return out


def _stage(value: str | None) -> Stage | None:
    if value is None:
        return None
    try:
        return Stage(value)
    except ValueError:
        raise InvalidInput(f"未知的环节 {value!r}；可用：{', '.join(s.value for s in Stage if s is not Stage.accepted)}") from None


def register(cli: click.Group) -> None:
    from service.cli import as_option, echo_json, json_option, now_option, parse_now
    from workflow import lineage
    from workflow import service as svc

    @cli.command("grades")
    @click.argument("branch")
    @json_option
    def grades(branch: str, as_json: bool) -> None:
        """党支部历年等级：每年的等级、上一年度等级、晋位/持平/降位，以及支部沿革。"""
        from workflow.yearover import grade_history

        with _ctx().tx() as s:
            h = grade_history(s, branch)
        if as_json:
            return echo_json(h)
        click.echo(f"{h['code']}  {h['name']}" + (f"（已于 {h['dissolved_on']} 撤销）" if h["dissolved_on"] else ""))
        if not h["years"]:
            click.echo("  尚无任何年度的记录")
        for y in h["years"]:
            closed = "（已结案）" if y["closed"] else ""
            click.echo(f"  {y['year']} 年 {y['campaign']}：{y['grade_label'] or '未定级'}{closed}；"
                       f"上一年度 {y['previous_grade_label'] or '—'}；{y['movement'] or '—'}")
        for r in h["lineage"]:
            click.echo(f"  沿革：{r['label']} {r['from'] or '—'} → {r['to'] or '—'}（{r['at'][:10]}，{r['actor']}）：{r['reason']}")

    @cli.group("branch")
    def branch() -> None:
        """党支部沿革：拆分、合并、更名、撤销、新建（写入沿革记录与主数据审计日志）。"""

    reason_option = click.option("--reason", required=True, help="理由（必填，记入沿革与审计日志）")
    stage_option = click.option("--stage", "stage_s", default=None,
                                help="活动进行中立案的起始环节（默认：多数支部所处的环节）")

    def _run(fn: Any, as_email: str, now_s: str | None, **kw: Any) -> None:
        with _ctx().tx() as s:
            out = fn(s, svc.actor_for(s, as_email), now=parse_now(now_s), **kw)
        for line in out.lines():
            click.echo(line)

    @branch.command("split")
    @click.argument("code")
    @click.option("--into", "into", multiple=True, required=True, help="新支部 编码:名称[:党员数]（至少两个）")
    @reason_option
    @stage_option
    @as_option
    @now_option
    def branch_split(code: str, into: tuple[str, ...], reason: str, stage_s: str | None, as_email: str,
                     now_s: str | None) -> None:
        """把一个党支部拆分为几个新支部；原支部撤销，其在办案件结案，新支部按当前环节立案。"""
        _run(lineage.split, as_email, now_s, code=code, parts=_parts(into), reason=reason, stage=_stage(stage_s))

    @branch.command("merge")
    @click.argument("codes", nargs=-1, required=True)
    @click.option("--into", "into", required=True, help="并入的支部编码（已有的支部，或新编码并给出 --name）")
    @click.option("--name", default=None, help="合并后支部的名称")
    @reason_option
    @stage_option
    @as_option
    @now_option
    def branch_merge(codes: tuple[str, ...], into: str, name: str | None, reason: str, stage_s: str | None,
                     as_email: str, now_s: str | None) -> None:
        """把几个党支部合并为一个；被并入的支部撤销。上一年度等级取其中最低者。"""
        _run(lineage.merge, as_email, now_s, codes=list(codes), into=into, name=name, reason=reason,
             stage=_stage(stage_s))

    @branch.command("rename")
    @click.argument("code")
    @click.option("--name", required=True, help="新名称")
    @click.option("--to", "to", default=None, help="新编码（仅在活动结束后；默认不改编码）")
    @reason_option
    @as_option
    @now_option
    def branch_rename(code: str, name: str, to: str | None, reason: str, as_email: str, now_s: str | None) -> None:
        """党支部更名（可同时更改编码：新编码承接原支部的沿革与上一年度等级）。"""
        _run(lineage.rename, as_email, now_s, code=code, name=name, to=to, reason=reason)

    @branch.command("dissolve")
    @click.argument("code")
    @reason_option
    @as_option
    @now_option
    def branch_dissolve(code: str, reason: str, as_email: str, now_s: str | None) -> None:
        """撤销党支部：在办案件结案（不再提醒），下一年度不再立案。"""
        _run(lineage.dissolve, as_email, now_s, code=code, reason=reason)

    @branch.command("found")
    @click.argument("code")
    @click.option("--name", required=True, help="支部名称")
    @click.option("--type", "branch_type", required=True, help="支部类型：teacher / undergraduate / graduate / admin / retired")
    @click.option("--general-branch", default=None, help="所属党总支编码")
    @click.option("--committee", default=None, help="所属党委编码（直属支部）")
    @click.option("--secretary-name", required=True, help="支部书记姓名")
    @click.option("--secretary-email", required=True, help="支部书记邮箱")
    @click.option("--members", type=int, required=True, help="党员人数")
    @reason_option
    @stage_option
    @as_option
    @now_option
    def branch_found(code: str, name: str, branch_type: str, general_branch: str | None, committee: str | None,
                     secretary_name: str, secretary_email: str, members: int, reason: str, stage_s: str | None,
                     as_email: str, now_s: str | None) -> None:
        """新建党支部；活动进行中时按当前环节（或 --stage）立案，并记录理由。"""
        _run(lineage.found, as_email, now_s, code=code, name=name, committee=committee,
             general_branch=general_branch, branch_type=branch_type, secretary_name=secretary_name,
             secretary_email=secretary_email, members=members, reason=reason, stage=_stage(stage_s))
