"""events taken from the mailing tools' webhooks

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 18:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_event",
        sa.Column(
            "key",
            sa.String(length=64),
            nullable=False,
            comment="HMAC-SHA256 hex of provider and event id",
        ),
        sa.Column(
            "provider", sa.String(length=16), nullable=False, comment="sendgrid, mailgun, ..."
        ),
        sa.Column("received_at", sa.DateTime(), nullable=False, comment="UTC"),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_webhook_event")),
    )
    op.create_index(
        op.f("ix_webhook_event_received_at"), "webhook_event", ["received_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_event_received_at"), table_name="webhook_event")
    op.drop_table("webhook_event")
