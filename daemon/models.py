"""SQLAlchemy models of everything itbsc stores. Changes go through Alembic migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mapping.model import KINDS, KindSchema

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite and PostgreSQL alike."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, _dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        zone = value.tzinfo
        if zone is UTC:  # what the pipeline produces: skip the conversion
            return value.replace(tzinfo=None)
        if zone is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, _dialect: Dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a bigint.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class RawRecord(Base):
    """What a source returned, kept so a mapping change can be re-applied without refetching."""

    __tablename__ = "raw_record"
    __table_args__ = (UniqueConstraint("source", "stream", "source_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(100))
    stream: Mapped[str] = mapped_column(String(100))
    source_id: Mapped[str] = mapped_column(String(200))
    source_updated_at: Mapped[datetime]
    payload: Mapped[str] = mapped_column(Text)
    fetched_at: Mapped[datetime]
    run_id: Mapped[str] = mapped_column(String(36))
    deleted_at: Mapped[datetime | None]


def kept_columns(kind: str) -> list[Column[Any]]:
    """What a record's other records say about it, kept on its row as syncs write them
    (never mapped from a source), so no computation joins those records.

    An incident's SLA cycles (``daemon.sla_summary``): 1 when a live cycle of the type was
    breached, 0 when none was, empty when it has none. The change it is attributed to and
    that change's end (``daemon.attribution_store``), with whether they are current: a
    write that may move them clears the flag, and the next restatement works them out."""
    if kind != "incident":
        return []
    return [
        Column("sla_resolution_breach", Integer(), nullable=True),
        Column("sla_response_breach", Integer(), nullable=True),
        Column("attributed_change", String(200), nullable=True),
        Column("attributed_change_end", UTCDateTime(), nullable=True),
        Column("attribution_current", Boolean(), nullable=False, server_default=false()),
    ]


def canonical_table(schema: KindSchema, metadata: MetaData) -> Table:
    """The ``itil_<kind>`` table, generated from the canonical schema so the two cannot drift.

    Canonical rows are only ever written by Core upserts and read as plain rows,
    so they need no ORM class.
    """
    types: dict[str, Any] = {
        "str": String(255),
        "code": String(100),
        "int": Integer(),
        "bool": Boolean(),
        "datetime": UTCDateTime(),
        "seconds": BigInteger(),
        "number": Float(),
    }
    name = f"itil_{schema.name}"
    return Table(
        name,
        metadata,
        Column("id", BigId, primary_key=True, autoincrement=True),
        Column("source", String(100), nullable=False),
        Column("source_id", String(200), nullable=False),
        Column("updated_at", UTCDateTime(), nullable=False),
        Column("mapping_version", String(100), nullable=False),
        Column("deleted_at", UTCDateTime(), nullable=True),
        *(
            Column(col, types[schema.type_of(col) or "str"], nullable=True)
            for col in schema.columns()
        ),
        *kept_columns(schema.name),
        UniqueConstraint("source", "source_id"),
    )


CANONICAL_TABLES: dict[str, Table] = {
    name: canonical_table(schema, Base.metadata) for name, schema in KINDS.items()
}
# Cohort timestamps (what places a record in a period) and the links metrics join on.
_INDEXED = {
    "incident": ("opened_at", "resolved_at", "caused_by", "problem_id"),
    "change": ("closed_at", "work_end"),
    "sla": ("end_time",),
    "problem": ("opened_at", "resolved_at"),
    "request_item": ("opened_at", "closed_at"),
    "survey": ("responded_at",),
}
for _kind, _columns in _INDEXED.items():
    for _column in _columns:
        Index(f"ix_itil_{_kind}_{_column}", CANONICAL_TABLES[_kind].c[_column])
# An incident's cycles by (source, task), carrying every column SLA attainment reads: the
# breaches of a million incidents come from the index alone (SQLite: 3.9 s -> 2.2 s).
Index(
    "ix_itil_sla_source_task_cycle",
    *(
        CANONICAL_TABLES["sla"].c[c]
        for c in ("source", "task", "sla_type", "stage", "breached", "deleted_at")
    ),
)
# What a written change reaches (daemon.derive.incidents_reached): the incidents opened on
# its service within the window after it ended, one range per change.
Index(
    "ix_itil_incident_service_opened_at",
    CANONICAL_TABLES["incident"].c.service,
    CANONICAL_TABLES["incident"].c.opened_at,
)
# The satisfaction answers expanded from a Jira issue, rewritten with each page.
Index(
    "ix_itil_survey_source_task",
    CANONICAL_TABLES["survey"].c.source,
    CANONICAL_TABLES["survey"].c.task,
)
itil_incident = CANONICAL_TABLES["incident"]
# The incidents whose attribution a write has made stale: what a restatement works out.
# Keyed by the row id: every incident a sync writes enters it, so its key is kept small.
# Its condition is the one the queries write (SQLite: attribution_current = 0): SQLite
# uses a partial index only for a query that repeats its condition.
Index(
    "ix_itil_incident_attribution_stale",
    itil_incident.c.id,
    postgresql_where=~itil_incident.c.attribution_current,
    sqlite_where=~itil_incident.c.attribution_current,
)


class KeptRule(Base):
    """The rule a kept fact was worked out under (the attribution window, say): when the
    configuration's rule differs, every kept value of that fact is stale."""

    __tablename__ = "kept_rule"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    rule: Mapped[str] = mapped_column(String(300))
    kept_at: Mapped[datetime]


class SyncState(Base):
    """Where each (source, stream) resumes; never ahead of committed data."""

    __tablename__ = "sync_state"

    source: Mapped[str] = mapped_column(String(100), primary_key=True)
    stream: Mapped[str] = mapped_column(String(100), primary_key=True)
    cursor: Mapped[dict[str, Any] | None]
    last_run_id: Mapped[str | None] = mapped_column(String(36))
    last_success_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class SyncRun(Base):
    """Audit of every sync of one stream: when, how, what it wrote, how it ended."""

    __tablename__ = "sync_run"
    __table_args__ = (Index("ix_sync_run_source_stream_started", "source", "stream", "started_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    source: Mapped[str] = mapped_column(String(100))
    stream: Mapped[str] = mapped_column(String(100))
    mode: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(String(20))
    pages: Mapped[int] = mapped_column(Integer, default=0)
    records_fetched: Mapped[int] = mapped_column(Integer, default=0)
    records_written: Mapped[int] = mapped_column(Integer, default=0)
    records_skipped: Mapped[int] = mapped_column(Integer, default=0)
    records_deleted: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)


class MetricValueRow(Base):
    """One metric value: per metric, grain, period start and dimension, with its provenance."""

    __tablename__ = "metric_value"
    __table_args__ = (UniqueConstraint("metric", "grain", "period_start", "dimension"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    metric: Mapped[str] = mapped_column(String(50))
    grain: Mapped[str] = mapped_column(String(10))
    period: Mapped[str] = mapped_column(String(30))
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    dimension: Mapped[str] = mapped_column(String(300))
    value: Mapped[float | None] = mapped_column(Float)
    numerator: Mapped[float | None] = mapped_column(Float)
    denominator: Mapped[float | None] = mapped_column(Float)
    n: Mapped[int] = mapped_column(Integer)
    exclusions: Mapped[dict[str, Any]]
    mapping_version: Mapped[str] = mapped_column(String(300))
    computed_at: Mapped[datetime]


class DirtyDay(Base):
    """A local calendar day whose metric periods must be recomputed.

    Written in the same transaction as the page that touched it and removed in
    the transaction that stores the new values, so a process killed between
    sync and recompute leaves the work recorded, not lost.
    """

    __tablename__ = "metric_dirty_day"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD, reporting zone
    marked_at: Mapped[datetime]


class ManualInput(Base):
    """The append-only register of figures entered by hand, with who, when and from where.

    A correction is a new row that names the row it ``supersedes``; nothing is ever
    updated or deleted, so the trail of every figure stays readable.
    """

    __tablename__ = "manual_input"
    __table_args__ = (Index("ix_manual_input_name_period", "name", "period"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    period: Mapped[str] = mapped_column(String(30))  # 2026-05, 2026-Q2, 2026 ...
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(30), default="")
    entered_by: Mapped[str] = mapped_column(String(200))
    entered_at: Mapped[datetime]
    note: Mapped[str] = mapped_column(Text, default="")
    supersedes: Mapped[int | None] = mapped_column(BigId)


class SyncLock(Base):
    """A lease on one (source, stream): whoever holds it unexpired may sync that stream.

    Taken and renewed by conditional writes, so two processes (or hosts, on PostgreSQL)
    never both hold it; a holder that dies simply stops renewing and its lease expires."""

    __tablename__ = "sync_lock"

    name: Mapped[str] = mapped_column(String(250), primary_key=True)
    holder: Mapped[str] = mapped_column(String(250))
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class DaemonBeat(Base):
    """What a running ``itbsc run`` last said about itself: for ``itbsc status`` and /healthz."""

    __tablename__ = "daemon_beat"

    holder: Mapped[str] = mapped_column(String(250), primary_key=True)
    started_at: Mapped[datetime]
    beat_at: Mapped[datetime]
    next_runs: Mapped[dict[str, Any] | None]


class ScorecardResultRow(Base):
    """A measure's status in one period as the scorecard judged it (for dashboards and history).

    Written by the service with each scheduled report and by ``itbsc scorecard --store``;
    a later judgement of the same period replaces the earlier one."""

    __tablename__ = "scorecard_result"

    period: Mapped[str] = mapped_column(String(30), primary_key=True)
    dimension: Mapped[str] = mapped_column(String(300), primary_key=True)
    objective: Mapped[str] = mapped_column(String(100), primary_key=True)
    metric: Mapped[str] = mapped_column(String(50), primary_key=True)
    period_start: Mapped[datetime]
    perspective: Mapped[str] = mapped_column(String(30))
    value: Mapped[float | None] = mapped_column(Float)
    target: Mapped[float] = mapped_column(Float)
    amber: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(10))
    stale: Mapped[str | None] = mapped_column(Text)
    score: Mapped[float | None] = mapped_column(Float)
    n: Mapped[int] = mapped_column(Integer)
    judged_at: Mapped[datetime]
