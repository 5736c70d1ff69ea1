"""What a sync's page reads besides its own records goes through indexes, on a fresh store.

A page's writes look up stored rows they move: the incidents a change reaches, the
satisfaction answers an issue carries. On SQLite without statistics (a new store,
never analysed) the planner took an equality on the source for a selective key and
read the whole table for each page; these tests read the plans SQLite chooses.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from daemon import attribution_sql, attribution_store, db, derive, store
from daemon.models import CANONICAL_TABLES
from tests.daemon.test_attribution_store import _config


def _watched(engine: sa.Engine, table: str) -> list[tuple[str, Any]]:
    """The statements on ``table`` run from now on, with their parameters."""
    statements: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if table in statement and not statement.startswith("EXPLAIN"):
            statements.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", seen)
    return statements


def _plan(conn: sa.Connection, statement: str, parameters: Any) -> str:
    rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
    return " | ".join(str(row[-1]) for row in rows)


def test_a_page_of_changes_reads_only_the_incidents_in_its_reach(tmp_path: Path) -> None:
    """Marking stale, and finding the periods of, the incidents a page of changes reaches
    reads the changes' service-and-window ranges and their links through indexes. On a
    fresh SQLite store (no statistics) the planner had read every incident of the source
    for each page instead: 0.3 s a page of 100 changes at a million incidents."""
    config = _config(tmp_path, f"sqlite:///{tmp_path / 'reach.db'}", 12)
    engine = db.create_db_engine(config.database_url)
    db.upgrade(engine)
    ended = datetime(2026, 3, 1, 9, tzinfo=UTC)
    changes = [
        {"source_id": f"chg{i}", "service": f"svc{i % 7}", "work_end": ended + timedelta(hours=i)}
        for i in range(20)
    ]
    statements = _watched(engine, "itil_incident")
    with engine.begin() as conn:
        attribution_store.mark_reached(conn, config, "snow", changes)
        list(derive.attribution_moments(conn, config, "change", "snow", changes))
        assert len(statements) == 2
        for statement, parameters in statements:
            steps = _plan(conn, statement, parameters)
            assert "ix_itil_incident_service_opened_at (service=? AND opened_at>" in steps, steps
            assert "ix_itil_incident_caused_by (caused_by=?)" in steps, steps
            assert "(source=?)" not in steps, steps
    engine.dispose()


def test_a_page_finds_its_issues_satisfaction_answers_by_their_ticket(tmp_path: Path) -> None:
    """A Jira page rewrites the satisfaction answers expanded from its issues: read and
    cleared by (source, task), which had read the whole survey table twice a page."""
    engine = db.create_db_engine(sa.make_url(f"sqlite:///{tmp_path / 'answers.db'}"))
    db.upgrade(engine)
    surveys = CANONICAL_TABLES["survey"]
    statements = _watched(engine, "itil_survey")
    with engine.begin() as conn:
        tasks = [f"1000{i}" for i in range(30)]
        store.existing_children(conn, surveys, "jira", "task", tasks, ["responded_at"])
        store.delete_stale_children(conn, surveys, "jira", "task", {t: ["x"] for t in tasks})
        assert len(statements) == 2
        for statement, parameters in statements:
            steps = _plan(conn, statement, parameters)
            assert "USING INDEX ix_itil_survey_source_task (source=? AND task=?)" in steps, steps
    engine.dispose()


def test_stale_attributions_are_found_through_their_index(tmp_path: Path) -> None:
    """Whether any incident's kept attribution is stale is asked by every computation,
    every restatement and ``itbsc status``; the partial index holds only the stale rows,
    and SQLite uses it only when the query repeats its condition. Written as ``NOT
    attribution_current`` it did not match SQLAlchemy's ``attribution_current = 0``,
    and each question read the whole incident table (0.13 s at a million incidents).
    Working out the stale ones reads them through the index too, not the ``caused_by``
    or ``service`` index over nearly every incident."""
    config = _config(tmp_path, f"sqlite:///{tmp_path / 'stale.db'}", 12)
    engine = db.create_db_engine(config.database_url)
    db.upgrade(engine)
    with engine.begin() as conn:
        attribution_store.refresh(conn, config)  # keeps the rule: later ones ask for stale rows
    statements = _watched(engine, "attribution_current")
    with engine.begin() as conn:
        attribution_store.state(conn, config)
        attribution_store.is_current(conn, config)
        attribution_store.refresh(conn, config)
        asked = [(s, p) for s, p in statements if not s.startswith("UPDATE")]
        assert len(asked) == 3, asked
        for statement, parameters in asked:
            steps = _plan(conn, statement, parameters)
            assert "INDEX ix_itil_incident_attribution_stale" in steps, steps
        stale = ~CANONICAL_TABLES["incident"].c.attribution_current
        conn.execute(attribution_sql.attributions(config, "sqlite", only=stale)).all()
        steps = _plan(conn, *statements[-1])
        read = [s for s in steps.split(" | ") if "itil_incident" in s]
        assert len(read) == 2, steps  # the explicit links and the rule's candidates
        assert all("USING INDEX ix_itil_incident_attribution_stale" in s for s in read), steps
    engine.dispose()
