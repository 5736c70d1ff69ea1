"""Evaluation of catalogue metrics over streamed canonical rows: a fixed registry of kinds, no eval.

Rows are plain mappings (never ORM objects). Each row is placed in every
requested period whose interval holds its cohort timestamp, then counted in
the ``all`` dimension and in one dimension per breakdown field. Every record a
rule removed is counted by the rule's name, so a number can be reconciled with
the list of tickets behind it.
"""

from __future__ import annotations

import bisect
import math
import statistics
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from mapping.calendar import CalendarChoice
from mapping.catalogue import MetricSpec
from mapping.periods import Period

ALL = "all"
MISSING = "(none)"


@dataclass
class MetricValue:
    """One metric in one period and dimension, with what it was computed from."""

    metric: str
    period: Period
    dimension: str
    value: float | None
    numerator: float | None
    denominator: float | None
    n: int
    exclusions: dict[str, int] = field(default_factory=dict)


@dataclass
class _Bucket:
    numerator: float = 0.0
    denominator: float = 0.0
    total: list[float] = field(default_factory=list)  # average: exact partial sums
    counted: int = 0  # average: how many values
    samples: array[float] = field(default_factory=lambda: array("d"))  # 8 bytes a value
    excluded: Counter[str] = field(default_factory=Counter)
    distinct: set[Any] = field(default_factory=set)  # per_distinct: the values seen


@dataclass(frozen=True)
class Outcome:
    """A record's part in a metric: its periods and dimensions, and why it counts or not."""

    found: tuple[int, ...]
    periods: tuple[Period, ...]
    dimensions: tuple[str, ...]
    reason: str | None  # the exclusion that removed it
    hit: bool  # ratio: in the numerator
    sample: float | None  # duration hours / averaged or summed value
    per: Any = None  # per_distinct: the value counted once (the agent)


@dataclass
class _Group:
    """Rows with identical periods, dimensions and outcome: a count and, if needed, samples."""

    count: int = 0
    samples: array[float] = field(default_factory=lambda: array("d"))
    total: list[float] = field(default_factory=list)  # average: exact partial sums (no samples)


def add_exactly(partials: list[float], value: float) -> None:
    """Add ``value`` to a sum kept as non-overlapping partials (Shewchuk, as math.fsum does).

    ``math.fsum(partials)`` is then the correctly rounded sum whatever order the values came
    in, so a value never depends on the order the database returned the records."""
    i = 0
    for other in partials:
        if abs(value) < abs(other):
            value, other = other, value
        high = value + other
        low = other - (high - value)
        if low:
            partials[i] = low
            i += 1
        value = high
    partials[i:] = [value]


def _ranked(samples: Sequence[float], ranks: Sequence[int]) -> list[float]:
    """The ``ranks``-th smallest samples (0-based), by partition rather than a sort: a
    year's durations put every record's hours in a bucket per period and breakdown, and
    sorting each bucket was the median's whole cost (0.4 s of a family's 1.1 s in Python)."""
    if isinstance(samples, array) and samples.typecode == "d":
        values = np.frombuffer(samples, dtype=np.float64)  # no copy
    else:
        values = np.asarray(samples, dtype=np.float64)
    placed = np.partition(values, ranks)
    return [float(placed[rank]) for rank in ranks]


def _median(samples: Sequence[float]) -> float:
    """As ``statistics.median``: the middle value, or the mean of the middle two."""
    n = len(samples)
    if n == 0:
        raise statistics.StatisticsError("no median for empty data")
    if n % 2:
        return _ranked(samples, [n // 2])[0]
    low, high = _ranked(samples, [n // 2 - 1, n // 2])
    return (low + high) / 2


def _percentile(samples: Sequence[float], q: int) -> float:
    """Linear-interpolated percentile (the 'inclusive' method spreadsheets use), exactly as
    ``statistics.quantiles(samples, n=100, method="inclusive")[q - 1]`` computes it."""
    n = len(samples)
    if n == 0:
        raise statistics.StatisticsError("no percentile for empty data")
    if n == 1:
        return float(samples[0])
    j, delta = divmod(q * (n - 1), 100)
    low, high = _ranked(samples, [j, j + 1])
    return (low * (100 - delta) + high * delta) / 100


STATISTICS: dict[str, Callable[[Sequence[float]], float]] = {
    "median": _median,
    "mean": statistics.fmean,
    "p90": lambda s: _percentile(s, 90),
}


_OUTSIDE = object()  # a fate: the row is not in the metric's population
FOUND_REMEMBERED = 8192  # moments whose periods an evaluation keeps (grouped rows repeat them)


class _PeriodIndex:
    """Finds the periods holding a moment with one bisect per grain; periods are small ints."""

    def __init__(self, periods: Sequence[Period]) -> None:
        self.periods = sorted(set(periods))
        by_grain: dict[str, list[int]] = defaultdict(list)
        for number, period in enumerate(self.periods):
            by_grain[period.grain].append(number)
        self._grains = [
            (
                [self.periods[i].start for i in numbers],
                [self.periods[i].end for i in numbers],
                numbers,
            )
            for numbers in by_grain.values()
        ]
        # Grouped rows carry their segment's start: a few thousand moments over a
        # recompute's 171,264 rows. Records streamed one by one fill it and then miss.
        self._found: dict[datetime, tuple[int, ...]] = {}

    def find(self, moment: datetime) -> tuple[int, ...]:
        known = self._found.get(moment)
        if known is not None:
            return known
        found = []
        for starts, ends, numbers in self._grains:
            i = bisect.bisect_right(starts, moment) - 1
            if i >= 0 and moment < ends[i]:
                found.append(numbers[i])
        answer = tuple(found)
        if len(self._found) < FOUND_REMEMBERED:
            self._found[moment] = answer
        return answer


class _Dimensions:
    """The dimension labels of a row ("all" and one per breakdown), built once per value."""

    def __init__(self, breakdowns: Sequence[str]) -> None:
        self._names = list(breakdowns)
        self._labels: list[dict[Any, str]] = [{} for _ in self._names]

    def of(self, row: Mapping[str, Any]) -> tuple[str, ...]:
        dims = [ALL]
        for name, labels in zip(self._names, self._labels, strict=True):
            value = row.get(name)
            label = labels.get(value)
            if label is None:
                label = labels[value] = f"{name}={MISSING if value is None else value}"
            dims.append(label)
        return tuple(dims)


class Evaluation:
    """One metric over a stream of rows: feed rows with :meth:`add`, then read :meth:`results`.

    Rows are not kept (only per-bucket sums, and samples for statistics that
    need them), so several metrics can share one pass over a large table.
    """

    def __init__(
        self,
        metric: MetricSpec,
        periods: Sequence[Period],
        calendars: CalendarChoice | None = None,
    ) -> None:
        self.metric = metric
        if metric.clock == "business" and calendars is None:
            raise ValueError(f"metric {metric.id} runs on a business clock: pass its calendars")
        self._calendars = calendars
        self._index = _PeriodIndex(periods)
        self._dimensions = _Dimensions(metric.breakdowns)
        self._population = metric.population()
        self._exclusions = metric.exclusions()
        self._numerator = metric.numerator_filter()
        self._sampled = metric.kind in ("duration", "sum")
        self._groups: dict[tuple[tuple[int, ...], tuple[str, ...], str | None, bool, Any], _Group]
        self._groups = {}
        self._fates: dict[Hashable, Any] = {}  # classify's fate_key -> _fate's answer

    def classify(self, row: Mapping[str, Any], fate_key: Hashable = None) -> Outcome | None:
        """What ``row`` contributes, or None when it falls in no requested period or population.

        The one place a record's fate is decided: evaluation and ``explain`` both use it,
        so the records an explanation lists always reproduce the value. Rows given the
        same ``fate_key`` differ only in their cohort moment (the database grouped them
        by every other field read), so their fate past the periods is decided once.
        """
        placed = self._placed(row, fate_key)
        if placed is None:
            return None
        found, (dimensions, reason, hit, sample, per) = placed
        periods = tuple(self._index.periods[n] for n in found)
        return Outcome(found, periods, dimensions, reason, hit, sample, per)

    def _placed(
        self, row: Mapping[str, Any], fate_key: Hashable
    ) -> tuple[tuple[int, ...], Any] | None:
        """``classify``'s answer as the period numbers and the fate, no object built: ``add``
        runs it once per grouped row (171,264 times for a recompute's reopen family)."""
        moment = row.get(self.metric.cohort)
        if moment is None:
            return None
        found = self._index.find(moment)
        if not found:
            return None
        fate = self._fates.get(fate_key) if fate_key is not None else None
        if fate is None:
            fate = self._fate(row)
            if fate_key is not None:
                self._fates[fate_key] = fate
        if fate is _OUTSIDE:
            return None
        return found, fate

    def _fate(self, row: Mapping[str, Any]) -> Any:
        """Everything ``classify`` decides but the periods (``_OUTSIDE``: not in the population)."""
        metric = self.metric
        if not self._population.matches(row):
            return _OUTSIDE
        reason = next((name for name, rule in self._exclusions if rule.matches(row)), None)
        sample: float | None = None
        per = None
        if reason is None and metric.kind == "duration":
            sample, reason = _duration_hours(metric, row, self._calendars)
        elif reason is None and metric.kind in ("average", "sum"):
            value = row.get(metric.value or "")
            sample, reason = (None, f"missing {metric.value}") if value is None else (value, None)
        elif reason is None and metric.kind == "per_distinct":
            per = row.get(metric.per or "")
            reason = f"missing {metric.per}" if per is None else None
        hit = metric.kind == "ratio" and reason is None and self._numerator.matches(row)
        return self._dimensions.of(row), reason, hit, sample, per

    def add(
        self,
        row: Mapping[str, Any],
        weight: int = 1,
        samples: Sequence[float] | None = None,
        fate_key: Hashable = None,
    ) -> None:
        """Count ``row`` (``weight`` identical rows: the database grouped them; for a duration,
        ``samples`` holds their hours, the row's own start and end only say they are valid)."""
        placed = self._placed(row, fate_key)  # classify's decision (see there)
        if placed is None:
            return
        found, (dimensions, reason, hit, sample, per) = placed
        # Rows that land in the same periods and dimensions with the same outcome are
        # counted together; buckets are filled once per group, not once per row.
        key = (found, dimensions, reason, hit, per)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group()
        group.count += weight
        if reason is not None:
            return
        if samples is not None:
            group.samples.extend(samples)
        elif self._sampled:
            value = float(sample)
            group.samples.extend([value] * weight) if weight > 1 else group.samples.append(value)
        elif sample is not None:  # average
            add_exactly(group.total, float(sample) * weight)

    def results(self) -> list[MetricValue]:
        if self._sampled:
            return self._sampled_results()
        periods = self._index.periods
        # keyed by the period's number: a Period's generated hash cost more than the adding
        buckets: dict[tuple[int, str], _Bucket] = {}
        for (found, dimensions, reason, hit, per), group in self._groups.items():
            for number in found:
                for dimension in dimensions:
                    bucket = buckets.get((number, dimension))
                    if bucket is None:
                        bucket = buckets[(number, dimension)] = _Bucket()
                    if reason is not None:
                        bucket.excluded[reason] += group.count
                    elif self.metric.kind == "average":
                        for part in group.total:
                            add_exactly(bucket.total, part)
                        bucket.counted += group.count
                    else:
                        bucket.denominator += group.count
                        if hit:
                            bucket.numerator += group.count
                        if per is not None:
                            bucket.distinct.add(per)
        return _results(self.metric, periods, buckets)

    def _sampled_results(self) -> list[MetricValue]:
        """Durations and sums, one bucket at a time: a record's samples land in every period
        and dimension holding it (a week, month, quarter and year, by each breakdown), so
        building every bucket first held each sample up to twenty times over."""
        periods = self._index.periods
        members: dict[tuple[int, str], list[_Group]] = defaultdict(list)  # by period number
        excluded: dict[tuple[int, str], Counter[str]] = defaultdict(Counter)
        for (found, dimensions, reason, _hit, _per), group in self._groups.items():
            for number in found:
                for dimension in dimensions:
                    key = (number, dimension)
                    if reason is not None:
                        excluded[key][reason] += group.count
                    else:
                        members[key].append(group)
        out = []
        keys = set(members) | set(excluded) | {(n, ALL) for n in range(len(periods))}
        for number, dimension in sorted(keys, key=_in_order):
            bucket = _Bucket(excluded=excluded.get((number, dimension), Counter()))
            for group in members.get((number, dimension), ()):
                bucket.samples.extend(group.samples)
            out.append(_value(self.metric, periods[number], dimension, bucket))
        return out


def evaluate(
    metric: MetricSpec,
    rows: Iterable[Mapping[str, Any]],
    periods: Sequence[Period],
    calendars: CalendarChoice | None = None,
) -> list[MetricValue]:
    """Compute ``metric`` for every period given (all dimensions) from canonical rows."""
    evaluation = Evaluation(metric, periods, calendars)
    for row in rows:
        evaluation.add(row)
    return evaluation.results()


def _duration_hours(
    metric: MetricSpec, row: Mapping[str, Any], calendars: CalendarChoice | None
) -> tuple[float | None, str | None]:
    start, end = row.get(metric.start or ""), row.get(metric.end or "")
    if start is None or end is None:
        return None, f"missing {metric.start if start is None else metric.end}"
    if end < start:
        return None, f"{metric.end} before {metric.start}"
    if calendars is not None and metric.clock == "business":
        clock = calendars.for_row(row.get("assignment_group"))
        if clock is None:
            return None, "no calendar"
        return clock.hours(start, end), None
    return (end - start).total_seconds() / 3600, None


def _results(
    metric: MetricSpec, periods: Sequence[Period], buckets: Mapping[tuple[int, str], _Bucket]
) -> list[MetricValue]:
    """Values of the buckets keyed by (period number, dimension); ``periods`` is sorted."""
    out = []
    # "all" always present: no data is explicit
    keys = set(buckets) | {(n, ALL) for n in range(len(periods))}
    for number, dimension in sorted(keys, key=_in_order):
        bucket = buckets.get((number, dimension), _Bucket())
        out.append(_value(metric, periods[number], dimension, bucket))
    return out


def _in_order(key: tuple[int, str]) -> tuple[int, bool, str]:
    """Period by period ("all" first, then the dimensions by name)."""
    return key[0], key[1] != ALL, key[1]


def empty_value(metric: MetricSpec, period: Period, dimension: str) -> MetricValue:
    """The value of a period and dimension no record reached (n = 0)."""
    return _value(metric, period, dimension, _Bucket())


def _value(metric: MetricSpec, period: Period, dimension: str, bucket: _Bucket) -> MetricValue:
    excluded = dict(bucket.excluded)
    if metric.kind == "sum":
        n = len(bucket.samples)
        total = math.fsum(bucket.samples) if n else None  # nothing to add up is no data, not 0
        return MetricValue(metric.id, period, dimension, total, total, None, n, excluded)
    if metric.kind == "average":
        n = bucket.counted
        total = math.fsum(bucket.total) if n else None
        mean = total / n if total is not None else None
        return MetricValue(metric.id, period, dimension, mean, total, n or None, n, excluded)
    if metric.kind == "duration":
        n = len(bucket.samples)
        value = STATISTICS[metric.statistic](bucket.samples) if n else None
        total = math.fsum(bucket.samples)
        return MetricValue(
            metric.id, period, dimension, value, total if n else None, n or None, n, excluded
        )
    n = int(bucket.denominator)
    if metric.kind == "count":
        return MetricValue(metric.id, period, dimension, float(n), float(n), None, n, excluded)
    if metric.kind == "per_distinct":
        agents = len(bucket.distinct)
        value = n / agents if agents else None
        return MetricValue(
            metric.id, period, dimension, value, float(n), float(agents), n, excluded
        )
    value = 100.0 * bucket.numerator / bucket.denominator if n else None
    return MetricValue(
        metric.id, period, dimension, value, bucket.numerator, bucket.denominator, n, excluded
    )
