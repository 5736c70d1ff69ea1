"""Migrations reach head from empty, and the models have not drifted from them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import make_url

from daemon import db
from daemon.models import Base


def test_upgrade_from_empty_then_no_drift(db_url: str) -> None:
    engine = db.create_db_engine(make_url(db_url))
    assert not db.is_at_head(engine)
    db.upgrade(engine)
    assert db.is_at_head(engine)
    db.upgrade(engine)  # idempotent
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"models differ from migrations: {diff}"
    engine.dispose()


class Interrupted(Exception):
    """Stands in for a kill: the upgrade stops after some of its statements ran."""


def test_an_upgrade_stopped_halfway_leaves_the_schema_as_it_was(db_url: str) -> None:
    engine = db.create_db_engine(make_url(db_url))
    created: list[str] = []

    def stop_at_the_fourth_table(
        _conn: object, _cursor: object, statement: str, *_: object
    ) -> None:
        if statement.lstrip().upper().startswith("CREATE TABLE"):
            created.append(statement)
            if len(created) == 4:
                raise Interrupted

    sa.event.listen(sa.Engine, "before_cursor_execute", stop_at_the_fourth_table)
    try:
        with pytest.raises(Interrupted):
            db.upgrade(engine)
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", stop_at_the_fourth_table)
    assert len(created) == 4  # three tables were created before the stop
    assert sa.inspect(engine).get_table_names() == []  # and none of them remains
    db.upgrade(engine)  # the next start migrates from empty
    assert db.is_at_head(engine)
    engine.dispose()


def test_migrations_ship_inside_the_installed_package() -> None:
    assert (db.MIGRATIONS / "env.py").is_file()
    assert list((db.MIGRATIONS / "versions").glob("*_initial_schema.py"))


def test_grafana_views_read_the_stored_values(db_url: str) -> None:
    import sqlalchemy as sa

    from daemon import store

    engine = db.create_db_engine(make_url(db_url))
    db.upgrade(engine)
    start = datetime(2026, 4, 30, 22, tzinfo=UTC)
    end = datetime(2026, 5, 31, 22, tzinfo=UTC)
    base = {
        "metric": "C1",
        "grain": "month",
        "period": "2026-05",
        "period_start": start,
        "period_end": end,
        "numerator": 9.0,
        "denominator": 10.0,
        "n": 10,
        "exclusions": {},
        "mapping_version": "v",
        "computed_at": end,
    }
    with engine.begin() as conn:
        store.write_metric_values(
            conn,
            [
                {**base, "dimension": "all", "value": 90.0},
                {**base, "dimension": "source=snow", "value": 80.0},
            ],
        )
    with engine.connect() as conn:
        monthly = conn.execute(sa.text("SELECT metric, period, value FROM v_metric_monthly")).all()
        by_source = conn.execute(sa.text("SELECT source, value FROM v_metric_by_source")).all()
        every = conn.execute(sa.text("SELECT count(*) FROM v_metric_value")).scalar_one()
    assert [tuple(r) for r in monthly] == [("C1", "2026-05", 90.0)]
    assert [tuple(r) for r in by_source] == [("snow", 80.0)]
    assert every == 2
    engine.dispose()
