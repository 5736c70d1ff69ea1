"""The sync pipeline: connector pages -> raw upsert -> mapping -> canonical upsert -> cursor -> metrics.

Each page is one transaction holding its raw rows, its canonical rows, the
cursor and the run's counters, so a crash loses at most the page in flight
and the cursor never runs ahead of committed data. Upserts make re-reading
harmless. After the streams, the periods the changed records touch (before
and after the change) are recomputed.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import structlog
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from connectors.base import Page, Source
from connectors.errors import SourceError
from connectors.registry import source_class
from daemon import attribution_store, locks, sla_summary, store
from daemon.compute import AffectedDays, recompute_dirty
from daemon.derive import (
    ATTRIBUTION_COLUMNS,
    attribution_moments,
    sla_record_sources,
    uses_attribution,
)
from daemon.models import CANONICAL_TABLES
from daemon.prefetch import Prefetch
from daemon.settings import Config
from mapping.router import StreamMapper

Mode = Literal["incremental", "full", "since"]
ProgressCallback = Callable[[str, str, int, int | None], None]

log = structlog.get_logger("itbsc.sync")


@dataclass
class StreamResult:
    source: str
    stream: str
    run_id: str
    mode: Mode
    outcome: str = "running"
    pages: int = 0
    fetched: int = 0
    written: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    error: str | None = None
    seconds: float = 0.0


@dataclass
class SyncSummary:
    streams: list[StreamResult]
    metric_values: int = 0
    recompute_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(r.outcome == "succeeded" for r in self.streams)


@dataclass(frozen=True)
class RunControl:
    """How a sync shares the streams: how long to wait for another holder's lock, and the
    event that asks it to stop after the page in flight (the daemon's signals set it)."""

    lock_wait_seconds: float = 0.0
    stop: threading.Event | None = None
    lease: timedelta = locks.DEFAULT_LEASE


def resync(
    engine: Engine,
    config: Config,
    *,
    sources: Sequence[str] | None = None,
    stream: str | None = None,
    mode: Mode = "incremental",
    since: datetime | None = None,
    progress: ProgressCallback | None = None,
    control: RunControl | None = None,
    streams: Sequence[str] | None = None,
) -> SyncSummary:
    """Sync the named sources (default: all) and recompute the periods they touched.

    Each stream is synced under its lease lock; a stream another process holds is
    reported as ``locked`` (after waiting ``control.lock_wait_seconds``)."""
    control = control or RunControl()
    affected = AffectedDays(config)
    results: list[StreamResult] = []
    for name in sources or list(config.settings.sources):
        settings = config.settings.sources[name]
        chosen = (
            [stream] if stream else [s for s in settings.streams if not streams or s in streams]
        )
        with source_class(settings.kind)(config.connection(name)) as connector:
            for stream_name in chosen:
                if control.stop is not None and control.stop.is_set():
                    break
                try:
                    with locks.held(
                        engine,
                        locks.lock_name(name, stream_name),
                        wait_seconds=control.lock_wait_seconds,
                        lease=control.lease,
                    ):
                        result = _sync_stream(
                            engine,
                            config,
                            connector,
                            name,
                            stream_name,
                            mode,
                            since,
                            affected,
                            progress,
                            control,
                        )
                except locks.LockBusy as busy:
                    result = StreamResult(name, stream_name, "", mode)
                    result.outcome, result.error = "locked", str(busy)
                    log.warning("stream locked", source=name, stream=stream_name, error=str(busy))
                results.append(result)
    summary = SyncSummary(results)
    started = time.monotonic()
    summary.metric_values = recompute_dirty(engine, config)
    summary.recompute_seconds = time.monotonic() - started
    log.info(
        "sync finished",
        streams=len(results),
        ok=summary.ok,
        records=sum(r.written for r in results),
        metric_values=summary.metric_values,
    )
    return summary


class StreamWriter:
    """Writes one stream's pages into the raw store and every canonical kind mapped from it."""

    def __init__(
        self,
        config: Config,
        source: str,
        stream: str,
        affected: AffectedDays,
        *,
        mark_dirty: bool = True,
    ) -> None:
        self.mapper = StreamMapper(config.mappings[source], stream, source)
        self.mark_dirty = mark_dirty  # False for `itbsc recompute`, which restates what it chooses
        assert self.mapper.targets, "load_config checked that every stream is mapped"
        self.kinds = self.mapper.kinds
        self.fields = self.mapper.source_fields()
        self.source = source
        self.stream = stream
        self.config = config
        self.attribution = uses_attribution(config)
        self.affected = affected
        self.sla_decides_incidents = "sla" in self.kinds and source in sla_record_sources(config)
        self.fills_first_response = config.mappings[source].first_response_from_cycles()

    def write(self, conn: Connection, run_id: str, page: Page, skipped: Counter[str]) -> int:
        """Write one page; returns how many records became a canonical record of a main kind."""
        store.write_raw(conn, self.source, self.stream, run_id, page.records)
        return self.rewrite(
            conn, [(r.source_id, r.updated_at, r.data) for r in page.records], skipped
        )

    def rewrite(
        self,
        conn: Connection,
        records: Sequence[tuple[str, datetime, Mapping[str, Any]]],
        skipped: Counter[str],
    ) -> int:
        """Map records (fresh, or stored raw ones for ``itbsc recompute``) into canonical rows."""
        ids = [record_id for record_id, _, _ in records]
        mapped = self.mapper.map_page(records)
        cycled: set[str] = set()  # incidents whose SLA cycles this page changes
        written: set[str] = set()  # incidents this page writes
        for kind in self.kinds:
            table = CANONICAL_TABLES[kind]
            cohorts = self.affected.cohort_columns(kind)
            children = mapped.children.get(kind)
            # a change's are read whatever the metrics: the attribution kept on incidents
            linked = (
                ATTRIBUTION_COLUMNS.get(kind, ()) if self.attribution or kind == "change" else ()
            )
            wanted = sorted({*cohorts, *linked, *(("task",) if kind == "sla" else ())})
            if children is None:  # the period a changed record leaves is recomputed too
                before = store.existing_values(conn, table, self.source, ids, wanted)
            else:
                before = store.existing_children(conn, table, self.source, "task", ids, cohorts)
                cycled.update(children)  # a parent's cycles are its own
            self.affected.add_rows(kind, before)
            moved = [*before, *mapped.rows[kind]]
            if kind == "change":  # before the write: its old reach, and its new one
                attribution_store.mark_reached(conn, self.config, self.source, moved)
            if linked and self.attribution:  # an incident moves its change's periods, and back
                self.affected.add_moments(
                    attribution_moments(conn, self.config, kind, self.source, moved)
                )
            store.write_canonical(conn, table, mapped.rows[kind])
            if children is None:
                store.delete_canonical(conn, table, self.source, mapped.not_in_kind[kind])
            else:
                store.delete_stale_children(conn, table, self.source, "task", children)
            self.affected.add_rows(kind, mapped.rows[kind])
            if kind == "incident":
                written.update(r["source_id"] for r in mapped.rows[kind])
            elif kind == "sla":
                cycled.update(r["task"] for r in (*before, *mapped.rows[kind]) if r.get("task"))
        self._cycles_changed(conn, cycled, written)
        for record_id, reason in mapped.skipped:
            if reason not in skipped:  # each reason once, with a record to look at
                log.warning(
                    "record skipped",
                    source=self.source,
                    stream=self.stream,
                    record=record_id,
                    reason=reason,
                )
            skipped[reason] += 1
        if self.mark_dirty:
            self.affected.save(conn)
        return mapped.count() if self.mapper.primary else len(mapped.rows[self.kinds[0]])

    def mark_deleted(self, conn: Connection, ids: list[str], stamp: datetime) -> None:
        """The census found ``ids`` gone: mark their rows in every kind; restate their periods."""
        for kind in self.kinds:
            table = CANONICAL_TABLES[kind]
            cohorts = self.affected.cohort_columns(kind)
            key = "source_id" if kind not in {t.kind for t in self.mapper.expanding} else "task"
            columns = sorted({*cohorts, "task"}) if kind == "sla" else cohorts
            # A deleted change's incidents lose it; a deleted incident leaves its change's
            # count (I7, F5): their periods are restated too.
            linked = ATTRIBUTION_COLUMNS.get(kind, ())
            columns = sorted({*columns, *linked})
            before = store.existing_children(conn, table, self.source, key, ids, columns)
            self.affected.add_rows(kind, before)
            if kind == "change":
                attribution_store.mark_reached(conn, self.config, self.source, before)
            if linked and self.attribution:
                self.affected.add_moments(
                    attribution_moments(conn, self.config, kind, self.source, before)
                )
            store.mark_deleted(conn, table, self.source, key, ids, stamp)
            if kind == "sla":  # the incidents lose these cycles
                self._cycles_changed(conn, {r["task"] for r in before if r.get("task")})

    def _cycles_changed(
        self, conn: Connection, tasks: set[str], written: Iterable[str] = ()
    ) -> None:
        """Refresh the SLA outcome kept on these incidents (and on those just written) and,
        where the source takes "SLA met" from its cycles, restate the periods of the
        incidents whose cycles changed, deleted ones included."""
        every = {*tasks, *written}
        incidents = CANONICAL_TABLES["incident"]
        # A first response read from the cycles moves with them: I2 restates the day it
        # leaves (an incident just written kept its old one in the page's own reading).
        responses = ["first_response_at"] if self.fills_first_response else []
        untouched = tasks.difference(written)
        if responses and untouched:
            old = store.existing_values(conn, incidents, self.source, sorted(untouched), responses)
            self.affected.add_rows("incident", old)
        if every:
            moved = sla_summary.refresh(conn, self.source, every, first_response=bool(responses))
            self.affected.add_rows("incident", [{"first_response_at": m} for m in moved])
        if self.sla_decides_incidents and tasks:
            columns = self.affected.cohort_columns("incident")
            found = store.existing_values(conn, incidents, self.source, sorted(tasks), columns)
            self.affected.add_rows("incident", found)


def _sync_stream(
    engine: Engine,
    config: Config,
    connector: Source,
    source: str,
    stream: str,
    mode: Mode,
    since: datetime | None,
    affected: AffectedDays,
    progress: ProgressCallback | None,
    control: RunControl,
) -> StreamResult:
    result = StreamResult(source, stream, str(uuid.uuid4()), mode)
    name = locks.lock_name(source, stream)
    bound = log.bind(source=source, stream=stream, run_id=result.run_id)
    writer = StreamWriter(config, source, stream, affected)
    started = time.monotonic()
    with engine.begin() as conn:
        abandoned = store.close_abandoned_runs(conn, source, stream)
        store.start_run(conn, result.run_id, source, stream, mode)
        cursor = store.read_cursor(conn, source, stream) if mode == "incremental" else None
    if abandoned:
        bound.warning(
            "earlier run ended without finishing; resuming from its last committed page",
            runs=abandoned,
        )
    bound.info("sync started", mode=mode, cursor=cursor, since=since.isoformat() if since else None)
    try:
        pages = connector.read(stream, fields=writer.fields, cursor=cursor, since=since)
        for page in Prefetch(pages, name=f"read {source}/{stream}"):
            with engine.begin() as conn:
                locks.renew(conn, name, lease=control.lease)  # no page without a live lease
                written = writer.write(conn, result.run_id, page, result.skipped)
                # --since re-reads a window: it never moves the incremental cursor.
                if page.cursor is not None and mode != "since":
                    store.save_cursor(
                        conn, source, stream, page.cursor, result.run_id, success=False
                    )
                store.count_page(
                    conn, result.run_id, len(page.records), written, len(page.records) - written
                )
            result.pages += 1
            result.fetched += len(page.records)
            result.written += written
            bound.debug("page committed", records=len(page.records), total=page.total)
            if progress:  # a page's total counts what is left from it on
                before = result.fetched - len(page.records)
                expected = before + page.total if page.total is not None else None
                progress(source, stream, result.fetched, expected)
            if control.stop is not None and control.stop.is_set():
                raise _Stopped
    except _Stopped:
        result.outcome = "interrupted"
        result.error = "stopped on request after a committed page; the next run resumes there"
    except locks.LockLost as exc:
        result.outcome, result.error = "failed", str(exc)
    except SourceError as exc:
        result.outcome, result.error = "failed", str(exc)
    except BaseException:
        result.outcome, result.error = "interrupted", "stopped before the stream finished"
        try:
            _finish(engine, result)
        except SQLAlchemyError:  # the database itself failed: the next run closes this one
            bound.error("could not record the end of the run", exc_info=False)
        raise
    else:
        result.outcome = "succeeded"
    result.seconds = time.monotonic() - started
    _finish(engine, result)
    event = bound.info if result.outcome == "succeeded" else bound.error
    event(
        "stream finished",
        outcome=result.outcome,
        pages=result.pages,
        fetched=result.fetched,
        written=result.written,
        skipped=sum(result.skipped.values()),
        skipped_reasons=dict(result.skipped.most_common(5)) or None,
        seconds=round(result.seconds, 2),
        error=result.error,
    )
    return result


class _Stopped(Exception):
    """The run was asked to stop (a signal to the daemon) after the page just committed."""


def _finish(engine: Engine, result: StreamResult) -> None:
    with engine.begin() as conn:
        store.finish_run(conn, result.run_id, result.outcome, result.error)
        if result.outcome == "succeeded":
            store.mark_success(conn, result.source, result.stream, result.run_id)
