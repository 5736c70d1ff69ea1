"""ServiceNow Table API emulator: an in-memory instance served over real HTTP on loopback.

Faithful, for what it implements, to shared/reference/servicenow-api.md:
string values and raw UTC date-times, encoded queries, ``sysparm_fields``,
``sysparm_limit``/``sysparm_offset`` (0 -> 400), the display-value /
reference-link matrix for reference fields, ``X-Total-Count``, ``Link``, the
error envelope, 401 without valid Basic credentials, and no stable order
without ``ORDERBY``.
"""

from __future__ import annotations

import base64
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson

from sandbox import encoded_query
from sandbox.generator import SN_FORMAT, Dataset

PATH = re.compile(
    r"^/api/now(?:/v(?P<version>[12]))?/table/(?P<table>[A-Za-z0-9_]+)(?:/(?P<sys_id>[0-9a-f]{32}))?/?$"
)
DEFAULT_LIMIT = 10000
REFERENCES: dict[str, dict[str, str]] = {
    "incident": {"assignment_group": "sys_user_group"},
}


class ApiError(Exception):
    """An error the instance reports with its JSON envelope."""

    def __init__(self, status: int, message: str, detail: str | None) -> None:
        super().__init__(message)
        self.status, self.message, self.detail = status, message, detail


@dataclass
class ServiceNowInstance:
    """Tables of string-valued records plus the knobs tests turn."""

    users: dict[str, str] = field(default_factory=lambda: {"admin": "sandbox"})
    tables: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    latency_seconds: float = 0.0
    requests_served: int = 0
    # Called with the running request count before a list request is answered:
    # tests use it to change data between the pages of a sync.
    before_list: Callable[[int], None] | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    # -- data -----------------------------------------------------------------
    def load(self, dataset: Dataset) -> None:
        for table, rows in dataset.tables.items():
            self.insert_many(table, rows)

    def load_jsonl(self, path: Path, table: str) -> int:
        """Load one record per line (string values, as exported); returns how many."""
        with path.open("rb") as handle:
            rows = [orjson.loads(line) for line in handle if line.strip()]
        self.insert_many(table, rows)
        return len(rows)

    def insert_many(self, table: str, rows: Iterable[Mapping[str, Any]]) -> None:
        with self._lock:
            store = self.tables.setdefault(table, {})
            for row in rows:
                store[str(row["sys_id"])] = {k: _as_string(v) for k, v in row.items()}

    def update(self, table: str, sys_id: str, **changes: str) -> dict[str, Any]:
        """Change a record as a user would: sys_updated_on and sys_mod_count move too."""
        with self._lock:
            record = self.tables[table][sys_id]
            record.update(changes)
            record["sys_updated_on"] = datetime.now(UTC).strftime(SN_FORMAT)
            record["sys_mod_count"] = str(int(record.get("sys_mod_count") or 0) + 1)
            return dict(record)

    def delete(self, table: str, sys_id: str) -> None:
        with self._lock:
            del self.tables[table][sys_id]

    def records(self, table: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self.tables.get(table, {}).values()]

    # -- API ------------------------------------------------------------------
    def authenticate(self, header: str | None) -> None:
        if header and header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user, password = "", ""
            if self.users.get(user) == password and user:
                return
        raise ApiError(401, "User Not Authenticated", "Required to provide Auth information")

    def list_records(
        self, table: str, params: Mapping[str, str]
    ) -> tuple[list[dict[str, Any]], int, int, int]:
        """Rows of one page, the total matching, and the limit and offset used."""
        limit = _positive_int(params.get("sysparm_limit"), DEFAULT_LIMIT, "sysparm_limit")
        offset = _non_negative_int(params.get("sysparm_offset"), "sysparm_offset")
        with self._lock:
            rows = list(self._table(table).values())
        fields = {k for row in rows[:1] for k in row} | {"sys_id"}
        query = encoded_query.parse(params.get("sysparm_query", ""), fields)
        matched = [r for r in rows if query.matches(r)]
        if query.order_by:
            for name, descending in reversed(query.order_by):
                matched.sort(key=encoded_query.sort_key(name), reverse=descending)
        else:
            random.shuffle(matched)  # the instance guarantees no order without ORDERBY
        page = matched[offset : offset + limit]
        return [self._render(table, r, params) for r in page], len(matched), limit, offset

    def get(self, table: str, sys_id: str, params: Mapping[str, str]) -> dict[str, Any]:
        with self._lock:
            record = self._table(table).get(sys_id)
        if record is None:
            raise ApiError(
                404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval"
            )
        return self._render(table, record, params)

    def _table(self, table: str) -> dict[str, dict[str, Any]]:
        if table not in self.tables:
            raise ApiError(400, f"Invalid table {table}", f"Table {table} does not exist")
        return self.tables[table]

    def _render(
        self, table: str, record: Mapping[str, Any], params: Mapping[str, str]
    ) -> dict[str, Any]:
        wanted = [f for f in params.get("sysparm_fields", "").split(",") if f]
        display = params.get("sysparm_display_value", "false").lower() or "false"
        exclude_link = _flag(params.get("sysparm_exclude_reference_link"))
        out: dict[str, Any] = {}
        for name in wanted or list(record):
            if name not in record:
                continue  # unknown names are ignored
            value = record[name]
            target = REFERENCES.get(table, {}).get(name)
            out[name] = self._reference(target, value, display, exclude_link) if target else value
        return out

    def _reference(self, target: str, value: str, display: str, exclude_link: bool) -> Any:
        if value == "":
            return ""
        link = f"/api/now/table/{target}/{value}"
        name = self.tables.get(target, {}).get(value, {}).get("name", "")
        if display == "true":
            return name if exclude_link else {"display_value": name, "link": link}
        if display == "all":
            ref = {"display_value": name, "value": value}
            return ref if exclude_link else {**ref, "link": link}
        return value if exclude_link else {"link": link, "value": value}


def _as_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def _positive_int(value: str | None, default: int, name: str) -> int:
    if value in (None, ""):
        return default
    if not value.isdigit() or int(value) <= 0:
        raise ApiError(
            400, f"Invalid value given for {name}", f"{name} value must be a positive integer"
        )
    return int(value)


def _non_negative_int(value: str | None, name: str) -> int:
    if value in (None, ""):
        return 0
    if not value.isdigit():
        raise ApiError(
            400, f"Invalid value given for {name}", f"{name} must be a non-negative integer"
        )
    return int(value)


def link_header(
    base: str, path: str, params: Mapping[str, str], total: int, limit: int, offset: int
) -> str:
    """``Link`` with first/prev/next/last, repeating the caller's parameters."""

    def url(new_offset: int) -> str:
        query = {**params, "sysparm_offset": str(new_offset), "sysparm_limit": str(limit)}
        return f"<{base}{path}?{urlencode(query)}>"

    last = max(total - 1, 0) // limit * limit
    parts = [f'{url(0)};rel="first"']
    if offset > 0:
        parts.append(f'{url(max(offset - limit, 0))};rel="prev"')
    if offset + limit < total:
        parts.append(f'{url(offset + limit)};rel="next"')
    parts.append(f'{url(last)};rel="last"')
    return ",".join(parts)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the emulator must not spam test output."""

    def do_GET(self) -> None:
        instance = self.server.instance
        parts = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        try:
            instance.authenticate(self.headers.get("Authorization"))
            match = PATH.match(parts.path)
            if not match:
                raise ApiError(400, "Requested URI does not represent any resource", None)
            with instance._lock:
                instance.requests_served += 1
            if instance.latency_seconds:
                time.sleep(instance.latency_seconds)
            table, sys_id = match["table"], match["sys_id"]
            if instance.before_list and not sys_id:
                instance.before_list(instance.requests_served)
            if sys_id:
                self._send(200, {"result": instance.get(table, sys_id, params)})
                return
            rows, total, limit, offset = instance.list_records(table, params)
            headers = {"X-Total-Count": str(total)}
            if not _flag(params.get("sysparm_suppress_pagination_header")):
                headers["Link"] = link_header(
                    self.server.base_url, parts.path, params, total, limit, offset
                )
            self._send(200, {"result": rows}, headers)
        except ApiError as exc:
            self._send(
                exc.status,
                {"error": {"message": exc.message, "detail": exc.detail}, "status": "failure"},
            )

    def do_POST(self) -> None:
        self._send(
            405,
            {
                "error": {"message": "Method not supported by the sandbox", "detail": None},
                "status": "failure",
            },
        )

    def _send(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        payload = orjson.dumps(body)
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, instance: ServiceNowInstance, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.instance = instance
        self.base_url = f"http://127.0.0.1:{self.server_address[1]}"


class RunningSandbox:
    """A served instance; use as a context manager or call :meth:`stop`."""

    def __init__(self, instance: ServiceNowInstance, port: int = 0) -> None:
        self.instance = instance
        self._server = _Server(instance, port)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="snow-sandbox",
            daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return self._server.base_url

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(instance: ServiceNowInstance, port: int = 0) -> RunningSandbox:
    """Serve ``instance`` on 127.0.0.1 (port 0 = any free port) in a background thread."""
    return RunningSandbox(instance, port)
