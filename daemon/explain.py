"""``itbsc explain``: one metric value and the records behind it, read from the canonical store."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from daemon.compute import canonical_rows
from daemon.settings import Config
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
    if metric.live:
        raise ValueError(
            f"{metric_id} is a {metric.kind} metric; listing its records is not supported yet"
        )
    schema = KINDS[metric.record]
    columns = set(metric.required_fields()) | {"source", "source_id"}
    if "number" in schema.fields:
        columns.add("number")
    with engine.connect() as conn:
        rows = canonical_rows(
            conn, config, metric.record, metric.cohort, sorted(columns), period.start, period.end
        )
        return explain(metric, rows, period, dimension)


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
        "cohort": metric.cohort,
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
                metric.cohort: r.cohort_at.isoformat(),
                "part": r.part,
                "reason": r.reason,
                "sample": r.sample,
            }
            for r in explanation.records
        ],
    }
