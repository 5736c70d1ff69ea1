"""Assembling the scorecard of a period from stored metric values, and rendering it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy import Connection, Engine, select

from daemon import store
from daemon.compute import compute
from daemon.settings import Config
from mapping.metrics import ALL, MetricValue
from mapping.periods import Period, parse_period, period_containing, previous_period
from mapping.scorecard import Reading, ScorecardResult, evaluate_scorecard

STATUS_STYLE = {
    "green": ("●", "green", "OK"),
    "amber": ("◐", "yellow", "WARN"),
    "red": ("○", "red", "MISS"),
    "grey": ("·", "bright_black", "NO DATA"),
    "stale": ("·", "yellow", "STALE"),
}
TREND = {"up": "↑", "down": "↓", "flat": "→", "none": " "}


@dataclass
class Freshness:
    source: str
    stream: str
    last_success_at: datetime | None
    records: int = 0
    deleted: int = 0  # marked deleted by the census: no longer counted in any metric


@dataclass
class ScorecardReport:
    period: Period
    previous: Period
    result: ScorecardResult
    freshness: list[Freshness]
    dimension: str = ALL
    history: list[tuple[Period, dict[str, Reading]]] = field(default_factory=list)  # oldest first

    def sparkline(self, metric: str) -> str:
        """The metric over the history as block characters (a space where there is no data)."""
        values = [h.get(metric, Reading(None, 0)).value for _, h in self.history]
        present = [v for v in values if v is not None]
        if not present:
            return ""
        low, high = min(present), max(present)
        span = (high - low) or 1.0
        return "".join(
            " " if v is None else SPARKS[min(int((v - low) / span * (len(SPARKS) - 1)), 7)]
            for v in values
        )


SPARKS = "▁▂▃▄▅▆▇█"


def default_period(config: Config, now: datetime) -> Period:
    """The last complete month in the reporting time zone."""
    return previous_period(period_containing(now, "month", config.zone), config.zone)


def resolve_period(config: Config, text: str | None) -> Period:
    return parse_period(text, config.zone) if text else default_period(config, store.now())


def readings(
    conn: Connection, config: Config, period: Period, dimension: str = ALL
) -> dict[str, Reading]:
    """Each scorecard metric's value in ``period`` for ``dimension`` (``all``, or e.g.
    ``source=snow``): stored when the grain is kept, else computed. A metric without that
    dimension (a manual figure has only ``all``) reads as no data."""
    wanted = set(config.scorecard.metric_ids())
    stored = {
        row["metric"]: Reading(row["value"], row["n"])
        for row in store.read_metric_values(
            conn,
            metrics=sorted(wanted),
            grain=period.grain,
            start=period.start,
            end=period.end,
            dimension=dimension,
        )
        if row["period_start"] == period.start
    }
    missing = sorted(wanted - set(stored))
    if missing:
        values = compute(conn, config, {m: [period] for m in missing})
        stored.update({v.metric: Reading(v.value, v.n) for v in values if v.dimension == dimension})
    stale = stale_kinds(conn, config, period, store.now())
    if stale:
        metrics = config.catalogue.by_id()
        for metric_id, reading in list(stored.items()):
            reason = _stale_reason(metrics, metric_id, stale)
            if reason:
                stored[metric_id] = replace(reading, stale=reason)
    return stored


def stale_kinds(conn: Connection, config: Config, period: Period, now: datetime) -> dict[str, str]:
    """Record kind -> why its data may be out of date for ``period``.

    A stream is stale when its last success is older than ``stale_after_hours`` and came
    before the period ended (a period fully synced after its end stays good), or when it
    never succeeded."""
    limit = timedelta(hours=config.settings.reporting.stale_after_hours)
    last = {
        (row.source, row.stream): row.last_success_at
        for row in conn.execute(select(store.state_table))
    }
    out: dict[str, str] = {}
    for source, settings in config.settings.sources.items():
        mapping = config.mappings[source]
        for stream in settings.streams:
            when = last.get((source, stream))
            if when is None:
                why = f"{source}/{stream} never synced"
            elif now - when > limit and when < period.end:
                why = f"{source}/{stream} last synced {when:%Y-%m-%d %H:%M} UTC"
            else:
                continue
            for kind, _ in mapping.targets(stream):
                out.setdefault(kind, why)
    return out


def _stale_reason(
    metrics: Mapping[str, Any], metric_id: str, stale: Mapping[str, str]
) -> str | None:
    metric = metrics[metric_id]
    if metric.manual:
        return None
    if metric.composite:
        return next((r for of in metric.of if (r := _stale_reason(metrics, of, stale))), None)
    return stale.get(metric.record)


def build_scorecard(
    engine: Engine,
    config: Config,
    period: Period,
    *,
    dimension: str = ALL,
    spark: int = 0,
) -> ScorecardReport:
    """The scorecard of ``period`` (for one dimension), with ``spark`` periods of history."""
    before = previous_period(period, config.zone)
    with engine.connect() as conn:
        current = readings(conn, config, period, dimension)
        previous = readings(conn, config, before, dimension)
        history: list[tuple[Period, dict[str, Reading]]] = []
        if spark:
            periods = [period, before]
            while len(periods) < spark:
                periods.append(previous_period(periods[-1], config.zone))
            known = {period: current, before: previous}
            history = [
                (p, known.get(p) or readings(conn, config, p, dimension))
                for p in reversed(periods[:spark])
            ]
        counts = store.stream_counts(conn)
        freshness = [
            Freshness(
                r.source, r.stream, r.last_success_at, *counts.get((r.source, r.stream), (0, 0))
            )
            for r in conn.execute(
                select(store.state_table).order_by(
                    store.state_table.c.source, store.state_table.c.stream
                )
            )
        ]
    result = evaluate_scorecard(config.scorecard, config.catalogue, current, previous)
    return ScorecardReport(period, before, result, freshness, dimension, history)


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    return f"{value:.1f} %" if unit == "%" else f"{value:,.1f} {unit}".strip()


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def scorecard_json(report: ScorecardReport) -> dict[str, Any]:
    """The documented JSON shape of ``itbsc scorecard --format json``."""
    r = report.result
    return {
        "title": r.spec.title,
        "period": report.period.label,
        "period_start": report.period.start.isoformat(),
        "period_end": report.period.end.isoformat(),
        "previous_period": report.previous.label,
        "score": r.score,
        "notes": r.notes,
        "perspectives": [
            {
                "id": p.spec.id,
                "name": p.spec.name,
                "score": p.score,
                "objectives": [
                    {
                        "id": o.spec.id,
                        "name": o.spec.name,
                        "score": o.score,
                        "status": objective_status(o),
                        "initiatives": [
                            {
                                "name": i.name,
                                "owner": i.owner,
                                "due": i.due.isoformat(),
                                "status": i.status,
                            }
                            for i in o.spec.initiative
                        ],
                        "measures": [
                            {
                                "metric": m.metric.id,
                                "name": m.metric.name,
                                "manual": m.metric.manual,
                                "unit": m.metric.unit,
                                "direction": m.metric.direction,
                                "value": m.value,
                                "n": m.n,
                                "target": m.spec.target,
                                "amber": m.spec.amber,
                                "status": m.status,
                                "score": m.score,
                                "previous": m.previous,
                                "trend": m.trend,
                                "better": m.better,
                                "stale": m.stale,
                            }
                            for m in o.measures
                        ],
                    }
                    for o in p.objectives
                ],
            }
            for p in r.perspectives
        ],
        "links": [{"cause": link.cause, "effect": link.effect} for link in r.spec.link],
        "freshness": [
            {
                "source": f.source,
                "stream": f.stream,
                "last_success_at": f.last_success_at.isoformat() if f.last_success_at else None,
                "records": f.records,
                "deleted": f.deleted,
            }
            for f in report.freshness
        ],
    }


def objective_status(objective: Any) -> str:
    """The worst status of an objective's measures with data (grey when none has data)."""
    order = ["red", "amber", "green"]
    found = [m.status for m in objective.measures if m.status in order]
    return min(found, key=order.index) if found else "grey"


def render_strategy(report: ScorecardReport, console: Console) -> None:
    """Initiatives per objective and the cause -> effect links, with the objectives' status."""
    r = report.result
    by_id = {o.spec.id: o for p in r.perspectives for o in p.objectives}
    initiatives = [(o, i) for o in by_id.values() for i in o.spec.initiative]
    if initiatives:
        table = Table(
            "objective",
            "initiative",
            "owner",
            "due",
            "status",
            title="Initiatives",
            title_justify="left",
        )
        for objective, initiative in initiatives:
            table.add_row(
                objective.spec.name,
                initiative.name,
                initiative.owner,
                initiative.due.isoformat(),
                initiative.status.replace("_", " "),
            )
        console.print(table)
    if r.spec.link:
        console.print(Text("Cause → effect", style="bold"))
        for link in r.spec.link:
            cause, effect = by_id[link.cause], by_id[link.effect]
            console.print(
                f"  {cause.spec.name} [{objective_status(cause).upper()}] → "
                f"{effect.spec.name} [{objective_status(effect).upper()}]",
                highlight=False,
            )


def render_scorecard(report: ScorecardReport, console: Console) -> None:
    r = report.result
    scope = "" if report.dimension == ALL else f" — {report.dimension}"
    console.print(
        Text(f"{r.spec.title} — {report.period.label}{scope}", style="bold"),
        Text(f"  overall score {_score(r.score)}/100  (trend vs {report.previous.label})"),
    )
    table = Table(show_header=True, header_style="bold", expand=False, pad_edge=False)
    for column, justify in (
        ("Perspective / objective / metric", "left"),
        ("Value", "right"),
        ("Target", "right"),
        ("Status", "left"),
        ("Trend", "center"),
        *([(f"Last {len(report.history)}", "left")] if report.history else []),
        ("n", "right"),
        ("Score", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    spark = [""] if report.history else []
    for p in r.perspectives:
        table.add_row(
            Text(p.spec.name.upper(), style="bold cyan"),
            "",
            "",
            "",
            "",
            *spark,
            "",
            Text(_score(p.score), style="bold"),
        )
        for o in p.objectives:
            table.add_row(
                Text(f"  {o.spec.name}", style="italic"),
                "",
                "",
                "",
                "",
                *spark,
                "",
                _score(o.score),
            )
            if not o.measures:
                table.add_row(
                    Text("    (no metric defined yet)", style="bright_black"),
                    "",
                    "",
                    _status("grey"),
                    "",
                    *spark,
                    "",
                    "—",
                )
            for m in o.measures:
                arrow = TREND[m.trend]
                style = "green" if m.better else ("red" if m.better is False else "")
                op = "≥" if m.metric.direction == "higher" else "≤"
                table.add_row(
                    f"    {m.metric.id} {m.metric.name}" + (" (manual)" if m.metric.manual else ""),
                    format_value(m.value, m.metric.unit),
                    f"{op} {format_value(m.spec.target, m.metric.unit)}",
                    _status("stale" if m.stale else m.status),
                    Text(arrow, style=style),
                    *([report.sparkline(m.metric.id)] if report.history else []),
                    str(m.n),
                    _score(m.score),
                )
    console.print(table)
    for note in r.notes:
        console.print(Text(f"note: {note}", style="bright_black"))
    stale = sorted(
        {m.stale for p in r.perspectives for o in p.objectives for m in o.measures if m.stale}
    )
    for reason in stale:
        console.print(Text(f"stale (shown grey, not scored): {reason}", style="yellow"))
    console.print(_freshness_line(report.freshness))


def _status(status: str) -> Text:
    symbol, style, word = STATUS_STYLE[status]
    return Text(f"{symbol} {word}", style=style)


def _freshness_line(freshness: list[Freshness]) -> Text:
    if not freshness:
        return Text("data: never synced — run `itbsc resync`", style="yellow")
    parts = [
        f"{f.source}/{f.stream} {f.last_success_at:%Y-%m-%d %H:%M} UTC"
        if f.last_success_at
        else f"{f.source}/{f.stream} never succeeded"
        for f in freshness
    ]
    line = Text("last successful sync: " + ", ".join(parts), style="bright_black")
    deleted = [f"{f.source}/{f.stream} {f.deleted}" for f in freshness if f.deleted]
    if deleted:
        line.append(
            "\nremoved at the source, no longer counted: " + ", ".join(deleted), style="yellow"
        )
    return line


def metric_value_json(row: Mapping[str, Any] | MetricValue) -> dict[str, Any]:
    """The documented JSON object of one metric value (``itbsc metrics``)."""
    if isinstance(row, MetricValue):
        return {
            "metric": row.metric,
            "grain": row.period.grain,
            "period": row.period.label,
            "period_start": row.period.start.isoformat(),
            "period_end": row.period.end.isoformat(),
            "dimension": row.dimension,
            "value": row.value,
            "numerator": row.numerator,
            "denominator": row.denominator,
            "n": row.n,
            "exclusions": row.exclusions,
        }
    return {
        "metric": row["metric"],
        "grain": row["grain"],
        "period": row["period"],
        "period_start": row["period_start"].isoformat(),
        "period_end": row["period_end"].isoformat(),
        "dimension": row["dimension"],
        "value": row["value"],
        "numerator": row["numerator"],
        "denominator": row["denominator"],
        "n": row["n"],
        "exclusions": row["exclusions"],
        "mapping_version": row["mapping_version"],
        "computed_at": row["computed_at"].isoformat(),
    }


def source_breakdown(
    engine: Engine, config: Config, period: Period
) -> list[tuple[str, str, str, float | None, int]]:
    """(metric, unit, source, value, n) for the scorecard's metrics in ``period``, per source."""
    wanted = config.scorecard.metric_ids()
    units = {m.id: m.unit for m in config.catalogue.metric}
    with engine.connect() as conn:
        values = compute(conn, config, {m: [period] for m in wanted})
    return sorted(
        (v.metric, units.get(v.metric, ""), v.dimension.removeprefix("source="), v.value, v.n)
        for v in values
        if v.dimension.startswith("source=")
    )


def render_source_breakdown(
    rows: list[tuple[str, str, str, float | None, int]], console: Console
) -> None:
    """The same measures per source: the scorecard combines them, this shows each one's part."""
    if not rows:
        return
    table = Table("metric", "source", "value", "n", title="By source", title_justify="left")
    for metric, unit, source, value, n in rows:
        table.add_row(metric, source, format_value(value, unit), str(n))
    console.print(table)


CSV_COLUMNS = (
    "period",
    "perspective",
    "objective",
    "metric",
    "name",
    "unit",
    "direction",
    "manual",
    "value",
    "target",
    "amber",
    "status",
    "stale",
    "score",
    "n",
    "previous",
    "trend",
)
"""``itbsc scorecard --format csv``: one row per measure, these columns in this order."""


def scorecard_csv(report: ScorecardReport) -> str:
    """The scorecard as CSV (a stable, documented schema: CSV_COLUMNS)."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for p in report.result.perspectives:
        for o in p.objectives:
            for m in o.measures:
                writer.writerow(
                    [
                        report.period.label,
                        p.spec.id,
                        o.spec.id,
                        m.metric.id,
                        m.metric.name,
                        m.metric.unit,
                        m.metric.direction,
                        str(m.metric.manual).lower(),
                        "" if m.value is None else f"{m.value:.6g}",
                        f"{m.spec.target:g}",
                        f"{m.spec.amber:g}",
                        m.status,
                        m.stale or "",
                        "" if m.score is None else f"{m.score:.1f}",
                        m.n,
                        "" if m.previous is None else f"{m.previous:.6g}",
                        m.trend,
                    ]
                )
    return buffer.getvalue()


def store_results(engine: Engine, report: ScorecardReport) -> int:
    """Keep this judgement of the period (replacing an earlier one) for dashboards."""
    from sqlalchemy import delete

    from daemon.models import ScorecardResultRow

    table: Any = ScorecardResultRow.__table__
    now = store.now()
    rows = [
        {
            "period": report.period.label,
            "dimension": report.dimension,
            "objective": o.spec.id,
            "metric": m.metric.id,
            "period_start": report.period.start,
            "perspective": p.spec.id,
            "value": m.value,
            "target": m.spec.target,
            "amber": m.spec.amber,
            "status": m.status,
            "stale": m.stale,
            "score": m.score,
            "n": m.n,
            "judged_at": now,
        }
        for p in report.result.perspectives
        for o in p.objectives
        for m in o.measures
    ]
    with engine.begin() as conn:
        conn.execute(
            delete(table).where(
                table.c.period == report.period.label, table.c.dimension == report.dimension
            )
        )
        if rows:
            conn.execute(table.insert(), rows)
    return len(rows)
