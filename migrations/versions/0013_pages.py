"""Pages (issue 16, points 4 and 5): objection receipt codes, their rate limit, and indexes for lists.

* ``objection_receipts``: one per lodged objection, holding only the sha256 of the receipt code the
  objector was shown once (the code itself is never stored), the case and the objection's number.
* ``receipt_attempts``: refused receipt-code look-ups per client address (its sha256) in the current
  window — the rate limit, as ``ballot_attempts`` is for ballot codes.
* ``ix_cases_campaign_grade``: the list page's grade filter; ``ix_outbox_deliveries_recipient``: the
  notice list (``/notices``) and its count read one person's deliveries through an index.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import workflow.models

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "objection_receipts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("objection_id", sa.Integer(), nullable=False),
        sa.Column("created_at", workflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_objection_receipts_case_id_cases")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_objection_receipts")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_objection_receipts_code_hash")),
        sa.UniqueConstraint("case_id", "objection_id", name="uq_objection_receipts_case_objection"),
    )
    op.create_table(
        "receipt_attempts",
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("window_start", workflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("client", name=op.f("pk_receipt_attempts")),
    )
    op.create_index("ix_cases_campaign_grade", "cases", ["campaign_id", "grade"])
    op.create_index("ix_outbox_deliveries_recipient", "outbox_deliveries", ["recipient"])


def downgrade() -> None:
    op.drop_index("ix_outbox_deliveries_recipient", table_name="outbox_deliveries")
    op.drop_index("ix_cases_campaign_grade", table_name="cases")
    op.drop_table("receipt_attempts")
    op.drop_table("objection_receipts")
