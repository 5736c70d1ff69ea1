"""Business-hours calendars: working hours per weekday in a zone, minus holidays.

Durations "in business hours" count only the seconds inside working hours,
as a service desk's SLA clock does. Days are cut in the calendar's own zone,
so a DST day has its working hours at the local clock times.
"""

from __future__ import annotations

import itertools
import re
from bisect import bisect_right
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mapping.periods import ZoneName

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_COUNTED_DAYS = 40 * 366  # a running count longer than this: walk the days instead
_SPAN = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def _spans(text: str) -> list[tuple[int, int]]:
    """``"08:00-12:00, 13:00-17:30"`` -> [(28800, 43200), (46800, 63000)] seconds of the day."""
    spans = []
    for part in text.split(","):
        match = _SPAN.match(part)
        if not match:
            raise ValueError(f"{part.strip()!r} is not HH:MM-HH:MM")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        start, end = h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60
        if not (0 <= start < end <= 86400) or m1 > 59 or m2 > 59:
            raise ValueError(f"{part.strip()!r} is not a span within one day (up to 24:00)")
        spans.append((start, end))
    spans.sort()
    for (_, end), (start, _) in itertools.pairwise(spans):
        if start < end:
            raise ValueError(f"{text!r}: spans overlap")
    return spans


class CalendarSpec(BaseModel):
    """``[[calendar]]``: a name, a zone, ``hours`` per weekday (absent = closed), holidays."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    zone: ZoneName = "UTC"
    hours: dict[str, str]
    holidays: list[date] = Field(default_factory=list)

    @field_validator("hours")
    @classmethod
    def _days(cls, hours: dict[str, str]) -> dict[str, str]:
        for day, text in hours.items():
            if day not in WEEKDAYS:
                raise ValueError(f"{day!r} is not a weekday (use {', '.join(WEEKDAYS)})")
            _spans(text)
        if not hours:
            raise ValueError("a calendar needs working hours on at least one weekday")
        return hours

    def clock(self) -> BusinessClock:
        """A clock for this calendar, shared by every computation (its day cache too)."""
        return _clock(self.model_dump_json())


@lru_cache(maxsize=64)
def _clock(spec_json: str) -> BusinessClock:
    return BusinessClock(CalendarSpec.model_validate_json(spec_json))


class BusinessClock:
    """Counts working seconds between two moments.

    Each moment is placed on one running count of working time (in microseconds, so
    sums stay exact) and a duration is the difference of two counts: two lookups, not
    a walk over every day between them. A median over a year of high-priority
    incidents read 95,000 durations; walking their days took most of its time."""

    def __init__(self, spec: CalendarSpec) -> None:
        self.name = spec.name
        self._zone = ZoneInfo(spec.zone)
        self._week = [_spans(spec.hours[d]) if d in spec.hours else [] for d in WEEKDAYS]
        self._holidays = frozenset(spec.holidays)
        self._days: dict[date, list[tuple[datetime, datetime, int]]] = {}
        # every span's edges with the count before each: replaced whole, never changed in
        # place, as the clock is shared by every thread's computations
        self._edge_table: _Edges | None = None

    def _working(self, day: date) -> list[tuple[datetime, datetime, int]]:
        """The day's working spans in UTC, each with its length in microseconds."""
        spans = self._days.get(day)
        if spans is None:
            spans = []
            if day not in self._holidays:
                for start, end in self._week[day.weekday()]:
                    lo, hi = self._at(day, start), self._at(day, end)
                    spans.append((lo, hi, _microseconds(hi - lo)))
            self._days[day] = spans
        return spans

    def _at(self, day: date, seconds: int) -> datetime:
        """The moment the local clock shows ``seconds`` into ``day``; a time the clock skips
        (a spring DST change's missing hour) is the moment it jumps to: 02:45-03:15 on
        that Sunday in Amsterdam is worked from 03:00, a quarter of an hour."""
        day, seconds = (day + timedelta(days=1), 0) if seconds == 86400 else (day, seconds)
        wall = datetime.combine(day, time(seconds // 3600, seconds % 3600 // 60))
        moment = wall.replace(tzinfo=self._zone).astimezone(UTC)
        if moment.astimezone(self._zone).replace(tzinfo=None) == wall:
            return moment
        return _jump(wall, self._zone)

    def seconds(self, start: datetime, end: datetime) -> float:
        """Working seconds in [start, end); 0 when end is not after start."""
        if end <= start:
            return 0.0
        began, ended = _epoch_micros(start), _epoch_micros(end)
        edges = self._edges(began, ended)
        if edges is None:  # moments decades apart
            return self._walk(start, end)
        return (edges.count(ended) - edges.count(began)) / 1_000_000

    def _walk(self, start: datetime, end: datetime) -> float:
        """Working seconds in [start, end), day by day."""
        total = 0
        day, last = start.astimezone(self._zone).date(), end.astimezone(self._zone).date()
        while day <= last:
            for span_start, span_end, _ in self._working(day):
                lo, hi = max(span_start, start), min(span_end, end)
                if hi > lo:
                    total += _microseconds(hi - lo)
            day += timedelta(days=1)
        return total / 1_000_000

    def hours(self, start: datetime, end: datetime) -> float:
        return self.seconds(start, end) / 3600

    def hours_of_pairs(self, starts: Sequence[int], ends: Sequence[int]) -> list[float]:
        """``hours`` of each (start, end) given as UTC epoch microseconds, exactly as the
        moments give: a grouped duration's records come as numbers, and placing them on the
        count directly spares making two datetimes a record (C6 over a year at a million
        incidents: 2 s of 3)."""
        if not starts:
            return []
        edges = self._edges(min(starts), max(ends))
        if edges is None:
            return [
                self.hours(_moment(start), _moment(end))
                for start, end in zip(starts, ends, strict=True)
            ]
        count = edges.count
        return [
            (count(end) - count(start)) / 1_000_000 / 3600 if end > start else 0.0
            for start, end in zip(starts, ends, strict=True)
        ]

    def _edges(self, lo: int, hi: int) -> _Edges | None:
        """Every span's start and end from before ``lo`` to after ``hi`` (epoch µs), each
        with the working microseconds counted before it; None when that would cover more than
        ``MAX_COUNTED_DAYS``. The edges come sorted: local times map to moments in order
        (a skipped time to the moment the clock jumps to, a repeated one to its first)."""
        table = self._edge_table
        if table is not None and table.lo <= lo and hi < table.hi:
            return table
        first = _moment(lo).astimezone(self._zone).date() - timedelta(days=366)
        last = _moment(hi).astimezone(self._zone).date() + timedelta(days=366)
        if table is not None:
            first, last = min(first, table.first), max(last, table.last)
        if (last - first).days >= MAX_COUNTED_DAYS:
            return None
        at: list[int] = []
        before: list[int] = []
        total = 0
        for offset in range((last - first).days + 1):
            for start, end, length in self._working(first + timedelta(days=offset)):
                at += (_epoch_micros(start), _epoch_micros(end))
                before += (total, total + length)
                total += length
        lo_bound = _epoch_micros(self._at(first, 0))
        hi_bound = _epoch_micros(self._at(last + timedelta(days=1), 0))
        table = _Edges(first, last, lo_bound, hi_bound, at, before)
        self._edge_table = table  # replaced whole: other threads may be reading the old one
        return table


class _Edges(NamedTuple):
    """A calendar's spans from ``first`` to ``last`` (local days) as epoch microseconds: [lo,
    hi) the moments they place, ``at`` each span's start and end, ``before`` the working
    microseconds counted before each."""

    first: date
    last: date
    lo: int
    hi: int
    at: list[int]
    before: list[int]

    def count(self, moment: int) -> int:
        """Working microseconds from the first span to ``moment`` (in [lo, hi)): past an odd
        number of edges a moment is inside a span, and its part of that span counts too."""
        i = bisect_right(self.at, moment)
        if not i:
            return 0
        return self.before[i - 1] + (moment - self.at[i - 1] if i & 1 else 0)


def _jump(wall: datetime, zone: ZoneInfo) -> datetime:
    """The moment a zone's clock jumps over the (skipped) local time ``wall``: read with the
    offset before the change it lies after the jump, with the offset after it before;
    the change (on a whole second, as the zone database has them) is found between."""
    early, late = sorted(int(wall.replace(tzinfo=zone, fold=fold).timestamp()) for fold in (0, 1))
    after = _moment(late * 1_000_000).astimezone(zone).utcoffset()
    while late - early > 1:
        middle = (early + late) // 2
        if _moment(middle * 1_000_000).astimezone(zone).utcoffset() == after:
            late = middle
        else:
            early = middle
    return _moment(late * 1_000_000)


def _epoch_micros(moment: datetime) -> int:
    return _microseconds(moment - EPOCH)


def _moment(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def _microseconds(span: timedelta) -> int:
    return (span.days * 86400 + span.seconds) * 1_000_000 + span.microseconds


class CalendarChoice:
    """Which calendar a record's business clock runs on: the metric's own, else its
    assignment group's (``[business_hours] by_group``), else the default one."""

    def __init__(
        self,
        calendars: dict[str, CalendarSpec],
        default: str | None,
        by_group: dict[str, str],
        fixed: str | None = None,
    ) -> None:
        self._fixed = calendars[fixed].clock() if fixed else None
        self._default = calendars[default].clock() if default else None
        self._by_group = {group: calendars[name].clock() for group, name in by_group.items()}

    def for_row(self, group: object) -> BusinessClock | None:
        if self._fixed is not None:
            return self._fixed
        clock = self._by_group.get(group) if isinstance(group, str) else None
        return clock or self._default
