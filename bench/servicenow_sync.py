"""ServiceNow sync against the sandbox: how close the pipeline comes to the lower bound.

The sandbox runs in its own process (its JSON work must not share our GIL).
In the same run it measures:

(a) the lower bound: the same keyset pages fetched and parsed with plain
    ``requests``, plus one bulk SQLAlchemy Core upsert of the same records into
    an empty SQLite table;
(b) the end-to-end ``itbsc`` full sync into SQLite (raw + canonical upserts,
    cursor, run audit, metric recompute), in a child process so its peak RSS
    is its own;
(c) an incremental sync after 1 % of the records changed;

and prints (b)/(a), (c)/(b) and peak RSS, the last at two record counts to
show it does not grow with them. Records: ``ITBSC_BENCH_RECORDS`` (100000).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench.lower_bound import bulk_upsert_seconds

RECORDS = int(os.environ.get("ITBSC_BENCH_RECORDS", "100000"))
PAGE = 1000
USER, PASSWORD = "bench", "bench-Pw-not-secret"
END = "2026-06-30T00:00:00"
ORDER = "ORDERBYsys_updated_on^ORDERBYsys_id"


@dataclass
class Sandbox:
    process: subprocess.Popen[str]
    url: str

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def start_sandbox(records: int) -> Sandbox:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox",
            "--count",
            str(records),
            "--seed",
            "3",
            "--end",
            END,
            "--incidents-only",
            "--user",
            USER,
            "--password",
            PASSWORD,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    url = line.split(" at ", 1)[1].split()[0]
    return Sandbox(process, url)


def mapped_fields(config_path: Path) -> list[str]:
    from daemon.settings import load_config

    config = load_config(config_path)
    found = next(iter(config.mappings.values())).for_stream("incident")
    assert found is not None
    return ["sys_id", "sys_updated_on", *found[1].source_fields()]


def lower_bound(url: str, fields: list[str], workdir: Path) -> tuple[float, float, int]:
    """(a): fetch + parse with plain requests; one bulk Core upsert of the same records."""
    session = requests.Session()
    session.auth = (USER, PASSWORD)
    session.headers["Accept"] = "application/json"
    records: list[dict[str, Any]] = []
    query = ORDER
    started = time.perf_counter()
    while True:
        response = session.get(
            f"{url}/api/now/table/incident",
            params={
                "sysparm_query": query,
                "sysparm_limit": PAGE,
                "sysparm_fields": ",".join(fields),
                "sysparm_exclude_reference_link": "true",
            },
        )
        response.raise_for_status()
        rows = response.json()["result"]
        records.extend(rows)
        if len(rows) < PAGE:
            break
        t, i = rows[-1]["sys_updated_on"], rows[-1]["sys_id"]
        query = f"sys_updated_on={t}^sys_id>{i}^NQsys_updated_on>{t}^{ORDER}"
    fetch_s = time.perf_counter() - started

    write_s = bulk_upsert_seconds(workdir, [(r["sys_id"], r["sys_updated_on"], r) for r in records])
    return fetch_s, write_s, len(records)


def write_config(directory: Path, url: str) -> Path:
    from daemon.demo import write_demo_config

    path = write_demo_config(directory, url)
    path.write_text(
        path.read_text()
        .replace("page_size = 500", f"page_size = {PAGE}")
        .replace('username = "itbsc-demo"', f'username = "{USER}"')
        .replace(
            "streams = " + path.read_text().split("streams = ", 1)[1].split("\n", 1)[0],
            'streams = ["incident"]',
        )
    )
    return path


def peak_rss_mb() -> float:
    """VmHWM of this process image (ru_maxrss would carry the forking parent's peak over exec)."""
    with Path("/proc/self/status").open(encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sync_child(config_path: str, url: str) -> None:
    """Child process: full sync, touch 1 %, incremental sync; print timings and peak RSS."""
    from daemon import db
    from daemon.logconfig import configure
    from daemon.settings import load_config
    from daemon.sync import resync

    configure("WARNING")
    config = load_config(Path(config_path))
    engine = db.create_db_engine(config.database_url)
    db.upgrade(engine)
    started = time.perf_counter()
    full = resync(engine, config, mode="full")
    full_s = time.perf_counter() - started
    assert full.ok, [s.error for s in full.streams]
    changed = max(1, full.streams[0].written // 100)
    requests.post(
        f"{url}/sandbox/touch", data={"table": "incident", "count": changed}
    ).raise_for_status()
    started = time.perf_counter()
    incremental = resync(engine, config)
    incremental_s = time.perf_counter() - started
    assert incremental.ok
    print(
        json.dumps(
            {
                "full_s": full_s,
                "full_records": full.streams[0].written,
                "full_recompute_s": full.recompute_seconds,
                "incremental_recompute_s": incremental.recompute_seconds,
                "incremental_s": incremental_s,
                "incremental_records": incremental.streams[0].fetched,
                "rss_mb": peak_rss_mb(),
            }
        )
    )


def run_sync(url: str, workdir: Path) -> dict[str, Any]:
    config = write_config(workdir, url)
    env = {**os.environ, "ITBSC_DEMO_PASSWORD": PASSWORD}
    done = subprocess.run(
        [sys.executable, "-m", "bench.servicenow_sync", "--child", str(config), url],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(records: int) -> dict[str, Any]:
    sandbox = start_sandbox(records)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            os.environ["ITBSC_DEMO_PASSWORD"] = PASSWORD
            fields = mapped_fields(write_config(workdir / "fields", sandbox.url))
            fetch_s, write_s, fetched = lower_bound(sandbox.url, fields, workdir)
            assert fetched == records
            sync = run_sync(sandbox.url, workdir / "sync")
    finally:
        sandbox.stop()
    return {"records": records, "fetch_s": fetch_s, "write_s": write_s, **sync}


def _row(
    name: str, value: str, target: str = "", met: bool | None = None
) -> tuple[str, str, str, bool | None]:
    return (name, value, target, met)


def figures() -> list[tuple[str, str, str, bool | None]]:
    """(figure, value, target, met) rows for the benchmark table."""
    big = measure(RECORDS)
    small = measure(max(1000, RECORDS // 4))
    lower = big["fetch_s"] + big["write_s"]
    ratio_full = big["full_s"] / lower
    ratio_incremental = big["incremental_s"] / big["full_s"]
    sync_only = big["full_s"] - big["full_recompute_s"]
    incremental_only = big["incremental_s"] - big["incremental_recompute_s"]
    n, changed = big["records"], big["incremental_records"]
    same_rss = abs(big["rss_mb"] - small["rss_mb"]) <= 0.15 * big["rss_mb"]
    return [
        _row(
            f"(a) lower bound, {n:,} records: fetch + parse (requests)", f"{big['fetch_s']:.2f} s"
        ),
        _row("(a) lower bound: one bulk Core upsert into SQLite", f"{big['write_s']:.2f} s"),
        _row("(b) itbsc full sync into SQLite incl. metrics", f"{big['full_s']:.2f} s"),
        _row("    of which metric recompute", f"{big['full_recompute_s']:.2f} s"),
        _row(
            f"(c) incremental sync after 1 % changed ({changed:,})", f"{big['incremental_s']:.2f} s"
        ),
        _row("    of which metric recompute", f"{big['incremental_recompute_s']:.2f} s"),
        _row(
            "ServiceNow full sync ratio (b)/(a)", f"{ratio_full:.2f}x", "<= 1.5x", ratio_full <= 1.5
        ),
        _row("  the same without the metric recompute", f"{sync_only / lower:.2f}x"),
        _row(
            "ServiceNow incremental ratio (c)/(b)",
            f"{ratio_incremental:.3f}",
            "<= 0.05",
            ratio_incremental <= 0.05,
        ),
        _row("  the same without the metric recompute", f"{incremental_only / sync_only:.3f}"),
        _row(
            f"peak RSS of the sync, {n:,} records",
            f"{big['rss_mb']:.0f} MB",
            "<= 250 MB",
            big["rss_mb"] <= 250,
        ),
        _row(
            f"peak RSS of the sync, {small['records']:,} records",
            f"{small['rss_mb']:.0f} MB",
            "about the same",
            same_rss,
        ),
    ]


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        sync_child(sys.argv[2], sys.argv[3])
