"""A computation's queries side by side on readers of one snapshot: the values one connection
gives, nothing a write commits meanwhile, nothing left behind on the pooled connections."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from daemon import aggregate, db, store
from daemon.compute import compute
from daemon.models import CANONICAL_TABLES
from daemon.settings import Config
from daemon.snapshot_readers import MAX_READERS, automatic_count, snapshot_readers
from mapping.periods import Period, parse_period, periods_between
from tests.helpers import on_connections

INCIDENTS = CANONICAL_TABLES["incident"]
MOMENT = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    """An empty migrated store of each kind; a short busy timeout, so a wait on a lock
    shows as a failure rather than as a slow test."""
    engine = db.create_db_engine(sa.make_url(db_url), busy_timeout_seconds=1)
    db.upgrade(engine)
    with engine.begin() as conn:
        store.write_canonical(conn, INCIDENTS, [_incident(f"INC{i}") for i in range(3)])
    yield engine
    engine.dispose()


def _incident(source_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "source": "snow",
        "source_id": source_id,
        "number": source_id,
        "updated_at": MOMENT,
        "mapping_version": "test",
        "state": "resolved",
        "priority": "P2",
        "assignment_group": "Service Desk",
        "opened_at": MOMENT,
        "resolved_at": MOMENT + timedelta(hours=5),
        **fields,
    }


def _numbers(conn: sa.Connection) -> list[str]:
    return list(conn.execute(sa.select(INCIDENTS.c.number).order_by(INCIDENTS.c.number)).scalars())


def test_readers_share_one_snapshot_and_see_no_later_commit(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        assert _numbers(conn) == ["INC0", "INC1", "INC2"]
        with snapshot_readers(conn, 3) as readers:
            assert len(readers) == 3
            with engine.begin() as other:  # a sync's page, committed while they read
                store.write_canonical(other, INCIDENTS, [_incident("INC3")])
            for reader in readers:
                assert _numbers(reader) == ["INC0", "INC1", "INC2"]
            with engine.connect() as fresh:
                assert _numbers(fresh) == ["INC0", "INC1", "INC2", "INC3"]


def test_a_connection_that_has_written_gets_readers_without_waiting_for_its_own_lock(
    engine: sa.Engine,
) -> None:
    """A recompute has cleared its dirty days (a write) before it computes: on SQLite its
    lock already keeps every other writer out, and asking for another would wait on it.
    Its uncommitted write is not the readers' to see."""
    with engine.connect() as conn:
        store.write_canonical(conn, INCIDENTS, [_incident("INC9")])
        with snapshot_readers(conn, 2) as readers:
            assert len(readers) == 2
            assert [_numbers(r) for r in readers] == [["INC0", "INC1", "INC2"]] * 2
        conn.rollback()


def test_sqlite_computes_on_one_connection_when_a_writer_holds_the_lock(tmp_path: Path) -> None:
    """Another program's write transaction outlasting the busy timeout: no readers (the
    queries run one by one on the computing connection) rather than a failed computation."""
    url = sa.make_url(f"sqlite:///{tmp_path / 'locked.db'}")
    engine = db.create_db_engine(url, busy_timeout_seconds=0.2)
    db.upgrade(engine)
    with engine.connect() as writer, engine.connect() as conn:
        store.write_canonical(writer, INCIDENTS, [_incident("INC9")])  # holds the lock
        with snapshot_readers(conn, 3) as readers:
            assert readers == []
        writer.rollback()
    engine.dispose()


def test_the_pool_has_room_for_the_most_readers_beside_a_busy_service(engine: sa.Engine) -> None:
    """Syncs holding every connection SQLAlchemy pools by default (5 + 10 overflow, one
    of them computing) still leave the most readers a computation may ask for."""
    busy = [engine.connect() for _ in range(14)]
    try:
        with engine.connect() as conn, snapshot_readers(conn, MAX_READERS) as readers:
            assert len(readers) == MAX_READERS
            assert {_numbers(r)[0] for r in readers} == {"INC0"}
    finally:
        for other in busy:
            other.close()


@pytest.mark.parametrize(
    ("url", "on_this_machine"),
    [
        ("sqlite:///itbsc.db", True),
        ("postgresql+psycopg://itbsc@127.0.0.1:5432/itbsc", True),
        ("postgresql+psycopg://itbsc@localhost/itbsc", True),
        ("postgresql+psycopg://itbsc@[::1]:5432/itbsc", True),
        ("postgresql+psycopg:///itbsc", True),  # libpq's default socket
        ("postgresql+psycopg://itbsc@/itbsc?host=/var/run/postgresql", True),
        ("postgresql+psycopg://itbsc@db.example.net/itbsc", False),
        ("postgresql+psycopg://itbsc@10.0.0.7/itbsc", False),
        ("postgresql+psycopg://itbsc@/itbsc?host=/tmp&host=db.example.net", False),
    ],
)
def test_readers_default_to_the_cores_a_local_database_shares_one_more_for_a_remote_one(
    url: str, on_this_machine: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert automatic_count(sa.make_url(url)) == (2 if on_this_machine else 3)
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert automatic_count(sa.make_url(url)) == 4


def test_one_reader_or_an_in_memory_database_gets_none(engine: sa.Engine) -> None:
    with engine.connect() as conn, snapshot_readers(conn, 1) as readers:
        assert readers == []
    memory = db.create_db_engine(sa.make_url("sqlite://"))
    with memory.connect() as conn, snapshot_readers(conn, 3) as readers:
        assert readers == []  # another connection would open another, empty database
    memory.dispose()


def test_readers_go_back_to_the_pool_as_they_came(engine: sa.Engine) -> None:
    """Returned on an error too, their transaction ended and their settings undone."""
    with (
        engine.connect() as conn,
        pytest.raises(RuntimeError, match="query failed"),
        snapshot_readers(conn, 3) as readers,
    ):
        assert len(readers) == 3
        raise RuntimeError("query failed")
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    opened = [engine.connect() for _ in range(4)]  # the readers' pooled connections among them
    try:
        for conn in opened:
            if engine.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA threads").scalar() == db.SORT_THREADS
            else:
                assert conn.exec_driver_sql("SHOW transaction_isolation").scalar() == (
                    "read committed"
                )
                assert conn.exec_driver_sql("SHOW max_parallel_workers_per_gather").scalar() != "0"
    finally:
        for conn in opened:
            conn.close()


def _year_plan(config: Config) -> dict[str, list[Period]]:
    year = parse_period("2025-07-01..2026-06-30", config.zone)
    months = periods_between(year.start, year.end, "month", config.zone)
    return {metric.id: months for metric in config.catalogue.metric}


def test_the_catalogue_side_by_side_gives_what_one_connection_gives(
    synced: tuple[Config, sa.Engine],
) -> None:
    config, engine = synced
    plan = _year_plan(config)
    with engine.connect() as conn:
        one_by_one = compute(conn, on_connections(config, 1), plan)
    used: set[int] = set()

    def seen(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        if "GROUP BY" in statement:
            used.add(id(conn.connection.dbapi_connection))

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        with engine.connect() as conn:
            side_by_side = compute(conn, on_connections(config, 3), plan)
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    assert len(used) >= 2  # the grouped queries ran on several connections
    assert side_by_side == one_by_one  # every value, in the same order
    assert sum(v.n for v in one_by_one) > 1000


def test_a_sync_committing_mid_computation_is_in_none_of_its_values(
    synced: tuple[Config, sa.Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, engine = synced
    config = on_connections(config, 3)
    plan = _year_plan(config)
    with engine.connect() as conn:
        before = compute(conn, config, plan)
    original = aggregate.grouped_family
    wrote = threading.Event()
    guard = threading.Lock()

    def first_query_commits_a_page(*args, **kwargs):  # type: ignore[no-untyped-def]
        with guard:
            if not wrote.is_set():
                with engine.begin() as other:
                    new = [_incident(f"INC-NEW{i}", priority="P1") for i in range(40)]
                    store.write_canonical(other, INCIDENTS, new)
                wrote.set()
        return original(*args, **kwargs)

    monkeypatch.setattr(aggregate, "grouped_family", first_query_commits_a_page)
    with engine.connect() as conn:
        during = compute(conn, config, plan)
    monkeypatch.setattr(aggregate, "grouped_family", original)
    assert wrote.is_set()
    assert during == before
    with engine.connect() as conn:
        after = compute(conn, config, plan)
    assert after != before  # the page is there for the next computation


def test_a_failing_query_fails_the_computation_and_returns_every_reader(
    synced: tuple[Config, sa.Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, engine = synced
    config = on_connections(config, 3)
    plan = _year_plan(config)
    original = aggregate.grouped_family

    def broken(conn, config, family):  # type: ignore[no-untyped-def]
        if any(metric.id == "C6" for metric, _ in family):
            raise RuntimeError("disk on fire")
        return original(conn, config, family)

    monkeypatch.setattr(aggregate, "grouped_family", broken)
    with engine.connect() as conn, pytest.raises(RuntimeError, match="disk on fire"):
        compute(conn, config, plan)
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    monkeypatch.setattr(aggregate, "grouped_family", original)
    with engine.connect() as conn:
        again = compute(conn, config, plan)
        assert again == compute(conn, on_connections(config, 1), plan)
