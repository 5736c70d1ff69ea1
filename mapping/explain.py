"""Explain one metric value: the records behind it, each with its part, reproducing the number.

Every record whose cohort time falls in the period and dimension is listed
with what happened to it — in the numerator, in the denominator only,
sampled (with its hours), or removed by a named exclusion — decided by the
same code that computes the value (``Evaluation.classify``). Re-adding the
listed parts gives the value; a test holds the two equal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mapping.catalogue import MetricSpec
from mapping.metrics import STATISTICS, Evaluation, MetricValue, empty_value
from mapping.periods import Period


@dataclass(frozen=True)
class RecordPart:
    source: str
    source_id: str
    number: str | None
    cohort_at: datetime
    part: str  # "numerator", "denominator", "sample", "counted", or "excluded"
    reason: str | None = None
    sample: float | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass
class Explanation:
    metric: MetricSpec
    period: Period
    dimension: str
    value: MetricValue
    records: list[RecordPart] = field(default_factory=list)

    def reproduced(self) -> tuple[float | None, float | None, float | None, dict[str, int]]:
        """(value, numerator, denominator, exclusions) recomputed from the listed records only."""
        excluded: dict[str, int] = {}
        for record in self.records:
            if record.part == "excluded" and record.reason:
                excluded[record.reason] = excluded.get(record.reason, 0) + 1
        kind = self.metric.kind
        if kind in ("duration", "average"):
            samples = [
                r.sample for r in self.records if r.part == "sample" and r.sample is not None
            ]
            statistic = STATISTICS[self.metric.statistic if kind == "duration" else "mean"]
            value = statistic(samples) if samples else None
            return value, (sum(samples) if samples else None), (len(samples) or None), excluded
        counted = [r for r in self.records if r.part in ("numerator", "denominator", "counted")]
        if kind == "count":
            return float(len(counted)), float(len(counted)), None, excluded
        hits = sum(1 for r in counted if r.part == "numerator")
        value = 100.0 * hits / len(counted) if counted else None
        return value, float(hits), float(len(counted)), excluded


def explain(
    metric: MetricSpec,
    rows: Iterable[Mapping[str, Any]],
    period: Period,
    dimension: str = "all",
) -> Explanation:
    """The value of ``metric`` in ``period`` and ``dimension`` with every record behind it."""
    evaluation = Evaluation(metric, [period])
    parts: list[RecordPart] = []
    for row in rows:
        outcome = evaluation.classify(row)
        if outcome is None or dimension not in outcome.dimensions:
            continue
        evaluation.add(row)
        if outcome.reason is not None:
            part = "excluded"
        elif metric.kind in ("duration", "average"):
            part = "sample"
        elif metric.kind == "count":
            part = "counted"
        else:
            part = "numerator" if outcome.hit else "denominator"
        parts.append(
            RecordPart(
                source=str(row.get("source")),
                source_id=str(row.get("source_id")),
                number=row.get("number"),
                cohort_at=row[metric.cohort],
                part=part,
                reason=outcome.reason,
                sample=outcome.sample,
                start=row.get(metric.start) if metric.start else None,
                end=row.get(metric.end) if metric.end else None,
            )
        )
    values = [v for v in evaluation.results() if v.dimension == dimension]
    value = values[0] if values else empty_value(metric, period, dimension)
    parts.sort(key=lambda p: (p.cohort_at, p.source, p.source_id))
    return Explanation(metric, period, dimension, value, parts)
