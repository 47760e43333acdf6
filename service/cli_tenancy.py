"""``branchflow committee …`` (the tree of committees) and ``branchflow rollup`` (the parent's roll-up),
issue 12. Registered by :data:`service.cli.EXTENSIONS`."""

from __future__ import annotations

from typing import Any

import click

from states.base import Role
from workflow import tenancy
from workflow.errors import InvalidInput
from workflow.service import Actor

# Commands run without --as by whoever holds the database: they read as a deployment-wide auditor.
OPERATOR = Actor(email="operator", name="运维人员", roles=frozenset({(Role.auditor, "")}))


def register(cli: click.Group) -> None:
    from service.cli import _ctx, echo_json, now_option, parse_now

    @cli.group()
    def committee() -> None:
        """党委（单位）及其上下级关系。"""

    @committee.command("add")
    @click.argument("code")
    @click.argument("name")
    @click.option("--parent", default=None, help="上级党委编码")
    def committee_add(code: str, name: str, parent: str | None) -> None:
        """添加党委，例如：committee add SMS 生命科学学院党委 --parent UNI"""
        with _ctx().tx() as s:
            c = tenancy.add_committee(s, code, name, parent=parent)
            path = c.path
        click.echo(f"已添加党委 {code}（{name}）" + (f"，上级 {parent}" if parent else "") + f"；层级路径 {path}")

    @committee.command("list")
    @click.option("--json", "as_json", is_flag=True, help="输出 JSON")
    def committee_list(as_json: bool) -> None:
        """按层级列出党委（缩进表示下级）及各自的党支部数。"""
        with _ctx().tx() as s:
            rows = tenancy.tree(s)
        if as_json:
            return echo_json(rows)
        if not rows:
            click.echo("还没有党委：用 `branchflow committee add` 添加，或 `branchflow import` 导入组织")
        for r in rows:
            click.echo(f"{'  ' * r['depth']}{r['code']}\t{r['name']}\t{r['branches']} 个党支部")
        return None

    @committee.command("move")
    @click.argument("code")
    @click.option("--parent", default=None, help="新的上级党委编码（不给出则成为顶级党委）")
    def committee_move(code: str, parent: str | None) -> None:
        """调整党委的上级（连同其全部下级）；不能移到它自己或它的下级之下。"""
        with _ctx().tx() as s:
            c = tenancy.move_committee(s, code, parent)
            path = c.path
        click.echo(f"党委 {code} 的上级改为 {parent or '（无，顶级）'}；层级路径 {path}")

    @cli.command("rollup")
    @click.option("--committee", default=None, help="汇总哪个党委的下级（默认：--as 本人的党委；运维：全部顶级党委）")
    @click.option("--year", type=int, default=None, help="年份（默认：最近有活动的一年）")
    @click.option("--as", "as_email", default=None, help="以某人的身份查看（上级党委组织部或审计人员）")
    @click.option("--json", "as_json", is_flag=True, help="输出 JSON")
    @click.option("--export", "export", type=click.Path(), default=None,
                  help="另存汇总表到此文件（.xlsx 或 .csv）或已有目录；不给出 --form 时为每个党委一行的分类定级汇总表")
    @click.option("--form", "form", default=None,
                  help="导出哪张汇总表（默认 committees，每个党委一行；其余为各党委逐支部汇总）："
                  + "、".join(f"{k}={v}" for k, v in FORM_CHOICES.items()))
    @click.option("--format", "fmt", default=None, help="xlsx、csv（UTF-8 BOM）或 html；默认按文件扩展名，目录时为 xlsx")
    @now_option
    def rollup_(committee: str | None, year: int | None, as_email: str | None, as_json: bool,
                export: str | None, form: str | None, fmt: str | None, now_s: str | None) -> None:
        """上级党委汇总：各下级党委（含其下级）的等级分布、环节进度、逾期数和后进转化（只读）。

        用 --form 导出各党委逐支部汇总的报表（每行注明所属党委，等级按各党委本年度活动的等级标准），
        例如：rollup --as gongwei@demo.edu.cn --form summary --export 汇总表.xlsx"""
        from workflow import rollup, service

        if form is not None and form not in FORM_CHOICES:
            raise InvalidInput(f"没有名为 {form[:64]!r} 的汇总报表；可用：{_choices()}")
        with _ctx().tx() as s:
            actor = service.actor_for(s, as_email) if as_email else OPERATOR
            if export is not None or form is not None:
                return _export(s, actor, form or COMMITTEES, export, fmt, now=parse_now(now_s),
                               committee=committee, year=year)
            data = rollup.rollup(s, actor, now=parse_now(now_s), committee=committee, year=year)
        if as_json:
            return echo_json(data)
        echo_rollup(data)
        return None


COMMITTEES = "committees"  # the form with one row per committee (reports/consolidated.py)


def _form_choices() -> dict[str, str]:
    from reports.consolidated import ConsolidatedSummary
    from reports.consolidated_forms import consolidated_form_names

    return {COMMITTEES: ConsolidatedSummary.label, **consolidated_form_names()}


FORM_CHOICES = _form_choices()


def _choices() -> str:
    return "、".join(f"{k}（{v}）" for k, v in FORM_CHOICES.items())


def _export(s: Any, actor: Any, form: str, export: str | None, fmt: str | None, *, now: Any,
            committee: str | None, year: int | None) -> None:
    """Write the consolidated form: refused or hidden (as the roll-up) before any file is opened, and written
    beside the target then renamed, so a refusal or a failure leaves nothing behind."""
    from pathlib import Path

    from reports.consolidated import render_consolidated
    from reports.consolidated_forms import render_consolidated_form
    from service.cli_reports import _output_path, _write_atomically

    target = Path(export) if export else Path(".")
    if fmt is None:
        suffix = target.suffix.lower().lstrip(".") if not target.is_dir() else ""
        fmt = suffix or "xlsx"
    fmt = fmt.lower()
    if form == COMMITTEES:
        if fmt == "html":
            raise InvalidInput("每个党委一行的汇总表只有 xlsx 和 csv 格式")
        r = render_consolidated(s, actor, fmt, now=now, committee=committee, year=year)
    else:
        r = render_consolidated_form(s, actor, form, fmt, now=now, committee=committee, year=year)
    path = _output_path(str(target) if export else None, r.filename)
    n = _write_atomically(path, r.body)
    what = "各党委汇总表" if form == COMMITTEES else FORM_CHOICES[form]
    click.echo(f"已导出{what} {path}（{n} 字节）")


def echo_rollup(data: dict[str, Any]) -> None:
    click.echo(f"{data['committee_name']} {data['year'] or ''} 年汇总（活动：{'、'.join(c['code'] for c in data['campaigns']) or '无'}）")
    for r in [*data["rows"], data["total"]]:
        grades = "，".join(f"{g['label']} {g['count']}" for g in r["grades"]) or "尚无等级"
        rate = f"{r['conversion_rate']:.0%}" if r["conversion_rate"] is not None else "—"
        head = f"{r['name']}（{r['committee']}）" if r["kind"] != "合计" else "合计"
        click.echo(f"{head}：{r['branches']} 个党支部，已验收 {r['accepted']}，逾期 {r['overdue']}；{grades}；"
                   f"上年最低等级 {r['lowest_last_year']} 个，已晋位 {r['lowest_moved_up']} 个，转化率 {rate}")
