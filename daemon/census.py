"""The deletion census: compare the ids a source holds now with what is stored.

An incremental sync never hears of a deleted record (nothing deleted has a
newer ``sys_updated_on``). The census lists ids only — cheap, in an order no
update can disturb — and then:

* marks stored records the source no longer shows as deleted (raw and
  canonical rows keep their data, with ``deleted_at`` set), so metrics stop
  counting them and the scorecard can say how many were removed;
* fetches records the source shows but the store lacks or holds as deleted
  (missed by a sync, or visible again after an ACL change).

Only records fetched before the census started can be marked: one synced
while the census listed ids may be newer than the listing. A census that
would mark more than ``max_deleted_percent`` of a stream is refused (a lost
ACL or a wrong account looks exactly like mass deletion) unless forced.
Nothing is marked unless the listing completed.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlalchemy import Connection, Engine, select, update

from connectors.base import Source
from connectors.errors import SourceError
from connectors.registry import source_class
from daemon import locks, store
from daemon.compute import AffectedDays, recompute_dirty
from daemon.settings import Config
from daemon.sync import StreamWriter

log = structlog.get_logger("itbsc.census")
CHUNK = 500


@dataclass
class CensusResult:
    source: str
    stream: str
    run_id: str
    outcome: str = "running"
    at_source: int = 0
    stored: int = 0
    marked_deleted: int = 0
    fetched: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    error: str | None = None
    seconds: float = 0.0


def census(
    engine: Engine,
    config: Config,
    *,
    sources: Sequence[str] | None = None,
    stream: str | None = None,
    force: bool = False,
    lock_wait_seconds: float = 0.0,
) -> list[CensusResult]:
    """Run the census for the named sources' streams (default: all) and recompute what changed.

    Each stream's census holds that stream's sync lock: it never runs beside a sync."""
    affected = AffectedDays(config)
    results = []
    for name in sources or list(config.settings.sources):
        settings = config.settings.sources[name]
        with source_class(settings.kind)(config.connection(name)) as connector:
            for stream_name in [stream] if stream else settings.streams:
                try:
                    with locks.held(
                        engine,
                        locks.lock_name(name, stream_name),
                        wait_seconds=lock_wait_seconds,
                    ):
                        result = _census_stream(
                            engine, config, connector, name, stream_name, force, affected
                        )
                except locks.LockBusy as busy:
                    result = CensusResult(name, stream_name, "", "locked", error=str(busy))
                results.append(result)
    recompute_dirty(engine, config)
    return results


def _census_stream(
    engine: Engine,
    config: Config,
    connector: Source,
    source: str,
    stream: str,
    force: bool,
    affected: AffectedDays,
) -> CensusResult:
    result = CensusResult(source, stream, str(uuid.uuid4()))
    bound = log.bind(source=source, stream=stream, run_id=result.run_id)
    started_clock = time.monotonic()
    with engine.begin() as conn:
        started = store.now()
        store.start_run(conn, result.run_id, source, stream, "census")
    writer = StreamWriter(config, source, stream, affected)
    try:
        at_source: set[str] = set()
        for batch in connector.list_ids(stream):
            at_source.update(batch)
        result.at_source = len(at_source)
        with engine.connect() as conn:
            alive, dead = _stored_ids(conn, source, stream, started)
        result.stored = len(alive)
        gone = sorted(alive - at_source)
        limit = config.settings.sources[source].census.max_deleted_percent
        if gone and not force and len(gone) > len(alive) * limit / 100:
            raise _Refused(
                f"{len(gone)} of {len(alive)} stored {stream} records are not visible at the "
                f"source (> {limit:g}%): refusing to mark them deleted. Check the account's "
                "rights (ACLs) and the instance URL; if the deletions are real, run "
                "`itbsc census --force`"
            )
        for start in range(0, len(gone), CHUNK):
            with engine.begin() as conn:
                _mark_deleted(conn, writer, gone[start : start + CHUNK])
        result.marked_deleted = len(gone)
        missing = sorted(at_source - alive - _fetched_since(engine, source, stream, started))
        missing += sorted(dead & at_source)
        for page in connector.read_ids(stream, missing, fields=writer.fields):
            with engine.begin() as conn:
                result.fetched += writer.write(conn, result.run_id, page, result.skipped)
    except (SourceError, _Refused) as exc:
        result.outcome, result.error = "failed", str(exc)
    except BaseException:
        result.outcome, result.error = "interrupted", "stopped before the census finished"
        _finish(engine, result)
        raise
    else:
        result.outcome = "succeeded"
    result.seconds = time.monotonic() - started_clock
    _finish(engine, result)
    event = bound.info if result.outcome == "succeeded" else bound.error
    event(
        "census finished",
        outcome=result.outcome,
        at_source=result.at_source,
        stored=result.stored,
        marked_deleted=result.marked_deleted,
        fetched=result.fetched,
        seconds=round(result.seconds, 2),
        error=result.error,
    )
    return result


class _Refused(Exception):
    """The census would mark too much as deleted; nothing was changed."""


def _stored_ids(
    conn: Connection, source: str, stream: str, before: datetime
) -> tuple[set[str], set[str]]:
    """Ids stored for the stream: alive (fetched before the census began) and marked deleted."""
    raw = store.raw_table
    alive: set[str] = set()
    dead: set[str] = set()
    query = select(raw.c.source_id, raw.c.deleted_at, raw.c.fetched_at).where(
        raw.c.source == source, raw.c.stream == stream
    )
    for source_id, deleted_at, fetched_at in conn.execute(query):
        if deleted_at is not None:
            dead.add(source_id)
        elif fetched_at < before:
            alive.add(source_id)
    return alive, dead


def _fetched_since(engine: Engine, source: str, stream: str, since: datetime) -> set[str]:
    raw = store.raw_table
    with engine.connect() as conn:
        rows = conn.execute(
            select(raw.c.source_id).where(
                raw.c.source == source,
                raw.c.stream == stream,
                raw.c.deleted_at.is_(None),
                raw.c.fetched_at >= since,
            )
        )
        return {r.source_id for r in rows}


def _mark_deleted(conn: Connection, writer: StreamWriter, ids: list[str]) -> None:
    """Set deleted_at on raw and canonical rows; the periods they counted in are recomputed."""
    stamp = store.now()
    raw = store.raw_table
    conn.execute(
        update(raw)
        .where(
            raw.c.source == writer.source, raw.c.stream == writer.stream, raw.c.source_id.in_(ids)
        )
        .values(deleted_at=stamp)
    )
    writer.mark_deleted(conn, ids, stamp)
    writer.affected.save(conn)


def _finish(engine: Engine, result: CensusResult) -> None:
    with engine.begin() as conn:
        store.finish_run(conn, result.run_id, result.outcome, result.error)
        store.count_census(
            conn, result.run_id, result.at_source, result.fetched, result.marked_deleted
        )
