"""Quarters and years summed from months when a sync restates a day: the values the records give."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, time
from typing import Any

import pytest
import sqlalchemy as sa

from daemon import rollup, store
from daemon.compute import compute, recompute_dirty
from daemon.models import CANONICAL_TABLES
from daemon.settings import Config
from mapping.periods import Period, parse_period

Key = tuple[str, str, str]


def _stored(conn: sa.Connection, metrics: list[str], grain: str) -> dict[Key, Any]:
    rows = store.read_metric_values(conn, metrics=metrics, grain=grain)
    return {(r["metric"], r["period"], r["dimension"]): r for r in rows}


def _assert_same(stored: dict[Key, Any], computed: list[Any]) -> None:
    assert computed
    for v in computed:
        row = stored[(v.metric, v.period.label, v.dimension)]
        assert row["n"] == v.n, (v.metric, v.period.label, v.dimension)
        assert row["exclusions"] == v.exclusions
        for name in ("value", "numerator", "denominator"):
            expected = getattr(v, name)
            if expected is None:
                assert row[name] is None, (v.metric, v.period.label, v.dimension, name)
            else:
                assert row[name] == pytest.approx(expected, rel=1e-12), (v.metric, name)


def _additive(config: Config) -> list[str]:
    return [m.id for m in config.catalogue.record_metrics() if m.kind in rollup.ADDITIVE_KINDS]


def _restate(
    engine: sa.Engine, config: Config, day: Any, monkeypatch: pytest.MonkeyPatch
) -> rollup.RollUp:
    """Mark ``day`` dirty as a sync does and restate it; returns what was summed from months."""
    seen: list[rollup.RollUp] = []
    original = rollup.split

    def watched(*args: Any) -> Any:
        plan, rolled = original(*args)
        seen.append(rolled)
        return plan, rolled

    monkeypatch.setattr(rollup, "split", watched)
    with engine.begin() as conn:
        store.mark_dirty(conn, [day])
    assert recompute_dirty(engine, config) > 0
    monkeypatch.setattr(rollup, "split", original)
    return seen[0]


def test_after_a_sync_every_quarter_and_year_equals_its_records(
    synced: tuple[Config, sa.Engine],
) -> None:
    """The first sync restates every month, so its quarters and years are summed."""
    config, engine = synced
    ids = _additive(config)
    assert {"C1", "C4", "F1", "F5", "I7"} <= set(ids)
    with engine.connect() as conn:
        for grain in ("quarter", "year"):
            stored = _stored(conn, ids, grain)
            periods: set[Period] = {parse_period(label, config.zone) for _, label, _ in stored}
            computed = compute(conn, config, {m: sorted(periods) for m in ids})
            _assert_same(stored, computed)


def test_a_restated_day_sums_its_year_from_stored_months(
    synced: tuple[Config, sa.Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record changed on one day: its month is recomputed, the year summed with the rest."""
    config, engine = synced
    incidents = CANONICAL_TABLES["incident"]
    with engine.begin() as conn:
        source_id, resolved = conn.execute(
            sa.select(incidents.c.source_id, incidents.c.resolved_at)
            .where(
                incidents.c.resolved_at.is_not(None),
                incidents.c.deleted_at.is_(None),
                incidents.c.state != "cancelled",
                incidents.c.reopen_count == 0,
            )
            .order_by(incidents.c.resolved_at.desc())
            .limit(1)
        ).one()
        conn.execute(
            incidents.update().where(incidents.c.source_id == source_id).values(reopen_count=2)
        )
    day = resolved.astimezone(config.zone).date()
    year = parse_period(str(day.year), config.zone)
    rolled = _restate(engine, config, day, monkeypatch)
    assert year in rolled.periods["C4"]
    with engine.connect() as conn:
        _assert_same(_stored(conn, ["C4"], "year"), compute(conn, config, {"C4": [year]}))


def test_a_month_of_another_version_or_missing_reads_the_records(
    synced: tuple[Config, sa.Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Months stored under an older catalogue, or not at all, are never summed."""
    config, engine = synced
    table = store.metric_table
    with engine.connect() as conn:
        months = sorted(
            {r["period"] for r in store.read_metric_values(conn, metrics=["C4"], grain="month")}
        )
    assert len(months) >= 3
    day = parse_period(months[-1], config.zone).start.astimezone(config.zone).date()
    year = parse_period(str(day.year), config.zone)
    others = [m for m in months if m.startswith(str(day.year)) and m != months[-1]]
    assert others, months
    with engine.begin() as conn:
        conn.execute(
            table.update()
            .where(table.c.metric == "C4", table.c.period == others[0])
            .values(mapping_version="an older catalogue")
        )
        conn.execute(table.delete().where(table.c.metric == "C1", table.c.period == others[0]))
    rolled = _restate(engine, config, day, monkeypatch)
    assert year not in rolled.periods.get("C4", [])
    assert year not in rolled.periods.get("C1", [])
    assert year in rolled.periods["C2"]  # its months are all current
    with engine.connect() as conn:
        for metric in ("C1", "C4"):
            computed = compute(conn, config, {metric: [year]})
            _assert_same(_stored(conn, [metric], "year"), computed)


def test_a_restated_day_stores_each_metric_at_its_own_grains(
    synced: tuple[Config, sa.Engine],
) -> None:
    """Metrics sharing grains share the periods worked out for a day; one declaring its
    own grains gets exactly those periods, and every period holds the day."""
    config, engine = synced
    metrics = [
        m.model_copy(update={"grains": ["month"]}) if m.id == "C4" else m
        for m in config.catalogue.metric
    ]
    monthly_c4 = replace(config, catalogue=config.catalogue.model_copy(update={"metric": metrics}))
    incidents = CANONICAL_TABLES["incident"]
    with engine.begin() as conn:
        resolved = conn.execute(sa.select(sa.func.max(incidents.c.resolved_at))).scalar_one()
        conn.execute(sa.delete(store.metric_table))
        store.mark_dirty(conn, [resolved.astimezone(config.zone).date()])
    day = resolved.astimezone(config.zone).date()
    assert recompute_dirty(engine, monthly_c4) > 0
    with engine.connect() as conn:
        rows = store.read_metric_values(conn, metrics=["C1", "C4", "I1"])
    stored: dict[str, set[tuple[str, str]]] = {}
    for row in rows:
        stored.setdefault(row["metric"], set()).add((row["grain"], row["period"]))
        start, end = row["period_start"], row["period_end"]
        assert start <= datetime.combine(day, time(12), tzinfo=config.zone) < end
    assert {grain for grain, _ in stored["C4"]} == {"month"}
    assert {grain for grain, _ in stored["C1"]} == {"week", "month", "quarter", "year"}
    assert stored["I1"] == stored["C1"]
    assert ("month", f"{day:%Y-%m}") in stored["C4"]
