"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 12:19:58.879863
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column(
            "role",
            sa.Enum("mailer", "recorder", "admin", name="role", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column(
            "token_hash",
            sa.String(length=64),
            nullable=False,
            comment="SHA-256 hex of the bearer token; the token is not kept",
        ),
        sa.Column("created_at", sa.DateTime(), nullable=False, comment="UTC"),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column(
            "last_used_at",
            sa.DateTime(),
            nullable=True,
            comment="UTC; updated at most once a minute",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_key_token_hash")),
    )
    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False, comment="UTC"),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("digest", sa.LargeBinary(length=32), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=True),
        sa.Column("list", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("source", sa.String(length=128), nullable=True),
        sa.Column(
            "actor",
            sa.String(length=128),
            nullable=False,
            comment="api:<key name>, cli:<user>, job:<name>",
        ),
        sa.Column("detail", sa.JSON(), nullable=False, comment="structured facts; never PII"),
        sa.Column("prev_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column(
            "hash",
            sa.LargeBinary(length=32),
            nullable=False,
            comment="SHA-256(prev_hash + canonical event)",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_event_hash")),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_event_digest"), ["digest"], unique=False)

    op.create_table(
        "job_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job", sa.String(length=32), nullable=False),
        sa.Column(
            "run_key",
            sa.String(length=64),
            nullable=False,
            comment="local date (hour for expire) or manual:<timestamp>",
        ),
        sa.Column("started_at", sa.DateTime(), nullable=False, comment="UTC"),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column(
            "status", sa.String(length=16), nullable=False, comment="running|ok|failed|stale"
        ),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_run")),
        sa.UniqueConstraint("job", "run_key", name="uq_job_run_job_run_key"),
    )
    op.create_table(
        "suppression",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "digest",
            sa.LargeBinary(length=32),
            nullable=False,
            comment="HMAC-SHA256 of the n1-normalized address or domain",
        ),
        sa.Column(
            "key_id",
            sa.String(length=16),
            nullable=False,
            comment="id of the pepper that keyed digest",
        ),
        sa.Column("scheme", sa.String(length=8), nullable=False, comment="normalization scheme"),
        sa.Column(
            "kind",
            sa.Enum("address", "domain", name="kind", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column(
            "list",
            sa.String(length=64),
            nullable=False,
            comment="list name; 'global' applies to all",
        ),
        sa.Column(
            "reason",
            sa.Enum(
                "unsubscribe",
                "objection",
                "consent_withdrawn",
                "complaint",
                "hard_bounce",
                "soft_bounce",
                "manual",
                "erasure",
                name="reason",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "source", sa.String(length=128), nullable=False, comment="where the opt-out came from"
        ),
        sa.Column("created_at", sa.DateTime(), nullable=False, comment="UTC"),
        sa.Column(
            "expires_at",
            sa.DateTime(),
            nullable=True,
            comment="UTC; only temporary (bounce) suppressions expire",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppression")),
        sa.UniqueConstraint("digest", "kind", "list", name="uq_suppression_digest_kind_list"),
    )
    with op.batch_alter_table("suppression", schema=None) as batch_op:
        batch_op.create_index("ix_suppression_expires_at", ["expires_at"], unique=False)
        batch_op.create_index("ix_suppression_key_id", ["key_id"], unique=False)

    op.create_table(
        "idempotency_key",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column(
            "request_hash",
            sa.String(length=64),
            nullable=False,
            comment="SHA-256 of method, path, body",
        ),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False, comment="the stored JSON response body"),
        sa.Column("created_at", sa.DateTime(), nullable=False, comment="UTC"),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_key.id"],
            name=op.f("fk_idempotency_key_api_key_id_api_key"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("key", "api_key_id", name=op.f("pk_idempotency_key")),
    )
    with op.batch_alter_table("idempotency_key", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_idempotency_key_created_at"), ["created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("idempotency_key", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_key_created_at"))

    op.drop_table("idempotency_key")
    with op.batch_alter_table("suppression", schema=None) as batch_op:
        batch_op.drop_index("ix_suppression_key_id")
        batch_op.drop_index("ix_suppression_expires_at")

    op.drop_table("suppression")
    op.drop_table("job_run")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_event_digest"))

    op.drop_table("audit_event")
    op.drop_table("api_key")
