"""keyed fingerprints of peppers and token secrets

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 11:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secret_check",
        sa.Column("kind", sa.String(length=8), nullable=False, comment="pepper or token"),
        sa.Column(
            "key_id",
            sa.String(length=32),
            nullable=False,
            comment="the pepper id; for a token secret its short id",
        ),
        sa.Column(
            "fingerprint", sa.LargeBinary(length=32), nullable=False, comment="HMAC(secret, label)"
        ),
        sa.Column("created_at", sa.DateTime(), nullable=False, comment="UTC"),
        sa.PrimaryKeyConstraint("kind", "key_id", name=op.f("pk_secret_check")),
    )


def downgrade() -> None:
    op.drop_table("secret_check")
