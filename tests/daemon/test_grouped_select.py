"""A grouped query gives the groups and aggregates of its plain GROUP BY, on each database."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest
import sqlalchemy as sa

from daemon.grouped_select import COUNT, Aggregate, grouped_select


@pytest.mark.parametrize("seed", [1, 2])
def test_groups_labels_and_aggregates_are_those_of_a_plain_group_by(db_url: str, seed: int) -> None:
    pick = random.Random(seed)
    rows = [
        {
            "id": i,
            "code": pick.choice(["a", "b", None]),
            "size": pick.choice([1, 2, 3, None]),
            "hours": pick.choice([0.5, 1.25, None]),
            "kept": pick.random() < 0.8,
        }
        for i in range(400)
    ]
    engine = sa.create_engine(db_url)
    table = sa.Table(
        "records",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("code", sa.String),
        sa.Column("size", sa.Integer),
        sa.Column("hours", sa.Float),
        sa.Column("kept", sa.Boolean),
    )
    columns = [
        (table.c.size * 10 + 1).label("_key0"),  # an expression, as a packed key is
        table.c.code.label("code"),
    ]
    total = Aggregate("_total", sa.func.sum, table.c.hours * 2)
    try:
        with engine.begin() as conn:
            table.create(conn)
            conn.execute(table.insert(), rows)
            query = grouped_select(conn, columns, [COUNT, total], table, [table.c.kept])
            got = {(row._key0, row.code): (row._n, row._total) for row in conn.execute(query)}
    finally:
        engine.dispose()
    expected: dict[tuple[object, object], list[object]] = defaultdict(lambda: [0, None])
    for row in rows:
        if not row["kept"]:
            continue
        key = (None if row["size"] is None else row["size"] * 10 + 1, row["code"])
        group = expected[key]
        group[0] = int(group[0]) + 1  # type: ignore[call-overload]
        if row["hours"] is not None:
            group[1] = (group[1] or 0) + row["hours"] * 2  # type: ignore[operator]
    assert got == {key: tuple(value) for key, value in expected.items()}
