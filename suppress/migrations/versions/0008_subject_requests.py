"""the register of data-subject requests

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-09 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

KINDS = (
    "access",
    "rectification",
    "erasure",
    "portability",
    "objection",
    "restriction",
    "consent_withdrawal",
)


def upgrade() -> None:
    op.create_table(
        "subject_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(*KINDS, name="request_kind", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column(
            "reference",
            sa.String(length=128),
            nullable=False,
            comment="the controller's reference (a ticket number); no address",
        ),
        sa.Column(
            "channel",
            sa.String(length=128),
            nullable=True,
            comment="how it arrived: phone, email, letter, ...",
        ),
        sa.Column(
            "note",
            sa.Text(),
            nullable=True,
            comment="the officer's note; no address, kept out of the audit",
        ),
        sa.Column(
            "digest",
            sa.LargeBinary(length=32),
            nullable=True,
            comment="HMAC-SHA256 of the n1-normalized address the request is about, if given",
        ),
        sa.Column(
            "key_id",
            sa.String(length=16),
            nullable=True,
            comment="id of the pepper that keyed digest",
        ),
        sa.Column("received_at", sa.DateTime(), nullable=False, comment="UTC"),
        sa.Column(
            "first_due",
            sa.Date(),
            nullable=False,
            comment="the day of receipt plus one month, in the compliance time zone",
        ),
        sa.Column(
            "due",
            sa.Date(),
            nullable=False,
            comment="first_due, or the day of receipt plus three months once extended",
        ),
        sa.Column(
            "status",
            sa.Enum("open", "closed", name="request_status", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("identity_verified_at", sa.DateTime(), nullable=True, comment="UTC"),
        sa.Column("identity_method", sa.String(length=128), nullable=True),
        sa.Column("extended", sa.Boolean(), nullable=False),
        sa.Column(
            "extension_reason",
            sa.String(length=500),
            nullable=True,
            comment="why more time is needed, as the reader was told",
        ),
        sa.Column(
            "notified_at",
            sa.DateTime(),
            nullable=True,
            comment="UTC; when the reader was told of the extension",
        ),
        sa.Column(
            "outcome",
            sa.Enum(
                "fulfilled", "refused", "withdrawn", name="outcome", native_enum=False, length=32
            ),
            nullable=True,
        ),
        sa.Column(
            "closing_note",
            sa.Text(),
            nullable=True,
            comment="no address, kept out of the audit",
        ),
        sa.Column("registered_at", sa.DateTime(), nullable=False, comment="UTC"),
        sa.Column("closed_at", sa.DateTime(), nullable=True, comment="UTC"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subject_request")),
    )
    op.create_index(op.f("ix_subject_request_digest"), "subject_request", ["digest"], unique=False)
    op.create_index(
        "ix_subject_request_status_due", "subject_request", ["status", "due"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_subject_request_status_due", table_name="subject_request")
    op.drop_index(op.f("ix_subject_request_digest"), table_name="subject_request")
    op.drop_table("subject_request")
