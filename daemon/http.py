"""The optional HTTP endpoint of ``itbsc run``: /healthz and /metrics (Prometheus text format).

Off unless ``[daemon] http = "127.0.0.1:9464"`` is set; it serves reads only,
from the database, and never a secret (no configuration is echoed).
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, text

from daemon import report, store
from daemon.status import status_rows

if TYPE_CHECKING:
    from daemon.scheduler import Service


def health(service: Service) -> tuple[bool, dict[str, Any]]:
    """Scheduler alive, database reachable, no stream stale."""
    checks: dict[str, Any] = {"scheduler": not service.stop.is_set()}
    try:
        with service.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = True
        rows = status_rows(service.engine, service.config)
        checks["stale_streams"] = [f"{r['source']}/{r['stream']}" for r in rows if r["stale"]]
    except Exception as exc:  # reported, never raised: a health check must answer
        checks["database"] = False
        checks["error"] = type(exc).__name__
        checks["stale_streams"] = []
    ok = checks["scheduler"] and checks["database"] and not checks["stale_streams"]
    return bool(ok), checks


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def metrics_text(service: Service) -> str:
    """Per stream: last success time, records, deleted, last run duration and records, failures;
    and the current scorecard's values."""
    lines = [
        "# HELP itbsc_stream_last_success_timestamp_seconds Last successful sync (Unix time).",
        "# TYPE itbsc_stream_last_success_timestamp_seconds gauge",
    ]
    rows = status_rows(service.engine, service.config)
    samples: dict[str, list[str]] = {
        "itbsc_stream_records": [],
        "itbsc_stream_deleted_records": [],
        "itbsc_stream_last_run_seconds": [],
        "itbsc_stream_last_run_records": [],
        "itbsc_stream_failed_runs_total": [],
    }
    run = store.run_table
    with service.engine.connect() as conn:
        query = (
            select(run.c.source, run.c.stream, func.count())
            .where(run.c.outcome == "failed")
            .group_by(run.c.source, run.c.stream)
        )
        failures = {(source, stream): n for source, stream, n in conn.execute(query)}
    for row in rows:
        labels = f'source="{_label(row["source"])}",stream="{_label(row["stream"])}"'
        if row["last_success_at"]:
            at = datetime.fromisoformat(row["last_success_at"]).timestamp()
            lines.append(f"itbsc_stream_last_success_timestamp_seconds{{{labels}}} {at:.0f}")
        samples["itbsc_stream_records"].append(f"{{{labels}}} {row['records']}")
        samples["itbsc_stream_deleted_records"].append(f"{{{labels}}} {row['deleted']}")
        last = row["last_run"]
        if last and last["finished_at"]:
            took = (
                datetime.fromisoformat(last["finished_at"])
                - datetime.fromisoformat(last["started_at"])
            ).total_seconds()
            samples["itbsc_stream_last_run_seconds"].append(f"{{{labels}}} {took:.3f}")
            samples["itbsc_stream_last_run_records"].append(f"{{{labels}}} {last['written']}")
        failed = failures.get((row["source"], row["stream"]), 0)
        samples["itbsc_stream_failed_runs_total"].append(f"{{{labels}}} {failed}")
    kinds = {"itbsc_stream_failed_runs_total": "counter"}
    for name, values in samples.items():
        lines.append(f"# TYPE {name} {kinds.get(name, 'gauge')}")
        lines.extend(f"{name}{value}" for value in values)
    period = report.default_period(service.config, datetime.now(UTC))
    with service.engine.connect() as conn:
        readings = report.readings(conn, service.config, period)
    lines.append("# HELP itbsc_scorecard_value A scorecard metric in the last complete month.")
    lines.append("# TYPE itbsc_scorecard_value gauge")
    for metric, reading in sorted(readings.items()):
        if reading.value is not None:
            label = f'metric="{_label(metric)}",period="{period.label}"'
            lines.append(f"itbsc_scorecard_value{{{label}}} {reading.value:.6g}")
    return "\n".join(lines) + "\n"


def serve_health(service: Service, listen: str) -> ThreadingHTTPServer:
    """Start the endpoint on ``host:port`` in a daemon thread; ``shutdown()`` stops it."""
    host, _, port = listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                ok, checks = health(service)
                self._send(200 if ok else 503, "application/json", json.dumps(checks))
            elif self.path == "/metrics":
                self._send(200, "text/plain; version=0.0.4", metrics_text(service))
            else:
                self._send(404, "text/plain", "not found\n")

        def _send(self, status: int, content_type: str, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: Any) -> None:  # access lines would drown the log
            return

    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
