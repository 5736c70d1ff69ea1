"""ServiceNow incident dicts -> canonical incidents through the shipped TOML map."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from daemon.defaults import config_dir
from mapping.model import INCIDENT
from mapping.spec import load_mapping
from mapping.translate import SkippedRecord, Translator

UPDATED = datetime(2026, 5, 2, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def translator() -> Translator:
    spec = load_mapping(config_dir() / "mappings" / "servicenow.toml")
    found = spec.for_stream("incident")
    assert found is not None
    return Translator(INCIDENT, found[1], spec, "acme")


def test_codes_keep_original_and_standard_values(translator: Translator) -> None:
    record = translator.translate(
        "abc", UPDATED, {"state": "6", "priority": "1", "contact_type": "self-service"}
    )
    assert (record["state"], record["state_original"]) == ("resolved", "6")
    assert (record["priority"], record["priority_original"]) == ("P1", "1")
    assert record["contact_type"] == "self_service"
    assert record["mapping_version"] == "servicenow-default-2026.12"
    assert (record["source"], record["source_id"], record["updated_at"]) == ("acme", "abc", UPDATED)


def test_unmapped_code_keeps_original_without_inventing_a_standard(translator: Translator) -> None:
    record = translator.translate("abc", UPDATED, {"state": "-42"})
    assert record["state"] is None
    assert record["state_original"] == "-42"


def test_raw_dates_are_utc_and_fallbacks_apply(translator: Translator) -> None:
    record = translator.translate(
        "abc",
        UPDATED,
        {
            "opened_at": "",
            "sys_created_on": "2026-03-29 00:30:00",
            "resolved_at": "2026-03-29 02:15:00",
        },
    )
    assert record["opened_at"] == datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    assert record["resolved_at"] == datetime(2026, 3, 29, 2, 15, tzinfo=UTC)
    assert record["closed_at"] is None


def test_types_strings_become_ints_bools_and_references_their_sys_id(
    translator: Translator,
) -> None:
    record = translator.translate(
        "abc",
        UPDATED,
        {
            "reopen_count": "2",
            "made_sla": "false",
            "assignment_group": {
                "link": "https://x/api/now/table/sys_user_group/g1",
                "value": "g1",
            },
        },
    )
    assert record["reopen_count"] == 2
    assert record["made_sla"] is False
    assert record["assignment_group"] == "g1"


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("reopen_count", "two", "reopen_count"),
        ("made_sla", "maybe", "made_sla"),
        ("opened_at", "31/02/2026", "opened_at"),
    ],
)
def test_unconvertible_values_skip_the_record_with_a_reason(
    translator: Translator, field: str, value: str, reason: str
) -> None:
    with pytest.raises(SkippedRecord, match=reason):
        translator.translate("abc", UPDATED, {field: value})
