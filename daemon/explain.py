"""``itbsc explain``: one metric value and the records behind it, read from the canonical store."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from daemon.compute import canonical_rows, interval_rows
from daemon.settings import Config
from mapping.catalogue import STOCK_KINDS, MetricSpec
from mapping.explain import Explanation, explain
from mapping.model import KINDS
from mapping.periods import Period


def explain_metric(
    engine: Engine, config: Config, metric_id: str, period: Period, dimension: str = "all"
) -> Explanation:
    """Everything ``metric_id`` counted in ``period`` (and ``dimension``), record by record."""
    metric = config.catalogue.by_id()[metric_id]
    if metric.manual:
        raise ValueError(f"{metric_id} is read from manual inputs; `itbsc input list` shows them")
    if metric.composite:
        raise ValueError(f"{metric_id} combines {', '.join(metric.of)}: explain those")
    schema = KINDS[metric.record]
    columns = set(metric.required_fields()) | {"source", "source_id"}
    if "number" in schema.fields:
        columns.add("number")
    with engine.connect() as conn:
        if metric.live:  # stocks and flows: every record open at, started or ended in it
            rows = interval_rows(conn, metric, [period], sorted(columns))
            return explain(metric, rows, period, dimension)
        rows = canonical_rows(
            conn, config, metric.record, metric.cohort, sorted(columns), period.start, period.end
        )
        calendars = config.catalogue.calendar_choice(metric)
        return explain(metric, rows, period, dimension, calendars)


def explanation_json(explanation: Explanation, config: Config) -> dict[str, Any]:
    from daemon.compute import mapping_version

    metric, value = explanation.metric, explanation.value
    return {
        "metric": metric.id,
        "name": metric.name,
        "definition": metric.description,
        "kind": metric.kind,
        "unit": metric.unit,
        "record": metric.record,
        "cohort": cohort(metric),
        "start_field": metric.start,
        "end_field": end_field(metric),
        "timezone": config.zone.key,  # the periods' zone; the records' moments are UTC
        "period": explanation.period.label,
        "dimension": explanation.dimension,
        "value": value.value,
        "numerator": value.numerator,
        "denominator": value.denominator,
        "n": value.n,
        "exclusions": value.exclusions,
        "mapping_version": mapping_version(config),
        "records": [
            {
                "source": r.source,
                "source_id": r.source_id,
                "number": r.number,
                cohort(metric): r.cohort_at.isoformat(),
                "part": r.part,
                "reason": r.reason,
                "sample": r.sample,
                "start": r.start.isoformat() if r.start else None,
                "end": r.end.isoformat() if r.end else None,
                **({metric.per or "per": r.per} if metric.kind == "per_distinct" else {}),
            }
            for r in explanation.records
        ],
    }


def cohort(metric: MetricSpec) -> str:
    """The timestamp that places a record: the cohort, or a stock's start."""
    return metric.cohort or metric.start or ""


def end_field(metric: MetricSpec) -> str | None:
    """What a record's ``end`` is: a duration's or flow's end, or the first of the moments that
    take a record out of a stock."""
    if metric.kind in STOCK_KINDS and metric.kind != "flow_ratio":
        return " / ".join(metric.closed_by) or None
    return metric.end


def moment_columns(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(heading, record key) of the moments a record was measured by, beside its cohort time:
    a duration's start and end, a stock's closing — so the listed records show the timestamps
    each value used."""
    placed = data["cohort"]
    columns = [(data["start_field"], "start"), (data["end_field"], "end")]
    return [(name, key) for name, key in columns if name and name != placed]
