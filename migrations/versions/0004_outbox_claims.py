"""Outbox: claim owners, held messages, planned digests (issue 10).

``outbox_deliveries`` gains
    claim_owner   the dispatcher (host:pid:random) holding the claim; with ``claim_token`` it fences marking
    holds         how many times the message was held for a failure of ours (template, configuration):
                  the back-off of its automatic retry grows with it; never dead-lettered for that
    message_at    the Date of the planned message: with ``message_id`` (planned at claim time) a digest
                  is rebuilt identically after a crash
The status ``held`` is a plain string like the others; no data changes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import workflow.models

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claim_owner", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("holds", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("message_at", workflow.models.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox_deliveries", schema=None) as batch_op:
        batch_op.drop_column("message_at")
        batch_op.drop_column("holds")
        batch_op.drop_column("claim_owner")
