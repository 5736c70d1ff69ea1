"""Migrations reach head from empty, and the models have not drifted from them."""

from __future__ import annotations

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


def test_migrations_ship_inside_the_installed_package() -> None:
    assert (db.MIGRATIONS / "env.py").is_file()
    assert list((db.MIGRATIONS / "versions").glob("*_initial_schema.py"))
