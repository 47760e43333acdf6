"""What `branchflow demo` needs from the notifications: a daily tick into an ``.eml`` sink, and a summary."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from notifications.mailer import EmlSink
from notifications.models import DEAD, HELD, SKIPPED, DeliveryRow, OutboxRow
from scheduler.jobs import run_tick
from workflow.db import session_factory
from workflow.settings import Settings


def _counts(rows: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in rows}


def daily_tick(engine: Engine, mail_dir: Path) -> Callable[[dt.datetime], None]:
    """The ``on_day`` hook of the demo's simulation: one sweep and one dispatch, mails as ``.eml`` files."""
    settings = Settings(data_dir=mail_dir.parent, smtp_host="")
    transport = EmlSink(mail_dir)

    def on_day(now: dt.datetime) -> None:
        run_tick(engine, settings, now=now, transport=transport)

    return on_day


def mail_trouble(statuses: dict[str, int]) -> str | None:
    """A clear line when the demo's mail could not be rendered or sent at all, else None."""
    if statuses.get(HELD):
        return (f"有 {statuses[HELD]} 条邮件通知因邮件模板或配置错误未能生成，已暂扣（修复后会自动重发）；"
                "详情见 branchflow outbox --status held")
    if not statuses.get("sent") and statuses.get(DEAD):
        return f"邮件一封也未能发出（{statuses[DEAD]} 条投递失败）；详情见 branchflow outbox --status dead"
    return None


def mail_summary(engine: Engine, mail_dir: Path, echo: Callable[[str], None]) -> dict[str, Any]:
    with session_factory(engine)() as s:
        kinds = Counter(_counts(s.execute(select(OutboxRow.kind, func.count())
                                       .where(OutboxRow.status != SKIPPED).group_by(OutboxRow.kind)).all()))
        orders = s.scalar(select(func.count()).select_from(OutboxRow).where(OutboxRow.supervision_order.is_(True))) or 0
        skipped = s.scalar(select(func.count()).select_from(OutboxRow).where(OutboxRow.status == SKIPPED)) or 0
        statuses = Counter(_counts(s.execute(select(DeliveryRow.status, func.count()).group_by(DeliveryRow.status)).all()))
        samples = s.execute(select(OutboxRow.kind, OutboxRow.supervision_order, OutboxRow.context)
                            .where(OutboxRow.status != SKIPPED, OutboxRow.kind.in_(["reminder", "escalation"]))
                            .order_by(OutboxRow.supervision_order.desc(), OutboxRow.due_at).limit(1)).all()
    files = sorted(mail_dir.glob("*.eml")) if mail_dir.exists() else []
    echo("")
    echo(f"邮件提醒：截止提醒 {kinds.get('reminder', 0)} 条，逾期督促 {kinds.get('escalation', 0)} 条"
         f"（其中督办令 {orders} 份），月调度 {kinds.get('monthly', 0)} 份，同日合并或过时跳过 {skipped} 条；")
    echo(f"  按收件人合并后共发出 {len(files)} 封邮件（{statuses.get('sent', 0)} 条通知），"
         f"已写成 .eml 文件：{mail_dir}")
    for kind, order, ctx in samples:
        label = "督办令" if order else ("逾期督促" if kind == "escalation" else "截止提醒")
        echo(f"  例：{label} · {ctx['branch_name']} · {ctx['stage_label']} · 截止 {ctx['deadline_text']}")
    echo(f"  查看：BRANCHFLOW_DATA_DIR={mail_dir.parent} branchflow outbox")
    trouble = mail_trouble(statuses)
    if trouble:
        echo(f"  错误：{trouble}")
    return {"trouble": trouble, "reminders": kinds.get("reminder", 0), "escalations": kinds.get("escalation", 0),
            "supervision_orders": orders, "monthly": kinds.get("monthly", 0), "skipped": skipped,
            "mails": len(files), "sent": statuses.get("sent", 0)}
