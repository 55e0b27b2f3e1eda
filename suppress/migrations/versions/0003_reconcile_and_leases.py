"""reconcile files and job leases

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 12:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_lease",
        sa.Column("job", sa.String(length=32), nullable=False),
        sa.Column(
            "owner", sa.String(length=128), nullable=False, comment="host:pid:nonce of the holder"
        ),
        sa.Column("acquired_at", sa.DateTime(), nullable=False, comment="UTC"),
        sa.Column(
            "lease_until",
            sa.DateTime(),
            nullable=False,
            comment="UTC; past it the holder is presumed dead (SQLite; PostgreSQL uses "
            "advisory locks)",
        ),
        sa.PrimaryKeyConstraint("job", name=op.f("pk_job_lease")),
    )
    op.create_table(
        "reconcile_file",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "source", sa.String(length=64), nullable=False, comment="[[reconcile.sources]] name"
        ),
        sa.Column(
            "content_hash",
            sa.LargeBinary(length=32),
            nullable=False,
            comment="SHA-256 of the file's bytes: a file is applied once",
        ),
        sa.Column(
            "name", sa.String(length=255), nullable=False, comment="file name when first applied"
        ),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("processed_at", sa.DateTime(), nullable=False, comment="UTC"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconcile_file")),
        sa.UniqueConstraint("source", "content_hash", name="uq_reconcile_file_source_content_hash"),
    )


def downgrade() -> None:
    op.drop_table("reconcile_file")
    op.drop_table("job_lease")
