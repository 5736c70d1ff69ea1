"""The change an incident is attributed to, kept on its row, follows every write that can
move it, and computations read it only while it is current.

The grouped computation reads the kept columns; ``explain`` and the per-record path
apply the rule (``mapping.attribution``) to the records. A kept attribution left stale
would make I7, I10 and F5 disagree with the tickets ``explain`` lists.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from daemon import aggregate, attribution_store, db, store
from daemon.census import census
from daemon.compute import compute
from daemon.derive import change_index
from daemon.models import CANONICAL_TABLES
from daemon.settings import Config, load_config
from daemon.sync import resync
from mapping.periods import parse_period, periods_between
from sandbox.servicenow import RunningSandbox
from tests.conftest import write_config
from tests.daemon.test_attribution_sql import random_rows

INCIDENTS, CHANGES = CANONICAL_TABLES["incident"], CANONICAL_TABLES["change"]
Attribution = tuple[str, datetime | None]


def _moment(value: Any) -> datetime | None:
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def kept(engine: sa.Engine) -> dict[tuple[str, str], Attribution]:
    """(source, incident) -> (change, its end) as kept on the live incident rows."""
    query = sa.select(
        INCIDENTS.c.source,
        INCIDENTS.c.source_id,
        INCIDENTS.c.attributed_change,
        INCIDENTS.c.attributed_change_end,
    ).where(INCIDENTS.c.deleted_at.is_(None), INCIDENTS.c.attributed_change.is_not(None))
    with engine.connect() as conn:
        return {(r[0], r[1]): (r[2], _moment(r[3])) for r in conn.execute(query)}


def by_rule(engine: sa.Engine, config: Config) -> dict[tuple[str, str], Attribution]:
    """What the per-record rule names for every live incident stored now."""
    with engine.connect() as conn:
        index = change_index(conn, config)
        rows = conn.execute(sa.select(INCIDENTS).where(INCIDENTS.c.deleted_at.is_(None))).all()
    out = {}
    for row in rows:
        found = index.attribute(dict(row._mapping))
        if found is not None:
            out[(row.source, row.source_id)] = (found[0], _moment(found[1]))
    return out


def _config(tmp_path: Path, db_url: str, window_hours: float) -> Config:
    files = write_config(tmp_path, url="https://unused.invalid", db_url=db_url)
    catalogue = tmp_path / "metrics.toml"
    text = catalogue.read_text(encoding="utf-8")
    catalogue.write_text(text.replace("window_hours = 12\n", f"window_hours = {window_hours}\n"))
    config = load_config(files.path, env=files.env)
    assert config.catalogue.attribution.window_hours == window_hours
    return config


def _moved(rng: random.Random, change: dict[str, Any]) -> dict[str, Any]:
    """The change as a later write has it: its end moved, its service switched, cancelled
    or brought back, or (None) deleted."""
    moved = dict(change)
    roll = rng.random()
    if roll < 0.35 and (moved["work_end"] or moved["closed_at"]):
        shift = timedelta(hours=rng.choice([-6, -1.5, 1, 3, 9]))
        moved["work_end"] = (moved["work_end"] or moved["closed_at"]) + shift
    elif roll < 0.6:
        moved["service"] = rng.choice(["mail", "vpn", "erp", None])
    elif roll < 0.8:
        moved["state"] = "closed" if moved["state"] == "cancelled" else "cancelled"
    return moved


def test_kept_attributions_follow_every_write_and_the_rule(db_url: str, tmp_path: Path) -> None:
    config = _config(tmp_path, db_url, 12.0)
    engine = db.create_db_engine(make_url(db_url))
    db.upgrade(engine)
    changes, incidents = random_rows(seed=5)
    with engine.begin() as conn:
        conn.execute(sa.insert(CHANGES), changes)
        conn.execute(sa.insert(INCIDENTS), incidents)
    with engine.begin() as conn:
        assert not attribution_store.is_current(conn, config)  # nothing worked out yet
        assert attribution_store.refresh(conn, config) == len(incidents)
        assert attribution_store.is_current(conn, config)
        assert attribution_store.refresh(conn, config) == 0  # nothing stale: nothing redone
    first = kept(engine)
    assert len(first) > 300 and first == by_rule(engine, config)

    # Later writes: changes moved, cancelled, switched or deleted; incidents rewritten.
    rng = random.Random(11)
    live = [c for c in changes if c["deleted_at"] is None]
    picked = rng.sample(live, 25)
    after = [_moved(rng, c) for c in picked]
    deleted = [c["source_id"] for c in rng.sample([c for c in live if c not in picked], 5)]
    rewritten = [
        {**i, "service": rng.choice(["mail", "vpn", "erp"]), "updated_at": i["updated_at"]}
        for i in rng.sample(incidents, 20)
    ]
    with engine.begin() as conn:
        stored = {r.source_id: dict(r._mapping) for r in conn.execute(sa.select(CHANGES))}
        before = [stored[c["source_id"]] for c in picked] + [stored[i] for i in deleted]
        attribution_store.mark_reached(conn, config, "snow", [*before, *after])
        store.write_canonical(conn, CHANGES, after)
        store.mark_deleted(conn, CHANGES, "snow", "source_id", deleted, datetime.now(UTC))
        store.write_canonical(conn, INCIDENTS, rewritten)
        assert not attribution_store.is_current(conn, config)
        redone = attribution_store.refresh(conn, config)
    assert 20 <= redone < len(incidents) / 2  # only what the writes reached
    now = by_rule(engine, config)
    written = {("snow", i["source_id"]) for i in rewritten}
    moved_by_changes = {k for k in {*first, *now} - written if first.get(k) != now.get(k)}
    assert len(moved_by_changes) > 10  # the changes' writes alone moved these
    assert kept(engine) == now

    # Another window: every kept attribution is stale at once.
    wider = _config(tmp_path, db_url, 30.0)
    with engine.begin() as conn:
        assert not attribution_store.is_current(conn, wider)
        assert attribution_store.refresh(conn, wider) == len(incidents)
        assert attribution_store.is_current(conn, wider)
    assert kept(engine) == by_rule(engine, wider) != now
    engine.dispose()


def _year(config: Config) -> dict[str, list[Any]]:
    year = parse_period("2025-07-01..2026-06-30", config.zone)
    months = periods_between(year.start, year.end, "month", config.zone)
    return dict.fromkeys(["I7", "F5", "I10"], months)


def _sums(values: list[Any]) -> dict[Any, Any]:
    """What a month of I7 or F5 adds up (unit costs are whole: exact on both paths)."""
    return {(v.metric, v.dimension): (v.numerator, v.denominator, v.n) for v in values}


def _keyed(values: list[Any]) -> dict[Any, Any]:
    return {(v.metric, v.period, v.dimension): (v.n, v.exclusions) for v in values}


def test_syncs_keep_attributions_current_and_values_equal_the_rule(
    snow: RunningSandbox,
    synced: tuple[Config, sa.Engine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a sync that moves a change's end, switches another's service and deletes a
    third, the restatement keeps every attribution current, and the values read from the
    kept columns equal those worked out in SQL and those of the per-record rule."""
    config, engine = synced
    with engine.connect() as conn:
        assert attribution_store.is_current(conn, config)  # the sync's restatement did it
    before = kept(engine)
    assert len(before) >= 3 and before == by_rule(engine, config)

    linked = {r["caused_by"] for r in snow.instance.records("incident") if r["caused_by"]}
    ended = [r for r in snow.instance.records("change_request") if r["work_end"]]
    moved, gone = [r for r in ended if r["sys_id"] in linked][:2]  # incidents name them
    switched = next(r for r in ended if r["business_service"] and r not in (moved, gone))
    end = datetime.strptime(moved["work_end"], "%Y-%m-%d %H:%M:%S") + timedelta(hours=5)
    snow.instance.update("change_request", moved["sys_id"], work_end=f"{end:%Y-%m-%d %H:%M:%S}")
    others = {r["business_service"] for r in ended} - {switched["business_service"]}
    snow.instance.update("change_request", switched["sys_id"], business_service=sorted(others)[0])
    snow.instance.delete("change_request", gone["sys_id"])
    assert resync(engine, config).ok
    (found,) = census(engine, config, stream="change_request")
    assert found.marked_deleted == 1
    with engine.connect() as conn:
        assert attribution_store.is_current(conn, config)
    after = kept(engine)
    assert after == by_rule(engine, config) != before
    # an incident still names the deleted change it is linked to, whose end is now unknown
    ends = [end for change, end in after.values() if change == gone["sys_id"]]
    assert ends and all(end is None for end in ends)

    # An incident from another month is linked to the moved change, then deleted: the
    # census restates the change's month of I7 and F5 without it.
    local = end.replace(tzinfo=UTC).astimezone(config.zone)
    month = parse_period(f"{local.year}-{local.month:02d}", config.zone)
    far = next(
        r
        for r in snow.instance.records("incident")
        if r["resolved_at"]
        and not r["caused_by"]
        and abs((datetime.strptime(r["opened_at"], "%Y-%m-%d %H:%M:%S") - end).days) > 70
    )
    snow.instance.update("incident", far["sys_id"], caused_by=moved["sys_id"])
    assert resync(engine, config).ok
    with engine.connect() as conn:  # the month's scope still holds a link from far away
        assert attribution_store.is_current(conn, config)
        linked_in = _sums(compute(conn, config, {"I7": [month], "F5": [month]}))
        monkeypatch.setattr(aggregate, "can_group", lambda *_: False)
        assert linked_in == _sums(compute(conn, config, {"I7": [month], "F5": [month]}))
        monkeypatch.undo()
    snow.instance.delete("incident", far["sys_id"])
    (found,) = census(engine, config, stream="incident")
    assert found.marked_deleted == 1
    with engine.connect() as conn:
        stored = {
            (r["metric"], r["dimension"]): (r["numerator"], r["denominator"], r["n"])
            for r in store.read_metric_values(conn, metrics=["I7", "F5"], grain="month")
            if r["period"] == month.label
        }
        fresh = {
            (v.metric, v.dimension): (v.numerator, v.denominator, v.n)
            for v in compute(conn, config, {"I7": [month], "F5": [month]})
        }
    assert stored == fresh and fresh[("I7", "all")][2] > 0

    plan = _year(config)
    with engine.connect() as conn:
        from_rows = compute(conn, config, plan)
    with engine.begin() as conn:  # as if a write had come since: worked out in SQL
        conn.execute(sa.update(INCIDENTS).values(attribution_current=False))
    with engine.connect() as conn:
        assert not attribution_store.is_current(conn, config)
        in_sql = compute(conn, config, plan)
        monkeypatch.setattr(aggregate, "can_group", lambda *_: False)
        per_record = compute(conn, config, plan)
    assert _keyed(from_rows) == _keyed(in_sql) == _keyed(per_record)
    assert sum(v.n for v in from_rows if v.metric == "I10" and v.dimension == "all") > 0
    for field in ("value", "numerator"):  # SQLite's julianday hours differ in the last digits
        expected = {(v.metric, v.period, v.dimension): getattr(v, field) for v in per_record}
        for values in (from_rows, in_sql):
            got = {(v.metric, v.period, v.dimension): getattr(v, field) for v in values}
            assert got == pytest.approx(expected), field


def test_a_refresh_shuts_out_incident_writes_until_it_ends(db_url: str, tmp_path: Path) -> None:
    """No incident can be written between the refresh reading the records and marking
    them current (it would be marked current with what it did not read): a new incident
    waits for the refresh's transaction, then goes in stale."""
    config = _config(tmp_path, db_url, 12.0)
    engine = db.create_db_engine(make_url(db_url), busy_timeout_seconds=0.2)
    db.upgrade(engine)
    changes, incidents = random_rows(seed=3)
    with engine.begin() as conn:
        conn.execute(sa.insert(CHANGES), changes)
        conn.execute(sa.insert(INCIDENTS), incidents)
    newcomer = {**incidents[0], "source_id": "inc-new", "service": "vpn"}
    other = db.create_db_engine(make_url(db_url), busy_timeout_seconds=0.2)
    with engine.begin() as conn:
        assert attribution_store.refresh(conn, config) == len(incidents)
        with pytest.raises(sa.exc.OperationalError), other.begin() as writer:
            if writer.dialect.name == "postgresql":
                writer.exec_driver_sql("SET LOCAL lock_timeout = '200ms'")
            store.write_canonical(writer, INCIDENTS, [newcomer])
    with other.begin() as writer:  # the refresh has ended: the write goes in, stale
        store.write_canonical(writer, INCIDENTS, [newcomer])
    with engine.connect() as conn:
        assert not attribution_store.is_current(conn, config)
    other.dispose()
    engine.dispose()
