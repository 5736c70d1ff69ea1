"""``itbsc check-mapping``: source values no value map covers, with counts.

A coded field whose source value has no entry in the mapping keeps the
original (``state_original``) and no standard value, so the record silently
falls out of every metric that filters on that field. This lists each such
value per source, kind and field, with how many live records carry it, and
the records the mapping skipped altogether (by reason, from the last runs).
A value the map names with ``""`` (known, no standard value) is not listed.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, func, select

from daemon import store
from daemon.models import CANONICAL_TABLES
from daemon.settings import Config
from mapping.model import KINDS
from mapping.spec import deliberately_unmapped


@dataclass(frozen=True)
class Unmapped:
    source: str
    kind: str
    field: str
    value: str
    records: int


def unmapped_values(engine: Engine, config: Config) -> list[Unmapped]:
    """Every (source, kind, coded field, original value) without a standard value."""
    found: list[Unmapped] = []
    with engine.connect() as conn:
        for source, spec in config.mappings.items():
            for kind, kind_map in spec.kind_maps().items():
                table = CANONICAL_TABLES[kind]
                for field, field_type in KINDS[kind].fields.items():
                    if field_type != "code" or field not in kind_map.fields:
                        continue
                    original = table.c[f"{field}_original"]
                    known = deliberately_unmapped(kind_map.values.get(field, {}))
                    query = (
                        select(original, func.count())
                        .where(
                            table.c.source == source,
                            table.c.deleted_at.is_(None),
                            table.c[field].is_(None),
                            original.is_not(None),
                            original.not_in(known),
                        )
                        .group_by(original)
                        .order_by(func.count().desc(), original)
                    )
                    found.extend(
                        Unmapped(source, kind, field, str(value), int(count))
                        for value, count in conn.execute(query)
                    )
    return found


def untiered_groups(engine: Engine, config: Config) -> list[Unmapped]:
    """Assignment groups of incidents with no tier (not synced, or a tier the map lacks)."""
    incident, group = CANONICAL_TABLES["incident"], CANONICAL_TABLES["group"]
    found: list[Unmapped] = []
    with engine.connect() as conn:
        for source, spec in config.mappings.items():
            if spec.group is None or spec.incident is None:
                continue
            query = (
                select(incident.c.assignment_group, func.count())
                .select_from(
                    incident.outerjoin(
                        group,
                        (group.c.source == incident.c.source)
                        & (group.c.source_id == incident.c.assignment_group),
                    )
                )
                .where(
                    incident.c.source == source,
                    incident.c.deleted_at.is_(None),
                    incident.c.assignment_group.is_not(None),
                    group.c.tier.is_(None),
                )
                .group_by(incident.c.assignment_group)
                .order_by(func.count().desc())
            )
            found.extend(
                Unmapped(source, "incident", "assignment_group (no tier)", str(value), int(n))
                for value, n in conn.execute(query)
            )
    return found


def skipped_reasons(engine: Engine, config: Config) -> list[tuple[str, str, int]]:
    """(source, stream, records skipped by the last run) where the last run skipped any."""
    run = store.run_table
    rows = []
    with engine.connect() as conn:
        for source, settings in config.settings.sources.items():
            for stream in settings.streams:
                last = conn.execute(
                    select(run.c.records_skipped)
                    .where(run.c.source == source, run.c.stream == stream, run.c.mode != "census")
                    .order_by(run.c.started_at.desc())
                    .limit(1)
                ).first()
                if last and last.records_skipped:
                    rows.append((source, stream, int(last.records_skipped)))
    return rows
