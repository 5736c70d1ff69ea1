"""Request shapes and error paths of the ServiceNow connector, pinned with `responses`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import responses
from responses import matchers

from connectors.base import ConnectionParams, Secret
from connectors.errors import MalformedResponseError, SourceAuthError, TransientSourceError
from connectors.servicenow import PAGE_ATTEMPTS, ServiceNowSource

BASE = "https://acme.service-now.com"
TABLE = f"{BASE}/api/now/table/incident"
PASSWORD = "pw-Marker-91"


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(registry=responses.registries.OrderedRegistry) as rsps:
        yield rsps


@pytest.fixture
def source() -> Iterator[ServiceNowSource]:
    params = ConnectionParams(
        name="acme",
        url=BASE,
        username="itbsc",
        password=Secret(PASSWORD),
        page_size=2,
        max_retries=0,
    )
    with ServiceNowSource(params) as src:
        yield src


def rec(sys_id: str, updated: str) -> dict[str, Any]:
    return {"sys_id": sys_id, "sys_updated_on": updated, "state": "6"}


def expect(
    mock: responses.RequestsMock,
    query: str,
    rows: list[dict[str, Any]],
    total: int,
    offset: int = 0,
    limit: int = 2,
) -> None:
    params = {
        "sysparm_query": query,
        "sysparm_limit": str(limit),
        "sysparm_offset": str(offset),
        "sysparm_fields": "sys_id,sys_updated_on,state",
        "sysparm_display_value": "False",
        "sysparm_exclude_reference_link": "True",
        "sysparm_suppress_pagination_header": "False",
        "sysparm_view": "",
    }
    mock.get(
        TABLE,
        json={"result": rows},
        headers={"X-Total-Count": str(total)},
        match=[matchers.query_param_matcher(params)],
    )


ORDER = "ORDERBYsys_updated_on^ORDERBYsys_id"


def after(updated: str, sys_id: str) -> str:
    return f"sys_updated_on={updated}^sys_id>{sys_id}^NQsys_updated_on>{updated}^{ORDER}"


def test_keyset_pages_raw_values_and_only_the_mapped_fields(
    mock: responses.RequestsMock, source: ServiceNowSource
) -> None:
    expect(mock, ORDER, [rec("a", "2026-01-01 00:00:00"), rec("b", "2026-01-01 00:00:00")], total=3)
    expect(mock, after("2026-01-01 00:00:00", "b"), [rec("c", "2026-01-02 00:00:00")], total=1)
    pages = list(source.read("incident", fields=["state"]))
    assert [[r.source_id for r in p.records] for p in pages] == [["a", "b"], ["c"]]
    assert pages[0].cursor == {"sys_updated_on": "2026-01-01 00:00:00", "sys_id": "b"}
    assert pages[-1].cursor == {"sys_updated_on": "2026-01-02 00:00:00", "sys_id": "c"}
    assert pages[0].records[0].updated_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert mock.calls[0].request.headers["Authorization"].startswith("Basic ")


def test_resumes_strictly_after_the_cursor(
    mock: responses.RequestsMock, source: ServiceNowSource
) -> None:
    expect(mock, after("2026-01-05 10:00:00", "x"), [], total=0)
    pages = list(
        source.read(
            "incident",
            fields=["state"],
            cursor={"sys_updated_on": "2026-01-05 10:00:00", "sys_id": "x"},
        )
    )
    assert len(pages) == 1 and pages[0].records == []


def test_since_is_a_utc_literal(mock: responses.RequestsMock, source: ServiceNowSource) -> None:
    expect(mock, f"sys_updated_on>=2026-01-05 09:00:00^{ORDER}", [], total=0)
    since = datetime.fromisoformat("2026-01-05T10:00:00+01:00")
    list(source.read("incident", fields=["state"], since=since))


def test_short_page_mid_set_does_not_end_the_stream(
    mock: responses.RequestsMock, source: ServiceNowSource
) -> None:
    # ACLs removed one row of the first window: 1 row back, but 3 match.
    expect(mock, ORDER, [rec("a", "2026-01-01 00:00:00")], total=3)
    expect(mock, after("2026-01-01 00:00:00", "a"), [rec("c", "2026-01-02 00:00:00")], total=2)
    ids = [r.source_id for p in source.read("incident", fields=["state"]) for r in p.records]
    assert ids == ["a", "c"]


def test_window_hidden_entirely_is_stepped_over_with_offset(
    mock: responses.RequestsMock, source: ServiceNowSource
) -> None:
    expect(mock, ORDER, [], total=3)
    expect(mock, ORDER, [rec("c", "2026-01-02 00:00:00")], total=3, offset=2)
    ids = [r.source_id for p in source.read("incident", fields=["state"]) for r in p.records]
    assert ids == ["c"]


def test_401_names_source_and_what_to_check_without_the_password(
    mock: responses.RequestsMock, source: ServiceNowSource
) -> None:
    mock.get(
        TABLE,
        status=401,
        json={
            "error": {
                "message": "User Not Authenticated",
                "detail": "Required to provide Auth information",
            },
            "status": "failure",
        },
    )
    with pytest.raises(SourceAuthError) as info:
        list(source.read("incident", fields=["state"]))
    message = str(info.value)
    assert "'acme'" in message and "incident" in message and "User Not Authenticated" in message
    assert "password" in message and PASSWORD not in message


def test_server_error_after_retries_is_transient(
    mock: responses.RequestsMock, source: ServiceNowSource
) -> None:
    mock.get(TABLE, status=503, body="<html>maintenance</html>")
    with pytest.raises(TransientSourceError, match="HTTP 503"):
        list(source.read("incident", fields=["state"]))


@pytest.mark.parametrize(
    "body", ['{"result": [{"sys_id": "a", "sys_upd', "<html>login</html>", '{"nothing": []}']
)
def test_truncated_or_foreign_bodies_are_malformed_once_asked_again_in_vain(
    mock: responses.RequestsMock, source: ServiceNowSource, body: str
) -> None:
    for _ in range(PAGE_ATTEMPTS):
        mock.get(TABLE, body=body, headers={"X-Total-Count": "1"})
    with pytest.raises(MalformedResponseError, match="'acme'"):
        list(source.read("incident", fields=["state"]))
    assert len(mock.calls) == PAGE_ATTEMPTS


def test_a_malformed_page_is_asked_for_again(
    mock: responses.RequestsMock, source: ServiceNowSource
) -> None:
    mock.get(TABLE, body='{"result": [{"sys_id": "a", "sys_upd', headers={"X-Total-Count": "1"})
    expect(mock, ORDER, [rec("a", "2026-01-01 00:00:00")], total=1)
    pages = list(source.read("incident", fields=["state"]))
    assert [r.source_id for p in pages for r in p.records] == ["a"]


def test_a_cancelled_transaction_halves_the_page_and_keeps_it_small(
    mock: responses.RequestsMock, source: ServiceNowSource
) -> None:
    cancelled = {
        "error": {"message": "Transaction cancelled: maximum execution time exceeded"},
        "status": "failure",
    }
    mock.get(TABLE, json=cancelled, status=200)  # the instance answers 200 with the envelope
    expect(mock, ORDER, [rec("a", "2026-01-01 00:00:00")], total=2, limit=1)
    expect(mock, after("2026-01-01 00:00:00", "a"), [rec("b", "2026-01-02 00:00:00")], 1, limit=1)
    pages = list(source.read("incident", fields=["state"]))
    assert [r.source_id for p in pages for r in p.records] == ["a", "b"]
    assert source.page_size == 1


def test_forbidden_names_the_table_and_the_rights_to_check(
    mock: responses.RequestsMock, source: ServiceNowSource
) -> None:
    mock.get(
        TABLE,
        status=403,
        json={"error": {"message": "Insufficient rights to query records", "detail": None}},
    )
    with pytest.raises(SourceAuthError) as caught:
        list(source.read("incident", fields=["state"]))
    message = str(caught.value)
    assert "HTTP 403" in message and "/api/now/table/incident" in message and "ACL" in message


def test_a_page_that_goes_backwards_stops_instead_of_looping(
    mock: responses.RequestsMock, source: ServiceNowSource
) -> None:
    expect(mock, ORDER, [rec("a", "2026-01-02 00:00:00"), rec("b", "2026-01-02 00:00:00")], total=4)
    expect(
        mock,
        after("2026-01-02 00:00:00", "b"),
        [rec("a", "2026-01-01 00:00:00"), rec("b", "2026-01-02 00:00:00")],
        total=4,
    )
    with pytest.raises(MalformedResponseError, match="keyset order"):
        list(source.read("incident", fields=["state"]))


@pytest.mark.parametrize(
    ("header", "waited"),
    [("3", 3.0), ("3600", 30.0), ("Fri, 31 Dec 2100 23:59:59 GMT", 30.0)],
)
def test_retry_after_is_honoured_up_to_the_backoff_cap(header: str, waited: float) -> None:
    """An hour-long Retry-After must not hold the stream's lock asleep for an hour."""
    from urllib3 import HTTPResponse

    from connectors.http import retry_policy

    policy = retry_policy(3).increment(method="GET", url="/api/now/table/incident")
    response = HTTPResponse(status=429, headers={"Retry-After": header})
    assert policy.get_retry_after(response) == pytest.approx(waited, abs=1.0)
    assert type(policy) is type(retry_policy(3)), "every retry step keeps the cap"
