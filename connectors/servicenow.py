"""ServiceNow Table API source: strict keyset paging through pysnow.

Records are read in (``sys_updated_on``, ``sys_id``) order and the next page
starts strictly after the last record of the previous one, so the cursor can
move with every committed page and a record updated while we page simply
reappears later in the order instead of being skipped (offset paging over a
changing table loses rows: rbw/pysnow#104, PySNC#96).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pysnow
import requests
import structlog
from pysnow.exceptions import PysnowException

from connectors.base import ConnectionParams, Cursor, Page, RawRecord, Source, StreamSpec
from connectors.errors import (
    FatalSourceError,
    MalformedResponseError,
    SourceAuthError,
    TransientSourceError,
)
from connectors.http import build_session

SN_DATETIME = "%Y-%m-%d %H:%M:%S"


def _stream(name: str, table: str | None = None) -> StreamSpec:
    return StreamSpec(
        name=name,
        table=table or name,
        primary_key="sys_id",
        cursor_field="sys_updated_on",
        required_fields=("sys_id", "sys_updated_on"),
    )


# Which fields are requested is the mapping's business (dot-walks such as
# ``sla.name`` included); a stream only says where its records live.
STREAMS: dict[str, StreamSpec] = {
    spec.name: spec
    for spec in (
        _stream("incident"),
        _stream("change_request"),
        _stream("task_sla"),
        _stream("problem"),
        _stream("sc_req_item"),
        _stream("sys_user_group"),
        _stream("asmt_metric_result"),  # survey answers (customer satisfaction)
    )
}
OAUTH_TOKEN_PATH = "/oauth_token.do"
IDS_PAGE_SIZE = 10000  # the census asks for sys_id only: large pages are cheap
IDS_PER_FETCH = 100  # sys_idIN lists stay well inside URL limits
PAGE_ATTEMPTS = 3  # a malformed or cut-short page is asked for again this many times
CANCELLED_MARKERS = ("transaction cancelled", "maximum execution time")


class _PageTooLarge(Exception):
    """The instance cancelled the transaction: the same query must be asked in smaller pages."""


def escape_value(value: str) -> str:
    """Escape a literal for an encoded query: a bare ``^`` would start a new condition."""
    return value.replace("^", "^^")


FILTER_FIELD = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def filter_problem(field: str, values: str | Sequence[str]) -> str | None:
    """Why a configured filter could change the query's meaning (None when it cannot).

    Field names are plain column names (dot-walks allowed); values may not hold a caret —
    ``^``, ``^OR`` and ``^NQ`` would start conditions of their own — nor control characters.
    """
    if not FILTER_FIELD.match(field):
        return f"{field!r} is not a ServiceNow field name (a-z, 0-9, _, dot-walks with .)"
    listed = [values] if isinstance(values, str) else list(values)
    if not listed:
        return "give at least one value"
    for value in listed:
        if not value.strip():
            return "an empty value matches nothing useful; remove it"
        if "^" in value:
            return f"{value!r}: a caret (^, ^OR, ^NQ) would change the query; it is refused"
        if _CONTROL.search(value):
            return f"{value!r}: control characters are refused"
    return None


def filter_query(filters: Mapping[str, str | Sequence[str]]) -> str:
    """``{"assignment_group": ["a", "b"], "company": "c"}`` -> ``assignment_group=a^ORassignment_group=b^company=c``.

    Each field is one OR-group (``^OR`` binds tighter than ``^``), the groups are ANDed; a
    value is compared with ``=`` only. Checked again here, so no caller can inject."""
    groups = []
    for field, values in filters.items():
        problem = filter_problem(field, values)
        if problem:
            raise FatalSourceError(f"filter on {field!r}: {problem}")
        listed = [values] if isinstance(values, str) else list(values)
        groups.append("^OR".join(f"{field}={value}" for value in listed))
    return "^".join(groups)


def format_datetime(value: datetime) -> str:
    """A literal date-time in a Table API query is compared with the stored UTC value."""
    if value.tzinfo is None:
        raise ValueError("ServiceNow query times must be timezone-aware")
    return value.astimezone(UTC).strftime(SN_DATETIME)


def parse_datetime(value: str) -> datetime:
    """Raw (``sysparm_display_value=false``) date-times are UTC without a zone suffix."""
    return datetime.strptime(value, SN_DATETIME).replace(tzinfo=UTC)


def keyset_query(cursor: Cursor | None, since: datetime | None, scope: str = "") -> str:
    """Encoded query selecting everything strictly after ``cursor`` in keyset order.

    ``scope`` (a :func:`filter_query`) is repeated in each ``^NQ`` block: blocks are ORed."""
    order = "ORDERBYsys_updated_on^ORDERBYsys_id"
    first = f"{scope}^" if scope else ""
    if cursor:
        updated = escape_value(cursor["sys_updated_on"])
        sys_id = escape_value(cursor["sys_id"])
        return (
            f"{first}sys_updated_on={updated}^sys_id>{sys_id}"
            f"^NQ{first}sys_updated_on>{updated}^{order}"
        )
    if since is not None:
        return f"{first}sys_updated_on>={format_datetime(since)}^{order}"
    return f"{first}{order}"


def _cursor_of(record: Mapping[str, Any]) -> tuple[str, str]:
    return (str(record["sys_updated_on"]), str(record["sys_id"]))


class ServiceNowSource(Source):
    """Pages ServiceNow tables with pysnow (buffered mode: its streaming parser is ~20x slower).

    Retries of 429 (honouring ``Retry-After``), 5xx, resets and timeouts happen
    once, in the session's urllib3 layer. Above it this class only asks again
    for a page that arrived malformed or cut short, and halves the page size
    when the instance cancels a transaction for taking too long.
    """

    kind = "servicenow"
    streams = STREAMS

    def __init__(self, params: ConnectionParams) -> None:
        super().__init__(params)
        parts = urlsplit(params.url)
        self._session = build_session(
            params, user_agent="itbsc (pysnow)", oauth_token_url=params.url + OAUTH_TOKEN_PATH
        )
        self._client = pysnow.Client(
            host=parts.netloc, use_ssl=parts.scheme == "https", session=self._session
        )
        self.page_size = params.page_size  # shrinks when the instance cancels big pages
        filters = params.options.get("filters") or {}
        self._scopes = {stream: filter_query(f) for stream, f in filters.items()}
        self._log = structlog.get_logger("itbsc.connectors.servicenow").bind(source=params.name)

    def close(self) -> None:
        self._session.close()

    def check(self) -> None:
        resource = self._resource(STREAMS["incident"])
        self._fetch(
            resource, "incident", query="ORDERBYsys_id", limit=1, offset=0, fields=["sys_id"]
        )

    def read(
        self,
        stream: str,
        *,
        fields: Sequence[str],
        cursor: Cursor | None = None,
        since: datetime | None = None,
    ) -> Iterator[Page]:
        spec = self.streams[stream]
        wanted = list(dict.fromkeys([*spec.required_fields, *fields]))
        resource = self._resource(spec)
        offset = 0  # only moves when a whole window was hidden by ACLs (see below)
        while True:
            query = keyset_query(cursor, since, self._scopes.get(stream, ""))
            rows, total, limit = self._page(resource, stream, query, offset, wanted, self.page_size)
            records = [self._to_raw(stream, row) for row in rows]
            more = self._more_after(total, len(rows), limit, offset)
            if records:
                last = _cursor_of(rows[-1])
                if cursor and last <= (cursor["sys_updated_on"], cursor["sys_id"]):
                    raise MalformedResponseError(
                        f"source {self.params.name!r}: table {spec.table} did not honour the "
                        f"keyset order (page ended at {last}, not after {cursor}); refusing to loop"
                    )
                cursor = {"sys_updated_on": last[0], "sys_id": last[1]}
                offset = 0
            if records or not more:
                yield Page(records=records, cursor=dict(cursor) if cursor else None, total=total)
            if not more:
                return
            if not records:
                # sysparm_limit is applied before ACL filtering: a window can come back
                # empty while rows remain beyond it, so step over it instead of stopping.
                offset += limit

    def list_ids(self, stream: str) -> Iterator[list[str]]:
        """Every sys_id in ``stream``, in sys_id order (a keyset that no update can disturb)."""
        resource = self._resource(self.streams[stream])
        last: str | None = None
        offset = 0
        while True:
            scope = self._scopes.get(stream, "")
            after = f"sys_id>{escape_value(last)}^" if last else ""
            query = f"{scope}^{after}ORDERBYsys_id" if scope else f"{after}ORDERBYsys_id"
            limit = max(self.page_size, IDS_PAGE_SIZE)
            rows, total, limit = self._page(resource, stream, query, offset, ["sys_id"], limit)
            ids = [str(row.get("sys_id") or "") for row in rows]
            if not all(ids):
                raise MalformedResponseError(
                    f"source {self.params.name!r}: a {stream} id page holds rows without sys_id"
                )
            if ids:
                if last is not None and ids[-1] <= last:
                    raise MalformedResponseError(
                        f"source {self.params.name!r}: {stream} ids are not in sys_id order"
                    )
                last, offset = ids[-1], 0
                yield ids
            if not self._more_after(total, len(rows), limit, offset):
                return
            if not ids:
                offset += limit

    def read_ids(self, stream: str, ids: Sequence[str], *, fields: Sequence[str]) -> Iterator[Page]:
        spec = self.streams[stream]
        wanted = list(dict.fromkeys([*spec.required_fields, *fields]))
        resource = self._resource(spec)
        for start in range(0, len(ids), IDS_PER_FETCH):
            chunk = [escape_value(i.replace(",", "")) for i in ids[start : start + IDS_PER_FETCH]]
            query = f"sys_idIN{','.join(chunk)}^ORDERBYsys_id"
            rows, _, _ = self._page(resource, stream, query, 0, wanted, len(chunk))
            yield Page(records=[self._to_raw(stream, row) for row in rows], cursor=None)

    @staticmethod
    def _more_after(total: int | None, returned: int, limit: int, offset: int) -> bool:
        """Whether rows remain after this window; never trust a short page alone."""
        if total is None:
            return returned > 0
        return total > offset + limit

    def _page(
        self,
        resource: Any,
        stream: str,
        query: str,
        offset: int,
        fields: list[str],
        limit: int,
    ) -> tuple[list[dict[str, Any]], int | None, int]:
        """One page, asked again when malformed and in halves when the instance cancels it."""
        attempts = 0
        while True:
            try:
                rows, total = self._fetch(
                    resource, stream, query=query, limit=limit, offset=offset, fields=fields
                )
                return rows, total, limit
            except _PageTooLarge as exc:
                if limit == 1:
                    raise TransientSourceError(
                        f"{exc}; even a page of one record was cancelled — ask the instance "
                        "owner about the transaction quota"
                    ) from None
                limit = max(1, limit // 2)
                if fields != ["sys_id"]:
                    self.page_size = min(self.page_size, limit)
                self._log.warning(
                    "instance cancelled a page as too slow; halving the page size",
                    stream=stream,
                    page_size=limit,
                )
            except MalformedResponseError as exc:
                attempts += 1
                if attempts >= PAGE_ATTEMPTS:
                    raise
                self._log.warning(
                    "malformed page; asking again", stream=stream, attempt=attempts, error=str(exc)
                )
                time.sleep(min(2.0, 0.2 * 2**attempts))

    def _resource(self, spec: StreamSpec) -> Any:
        resource = self._client.resource(api_path=f"/table/{spec.table}")
        resource.parameters.display_value = False
        resource.parameters.exclude_reference_link = True
        return resource

    def _to_raw(self, stream: str, row: Mapping[str, Any]) -> RawRecord:
        try:
            sys_id = str(row["sys_id"])
            updated = parse_datetime(str(row["sys_updated_on"]))
        except (KeyError, ValueError) as exc:
            raise MalformedResponseError(
                f"source {self.params.name!r}: a {stream} record lacks a valid sys_id or "
                f"sys_updated_on ({exc}); the response does not have the Table API shape"
            ) from None
        return RawRecord(source_id=sys_id, updated_at=updated, data=dict(row))

    def _fetch(
        self,
        resource: Any,
        stream: str,
        *,
        query: str,
        limit: int,
        offset: int,
        fields: list[str],
    ) -> tuple[list[dict[str, Any]], int | None]:
        """One request; every failure becomes a SourceError that names source and table."""
        where = (
            f"source {self.params.name!r} ({self.params.url}), stream {stream} ({resource.path})"
        )
        response = None
        try:
            response = resource.get(query=query, limit=limit, offset=offset, fields=fields)
            rows = list(response.all())
        except requests.HTTPError as exc:
            raise _http_error(where, exc.response) from None
        except requests.exceptions.RetryError as exc:
            raise TransientSourceError(f"{where}: gave up after retries ({_reason(exc)})") from None
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError):
            raise MalformedResponseError(
                f"{where}: response at offset {offset} was cut short"
            ) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientSourceError(f"{where}: cannot connect ({_reason(exc)})") from None
        except ValueError:
            raise MalformedResponseError(
                f"{where}: response at offset {offset} is not valid JSON (truncated or an error page)"
            ) from None
        except PysnowException as exc:
            message = _envelope_message(getattr(response, "_response", None))
            if _is_cancelled(message):
                raise _PageTooLarge(f"{where}: {message}") from None
            raise MalformedResponseError(
                f"{where}: unexpected response ({message or type(exc).__name__})"
            ) from None
        if not all(isinstance(row, dict) for row in rows):
            raise MalformedResponseError(f"{where}: 'result' is not a list of records")
        header = response.headers.get("X-Total-Count")
        total = int(header) if header and header.isdigit() else None
        return rows, total


def _is_cancelled(message: str) -> bool:
    lowered = message.lower()
    return any(marker in lowered for marker in CANCELLED_MARKERS)


def _reason(exc: Exception) -> str:
    """The exception class only: its text can carry a URL or a response body."""
    return type(exc).__name__


def _http_error(where: str, response: requests.Response | None) -> Exception:
    status = response.status_code if response is not None else 0
    detail = _envelope_message(response)
    if _is_cancelled(detail):
        return _PageTooLarge(f"{where}: HTTP {status} {detail}")
    if status in (401, 403):
        hint = (
            "check the username, the password variable (and for OAuth the client_id and "
            "client secret variable)"
            if status == 401
            else "the account needs read rights (ACL / a role such as itil) on this table"
        )
        return SourceAuthError(f"{where}: HTTP {status} {detail} — {hint}")
    if status == 429 or status >= 500:
        return TransientSourceError(f"{where}: HTTP {status} {detail} (retries exhausted)")
    return FatalSourceError(f"{where}: HTTP {status} {detail}")


def _envelope_message(response: requests.Response | None) -> str:
    """The Table API error envelope's message, or the HTTP reason when there is none."""
    if response is None:
        return ""
    try:
        error = response.json().get("error") or {}
        message = str(error.get("message") or "").strip()
    except (ValueError, AttributeError):
        message = ""
    return message or str(response.reason or "")
