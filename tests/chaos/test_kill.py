"""``kill -9`` of ``itbsc resync`` at random moments, then a rerun: the database ends exactly as a
clean sync leaves it — no record lost or doubled, the cursor where a clean run puts it, every
canonical row and metric value equal.

Reduced in ``make test`` (a few thousand records, three kills per source); ``make chaos`` runs
the full trial: 100,000 ServiceNow incidents and 20 kills per source
(``ITBSC_CHAOS_FULL=1``). Kill moments come from ``ITBSC_CHAOS_SEED`` and are printed.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from daemon import db, store
from daemon.settings import Config, load_config
from sandbox.generator import generate
from sandbox.jira import JiraInstance, serve_jira
from sandbox.jira_data import generate_jira
from sandbox.servicenow import ServiceNowInstance, serve
from tests.chaos.scenario import image, resync_process, stored_ids
from tests.conftest import DATA_END, SANDBOX_PASSWORD, SANDBOX_USER, write_config
from tests.connectors.test_jira_sync import EMAIL, TOKEN, write_jira_config
from tests.helpers import source_truth, stored_raw

FULL = os.environ.get("ITBSC_CHAOS_FULL") == "1"
SEED = int(os.environ.get("ITBSC_CHAOS_SEED", "20261128"))
TRIALS = 20 if FULL else 3
SNOW_RECORDS = 100_000 if FULL else 3_000
JIRA_ISSUES = 20_000 if FULL else 1_200


@dataclass
class Target:
    """A served sandbox, a config per database, and the clean run's outcome to compare with."""

    name: str
    stream: str
    configure: Callable[[Path], tuple[Path, dict[str, str]]]
    truth: Callable[[Config, sa.Engine], None]  # asserts the stored records are the source's
    clean_seconds: float = 0.0
    clean_image: dict[str, list[tuple[object, ...]]] | None = None
    clean_cursor: dict[str, str] | None = None
    up_to: Callable[[dict[str, str]], set[str]] | None = None  # source ids at or before a cursor


def cursor_of(engine: sa.Engine, target: Target) -> dict[str, str] | None:
    with engine.connect() as conn:
        return store.read_cursor(conn, target.name, target.stream)


def prepare(target: Target, directory: Path) -> Target:
    """Run a clean sync once: its duration spreads the kills, its image is the reference."""
    path, env = target.configure(directory)
    started = time.monotonic()
    process = resync_process(path, env)
    _, err = process.communicate(timeout=1800)
    assert process.returncode == 0, err[-2000:]
    target.clean_seconds = time.monotonic() - started
    config = load_config(path, env=env)
    engine = db.create_db_engine(config.database_url)
    target.truth(config, engine)
    target.clean_image = image(engine)
    target.clean_cursor = cursor_of(engine, target)
    engine.dispose()
    return target


@pytest.fixture(scope="module")
def snow_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    instance = ServiceNowInstance(users={SANDBOX_USER: SANDBOX_PASSWORD})
    instance.load(generate(SNOW_RECORDS, end=DATA_END, seed=21, related=False))
    page = 1000 if FULL else 200
    with serve(instance) as running:

        def configure(directory: Path) -> tuple[Path, dict[str, str]]:
            directory.mkdir(parents=True, exist_ok=True)
            db_url = f"sqlite:///{directory / 'itbsc.db'}"
            files = write_config(directory, url=running.url, db_url=db_url, page_size=page)
            return files.path, files.env

        def truth(config: Config, engine: sa.Engine) -> None:
            assert stored_raw(engine) == source_truth(running, config)

        def up_to(cursor: dict[str, str]) -> set[str]:
            bound = (cursor["sys_updated_on"], cursor["sys_id"])
            return {
                r["sys_id"]
                for r in instance.records("incident")
                if (r["sys_updated_on"], r["sys_id"]) <= bound
            }

        target = Target("snow", "incident", configure, truth, up_to=up_to)
        yield prepare(target, tmp_path_factory.mktemp("snow-clean"))


@pytest.fixture(scope="module")
def jira_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    site = JiraInstance(flavour="cloud", users={EMAIL: TOKEN})
    site.load(generate_jira(JIRA_ISSUES, end=DATA_END, seed=21))
    with serve_jira(site) as running:

        def configure(directory: Path) -> tuple[Path, dict[str, str]]:
            directory.mkdir(parents=True, exist_ok=True)
            db_url = f"sqlite:///{directory / 'itbsc.db'}"
            path = write_jira_config(directory, running.url, page_size=100, db_url=db_url)
            return path, {"ITBSC_TEST_JIRA_TOKEN": TOKEN}

        def truth(config: Config, engine: sa.Engine) -> None:
            ids = stored_ids(engine, "issues")
            assert len(ids) == len(set(ids)), "an issue is stored twice"
            assert set(ids) == set(site.issues)

        target = Target("jsm", "issues", configure, truth)
        yield prepare(target, tmp_path_factory.mktemp("jira-clean"))


def kill_then_rerun(target: Target, directory: Path, trial: int) -> str:
    """One trial; returns a line for the log: when the kill landed and what it left."""
    rng = random.Random(f"{SEED}-{target.name}-{trial}")
    moment = rng.uniform(0.02, 1.0) * target.clean_seconds
    path, env = target.configure(directory)
    victim = resync_process(path, env)
    time.sleep(moment)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    config = load_config(path, env=env)
    engine = db.create_db_engine(config.database_url)
    try:
        left = _consistent_after_kill(engine, target)
        rerun = resync_process(path, env)
        _, err = rerun.communicate(timeout=1800)
        assert rerun.returncode == 0, err[-2000:]
        target.truth(config, engine)
        assert cursor_of(engine, target) is not None
        if target.name == "snow":  # a keyset cursor: exactly where a clean run leaves it
            assert cursor_of(engine, target) == target.clean_cursor
        got, want = image(engine), target.clean_image
        assert want is not None
        for table, rows in want.items():
            assert got[table] == rows, f"trial {trial}: {table} differs from a clean run's"
    finally:
        engine.dispose()
    return f"{target.name} trial {trial}: killed at {moment:.2f}s ({left})"


def _consistent_after_kill(engine: sa.Engine, target: Target) -> str:
    """What a kill leaves: whole pages, and a cursor no further than what is stored."""
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(store.raw_table.c.payload).where(
                    store.raw_table.c.stream == target.stream
                )
            ).all()
    except sa.exc.OperationalError:
        return "before the schema existed"
    cursor = cursor_of(engine, target)
    if target.up_to is not None and cursor is not None:
        # every record up to the saved cursor is stored, and none beyond it
        assert set(stored_ids(engine, target.stream)) == target.up_to(cursor)
    return f"{len(rows)} records stored, cursor {'saved' if cursor else 'none'}"


@pytest.mark.parametrize("trial", range(TRIALS))
def test_servicenow_sync_killed_at_a_random_moment_then_rerun(
    snow_target: Target, tmp_path: Path, trial: int
) -> None:
    print(kill_then_rerun(snow_target, tmp_path, trial))


@pytest.mark.parametrize("trial", range(TRIALS))
def test_jira_sync_killed_at_a_random_moment_then_rerun(
    jira_target: Target, tmp_path: Path, trial: int
) -> None:
    print(kill_then_rerun(jira_target, tmp_path, trial))
