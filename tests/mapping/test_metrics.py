"""Metric kinds over canonical rows: cohorts, exclusions counted, ratio of sums, breakdowns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.defaults import config_dir
from mapping import metrics as metrics_module
from mapping.catalogue import Catalogue, load_catalogue
from mapping.errors import SpecError
from mapping.metrics import evaluate
from mapping.periods import parse_period

AMS = ZoneInfo("Europe/Amsterdam")
MAY = parse_period("2026-05", AMS)
JUNE = parse_period("2026-06", AMS)


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue(config_dir() / "metrics.toml")


def incident(resolved: datetime | None, hours: float = 1.0, **fields: Any) -> dict[str, Any]:
    base = {
        "source": "snow",
        "state": "resolved",
        "priority": "P3",
        "assignment_group": "g1",
        "close_code": "solved",
        "reopen_count": 0,
        "sla_met": True,  # derived from made_sla or SLA cycles when metrics run
        "opened_at": resolved - timedelta(hours=hours) if resolved else None,
        "resolved_at": resolved,
    }
    return base | fields


def at(day: int, month: int = 5) -> datetime:
    return datetime(2026, month, day, 12, tzinfo=UTC)


def only_all(values: list[Any], period_label: str) -> Any:
    (value,) = [v for v in values if v.dimension == "all" and v.period.label == period_label]
    return value


def test_median_resolution_hours_with_exclusions_counted(catalogue: Catalogue) -> None:
    rows = [
        incident(at(3), 2),
        incident(at(4), 4),
        incident(at(5), 10),
        incident(at(6), 100, state="cancelled"),
        incident(at(7), 50, close_code="duplicate"),
        incident(at(8), 1, opened_at=None),
        incident(None),  # not resolved: not in any resolution cohort
        incident(at(2, 6), 7),  # June
    ]
    values = evaluate(catalogue.by_id()["I1"], rows, [MAY, JUNE])
    may = only_all(values, "2026-05")
    assert may.value == 4.0
    assert may.n == 3
    assert may.numerator == pytest.approx(16.0)
    assert may.exclusions == {"cancelled": 1, "duplicate": 1, "missing opened_at": 1}
    assert only_all(values, "2026-06").value == 7.0


def test_sla_attainment_is_a_ratio_of_records_not_of_daily_rates(catalogue: Catalogue) -> None:
    rows = [incident(at(1), sla_met=False)] + [incident(at(2)) for _ in range(9)]
    rows.append(incident(at(3), sla_met=None))
    value = only_all(evaluate(catalogue.by_id()["C1"], rows, [MAY]), "2026-05")
    assert (value.numerator, value.denominator, value.value) == (9, 10, 90.0)
    assert value.exclusions == {"no SLA": 1}


def test_reopen_rate_with_breakdown_by_priority(catalogue: Catalogue) -> None:
    rows = [
        incident(at(1), priority="P1", reopen_count=1),
        incident(at(1), priority="P1"),
        incident(at(2), priority="P3"),
        incident(at(2), priority="P3"),
    ]
    values = evaluate(catalogue.by_id()["C4"], rows, [MAY])
    by_dim = {v.dimension: v.value for v in values}
    assert by_dim["all"] == 25.0
    assert by_dim["priority=P1"] == 50.0
    assert by_dim["priority=P3"] == 0.0


def test_a_period_without_records_has_no_value_not_zero(catalogue: Catalogue) -> None:
    value = only_all(evaluate(catalogue.by_id()["C1"], [], [MAY]), "2026-05")
    assert value.value is None
    assert value.n == 0


def test_cohort_uses_reporting_zone_boundaries(catalogue: Catalogue) -> None:
    late = datetime(2026, 5, 31, 22, 30, tzinfo=UTC)  # 00:30 on 1 June in Amsterdam
    values = evaluate(catalogue.by_id()["C4"], [incident(late)], [MAY, JUNE])
    assert only_all(values, "2026-05").n == 0
    assert only_all(values, "2026-06").n == 1


def test_grains_are_evaluated_together(catalogue: Catalogue) -> None:
    q2 = parse_period("2026-Q2", AMS)
    values = evaluate(
        catalogue.by_id()["C4"], [incident(at(3)), incident(at(3, 6))], [MAY, JUNE, q2]
    )
    assert only_all(values, "2026-Q2").n == 2


def test_moments_past_those_an_evaluation_remembers_land_in_their_periods(
    catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An evaluation remembers the periods of the first moments it sees (grouped rows
    repeat their segment's start); records streamed one by one outrun that and are
    placed by their own moment, each in its week, month and quarter."""
    weeks = [parse_period(f"2026-W{w:02d}", AMS) for w in range(18, 28)]
    periods = [MAY, JUNE, parse_period("2026-Q2", AMS), *weeks]
    rows = [incident(at(3) + timedelta(hours=7 * i), reopen_count=i % 3) for i in range(200)]
    remembering = evaluate(catalogue.by_id()["C4"], rows, periods)
    monkeypatch.setattr(metrics_module, "FOUND_REMEMBERED", 3)
    forgetting = evaluate(catalogue.by_id()["C4"], rows, periods)
    assert forgetting == remembering
    by_label = {v.period.label: v.n for v in remembering if v.dimension == "all"}
    assert by_label["2026-Q2"] == by_label["2026-05"] + by_label["2026-06"] == 200
    assert sum(by_label[w.label] for w in weeks) == 200


def test_repeated_metric_ids_are_refused(tmp_path: Path) -> None:
    text = (config_dir() / "metrics.toml").read_text().replace('id = "C4"', 'id = "C1"')
    (tmp_path / "metrics.toml").write_text(text)
    with pytest.raises(SpecError, match="repeated: C1"):
        load_catalogue(tmp_path / "metrics.toml")


def change(closed: datetime | None, **fields: Any) -> dict[str, Any]:
    base = {
        "source": "snow",
        "state": "closed",
        "type": "normal",
        "close_code": "successful",
        "closed_at": closed,
    }
    return base | fields


def test_change_metrics_count_changes_not_incidents_with_each_exclusion(
    catalogue: Catalogue,
) -> None:
    rows = [
        change(at(2)),
        change(at(3), close_code="successful_issues", type="emergency"),
        change(at(4), close_code="unsuccessful", type="standard"),
        change(at(5), type="standard"),
        change(at(6), state="cancelled", close_code=None, type="emergency"),
        change(at(7), close_code=None, type=None),  # e.g. a Jira change without an outcome
        change(None),  # still open
    ]
    metrics = catalogue.by_id()
    i6 = only_all(evaluate(metrics["I6"], rows, [MAY]), "2026-05")
    assert (i6.numerator, i6.denominator) == (2, 4)  # "with issues" is not a success
    assert i6.exclusions == {"cancelled": 1, "no outcome": 1}
    i8 = only_all(evaluate(metrics["I8"], rows, [MAY]), "2026-05")
    assert (i8.numerator, i8.denominator) == (1, 4)
    assert i8.exclusions == {"cancelled": 1, "type unknown": 1}
    l4 = only_all(evaluate(metrics["L4"], rows, [MAY]), "2026-05")
    assert (l4.numerator, l4.denominator, l4.value) == (2, 4, 50.0)


def test_incident_share_metrics(catalogue: Catalogue) -> None:
    rows = [
        incident(at(2), priority="P1", reassignment_count=0, problem_id="p1"),
        incident(at(3), priority="P2", reassignment_count=2),
        incident(at(4), priority="P3", reassignment_count=0),
        incident(at(5), priority=None, reassignment_count=None),
        incident(at(6), state="cancelled", priority="P1", reassignment_count=0),
    ]
    metrics = catalogue.by_id()
    c5 = only_all(evaluate(metrics["C5"], rows, [MAY]), "2026-05")
    assert (c5.numerator, c5.denominator) == (2, 3)
    assert c5.exclusions == {"cancelled": 1, "reassignments unknown": 1}
    c7 = only_all(evaluate(metrics["C7"], rows, [MAY]), "2026-05")
    assert (c7.numerator, c7.denominator) == (2, 3)
    assert c7.exclusions == {"cancelled": 1, "priority unmapped": 1}
    i11 = only_all(evaluate(metrics["I11"], rows, [MAY]), "2026-05")
    assert (i11.numerator, i11.denominator) == (1, 4)


def test_satisfaction_counts_four_and_five_of_five(catalogue: Catalogue) -> None:
    rows = [
        {"source": "jsm", "rating": r, "responded_at": at(d)}
        for d, r in ((2, 5), (3, 4), (4, 3), (5, 1), (6, None))
    ]
    c3 = only_all(evaluate(catalogue.by_id()["C3"], rows, [MAY]), "2026-05")
    assert (c3.numerator, c3.denominator, c3.value) == (2, 4, 50.0)
    assert c3.exclusions == {"no rating": 1}


def test_durations_to_first_response_and_fulfilment(catalogue: Catalogue) -> None:
    metrics = catalogue.by_id()
    responded = [
        incident(at(3), first_response_at=at(2), opened_at=at(2) - timedelta(hours=h))
        for h in (0.5, 1.0, 4.0)
    ]
    i2 = only_all(evaluate(metrics["I2"], responded, [MAY]), "2026-05")
    assert (i2.value, i2.n) == (1.0, 3)
    items = [
        {
            "source": "snow",
            "state": "closed_complete",
            "opened_at": at(d) - timedelta(hours=h),
            "closed_at": at(d),
        }
        for d, h in ((2, 10), (3, 30), (4, 20))
    ] + [{"source": "snow", "state": "cancelled", "opened_at": at(1), "closed_at": at(5)}]
    i12 = only_all(evaluate(metrics["I12"], items, [MAY]), "2026-05")
    assert (i12.value, i12.n, i12.exclusions) == (20.0, 3, {"cancelled": 1})


SAMPLE_LISTS = st.lists(
    st.one_of(
        st.floats(min_value=0, max_value=1e6, allow_nan=False),
        st.sampled_from([0.0, 0.5, 1.25, 7.0]),  # ties, as rounded durations give
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(samples=SAMPLE_LISTS)
def test_median_and_p90_are_the_standard_librarys_to_the_last_bit(samples: list[float]) -> None:
    """Order statistics are taken by partition, not by sorting; the value must be exactly
    statistics.median's and the spreadsheet (inclusive) percentile's, from an array or a list."""
    import statistics
    from array import array

    from mapping.metrics import STATISTICS

    expected_p90 = (
        samples[0]
        if len(samples) == 1
        else statistics.quantiles(samples, n=100, method="inclusive")[89]
    )
    for given_as in (samples, array("d", samples)):
        assert STATISTICS["median"](given_as) == statistics.median(samples)
        assert STATISTICS["p90"](given_as) == expected_p90
