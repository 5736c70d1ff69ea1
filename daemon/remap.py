"""``itbsc recompute``: re-apply the current mappings to stored raw records, then restate all metrics.

Raw payloads are streamed in batches; nothing is refetched from the sources.
"""

from __future__ import annotations

from collections import Counter

import orjson
from sqlalchemy import Engine, select

from daemon import store
from daemon.compute import recompute
from daemon.models import CANONICAL_TABLES
from daemon.settings import Config
from mapping.model import KINDS
from mapping.translate import SkippedRecord, Translator

BATCH = 2000


def remap(engine: Engine, config: Config) -> tuple[int, Counter[str], int]:
    """Re-translate every stored raw record; returns (mapped, skipped reasons, metric values)."""
    mapped_total, skipped = 0, Counter[str]()
    raw = store.raw_table
    for source, settings in config.settings.sources.items():
        spec = config.mappings[source]
        for stream in settings.streams:
            found = spec.for_stream(stream)
            if found is None:
                continue
            kind, kind_map = found
            translator = Translator(KINDS[kind], kind_map, spec, source)
            table = CANONICAL_TABLES[kind]
            query = (
                select(raw.c.source_id, raw.c.source_updated_at, raw.c.payload)
                .where(raw.c.source == source, raw.c.stream == stream, raw.c.deleted_at.is_(None))
                .execution_options(yield_per=BATCH)
            )
            with engine.connect() as reader:
                for partition in reader.execute(query).partitions(BATCH):
                    records, rejected = [], []
                    for source_id, updated_at, payload in partition:
                        try:
                            records.append(
                                translator.translate(source_id, updated_at, orjson.loads(payload))
                            )
                        except SkippedRecord as exc:
                            skipped[str(exc)] += 1
                            rejected.append(source_id)
                    with engine.begin() as writer:
                        store.upsert(
                            writer,
                            table,
                            [{**r, "deleted_at": None} for r in records],
                            ("source", "source_id"),
                        )
                        store.delete_canonical(writer, table, source, rejected)
                    mapped_total += len(records)
    return mapped_total, skipped, recompute(engine, config, None)
