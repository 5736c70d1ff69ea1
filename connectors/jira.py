"""Jira Cloud / Data Center / JSM source through the ``jira`` library, paged as JSON.

Cloud pages ``search/jql`` with ``nextPageToken``; Data Center pages
``search`` with ``startAt``. JQL date literals are read in the searching
user's profile zone and only to the minute (airbytehq/airbyte#48492,
apache/devlake#4932), so the incremental bound is formatted in the zone
``/myself`` reports, floored to the minute and moved back by an overlap;
re-read issues are harmless (the store keeps the newest version by id). The
cursor moves only when the stream completes: to the run's start minus the
overlap. Pages are ordered by ``created`` and ``id`` — values an edit cannot
change — so issues cannot jump pages while we read.

Custom fields are found in ``/field`` by schema type, never by display name
(names repeat), and delivered under stable role names
(``fields["itbsc:request_type"]``, ``fields["itbsc:sla"]`` = {SLA name: value});
JSM's "Change type" select list has no schema type of its own and is found by
name (``fields["itbsc:change_type"]``, the first field of that name filled).
Status changes in the changelog are annotated with the status category
they move from and to (``fromCategory``/``toCategory``), so the mapping can
read a lifecycle from local-language status names. A changelog the search
truncated is completed from ``/issue/{id}/changelog`` (Cloud).
"""

from __future__ import annotations

import email.utils
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests
import structlog
import tenacity
from jira import JIRA, JIRAError

from connectors.base import ConnectionParams, Cursor, Page, RawRecord, Source, StreamSpec
from connectors.errors import (
    FatalSourceError,
    MalformedResponseError,
    SourceAuthError,
    SourceError,
    TransientSourceError,
)

STREAMS: dict[str, StreamSpec] = {
    "issues": StreamSpec(
        name="issues",
        table="issue",
        primary_key="id",
        cursor_field="updated",
        required_fields=("updated", "created", "status", "issuetype", "project"),
    )
}
ROLE_SCHEMAS = {
    "itbsc:request_type": "com.atlassian.servicedesk:vp-origin",
    "itbsc:sla": "com.atlassian.servicedesk:sd-sla-field",
    "itbsc:satisfaction": "com.atlassian.servicedesk:sd-request-feedback",
    "itbsc:satisfaction_date": "com.atlassian.servicedesk:sd-request-feedback-date",
}
# Plain select lists JSM creates for changes: no schema type tells them apart, so they
# are found by name (``field_names`` renames them); of several, the first one filled.
ROLE_NAMES = {"itbsc:change_type": "Change type"}
PROJECT_KEY = re.compile(r"^[A-Z][A-Z0-9_]{0,254}$")
JIRA_TIME = "%Y-%m-%dT%H:%M:%S.%f%z"
DEFAULT_OVERLAP = timedelta(minutes=10)
MAX_RETRY_DELAY_SECONDS = 30
IDS_PAGE = 1000  # id-only pages (Cloud allows up to 5000, Data Center caps at 1000)


def parse_jira_time(text: str) -> datetime:
    """``2024-05-01T10:11:12.000+0200`` -> aware UTC."""
    return datetime.strptime(text, JIRA_TIME).astimezone(UTC)


def jql_time(moment: datetime, zone: ZoneInfo) -> str:
    """A JQL literal for ``moment`` as the searching user's zone reads it, floored to the minute."""
    return moment.astimezone(zone).strftime("%Y/%m/%d %H:%M")


def project_clause(projects: Sequence[str]) -> str:
    """``project IN ("A", "B")``; keys are validated so configuration cannot change the query."""
    for key in projects:
        if not PROJECT_KEY.match(key):
            raise FatalSourceError(f"{key!r} is not a Jira project key (A-Z, 0-9, _)")
    return "project IN (" + ", ".join(f'"{key}"' for key in projects) + ")"


def _retry_after_in_seconds(response: requests.Response, *_args: Any, **_kwargs: Any) -> None:
    """The library reads Retry-After with int(); an HTTP-date would crash the sync."""
    value = response.headers.get("Retry-After")
    if value and not value.strip().isdigit():
        try:
            when = email.utils.parsedate_to_datetime(value)
            seconds = max(1, int((when - datetime.now(UTC)).total_seconds()))
        except (TypeError, ValueError):
            seconds = 5
        response.headers["Retry-After"] = str(seconds)


class JiraSource(Source):
    """Pages Jira issues as JSON (the library's Issue objects cost ~5x the CPU)."""

    kind = "jira"
    streams = STREAMS

    def __init__(self, params: ConnectionParams) -> None:
        super().__init__(params)
        options = dict(params.options)
        self.projects: list[str] = list(options.get("projects") or [])
        self.overlap = timedelta(minutes=float(options.get("overlap_minutes", 10)))
        self.field_names: dict[str, str] = dict(options.get("field_names") or {})
        self._client: JIRA | None = None
        self._log = structlog.get_logger("itbsc.connectors.jira").bind(source=params.name)
        logging.getLogger("jira").setLevel(logging.WARNING)  # it logs bodies at DEBUG

    # -- connection ---------------------------------------------------------------
    def _where(self, what: str) -> str:
        return f"source {self.params.name!r} ({self.params.url}), {what}"

    @property
    def client(self) -> JIRA:
        if self._client is None:
            self._client = self._call("server info", self._connect)
        return self._client

    def _connect(self) -> JIRA:
        params = self.params
        auth: dict[str, Any] = {}
        secret = params.password.reveal() if params.password else None
        if params.auth == "token":
            auth["token_auth"] = secret
        elif params.username and secret:
            auth["basic_auth"] = (params.username, secret)
        client = JIRA(
            server=params.url,
            options={"verify": params.verify_tls, "headers": {"User-Agent": "itbsc (jira)"}},
            get_server_info=True,
            max_retries=0,  # retries are ours (_call): the library's skip 5xx, resets, timeouts
            timeout=params.timeout_seconds,
            **auth,
        )
        client._session.hooks["response"].append(_retry_after_in_seconds)
        return client

    @property
    def is_cloud(self) -> bool:
        return bool(self.client._is_cloud)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()  # type: ignore[no-untyped-call]

    def check(self) -> None:
        self._call("myself", self.client.myself)

    # -- reading -----------------------------------------------------------------
    def user_zone(self) -> ZoneInfo:
        """The zone Jira reads our JQL dates in: the account's profile zone."""
        me = self._call("myself", self.client.myself)
        name = me.get("timeZone") or "UTC"
        try:
            return ZoneInfo(name)
        except ZoneInfoNotFoundError:
            raise FatalSourceError(
                self._where(f"/myself reports an unknown time zone {name!r}")
            ) from None

    def jql(self, since: datetime | None, zone: ZoneInfo) -> str:
        if not self.projects:
            raise FatalSourceError(self._where("no projects configured (projects = [...])"))
        clause = project_clause(self.projects)
        if since is not None:
            clause += f' AND updated >= "{jql_time(since - self.overlap, zone)}"'
        return f"{clause} ORDER BY created ASC, id ASC"

    def read(
        self,
        stream: str,
        *,
        fields: Sequence[str],
        cursor: Cursor | None = None,
        since: datetime | None = None,
    ) -> Iterator[Page]:
        spec = self.streams[stream]
        run_started = datetime.now(UTC)
        zone = self.user_zone()
        lower = since or (datetime.fromisoformat(cursor["updated_since"]) if cursor else None)
        query = self.jql(lower, zone)
        roles = self._roles()
        wanted = self._field_ids(spec, fields, roles)
        status_categories = self._status_categories()
        self._log.info("jira search", stream=stream, jql=query, cloud=self.is_cloud, zone=str(zone))
        pages = self._cloud_pages(query, wanted) if self.is_cloud else self._dc_pages(query, wanted)
        previous: list[RawRecord] | None = None
        previous_total: int | None = None
        for issues, total in pages:
            records = [self._to_raw(issue, roles, status_categories) for issue in issues]
            if previous is not None:
                yield Page(records=previous, cursor=None, total=previous_total)
            previous, previous_total = records, total
        final = {"updated_since": (run_started - self.overlap).isoformat()}
        yield Page(records=previous or [], cursor=final, total=previous_total)

    def list_ids(self, stream: str) -> Iterator[list[str]]:
        """Every issue id of the projects, by an id keyset (no offset a deletion could shift)."""
        if stream not in self.streams:
            raise FatalSourceError(self._where(f"no stream {stream!r}"))
        last = 0
        restriction = project_clause(self.projects)
        while True:
            query = f"{restriction} AND id > {last} ORDER BY id ASC"
            issues = self._first_page(query, ["id"], IDS_PAGE)
            ids = [str(i["id"]) for i in issues]
            if not ids:
                return
            yield ids
            last = int(ids[-1])

    def read_ids(self, stream: str, ids: Sequence[str], *, fields: Sequence[str]) -> Iterator[Page]:
        spec = self.streams[stream]
        roles = self._roles()
        wanted = self._field_ids(spec, fields, roles)
        categories = self._status_categories()
        numbers = [i for i in ids if i.isdigit()]
        for start in range(0, len(numbers), 100):
            chunk = numbers[start : start + 100]
            query = (
                f"{project_clause(self.projects)} AND id IN ({', '.join(chunk)}) ORDER BY id ASC"
            )
            issues = self._first_page(query, wanted, len(chunk), expand="changelog")
            yield Page(records=[self._to_raw(i, roles, categories) for i in issues], cursor=None)

    def _search(
        self,
        query: str,
        fields: list[str],
        limit: int,
        *,
        expand: str | None = "changelog",
        token: str | None = None,
        start: int = 0,
    ) -> dict[str, Any]:
        """One search page: Cloud's search/jql (token) or Data Center's search (offset)."""
        what = "search/jql" if self.is_cloud else "search"
        where = self._where(what)

        def fetch() -> Any:
            if self.is_cloud:
                reply = self.client.enhanced_search_issues(
                    query,
                    nextPageToken=token,
                    maxResults=limit,
                    fields=list(fields),
                    expand=expand,
                    json_result=True,
                )
            else:
                reply = self.client.search_issues(
                    query,
                    startAt=start,
                    maxResults=limit,
                    fields=list(fields),
                    expand=expand,
                    json_result=True,
                )
            _issues_of(reply, where)  # a reply of the wrong shape is asked for again
            return reply

        return dict(self._call(what, fetch))

    def _first_page(
        self, query: str, fields: list[str], limit: int, expand: str | None = None
    ) -> list[dict[str, Any]]:
        issues: list[dict[str, Any]] = self._search(query, fields, limit, expand=expand)["issues"]
        return issues

    def _cloud_pages(
        self, query: str, fields: list[str]
    ) -> Iterator[tuple[list[dict[str, Any]], int | None]]:
        token: str | None = None
        while True:
            reply = self._search(query, fields, self.params.page_size, token=token)
            yield reply["issues"], None
            token = reply.get("nextPageToken")
            if not token or reply.get("isLast") is True:
                return

    def _dc_pages(
        self, query: str, fields: list[str]
    ) -> Iterator[tuple[list[dict[str, Any]], int | None]]:
        start = 0
        while True:
            reply = self._search(query, fields, self.params.page_size, start=start)
            issues = reply["issues"]
            total = int(reply.get("total") or 0)
            yield issues, max(total - start, 0)
            # Advance by the page size the server applied (it caps maxResults and says so):
            # a page shortened by permissions is not the end of the results.
            step = int(reply.get("maxResults") or 0) or len(issues)
            start += step
            if step == 0 or start >= total:
                return

    # -- fields -------------------------------------------------------------------
    def _roles(self) -> dict[str, list[tuple[str, str]]]:
        """Role -> [(field id, field name)] found by schema type (or by configured name)."""
        definitions = self._call("field", self.client._get_json, "field")
        roles: dict[str, list[tuple[str, str]]] = {
            role: [] for role in (*ROLE_SCHEMAS, *ROLE_NAMES)
        }
        for definition in definitions:
            schema = (definition.get("schema") or {}).get("custom")
            name = definition.get("name")
            for role in roles:
                override = self.field_names.get(role) or ROLE_NAMES.get(role)
                if (override and name == override and definition.get("custom")) or (
                    not override and schema == ROLE_SCHEMAS[role]
                ):
                    roles[role].append((str(definition["id"]), str(name or "")))
        return roles

    @staticmethod
    def _field_ids(
        spec: StreamSpec, fields: Sequence[str], roles: Mapping[str, list[tuple[str, str]]]
    ) -> list[str]:
        """Top-level Jira fields behind the mapping's paths (``fields.status.name`` -> status)."""
        wanted: list[str] = list(spec.required_fields)
        for path in fields:
            parts = path.split(".")
            if parts[0] != "fields" or len(parts) < 2:
                continue
            if parts[1] in roles:
                wanted.extend(fid for fid, _ in roles[parts[1]])
            else:
                wanted.append(parts[1])
        return list(dict.fromkeys(wanted))

    def _status_categories(self) -> dict[str, str]:
        statuses = self._call("status", self.client._get_json, "status")
        return {
            str(s["id"]): str((s.get("statusCategory") or {}).get("key") or "")
            for s in statuses
            if isinstance(s, dict) and "id" in s
        }

    # -- records ------------------------------------------------------------------
    def _to_raw(
        self,
        issue: dict[str, Any],
        roles: Mapping[str, list[tuple[str, str]]],
        categories: Mapping[str, str],
    ) -> RawRecord:
        try:
            issue_id = str(issue["id"])
            fields = issue["fields"]
            updated = parse_jira_time(fields["updated"])
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedResponseError(
                self._where(f"an issue lacks a valid id or fields.updated ({exc})")
            ) from None
        for role, found in roles.items():
            if role == "itbsc:sla":
                fields[role] = {name: fields.get(fid) for fid, name in found if fid in fields}
            else:
                filled = next(
                    (fields[fid] for fid, _ in found if fields.get(fid) is not None), None
                )
                if filled is not None:
                    fields[role] = filled
        self._complete_changelog(issue)
        for history in issue.get("changelog", {}).get("histories", []):
            for item in history.get("items", []):
                if item.get("field") == "status":
                    item["fromCategory"] = categories.get(str(item.get("from")))
                    item["toCategory"] = categories.get(str(item.get("to")))
        return RawRecord(source_id=issue_id, updated_at=updated, data=issue)

    def _complete_changelog(self, issue: dict[str, Any]) -> None:
        changelog = issue.get("changelog")
        if not changelog or len(changelog.get("histories", [])) >= int(changelog.get("total") or 0):
            return
        if not self.is_cloud:  # Data Center has no changelog endpoint: keep what search gave
            return
        histories: list[dict[str, Any]] = []
        start = 0
        while True:
            page = self._call(
                "changelog",
                self.client._get_json,
                f"issue/{issue['id']}/changelog",
                params={"startAt": start, "maxResults": 100},
            )
            values = page.get("values") or []
            histories.extend(values)
            start += len(values)
            if not values or page.get("isLast", True) or start >= int(page.get("total") or 0):
                break
        changelog["histories"], changelog["maxResults"] = histories, len(histories)

    # -- errors -------------------------------------------------------------------
    def _call(self, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Call the library; 429, 5xx, resets, timeouts and unreadable replies are asked again.

        Every request here reads (search, changelog, fields), so asking again is safe. Waits
        honour Retry-After (capped), else back off exponentially; ``max_retries`` bounds them."""
        where = self._where(what)
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.params.max_retries + 1),
            wait=_wait,
            retry=tenacity.retry_if_exception_type(_Again),
            reraise=True,
            before_sleep=lambda state: self._log.warning(
                "asking again", what=what, attempt=state.attempt_number, error=str(_again(state))
            ),
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._call_once(where, function, *args, **kwargs)
        except _Again as final:
            raise final.error from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    @staticmethod
    def _call_once(where: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except MalformedResponseError as exc:
            raise _Again(exc) from None
        except JIRAError as exc:
            error = _jira_error(where, exc)
            if isinstance(error, TransientSourceError):
                raise _Again(error, _retry_after(exc.response)) from None
            raise error from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Again(
                TransientSourceError(f"{where}: cannot connect ({type(exc).__name__})")
            ) from None
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError):
            raise _Again(MalformedResponseError(f"{where}: the response was cut short")) from None
        except ValueError:
            raise _Again(
                MalformedResponseError(f"{where}: the response is not valid JSON")
            ) from None


class _Again(Exception):
    """A failure worth asking again for; ``error`` is what the caller sees if retries run out."""

    def __init__(self, error: SourceError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error, self.retry_after = error, retry_after


def _again(state: tenacity.RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome else None


def _wait(state: tenacity.RetryCallState) -> float:
    """Retry-After when the server gave one, else 0.5 s doubling; never above the cap."""
    failure = _again(state)
    hinted = failure.retry_after if isinstance(failure, _Again) else None
    backoff = 0.5 * 2 ** (state.attempt_number - 1)
    return float(min(MAX_RETRY_DELAY_SECONDS, hinted if hinted is not None else backoff))


def _retry_after(response: requests.Response | None) -> float | None:
    value = response.headers.get("Retry-After") if response is not None else None
    return float(value) if value and value.strip().isdigit() else None


def _issues_of(reply: Any, where: str) -> list[dict[str, Any]]:
    issues = reply.get("issues") if isinstance(reply, dict) else None
    if not isinstance(issues, list) or not all(isinstance(i, dict) for i in issues):
        raise MalformedResponseError(f"{where}: the reply holds no list of issues")
    return issues


def _readable(body: str) -> str:
    """An error body for a message: Jira's JSON text as is, a proxy's HTML page by its title."""
    text = body.strip()
    if text.lower().startswith(("<!doctype", "<html")):
        title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        heading = re.search(r"<h1>(.*?)</h1>", text, re.IGNORECASE | re.DOTALL)
        named = " / ".join(m.group(1).strip() for m in (title, heading) if m)
        return f"(an HTML error page: {named[:200]})" if named else "(an HTML error page)"
    return text.replace("\n", " ")[:300]


def _jira_error(where: str, exc: JIRAError) -> SourceError:
    status = exc.status_code or 0
    text = _readable(exc.text or "")
    if status == 401:
        return SourceAuthError(
            f"{where}: HTTP 401 — check the username (Cloud: the account e-mail) and the "
            "API token / password variable, or the personal access token"
        )
    if status == 403:
        return SourceAuthError(f"{where}: HTTP 403 {text} — the account lacks browse rights")
    if status == 400:
        return FatalSourceError(f"{where}: HTTP 400 {text}")
    if status == 429 or status >= 500:
        return TransientSourceError(f"{where}: HTTP {status} {text} (retries exhausted)")
    return FatalSourceError(f"{where}: HTTP {status} {text}")
