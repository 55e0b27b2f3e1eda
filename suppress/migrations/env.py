"""Alembic environment, configured in code: the caller passes a connection."""

from __future__ import annotations

from alembic import context

from suppress.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached when alembic is run by hand
    raise RuntimeError("run migrations through 'suppress db upgrade'")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
