"""Stocks and flows: backlog open at period end, aged share, created versus resolved."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from daemon.defaults import config_dir
from mapping.catalogue import load_catalogue
from mapping.periods import parse_period
from mapping.stock import evaluate_interval

CATALOGUE = load_catalogue(config_dir() / "metrics.toml").by_id()
AMS = ZoneInfo("Europe/Amsterdam")
MAY = parse_period("2026-05", AMS)
END = MAY.end


def ticket(
    opened_days_before_end: float, resolved_days_before_end: float | None, **extra: Any
) -> dict[str, Any]:
    opened = END - timedelta(days=opened_days_before_end)
    resolved = (
        END - timedelta(days=resolved_days_before_end)
        if resolved_days_before_end is not None
        else None
    )
    return {
        "source": "snow",
        "state": "resolved",
        "priority": "P3",
        "assignment_group": "g",
        "opened_at": opened,
        "resolved_at": resolved,
        "closed_at": None,
        **extra,
    }


def only_all(values: list[Any]) -> Any:
    (value,) = [v for v in values if v.dimension == "all"]
    return value


def test_backlog_and_aged_share_as_of_the_period_end() -> None:
    rows = [
        ticket(40, None),  # open, aged
        ticket(10, None),  # open, young
        ticket(45, -1),  # resolved after the period ended: still open at its end, aged
        ticket(50, 5),  # resolved before the end: not in the backlog
        ticket(5, None, state="cancelled"),  # excluded and counted
        ticket(60, None, closed_at=END - timedelta(days=2)),  # closed without resolution: left
        ticket(-3, None),  # opened after the period: not yet in it
    ]
    backlog = only_all(evaluate_interval(CATALOGUE["I4B"], rows, [MAY]))
    assert (backlog.value, backlog.exclusions) == (3.0, {"cancelled": 1})
    aged = only_all(evaluate_interval(CATALOGUE["I4"], rows, [MAY]))
    assert (aged.numerator, aged.denominator) == (2, 3)
    assert aged.value == pytest.approx(200 / 3)


def test_created_versus_resolved_in_the_period() -> None:
    rows = [
        ticket(10, 5),  # created and resolved in May
        ticket(3, None),  # created in May
        ticket(40, 2),  # created in April, resolved in May
        ticket(20, None, state="cancelled"),  # excluded
        ticket(70, 40),  # all in March/April
    ]
    flow = only_all(evaluate_interval(CATALOGUE["I3"], rows, [MAY]))
    assert (flow.numerator, flow.denominator, flow.value) == (2, 2, 1.0)
    assert flow.exclusions == {"cancelled": 1}


def test_an_empty_period_has_no_value_but_is_present() -> None:
    value = only_all(evaluate_interval(CATALOGUE["I4"], [], [MAY]))
    assert value.value is None and value.n == 0
