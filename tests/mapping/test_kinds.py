"""The metric kinds added for money, people and trends: sum, per_distinct, composites."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from mapping.catalogue import Catalogue, MetricSpec
from mapping.composite import combine
from mapping.errors import SpecError
from mapping.metrics import MetricValue, evaluate
from mapping.model import INCIDENT
from mapping.periods import parse_period, same_period_last_year
from mapping.spec import MappingSpec
from mapping.tomlfile import validate
from mapping.translate import Translator

AMS = ZoneInfo("Europe/Amsterdam")
MAY = parse_period("2026-05", AMS)


def metric(**fields: Any) -> MetricSpec:
    base = {
        "id": "X",
        "name": "x",
        "direction": "lower",
        "record": "incident",
        "cohort": "resolved_at",
    }
    return MetricSpec.model_validate(base | fields)


def row(day: int, **fields: Any) -> dict[str, Any]:
    return {"source": "snow", "resolved_at": datetime(2026, 5, day, 12, tzinfo=UTC)} | fields


def test_sum_adds_the_values_and_counts_what_had_none() -> None:
    spec = metric(
        id="F5", kind="sum", record="change", cohort="work_end", value="caused_incident_cost"
    )
    rows = [
        {"source": "s", "work_end": datetime(2026, 5, d, tzinfo=UTC), "caused_incident_cost": c}
        for d, c in ((1, 22.0), (2, 0.0), (3, 84.0), (4, None))
    ]
    (value,) = [v for v in evaluate(spec, rows, [MAY]) if v.dimension == "all"]
    assert (value.value, value.n) == (106.0, 3)
    assert value.exclusions == {"missing caused_incident_cost": 1}


def test_per_distinct_divides_records_by_distinct_agents_in_each_bucket() -> None:
    spec = metric(id="L6", kind="per_distinct", per="assigned_to", breakdowns=["source"])
    rows = [row(1, assigned_to="ann"), row(2, assigned_to="ann"), row(3, assigned_to="bob")]
    rows += [row(4, assigned_to="ann", source="jira"), row(5, assigned_to=None)]
    values = {v.dimension: v for v in evaluate(spec, rows, [MAY])}
    assert (values["all"].numerator, values["all"].denominator) == (4, 2)  # ann counted once
    assert values["all"].value == 2.0
    assert values["source=snow"].value == 1.5
    assert values["source=jira"].value == 1.0
    assert values["all"].exclusions == {"missing assigned_to": 1}


def value(
    metric_id: str, period: Any, v: float | None, n: int = 10, dim: str = "all"
) -> MetricValue:
    return MetricValue(metric_id, period, dim, v, None, None, n, {})


def test_year_over_year_is_the_difference_with_the_same_period_a_year_before() -> None:
    spec = metric(id="L5", kind="year_over_year", of=["C5"], record="incident")
    earlier = same_period_last_year(MAY, AMS)
    assert earlier.label == "2025-05"
    base = [value("C5", MAY, 74.5, 30), value("C5", earlier, 70.0, 25)]
    (out,) = combine(spec, [MAY], [base], {MAY: earlier})
    assert out.value == pytest.approx(4.5)
    assert (out.numerator, out.denominator, out.n) == (74.5, 70.0, 25)
    (missing,) = combine(spec, [MAY], [base[:1]], {MAY: earlier})
    assert missing.value is None and missing.n == 0  # no history a year back: no data, not 0


def test_product_multiplies_matching_dimensions() -> None:
    spec = metric(id="F6", kind="product", of=["I4B", "F1"])
    backlog = [value("I4B", MAY, 24.0), value("I4B", MAY, 4.0, dim="priority=P1")]
    cost = [value("F1", MAY, 39.0), value("F1", MAY, 100.0, dim="priority=P1")]
    out = {v.dimension: v.value for v in combine(spec, [MAY], [backlog, cost], {})}
    assert out == {"all": 24.0 * 39.0, "priority=P1": 400.0}


@pytest.mark.parametrize(
    ("period", "expected"),
    [
        ("2026-Q2", "2025-Q2"),
        ("2026-W10", "2025-W10"),
        ("2020-W53", "2019-W52"),  # 2019 had no week 53
        ("2028-02-29", "2027-02-28"),
        ("2026", "2025"),
        ("2026-03-01..2026-03-31", "2025-03-01..2025-03-31"),
    ],
)
def test_the_same_period_last_year(period: str, expected: str) -> None:
    assert same_period_last_year(parse_period(period, AMS), AMS).label == expected


BASE = {"id": "M", "name": "m", "direction": "lower", "record": "incident", "cohort": "resolved_at"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {
                "metric": [
                    BASE
                    | {
                        "kind": "duration",
                        "start": "opened_at",
                        "end": "resolved_at",
                        "clock": "business",
                    }
                ]
            },
            "business clock needs a calendar",
        ),
        (
            {"metric": [BASE | {"kind": "year_over_year", "of": ["NOPE"]}]},
            "of names unknown metrics",
        ),
        ({"metric": [BASE | {"kind": "per_distinct"}]}, "per: a per_distinct metric needs"),
        (
            {"metric": [BASE | {"kind": "sum", "value": "priority"}]},
            "is not a numeric incident field",
        ),
        (
            {
                "metric": [BASE | {"kind": "count"}],
                "cost": [
                    {"valid_from": "2026-01-01", "unit_cost": {}},
                    {"valid_from": "2026-01-01", "unit_cost": {}},
                ],
            },
            "two entries valid from 2026-01-01",
        ),
        (
            {"metric": [BASE | {"kind": "count"}], "business_hours": {"default": "nope"}},
            "no \\[\\[calendar\\]\\] named 'nope'",
        ),
    ],
)
def test_catalogue_mistakes_name_the_metric_and_what_is_wrong(
    data: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        validate(Catalogue, data, "metrics.toml")


def translator(**spec: Any) -> Translator:
    mapping = MappingSpec.model_validate(
        {
            "version": "t",
            "datetime_format": "%Y-%m-%dT%H:%M:%S.%f%z",
            "incident": {
                "stream": "issues",
                "fields": {
                    "number": "key",
                    "caused_by": "@link.is caused by",
                    "kb_used": "@label.kb-used",
                    "resolved_by": "fields.resolver",
                },
            },
        }
        | spec
    )
    assert mapping.incident is not None
    return Translator(INCIDENT, mapping.incident, mapping, "jira")


def test_jira_links_labels_and_automation_become_fields() -> None:
    cause = {"name": "Cause", "inward": "is caused by", "outward": "causes"}
    data = {
        "key": "ITSM-7",
        "fields": {
            "issuelinks": [
                {
                    "type": {"inward": "relates to", "outward": "relates to"},
                    "inwardIssue": {"id": "1"},
                },
                {"type": cause, "outwardIssue": {"id": "2"}},  # ITSM-7 causes 2: not its cause
                {"type": cause, "inwardIssue": {"id": "3"}},  # ITSM-7 is caused by 3
            ],
            "labels": ["kb-used", "vip"],
            "resolver": "robot",
        },
    }
    now = datetime(2026, 5, 1, tzinfo=UTC)
    record = translator(automation_actors=["robot"]).translate("7", now, data)
    assert (record["caused_by"], record["kb_used"], record["auto_resolved"]) == ("3", True, True)
    data["fields"] = {"labels": [], "resolver": "ann"}
    record = translator(automation_actors=["robot"]).translate("7", now, data)
    assert (record["caused_by"], record["kb_used"], record["auto_resolved"]) == (None, False, False)
    data["fields"] = {"resolver": "ann"}  # no labels asked for: unknown, not "no"
    record = translator().translate("7", now, data)
    assert (record["kb_used"], record["auto_resolved"]) == (None, None)  # no actors configured


def test_a_link_fact_can_ask_for_the_linked_issue_type() -> None:
    """JSM links an incident to its problem and to the change behind it with the same phrase:
    each field takes the linked issue of its own type, whichever link comes first."""
    cause = {"name": "Problem/Incident", "inward": "is caused by", "outward": "causes"}

    def linked(issue_id: str, kind: str | None) -> dict[str, Any]:
        summary = {"fields": {"issuetype": {"name": kind}}} if kind else {}
        return {"type": cause, "inwardIssue": {"id": issue_id, **summary}}

    fields = {
        "caused_by": "@link.is caused by/[System] Change|Change",
        "problem_id": "@link.Is Caused By/ problem | [System] Problem ",
        "number": "key",
    }
    incident = {"stream": "issues", "fields": fields}
    mapping = MappingSpec.model_validate({"version": "t", "incident": incident})
    assert mapping.incident is not None
    translate = Translator(INCIDENT, mapping.incident, mapping, "jira").translate
    now = datetime(2026, 5, 1, tzinfo=UTC)
    links = [linked("4", "Bug"), linked("5", "[System] Problem"), linked("6", "Change")]
    record = translate("7", now, {"key": "ITSM-7", "fields": {"issuelinks": links}})
    assert (record["caused_by"], record["problem_id"]) == ("6", "5")
    record = translate("7", now, {"key": "ITSM-7", "fields": {"issuelinks": links[:1]}})
    assert (record["caused_by"], record["problem_id"]) == (None, None)  # a bug is neither
    untyped = [linked("8", None)]  # a link without the linked issue's type: not assumed
    record = translate("7", now, {"key": "ITSM-7", "fields": {"issuelinks": untyped}})
    assert (record["caused_by"], record["problem_id"]) == (None, None)


def test_facts_request_the_jira_fields_they_read() -> None:
    mapping = translator()._map  # the connector asks Jira for these
    assert {"fields.issuelinks", "fields.labels"} <= set(mapping.source_fields())
