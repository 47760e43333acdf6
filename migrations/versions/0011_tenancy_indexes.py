"""Tenancy indexes (issue 12): the committees' path as a prefix range on PostgreSQL whatever the collation.

A subtree is ``committees.path LIKE '/1/7/%'``. PostgreSQL uses a b-tree for a LIKE prefix only under the
C collation or with a pattern operator class; ``varchar_pattern_ops`` makes the subtree an index range on
any database locale (the plain ``ix_committees_path`` of 0009 serves equality and ORDER BY). SQLite needs
nothing: the committees table is small and its LIKE is case-insensitive, so no index applies anyway.
Everything below a committee (branches, cases, campaigns) is reached through the existing
``branches.committee_id``, ``cases (campaign_id, …)`` and ``campaigns (committee_id, year)`` indexes.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_committees_path_pattern", "committees", ["path"],
                        postgresql_ops={"path": "varchar_pattern_ops"})


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_committees_path_pattern", table_name="committees")
