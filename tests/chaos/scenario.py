"""What the chaos suites share: a source to sync, a clean reference, the comparison."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from daemon import db, store
from daemon.models import CANONICAL_TABLES
from daemon.settings import Config, load_config
from daemon.sync import resync

VOLATILE = {"id", "fetched_at", "run_id", "computed_at"}


def resync_process(path: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """``itbsc resync`` as its own process (to be killed, or to see its exit code and stderr)."""
    return subprocess.Popen(
        [sys.executable, "-m", "daemon.cli", "--config", str(path), "resync"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@dataclass
class Source:
    """One sandbox to sync from: how to configure itbsc for it and what it holds."""

    name: str  # the configured source name
    stream: str
    write_config: Callable[[Path, str], tuple[Path, dict[str, str]]]  # (directory, db url)
    visible_ids: Callable[[], set[str]]
    faults: list[Any]  # the sandbox's switchable fault list
    hidden: set[str]  # the sandbox's ACL-hidden ids

    def config(self, directory: Path, db_url: str | None = None) -> Config:
        directory.mkdir(parents=True, exist_ok=True)
        path, env = self.write_config(directory, db_url or f"sqlite:///{directory / 'itbsc.db'}")
        return load_config(path, env=env)


def engine_for(config: Config) -> sa.Engine:
    engine = db.create_db_engine(config.database_url)
    db.upgrade(engine)
    return engine


def image(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every stored row that a sync or a computation decides, without when it was written."""
    tables = [store.raw_table, *CANONICAL_TABLES.values(), store.metric_table]
    out = {}
    with engine.connect() as conn:
        for table in tables:
            columns = [c for c in table.c if c.name not in VOLATILE]
            rows = conn.execute(sa.select(*columns)).all()
            out[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return out


def stored_ids(engine: sa.Engine, stream: str) -> list[str]:
    raw = store.raw_table
    with engine.connect() as conn:
        return [
            r.source_id
            for r in conn.execute(
                sa.select(raw.c.source_id).where(raw.c.stream == stream, raw.c.deleted_at.is_(None))
            )
        ]


def assert_matches_a_clean_run(source: Source, engine: sa.Engine, clean_dir: Path) -> None:
    """Nothing lost, nothing doubled, the cursor saved, every row as a clean sync writes it."""
    ids = stored_ids(engine, source.stream)
    assert len(ids) == len(set(ids)), "a record is stored twice"
    expected = source.visible_ids()
    assert set(ids) == expected, (
        f"lost {len(expected - set(ids))}, unexpected {len(set(ids) - expected)}"
    )
    with engine.connect() as conn:
        cursor = store.read_cursor(conn, source.name, source.stream)
    assert cursor, "the completed stream has a cursor"
    config = source.config(clean_dir)
    clean = engine_for(config)
    try:
        summary = resync(clean, config)
        assert summary.ok, [s.error for s in summary.streams]
        got, want = image(engine), image(clean)
        for table in want:
            only_here = [r for r in got[table] if r not in want[table]][:3]
            only_clean = [r for r in want[table] if r not in got[table]][:3]
            assert got[table] == want[table], (
                f"{table} differs from a clean run's: here {only_here}, clean {only_clean}"
            )
    finally:
        clean.dispose()
