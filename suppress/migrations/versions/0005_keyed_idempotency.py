"""idempotency fingerprints are keyed

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

OLD_COMMENT = "SHA-256 of method, path, body"
NEW_COMMENT = "HMAC-SHA256 of method, path, body under a key derived from the pepper"


def upgrade() -> None:
    # Records written before this revision hold unkeyed SHA-256 fingerprints of request
    # bodies, which anyone with the database could test a guessed address against: drop
    # them. A retry of such a request runs again, which adds nothing twice (adds are
    # idempotent by themselves).
    op.execute("DELETE FROM idempotency_key")
    with op.batch_alter_table("idempotency_key") as batch:
        batch.alter_column(
            "request_hash",
            existing_type=sa.String(length=64),
            existing_nullable=False,
            comment=NEW_COMMENT,
            existing_comment=OLD_COMMENT,
        )


def downgrade() -> None:
    with op.batch_alter_table("idempotency_key") as batch:
        batch.alter_column(
            "request_hash",
            existing_type=sa.String(length=64),
            existing_nullable=False,
            comment=OLD_COMMENT,
            existing_comment=NEW_COMMENT,
        )
