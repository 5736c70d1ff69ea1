"""A sync killed with SIGKILL between pages, then rerun: nothing lost, nothing duplicated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from daemon import db, store
from daemon.settings import load_config
from sandbox.servicenow import RunningSandbox
from tests.conftest import write_config
from tests.daemon.test_dataflow import source_truth, stored_raw


def itbsc(config: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "daemon.cli", "--config", str(config), *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def raw_count(engine: sa.Engine) -> int:
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(store.raw_table)).scalar_one()
            )
    except sa.exc.SQLAlchemyError:
        return 0  # schema not created yet


def test_kill_between_pages_then_resume(snow: RunningSandbox, db_url: str, tmp_path: Path) -> None:
    files = write_config(tmp_path, url=snow.url, db_url=db_url, page_size=50)
    config = load_config(files.path, env=files.env)
    engine = db.create_db_engine(config.database_url)
    snow.instance.latency_seconds = 0.15

    victim = itbsc(files.path, files.env, "resync")
    deadline = time.monotonic() + 60
    while raw_count(engine) < 150 and time.monotonic() < deadline and victim.poll() is None:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    at_kill = raw_count(engine)
    assert 150 <= at_kill < 600, f"the kill should land mid-sync, found {at_kill} rows"
    assert at_kill % 50 == 0, "only whole pages are ever committed"

    snow.instance.latency_seconds = 0.0
    rerun = itbsc(files.path, files.env, "resync", "--format", "json")
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err.decode()[-2000:]
    resumed = json.loads(out)["streams"][0]
    assert resumed["fetched"] == 600 - at_kill, "the rerun resumes after the last committed page"

    assert stored_raw(engine) == source_truth(snow, config)
    with engine.connect() as conn:
        outcomes = [
            r.outcome
            for r in conn.execute(sa.select(store.run_table).order_by(store.run_table.c.started_at))
        ]
        cursor = store.read_cursor(conn, "snow", "incident")
    assert outcomes == ["abandoned", "succeeded"]
    last = max(snow.instance.records("incident"), key=lambda r: (r["sys_updated_on"], r["sys_id"]))
    assert cursor == {"sys_updated_on": last["sys_updated_on"], "sys_id": last["sys_id"]}
    engine.dispose()
