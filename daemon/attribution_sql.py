"""Which change caused each incident, in SQL: the grouped path's attribution.

The rule of ``mapping.attribution`` as one query, and a temporary table that
holds its answer for the rest of a computation: change failure rate, the cost
of failed changes and time to restore all join it, and working it out is one
of the dearest steps of a computation (a join of every incident), so it is
worked out once per computation, not once per query
(``daemon.computation_tables``).
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    CompoundSelect,
    Connection,
    Integer,
    Select,
    String,
    and_,
    cast,
    func,
    or_,
    select,
    union_all,
)

from daemon.computation_tables import shared
from daemon.models import CANONICAL_TABLES, UTCDateTime
from daemon.query_tuning import not_by_index
from daemon.settings import Config


def attributed_source(
    conn: Connection, config: Config, scope: tuple[datetime, datetime] | None = None
) -> Any:
    """(source, incident, change, change_end) rows to join: the computation's temporary
    table, filled on first use, or, outside a computation, the query itself.

    With ``scope`` (lo, hi) only the incidents a computation over [lo, hi) can ask about
    are attributed (see ``attributions``): a sync's restatement of this year then never
    works out the years before it."""
    name = "itbsc_attributed"
    if scope is not None:  # one table per scope a computation asks for (usually one)
        name += "_" + hashlib.sha1(repr(scope).encode()).hexdigest()[:12]
    return shared(
        conn,
        name,
        lambda: attributions(config, conn.dialect.name, scope),
        attribution_columns(),
        ("source", "incident"),
    )


def attribution_columns() -> list[Column[Any]]:
    """The columns of a table holding ``attributions`` rows (fresh: a Column joins one table)."""
    return [
        Column("source", String(100)),
        Column("incident", String(200)),
        Column("change", String(200)),
        Column("change_end", UTCDateTime()),
    ]


def attributions(
    config: Config,
    dialect: str,
    scope: tuple[datetime, datetime] | None = None,
    only: ColumnElement[bool] | None = None,
) -> Select[Any] | CompoundSelect[Any]:
    """(source, incident, change, change_end) for every attributed live incident (with
    ``scope`` (lo, hi): those resolved in it, or opened from lo to hi plus the window,
    which holds every incident a change ending in it can be blamed for by the rule; with
    ``only``, a condition on the incident table: the incidents it holds).

    The rule of ``mapping.attribution`` in SQL: an explicit ``caused_by`` link first
    (the change's end when it is an implemented change, else unknown); otherwise the
    implemented change on the same service that ended last at or before the incident
    opened (ties: the greatest change id), if that is within the window (``_by_rule``).

    With ``only`` the incidents are read through its condition alone, their source,
    service and opening time out of any index's reach: SQLite's planner otherwise walked the
    ``caused_by`` index, or from each change the source's or service's index, over
    nearly every incident (0.6 s at a million, for a thousand stale ones)."""
    change, incident = CANONICAL_TABLES["change"], CANONICAL_TABLES["incident"]
    link, source, service, opened = (
        (column if only is None else not_by_index(dialect, column))
        for column in (
            incident.c.caused_by,
            incident.c.source,
            incident.c.service,
            incident.c.opened_at,
        )
    )
    window = timedelta(hours=config.catalogue.attribution.window_hours)
    ended = func.coalesce(change.c.work_end, change.c.closed_at)
    implemented = and_(
        change.c.deleted_at.is_(None),
        or_(change.c.state.is_(None), change.c.state != "cancelled"),
    )
    linked = (
        select(change.c.source, change.c.source_id, ended.label("ended"))
        .where(implemented)
        .subquery("linked")
    )
    explicit = (
        select(
            incident.c.source,
            incident.c.source_id.label("incident"),
            incident.c.caused_by.label("change"),
            linked.c.ended.label("change_end"),
        )
        .select_from(
            incident.outerjoin(
                linked,
                and_(
                    linked.c.source == incident.c.source, linked.c.source_id == incident.c.caused_by
                ),
            )
        )
        .where(incident.c.deleted_at.is_(None), link.is_not(None))
    )
    if only is not None:
        explicit = explicit.where(only)
    if not window:
        return explicit
    changes = (
        select(
            change.c.source,
            change.c.service,
            ended.label("t"),
            change.c.source_id.label("id"),
        )
        .where(implemented, change.c.service.is_not(None), ended.is_not(None))
        .subquery("changes")
    )
    incidents = (
        select(
            source.label("source"),
            service.label("service"),
            opened.label("t"),
            incident.c.source_id.label("id"),
        )
        .where(
            incident.c.deleted_at.is_(None),
            link.is_(None),
            service.is_not(None),
            opened.is_not(None),
            *in_scope(incident, scope, window),
            *([only] if only is not None else []),
        )
        .subquery("incidents")
    )
    return union_all(explicit, _by_rule(changes, incidents, window, dialect))


def in_scope(
    incident: Any, scope: tuple[datetime, datetime] | None, window: timedelta
) -> list[Any]:
    """Incidents a computation over ``scope`` can ask about: resolved in it (time to
    restore), or opened in it or within the window after it (a change ending in it)."""
    if scope is None:
        return []
    lo, hi = scope
    opened, resolved = incident.c.opened_at, incident.c.resolved_at
    return [or_(and_(opened >= lo, opened < hi + window), and_(resolved >= lo, resolved < hi))]


def _by_rule(changes: Any, incidents: Any, window: timedelta, dialect: str) -> Select[Any]:
    """Each change holds the incidents opened on its service from its end until the next
    change there ended, and no longer than the window after it: at most two stretches of
    ``width`` seconds, so incidents meet their change by an equality join on (source,
    service, stretch) and one comparison. Only the changes are sorted.

    Sorting incidents and changes together in time order, and carrying the last change
    to each incident, had taken 2.5 s of a year at a million incidents on PostgreSQL
    (2.8 s on SQLite): most of it the sort of 690,000 rows."""
    width = max(1, math.ceil(window.total_seconds()))
    ident = changes.c.id.collate("C") if dialect == "postgresql" else changes.c.id
    following = func.lead(changes.c.t).over(
        partition_by=(changes.c.source, changes.c.service),
        order_by=(changes.c.t, ident),  # ties: the greatest id is the last to end
    )
    spans = select(changes, following.label("next")).cte("spans")
    first = _stretch(spans.c.t, width, dialect)
    held = union_all(
        select(spans, first.label("stretch")),
        select(spans, (first + 1).label("stretch")).where(
            or_(spans.c.next.is_(None), _stretch(spans.c.next, width, dialect) > first)
        ),
    ).cte("held")
    if dialect != "sqlite" or sqlite3.sqlite_version_info >= (3, 35):
        # Materialized, so SQLite indexes it for the join: a union left in FROM it cannot,
        # and it read every stretch once per incident (300 s at a million incidents).
        held = held.prefix_with("MATERIALIZED")
    if dialect == "postgresql":
        within = incidents.c.t - held.c.t <= window
    else:  # julianday differences are in days: a millisecond's tolerance for the float
        days = window.total_seconds() / 86400 + 1e-3 / 86400
        within = func.julianday(incidents.c.t) - func.julianday(held.c.t) <= days
    return select(
        incidents.c.source,
        incidents.c.id.label("incident"),
        held.c.id.label("change"),
        held.c.t.label("change_end"),
    ).select_from(
        incidents.join(
            held,
            and_(
                held.c.source == incidents.c.source,
                held.c.service == incidents.c.service,
                held.c.stretch == _stretch(incidents.c.t, width, dialect),
                incidents.c.t >= held.c.t,
                or_(held.c.next.is_(None), incidents.c.t < held.c.next),
                within,
            ),
        )
    )


def _stretch(moment: Any, width: int, dialect: str) -> Any:
    """Which stretch of ``width`` seconds since the epoch a moment falls in (whole seconds:
    any non-decreasing numbering does, the same on both sides of the join)."""
    if dialect == "postgresql":
        seconds = cast(func.floor(func.extract("epoch", moment)), BigInteger)
        return seconds // width
    seconds = cast(func.strftime("%s", moment), Integer)
    return seconds // width
