"""CLI of the online ballots: `branchflow ballot open/codes/remind/close/status/export/recount`
(registered by service.cli)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import click

from workflow.errors import InvalidInput


def _ctx() -> Any:
    return click.get_current_context().find_root().obj


def sheet_html(title: str, closes: str, items: list[tuple[str, str]]) -> str:
    """A printable page of QR codes (segno SVG), one slip per (grouped code, link)."""
    import segno

    slips = []
    for code, link in items:
        svg = segno.make(link, error="m").svg_inline(scale=3, border=2)
        slips.append(f'<div class="slip" data-code="{html.escape(code)}" data-link="{html.escape(link)}">{svg}'
                     f"<div>手机扫码投票，或打开 {html.escape(link.rsplit('/v/', 1)[0])}/v 输入测评码：</div>"
                     f"<code>{html.escape(code)}</code><div>截止 {html.escape(closes)} · 一码一票 · 不记名</div></div>")
    return ("<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>现场测评码 · "
            f"{html.escape(title)}</title><style>body{{font-family:sans-serif}}.sheet{{display:grid;"
            "grid-template-columns:repeat(3,1fr);gap:12px}}.slip{border:1px dashed #888;padding:8px;text-align:center;"
            "break-inside:avoid}code{font-size:1.05rem}</style></head><body>"
            f"<h1>现场测评码 · {html.escape(title)}</h1><div class=\"sheet\">{''.join(slips)}</div></body></html>")


def register(cli: click.Group) -> None:
    from service.cli import as_option, campaign_option, now_option, parse_now

    @cli.group("ballot")
    def ballot() -> None:
        """网上测评（党员群众测评）：一人一码、不记名、可重新计票。"""

    base_option = click.option("--base-url", default="http://localhost:8000", show_default=True,
                               help="投票页面的网址前缀（写入邮件链接和二维码）")
    sheet_option = click.option("--sheet", default=None, help="现场测评码二维码打印页的输出文件（HTML）")

    def _write_sheet(path: str | None, s: Any, ballot_id: int, issued: list[Any], base_url: str) -> None:
        from notifications.ballots import TZ, vote_link
        from workflow import ballots

        if not issued:
            return
        if path is None:
            raise InvalidInput("生成现场测评码时须用 --sheet 指定二维码打印页的输出文件（测评码只生成这一次）")
        p = Path(path)
        if not p.parent.exists():
            raise InvalidInput(f"输出目录 {p.parent} 不存在")
        b = ballots.get_ballot(s, ballot_id)
        items = [(it.shown, vote_link(base_url, it.code)) for it in issued]
        p.write_text(sheet_html(b.branch_code, b.closes_at.astimezone(TZ).strftime("%Y-%m-%d %H:%M"), items),
                     encoding="utf-8")
        click.echo(f"现场测评码 {len(items)} 个已写入 {p}（系统不保存测评码，请妥善保管并打印）")

    @ballot.command("open")
    @click.argument("branch")
    @as_option
    @click.option("--closes", required=True, help="截止时间（ISO；无时区按北京时间），如 2026-04-15T18:00")
    @click.option("--roster", default=None, type=click.Path(exists=True, dir_okay=False),
                  help="测评人名单 CSV：姓名,邮箱,类别（党员/群众代表）；每人收到带测评码的邮件")
    @click.option("--codes", "count", default=0, type=click.IntRange(0, 2000), help="现场测评码数量（打印二维码）")
    @sheet_option
    @base_option
    @campaign_option
    @now_option
    def open_cmd(branch: str, as_email: str, closes: str, roster: str | None, count: int, sheet: str | None,
                 base_url: str, campaign: str | None, now_s: str | None) -> None:
        """为党支部发起网上测评（党员群众测评环节；党总支书记或组织部）。"""
        from notifications.ballots import enqueue_invitations
        from workflow import ballots, service

        now = parse_now(now_s)
        closes_at = parse_now(closes)
        voters = []
        if roster:
            try:
                voters = ballots.read_roster(Path(roster).read_text(encoding="utf-8-sig"))
            except UnicodeDecodeError:
                raise InvalidInput("名单文件须为 UTF-8 编码的 CSV") from None
        if not voters and not count:
            raise InvalidInput("请用 --roster 给出测评人名单，或用 --codes 给出现场测评码数量")
        with _ctx().tx() as s:
            actor = service.actor_for(s, as_email)
            b = ballots.open_ballot(s, branch, actor, closes_at=closes_at, now=now, campaign=campaign)
            if voters:
                issued = ballots.add_voters(s, b.id, actor, voters, now=now)
                enqueue_invitations(s, b.id, issued, base_url=base_url, now=now)
            codes = ballots.issue_codes(s, b.id, actor, count, now=now) if count else []
            _write_sheet(sheet, s, b.id, codes, base_url)
            click.echo(f"网上测评 {b.id} 已发起（党支部 {branch}）：邮件通知 {len(voters)} 人，现场测评码 {len(codes)} 个；"
                       "邮件由 `branchflow tick` / `notify dispatch` 发出")

    @ballot.command("codes")
    @click.argument("ballot_id", type=int)
    @as_option
    @click.option("--count", required=True, type=click.IntRange(1, 2000), help="测评码数量")
    @sheet_option
    @base_option
    @now_option
    def codes_cmd(ballot_id: int, as_email: str, count: int, sheet: str | None, base_url: str, now_s: str | None) -> None:
        """再生成一批现场测评码，写成二维码打印页。"""
        from workflow import ballots, service

        now = parse_now(now_s)
        if sheet is None:
            raise InvalidInput("请用 --sheet 指定二维码打印页的输出文件（测评码只生成这一次）")
        with _ctx().tx() as s:
            issued = ballots.issue_codes(s, ballot_id, service.actor_for(s, as_email), count, now=now)
            _write_sheet(sheet, s, ballot_id, issued, base_url)

    @ballot.command("remind")
    @click.argument("ballot_id", type=int)
    @as_option
    @base_option
    @now_option
    def remind_cmd(ballot_id: int, as_email: str, base_url: str, now_s: str | None) -> None:
        """提醒尚未投票的测评人（邮件，附新测评码；不显示是谁）。"""
        from notifications.ballots import enqueue_invitations
        from workflow import ballots, service

        now = parse_now(now_s)
        with _ctx().tx() as s:
            issued = ballots.reissue_for_reminder(s, ballot_id, service.actor_for(s, as_email), now=now)
            n = enqueue_invitations(s, ballot_id, issued, base_url=base_url, now=now, reminder=True)
        click.echo(f"已向尚未投票的 {n} 人排队发送提醒邮件")

    @ballot.command("status")
    @click.argument("ballot_id", type=int)
    def status_cmd(ballot_id: int) -> None:
        """参与情况（进行中不显示结果）。"""
        from workflow import ballots

        with _ctx().tx() as s:
            b = ballots.get_ballot(s, ballot_id)
            p = ballots.participation(s, ballot_id)
            state = "进行中" if b.status == ballots.OPEN else "已关闭"
            click.echo(f"网上测评 {b.id}（党支部 {b.branch_code}）{state}：已投票 {p.voted} / {p.eligible}（{p.rate:.0%}）")
            if b.commitment:
                click.echo(f"承诺值：{b.commitment}")

    @ballot.command("close")
    @click.argument("ballot_id", type=int)
    @as_option
    @now_option
    def close_cmd(ballot_id: int, as_email: str, now_s: str | None) -> None:
        """关闭网上测评并计票：结果作为一条事件写入党员群众测评记录（含承诺值）。"""
        from notifications.ballots import scrub
        from workflow import ballots, service

        now = parse_now(now_s)
        with _ctx().tx() as s:
            b = ballots.close_ballot(s, ballot_id, service.actor_for(s, as_email), now=now)
            scrub(s)
            t = json.loads(b.export or "{}")["tally"]
            click.echo(f"网上测评 {b.id} 已关闭：{t['ballots']} 张选票，平均评分 {t['rating']:g}，"
                       f"群众对党员发挥作用满意率 {t['satisfaction_members']:.1%}，党员对支部书记满意率 "
                       f"{t['satisfaction_secretary']:.1%}\n承诺值：{b.commitment}")

    @ballot.command("export")
    @click.argument("ballot_id", type=int)
    @as_option
    @click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True, help="导出格式")
    @click.option("--output", "-o", required=True, help="输出文件")
    def export_cmd(ballot_id: int, as_email: str, fmt: str, output: str) -> None:
        """导出已关闭测评的全部匿名选票，供任何人重新计票、核对承诺值。"""
        from workflow import ballots, service

        p = Path(output)
        if not p.parent.exists():
            raise InvalidInput(f"输出目录 {p.parent} 不存在")
        with _ctx().tx() as s:
            body = ballots.export_of(s, ballot_id, service.actor_for(s, as_email), fmt=fmt)
        p.write_text(body, encoding="utf-8")
        click.echo(f"已导出到 {p}")

    @ballot.command("recount")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False))
    @click.option("--commitment", default=None, help="要核对的承诺值（JSON 导出自带；CSV 须给出）")
    def recount_cmd(file: str, commitment: str | None) -> None:
        """从导出文件重新计票并重算承诺值；与承诺值不符时退出码为 1。"""
        from workflow import ballots

        try:
            body = Path(file).read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidInput("导出文件须为 UTF-8 编码") from None
        rc = ballots.recount(body, commitment=commitment)
        t = rc.tally
        click.echo(f"选票 {rc.ballots} 张，平均评分 {t['rating']:g}，群众对党员发挥作用满意率 {t['satisfaction_members']:.1%}，"
                   f"党员对支部书记满意率 {t['satisfaction_secretary']:.1%}")
        click.echo(f"重算承诺值：{rc.commitment}")
        if rc.matches is None:
            click.echo("未给出承诺值，无法核对（CSV 请用 --commitment 给出事件记录中的承诺值）")
        elif rc.matches:
            click.echo("与承诺值一致")
        else:
            click.echo(f"与承诺值不一致！记录的承诺值：{rc.claimed}", err=True)
            raise SystemExit(1)
