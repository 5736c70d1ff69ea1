"""The ServiceNow emulator over real HTTP: auth, parameters, headers, envelopes, references."""

from __future__ import annotations

from pathlib import Path

import requests

from sandbox.servicenow import REFERENCES, RunningSandbox, ServiceNowInstance, serve
from tests.conftest import SANDBOX_PASSWORD, SANDBOX_USER

AUTH = (SANDBOX_USER, SANDBOX_PASSWORD)


def get(snow: RunningSandbox, path: str, **params: str) -> requests.Response:
    return requests.get(f"{snow.url}{path}", params=params, auth=AUTH, timeout=10)


def test_bad_credentials_get_the_401_envelope(snow: RunningSandbox) -> None:
    response = requests.get(
        f"{snow.url}/api/now/table/incident", auth=(SANDBOX_USER, "wrong"), timeout=10
    )
    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "message": "User Not Authenticated",
            "detail": "Required to provide Auth information",
        },
        "status": "failure",
    }


def test_limit_zero_is_rejected_and_unknown_table_is_400(snow: RunningSandbox) -> None:
    assert get(snow, "/api/now/table/incident", sysparm_limit="0").status_code == 400
    response = get(snow, "/api/now/v2/table/nope")
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Invalid table nope"


def test_paging_headers_and_string_values(snow: RunningSandbox) -> None:
    response = get(
        snow,
        "/api/now/table/incident",
        sysparm_limit="100",
        sysparm_offset="200",
        sysparm_query="ORDERBYsys_id",
    )
    assert response.headers["X-Total-Count"] == "600"
    links = response.headers["Link"]
    for rel in ("first", "prev", "next", "last"):
        assert f'rel="{rel}"' in links
    by_rel = {part.split(";rel=")[1].strip('"'): part for part in links.split(",")}
    assert "sysparm_offset=300" in by_rel["next"]
    assert "sysparm_offset=100" in by_rel["prev"]
    assert "sysparm_offset=500" in by_rel["last"]
    assert "sysparm_query=ORDERBYsys_id" in by_rel["next"]
    rows = response.json()["result"]
    assert len(rows) == 100
    references = REFERENCES["incident"]
    scalars = [v for row in rows for k, v in row.items() if k not in references]
    assert all(isinstance(v, str) for v in scalars)
    linked = [row[k] for row in rows for k in references if row.get(k)]
    assert linked and all(isinstance(v, dict) and v["link"] and v["value"] for v in linked)


def test_fields_and_reference_matrix(snow: RunningSandbox) -> None:
    query = {
        "sysparm_query": "ORDERBYsys_id",
        "sysparm_limit": "1",
        "sysparm_fields": "sys_id,assignment_group,nonsense",
    }
    plain = get(snow, "/api/now/table/incident", **query).json()["result"][0]
    assert set(plain) == {"sys_id", "assignment_group"}
    assert set(plain["assignment_group"]) == {"link", "value"}
    excluded = get(
        snow, "/api/now/table/incident", sysparm_exclude_reference_link="true", **query
    ).json()["result"][0]
    assert excluded["assignment_group"] == plain["assignment_group"]["value"]
    display = get(
        snow,
        "/api/now/table/incident",
        sysparm_display_value="true",
        sysparm_exclude_reference_link="true",
        **query,
    ).json()["result"][0]
    assert display["assignment_group"] in {
        g["name"] for g in snow.instance.records("sys_user_group")
    }


def test_single_record_and_missing_record(snow: RunningSandbox) -> None:
    sys_id = snow.instance.records("incident")[0]["sys_id"]
    assert get(snow, f"/api/now/table/incident/{sys_id}").json()["result"]["sys_id"] == sys_id
    missing = get(snow, f"/api/now/table/incident/{'0' * 32}")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "No Record found"


def test_no_orderby_means_no_stable_order(snow: RunningSandbox) -> None:
    orders = {
        tuple(
            r["sys_id"]
            for r in get(
                snow, "/api/now/table/incident", sysparm_limit="50", sysparm_fields="sys_id"
            ).json()["result"]
        )
        for _ in range(3)
    }
    assert len(orders) > 1


def test_records_replayed_from_a_jsonl_export(tmp_path: Path) -> None:
    export = tmp_path / "incidents.jsonl"
    export.write_text(
        '{"sys_id": "'
        + "a" * 32
        + '", "number": "INC1", "priority": 2, "active": true, "sys_updated_on": "2026-01-01 00:00:00"}\n\n'
        '{"sys_id": "'
        + "b" * 32
        + '", "number": "INC2", "priority": null, "active": false, "sys_updated_on": "2026-01-02 00:00:00"}\n'
    )
    instance = ServiceNowInstance(users={SANDBOX_USER: SANDBOX_PASSWORD})
    assert instance.load_jsonl(export, "incident") == 2
    with serve(instance) as snow:
        rows = get(snow, "/api/now/table/incident", sysparm_query="ORDERBYnumber").json()["result"]
    assert [r["number"] for r in rows] == ["INC1", "INC2"]
    assert (
        rows[0]["priority"] == "2" and rows[0]["active"] == "true"
    )  # the instance only speaks strings
    assert rows[1]["priority"] == ""


def test_keyset_index_answers_exactly_like_the_general_evaluator() -> None:
    import random

    from sandbox.generator import generate

    fast = ServiceNowInstance()
    fast.load(generate(300, seed=11, related=False))
    slow = ServiceNowInstance(fast_keyset=False)
    slow.load(generate(300, seed=11, related=False))
    ordered = sorted(fast.records("incident"), key=lambda r: (r["sys_updated_on"], r["sys_id"]))
    order = "ORDERBYsys_updated_on^ORDERBYsys_id"
    queries = [order]
    for r in random.Random(3).sample(ordered, 20):
        t, i = r["sys_updated_on"], r["sys_id"]
        queries.append(f"sys_updated_on={t}^sys_id>{i}^NQsys_updated_on>{t}^{order}")
        queries.append(f"sys_updated_on>={t}^{order}")
    fast.update("incident", ordered[5]["sys_id"], state="2")  # the index follows writes
    slow.update("incident", ordered[5]["sys_id"], state="2")
    slow.tables["incident"][ordered[5]["sys_id"]]["sys_updated_on"] = fast.tables["incident"][
        ordered[5]["sys_id"]
    ]["sys_updated_on"]
    for query in queries:
        params = {"sysparm_query": query, "sysparm_limit": "50"}
        assert fast._keyset_rows("incident", query) is not None
        assert fast.list_records("incident", params) == slow.list_records("incident", params)
