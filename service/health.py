"""Health of a running service: ``GET /healthz`` (the process answers) and ``GET /readyz`` (it can do its
work), both JSON; :func:`readiness` is also what ``branchflow status`` prints.

``/readyz`` answers 200 when the database is reachable and its schema is at the head revision, else 503.
It also reports — without failing on them — the scheduler's role in this process (``leader``: this node
runs the sweep; ``follower``: another node holds the PostgreSQL advisory lock; ``off``: no scheduler here,
e.g. ``branchflow web``) and whether any node holds the leader lock (PostgreSQL), the outbox (``backlog``:
deliveries still to send, ``held``: held by a failure of ours, ``dead``: dead letters), unreported dead
letters, and the last sweep time. A ``problems`` list says in Chinese what needs an operator.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, func, select, text

from workflow.audit import iso

router = APIRouter(tags=["运行状态"])


def _delivery_statuses() -> tuple[str, ...]:
    try:
        from notifications.outbox import DELIVERY_STATUSES

        return DELIVERY_STATUSES
    except ImportError:  # pragma: no cover - older tree
        return ("pending", "held", "sent", "dead", "cancelled")


def _leader_present(engine: Engine) -> bool | None:
    """PostgreSQL: does any session hold the scheduler's advisory lock? SQLite: unknown (single node)."""
    if engine.dialect.name != "postgresql":
        return None
    from scheduler.jobs import LEADER_LOCK_KEY

    hi, lo = LEADER_LOCK_KEY >> 32, LEADER_LOCK_KEY & 0xFFFFFFFF
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                              "AND classid = :hi AND objid = :lo AND objsubid = 1"), {"hi": hi, "lo": lo}).scalar()
    return bool(n)


def scheduler_role(scheduler: Any) -> str:
    """``leader``, ``follower`` or ``off`` for the scheduler object ``serve`` runs (None: no scheduler)."""
    if scheduler is None:
        return "off"
    lock = getattr(scheduler, "branchflow_lock", None)
    return "leader" if lock is None or lock.held else "follower"


def readiness(engine: Engine, *, scheduler: Any = None) -> dict[str, Any]:
    """Everything ``/readyz`` and ``branchflow status`` report; never raises for a broken database."""
    from notifications.models import DeadLetterRow, DeliveryRow, SweepStateRow
    from workflow.migrate import current, head

    out: dict[str, Any] = {"ready": False, "time": iso(dt.datetime.now(dt.UTC)), "problems": []}
    problems: list[str] = out["problems"]
    db: dict[str, Any] = {"reachable": False, "dialect": engine.dialect.name}
    out["database"] = db
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        db["reachable"] = True
    except Exception as exc:  # noqa: BLE001 — any driver error means "not reachable"; reported, not raised
        db["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        problems.append(f"数据库无法连接：{db['error']}")
        return out
    want = head()
    have = current(engine)
    out["migrations"] = {"current": have, "head": want, "ok": have == want}
    if have is None:
        problems.append("数据库尚未初始化：请运行 branchflow init")
    elif have != want:
        problems.append(f"数据库版本 {have} 落后于程序的 {want}：请运行 branchflow init 升级")
    role = scheduler_role(scheduler)
    sched: dict[str, Any] = {"role": role}
    try:
        sched["leader_present"] = True if role == "leader" else _leader_present(engine)
    except Exception:  # noqa: BLE001 — pg_locks not readable: unknown
        sched["leader_present"] = None
    out["scheduler"] = sched
    if have is None:
        return out
    with engine.connect() as conn:
        counts: dict[str, int] = {str(k): int(v) for k, v in conn.execute(
            select(DeliveryRow.status, func.count()).group_by(DeliveryRow.status)).all()}
        unreported = conn.execute(select(func.count()).select_from(DeadLetterRow)
                                  .where(DeadLetterRow.reported.is_(False))).scalar_one()
        last_sweep = conn.execute(select(func.max(SweepStateRow.updated_at))).scalar()
        oldest = conn.execute(select(func.min(DeliveryRow.next_attempt_at))
                              .where(DeliveryRow.status == "pending")).scalar()
    by_status = {s: counts.get(s, 0) for s in _delivery_statuses()}
    by_status.update({k: v for k, v in counts.items() if k not in by_status})
    out["outbox"] = {"backlog": by_status.get("pending", 0), "held": by_status.get("held", 0),
                     "dead": by_status.get("dead", 0), "dead_unreported": int(unreported),
                     "oldest_pending": iso(oldest) if oldest else None, "by_status": by_status}
    out["last_sweep"] = iso(last_sweep) if last_sweep else None
    if by_status.get("held"):
        problems.append(f"有 {by_status['held']} 封邮件因模板或配置错误暂扣（修复后自动重发）：branchflow outbox --status held")
    if unreported:
        problems.append(f"有 {unreported} 封投递失败的邮件尚未报告给组织部")
    out["ready"] = have == want
    return out


@router.get("/healthz", summary="进程存活", include_in_schema=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", include_in_schema=False,
            summary="可以工作：数据库可连接、版本最新；定时任务、邮件队列、最近一次扫描")
def readyz(request: Request) -> JSONResponse:
    engine = request.app.state.runtime.engine
    body = readiness(engine, scheduler=getattr(request.app.state, "branchflow_scheduler", None))
    return JSONResponse(body, status_code=200 if body["ready"] else 503)


def install(app: FastAPI) -> None:
    """What ``create_app`` adds for operations: the two endpoints and the request log (service/logs.py)."""
    from service import logs

    app.include_router(router)
    logs.install(app)
