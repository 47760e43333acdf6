"""The notices addressed to me (issue 16, point 4): ``/notices`` lists the reminders, escalations and 督办令
the outbox holds for the person's e-mail, newest first, each with its branch, stage and deadline and a link
to the branch (through ``ix_outbox_deliveries_recipient``)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from notifications.models import DeliveryRow, OutboxRow
from service.app import runtime
from service.pages.common import _page_actor, render
from service.pages.nav import NOTICE_KINDS

router = APIRouter(include_in_schema=False)
LIMIT = 200
TZ = ZoneInfo("Asia/Shanghai")
STATUS = {"pending": "待发送", "held": "待发送", "sent": "已发送", "dead": "投递失败", "cancelled": "已取消（支部已推进）"}


def _label(kind: str, order: bool, manual: bool) -> str:
    if order:
        return "督办令"
    if kind == "reminder":
        return "催办" if manual else "截止提醒"
    return "催办（已逾期）" if manual else "逾期督促"


@router.get("/notices", response_class=HTMLResponse)
def notices_page(request: Request) -> Response:
    rt = runtime(request)
    with rt.tx() as s:
        actor = _page_actor(rt, s, request)
        q = (select(OutboxRow.kind, OutboxRow.supervision_order, OutboxRow.context, OutboxRow.branch_code,
                    OutboxRow.due_at, OutboxRow.deadline, DeliveryRow.status, DeliveryRow.sent_at)
             .join(OutboxRow, OutboxRow.id == DeliveryRow.outbox_id)
             .where(DeliveryRow.recipient == actor.email, OutboxRow.kind.in_(NOTICE_KINDS))
             .order_by(OutboxRow.due_at.desc(), OutboxRow.id.desc()).limit(LIMIT))
        rows: list[dict[str, Any]] = []
        for r in s.execute(q):
            ctx = r.context or {}
            rows.append({
                "label": _label(r.kind, r.supervision_order, bool(ctx.get("manual"))), "order": r.supervision_order,
                "late": r.kind != "reminder", "code": r.branch_code, "name": ctx.get("branch_name", r.branch_code),
                "stage_label": ctx.get("stage_label", ""), "deadline": r.deadline.isoformat() if r.deadline else "",
                "days_overdue": ctx.get("days_overdue", 0), "days_left": ctx.get("days_left", 0),
                "text": ctx.get("supervision_text", ""), "by": ctx.get("by", ""),
                "at": r.due_at.astimezone(TZ).strftime("%Y-%m-%d %H:%M"), "status": STATUS.get(r.status, r.status),
            })
    return render(request, "notices.html", {"rows": rows, "limit": LIMIT}, actor=actor)
