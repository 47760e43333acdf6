"""Indexes for the fast paths (issue 13).

``ix_cases_campaign_deadline_id`` serves the sweep's keyset walk ``(deadline, id) > (?, ?)`` within a
campaign as one index range on PostgreSQL (SQLite's (campaign_id, deadline) index already ends in the
rowid, but the explicit index keeps both backends' plans the same).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_cases_campaign_deadline_id", "cases", ["campaign_id", "deadline", "id"])


def downgrade() -> None:
    op.drop_index("ix_cases_campaign_deadline_id", table_name="cases")
