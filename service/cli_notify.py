"""CLI commands of the notifications: `tick` and `outbox` (registered by service.cli)."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy import func, select

from notifications.dispatch import MailUndeliverable
from notifications.models import CANCELLED, DEAD, HELD, PENDING, SENT, SKIPPED, DeliveryRow, OutboxRow
from notifications.outbox import DELIVERY_STATUSES
from workflow.audit import iso
from workflow.errors import InvalidInput

STATUS_LABELS = {PENDING: "待发送", HELD: "暂扣", SENT: "已发送", DEAD: "投递失败", CANCELLED: "已取消",
                 SKIPPED: "已跳过"}
KIND_LABELS = {"reminder": "截止提醒", "escalation": "逾期督促", "monthly": "月调度", "dead_report": "投递失败报告",
               "held_report": "系统告警"}


def _ctx() -> Any:
    """The root context's object (service.cli.Ctx); not ``find_object(Ctx)``, which fails under
    ``python -m service.cli`` where the class exists twice (``__main__`` and ``service.cli``)."""
    return click.get_current_context().find_root().obj


def register(cli: click.Group) -> None:
    from service.cli import campaign_option, echo_json, json_option, now_option, parse_now

    @cli.command()
    @now_option
    @campaign_option
    def tick(now_s: str | None, campaign: str | None) -> None:
        """扫描一次到期的提醒、逾期督促和月调度，并发送一次邮件（供 cron 使用，或用 --now 模拟）。

        未设置 BRANCHFLOW_SMTP_HOST 时，邮件写成 .eml 文件放在数据目录下的 mail/ 文件夹。
        """
        from notifications.mailer import EmlSink, transport_for
        from scheduler.jobs import run_tick

        c = _ctx()
        now = parse_now(now_s)
        if campaign:
            with c.tx() as s:
                from workflow.repository import get_campaign_row

                get_campaign_row(s, campaign)
        transport = transport_for(c.settings)
        result = run_tick(c.engine, c.settings, now=now, transport=transport, campaign=campaign)
        click.echo(f"时间 {now.isoformat(timespec='minutes')}")
        from service.cli_years import calendar_lines

        with c.tx() as s:  # which working-day calendar is in force (issue 12)
            for line in calendar_lines(s, campaign):
                click.echo(line)
        click.echo(result.text())
        if isinstance(transport, EmlSink) and result.dispatch.messages:
            click.echo(f"未配置 SMTP：邮件已写入 {transport.folder}")
        trouble = result.dispatch.trouble()
        if trouble:
            raise MailUndeliverable(trouble)  # "错误：…" on stderr, exit 8

    @cli.command()
    @click.option("--status", type=click.Choice([PENDING, HELD, SENT, DEAD, CANCELLED, SKIPPED]), default=None,
                  help="只看某种状态：pending 待发送 / held 暂扣（模板或配置错误，自动重试） / sent 已发送 / "
                       "dead 投递失败 / cancelled 已取消 / skipped 已跳过")
    @click.option("--limit", type=int, default=50, show_default=True, help="最多列出多少条")
    @json_option
    def outbox(status: str | None, limit: int, as_json: bool) -> None:
        """列出邮件通知：待发送、暂扣、已发送、投递失败（死信）、已取消和已跳过的。"""
        if limit < 1:
            raise InvalidInput("--limit 须为正整数")
        c = _ctx()
        with c.tx() as s:
            counts = dict(s.execute(select(DeliveryRow.status, func.count()).group_by(DeliveryRow.status)).all())
            for k in DELIVERY_STATUSES:
                counts.setdefault(k, 0)
            counts[SKIPPED] = s.scalar(select(func.count()).select_from(OutboxRow).where(OutboxRow.status == SKIPPED)) or 0
            rows: list[dict[str, object]] = []
            if status == SKIPPED:
                for o in s.scalars(select(OutboxRow).where(OutboxRow.status == SKIPPED)
                                   .order_by(OutboxRow.due_at.desc(), OutboxRow.id.desc()).limit(limit)):
                    rows.append({"status": SKIPPED, "kind": o.kind, "key": o.dedup_key, "recipient": "",
                                 "due_at": iso(o.due_at), "attempts": 0, "sent_at": None,
                                 "error": o.context.get("reason", "")})
            else:
                q = (select(DeliveryRow, OutboxRow).join(OutboxRow, OutboxRow.id == DeliveryRow.outbox_id)
                     .order_by(OutboxRow.due_at.desc(), DeliveryRow.id.desc()).limit(limit))
                if status:
                    q = q.where(DeliveryRow.status == status)
                for d, o in s.execute(q).all():
                    rows.append({"status": d.status, "kind": o.kind, "key": o.dedup_key, "recipient": d.recipient,
                                 "due_at": iso(o.due_at), "attempts": d.attempts,
                                 "sent_at": iso(d.sent_at) if d.sent_at else None, "error": d.last_error or "",
                                 "message_id": d.message_id})
        if as_json:
            echo_json({"counts": counts, "items": rows})
            return
        click.echo("邮件通知：" + "，".join(f"{STATUS_LABELS[k]} {counts.get(k, 0)}"
                                          for k in (PENDING, SENT, DEAD, CANCELLED, SKIPPED)))
        if counts.get(HELD):
            click.echo(f"！！注意：暂扣 {counts[HELD]} 条——因邮件模板或配置错误未能生成或发送（不是收件人的问题），"
                       "修复后会自动重发；查看：branchflow outbox --status held")
        if not rows:
            click.echo("（没有符合条件的通知）")
            return
        for r in rows:
            line = (f"  [{STATUS_LABELS.get(str(r['status']), r['status'])}] {KIND_LABELS.get(str(r['kind']), r['kind'])} "
                    f"{r['key']}")
            if r["recipient"]:
                line += f" → {r['recipient']}"
            if r["attempts"] and r["status"] != SENT:
                line += f"（已尝试 {r['attempts']} 次）"
            if r["error"]:
                line += f"：{r['error']}"
            click.echo(line)
