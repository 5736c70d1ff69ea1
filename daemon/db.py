"""Engine creation and schema migrations (Alembic, applied on start)."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

MIGRATIONS = Path(__file__).with_name("migrations")


def create_db_engine(url: URL, busy_timeout_seconds: float = 30.0) -> Engine:
    """SQLite in WAL mode with a busy timeout; PostgreSQL with pre-ping for long-lived services."""
    if url.get_backend_name() == "sqlite":
        pooled: dict[str, Any] = {}  # an in-memory database is not pooled
        if not in_memory(url):
            Path(url.database or "").parent.mkdir(parents=True, exist_ok=True)
            pooled["max_overflow"] = POOL_OVERFLOW
        engine = create_engine(url, connect_args={"timeout": busy_timeout_seconds}, **pooled)
        event.listen(engine, "connect", partial(_sqlite_pragmas, busy_timeout_seconds))
        return engine
    return create_engine(url, pool_pre_ping=True, max_overflow=POOL_OVERFLOW)


def in_memory(url: URL) -> bool:
    """An in-memory SQLite database: one per connection, so never shared or pooled."""
    database = url.database or ""
    return url.get_backend_name() == "sqlite" and (
        database in ("", ":memory:") or "mode=memory" in str(url)
    )


MAX_SNAPSHOT_READERS = 8  # connections a computation may read on side by side
# SQLAlchemy's 10 beyond its 5 pooled connections, and room for a computation's snapshot
# readers and the lock a SQLite computation holds while they start: a service syncing
# several sources at once would otherwise wait on its own pool.
POOL_OVERFLOW = 10 + MAX_SNAPSHOT_READERS + 1


WAL_CHECKPOINT_PAGES = 10_000  # of 4 KiB: 40 MB of log between checkpoints
WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
SORT_THREADS = min(4, os.cpu_count() or 1)  # a year at 1M on 2 cores: 17.1 s -> 11.6 s


def _sqlite_pragmas(busy_timeout_seconds: float, dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Copy the write-ahead log into the database every 40 MB rather than SQLite's 4 MB:
    # a sync commits each page (a few MB), and checkpointing after nearly every commit
    # rewrote the same index pages each time (a 100,000-incident full sync spent 2.2 s
    # in commits, 1.35 s at 40 MB). The log is cut back to 64 MB after a larger write.
    cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
    cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_seconds * 1000)}")
    # Helper threads for the sorter: every grouped computation is a sort of up to a
    # million rows (SQLite groups by sorting), and they sort its runs in parallel.
    cursor.execute(f"PRAGMA threads={SORT_THREADS}")
    cursor.close()


def alembic_config() -> AlembicConfig:
    """Built in code with the migrations folder of the installed package (not the CWD)."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, busy_timeout_seconds: float = 30.0) -> None:
    """Bring the schema to head in one transaction; a no-op when it is there already.

    A process killed mid-upgrade leaves the schema as it was, so the next start migrates
    again instead of finding half the tables created.
    """
    if is_at_head(engine):
        return
    config = alembic_config()
    migrating = _transactional_ddl(engine, busy_timeout_seconds)
    try:
        with migrating.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        if migrating is not engine:
            migrating.dispose()


def _transactional_ddl(engine: Engine, busy_timeout_seconds: float) -> Engine:
    """An engine whose transactions hold DDL too. The sqlite3 driver commits each CREATE
    on its own unless the transaction is begun explicitly; BEGIN IMMEDIATE also makes a
    second process starting at the same moment wait, then find the schema at head."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return engine  # PostgreSQL's DDL is transactional; a memory database dies with us
    migrating = create_engine(
        url,
        poolclass=NullPool,
        connect_args={"timeout": busy_timeout_seconds, "isolation_level": None},
    )
    event.listen(migrating, "connect", partial(_sqlite_pragmas, busy_timeout_seconds))
    event.listen(migrating, "begin", _begin_immediate)
    return migrating


def _begin_immediate(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def is_at_head(engine: Engine) -> bool:
    heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    return current == heads
