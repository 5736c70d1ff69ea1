"""Grouping keys folded into integers: the few-valued fields of a grouped query, one number.

SQLite groups rows by sorting them, and its sorter compares two rows field by
field: a family grouped by fifteen fields spent 4.3 of its 5.3 s sorting a
million incidents. Fields whose values are known before the query runs
(standard codes, flags, counts, the period segment, configured tiers and
prices) are numbered here and folded by mixed radix into one integer, which the
sorter compares at once: that family's query took 3.4 s. PostgreSQL hashes the
fields instead and gained nothing measurable: it groups by them as they are.

A value outside its field's domain (a coded field a mapping leaves unmapped, a
count above ``INT_CODES``) gets the field's "other" number; decoding then names
the field and the query runs again grouping that field as it is, so a value is
never guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Row,
    case,
    cast,
    func,
    type_coerce,
)

T = TypeVar("T")
INT_CODES = 256  # counts 0..255 are numbered; a larger one makes its field grouped as it is
DECODED_REMEMBERED = 65536  # decoded key numbers a grouping keeps
KEY_LIMIT = 2**62  # one key's numbers must fit SQLite's signed 64-bit integer


@dataclass(frozen=True)
class Domain:
    """The values a field can take besides empty, numbered 1..n (0: empty, n + 1: other):
    ``values`` listed, or whole numbers 0..``limit`` - 1. ``trusted``: the column is an
    expression of this module's callers that yields no other (a period segment's index,
    a duration's status), so it is read once and never checked."""

    values: tuple[Any, ...] = ()
    limit: int | None = None
    trusted: bool = False

    @property
    def size(self) -> int:
        return (self.limit if self.limit is not None else len(self.values)) + 2

    def number(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        """SQL numbering ``column``'s value; a listed value reads the column once."""
        other = self.size - 1
        if self.limit is not None and self.trusted:
            return type_coerce(func.coalesce(column + 1, 0), BigInteger())
        if self.limit is not None:
            inside = (column >= 0) & (column < self.limit)
            numbers = case((column.is_(None), 0), (inside, column + 1), else_=other)
            return type_coerce(numbers, BigInteger())
        whens = {value: i for i, value in enumerate(self.values, start=1)}
        if self.trusted:  # nothing else, so anything unmatched is empty: read once
            return type_coerce(case(whens, value=column, else_=0), BigInteger())
        empty_or_other = case((column.is_(None), 0), else_=other)  # the column again
        numbered = case(whens, value=column, else_=empty_or_other) if whens else empty_or_other
        return type_coerce(numbered, BigInteger())

    def value(self, number: int) -> Any:
        """The value numbered ``number``; raises ``Unlisted`` for "other"."""
        if number == 0:
            return None
        if number == self.size - 1:
            raise Unlisted
        return number - 1 if self.limit is not None else self.values[number - 1]


class Unlisted(Exception):
    """A grouped value outside its field's domain."""


class UnlistedField(Exception):
    """Fields holding values outside their domains: group by them as they are."""

    def __init__(self, names: set[str]) -> None:
        super().__init__(", ".join(sorted(names)))
        self.names = names


@dataclass(frozen=True)
class PackedKeys:
    """Fields folded, in order, into as few integers as fit; the first field is the most
    significant of the first key."""

    keys: tuple[tuple[tuple[str, Domain], ...], ...]

    @classmethod
    def of(cls, fields: Sequence[tuple[str, Domain]]) -> PackedKeys:
        keys: list[list[tuple[str, Domain]]] = []
        span = KEY_LIMIT
        for name, domain in fields:
            if span * domain.size > KEY_LIMIT:
                keys.append([])
                span = 1
            keys[-1].append((name, domain))
            span *= domain.size
        return cls(tuple(tuple(key) for key in keys))

    def names(self) -> list[str]:
        return [name for key in self.keys for name, _ in key]

    def expressions(self, columns: Mapping[str, ColumnElement[Any]]) -> list[ColumnElement[Any]]:
        """One SQL integer per key, labelled ``_key0``, ``_key1`` ..."""
        out: list[ColumnElement[Any]] = []
        for i, key in enumerate(self.keys):
            (name, domain), *others = key
            # bigint from the first field on: PostgreSQL would multiply 32-bit integers
            packed: ColumnElement[Any] = cast(domain.number(columns[name]), BigInteger())
            for name, domain in others:
                packed = packed * domain.size + domain.number(columns[name])
            out.append(packed.label(f"_key{i}"))
        return out

    def leading(self, key: ColumnElement[Any], count: int) -> ColumnElement[Any]:
        """SQL for the first key's first ``count`` fields (as one number)."""
        return key // self.below(count)

    def rest(self, key: ColumnElement[Any], count: int) -> ColumnElement[Any]:
        """SQL for the first key without its first ``count`` fields."""
        return key % self.below(count)

    def below(self, count: int) -> int:
        """The first key's radix under its first ``count`` fields."""
        below = 1
        for _, domain in self.keys[0][count:]:
            below *= domain.size
        return below

    def decode(self, numbers: Sequence[int], skip_leading: int = 0) -> dict[str, Any]:
        """The fields' values from the keys' numbers (``skip_leading``: the first key
        without that many leading fields, as ``rest`` gives it)."""
        values: dict[str, Any] = {}
        unlisted: set[str] = set()
        for i, (key, number) in enumerate(zip(self.keys, numbers, strict=True)):
            for name, domain in reversed(key if i else key[skip_leading:]):
                number, code = divmod(int(number), domain.size)
                try:
                    values[name] = domain.value(code)
                except Unlisted:
                    unlisted.add(name)
        if unlisted:
            raise UnlistedField(unlisted)
        return values


@dataclass(frozen=True)
class Grouping:
    """What a grouped query selects first, in order: the keys, then the fields grouped as
    they are (no domain, or holding unlisted values)."""

    packed: PackedKeys
    raw: tuple[str, ...]
    columns: tuple[ColumnElement[Any], ...]
    names: tuple[str, ...]  # every field, in the order given

    @classmethod
    def of(
        cls,
        grouped: Mapping[str, ColumnElement[Any]],
        domains: Mapping[str, Domain | None],
        as_is: AbstractSet[str] = frozenset(),
    ) -> Grouping:
        packed = PackedKeys.of(
            [(n, d) for n in grouped if (d := domains.get(n)) is not None and n not in as_is]
        )
        raw = tuple(name for name in grouped if name not in packed.names())
        columns = (*packed.expressions(grouped), *(grouped[name].label(name) for name in raw))
        return cls(packed, raw, columns, tuple(grouped))

    decoded: dict[tuple[int, ...], dict[str, Any]] = field(default_factory=dict, compare=False)
    """The first key's other fields and the other keys, decoded, by their numbers: rows
    differ mostly in the leading field (the period segment), so the rest repeats."""

    def values(self, row: Sequence[Any]) -> dict[str, Any]:
        """The fields' values from a row beginning with ``columns``, the same fields in the
        same order for every row (not necessarily the order given)."""
        keys = len(self.packed.keys)
        if not keys:
            return dict(zip(self.raw, row, strict=False))  # its aggregates follow
        (name, domain), *_ = self.packed.keys[0]
        below = self.packed.below(1)
        leading, rest = divmod(int(row[0]), below)
        numbers = (rest, *row[1:keys])
        others = self.decoded.get(numbers)
        if others is None:
            others = self.packed.decode(numbers, skip_leading=1)
            if len(self.decoded) < DECODED_REMEMBERED:
                self.decoded[numbers] = others
        try:
            values = {name: domain.value(leading), **others}
        except Unlisted:
            raise UnlistedField({name}) from None
        values.update(zip(self.raw, row[keys:], strict=False))  # its aggregates follow
        return values


def retrying_unlisted(run: Callable[[frozenset[str]], T]) -> T:
    """``run(as_is)``, again with the fields that held unlisted values grouped as they are."""
    as_is: set[str] = set()
    while True:
        try:
            return run(frozenset(as_is))
        except UnlistedField as unlisted:
            as_is |= unlisted.names


def grouped_records(
    conn: Connection, grouping: Grouping, query: Any
) -> Iterator[tuple[dict[str, Any], Row[Any]]]:
    """The rows of ``query``, which selects ``grouping.columns`` first and groups by them,
    streamed, each as its fields' values (in the order given) and the row (its aggregates).
    At the first row holding a value outside a domain, the rest are read for the others
    and ``UnlistedField`` names them all, so one more query groups them as they are."""
    with conn.execute(query) as rows:
        for row in rows:
            try:
                values = grouping.values(row)
            except UnlistedField as unlisted:
                raise UnlistedField(unlisted.names | _unlisted(grouping, rows)) from None
            yield values, row


def _unlisted(grouping: Grouping, rows: Iterable[Row[Any]]) -> set[str]:
    names: set[str] = set()
    for row in rows:
        try:
            grouping.values(row)
        except UnlistedField as unlisted:
            names |= unlisted.names
    return names


def packs(conn: Connection) -> bool:
    """Whether this database groups by sorting, where packing pays (SQLite)."""
    return conn.dialect.name == "sqlite"
