"""An incident's SLA outcome, kept on its row, follows every write of its cycles.

The grouped computation reads only that summary, while the per-record path and
``explain`` read the cycles: a stale summary would make C1 and C2 disagree with
the tickets ``explain`` lists.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from daemon import aggregate, sla_summary, store
from daemon.census import census
from daemon.compute import compute
from daemon.models import CANONICAL_TABLES
from daemon.remap import remap
from daemon.settings import Config
from daemon.sync import resync
from mapping.periods import Period, parse_period
from sandbox.servicenow import RunningSandbox
from tests import sla_cycles

RESOLUTION, RESPONSE = 0, 1


def cycles_of(snow: RunningSandbox, incident: str) -> list[dict[str, str]]:
    return [r for r in snow.instance.records("task_sla") if r["task"] == incident]


def resolution_cycle(snow: RunningSandbox, incident: str) -> dict[str, str]:
    definitions = {r["sys_id"]: r for r in snow.instance.records("contract_sla")}
    (cycle,) = [
        c for c in cycles_of(snow, incident) if definitions[c["sla"]]["target"] == "resolution"
    ]
    return cycle


def month_of(engine: sa.Engine, config: Config, incident: str) -> Period:
    table = CANONICAL_TABLES["incident"]
    with engine.connect() as conn:
        resolved = conn.execute(
            sa.select(table.c.resolved_at).where(table.c.source_id == incident)
        ).scalar_one()
    local = resolved.astimezone(config.zone)
    return parse_period(f"{local.year}-{local.month:02d}", config.zone)


def stored_month(
    engine: sa.Engine, config: Config, metric: str, incident: str
) -> tuple[object, ...]:
    month = month_of(engine, config, incident)
    with engine.connect() as conn:
        (row,) = [
            r
            for r in store.read_metric_values(
                conn, metrics=[metric], grain="month", dimension="all"
            )
            if r["period"] == month.label
        ]
    return row["numerator"], row["denominator"], row["n"], row["exclusions"]


def fresh_month(
    engine: sa.Engine, config: Config, metric: str, incident: str
) -> tuple[object, ...]:
    month = month_of(engine, config, incident)
    with engine.connect() as conn:
        (value,) = [v for v in compute(conn, config, {metric: [month]}) if v.dimension == "all"]
    return value.numerator, value.denominator, value.n, value.exclusions


def test_the_summary_follows_breaches_cancellations_deletions_and_rewrites(
    snow: RunningSandbox, synced: tuple[Config, sa.Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, engine = synced
    stored = sla_cycles.stored(engine)
    assert stored == sla_cycles.expected(engine)
    assert {s[RESOLUTION] for s in stored.values()} == {0, 1, None}  # every outcome occurs

    live = {
        r["sys_id"]: r
        for r in snow.instance.records("incident")
        if r["state"] != "8" and r["resolved_at"]
    }
    met = [i for i, s in stored.items() if s[RESOLUTION] == 0 and i[1] in live]
    breached = [i for i, s in stored.items() if s[RESOLUTION] == 1 and i[1] in live]
    now_breached, now_cancelled, now_gone, touched = met[0], breached[0], breached[1], breached[2]
    snow.instance.update(
        "task_sla", resolution_cycle(snow, now_breached[1])["sys_id"], has_breached="true"
    )
    snow.instance.update(
        "task_sla", resolution_cycle(snow, now_cancelled[1])["sys_id"], stage="cancelled"
    )
    snow.instance.delete("task_sla", resolution_cycle(snow, now_gone[1])["sys_id"])
    snow.instance.update("incident", touched[1], reopen_count="2")  # its row is rewritten
    assert resync(engine, config).ok
    (found,) = census(engine, config, stream="task_sla")
    assert found.marked_deleted == 1

    after = sla_cycles.stored(engine)
    assert after == sla_cycles.expected(engine)
    assert after[now_breached][RESOLUTION] == 1
    assert after[now_cancelled][RESOLUTION] is None  # its only resolution cycle is cancelled
    assert after[now_gone][RESOLUTION] is None
    assert after[touched] == stored[touched]  # rewriting the incident keeps its cycles' word
    assert {i for i in after if after[i] != stored[i]} == {now_breached, now_cancelled, now_gone}
    # The census restated the month of the incident that lost its cycle: what is stored
    # is what the records say now.
    assert stored_month(engine, config, "C1", now_gone[1]) == fresh_month(
        engine, config, "C1", now_gone[1]
    )

    remap(engine, config)  # itbsc recompute rewrites every row from the raw records
    assert sla_cycles.stored(engine) == after

    # The grouped C1 and C2 (summary) equal the per-record path (cycles) in every month.
    year = parse_period("2025-07-01..2026-06-30", config.zone)
    months = [
        parse_period(f"{d.year}-{d.month:02d}", config.zone)
        for d in (year.start + timedelta(days=31 * k) for k in range(12))
    ]
    plan = {"C1": months, "C2": months}
    with engine.connect() as conn:
        grouped = compute(conn, config, plan)
        monkeypatch.setattr(aggregate, "can_group", lambda *_: False)
        per_record = compute(conn, config, plan)

    def key(values: list) -> dict:  # type: ignore[type-arg]
        return {(v.metric, v.period, v.dimension): (v.value, v.n, v.exclusions) for v in values}

    assert key(grouped) == key(per_record)
    assert sum(v.n for v in grouped if v.dimension == "all") > 0


def test_upgrading_a_store_fills_the_summary_from_the_cycles_it_holds(
    synced: tuple[Config, sa.Engine],
) -> None:
    """A store synced before the summary existed gets it from the migration that adds it."""
    from alembic import command

    from daemon import db

    _, engine = synced
    before = sla_cycles.stored(engine)
    alembic = db.alembic_config()
    with engine.begin() as conn:
        alembic.attributes["connection"] = conn
        command.downgrade(alembic, "20261128_0008")
        command.upgrade(alembic, "head")
    assert sla_cycles.stored(engine) == before == sla_cycles.expected(engine)


@pytest.mark.parametrize("returning", [True, False])
def test_first_responses_are_the_first_completed_response_ends(
    synced: tuple[Config, sa.Engine], monkeypatch: pytest.MonkeyPatch, returning: bool
) -> None:
    """ServiceNow's incidents take their first response from their cycles: the earliest end
    of a live, completed response cycle — set by a sync, and set again, and reported to the
    caller for restating, whether the database returns what it updated or not."""
    _, engine = synced
    incidents, sla = CANONICAL_TABLES["incident"], CANONICAL_TABLES["sla"]
    ends: dict[str, object] = {}
    with engine.connect() as conn:
        cycles = conn.execute(
            sa.select(sla.c.task, sla.c.end_time).where(
                sla.c.sla_type == "response",
                sla.c.stage == "completed",
                sla.c.deleted_at.is_(None),
                sla.c.end_time.is_not(None),
            )
        ).all()
        for task, end in cycles:
            ends[task] = min(end, ends.get(task, end))  # type: ignore[type-var]
        stored = dict(
            conn.execute(sa.select(incidents.c.source_id, incidents.c.first_response_at)).all()
        )
    assert len(ends) > 100 and stored == {i: ends.get(i) for i in stored}  # the sync set them

    monkeypatch.setattr(engine.dialect, "update_returning", returning)
    with engine.begin() as conn:
        conn.execute(sa.update(incidents).values(first_response_at=None))
        moved = sla_summary.refresh(conn, "snow", sorted(stored), first_response=True)
        again = dict(
            conn.execute(sa.select(incidents.c.source_id, incidents.c.first_response_at)).all()
        )
    assert again == stored
    assert sorted(moved) == sorted(v for v in stored.values() if v is not None)  # type: ignore[type-var]
