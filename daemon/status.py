"""``itbsc status``: what each stream and each running service last did, read from the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from daemon import locks, store
from daemon.models import DaemonBeat
from daemon.settings import Config


def daemons(engine: Engine, config: Config) -> list[dict[str, Any]]:
    """Every service that has beaten against this database, alive when its beat is recent."""
    limit = timedelta(seconds=3 * config.settings.daemon.heartbeat_seconds)
    now = datetime.now(UTC)
    with engine.connect() as conn:
        beats = conn.execute(select(DaemonBeat.__table__)).all()
    return [
        {
            "holder": beat.holder,
            "started_at": beat.started_at.isoformat(),
            "beat_at": beat.beat_at.isoformat(),
            "alive": now - beat.beat_at <= limit,
            "next_runs": beat.next_runs or {},
        }
        for beat in beats
    ]


def status_rows(engine: Engine, config: Config) -> list[dict[str, Any]]:
    """Per source and stream: last success, last run, last failure, records, lock, next run."""
    st, run = store.state_table, store.run_table
    stale_after = timedelta(hours=config.settings.reporting.stale_after_hours)
    now = datetime.now(UTC)
    next_runs: dict[str, str] = {}
    for service in daemons(engine, config):
        if service["alive"]:
            for job, at in service["next_runs"].items():
                next_runs[job] = min(next_runs.get(job, at), at)
    rows = []
    with engine.connect() as conn:
        counts = store.stream_counts(conn)
        for name, source in config.settings.sources.items():
            for stream in source.streams:
                sync_state = conn.execute(
                    select(st).where(st.c.source == name, st.c.stream == stream)
                ).first()
                latest = (
                    select(run)
                    .where(run.c.source == name, run.c.stream == stream)
                    .order_by(run.c.started_at.desc())
                    .limit(1)
                )
                last = conn.execute(latest).first()
                failed = conn.execute(latest.where(run.c.outcome == "failed")).first()
                good = conn.execute(
                    latest.where(run.c.outcome == "succeeded", run.c.mode != "census")
                ).first()
                census_run = conn.execute(
                    select(run.c.finished_at)
                    .where(
                        run.c.source == name,
                        run.c.stream == stream,
                        run.c.mode == "census",
                        run.c.outcome == "succeeded",
                    )
                    .order_by(run.c.started_at.desc())
                    .limit(1)
                ).first()
                lease = locks.current(conn, locks.lock_name(name, stream))
                count, deleted = counts.get((name, stream), (0, 0))
                success = sync_state.last_success_at if sync_state else None
                rows.append(
                    {
                        "source": name,
                        "stream": stream,
                        "kind": source.kind,
                        "last_success_at": success.isoformat() if success else None,
                        "stale": success is None or now - success > stale_after,
                        # Everything the source held when the last good run began is stored:
                        # the data lags the source by at most this much.
                        "complete_up_to": good.started_at.isoformat() if good else None,
                        "lag_seconds": round((now - good.started_at).total_seconds())
                        if good
                        else None,
                        "cursor": sync_state.cursor if sync_state else None,
                        "records": count,
                        "deleted": deleted,
                        "last_census_at": census_run.finished_at.isoformat()
                        if census_run and census_run.finished_at
                        else None,
                        "last_run": _run(last),
                        "last_failure": {"at": failed.started_at.isoformat(), "error": failed.error}
                        if failed
                        else None,
                        "locked_by": lease.holder if lease else None,
                        "next_run_at": next_runs.get(f"sync:{name}/{stream}")
                        or next_runs.get(f"sync:{name}"),
                    }
                )
    return rows


def _run(last: Any) -> dict[str, Any] | None:
    if last is None:
        return None
    return {
        "id": last.id,
        "outcome": last.outcome,
        "started_at": last.started_at.isoformat(),
        "finished_at": last.finished_at.isoformat() if last.finished_at else None,
        "fetched": last.records_fetched,
        "written": last.records_written,
        "skipped": last.records_skipped,
        "error": last.error,
    }
