"""audit_event grows only at its head: a trigger refuses an insert that does not extend the chain

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 09:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

MESSAGE = (
    "audit_event grows only at its head: a new event needs an id above every stored one "
    "and the hash of the last event (or 32 zero bytes when there is none) as its prev_hash"
)
# The "audit chain head" advisory lock of suppress.audit (_PG_CHAIN_LOCK): the application
# takes it before reading the head; taking it here too (re-entrant within a transaction)
# keeps two writers that skip the application from both extending the same head.
PG_CHAIN_LOCK = 0x5355505052455353

# 0002 refuses UPDATE and DELETE; without this an event could still be inserted beside the
# chain (an id of 0 or below, which verify walks past, or a second event on an old head).
# Both checks are index lookups on the primary key: the cost per event is small and fixed.
PG_UPGRADE = [
    f"""
    CREATE FUNCTION audit_event_extends_head() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        head_id integer;
        head_hash bytea;
    BEGIN
        PERFORM pg_advisory_xact_lock({PG_CHAIN_LOCK});
        -- A VOLATILE function sees the rows of the same statement inserted before this
        -- one (multi-row INSERT, COPY), so a batch must chain link by link too.
        SELECT id, hash INTO head_id, head_hash FROM audit_event ORDER BY id DESC LIMIT 1;
        IF NEW.id <= coalesce(head_id, 0)
           OR NEW.prev_hash IS DISTINCT FROM coalesce(head_hash, decode(repeat('00', 32), 'hex'))
        THEN
            RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END
    $$
    """,
    """
    CREATE TRIGGER audit_event_extends_head
    BEFORE INSERT ON audit_event
    FOR EACH ROW EXECUTE FUNCTION audit_event_extends_head()
    """,
]
PG_DOWNGRADE = [
    "DROP TRIGGER audit_event_extends_head ON audit_event",
    "DROP FUNCTION audit_event_extends_head()",
]
# SQLite: AFTER, not BEFORE. In a BEFORE INSERT trigger SQLite has not chosen the rowid yet
# (NEW.id reads -1 when the statement leaves it to the database), so an explicit -1 could not
# be told apart from a normal insert. RAISE(ABORT) in an AFTER trigger undoes the statement.
SQLITE_UPGRADE = [
    f"""
    CREATE TRIGGER audit_event_extends_head AFTER INSERT ON audit_event
    WHEN NEW.id <= 0
      OR EXISTS (SELECT 1 FROM audit_event WHERE id > NEW.id)
      OR NEW.prev_hash IS NOT coalesce(
           (SELECT hash FROM audit_event WHERE id < NEW.id ORDER BY id DESC LIMIT 1),
           zeroblob(32)
         )
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
    """,
]
SQLITE_DOWNGRADE = ["DROP TRIGGER audit_event_extends_head"]


def _statements(upgrade: bool) -> list[str]:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        return PG_UPGRADE if upgrade else PG_DOWNGRADE
    if dialect == "sqlite":
        return SQLITE_UPGRADE if upgrade else SQLITE_DOWNGRADE
    raise NotImplementedError(f"no audit head trigger for {dialect}")


def upgrade() -> None:
    for statement in _statements(upgrade=True):
        op.execute(statement)


def downgrade() -> None:
    for statement in _statements(upgrade=False):
        op.execute(statement)
