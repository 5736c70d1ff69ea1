"""Temporary tables that live for one computation: derived facts worked out once, shared.

Some derived fields (which change caused an incident) are joined by several
of a computation's queries. Left as
subqueries, each query works them out again, and PostgreSQL's parallel
workers once each. A computation instead fills a temporary table on first
use, indexes it for the join, and drops it when it ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Connection, Index, MetaData, Table, insert

SCRATCH = "itbsc_computation_tables"  # key in Connection.info while a computation runs
SPAN = "itbsc_computation_span"


@contextmanager
def computation_tables(
    conn: Connection, span: tuple[datetime, datetime] | None = None
) -> Iterator[None]:
    """Lets a computation keep temporary tables on ``conn`` and drops them when it ends
    (a nested computation, a composite's parts, shares the outer one's). On an error they
    are left to the caller's rollback: a failed PostgreSQL transaction refuses the drop.

    ``span`` is the time the whole computation covers: a shared table built for it
    serves every query of the computation (see ``span_for``)."""
    if SCRATCH in conn.info:
        yield
        return
    tables: dict[str, Table] = {}
    conn.info[SCRATCH] = tables
    conn.info[SPAN] = span
    try:
        yield
    finally:
        conn.info.pop(SCRATCH, None)
        conn.info.pop(SPAN, None)
    for name in tables:
        _drop(conn, name)


def span_for(conn: Connection, lo: datetime, hi: datetime) -> tuple[datetime, datetime]:
    """The span a shared table should cover for a query over [lo, hi): the computation's
    whole span when it holds the query's, so one table serves every query."""
    whole: tuple[datetime, datetime] | None = conn.info.get(SPAN)
    if whole is not None and whole[0] <= lo and hi <= whole[1]:
        return whole
    return lo, hi


def shared(
    conn: Connection,
    name: str,
    query: Callable[[], Any],
    columns: Sequence[Column[Any]],
    key: Sequence[str],
) -> Any:
    """The rows of ``query()`` as a temporary table ``name`` (joined on ``key``), made on
    first use in this computation; outside a computation, the query as a subquery."""
    tables: dict[str, Table] | None = conn.info.get(SCRATCH)
    if tables is None:
        return query().cte(name).prefix_with("MATERIALIZED", dialect="postgresql")
    if name not in tables:
        table = Table(name, MetaData(), *columns, prefixes=["TEMPORARY"])
        _drop(conn, name)  # left on a pooled SQLite connection by a failed computation
        table.create(conn)
        tables[name] = table
        conn.execute(insert(table).from_select([c.name for c in table.c], query()))
        if conn.dialect.name == "postgresql":  # hash joins need no index, but statistics
            conn.exec_driver_sql(f"ANALYZE {name}")
        else:  # SQLite joins by index lookups (it would build this one itself)
            Index(f"ix_{name}", *(table.c[k] for k in key)).create(conn)
    return tables[name]


def _drop(conn: Connection, name: str) -> None:
    schema = "pg_temp" if conn.dialect.name == "postgresql" else "temp"
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {schema}.{name}")
