"""The write half of every benchmark's lower bound: one bulk Core upsert into an empty SQLite table."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite


def bulk_upsert_seconds(workdir: Path, records: Sequence[tuple[str, str, Any]]) -> float:
    """Seconds to upsert (id, updated, payload) records in one statement and transaction."""
    engine = sa.create_engine(f"sqlite:///{workdir / 'lower_bound.db'}")
    meta = sa.MetaData()
    table = sa.Table(
        "raw",
        meta,
        sa.Column("source_id", sa.String(200), primary_key=True),
        sa.Column("source_updated_at", sa.String(40)),
        sa.Column("payload", sa.Text),
    )
    meta.create_all(engine)
    rows = [
        {"source_id": i, "source_updated_at": u, "payload": orjson.dumps(p).decode()}
        for i, u, p in records
    ]
    started = time.perf_counter()
    stmt = sqlite.insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["source_id"],
        set_={
            "source_updated_at": stmt.excluded.source_updated_at,
            "payload": stmt.excluded.payload,
        },
    )
    with engine.begin() as conn:
        conn.execute(stmt, rows)
    seconds = time.perf_counter() - started
    engine.dispose()
    return seconds
