"""Periods are cut in the reporting zone, labelled as people say them."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from mapping.periods import parse_period, period_containing, periods_between, previous_period

AMS = ZoneInfo("Europe/Amsterdam")


def test_month_starts_at_local_midnight() -> None:
    october = parse_period("2026-10", AMS)
    assert october.start == datetime(2026, 9, 30, 22, 0, tzinfo=UTC)  # CEST, UTC+2
    assert october.end == datetime(2026, 10, 31, 23, 0, tzinfo=UTC)  # CET, UTC+1


def test_a_late_utc_evening_belongs_to_the_next_local_day_and_month() -> None:
    moment = datetime(2026, 10, 31, 23, 30, tzinfo=UTC)  # 00:30 on 1 November in Amsterdam
    assert period_containing(moment, "month", AMS).label == "2026-11"
    assert period_containing(moment, "day", AMS).label == "2026-11-01"


def test_dst_day_has_23_hours() -> None:
    day = parse_period("2026-03-29", AMS)
    assert (day.end - day.start).total_seconds() == 23 * 3600


@pytest.mark.parametrize(
    ("text", "grain", "start_local"),
    [
        ("2026-W01", "week", datetime(2025, 12, 29)),
        ("2026-Q3", "quarter", datetime(2026, 7, 1)),
        ("2026", "year", datetime(2026, 1, 1)),
        ("2026-02-14", "day", datetime(2026, 2, 14)),
    ],
)
def test_parse_period_forms(text: str, grain: str, start_local: datetime) -> None:
    period = parse_period(text, AMS)
    assert period.grain == grain
    assert period.label == text
    assert period.start == start_local.replace(tzinfo=AMS).astimezone(UTC)


def test_range_includes_its_last_day_and_previous_range_has_same_length() -> None:
    window = parse_period("2026-01-01..2026-01-31", AMS)
    assert window.end == datetime(2026, 1, 31, 23, 0, tzinfo=UTC)
    before = previous_period(window, AMS)
    assert before.end == window.start
    assert before.end - before.start == window.end - window.start


def test_previous_of_january_is_december() -> None:
    assert previous_period(parse_period("2026-01", AMS), AMS).label == "2025-12"


def test_periods_between_covers_the_interval() -> None:
    labels = [
        p.label
        for p in periods_between(
            parse_period("2026-01", AMS).start, parse_period("2026-03", AMS).end, "month", AMS
        )
    ]
    assert labels == ["2026-01", "2026-02", "2026-03"]


def test_bad_period_text_says_what_forms_work() -> None:
    with pytest.raises(ValueError, match="2026-Q3"):
        parse_period("Oct 2026", AMS)
