"""the console's people: accounts with argon2id hashes, lockout and session epoch

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-10 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
# 0008 (the register of data-subject requests) comes before this one once both are merged.
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False, comment="the sign-in name"),
        sa.Column(
            "role",
            sa.Enum(
                "viewer", "operator", "admin", name="person_role", native_enum=False, length=32
            ),
            nullable=False,
        ),
        sa.Column(
            "password_hash",
            sa.String(length=255),
            nullable=False,
            comment="argon2id PHC string (salted); the password is not kept",
        ),
        sa.Column("created_at", sa.DateTime(), nullable=False, comment="UTC"),
        sa.Column("password_changed_at", sa.DateTime(), nullable=False, comment="UTC"),
        sa.Column(
            "disabled_at",
            sa.DateTime(),
            nullable=True,
            comment="UTC; a disabled person cannot sign in",
        ),
        sa.Column(
            "failed_logins",
            sa.Integer(),
            nullable=False,
            comment="wrong passwords in a row since the last sign-in or lock",
        ),
        sa.Column(
            "locked_until",
            sa.DateTime(),
            nullable=True,
            comment="UTC; no sign-in until then (too many wrong passwords)",
        ),
        sa.Column(
            "session_epoch",
            sa.Integer(),
            nullable=False,
            comment="bumped on logout, disable and password change: older sessions stop working",
        ),
        sa.Column("last_login_at", sa.DateTime(), nullable=True, comment="UTC"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_user")),
        sa.UniqueConstraint("name", name=op.f("uq_console_user_name")),
    )


def downgrade() -> None:
    op.drop_table("console_user")
