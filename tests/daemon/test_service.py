"""`itbsc run` as an operator runs it: a real process, real signals, the sandbox, the database.

The service syncs on its schedule and says so in `itbsc status`, /healthz and
/metrics; SIGTERM in the middle of a sync leaves whole pages only and exits 0,
the next run resumes; the CLI and the service share streams through the lease
locks; two services on one PostgreSQL never sync the same stream at once.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from daemon import db, locks, store
from daemon.settings import load_config
from sandbox.faults import Fault
from sandbox.servicenow import RunningSandbox
from tests.conftest import ConfigFiles, write_config

SCHEDULE = """
[daemon]
heartbeat_seconds = 0.5
stop_timeout_seconds = 20
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_config(tmp_path: Path, snow: RunningSandbox, db_url: str, **extra: Any) -> ConfigFiles:
    every = extra.pop("every", "1s")
    http = extra.pop("http", None)
    files = write_config(
        tmp_path, url=snow.url, db_url=db_url, page_size=extra.pop("page_size", 100)
    )
    text = files.path.read_text().replace(
        'mapping = "mappings/servicenow.toml"',
        f'mapping = "mappings/servicenow.toml"\nevery = "{every}"',
    )
    daemon = SCHEDULE + (f'http = "{http}"\n' if http else "")
    files.path.write_text(text + daemon)
    return files


def start(files: ConfigFiles, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, **files.env, "NO_COLOR": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "daemon.cli", "--config", str(files.path), "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def cli(files: ConfigFiles, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **files.env, "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", "--config", str(files.path), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def until(check: Callable[[], Any], seconds: float = 45.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds} s")


def engine_of(files: ConfigFiles) -> sa.Engine:
    config = load_config(files.path, env=files.env)
    engine = db.create_db_engine(config.database_url)
    db.upgrade(engine)  # before the service does: the test reads as soon as it starts
    return engine


def runs(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(store.run_table).order_by(store.run_table.c.started_at)))


def raw_records(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(store.raw_table)
        return int(conn.execute(query).scalar_one())


def stop(process: subprocess.Popen[str], timeout: float = 30) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def test_the_service_syncs_on_schedule_reports_itself_and_stops_cleanly(
    snow: RunningSandbox, tmp_path: Path
) -> None:
    port = free_port()
    files = service_config(
        tmp_path, snow, f"sqlite:///{tmp_path / 'svc.db'}", http=f"127.0.0.1:{port}"
    )
    files.path.write_text(
        files.path.read_text() + '\n[reports]\ndirectory = "reports"\nschedule = "2s"\n'
    )
    engine = engine_of(files)
    service = start(files)
    try:
        until(lambda: len([r for r in runs(engine) if r.outcome == "succeeded"]) >= 2)
        status = json.loads(cli(files, "status", "--format", "json").stdout)
        (stream,) = status["streams"]
        assert stream["records"] == 600 and not stream["stale"]
        assert stream["next_run_at"] is not None  # from the service's heartbeat
        assert [d["alive"] for d in status["daemons"]] == [True]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
            assert answer.status == 200 and json.load(answer)["database"] is True
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
            metrics = answer.read().decode()
        assert 'itbsc_stream_records{source="snow",stream="incident"} 600' in metrics
        assert "itbsc_stream_last_success_timestamp_seconds{" in metrics
        # the scorecard of the last complete month (this data ends in June: stocks only)
        assert any(
            line.startswith("itbsc_scorecard_value{metric=") for line in metrics.splitlines()
        )
        latest = tmp_path / "reports" / "scorecard.html"
        until(lambda: latest.exists())  # the scheduled HTML report
        assert "IT Balanced Scorecard" in latest.read_text()
    finally:
        code, output = stop(service)
    assert code == 0, output
    assert '"event": "service stopped"' in output
    after = json.loads(cli(files, "status", "--format", "json").stdout)
    assert after["daemons"] == []  # it said goodbye
    assert all(r.outcome != "running" for r in runs(engine))
    engine.dispose()


def test_sigterm_mid_sync_keeps_whole_pages_and_the_next_run_resumes(
    snow: RunningSandbox, tmp_path: Path
) -> None:
    snow.instance.faults.append(Fault("slow", times=100, after=1, seconds=0.4))
    files = service_config(tmp_path, snow, f"sqlite:///{tmp_path / 'svc.db'}", page_size=50)
    engine = engine_of(files)
    service = start(files)

    until(lambda: raw_records(engine) >= 100)
    code, output = stop(service)
    assert code == 0, output
    at_stop = raw_records(engine)
    assert 100 <= at_stop < 600 and at_stop % 50 == 0  # whole pages only
    (interrupted,) = [r for r in runs(engine) if r.outcome == "interrupted"]
    assert "stopped on request" in (interrupted.error or "")
    with engine.connect() as conn:
        assert conn.execute(sa.select(locks.LOCKS)).all() == []  # released on the way out
    snow.instance.faults.clear()
    rerun = cli(files, "resync", "--format", "json")
    assert rerun.returncode == 0, rerun.stderr
    assert raw_records(engine) == 600
    assert json.loads(rerun.stdout)["streams"][0]["fetched"] < 600  # resumed, not restarted
    engine.dispose()


def test_the_cli_waits_for_or_reports_a_stream_the_service_holds(
    snow: RunningSandbox, tmp_path: Path
) -> None:
    files = service_config(tmp_path, snow, f"sqlite:///{tmp_path / 'svc.db'}")
    engine = engine_of(files)
    db.upgrade(engine)
    name = locks.lock_name("snow", "incident")
    with locks.held(engine, name, holder="ops-host:4242:abcd1234"):
        busy = cli(files, "resync")
        assert busy.returncode == 4, busy.stdout + busy.stderr
        assert "snow/incident: not synced — another process holds it" in busy.stdout
        assert "being synced by ops-host:4242:abcd1234" in busy.stderr
        assert runs(engine) == []  # nothing started beside the holder

    holder = "ops-host:4242:efgh5678"
    with engine.begin() as conn:
        assert locks.try_acquire(conn, name, holder) is not None

    def release_soon() -> None:
        time.sleep(2)
        with engine.begin() as conn:
            locks.release(conn, name, holder)

    threading.Thread(target=release_soon).start()
    waited = cli(files, "resync", "--wait", "30", "--format", "json")
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)["streams"][0]["written"] == 600
    engine.dispose()


def test_a_dead_holders_lease_on_this_host_is_taken_over_and_an_expired_one_anywhere(
    tmp_path: Path,
) -> None:
    engine = db.create_db_engine(sa.make_url(f"sqlite:///{tmp_path / 'l.db'}"))
    db.upgrade(engine)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    ghost = f"{socket.gethostname()}:{dead.stdout.strip()}:deadbeef"
    with engine.begin() as conn:
        assert locks.try_acquire(conn, "x", ghost) is not None
        assert locks.try_acquire(conn, "y", "elsewhere:1:aa", timedelta(seconds=-1)) is not None
        assert locks.try_acquire(conn, "z", "elsewhere:1:bb") is not None
    with locks.held(engine, "x") as lease:  # its pid is gone: no need to wait
        assert lease.holder == locks.HOLDER
    with locks.held(engine, "y"):  # expired
        pass
    with pytest.raises(locks.LockBusy, match="elsewhere:1:bb"), locks.held(engine, "z"):
        pass
    engine.dispose()


@pytest.mark.postgres
def test_two_services_on_one_postgresql_never_sync_a_stream_at_once(
    snow: RunningSandbox, db_url: str, tmp_path: Path
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("two hosts' worth of services share a PostgreSQL; SQLite is one host's")
    snow.instance.faults.append(Fault("slow", times=10_000, seconds=0.05))
    first = service_config(tmp_path / "a", snow, db_url, every="1s")
    second = service_config(tmp_path / "b", snow, db_url, every="1s")
    engine = engine_of(first)
    db.upgrade(engine)
    services = [start(first), start(second)]
    try:
        until(lambda: len([r for r in runs(engine) if r.outcome == "succeeded"]) >= 4, 90)
    finally:
        results = [stop(s) for s in services]
    assert [code for code, _ in results] == [0, 0], results
    finished = [r for r in runs(engine) if r.finished_at is not None]
    for earlier, later in itertools.pairwise(finished):
        assert later.started_at >= earlier.finished_at, "two runs of one stream overlapped"
    both = "\n".join(output for _, output in results)
    assert "another process holds it" in both  # they did contend, and one stood back
    engine.dispose()


def test_sighup_reloads_a_good_config_and_keeps_running_on_a_bad_one(
    snow: RunningSandbox, tmp_path: Path
) -> None:
    files = service_config(tmp_path, snow, f"sqlite:///{tmp_path / 'svc.db'}", every="1h")
    engine = engine_of(files)
    service = start(files)
    good = files.path.read_text()
    try:
        time.sleep(2)
        files.path.write_text(good.replace('every = "1h"', 'every = "1s"'))
        service.send_signal(signal.SIGHUP)
        until(lambda: any(r.outcome == "succeeded" for r in runs(engine)))  # the new schedule
        files.path.write_text(good + "\n[nonsense\n")
        service.send_signal(signal.SIGHUP)
        time.sleep(1.5)
        assert service.poll() is None  # still running on the old schedule
        count = len(runs(engine))
        until(lambda: len(runs(engine)) > count)
    finally:
        code, output = stop(service)
    assert code == 0, output
    assert '"event": "config reloaded"' in output
    assert '"event": "config not reloaded; the running schedule stays"' in output
    engine.dispose()


def test_no_secret_reaches_a_log_line_an_error_the_status_or_the_database(
    snow: RunningSandbox, tmp_path: Path
) -> None:
    snow.instance.faults.append(Fault("server_error", times=10_000, after=3, status=503))
    files = service_config(tmp_path, snow, f"sqlite:///{tmp_path / 'svc.db'}")
    secret = files.env["ITBSC_TEST_SNOW_PASSWORD"]
    assert "Marker" in secret  # a value no code path would produce by chance
    engine = engine_of(files)
    service = start(files)
    try:
        until(lambda: any(r.outcome == "failed" for r in runs(engine)))
    finally:
        _, output = stop(service)
    status = json.loads(cli(files, "status", "--format", "json").stdout)
    (stream,) = status["streams"]
    assert stream["last_failure"] and "snow" in stream["last_failure"]["error"]  # named
    assert stream["last_run"]["outcome"] == "failed"
    texts = [output]
    for args in (("status",), ("status", "--format", "json"), ("resync",), ("scorecard",)):
        done = cli(files, *args)
        texts += [done.stdout, done.stderr]
    with engine.connect() as conn:
        for table in db_tables(engine):
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                texts.append(repr(tuple(row)))
    failed = [r for r in runs(engine) if r.outcome == "failed"]
    assert failed and all(r.error for r in failed)  # errors were recorded ...
    assert not [t for t in texts if secret in t]  # ... and nothing anywhere holds the secret
    engine.dispose()


def db_tables(engine: sa.Engine) -> list[str]:
    return sa.inspect(engine).get_table_names()


def test_a_stream_on_its_own_schedule_and_the_lag_status_reports(
    snow: RunningSandbox, tmp_path: Path
) -> None:
    files = service_config(tmp_path, snow, f"sqlite:///{tmp_path / 'svc.db'}", every="1h")
    text = files.path.read_text().replace(
        'streams = ["incident"]',
        'streams = ["incident", "sys_user_group"]\nstream_schedules = { incident = "1s" }',
    )
    files.path.write_text(text)
    engine = engine_of(files)
    service = start(files)
    try:
        until(lambda: len([r for r in runs(engine) if r.outcome == "succeeded"]) >= 2)
        status = json.loads(cli(files, "status", "--format", "json").stdout)
    finally:
        code, output = stop(service)
    assert code == 0, output
    synced = {r.stream for r in runs(engine)}
    assert synced == {"incident"}  # the group stream waits for the source's hourly run
    by_stream = {s["stream"]: s for s in status["streams"]}
    assert by_stream["incident"]["lag_seconds"] is not None
    assert by_stream["incident"]["lag_seconds"] < 30
    assert by_stream["sys_user_group"]["complete_up_to"] is None
    assert by_stream["sys_user_group"]["stale"] is True  # never synced
    engine.dispose()


def test_a_second_signal_exits_at_once_and_leaves_only_whole_pages(
    snow: RunningSandbox, tmp_path: Path
) -> None:
    snow.instance.faults.append(Fault("slow", times=100, after=1, seconds=1.5))
    files = service_config(tmp_path, snow, f"sqlite:///{tmp_path / 'svc.db'}", page_size=50)
    engine = engine_of(files)
    service = start(files)

    until(lambda: raw_records(engine) >= 50)
    service.send_signal(signal.SIGTERM)  # asks for a clean stop after the page in flight ...
    time.sleep(0.2)
    began = time.monotonic()
    service.send_signal(signal.SIGTERM)  # ... but the operator will not wait for it
    output, _ = service.communicate(timeout=10)
    assert service.returncode == 130, output
    assert time.monotonic() - began < 5  # at once, not after the slow page
    assert raw_records(engine) % 50 == 0  # whole pages only
    snow.instance.faults.clear()
    rerun = cli(files, "resync", "--format", "json")  # the dead holder's lock is taken over
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert raw_records(engine) == 600
    engine.dispose()
