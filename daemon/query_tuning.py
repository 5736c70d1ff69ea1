"""How the metric queries ask each database to run them: settings and access paths.

A computation reads whole tables once, in a handful of large grouped queries.
The databases' defaults are tuned for the opposite (many small queries), and
each default below was measured costing seconds at a million incidents.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, func, select
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

# PostgreSQL, for the computation's transaction only (SET LOCAL):
# - jit off: compiling one grouped query took 4.3 s of its 9.7 s, and each query runs once;
# - work_mem 64 MB: at the default 4 MB every sort and hash of a million rows spills to disk;
# - enable_sort off: the planner guesses nearly a group per row for a family grouped by a
#   dozen fields (945,454 guessed, 3,155 found), so it sorted a million rows to group them;
#   hashed, a year at a million incidents took 10.7 s against 12.8 s. Sorts nothing else
#   can replace (the attribution's window) still run.
# - parallel costs a tenth of the defaults (1000, 0.1): with a group guessed per row, the
#   planner priced handing every joined row to the leader above the work it shares, so
#   the scans and joins of a family ran in one process; in parallel workers a year at a
#   million incidents took 13.5 s against 16.6 s on two cores (more cores, more workers,
#   up to max_parallel_workers_per_gather).
POSTGRES_SETTINGS = (
    ("jit", "off"),
    ("work_mem", "64MB"),
    ("enable_sort", "off"),
    ("parallel_setup_cost", "100"),
    ("parallel_tuple_cost", "0.01"),
)

# SQLite: above this share of a table, walking the cohort index and fetching each row
# costs more than reading the table in order (measured: 3.2 s against 1.1 s for 95 %).
SQLITE_SCAN_SHARE = 1 / 3


# A reader of a computation running its queries side by side (daemon.snapshot_readers):
# the readers fill the cores, so each query runs in its own process. Parallel workers
# on top took a year at a million incidents from 5.6 s to 6.3 s on two cores.
CONCURRENT_SETTINGS = (("max_parallel_workers_per_gather", "0"),)


def tune(conn: Connection, *, concurrent: bool = False) -> None:
    """Apply the computation's settings to the current transaction (PostgreSQL only)."""
    if conn.dialect.name != "postgresql":
        return
    for name, value in POSTGRES_SETTINGS + (CONCURRENT_SETTINGS if concurrent else ()):
        conn.exec_driver_sql(f"SET LOCAL {name} = '{value}'")


def cohort_range(
    conn: Connection, table: Table, column: str, lo: datetime, hi: datetime
) -> list[ColumnElement[bool]]:
    """``lo <= column < hi``, written so SQLite reads the table in order when the range
    covers most of it (its planner always prefers the index); elsewhere unchanged."""
    target = scan_column(conn, table, column, lo, hi)
    return [target >= lo, target < hi]


def scan_column(
    conn: Connection, table: Table, column: str, lo: datetime, hi: datetime
) -> ColumnElement[Any]:
    """The column to compare against a range: itself, or on SQLite, when the range covers
    most of an indexed column's span, the same value no index can serve (unary plus)."""
    target: ColumnElement[Any] = table.c[column]
    if conn.dialect.name != "sqlite" or not _indexed(table, column):
        return target
    if _share(conn, table, column, lo, hi) <= SQLITE_SCAN_SHARE:
        return target
    return UnaryExpression(target, operator=operators.custom_op("+"), type_=target.type)


def not_by_index(dialect: str, column: ColumnElement[Any]) -> ColumnElement[Any]:
    """``column`` as SQLite cannot look it up in an index (unary plus), elsewhere unchanged.

    For a condition nearly every row meets (one source's records) beside selective ones
    (the incidents a change reaches). Without statistics, SQLite's planner takes an
    equality on an index's first column for a selective key: it read the whole incident
    table through the ``(source, source_id)`` index for each page of changes, instead of
    the changes' ranges. The same where a partial index holds the few rows wanted (the
    incidents whose attribution is stale) and another condition names an indexed column."""
    if dialect != "sqlite":
        return column
    return UnaryExpression(column, operator=operators.custom_op("+"), type_=column.type)


def _indexed(table: Table, column: str) -> bool:
    """Whether an index leads with the column (else min() and max() would scan, and there is
    no index to avoid)."""
    return any(next(iter(index.columns)).name == column for index in table.indexes)


def _share(conn: Connection, table: Table, column: str, lo: datetime, hi: datetime) -> float:
    """The share of the column's time span the range covers (records taken as spread evenly;
    two index lookups, no scan)."""
    # Two statements: SQLite answers a lone min() or max() from the index, both together by scan.
    first = conn.execute(select(func.min(table.c[column]))).scalar()
    last = conn.execute(select(func.max(table.c[column]))).scalar()
    if first is None or last is None:
        return 0.0
    first, last = (_aware(v, lo) for v in (first, last))
    span = (last - first).total_seconds()
    if span <= 0:
        return 1.0
    covered = (min(hi, last) - max(lo, first)).total_seconds()
    return max(0.0, covered) / span


def _aware(value: Any, like: datetime) -> datetime:
    """min()/max() bypass the column type on SQLite: text or naive UTC back to aware."""
    moment: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(like.tzinfo) if like.tzinfo else moment
