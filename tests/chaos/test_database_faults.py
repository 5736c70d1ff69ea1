"""The database failing under a sync: PostgreSQL restarting, a SQLite file another program has
locked, a full disk. Each gives a clear error (exit 3, the database named, no password), leaves
only whole pages behind, and the next run resumes and ends with exactly the source's records."""

from __future__ import annotations

import contextlib
import select
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from daemon import db, store
from daemon.settings import load_config
from sandbox.generator import generate
from sandbox.servicenow import RunningSandbox, ServiceNowInstance, serve
from tests.chaos.scenario import resync_process, stored_ids
from tests.conftest import DATA_END, PG_URL, SANDBOX_PASSWORD, SANDBOX_USER, write_config
from tests.helpers import source_truth, stored_raw

RECORDS, PAGE = 3000, 100


@pytest.fixture
def snow() -> Iterator[RunningSandbox]:
    instance = ServiceNowInstance(users={SANDBOX_USER: SANDBOX_PASSWORD})
    instance.load(generate(RECORDS, end=DATA_END, seed=31, related=False))
    instance.latency_seconds = 0.03  # a sync of a few seconds: room to strike mid-way
    with serve(instance) as running:
        yield running


def wait_for_rows(engine: sa.Engine, at_least: int, process: subprocess.Popen[str]) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with engine.connect() as conn:
                count = conn.execute(
                    sa.select(sa.func.count()).select_from(store.raw_table)
                ).scalar_one()
        except sa.exc.SQLAlchemyError:
            count = 0
        if count >= at_least:
            return int(count)
        time.sleep(0.05)
    raise AssertionError(f"the sync never stored {at_least} records")


def only_whole_pages(snow: RunningSandbox, engine: sa.Engine) -> None:
    """Every record up to the saved cursor is stored and none beyond it."""
    with engine.connect() as conn:
        cursor = store.read_cursor(conn, "snow", "incident")
    stored = set(stored_ids(engine, "incident"))
    assert len(stored) % PAGE == 0, f"{len(stored)} records: a partial page"
    if cursor is None:
        assert not stored
        return
    bound = (cursor["sys_updated_on"], cursor["sys_id"])
    expected = {
        r["sys_id"]
        for r in snow.instance.records("incident")
        if (r["sys_updated_on"], r["sys_id"]) <= bound
    }
    assert stored == expected


def resume_completes(path: Path, env: dict[str, str], snow: RunningSandbox) -> None:
    snow.instance.latency_seconds = 0.0
    rerun = resync_process(path, env)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-2000:]
    config = load_config(path, env=env)
    engine = db.create_db_engine(config.database_url)
    try:
        assert stored_raw(engine) == source_truth(snow, config)
        with engine.connect() as conn:
            outcomes = [
                r.outcome
                for r in conn.execute(
                    sa.select(store.run_table).order_by(store.run_table.c.started_at)
                )
            ]
        assert outcomes[-1] == "succeeded"
    finally:
        engine.dispose()


# -- PostgreSQL restarting -------------------------------------------------------------------


class FlakyProxy:
    """A TCP proxy in front of PostgreSQL that can 'restart': every connection is dropped and
    new ones are refused for a while, as clients see a server restart."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.down_until = 0.0
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if time.monotonic() < self.down_until:
                client.close()  # refused while "restarting"
                continue
            server = socket.create_connection(self.upstream)
            with self.lock:
                self.pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 0.5)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (b if sock is a else a).sendall(data)
        except OSError:
            return
        finally:
            for sock in (a, b):
                sock.close()

    def restart(self, seconds: float) -> None:
        self.down_until = time.monotonic() + seconds
        with self.lock:
            for pair in self.pairs:
                for sock in pair:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
            self.pairs.clear()

    def close(self) -> None:
        self.closed = True
        self.listener.close()


@pytest.mark.postgres
def test_postgresql_restarting_mid_sync(
    snow: RunningSandbox, tmp_path: Path, postgres_admin: sa.Engine
) -> None:
    name = f"itbsc_chaos_{uuid.uuid4().hex[:10]}"
    with postgres_admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    direct = make_url(PG_URL).set(database=name)
    proxy = FlakyProxy((direct.host or "127.0.0.1", direct.port or 5432))
    through_proxy = direct.set(host="127.0.0.1", port=proxy.port)
    files = write_config(
        tmp_path,
        url=snow.url,
        db_url=through_proxy.render_as_string(hide_password=False),
        page_size=PAGE,
    )
    watcher = db.create_db_engine(direct)
    try:
        victim = resync_process(files.path, files.env)
        wait_for_rows(watcher, 5 * PAGE, victim)
        proxy.restart(seconds=3)
        _, err = victim.communicate(timeout=120)
        assert victim.returncode == 3, err[-2000:]
        assert "database error" in err and f"{proxy.port}/{name}" in err
        only_whole_pages(snow, watcher)
        time.sleep(3)  # the server is back
        resume_completes(files.path, files.env, snow)
    finally:
        watcher.dispose()
        proxy.close()
        with postgres_admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# -- a locked SQLite file ----------------------------------------------------------------------


def test_a_sqlite_file_locked_by_another_program(snow: RunningSandbox, tmp_path: Path) -> None:
    database = tmp_path / "itbsc.db"
    files = write_config(
        tmp_path,
        url=snow.url,
        db_url=f"sqlite:///{database}",
        page_size=PAGE,
        extra_source="",
    )
    text = files.path.read_text()
    files.path.write_text(text.replace("[database]", "[database]\nbusy_timeout_seconds = 1", 1))
    engine = db.create_db_engine(make_url(f"sqlite:///{database}"))
    try:
        victim = resync_process(files.path, files.env)
        wait_for_rows(engine, 5 * PAGE, victim)
        blocker = sqlite3.connect(database, timeout=30, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another program writing, and taking its time
        _, err = victim.communicate(timeout=120)
        blocker.execute("ROLLBACK")
        blocker.close()
        assert victim.returncode == 3, err[-2000:]
        assert "database is locked" in err and "another program" in err and str(database) in err
        only_whole_pages(snow, engine)
        resume_completes(files.path, files.env, snow)
    finally:
        engine.dispose()


# -- a full disk -------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command to make a small tmpfs")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({made.stderr.strip() or 'not root'})")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk(snow: RunningSandbox, tmp_path: Path, small_disk: Path) -> None:
    database = small_disk / "itbsc.db"
    files = write_config(tmp_path, url=snow.url, db_url=f"sqlite:///{database}", page_size=PAGE)
    snow.instance.latency_seconds = 0.0
    victim = resync_process(files.path, files.env)
    _, err = victim.communicate(timeout=300)
    assert victim.returncode == 3, err[-2000:]
    assert "database or disk is full" in err
    engine = db.create_db_engine(make_url(f"sqlite:///{database}"))
    try:
        only_whole_pages(snow, engine)
        assert 0 < len(stored_ids(engine, "incident")) < RECORDS
    finally:
        engine.dispose()
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    resume_completes(files.path, files.env, snow)
