"""Which change caused each incident, kept on the incident row, so no computation works it out.

Working out every incident's change (``daemon.attribution_sql``) joins every incident
to the changes on its service: at a million incidents it took 1.8 s of a year's values
on PostgreSQL and 2.5 s on SQLite, in every computation. The answer only moves when an
incident or a change is written, or the rule's window changes. So:

- a write that may move an incident's attribution marks it stale: every incident written
  (``daemon.store.write_canonical``), and, for a change written or deleted, the incidents
  linked to it and those opened on its service in the window after it ended, as stored
  before the write and as written (``mark_reached``);
- ``itbsc recompute`` and the restatement after each sync work the stale ones out
  (``refresh``) in the transaction that stores the values; when the configured window
  differs from the one the kept attributions were worked out under, every one is stale;
- a computation reads the kept columns only when none is stale and the rule is the same
  (``is_current``), else it works the attribution out in SQL as before. So no value rests
  on a stale attribution, whichever command computed it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Table,
    and_,
    exists,
    func,
    or_,
    select,
    update,
)

from daemon import store
from daemon.attribution_sql import attribution_columns, attributions
from daemon.computation_tables import computation_tables, shared
from daemon.derive import CLAUSES_PER_QUERY, incidents_reached
from daemon.models import CANONICAL_TABLES, KeptRule
from daemon.query_tuning import not_by_index
from daemon.settings import Config

NAME = "attribution"
KEPT_RULES = cast(Table, KeptRule.__table__)


def rule(config: Config) -> str:
    """What the kept attributions depend on besides the records: the rule's window."""
    return f"window_hours={config.catalogue.attribution.window_hours!r}"


def _kept_rule(conn: Connection) -> str | None:
    return conn.execute(select(KEPT_RULES.c.rule).where(KEPT_RULES.c.name == NAME)).scalar()


def _any_stale(conn: Connection) -> bool:
    incidents = CANONICAL_TABLES["incident"]
    stale = select(incidents.c.id).where(~incidents.c.attribution_current).limit(1)
    return conn.execute(stale).first() is not None


def state(conn: Connection, config: Config) -> dict[str, Any]:
    """For ``itbsc status``: the rule kept and the one configured, and how many incidents
    wait for the next restatement (while any does, computations work it out in SQL)."""
    incidents = CANONICAL_TABLES["incident"]
    query = select(func.count()).select_from(incidents).where(~incidents.c.attribution_current)
    stale = int(conn.execute(query).scalar_one())
    kept = _kept_rule(conn)
    return {
        "rule": kept,
        "configured": rule(config),
        "stale_incidents": stale,
        "current": kept == rule(config) and stale == 0,
    }


def is_current(conn: Connection, config: Config) -> bool:
    """Whether every incident's kept attribution is what the configured rule gives."""
    return _kept_rule(conn) == rule(config) and not _any_stale(conn)


def refresh(conn: Connection, config: Config) -> int:
    """Work out the stale incidents' attributions (every incident's when the rule changed)
    and keep them; returns how many incidents were worked out.

    Give it a transaction of its own: it first shuts out other writes of incidents
    (PostgreSQL: a table lock; SQLite: the database's write lock, taken by writing the
    rule), so no write lands between reading the records and marking them current.
    Those writes wait for it; a computation meanwhile works the attribution out in SQL."""
    incidents = CANONICAL_TABLES["incident"]
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE itil_incident IN SHARE ROW EXCLUSIVE MODE")
    everything = _kept_rule(conn) != rule(config)
    kept = {"name": NAME, "rule": rule(config), "kept_at": store.now()}
    store.upsert(conn, KEPT_RULES, [kept], ("name",))  # SQLite: the write lock, from here on
    chosen = None if everything else ~incidents.c.attribution_current
    if chosen is not None and not _any_stale(conn):
        return 0
    with computation_tables(conn):
        found = shared(
            conn,
            "itbsc_attribution_kept",
            lambda: attributions(config, conn.dialect.name, only=chosen),
            attribution_columns(),
            ("source", "incident"),
        )
        matched = and_(
            found.c.source == incidents.c.source, found.c.incident == incidents.c.source_id
        )
        unattributed = update(incidents).where(~exists().where(matched))
        if chosen is not None:
            unattributed = unattributed.where(chosen)
        done = conn.execute(
            unattributed.values(
                attributed_change=None, attributed_change_end=None, attribution_current=True
            )
        ).rowcount
        done += conn.execute(
            update(incidents)
            .where(matched)
            .values(
                attributed_change=found.c.change,
                attributed_change_end=found.c.change_end,
                attribution_current=True,
            )
        ).rowcount
    return int(done)


def mark_reached(
    conn: Connection, config: Config, source: str, changes: Iterable[Mapping[str, Any]]
) -> None:
    """Mark stale the incidents these changes (as stored before a write, or as written or
    deleted) can be attributed: linked to one, or opened on its service within the window
    after it ended."""
    incidents = CANONICAL_TABLES["incident"]
    clauses = incidents_reached(config, changes)
    for start in range(0, len(clauses), CLAUSES_PER_QUERY):
        conn.execute(
            update(incidents)
            .where(
                not_by_index(conn.dialect.name, incidents.c.source) == source,
                incidents.c.attribution_current,
                or_(*clauses[start : start + CLAUSES_PER_QUERY]),
            )
            .values(attribution_current=False)
        )
