"""``itbsc run``: the background service. Everything that touches APScheduler lives here.

One job per source (its ``schedule`` cron or ``every`` interval) and one per
source census (``census.schedule``), on a background scheduler whose jobs never
overlap themselves (``max_instances = 1``) and coalesce missed runs into one
within ``[daemon] misfire_grace_seconds``. Streams are shared with the CLI and
with other daemons through the database lease locks: a stream someone else is
syncing is skipped this round and logged. Nothing is scheduled at import time.

Signals: SIGTERM or SIGINT asks every running sync to stop after the page in
flight (committed, cursor saved, lock released) and exits 0 once they have,
or 1 after ``stop_timeout_seconds``; a second signal exits at once (every
page is one transaction, so nothing half-written survives). SIGHUP reloads the
configuration: the jobs are rebuilt from it, or, when it does not load, the
old ones keep running and the problems are logged.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
from sqlalchemy import Engine, delete
from sqlalchemy.dialects import postgresql, sqlite

from daemon import db, locks
from daemon.census import census
from daemon.models import DaemonBeat
from daemon.settings import Config, ConfigError, load_config
from daemon.sync import RunControl, resync

log = structlog.get_logger("itbsc.daemon")
_EVERY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def schedule_problem(expression: str) -> str | None:
    """Why a cron expression is invalid, or None when APScheduler accepts it."""
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(expression, timezone="UTC")
    except ValueError as exc:
        return f"not a valid cron expression ({exc})"
    return None


def parse_every(text: str) -> timedelta:
    match = _EVERY.match(text)
    if not match:
        raise ValueError(f"{text!r} is not an interval such as 90s, 15m, 2h or 1d")
    interval = timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    if interval < timedelta(seconds=1):
        raise ValueError(f"{text!r}: an interval of at least one second")
    return interval


def every_problem(text: str) -> str | None:
    try:
        parse_every(text)
    except ValueError as exc:
        return str(exc)
    return None


def _trigger(rhythm: str) -> Any:
    """A cron expression or an interval (``15m``) as an APScheduler trigger."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if every_problem(rhythm) is None:
        return IntervalTrigger(seconds=parse_every(rhythm).total_seconds())
    return CronTrigger.from_crontab(rhythm, timezone="UTC")


class Service:
    """The scheduler, its jobs and its stop/reload handling, for one configuration file."""

    def __init__(self, config_path: Path, env: Mapping[str, str] | None = None) -> None:
        self.config_path = config_path
        self.env = dict(env if env is not None else os.environ)
        self.config: Config = load_config(config_path, self.env)
        self.engine: Engine = db.create_db_engine(
            self.config.database_url, self.config.settings.database.busy_timeout_seconds
        )
        self.stop = threading.Event()
        self.started_at = datetime.now(UTC)
        self.holder = locks.HOLDER
        self._running: dict[str, int] = {}
        self._lock = threading.Lock()
        self._scheduler: Any = None
        self._signals = 0

    # -- jobs -----------------------------------------------------------------------------

    def _tracked(self, job_id: str, work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            if self.stop.is_set():
                return
            with self._lock:
                self._running[job_id] = self._running.get(job_id, 0) + 1
            try:
                work()
            except Exception:  # a job's failure is logged; the service goes on
                log.exception("job failed", job=job_id)
            finally:
                with self._lock:
                    self._running[job_id] -= 1

        return run

    def _sync(self, source: str, stream: str | None = None) -> None:
        daemon = self.config.settings.daemon
        control = RunControl(
            stop=self.stop, lease=timedelta(minutes=daemon.lease_minutes), lock_wait_seconds=0
        )
        settings = self.config.settings.sources[source]
        own = set(settings.stream_schedules)
        streams = [stream] if stream else [s for s in settings.streams if s not in own]
        if not streams:
            return
        summary = resync(
            self.engine, self.config, sources=[source], streams=streams, control=control
        )
        for result in summary.streams:
            if result.outcome == "locked":
                log.info(
                    "stream skipped this round: another process holds it",
                    source=source,
                    stream=result.stream,
                )

    def _report(self) -> None:
        """Write the HTML scorecard of the last complete period (and keep each period's)."""
        from daemon.html_report import write_report
        from mapping.periods import period_containing, previous_period

        reports = self.config.settings.reports
        assert reports.directory is not None
        directory = self.config.path.parent / reports.directory
        current = period_containing(datetime.now(UTC), reports.grain, self.config.zone)
        period = previous_period(current, self.config.zone)
        written = write_report(
            self.engine, self.config, period, directory / f"scorecard-{period.label}.html"
        )
        latest = directory / "scorecard.html"
        latest.write_text(written.read_text(encoding="utf-8"), encoding="utf-8")
        from daemon import report

        report.store_results(self.engine, report.build_scorecard(self.engine, self.config, period))
        log.info("report written", path=str(written), period=period.label)

    def _recompute(self) -> None:
        from daemon.compute import recompute_dirty

        recompute_dirty(self.engine, self.config)

    def _census(self, source: str) -> None:
        census(self.engine, self.config, sources=[source])

    def _beat(self) -> None:
        """Tell ``itbsc status`` (and /healthz) that the scheduler is alive and what is next."""
        scheduler = self._scheduler
        next_runs = {
            job.id: job.next_run_time.astimezone(UTC).isoformat()
            for job in (scheduler.get_jobs() if scheduler else [])
            if job.next_run_time is not None and job.id != "heartbeat"
        }
        table: Any = DaemonBeat.__table__
        row = {
            "holder": self.holder,
            "started_at": self.started_at,
            "beat_at": datetime.now(UTC),
            "next_runs": next_runs,
        }
        with self.engine.begin() as conn:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            statement = dialect.insert(table).values(**row)
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["holder"],
                    set_={"beat_at": row["beat_at"], "next_runs": next_runs},
                )
            )

    def _add_jobs(self) -> int:
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        scheduler = self._scheduler
        count = 0
        for name, source in self.config.settings.sources.items():
            trigger: Any = None
            if source.schedule:
                trigger = CronTrigger.from_crontab(source.schedule, timezone="UTC")
            elif source.every:
                trigger = IntervalTrigger(seconds=parse_every(source.every).total_seconds())
            if trigger is not None:
                job = self._tracked(f"sync:{name}", functools.partial(self._sync, name))
                scheduler.add_job(job, trigger, id=f"sync:{name}", name=f"sync {name}")
                count += 1
            for stream, rhythm in source.stream_schedules.items():
                job_id = f"sync:{name}/{stream}"
                job = self._tracked(job_id, functools.partial(self._sync, name, stream))
                scheduler.add_job(job, _trigger(rhythm), id=job_id, name=f"sync {name}/{stream}")
                count += 1
            if source.census.schedule:
                cron = CronTrigger.from_crontab(source.census.schedule, timezone="UTC")
                job = self._tracked(f"census:{name}", functools.partial(self._census, name))
                scheduler.add_job(job, cron, id=f"census:{name}", name=f"census {name}")
                count += 1
        if self.config.settings.reports.directory:
            scheduler.add_job(
                self._tracked("report", self._report),
                _trigger(self.config.settings.reports.schedule),
                id="report",
            )
            count += 1
        every = parse_every(self.config.settings.daemon.recompute_every).total_seconds()
        scheduler.add_job(
            self._tracked("recompute", self._recompute),
            IntervalTrigger(seconds=every),
            id="recompute",
        )
        beat = self.config.settings.daemon.heartbeat_seconds
        scheduler.add_job(
            self._tracked("heartbeat", self._beat),
            IntervalTrigger(seconds=beat),
            id="heartbeat",
            next_run_time=datetime.now(UTC),
        )
        return count

    # -- lifecycle ------------------------------------------------------------------------

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second signal: exiting now", signal=signal.Signals(signum).name)
            os._exit(130)  # every page is one transaction: nothing half-written remains
        log.info("stopping: running syncs finish their page", signal=signal.Signals(signum).name)
        self.stop.set()

    def _on_reload_signal(self, _signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=self.reload, name="reload", daemon=True).start()

    def reload(self) -> bool:
        """Rebuild the jobs from the configuration file; keep the old ones when it is bad."""
        try:
            config = load_config(self.config_path, self.env)
        except ConfigError as exc:
            log.error("config not reloaded; the running schedule stays", problems=exc.problems)
            return False
        self.config = config
        self._scheduler.remove_all_jobs()
        jobs = self._add_jobs()
        log.info("config reloaded", jobs=jobs)
        return True

    def run(self) -> int:
        """Run until a stop signal; 0 when every running sync stopped cleanly in time."""
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        db.upgrade(self.engine, self.config.settings.database.busy_timeout_seconds)
        daemon = self.config.settings.daemon
        workers = max(2, 2 * len(self.config.settings.sources) + 1)
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(workers)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": daemon.misfire_grace_seconds,
            },
        )
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_reload_signal)
        jobs = self._add_jobs()
        self._scheduler.start()
        log.info("service started", jobs=jobs, holder=self.holder)
        server = None
        if daemon.http:
            from daemon.http import serve_health

            server = serve_health(self, daemon.http)
        while not self.stop.wait(0.5):
            pass
        self._scheduler.shutdown(wait=False)  # no new runs; the running ones see the stop
        deadline = time.monotonic() + daemon.stop_timeout_seconds
        while self.busy() and time.monotonic() < deadline:
            time.sleep(0.1)
        if server is not None:
            server.shutdown()
        busy = self.busy()
        with self.engine.begin() as conn:
            conn.execute(delete(DaemonBeat).where(DaemonBeat.holder == self.holder))
        self.engine.dispose()
        if busy:
            log.error("stopped with syncs still running after the timeout", jobs=busy)
            return 1
        log.info("service stopped")
        return 0

    def busy(self) -> list[str]:
        with self._lock:
            return [job for job, n in self._running.items() if n > 0 and job != "heartbeat"]
