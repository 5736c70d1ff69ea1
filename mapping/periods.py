"""Reporting periods cut in the reporting time zone: day, ISO week, month, quarter, year, ranges.

Boundaries are local midnights converted to UTC, so a month in
Europe/Amsterdam starts at 22:00 or 23:00 UTC the day before, and DST days
have 23 or 25 hours, as the people reading the scorecard expect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator

Grain = Literal["day", "week", "month", "quarter", "year", "range"]
GRAINS: tuple[Grain, ...] = ("day", "week", "month", "quarter", "year")


def checked_zone(name: str) -> str:
    """``name`` if it is an IANA time zone; a ValueError that says so otherwise (for validators)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name such as Europe/Amsterdam)"
        ) from None
    return name


ZoneName = Annotated[str, AfterValidator(checked_zone)]
"""A config field holding an IANA time zone name, validated."""


@dataclass(frozen=True, order=True)
class Period:
    """A half-open interval [start, end) in UTC with the label people use for it."""

    start: datetime
    end: datetime
    grain: Grain
    label: str

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def _first_day(day: date, grain: Grain) -> date:
    if grain == "day":
        return day
    if grain == "week":
        return day - timedelta(days=day.weekday())
    if grain == "month":
        return day.replace(day=1)
    if grain == "quarter":
        return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    if grain == "year":
        return date(day.year, 1, 1)
    raise ValueError(f"no calendar grain {grain!r}")


def _next_first_day(first: date, grain: Grain) -> date:
    if grain == "day":
        return first + timedelta(days=1)
    if grain == "week":
        return first + timedelta(days=7)
    months = {"month": 1, "quarter": 3, "year": 12}[grain]
    index = first.year * 12 + first.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _label(first: date, grain: Grain) -> str:
    if grain == "day":
        return first.isoformat()
    if grain == "week":
        iso = first.isocalendar()
        return f"{iso.year}-W{iso.week:02d}"
    if grain == "month":
        return f"{first.year}-{first.month:02d}"
    if grain == "quarter":
        return f"{first.year}-Q{(first.month - 1) // 3 + 1}"
    return str(first.year)


def _period(first: date, grain: Grain, zone: ZoneInfo) -> Period:
    end = _next_first_day(first, grain)
    return Period(
        _local_midnight(first, zone), _local_midnight(end, zone), grain, _label(first, grain)
    )


def period_containing(moment: datetime, grain: Grain, zone: ZoneInfo) -> Period:
    """The period of ``grain`` that holds ``moment`` (an aware datetime)."""
    return _period(_first_day(moment.astimezone(zone).date(), grain), grain, zone)


def next_period(period: Period, zone: ZoneInfo) -> Period:
    return period_containing(period.end, period.grain, zone)


def previous_period(period: Period, zone: ZoneInfo) -> Period:
    """The period before: the preceding calendar period, or for a range the same length before."""
    if period.grain == "range":
        length = period.end - period.start
        start, end = period.start - length, period.start
        return Period(
            start, end, "range", f"{_day(start, zone)}..{_day(end - timedelta(seconds=1), zone)}"
        )
    return period_containing(period.start - timedelta(seconds=1), period.grain, zone)


def _day(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).date().isoformat()


def periods_between(start: datetime, end: datetime, grain: Grain, zone: ZoneInfo) -> list[Period]:
    """Every period of ``grain`` that overlaps [start, end)."""
    out: list[Period] = []
    period = period_containing(start, grain, zone)
    while period.start < end:
        out.append(period)
        period = next_period(period, zone)
    return out


def date_range(first: date, last: date, zone: ZoneInfo) -> Period:
    """An ad-hoc range of whole local days, ``last`` included."""
    if last < first:
        raise ValueError(f"range ends ({last}) before it starts ({first})")
    end = _local_midnight(last + timedelta(days=1), zone)
    return Period(
        _local_midnight(first, zone), end, "range", f"{first.isoformat()}..{last.isoformat()}"
    )


_PATTERNS: tuple[tuple[re.Pattern[str], Grain], ...] = (
    (re.compile(r"^(\d{4})-(\d{2})-(\d{2})$"), "day"),
    (re.compile(r"^(\d{4})-W(\d{2})$"), "week"),
    (re.compile(r"^(\d{4})-(\d{2})$"), "month"),
    (re.compile(r"^(\d{4})-Q([1-4])$"), "quarter"),
    (re.compile(r"^(\d{4})$"), "year"),
)


def parse_period(text: str, zone: ZoneInfo) -> Period:
    """``2026-10-05``, ``2026-W40``, ``2026-10``, ``2026-Q3``, ``2026`` or ``FIRST..LAST`` days."""
    text = text.strip()
    if ".." in text:
        first_text, _, last_text = text.partition("..")
        return date_range(date.fromisoformat(first_text), date.fromisoformat(last_text), zone)
    for pattern, grain in _PATTERNS:
        match = pattern.match(text)
        if not match:
            continue
        year, *rest = (int(g) for g in match.groups())
        if grain == "day":
            first = date(year, rest[0], rest[1])
        elif grain == "week":
            first = date.fromisocalendar(year, rest[0], 1)
        elif grain == "month":
            first = date(year, rest[0], 1)
        elif grain == "quarter":
            first = date(year, 3 * (rest[0] - 1) + 1, 1)
        else:
            first = date(year, 1, 1)
        return _period(first, grain, zone)
    raise ValueError(
        f"cannot read period {text!r}; use 2026-10-05, 2026-W40, 2026-10, 2026-Q3, 2026 "
        "or 2026-01-01..2026-03-31"
    )


def _year_earlier(day: date) -> date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)


def same_period_last_year(period: Period, zone: ZoneInfo) -> Period:
    """The period a year before: the same month, quarter, ISO week number or days (L5-style)."""
    first = period.start.astimezone(zone).date()
    if period.grain == "range":
        last = (period.end - timedelta(seconds=1)).astimezone(zone).date()
        return date_range(_year_earlier(first), _year_earlier(last), zone)
    if period.grain == "week":
        iso = first.isocalendar()
        week = min(iso.week, date(iso.year - 1, 12, 28).isocalendar().week)
        return _period(date.fromisocalendar(iso.year - 1, week, 1), "week", zone)
    return _period(_year_earlier(first), period.grain, zone)
