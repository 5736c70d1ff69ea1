"""Many rows into one SQLite statement, each value converted once and sent as a tuple.

SQLAlchemy's executemany builds a parameter dictionary for every row and runs each
value through its type's processors one by one; for a sync's canonical rows (about
40 columns) that cost about as much as SQLite's own inserts (the bind work was
2.5 s of a 100,000-incident full sync's 12 s). Here a statement shape is compiled
once, each column's conversion is looked up once, and the rows go to the driver as
tuples built column by column. The stored values are the same: the conversions are
SQLAlchemy's own, except for the UTC timestamps, whose text is written directly in
the format SQLAlchemy stores (``tests/daemon/test_sqlite_binds.py`` holds them equal).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Dialect, Table
from sqlalchemy.sql.dml import Insert

from daemon.models import UTCDateTime

Convert = Callable[[Any], Any]


def utc_text(value: datetime | None) -> str | None:
    """An aware datetime as SQLAlchemy stores it on SQLite: UTC, naive, to the microsecond."""
    if value is None:
        return None
    zone = value.tzinfo
    if zone is not UTC:
        if zone is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]  # without the "+00:00"


@lru_cache(maxsize=256)
def _plan(
    statement: Insert, table: Table, columns: tuple[str, ...], dialect: Dialect
) -> tuple[str, tuple[str, ...], tuple[Convert | None, ...]]:
    """The statement's SQL, its parameters' order, and each parameter's conversion."""
    compiled = statement.compile(dialect=dialect, column_keys=list(columns))
    order = tuple(compiled.positiontup or ())
    if sorted(order) != sorted(columns):  # anything but one parameter per column
        raise ValueError(f"cannot bind {table.name} rows as tuples: parameters {order}")
    converts: list[Convert | None] = []
    for name in order:
        kind = table.c[name].type
        if isinstance(kind, UTCDateTime):
            converts.append(utc_text)
        else:
            converts.append(kind.dialect_impl(dialect).bind_processor(dialect))
    return compiled.string, order, tuple(converts)


def execute_many(
    conn: Connection, statement: Insert, table: Table, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Run ``statement`` (built once per table and column list, so it can be cached) for
    every row; each row has the same keys, one per column."""
    columns = tuple(rows[0])
    sql, order, converts = _plan(statement, table, columns, conn.dialect)
    values = (
        list(map(itemgetter(*order), rows)) if len(order) > 1 else [(r[order[0]],) for r in rows]
    )
    if any(converts):
        by_column: list[Any] = list(zip(*values, strict=True))
        for index, convert in enumerate(converts):
            if convert is not None:
                by_column[index] = map(convert, by_column[index])
        values = list(zip(*by_column, strict=True))
    conn.exec_driver_sql(sql, values)
