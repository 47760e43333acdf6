"""Committees as tenants in a tree, campaigns per committee and year, year over year, branch lineage
(issue 12).

- ``committees.parent_id``: the supervising committee (a university over its colleges, a provincial work
  committee over universities); ``committees.path``: the materialised chain of ancestor ids including its
  own, ``/1/7/23/``, so "this committee and everything under it" is one index range (``path LIKE '/1/7/%'``).
- ``campaigns.committee_id``: the committee that runs the campaign (its branches are the campaign's
  cases). NULL only for a campaign created before tenancy when several committees existed: it keeps
  covering the branches of every committee, as before. With one committee the upgrade assigns it.
  ``campaigns.previous_id``: the campaign this one was opened from (``campaign create --from``).
- ``cases.previous_grade``: the branch's final grade in the previous campaign (also in the opening
  event, so the audit covers it); the reports compare against it.
- ``branches.dissolved_on``: a dissolved branch keeps its row and history but gets no new case.
- ``branch_lineage``: splits, merges, renames, dissolutions and foundings between years, each with its
  reason, actor and time (and a master-data event, so the audit covers it).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import workflow.models

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _add_reference(table: str, column: str, target: str) -> None:
    """A nullable integer column referencing ``target.id``, without rebuilding ``table`` on SQLite (whose
    ALTER TABLE takes an inline REFERENCES clause but no separate constraint)."""
    name = f"fk_{table}_{column}_{target}"
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"ALTER TABLE {table} ADD COLUMN {column} INTEGER "
                   f"CONSTRAINT {name} REFERENCES {target} (id)")
    else:
        op.add_column(table, sa.Column(column, sa.Integer(), nullable=True))
        op.create_foreign_key(name, table, target, [column], ["id"])


def upgrade() -> None:
    # every table here is referenced by others: plain ADD COLUMN (a batch rebuild on SQLite would DROP a
    # referenced table, which the enforced foreign keys refuse)
    _add_reference("committees", "parent_id", "committees")
    op.add_column("committees", sa.Column("path", sa.String(length=400), nullable=False, server_default=""))
    op.create_index(op.f("ix_committees_parent_id"), "committees", ["parent_id"])
    op.create_index(op.f("ix_committees_path"), "committees", ["path"])
    op.execute("UPDATE committees SET path = '/' || CAST(id AS VARCHAR(20)) || '/'")

    _add_reference("campaigns", "committee_id", "committees")
    _add_reference("campaigns", "previous_id", "campaigns")
    op.create_index("ix_campaigns_committee_year", "campaigns", ["committee_id", "year"])
    op.execute("UPDATE campaigns SET committee_id = (SELECT MIN(id) FROM committees) "
               "WHERE (SELECT COUNT(*) FROM committees) = 1")

    op.add_column("cases", sa.Column("previous_grade", sa.String(length=32), nullable=True))
    op.add_column("branches", sa.Column("dissolved_on", sa.Date(), nullable=True))

    op.create_table(
        "branch_lineage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("from_code", sa.String(length=64), nullable=True),
        sa.Column("to_code", sa.String(length=64), nullable=True),
        sa.Column("committee_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("at", workflow.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=254), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["committee_id"], ["committees.id"], name=op.f("fk_branch_lineage_committee_id_committees")),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], name=op.f("fk_branch_lineage_campaign_id_campaigns")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_branch_lineage")),
    )
    op.create_index("ix_branch_lineage_from", "branch_lineage", ["from_code"])
    op.create_index("ix_branch_lineage_to", "branch_lineage", ["to_code"])


def downgrade() -> None:
    op.drop_index("ix_branch_lineage_to", table_name="branch_lineage")
    op.drop_index("ix_branch_lineage_from", table_name="branch_lineage")
    op.drop_table("branch_lineage")
    with op.batch_alter_table("branches") as b:
        b.drop_column("dissolved_on")
    with op.batch_alter_table("cases") as b:
        b.drop_column("previous_grade")
    op.drop_index("ix_campaigns_committee_year", table_name="campaigns")
    with op.batch_alter_table("campaigns") as b:
        b.drop_column("previous_id")
        b.drop_column("committee_id")
    op.drop_index(op.f("ix_committees_path"), table_name="committees")
    op.drop_index(op.f("ix_committees_parent_id"), table_name="committees")
    with op.batch_alter_table("committees") as b:
        b.drop_column("path")
        b.drop_column("parent_id")
