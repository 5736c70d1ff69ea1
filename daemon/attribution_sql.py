"""Which change caused each incident, in SQL: the grouped path's attribution.

The rule of ``mapping.attribution`` as one query, and a temporary table that
holds its answer for the rest of a computation: change failure rate, the cost
of failed changes and time to restore all join it, and working it out is the
dearest step of a computation (a sort of every incident and change in time
order), so it is worked out once per computation, not once per query
(``daemon.computation_tables``).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    CompoundSelect,
    Connection,
    Select,
    String,
    and_,
    case,
    func,
    literal,
    or_,
    select,
    union_all,
)

from daemon.computation_tables import shared
from daemon.models import CANONICAL_TABLES, UTCDateTime
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
        [
            Column("source", String(100)),
            Column("incident", String(200)),
            Column("change", String(200)),
            Column("change_end", UTCDateTime()),
        ],
        ("source", "incident"),
    )


def attributions(
    config: Config, dialect: str, scope: tuple[datetime, datetime] | None = None
) -> Select[Any] | CompoundSelect[Any]:
    """(source, incident, change, change_end) for every attributed live incident (with
    ``scope`` (lo, hi): those resolved in it, or opened from lo to hi plus the window,
    which holds every incident a change ending in it can be blamed for by the rule).

    The rule of ``mapping.attribution`` in SQL: an explicit ``caused_by`` link first
    (the change's end when it is an implemented change, else unknown); otherwise the
    implemented change on the same service that ended last at or before the incident
    opened (ties: the greatest change id), if that is within the window. One pass of a
    window function over changes and incidents merged in time order numbers each
    change; an incident carries the number of the last change before it."""
    change, incident = CANONICAL_TABLES["change"], CANONICAL_TABLES["incident"]
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
        .where(incident.c.deleted_at.is_(None), incident.c.caused_by.is_not(None))
    )
    if not window:
        return explicit
    events = union_all(
        select(
            change.c.source,
            change.c.service,
            ended.label("t"),
            literal(0).label("kind"),
            change.c.source_id.label("id"),
        ).where(implemented, change.c.service.is_not(None), ended.is_not(None)),
        select(
            incident.c.source,
            incident.c.service,
            incident.c.opened_at.label("t"),
            literal(1).label("kind"),
            incident.c.source_id.label("id"),
        ).where(
            incident.c.deleted_at.is_(None),
            incident.c.caused_by.is_(None),
            incident.c.service.is_not(None),
            incident.c.opened_at.is_not(None),
            *_in_scope(incident, scope, window),
        ),
    ).subquery("events")
    if dialect == "postgresql":
        by_rule = _by_rule_joined(events, window)
    else:
        by_rule = _by_rule_one_pass(events, window)
    return union_all(explicit, by_rule)


def _in_scope(
    incident: Any, scope: tuple[datetime, datetime] | None, window: timedelta
) -> list[Any]:
    """Incidents a computation over ``scope`` can ask about: resolved in it (time to
    restore), or opened in it or within the window after it (a change ending in it)."""
    if scope is None:
        return []
    lo, hi = scope
    opened, resolved = incident.c.opened_at, incident.c.resolved_at
    return [or_(and_(opened >= lo, opened < hi + window), and_(resolved >= lo, resolved < hi))]


def _by_rule_joined(events: Any, window: timedelta) -> Select[Any]:
    """PostgreSQL: each change numbered in time order per service; an incident carries the
    number of the last change before it and is joined to that change."""
    ident = events.c.id.collate("C")  # the order Python's sort gives the ids
    number = func.sum(case((events.c.kind == 0, 1), else_=0)).over(
        partition_by=(events.c.source, events.c.service),
        order_by=(events.c.t, events.c.kind, ident),
        rows=(None, 0),
    )
    # Materialized: computed once, whatever the planner guesses of fresh, unanalysed tables
    # (a nested loop over the window would run it once per incident).
    numbered = (
        select(events, number.label("number"))
        .cte("numbered")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    before, later = numbered.alias("before_change"), numbered.alias("later_incident")
    return (
        select(
            later.c.source,
            later.c.id.label("incident"),
            before.c.id.label("change"),
            before.c.t.label("change_end"),
        )
        .select_from(
            later.join(
                before,
                and_(
                    before.c.source == later.c.source,
                    before.c.service == later.c.service,
                    before.c.number == later.c.number,
                    before.c.kind == 0,
                ),
            )
        )
        .where(later.c.kind == 1, later.c.t - before.c.t <= window)
    )


SQLITE_TIME_WIDTH = 26  # "YYYY-MM-DD HH:MM:SS.ffffff", how SQLAlchemy stores a DateTime


def _by_rule_one_pass(events: Any, window: timedelta) -> Select[Any]:
    """SQLite: no join at all (its planner may loop over an unindexed join): stored times are
    fixed-width text, so "end|id" sorts as the window orders changes, and its running
    maximum is the last change so far, carried to each incident."""
    key = events.c.t.op("||")(literal("|")).op("||")(events.c.id)
    last = func.max(case((events.c.kind == 0, key))).over(
        partition_by=(events.c.source, events.c.service),
        order_by=(events.c.t, events.c.kind, events.c.id),
        rows=(None, 0),
    )
    carried = select(events, last.label("last")).subquery("carried")
    change_end = func.substr(carried.c.last, 1, SQLITE_TIME_WIDTH)
    # julianday differences are in days: a millisecond's tolerance for the float
    days = window.total_seconds() / 86400 + 1e-3 / 86400
    return select(
        carried.c.source,
        carried.c.id.label("incident"),
        func.substr(carried.c.last, SQLITE_TIME_WIDTH + 2).label("change"),
        change_end.label("change_end"),
    ).where(
        carried.c.kind == 1,
        carried.c.last.is_not(None),
        func.julianday(carried.c.t) - func.julianday(change_end) <= days,
    )
