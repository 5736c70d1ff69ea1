"""ServiceNow Table API emulator: an in-memory instance served over real HTTP on loopback.

Faithful, for what it implements, to shared/reference/servicenow-api.md:
string values and raw UTC date-times, encoded queries, ``sysparm_fields``
(dot-walks such as ``sla.name`` included), ``sysparm_limit``/``sysparm_offset``
(0 -> 400), the display-value / reference-link matrix for reference fields,
``X-Total-Count``, ``Link``, the error envelope, Basic auth and OAuth
(``/oauth_token.do`` password and refresh grants, Bearer tokens that expire),
no stable order without ``ORDERBY``, ACL-hidden rows removed after the limit
is applied, ``sys_audit_delete`` rows on delete, and the switchable faults of
sandbox.faults.
"""

from __future__ import annotations

import base64
import bisect
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson

from sandbox import encoded_query
from sandbox.faults import Fault, FaultyHandler
from sandbox.generator import SN_FORMAT, Dataset

PATH = re.compile(
    r"^/api/now(?:/v(?P<version>[12]))?/table/(?P<table>[A-Za-z0-9_]+)(?:/(?P<sys_id>[0-9a-f]{32}))?/?$"
)
DEFAULT_LIMIT = 10000
TASK_TABLES = ("incident", "change_request", "problem", "sc_req_item", "sc_request")
REFERENCES: dict[str, dict[str, str]] = {
    "incident": {
        "assignment_group": "sys_user_group",
        "caused_by": "change_request",
        "rfc": "change_request",
        "problem_id": "problem",
        "parent_incident": "incident",
    },
    "change_request": {"assignment_group": "sys_user_group"},
    "problem": {"assignment_group": "sys_user_group", "first_reported_by_task": "task"},
    "task_sla": {"task": "task", "sla": "contract_sla"},
    "sc_req_item": {
        "request": "sc_request",
        "cat_item": "sc_cat_item",
        "assignment_group": "sys_user_group",
    },
    "sys_user_group": {"parent": "sys_user_group"},
    "asmt_assessment_instance": {"trigger_id": "task"},
    "asmt_metric_result": {"instance": "asmt_assessment_instance", "metric": "asmt_metric"},
}
TOKEN_LIFETIME_SECONDS = 1799
_TIME = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"
_SINCE = re.compile(rf"sys_updated_on>=(?P<t>{_TIME})\^ORDERBYsys_updated_on\^ORDERBYsys_id")
_AFTER = re.compile(
    rf"sys_updated_on=(?P<t>{_TIME})\^sys_id>(?P<id>[0-9a-f]{{32}})"
    rf"\^NQsys_updated_on>(?P<t2>{_TIME})\^ORDERBYsys_updated_on\^ORDERBYsys_id"
)


def _key_of(updated: str, sys_id: str) -> tuple[Any, ...]:
    """The general evaluator's order: ``sort_key`` of sys_updated_on, then of sys_id."""
    return (_UPDATED_KEY({"v": updated}), _ID_KEY({"v": sys_id}) if sys_id else (-1, 0.0, ""))


_UPDATED_KEY = encoded_query.sort_key("v")
_ID_KEY = encoded_query.sort_key("v")


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
    oauth_clients: dict[str, str] = field(default_factory=dict)  # client_id -> client secret
    basic_auth: bool = True  # False: an OAuth-only instance
    token_lifetime_seconds: float = TOKEN_LIFETIME_SECONDS
    token_grants: list[str] = field(default_factory=list)  # grant types served, in order
    faults: list[Fault] = field(default_factory=list)
    acl_hidden: set[str] = field(default_factory=set)  # sys_ids the API user may not read
    fast_keyset: bool = True  # answer sync-shaped keyset queries from a sorted index
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict, repr=False)
    _versions: dict[str, int] = field(default_factory=dict, repr=False)
    _indexes: dict[str, tuple[int, list[Any], list[dict[str, Any]]]] = field(
        default_factory=dict, repr=False
    )
    _refresh_tokens: dict[str, str] = field(default_factory=dict, repr=False)
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
            self._changed(table)

    def update(
        self, table: str, sys_id: str, *, touch: bool = True, **changes: str
    ) -> dict[str, Any]:
        """Change a record as a user would: sys_updated_on and sys_mod_count move too.

        ``touch=False`` is a script running with ``autoSysFields(false)``: the row
        changes and nothing says so (only a full reconcile can notice).
        """
        with self._lock:
            record = self.tables[table][sys_id]
            record.update(changes)
            self._changed(table)
            if touch:
                record["sys_updated_on"] = datetime.now(UTC).strftime(SN_FORMAT)
                record["sys_mod_count"] = str(int(record.get("sys_mod_count") or 0) + 1)
            return dict(record)

    def delete(self, table: str, sys_id: str) -> None:
        """Delete as the platform does: no row left, a ``sys_audit_delete`` entry instead."""
        with self._lock:
            del self.tables[table][sys_id]
            self._changed(table)
            audit = self.tables.setdefault("sys_audit_delete", {})
            audit_id = secrets.token_hex(16)
            audit[audit_id] = {
                "sys_id": audit_id,
                "tablename": table,
                "documentkey": sys_id,
                "sys_created_on": datetime.now(UTC).strftime(SN_FORMAT),
                "sys_updated_on": datetime.now(UTC).strftime(SN_FORMAT),
            }

    def touch(self, table: str, count: int, seed: int = 0) -> int:
        """Update ``count`` random records of ``table`` as users would (for benchmarks)."""
        with self._lock:
            ids = random.Random(seed).sample(sorted(self.tables[table]), count)
            for sys_id in ids:
                self.update(table, sys_id, reassignment_count="1")
        return len(ids)

    def fault_for(self, table: str, limit: int) -> Fault | None:
        """The first switched-on fault that fires for this request, if any."""
        return next((f for f in self.faults if f.fires(table, limit)), None)

    # -- OAuth ------------------------------------------------------------------
    def grant(self, form: Mapping[str, str]) -> dict[str, Any]:
        """``/oauth_token.do``: password and refresh_token grants, as the instance answers them."""
        client = form.get("client_id", "")
        if not client or self.oauth_clients.get(client) != form.get("client_secret"):
            raise ApiError(401, "access_denied", "invalid client credentials")
        grant_type = form.get("grant_type")
        with self._lock:
            if grant_type == "password":
                user = form.get("username", "")
                if not user or self.users.get(user) != form.get("password"):
                    raise ApiError(401, "access_denied", "invalid user credentials")
            elif grant_type == "refresh_token":
                user = self._refresh_tokens.pop(form.get("refresh_token", ""), "")
                if not user:
                    raise ApiError(401, "access_denied", "invalid refresh token")
            else:
                raise ApiError(400, "unsupported_grant_type", None)
            access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
            self._tokens[access] = (user, time.monotonic() + self.token_lifetime_seconds)
            self._refresh_tokens[refresh] = user
            self.token_grants.append(grant_type)
        return {
            "access_token": access,
            "refresh_token": refresh,
            "scope": "useraccount",
            "token_type": "Bearer",
            "expires_in": int(self.token_lifetime_seconds),
        }

    def expire_tokens(self) -> None:
        """Every access token stops working at once (as after a node restart or revocation)."""
        with self._lock:
            self._tokens.clear()

    def records(self, table: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self.tables.get(table, {}).values()]

    # -- API ------------------------------------------------------------------
    def authenticate(self, header: str | None) -> None:
        if header and header.startswith("Bearer "):
            with self._lock:
                user, expires = self._tokens.get(header[7:], ("", 0.0))
            if user and time.monotonic() < expires:
                return
        if self.basic_auth and header and header.startswith("Basic "):
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
        text = params.get("sysparm_query", "")
        with self._lock:
            self._table(table)
            matched = self._keyset_rows(table, text) if self.fast_keyset else None
            rows = list(self.tables[table].values()) if matched is None else []
        if matched is None:
            fields = {k for row in rows[:1] for k in row} | {"sys_id"}
            query = encoded_query.parse(text, fields)
            matched = [r for r in rows if query.matches(r)]
            if query.order_by:
                for name, descending in reversed(query.order_by):
                    matched.sort(key=encoded_query.sort_key(name), reverse=descending)
            else:
                random.shuffle(matched)  # the instance guarantees no order without ORDERBY
        page = matched[offset : offset + limit]
        if self.acl_hidden:  # ACLs filter after the limit is applied: pages come back short
            page = [r for r in page if r["sys_id"] not in self.acl_hidden]
        return [self._render(table, r, params) for r in page], len(matched), limit, offset

    def _keyset_rows(self, table: str, text: str) -> list[dict[str, Any]] | None:
        """The keyset queries a sync sends, answered from a sorted index instead of a scan.

        Same rows, same order as the general evaluator (a test holds them equal);
        None for any other query. Without it a 100,000-row table costs the
        emulator a full scan and sort per page, and benchmarks would time the
        emulator rather than the sync.
        """
        order = "ORDERBYsys_updated_on^ORDERBYsys_id"
        if text == order:
            key: tuple[Any, ...] | None = None
            strict = False
        elif (m := _SINCE.fullmatch(text)) is not None:
            key, strict = (_key_of(m["t"], ""),), False
        elif (m := _AFTER.fullmatch(text)) is not None and m["t"] == m["t2"]:
            key, strict = (_key_of(m["t"], m["id"]),), True
        else:
            return None
        keys, rows = self._sorted_index(table)
        if key is None:
            return list(rows)
        position = (bisect.bisect_right if strict else bisect.bisect_left)(keys, key[0])
        return rows[position:]

    def _sorted_index(self, table: str) -> tuple[list[Any], list[dict[str, Any]]]:
        store = self.tables[table]
        cached = self._indexes.get(table)
        if cached is None or cached[0] != self._versions.get(table, 0):
            rows = sorted(store.values(), key=lambda r: _key_of(r["sys_updated_on"], r["sys_id"]))
            keys = [_key_of(r["sys_updated_on"], r["sys_id"]) for r in rows]
            cached = (self._versions.get(table, 0), keys, rows)
            self._indexes[table] = cached
        return cached[1], cached[2]

    def _changed(self, table: str) -> None:
        self._versions[table] = self._versions.get(table, 0) + 1

    def get(self, table: str, sys_id: str, params: Mapping[str, str]) -> dict[str, Any]:
        with self._lock:
            record = self._table(table).get(sys_id)
        if record is None or sys_id in self.acl_hidden:
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
            if "." in name:
                walked = self._dot_walk(table, record, name)
                if walked is not None:
                    out[name] = walked
                continue
            if name not in record:
                continue  # unknown names are ignored
            value = record[name]
            target = REFERENCES.get(table, {}).get(name)
            out[name] = self._reference(target, value, display, exclude_link) if target else value
        return out

    def lookup(self, target: str, sys_id: str) -> tuple[str, dict[str, Any]] | None:
        """The referenced record and its table (``task`` references any task table)."""
        for table in TASK_TABLES if target == "task" else (target,):
            record = self.tables.get(table, {}).get(sys_id)
            if record is not None:
                return table, record
        return None

    def _dot_walk(self, table: str, record: Mapping[str, Any], path: str) -> str | None:
        """``sla.name``: follow references; an empty reference gives "", an unknown name nothing."""
        *hops, last = path.split(".")
        current_table, current = table, record
        for hop in hops:
            target = REFERENCES.get(current_table, {}).get(hop)
            if target is None:
                return None
            found = self.lookup(target, str(current.get(hop) or ""))
            if found is None:
                return ""
            current_table, current = found
        value = current.get(last)
        return None if value is None else str(value)

    def _reference(self, target: str, value: str, display: str, exclude_link: bool) -> Any:
        if value == "":
            return ""
        found = self.lookup(target, value)
        link = f"/api/now/table/{found[0] if found else target}/{value}"
        record = found[1] if found else {}
        name = record.get("name") or record.get("number") or ""
        if display == "true":
            return name if exclude_link else {"display_value": name, "link": link}
        if display == "all":
            ref = {"display_value": name, "value": value}
            return ref if exclude_link else {**ref, "link": link}
        return value if exclude_link else {"link": link, "value": value}


def _touch_args(form: Mapping[str, str]) -> dict[str, Any]:
    try:
        return {
            "table": form.get("table", "incident"),
            "count": int(form.get("count", "0")),
            "seed": int(form.get("seed", "0")),
        }
    except ValueError:
        raise ApiError(400, "count and seed must be whole numbers", None) from None


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


class _Handler(FaultyHandler):
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
            limit = params.get("sysparm_limit") or str(DEFAULT_LIMIT)
            fault = instance.fault_for(table, int(limit) if limit.isdigit() else DEFAULT_LIMIT)
            if fault is not None and self.inject(fault):
                return
            if instance.before_list and not sys_id:
                instance.before_list(instance.requests_served)
            if sys_id:
                self._send(200, {"result": instance.get(table, sys_id, params)})
                return
            rows, total, limit_used, offset = instance.list_records(table, params)
            headers = {"X-Total-Count": str(total)}
            if not _flag(params.get("sysparm_suppress_pagination_header")):
                headers["Link"] = link_header(
                    self.server.base_url, parts.path, params, total, limit_used, offset
                )
            payload = orjson.dumps({"result": rows})
            if fault is not None and fault.kind in ("truncated", "cut_short"):
                self.send_cut(payload, headers, promise_all=fault.kind == "cut_short")
                return
            self._send_bytes(200, payload, headers)
        except ApiError as exc:
            self._send_error(exc)

    def do_POST(self) -> None:
        """Only the OAuth token endpoint; the sandbox is read-only over HTTP."""
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace")
        if parts.path not in ("/oauth_token.do", "/sandbox/touch"):
            self._send_error(ApiError(405, "Method not supported by the sandbox", None))
            return
        form = {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}
        if parts.path == "/sandbox/touch":  # not ServiceNow: lets a benchmark change records
            try:
                self._send(200, {"touched": self.server.instance.touch(**_touch_args(form))})
            except (ApiError, KeyError, ValueError) as exc:
                self._send_error(
                    exc if isinstance(exc, ApiError) else ApiError(400, str(exc), None)
                )
            return
        try:
            self._send(200, self.server.instance.grant(form))
        except ApiError as exc:
            self._send(exc.status, {"error": exc.message, "error_description": exc.detail or ""})

    def _send_error(self, exc: ApiError, headers: Mapping[str, str] | None = None) -> None:
        body = {"error": {"message": exc.message, "detail": exc.detail}, "status": "failure"}
        self._send(exc.status, body, headers)

    def _send(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send_bytes(status, orjson.dumps(body), headers)

    def fault_answer(self, kind: str, fault: Fault) -> None:
        """ServiceNow's envelope for a rate limit, a server error, a cancelled transaction."""
        if kind == "rate_limit":
            self._send_error(
                ApiError(
                    429,
                    "Rate limit exceeded",
                    "Rate limit of 5000 requests per hour for Table API exceeded",
                ),
                {
                    "Retry-After": str(fault.retry_after),
                    "X-RateLimit-Limit": "5000",
                    "X-RateLimit-Reset": str(int(time.time()) + fault.retry_after),
                    "X-RateLimit-Rule": "0123456789abcdef0123456789abcdef",
                },
            )
        elif kind == "server_error":
            self._send_error(ApiError(fault.status, "Internal server error", None))
        else:  # transaction_cancelled
            self._send_error(
                ApiError(200, "Transaction cancelled: maximum execution time exceeded", None)
            )


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Dropped connections are deliberate faults here, not news for the test output."""

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
