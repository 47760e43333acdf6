"""One Merkle log over every entry, signed checkpoints (issue 11).

Every branch event, campaign change and master-data change gets a nullable ``leaf_idx`` (NULL until the
sequencer gives it its place in the tree); the tree's stored hashes, the sequencer's head row and the
signed checkpoints get tables of their own; master-data changes become hash-chained ``master_events``.
Entries already in the database are sequenced by the first ``integrate`` after the upgrade (branch events
by id, then campaign changes, then master data; master data present before the upgrade is recorded as
its first snapshot by ``branchflow audit checkpoint`` / the first sweep).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import workflow.models

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "master_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("at", workflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=254), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("leaf_idx", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_master_events")),
        sa.UniqueConstraint("subject", "seq", name="uq_master_events_subject_seq"),
        sa.UniqueConstraint("leaf_idx", name=op.f("uq_master_events_leaf_idx")),
    )
    op.create_table(
        "log_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_head")),
    )
    op.execute("INSERT INTO log_head (id, size) VALUES (1, 0)")
    op.create_table(
        "merkle_hashes",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_merkle_hashes")),
    )
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("made_at", workflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkpoints")),
    )
    op.create_index(op.f("ix_checkpoints_size"), "checkpoints", ["size"])
    for table in ("events", "campaign_changes"):
        with op.batch_alter_table(table) as b:
            b.add_column(sa.Column("leaf_idx", sa.BigInteger(), nullable=True))
        op.create_index(f"uq_{table}_leaf_idx", table, ["leaf_idx"], unique=True)


def downgrade() -> None:
    for table in ("events", "campaign_changes"):
        op.drop_index(f"uq_{table}_leaf_idx", table_name=table)
        with op.batch_alter_table(table) as b:
            b.drop_column("leaf_idx")
    op.drop_index(op.f("ix_checkpoints_size"), table_name="checkpoints")
    op.drop_table("checkpoints")
    op.drop_table("merkle_hashes")
    op.drop_table("log_head")
    op.drop_table("master_events")
