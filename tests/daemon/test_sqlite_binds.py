"""SQLite upserts with values converted once (daemon.sqlite_binds) store what SQLAlchemy stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from daemon import db, store
from daemon.models import CANONICAL_TABLES, UTCDateTime
from daemon.sqlite_binds import utc_text

DIALECT = sqlite.dialect()
SQLALCHEMY_UTC = UTCDateTime().dialect_impl(DIALECT).bind_processor(DIALECT)
ZONES = [
    UTC,
    timezone(timedelta(hours=-10)),
    ZoneInfo("Europe/Amsterdam"),
    ZoneInfo("Asia/Kolkata"),
]


@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from(ZONES),
    )
)
def test_a_utc_moment_is_the_text_sqlalchemy_stores(moment: datetime) -> None:
    assert SQLALCHEMY_UTC is not None
    assert utc_text(moment) == SQLALCHEMY_UTC(moment)


def test_a_naive_moment_is_refused_as_sqlalchemy_refuses_it() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        utc_text(datetime(2026, 3, 1, 12, 0))
    assert utc_text(None) is None


def _incident(i: int, zone: Any) -> dict[str, Any]:
    """A canonical incident with a value in every column the sync writes (or None)."""
    table = CANONICAL_TABLES["incident"]
    opened = datetime(2026, 3, 29, 1, 59, 59, 999_999 * (i % 2), tzinfo=zone) + timedelta(hours=i)
    row: dict[str, Any] = {}
    for column in table.c:
        if column.name == "id":
            continue
        kind = column.type
        if column.nullable and (i + len(column.name)) % 5 == 0:
            row[column.name] = None
        elif isinstance(kind, UTCDateTime):
            row[column.name] = opened + timedelta(minutes=len(column.name))
        elif isinstance(kind, sa.Boolean):
            row[column.name] = (i + len(column.name)) % 2 == 0
        elif isinstance(kind, sa.Integer):
            row[column.name] = i * 7 - 3
        elif isinstance(kind, sa.Float):
            row[column.name] = i / 3
        else:
            row[column.name] = f"{column.name}-{i}-ü"
    row["source"], row["source_id"], row["deleted_at"] = "snow", f"inc{i:04d}", None
    row["updated_at"] = datetime(2026, 4, 1, tzinfo=UTC) + timedelta(seconds=i)
    return row


def _stored(engine: sa.Engine, table: sa.Table) -> list[tuple[Any, ...]]:
    """Every row as the database holds it (the driver's values, no type processing)."""
    columns = ", ".join(c.name for c in table.c if c.name != "id")
    with engine.connect() as conn:
        return list(conn.exec_driver_sql(f"SELECT {columns} FROM {table.name} ORDER BY source_id"))


def _engine(path: Path) -> sa.Engine:
    engine = db.create_db_engine(sa.make_url(f"sqlite:///{path}"))
    db.upgrade(engine)
    return engine


def test_canonical_rows_are_stored_as_sqlalchemy_stores_them(tmp_path: Path) -> None:
    table = CANONICAL_TABLES["incident"]
    rows = [_incident(i, ZONES[i % len(ZONES)]) for i in range(60)]
    ours, theirs = _engine(tmp_path / "ours.db"), _engine(tmp_path / "theirs.db")
    with ours.begin() as conn:
        store.upsert(conn, table, rows, ("source", "source_id"), only_if_not_older="updated_at")
    with theirs.begin() as conn:
        conn.execute(sa.insert(table), rows)  # SQLAlchemy's own executemany
    assert _stored(ours, table) == _stored(theirs, table)
    with ours.connect() as conn:  # and they read back as the values written
        back = conn.execute(sa.select(table.c.source_id, table.c.opened_at, table.c.made_sla))
        read = {r.source_id: (r.opened_at, r.made_sla) for r in back}
    assert read == {
        r["source_id"]: (r["opened_at"] and r["opened_at"].astimezone(UTC), r["made_sla"])
        for r in rows
    }


def test_an_upsert_keeps_its_rules_on_the_tuple_path(tmp_path: Path) -> None:
    """Updates by key, never rolls a newer stored row back, and JSON columns go through
    SQLAlchemy's own conversion (the metric values' exclusions)."""
    table = CANONICAL_TABLES["incident"]
    engine = _engine(tmp_path / "store.db")
    first = [_incident(i, UTC) for i in range(3)]
    newer = {**first[1], "number": "NEWER", "updated_at": first[1]["updated_at"] + timedelta(1)}
    older = {**first[2], "number": "OLDER", "updated_at": first[2]["updated_at"] - timedelta(1)}
    with engine.begin() as conn:
        store.upsert(conn, table, first, ("source", "source_id"), only_if_not_older="updated_at")
        store.upsert(
            conn, table, [newer, older], ("source", "source_id"), only_if_not_older="updated_at"
        )
        numbers = dict(conn.execute(sa.select(table.c.source_id, table.c.number)).all())
    assert numbers == {
        "inc0000": first[0]["number"],
        "inc0001": "NEWER",
        "inc0002": first[2]["number"],
    }

    value = {
        "metric": "C1",
        "grain": "month",
        "period": "2026-03",
        "period_start": datetime(2026, 3, 1, tzinfo=UTC),
        "period_end": datetime(2026, 4, 1, tzinfo=UTC),
        "dimension": "",
        "value": 87.5,
        "numerator": 7.0,
        "denominator": 8.0,
        "n": 8,
        "exclusions": {"cancelled": 2, "duplicate": 1},
        "mapping_version": "v1",
        "computed_at": datetime(2026, 4, 2, tzinfo=UTC),
    }
    with engine.begin() as conn:
        store.write_metric_values(conn, [value])
        kept = conn.execute(sa.select(store.metric_table.c.exclusions)).scalar_one()
    assert kept == {"cancelled": 2, "duplicate": 1}


def test_the_write_ahead_log_is_checkpointed_and_cut_back_after_a_large_write(
    tmp_path: Path,
) -> None:
    """A sync commits page by page and a recompute rewrites many values at once: the log
    is copied into the database every 40 MB, and cut back to 64 MB after a larger write,
    so a store's files do not keep the size of its largest transaction."""
    path = tmp_path / "log.db"
    engine = db.create_db_engine(sa.make_url(f"sqlite:///{path}"))
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 10_000
    megabyte = b"x" * (1 << 20)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)")
        conn.exec_driver_sql("INSERT INTO blobs (data) VALUES (?)", [(megabyte,)] * 96)
    log = Path(f"{path}-wal")
    assert log.stat().st_size > 96 << 20  # the transaction went through the log
    with engine.begin() as conn:  # the next write starts the log afresh, cut back
        conn.exec_driver_sql("INSERT INTO blobs (data) VALUES (x'00')")
    assert log.stat().st_size <= db.WAL_SIZE_LIMIT_BYTES
    assert path.stat().st_size > 96 << 20  # and the database holds what the log held
    engine.dispose()
