"""Jira Cloud / Data Center REST emulator, served over real HTTP on loopback.

Faithful, for what it implements, to shared/reference/jira-api.md:
``serverInfo`` (``deploymentType`` Cloud or DataCenter), ``myself`` with a
profile time zone (non-UTC by default, so time-zone bugs show), ``field``
with schema types and a repeated name, ``status``; Cloud ``search/jql`` under
``/rest/api/2`` and ``/3`` (GET and POST, opaque ``nextPageToken``,
``isLast``, no total, default fields ``id``, 400 on unbounded JQL, 410 on the
removed ``/search``); Data Center ``/rest/api/2/search`` (``startAt``,
``maxResults`` capped, ``total``, no ``isLast``); JQL evaluated in the user's
zone to the minute (sandbox.jql); timestamps rendered in that zone with a
``+HHMM`` offset; embedded changelogs truncated to the newest 100 with the
true total and Cloud's ``/issue/{id}/changelog`` pages; JSM SLA and request
type fields; error envelopes; 429 bursts with ``Retry-After``.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import orjson

from sandbox import jql
from sandbox.faults import Fault, FaultyHandler
from sandbox.jira_data import SLA_SCHEMA, JiraDataset, statuses

EMBEDDED_CHANGELOG = 100
DC_MAX_RESULTS = 1000
CLOUD_MAX_RESULTS = 100


class JiraError(Exception):
    def __init__(self, status: int, messages: list[str], headers: Mapping[str, str] | None = None):
        super().__init__("; ".join(messages))
        self.status, self.messages, self.headers = status, messages, dict(headers or {})


@dataclass
class JiraInstance:
    """One site: its issues, histories, fields and the knobs tests turn."""

    flavour: str = "cloud"  # "cloud" or "datacenter"
    user_zone: str = "Pacific/Honolulu"  # UTC-10: a UTC-formatted JQL bound skips 10 hours
    users: dict[str, str] = field(default_factory=lambda: {"admin@example.com": "sandbox"})
    tokens: set[str] = field(default_factory=set)  # Data Center personal access tokens
    issues: dict[str, dict[str, Any]] = field(default_factory=dict)
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    fields: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=statuses)
    rate_limit_next: int = 0  # answer this many search requests with 429
    faults: list[Fault] = field(default_factory=list)  # on "search" and "changelog" requests
    acl_hidden: set[str] = field(default_factory=set)
    """Issue ids the API user may not see: dropped from a page after it was cut, so pages come
    back short (even empty) before the last, as permission filtering after the query does."""
    retry_after: str = "1"  # an integer, or an HTTP-date as some proxies send
    before_search: Callable[[int], None] | None = None
    requests_served: int = 0
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _version: int = 0  # bumped by every write; keys the cache of the last search's order
    _last_search: tuple[Any, list[dict[str, Any]]] | None = field(default=None, repr=False)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.user_zone)

    def load(self, dataset: JiraDataset) -> None:
        with self._lock:
            for issue in dataset.issues:
                self.issues[issue["id"]] = issue
            self.histories.update(dataset.histories)
            self.fields = dataset.fields
            self._version += 1

    def update(self, issue_id: str, at: datetime, **fields: Any) -> None:
        """Change an issue as a user would: ``updated`` moves, a history entry is added."""
        with self._lock:
            self._version += 1
            issue = self.issues[issue_id]
            issue["fields"].update(fields)
            issue["fields"]["updated"] = at
            issue["_updated"] = at
            items = [
                {
                    "field": k,
                    "fieldtype": "jira",
                    "fieldId": k,
                    "from": None,
                    "fromString": None,
                    "to": None,
                    "toString": str(v),
                }
                for k, v in fields.items()
            ]
            self.histories.setdefault(issue_id, []).append(
                {
                    "id": str(900000 + self.requests_served),
                    "author": None,
                    "created": at,
                    "items": items,
                }
            )

    def replay(self, issues: list[dict[str, Any]], statuses: list[dict[str, Any]]) -> None:
        """Serve recorded Jira responses: issues as returned (with their changelog) and /status.

        Field values stay as recorded; the times JQL compares are read from them.
        """
        with self._lock:
            self._version += 1
            self.statuses = statuses
            for recorded in issues:
                issue = {k: v for k, v in recorded.items() if k != "changelog"}
                fields = issue["fields"]
                issue["_created"] = _recorded_time(fields.get("created"))
                issue["_updated"] = _recorded_time(fields.get("updated"))
                issue["_resolved"] = _recorded_time(fields.get("resolutiondate"))
                self.issues[str(issue["id"])] = issue
                self.histories[str(issue["id"])] = sorted(
                    (recorded.get("changelog") or {}).get("histories") or [],
                    key=lambda h: _recorded_time(h["created"]) or datetime.min,
                )

    def delete(self, issue_id: str) -> None:
        """Delete an issue: it leaves no trace a ``updated >=`` search could see."""
        with self._lock:
            self._version += 1
            del self.issues[issue_id]
            self.histories.pop(issue_id, None)

    def add(self, issue: dict[str, Any], histories: list[dict[str, Any]] | None = None) -> None:
        with self._lock:
            self._version += 1
            self.issues[issue["id"]] = issue
            self.histories[issue["id"]] = histories or []

    # -- rendering --------------------------------------------------------------
    def render_time(self, value: datetime | str | None) -> str | None:
        if value is None or isinstance(value, str):  # replayed responses keep their text
            return value
        return (
            value.astimezone(self.zone).strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{value.microsecond // 1000:03d}"
            + value.astimezone(self.zone).strftime("%z")
        )

    def _date_bean(self, value: datetime) -> dict[str, Any]:
        local = value.astimezone(self.zone)
        return {
            "iso8601": local.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "jira": self.render_time(value),
            "friendly": local.strftime("%d/%b/%y %I:%M %p"),
            "epochMillis": int(value.timestamp() * 1000),
        }

    def _sla(self, value: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        completed, ongoing = [], None
        for cycle in value["cycles"]:
            remaining = cycle["goal_ms"] - cycle["elapsed_ms"]
            bean = {
                "startTime": self._date_bean(cycle["start"]),
                "breachTime": self._date_bean(cycle["breach"]),
                "breached": cycle["breached"],
                "goalDuration": {
                    "millis": cycle["goal_ms"],
                    "friendly": f"{cycle['goal_ms'] // 60000}m",
                },
                "elapsedTime": {
                    "millis": cycle["elapsed_ms"],
                    "friendly": f"{cycle['elapsed_ms'] // 60000}m",
                },
                "remainingTime": {"millis": remaining, "friendly": f"{remaining // 60000}m"},
            }
            if cycle["stop"] is not None:
                completed.append({**bean, "stopTime": self._date_bean(cycle["stop"])})
            else:
                ongoing = {**bean, "paused": False, "withinCalendarHours": True}
        out: dict[str, Any] = {
            "id": value["id"],
            "name": value["name"],
            "_links": {"self": f"/rest/servicedeskapi/request/1/sla/{value['id']}"},
            "completedCycles": completed,
            "slaDisplayFormat": "NEW_SLA_FORMAT",
        }
        if ongoing is not None:
            out["ongoingCycle"] = ongoing
        return out

    def render(self, issue: Mapping[str, Any], wanted: list[str], expand: str) -> dict[str, Any]:
        sla_ids = {f["id"] for f in self.fields if f.get("schema", {}).get("custom") == SLA_SCHEMA}
        everything = not wanted or any(w in ("*all", "*navigable") for w in wanted)
        out_fields: dict[str, Any] = {}
        for name, value in issue["fields"].items():
            if not everything and name not in wanted:
                continue
            if name in sla_ids:
                out_fields[name] = self._sla(value)
            elif isinstance(value, datetime):
                out_fields[name] = self.render_time(value)
            else:
                out_fields[name] = value
        rendered: dict[str, Any] = {
            "expand": "operations,changelog",
            "id": issue["id"],
            "self": f"/rest/api/2/issue/{issue['id']}",
            "key": issue["key"],
        }
        if wanted != ["id"]:
            rendered["fields"] = out_fields
        if "changelog" in expand:
            histories = self.histories.get(issue["id"], [])
            newest = histories[-EMBEDDED_CHANGELOG:]
            rendered["changelog"] = {
                "startAt": 0,
                "maxResults": len(newest),
                "total": len(histories),
                "histories": [self._history(h) for h in newest],
            }
        return rendered

    def _history(self, history: Mapping[str, Any]) -> dict[str, Any]:
        return {**history, "created": self.render_time(history["created"])}

    # -- API --------------------------------------------------------------------
    def authenticate(self, header: str | None) -> None:
        bearer = header and header.startswith("Bearer ") and self.flavour != "cloud"
        if bearer and header and header[7:] in self.tokens:
            return
        if header and header.startswith("Basic "):
            try:
                user, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user, secret = "", ""
            if user and self.users.get(user) == secret:
                return
        raise JiraError(
            401, ["You are not authenticated. Authentication required to perform this operation."]
        )

    def server_info(self) -> dict[str, Any]:
        return {
            "baseUrl": "",
            "version": "1001.0.0-SNAPSHOT" if self.flavour == "cloud" else "9.12.2",
            "versionNumbers": [1001, 0, 0] if self.flavour == "cloud" else [9, 12, 2],
            "deploymentType": "Cloud" if self.flavour == "cloud" else "DataCenter",
            "buildNumber": 100250,
            "serverTitle": "Sandbox Jira",
        }

    def myself(self) -> dict[str, Any]:
        me: dict[str, Any] = {"displayName": "itbsc", "active": True, "timeZone": self.user_zone}
        if self.flavour == "cloud":
            me["accountId"] = "5b10a2844c20165700ede21g"
        else:
            me["name"] = me["key"] = "itbsc"
        return me

    def search(self, params: Mapping[str, list[str]], *, cloud_api: bool) -> dict[str, Any]:
        with self._lock:
            self.requests_served += 1
            if self.rate_limit_next > 0:
                self.rate_limit_next -= 1
                raise JiraError(
                    429,
                    ["Rate limit exceeded."],
                    {
                        "Retry-After": self.retry_after,
                        "X-RateLimit-Limit": "100",
                        "X-RateLimit-Remaining": "0",
                    },
                )
        if self.before_search:
            self.before_search(self.requests_served)
        text = _one(params, "jql")
        try:
            query = jql.parse(text, self.zone)
        except jql.JqlError as exc:
            raise JiraError(400, [str(exc)]) from None
        if cloud_api and query.predicate is None:
            raise JiraError(
                400,
                [
                    "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."
                ],
            )
        wanted = [f for value in params.get("fields", []) for f in value.split(",") if f]
        if cloud_api and not wanted:
            wanted = ["id"]
        expand = ",".join(params.get("expand", []))
        # Pages of one search share its evaluation until something changes (a real site
        # re-evaluates, which the version check models); without this a benchmark would time
        # the emulator's full scan per page rather than the sync.
        with self._lock:
            key = (text, self._version)
            if self._last_search is not None and self._last_search[0] == key:
                matched = self._last_search[1]
            else:
                matched = [i for i in self.issues.values() if query.matches(i)]
                for name, descending in reversed(query.order_by):
                    matched.sort(key=jql.sort_key(name), reverse=descending)
                self._last_search = (key, matched)
        if cloud_api:
            limit = min(_int(params, "maxResults", 50), CLOUD_MAX_RESULTS)
            start = _token_offset(_one(params, "nextPageToken"), text)
            page = [i for i in matched[start : start + limit] if i["id"] not in self.acl_hidden]
            out: dict[str, Any] = {"issues": [self.render(i, wanted, expand) for i in page]}
            if start + limit < len(matched):
                out["nextPageToken"] = _token(start + limit, text)
                out["isLast"] = False
            else:
                out["isLast"] = True
            return out
        start = _int(params, "startAt", 0)
        limit = min(_int(params, "maxResults", 50), DC_MAX_RESULTS)
        page = [i for i in matched[start : start + limit] if i["id"] not in self.acl_hidden]
        return {
            "expand": "schema,names",
            "startAt": start,
            "maxResults": limit,
            "total": len(matched),
            "issues": [self.render(i, wanted, expand) for i in page],
        }

    def changelog(self, issue_id: str, params: Mapping[str, list[str]]) -> dict[str, Any]:
        with self._lock:
            issue = self.issues.get(issue_id) or next(
                (i for i in self.issues.values() if i["key"] == issue_id), None
            )
            if issue is None:
                raise JiraError(
                    404, ["Issue does not exist or you do not have permission to see it."]
                )
            histories = self.histories.get(issue["id"], [])
        start, limit = _int(params, "startAt", 0), min(_int(params, "maxResults", 100), 100)
        values = histories[start : start + limit]
        return {
            "self": f"/rest/api/2/issue/{issue['id']}/changelog",
            "startAt": start,
            "maxResults": limit,
            "total": len(histories),
            "isLast": start + limit >= len(histories),
            "values": [self._history(h) for h in values],
        }


def _recorded_time(text: str | None) -> datetime | None:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z") if text else None


def _one(params: Mapping[str, list[str]], name: str) -> str:
    values = params.get(name) or [""]
    return values[-1]


def _int(params: Mapping[str, list[str]], name: str, default: int) -> int:
    value = _one(params, name)
    if value in ("", "None"):
        return default
    if not value.lstrip("-").isdigit():
        raise JiraError(400, [f"The value '{value}' is invalid for {name}."])
    return max(0, int(value))


def _token(offset: int, text: str) -> str:
    return base64.urlsafe_b64encode(
        orjson.dumps({"o": offset, "q": hash(text) & 0xFFFFFFFF})
    ).decode()


def _token_offset(token: str, text: str) -> int:
    if not token:
        return 0
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        if data["q"] != hash(text) & 0xFFFFFFFF:
            raise ValueError
        return int(data["o"])
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise JiraError(400, ["The provided next page token is invalid or expired."]) from None


class _Handler(FaultyHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        self._dispatch(parts.path, parse_qs(parts.query, keep_blank_values=True))

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = orjson.loads(self.rfile.read(length) or b"{}")
        params: dict[str, list[str]] = {}
        for key, value in body.items():
            if value is None:
                continue
            params[key] = [str(v) for v in value] if isinstance(value, list) else [str(value)]
        self._dispatch(parts.path, params)

    def _dispatch(self, path: str, params: dict[str, list[str]]) -> None:
        instance = self.server.instance
        try:
            instance.authenticate(self.headers.get("Authorization"))
            cloud = instance.flavour == "cloud"
            segments = [s for s in path.split("/") if s]
            if segments[:2] != ["rest", "api"] or len(segments) < 4:
                raise JiraError(404, ["Not found"])
            version, rest = segments[2], segments[3:]
            if version not in ("2", "3", "latest") or (version == "3" and not cloud):
                raise JiraError(404, ["Not found"])
            if rest == ["serverInfo"]:
                self._send(200, instance.server_info())
            elif rest == ["myself"]:
                self._send(200, instance.myself())
            elif rest == ["field"]:
                self._send(200, instance.fields)
            elif rest == ["status"]:
                self._send(200, instance.statuses)
            elif rest == ["search", "jql"] and cloud:
                self._answer("search", params, lambda: instance.search(params, cloud_api=True))
            elif rest == ["search"] and cloud:
                raise JiraError(
                    410,
                    [
                        "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API."
                    ],
                )
            elif rest == ["search"]:
                self._answer("search", params, lambda: instance.search(params, cloud_api=False))
            elif len(rest) == 3 and rest[0] == "issue" and rest[2] == "changelog" and cloud:
                self._answer("changelog", params, lambda: instance.changelog(rest[1], params))
            else:
                raise JiraError(404, ["Not found"])
        except JiraError as exc:
            self._send(exc.status, {"errorMessages": exc.messages, "errors": {}}, exc.headers)

    def _answer(
        self, endpoint: str, params: Mapping[str, list[str]], build: Callable[[], Any]
    ) -> None:
        """Answer a search or changelog request, unless a switched-on fault answers it."""
        limit = _int(params, "maxResults", 50)
        fault = next((f for f in self.server.instance.faults if f.fires(endpoint, limit)), None)
        if fault is not None and self.inject(fault):
            return
        payload = orjson.dumps(build())
        if fault is not None and fault.kind in ("truncated", "cut_short"):
            self.send_cut(payload, {}, promise_all=fault.kind == "cut_short")
            return
        self._send_bytes(200, payload)

    def fault_answer(self, kind: str, fault: Fault) -> None:
        """Jira's envelope: 429 with Retry-After, or a 5xx (a cancelled transaction is a 503)."""
        if kind == "rate_limit":
            self._send(
                429,
                {"errorMessages": ["Rate limit exceeded."], "errors": {}},
                {"Retry-After": str(fault.retry_after), "X-RateLimit-Remaining": "0"},
            )
        else:
            status = fault.status if kind == "server_error" else 503
            self._send(status, {"errorMessages": ["Internal server error"], "errors": {}})

    def _send(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send_bytes(status, orjson.dumps(body), headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Dropped connections are deliberate faults here, not news for the test output."""

    def __init__(self, instance: JiraInstance, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.instance = instance


class RunningJira:
    """A served Jira site; a context manager."""

    def __init__(self, instance: JiraInstance, port: int = 0) -> None:
        self.instance = instance
        self._server = _Server(instance, port)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> RunningJira:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_jira(instance: JiraInstance, port: int = 0) -> RunningJira:
    return RunningJira(instance, port)
