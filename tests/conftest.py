"""Shared fixtures: a served sandbox ServiceNow, databases (SQLite always, PostgreSQL where present), configs."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from daemon.defaults import config_dir
from sandbox.generator import generate
from sandbox.servicenow import RunningSandbox, ServiceNowInstance, serve

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PG_URL = os.environ.get("ITBSC_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("ITBSC_REQUIRE_POSTGRES") == "1"
SANDBOX_USER, SANDBOX_PASSWORD = "itbsc-test", "s3cret-Marker-7f1c"
DATA_END = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def snow() -> Iterator[RunningSandbox]:
    """A sandbox ServiceNow with 600 generated incidents ending 2026-06-30."""
    instance = ServiceNowInstance(users={SANDBOX_USER: SANDBOX_PASSWORD})
    instance.load(generate(600, end=DATA_END, seed=7))
    with serve(instance) as running:
        yield running


def _postgres_admin() -> sa.Engine | None:
    engine = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect():
            return engine
    except sa.exc.OperationalError:
        engine.dispose()
        return None


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[sa.Engine]:
    engine = _postgres_admin()
    if engine is None:
        if REQUIRE_PG:
            pytest.fail(
                f"PostgreSQL is required here (ITBSC_REQUIRE_POSTGRES=1) but {PG_URL} is unreachable"
            )
        pytest.skip(f"PostgreSQL not reachable at {PG_URL} (set ITBSC_TEST_PG_URL); CI requires it")
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each kind: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'itbsc.db'}"
        return
    admin: sa.Engine = request.getfixturevalue("postgres_admin")
    name = f"itbsc_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass
class ConfigFiles:
    path: Path
    env: dict[str, str]


ALL_STREAMS = (
    "sys_user_group",
    "change_request",
    "problem",
    "incident",
    "task_sla",
    "sc_req_item",
    "asmt_metric_result",
)


def write_config(
    directory: Path,
    *,
    url: str,
    db_url: str,
    page_size: int = 100,
    extra_source: str = "",
    streams: tuple[str, ...] = ("incident",),
    max_retries: int = 1,
    timeout_seconds: float = 10,
    auth: str = "",
) -> ConfigFiles:
    """An itbsc.toml for the sandbox plus copies of the shipped mapping, catalogue and scorecard."""
    shipped = config_dir()
    (directory / "mappings").mkdir(parents=True, exist_ok=True)
    for name in ("metrics.toml", "scorecard.toml", "mappings/servicenow.toml"):
        shutil.copyfile(shipped / name, directory / name)
    path = directory / "itbsc.toml"
    path.write_text(
        f"""
[database]
url = "{db_url}"

[reporting]
timezone = "Europe/Amsterdam"

[sources.snow]
kind = "servicenow"
url = "{url}"
username = "{SANDBOX_USER}"
password_env = "ITBSC_TEST_SNOW_PASSWORD"
streams = [{", ".join(f'"{s}"' for s in streams)}]
mapping = "mappings/servicenow.toml"
page_size = {page_size}
max_retries = {max_retries}
timeout_seconds = {timeout_seconds}
{auth}
{extra_source}
""",
        encoding="utf-8",
    )
    return ConfigFiles(path, {"ITBSC_TEST_SNOW_PASSWORD": SANDBOX_PASSWORD})


@pytest.fixture
def snow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ITBSC_TEST_SNOW_PASSWORD", SANDBOX_PASSWORD)
