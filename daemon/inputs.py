"""Manual inputs: what tickets cannot tell (budget and actuals, training hours, headcount).

An append-only register. ``add`` records a figure for a period with who
entered it and a source note; entering a figure again for the same name and
period supersedes the previous one (the old row stays, marked). Metrics of the
input kinds read the current figure of each period; a quarter or a year is
built from its months (summed or averaged, as the input is declared) when it
has no figure of its own, and only when every month has one.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, select

from daemon import store
from daemon.models import ManualInput
from daemon.settings import Config
from mapping.catalogue import MetricSpec
from mapping.metrics import MetricValue
from mapping.periods import Period, parse_period, periods_between

table: Table = ManualInput.__table__  # type: ignore[assignment]


class InputError(ValueError):
    """A figure that cannot be registered: unknown input, bad period or value (line named)."""


@dataclass(frozen=True)
class Entry:
    id: int
    name: str
    period: str
    value: float
    unit: str
    entered_by: str
    entered_at: str
    note: str
    supersedes: int | None
    superseded_by: int | None


def add(
    conn: Connection,
    config: Config,
    name: str,
    period: str,
    value: float,
    *,
    entered_by: str,
    note: str = "",
) -> int:
    """Register a figure; the current one for (name, period), if any, is superseded."""
    spec = config.catalogue.inputs_by_name().get(name)
    if spec is None:
        known = ", ".join(config.catalogue.inputs_by_name()) or "none declared"
        raise InputError(f"unknown input {name!r} (declared in the catalogue: {known})")
    label = parse_period(period, config.zone).label  # validates and normalises
    current = _current_row(conn, name, label)
    result = conn.execute(
        table.insert().values(
            name=name,
            period=label,
            value=float(value),
            unit=spec.unit,
            entered_by=entered_by,
            entered_at=store.now(),
            note=note,
            supersedes=current.id if current is not None else None,
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def import_csv(engine: Engine, config: Config, path: Path, *, entered_by: str) -> int:
    """Columns name, period, value[, note]; all rows or none (a bad line names its number)."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"name", "period", "value"} - set(reader.fieldnames or [])
        if missing:
            raise InputError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        rows = list(reader)
    with engine.begin() as conn:
        for number, row in enumerate(rows, start=2):
            try:
                value = float(row["value"])
            except (TypeError, ValueError):
                raise InputError(
                    f"{path}:{number}: value {row['value']!r} is not a number"
                ) from None
            try:
                add(
                    conn,
                    config,
                    row["name"].strip(),
                    row["period"].strip(),
                    value,
                    entered_by=entered_by,
                    note=(row.get("note") or f"imported from {path.name}").strip(),
                )
            except (InputError, ValueError) as exc:
                raise InputError(f"{path}:{number}: {exc}") from None
    return len(rows)


def entries(conn: Connection, name: str | None = None) -> list[Entry]:
    """The whole trail, oldest first, each row with the row that superseded it."""
    query = select(table).order_by(table.c.id)
    if name:
        query = query.where(table.c.name == name)
    rows = list(conn.execute(query))
    replaced = {r.supersedes: r.id for r in rows if r.supersedes is not None}
    return [
        Entry(
            r.id,
            r.name,
            r.period,
            r.value,
            r.unit,
            r.entered_by,
            r.entered_at.isoformat(),
            r.note,
            r.supersedes,
            replaced.get(r.id),
        )
        for r in rows
    ]


def _current_row(conn: Connection, name: str, label: str) -> Any:
    rows = list(
        conn.execute(
            select(table).where(table.c.name == name, table.c.period == label).order_by(table.c.id)
        )
    )
    superseded = {r.supersedes for r in rows}
    live = [r for r in rows if r.id not in superseded]
    return live[-1] if live else None


def current_value(conn: Connection, config: Config, name: str, period: Period) -> float | None:
    """The period's own figure, else one built from its months (all of them needed)."""
    row = _current_row(conn, name, period.label)
    if row is not None:
        return float(row.value)
    if period.grain in ("month", "week", "day"):
        return None
    months = periods_between(period.start, period.end, "month", config.zone)
    values = []
    for month in months:
        month_row = _current_row(conn, name, month.label)
        if month_row is None:
            return None
        values.append(float(month_row.value))
    spec = config.catalogue.inputs_by_name()[name]
    return sum(values) if spec.aggregate == "sum" else sum(values) / len(values)


def manual_values(
    conn: Connection,
    config: Config,
    metrics: Sequence[MetricSpec],
    periods: dict[str, Sequence[Period]],
) -> list[MetricValue]:
    """Values of the input kinds: n counts the figures used (0 = no data, Grey)."""
    out = []
    for metric in metrics:
        for period in periods.get(metric.id, ()):
            figures = [current_value(conn, config, name, period) for name in metric.inputs]
            value: float | None = None
            numerator = denominator = None
            if all(f is not None for f in figures):
                if metric.kind == "input":
                    value = numerator = figures[0]
                elif figures[1]:
                    numerator, denominator = figures[0], figures[1]
                    assert numerator is not None and denominator is not None
                    ratio = numerator / denominator
                    value = (
                        (ratio * metric.scale)
                        if metric.kind == "input_ratio"
                        else ((numerator - denominator) / denominator * 100.0)
                    )
            n = sum(f is not None for f in figures) if value is not None else 0
            out.append(MetricValue(metric.id, period, "all", value, numerator, denominator, n, {}))
    return out
