"""Engine creation and schema migrations (Alembic, applied on start)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL

MIGRATIONS = Path(__file__).with_name("migrations")


def create_db_engine(url: URL, busy_timeout_seconds: float = 30.0) -> Engine:
    """SQLite in WAL mode with a busy timeout; PostgreSQL with pre-ping for long-lived services."""
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": busy_timeout_seconds})
        event.listen(engine, "connect", partial(_sqlite_pragmas, busy_timeout_seconds))
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(busy_timeout_seconds: float, dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_seconds * 1000)}")
    cursor.close()


def alembic_config() -> AlembicConfig:
    """Built in code with the migrations folder of the installed package (not the CWD)."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine) -> None:
    """Bring the schema to head; a no-op when it is there already."""
    if is_at_head(engine):
        return
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def is_at_head(engine: Engine) -> bool:
    heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    return current == heads
