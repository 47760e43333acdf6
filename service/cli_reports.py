"""CLI commands of the reports: `report`, `charts` and `export-events` (registered by service.cli)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click

import reports
from reports import charts
from reports.export import export_events
from workflow.errors import InvalidInput, NotFound


def _write_atomically(path: Path, chunks: Iterable[bytes]) -> int:
    """Write to a temporary file beside ``path`` and rename it: a failed report leaves no half file."""
    tmp = path.with_name(f".{path.name}.part")
    n = 0
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
                n += len(chunk)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return n


def _output_path(value: str | None, default: str) -> Path:
    p = Path(value) if value else Path(default)
    if p.is_dir():
        p = p / default
    if not p.parent.exists():
        raise InvalidInput(f"输出目录 {p.parent} 不存在")
    return p


def _ctx() -> Any:
    """The root context's object (service.cli.Ctx). Not ``find_object(Ctx)``: under ``python -m service.cli``
    the module is loaded twice (as ``__main__`` and as ``service.cli``), so the class would not match."""
    return click.get_current_context().find_root().obj


def _which(s: Any, name: str, campaign: str | None, general_branch: str | None,
           as_email: str | None) -> tuple[str | None, str | None]:
    """The campaign and general branch of ``report``: with ``--as``, what that person may download (the
    campaign by default the latest of their own committee, as on the web); without it, the operator's —
    the campaign of ``--general-branch``'s committee when one is named. When several committees run their
    own campaigns and nothing says which, the answer names the choices instead of guessing."""
    from service.application import report_scope
    from service.cli_tenancy import OPERATOR
    from workflow import service, tenancy

    if campaign and not as_email:  # the operator names it: as before (an unknown code: 找不到活动)
        return campaign, general_branch
    actor = service.actor_for(s, as_email) if as_email else OPERATOR
    try:
        row = tenancy.campaign_for(s, actor, campaign, general_branch=general_branch)
    except tenancy.CampaignAmbiguous as exc:
        raise InvalidInput(_ambiguous(s, actor, exc.codes, as_email)) from None
    except NotFound:
        # a parent committee's people: their own committee runs no campaign, its children do
        readable = _readable(s, actor, tenancy.latest_campaigns(s)) if as_email and not campaign else []
        if not readable:
            raise
        raise InvalidInput(f"{as_email} 所在的党委本身没有活动：请用 --campaign 指定活动编码（可选：{_shown(s, readable)}）；"
                           "各下级党委逐支部汇总的报表用 `branchflow rollup --as 邮箱 --form summary`") from None
    if as_email:
        form = reports.FORMS.get(name)
        general_branch = report_scope(s, actor, general_branch, per_branch=form.per_branch if form else True,
                                      campaign=row.code)
    return row.code, general_branch


def _readable(s: Any, actor: Any, codes: list[str]) -> list[str]:
    from sqlalchemy import select

    from workflow import tenancy
    from workflow.models import CampaignRow

    return list(s.scalars(select(CampaignRow.code).where(CampaignRow.code.in_(codes), tenancy.campaign_clause(actor))
                          .order_by(CampaignRow.code)))


def _shown(s: Any, codes: list[str]) -> str:
    """``code（党委名称）`` of each campaign (at most eight)."""
    from sqlalchemy import select

    from workflow.models import CampaignRow, Committee

    owners = dict(s.execute(select(CampaignRow.code, Committee.name).outerjoin(
        Committee, Committee.id == CampaignRow.committee_id).where(CampaignRow.code.in_(codes[:8]))).tuples().all())
    return "；".join(f"{c}（{owners.get(c) or '全部党委'}）" for c in codes[:8]) + ("……" if len(codes) > 8 else "")


def _ambiguous(s: Any, actor: Any, codes: list[str], as_email: str | None) -> str:
    if as_email:
        return (f"{as_email} 在多个党委任职，无法确定用哪个党委的活动：请用 --campaign 指定活动编码"
                f"（可选：{_shown(s, _readable(s, actor, codes))}）")
    return (f"有多个党委各自开展活动，无法确定生成哪个党委的报表：请用 --campaign 指定活动编码"
            f"（可选：{_shown(s, codes)}），或用 --as 邮箱 按本人所在党委选取")


def register(cli: click.Group) -> None:
    from service.cli import campaign_option, now_option, parse_now

    names = ", ".join(f"{k}={v}" for k, v in reports.form_names().items())

    @cli.command("report")
    @click.argument("name")
    @click.option("--format", "fmt", default="xlsx", show_default=True, help="xlsx、csv（UTF-8 BOM）或 html（可打印）")
    @click.option("--general-branch", default=None, help="只出某个党总支的表（党总支编码）")
    @click.option("--at", "at_s", default=None, help="按历史记录重放，给出该时间的表（ISO 时间；无时区按北京时间）")
    @click.option("--output", "-o", default=None, help="输出文件或目录（默认当前目录下的中文文件名）")
    @campaign_option
    @click.option("--as", "as_email", default=None,
                  help="以某人的身份生成（只给其有权下载的范围；不给出 --campaign 时取其所在党委的最新活动）")
    @now_option
    def report(name: str, fmt: str, general_branch: str | None, at_s: str | None, output: str | None,
               campaign: str | None, as_email: str | None, now_s: str | None) -> None:
        """生成报表。NAME：summary=分类定级汇总表，overview=分类定级情况一览表，rectification=整改汇总表，
        tasks=任务清单，acceptance=晋位升级检查验收汇总表。"""
        at = parse_now(at_s) if at_s else None
        now = parse_now(now_s)
        with _ctx().tx() as s:
            campaign, general_branch = _which(s, name, campaign, general_branch, as_email)
            r = reports.render(s, name, fmt.lower(), general_branch=general_branch, at=at, campaign=campaign, now=now)
            path = _output_path(output, r.filename)
            size = _write_atomically(path, r.body)
        click.echo(f"已生成 {path}（{size / 1024:.1f} KB）")

    report.help = (report.help or "") + f"\n\n可用报表：{names}"

    @cli.command("charts")
    @click.option("--output-dir", "-o", default=".", show_default=True, help="SVG 图片的输出目录")
    @campaign_option
    @now_option
    def charts_cmd(output_dir: str, campaign: str | None, now_s: str | None) -> None:
        """生成等级分布、各环节燃尽图、各党总支逾期情况三张 SVG 图。"""
        now = parse_now(now_s)
        target = Path(output_dir)
        if not target.is_dir():
            raise InvalidInput(f"输出目录 {target} 不存在")
        with _ctx().tx() as s:
            svgs = charts.dashboard_svgs(s, campaign, now)
        labels = {"grades": "等级分布", "burndown": "燃尽图", "overdue": "逾期情况"}
        for key, svg in svgs.items():
            p = target / f"{key}.svg"
            _write_atomically(p, [svg.encode("utf-8")])
            click.echo(f"{labels[key]}：{p}")

    @cli.command("export-events")
    @click.option("--branch", default=None, help="只导出一个党支部（默认导出整个活动）")
    @campaign_option
    @click.option("--output", "-o", required=True, help="输出文件（JSON Lines，如 events.jsonl）")
    def export_events_cmd(branch: str | None, campaign: str | None, output: str) -> None:
        """导出事件记录（JSON Lines，含哈希链），供审计人员在 branchflow 之外校验。"""
        path = _output_path(output, "events.jsonl")
        with _ctx().tx() as s:
            lines = 0

            def counted() -> Iterable[bytes]:
                nonlocal lines
                for chunk in export_events(s, campaign=campaign, branch=branch):
                    lines += chunk.count(b"\n")
                    yield chunk

            _write_atomically(path, counted())
        click.echo(f"已导出 {lines} 条事件到 {path}；校验方法见 docs/reports.md")
