"""Connection-taking persistence helpers: dialect upserts, cursors, run audit. Callers own transactions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any, cast

import orjson
from sqlalchemy import Connection, Table, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from connectors.base import Cursor, RawRecord
from daemon import sqlite_binds
from daemon.models import DirtyDay, MetricValueRow, SyncRun, SyncState
from daemon.models import RawRecord as RawRecordRow
from mapping.model import CanonicalRecord

raw_table: Table = RawRecordRow.__table__  # type: ignore[assignment]
state_table: Table = SyncState.__table__  # type: ignore[assignment]
run_table: Table = SyncRun.__table__  # type: ignore[assignment]
metric_table: Table = MetricValueRow.__table__  # type: ignore[assignment]
dirty_table: Table = DirtyDay.__table__  # type: ignore[assignment]

MAX_BIND_PARAMS = 30000  # below SQLite's 32766 and PostgreSQL's 65535


def now() -> datetime:
    return datetime.now(UTC)


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    key: Sequence[str],
    *,
    only_if_not_older: str | None = None,
) -> None:
    """Insert or update by natural key, in chunks; idempotent on SQLite and PostgreSQL.

    With ``only_if_not_older`` an incoming row never replaces a stored one whose
    version column is newer, so re-reading an overlap window cannot roll back data.
    Every row has the same keys.
    """
    if not rows:
        return
    dialect = conn.dialect.name
    columns = tuple(rows[0])
    stmt = _upsert_statement(table, columns, tuple(key), only_if_not_older, dialect)
    if dialect == "sqlite":  # one statement, values converted once (daemon.sqlite_binds)
        sqlite_binds.execute_many(conn, stmt, table, rows)
        return
    chunk = max(1, MAX_BIND_PARAMS // max(1, len(columns)))
    for start in range(0, len(rows), chunk):
        conn.execute(stmt, list(rows[start : start + chunk]))


@lru_cache(maxsize=256)
def _upsert_statement(
    table: Table,
    columns: tuple[str, ...],
    key: tuple[str, ...],
    only_if_not_older: str | None,
    dialect: str,
) -> Insert:
    """The upsert for one table and column list (built once: a sync writes pages by the
    thousand, and each statement is compiled once per shape)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(table)
    updates = {c: stmt.excluded[c] for c in columns if c not in key}
    where = (
        stmt.excluded[only_if_not_older] >= table.c[only_if_not_older]
        if only_if_not_older
        else None
    )
    return stmt.on_conflict_do_update(index_elements=list(key), set_=updates, where=where)


def write_raw(
    conn: Connection, source: str, stream: str, run_id: str, records: Iterable[RawRecord]
) -> None:
    fetched_at = now()
    rows = [
        {
            "source": source,
            "stream": stream,
            "source_id": r.source_id,
            "source_updated_at": r.updated_at,
            "payload": orjson.dumps(r.data).decode(),
            "fetched_at": fetched_at,
            "run_id": run_id,
            "deleted_at": None,
        }
        for r in records
    ]
    upsert(
        conn,
        raw_table,
        rows,
        ("source", "stream", "source_id"),
        only_if_not_older="source_updated_at",
    )


def existing_values(
    conn: Connection, table: Table, source: str, source_ids: Sequence[str], columns: Sequence[str]
) -> list[Mapping[str, Any]]:
    """Stored values of ``columns`` for these records (to find the periods a change leaves)."""
    if not source_ids or not columns:
        return []
    query = select(*(table.c[c] for c in columns)).where(
        table.c.source == source, table.c.source_id.in_(list(source_ids))
    )
    return [cast(Mapping[str, Any], row._mapping) for row in conn.execute(query)]


def existing_children(
    conn: Connection,
    table: Table,
    source: str,
    key: str,
    values: Sequence[str],
    columns: Sequence[str],
) -> list[Mapping[str, Any]]:
    """Stored ``columns`` of rows whose ``key`` column is one of ``values``."""
    if not values or not columns:
        return []
    query = select(*(table.c[c] for c in columns)).where(
        table.c.source == source, table.c[key].in_(list(values))
    )
    return [cast(Mapping[str, Any], row._mapping) for row in conn.execute(query)]


def delete_stale_children(
    conn: Connection, table: Table, source: str, key: str, kept: Mapping[str, Sequence[str]]
) -> None:
    """Rows expanded from a record (SLA cycles of an issue) that its new version no longer has.

    Child ids are unique across parents, so one statement per chunk of parents does it."""
    parents = list(kept)
    for start in range(0, len(parents), 500):
        chunk = parents[start : start + 500]
        keep = [i for parent in chunk for i in kept[parent]]
        stale = delete(table).where(table.c.source == source, table.c[key].in_(chunk))
        if keep:
            stale = stale.where(table.c.source_id.not_in(keep))
        conn.execute(stale)


def mark_deleted(
    conn: Connection, table: Table, source: str, key: str, values: Sequence[str], stamp: datetime
) -> None:
    conn.execute(
        update(table)
        .where(table.c.source == source, table.c[key].in_(list(values)))
        .values(deleted_at=stamp)
    )


# Facts kept on a row that its own write may move: worked out again by the next restatement
# (an incident's attributed change: ``daemon.attribution_store``).
STALE_AFTER_WRITE: dict[str, dict[str, Any]] = {"itil_incident": {"attribution_current": False}}


def write_canonical(conn: Connection, table: Table, records: Sequence[CanonicalRecord]) -> None:
    stale = STALE_AFTER_WRITE.get(table.name, {})
    rows = [{**r, "deleted_at": None, **stale} for r in records]
    upsert(conn, table, rows, ("source", "source_id"), only_if_not_older="updated_at")


def delete_canonical(
    conn: Connection, table: Table, source: str, source_ids: Sequence[str]
) -> None:
    if source_ids:
        conn.execute(
            delete(table).where(table.c.source == source, table.c.source_id.in_(list(source_ids)))
        )


# -- cursors ------------------------------------------------------------------


def read_cursor(conn: Connection, source: str, stream: str) -> Cursor | None:
    row = conn.execute(
        select(state_table.c.cursor).where(
            state_table.c.source == source, state_table.c.stream == stream
        )
    ).first()
    return dict(row.cursor) if row and row.cursor else None


def save_cursor(
    conn: Connection, source: str, stream: str, cursor: Cursor | None, run_id: str, *, success: bool
) -> None:
    row: dict[str, Any] = {
        "source": source,
        "stream": stream,
        "cursor": cursor,
        "last_run_id": run_id,
        "updated_at": now(),
    }
    if success:
        row["last_success_at"] = now()
    upsert(conn, state_table, [row], ("source", "stream"))


def mark_success(conn: Connection, source: str, stream: str, run_id: str) -> None:
    stamp = now()
    result = conn.execute(
        update(state_table)
        .where(state_table.c.source == source, state_table.c.stream == stream)
        .values(last_success_at=stamp, last_run_id=run_id, updated_at=stamp)
    )
    if result.rowcount == 0:
        save_cursor(conn, source, stream, None, run_id, success=True)


# -- run audit ----------------------------------------------------------------


def start_run(conn: Connection, run_id: str, source: str, stream: str, mode: str) -> None:
    conn.execute(
        run_table.insert().values(
            id=run_id,
            source=source,
            stream=stream,
            mode=mode,
            started_at=now(),
            outcome="running",
            pages=0,
            records_fetched=0,
            records_written=0,
            records_skipped=0,
        )
    )


def count_page(conn: Connection, run_id: str, fetched: int, written: int, skipped: int) -> None:
    c = run_table.c
    conn.execute(
        update(run_table)
        .where(c.id == run_id)
        .values(
            pages=c.pages + 1,
            records_fetched=c.records_fetched + fetched,
            records_written=c.records_written + written,
            records_skipped=c.records_skipped + skipped,
        )
    )


def count_census(conn: Connection, run_id: str, seen: int, fetched: int, deleted: int) -> None:
    """A census run's figures: ids seen at the source, records fetched, records marked deleted."""
    conn.execute(
        update(run_table)
        .where(run_table.c.id == run_id)
        .values(records_fetched=seen, records_written=fetched, records_deleted=deleted)
    )


def stream_counts(conn: Connection) -> dict[tuple[str, str], tuple[int, int]]:
    """(source, stream) -> (records stored and visible, records marked deleted at the source)."""
    raw = raw_table
    query = select(
        raw.c.source, raw.c.stream, raw.c.deleted_at.is_(None).label("alive"), func.count()
    ).group_by(raw.c.source, raw.c.stream, raw.c.deleted_at.is_(None))
    counts: dict[tuple[str, str], list[int]] = {}
    for source, stream, alive, n in conn.execute(query):
        counts.setdefault((source, stream), [0, 0])[0 if alive else 1] += int(n)
    return {key: (a, d) for key, (a, d) in counts.items()}


def finish_run(conn: Connection, run_id: str, outcome: str, error: str | None = None) -> None:
    conn.execute(
        update(run_table)
        .where(run_table.c.id == run_id)
        .values(outcome=outcome, finished_at=now(), error=error)
    )


def close_abandoned_runs(conn: Connection, source: str, stream: str) -> int:
    """Runs still 'running' for a stream we are about to sync died without a word (kill -9)."""
    result = conn.execute(
        update(run_table)
        .where(
            run_table.c.source == source,
            run_table.c.stream == stream,
            run_table.c.outcome == "running",
        )
        .values(
            outcome="abandoned",
            finished_at=now(),
            error="the process ended before the run finished",
        )
    )
    return int(result.rowcount or 0)


# -- metric values ------------------------------------------------------------


def mark_dirty(conn: Connection, days: Iterable[date]) -> None:
    """Record days whose periods need recomputing (idempotent)."""
    rows = [{"day": d.isoformat(), "marked_at": now()} for d in sorted(set(days))]
    if not rows:
        return
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(insert(dirty_table).on_conflict_do_nothing(index_elements=["day"]), rows)


def dirty_days(conn: Connection) -> set[date]:
    return {date.fromisoformat(r.day) for r in conn.execute(select(dirty_table.c.day))}


def clear_dirty(conn: Connection, days: Iterable[date]) -> None:
    keys = [d.isoformat() for d in days]
    for start in range(0, len(keys), 1000):
        conn.execute(delete(dirty_table).where(dirty_table.c.day.in_(keys[start : start + 1000])))


def write_metric_values(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    upsert(conn, metric_table, rows, ("metric", "grain", "period_start", "dimension"))


def delete_metric_values(conn: Connection, metrics: Sequence[str]) -> None:
    conn.execute(delete(metric_table).where(metric_table.c.metric.in_(list(metrics))))


def read_metric_values(
    conn: Connection,
    *,
    metrics: Sequence[str] | None = None,
    grain: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    dimension: str | None = None,
) -> list[Mapping[str, Any]]:
    c = metric_table.c
    query = select(metric_table).order_by(c.metric, c.grain, c.period_start, c.dimension)
    if metrics:
        query = query.where(c.metric.in_(list(metrics)))
    if grain:
        query = query.where(c.grain == grain)
    if start is not None:
        query = query.where(c.period_start >= start)
    if end is not None:
        query = query.where(c.period_end <= end)
    if dimension is not None:
        query = query.where(c.dimension == dimension)
    return [cast(Mapping[str, Any], row._mapping) for row in conn.execute(query)]


def cohort_bounds(
    conn: Connection, table: Table, column: str
) -> tuple[datetime | None, datetime | None]:
    row = conn.execute(
        select(func.min(table.c[column]), func.max(table.c[column])).where(
            table.c.deleted_at.is_(None)
        )
    ).one()
    lo, hi = row
    return _as_utc(lo), _as_utc(hi)


def _as_utc(value: Any) -> datetime | None:
    """Aggregates bypass the column type on SQLite; bring them back to aware UTC."""
    if value is None:
        return None
    moment: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
