"""Alembic environment: run migrations against the URL the caller configured."""

from alembic import context
from sqlalchemy import create_engine

from devicecloud.store.schema import metadata

url = context.config.get_main_option("sqlalchemy.url") or ""
engine = create_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
