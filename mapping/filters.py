"""Declarative record filters from TOML: a fixed set of operators, never an expression language.

``{ state = ["resolved", "closed"] }`` (one of), ``{ made_sla = true }``
(equals), ``{ reopen_count = { gt = 0 } }``, ``{ made_sla = { is_null = true } }``.
All conditions of one filter must hold.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Scalar = str | int | float | bool

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}
OPERATORS = frozenset({*_COMPARE, "in", "not_in", "is_null"})


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    operand: Any

    def matches(self, record: Mapping[str, Any]) -> bool:
        value = record.get(self.field)
        if self.op == "is_null":
            return (value is None) is bool(self.operand)
        if value is None:
            return self.op in ("ne", "not_in")
        if self.op == "in":
            return value in self.operand
        if self.op == "not_in":
            return value not in self.operand
        try:
            return _COMPARE[self.op](value, self.operand)
        except TypeError:
            return False


@dataclass(frozen=True)
class Filter:
    conditions: tuple[Condition, ...] = ()

    def matches(self, record: Mapping[str, Any]) -> bool:
        for condition in self.conditions:  # noqa: SIM110 - a plain loop: runs per row per rule
            if not condition.matches(record):
                return False
        return True

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(c.field for c in self.conditions)


def parse_filter(spec: Mapping[str, Any]) -> tuple[Filter, list[tuple[str, str]]]:
    """Build a Filter; problems come back as (field, message) instead of raising one by one."""
    conditions: list[Condition] = []
    problems: list[tuple[str, str]] = []
    for name, value in spec.items():
        if isinstance(value, list):
            conditions.append(Condition(name, "in", frozenset(value)))
        elif isinstance(value, dict):
            for op, operand in value.items():
                if op not in OPERATORS:
                    problems.append(
                        (f"{name}.{op}", f"unknown operator; use one of {sorted(OPERATORS)}")
                    )
                elif op in ("in", "not_in"):
                    if not isinstance(operand, list):
                        problems.append((f"{name}.{op}", "needs a list"))
                    else:
                        conditions.append(Condition(name, op, frozenset(operand)))
                else:
                    conditions.append(Condition(name, op, operand))
        elif isinstance(value, str | int | float | bool):
            conditions.append(Condition(name, "eq", value))
        else:
            problems.append((name, "must be a value, a list of values or a table of operators"))
    return Filter(tuple(conditions)), problems
