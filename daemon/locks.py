"""Lease locks in the database, one per (source, stream), shared by the daemon and the CLI.

A lease is taken by a conditional write — insert it, or take it over when it
has expired — so of two processes (or two hosts on one PostgreSQL) only one
wins; the database serialises the writes. The holder renews the lease in the
same transaction as every page it commits, so a page is only ever written
under a live lease: a holder that stalled past its lease and lost it has
its page rolled back instead of writing beside the new holder. A holder that
dies stops renewing and the lease expires — at once when it died on this
host (its pid is gone), else when the lease runs out. Lease times come from the
database host's clock where it has one (PostgreSQL), so hosts need not agree.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, Table, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from daemon.models import SyncLock

LOCKS: Table = SyncLock.__table__  # type: ignore[assignment]
DEFAULT_LEASE = timedelta(minutes=10)


def holder_id() -> str:
    """This process: host, pid and a random part (a pid is reused after a restart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


HOLDER = holder_id()


class LockBusy(Exception):
    """Someone else holds the lease; the message says who and until when."""

    def __init__(self, name: str, holder: str, expires_at: datetime) -> None:
        super().__init__(
            f"{name} is being synced by {holder} (lease until {expires_at:%Y-%m-%d %H:%M:%S} UTC);"
            " wait for it (--wait SECONDS) or try again later"
        )
        self.name, self.holder, self.expires_at = name, holder, expires_at


class LockLost(Exception):
    """Our lease expired and someone else took it: stop writing."""


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    expires_at: datetime


def lock_name(source: str, stream: str) -> str:
    return f"sync:{source}/{stream}"


def _now(conn: Connection) -> datetime:
    """The database's clock on PostgreSQL (one clock for every host), ours on SQLite."""
    if conn.dialect.name == "postgresql":
        moment: datetime = conn.execute(select(func.now())).scalar_one()
        return moment.astimezone(UTC)
    return datetime.now(UTC)


def try_acquire(
    conn: Connection, name: str, holder: str = HOLDER, lease: timedelta = DEFAULT_LEASE
) -> Lease | None:
    """Take the lease if it is free, expired or already ours; None when someone holds it."""
    now = _now(conn)
    values = {"name": name, "holder": holder, "acquired_at": now, "expires_at": now + lease}
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    inserted = conn.execute(
        dialect.insert(LOCKS).values(**values).on_conflict_do_nothing(index_elements=["name"])
    )
    if inserted.rowcount == 1:
        return Lease(name, holder, now + lease)
    taken = conn.execute(
        update(LOCKS)
        .where(LOCKS.c.name == name)
        .where((LOCKS.c.expires_at < now) | (LOCKS.c.holder == holder))
        .values(holder=holder, acquired_at=now, expires_at=now + lease)
    )
    return Lease(name, holder, now + lease) if taken.rowcount == 1 else None


def renew(
    conn: Connection, name: str, holder: str = HOLDER, lease: timedelta = DEFAULT_LEASE
) -> None:
    """Extend our lease inside the caller's transaction; LockLost when it is no longer ours."""
    now = _now(conn)
    renewed = conn.execute(
        update(LOCKS)
        .where(LOCKS.c.name == name, LOCKS.c.holder == holder)
        .values(expires_at=now + lease)
    )
    if renewed.rowcount != 1:
        raise LockLost(f"{name}: the lease expired and another process took it")


def _dead_here(holder: str) -> bool:
    """Whether ``holder`` was a process on this host that no longer runs (killed, crashed)."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def take_over_dead(conn: Connection, name: str, holder: str, lease: timedelta) -> Lease | None:
    """Take a lease whose holder died on this host without waiting for it to expire."""
    row = conn.execute(select(LOCKS).where(LOCKS.c.name == name)).one_or_none()
    if row is None or row.holder == holder or not _dead_here(row.holder):
        return None
    now = _now(conn)
    taken = conn.execute(
        update(LOCKS)
        .where(LOCKS.c.name == name, LOCKS.c.holder == row.holder)
        .values(holder=holder, acquired_at=now, expires_at=now + lease)
    )
    return Lease(name, holder, now + lease) if taken.rowcount == 1 else None


def release(conn: Connection, name: str, holder: str = HOLDER) -> None:
    conn.execute(delete(LOCKS).where(LOCKS.c.name == name, LOCKS.c.holder == holder))


def current(conn: Connection, name: str) -> Lease | None:
    """Who holds ``name`` now (None when free or expired)."""
    row = conn.execute(select(LOCKS).where(LOCKS.c.name == name)).one_or_none()
    if row is None or row.expires_at < _now(conn):
        return None
    return Lease(row.name, row.holder, row.expires_at)


@contextmanager
def held(
    engine: Engine,
    name: str,
    *,
    wait_seconds: float = 0.0,
    holder: str = HOLDER,
    lease: timedelta = DEFAULT_LEASE,
    poll_seconds: float = 0.5,
) -> Iterator[Lease]:
    """Hold ``name`` for the block, waiting up to ``wait_seconds``; LockBusy if it stays taken."""
    deadline = time.monotonic() + wait_seconds
    retried = False
    while True:
        with engine.begin() as conn:
            got = try_acquire(conn, name, holder, lease) or take_over_dead(
                conn, name, holder, lease
            )
            other = None if got else current(conn, name)
        if got is not None:
            break
        if time.monotonic() >= deadline:
            if other is None and not retried:  # it expired between the two reads
                retried = True
                continue
            if other is None:
                other = Lease(name, "another process", datetime.now(UTC))
            raise LockBusy(name, other.holder, other.expires_at)
        time.sleep(min(poll_seconds, max(0.0, deadline - time.monotonic())))
    try:
        yield got
    finally:
        with engine.begin() as conn:
            release(conn, name, holder)
