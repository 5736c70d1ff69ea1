"""The emulator's encoded-query subset behaves like the instance (shared/reference/servicenow-api.md §4)."""

from __future__ import annotations

from typing import Any

from sandbox.encoded_query import parse, sort_key

FIELDS = (
    "sys_id",
    "priority",
    "state",
    "short_description",
    "resolved_at",
    "sys_updated_on",
    "order_ref",
)
ROWS: list[dict[str, Any]] = [
    {
        "sys_id": "a",
        "priority": "1",
        "state": "2",
        "short_description": "VPN down",
        "resolved_at": "",
        "sys_updated_on": "2026-01-02 00:00:00",
    },
    {
        "sys_id": "b",
        "priority": "3",
        "state": "6",
        "short_description": "Printer",
        "resolved_at": "2026-01-03 10:00:00",
        "sys_updated_on": "2026-01-03 10:00:00",
    },
    {
        "sys_id": "c",
        "priority": "10",
        "state": "7",
        "short_description": "vpn slow",
        "resolved_at": "2026-01-01 09:00:00",
        "sys_updated_on": "2026-01-02 00:00:00",
    },
]


def ids(query: str) -> list[str]:
    parsed = parse(query, FIELDS)
    rows = [r for r in ROWS if parsed.matches(r)]
    for field, descending in reversed(parsed.order_by):
        rows.sort(key=sort_key(field), reverse=descending)
    return [r["sys_id"] for r in rows]


def test_and_or_and_new_query() -> None:
    assert ids("priority=1^ORpriority=3^ORDERBYsys_id") == ["a", "b"]
    assert ids("priority=1^state=6") == []
    assert ids("priority=1^NQstate=7^ORDERBYsys_id") == ["a", "c"]


def test_numbers_compare_numerically() -> None:
    assert ids("priority<=3^ORDERBYsys_id") == ["a", "b"]
    assert ids("ORDERBYDESCpriority") == ["c", "b", "a"]


def test_in_like_and_empty_operators() -> None:
    assert ids("stateIN6,7^ORDERBYsys_id") == ["b", "c"]
    assert ids("stateNOT IN6,7") == ["a"]
    assert ids("short_descriptionLIKEvpn^ORDERBYsys_id") == ["a", "c"]
    assert ids("resolved_atISEMPTY") == ["a"]
    assert ids("resolved_atISNOTEMPTY^ORDERBYsys_id") == ["b", "c"]


def test_keyset_query_with_tie_on_updated_time() -> None:
    query = "sys_updated_on=2026-01-02 00:00:00^sys_id>a^NQsys_updated_on>2026-01-02 00:00:00^ORDERBYsys_updated_on^ORDERBYsys_id"
    assert ids(query) == ["c", "b"]


def test_unknown_field_is_dropped_silently_widening_the_query() -> None:
    assert ids("no_such_field=1^priority=3") == ["b"]


def test_double_caret_is_a_literal_caret() -> None:
    rows = [{"sys_id": "x", "short_description": "a^b"}]
    query = parse("short_description=a^^b", FIELDS)
    assert query.matches(rows[0])
