"""audit_event is append-only: triggers refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 12:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

MESSAGE = "audit_event is append-only: events are never updated or deleted"

# The chain hash detects tampering after the fact; the triggers stop the application role
# (and a slip of an operator's hand) from doing it at all. Only the table owner can drop
# or disable them, which verify() would still catch.
PG_UPGRADE = [
    f"""
    CREATE FUNCTION audit_event_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'insufficient_privilege';
    END
    $$
    """,
    """
    CREATE TRIGGER audit_event_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_event
    FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()
    """,
    """
    CREATE TRIGGER audit_event_no_truncate
    BEFORE TRUNCATE ON audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()
    """,
]
PG_DOWNGRADE = [
    "DROP TRIGGER audit_event_no_truncate ON audit_event",
    "DROP TRIGGER audit_event_no_update_or_delete ON audit_event",
    "DROP FUNCTION audit_event_append_only()",
]
SQLITE_UPGRADE = [
    f"""
    CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
    """,
    f"""
    CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
    """,
]
SQLITE_DOWNGRADE = [
    "DROP TRIGGER audit_event_no_delete",
    "DROP TRIGGER audit_event_no_update",
]


def _statements(upgrade: bool) -> list[str]:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        return PG_UPGRADE if upgrade else PG_DOWNGRADE
    if dialect == "sqlite":
        return SQLITE_UPGRADE if upgrade else SQLITE_DOWNGRADE
    raise NotImplementedError(f"no append-only trigger for {dialect}")


def upgrade() -> None:
    for statement in _statements(upgrade=True):
        op.execute(statement)


def downgrade() -> None:
    for statement in _statements(upgrade=False):
        op.execute(statement)
