"""Invariants of the metric engine and the mapping, for arbitrary inputs (hypothesis)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.defaults import config_dir
from mapping.catalogue import Catalogue, load_catalogue
from mapping.metrics import evaluate
from mapping.model import KINDS
from mapping.periods import parse_period, periods_between
from mapping.spec import load_mapping
from mapping.translate import SkippedRecord, Translator

ZONE = ZoneInfo("Europe/Amsterdam")
CATALOGUE: Catalogue = load_catalogue(config_dir() / "metrics.toml")
MAPPING = load_mapping(config_dir() / "mappings" / "servicenow.toml")
START = datetime(2026, 1, 1, tzinfo=UTC)

incidents = st.lists(
    st.fixed_dictionaries(
        {
            "source": st.sampled_from(["snow", "jsm"]),
            "state": st.sampled_from(["resolved", "closed", "cancelled", None]),
            "priority": st.sampled_from(["P1", "P2", "P3", "P4", None]),
            "close_code": st.sampled_from(["solved", "duplicate", None]),
            "reopen_count": st.one_of(st.none(), st.integers(0, 3)),
            "reassignment_count": st.one_of(st.none(), st.integers(0, 5)),
            "sla_met": st.one_of(st.none(), st.booleans()),
            "problem_id": st.one_of(st.none(), st.just("p")),
            "assignment_group": st.sampled_from(["desk", "network", None]),
            "assigned_to": st.sampled_from(["ann", "bob", "cy", None]),
            "kb_used": st.one_of(st.none(), st.booleans()),
            "auto_resolved": st.one_of(st.none(), st.booleans()),
            "tier": st.sampled_from(["L1", "L2", None]),
            "unit_cost": st.one_of(st.none(), st.sampled_from([22.0, 84.0])),
            "opened": st.integers(0, 180 * 24),
            "hours": st.floats(-5, 500, allow_nan=False),
        }
    ),
    max_size=60,
)


def rows(drawn: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for d in drawn:
        opened = START + timedelta(hours=d["opened"])
        out.append({**d, "opened_at": opened, "resolved_at": opened + timedelta(hours=d["hours"])})
    return out


Q1 = parse_period("2026-Q1", ZONE)
MONTHS = periods_between(Q1.start, Q1.end - timedelta(seconds=1), "month", ZONE)
RECORD_METRICS = [m for m in CATALOGUE.record_metrics() if m.record == "incident"]


@settings(max_examples=60, deadline=None)
@given(incidents, st.integers(0, 2**32))
def test_record_order_never_changes_a_value(drawn: list[dict[str, Any]], seed: int) -> None:
    data = rows(drawn)
    shuffled = list(data)
    random.Random(seed).shuffle(shuffled)
    for metric in RECORD_METRICS:
        clocks = CATALOGUE.calendar_choice(metric)
        a = evaluate(metric, data, [Q1, *MONTHS], clocks)
        b = evaluate(metric, shuffled, [Q1, *MONTHS], clocks)
        assert [(v.period, v.dimension, v.n, v.exclusions) for v in a] == [
            (v.period, v.dimension, v.n, v.exclusions) for v in b
        ]
        for x, y in zip(a, b, strict=True):
            assert x.value == pytest.approx(y.value)


@settings(max_examples=60, deadline=None)
@given(incidents)
def test_ratios_stay_within_0_and_100_and_roll_up_as_ratio_of_sums(
    drawn: list[dict[str, Any]],
) -> None:
    data = rows(drawn)
    for metric in (m for m in RECORD_METRICS if m.kind == "ratio"):
        values = evaluate(metric, data, [Q1, *MONTHS])
        alls = {v.period: v for v in values if v.dimension == "all"}
        for value in values:
            if value.value is not None:
                assert 0.0 <= value.value <= 100.0
                assert value.numerator is not None and value.denominator is not None
                assert value.numerator <= value.denominator
        quarter = alls[Q1]
        assert quarter.numerator == sum(alls[m].numerator or 0 for m in MONTHS)
        assert quarter.denominator == sum(alls[m].denominator or 0 for m in MONTHS)
        total_excluded = sum(sum(alls[m].exclusions.values()) for m in MONTHS)
        assert sum(quarter.exclusions.values()) == total_excluded


source_values = st.one_of(
    st.none(),
    st.text(max_size=300),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
    st.lists(st.text(max_size=5), max_size=3),
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "state",
                "priority",
                "opened_at",
                "resolved_at",
                "reopen_count",
                "made_sla",
                "sys_created_on",
                "reassignment_count",
                "number",
                "close_code",
                "junk",
            ]
        ),
        source_values,
    )
)
def test_any_source_record_is_mapped_or_skipped_with_a_reason(record: dict[str, Any]) -> None:
    assert MAPPING.incident is not None
    translator = Translator(KINDS["incident"], MAPPING.incident, MAPPING, "snow")
    try:
        mapped = translator.translate("id-1", START, record)
    except SkippedRecord as exc:
        assert str(exc)  # a reason, counted and logged by the pipeline
        return
    assert mapped["source_id"] == "id-1"
    for name, kind in KINDS["incident"].fields.items():
        value = mapped[name]
        if value is None:
            continue
        expected = {"str": str, "code": str, "int": int, "bool": bool, "datetime": datetime}[kind]
        assert isinstance(value, expected), (name, value)
