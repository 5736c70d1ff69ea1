"""Arbitrary source records through the shipped mappings and into the database.

Whatever a source sends — missing fields, wrong types, odd or impossible
dates, huge numbers and strings, NUL characters — a record is either mapped
to rows the database accepts or skipped with a reason; a run never crashes
on one record.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from daemon import db, store
from daemon.defaults import config_dir
from daemon.models import CANONICAL_TABLES
from mapping.router import StreamMapper
from mapping.spec import load_mapping

MAPPINGS = {
    "snow": load_mapping(config_dir() / "mappings" / "servicenow.toml"),
    "jsm": load_mapping(config_dir() / "mappings" / "jira.toml"),
}
STREAMS = [
    ("snow", "incident"),
    ("snow", "change_request"),
    ("snow", "task_sla"),
    ("jsm", "issues"),
]
UPDATED = datetime(2026, 5, 1, tzinfo=UTC)

odd_dates = st.sampled_from(
    [
        "0001-01-01 00:00:00",
        "9999-12-31 23:59:59",
        "0001-01-01T00:30:00.000+1400",
        "9999-12-31T23:30:00.000-1200",
        "2026-02-30 10:00:00",
        "2026-03-29 02:30:00",  # a local time that does not exist
        "2026-10-25 02:30:00",  # one that exists twice
        "2026-05-01T10:00:00.000+0200",
        "2026-05-01 10:00:00",
        "",
        "  ",
    ]
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.text(min_size=250, max_size=400),
    st.just("a\x00b"),
    odd_dates,
    st.sampled_from(["1", "2", "3", "6", "7", "true", "false", "1e400", "-0", "P1"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _nest(paths: dict[str, Any]) -> dict[str, Any]:
    """``{"fields.status.name": v}`` -> nested objects (Jira); flat keys stay flat too."""
    record: dict[str, Any] = {}
    for path, value in paths.items():
        record[path] = value
        parts = path.split(".")
        node = record
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return record


@st.composite
def records(draw: st.DrawFn, fields: list[str]) -> tuple[str, dict[str, Any]]:
    chosen = draw(st.lists(st.sampled_from(fields), unique=True, max_size=len(fields)))
    data = _nest({name: draw(values) for name in chosen})
    if draw(st.booleans()):
        data["changelog"] = draw(values)
    if draw(st.booleans()) and isinstance(data.get("fields"), dict):
        data["fields"]["itbsc:sla"] = draw(values)
    record_id = draw(st.one_of(st.text(min_size=1, max_size=12), st.text(min_size=201)))
    return record_id, data


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'itbsc.db'}"
        created = None
    else:
        admin: sa.Engine = request.getfixturevalue("postgres_admin")
        created = f"itbsc_hostile_{id(request)}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{created}"'))
        url = admin.url.set(database=created).render_as_string(hide_password=False)
    engine = db.create_db_engine(make_url(url))
    db.upgrade(engine)
    yield engine
    engine.dispose()
    if created:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{created}" WITH (FORCE)'))


@pytest.mark.parametrize(("source", "stream"), STREAMS)
def test_any_record_is_mapped_or_skipped_with_a_reason_never_a_crash(
    engine: sa.Engine, source: str, stream: str
) -> None:
    mapper = StreamMapper(MAPPINGS[source], stream, source)
    fields = [f for f in mapper.source_fields() if not f.startswith("@")]

    @settings(
        max_examples=120,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(records(fields), max_size=4, unique_by=lambda r: r[0]))
    def check(batch: list[tuple[str, dict[str, Any]]]) -> None:
        page = mapper.map_page([(record_id, UPDATED, data) for record_id, data in batch])
        placed = {row["source_id"] for target in mapper.primary for row in page.rows[target.kind]}
        skipped = {record_id for record_id, _ in page.skipped}
        for record_id, _ in batch:
            if mapper.primary:
                assert (record_id in placed) != (record_id in skipped), record_id
        assert all(reason for _, reason in page.skipped)
        with engine.connect() as conn, conn.begin() as transaction:
            for kind, rows in page.rows.items():
                store.write_canonical(conn, CANONICAL_TABLES[kind], rows)
            transaction.rollback()

    check()
