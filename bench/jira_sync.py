"""Jira sync against the sandbox: the pipeline versus the lower bound, in one run.

The sandbox Jira (Cloud flavour) runs in its own process. Measured: (a) the
same ``search/jql`` pages fetched and parsed with plain ``requests`` plus one
bulk Core upsert of the same issues into an empty SQLite table; (b) the
end-to-end ``itbsc`` full sync into SQLite (raw and canonical upserts of
incidents, requests, changes and SLA cycles, metric recompute) in a child
process; the ratio, and peak RSS at two issue counts. Issues:
``ITBSC_BENCH_JIRA_ISSUES`` (50000).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from bench.lower_bound import bulk_upsert_seconds
from bench.servicenow_sync import peak_rss_mb

ISSUES = int(os.environ.get("ITBSC_BENCH_JIRA_ISSUES", "50000"))
PAGE = 100
EMAIL, TOKEN = "bench@example.com", "bench-Token-not-secret"
END = "2026-06-30T00:00:00+00:00"


def serve_main(count: int) -> None:
    """Child: serve a generated site and print its URL (the sandbox has no CLI for Jira yet)."""
    from datetime import datetime

    from sandbox.jira import JiraInstance, serve_jira
    from sandbox.jira_data import generate_jira

    instance = JiraInstance(flavour="cloud", users={EMAIL: TOKEN})
    instance.load(generate_jira(count, end=datetime.fromisoformat(END), seed=3))
    running = serve_jira(instance)
    print(running.url, flush=True)
    while True:
        time.sleep(3600)


def start_site(count: int) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.jira_sync", "--serve", str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def write_config(directory: Path, url: str) -> Path:
    from daemon.demo import write_demo_config

    path = write_demo_config(directory, "http://127.0.0.1:9", url)
    text = path.read_text()
    # Jira only: drop the ServiceNow source the demo config also declares.
    start = text.index("[sources.sandbox-snow]")
    end = text.index("[scorecard]")
    path.write_text(text[:start] + text[end:].replace("page_size = 100", f"page_size = {PAGE}"))
    return path


def lower_bound(url: str, fields: list[str], workdir: Path) -> tuple[float, float, int]:
    session = requests.Session()
    session.auth = (EMAIL, TOKEN)
    issues: list[dict[str, Any]] = []
    token: str | None = None
    started = time.perf_counter()
    while True:
        params: dict[str, Any] = {
            "jql": 'project IN ("ITSM") ORDER BY created ASC, id ASC',
            "fields": ",".join(fields),
            "expand": "changelog",
            "maxResults": PAGE,
        }
        if token:
            params["nextPageToken"] = token
        reply = session.get(f"{url}/rest/api/2/search/jql", params=params)
        reply.raise_for_status()
        body = reply.json()
        issues.extend(body["issues"])
        token = body.get("nextPageToken")
        if not token:
            break
    fetch_s = time.perf_counter() - started
    write_s = bulk_upsert_seconds(workdir, [(i["id"], i["fields"]["updated"], i) for i in issues])
    return fetch_s, write_s, len(issues)


def sync_child(config_path: str) -> None:
    from daemon import db
    from daemon.logconfig import configure
    from daemon.settings import load_config
    from daemon.sync import resync

    configure("WARNING")
    config = load_config(Path(config_path))
    engine = db.create_db_engine(config.database_url)
    db.upgrade(engine)
    started = time.perf_counter()
    summary = resync(engine, config, mode="full")
    full_s = time.perf_counter() - started
    assert summary.ok, [s.error for s in summary.streams]
    print(
        json.dumps(
            {
                "full_s": full_s,
                "recompute_s": summary.recompute_seconds,
                "fetched": summary.streams[0].fetched,
                "rss_mb": peak_rss_mb(),
            }
        )
    )


def measure(count: int) -> dict[str, Any]:
    process, url = start_site(count)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            os.environ["ITBSC_DEMO_JIRA_TOKEN"] = TOKEN
            os.environ.setdefault("ITBSC_DEMO_PASSWORD", "unused")
            config = write_config(workdir / "sync", url)
            text = config.read_text().replace(
                'username = "itbsc-demo@example.com"', f'username = "{EMAIL}"'
            )
            config.write_text(text)
            fields = [
                "updated",
                "created",
                "status",
                "issuetype",
                "project",
                "priority",
                "resolution",
            ]
            fields += ["customfield_10010", "customfield_10030", "customfield_10031"]
            fetch_s, write_s, fetched = lower_bound(url, fields, workdir)
            assert fetched == count
            done = subprocess.run(
                [sys.executable, "-m", "bench.jira_sync", "--child", str(config)],
                capture_output=True,
                text=True,
                env=os.environ.copy(),
                check=True,
            )
            result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        process.terminate()
        process.wait(timeout=10)
    return {"issues": count, "fetch_s": fetch_s, "write_s": write_s, **result}


def figures() -> list[tuple[str, str, str, bool | None]]:
    big = measure(ISSUES)
    small = measure(max(500, ISSUES // 4))
    lower = big["fetch_s"] + big["write_s"]
    ratio = big["full_s"] / lower
    without = (big["full_s"] - big["recompute_s"]) / lower
    same_rss = abs(big["rss_mb"] - small["rss_mb"]) <= 0.15 * big["rss_mb"]
    n = big["issues"]
    return [
        (
            f"(a) Jira lower bound, {n:,} issues: fetch + parse (requests)",
            f"{big['fetch_s']:.2f} s",
            "",
            None,
        ),
        (
            "(a) Jira lower bound: one bulk Core upsert into SQLite",
            f"{big['write_s']:.2f} s",
            "",
            None,
        ),
        ("(b) itbsc Jira full sync into SQLite incl. metrics", f"{big['full_s']:.2f} s", "", None),
        ("    of which metric recompute", f"{big['recompute_s']:.2f} s", "", None),
        ("Jira sync ratio (b)/(a)", f"{ratio:.2f}x", "<= 1.5x", ratio <= 1.5),
        ("  the same without the metric recompute", f"{without:.2f}x", "", None),
        (
            f"peak RSS of the Jira sync, {n:,} issues",
            f"{big['rss_mb']:.0f} MB",
            "<= 250 MB",
            big["rss_mb"] <= 250,
        ),
        (
            f"peak RSS of the Jira sync, {small['issues']:,} issues",
            f"{small['rss_mb']:.0f} MB",
            "about the same",
            same_rss,
        ),
    ]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve_main(int(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "--child":
        sync_child(sys.argv[2])
