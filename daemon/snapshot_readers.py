"""Extra connections that read the database as one snapshot, so a computation's queries run at once.

A year of monthly values is a dozen grouped queries, each bound to one core
(SQLite always; PostgreSQL once its parallel workers are off). Side by side
on their own connections they use every core. Pinned to one snapshot, they
agree with each other as one transaction's queries would, and a sync that
commits meanwhile is seen by none of them (its days stay marked dirty and are
restated next). They do not see what the computing connection itself wrote
and has not committed: a computation reads records, and nothing that computes
writes records before it.

PostgreSQL: the computing transaction exports its snapshot and each reader
imports it (``pg_export_snapshot``, ``SET TRANSACTION SNAPSHOT``). SQLite in
WAL mode: each reader starts a read transaction while no writer can commit,
the computing connection's own write lock when it holds one, else a lock taken
for the moment the readers start.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import structlog
from sqlalchemy import URL, Connection, Engine
from sqlalchemy.exc import OperationalError

from daemon import db
from daemon.query_tuning import tune

log = structlog.get_logger("itbsc.compute")

MAX_READERS = db.MAX_SNAPSHOT_READERS  # the engine's pool has room for them (db.POOL_OVERFLOW)
AUTOMATIC_MAX = 4  # a year's time is in four to six queries; each reader holds its groups
_SNAPSHOT_ID = re.compile(r"^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$")


def automatic_count(url: URL) -> int:
    """One reader per core when the database runs on this machine's cores, one more when
    it runs on its own host; at most four.

    A reader more than the cores once paid on one machine, while rows spent long in
    Python (a year at 1M on two cores, PostgreSQL: 5.9 s with two readers, 5.6 s with
    three). With Python's part down to a fifth of the work, a third reader there only made
    the database processes share two cores (PostgreSQL 3.49-3.83 s with three against
    3.32-3.47 s with two, 5 runs each alternated; SQLite 6.85-7.05 s against 6.63-6.83 s),
    and each reader holds its query's groups and hours at once (a full recompute at 1M on
    PostgreSQL peaked at 231 MB on three, 204-210 MB on two, in the same time). A server on
    its own host runs the queries on its own cores, so it keeps the reader more."""
    cores = os.cpu_count() or 1
    return min(AUTOMATIC_MAX, cores if _on_this_machine(url) else cores + 1)


def _on_this_machine(url: URL) -> bool:
    """SQLite, or a PostgreSQL reached through a local socket or the loopback address."""
    if url.get_backend_name() != "postgresql":
        return True
    host = url.host or ""
    hosts = url.query.get("host")  # libpq's host=... (a socket directory, or a list)
    if not host and hosts:
        host = hosts if isinstance(hosts, str) else ",".join(hosts)
    return all(not name or name.startswith("/") or _loopback(name) for name in host.split(","))


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name
        return False


def can_share_snapshot(engine: Engine) -> bool:
    """Whether other connections see the same database (not an in-memory SQLite one)."""
    return engine.dialect.name in ("sqlite", "postgresql") and not db.in_memory(engine.url)


@contextmanager
def snapshot_readers(conn: Connection, count: int) -> Iterator[list[Connection]]:
    """``count`` connections reading what ``conn``'s database holds now, all one snapshot
    (an empty list when that cannot be had: one reader asked for, an in-memory database,
    a SQLite writer that holds its lock past the busy timeout). Rolled back and returned
    to the pool when the block ends."""
    if count < 2 or not can_share_snapshot(conn.engine):
        yield []
        return
    with ExitStack() as stack:
        if conn.dialect.name == "postgresql":
            readers = _postgres(conn, count, stack)
        else:
            readers = _sqlite(conn, count, stack)
        yield readers


def _postgres(conn: Connection, count: int, stack: ExitStack) -> list[Connection]:
    snapshot = str(conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar())
    if not _SNAPSHOT_ID.match(snapshot):  # interpolated below: SET takes no parameters
        raise RuntimeError(f"unexpected snapshot id from PostgreSQL: {snapshot!r}")
    readers = []
    for _ in range(count):
        reader = _opened(conn.engine, stack)
        reader.execution_options(isolation_level="REPEATABLE READ")
        reader.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        tune(reader, concurrent=True)
        readers.append(reader)
    return readers


def _sqlite(conn: Connection, count: int, stack: ExitStack) -> list[Connection]:
    # pysqlite opens a transaction only before a write (its legacy mode, which SQLAlchemy
    # keeps): an open one means ``conn`` holds the write lock, and asking for it would wait.
    writer = conn.connection.dbapi_connection
    holds_write_lock = bool(getattr(writer, "in_transaction", False))
    with ExitStack() as shut_out:
        if not holds_write_lock:  # no commit may land between two readers' starts
            lock = shut_out.enter_context(conn.engine.connect())
            try:
                lock.exec_driver_sql("BEGIN IMMEDIATE")
            except OperationalError:
                log.warning("database busy: the computation's queries run one at a time")
                return []
            shut_out.callback(lock.rollback)
        readers = []
        for _ in range(count):
            reader = _opened(conn.engine, stack)
            reader.exec_driver_sql("BEGIN")
            reader.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar()  # pinned
            # each reader sorts on its own thread: the readers already fill the cores
            reader.exec_driver_sql("PRAGMA threads = 0")
            stack.callback(reader.exec_driver_sql, f"PRAGMA threads = {db.SORT_THREADS}")
            readers.append(reader)
    return readers


def _opened(engine: Engine, stack: ExitStack) -> Connection:
    reader = stack.enter_context(engine.connect())
    stack.callback(reader.rollback)  # runs before the close: callbacks unwind in reverse
    return reader
