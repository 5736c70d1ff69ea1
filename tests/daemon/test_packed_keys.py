"""Few-valued grouping fields folded into integers give back exactly the groups they fold."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa

from daemon.packed_keys import (
    INT_CODES,
    KEY_LIMIT,
    Domain,
    Grouping,
    PackedKeys,
    UnlistedField,
    grouped_records,
)


def _table(rows: list[dict[str, Any]]) -> tuple[sa.Engine, sa.Table]:
    engine = sa.create_engine("sqlite://")
    meta = sa.MetaData()
    table = sa.Table(
        "t",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("code", sa.String),
        sa.Column("flag", sa.Boolean),
        *(sa.Column(f"count{i}", sa.Integer) for i in range(9)),
    )
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)
    return engine, table


def _rows(count: int, seed: int) -> list[dict[str, Any]]:
    pick = random.Random(seed)
    return [
        {
            "code": pick.choice(["a", "b", "c", None]),
            "flag": pick.choice([True, False, None]),
            **{f"count{i}": pick.choice([0, 1, 2, 254, 255, None]) for i in range(9)},
        }
        for _ in range(count)
    ]


def _grouped(engine: sa.Engine, table: sa.Table, as_is: frozenset[str] = frozenset()) -> Counter:
    domains = {
        "code": Domain(("a", "b", "c")),
        "flag": Domain((False, True)),
        **{f"count{i}": Domain(limit=INT_CODES) for i in range(9)},
    }
    grouped = {name: table.c[name] for name in domains}
    grouping = Grouping.of(grouped, domains, as_is)
    query = sa.select(*grouping.columns, sa.func.count().label("_n")).group_by(*grouping.columns)
    with engine.connect() as conn:
        return Counter(
            {
                tuple(values[name] for name in grouping.names): row._n
                for values, row in grouped_records(conn, grouping, query)
            }
        )


def _plain(engine: sa.Engine, table: sa.Table) -> Counter:
    names = ["code", "flag", *(f"count{i}" for i in range(9))]
    query = sa.select(*(table.c[n] for n in names), sa.func.count()).group_by(
        *(table.c[n] for n in names)
    )
    with engine.connect() as conn:
        return Counter({tuple(row[:-1]): row[-1] for row in conn.execute(query)})


def test_fields_past_one_integer_spill_into_more_keys_and_decode_to_their_groups() -> None:
    """Eleven fields of up to 258 numbers each need more than one 62-bit key."""
    engine, table = _table(_rows(3000, seed=7))
    fields = [
        ("code", Domain(("a", "b", "c"))),
        *((f"n{i}", Domain(limit=INT_CODES)) for i in range(9)),
    ]
    keys = PackedKeys.of(fields)
    assert len(keys.keys) == 2 and keys.names() == [n for n, _ in fields]
    for key in keys.keys:
        span = 1
        for _, domain in key:
            span *= domain.size
        assert span <= KEY_LIMIT
    assert _grouped(engine, table) == _plain(engine, table)


def test_a_value_outside_its_domain_is_named_not_guessed() -> None:
    rows = _rows(200, seed=3)
    rows[5]["code"] = "z"  # a coded field left unmapped: stored as the source sent it
    rows[9]["count3"] = 300  # past the numbered counts
    engine, table = _table(rows)
    with pytest.raises(UnlistedField) as unlisted:
        _grouped(engine, table)
    assert unlisted.value.names == {"code", "count3"}
    assert _grouped(engine, table, frozenset({"code", "count3"})) == _plain(engine, table)
