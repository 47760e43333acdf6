"""Tables of the outbox: one row per due notice (unique dedup key), one delivery per recipient, the dead
letters, and the sweep's watermark per campaign. All on :class:`workflow.models.Base`.

    outbox              a due notice: (campaign, branch, stage, deadline, rung) → ``dedup_key`` UNIQUE,
                        written in the same transaction as the case's audit event; its ``context`` is
                        what the mail needs (branch, stage, deadline, what is missing, whom to contact)
    outbox_deliveries   one per (notice, recipient): pending → sent | held | dead | cancelled, attempts,
                        next attempt, claim lease (a dispatcher that crashed releases it by expiry)
    dead_letters        permanent failures (5xx, bad address, retries exhausted), reported once
    sweep_state         per campaign, the time up to which the sweep has looked (its watermark)
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from workflow.models import Base, UTCDateTime

# outbox.status
QUEUED = "queued"
SKIPPED = "skipped"
CANCELLED = "cancelled"
# outbox_deliveries.status
PENDING = "pending"
SENT = "sent"
DEAD = "dead"
HELD = "held"  # a failure of ours (template, configuration, a bug while building): retried automatically


class OutboxRow(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_case_status", "case_id", "status"),
        Index("ix_outbox_campaign_due", "campaign_id", "due_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(400), unique=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    branch_code: Mapped[str] = mapped_column(String(64), default="")
    stage: Mapped[str] = mapped_column(String(32), default="")
    deadline: Mapped[dt.date | None] = mapped_column(Date)
    rung: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))  # reminder | escalation | monthly | dead_report
    supervision_order: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16))  # queued | skipped | cancelled
    context: Mapped[dict[str, Any]] = mapped_column(JSON)
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class DeliveryRow(Base):
    __tablename__ = "outbox_deliveries"
    __table_args__ = (
        UniqueConstraint("outbox_id", "recipient", name="uq_outbox_deliveries_outbox_recipient"),
        Index("ix_outbox_deliveries_status_next", "status", "next_attempt_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox.id", ondelete="CASCADE"), index=True)
    recipient: Mapped[str] = mapped_column(String(254))
    recipient_name: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[str] = mapped_column(String(16))  # pending | held | sent | dead | cancelled
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    claim_token: Mapped[str | None] = mapped_column(String(40))
    last_error: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(200))
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # --- claims and held messages (issue 10; migration 0004) ---------------------------------------
    # ``claim_owner`` + ``claim_token`` fence every marking (UPDATE … WHERE claim_owner = me AND
    # claim_token = …); ``message_id`` (planned at claim time) and ``message_at`` make a digest rebuilt
    # after a crash identical; ``holds`` drives the back-off of a held message's automatic retry.
    claim_owner: Mapped[str | None] = mapped_column(String(64))
    holds: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    message_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class DeadLetterRow(Base):
    __tablename__ = "dead_letters"
    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("outbox_deliveries.id", ondelete="CASCADE"), unique=True)
    recipient: Mapped[str] = mapped_column(String(254))
    code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    reported: Mapped[bool] = mapped_column(Boolean, default=False, index=True)


class SweepStateRow(Base):
    __tablename__ = "sweep_state"
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    swept_until: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


# --- the notice list (issue 16, point 4; migration 0013): one person's deliveries through an index ---------
Index("ix_outbox_deliveries_recipient", DeliveryRow.recipient)
