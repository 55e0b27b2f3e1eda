"""SQLite: the audit head trigger finds the head with max(id), whatever the planner's statistics

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 12:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

MESSAGE = (
    "audit_event grows only at its head: a new event needs an id above every stored one "
    "and the hash of the last event (or 32 zero bytes when there is none) as its prev_hash"
)
# 0004's trigger asked for "an event above NEW.id" and "the last event below it, by id". After
# ANALYZE of a database whose trail was still short (sqlite_stat1 then says it holds a row
# or two), SQLite answered both by scanning a covering index of the whole table: every
# insert read the whole trail, so an import slowed down as the trail grew (20,000 events took
# half a minute instead of half a second). max(id) is answered from the end of the rowid
# b-tree whatever the statistics say. PostgreSQL's trigger (0004) is unchanged.
NEW_TRIGGER = f"""
    CREATE TRIGGER audit_event_extends_head AFTER INSERT ON audit_event
    WHEN NEW.id <= 0
      OR NEW.id < (SELECT max(id) FROM audit_event)
      OR NEW.prev_hash IS NOT coalesce(
           (SELECT hash FROM audit_event
             WHERE id = (SELECT max(id) FROM audit_event WHERE id < NEW.id)),
           zeroblob(32)
         )
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
    """
OLD_TRIGGER = f"""
    CREATE TRIGGER audit_event_extends_head AFTER INSERT ON audit_event
    WHEN NEW.id <= 0
      OR EXISTS (SELECT 1 FROM audit_event WHERE id > NEW.id)
      OR NEW.prev_hash IS NOT coalesce(
           (SELECT hash FROM audit_event WHERE id < NEW.id ORDER BY id DESC LIMIT 1),
           zeroblob(32)
         )
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
    """


def _replace(trigger: str) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP TRIGGER audit_event_extends_head")
    op.execute(trigger)


def upgrade() -> None:
    _replace(NEW_TRIGGER)


def downgrade() -> None:
    _replace(OLD_TRIGGER)
