"""A faithful subset of ServiceNow encoded queries (``sysparm_query``).

Conditions joined with ``^`` (AND) and ``^OR`` (OR with the previous
condition), blocks joined with ``^NQ``, ``ORDERBY``/``ORDERBYDESC`` anywhere,
``^^`` for a literal caret. Like the real instance, a condition on a field the
table does not have is dropped silently, which widens the query.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

CARET = "\x00"

# Longest first, so "NOT IN" wins over "IN" and "<=" over "<".
OPERATORS = (
    "ISNOTEMPTY",
    "ISEMPTY",
    "NOT LIKE",
    "NOT IN",
    "STARTSWITH",
    "ENDSWITH",
    "LIKE",
    "IN",
    "!=",
    "<=",
    ">=",
    "=",
    "<",
    ">",
)

_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: str

    def matches(self, record: Mapping[str, Any]) -> bool:
        actual = _scalar(record.get(self.field, ""))
        return _OPS[self.op](actual, self.value)


@dataclass(frozen=True)
class Query:
    """OR of blocks; each block is an AND of OR-groups of conditions."""

    blocks: tuple[tuple[tuple[Condition, ...], ...], ...]
    order_by: tuple[tuple[str, bool], ...]  # (field, descending)

    def matches(self, record: Mapping[str, Any]) -> bool:
        if not self.blocks:
            return True
        return any(
            all(any(c.matches(record) for c in group) for group in block) for block in self.blocks
        )


def _scalar(value: Any) -> str:
    if isinstance(value, dict):  # reference with link
        return str(value.get("value", ""))
    return "" if value is None else str(value)


def _compare(actual: str, expected: str) -> int:
    """Numbers compare as numbers (priority<=2), everything else as stored strings."""
    if _NUMBER.match(actual) and _NUMBER.match(expected):
        a, b = float(actual), float(expected)
    else:
        a, b = actual, expected  # type: ignore[assignment]
    return (a > b) - (a < b)


_OPS: dict[str, Callable[[str, str], bool]] = {
    "=": lambda a, v: a == v,
    "!=": lambda a, v: a != v,
    "<": lambda a, v: a != "" and _compare(a, v) < 0,
    "<=": lambda a, v: a != "" and _compare(a, v) <= 0,
    ">": lambda a, v: a != "" and _compare(a, v) > 0,
    ">=": lambda a, v: a != "" and _compare(a, v) >= 0,
    "IN": lambda a, v: a in v.split(","),
    "NOT IN": lambda a, v: a not in v.split(","),
    "LIKE": lambda a, v: v.lower() in a.lower(),
    "NOT LIKE": lambda a, v: v.lower() not in a.lower(),
    "STARTSWITH": lambda a, v: a.lower().startswith(v.lower()),
    "ENDSWITH": lambda a, v: a.lower().endswith(v.lower()),
    "ISEMPTY": lambda a, _v: a == "",
    "ISNOTEMPTY": lambda a, _v: a != "",
}


def _parse_condition(term: str, fields: frozenset[str]) -> Condition | None:
    """Split ``<field><OP><value>`` using the table's fields to find where the name ends."""
    for end in range(len(term), 0, -1):
        name = term[:end]
        if name not in fields:
            continue
        rest = term[end:]
        for op in OPERATORS:
            if rest.startswith(op):
                value = rest[len(op) :].replace(CARET, "^")
                return Condition(name, op, value)
    return None  # unknown field or operator: dropped, as the instance does


def parse(text: str, fields: Iterable[str]) -> Query:
    """Parse an encoded query against the set of fields the table has."""
    known = frozenset(fields)
    blocks: list[tuple[tuple[Condition, ...], ...]] = []
    order: list[tuple[str, bool]] = []
    for block_text in text.replace("^^", CARET).split("^NQ"):
        groups: list[list[Condition]] = []
        for term in block_text.split("^"):
            if not term:
                continue
            if term.startswith("ORDERBYDESC"):
                order.append((term[len("ORDERBYDESC") :], True))
                continue
            if term.startswith("ORDERBY"):
                order.append((term[len("ORDERBY") :], False))
                continue
            is_or = term.startswith("OR") and groups
            condition = _parse_condition(term[2:] if is_or else term, known)
            if condition is None and is_or:
                condition = _parse_condition(term, known)  # a field whose name starts with OR
                is_or = False
            if condition is None:
                continue
            if is_or:
                groups[-1].append(condition)
            else:
                groups.append([condition])
        if groups:
            blocks.append(tuple(tuple(g) for g in groups))
    return Query(blocks=tuple(blocks), order_by=tuple(order))


def sort_key(field: str) -> Callable[[Mapping[str, Any]], tuple[int, float, str]]:
    """Integers sort numerically (as on the instance), other values as strings; empty first."""

    def key(record: Mapping[str, Any]) -> tuple[int, float, str]:
        value = _scalar(record.get(field, ""))
        if value == "":
            return (0, 0.0, "")
        if _NUMBER.match(value):
            return (1, float(value), "")
        return (2, 0.0, value)

    return key
