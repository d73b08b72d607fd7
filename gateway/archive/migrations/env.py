"""Alembic's environment: run on the connection gateway.archive.database hands over (no alembic.ini)."""

from __future__ import annotations

from alembic import context

from gateway.archive.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
