"""Alembic environment: the URL comes from our settings, never from alembic.ini."""

from alembic import context
from sqlalchemy import create_engine

from core.settings import get_settings
from db.models import Base

config = context.config
url = config.attributes.get("url") or get_settings().database_url


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(url)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
