"""Fixtures the computation tests share."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from daemon import db
from daemon.settings import Config, load_config
from daemon.sync import resync
from sandbox.servicenow import RunningSandbox
from tests.conftest import ALL_STREAMS, write_config


@pytest.fixture
def synced(snow: RunningSandbox, db_url: str, tmp_path: Path) -> Iterator[tuple[Config, sa.Engine]]:
    """Every ServiceNow stream of the sandbox synced into a fresh database of each kind."""
    files = write_config(tmp_path, url=snow.url, db_url=db_url, streams=ALL_STREAMS)
    with synced_store(files.path, files.env) as config_and_engine:
        yield config_and_engine


@contextmanager
def synced_store(path: Path, env: Mapping[str, str]) -> Iterator[tuple[Config, sa.Engine]]:
    """The configured database, migrated and filled by one sync of every configured stream."""
    config = load_config(path, env=env)
    engine = db.create_db_engine(config.database_url)
    db.upgrade(engine)
    assert resync(engine, config).ok
    yield config, engine
    engine.dispose()
