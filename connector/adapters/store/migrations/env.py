"""Alembic environment for the connector's store.

Always run through ``connector.adapters.store.migrate.upgrade``, which builds the Alembic
config in code and hands over an open connection in ``config.attributes["connection"]``;
there is no alembic.ini and no URL here. The version table lives wherever the connection's
``search_path`` points (the ``?schema=`` of the database URL on PostgreSQL).
"""

from __future__ import annotations

from alembic import context

from connector.adapters.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with connector.adapters.store.migrate.upgrade(url), not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
