"""ServiceNow full sync into SQLite against the sandbox: sync time versus fetch-only time.

DESIGN.md says the write path, not the fetch, bounds a sync; this prints how
far the pipeline (raw + canonical upserts + metric recompute) is from the
fetch alone, and peak RSS.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from connectors.base import ConnectionParams, Secret
from connectors.servicenow import ServiceNowSource
from daemon import db
from daemon.logconfig import configure
from daemon.settings import load_config
from daemon.sync import resync
from sandbox.generator import generate
from sandbox.servicenow import ServiceNowInstance, serve

RECORDS = int(os.environ.get("ITBSC_BENCH_RECORDS", "20000"))
PAGE = 1000


def _config(directory: Path, url: str) -> Path:
    from daemon.demo import write_demo_config

    path = write_demo_config(directory, url)
    path.write_text(
        path.read_text()
        .replace("page_size = 500", f"page_size = {PAGE}")
        .replace('username = "itbsc-demo"', 'username = "bench"')
    )
    return path


def run() -> None:
    configure("WARNING")
    instance = ServiceNowInstance(users={"bench": "bench-pw"})
    instance.load(generate(RECORDS, end=datetime(2026, 6, 30, tzinfo=UTC), seed=3))
    os.environ["ITBSC_DEMO_PASSWORD"] = "bench-pw"
    with serve(instance) as sandbox, tempfile.TemporaryDirectory() as tmp:
        params = ConnectionParams(
            name="bench",
            url=sandbox.url,
            username="bench",
            password=Secret("bench-pw"),
            page_size=PAGE,
        )
        start = time.perf_counter()
        with ServiceNowSource(params) as source:
            fetched = sum(
                len(p.records)
                for p in source.read(
                    "incident", fields=["number", "state", "priority", "opened_at", "resolved_at"]
                )
            )
        fetch_s = time.perf_counter() - start

        config = load_config(_config(Path(tmp), sandbox.url))
        engine = db.create_db_engine(config.database_url)
        db.upgrade(engine)
        start = time.perf_counter()
        summary = resync(engine, config, mode="full")
        sync_s = time.perf_counter() - start
        assert summary.ok and fetched == RECORDS
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = [
        ("records", f"{RECORDS}", ""),
        ("fetch only (sandbox, pysnow)", f"{fetch_s:.2f} s", f"{RECORDS / fetch_s:,.0f} rec/s"),
        ("full sync to SQLite incl. metrics", f"{sync_s:.2f} s", f"{RECORDS / sync_s:,.0f} rec/s"),
        ("sync / fetch ratio", f"{sync_s / fetch_s:.2f}x", ""),
        ("peak RSS", f"{rss_mb:.0f} MB", ""),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'figure':<{width}}  {'value':>10}  rate")
    for name, value, rate in rows:
        print(f"{name:<{width}}  {value:>10}  {rate}")
