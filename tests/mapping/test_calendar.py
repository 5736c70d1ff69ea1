"""Business-hours calendars: working time between two moments, in the calendar's own zone."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mapping.calendar import WEEKDAYS, CalendarChoice, CalendarSpec

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


def shown(zone: ZoneInfo, wall: datetime) -> datetime:
    """The (UTC) moment the zone's clock first shows ``wall`` or, when it skips it, the first
    minute it does show after it: elapsed time, not wall time, is counted."""
    while True:
        moment = wall.replace(tzinfo=zone).astimezone(UTC)
        if moment.astimezone(zone).replace(tzinfo=None) == wall:
            return moment
        wall += timedelta(minutes=1)


def walked_seconds(spec: CalendarSpec, start: datetime, end: datetime) -> float:
    """The definition, day by day: each local day's working spans overlapped with the range."""
    zone = ZoneInfo(spec.zone)
    total = timedelta(0)
    day, last = start.astimezone(zone).date(), end.astimezone(zone).date()
    while day <= last:
        text = spec.hours.get(WEEKDAYS[day.weekday()])
        if text and day not in spec.holidays:
            for part in text.split(","):
                begin, finish = (t.strip() for t in part.split("-"))
                lo = shown(zone, datetime.combine(day, time.fromisoformat(begin)))
                if finish == "24:00":
                    hi = shown(zone, datetime.combine(day + timedelta(days=1), time(0)))
                else:
                    hi = shown(zone, datetime.combine(day, time.fromisoformat(finish)))
                overlap = min(hi, end) - max(lo, start)
                total += max(overlap, timedelta(0))
        day += timedelta(days=1)
    return total.total_seconds()


CALENDARS = [
    office(holidays=["2026-12-25", "2027-01-01"]),
    CalendarSpec(
        name="split",
        zone="America/New_York",
        hours={"mon": "08:00-12:00,13:00-17:00", "sat": "10:00-24:00"},
    ),
    CalendarSpec(
        name="24x7",
        zone="Europe/Amsterdam",
        hours=dict.fromkeys(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), "00:00-24:00"),
    ),
]
MOMENTS = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2028, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(
    calendar=st.sampled_from(CALENDARS),
    start=MOMENTS,
    end=MOMENTS,
)
def test_working_time_is_the_overlap_with_each_days_hours(
    calendar: CalendarSpec, start: datetime, end: datetime
) -> None:
    expected = walked_seconds(calendar, start, end) if end > start else 0.0
    assert calendar.clock().seconds(start, end) == pytest.approx(expected, abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(calendar=st.sampled_from(CALENDARS), moments=st.lists(MOMENTS, min_size=3, max_size=3))
def test_working_time_adds_up_over_consecutive_ranges(
    calendar: CalendarSpec, moments: list[datetime]
) -> None:
    a, b, c = sorted(moments)
    clock = calendar.clock()
    assert clock.seconds(a, b) + clock.seconds(b, c) == pytest.approx(clock.seconds(a, c), abs=1e-6)


def test_moments_decades_apart_are_counted_as_near_ones_are() -> None:
    clock = office().clock()
    clock.hours(local(2026, 5, 11, 9), local(2026, 5, 11, 10))  # the count starts near 2026
    start, end = local(1931, 5, 11, 9), local(1931, 5, 12, 9)  # Monday to Tuesday
    assert clock.hours(start, end) == 10.0
    assert clock.hours(local(1931, 5, 11, 9), local(2026, 5, 11, 10)) == pytest.approx(
        walked_seconds(office(), local(1931, 5, 11, 9), local(2026, 5, 11, 10)) / 3600
    )


def micros(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


# a Sunday span starting in the hour the spring change skips (02:00-03:00 in Amsterdam)
GAP_START = CalendarSpec(name="gap-start", zone="Europe/Amsterdam", hours={"sun": "02:45-03:15"})
WIDE_MOMENTS = st.datetimes(
    min_value=datetime(1960, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=150, deadline=None)
@given(
    calendar=st.sampled_from([*CALENDARS, GAP_START]),
    pairs=st.lists(st.tuples(MOMENTS, MOMENTS), min_size=1, max_size=20),
    far=st.lists(st.tuples(WIDE_MOMENTS, WIDE_MOMENTS), max_size=2),
)
def test_moments_as_epoch_microseconds_count_exactly_as_the_moments_do(
    calendar: CalendarSpec, pairs: list[tuple[datetime, datetime]], far: list[Any]
) -> None:
    """A grouped duration hands the clock numbers, not datetimes: every pair must come out
    as the same float, reversed and equal pairs 0, moments decades apart included."""
    clock = calendar.clock()
    every = pairs + far
    starts, ends = [micros(a) for a, _ in every], [micros(b) for _, b in every]
    assert clock.hours_of_pairs(starts, ends) == [clock.hours(a, b) for a, b in every]


def test_epoch_microseconds_on_span_edges_and_across_a_dst_change() -> None:
    clock = office(holidays=["2026-03-30"]).clock()
    edges = [
        (local(2026, 3, 27, 8), local(2026, 3, 27, 18)),  # a whole day, edge to edge
        (local(2026, 3, 27, 18), local(2026, 3, 31, 8)),  # end of Friday to Tuesday's start
        (local(2026, 3, 27, 17, 59, 59, 999999), local(2026, 3, 31, 8, 0, 0, 1)),  # 2 µs
        (local(2026, 10, 23, 12), local(2026, 10, 26, 12)),  # over the autumn change
        (local(2026, 5, 11, 12), local(2026, 5, 11, 9)),  # reversed
    ]
    starts, ends = [micros(a) for a, _ in edges], [micros(b) for _, b in edges]
    assert clock.hours_of_pairs(starts, ends) == [10.0, 0.0, 2 / 3_600_000_000, 10.0, 0.0]


def test_a_time_the_clock_skips_is_the_moment_it_jumps_to() -> None:
    """On 29 March 2026 Amsterdam's clock goes from 02:00 to 03:00 (01:00 UTC). Hours that
    start in the skipped hour are worked from 03:00; hours that end in it stop at the jump;
    hours wholly inside it are never worked."""
    jump = datetime(2026, 3, 29, 1, tzinfo=UTC)
    day = (datetime(2026, 3, 28, 20, tzinfo=UTC), datetime(2026, 3, 29, 8, tzinfo=UTC))
    expected = {
        "02:45-03:15": 0.25,  # 03:00-03:15
        "01:30-02:30": 0.5,  # 01:30-02:00
        "02:10-02:50": 0.0,
        "01:00-04:00": 2.0,  # three hours on the clock, two elapsed
    }
    for hours, worked in expected.items():
        spec = CalendarSpec(name="gap", zone="Europe/Amsterdam", hours={"sun": hours})
        clock = spec.clock()
        assert clock.hours(*day) == worked, hours
        assert clock.hours_of_pairs([micros(day[0])], [micros(day[1])]) == [worked], hours
        assert walked_seconds(spec, *day) / 3600 == worked, hours
    samoa = CalendarSpec(name="apia", zone="Pacific/Apia", hours=WEEKDAYS_8_18)
    # Samoa skipped Friday 30 December 2011: Wednesday, Thursday, Monday, Tuesday worked
    apia = (datetime(2011, 12, 28, 12, tzinfo=UTC), datetime(2012, 1, 3, 12, tzinfo=UTC))
    assert samoa.clock().hours(*apia) == walked_seconds(samoa, *apia) / 3600 == 40.0
    clock = GAP_START.clock()  # a quarter of an hour from the jump, counted to the microsecond
    assert clock.hours(jump - timedelta(minutes=30), jump + timedelta(minutes=10)) == 10 / 60
    assert clock.hours(jump + timedelta(minutes=5), jump + timedelta(hours=2)) == 10 / 60


GAP_ZONES = ["Europe/Amsterdam", "America/New_York", "Australia/Lord_Howe", "Pacific/Apia"]


GAP_MOMENTS = st.datetimes(
    min_value=datetime(2005, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=50, deadline=None)
@given(
    zone=st.sampled_from(GAP_ZONES),
    start=st.integers(0, 24 * 60 - 1),
    length=st.integers(1, 24 * 60),
    ranges=st.lists(st.tuples(GAP_MOMENTS, st.integers(0, 40 * 24)), min_size=1, max_size=3),
)
def test_hours_across_any_zones_changes_are_the_days_overlaps(
    zone: str, start: int, length: int, ranges: list[tuple[datetime, int]]
) -> None:
    """Every day of the week, one span anywhere in it, in zones whose clocks skip an hour,
    half an hour or (Samoa, 30 December 2011) a whole day: never less than nothing, and
    what the day-by-day definition gives, over ranges of up to 40 days."""
    end = min(start + length, 24 * 60)
    text = f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"
    spec = CalendarSpec(name="any", zone=zone, hours=dict.fromkeys(WEEKDAYS, text))
    clock = spec.clock()
    for a, hours in ranges:
        b = a + timedelta(hours=hours)
        seconds = clock.seconds(a, b)
        assert seconds >= 0
        assert seconds == pytest.approx(walked_seconds(spec, a, b), abs=1e-6)
