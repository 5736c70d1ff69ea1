"""ServiceNow Table API source: strict keyset paging through pysnow.

Records are read in (``sys_updated_on``, ``sys_id``) order and the next page
starts strictly after the last record of the previous one, so the cursor can
move with every committed page and a record updated while we page simply
reappears later in the order instead of being skipped (offset paging over a
changing table loses rows: rbw/pysnow#104, PySNC#96).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pysnow
import requests
from pysnow.exceptions import PysnowException

from connectors.base import ConnectionParams, Cursor, Page, RawRecord, Source, StreamSpec
from connectors.errors import (
    FatalSourceError,
    MalformedResponseError,
    SourceAuthError,
    SourceError,
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


STREAMS: dict[str, StreamSpec] = {
    "incident": _stream("incident"),
}


def escape_value(value: str) -> str:
    """Escape a literal for an encoded query: a bare ``^`` would start a new condition."""
    return value.replace("^", "^^")


def format_datetime(value: datetime) -> str:
    """A literal date-time in a Table API query is compared with the stored UTC value."""
    if value.tzinfo is None:
        raise ValueError("ServiceNow query times must be timezone-aware")
    return value.astimezone(UTC).strftime(SN_DATETIME)


def parse_datetime(value: str) -> datetime:
    """Raw (``sysparm_display_value=false``) date-times are UTC without a zone suffix."""
    return datetime.strptime(value, SN_DATETIME).replace(tzinfo=UTC)


def keyset_query(cursor: Cursor | None, since: datetime | None) -> str:
    """Encoded query selecting everything strictly after ``cursor`` in keyset order."""
    order = "ORDERBYsys_updated_on^ORDERBYsys_id"
    if cursor:
        updated = escape_value(cursor["sys_updated_on"])
        sys_id = escape_value(cursor["sys_id"])
        return f"sys_updated_on={updated}^sys_id>{sys_id}^NQsys_updated_on>{updated}^{order}"
    if since is not None:
        return f"sys_updated_on>={format_datetime(since)}^{order}"
    return order


def _cursor_of(record: Mapping[str, Any]) -> tuple[str, str]:
    return (str(record["sys_updated_on"]), str(record["sys_id"]))


class ServiceNowSource(Source):
    """Pages ServiceNow tables with pysnow (buffered mode: its streaming parser is ~20x slower)."""

    kind = "servicenow"
    streams = STREAMS

    def __init__(self, params: ConnectionParams) -> None:
        super().__init__(params)
        parts = urlsplit(params.url)
        self._session = build_session(params, user_agent="itbsc (pysnow)")
        self._client = pysnow.Client(
            host=parts.netloc, use_ssl=parts.scheme == "https", session=self._session
        )

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
        limit = self.params.page_size
        offset = 0  # only moves when a whole window was hidden by ACLs (see below)
        while True:
            query = keyset_query(cursor, since)
            rows, total = self._fetch(
                resource, stream, query=query, limit=limit, offset=offset, fields=wanted
            )
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

    @staticmethod
    def _more_after(total: int | None, returned: int, limit: int, offset: int) -> bool:
        """Whether rows remain after this window; never trust a short page alone."""
        if total is None:
            return returned > 0
        return total > offset + limit

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
        try:
            response = resource.get(query=query, limit=limit, offset=offset, fields=fields)
            rows = list(response.all())
        except requests.HTTPError as exc:
            raise _http_error(where, exc.response) from None
        except requests.exceptions.RetryError as exc:
            raise TransientSourceError(f"{where}: gave up after retries ({_reason(exc)})") from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientSourceError(f"{where}: cannot connect ({_reason(exc)})") from None
        except ValueError:
            raise MalformedResponseError(
                f"{where}: response at offset {offset} is not valid JSON (truncated or an error page)"
            ) from None
        except PysnowException as exc:
            raise MalformedResponseError(f"{where}: unexpected response ({exc})") from None
        if not all(isinstance(row, dict) for row in rows):
            raise MalformedResponseError(f"{where}: 'result' is not a list of records")
        header = response.headers.get("X-Total-Count")
        total = int(header) if header and header.isdigit() else None
        return rows, total


def _reason(exc: Exception) -> str:
    """The exception class only: its text can carry a URL or a response body."""
    return type(exc).__name__


def _http_error(where: str, response: requests.Response | None) -> SourceError:
    status = response.status_code if response is not None else 0
    detail = _envelope_message(response)
    if status in (401, 403):
        hint = (
            "check the username and the password variable"
            if status == 401
            else "the account needs read rights (ACL) on this table"
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
