"""The ``itbsc`` command line. Exit codes: 0 ok, 1 a sync failed, 2 bad configuration or usage, 3 database error."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from daemon import db, report, store
from daemon.census import census
from daemon.compute import compute
from daemon.logconfig import configure, register_secrets
from daemon.settings import Config, ConfigError, find_config, load_config
from daemon.sync import Mode, RunControl, SyncSummary, resync
from mapping.periods import GRAINS, date_range, periods_between

EXIT_SYNC_FAILED, EXIT_CONFIG, EXIT_DATABASE, EXIT_LOCKED = 1, 2, 3, 4

app = typer.Typer(
    name="itbsc",
    help="IT Balanced Scorecard from ServiceNow and Jira Service Management records.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")
input_app = typer.Typer(
    help="Manual inputs: budget, spend, training hours, headcount (an append-only register).",
    no_args_is_help=True,
)
app.add_typer(input_app, name="input")


# Off a terminal rich would wrap at 80 columns; scorecards read better wider.
out = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


class Format(StrEnum):
    table = "table"
    json = "json"


class CardFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


class _State:
    config_path: Path | None = None


state = _State()
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Service config; default $ITBSC_CONFIG, then ./itbsc.toml."
    ),
]


@app.callback()
def _main(
    config: ConfigOption = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
    log_json: Annotated[
        bool | None,
        typer.Option("--log-json/--log-console", help="Default: JSON unless stderr is a terminal."),
    ] = None,
) -> None:
    state.config_path = config
    configure(log_level, json=log_json)


def _load(*, sources: bool = True) -> Config:
    """Load the config; ``sources=False`` for commands that only read the database."""
    path = find_config(state.config_path)
    try:
        config = load_config(path, need_source_secrets=sources)
    except ConfigError as exc:
        err.print(
            f"[bold red]configuration invalid[/] ({len(exc.problems)} problem(s)):", highlight=False
        )
        for line in exc.problems:
            err.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_CONFIG) from None
    register_secrets(config.secret_values())
    return config


def _period(config: Config, text: str | None) -> Any:
    """The period a user named (default: the last complete month), or exit 2 saying why not."""
    try:
        return report.resolve_period(config, text)
    except ValueError as exc:
        err.print(str(exc))
        raise typer.Exit(EXIT_CONFIG) from None


def _engine(config: Config) -> Engine:
    """Open the database and apply pending migrations (the schema is always at head)."""
    try:
        engine = db.create_db_engine(
            config.database_url, config.settings.database.busy_timeout_seconds
        )
        db.upgrade(engine, config.settings.database.busy_timeout_seconds)
    except SQLAlchemyError as exc:
        _database_failed(config, exc)
    return engine


def _database_failed(config: Config, exc: SQLAlchemyError, after: str = "") -> NoReturn:
    """Say which database failed and how (never its password), exit 3."""
    where = config.database_url.render_as_string(hide_password=True)
    if "database is locked" in str(exc):
        waited = config.settings.database.busy_timeout_seconds
        after = (
            f"another program holds a write lock on the file (waited {waited:g} s, "
            "[database] busy_timeout_seconds); " + (after or "rerun when it is released")
        )
    err.print(
        f"[bold red]database error[/] ({where}): {type(exc).__name__}: {_first_line(exc)}"
        + (f"\n  {after}" if after else ""),
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(EXIT_DATABASE) from None


def _first_line(exc: BaseException) -> str:
    return (str(getattr(exc, "orig", None) or exc).splitlines() or [""])[0]


@app.command("check-config")
def check_config() -> None:
    """Validate the configuration and every file it names, without touching the database."""
    config = _load()
    sources = ", ".join(
        f"{n} ({s.kind}: {', '.join(s.streams)})" for n, s in config.settings.sources.items()
    )
    out.print(f"configuration OK: {config.path}", highlight=False)
    out.print(f"  sources: {sources or 'none'}", highlight=False)
    out.print(
        f"  metrics: {len(config.catalogue.metric)}; scorecard measures: {len(config.scorecard.metric_ids())}",
        highlight=False,
    )


@app.command("resync")
def resync_command(
    sources: Annotated[
        list[str] | None, typer.Argument(help="Source names from the config; default all.")
    ] = None,
    stream: Annotated[str | None, typer.Option(help="Only this stream.")] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Re-read everything, ignoring the cursor.")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            help="Re-read records updated since this ISO time (UTC if no offset); the cursor stays."
        ),
    ] = None,
    output: Annotated[
        Format,
        typer.Option("--format", help="table: a line per stream; json: a summary for scripts."),
    ] = Format.table,
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            help="Seconds to wait for a stream another process (the service) is syncing; "
            "0 reports it as locked at once.",
        ),
    ] = 0.0,
) -> None:
    """Sync sources now (the same code path the scheduler runs), under the stream locks."""
    config = _load()
    names = _source_names(config, sources)
    if full and since:
        err.print("--full and --since exclude each other")
        raise typer.Exit(EXIT_CONFIG)
    since_at = _parse_since(since) if since else None
    mode: Mode = "full" if full else ("since" if since_at else "incremental")
    engine = _engine(config)
    control = RunControl(
        lock_wait_seconds=wait, lease=timedelta(minutes=config.settings.daemon.lease_minutes)
    )
    try:
        with _progress(output) as progress:
            summary = resync(
                engine,
                config,
                sources=names,
                stream=stream,
                mode=mode,
                since=since_at,
                control=control,
                progress=progress,
            )
    except SQLAlchemyError as exc:
        _database_failed(config, exc, "every page committed before it is kept; rerun to resume")
    _print_summary(summary, output)
    if not summary.ok:
        outcomes = {r.outcome for r in summary.streams if r.outcome != "succeeded"}
        raise typer.Exit(EXIT_LOCKED if outcomes == {"locked"} else EXIT_SYNC_FAILED)


@contextmanager
def _progress(output: Format) -> Iterator[Any]:
    """A rich progress bar per stream (records, rate, ETA where the source gives a total) on a
    terminal; nothing otherwise (the log's one line per page and per stream stays)."""
    if output != Format.table or not out.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    tasks: dict[tuple[str, str], Any] = {}
    started: dict[tuple[str, str], float] = {}
    with Progress(*columns, console=out, transient=False) as bar:

        def update(source: str, stream: str, fetched: int, total: int | None) -> None:
            key = (source, stream)
            if key not in tasks:
                tasks[key] = bar.add_task(f"{source}/{stream}", total=total, rate="")
                started[key] = time.monotonic()
            elapsed = max(time.monotonic() - started[key], 1e-6)
            bar.update(
                tasks[key], completed=fetched, total=total, rate=f"{fetched / elapsed:,.0f} rec/s"
            )

        yield update


@app.command("report")
def report_command(
    output_file: Annotated[
        Path, typer.Option("--output", help="Where to write the HTML file.")
    ] = Path("scorecard.html"),
    period: Annotated[
        str | None,
        typer.Option(help="2026-10, 2026-Q3, 2026-W40, 2026, FIRST..LAST; default last month."),
    ] = None,
    periods: Annotated[int, typer.Option(help="Periods in each trend chart.")] = 12,
) -> None:
    """The scorecard as one self-contained HTML file (no network), printable on A4."""
    from daemon.html_report import write_report

    config = _load(sources=False)
    chosen = _period(config, period)
    written = write_report(_engine(config), config, chosen, output_file, periods=periods)
    out.print(f"report for {chosen.label} written to {written}", highlight=False)


@app.command("run")
def run_command() -> None:
    """Run the service in the foreground: scheduled syncs and censuses until SIGTERM/SIGINT.

    SIGHUP reloads the configuration; see the README (Running as a service)."""
    from daemon.scheduler import Service

    config = _load()  # the same checks and messages as every command, before anything starts
    _engine(config)  # reachable and migrated, or a clear message and exit code 3
    service = Service(config.path)
    raise typer.Exit(service.run())


@app.command("census")
def census_command(
    sources: Annotated[
        list[str] | None, typer.Argument(help="Source names from the config; default all.")
    ] = None,
    stream: Annotated[str | None, typer.Option(help="Only this stream.")] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Mark records deleted even beyond census.max_deleted_percent."
        ),
    ] = False,
    output: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Find records deleted (or hidden) at the source and mark them; fetch any the store lacks."""
    config = _load()
    names = _source_names(config, sources)
    results = census(_engine(config), config, sources=names, stream=stream, force=force)
    rows = [
        {
            "source": r.source,
            "stream": r.stream,
            "run_id": r.run_id,
            "outcome": r.outcome,
            "at_source": r.at_source,
            "stored": r.stored,
            "marked_deleted": r.marked_deleted,
            "fetched": r.fetched,
            "seconds": round(r.seconds, 3),
            "error": r.error,
        }
        for r in results
    ]
    if output == Format.json:
        out.print_json(data={"ok": all(r.outcome == "succeeded" for r in results), "streams": rows})
    else:
        for row in rows:
            line = (
                f"{row['source']}/{row['stream']}: {row['outcome']} — {row['at_source']} at the "
                f"source, {row['stored']} stored, {row['marked_deleted']} marked deleted, "
                f"{row['fetched']} fetched"
            )
            out.print(line, highlight=False)
            if row["error"]:
                err.print(f"  {row['error']}", highlight=False)
    if any(r.outcome != "succeeded" for r in results):
        raise typer.Exit(EXIT_SYNC_FAILED)


def _source_names(config: Config, sources: list[str] | None) -> list[str]:
    """The named sources (default all); an unknown name is a usage error (exit 2)."""
    names = sources or list(config.settings.sources)
    unknown = [n for n in names if n not in config.settings.sources]
    if unknown:
        err.print(
            f"unknown source(s): {', '.join(unknown)}; configured: {', '.join(config.settings.sources)}"
        )
        raise typer.Exit(EXIT_CONFIG)
    return names


def _parse_since(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        err.print(
            f"--since {text!r} is not an ISO date or date-time (2026-11-01 or 2026-11-01T08:00:00+01:00)"
        )
        raise typer.Exit(EXIT_CONFIG) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _print_summary(summary: SyncSummary, output: Format) -> None:
    if output == Format.json:
        out.print_json(
            data={
                "ok": summary.ok,
                "metric_values": summary.metric_values,
                "streams": [
                    {
                        "source": r.source,
                        "stream": r.stream,
                        "run_id": r.run_id,
                        "mode": r.mode,
                        "outcome": r.outcome,
                        "pages": r.pages,
                        "fetched": r.fetched,
                        "written": r.written,
                        "skipped": dict(r.skipped),
                        "seconds": round(r.seconds, 3),
                        "error": r.error,
                    }
                    for r in summary.streams
                ],
            }
        )
        return
    for r in summary.streams:
        if r.outcome == "locked":
            out.print(
                f"{r.source}/{r.stream}: not synced — another process holds it", highlight=False
            )
            err.print(r.error or "", highlight=False, markup=False)
            continue
        line = f"{r.source}/{r.stream}: {r.outcome} — {r.fetched} fetched, {r.written} written in {r.pages} page(s), {r.seconds:.1f}s"
        if r.skipped:
            line += f", {sum(r.skipped.values())} skipped ({', '.join(f'{k}: {v}' for k, v in r.skipped.most_common(3))})"
        out.print(line, highlight=False)
        if r.error:
            err.print(f"  error: {r.error}", highlight=False, markup=False)
    out.print(f"metric values recomputed: {summary.metric_values}", highlight=False)


@app.command("recompute")
def recompute_command(
    date_from: Annotated[
        str | None, typer.Option("--from", help="Restate only periods from this day (YYYY-MM-DD).")
    ] = None,
    date_to: Annotated[
        str | None, typer.Option("--to", help="... up to this day, inclusive.")
    ] = None,
) -> None:
    """Re-apply the current mappings to stored raw records and restate metrics (no refetch)."""
    from datetime import timedelta

    from daemon.remap import remap

    config = _load(sources=False)
    days = None
    if date_from or date_to:
        if not (date_from and date_to):
            err.print("give --from and --to together")
            raise typer.Exit(EXIT_CONFIG)
        try:
            first, last = date.fromisoformat(date_from), date.fromisoformat(date_to)
        except ValueError:
            err.print(f"--from/--to must be YYYY-MM-DD (got {date_from!r}, {date_to!r})")
            raise typer.Exit(EXIT_CONFIG) from None
        if last < first:
            err.print("--to is before --from")
            raise typer.Exit(EXIT_CONFIG)
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    mapped, skipped, values = remap(_engine(config), config, days)
    out.print(
        f"re-mapped {mapped} record(s), skipped {sum(skipped.values())}; metric values: {values}",
        highlight=False,
    )
    for reason, count in skipped.most_common(10):
        out.print(f"  skipped {count}: {reason}", highlight=False, markup=False)


@app.command("status")
def status_command(
    output: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Per source and stream: last success, last run and its outcome, records stored (the
    cursor too with --format json)."""
    from daemon import attribution_store
    from daemon.status import daemons, status_rows

    config = _load(sources=False)
    engine = _engine(config)
    rows = status_rows(engine, config)
    services = daemons(engine, config)
    with engine.connect() as conn:
        attribution = attribution_store.state(conn, config)
    if output == Format.json:
        out.print_json(
            data={"streams": rows, "daemons": services, "kept": {"attribution": attribution}}
        )
        return
    # One line per stream on a 100-column terminal: times to the minute; the cursor (a
    # source's keyset position, for debugging) is in the JSON.
    table = Table(caption="times in UTC", caption_justify="left")
    for name in ("source", "stream", "last success", "last run"):
        table.add_column(name, no_wrap=True)
    for name in ("records", "deleted"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("next run", no_wrap=True)
    notes: list[str] = []
    for row in rows:
        last = row["last_run"]
        run = "never"
        if last:  # its time only when it is not the last success's
            run = last["outcome"]
            if last["outcome"] != "succeeded":
                run += f" {_minute(last['started_at'])}"
        success = _minute(row["last_success_at"]) if row["last_success_at"] else "never"
        table.add_row(
            row["source"],
            row["stream"],
            f"[yellow]{success} STALE[/]" if row["stale"] else success,
            run,
            str(row["records"]),
            str(row["deleted"]),
            _minute(row["next_run_at"]) if row["next_run_at"] else "—",
        )
        stream = f"{row['source']}/{row['stream']}"
        failure = row["last_failure"]
        if failure:  # below the table, whole: an error does not fit a column
            line = f"{stream}: last failure {_minute(failure['at'])}: {failure['error'][:300]}"
            notes.append(f"[red]{escape(line)}[/]")
        if row["locked_by"]:
            notes.append(f"{escape(stream)}: syncing now, {escape(row['locked_by'])}")
    if not attribution["current"]:  # computations work it out meanwhile: slower, same values
        why = (
            f"{attribution['stale_incidents']} incident(s) written since"
            if attribution["rule"] == attribution["configured"]
            else f"the rule changed to {attribution['configured']}"
        )
        notes.append(f"attributed changes: {why}; the next restatement works them out")
    out.print(table)
    for note in notes:
        out.print(note, highlight=False, soft_wrap=True)  # one line, whole, for grep
    if not services:
        out.print("no itbsc service running against this database", highlight=False)
    for service in services:
        state = "alive" if service["alive"] else "silent (stopped or hung?)"
        out.print(
            f"service {service['holder']}: {state}, last heartbeat {service['beat_at'][:19]} UTC",
            highlight=False,
        )


def _minute(moment: str) -> str:
    """An ISO timestamp to the minute, as a terminal table shows it: 2026-11-29 05:12."""
    return moment.replace("T", " ")[:16]


@app.command("scorecard")
def scorecard_command(
    period: Annotated[
        str | None,
        typer.Option(
            help="2026-10, 2026-Q3, 2026-W40, 2026, 2026-10-05 or FIRST..LAST; default the last complete month."
        ),
    ] = None,
    output: Annotated[CardFormat, typer.Option("--format")] = CardFormat.table,
    by: Annotated[
        str | None,
        typer.Option("--by", help="One dimension, e.g. priority=P1 (metrics without it: no data)."),
    ] = None,
    source: Annotated[
        str | None, typer.Option("--source", help="One source only (same as --by source=NAME).")
    ] = None,
    spark: Annotated[
        int, typer.Option(help="Periods in the table's sparkline column (0: none).")
    ] = 8,
    keep: Annotated[
        bool,
        typer.Option("--store", help="Also keep this judgement in scorecard_result (v_scorecard)."),
    ] = False,
) -> None:
    """The scorecard of one period: four perspectives, objectives, measures, status, trend."""
    config = _load(sources=False)
    chosen = _period(config, period)
    if by and source:
        err.print("--by and --source exclude each other")
        raise typer.Exit(EXIT_CONFIG)
    if source and source not in config.settings.sources:
        err.print(f"unknown source {source!r}; the config has {', '.join(config.settings.sources)}")
        raise typer.Exit(EXIT_CONFIG)
    dimension = f"source={source}" if source else (by or "all")
    history = spark if output == CardFormat.table else 0
    engine = _engine(config)
    result = report.build_scorecard(engine, config, chosen, dimension=dimension, spark=history)
    if keep:
        report.store_results(engine, result)
    if output == CardFormat.json:
        out.print_json(data=report.scorecard_json(result))
    elif output == CardFormat.csv:
        sys.stdout.write(report.scorecard_csv(result))
    else:
        report.render_scorecard(result, out)
        report.render_strategy(result, out)


def _who(by: str | None) -> str:
    import getpass

    return by or os.environ.get("ITBSC_USER") or getpass.getuser()


@input_app.command("add")
def input_add(
    name: Annotated[str, typer.Argument(help="An input declared in the catalogue, e.g. budget.")],
    period: Annotated[str, typer.Argument(help="2026-05, 2026-Q2 or 2026.")],
    value: Annotated[float, typer.Argument(help="The figure.")],
    note: Annotated[str, typer.Option(help="Where the figure comes from.")] = "",
    by: Annotated[
        str | None, typer.Option(help="Who enters it (default: $ITBSC_USER, login).")
    ] = None,
) -> None:
    """Register a figure; one already entered for the name and period is superseded, not lost."""
    from daemon.inputs import InputError, add

    config = _load(sources=False)
    try:
        with _engine(config).begin() as conn:
            entry = add(conn, config, name, period, value, entered_by=_who(by), note=note)
    except (InputError, ValueError) as exc:
        err.print(str(exc), highlight=False)
        raise typer.Exit(EXIT_CONFIG) from None
    out.print(f"registered #{entry}: {name} {period} = {value:g}", highlight=False)


@input_app.command("import")
def input_import(
    path: Annotated[Path, typer.Argument(help="CSV with columns name, period, value[, note].")],
    by: Annotated[str | None, typer.Option(help="Who enters them.")] = None,
) -> None:
    """Register every row of a CSV, or none of them (a bad line is named with its number)."""
    from daemon.inputs import InputError, import_csv

    config = _load(sources=False)
    try:
        count = import_csv(_engine(config), config, path, entered_by=_who(by))
    except (InputError, OSError) as exc:
        err.print(str(exc), highlight=False)
        raise typer.Exit(EXIT_CONFIG) from None
    out.print(f"registered {count} figure(s) from {path}", highlight=False)


@input_app.command("list")
def input_list(
    name: Annotated[str | None, typer.Option(help="Only this input.")] = None,
    output: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """The audit trail: every figure ever entered, who and when, and what superseded it."""
    from daemon.inputs import entries

    config = _load(sources=False)
    with _engine(config).connect() as conn:
        trail = entries(conn, name)
    if output == Format.json:
        out.print_json(data={"entries": [e.__dict__ for e in trail]})
        return
    table = Table(
        "#", "input", "period", "value", "entered by", "entered at (UTC)", "note", "status"
    )
    for e in trail:
        status = f"superseded by #{e.superseded_by}" if e.superseded_by else "current"
        table.add_row(
            str(e.id),
            e.name,
            e.period,
            f"{e.value:g} {e.unit}".strip(),
            e.entered_by,
            _utc_text(e.entered_at),
            e.note,
            status,
        )
    out.print(table)


@app.command("baseline")
def baseline_command(
    months: Annotated[int, typer.Option(min=3, max=60, help="Complete months to learn from.")] = 12,
    output: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Propose a target and amber band for each scorecard metric from the history synced."""
    from daemon.baseline import baseline
    from mapping.baseline import METHOD

    config = _load(sources=False)
    proposals = baseline(_engine(config), config, store.now(), months)
    current = {
        m.metric: m for p in config.scorecard.perspective for o in p.objective for m in o.measure
    }
    if output == Format.json:
        out.print_json(
            data={
                "method": METHOD,
                "months": months,
                "proposals": [
                    {
                        **p.__dict__,
                        "current_target": current[p.metric].target,
                        "current_amber": current[p.metric].amber,
                    }
                    for p in proposals
                ],
            }
        )
        return
    out.print(f"Method: {METHOD}; last {months} complete months.", highlight=False)
    table = Table("metric", "direction", "months", "median", "proposed target", "amber", "now")
    for p in proposals:

        def fmt(value: float | None) -> str:
            return "—" if value is None else f"{value:,.2f}"

        table.add_row(
            p.metric,
            p.direction,
            f"{p.months_used} (+{p.months_skipped} too thin)"
            if p.months_skipped
            else str(p.months_used),
            fmt(p.median),
            fmt(p.target),
            fmt(p.amber),
            f"{current[p.metric].target:g} ± {current[p.metric].amber:g}",
        )
    out.print(table)
    out.print("Copy the targets you accept into scorecard.toml.", highlight=False)


@app.command("check-mapping")
def check_mapping_command(
    output: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Source values no value map covers (with counts), groups without a tier, skipped records.

    Exit code 1 when anything is uncovered, so it can gate a mapping change in CI.
    """
    from daemon.check_mapping import skipped_reasons, unmapped_values, untiered_groups

    config = _load(sources=False)
    engine = _engine(config)
    uncovered = unmapped_values(engine, config) + untiered_groups(engine, config)
    skipped = skipped_reasons(engine, config)
    if output == Format.json:
        out.print_json(
            data={
                "unmapped": [u.__dict__ for u in uncovered],
                "skipped": [{"source": s, "stream": t, "records": n} for s, t, n in skipped],
            }
        )
    else:
        if not uncovered and not skipped:
            out.print("every stored source value is covered by the mappings", highlight=False)
        if uncovered:
            table = Table("source", "kind", "field", "source value", "records")
            for u in uncovered:
                table.add_row(u.source, u.kind, u.field, u.value, str(u.records))
            out.print(table)
        for source, stream, count in skipped:
            out.print(
                f"{source}/{stream}: the last run skipped {count} record(s); "
                "see its log line 'stream finished' for the reasons",
                highlight=False,
            )
    if uncovered or skipped:
        raise typer.Exit(EXIT_SYNC_FAILED)


@app.command("explain")
def explain_command(
    metric: Annotated[str, typer.Argument(help="Metric id from the catalogue, e.g. C1.")],
    period: Annotated[
        str | None,
        typer.Option(help="2026-10, 2026-Q3, 2026-W40, 2026, FIRST..LAST; default last month."),
    ] = None,
    by: Annotated[
        str | None,
        typer.Option("--by", help="A dimension as stored, e.g. priority=P1 or source=snow."),
    ] = None,
    limit: Annotated[int, typer.Option(help="Records listed on a terminal (JSON lists all).")] = 50,
    output: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """One value and every record behind it: definition, numerator, denominator, exclusions."""
    from daemon.explain import explain_metric, explanation_json, moment_columns

    config = _load(sources=False)
    if metric not in config.catalogue.by_id():
        err.print(
            f"unknown metric {metric!r}; the catalogue has {', '.join(config.catalogue.by_id())}"
        )
        raise typer.Exit(EXIT_CONFIG)
    chosen = _period(config, period)
    spec = config.catalogue.by_id()[metric]
    if spec.manual:
        _explain_manual(config, spec, chosen, output)
        return
    if spec.composite:
        _explain_composite(config, spec, chosen, by or "all", output)
        return
    try:
        explanation = explain_metric(_engine(config), config, metric, chosen, by or "all")
    except ValueError as exc:
        err.print(str(exc), highlight=False)
        raise typer.Exit(EXIT_CONFIG) from None
    data = explanation_json(explanation, config)
    if output == Format.json:
        out.print_json(data=data)
        return
    out.print(
        f"{data['metric']} {data['name']} — {data['period']}"
        + (f" — {data['dimension']}" if data["dimension"] != "all" else ""),
        style="bold",
        highlight=False,
    )
    out.print(data["definition"].strip(), highlight=False, markup=False)

    def number(value: float | None) -> str:
        return "—" if value is None else f"{value:,.2f}".rstrip("0").rstrip(".")

    out.print(
        f"value {number(data['value'])} {data['unit']}  numerator {number(data['numerator'])}  "
        f"denominator {number(data['denominator'])}  n {data['n']}  (record: {data['record']}, cohort: "
        f"{data['cohort']}, mapping {data['mapping_version']})",
        highlight=False,
    )
    for reason, count in sorted(data["exclusions"].items()):
        out.print(f"excluded by {reason!r}: {count}", highlight=False)
    # In the reporting zone, as the periods are cut: a record resolved on 31 March at
    # 23:30 UTC is April's in Amsterdam, and the table says so.
    zone = config.zone
    moments = moment_columns(data)

    def local(text: str | None) -> str:
        return f"{datetime.fromisoformat(text).astimezone(zone):%Y-%m-%d %H:%M:%S}" if text else ""

    table = Table(
        "source",
        "id",
        "number",
        f"{data['cohort']} ({data['timezone']})",
        *(heading for heading, _ in moments),
        "part",
        "detail",
    )
    for record in data["records"][:limit]:
        detail = record["reason"] or (
            f"{record['sample']:.2f}" if record["sample"] is not None else ""
        )
        table.add_row(
            record["source"],
            record["source_id"],
            record["number"] or "",
            local(record[data["cohort"]]),
            *(local(record[key]) for _, key in moments),
            record["part"],
            detail,
        )
    print_whole(table)
    hidden = len(data["records"]) - limit
    if hidden > 0:
        out.print(f"... and {hidden} more (use --format json for all)", highlight=False)


def print_whole(table: Table) -> None:
    """A table of record ids at its full width when written to a file or a pipe: ids cut short
    ("cf55d2e4…") cannot be traced to their tickets. A terminal wraps at its own width."""
    if out.is_terminal:
        out.print(table)
        return
    natural = Measurement.get(out, out.options.update_width(10_000), table).maximum
    capped, out.width = out.width, max(out.width, natural)
    try:
        out.print(table)
    finally:
        out.width = capped


def _explain_composite(
    config: Config, spec: Any, chosen: Any, dimension: str, output: Format
) -> None:
    """A metric over other metrics is explained by their values, each explainable in turn."""
    from mapping.periods import same_period_last_year

    if spec.kind == "year_over_year":
        parts = [(spec.of[0], chosen), (spec.of[0], same_period_last_year(chosen, config.zone))]
    else:
        parts = [(of, chosen) for of in spec.of]
    with _engine(config).connect() as conn:
        found_values = [
            v for v in compute(conn, config, {spec.id: [chosen]}) if v.dimension == dimension
        ]
        value = found_values[0] if found_values else None
        components = []
        for metric_id, period in parts:
            found = [
                v for v in compute(conn, config, {metric_id: [period]}) if v.dimension == dimension
            ]
            components.append(
                {
                    "metric": metric_id,
                    "period": period.label,
                    "value": found[0].value if found else None,
                    "n": found[0].n if found else 0,
                    "explain": f"itbsc explain {metric_id} --period {period.label}"
                    + (f" --by {dimension}" if dimension != "all" else ""),
                }
            )
    data = {
        "metric": spec.id,
        "name": spec.name,
        "definition": spec.description,
        "kind": spec.kind,
        "period": chosen.label,
        "dimension": dimension,
        "value": value.value if value else None,
        "components": components,
    }
    if output == Format.json:
        out.print_json(data=data)
        return
    operator = " - " if spec.kind == "year_over_year" else " x "

    def shown_value(number: float | None) -> str:
        return "—" if number is None else f"{number:,.2f}"

    shown = operator.join(
        f"{c['metric']} {c['period']} ({shown_value(c['value'])})" for c in components
    )
    result = shown_value(data["value"])
    out.print(f"{spec.id} {spec.name} — {chosen.label}", style="bold", highlight=False)
    out.print(spec.description.strip(), highlight=False, markup=False)
    out.print(f"{spec.id} = {shown} = {result} {spec.unit}", highlight=False)
    for component in components:
        out.print(f"  {component['explain']}", highlight=False)


def _explain_manual(config: Config, spec: Any, chosen: Any, output: Format) -> None:
    """A manual metric is explained by the register entries it was computed from."""
    from daemon.inputs import entries
    from mapping.periods import periods_between

    engine = _engine(config)
    labels = {chosen.label} | {
        p.label for p in periods_between(chosen.start, chosen.end, "month", config.zone)
    }
    with engine.connect() as conn:
        (value,) = compute(conn, config, {spec.id: [chosen]})
        used = [
            e.__dict__ for name in spec.inputs for e in entries(conn, name) if e.period in labels
        ]
    data = {
        "metric": spec.id,
        "name": spec.name,
        "definition": spec.description,
        "kind": spec.kind,
        "manual": True,
        "period": chosen.label,
        "value": value.value,
        "numerator": value.numerator,
        "denominator": value.denominator,
        "inputs": used,
    }
    if output == Format.json:
        out.print_json(data=data)
        return
    shown = "—" if value.value is None else f"{value.value:,.2f} {spec.unit}".strip()
    out.print(f"{spec.id} {spec.name} (manual) — {chosen.label}: {shown}", highlight=False)
    out.print(spec.description, highlight=False, markup=False)
    table = Table(
        "#", "input", "period", "value", "entered by", "entered at (UTC)", "note", "status"
    )
    for e in used:
        status = f"superseded by #{e['superseded_by']}" if e["superseded_by"] else "used"
        table.add_row(
            str(e["id"]),
            e["name"],
            e["period"],
            f"{e['value']:g}",
            e["entered_by"],
            _utc_text(e["entered_at"]),
            e["note"],
            status,
        )
    out.print(table)


@app.command("metrics")
def metrics_command(
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", "-m", help="Metric id (repeatable); default all."),
    ] = None,
    date_from: Annotated[
        str | None, typer.Option("--from", help="First day (reporting time zone), YYYY-MM-DD.")
    ] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="Last day, included.")] = None,
    grain: Annotated[
        str | None,
        typer.Option(
            help=f"One of {', '.join(GRAINS)}; with --from/--to, per period of this grain."
        ),
    ] = None,
    dimension: Annotated[
        str | None, typer.Option(help="'all' or e.g. 'priority=P1'; default every dimension.")
    ] = None,
    output: Annotated[Format, typer.Option("--format")] = Format.json,
) -> None:
    """Metric values as JSON objects (metric, grain, period, dimension, value, numerator, denominator, n)."""
    config = _load(sources=False)
    known = config.catalogue.by_id()
    wanted = metric or list(known)
    bad = [m for m in wanted if m not in known]
    if bad or (grain and grain not in GRAINS) or (bool(date_from) != bool(date_to)):
        err.print(
            (f"unknown metric(s): {', '.join(bad)} (known: {', '.join(known)}). " if bad else "")
            + (
                f"grain must be one of {', '.join(GRAINS)}. "
                if grain and grain not in GRAINS
                else ""
            )
            + ("--from and --to go together." if bool(date_from) != bool(date_to) else "")
        )
        raise typer.Exit(EXIT_CONFIG)
    engine = _engine(config)
    if date_from and date_to:
        try:
            window = date_range(
                date.fromisoformat(date_from), date.fromisoformat(date_to), config.zone
            )
        except ValueError as exc:
            err.print(f"--from/--to: {exc}")
            raise typer.Exit(EXIT_CONFIG) from None
        periods = (
            periods_between(window.start, window.end, grain, config.zone) if grain else [window]
        )
        with engine.connect() as conn:
            values = compute(conn, config, dict.fromkeys(wanted, periods))
        objects = [
            report.metric_value_json(v)
            for v in values
            if dimension is None or v.dimension == dimension
        ]
    else:
        with engine.connect() as conn:
            objects = [
                report.metric_value_json(r)
                for r in store.read_metric_values(
                    conn, metrics=wanted, grain=grain, dimension=dimension
                )
            ]
    if output == Format.json:
        sys.stdout.write(json.dumps(objects, indent=2) + "\n")
        return
    table = Table(
        "metric", "grain", "period", "dimension", "value", "numerator", "denominator", "n"
    )
    for o in objects:
        table.add_row(
            o["metric"],
            o["grain"],
            o["period"],
            o["dimension"],
            _num(o["value"]),
            _num(o["numerator"]),
            _num(o["denominator"]),
            str(o["n"]),
        )
    out.print(table)


def _utc_text(moment: str) -> str:
    """A stored moment (ISO, with its offset) as UTC to the second: the register's clock."""
    return f"{datetime.fromisoformat(moment).astimezone(UTC):%Y-%m-%d %H:%M:%S}"


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


@app.command("demo")
def demo_command(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the demo config and database go.")
    ] = Path("demo"),
    count: Annotated[int, typer.Option(help="ServiceNow incidents per generated year.")] = 5000,
    years: Annotated[
        int,
        typer.Option(
            min=1,
            max=5,
            help="Years of history generated; two give the year-on-year measures (L5) a year "
            "to compare with.",
        ),
    ] = 2,
    seed: Annotated[int, typer.Option(help="Seed of the generator.")] = 42,
    serve: Annotated[
        str | None,
        typer.Option(
            "--serve",
            help="Then keep the sandboxes up and run the service against them on this "
            "interval (e.g. 1m) until Ctrl-C.",
        ),
    ] = None,
) -> None:
    """Start a sandbox ServiceNow and a sandbox Jira Service Management, sync both, print the scorecard."""
    from contextlib import ExitStack

    from daemon.demo import start_jira_sandbox, start_sandbox, write_demo_config

    incidents, issues = count * years, max(100, count * 2 // 5) * years
    days = 365 * years
    with ExitStack() as stack:
        sandbox = stack.enter_context(start_sandbox(incidents, seed, days))
        jira = stack.enter_context(start_jira_sandbox(issues, seed, days))
        state.config_path = write_demo_config(directory, sandbox.url, jira.url, every=serve)
        out.print(
            f"sandbox ServiceNow at {sandbox.url} with {incidents} incidents; sandbox Jira at "
            f"{jira.url} with {issues} issues, over {years} year(s); config {state.config_path}",
            highlight=False,
        )
        config = _load()
        engine = _engine(config)
        summary = resync(engine, config, mode="full")
        _print_summary(summary, Format.table)
        if not summary.ok:
            raise typer.Exit(EXIT_SYNC_FAILED)
        _demo_scorecard(config, engine, directory, seed)
        from daemon.html_report import write_report

        html = write_report(
            engine, config, report.resolve_period(config, None), directory / "scorecard.html"
        )
        out.print(f"\nHTML report: {html}", highlight=False)
        if serve:
            from daemon.scheduler import Service

            out.print(f"\nserving: a sync every {serve}; Ctrl-C stops", highlight=False)
            raise typer.Exit(Service(config.path).run())
    out.print(
        f"\nTry: itbsc --config {state.config_path} metrics --metric I1 --grain month --format table",
        highlight=False,
    )


def _demo_scorecard(config: Config, engine: Engine, directory: Path, seed: int) -> None:
    from daemon.baseline import last_months
    from daemon.demo import write_demo_inputs
    from daemon.inputs import import_csv

    months = [p.label for p in last_months(config, store.now(), 12)]
    inputs = write_demo_inputs(directory, months, seed)
    count = import_csv(engine, config, inputs, entered_by="itbsc demo")
    out.print(f"manual inputs: {count} figures from {inputs} (marked manual)", highlight=False)
    out.print()
    period = report.resolve_period(config, None)
    card = report.build_scorecard(engine, config, period)
    report.render_scorecard(card, out)
    report.render_strategy(card, out)
    out.print()
    report.render_source_breakdown(report.source_breakdown(engine, config, period), out)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations (also done automatically by every command that opens the database)."""
    config = _load(sources=False)
    _engine(config)
    out.print("database schema is at head", highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
