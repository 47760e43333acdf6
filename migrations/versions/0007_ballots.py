"""Online ballots for the member evaluation (issue 15).

Four tables: ``ballots`` (one per branch's online evaluation), ``ballot_voters`` (who may vote: code
hashes and a used flag, no time), ``ballot_responses`` (the anonymous answers: random key, no time,
WITHOUT ROWID on SQLite so rows are stored in random-key order) and ``ballot_attempts`` (refused code
attempts per client address, the rate limit). Voters and responses share no key but the ballot's id.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import workflow.models

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ballots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("branch_code", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("form", sa.JSON(), nullable=False),
        sa.Column("opened_by", sa.String(length=254), nullable=False),
        sa.Column("opened_at", workflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("closes_at", workflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("closed_at", workflow.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=254), nullable=True),
        sa.Column("commitment", sa.String(length=64), nullable=True),
        sa.Column("export", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_ballots_case_id_cases")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ballots")),
    )
    op.create_index(op.f("ix_ballots_case_id"), "ballots", ["case_id"])
    op.create_index("ix_ballots_status_closes", "ballots", ["status", "closes_at"])
    op.create_table(
        "ballot_voters",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("ballot_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("voted", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["ballot_id"], ["ballots.id"], name=op.f("fk_ballot_voters_ballot_id_ballots"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ballot_voters")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_ballot_voters_code_hash")),
    )
    op.create_index(op.f("ix_ballot_voters_ballot_id"), "ballot_voters", ["ballot_id"])
    op.create_table(
        "ballot_responses",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("ballot_id", sa.Integer(), nullable=False),
        sa.Column("rating", sa.Float(), nullable=False),
        sa.Column("satisfied_with_members", sa.Boolean(), nullable=False),
        sa.Column("satisfied_with_secretary", sa.Boolean(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["ballot_id"], ["ballots.id"], name=op.f("fk_ballot_responses_ballot_id_ballots"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ballot_responses")),
        sqlite_with_rowid=False,
    )
    op.create_index(op.f("ix_ballot_responses_ballot_id"), "ballot_responses", ["ballot_id"])
    op.create_table(
        "ballot_attempts",
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("window_start", workflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("client", name=op.f("pk_ballot_attempts")),
    )


def downgrade() -> None:
    op.drop_table("ballot_attempts")
    op.drop_index(op.f("ix_ballot_responses_ballot_id"), table_name="ballot_responses")
    op.drop_table("ballot_responses")
    op.drop_index(op.f("ix_ballot_voters_ballot_id"), table_name="ballot_voters")
    op.drop_table("ballot_voters")
    op.drop_index("ix_ballots_status_closes", table_name="ballots")
    op.drop_index(op.f("ix_ballots_case_id"), table_name="ballots")
    op.drop_table("ballots")
