"""SQLAlchemy 2.x tables. The ``events`` table is the truth; ``cases`` is its projection.

Row ↔ domain conversion lives in :mod:`workflow.repository`; nothing outside it and the migrations
should need these classes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite (naive storage) and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; pass an aware one")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Committee(Base):
    """A Party committee: the tenant. ``path`` is the chain of ancestor ids including its own (``/1/7/23/``),
    so a committee's subtree is one index range (migration 0009)."""

    __tablename__ = "committees"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("committees.id"), index=True)
    path: Mapped[str] = mapped_column(String(400), default="", server_default="", index=True)


class GeneralBranch(Base):
    __tablename__ = "general_branches"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    committee_id: Mapped[int] = mapped_column(ForeignKey("committees.id"), index=True)


class Branch(Base):
    __tablename__ = "branches"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    branch_type: Mapped[str] = mapped_column(String(32))
    committee_id: Mapped[int] = mapped_column(ForeignKey("committees.id"), index=True)
    general_branch_id: Mapped[int | None] = mapped_column(ForeignKey("general_branches.id"), index=True)
    secretary_name: Mapped[str] = mapped_column(String(100))
    secretary_email: Mapped[str] = mapped_column(String(254))
    member_count: Mapped[int] = mapped_column(Integer)
    last_reelection: Mapped[dt.date | None] = mapped_column(Date)
    last_activity: Mapped[dt.date | None] = mapped_column(Date)
    secretary_violation: Mapped[bool] = mapped_column(Boolean, default=False)
    dissolved_on: Mapped[dt.date | None] = mapped_column(Date)


class Person(Base):
    __tablename__ = "people"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str | None] = mapped_column(String(200))


class RoleAssignment(Base):
    """A person's role, scoped to a branch, a general branch or a committee (none for auditors)."""

    __tablename__ = "role_assignments"
    __table_args__ = (
        UniqueConstraint("person_id", "role", "scope_code", name="uq_role_assignments_person_role_scope"),
        Index("ix_role_assignments_role_scope", "role", "scope_code"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(32))
    scope_code: Mapped[str] = mapped_column(String(64), default="")


class CampaignRow(Base):
    """One committee's campaign of one year. ``committee_id`` is NULL only for a campaign made before
    tenancy (migration 0009) while several committees existed: it covers every committee's branches."""

    __tablename__ = "campaigns"
    __table_args__ = (Index("ix_campaigns_committee_year", "committee_id", "year"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    year: Mapped[int] = mapped_column(Integer, index=True)
    config: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    committee_id: Mapped[int | None] = mapped_column(ForeignKey("committees.id"))
    previous_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"))


class CaseRow(Base):
    """Projection of one branch's case in one campaign; ``version`` is the seq of its last event."""

    __tablename__ = "cases"
    __table_args__ = (
        UniqueConstraint("campaign_id", "branch_id", name="uq_cases_campaign_branch"),
        Index("ix_cases_campaign_stage", "campaign_id", "stage"),
        Index("ix_cases_campaign_deadline", "campaign_id", "deadline"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"), index=True)
    stage: Mapped[str] = mapped_column(String(32))
    grade: Mapped[str | None] = mapped_column(String(32))
    deadline: Mapped[dt.date | None] = mapped_column(Date)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    previous_grade: Mapped[str | None] = mapped_column(String(32))

    __mapper_args__ = {"version_id_col": version, "version_id_generator": False}  # noqa: RUF012 — read once by the mapper


class EventRow(Base):
    """One hash-chained event. ``body`` is the canonical JSON that was hashed; the other columns index it."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("case_id", "seq", name="uq_events_case_seq"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(254))
    body: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class CampaignChangeRow(Base):
    """One audited change of a campaign's configuration (created, deadlines extended, rubric corrected …),
    hash-chained per campaign like a branch's events; ``body`` carries the new configuration's sha256."""

    __tablename__ = "campaign_changes"
    __table_args__ = (UniqueConstraint("campaign_id", "seq", name="uq_campaign_changes_campaign_seq"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(254))
    body: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class BranchLineageRow(Base):
    """A branch reorganised between years: ``split`` (one from, several rows to), ``merge`` (several from,
    one to), ``rename``, ``dissolve`` (no to), ``found`` (no from), with reason, actor and time."""

    __tablename__ = "branch_lineage"
    __table_args__ = (Index("ix_branch_lineage_from", "from_code"), Index("ix_branch_lineage_to", "to_code"))
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    from_code: Mapped[str | None] = mapped_column(String(64))
    to_code: Mapped[str | None] = mapped_column(String(64))
    committee_id: Mapped[int] = mapped_column(ForeignKey("committees.id"))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(254))
    reason: Mapped[str] = mapped_column(Text)


# --- online ballots (issue 15; migration 0007) -----------------------------------------------------
# The roster side (who may vote, whether they have) and the response side (what was answered) share no
# key: ``ballot_voters`` and ``ballot_responses`` only both carry the ballot's id. Responses have no
# time and a random primary key; on SQLite they are a WITHOUT ROWID table, so rows are stored in the
# order of that random key, not in voting order. See workflow/ballots.py for the residual risks.


class BallotRow(Base):
    """One online ballot of a branch's member evaluation (党员群众测评), open until ``closes_at``."""

    __tablename__ = "ballots"
    __table_args__ = (Index("ix_ballots_status_closes", "status", "closes_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    branch_code: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # open | closed
    form: Mapped[dict[str, Any]] = mapped_column(JSON)
    opened_by: Mapped[str] = mapped_column(String(254))
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    closes_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    closed_by: Mapped[str | None] = mapped_column(String(254))
    commitment: Mapped[str | None] = mapped_column(String(64))
    export: Mapped[str | None] = mapped_column(Text)


class BallotVoterRow(Base):
    """Who may vote in a ballot: one row per code (a named voter, or an anonymous code for a meeting).

    ``code_hash`` is the sha256 of the code; the code itself is never stored. ``voted`` says whether the
    code was used — never when.
    """

    __tablename__ = "ballot_voters"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    ballot_id: Mapped[int] = mapped_column(ForeignKey("ballots.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # member | masses | anonymous
    name: Mapped[str] = mapped_column(String(100), default="")
    email: Mapped[str] = mapped_column(String(254), default="")
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    voted: Mapped[bool] = mapped_column(Boolean, default=False)


class BallotResponseRow(Base):
    """One anonymous ballot: the answers only, a random key, no time, no code, no voter."""

    __tablename__ = "ballot_responses"
    __table_args__ = {"sqlite_with_rowid": False}  # noqa: RUF012 — read once by the mapper
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    ballot_id: Mapped[int] = mapped_column(ForeignKey("ballots.id", ondelete="CASCADE"), index=True)
    rating: Mapped[float] = mapped_column(Float)
    satisfied_with_members: Mapped[bool] = mapped_column(Boolean)
    satisfied_with_secretary: Mapped[bool] = mapped_column(Boolean)
    comment: Mapped[str] = mapped_column(Text, default="")


class BallotAttemptRow(Base):
    """Refused code attempts per client address (its sha256) in the current window: the rate limit."""

    __tablename__ = "ballot_attempts"
    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    failures: Mapped[int] = mapped_column(Integer, default=0)


# --- the Merkle log over every entry, signed checkpoints, master-data events (issue 11; migration 0006) --
# ``events``, ``campaign_changes`` and ``master_events`` each carry a nullable, unique ``leaf_idx``: NULL
# until the sequencer (workflow/checkpoint.integrate) gives the entry its place in the one Merkle tree.
# The column is added by migration 0006 and read and written only through Core in workflow/checkpoint.py,
# so the write paths of events and campaign changes stay as they are.


class MasterEventRow(Base):
    """One recorded change of master data that rules read (a branch's facts, a person and their roles,
    a general branch, a committee), hash-chained per subject (``branch:B001``, ``person:a@b.cn`` …);
    ``body`` is the canonical JSON snapshot of the subject after the change."""

    __tablename__ = "master_events"
    __table_args__ = (UniqueConstraint("subject", "seq", name="uq_master_events_subject_seq"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(String(300))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(254))
    body: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    leaf_idx: Mapped[int | None] = mapped_column(BigInteger, unique=True)


class LogHeadRow(Base):
    """The one row of the sequencer: the tree size. Updating it first serialises sequencers (a row lock
    on PostgreSQL, the writer lock on SQLite); the hot write paths never touch it."""

    __tablename__ = "log_head"
    id: Mapped[int] = mapped_column(primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)


class MerkleHashRow(Base):
    """A stored Merkle hash at its stored hash index (workflow/merkle.stored_hash_index)."""

    __tablename__ = "merkle_hashes"
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class CheckpointRow(Base):
    """A signed checkpoint (C2SP tlog-checkpoint + signed-note text) as it was handed out."""

    __tablename__ = "checkpoints"
    id: Mapped[int] = mapped_column(primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, index=True)
    root_hash: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(String(32))
    made_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


# --- fast paths (issue 13; migration 0008) ---------------------------------------------------------
# The sweep walks a campaign's cases in (deadline, id) order with a row-value keyset condition.
Index("ix_cases_campaign_deadline_id", CaseRow.campaign_id, CaseRow.deadline, CaseRow.id)


# --- attachments (issue 16, point 6; migration 0010) --------------------------------------------------
# The bytes are in the blob store (workflow/blobs.py) under their sha256, and each reference is inside the
# body of the event that filed it (the truth, covered by the chain). This table indexes those references,
# so a download finds the branches that filed a file (its scope) without reading the log.


class AttachmentRow(Base):
    """One file referenced by one event: the sha256, the case and event seq, the display name and type."""

    __tablename__ = "attachments"
    __table_args__ = (Index("ix_attachments_sha256", "sha256"), Index("ix_attachments_case_seq", "case_id", "event_seq"))
    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    event_seq: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    media_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


# --- log-in security (issue 14; migration 0005) ----------------------------------------------------
# Server-side sessions and API tokens: the cookie or bearer holds a random secret, the table only its
# sha256, so a stolen database does not yield a usable credential. A row is ended (never deleted at once)
# with a reason, so the page can say why a person must log in again. ``roles_fp`` is a fingerprint of the
# person's roles when the session began: a role change ends the session at the next request.
# ``login_attempts`` is the record an auditor reads (never the password); ``login_locks`` the temporary
# lockouts the organisation department can lift.


class WebSessionRow(Base):
    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    id_hash: Mapped[str] = mapped_column(String(64), unique=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    end_reason: Mapped[str | None] = mapped_column(String(16))
    roles_fp: Mapped[str] = mapped_column(String(32))
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(200), default="")
    notice: Mapped[str | None] = mapped_column(String(400))


class ApiTokenRow(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoke_reason: Mapped[str | None] = mapped_column(String(16))
    roles_fp: Mapped[str] = mapped_column(String(32))


class LoginAttemptRow(Base):
    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_email_at", "email", "at"), Index("ix_login_attempts_ip_at", "ip", "at"))
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    email: Mapped[str] = mapped_column(String(254))
    ip: Mapped[str] = mapped_column(String(64), default="")
    via: Mapped[str] = mapped_column(String(8))  # page, api
    outcome: Mapped[str] = mapped_column(String(16))  # ok, bad, throttled, locked, unlocked


class LoginLockRow(Base):
    __tablename__ = "login_locks"
    email: Mapped[str] = mapped_column(String(254), primary_key=True)
    locked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    locked_until: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    failures: Mapped[int] = mapped_column(Integer)


# --- pages: objection receipts, list indexes (issue 16, points 4 and 5; migration 0013) ------------------
# The objector is shown a receipt code once; only its sha256 is stored, with the case and the objection's
# number, so whoever holds the code can follow the outcome and nothing here says who objected.


class ObjectionReceiptRow(Base):
    """The receipt of one lodged objection: the sha256 of its code (never the code), the case, the number."""

    __tablename__ = "objection_receipts"
    __table_args__ = (UniqueConstraint("case_id", "objection_id", name="uq_objection_receipts_case_objection"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    objection_id: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ReceiptAttemptRow(Base):
    """Refused receipt-code look-ups per client address (its sha256) in the current window: the rate limit."""

    __tablename__ = "receipt_attempts"
    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    failures: Mapped[int] = mapped_column(Integer, default=0)


# The list page's grade filter reads the campaign's cases of one grade through an index.
Index("ix_cases_campaign_grade", CaseRow.campaign_id, CaseRow.grade)
