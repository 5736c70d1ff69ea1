"""Business-hours calendars: working time between two moments, in the calendar's own zone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from mapping.calendar import CalendarChoice, CalendarSpec

AMS = ZoneInfo("Europe/Amsterdam")
WEEKDAYS_8_18 = dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), "08:00-18:00")


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=AMS)


def office(**extra: object) -> CalendarSpec:
    return CalendarSpec.model_validate(
        {"name": "office", "zone": "Europe/Amsterdam", "hours": WEEKDAYS_8_18, **extra}
    )


def test_a_weekend_does_not_count() -> None:
    clock = office().clock()
    # Friday 17:00 -> Monday 09:00: one hour on Friday, one on Monday
    assert clock.hours(local(2026, 5, 8, 17), local(2026, 5, 11, 9)) == 2.0


def test_a_holiday_does_not_count() -> None:
    clock = office(holidays=["2026-12-25"]).clock()
    # Thursday 24 Dec 17:00 -> Monday 28 Dec 10:00: 1 h Thu, Fri is Christmas, 2 h Mon
    assert clock.hours(local(2026, 12, 24, 17), local(2026, 12, 28, 10)) == 3.0


def test_time_outside_working_hours_counts_nothing() -> None:
    clock = office().clock()
    assert clock.hours(local(2026, 5, 9, 10), local(2026, 5, 10, 20)) == 0.0  # a weekend
    assert clock.hours(local(2026, 5, 11, 19), local(2026, 5, 12, 7)) == 0.0  # a night


def test_a_lunch_break_splits_the_day() -> None:
    spec = CalendarSpec(
        name="split", zone="Europe/Amsterdam", hours={"mon": "08:00-12:00,13:00-17:00"}
    )
    assert spec.clock().hours(local(2026, 5, 11, 11), local(2026, 5, 11, 14)) == 2.0


def test_days_are_cut_in_the_calendars_zone_not_utc() -> None:
    clock = office().clock()
    # 07:30 UTC on a May Monday is 09:30 in Amsterdam: 30 minutes already worked by 10:00
    start = datetime(2026, 5, 11, 7, 30, tzinfo=UTC)
    assert clock.hours(start, local(2026, 5, 11, 10)) == 0.5


def test_a_dst_night_has_23_hours_on_a_round_the_clock_calendar() -> None:
    always = dict.fromkeys(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), "00:00-24:00")
    clock = CalendarSpec(name="24x7", zone="Europe/Amsterdam", hours=always).clock()
    assert clock.hours(local(2026, 3, 28, 12), local(2026, 3, 29, 12)) == 23.0
    assert clock.hours(local(2026, 10, 24, 12), local(2026, 10, 25, 12)) == 25.0


def test_the_group_calendar_applies_unless_the_metric_names_one() -> None:
    always = dict.fromkeys(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), "00:00-24:00")
    calendars = {
        "office": office(),
        "24x7": CalendarSpec(name="24x7", zone="UTC", hours=always),
    }
    choice = CalendarChoice(calendars, "office", {"network": "24x7"})
    start, end = local(2026, 5, 9, 10), local(2026, 5, 9, 14)  # a Saturday
    assert choice.for_row("network").hours(start, end) == 4.0  # type: ignore[union-attr]
    assert choice.for_row("desk").hours(start, end) == 0.0  # type: ignore[union-attr]
    fixed = CalendarChoice(calendars, "office", {"network": "24x7"}, fixed="office")
    assert fixed.for_row("network").hours(start, end) == 0.0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("hours", "message"),
    [
        ({"mo": "08:00-18:00"}, "not a weekday"),
        ({"mon": "8-18"}, "is not HH:MM-HH:MM"),
        ({"mon": "18:00-08:00"}, "within one day"),
        ({"mon": "08:00-12:00,11:00-13:00"}, "overlap"),
    ],
)
def test_bad_hours_are_refused_with_what_is_wrong(hours: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CalendarSpec(name="bad", hours=hours)
