"""``itbsc recompute``: re-apply the current mappings to stored raw records, then restate all metrics.

Raw payloads are streamed in batches; nothing is refetched from the sources.
"""

from __future__ import annotations

from collections import Counter
from datetime import date

import orjson
from sqlalchemy import Engine, select

from daemon import store
from daemon.compute import AffectedDays, recompute
from daemon.settings import Config
from daemon.sync import StreamWriter

BATCH = 2000


def remap(
    engine: Engine, config: Config, days: list[date] | None = None
) -> tuple[int, Counter[str], int]:
    """Re-translate every stored raw record; restate the metric values of ``days`` (None: all).

    Returns (records mapped, skipped reasons, metric values written). Values outside
    ``days`` keep the versions they were computed with, which they carry.
    """
    mapped_total, skipped = 0, Counter[str]()
    raw = store.raw_table
    for source, settings in config.settings.sources.items():
        for stream in settings.streams:
            affected = AffectedDays(config)  # unused days: a full restatement follows
            writer = StreamWriter(config, source, stream, affected, mark_dirty=False)
            query = (
                select(raw.c.source_id, raw.c.source_updated_at, raw.c.payload)
                .where(raw.c.source == source, raw.c.stream == stream, raw.c.deleted_at.is_(None))
                .execution_options(yield_per=BATCH)
            )
            with engine.connect() as reader:
                for partition in reader.execute(query).partitions(BATCH):
                    records = [
                        (source_id, updated_at, orjson.loads(payload))
                        for source_id, updated_at, payload in partition
                    ]
                    with engine.begin() as conn:
                        mapped_total += writer.rewrite(conn, records, skipped)
    return mapped_total, skipped, recompute(engine, config, days)
