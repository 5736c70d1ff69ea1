"""Comparisons the integration tests share: what the source holds versus what was stored."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import sqlalchemy as sa

from daemon import store
from daemon.settings import Config
from sandbox.servicenow import RunningSandbox


def source_truth(
    snow: RunningSandbox, config: Config, stream: str = "incident"
) -> dict[str, dict[str, Any]]:
    """The sandbox's records (visible to the API user), reduced to the fields the mapping asks for."""
    found = config.mappings["snow"].for_stream(stream)
    assert found is not None
    fields = {"sys_id", "sys_updated_on", *found[1].source_fields()}
    return {
        r["sys_id"]: {k: v for k, v in r.items() if k in fields}
        for r in snow.instance.records(stream)
        if r["sys_id"] not in snow.instance.acl_hidden
    }


def stored_raw(engine: sa.Engine, stream: str = "incident") -> dict[str, dict[str, Any]]:
    """Stored raw payloads of a stream by id; fails if any record is stored twice."""
    raw = store.raw_table
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(raw.c.source_id, raw.c.payload).where(
                raw.c.stream == stream, raw.c.deleted_at.is_(None)
            )
        ).all()
    assert len(rows) == len({r.source_id for r in rows}), "a record is stored twice"
    return {r.source_id: orjson.loads(r.payload) for r in rows}


def on_connections(config: Config, count: int) -> Config:
    """The config with its computations' queries on ``count`` connections (1: one by one)."""
    database = config.settings.database.model_copy(update={"compute_connections": count})
    settings = config.settings.model_copy(update={"database": database})
    return dataclasses.replace(config, settings=settings)
